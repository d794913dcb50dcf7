//! `weir worker`: the process end of the `process` executor. It reads jobs
//! as frames on stdin, one at a time, executes each against the workspace's
//! store, and writes its metrics, progress and result as frames on stdout.
//!
//! Code under a timeout is compiled without interruption checks: a watchdog
//! thread checks the timeout and the `/out` quotas, and on a breach reports
//! it and ends the process (the parent starts another worker).

use std::io::{self, BufReader, BufWriter, Stdout, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cap_std::fs::Dir;

use super::job::{CodeRef, Frame, JobSpec, read_frame, write_frame};
use crate::events::{Event, EventSink};
use crate::limits::OutputUsage;
use crate::native::Natives;
use crate::runtime::{Flavor, Runtime};
use crate::step_exec::{self, Finished, Job, JobCode, Workshop};
use crate::store::Scratch;
use crate::tenant::StoreAccount;
use crate::{Error, Limits, Result, StepErrorKind, Store};

/// How often the watchdog looks at a running job.
const WATCH_EVERY: Duration = Duration::from_millis(50);
/// How often metric and progress frames are pushed to the parent.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// Serves jobs from stdin until it closes: the body of `weir worker`.
pub fn serve_worker(workspace: &Path) -> Result<()> {
    let store = Store::open(workspace)?;
    // One job at a time.
    let runtime = Runtime::new(&store.path_of("compiled"), &store.secret()?, 1)?;
    let natives = Arc::new(Natives::with_builtins());
    let out = Arc::new(Output::default());
    let mut input = BufReader::new(io::stdin().lock());
    let broken = |err: io::Error| Error::Io { context: "talking to the parent process".into(), source: err };
    while let Some(spec) = read_frame::<JobSpec>(&mut input).map_err(broken)? {
        let job = Job {
            code: match code_of(&spec, &store, &runtime, &natives) {
                Ok(code) => code,
                Err(kind) => {
                    let failed = Finished::failure(&spec.step, kind);
                    out.finish(Frame::Done(Box::new(failed))).map_err(broken)?;
                    continue;
                }
            },
            store_account: spec.store_budget.as_ref().map(|(tenant, budget)| {
                Arc::new(StoreAccount::new(tenant.as_str().into(), *budget, Default::default(), 0))
            }),
            cancel: None,
            spec,
        };
        out.open();
        let watchdog = Watchdog::start(&job.spec, out.clone());
        let staged = |scratch: &Scratch| watchdog.watch(scratch);
        let sink: Arc<dyn EventSink> = Arc::new(FrameSink { out: out.clone() });
        let workshop =
            Workshop { store: &store, runtime: &runtime, natives: &natives, events: Some(sink), staged: Some(&staged) };
        let mut finished = step_exec::execute(&workshop, &job);
        finished.placement = slurm_placement();
        let scratch = finished.scratch.take();
        out.finish(Frame::Done(Box::new(finished))).map_err(broken)?;
        step_exec::clean_up(&workshop, scratch);
        watchdog.stop();
    }
    Ok(())
}

/// Where this worker runs, when it is a Slurm job: the job and node its
/// environment names.
fn slurm_placement() -> Option<crate::Placement> {
    let var = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    let job = match (var("SLURM_ARRAY_JOB_ID"), var("SLURM_ARRAY_TASK_ID")) {
        (Some(array), Some(task)) => format!("{array}_{task}"),
        _ => var("SLURM_JOB_ID")?,
    };
    Some(crate::Placement {
        executor: "slurm".into(),
        job,
        node: var("SLURMD_NODENAME"),
        state: "COMPLETED".into(),
        exit_code: None,
        submissions: 1,
    })
}

/// The code of `spec`, prepared here: a module from the store, compiled
/// without interruption checks, or a built-in native step.
fn code_of(spec: &JobSpec, store: &Store, runtime: &Runtime, natives: &Natives) -> Result<JobCode, StepErrorKind> {
    match &spec.code {
        CodeRef::Module { digest } => {
            let program = runtime
                .prepare_stored(store, *digest, Flavor::killed_on_timeout(&spec.limits))
                .map_err(|why| StepErrorKind::Engine(format!("preparing its module: {why}")))?;
            Ok(JobCode::Wasm(program))
        }
        CodeRef::Native { name, .. } => natives
            .step(name)
            .cloned()
            .map(JobCode::Native)
            .ok_or_else(|| StepErrorKind::Engine(format!("native step `{name}` is not built into the worker"))),
    }
}

/// The worker's stdout, shared by the job's thread, its event sink and the
/// watchdog: whoever ends the job first writes its last frame.
#[derive(Default)]
struct Output {
    state: Mutex<OutputState>,
}

struct OutputState {
    writer: BufWriter<Stdout>,
    /// Whether a job is running (its last frame not yet written).
    open: bool,
    last_flush: Instant,
}

impl Default for OutputState {
    fn default() -> Self {
        Self { writer: BufWriter::new(io::stdout()), open: false, last_flush: Instant::now() }
    }
}

impl Output {
    fn lock(&self) -> std::sync::MutexGuard<'_, OutputState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn open(&self) {
        self.lock().open = true;
    }

    /// Writes the job's last frame, unless the watchdog already did.
    fn finish(&self, frame: Frame) -> io::Result<()> {
        let mut state = self.lock();
        state.open = false;
        write_frame(&mut state.writer, &frame)?;
        state.writer.flush()
    }

    /// Writes a metric or progress frame of the running job; flushes at most
    /// every [`FLUSH_EVERY`], so a chatty guest does not make a write a report.
    fn event(&self, frame: &Frame) {
        let mut state = self.lock();
        if !state.open || write_frame(&mut state.writer, frame).is_err() {
            return;
        }
        if state.last_flush.elapsed() >= FLUSH_EVERY {
            let _ = state.writer.flush();
            state.last_flush = Instant::now();
        }
    }

    /// Reports that the job broke `kind` and ends the process: the guest
    /// has no interruption checks, so only its process can stop it.
    fn abandon(&self, step: &str, kind: StepErrorKind) {
        let mut state = self.lock();
        if !state.open {
            return;
        }
        let _ = write_frame(&mut state.writer, &Frame::Abandoned(Box::new(Finished::failure(step, kind))));
        let _ = state.writer.flush();
        std::process::exit(0);
    }
}

/// Sends a job's metrics, progress and log writes to the parent.
struct FrameSink {
    out: Arc<Output>,
}

impl EventSink for FrameSink {
    fn event(&self, event: &Event<'_>) {
        match event {
            Event::Metric { name, value, at, .. } => {
                self.out.event(&Frame::Metric { name: (*name).to_owned(), value: *value, at: *at })
            }
            Event::Progress { done, total, .. } => self.out.event(&Frame::Progress { done: *done, total: *total }),
            Event::Log { stream, text, .. } => {
                self.out.event(&Frame::Log { stream: *stream, text: (*text).to_owned() })
            }
            _ => {}
        }
    }
}

/// Watches one job: its timeout, and its `/out` quotas once it is staged.
struct Watchdog {
    out_dir: Arc<Mutex<Option<Dir>>>,
    stopped: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    fn start(spec: &JobSpec, out: Arc<Output>) -> Self {
        let out_dir: Arc<Mutex<Option<Dir>>> = Arc::default();
        let stopped = Arc::new(AtomicBool::new(false));
        let (watched, stop, limits, step) = (out_dir.clone(), stopped.clone(), spec.limits, spec.step.clone());
        let started = Instant::now();
        let thread = std::thread::Builder::new()
            .name("weir-watchdog".into())
            .spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    std::thread::sleep(WATCH_EVERY);
                    if let Some(kind) = breach(started, &limits, &watched) {
                        out.abandon(&step, kind);
                    }
                }
            })
            .ok();
        Self { out_dir, stopped, thread }
    }

    /// Watches `/out` in the job's scratch directory from now on.
    fn watch(&self, scratch: &Scratch) {
        let dir = scratch.out_dir.try_clone().ok();
        *self.out_dir.lock().unwrap_or_else(PoisonError::into_inner) = dir;
    }

    fn stop(mut self) {
        self.stopped.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The limit a running job passed, if any.
fn breach(started: Instant, limits: &Limits, out_dir: &Mutex<Option<Dir>>) -> Option<StepErrorKind> {
    if limits.interruptible() && started.elapsed() >= limits.timeout {
        return Some(StepErrorKind::Timeout { limit: limits.timeout });
    }
    let out_dir = out_dir.lock().unwrap_or_else(PoisonError::into_inner);
    OutputUsage::check(out_dir.as_ref()?, limits)
}
