//! The library API: building a pipeline in code, running it in-process, and
//! reading artifacts back.

use weir::{Engine, OutputKind, Pipeline, RunOptions, StepBuilder, StepStatus, ValidationErrorKind};
use weir_tests::{Project, Wasi, tool};

#[test]
fn a_pipeline_built_in_code_runs_and_its_outputs_read_back() {
    let project = Project::new();
    let text = project.write("text.txt", "embedded");
    let pipeline = Pipeline::builder("embedded")
        .param("word", "hi")
        .input("text", &text)
        .step(
            StepBuilder::new("upper", tool(Wasi::P2))
                .args(["upper", "${params.word}"])
                .input("text", "inputs.text")
                .output("result", OutputKind::File),
        )
        .step(
            StepBuilder::new("again", tool(Wasi::P1))
                .args(["copy", "x", "result"])
                .input("x", "upper.result")
                .output("result", OutputKind::File),
        )
        .build()
        .unwrap();
    let engine = Engine::builder().workspace(project.workspace()).jobs(2).build().unwrap();

    let report = engine.run(&pipeline, &RunOptions::new().param("word", "yo")).unwrap();
    assert!(report.succeeded());
    let result = report.output("again", "result").unwrap();
    assert_eq!(engine.store().read_file(&result.digest).unwrap(), b"EMBEDDED[yo]");

    let again = engine.run(&pipeline, &RunOptions::new().param("word", "yo")).unwrap();
    assert_eq!(again.steps_with(StepStatus::Cached), ["again", "upper"]);
}

#[test]
fn builder_errors_are_typed() {
    let project = Project::new();
    let duplicate = Pipeline::builder("dup")
        .step(StepBuilder::new("a", tool(Wasi::P1)))
        .step(StepBuilder::new("a", tool(Wasi::P1)))
        .build()
        .unwrap_err();
    assert_eq!(duplicate.kind(), &ValidationErrorKind::DuplicateName { name: "a".into() });
    assert_eq!(duplicate.location().step.as_deref(), Some("a"));

    let missing =
        Pipeline::builder("m").step(StepBuilder::new("s", project.path().join("absent.wasm"))).build().unwrap_err();
    assert!(matches!(missing.kind(), ValidationErrorKind::ModuleMissing { .. }));
    assert_eq!(missing.location().field.as_deref(), Some("module"));

    let pipeline = Pipeline::builder("p").param("n", 1).build().unwrap();
    let engine = Engine::builder().workspace(project.workspace()).build().unwrap();
    let err = engine.run(&pipeline, &RunOptions::new().param("n", "one")).unwrap_err();
    assert!(err.to_string().contains("bad value for parameter `n`"), "{err}");
}

#[test]
fn the_embedding_example_runs_and_reads_its_report_back() {
    let project = Project::new();
    let numbers = project.write("numbers.txt", "3\n1.5\n4\n1\n5.5\n");
    let (report, reused) = weir_embed_example::run(&weir_tests::embed_step(), &numbers, &project.workspace()).unwrap();
    assert_eq!(report, "Numbers\n5 numbers, mean 3.000, from 1 to 5.5\n");
    assert!(!reused);
    let (again, reused) = weir_embed_example::run(&weir_tests::embed_step(), &numbers, &project.workspace()).unwrap();
    assert_eq!(again, report);
    assert!(reused, "the second run reuses every step");
}

#[test]
fn directory_artifacts_are_listed_and_read_through_the_api() {
    let project = Project::new();
    let pipeline = Pipeline::builder("tree")
        .step(StepBuilder::new("make", tool(Wasi::P1)).args(["tree", "dir"]).output("dir", OutputKind::Dir))
        .build()
        .unwrap();
    let engine = Engine::builder().workspace(project.workspace()).build().unwrap();
    let report = engine.run(&pipeline, &RunOptions::new()).unwrap();
    let tree = report.output("make", "dir").unwrap().digest;
    let store = engine.store();

    let err = store.read_file(&tree).unwrap_err();
    assert!(matches!(err, weir::Error::WrongKind { expected: OutputKind::File, .. }), "{err}");
    assert!(err.to_string().ends_with("is a dir artifact, not a file"), "{err}");
    let names: Vec<String> = store.list_dir(&tree).unwrap().into_iter().map(|entry| entry.name).collect();
    assert_eq!(names, ["a.txt", "sub"]);
    let beta = store.lookup(&tree, "sub/b.txt").unwrap();
    assert_eq!(store.read_file(&beta.digest).unwrap(), b"beta");
    assert!(store.lookup(&tree, "sub/none.txt").unwrap_err().to_string().contains("no entry `none.txt`"));
    let alpha = store.lookup(&tree, "a.txt").unwrap().digest;
    assert!(matches!(store.list_dir(&alpha), Err(weir::Error::WrongKind { expected: OutputKind::Dir, .. })));
}

#[test]
fn traps_are_told_apart_by_code_with_the_backtrace_apart() {
    let project = Project::new();
    let step = |name: &str, args: &[&str], stack: Option<u64>| {
        let limits = weir::LimitOverrides { stack, ..weir::LimitOverrides::default() };
        StepBuilder::new(name, tool(Wasi::P1)).args(args.iter().copied()).limits(limits).output("r", OutputKind::File)
    };
    let pipeline = Pipeline::builder("traps")
        .step(step("panics", &["panic"], None))
        .step(step("strays", &["recurse"], Some(32 << 20)))
        .build()
        .unwrap();
    let engine = Engine::builder().workspace(project.workspace()).build().unwrap();
    let report = engine.run(&pipeline, &RunOptions::new()).unwrap();
    let trap = |step: &str| match &report.steps[step].error.as_ref().expect("failed").kind {
        weir::StepErrorKind::Trap { code, message, backtrace } => (*code, message.clone(), backtrace.clone()),
        other => panic!("{step}: not a trap: {other}"),
    };
    let (code, message, backtrace) = trap("panics");
    assert_eq!(code, weir::TrapCode::Unreachable);
    assert_eq!(message, "wasm trap: wasm `unreachable` instruction executed");
    assert!(backtrace.contains("tool") && backtrace.lines().count() > 1, "{backtrace}");
    assert_eq!(trap("strays").0, weir::TrapCode::MemoryOutOfBounds, "a shadow stack run out of memory");
}

#[test]
fn a_closure_is_a_sink_and_failures_name_their_steps() {
    use std::sync::{Arc, Mutex};
    let project = Project::new();
    let pipeline = Pipeline::builder("fails")
        .step(StepBuilder::new("bad", tool(Wasi::P1)).args(["fail", "3"]).output("r", OutputKind::File))
        .step(
            StepBuilder::new("after", tool(Wasi::P1))
                .args(["copy", "x", "r"])
                .input("x", "bad.r")
                .output("r", OutputKind::File),
        )
        .step(
            StepBuilder::new("last", tool(Wasi::P1))
                .args(["copy", "x", "r"])
                .input("x", "after.r")
                .output("r", OutputKind::File),
        )
        .build()
        .unwrap();
    let engine = Engine::builder().workspace(project.workspace()).build().unwrap();
    let finished = Arc::new(Mutex::new(Vec::new()));
    let seen = finished.clone();
    let sink = move |event: &weir::Event<'_>| {
        if let weir::Event::StepFinished { step, status, .. } = event {
            seen.lock().unwrap().push((step.to_string(), *status));
        }
    };
    let report = engine.run(&pipeline, &RunOptions::new().events(Arc::new(sink))).unwrap();
    let failures = report.failures();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].step, "bad");
    assert_eq!(report.steps["after"].blocked_by.as_deref(), Some("bad"));
    assert_eq!(report.steps["last"].blocked_by.as_deref(), Some("after"));
    assert_eq!(finished.lock().unwrap().len(), 3, "the closure heard every step settle");
}

#[test]
fn the_embedding_tour_shows_events_failures_directories_concurrency_and_cancellation() {
    let project = Project::new();
    let numbers = project.write("numbers.txt", "3\n1.5\n4\n1\n5.5\n");
    let empty = project.write("empty.txt", "");
    let tour = weir_embed_example::tour(&weir_tests::embed_step(), &numbers, &empty, &project.workspace()).unwrap();
    assert_eq!(
        tour.events,
        [
            "run of embedded started",
            "summarize started",
            "summarize ran",
            "render started",
            "render ran",
            "run succeeded"
        ]
    );
    assert_eq!(tour.files, ["report.txt", "stats.json"]);
    assert_eq!(
        tour.failure,
        "summarize exited with status 1 after 1 failed native call(s); render was skipped (blocked by summarize)"
    );
    assert_eq!(tour.concurrent[0], "First\n5 numbers, mean 3.000, from 1 to 5.5\n");
    assert_eq!(tour.concurrent[1], "Second\n5 numbers, mean 3.000, from 1 to 5.5\n");
    assert!(tour.cancelled);
}

#[test]
fn a_scoped_sink_borrows_from_the_caller_and_hears_every_event_on_its_thread() {
    let project = Project::new();
    let engine = Engine::builder().workspace(project.workspace()).build().unwrap();
    let pipeline = Pipeline::builder("scoped")
        .step(StepBuilder::new("train", weir_tests::sdk_tool()).arg("metrics").output("result", OutputKind::File))
        .build()
        .unwrap();
    let caller = std::thread::current().id();
    // Not `Send`, and borrowed: only a sink called on this thread can hold it.
    let heard = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let mut sink = |event: &weir::Event<'_>| {
        assert_eq!(std::thread::current().id(), caller);
        let line = match event {
            weir::Event::RunStarted { .. } => "run started".to_owned(),
            weir::Event::StepStarted { step, .. } => format!("{step} started"),
            weir::Event::Metric { name, value, .. } => format!("{name}={value}"),
            weir::Event::StepFinished { step, status, .. } => format!("{step} {status}"),
            weir::Event::RunFinished { status, .. } => format!("run {status}"),
            _ => return,
        };
        heard.borrow_mut().push(line);
    };
    let report = engine.run_scoped(&pipeline, &RunOptions::new(), &mut sink).unwrap();
    assert!(report.succeeded() && report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(
        *heard.borrow(),
        [
            "run started",
            "train started",
            "loss=1",
            "loss=0.5",
            "loss=0.25",
            "accuracy=0.875",
            "train ran",
            "run succeeded"
        ]
    );

    let mut panicky = |_: &weir::Event<'_>| panic!("sink bug");
    let report = engine.run_scoped(&pipeline, &RunOptions::new().no_cache(true), &mut panicky).unwrap();
    assert!(report.succeeded(), "the run goes on");
    assert!(report.warnings[0].contains("the event sink panicked (sink bug)"), "{:?}", report.warnings);
}
