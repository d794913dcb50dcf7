//! The `local` executor: jobs run on the engine's worker pool, in this process.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use super::{Done, Executor};
use crate::StepErrorKind;
use crate::engine::EngineInner;
use crate::events::EventSink;
use crate::step_exec::{self, Finished, Job, Workshop};

/// Runs jobs on the threads of the engine's pool (started by the first job,
/// so a run with nothing to execute starts no thread).
pub(crate) struct LocalExecutor {
    engine: Arc<EngineInner>,
}

impl LocalExecutor {
    /// An executor on `engine`'s pool.
    pub(crate) fn new(engine: Arc<EngineInner>) -> Self {
        Self { engine }
    }

    /// Runs `job` on the calling thread and reports it. The scratch
    /// directory goes to the store's janitor first, so that once the run has
    /// heard of every job, closing the engine finds it queued.
    pub(crate) fn execute_here(engine: &EngineInner, job: &Job, events: Option<Arc<dyn EventSink>>, done: Done) {
        let workshop =
            Workshop { store: &engine.store, runtime: &engine.runtime, natives: &engine.natives, events, staged: None };
        // Whatever happens in the job, the coordinator hears of it.
        let mut finished = catch_unwind(AssertUnwindSafe(|| step_exec::execute(&workshop, job)))
            .unwrap_or_else(|panic| step_exec::panicked(job, &*panic));
        step_exec::clean_up(&workshop, finished.scratch.take());
        done(finished);
    }
}

impl LocalExecutor {
    /// Runs `task` for an execution of `step` on a thread of the pool; if
    /// the pool cannot be started, the execution fails with the reason.
    pub(crate) fn spawn(&self, step: &str, done: Done, task: impl FnOnce(Done) + Send + 'static) {
        match self.engine.pool() {
            Ok(pool) => pool.spawn(move || task(done)),
            Err(err) => done(Finished::failure(step, StepErrorKind::Engine(err.to_string()))),
        }
    }
}

impl Executor for LocalExecutor {
    fn submit(&self, job: Job, events: Option<Arc<dyn EventSink>>, done: Done) {
        let engine = self.engine.clone();
        let step = job.spec.step.clone();
        self.spawn(&step, done, move |done| Self::execute_here(&engine, &job, events, done));
    }
}
