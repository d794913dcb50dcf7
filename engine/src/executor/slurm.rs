//! The `slurm` executor: each execution is a Slurm batch job running
//! `weir worker` on a compute node, against the workspace's store on a file
//! system every node mounts. The coordinator stays where `weir run` runs: it
//! plans, keys, looks up the cache and records history as always; only the
//! execution moves.
//!
//! A job reads its spec from a file and writes its frames (metrics,
//! progress, log writes, the result) to another, both in the store's
//! `slurm/` directory. One tracker thread per engine submits jobs, reads
//! their frames as they are written (so a short step ends as soon as its
//! result is on disk, not at the next poll), and asks `squeue` about all of
//! them once per poll interval. A job that leaves the queue without a result
//! (its node failed, it was pre-empted, its worker was killed) is submitted
//! again up to `retries` times; one cancelled from outside fails its step
//! with Slurm's state and reason. Jobs are named by their cache key (job
//! arrays by their map step, each task's spec naming its entry's key), so a
//! coordinator started again finds a job still queued for the same key and
//! adopts it instead of submitting it twice.

mod cluster;
mod request;

pub use request::SlurmRequest;

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::job::{Frame, JobSpec, read_frame, write_frame};
use super::process::{charge_tenant, worker_can_run};
use super::{Done, Executor, LocalExecutor};
use crate::cancel::WakerGuard;
use crate::engine::EngineInner;
use crate::events::{Event, EventSink};
use crate::step_exec::{self, Finished, Job};
use crate::{Error, Placement, Result, StepErrorKind};

/// How the `slurm` executor submits jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SlurmOptions {
    /// The `weir` binary the nodes run (`weir worker`), at the same path on
    /// every node.
    pub command: PathBuf,
    /// The partition, account, qos and constraint of every job whose
    /// pipeline or step does not set its own.
    pub request: SlurmRequest,
    /// How many times a job lost by the cluster is submitted again.
    pub retries: u32,
    /// How often `squeue` is asked about the jobs (backing off to 4× while
    /// nothing changes).
    pub poll: Duration,
    /// Whether the entries of a map step submitted together go as one job
    /// array (`--array`) rather than one job each.
    pub arrays: bool,
}

impl SlurmOptions {
    /// Jobs running `command` with the defaults: no partition or account
    /// (the cluster's defaults), 2 retries, a 2-second poll, map entries as
    /// job arrays.
    pub fn new(command: PathBuf) -> Self {
        Self { command, request: SlurmRequest::default(), retries: 2, poll: Duration::from_secs(2), arrays: true }
    }
}

/// Memory a worker needs besides its guest's limit.
const WORKER_MEMORY: u64 = 256 << 20;
/// Time a job is given besides its step's timeout (start-up, storing results).
const WORKER_TIME: Duration = Duration::from_secs(120);
/// How often the tracker reads the jobs' result files.
const READ_EVERY: Duration = Duration::from_millis(40);
/// How long the tracker lets submissions gather before taking them, so that
/// the entries of a map step go out together (as one array): it waits while
/// more keep arriving, up to [`GATHER_MAX`].
const GATHER: Duration = Duration::from_millis(15);
/// The longest the tracker lets a burst of submissions gather.
const GATHER_MAX: Duration = Duration::from_millis(500);
/// How long a successful probe of the shared file system is trusted.
const PROBE_VALID: Duration = Duration::from_secs(24 * 3600);

/// The engine's connection to the cluster: where job files go, and the
/// tracker thread.
pub(crate) struct Cluster {
    options: SlurmOptions,
    /// The native functions built into a worker.
    builtins: crate::native::Natives,
    workspace: PathBuf,
    dir: PathBuf,
    /// The most tasks one job array may have (the cluster's `MaxArraySize`;
    /// 0 when arrays are off).
    max_array: usize,
    /// The most tasks of one job array that run at once (`--array=…%K`),
    /// and the most other jobs in the cluster's queue at once: `--jobs`.
    throttle: usize,
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Default)]
struct State {
    /// Jobs to submit (or adopt).
    queued: Vec<Tracked>,
    /// Jobs (not array tasks) held back while `throttle` others are in the
    /// cluster's queue, in the order they came.
    held: std::collections::VecDeque<Tracked>,
    /// Jobs submitted, by Slurm job id.
    running: HashMap<String, Tracked>,
    stopping: bool,
}

/// A job the tracker follows.
struct Tracked {
    job: Job,
    events: Option<Arc<dyn EventSink>>,
    done: Option<Done>,
    name: String,
    spec_file: PathBuf,
    frames: PathBuf,
    read: u64,
    buffer: Vec<u8>,
    placement: Placement,
    reason: String,
    _cancel: Option<WakerGuard>,
}

impl Cluster {
    /// Connects to the cluster of this machine's Slurm commands, checking
    /// once a day that its nodes see `workspace` (a probe job). `throttle`
    /// bounds each job array's running tasks and the other jobs queued.
    pub(crate) fn connect(options: SlurmOptions, workspace: &Path, throttle: usize) -> Result<Arc<Cluster>> {
        let dir = workspace.join("slurm");
        std::fs::create_dir_all(&dir).map_err(|err| Error::io(format!("creating {}", dir.display()))(err))?;
        let trusted = dir.join("probed");
        let fresh = std::fs::metadata(&trusted)
            .and_then(|meta| meta.modified())
            .is_ok_and(|when| when.elapsed().is_ok_and(|age| age < PROBE_VALID));
        if !fresh {
            let probe = dir.join(format!("probe-{}", crate::new_run_id()));
            std::fs::write(&probe, b"").map_err(|err| Error::io(format!("writing {}", probe.display()))(err))?;
            let probed = cluster::probe(&probe, &options.request.args(), Duration::from_secs(300));
            let _ = std::fs::remove_file(&probe);
            probed?;
            let _ = std::fs::write(&trusted, b"");
        }
        let shared = Arc::new(Shared { state: Mutex::new(State::default()), wake: Condvar::new() });
        let builtins = crate::native::Natives::with_builtins();
        // Slurm's own default when `scontrol` does not say.
        let max_array = if options.arrays { cluster::max_array_size().unwrap_or(1001) } else { 0 };
        let workspace = workspace.to_owned();
        let cluster = Arc::new(Cluster { options, builtins, workspace, dir, max_array, throttle, shared });
        let tracker = cluster.clone();
        std::thread::Builder::new()
            .name("weir-slurm".into())
            .spawn(move || tracker.track())
            .map_err(|err| Error::Runtime(format!("starting the Slurm tracker: {err}")))?;
        Ok(cluster)
    }

    /// Stops the tracker (the engine is dropped); jobs still queued go on.
    pub(crate) fn stop(&self) {
        self.lock().stopping = true;
        self.shared.wake.notify_all();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn enqueue(&self, job: Job, events: Option<Arc<dyn EventSink>>, done: Done) {
        let key = job.spec.key.hex();
        let stem = format!("{}-{}", job.spec.run_id, &key[..32]);
        let tracked = Tracked {
            name: format!("weir-{}", &key[..24]),
            spec_file: self.dir.join(format!("{stem}.job")),
            frames: self.dir.join(format!("{stem}.frames")),
            read: 0,
            buffer: Vec::new(),
            placement: Placement {
                executor: "slurm".into(),
                job: String::new(),
                node: None,
                state: "PENDING".into(),
                exit_code: None,
                submissions: 0,
            },
            reason: String::new(),
            _cancel: None,
            events,
            done: Some(done),
            job,
        };
        self.lock().queued.push(tracked);
        self.shared.wake.notify_all();
    }

    /// The tracker: submits, reads results, polls, until told to stop.
    fn track(&self) {
        let mut next_poll = Instant::now();
        let mut interval = self.options.poll;
        loop {
            let gathering = {
                let mut state = self.lock();
                while state.queued.is_empty() && state.running.is_empty() && state.held.is_empty() && !state.stopping {
                    state = self.shared.wake.wait(state).unwrap_or_else(PoisonError::into_inner);
                }
                if state.stopping {
                    return;
                }
                !state.queued.is_empty()
            };
            if gathering {
                self.gather();
            }
            let queued = std::mem::take(&mut self.lock().queued);
            if !queued.is_empty() {
                self.submit_all(queued);
            }
            let mut changed = self.read_results();
            if Instant::now() >= next_poll {
                changed |= self.poll();
                interval = if changed { self.options.poll } else { (interval * 2).min(self.options.poll * 4) };
                next_poll = Instant::now() + interval;
            }
            self.release_held();
            let state = self.lock();
            if state.queued.is_empty() && !state.stopping {
                let _ = self.shared.wake.wait_timeout(state, READ_EVERY);
            }
        }
    }

    /// Waits while submissions keep arriving (a map step's entries are
    /// handed over one by one), for at most [`GATHER_MAX`].
    fn gather(&self) {
        let started = Instant::now();
        let mut seen = 0;
        loop {
            std::thread::sleep(GATHER);
            let queued = self.lock().queued.len();
            if queued == seen || started.elapsed() >= GATHER_MAX {
                return;
            }
            seen = queued;
        }
    }

    /// Submits `jobs`: those of one step with the same resources as one job
    /// array, the others one by one (held back beyond the throttle),
    /// adopting those whose key a job still queued has.
    fn submit_all(&self, jobs: Vec<Tracked>) {
        let groups = in_arrays(jobs, self.max_array, |a: &Tracked, b: &Tracked| {
            let (a, b) = (&a.job.spec, &b.job.spec);
            (a.run_id == b.run_id && a.step == b.step && a.gpus == b.gpus && a.slurm == b.slurm)
                && (a.limits.memory == b.limits.memory && a.limits.timeout == b.limits.timeout)
        });
        let (arrays, singles): (Vec<_>, Vec<_>) = groups.into_iter().partition(|group| group.len() > 1);
        for group in arrays {
            let rest = self.adopt_array_tasks(group);
            if !rest.is_empty() {
                self.submit_array(rest);
            }
        }
        let singles: Vec<Tracked> = singles.into_iter().flatten().collect();
        let names: Vec<String> = singles.iter().map(|tracked| tracked.name.clone()).collect();
        let queued = cluster::squeue(&names).unwrap_or_default();
        for mut tracked in singles {
            let adoptable = queued
                .iter()
                .find(|listed| listed.name == tracked.name && !listed.ended() && Path::new(&listed.comment).exists());
            match adoptable {
                Some(listed) => {
                    tracked.frames = PathBuf::from(&listed.comment);
                    tracked.placement.submissions = 1;
                    self.follow(tracked, Ok(listed.id.clone()));
                }
                None => self.lock().held.push_back(tracked),
            }
        }
        self.release_held();
    }

    /// Submits held jobs while fewer than `throttle` jobs (array tasks
    /// aside) are in the cluster's queue; a held job whose run was
    /// cancelled meanwhile ends as cancelled, never submitted.
    fn release_held(&self) {
        loop {
            let mut state = self.lock();
            let queued = || state.running.values().filter(|tracked| !tracked.name.starts_with(ARRAY_PREFIX)).count();
            if state.held.is_empty() || queued() >= self.throttle {
                return;
            }
            let Some(mut tracked) = state.held.pop_front() else { return };
            drop(state);
            if tracked.job.cancel.as_ref().is_some_and(crate::CancelToken::is_cancelled) {
                let finished = step_exec::cancelled(&tracked.job);
                self.report(tracked, finished);
                continue;
            }
            let submitted = self.sbatch(&mut tracked);
            self.follow(tracked, submitted);
        }
    }

    /// Follows the tasks of job arrays that run entries of `group` (a map
    /// step's), submitted by a coordinator that was then restarted: each
    /// live task of the step's arrays whose spec has the key of an entry.
    /// Returns the entries no task runs.
    fn adopt_array_tasks(&self, group: Vec<Tracked>) -> Vec<Tracked> {
        let name = array_name(&group[0].job.spec.step);
        let listed = cluster::squeue(std::slice::from_ref(&name)).unwrap_or_default();
        let mut running: HashMap<crate::Digest, (String, PathBuf)> = HashMap::new();
        for task in listed.iter().filter(|task| !task.ended() && !task.comment.is_empty()) {
            let Some((_, index)) = task.id.split_once('_') else { continue };
            let spec_file = PathBuf::from(format!("{}-{index}.job", task.comment));
            let spec = File::open(&spec_file).ok().and_then(|mut file| read_frame::<JobSpec>(&mut file).ok().flatten());
            if let Some(spec) = spec {
                running.insert(spec.key, (task.id.clone(), spec_file));
            }
        }
        let mut rest = Vec::new();
        for mut tracked in group {
            match running.remove(&tracked.job.spec.key) {
                Some((id, spec_file)) => {
                    tracked.frames = spec_file.with_extension("frames");
                    tracked.spec_file = spec_file;
                    tracked.name.clone_from(&name);
                    tracked.placement.submissions = 1;
                    self.follow(tracked, Ok(id));
                }
                None => rest.push(tracked),
            }
        }
        rest
    }

    /// Writes a job's spec where its worker reads it, and clears its results.
    fn write_spec(tracked: &mut Tracked) -> Result<()> {
        let writing = |path: &Path| Error::io(format!("writing {}", path.display()));
        let mut file = File::create(&tracked.spec_file).map_err(writing(&tracked.spec_file))?;
        write_frame(&mut file, &tracked.job.spec).map_err(writing(&tracked.spec_file))?;
        let _ = std::fs::remove_file(&tracked.frames);
        tracked.read = 0;
        tracked.buffer.clear();
        tracked.placement.submissions += 1;
        tracked.placement.exit_code = None;
        Ok(())
    }

    /// The `sbatch` options of a job (or array) named `name` running `spec`'s
    /// kind of execution: `worker` is the worker's stdin and stdout, as the
    /// batch script's shell spells them.
    fn job_args(&self, spec: &JobSpec, name: &str, comment: &Path, worker: (String, String)) -> Vec<String> {
        let mut args = vec![
            "--parsable".to_owned(),
            format!("--job-name={name}"),
            format!("--comment={}", comment.display()),
            "--cpus-per-task=1".to_owned(),
            format!("--mem={}M", (spec.limits.memory + WORKER_MEMORY).div_ceil(1 << 20)),
        ];
        if spec.limits.timeout != crate::Limits::NO_TIMEOUT {
            args.push(format!("--time={}", (spec.limits.timeout + WORKER_TIME).as_secs().div_ceil(60)));
        }
        if spec.gpus > 0 {
            args.push(format!("--gres=gpu:{}", spec.gpus));
        }
        args.extend(spec.slurm.over(&self.options.request).args());
        args.push(format!(
            "--wrap=exec {} worker --workspace {} < {} > {}",
            cluster::quote(&self.options.command.display().to_string()),
            cluster::quote(&self.workspace.display().to_string()),
            worker.0,
            worker.1,
        ));
        args
    }

    /// Writes the job's spec and submits it.
    fn sbatch(&self, tracked: &mut Tracked) -> Result<String> {
        Self::write_spec(tracked)?;
        let quoted = |path: &Path| cluster::quote(&path.display().to_string());
        let worker = (quoted(&tracked.spec_file), quoted(&tracked.frames));
        let mut args = self.job_args(&tracked.job.spec, &tracked.name, &tracked.frames, worker);
        args.insert(1, format!("--output={}", tracked.frames.with_extension("log").display()));
        cluster::sbatch(&args)
    }

    /// Submits `group` (entries of one map step) as one job array: task `t`
    /// runs the group's `t`-th job, whose files are `STEM-t.job` and `STEM-t.frames`.
    fn submit_array(&self, mut group: Vec<Tracked>) {
        let stem = self.dir.join(format!("{}-array-{}", group[0].job.spec.run_id, &group[0].job.spec.key.hex()[..16]));
        let name = array_name(&group[0].job.spec.step);
        let mut written = Ok(());
        for (task, tracked) in group.iter_mut().enumerate() {
            tracked.spec_file = PathBuf::from(format!("{}-{task}.job", stem.display()));
            tracked.frames = PathBuf::from(format!("{}-{task}.frames", stem.display()));
            tracked.name.clone_from(&name);
            written = written.and_then(|()| Self::write_spec(tracked));
        }
        let task_file = |extension: &str| {
            format!("{}-\"$SLURM_ARRAY_TASK_ID\".{extension}", cluster::quote(&stem.display().to_string()))
        };
        let submitted = written.and_then(|()| {
            let mut args = self.job_args(&group[0].job.spec, &name, &stem, (task_file("job"), task_file("frames")));
            let throttle = if self.throttle < group.len() { format!("%{}", self.throttle) } else { String::new() };
            args.insert(1, format!("--array=0-{}{throttle}", group.len() - 1));
            args.insert(1, format!("--output={}-%a.log", stem.display()));
            cluster::sbatch(&args)
        });
        for (task, tracked) in group.into_iter().enumerate() {
            let id = submitted
                .as_ref()
                .map(|array| format!("{array}_{task}"))
                .map_err(|err| Error::Runtime(err.to_string()));
            self.follow(tracked, id);
        }
    }

    /// Follows a submitted job, or reports why it could not be submitted.
    fn follow(&self, mut tracked: Tracked, submitted: Result<String>) {
        match submitted {
            Ok(id) => {
                tracked.placement.job = id.clone();
                if let Some(token) = &tracked.job.cancel {
                    let id = id.clone();
                    tracked._cancel = Some(token.on_cancel(move || cluster::scancel(&id)));
                }
                self.lock().running.insert(id, tracked);
            }
            Err(err) => {
                let why = StepErrorKind::Engine(format!("submitting it to Slurm: {err}"));
                let finished = step_exec::failed(&tracked.job, why, String::new());
                self.report(tracked, finished);
            }
        }
    }

    /// Reads what each running job wrote since the last read; reports the
    /// jobs that have a result. Whether any did.
    fn read_results(&self) -> bool {
        let ids: Vec<String> = self.lock().running.keys().cloned().collect();
        let mut any = false;
        for id in ids {
            let Some(mut tracked) = self.lock().running.remove(&id) else { continue };
            match self.read_frames(&mut tracked) {
                Some(finished) => {
                    any = true;
                    tracked.placement.state = "COMPLETED".into();
                    self.report(tracked, finished);
                }
                None => {
                    self.lock().running.insert(id, tracked);
                }
            }
        }
        any
    }

    /// Passes on the frames a job wrote since the last read; its result, once written.
    fn read_frames(&self, tracked: &mut Tracked) -> Option<Finished> {
        let mut file = File::open(&tracked.frames).ok()?;
        if file.seek(SeekFrom::Start(tracked.read)).is_ok() {
            let before = tracked.buffer.len();
            if file.read_to_end(&mut tracked.buffer).is_ok() {
                tracked.read += (tracked.buffer.len() - before) as u64;
            }
        }
        while let Some(frame) = take_frame(&mut tracked.buffer) {
            let spec = &tracked.job.spec;
            match frame {
                Frame::Metric { name, value, at } => {
                    if let Some(sink) = &tracked.events {
                        sink.event(&Event::Metric { run: &spec.run_id, step: &spec.step, name: &name, value, at });
                    }
                }
                Frame::Progress { done, total } => {
                    if let Some(sink) = &tracked.events {
                        sink.event(&Event::Progress { run: &spec.run_id, step: &spec.step, done, total });
                    }
                }
                Frame::Log { stream, text } => {
                    if let Some(sink) = &tracked.events {
                        sink.event(&Event::Log { run: &spec.run_id, step: &spec.step, stream, text: &text });
                    }
                }
                Frame::Done(finished) | Frame::Abandoned(finished) => return Some(*finished),
            }
        }
        None
    }

    /// Asks Slurm about every running job; handles those that ended
    /// without a result. Whether anything changed.
    fn poll(&self) -> bool {
        let names: Vec<String> = {
            let state = self.lock();
            let mut names: Vec<String> = state.running.values().map(|tracked| tracked.name.clone()).collect();
            names.sort();
            names.dedup();
            names
        };
        let Ok(listed) = cluster::squeue(&names) else { return false };
        let mut changed = false;
        let ids: Vec<String> = self.lock().running.keys().cloned().collect();
        for id in ids {
            let Some(mut tracked) = self.lock().running.remove(&id) else { continue };
            let seen = listed.iter().find(|listed| listed.id == id);
            if let Some(seen) = seen {
                changed |= seen.state != tracked.placement.state;
                tracked.placement.state = seen.state.clone();
                tracked.placement.node = seen.node.clone().or(tracked.placement.node.take());
                tracked.reason = seen.reason.clone();
                if !seen.ended() {
                    self.lock().running.insert(id, tracked);
                    continue;
                }
                tracked.placement.exit_code = Some(seen.exit_code.clone());
            } else {
                tracked.placement.state = "VANISHED".into();
            }
            changed = true;
            // Ended: its result may have been written since the last read.
            if let Some(finished) = self.read_frames(&mut tracked) {
                self.report(tracked, finished);
                continue;
            }
            self.lost(tracked);
        }
        changed
    }

    /// A job that ended without a result: cancelled by the run, cancelled
    /// from outside, or lost (and then submitted again while retries last).
    fn lost(&self, mut tracked: Tracked) {
        let placement = &tracked.placement;
        if tracked.job.cancel.as_ref().is_some_and(crate::CancelToken::is_cancelled) {
            let finished = step_exec::cancelled(&tracked.job);
            return self.report(tracked, finished);
        }
        let node = placement.node.as_deref().map_or_else(String::new, |node| format!(" on node {node}"));
        let exit = placement.exit_code.as_deref().map_or_else(String::new, |code| format!(", exit code {code}"));
        let what = format!(
            "Slurm job {} ended without a result: state {}{}{exit} (reason: {}), after {} submission(s)",
            placement.job,
            placement.state,
            node,
            if tracked.reason.is_empty() { "none given" } else { &tracked.reason },
            placement.submissions
        );
        let retry = placement.state != "CANCELLED" && placement.submissions <= self.options.retries;
        if retry {
            eprintln!("weir: {what}; submitting step `{}` again", tracked.job.spec.step);
            let submitted = self.sbatch(&mut tracked);
            return self.follow(tracked, submitted);
        }
        let why = if placement.state == "CANCELLED" {
            format!("{what}: it was cancelled outside weir (scancel)")
        } else {
            what
        };
        let finished = step_exec::failed(&tracked.job, StepErrorKind::Engine(why), String::new());
        self.report(tracked, finished);
    }

    /// Hands a job's result to the coordinator and removes its files.
    fn report(&self, mut tracked: Tracked, mut finished: Finished) {
        if tracked.placement.submissions > 0 {
            // The worker knows its node even when no poll saw the job run.
            let node = finished.placement.take().and_then(|placement| placement.node);
            let mut placement = tracked.placement.clone();
            placement.node = node.or(placement.node);
            finished.placement = Some(placement);
        }
        for path in [&tracked.spec_file, &tracked.frames, &tracked.frames.with_extension("log")] {
            let _ = std::fs::remove_file(path);
        }
        if let Some(done) = tracked.done.take() {
            done(finished);
        }
    }
}

/// `items` in groups of at most `max` (one group per job array): each item
/// joins the first group whose first item it `fits`.
fn in_arrays<T>(items: Vec<T>, max: usize, fits: impl Fn(&T, &T) -> bool) -> Vec<Vec<T>> {
    let mut groups: Vec<Vec<T>> = Vec::new();
    for item in items {
        match groups.iter_mut().find(|group| group.len() < max && fits(&group[0], &item)) {
            Some(group) => group.push(item),
            None => groups.push(vec![item]),
        }
    }
    groups
}

/// The name of the job arrays that run entries of map step `step`: the same
/// for every run, so that a restarted coordinator finds the arrays it
/// submitted before (their tasks' specs say which entries they run).
fn array_name(step: &str) -> String {
    format!("{ARRAY_PREFIX}{}", &crate::Digest::of(step.as_bytes()).hex()[..16])
}

/// How the names of job arrays begin (a single job's is `weir-<key>`).
const ARRAY_PREFIX: &str = "weir-map-";

/// Takes the first whole frame off `buffer`, if there is one; a frame that
/// cannot be decoded is dropped (the job's result then never comes, and
/// polling reports the job as lost).
fn take_frame(buffer: &mut Vec<u8>) -> Option<Frame> {
    loop {
        let length = u32::from_be_bytes(buffer.get(..4)?.try_into().ok()?) as usize;
        let frame = buffer.get(4..4 + length)?;
        let decoded = rmp_serde::from_slice::<Frame>(frame).ok();
        buffer.drain(..4 + length);
        if decoded.is_some() {
            return decoded;
        }
    }
}

/// Sends module jobs to the cluster; native steps, and steps calling native
/// functions a worker does not have built in, run in this process.
pub(crate) struct SlurmExecutor {
    engine: Arc<EngineInner>,
    cluster: Arc<Cluster>,
    local: LocalExecutor,
}

impl SlurmExecutor {
    pub(crate) fn new(engine: Arc<EngineInner>, cluster: Arc<Cluster>) -> Self {
        Self { local: LocalExecutor::new(engine.clone()), engine, cluster }
    }
}

impl Executor for SlurmExecutor {
    fn submit(&self, job: Job, events: Option<Arc<dyn EventSink>>, done: Done) {
        if !worker_can_run(&self.engine, &self.cluster.builtins, &job) {
            return self.local.submit(job, events, done);
        }
        let (engine, spec, account) = (self.engine.clone(), job.spec.clone(), job.store_account.clone());
        let charged: Done = Box::new(move |finished| done(charge_tenant(&engine, &spec, account.as_ref(), finished)));
        self.cluster.enqueue(job, events, charged);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_group_what_fits_and_split_at_the_clusters_limit() {
        let same_parity = |a: &u32, b: &u32| a % 2 == b % 2;
        let groups = in_arrays((0..7).collect(), 3, same_parity);
        assert_eq!(groups, [vec![0, 2, 4], vec![1, 3, 5], vec![6]]);
        let off = in_arrays((0..3).collect(), 0, same_parity);
        assert_eq!(off, [vec![0], vec![1], vec![2]], "0: no arrays, one job each");
    }

    #[test]
    fn frames_are_taken_whole_and_in_order() {
        let mut buffer = Vec::new();
        write_frame(&mut buffer, &Frame::Progress { done: 1, total: 2 }).unwrap();
        write_frame(&mut buffer, &Frame::Metric { name: "loss".into(), value: 0.5, at: Some(3) }).unwrap();
        let whole = buffer.len();
        let mut partial = buffer[..whole - 3].to_vec();
        assert!(matches!(take_frame(&mut partial), Some(Frame::Progress { done: 1, total: 2 })));
        assert!(take_frame(&mut partial).is_none(), "half a frame waits for the rest");
        partial.extend_from_slice(&buffer[whole - 3..]);
        assert!(
            matches!(take_frame(&mut partial), Some(Frame::Metric { value, at, .. }) if value == 0.5 && at == Some(3))
        );
        assert!(partial.is_empty());
    }
}
