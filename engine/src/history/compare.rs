//! Runs side by side (`weir compare`): the parameters that differ, each
//! metric's last and best value, and which steps' results differ and why.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::{History, MetricSeries, RunDetail, RunSummary, StepRecord};
use crate::cache_key::RecordedKey;
use crate::{Result, StepStatus};

/// Two or more runs compared (see [`TenantView::compare`](crate::TenantView::compare)).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Comparison {
    /// The runs, in the order given.
    pub runs: Vec<RunSummary>,
    /// Each pipeline parameter whose value is not the same in every run:
    /// its value in each run (null where the run had no such parameter).
    pub params: BTreeMap<String, Vec<Value>>,
    /// Each metric (`STEP.METRIC`) any of the runs reported: its values in
    /// each run, summarized (null where the run did not report it).
    pub metrics: BTreeMap<String, Vec<Option<MetricSummary>>>,
    /// Every step of the runs, in the first run's order (then any others).
    pub steps: Vec<StepComparison>,
}

/// The values one run reported for a metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[non_exhaustive]
pub struct MetricSummary {
    /// The last value.
    pub last: f64,
    /// The best value: the lowest for a metric whose name says it is an
    /// error (see [`lower_is_better`]), else the highest.
    pub best: f64,
    /// How many values were reported.
    pub points: usize,
}

/// One step across the runs.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct StepComparison {
    /// The step.
    pub step: String,
    /// Its status in each run (null where the run has no such step).
    pub statuses: Vec<Option<StepStatus>>,
    /// Whether its result in each run is the first run's (the same cache key).
    pub same_as_first: Vec<bool>,
    /// For each run, what differs in its cache key from the first run's, in
    /// words (empty for the first run and where the key is the same).
    pub changes: Vec<Vec<String>>,
}

/// Whether a metric named `name` (`STEP.METRIC` or `METRIC`) is better
/// low: a loss, an error, a perplexity, a mean squared or absolute error.
pub fn lower_is_better(name: &str) -> bool {
    let metric = name.rsplit_once('.').map_or(name, |(_, metric)| metric).to_ascii_lowercase();
    ["loss", "error", "err", "mse", "mae", "rmse", "perplexity"]
        .iter()
        .any(|word| metric == *word || metric.split(['_', '-']).any(|part| part == *word))
}

impl MetricSummary {
    fn of(name: &str, values: &[f64]) -> Option<Self> {
        let last = *values.last()?;
        let pick = if lower_is_better(name) { f64::min } else { f64::max };
        let best = values.iter().copied().filter(|v| !v.is_nan()).reduce(pick).unwrap_or(last);
        Some(Self { last, best, points: values.len() })
    }
}

impl History {
    /// Compares `runs` (at least one; the first is what the others are
    /// compared with), whose metric series are `series`, in the same order.
    pub(crate) fn compare(&self, runs: &[RunDetail], series: &[BTreeMap<String, MetricSeries>]) -> Result<Comparison> {
        let params = differing_params(runs);
        let mut names: Vec<&String> = series.iter().flat_map(BTreeMap::keys).collect();
        names.sort();
        names.dedup();
        let metrics = names
            .into_iter()
            .map(|name| {
                let values =
                    series.iter().map(|run| run.get(name).and_then(|s| MetricSummary::of(name, &s.values))).collect();
                (name.clone(), values)
            })
            .collect();
        let mut steps = Vec::new();
        for name in step_names(runs) {
            let records: Vec<Option<&StepRecord>> = runs.iter().map(|run| run.step(&name)).collect();
            let first_key = records[0].and_then(|record| record.cache_key);
            let mut comparison = StepComparison {
                step: name.clone(),
                statuses: records.iter().map(|record| record.map(|r| r.status)).collect(),
                same_as_first: Vec::new(),
                changes: Vec::new(),
            };
            for (k, record) in records.iter().enumerate() {
                let key = record.and_then(|r| r.cache_key);
                let same = key.is_some() && key == first_key;
                let changes = match (k, record, records[0]) {
                    (0, ..) => Vec::new(),
                    _ if same => Vec::new(),
                    (_, Some(record), Some(first)) if key.is_some() && first_key.is_some() => {
                        self.step_changes((&runs[0], first), (&runs[k], record))?
                    }
                    (_, Some(record), _) if key.is_none() => vec![format!("no result in this run ({})", record.status)],
                    (_, _, Some(first)) if first_key.is_none() => {
                        vec![format!("no result in the first run ({})", first.status)]
                    }
                    _ => vec!["the step is not in both runs".to_owned()],
                };
                comparison.same_as_first.push(same);
                comparison.changes.push(changes);
            }
            steps.push(comparison);
        }
        Ok(Comparison { runs: runs.iter().map(|run| run.summary.clone()).collect(), params, metrics, steps })
    }

    /// What differs between a step's cache key in one run and in another,
    /// read from the executions that produced each result.
    fn step_changes(
        &self,
        (old_run, old): (&RunDetail, &StepRecord),
        (new_run, new): (&RunDetail, &StepRecord),
    ) -> Result<Vec<String>> {
        let (old_execution, old_material) = self.execution_of(&old_run.summary.id, old)?;
        let (_, new_material) = self.execution_of(&new_run.summary.id, new)?;
        let new_key = RecordedKey::of(new_material.as_deref());
        let mut changes = self.key_changes(&old_execution, old_material.as_deref(), &new_run.params, &new_key)?;
        if changes.is_empty() {
            let key = |record: &StepRecord| record.cache_key.map(|key| key.to_string()).unwrap_or_default();
            changes.push(format!(
                "cache key {} → {} (what it was computed from is no longer recorded)",
                key(old),
                key(new)
            ));
        }
        Ok(changes)
    }

    /// The run that executed the result a step record stands for, and that
    /// execution's key material: the record's own, or that of the run a
    /// reused result came from (none once that run is forgotten).
    fn execution_of(&self, run_id: &str, record: &StepRecord) -> Result<(String, Option<String>)> {
        if record.key_material.is_some() {
            return Ok((run_id.to_owned(), record.key_material.clone()));
        }
        let Some(source) = &record.reused_from else { return Ok((run_id.to_owned(), None)) };
        match self.step_record(source, &record.step) {
            Ok(executed) => Ok((source.clone(), executed.key_material)),
            Err(_) => Ok((source.clone(), None)),
        }
    }
}

/// The parameters whose values are not the same in every run.
fn differing_params(runs: &[RunDetail]) -> BTreeMap<String, Vec<Value>> {
    let mut names: Vec<&String> = runs.iter().filter_map(|run| run.params.as_object()).flat_map(|p| p.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter_map(|name| {
            let values: Vec<Value> =
                runs.iter().map(|run| run.params.get(name).cloned().unwrap_or(Value::Null)).collect();
            values.iter().any(|value| *value != values[0]).then(|| (name.clone(), values))
        })
        .collect()
}

/// Every step name of the runs: the first run's in order, then the others'.
fn step_names(runs: &[RunDetail]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for step in runs.iter().flat_map(|run| &run.steps) {
        if !names.contains(&step.step) {
            names.push(step.step.clone());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_best_low_and_scores_best_high() {
        for name in ["train.loss", "val_loss", "eval.mse", "rmse", "test-error", "perplexity"] {
            assert!(lower_is_better(name), "{name}");
        }
        for name in ["accuracy", "eval.f1", "auc", "lossless_ratio", "errands"] {
            assert!(!lower_is_better(name), "{name}");
        }
        let loss = MetricSummary::of("loss", &[0.9, 0.4, 0.5]).unwrap();
        assert_eq!((loss.last, loss.best, loss.points), (0.5, 0.4, 3));
        let accuracy = MetricSummary::of("accuracy", &[0.5, 0.8, 0.7]).unwrap();
        assert_eq!((accuracy.last, accuracy.best), (0.7, 0.8));
        assert_eq!(MetricSummary::of("loss", &[]), None);
    }
}
