//! The `process` executor: each job runs in a `weir worker` child process,
//! a few kept warm between jobs. The parent writes the job as a frame on
//! the worker's stdin and reads its metrics, progress and result from its
//! stdout. A worker that dies fails only its job; a cancelled job's worker
//! is killed.

use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};

use super::job::{CodeRef, Frame, JobSpec, read_frame, write_frame};
use super::{Done, Executor, LocalExecutor};
use crate::engine::EngineInner;
use crate::events::{Event, EventSink};
use crate::native::Natives;
use crate::step_exec::{self, Finished, Job};
use crate::tenant::StoreAccount;
use crate::{Artifact, OutputKind, StepErrorKind};

/// Idle worker processes of one engine, reused across its runs.
pub(crate) struct WorkerPool {
    command: PathBuf,
    workspace: PathBuf,
    idle: Mutex<Vec<Worker>>,
    /// The native functions built into a worker (`weir worker` registers no others).
    builtins: Natives,
}

/// A running `weir worker` and its pipes.
struct Worker {
    child: Arc<Mutex<Child>>,
    stdin: BufWriter<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        // Closing a worker's stdin ends it; reap it so no zombie is left.
        for worker in self.idle.get_mut().unwrap_or_else(PoisonError::into_inner).drain(..) {
            let Worker { child, stdin, stdout } = worker;
            drop((stdin, stdout));
            let _ = child.lock().unwrap_or_else(PoisonError::into_inner).wait();
        }
    }
}

impl WorkerPool {
    /// Workers started as `command worker --workspace workspace`.
    pub(crate) fn new(command: PathBuf, workspace: &Path) -> Self {
        Self {
            command,
            workspace: workspace.to_owned(),
            idle: Mutex::new(Vec::new()),
            builtins: Natives::with_builtins(),
        }
    }

    fn spawn(&self) -> std::io::Result<Worker> {
        let mut child = Command::new(&self.command)
            .arg("worker")
            .arg("--workspace")
            .arg(&self.workspace)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(std::io::Error::other("the worker's pipes were not opened"));
        };
        Ok(Worker { child: Arc::new(Mutex::new(child)), stdin: BufWriter::new(stdin), stdout: BufReader::new(stdout) })
    }

    /// Runs `job` in a worker process and returns what became of it.
    fn run(&self, job: &Job, events: Option<&dyn EventSink>) -> Finished {
        let mut worker = match self.hand_over(job) {
            Ok(worker) => worker,
            Err(finished) => return *finished,
        };
        let killer = worker.child.clone();
        let _kill_on_cancel = job.cancel.as_ref().map(|token| {
            token.on_cancel(move || {
                let _ = killer.lock().unwrap_or_else(PoisonError::into_inner).kill();
            })
        });
        loop {
            match read_frame::<Frame>(&mut worker.stdout) {
                Ok(Some(Frame::Metric { name, value, at })) => {
                    if let Some(sink) = events {
                        let (run, step) = (&job.spec.run_id, &job.spec.step);
                        sink.event(&Event::Metric { run, step, name: &name, value, at });
                    }
                }
                Ok(Some(Frame::Progress { done, total })) => {
                    if let Some(sink) = events {
                        sink.event(&Event::Progress { run: &job.spec.run_id, step: &job.spec.step, done, total });
                    }
                }
                Ok(Some(Frame::Log { stream, text })) => {
                    if let Some(sink) = events {
                        sink.event(&Event::Log { run: &job.spec.run_id, step: &job.spec.step, stream, text: &text });
                    }
                }
                Ok(Some(Frame::Done(finished))) => {
                    self.idle.lock().unwrap_or_else(PoisonError::into_inner).push(worker);
                    return *finished;
                }
                Ok(Some(Frame::Abandoned(finished))) => {
                    // The worker stopped the job (a timeout, a quota) and exits.
                    let _ = worker.child.lock().unwrap_or_else(PoisonError::into_inner).wait();
                    return *finished;
                }
                Ok(None) => return self.lost(job, worker, "it exited"),
                Err(err) => return self.lost(job, worker, &format!("its answer was unreadable ({err})")),
            }
        }
    }

    /// A worker that has been sent `job`: an idle one, or a new one if none
    /// is idle or the idle one turns out to have died in the meantime (the
    /// job is sent again, since nothing ran). Its failure, when no worker
    /// can be had.
    fn hand_over(&self, job: &Job) -> Result<Worker, Box<Finished>> {
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        if let Some(mut worker) = idle {
            if write_frame(&mut worker.stdin, &job.spec).is_ok() {
                return Ok(worker);
            }
            let _ = worker.child.lock().unwrap_or_else(PoisonError::into_inner).wait();
        }
        let mut worker = self.spawn().map_err(|err| {
            let why = format!("starting a worker process ({}): {err}", self.command.display());
            Box::new(step_exec::failed(job, StepErrorKind::Engine(why), String::new()))
        })?;
        if let Err(err) = write_frame(&mut worker.stdin, &job.spec) {
            return Err(Box::new(self.lost(job, worker, &format!("sending it the job failed: {err}"))));
        }
        Ok(worker)
    }

    /// The result of a job whose worker ended without a result: cancelled
    /// if the run was (the worker was killed for it), else failed.
    fn lost(&self, job: &Job, worker: Worker, what: &str) -> Finished {
        let mut child = worker.child.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = child.kill();
        let status = child.wait().map_or_else(|err| err.to_string(), |status| status.to_string());
        if job.cancel.as_ref().is_some_and(crate::CancelToken::is_cancelled) {
            return step_exec::cancelled(job);
        }
        let why = format!("its worker process died while executing it: {what} ({status})");
        step_exec::failed(job, StepErrorKind::Engine(why), String::new())
    }
}

/// Sends jobs to worker processes; those a worker cannot run (native steps,
/// and steps calling native functions it does not have built in) run here.
pub(crate) struct ProcessExecutor {
    engine: Arc<EngineInner>,
    workers: Arc<WorkerPool>,
    local: LocalExecutor,
}

impl ProcessExecutor {
    pub(crate) fn new(engine: Arc<EngineInner>, workers: Arc<WorkerPool>) -> Self {
        Self { local: LocalExecutor::new(engine.clone()), engine, workers }
    }
}

/// Whether a `weir worker` process, whose native functions are `builtins`,
/// can run `job`: a module (its bytes are in the store) calling only native
/// functions the worker has in the same version as this process.
pub(super) fn worker_can_run(engine: &EngineInner, builtins: &Natives, job: &Job) -> bool {
    matches!(job.spec.code, CodeRef::Module { .. })
        && job.spec.natives.iter().all(|name| {
            builtins.function(name).is_some_and(|builtin| {
                engine.natives.function(name).is_some_and(|ours| ours.version() == builtin.version())
            })
        })
}

impl Executor for ProcessExecutor {
    fn submit(&self, job: Job, events: Option<Arc<dyn EventSink>>, done: Done) {
        if !worker_can_run(&self.engine, &self.workers.builtins, &job) {
            return self.local.submit(job, events, done);
        }
        let (engine, workers, step) = (self.engine.clone(), self.workers.clone(), job.spec.step.clone());
        // A pool thread waits for the worker process: admission already
        // bounds how many jobs are in flight.
        self.local.spawn(&step, done, move |done| {
            let finished = workers.run(&job, events.as_deref());
            done(charge_tenant(&engine, &job.spec, job.store_account.as_ref(), finished));
        });
    }
}

/// Charges what a worker stored to the tenant's account (the worker saw only
/// a budget). What does not fit fails the step, and its cache entry is
/// dropped so that the tenant does not keep what it may not hold.
pub(super) fn charge_tenant(
    engine: &EngineInner,
    spec: &JobSpec,
    account: Option<&Arc<StoreAccount>>,
    mut finished: Finished,
) -> Finished {
    let (Some(account), Ok(outputs)) = (account, &finished.outputs) else { return finished };
    let mut artifacts: Vec<Artifact> = outputs.values().copied().collect();
    if let Some(logs) = &finished.logs {
        artifacts.extend([logs.stdout, logs.stderr].map(|digest| Artifact { kind: OutputKind::File, digest }));
    }
    let charged = account.charge(&artifacts, |artifact| engine.store.artifact_size(artifact));
    let kind = match charged {
        Ok(Ok(())) => return finished,
        Ok(Err(quota)) => quota,
        Err(err) => StepErrorKind::Engine(err.to_string()),
    };
    if spec.record
        && let Err(err) = engine.store.cache_remove(&spec.key)
    {
        finished.warnings.push(err.to_string());
    }
    Finished {
        outputs: Err(crate::StepError { step: spec.step.clone(), kind, stderr_tail: String::new() }),
        ..finished
    }
}
