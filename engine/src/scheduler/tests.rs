//! The coordinator with a fake executor: which steps it dispatches, in what
//! order, what it reuses after a failure, and what a cancellation leaves.

use std::sync::Mutex;

use super::*;
use crate::cache_key::CodeKey;
use crate::cancel::CancelToken;
use crate::executor::{CodeRef, Done};
use crate::history::{History, OpenRun, RunEnd, RunStart};
use crate::kinds::Prepared;
use crate::native::StepContext;
use crate::step_exec::JobCode;
use crate::store::CacheEntry;
use crate::{NativeStep, OutputKind, Pipeline, StepBuilder, Store, TenantQuota};

/// What the fake executor does with a step's job.
#[derive(Clone, Copy, PartialEq)]
enum Outcome {
    /// Writes each output (its bytes: the step's name) and records the result.
    Succeed,
    /// Fails with exit status 1.
    Fail,
    /// Runs until the run is cancelled.
    UntilCancelled,
}

/// Executes nothing: settles each job as its script says, on a thread of
/// its own, and remembers the order of submissions.
struct FakeExecutor {
    store: Store,
    script: fn(&str) -> Outcome,
    submitted: Mutex<Vec<String>>,
}

impl Executor for FakeExecutor {
    fn submit(&self, job: Job, _events: Option<Arc<dyn EventSink>>, done: Done) {
        self.submitted.lock().unwrap().push(job.spec.step.clone());
        let (store, outcome) = (self.store.clone(), (self.script)(&job.spec.step));
        std::thread::spawn(move || done(settle(&store, &job, outcome)));
    }
}

fn settle(store: &Store, job: &Job, outcome: Outcome) -> Finished {
    let step = &job.spec.step;
    match outcome {
        Outcome::Fail => Finished::failure(step, StepErrorKind::Exit { code: 1 }),
        Outcome::UntilCancelled => {
            while !job.cancel.as_ref().is_some_and(CancelToken::is_cancelled) {
                std::thread::sleep(Duration::from_millis(5));
            }
            Finished::failure(step, StepErrorKind::Cancelled)
        }
        Outcome::Succeed => {
            let digest = store.put_bytes(step.as_bytes()).unwrap();
            let outputs: BTreeMap<String, Artifact> = job
                .spec
                .outputs
                .keys()
                .map(|name| (name.clone(), Artifact { kind: OutputKind::File, digest }))
                .collect();
            let logs = store.put_bytes(b"").unwrap();
            if job.spec.record {
                let entry = CacheEntry {
                    outputs: outputs.clone(),
                    stdout: logs,
                    stderr: logs,
                    metrics: BTreeMap::new(),
                    run_id: job.spec.run_id.clone(),
                    created: Some(crate::history::now()),
                    checked: BTreeMap::new(),
                };
                store.cache_put(&job.spec.key, &entry).unwrap();
            }
            Finished {
                outputs: Ok(outputs),
                logs: Some(Logs { stdout: logs, stderr: logs }),
                ..Finished::failure(step, StepErrorKind::Cancelled)
            }
        }
    }
}

/// Never runs: the fake executor stands in for it.
struct Unused;

impl NativeStep for Unused {
    fn name(&self) -> &str {
        "unused"
    }
    fn version(&self) -> u32 {
        1
    }
    fn run(&self, _: &mut StepContext<'_>) -> Result<(), String> {
        unreachable!("the fake executor runs nothing")
    }
}

/// `a` feeds `b` and `c`, which both feed `d`.
fn diamond() -> Pipeline {
    let step = |name: &str, inputs: &[&str]| {
        let mut step = StepBuilder::native(name, "unused").output("out", OutputKind::File);
        for input in inputs {
            step = step.input(*input, format!("{input}.out"));
        }
        step
    };
    Pipeline::builder("diamond")
        .step(step("a", &[]))
        .step(step("b", &["a"]))
        .step(step("c", &["a"]))
        .step(step("d", &["b", "c"]))
        .build()
        .unwrap()
}

/// A workspace to run the diamond in.
struct Bench {
    _dir: tempfile::TempDir,
    store: Store,
    history: History,
    admission: Arc<Admission>,
}

impl Bench {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let history = History::open(store.root()).unwrap();
        Self { _dir: dir, store, history, admission: Admission::new(4, 0, 0) }
    }

    /// Runs `pipeline` with a fake executor following `script`: the report
    /// and the steps in the order they were submitted.
    fn run(&self, pipeline: &Pipeline, options: &RunOptions, script: fn(&str) -> Outcome) -> (RunReport, Vec<String>) {
        let run_id = crate::run_id::new_run_id();
        let start = RunStart {
            id: &run_id,
            started: crate::history::now(),
            kind: "run",
            tenant: crate::DEFAULT_TENANT,
            pipeline: pipeline.name(),
            manifest_path: None,
            manifest_digest: None,
            params: &serde_json::json!({}),
            inputs: Vec::new(),
            labels: &Default::default(),
        };
        let record = OpenRun::start(&self.history, &start).unwrap();
        let services = Services {
            store: &self.store,
            history: &self.history,
            admission: self.admission.clone(),
            gpu_slots: 0,
            gpus_detected: 0,
            cluster_gpus: false,
        };
        let native: Arc<dyn NativeStep> = Arc::new(Unused);
        let plan = pipeline
            .steps()
            .iter()
            .map(|step| PlannedStep {
                step,
                prepared: Prepared {
                    code: JobCode::Native(native.clone()),
                    reference: CodeRef::Native { name: "unused".into(), version: 1 },
                    key: CodeKey::Native { name: "unused".into(), version: 1 },
                    argv0: step.name().to_owned(),
                },
                argv: vec![step.name().to_owned()],
                keyed_argv: vec![step.name().to_owned()],
                params: serde_json::json!({}),
                keyed_params: serde_json::json!({}),
                natives: BTreeMap::new(),
                limits: Limits::default(),
            })
            .collect();
        let tenant = Tenant { name: crate::DEFAULT_TENANT.into(), quota: Arc::new(TenantQuota::default()) };
        let scope = RunScope { tenant, store: None, reuse_index: Digest::of(b"scheduler test") };
        let executor = FakeExecutor { store: self.store.clone(), script, submitted: Mutex::default() };
        let (report, _) = Coordinator::new(&services, options, &run_id, scope, plan, BTreeMap::new(), None)
            .drive(pipeline.name(), &executor)
            .unwrap();
        record.close(&RunEnd::now(report.status, BTreeMap::new(), Vec::new())).unwrap();
        (report, executor.submitted.into_inner().unwrap())
    }
}

fn statuses(report: &RunReport) -> Vec<(&str, StepStatus)> {
    report.steps.iter().map(|(name, step)| (name.as_str(), step.status)).collect()
}

#[test]
fn steps_are_dispatched_when_their_inputs_are_known() {
    let bench = Bench::new();
    let (report, submitted) = bench.run(&diamond(), &RunOptions::new(), |_| Outcome::Succeed);
    assert_eq!(report.status, RunStatus::Succeeded);
    assert_eq!(submitted.first().map(String::as_str), Some("a"));
    assert_eq!(submitted.last().map(String::as_str), Some("d"));
    let mut middle = submitted[1..3].to_vec();
    middle.sort();
    assert_eq!(middle, ["b", "c"]);
    let (again, submitted) = bench.run(&diamond(), &RunOptions::new(), |_| Outcome::Fail);
    assert!(submitted.is_empty(), "a second run is all reused: {submitted:?}");
    assert_eq!(again.steps_with(StepStatus::Cached), ["a", "b", "c", "d"]);
}

#[test]
fn a_failure_skips_what_depends_on_it_and_the_next_run_reuses_the_rest() {
    let bench = Bench::new();
    let script = |step: &str| if step == "b" { Outcome::Fail } else { Outcome::Succeed };
    let (report, submitted) = bench.run(&diamond(), &RunOptions::new(), script);
    assert_eq!(report.status, RunStatus::Failed);
    use StepStatus::*;
    assert_eq!(statuses(&report), [("a", Ran), ("b", Failed), ("c", Ran), ("d", Skipped)]);
    assert_eq!(report.steps["d"].blocked_by.as_deref(), Some("b"));
    assert!(!submitted.contains(&"d".to_owned()));

    let (report, submitted) = bench.run(&diamond(), &RunOptions::new(), |_| Outcome::Succeed);
    assert_eq!(submitted, ["b", "d"], "only what did not succeed runs again");
    assert_eq!(statuses(&report), [("a", Cached), ("b", Ran), ("c", Cached), ("d", Ran)]);
}

#[test]
fn a_cancellation_settles_what_runs_and_what_waits_as_cancelled() {
    let bench = Bench::new();
    let token = CancelToken::new();
    let options = RunOptions::new().cancel_with(token.clone());
    let script = |step: &str| if step == "b" { Outcome::UntilCancelled } else { Outcome::Succeed };
    let cancel = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        token.cancel();
    });
    let (report, submitted) = bench.run(&diamond(), &options, script);
    cancel.join().unwrap();
    assert_eq!(report.status, RunStatus::Cancelled);
    use StepStatus::*;
    assert_eq!(statuses(&report), [("a", Ran), ("b", Cancelled), ("c", Ran), ("d", Cancelled)]);
    assert!(!submitted.contains(&"d".to_owned()), "nothing is dispatched after a cancellation");
    assert_eq!(report.steps["d"].cache_key, None, "`d` never started");

    let (report, submitted) = bench.run(&diamond(), &RunOptions::new(), |_| Outcome::Succeed);
    assert_eq!(submitted, ["b", "d"], "what finished before the cancellation is reused");
    assert_eq!(statuses(&report), [("a", Cached), ("b", Ran), ("c", Cached), ("d", Ran)]);
}

#[test]
fn a_target_dispatches_only_what_it_needs() {
    let bench = Bench::new();
    let (report, submitted) = bench.run(&diamond(), &RunOptions::new().target("b"), |_| Outcome::Succeed);
    assert_eq!(submitted, ["a", "b"]);
    assert_eq!(report.status, RunStatus::Succeeded, "what was asked for succeeded");
    use StepStatus::*;
    assert_eq!(statuses(&report), [("a", Ran), ("b", Ran), ("c", NotRequested), ("d", NotRequested)]);

    let (report, submitted) = bench.run(&diamond(), &RunOptions::new().target("c").target("b"), |_| Outcome::Fail);
    assert_eq!(submitted, ["c"], "a and b are reused; c fails");
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(statuses(&report), [("a", Cached), ("b", Cached), ("c", Failed), ("d", NotRequested)]);
}
