//! What a run produced: per step, a status, timing, outputs and any error.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::{Artifact, Digest, RunDetail, StepError};

/// The outcome of one run of a pipeline. Its JSON form (`weir run
/// --json`, `weir show --json`) is [`record`](RunReport::record), the run as
/// the history keeps it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RunReport {
    /// Unique id of the run (UTC start time and a random suffix).
    pub run_id: String,
    /// The pipeline's name.
    pub pipeline: String,
    /// `succeeded` when every step ran or was cached.
    pub status: RunStatus,
    /// Every step of the pipeline, by name.
    pub steps: BTreeMap<String, StepReport>,
    /// The pipeline's named outputs whose steps succeeded.
    pub outputs: BTreeMap<String, Artifact>,
    /// Things the application should know about the run as a whole, e.g.
    /// that its event sink panicked and was silenced.
    pub warnings: Vec<String>,
    /// The run's document: what the history holds of it (the same as
    /// [`TenantView::run`](crate::TenantView::run) reads back), assembled
    /// as it was recorded. Always present in a report of [`Engine::run`](crate::Engine::run).
    pub record: Option<RunDetail>,
    /// What the run took from and gave to its shared cache
    /// ([`RunOptions::remote_cache`](crate::RunOptions::remote_cache)), if it had one.
    pub remote: Option<RemoteUsage>,
}

/// A run's use of a shared cache.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct RemoteUsage {
    /// The remote, as it describes itself.
    pub at: String,
    /// The results copied from it (and those refused).
    pub pulled: crate::Transfer,
    /// The results sent to it (and those that could not be).
    pub pushed: crate::Transfer,
}

impl RunReport {
    /// Whether every step ran or was reused.
    pub fn succeeded(&self) -> bool {
        self.status == RunStatus::Succeeded
    }

    /// The errors of the steps that failed, by step name (empty when the run
    /// succeeded; skipped steps have no error of their own, see
    /// [`StepReport::blocked_by`]).
    pub fn failures(&self) -> Vec<&StepError> {
        self.steps
            .values()
            .filter(|step| step.status == StepStatus::Failed)
            .filter_map(|step| step.error.as_ref())
            .collect()
    }

    /// The artifact of pipeline output `name`, if its step succeeded.
    pub fn pipeline_output(&self, name: &str) -> Option<&Artifact> {
        self.outputs.get(name)
    }

    /// The artifact a step produced for `output`, if it did.
    pub fn output(&self, step: &str, output: &str) -> Option<&Artifact> {
        self.steps.get(step)?.outputs.get(output)
    }

    /// Names of the steps that ended with `status`, in name order.
    pub fn steps_with(&self, status: StepStatus) -> Vec<&str> {
        self.steps.iter().filter(|(_, step)| step.status == status).map(|(name, _)| name.as_str()).collect()
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum RunStatus {
    /// Every step ran or was reused.
    Succeeded,
    /// At least one step failed (its dependents were skipped).
    Failed,
    /// The run was cancelled before every step ended (see [`CancelToken`](crate::CancelToken)).
    Cancelled,
    /// In the history only: the run is in progress.
    Running,
    /// In the history only: the process running it died, or was stopped
    /// without waiting for it (found by a later command).
    Killed,
}

impl RunStatus {
    const ALL: [RunStatus; 5] = [Self::Succeeded, Self::Failed, Self::Cancelled, Self::Running, Self::Killed];

    /// The status as the history and `--json` spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Running => "running",
            Self::Killed => "killed",
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for RunStatus {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|status| status.as_str() == text).ok_or_else(|| format!("no run status `{text}`"))
    }
}

/// How one step of a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum StepStatus {
    /// The step executed and succeeded.
    Ran,
    /// A cached result with the same key was reused.
    Cached,
    /// The step executed and failed.
    Failed,
    /// An upstream step failed, so this one did not run.
    Skipped,
    /// The run was cancelled before the step ended: it did not start, or
    /// it was interrupted (its logs and metrics so far are kept).
    Cancelled,
    /// In the history only: the step is executing.
    Running,
    /// In the history only: the step was executing when its run's process
    /// died or its run ended abnormally.
    Killed,
    /// The run was asked for other steps (`--target`), and this one is not
    /// among them nor needed by them.
    #[serde(rename = "not_requested")]
    NotRequested,
}

impl std::fmt::Display for StepStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for StepStatus {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        [
            Self::Ran,
            Self::Cached,
            Self::Failed,
            Self::Skipped,
            Self::Cancelled,
            Self::Running,
            Self::Killed,
            Self::NotRequested,
        ]
        .into_iter()
        .find(|status| status.as_str() == text)
        .ok_or_else(|| format!("no step status `{text}`"))
    }
}

impl StepStatus {
    /// The status as the history and `--json` spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ran => "ran",
            Self::Cached => "cached",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::Cancelled => "cancelled",
            Self::Running => "running",
            Self::Killed => "killed",
            Self::NotRequested => "not_requested",
        }
    }
}

/// One step's outcome within a run.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StepReport {
    /// How the step ended.
    pub status: StepStatus,
    /// Wall time spent on the step (execution, or the cache lookup).
    pub duration: Duration,
    /// Output artifacts by output name (empty unless ran or cached).
    pub outputs: BTreeMap<String, Artifact>,
    /// Why the step failed.
    pub error: Option<StepError>,
    /// The cache key (absent for skipped steps).
    pub cache_key: Option<Digest>,
    /// The guest's captured stdout and stderr (absent for skipped steps).
    pub logs: Option<Logs>,
    /// The last value of each metric the step reported (for a cached step,
    /// those of the execution it reuses). For a map step, each metric's mean
    /// over the entries that reported it.
    pub metrics: BTreeMap<String, f64>,
    /// For a map step: how each entry ended, with its logs and metrics.
    pub entries: BTreeMap<String, EntryReport>,
    /// Things the user should know, e.g. that a GPU was asked for and none was there.
    pub warnings: Vec<String>,
    /// Calls to native functions that failed (each reached the guest as an
    /// error value; a step with any is not cached, and one that panicked
    /// fails the step). A map step's are summed over its entries.
    pub native_failures: u64,
    /// For a skipped step, the upstream step that failed (or was itself
    /// skipped) and so kept it from running.
    pub blocked_by: Option<String>,
    /// In a verifying run, what re-executing the step showed.
    pub verification: Option<Verification>,
    /// Where the execution's time went (absent unless the step executed).
    pub phases: Option<Phases>,
    /// The failed attempts that were retried, in order (empty when the
    /// first attempt was the last); the step's outcome is its last attempt.
    pub attempts: Vec<Attempt>,
    /// Where each execution ran, for an executor that places jobs on other
    /// machines (a map step: one per entry executed). Empty otherwise.
    pub placements: Vec<Placement>,
}

/// Where one execution ran on a cluster (the `slurm` executor).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Placement {
    /// The executor: `slurm`.
    pub executor: String,
    /// The cluster's job id (`1234`, or `1234_5` for a task of an array).
    pub job: String,
    /// The node it ran on, when the cluster said.
    pub node: Option<String>,
    /// The job's last state the cluster reported (`COMPLETED`, `FAILED`, …).
    pub state: String,
    /// Slurm's exit code of the job, `CODE:SIGNAL` (`0:9`: killed by
    /// signal 9), when the cluster reported the job ended before the step
    /// was recorded; `None` when the worker's result came first (it does
    /// not wait for the next poll).
    #[serde(default)]
    pub exit_code: Option<String>,
    /// Submissions it took: 1, or more when a lost job was submitted again.
    pub submissions: u32,
}

/// A failed execution of a step (or of one entry of a map step) that was
/// retried ([`RetryPolicy`](crate::RetryPolicy)).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Attempt {
    /// For a map step, the entry that was retried.
    pub entry: Option<String>,
    /// Which attempt it was: 1 for the first.
    pub attempt: u32,
    /// Why it failed, as text.
    pub error: String,
    /// Why it failed, as a value.
    pub error_kind: crate::StepErrorKind,
    /// How long it ran.
    pub duration_ms: f64,
    /// Its captured stdout and stderr (absent when it could not start).
    pub logs: Option<Logs>,
}

/// How one entry of a map step ended.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct EntryReport {
    /// `ran`, `cached` or `failed`.
    pub status: StepStatus,
    /// The entry's captured stdout and stderr (absent when it could not run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logs: Option<Logs>,
    /// The last value of each metric the entry reported.
    pub metrics: BTreeMap<String, f64>,
}

impl EntryReport {
    pub(crate) fn new(status: StepStatus, logs: Option<Logs>, metrics: BTreeMap<String, f64>) -> Self {
        Self { status, logs, metrics }
    }
}

/// Where the time of one execution went, phase by phase (map steps: the
/// sum over their entries).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Phases {
    /// Creating the scratch directory, linking inputs into `/in`, writing parameters.
    #[serde(rename = "stage_ms", serialize_with = "as_millis", deserialize_with = "from_millis")]
    pub stage: Duration,
    /// Building the WASI context (preopens, stdio) and the store.
    #[serde(rename = "sandbox_ms", serialize_with = "as_millis", deserialize_with = "from_millis")]
    pub sandbox: Duration,
    /// Instantiating the module or component.
    #[serde(rename = "instantiate_ms", serialize_with = "as_millis", deserialize_with = "from_millis")]
    pub instantiate: Duration,
    /// The guest (or native step) running.
    #[serde(rename = "run_ms", serialize_with = "as_millis", deserialize_with = "from_millis")]
    pub run: Duration,
    /// Checking quotas, hashing and moving outputs and logs into the store.
    #[serde(rename = "ingest_ms", serialize_with = "as_millis", deserialize_with = "from_millis")]
    pub ingest: Duration,
    /// Writing the cache entry.
    #[serde(rename = "cache_ms", serialize_with = "as_millis", deserialize_with = "from_millis")]
    pub cache: Duration,
}

impl std::ops::Add for Phases {
    type Output = Phases;

    /// The phases of two executions added up.
    fn add(self, other: Phases) -> Phases {
        Phases {
            stage: self.stage + other.stage,
            sandbox: self.sandbox + other.sandbox,
            instantiate: self.instantiate + other.instantiate,
            run: self.run + other.run,
            ingest: self.ingest + other.ingest,
            cache: self.cache + other.cache,
        }
    }
}

/// What a verifying run found for one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verification {
    /// Executed again, it wrote the cached outputs byte for byte.
    Reproduced,
    /// Executed again, it wrote different outputs (see the step's error).
    Differs,
    /// It had no cached result to compare with, so it executed as usual.
    NothingToCompare,
}

/// Digests of a step execution's captured output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Logs {
    /// What the guest wrote to stdout.
    pub stdout: Digest,
    /// What the guest wrote to stderr.
    pub stderr: Digest,
}

fn as_millis<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64() * 1000.0)
}

fn from_millis<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let millis = <f64 as serde::Deserialize>::deserialize(deserializer)?;
    Duration::try_from_secs_f64(millis / 1000.0).map_err(serde::de::Error::custom)
}
