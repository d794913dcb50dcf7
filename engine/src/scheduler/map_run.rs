//! The state of a map step while its entries run, and how their results are
//! gathered into one outcome.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::report::{EntryReport, Logs};
use crate::store::{Store, Tree, TreeEntry};
use crate::{Artifact, OutputKind, StepError, StepErrorKind, StepStatus};

/// How one entry of a map step ended.
pub(crate) struct EntryOutcome {
    /// Whether a cached result served it.
    pub reused: bool,
    /// What it produced, or why it failed.
    pub outputs: Result<BTreeMap<String, Artifact>, StepError>,
    pub logs: Option<Logs>,
    pub metrics: BTreeMap<String, f64>,
}

/// A map step in progress: one slot per entry of the mapped directory.
pub(crate) struct MapRun {
    pub entries: Vec<(String, Artifact)>,
    outcomes: Vec<Option<EntryOutcome>>,
    remaining: usize,
    pub started: Instant,
}

/// What a finished map step amounts to.
pub(crate) struct Gathered {
    pub status: StepStatus,
    pub outputs: BTreeMap<String, Artifact>,
    pub error: Option<StepError>,
    pub entries: BTreeMap<String, EntryReport>,
    /// Each metric's mean over the entries that reported it.
    pub metrics: BTreeMap<String, f64>,
}

impl MapRun {
    pub(crate) fn new(entries: Vec<(String, Artifact)>, started: Instant) -> Self {
        let count = entries.len();
        Self { entries, outcomes: (0..count).map(|_| None).collect(), remaining: count, started }
    }

    /// Records entry `index`; returns whether every entry has now ended.
    pub(crate) fn settle(&mut self, index: usize, outcome: EntryOutcome) -> bool {
        if self.outcomes[index].replace(outcome).is_none() {
            self.remaining -= 1;
        }
        self.remaining == 0
    }

    pub(crate) fn is_done(&self) -> bool {
        self.remaining == 0
    }

    /// Gathers each declared output into a directory keyed by entry name, or
    /// reports the entries that failed.
    pub(crate) fn gather(self, step: &str, outputs: &BTreeMap<String, OutputKind>, store: &Store) -> Gathered {
        let mut entries = BTreeMap::new();
        let mut failed = Vec::new();
        let mut stderr_tail = String::new();
        let mut any_ran = false;
        let mut per_output: BTreeMap<&str, Vec<TreeEntry>> =
            outputs.keys().map(|name| (name.as_str(), Vec::new())).collect();
        for ((entry, _), outcome) in self.entries.iter().zip(self.outcomes) {
            let Some(outcome) = outcome else { continue };
            let status = match (&outcome.outputs, outcome.reused) {
                (Err(error), _) if error.kind == StepErrorKind::Cancelled => StepStatus::Cancelled,
                (Err(_), _) => StepStatus::Failed,
                (Ok(_), true) => StepStatus::Cached,
                (Ok(_), false) => StepStatus::Ran,
            };
            entries.insert(entry.clone(), EntryReport::new(status, outcome.logs, outcome.metrics));
            match outcome.outputs {
                Err(error) => {
                    if stderr_tail.is_empty() {
                        stderr_tail = error.stderr_tail;
                    }
                    failed.push((entry.clone(), error.kind));
                }
                Ok(produced) => {
                    any_ran |= !outcome.reused;
                    for (name, artifact) in produced {
                        if let Some(list) = per_output.get_mut(name.as_str()) {
                            list.push(TreeEntry { name: entry.clone(), kind: artifact.kind, digest: artifact.digest });
                        }
                    }
                }
            }
        }
        let metrics = mean_metrics(&entries);
        let total = entries.len();
        let fail = |kind, stderr_tail, entries, metrics| Gathered {
            status: if kind == StepErrorKind::Cancelled { StepStatus::Cancelled } else { StepStatus::Failed },
            outputs: BTreeMap::new(),
            error: Some(StepError { step: step.to_owned(), kind, stderr_tail }),
            entries,
            metrics,
        };
        // Entries cut short by a cancellation cancel the step, unless others failed.
        if !failed.is_empty() && failed.iter().all(|(_, kind)| *kind == StepErrorKind::Cancelled) {
            return fail(StepErrorKind::Cancelled, stderr_tail, entries, metrics);
        }
        if !failed.is_empty() {
            return fail(StepErrorKind::MapEntries { failed, total }, stderr_tail, entries, metrics);
        }
        let mut gathered = BTreeMap::new();
        for (name, list) in per_output {
            match store.put_tree(&Tree::new(list)) {
                Ok(digest) => {
                    gathered.insert(name.to_owned(), Artifact { kind: OutputKind::Dir, digest });
                }
                Err(err) => return fail(StepErrorKind::Engine(err.to_string()), String::new(), entries, metrics),
            }
        }
        // Nothing to map over is not a reuse: the step "ran" on no entries.
        let status = if any_ran || total == 0 { StepStatus::Ran } else { StepStatus::Cached };
        Gathered { status, outputs: gathered, error: None, entries, metrics }
    }
}

/// Each metric's mean over the entries that reported it.
fn mean_metrics(entries: &BTreeMap<String, EntryReport>) -> BTreeMap<String, f64> {
    let mut sums: BTreeMap<&str, (f64, u32)> = BTreeMap::new();
    for (name, value) in entries.values().flat_map(|entry| &entry.metrics) {
        let sum = sums.entry(name).or_default();
        *sum = (sum.0 + value, sum.1 + 1);
    }
    sums.into_iter().map(|(name, (sum, count))| (name.to_owned(), sum / f64::from(count))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_metrics_are_the_mean_of_the_entries_that_reported_them() {
        let entry = |metrics: &[(&str, f64)]| {
            let metrics = metrics.iter().map(|(name, value)| (name.to_string(), *value)).collect();
            EntryReport::new(StepStatus::Ran, None, metrics)
        };
        let entries = BTreeMap::from([
            ("a".to_owned(), entry(&[("accuracy", 0.5), ("rows", 10.0)])),
            ("b".to_owned(), entry(&[("accuracy", 1.0)])),
            ("c".to_owned(), entry(&[])),
        ]);
        let means = mean_metrics(&entries);
        assert_eq!(means, BTreeMap::from([("accuracy".to_owned(), 0.75), ("rows".to_owned(), 10.0)]));
    }
}
