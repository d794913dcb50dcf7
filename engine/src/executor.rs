//! Executors: where a step execution runs. The coordinator plans, keys,
//! looks up the cache and records history; it hands each execution to an
//! [`Executor`] as a job and hears back, from any thread, what became of it.
//!
//! - `local`: a thread of the engine's pool, in this process (the default).
//! - `process`: a `weir worker` child process; a timeout kills the process,
//!   so the code needs no interruption checks and runs at full speed.
//! - `slurm`: a Slurm batch job running `weir worker` on a compute node,
//!   against the workspace's store on a shared file system.
//!
//! The executor is never part of a cache key: a result is the same wherever
//! it was computed.

mod job;
mod local;
mod process;
mod slurm;
mod worker;

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

pub(crate) use job::{CodeRef, JobSpec};
pub(crate) use local::LocalExecutor;
pub(crate) use process::{ProcessExecutor, WorkerPool};
pub(crate) use slurm::{Cluster, SlurmExecutor};
pub use slurm::{SlurmOptions, SlurmRequest};
pub use worker::serve_worker;

use crate::events::EventSink;
use crate::step_exec::{Finished, Job};

/// Where a step's execution is reported: called once, on any thread.
pub(crate) type Done = Box<dyn FnOnce(Finished) + Send>;

/// Runs jobs, here or elsewhere, and reports each one's result.
///
/// An executor that submits to another machine fits: `submit` returns at
/// once, and `done` is called when the result arrives; a job that is lost is
/// reported as failed with the reason.
pub(crate) trait Executor: Send + Sync {
    /// Starts `job`; `done` receives its result exactly once. Metrics and
    /// progress go to `events` as they happen.
    fn submit(&self, job: Job, events: Option<Arc<dyn EventSink>>, done: Done);
}

/// Which executor an engine runs steps with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ExecutorKind {
    /// Threads of the engine's worker pool, in this process.
    #[default]
    Local,
    /// Child processes running `COMMAND worker --workspace WORKSPACE`
    /// (`weir worker`), a few kept warm. A timeout kills the process, so
    /// guests under a timeout run without interruption checks; a crashed
    /// worker fails only its step. Native steps, and steps calling native
    /// functions the worker does not have built in, run in-process.
    Process {
        /// The `weir` binary.
        command: PathBuf,
    },
    /// Slurm batch jobs running `weir worker` on the cluster's nodes, which
    /// must see the workspace at the same path (checked by a probe job).
    /// Native steps, and steps calling native functions a worker does not
    /// have built in, run in-process.
    Slurm(SlurmOptions),
}

impl ExecutorKind {
    /// `local`, `process` or `slurm`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Process { .. } => "process",
            Self::Slurm(_) => "slurm",
        }
    }
}

impl FromStr for ExecutorKind {
    type Err = String;

    /// `local`, `process` or `slurm` (with this executable as the worker
    /// command, and Slurm's defaults).
    fn from_str(text: &str) -> Result<Self, String> {
        let this =
            || std::env::current_exe().map_err(|err| format!("finding this executable for `weir worker`: {err}"));
        match text {
            "local" => Ok(Self::Local),
            "process" => this().map(|command| Self::Process { command }),
            "slurm" => this().map(|command| Self::Slurm(SlurmOptions::new(command))),
            other => Err(format!("unknown executor `{other}` (known: local, process, slurm)")),
        }
    }
}
