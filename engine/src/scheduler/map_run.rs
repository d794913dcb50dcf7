//! The state of a map step while its entries run, and how their results are
//! gathered into one outcome.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::store::{Store, Tree, TreeEntry};
use crate::{Artifact, OutputKind, StepError, StepErrorKind, StepStatus};

/// How one entry of a map step ended.
pub(crate) enum EntryOutcome {
    Cached(BTreeMap<String, Artifact>),
    Ran(BTreeMap<String, Artifact>),
    Failed(StepError),
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
    pub entries: BTreeMap<String, StepStatus>,
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
        let mut statuses = BTreeMap::new();
        let mut failed = Vec::new();
        let mut stderr_tail = String::new();
        let mut any_ran = false;
        let mut per_output: BTreeMap<&str, Vec<TreeEntry>> =
            outputs.keys().map(|name| (name.as_str(), Vec::new())).collect();
        for ((entry, _), outcome) in self.entries.iter().zip(self.outcomes) {
            let produced = match outcome {
                Some(EntryOutcome::Cached(produced)) => {
                    statuses.insert(entry.clone(), StepStatus::Cached);
                    produced
                }
                Some(EntryOutcome::Ran(produced)) => {
                    any_ran = true;
                    statuses.insert(entry.clone(), StepStatus::Ran);
                    produced
                }
                Some(EntryOutcome::Failed(error)) => {
                    statuses.insert(entry.clone(), StepStatus::Failed);
                    if stderr_tail.is_empty() {
                        stderr_tail = error.stderr_tail;
                    }
                    failed.push((entry.clone(), error.kind));
                    continue;
                }
                None => continue,
            };
            for (name, artifact) in produced {
                if let Some(list) = per_output.get_mut(name.as_str()) {
                    list.push(TreeEntry { name: entry.clone(), kind: artifact.kind, digest: artifact.digest });
                }
            }
        }
        let total = statuses.len();
        let fail = |kind, stderr_tail| Gathered {
            status: StepStatus::Failed,
            outputs: BTreeMap::new(),
            error: Some(StepError { step: step.to_owned(), kind, stderr_tail }),
            entries: statuses.clone(),
        };
        if !failed.is_empty() {
            return fail(StepErrorKind::MapEntries { failed, total }, stderr_tail);
        }
        let mut gathered = BTreeMap::new();
        for (name, entries) in per_output {
            match store.put_tree(&Tree::new(entries)) {
                Ok(digest) => {
                    gathered.insert(name.to_owned(), Artifact { kind: OutputKind::Dir, digest });
                }
                Err(err) => return fail(StepErrorKind::Engine(err.to_string()), String::new()),
            }
        }
        let status = if any_ran { StepStatus::Ran } else { StepStatus::Cached };
        Gathered { status, outputs: gathered, error: None, entries: statuses }
    }
}
