//! Native functions and steps registered by an embedding application:
//! versions in the cache key, GPU slot accounting, failures and events.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use weir::{
    Engine, Event, EventSink, GpuSupport, NativeStep, OutputKind, Pipeline, Resources, RunOptions, RunReport,
    StepBuilder, StepContext, StepStatus, native_fn,
};
use weir_tests::{Project, sdk_tool};

fn double(version: u32) -> impl weir::NativeFunction {
    native_fn("double", version, |_context, values: Vec<f64>| Ok(values.iter().map(|v| v * 2.0).collect::<Vec<f64>>()))
}

fn caller(function: &str, json: &str) -> StepBuilder {
    StepBuilder::new("caller", sdk_tool())
        .args(["call", function, json])
        .native_function(function)
        .output("result", OutputKind::File)
}

fn result_of(engine: &Engine, report: &weir::RunReport) -> String {
    let digest = report.output("caller", "result").expect("caller succeeded").digest;
    String::from_utf8(engine.store().read_file(&digest).unwrap()).unwrap()
}

#[test]
fn a_registered_function_is_callable_and_its_version_is_in_the_key() {
    let project = Project::new();
    let pipeline = Pipeline::builder("versions").step(caller("double", "[1.5, 2]")).build().unwrap();
    let engine =
        |version| Engine::builder().workspace(project.workspace()).native_function(double(version)).build().unwrap();
    let v1 = engine(1);
    let first = v1.run(&pipeline, &RunOptions::new()).unwrap();
    assert_eq!(first.steps_with(StepStatus::Ran), ["caller"]);
    assert_eq!(result_of(&v1, &first), "ok: [3.0,4.0]");
    assert_eq!(v1.run(&pipeline, &RunOptions::new()).unwrap().steps_with(StepStatus::Cached), ["caller"]);

    let v2 = engine(2);
    let after_bump = v2.run(&pipeline, &RunOptions::new()).unwrap();
    assert_eq!(after_bump.steps_with(StepStatus::Ran), ["caller"], "a new version invalidates the cache");
}

#[test]
fn a_gpu_only_function_without_a_gpu_is_a_clear_error() {
    let project = Project::new();
    let gpu_only = native_fn("gpu-only", 1, |_context, _: ()| Ok(1u8)).gpu(GpuSupport::GpuOnly);
    let engine = Engine::builder().workspace(project.workspace()).native_function(gpu_only).build().unwrap();
    let pipeline = Pipeline::builder("gpu").step(caller("gpu-only", "null")).build().unwrap();
    let report = engine.run(&pipeline, &RunOptions::new()).unwrap();
    let result = result_of(&engine, &report);
    assert!(result.contains("runs only on a GPU, and step `caller` has none"), "{result}");
}

#[test]
fn a_panicking_function_fails_the_step_not_the_engine() {
    let project = Project::new();
    let bomb = native_fn("bomb", 1, |_context, _: ()| -> Result<u8, String> { panic!("kaboom") });
    let engine = Engine::builder().workspace(project.workspace()).native_function(bomb).build().unwrap();
    let pipeline = Pipeline::builder("bomb").step(caller("bomb", "null")).build().unwrap();
    for _ in 0..2 {
        let report = engine.run(&pipeline, &RunOptions::new()).unwrap();
        let step = &report.steps["caller"];
        assert_eq!(step.status, StepStatus::Failed, "a panic is never cached as success");
        let error = step.error.as_ref().unwrap().to_string();
        assert!(error.contains("native function `bomb` panicked: kaboom"), "{error}");
        assert_eq!(step.native_failures, 1);
    }
}

#[test]
fn a_failed_native_call_is_counted_and_its_step_not_cached() {
    let project = Project::new();
    let flaky = native_fn("flaky", 1, |_context, _: ()| -> Result<u8, String> { Err("the device is busy".into()) });
    let engine = Engine::builder().workspace(project.workspace()).native_function(flaky).build().unwrap();
    let undeclared =
        StepBuilder::new("undeclared", sdk_tool()).args(["call", "flaky", "null"]).output("result", OutputKind::File);
    let pipeline = Pipeline::builder("flaky").step(caller("flaky", "null")).step(undeclared).build().unwrap();
    for _ in 0..2 {
        let report = engine.run(&pipeline, &RunOptions::new()).unwrap();
        assert_eq!(report.steps_with(StepStatus::Ran), ["caller", "undeclared"], "never reused from the cache");
        let caller = &report.steps["caller"];
        assert_eq!(caller.native_failures, 1);
        assert!(caller.warnings[0].contains("the first: the device is busy"), "{:?}", caller.warnings);
        assert!(caller.warnings[0].contains("its result is not cached"), "{:?}", caller.warnings);
        assert!(report.steps["undeclared"].warnings[0].contains("does not declare native function `flaky`"));
    }
}

/// A sink that panics on every event of one kind.
struct Panicky {
    on_metric: bool,
}

impl EventSink for Panicky {
    fn event(&self, event: &Event<'_>) {
        match event {
            Event::Metric { .. } if self.on_metric => panic!("sink bug on a metric"),
            Event::StepStarted { .. } if !self.on_metric => panic!("sink bug on a start"),
            _ => {}
        }
    }
}

#[test]
fn a_panicking_event_sink_neither_hangs_nor_corrupts_the_run() {
    let project = Project::new();
    let metrics = StepBuilder::new("train", sdk_tool()).args(["metrics"]).output("result", OutputKind::File);
    let pipeline = Pipeline::builder("sinks").step(metrics).build().unwrap();
    let engine = Engine::builder().workspace(project.workspace()).build().unwrap();
    for on_metric in [true, false] {
        let options = RunOptions::new().no_cache(true).events(Arc::new(Panicky { on_metric }));
        let report = engine.run(&pipeline, &options).unwrap();
        assert!(report.succeeded(), "{report:?}");
        assert!(report.warnings[0].contains("the event sink panicked (sink bug on a"), "{:?}", report.warnings);
        let run = engine.history().run_detail(&report.run_id).unwrap();
        assert_eq!(run.summary.status, weir::RunStatus::Succeeded, "the run's record is closed");
    }
}

/// A native step that sleeps and records when it ran, as `start end` in ms.
struct Nap;

impl NativeStep for Nap {
    fn name(&self) -> &str {
        "nap"
    }
    fn version(&self) -> u32 {
        1
    }
    fn run(&self, context: &mut StepContext<'_>) -> Result<(), String> {
        let millis: u64 = context.params::<serde_json::Value>()?["ms"].as_u64().ok_or("ms")?;
        let epoch = |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
        let start = epoch(std::time::SystemTime::now());
        std::thread::sleep(Duration::from_millis(millis));
        let end = epoch(std::time::SystemTime::now());
        context.metric("slept_ms", millis as f64);
        std::fs::write(context.output("when"), format!("{start} {end}")).map_err(|e| e.to_string())
    }
}

fn nap_engine(project: &Project, slots: usize, jobs: usize) -> Engine {
    Engine::builder().workspace(project.workspace()).jobs(jobs).gpu_slots(slots).native_step(Nap).build().unwrap()
}

/// A pipeline of `count` independent naps of 300 ms, each asking for a GPU.
fn nap_pipeline(name: &str, count: usize) -> Pipeline {
    let mut builder = Pipeline::builder(name);
    for i in 0..count {
        builder = builder.step(
            StepBuilder::native(format!("nap{i}"), "nap")
                .param("ms", 300)
                .param("i", i)
                .resources(Resources { gpu: 1 })
                .output("when", OutputKind::File),
        );
    }
    builder.build().unwrap()
}

/// When each nap of a run slept, as `(start, end)` in ms.
fn nap_intervals(engine: &Engine, report: &RunReport, count: usize) -> Vec<(u128, u128)> {
    assert!(report.succeeded(), "{:?}", report.failures());
    (0..count)
        .map(|i| {
            let digest = report.output(&format!("nap{i}"), "when").unwrap().digest;
            let text = String::from_utf8(engine.store().read_file(&digest).unwrap()).unwrap();
            let (start, end) = text.split_once(' ').unwrap();
            (start.parse().unwrap(), end.parse().unwrap())
        })
        .collect()
}

fn naps(project: &Project, slots: usize, jobs: usize) -> Vec<(u128, u128)> {
    let engine = nap_engine(project, slots, jobs);
    let report = engine.run(&nap_pipeline("naps", 3), &RunOptions::new().no_cache(true)).unwrap();
    nap_intervals(&engine, &report, 3)
}

fn any_overlap(intervals: &[(u128, u128)]) -> bool {
    intervals.iter().enumerate().any(|(i, a)| intervals[i + 1..].iter().any(|b| a.0 < b.1 && b.0 < a.1))
}

#[test]
fn gpu_steps_never_outnumber_the_gpu_slots() {
    let project = Project::new();
    assert!(!any_overlap(&naps(&project, 1, 3)), "two GPU steps ran at once on one slot");
    assert!(any_overlap(&naps(&project, 3, 3)), "three slots should let GPU steps overlap");
}

#[test]
fn runs_sharing_an_engine_share_its_gpu_slots() {
    let project = Project::new();
    let engine = nap_engine(&project, 1, 4);
    let options = RunOptions::new().no_cache(true);
    let first = engine.start(nap_pipeline("first", 2), options.clone()).unwrap();
    let second = engine.start(nap_pipeline("second", 2), options).unwrap();
    let (first, second) = (first.wait().unwrap(), second.wait().unwrap());
    let mut intervals = nap_intervals(&engine, &first, 2);
    intervals.extend(nap_intervals(&engine, &second, 2));
    assert!(!any_overlap(&intervals), "two runs held the engine's one GPU slot at once: {intervals:?}");
}

#[test]
fn a_native_step_failure_fails_the_step() {
    struct Refuse;
    impl NativeStep for Refuse {
        fn name(&self) -> &str {
            "refuse"
        }
        fn version(&self) -> u32 {
            1
        }
        fn run(&self, _context: &mut StepContext<'_>) -> Result<(), String> {
            Err("input looks wrong".into())
        }
    }
    let project = Project::new();
    let engine = Engine::builder().workspace(project.workspace()).native_step(Refuse).build().unwrap();
    let pipeline = Pipeline::builder("refusal")
        .step(StepBuilder::native("check", "refuse").output("ok", OutputKind::File))
        .build()
        .unwrap();
    let report = engine.run(&pipeline, &RunOptions::new()).unwrap();
    let error = report.steps["check"].error.as_ref().unwrap().to_string();
    assert_eq!(error, "step `check` failed: native step failed: input looks wrong");
}

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl EventSink for Recorder {
    fn event(&self, event: &Event<'_>) {
        let line = match event {
            Event::RunStarted { pipeline, .. } => format!("run of {pipeline}"),
            Event::RunFinished { status, .. } => format!("run {status:?}"),
            Event::StepStarted { step, .. } => format!("started {step}"),
            Event::StepFinished { step, status, .. } => format!("finished {step} {status:?}"),
            Event::Metric { step, name, value, .. } => format!("metric {step} {name}={value}"),
            Event::Progress { step, done, total, .. } => format!("progress {step} {done}/{total}"),
            _ => "other".to_owned(),
        };
        self.0.lock().unwrap().push(line);
    }
}

#[test]
fn metrics_and_progress_flow_as_events_in_order() {
    let project = Project::new();
    let recorder = Arc::new(Recorder::default());
    let engine = Engine::builder().workspace(project.workspace()).build().unwrap();
    let pipeline = Pipeline::builder("events")
        .step(StepBuilder::new("train", sdk_tool()).arg("metrics").output("result", OutputKind::File))
        .build()
        .unwrap();
    engine.run(&pipeline, &RunOptions::new().events(recorder.clone())).unwrap();
    let events = std::mem::take(&mut *recorder.0.lock().unwrap());
    assert_eq!(
        events,
        [
            "run of events",
            "started train",
            "metric train loss=1",
            "progress train 1/3",
            "metric train loss=0.5",
            "progress train 2/3",
            "metric train loss=0.25",
            "progress train 3/3",
            "metric train accuracy=0.875",
            "finished train Ran",
            "run Succeeded",
        ]
    );

    // A reused step has the same start and finish pair; every event names the run.
    let runs: Arc<Mutex<Vec<String>>> = Arc::default();
    let (seen, cached) = (runs.clone(), recorder.clone());
    let both = move |event: &Event<'_>| {
        recorder.event(event);
        let run = match event {
            Event::RunStarted { run, .. } | Event::RunFinished { run, .. } => run,
            Event::StepStarted { run, .. } | Event::StepFinished { run, .. } => run,
            Event::Metric { run, .. } | Event::Progress { run, .. } => run,
            _ => "?",
        };
        seen.lock().unwrap().push(run.to_string());
    };
    let report = engine.run(&pipeline, &RunOptions::new().events(Arc::new(both))).unwrap();
    let cached = cached.0.lock().unwrap().clone();
    assert_eq!(cached, ["run of events", "started train", "finished train Cached", "run Succeeded"]);
    assert_eq!(*runs.lock().unwrap(), vec![report.run_id.clone(); 4]);
}

#[test]
fn a_native_function_knows_its_callers_tenant_run_and_step() {
    let project = Project::new();
    let whoami = native_fn("whoami", 1, |context, _: ()| {
        Ok(format!("{}/{}/{}", context.tenant(), context.run(), context.step()))
    });
    let engine = Engine::builder()
        .workspace(project.workspace())
        .native_function(whoami)
        .tenant("alice", weir::TenantQuota::default())
        .build()
        .unwrap();
    let pipeline = Pipeline::builder("who").step(caller("whoami", "null")).build().unwrap();
    let report = engine.run(&pipeline, &RunOptions::new().tenant("alice")).unwrap();
    let result = result_of(&engine, &report);
    assert_eq!(result, format!("ok: \"alice/{}/caller\"", report.run_id));
}
