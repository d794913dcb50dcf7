//! `weir status` / `weir run --dry-run`: which steps of a pipeline would
//! execute and why, found without executing anything or writing to the
//! workspace.
//!
//! A status is a read-only run (inputs hashed, not stored; the history kept
//! in memory) whose refusals are read as "would run": a step whose cache
//! key has a result is up to date; one whose key has none would run, for the
//! reasons `explain` gives (compared with the step's latest execution); a
//! step after one that would run would run too, its inputs being unknown
//! until then.

use serde::Serialize;

use crate::history::Execution;
use crate::{Engine, Pipeline, Result, RunOptions, StepErrorKind, StepRecord, StepStatus};

/// What a run of a pipeline would do now, step by step.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct PipelineStatus {
    /// The pipeline's name.
    pub pipeline: String,
    /// Whether no step (of those requested) would run.
    pub up_to_date: bool,
    /// Every step, in the order a run lists them.
    pub steps: Vec<StepStatusLine>,
}

/// Whether one step would run, and why.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct StepStatusLine {
    /// The step.
    pub step: String,
    /// `up_to_date`, `would_run`, or `not_requested` (with targets).
    pub status: Freshness,
    /// Its cache key, when its inputs are known (they are not after a step
    /// that would run).
    pub cache_key: Option<crate::Digest>,
    /// For an up-to-date step, the run whose result it reuses.
    pub reused_from: Option<String>,
    /// For a step that would run, the execution it was compared with.
    pub compared_with: Option<String>,
    /// Why, in words (as `weir explain` says them).
    pub reasons: Vec<String>,
}

/// Whether a step would run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Freshness {
    /// Its result is in the cache: a run reuses it.
    UpToDate,
    /// A run would execute it (or some entries of a map step).
    WouldRun,
    /// The targets asked for do not need it.
    NotRequested,
}

impl Engine {
    /// What a run of `pipeline` with `options` would do now: for each step,
    /// whether it would run or be reused and why. Executes nothing and
    /// writes nothing (the run's inputs are hashed, not stored).
    ///
    /// Returns `Err` where a run would (invalid parameters, unreadable
    /// inputs, an unknown tenant).
    pub fn status(&self, pipeline: &Pipeline, options: &RunOptions) -> Result<PipelineStatus> {
        let report = self.run(pipeline, &options.clone().read_only(true))?;
        let Some(record) = report.record else {
            return Err(crate::Error::Runtime("a read-only run came back without its record".into()));
        };
        let history = self.history();
        let mut steps = Vec::with_capacity(record.steps.len());
        for step in &record.steps {
            let line = match (step.status, step.details.error_kind.as_ref()) {
                (StepStatus::Cached, _) => StepStatusLine {
                    reused_from: step.reused_from.clone(),
                    reasons: vec![match &step.reused_from {
                        Some(run) => format!("reuses the result of run {run}"),
                        None => "its result is in the cache".to_owned(),
                    }],
                    ..StepStatusLine::new(step, Freshness::UpToDate)
                },
                (StepStatus::NotRequested, _) => StepStatusLine {
                    reasons: vec!["not needed by the steps asked for".to_owned()],
                    ..StepStatusLine::new(step, Freshness::NotRequested)
                },
                (StepStatus::Skipped, _) => {
                    let after = step.details.blocked_by.as_deref().unwrap_or("a step before it");
                    let reason = format!("after `{after}`, which would run: its inputs are not known until then");
                    StepStatusLine { reasons: vec![reason], ..StepStatusLine::new(step, Freshness::WouldRun) }
                }
                (_, kind) => {
                    let execution = Execution {
                        pipeline: &record.summary.pipeline,
                        tenant: &record.summary.tenant,
                        step: &step.step,
                        before: f64::INFINITY,
                        key_material: step.key_material.as_deref(),
                        params: &record.params,
                        forced: step.forced.as_deref(),
                    };
                    let (compared_with, mut reasons) = history.why_executes(&execution)?;
                    if let Some(entries) = entries_to_run(step) {
                        reasons.insert(0, entries);
                    }
                    if let Some(kind) = kind.filter(|kind| **kind != StepErrorKind::ReadOnly) {
                        reasons.insert(0, format!("its cached result cannot be used: {kind}"));
                    }
                    StepStatusLine { compared_with, reasons, ..StepStatusLine::new(step, Freshness::WouldRun) }
                }
            };
            steps.push(line);
        }
        let up_to_date = steps.iter().all(|step| step.status != Freshness::WouldRun);
        Ok(PipelineStatus { pipeline: record.summary.pipeline, up_to_date, steps })
    }
}

impl StepStatusLine {
    fn new(step: &StepRecord, status: Freshness) -> Self {
        StepStatusLine {
            step: step.step.clone(),
            status,
            cache_key: step.cache_key,
            reused_from: None,
            compared_with: None,
            reasons: Vec::new(),
        }
    }
}

/// For a map step, how many of its entries would run, in words.
fn entries_to_run(step: &StepRecord) -> Option<String> {
    if step.entries.is_empty() {
        return None;
    }
    let reused = step.entries.values().filter(|entry| entry.status == StepStatus::Cached).count();
    let total = step.entries.len();
    Some(format!("{} of its {total} entries would run ({reused} up to date)", total - reused))
}
