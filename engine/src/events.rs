//! Events of a run, delivered as they happen to an [`EventSink`].

use crate::StepStatus;

/// Something that happened during a run.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A step started executing on a worker.
    StepStarted {
        /// The step.
        step: &'a str,
    },
    /// A step reached its outcome (ran, cached, failed or skipped).
    StepFinished {
        /// The step.
        step: &'a str,
        /// Its outcome.
        status: StepStatus,
    },
    /// A step recorded a metric value.
    Metric {
        /// The step.
        step: &'a str,
        /// The metric's name.
        name: &'a str,
        /// The value.
        value: f64,
    },
    /// A step reported progress.
    Progress {
        /// The step.
        step: &'a str,
        /// Units of work done.
        done: u64,
        /// Units of work in all.
        total: u64,
    },
}

/// Receives a run's events, from the coordinator and from worker threads.
pub trait EventSink: Send + Sync {
    /// Handles one event; must not block for long.
    fn event(&self, event: &Event<'_>);
}
