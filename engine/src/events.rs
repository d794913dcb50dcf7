//! Events of a run, delivered as they happen to an [`EventSink`].

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, OnceLock};

use crate::{RunStatus, StepStatus};

/// Something that happened during a run. Every event names its run.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event<'a> {
    /// The run started: its steps are planned and its inputs stored.
    RunStarted {
        /// The run's id.
        run: &'a str,
        /// The pipeline.
        pipeline: &'a str,
    },
    /// The run ended and is recorded in the history.
    RunFinished {
        /// The run's id.
        run: &'a str,
        /// How it ended.
        status: RunStatus,
    },
    /// A step started: it began executing on a worker, or its cached result
    /// is being reused (a reused step has the same start and finish pair).
    StepStarted {
        /// The run.
        run: &'a str,
        /// The step.
        step: &'a str,
    },
    /// A step reached its outcome (ran, cached, failed, skipped or cancelled).
    StepFinished {
        /// The run.
        run: &'a str,
        /// The step.
        step: &'a str,
        /// Its outcome.
        status: StepStatus,
    },
    /// An execution of a step (or of one entry of a map step) failed and
    /// will be tried again once `delay` is over.
    StepRetrying {
        /// The run.
        run: &'a str,
        /// The step.
        step: &'a str,
        /// For a map step, the entry.
        entry: Option<&'a str>,
        /// The attempt that failed: 1 for the first.
        attempt: u32,
        /// How many attempts the step may make in all.
        attempts: u32,
        /// Why it failed.
        error: &'a str,
        /// The wait before the next attempt.
        delay: std::time::Duration,
    },
    /// A step recorded a metric value.
    Metric {
        /// The run.
        run: &'a str,
        /// The step.
        step: &'a str,
        /// The metric's name.
        name: &'a str,
        /// The value.
        value: f64,
        /// Its position as the step gave it (an epoch, a batch), if it did.
        at: Option<u64>,
    },
    /// A step wrote to its stdout or stderr, as it ran: what the write
    /// kept under `limits.log`, as text (bytes that are not UTF-8 are
    /// replaced). The whole log is in the step's record once it settles.
    Log {
        /// The run.
        run: &'a str,
        /// The step.
        step: &'a str,
        /// Which of the two logs.
        stream: LogStream,
        /// What was written.
        text: &'a str,
    },
    /// A step reported progress.
    Progress {
        /// The run.
        run: &'a str,
        /// The step.
        step: &'a str,
        /// Units of work done.
        done: u64,
        /// Units of work in all.
        total: u64,
    },
}

/// One of a step's two logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    /// Its standard output.
    Stdout,
    /// Its standard error.
    Stderr,
}

impl LogStream {
    /// `stdout` or `stderr`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }
}

/// Receives a run's events, from the coordinator (the thread that called
/// [`Engine::run`](crate::Engine::run), or the run's own thread for
/// [`Engine::start`](crate::Engine::start)) and from worker threads, so it
/// must be `Send + Sync`; events of one step arrive in order, those of
/// steps running at once interleave. A sink that panics is not called again
/// for the rest of the run, and the run goes on: the panic is reported as a
/// warning of the run ([`RunReport::warnings`](crate::RunReport::warnings)).
/// To poll events instead, give a closure that sends them to a channel.
pub trait EventSink: Send + Sync {
    /// Handles one event; must not block for long.
    fn event(&self, event: &Event<'_>);
}

/// A closure is a sink: `RunOptions::new().events(Arc::new(|event: &Event<'_>| …))`.
impl<F: Fn(&Event<'_>) + Send + Sync> EventSink for F {
    fn event(&self, event: &Event<'_>) {
        self(event)
    }
}

/// An application's sink with its panics contained: user code can neither
/// kill a worker before it reports nor unwind out of a run.
pub(crate) struct GuardedSink {
    inner: Arc<dyn EventSink>,
    panicked: OnceLock<String>,
}

impl GuardedSink {
    pub(crate) fn new(inner: Arc<dyn EventSink>) -> Self {
        Self { inner, panicked: OnceLock::new() }
    }

    /// The message of the sink's first panic, if it panicked.
    pub(crate) fn panic(&self) -> Option<&str> {
        self.panicked.get().map(String::as_str)
    }
}

impl EventSink for GuardedSink {
    fn event(&self, event: &Event<'_>) {
        if self.panicked.get().is_some() {
            return;
        }
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| self.inner.event(event))) {
            let _ = self.panicked.set(crate::bridge::panic_text(&*panic));
        }
    }
}

/// An event with its text owned, to cross to another thread.
#[derive(Debug, Clone)]
pub(crate) enum OwnedEvent {
    RunStarted { run: String, pipeline: String },
    RunFinished { run: String, status: RunStatus },
    StepStarted { run: String, step: String },
    StepFinished { run: String, step: String, status: StepStatus },
    Metric { run: String, step: String, name: String, value: f64, at: Option<u64> },
    Progress { run: String, step: String, done: u64, total: u64 },
    Log { run: String, step: String, stream: LogStream, text: String },
    StepRetrying(Box<OwnedRetry>),
}

/// A [`Event::StepRetrying`] with its text owned.
#[derive(Debug, Clone)]
pub(crate) struct OwnedRetry {
    run: String,
    step: String,
    entry: Option<String>,
    attempt: u32,
    attempts: u32,
    error: String,
    delay: std::time::Duration,
}

impl OwnedEvent {
    /// A copy of `event`.
    pub(crate) fn of(event: &Event<'_>) -> Self {
        let own = |text: &str| text.to_owned();
        match *event {
            Event::RunStarted { run, pipeline } => Self::RunStarted { run: own(run), pipeline: own(pipeline) },
            Event::RunFinished { run, status } => Self::RunFinished { run: own(run), status },
            Event::StepStarted { run, step } => Self::StepStarted { run: own(run), step: own(step) },
            Event::StepFinished { run, step, status } => Self::StepFinished { run: own(run), step: own(step), status },
            Event::Metric { run, step, name, value, at } => {
                Self::Metric { run: own(run), step: own(step), name: own(name), value, at }
            }
            Event::Progress { run, step, done, total } => {
                Self::Progress { run: own(run), step: own(step), done, total }
            }
            Event::Log { run, step, stream, text } => {
                Self::Log { run: own(run), step: own(step), stream, text: own(text) }
            }
            Event::StepRetrying { run, step, entry, attempt, attempts, error, delay } => {
                Self::StepRetrying(Box::new(OwnedRetry {
                    run: own(run),
                    step: own(step),
                    entry: entry.map(own),
                    attempt,
                    attempts,
                    error: own(error),
                    delay,
                }))
            }
        }
    }

    /// The event it copies.
    pub(crate) fn event(&self) -> Event<'_> {
        match self {
            Self::RunStarted { run, pipeline } => Event::RunStarted { run, pipeline },
            Self::RunFinished { run, status } => Event::RunFinished { run, status: *status },
            Self::StepStarted { run, step } => Event::StepStarted { run, step },
            Self::StepFinished { run, step, status } => Event::StepFinished { run, step, status: *status },
            Self::Metric { run, step, name, value, at } => Event::Metric { run, step, name, value: *value, at: *at },
            Self::Progress { run, step, done, total } => Event::Progress { run, step, done: *done, total: *total },
            Self::Log { run, step, stream, text } => Event::Log { run, step, stream: *stream, text },
            Self::StepRetrying(retry) => Event::StepRetrying {
                run: &retry.run,
                step: &retry.step,
                entry: retry.entry.as_deref(),
                attempt: retry.attempt,
                attempts: retry.attempts,
                error: &retry.error,
                delay: retry.delay,
            },
        }
    }
}
