//! The coordinator of a run. It alone owns the run's state: it decides which
//! steps are ready, computes their cache keys, reuses cached results, admits
//! the rest to the worker pool as GPU slots allow, and records the results
//! that come back over a channel.

mod admission;
mod live_metrics;
mod map_run;
mod recorder;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

pub(crate) use admission::{Admission, Need, Ticket};
use live_metrics::MetricTap;
use map_run::{EntryOutcome, MapRun};
use recorder::Recorder;

use serde_json::Value;

use crate::cache_key::{Canonical, KEY_FORMAT_VERSION, KeyMaterial, RecordedMaterial};
use crate::events::{Event, EventSink, GuardedSink};
use crate::executor::{Executor, JobSpec};
use crate::history::{MetricPoint, StepDetails, StepRecord};
use crate::kinds::Prepared;
use crate::native::Device;
use crate::pipeline::{InputRef, Step};
use crate::remote::{PullError, RemoteError, RemoteUse};
use crate::report::{Attempt, Logs, Phases, RunReport, RunStatus, StepReport, StepStatus, Verification};
use crate::step_exec::{self, Finished, Job};
use crate::tenant::{StoreAccount, Tenant};
use crate::{Artifact, CancelToken, Digest, Limits, RunOptions, StepError, StepErrorKind};

/// How long the coordinator waits before it records the executing steps.
const RECORD_RUNNING_AFTER: Duration = Duration::from_millis(100);
/// How often, during a long wait, executing steps' metric values are written.
const LIVE_METRICS_EVERY: Duration = Duration::from_secs(1);

/// A step ready to be keyed: its code, argv and parameters resolved.
pub(crate) struct PlannedStep<'p> {
    pub step: &'p Step,
    /// Its code, made runnable by its kind.
    pub prepared: Prepared,
    pub argv: Vec<String>,
    /// argv as the cache key sees it: ignored parameters left unrendered.
    pub keyed_argv: Vec<String>,
    pub params: Value,
    /// The parameters the cache key covers: all but the ignored ones.
    pub keyed_params: Value,
    /// Declared native functions with their versions.
    pub natives: BTreeMap<String, u32>,
    /// The limits it runs under: its own, the defaults, the tenant's ceiling.
    pub limits: Limits,
}

/// What the coordinator uses of the engine: the store (cache lookups), the
/// history (the recorder's), the admission ledger and the GPU settings.
/// Executing is the executor's; nothing else of the engine is reachable.
pub(crate) struct Services<'a> {
    pub store: &'a crate::Store,
    pub history: &'a crate::History,
    pub admission: Arc<Admission>,
    /// GPU slots of the engine (0: GPU steps run on the CPU).
    pub gpu_slots: usize,
    /// CUDA devices found.
    pub gpus_detected: usize,
    /// Whether a cluster hands out GPUs (the `slurm` executor).
    pub cluster_gpus: bool,
}

/// Who a run belongs to and what it may use.
pub(crate) struct RunScope {
    pub tenant: Tenant,
    /// The tenant's store quota, when it has one.
    pub store: Option<Arc<StoreAccount>>,
    /// The id of the pipeline's reuse index (see `ReuseIndex::id_of`).
    pub reuse_index: Digest,
}

/// What reaches the coordinator from workers and from the admission gate.
enum Message {
    Finished(JobId, Box<Finished>),
    Admitted(JobId, Ticket),
    /// The run was cancelled: stop admitting steps.
    Cancelled,
    /// The identical execution a job waited for has ended: submit it again.
    KeyFree(JobId, Box<Job>),
    /// A failed job's backoff is over: submit it again.
    Retry(JobId, Box<Job>),
}

/// The state of one run, owned by the coordinating thread.
pub(crate) struct Coordinator<'a> {
    engine: &'a Services<'a>,
    options: &'a RunOptions,
    run_id: &'a str,
    scope: RunScope,
    plan: Vec<PlannedStep<'a>>,
    pipeline_inputs: BTreeMap<String, Artifact>,
    index: BTreeMap<&'a str, usize>,
    dependents: Vec<Vec<usize>>,
    /// Whether the run settles each step: all, unless the options name
    /// targets (then those and the steps they need).
    requested: Vec<bool>,
    /// What is known of each step, by its position in the plan.
    states: Vec<StepState>,
    /// Writes settled steps to the history (flushed whenever the
    /// coordinator is about to wait, so no record waits on a running step).
    recorder: Recorder<'a>,
    /// What the cache lookups of this run found so far.
    reuse_checks: crate::store::ReuseChecks,
    reports: BTreeMap<String, StepReport>,
    /// The run's event sink, its panics contained.
    sink: Option<Arc<GuardedSink>>,
    /// What executors report to: the sink, with metric values kept for the
    /// history while their steps execute.
    metric_tap: Arc<MetricTap>,
    /// The team's shared cache, if the run uses one.
    remote: Option<RemoteUse<'a>>,
    /// The cache key of every result the run reused or recorded (steps and
    /// map entries), and of those it executed, for the shared cache.
    used_keys: Vec<Digest>,
    executed_keys: Vec<Digest>,
    /// Warnings about the run as a whole.
    run_warnings: Vec<String>,
}

/// What the coordinator knows of one step while the run lasts: where it
/// is, and what it gathered on the way.
#[derive(Default)]
struct StepState {
    phase: Phase,
    /// Whether its start was announced to the sink.
    announced: bool,
    /// Its cache key, once its inputs are known.
    key: Option<Digest>,
    /// Its key material as the history keeps it (for an execution).
    key_json: Option<String>,
    /// The run whose result it reuses.
    reused_from: Option<String>,
    /// Why a cached result was too old to reuse (`reuse = "7d"`).
    expired: Option<String>,
    /// Every metric value it reported, in order.
    series: Vec<MetricPoint>,
    warnings: Vec<String>,
    /// In a verifying run, the cached outputs a re-execution must match.
    expected: Option<BTreeMap<String, Artifact>>,
    /// In a verifying run, what the verification found.
    verification: Option<Verification>,
    /// Where its execution's time went (summed over map entries).
    phases: Option<Phases>,
    /// Its failed native calls (summed over map entries).
    native_failures: u64,
    /// Its failed executions that were retried (a map step's entries' too).
    attempts: Vec<Attempt>,
    /// Where its executions ran (a map step's entries' too).
    placements: Vec<crate::Placement>,
}

/// Where a step is in the run.
enum Phase {
    /// Waiting for `upstream` steps to settle; `blocked` once one of them
    /// did not succeed.
    Waiting { upstream: usize, blocked: bool },
    /// Dispatched: being admitted, executed, or waiting for an identical
    /// execution to end.
    Running,
    /// A map step whose entries are in flight.
    Mapping(MapRun),
    /// Settled, with its outputs (none unless it succeeded).
    Settled { outputs: BTreeMap<String, Artifact> },
}

impl Default for Phase {
    fn default() -> Self {
        Phase::Waiting { upstream: 0, blocked: false }
    }
}

impl StepState {
    /// Whether it waits for no upstream step.
    fn is_ready(&self) -> bool {
        matches!(self.phase, Phase::Waiting { upstream: 0, .. })
    }

    /// The outputs of a settled step (empty before it settles).
    fn outputs(&self) -> &BTreeMap<String, Artifact> {
        static NONE: BTreeMap<String, Artifact> = BTreeMap::new();
        match &self.phase {
            Phase::Settled { outputs } => outputs,
            _ => &NONE,
        }
    }
}

/// What the run does with a step (or a map entry) whose key is known.
enum Decision {
    /// Reuse this cached result.
    Reuse(crate::store::CacheEntry),
    /// Execute it.
    Execute,
    /// Execute it without recording, to compare with these cached outputs.
    Compare(BTreeMap<String, Artifact>),
    /// Fail it, for this reason, without executing.
    Refuse(StepErrorKind),
}

/// Which execution a job is: a step, and for a map step the entry.
type JobId = (usize, Option<usize>);

impl<'a> Coordinator<'a> {
    pub(crate) fn new(
        engine: &'a Services<'a>,
        options: &'a RunOptions,
        run_id: &'a str,
        scope: RunScope,
        plan: Vec<PlannedStep<'a>>,
        pipeline_inputs: BTreeMap<String, Artifact>,
        sink: Option<Arc<GuardedSink>>,
    ) -> Self {
        let index: BTreeMap<&str, usize> = plan.iter().enumerate().map(|(i, p)| (p.step.name(), i)).collect();
        let mut dependents = vec![Vec::new(); plan.len()];
        let mut states: Vec<StepState> = (0..plan.len()).map(|_| StepState::default()).collect();
        for (i, planned) in plan.iter().enumerate() {
            for upstream in planned.step.upstream() {
                dependents[index[upstream]].push(i);
                if let Phase::Waiting { upstream, .. } = &mut states[i].phase {
                    *upstream += 1;
                }
            }
        }
        let mut requested: Vec<bool> = plan.iter().map(|planned| options.targets(planned.step.name())).collect();
        let mut needing: Vec<usize> = (0..plan.len()).filter(|&i| requested[i]).collect();
        while let Some(i) = needing.pop() {
            for upstream in plan[i].step.upstream() {
                let upstream = index[upstream];
                if !std::mem::replace(&mut requested[upstream], true) {
                    needing.push(upstream);
                }
            }
        }
        let metric_tap = Arc::new(MetricTap::new(sink.clone().map(|sink| sink as Arc<dyn EventSink>)));
        let reuse_checks =
            crate::store::ReuseChecks::new(!options.is_read_only(), engine.store.reuse_index(scope.reuse_index));
        Self {
            engine,
            options,
            run_id,
            scope,
            recorder: Recorder::new(engine.history, engine.store, run_id, metric_tap.clone(), options.is_read_only()),
            reuse_checks,
            reports: BTreeMap::new(),
            metric_tap,
            sink,
            plan,
            pipeline_inputs,
            index,
            dependents,
            requested,
            states,
            remote: options.remote().filter(|_| !options.is_read_only()).map(RemoteUse::new),
            used_keys: Vec::new(),
            executed_keys: Vec::new(),
            run_warnings: Vec::new(),
        }
    }

    /// Runs every step to an outcome and reports the run. The worker pool
    /// is started only when a step must execute: a run whose steps are all
    /// cached settles them here, with at most the history's writer thread.
    /// Returns the report and the record of every step, for the run's document.
    pub(crate) fn drive(
        mut self,
        pipeline: &str,
        executor: &dyn Executor,
    ) -> crate::Result<(RunReport, Vec<StepRecord>)> {
        let steps = self.plan.len();
        std::thread::scope(|scope| {
            let writer = self.recorder.write_on(scope, steps);
            self.schedule(executor);
            self.flush_history();
            if let Some(index) = self.reuse_checks.next_index() {
                // Only a saving for later runs, which read the entries
                // themselves when the index cannot be written.
                let _ = self.engine.store.save_reuse_index(index);
            }
            if let Some(writer) = writer {
                for (steps, err) in self.recorder.join(writer) {
                    self.note_unrecorded(steps, &err);
                }
            }
            self.push_to_remote();
            Ok(self.into_report(pipeline))
        })
    }

    /// Dispatches, admits and settles steps until none is left to run.
    fn schedule(&mut self, executor: &dyn Executor) {
        let (sender, receiver) = mpsc::channel::<Message>();
        let mut ready: Vec<usize> = (0..self.plan.len()).filter(|&i| self.states[i].is_ready()).rev().collect();
        let mut runnable = self.dispatch_ready(&mut ready);
        let events = Some(self.metric_tap.clone() as Arc<dyn EventSink>);
        let admission = self.engine.admission.clone();
        let _wake_on_cancel = self.options.cancel_token().map(|token| {
            let to = sender.clone();
            token.on_cancel(move || drop(to.send(Message::Cancelled)))
        });
        // Each execution holds its ticket (a worker, GPU slots, its tenant's
        // share) until its result is in; a copy of its job is kept in case it
        // must be submitted again.
        let mut running: HashMap<JobId, (Ticket, Job)> = HashMap::new();
        let mut parked: HashMap<JobId, Job> = HashMap::new();
        // Jobs waiting, without a ticket, for an identical execution to end.
        let mut awaiting_key: HashMap<JobId, ()> = HashMap::new();
        // Failed jobs waiting, without a ticket, to be tried again.
        let mut retrying: HashMap<JobId, ()> = HashMap::new();
        let start =
            |this: &mut Self, id: JobId, mut job: Job, ticket: Ticket, running: &mut HashMap<JobId, (Ticket, Job)>| {
                job.spec.device = ticket.device();
                running.insert(id, (ticket, job.clone()));
                if this.announce(id.0) {
                    let record = this.running_record(id.0);
                    this.recorder.executing(record);
                }
                let to = sender.clone();
                let done = Box::new(move |finished| drop(to.send(Message::Finished(id, Box::new(finished)))));
                executor.submit(job, events.clone(), done);
            };
        loop {
            for (id, job) in runnable.drain(..) {
                let to = sender.clone();
                let deliver = move |ticket| drop(to.send(Message::Admitted(id, ticket)));
                let need = Need { memory: job.spec.limits.memory, gpus: self.gpus_of(id.0) };
                match admission.request(&self.scope.tenant, need, deliver) {
                    Some(ticket) => start(self, id, job, ticket, &mut running),
                    None => drop(parked.insert(id, job)),
                }
            }
            if self.recorder.flush_due_in() == Some(Duration::ZERO) {
                self.flush_history();
            }
            if running.is_empty() && parked.is_empty() && awaiting_key.is_empty() && retrying.is_empty() {
                break;
            }
            // A long wait: the executing steps go in the history, with what
            // they report as they go, so a run killed meanwhile lists them.
            // Settled steps are written when due (see `Recorder`), even
            // while nothing else happens.
            let mut wait = RECORD_RUNNING_AFTER;
            let next = loop {
                let flush_in = self.recorder.flush_due_in();
                match receiver.recv_timeout(flush_in.map_or(wait, |due| due.min(wait))) {
                    Err(mpsc::RecvTimeoutError::Timeout) if flush_in.is_some() => self.flush_history(),
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        self.recorder.waiting_long();
                        wait = LIVE_METRICS_EVERY;
                    }
                    received => break received,
                }
            };
            match next {
                Ok(Message::Finished(id, finished)) if finished.deferred => {
                    let Some((ticket, job)) = running.remove(&id) else { continue };
                    drop(ticket);
                    awaiting_key.insert(id, ());
                    self.await_key(id, job, sender.clone());
                }
                Ok(Message::Finished(id, finished)) => {
                    let job = running.remove(&id).map(|(_ticket, job)| job);
                    if let Some(job) = job.as_ref().filter(|job| job.spec.record)
                        && finished.outputs.is_ok()
                        && finished.reused_from.is_none()
                        && finished.native_failures == 0
                    {
                        self.executed_keys.push(job.spec.key);
                        self.used_keys.push(job.spec.key);
                    }
                    match job.and_then(|job| Some((job, self.retry_delay(id, &finished)?))) {
                        Some((job, delay)) => {
                            retrying.insert(id, ());
                            retry_after(id, job, delay, sender.clone());
                        }
                        None => self.record(id, *finished, &mut ready),
                    }
                }
                Ok(Message::Retry(id, job)) => {
                    if retrying.remove(&id).is_some() {
                        runnable.push((id, *job));
                    }
                }
                Ok(Message::KeyFree(id, job)) => {
                    if awaiting_key.remove(&id).is_some() {
                        runnable.push((id, *job));
                    }
                }
                Ok(Message::Admitted(id, ticket)) => {
                    if let Some(job) = parked.remove(&id) {
                        start(self, id, job, ticket, &mut running);
                    }
                }
                Ok(Message::Cancelled) => {
                    let waiting: Vec<(JobId, Job)> = parked.drain().collect();
                    for (id, job) in waiting {
                        self.record(id, step_exec::cancelled(&job), &mut ready);
                    }
                    for (id, ()) in awaiting_key.drain().chain(retrying.drain()) {
                        let step = self.plan[id.0].step.name();
                        self.record(id, Finished::failure(step, StepErrorKind::Cancelled), &mut ready);
                    }
                }
                Err(_) => break,
            }
            runnable.extend(self.dispatch_ready(&mut ready));
        }
    }

    /// Sends the results the run executed to the shared cache, and the keys
    /// of all it used (for `weir pull RUN`).
    fn push_to_remote(&mut self) {
        let Some(remote) = self.remote.as_ref().filter(|remote| remote.is_up()) else { return };
        for key in &self.executed_keys {
            if let Err(why) = crate::remote::push(self.engine.store, remote.remote, key, &remote.pushed) {
                remote.pushed.failed(why);
            }
        }
        if let Err(err) = remote.remote.put_run(self.run_id, &self.used_keys) {
            remote.pushed.failed(format!("recording the run's keys: {err}"));
        }
        let failed = remote.pushed.transfer().failed;
        if let Some(first) = failed.first() {
            self.run_warnings.push(format!(
                "{} result(s) could not be sent to the shared cache at {} (the first: {first})",
                failed.len(),
                remote.remote.describe()
            ));
        }
    }

    /// Copies step `i`'s result under `key` from the shared cache, if it
    /// has one that checks out.
    fn pull(&mut self, i: usize, key: &Digest) -> Option<crate::store::CacheEntry> {
        let remote = self.remote.as_ref().filter(|remote| remote.is_up())?;
        match crate::remote::pull(self.engine.store, remote.remote, key, &remote.pulled) {
            Ok(entry) => entry,
            Err(PullError::Remote(at, RemoteError::Unreachable(why))) => {
                if remote.went_down() {
                    self.run_warnings
                        .push(format!("the shared cache at {at} is unreachable ({why}); the run went on without it"));
                }
                None
            }
            Err(err) => {
                remote.pulled.failed(err.to_string());
                self.states[i].warnings.push(format!("{err}; it was computed here instead"));
                None
            }
        }
    }

    /// Waits on a thread of its own (holding no worker) until the identical
    /// execution that holds `job`'s key lock ends, then hands `job` back.
    fn await_key(&self, id: JobId, job: Job, to: mpsc::Sender<Message>) {
        let store = self.engine.store.clone();
        let mut unshared = job.clone();
        let back = to.clone();
        let waiting = std::thread::Builder::new().name("weir-key-wait".into()).spawn(move || {
            // A failure to lock is the job's to report when it runs again.
            drop(store.lock_key(&job.spec.key));
            let _ = to.send(Message::KeyFree(id, Box::new(job)));
        });
        if waiting.is_err() {
            // No thread to wait with: execute it now rather than wait at all.
            unshared.spec.share = false;
            let _ = back.send(Message::KeyFree(id, Box::new(unshared)));
        }
    }

    /// When the failed execution `id` is to be tried again, as its step's
    /// retry policy says: records the attempt, announces the retry, and
    /// returns the wait before it.
    fn retry_delay(&mut self, id: JobId, finished: &Finished) -> Option<Duration> {
        let Err(error) = &finished.outputs else { return None };
        if self.options.cancel_token().is_some_and(CancelToken::is_cancelled) {
            return None;
        }
        let (i, entry) = id;
        let policy = self.plan[i].step.retry();
        let entry = entry.and_then(|index| match &self.states[i].phase {
            Phase::Mapping(run) => Some(run.entries[index].0.clone()),
            _ => None,
        });
        let failed_before = self.states[i].attempts.iter().filter(|attempt| attempt.entry == entry).count() as u32;
        if failed_before >= policy.retries || !policy.covers(&error.kind) {
            return None;
        }
        let attempt = failed_before + 1;
        let delay = policy.delay_before(attempt + 1);
        let text = error.kind.to_string();
        self.emit(&Event::StepRetrying {
            run: self.run_id,
            step: self.plan[i].step.name(),
            entry: entry.as_deref(),
            attempt,
            attempts: policy.retries + 1,
            error: &text,
            delay,
        });
        self.states[i].attempts.push(Attempt {
            entry,
            attempt,
            error: error.to_string(),
            error_kind: error.kind.clone(),
            duration_ms: finished.duration.as_secs_f64() * 1000.0,
            logs: finished.logs,
        });
        Some(delay)
    }

    /// Keys every ready step (settling those that are cached or skipped,
    /// which may make more ready) and returns the executions to admit.
    fn dispatch_ready(&mut self, ready: &mut Vec<usize>) -> Vec<(JobId, Job)> {
        let mut runnable = Vec::new();
        while let Some(i) = ready.pop() {
            runnable.extend(self.dispatch(i, ready));
        }
        runnable
    }

    /// The GPU slots step `i` holds while it executes: what it asks for,
    /// or none on an engine without slots (it then runs on the CPU).
    fn gpus_of(&self, i: usize) -> usize {
        if self.engine.gpu_slots == 0 { 0 } else { self.plan[i].step.resources().gpu as usize }
    }

    /// The run's report, once every step has settled, and its steps' records.
    fn into_report(self, pipeline: &str) -> (RunReport, Vec<StepRecord>) {
        let status = if self.reports.values().any(|r| r.status == StepStatus::Cancelled) {
            RunStatus::Cancelled
        } else if self
            .reports
            .values()
            .all(|r| matches!(r.status, StepStatus::Ran | StepStatus::Cached | StepStatus::NotRequested))
        {
            RunStatus::Succeeded
        } else {
            RunStatus::Failed
        };
        let mut warnings: Vec<String> = self
            .sink
            .as_ref()
            .and_then(|sink| sink.panic())
            .map(|panic| format!("the event sink panicked ({panic}) and received no further events"))
            .into_iter()
            .collect();
        warnings.extend(self.run_warnings);
        let remote = self.remote.map(|remote| crate::report::RemoteUsage {
            at: remote.remote.describe(),
            pulled: remote.pulled.transfer(),
            pushed: remote.pushed.transfer(),
        });
        let report = RunReport {
            run_id: self.run_id.to_owned(),
            pipeline: pipeline.to_owned(),
            status,
            steps: self.reports,
            outputs: BTreeMap::new(),
            warnings,
            record: None,
            remote,
        };
        (report, self.recorder.into_records())
    }

    /// Tells the sink that step `i` started, once; whether it was news.
    fn announce(&mut self, i: usize) -> bool {
        let news = !std::mem::replace(&mut self.states[i].announced, true);
        if news {
            self.emit(&Event::StepStarted { run: self.run_id, step: self.plan[i].step.name() });
        }
        news
    }

    /// The history's record of step `i` while it executes.
    fn running_record(&self, i: usize) -> StepRecord {
        StepRecord {
            step: self.plan[i].step.name().to_owned(),
            position: i,
            status: StepStatus::Running,
            cache_key: self.states[i].key,
            reused_from: None,
            forced: None,
            duration_ms: 0.0,
            finished: None,
            key_material: None,
            inputs: BTreeMap::new(),
            outputs: BTreeMap::new(),
            error: None,
            logs: None,
            metrics: BTreeMap::new(),
            entries: BTreeMap::new(),
            details: StepDetails::default(),
            series: Vec::new(),
        }
    }

    fn emit(&self, event: &Event<'_>) {
        if let Some(sink) = &self.sink {
            sink.event(event);
        }
    }

    /// Settles step `i` from the cache (or as skipped), or returns the jobs
    /// to execute: one, or for a map step one per entry not in the cache.
    fn dispatch(&mut self, i: usize, ready: &mut Vec<usize>) -> Vec<(JobId, Job)> {
        let started = Instant::now();
        let blocked = matches!(self.states[i].phase, Phase::Waiting { blocked: true, .. });
        self.states[i].phase = Phase::Running;
        if !self.requested[i] {
            // Nothing requested needs it, so nothing requested waits on it.
            self.settle(i, report(StepStatus::NotRequested), ready);
            return Vec::new();
        }
        if blocked || self.options.is_cancelled() {
            let blocked_by = self.plan[i].step.upstream().find(|upstream| {
                self.reports
                    .get(*upstream)
                    .is_some_and(|r| matches!(r.status, StepStatus::Failed | StepStatus::Skipped))
            });
            // A step that cannot run because of a failure is skipped; one
            // that did not run because the run stopped is cancelled.
            let status = if blocked_by.is_some() { StepStatus::Skipped } else { StepStatus::Cancelled };
            let blocked_by = blocked_by.map(str::to_owned);
            self.settle(i, StepReport { blocked_by, ..report(status) }, ready);
            return Vec::new();
        }
        let inputs = self.inputs_of(i);
        let key = self.material_of(i, &inputs).key();
        self.states[i].key = Some(key);
        if let Some(mapped) = self.plan[i].step.map() {
            self.remember_key_material(i, &inputs);
            let directory = inputs[mapped];
            return self.dispatch_map(i, mapped, directory, inputs, started, ready);
        }
        match self.decide(i, &key, false) {
            Decision::Reuse(entry) => {
                self.states[i].reused_from = Some(entry.run_id.clone());
                let report = StepReport {
                    duration: started.elapsed(),
                    outputs: entry.outputs,
                    cache_key: Some(key),
                    logs: Some(Logs { stdout: entry.stdout, stderr: entry.stderr }),
                    metrics: entry.metrics,
                    ..report(StepStatus::Cached)
                };
                self.settle(i, report, ready);
                Vec::new()
            }
            Decision::Compare(expected) => {
                self.states[i].expected = Some(expected);
                self.remember_key_material(i, &inputs);
                let mut job = self.job(i, inputs, key);
                (job.spec.record, job.spec.share) = (false, false);
                vec![((i, None), job)]
            }
            Decision::Execute => {
                self.remember_key_material(i, &inputs);
                vec![((i, None), self.job(i, inputs, key))]
            }
            Decision::Refuse(kind) => {
                // `weir status` explains what would execute from this material.
                self.remember_key_material(i, &inputs);
                let step = self.plan[i].step.name();
                self.record((i, None), Finished::failure(step, kind), ready);
                Vec::new()
            }
        }
    }

    /// What the run does with step `i` (an entry of it, for a map step)
    /// under `key`: the run's policy, in one place. A verifying run
    /// re-executes a verified step's cached result to compare; otherwise a
    /// reusable result is reused, and a read-only run refuses to execute.
    fn decide(&mut self, i: usize, key: &Digest, entry: bool) -> Decision {
        if !entry && self.options.verifies(self.plan[i].step.name()) {
            match self.engine.store.cache_get(key) {
                Some(cached) => return Decision::Compare(cached.outputs),
                None => self.states[i].verification = Some(Verification::NothingToCompare),
            }
        }
        match self.cached(i, key) {
            Some(cached) => Decision::Reuse(cached),
            None if self.options.is_read_only() => Decision::Refuse(StepErrorKind::ReadOnly),
            None => Decision::Execute,
        }
    }

    /// Keeps step `i`'s key material, as JSON, for the history record of a
    /// step that executes (`weir explain` compares executions; a reused
    /// step's material is that of the execution it reuses).
    fn remember_key_material(&mut self, i: usize, inputs: &BTreeMap<String, Artifact>) {
        let recorded = RecordedMaterial {
            material: self.material_of(i, inputs),
            ignored_params: self.plan[i].step.ignored_params(),
        };
        self.states[i].key_json = serde_json::to_string(&recorded).ok();
    }

    /// Expands map step `i` over the entries of `directory`.
    fn dispatch_map(
        &mut self,
        i: usize,
        mapped: &str,
        directory: Artifact,
        inputs: BTreeMap<String, Artifact>,
        started: Instant,
        ready: &mut Vec<usize>,
    ) -> Vec<(JobId, Job)> {
        let tree = match self.engine.store.read_tree(&directory.digest) {
            Ok(tree) => tree,
            Err(err) => {
                // A read-only run does not store a changed input directory.
                let kind = if self.options.is_read_only() {
                    StepErrorKind::ReadOnly
                } else {
                    StepErrorKind::Engine(format!("reading mapped input `{mapped}`: {err}"))
                };
                let error = StepError { step: self.plan[i].step.name().to_owned(), kind, stderr_tail: String::new() };
                self.settle(i, StepReport { error: Some(error), ..report(StepStatus::Failed) }, ready);
                return Vec::new();
            }
        };
        let entries: Vec<(String, Artifact)> = tree
            .entries()
            .iter()
            .map(|entry| (entry.name.clone(), Artifact { kind: entry.kind, digest: entry.digest }))
            .collect();
        let mut run = MapRun::new(entries.clone(), started);
        let mut jobs = Vec::new();
        for (index, (_, artifact)) in entries.into_iter().enumerate() {
            let mut entry_inputs = inputs.clone();
            entry_inputs.insert(mapped.to_owned(), artifact);
            let key = self.material_of(i, &entry_inputs).key();
            match self.decide(i, &key, true) {
                Decision::Reuse(entry) => {
                    let logs = Some(Logs { stdout: entry.stdout, stderr: entry.stderr });
                    let outcome =
                        EntryOutcome { reused: true, outputs: Ok(entry.outputs), logs, metrics: entry.metrics };
                    run.settle(index, outcome);
                }
                Decision::Refuse(kind) => {
                    let error =
                        StepError { step: self.plan[i].step.name().to_owned(), kind, stderr_tail: String::new() };
                    let outcome =
                        EntryOutcome { reused: false, outputs: Err(error), logs: None, metrics: BTreeMap::new() };
                    run.settle(index, outcome);
                }
                Decision::Execute | Decision::Compare(_) => {
                    jobs.push(((i, Some(index)), self.job(i, entry_inputs, key)));
                }
            }
        }
        self.states[i].phase = Phase::Mapping(run);
        self.finish_map_if_done(i, ready);
        jobs
    }

    /// The reusable cache entry for step `i` under `key`, unless forced to
    /// run. A cached result whose bytes changed on disk is dropped, with a
    /// warning, and the step runs again.
    fn cached(&mut self, i: usize, key: &Digest) -> Option<crate::store::CacheEntry> {
        let step = self.plan[i].step;
        if !step.reuse() || self.options.forces(step.name()) {
            return None;
        }
        let found = match self.engine.store.cache_get_intact(key, &mut self.reuse_checks) {
            Ok(None) => Ok(self.pull(i, key)),
            local => local,
        };
        let found = match found {
            Ok(Some(entry)) if step.max_age().is_some_and(|max_age| too_old(&entry, max_age)) => {
                let age = entry.created.map_or("of unknown age".to_owned(), |created| {
                    format!("{} old", age_text(crate::history::now() - created))
                });
                self.reuse_checks.not_reused(key);
                let max_age = age_text(step.max_age().unwrap_or_default().as_secs_f64());
                let reason =
                    format!("expiry (reuse = \"{max_age}\"): its cached result, of run {}, was {age}", entry.run_id);
                self.states[i].expired.get_or_insert(reason);
                None
            }
            Ok(entry) => entry,
            Err(corrupt) => {
                let listed: Vec<String> = corrupt.iter().map(ToString::to_string).collect();
                self.states[i].warnings.push(format!(
                    "its cached result was corrupt ({} no longer matched its digest) and was computed again",
                    listed.join(", ")
                ));
                None
            }
        };
        if found.is_some() {
            self.used_keys.push(*key);
        }
        found
    }

    /// The job that executes step `i` on `inputs`.
    fn job(&mut self, i: usize, inputs: BTreeMap<String, Artifact>, key: Digest) -> Job {
        let planned = &self.plan[i];
        let step = planned.step;
        let gpus = step.resources().gpu;
        // On a cluster, GPUs are the cluster's to hand out (`--gres`).
        if gpus > 0 && !self.engine.cluster_gpus && self.states[i].warnings.is_empty() {
            if self.engine.gpu_slots == 0 {
                self.states[i]
                    .warnings
                    .push(format!("asked for {gpus} GPU(s), but this engine has no GPU slots; ran on the CPU"));
            } else if self.engine.gpus_detected == 0 {
                self.states[i].warnings.push(format!(
                    "held {gpus} GPU slot(s), but no GPU was detected; native functions ran on their CPU path"
                ));
            }
        }
        let spec = JobSpec {
            step: step.name().to_owned(),
            run_id: self.run_id.to_owned(),
            tenant: self.scope.tenant.name.to_string(),
            key,
            code: planned.prepared.reference.clone(),
            argv: planned.argv.clone(),
            params: planned.params.clone(),
            inputs,
            outputs: step.outputs().clone(),
            limits: planned.limits,
            deterministic: step.deterministic(),
            natives: planned.natives.keys().cloned().collect(),
            device: Device::Cpu,
            gpus,
            slurm: step.slurm().clone(),
            record: step.reuse(),
            // An expired result of this key must not serve it either.
            share: step.reuse() && !self.options.forces(step.name()) && self.states[i].expired.is_none(),
            store_budget: self
                .scope
                .store
                .as_ref()
                .map(|account| (self.scope.tenant.name.to_string(), account.remaining())),
        };
        Job {
            spec,
            code: planned.prepared.code.clone(),
            store_account: self.scope.store.clone(),
            cancel: self.options.cancel_token().cloned(),
        }
    }

    /// When every entry of map step `i` has ended, gathers and settles it.
    fn finish_map_if_done(&mut self, i: usize, ready: &mut Vec<usize>) {
        if !matches!(&self.states[i].phase, Phase::Mapping(run) if run.is_done()) {
            return;
        }
        let Phase::Mapping(run) = std::mem::replace(&mut self.states[i].phase, Phase::Running) else { return };
        let duration = run.started.elapsed();
        let step = self.plan[i].step;
        if run.entries.is_empty() {
            let input = step.map().unwrap_or_default();
            self.states[i].warnings.push(format!(
                "mapped over `{input}`, an empty directory: no entry ran, and each output is an empty directory"
            ));
        }
        let gathered = run.gather(step.name(), step.outputs(), self.engine.store);
        let report = StepReport {
            duration,
            cache_key: self.states[i].key,
            outputs: gathered.outputs,
            error: gathered.error,
            entries: gathered.entries,
            metrics: gathered.metrics,
            warnings: std::mem::take(&mut self.states[i].warnings),
            ..report(gathered.status)
        };
        self.settle(i, report, ready);
    }

    /// Records a finished execution (of a step, or of one map entry).
    fn record(&mut self, id: JobId, finished: Finished, ready: &mut Vec<usize>) {
        let (i, entry) = id;
        if finished.reused_from.is_none() {
            self.states[i].phases = Some(self.states[i].phases.unwrap_or_default() + finished.phases);
        }
        self.states[i].warnings.extend(finished.warnings);
        self.states[i].native_failures += finished.native_failures;
        self.states[i].placements.extend(finished.placement);
        if let Some(index) = entry {
            let outcome = EntryOutcome {
                reused: finished.reused_from.is_some(),
                outputs: finished.outputs,
                logs: finished.logs,
                metrics: finished.metrics,
            };
            if let Phase::Mapping(run) = &mut self.states[i].phase {
                run.settle(index, outcome);
            }
            self.finish_map_if_done(i, ready);
            return;
        }
        let served = finished.reused_from.is_some();
        if served {
            self.states[i].reused_from = finished.reused_from;
        }
        let (mut status, mut outputs, mut error) = match finished.outputs {
            Ok(outputs) if served => (StepStatus::Cached, outputs, None),
            Ok(outputs) => (StepStatus::Ran, outputs, None),
            Err(error) if error.kind == StepErrorKind::Cancelled => {
                (StepStatus::Cancelled, BTreeMap::new(), Some(error))
            }
            Err(error) => (StepStatus::Failed, BTreeMap::new(), Some(error)),
        };
        if let Some(expected) = self.states[i].expected.take().filter(|_| status == StepStatus::Ran) {
            let differing = differing_outputs(&expected, &outputs);
            self.states[i].verification =
                Some(if differing.is_empty() { Verification::Reproduced } else { Verification::Differs });
            if !differing.is_empty() {
                status = StepStatus::Failed;
                let step = self.plan[i].step.name().to_owned();
                let kind = StepErrorKind::Nondeterministic { outputs: differing };
                error = Some(StepError { step, kind, stderr_tail: String::new() });
            }
            outputs = expected;
        }
        self.states[i].series = finished.series;
        let report = StepReport {
            duration: finished.duration,
            outputs,
            error,
            cache_key: self.states[i].key,
            logs: finished.logs,
            metrics: finished.metrics,
            warnings: std::mem::take(&mut self.states[i].warnings),
            ..report(status)
        };
        self.settle(i, report, ready);
    }

    /// Stores a step's report and releases (or blocks) its dependents.
    fn settle(&mut self, i: usize, mut report: StepReport, ready: &mut Vec<usize>) {
        report.attempts = std::mem::take(&mut self.states[i].attempts);
        report.verification = self.states[i].verification.take();
        report.phases = self.states[i].phases.take();
        report.native_failures = std::mem::take(&mut self.states[i].native_failures);
        report.placements = std::mem::take(&mut self.states[i].placements);
        // A step found not reproducible still hands its cached outputs on,
        // so a verifying run checks the steps below it too.
        let not_reproducible =
            report.error.as_ref().is_some_and(|error| matches!(error.kind, StepErrorKind::Nondeterministic { .. }));
        let succeeded = matches!(report.status, StepStatus::Ran | StepStatus::Cached) || not_reproducible;
        let record = self.history_record(i, &report);
        self.recorder.settled(record);
        self.states[i].phase = Phase::Settled { outputs: report.outputs.clone() };
        if report.status == StepStatus::Cached {
            self.announce(i);
        }
        let name = self.plan[i].step.name();
        self.emit(&Event::StepFinished { run: self.run_id, step: name, status: report.status });
        self.reports.insert(name.to_owned(), report);
        for &next in &self.dependents[i] {
            if let Phase::Waiting { upstream, blocked } = &mut self.states[next].phase {
                *blocked |= !succeeded;
                *upstream -= 1;
                if *upstream == 0 {
                    ready.push(next);
                }
            }
        }
    }

    /// Writes the settled steps' records to the history. A failure is
    /// reported as a warning on those steps: the run goes on.
    fn flush_history(&mut self) {
        if let Err((steps, err)) = self.recorder.flush() {
            self.note_unrecorded(steps, &err);
        }
    }

    /// Warns on each of `steps` that its record could not be written.
    fn note_unrecorded(&mut self, steps: Vec<String>, err: &crate::Error) {
        for step in steps {
            if let Some(report) = self.reports.get_mut(&step) {
                report.warnings.push(format!("was not recorded in the run history: {err}"));
            }
        }
    }

    /// The artifacts bound to step `i`'s inputs (all upstream steps succeeded).
    fn inputs_of(&self, i: usize) -> BTreeMap<String, Artifact> {
        self.plan[i]
            .step
            .inputs()
            .iter()
            .map(|(name, source)| {
                let artifact = match source {
                    InputRef::Pipeline(input) => self.pipeline_inputs[input],
                    InputRef::Step { step, output } => self.states[self.index[step.as_str()]].outputs()[output],
                };
                (name.clone(), artifact)
            })
            .collect()
    }

    /// What step `i`'s cache key is computed from, with these inputs.
    fn material_of<'m>(&'m self, i: usize, inputs: &'m BTreeMap<String, Artifact>) -> KeyMaterial<'m> {
        let planned = &self.plan[i];
        KeyMaterial {
            format: KEY_FORMAT_VERSION,
            code: &planned.prepared.key,
            args: &planned.keyed_argv,
            params: Canonical(&planned.keyed_params),
            inputs: inputs.iter().map(|(name, artifact)| (name.as_str(), *artifact)).collect(),
            outputs: planned.step.outputs(),
            memory_limit: planned.limits.memory,
            natives: planned.natives.iter().map(|(name, version)| (name.as_str(), *version)).collect(),
            deterministic: planned.step.deterministic(),
            tenant: Some(&*self.scope.tenant.name).filter(|&name| name != crate::DEFAULT_TENANT),
        }
    }

    /// What the run history keeps of step `i`'s outcome.
    fn history_record(&mut self, i: usize, report: &StepReport) -> StepRecord {
        let step = self.plan[i].step;
        let executed = matches!(report.status, StepStatus::Ran | StepStatus::Failed);
        let expired = self.states[i].expired.take();
        let forced = match (executed, self.options.forced_by(step.name())) {
            (true, Some(reason)) => Some(reason),
            (true, None) if !step.reuse() => Some("reuse = false".to_owned()),
            (true, None) => expired,
            _ => None,
        };
        let inputs = match report.status {
            StepStatus::Skipped | StepStatus::Cancelled | StepStatus::NotRequested if report.cache_key.is_none() => {
                BTreeMap::new()
            }
            _ => self.inputs_of(i),
        };
        let mut series = std::mem::take(&mut self.states[i].series);
        // A cached step's values, and a map step's means (its entries' own
        // values are kept with each entry), are recorded as one point each.
        if report.status == StepStatus::Cached || !report.entries.is_empty() {
            let time = crate::history::now();
            series = report
                .metrics
                .iter()
                .map(|(name, value)| MetricPoint { name: name.clone(), value: *value, at: None, time })
                .collect();
        }
        StepRecord {
            step: step.name().to_owned(),
            position: i,
            status: report.status,
            cache_key: report.cache_key,
            reused_from: self.states[i].reused_from.take(),
            forced,
            duration_ms: report.duration.as_secs_f64() * 1000.0,
            finished: Some(crate::history::now()),
            key_material: self.states[i].key_json.take(),
            inputs: inputs.into_iter().map(|(name, artifact)| (name, artifact.digest)).collect(),
            outputs: report.outputs.iter().map(|(name, artifact)| (name.clone(), artifact.digest)).collect(),
            error: report.error.as_ref().map(|e| e.to_string()),
            logs: report.logs,
            metrics: report.metrics.clone(),
            entries: report.entries.clone(),
            details: StepDetails {
                error_kind: report.error.as_ref().map(|error| error.kind.clone()),
                warnings: report.warnings.clone(),
                native_failures: report.native_failures,
                blocked_by: report.blocked_by.clone(),
                verification: report.verification,
                phases: report.phases,
                attempts: report.attempts.clone(),
                placements: report.placements.clone(),
            },
            series,
        }
    }
}

/// Each output whose new digest differs from the cached one, described.
fn differing_outputs(expected: &BTreeMap<String, Artifact>, actual: &BTreeMap<String, Artifact>) -> Vec<String> {
    expected
        .iter()
        .filter(|(name, cached)| actual.get(*name) != Some(cached))
        .map(|(name, cached)| {
            let now = actual.get(name).map_or_else(|| "nothing".to_owned(), |a| a.digest.to_string());
            format!("`{name}` (cached {}, now {now})", cached.digest)
        })
        .collect()
}

/// Whether a cached result is older than `max_age` (one of unknown age is).
fn too_old(entry: &crate::store::CacheEntry, max_age: Duration) -> bool {
    entry.created.is_none_or(|created| crate::history::now() - created > max_age.as_secs_f64())
}

/// An age as a manifest writes one: `7d`, `36h`, `90m`, `45s`.
fn age_text(seconds: f64) -> String {
    let seconds = seconds.max(0.0);
    let (value, unit) = [(86400.0, "d"), (3600.0, "h"), (60.0, "m")]
        .into_iter()
        .find(|(size, _)| seconds >= *size)
        .map_or((seconds, "s"), |(size, unit)| (seconds / size, unit));
    let text = format!("{value:.1}");
    format!("{}{unit}", text.trim_end_matches(".0"))
}

/// A report with `status` and nothing else yet.
fn report(status: StepStatus) -> StepReport {
    StepReport {
        status,
        duration: Duration::ZERO,
        outputs: BTreeMap::new(),
        error: None,
        cache_key: None,
        logs: None,
        metrics: BTreeMap::new(),
        entries: BTreeMap::new(),
        warnings: Vec::new(),
        native_failures: 0,
        blocked_by: None,
        verification: None,
        phases: None,
        attempts: Vec::new(),
        placements: Vec::new(),
    }
}

/// Hands `job` back to the coordinator once `delay` is over, waiting on a
/// thread of its own so that no worker is held (without a thread to spare,
/// at once).
fn retry_after(id: JobId, job: Job, delay: Duration, to: mpsc::Sender<Message>) {
    let job = Box::new(job);
    let fallback = (job.clone(), to.clone());
    let waiting = std::thread::Builder::new().name("weir-retry-wait".into()).spawn(move || {
        std::thread::sleep(delay);
        let _ = to.send(Message::Retry(id, job));
    });
    if waiting.is_err() {
        let (job, to) = fallback;
        let _ = to.send(Message::Retry(id, job));
    }
}
