//! One execution of a step on a worker thread: stage its inputs, run the
//! guest (or the native step), store its outputs and logs, and record the
//! cache entry.

use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cap_std::fs::Dir;

use crate::bridge::{Bridge, NativeFailures, panic_text};
use crate::cancel::CancelToken;
use crate::events::{EventSink, LogStream};
use crate::executor::JobSpec;
use crate::limits::TopLevel;
use crate::native::{GuestFiles, NativeStep, Natives, StepContext};
use crate::runtime::{
    CappedLog, Captured, Executed, GuestDirs, Invocation, LogTee, Produced, Program, Runtime, SharedFs, StepFs,
    StepInput,
};
use crate::store::{CacheEntry, Leftovers, Listed, OutListing, Scratch, Store, UsedScratch};
use crate::telemetry::Telemetry;
use crate::tenant::StoreAccount;
use crate::{Artifact, Error, Logs, OutputKind, Phases, StepError, StepErrorKind};

pub(crate) use weir_abi::contract::PARAMS_FILE;
/// How much of the end of stderr a failure report keeps.
const STDERR_TAIL_BYTES: usize = 4096;
const STDERR_TAIL_LINES: usize = 30;

/// What a job runs.
#[derive(Clone)]
pub(crate) enum JobCode {
    Wasm(Arc<Program>),
    Native(Arc<dyn NativeStep>),
}

/// A job as a worker executes it: its serializable description, and the
/// in-process resources prepared for it (absent in a worker process, which
/// prepares its own from the description).
#[derive(Clone)]
pub(crate) struct Job {
    pub spec: JobSpec,
    pub code: JobCode,
    /// The tenant's store quota, charged with the outputs.
    pub store_account: Option<Arc<StoreAccount>>,
    /// The run's cancellation.
    pub cancel: Option<CancelToken>,
}

/// What a worker needs besides the job: the store, runtime and registry.
pub(crate) struct Workshop<'a> {
    pub store: &'a Store,
    pub runtime: &'a Runtime,
    pub natives: &'a Arc<Natives>,
    pub events: Option<Arc<dyn EventSink>>,
    /// Told the scratch directory of each execution once it is staged (a
    /// worker process watches its `/out`).
    pub staged: Option<&'a (dyn Fn(&Scratch) + Sync)>,
}

/// What became of a job.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Finished {
    pub outputs: Result<BTreeMap<String, Artifact>, StepError>,
    pub logs: Option<Logs>,
    pub metrics: BTreeMap<String, f64>,
    pub series: Vec<crate::history::MetricPoint>,
    /// Things the user should know, e.g. a truncated log.
    pub warnings: Vec<String>,
    /// Native calls of the guest that failed.
    pub native_failures: u64,
    /// The run whose execution served this job, when an identical one was
    /// in flight and this job waited for it instead of executing.
    pub reused_from: Option<String>,
    /// Where the time went.
    pub phases: Phases,
    /// The scratch directory to clean up once the result is reported.
    #[serde(skip)]
    pub scratch: Option<UsedScratch>,
    /// Nothing ran: an identical execution (same key) was in flight, and
    /// this job is to be submitted again once it ends (`outputs` is moot).
    #[serde(default)]
    pub deferred: bool,
    pub duration: Duration,
    /// Where it ran, when an executor placed it on another machine.
    #[serde(default)]
    pub placement: Option<crate::Placement>,
}

/// Executes `job`; failures of any kind are reported, never propagated.
///
/// A shareable job first takes the lock of its cache key: if an identical
/// execution is in flight (in any process) it waits for it, and then reuses
/// what it recorded instead of executing again.
pub(crate) fn execute(workshop: &Workshop<'_>, job: &Job) -> Finished {
    let started = Instant::now();
    if job.cancel.as_ref().is_some_and(CancelToken::is_cancelled) {
        return cancelled(job);
    }
    let _claim = match job.spec.share.then(|| workshop.store.try_lock_key(&job.spec.key)) {
        Some(Err(err)) => return failed(job, engine(err), String::new()),
        Some(Ok(Some(claim))) => Some(claim),
        // Another execution of this key is in flight: the coordinator waits
        // for it without holding a worker, then submits this job again.
        Some(Ok(None)) => {
            return Finished { deferred: true, ..Finished::failure(&job.spec.step, StepErrorKind::Cancelled) };
        }
        None => None,
    };
    if job.spec.share
        && let Some(entry) = workshop.store.cache_get(&job.spec.key)
    {
        return Finished {
            outputs: Ok(entry.outputs),
            logs: Some(Logs { stdout: entry.stdout, stderr: entry.stderr }),
            metrics: entry.metrics,
            series: Vec::new(),
            warnings: Vec::new(),
            native_failures: 0,
            reused_from: Some(entry.run_id),
            phases: Phases::default(),
            scratch: None,
            duration: started.elapsed(),
            placement: None,
            deferred: false,
        };
    }
    let staging = Instant::now();
    let mut finished = match workshop.store.take_scratch() {
        Ok(mut scratch) => {
            let (finished, leftovers) = run_in(workshop, job, &mut scratch, staging);
            Finished { scratch: Some(UsedScratch { scratch, leftovers }), ..finished }
        }
        Err(err) => failed(job, engine(err), String::new()),
    };
    finished.duration = started.elapsed();
    finished
}

/// Hands an execution's scratch directory to the store's background
/// janitor (see [`Store::release_scratch`]).
pub(crate) fn clean_up(workshop: &Workshop<'_>, scratch: Option<UsedScratch>) {
    if let Some(used) = scratch {
        workshop.store.release_scratch(used);
    }
}

/// A job whose execution panicked in the engine (a bug): it fails its step.
pub(crate) fn panicked(job: &Job, panic: &(dyn std::any::Any + Send)) -> Finished {
    failed(
        job,
        StepErrorKind::Engine(format!("the engine panicked executing it: {}", panic_text(panic))),
        String::new(),
    )
}

/// A job the run was cancelled before it started.
pub(crate) fn cancelled(job: &Job) -> Finished {
    failed(job, StepErrorKind::Cancelled, String::new())
}

pub(crate) fn failed(job: &Job, kind: StepErrorKind, stderr_tail: String) -> Finished {
    let mut finished = Finished::failure(&job.spec.step, kind);
    if let Err(error) = &mut finished.outputs {
        error.stderr_tail = stderr_tail;
    }
    finished
}

impl Finished {
    /// A failure of `step` with nothing else to report.
    pub(crate) fn failure(step: &str, kind: StepErrorKind) -> Finished {
        Finished {
            outputs: Err(StepError { step: step.to_owned(), kind, stderr_tail: String::new() }),
            logs: None,
            metrics: BTreeMap::new(),
            series: Vec::new(),
            warnings: Vec::new(),
            native_failures: 0,
            reused_from: None,
            phases: Phases::default(),
            scratch: None,
            duration: Duration::ZERO,
            placement: None,
            deferred: false,
        }
    }
}

/// Stages, runs and collects `job` in the scratch directory; `staging` is
/// when staging began. With the result, what the execution left in the
/// directory when it is known for certain (the step succeeded).
fn run_in(
    workshop: &Workshop<'_>,
    job: &Job,
    scratch: &mut Scratch,
    staging: Instant,
) -> (Finished, Option<Leftovers>) {
    let telemetry = Telemetry::new(workshop.events.clone(), &job.spec.run_id);
    let own_fs = on_own_fs(workshop, job);
    let staged = match stage(workshop.store, job, scratch, workshop.events.as_ref(), own_fs) {
        Ok(staged) => staged,
        Err(err) => return (failed(job, engine(err), String::new()), None),
    };
    if let Some(watch) = workshop.staged {
        watch(scratch);
    }
    let stage_time = staging.elapsed();
    let path = scratch.path.as_path();
    let (stdout, stderr) = (staged.stdout.clone(), staged.stderr.clone());
    let (mut ran, telemetry, mut phases, failures, fs) = match &job.code {
        JobCode::Wasm(program) => run_wasm(workshop, job, program, staged, path, telemetry),
        JobCode::Native(step) => {
            let (ran, telemetry, phases) = run_native(job, step.as_ref(), path, telemetry);
            (ran, telemetry, phases, NativeFailures::default(), None)
        }
    };
    phases.stage = stage_time;
    let ingesting = Instant::now();
    let (metrics, series) = telemetry.into_metrics();
    let mut warnings = truncated_logs(&stdout, &stderr, job.spec.limits.log);
    if let Some(panic) = &failures.panic {
        ran = ran.and(Err(StepErrorKind::Native { message: panic.clone() }));
    }
    let record = job.spec.record && failures.count == 0;
    if failures.count > 0 {
        let first = failures.first.as_deref().unwrap_or_default();
        let cached = if job.spec.record { "; its result is not cached" } else { "" };
        warnings.push(format!("made {} native calls that failed (the first: {first}){cached}", failures.count));
    }
    let (stdout, stderr) = (stdout.finish(), stderr.finish());
    let stderr_tail = tail(&stderr, path);
    // The parameters file stays: the next staging in the directory overwrites it.
    let staged_inputs =
        if own_fs { Vec::new() } else { job.spec.inputs.iter().map(|(name, a)| (name.clone(), a.kind)).collect() };
    let mut leftovers = Leftovers {
        inputs: staged_inputs,
        outputs: Vec::new(),
        files: [&stdout, &stderr].into_iter().filter_map(Captured::file_name).map(str::to_owned).collect(),
    };
    let logs = match store_logs(workshop.store, &scratch.root, stdout, stderr)
        .and_then(|logs| charge_logs(workshop.store, job, logs))
    {
        Ok(Ok(logs)) => logs,
        Ok(Err(kind)) => {
            return (Finished { metrics, series, warnings, phases, ..failed(job, kind, stderr_tail) }, None);
        }
        Err(err) => {
            return (Finished { metrics, series, warnings, phases, ..failed(job, engine(err), stderr_tail) }, None);
        }
    };
    let mut fs = fs;
    let found = match fs.as_mut() {
        Some(fs) => Outputs::Own(fs),
        None => Outputs::Scratch(scratch),
    };
    let outputs = ran
        .and_then(|()| collect(workshop.store, job, record, found, logs, &metrics, &mut phases))
        .map(|(outputs, top_level)| {
            leftovers.outputs = top_level;
            outputs
        })
        .map_err(|kind| StepError { step: job.spec.step.clone(), kind, stderr_tail });
    phases.ingest = ingesting.elapsed().saturating_sub(phases.cache);
    // A native step is host code, which `/in` being read-only does not
    // bind: its directory is not used again. A step on the engine's own
    // file system never saw the directory: what is in it is known, success or not.
    let sandboxed = matches!(job.code, JobCode::Wasm(_));
    let leftovers = ((outputs.is_ok() && sandboxed) || own_fs).then_some(leftovers);
    let finished = Finished {
        outputs,
        logs: Some(logs),
        metrics,
        series,
        warnings,
        native_failures: failures.count,
        reused_from: None,
        phases,
        scratch: None,
        duration: Duration::ZERO,
        placement: None,
        deferred: false,
    };
    (finished, leftovers)
}

/// A warning for each log that was cut at `limits.log`.
fn truncated_logs(stdout: &CappedLog, stderr: &CappedLog, cap: u64) -> Vec<String> {
    [("stdout", stdout), ("stderr", stderr)]
        .into_iter()
        .filter(|(_, log)| log.truncated())
        .map(|(name, _)| format!("{name} was truncated at {} (limits.log)", crate::Limits::show("log", cap)))
        .collect()
}

/// Whether `job` runs on the engine's own file system (`runtime/step_fs`)
/// rather than in host directories: a WebAssembly step executed in this
/// process, whose inputs and outputs are files, where the store can keep
/// unnamed files. Its `/in` and `/out` then cost no staging, listing or
/// removal (docs/design.md, "Store"), and the native functions it calls
/// find their file operands there too.
fn on_own_fs(workshop: &Workshop<'_>, job: &Job) -> bool {
    let JobCode::Wasm(_) = &job.code else { return false };
    workshop.staged.is_none()
        && job.spec.inputs.iter().all(|(name, input)| input.kind == OutputKind::File && !name.contains('/'))
        && job.spec.outputs.values().all(|kind| *kind == OutputKind::File)
        && workshop.store.has_unnamed_files()
}

/// What a step is staged with: its logs, and its `/in` and `/out`.
struct Staged {
    stdout: CappedLog,
    stderr: CappedLog,
    dirs: StagedDirs,
}

enum StagedDirs {
    /// `in/` and `out/` of the scratch directory.
    Host { in_dir: Dir, out_dir: Dir },
    /// What the engine's own file system shows at `/in`.
    Own(Vec<(String, StepInput)>),
}

/// Fills `in/` (inputs and parameters; the parameters file is left as it
/// is when the directory's last staging wrote the same bytes), or with
/// `own_fs` lists them for the engine's file system, and opens the logs
/// (which become files of the scratch directory only if they grow large).
fn stage(
    store: &Store,
    job: &Job,
    scratch: &mut Scratch,
    events: Option<&Arc<dyn EventSink>>,
    own_fs: bool,
) -> Result<Staged, Error> {
    let io = |what: &str| Error::io(format!("preparing {what} in {}", scratch.path.display()));
    let params =
        serde_json::to_vec_pretty(&job.spec.params).map_err(|err| io("parameters")(std::io::Error::other(err)))?;
    let dirs = if own_fs {
        let mut inputs: Vec<(String, StepInput)> =
            job.spec.inputs.iter().map(|(name, input)| (name.clone(), StepInput::Object(input.digest))).collect();
        inputs.push((PARAMS_FILE.to_owned(), StepInput::Bytes(params.into())));
        StagedDirs::Own(inputs)
    } else {
        for (name, artifact) in &job.spec.inputs {
            store.materialize(artifact, &scratch.in_dir, Path::new(name))?;
        }
        if scratch.staged_params.as_ref() != Some(&params) {
            scratch.staged_params = None;
            scratch.in_dir.write(PARAMS_FILE, &params).map_err(io("parameters"))?;
            scratch.staged_params = Some(params);
        }
        StagedDirs::Host {
            in_dir: scratch.in_dir.try_clone().map_err(io("in"))?,
            out_dir: scratch.out_dir.try_clone().map_err(io("out"))?,
        }
    };
    // A tenant's logs count against its store quota: none may outgrow what is left of it.
    let cap =
        job.store_account.as_ref().map_or(job.spec.limits.log, |account| job.spec.limits.log.min(account.remaining()));
    let log = |stream: LogStream| {
        let tee = events.map(|sink| LogTee {
            sink: sink.clone(),
            run: job.spec.run_id.clone(),
            step: job.spec.step.clone(),
            stream,
        });
        let name = stream.as_str();
        scratch.root.try_clone().map(|dir| CappedLog::new(dir, name, cap, tee)).map_err(io(name))
    };
    Ok(Staged { stdout: log(LogStream::Stdout)?, stderr: log(LogStream::Stderr)?, dirs })
}

/// What running a wasm step gives: how it ended, its telemetry, phases and
/// failed native calls, and its file system when the engine kept it.
type Ran = (Result<(), StepErrorKind>, Telemetry, Phases, NativeFailures, Option<StepFs>);

fn run_wasm(
    workshop: &Workshop<'_>,
    job: &Job,
    program: &Program,
    staged: Staged,
    path: &Path,
    telemetry: Telemetry,
) -> Ran {
    let (dirs, files) = match staged.dirs {
        StagedDirs::Own(inputs) => {
            let fs = StepFs::new(
                inputs,
                workshop.store.clone(),
                job.spec.limits,
                staged.stdout.clone(),
                staged.stderr.clone(),
            );
            let fs = SharedFs::new(Mutex::new(fs));
            let files = GuestFiles::Own(Arc::downgrade(&fs));
            (GuestDirs::Own(fs), files)
        }
        StagedDirs::Host { in_dir, out_dir } => {
            let watched_out = match out_dir.try_clone() {
                Ok(dir) => dir,
                Err(err) => {
                    let why = StepErrorKind::Engine(format!("opening /out: {err}"));
                    return (Err(why), telemetry, Phases::default(), NativeFailures::default(), None);
                }
            };
            let files = GuestFiles::Host { in_dir, out_dir, limits: job.spec.limits };
            (GuestDirs::Host { in_dir: path.join("in"), out_dir: path.join("out"), watched_out }, files)
        }
    };
    let bridge = Bridge::new(&job.spec, workshop.natives.clone(), files, telemetry);
    let invocation = Invocation {
        argv: job.spec.argv.clone(),
        dirs,
        stdout: staged.stdout,
        stderr: staged.stderr,
        limits: job.spec.limits,
        deterministic_seed: job.spec.deterministic.then_some(job.spec.key),
        bridge,
        cancel: job.cancel.clone(),
    };
    let Executed { result, bridge, phases, fs } = workshop.runtime.execute(program, invocation);
    let (telemetry, failures) = bridge.finish();
    (result, telemetry, phases, failures, fs)
}

/// Runs a native step in-process; a returned error or a panic fails the step.
fn run_native(
    job: &Job,
    step: &dyn NativeStep,
    path: &Path,
    mut telemetry: Telemetry,
) -> (Result<(), StepErrorKind>, Telemetry, Phases) {
    let started = Instant::now();
    let (in_dir, out_dir) = (path.join("in"), path.join("out"));
    let mut context = StepContext {
        step: &job.spec.step,
        run: &job.spec.run_id,
        tenant: &job.spec.tenant,
        device: job.spec.device,
        in_dir: &in_dir,
        out_dir: &out_dir,
        params: &job.spec.params,
        telemetry: &mut telemetry,
        cancel: job.cancel.as_ref(),
    };
    let result = match catch_unwind(AssertUnwindSafe(|| step.run(&mut context))) {
        _ if context.cancelled() => Err(StepErrorKind::Cancelled),
        Ok(Ok(())) => Ok(()),
        Ok(Err(message)) => Err(StepErrorKind::Native { message }),
        Err(panic) => Err(StepErrorKind::Native { message: format!("panicked: {}", panic_text(&*panic)) }),
    };
    (result, telemetry, Phases { run: started.elapsed(), ..Phases::default() })
}

/// Stores the captured stdout and stderr as artifacts (once when they are
/// the same bytes, as two empty logs are).
fn store_logs(store: &Store, scratch: &Dir, stdout: Captured, stderr: Captured) -> Result<Logs, Error> {
    let put = |log: Captured| match log {
        Captured::Memory(bytes) => store.put_bytes(&bytes),
        Captured::File(name) => store.ingest_scratch_file(scratch, &name),
    };
    if matches!((&stdout, &stderr), (Captured::Memory(out), Captured::Memory(err)) if out == err) {
        let digest = put(stdout)?;
        return Ok(Logs { stdout: digest, stderr: digest });
    }
    Ok(Logs { stdout: put(stdout)?, stderr: put(stderr)? })
}

/// Charges the stored logs to the tenant's store quota; the inner `Err` is
/// a quota they do not fit in.
fn charge_logs(store: &Store, job: &Job, logs: Logs) -> Result<Result<Logs, StepErrorKind>, Error> {
    let Some(account) = &job.store_account else { return Ok(Ok(logs)) };
    let files = [logs.stdout, logs.stderr].map(|digest| Artifact { kind: OutputKind::File, digest });
    Ok(account.charge(&files, |artifact| store.artifact_size(artifact))?.map(|()| logs))
}

/// Where a step's outputs are when it ends.
enum Outputs<'a> {
    /// In `out/` of its scratch directory.
    Scratch(&'a Scratch),
    /// In the engine's own file system.
    Own(&'a mut StepFs),
}

/// Checks the output quotas, moves the declared outputs into the store,
/// charges them to the tenant and, when `record`, records the cache entry.
/// With the outputs, the top-level entries left in `/out`.
fn collect(
    store: &Store,
    job: &Job,
    record: bool,
    found: Outputs<'_>,
    logs: Logs,
    metrics: &BTreeMap<String, f64>,
    phases: &mut Phases,
) -> Result<(BTreeMap<String, Artifact>, TopLevel), StepErrorKind> {
    let (outputs, top_level) = match found {
        Outputs::Scratch(scratch) => ingest_from_scratch(store, job, scratch)?,
        // Its quotas were counted as it wrote; nothing is left anywhere.
        Outputs::Own(fs) => (ingest_from_own_fs(store, job, fs)?, TopLevel::new()),
    };
    if let Some(account) = &job.store_account {
        let produced: Vec<Artifact> = outputs.values().copied().collect();
        account.charge(&produced, |artifact| store.artifact_size(artifact)).map_err(engine)??;
    }
    if record {
        let mut entry = CacheEntry {
            outputs: outputs.clone(),
            stdout: logs.stdout,
            stderr: logs.stderr,
            metrics: metrics.clone(),
            run_id: job.spec.run_id.clone(),
            created: Some(crate::history::now()),
            checked: BTreeMap::new(),
        };
        let caching = Instant::now();
        // A re-execution that produced exactly the recorded result keeps the
        // run the entry names (where the result came from) and the stamps of
        // its files (which are the files just found in the store), and renews
        // its age. (A shared job found no entry under the key's lock just
        // before it executed: there is none to look at. The known entry's
        // artifacts need no looking at either: equal to this one's, they are
        // what was just stored.) Such a renewal leaves every reuse index
        // valid: the copies they may hold describe the same result.
        if !job.spec.share
            && let Some(known) = store.cache_read(&job.spec.key)
            && (CacheEntry {
                run_id: known.run_id.clone(),
                created: known.created,
                checked: known.checked.clone(),
                ..entry.clone()
            }) == known
        {
            entry.run_id = known.run_id;
            entry.checked = known.checked;
            store.cache_renew(&job.spec.key, &entry).map_err(engine)?;
        } else {
            store.cache_put(&job.spec.key, &entry).map_err(engine)?;
        }
        phases.cache = caching.elapsed();
    }
    Ok((outputs, top_level))
}

/// Checks `out/` of `scratch` against the output quotas and moves the
/// declared outputs into the store; with them, the top-level entries left.
fn ingest_from_scratch(
    store: &Store,
    job: &Job,
    scratch: &Scratch,
) -> Result<(BTreeMap<String, Artifact>, TopLevel), StepErrorKind> {
    let out = &scratch.out_dir;
    let file_outputs =
        job.spec.outputs.iter().filter(|(_, kind)| **kind == OutputKind::File).map(|(name, _)| name.as_str());
    let mut listing = OutListing::read(out, scratch.out_listable.as_fd(), file_outputs, &job.spec.limits)?;
    let mut outputs = BTreeMap::new();
    let mut left = Vec::new();
    for (name, kind) in &job.spec.outputs {
        let ingested = store.ingest_output(out, name, *kind, listing.take(name))?;
        if ingested.left_in_out {
            left.push((name.into(), *kind == OutputKind::Dir));
        }
        outputs.insert(name.clone(), ingested.artifact);
    }
    let mut top_level = listing.into_top_level();
    top_level.extend(left);
    Ok((outputs, top_level))
}

/// Stores the declared outputs (all files) the step left in its own file
/// system: each unnamed file becomes an object as it is.
fn ingest_from_own_fs(store: &Store, job: &Job, fs: &mut StepFs) -> Result<BTreeMap<String, Artifact>, StepErrorKind> {
    let mut outputs = BTreeMap::new();
    for (name, kind) in &job.spec.outputs {
        let produced = fs.take_output(name).ok_or_else(|| StepErrorKind::MissingOutput { output: name.clone() })?;
        let (file, len, listed) = match produced {
            Produced::File(file, len) => (file, len, Listed::File(None)),
            Produced::Dir => (None, 0, Listed::Dir),
            Produced::Symlink => (None, 0, Listed::Link),
        };
        crate::store::check_output_kind(name, *kind, &listed)?;
        let context = || format!("storing output file {name}");
        let digest = store.adopt_unnamed(file.as_ref(), len, &context).map_err(engine)?;
        outputs.insert(name.clone(), Artifact { kind: *kind, digest });
    }
    Ok(outputs)
}

/// The last lines of stderr (as much as fits in [`STDERR_TAIL_BYTES`]), for
/// a failure report.
fn tail(stderr: &Captured, scratch: &Path) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let mut bytes = Vec::new();
    let kept = match stderr {
        Captured::Memory(all) => &all[all.len().saturating_sub(STDERR_TAIL_BYTES)..],
        Captured::File(name) => {
            if let Ok(mut file) = std::fs::File::open(scratch.join(name)) {
                let start = file.metadata().map_or(0, |m| m.len().saturating_sub(STDERR_TAIL_BYTES as u64));
                let _ = file.seek(SeekFrom::Start(start)).and_then(|_| file.read_to_end(&mut bytes));
            }
            &bytes
        }
    };
    let text = String::from_utf8_lossy(kept);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(STDERR_TAIL_LINES)..].join("\n")
}

fn engine(err: Error) -> StepErrorKind {
    StepErrorKind::Engine(err.to_string())
}
