//! One execution of a step on a worker thread: stage its inputs, run the
//! guest, store its outputs and logs, and record the cache entry.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::runtime::{Invocation, Program, Runtime};
use crate::store::{CacheEntry, Store};
use crate::{Artifact, Digest, Error, Limits, Logs, OutputKind, StepError, StepErrorKind};

/// Name of the parameters file inside `/in`.
pub(crate) const PARAMS_FILE: &str = ".params.json";
/// How much of the end of stderr a failure report keeps.
const STDERR_TAIL_BYTES: usize = 4096;
const STDERR_TAIL_LINES: usize = 30;

/// Everything a worker needs to execute one step.
pub(crate) struct Job {
    pub step: String,
    pub program: Arc<Program>,
    pub argv: Vec<String>,
    pub params: serde_json::Value,
    pub inputs: BTreeMap<String, Artifact>,
    pub outputs: BTreeMap<String, OutputKind>,
    pub limits: Limits,
    pub key: Digest,
    /// Whether to record the result for reuse.
    pub record: bool,
    pub run_id: String,
}

/// What became of a job.
pub(crate) struct Finished {
    pub outputs: Result<BTreeMap<String, Artifact>, StepError>,
    pub logs: Option<Logs>,
    pub duration: Duration,
}

/// Executes `job`; failures of any kind are reported, never propagated.
pub(crate) fn execute(store: &Store, runtime: &Runtime, job: &Job) -> Finished {
    let started = Instant::now();
    let (outputs, logs) = match store.scratch_dir("step") {
        Ok((scratch, path)) => {
            let result = run_in(store, runtime, job, &scratch, &path);
            store.remove_scratch(&path);
            result
        }
        Err(err) => (Err(failure(job, engine(err), String::new())), None),
    };
    Finished {
        outputs,
        logs,
        duration: started.elapsed(),
    }
}

type Outcome = (Result<BTreeMap<String, Artifact>, StepError>, Option<Logs>);

fn run_in(store: &Store, runtime: &Runtime, job: &Job, scratch: &cap_std::fs::Dir, path: &Path) -> Outcome {
    let invocation = match stage(store, job, scratch, path) {
        Ok(invocation) => invocation,
        Err(err) => return (Err(failure(job, engine(err), String::new())), None),
    };
    let ran = runtime.execute(&job.program, &invocation);
    drop(invocation);
    let stderr_tail = tail(&path.join("stderr"));
    let logs = match store_logs(store, path) {
        Ok(logs) => logs,
        Err(err) => return (Err(failure(job, engine(err), stderr_tail)), None),
    };
    let outputs = ran
        .and_then(|()| collect(store, job, scratch, logs))
        .map_err(|kind| failure(job, kind, stderr_tail));
    (outputs, Some(logs))
}

/// Creates `in/` (inputs and parameters), `out/`, and the log files.
fn stage(store: &Store, job: &Job, scratch: &cap_std::fs::Dir, path: &Path) -> Result<Invocation, Error> {
    let io = |what: &str| Error::io(format!("preparing {what} in {}", path.display()));
    scratch.create_dir("in").map_err(io("in"))?;
    scratch.create_dir("out").map_err(io("out"))?;
    let in_dir = scratch.open_dir("in").map_err(io("in"))?;
    for (name, artifact) in &job.inputs {
        store.materialize(artifact, &in_dir, Path::new(name))?;
    }
    let params = serde_json::to_vec_pretty(&job.params).map_err(|err| io("parameters")(std::io::Error::other(err)))?;
    in_dir.write(PARAMS_FILE, params).map_err(io("parameters"))?;
    let log = |name: &str| scratch.create(name).map(|file| file.into_std()).map_err(io(name));
    Ok(Invocation {
        argv: job.argv.clone(),
        in_dir: path.join("in"),
        out_dir: path.join("out"),
        stdout: log("stdout")?,
        stderr: log("stderr")?,
        limits: job.limits,
    })
}

/// Stores the captured stdout and stderr as artifacts.
fn store_logs(store: &Store, path: &Path) -> Result<Logs, Error> {
    let read = |name: &str| {
        let file = path.join(name);
        std::fs::read(&file).map_err(Error::io(format!("reading {}", file.display())))
    };
    Ok(Logs {
        stdout: store.put_bytes(&read("stdout")?)?,
        stderr: store.put_bytes(&read("stderr")?)?,
    })
}

/// Moves the declared outputs into the store and records the cache entry.
fn collect(
    store: &Store,
    job: &Job,
    scratch: &cap_std::fs::Dir,
    logs: Logs,
) -> Result<BTreeMap<String, Artifact>, StepErrorKind> {
    let out = scratch
        .open_dir("out")
        .map_err(|err| StepErrorKind::Engine(format!("opening /out: {err}")))?;
    let mut outputs = BTreeMap::new();
    for (name, kind) in &job.outputs {
        outputs.insert(name.clone(), store.ingest_output(&out, name, *kind)?);
    }
    if job.record {
        let entry = CacheEntry {
            outputs: outputs.clone(),
            stdout: logs.stdout,
            stderr: logs.stderr,
            run_id: job.run_id.clone(),
        };
        store.cache_put(&job.key, &entry).map_err(engine)?;
    }
    Ok(outputs)
}

/// The last lines of a log file, at most [`STDERR_TAIL_BYTES`].
fn tail(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let start = bytes.len().saturating_sub(STDERR_TAIL_BYTES);
    let text = String::from_utf8_lossy(&bytes[start..]);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(STDERR_TAIL_LINES)..].join("\n")
}

fn engine(err: Error) -> StepErrorKind {
    StepErrorKind::Engine(err.to_string())
}

fn failure(job: &Job, kind: StepErrorKind, stderr_tail: String) -> StepError {
    StepError {
        step: job.step.clone(),
        kind,
        stderr_tail,
    }
}
