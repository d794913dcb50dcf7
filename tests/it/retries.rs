//! Retries: a step that fails for a reason that may not recur runs again, as
//! its `retries`, `retry_backoff` and `retry_on` (or the manifest's
//! `[defaults]`) say, and every attempt is kept in the history.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use weir::{
    CancelToken, Engine, Event, EventSink, NativeStep, OutputKind, Pipeline, RetryPolicy, RunOptions, StepBuilder,
    StepContext, StepErrorKind, StepStatus,
};
use weir_tests::{Project, RunDocument, printed};

/// The `attempt` numbers and exit codes of a step's retried attempts.
fn attempts(step: &Value) -> Vec<(u64, i64)> {
    step["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["attempt"].as_u64().unwrap(), a["error_kind"]["Exit"]["code"].as_i64().unwrap_or(-1)))
        .collect()
}

#[test]
fn a_failing_step_is_retried_and_every_attempt_is_recorded() {
    let project = Project::new();
    project.manifest(
        r#"
name = "flaky"

[steps.fetch]
module = "tool-p1.wasm"
args = ["fail", "3"]
outputs = { result = "file" }
retries = 2
retry_backoff = "100ms"

[steps.after]
module = "tool-p1.wasm"
args = ["concat"]
inputs = { data = "fetch.result" }
outputs = { result = "file" }
"#,
    );
    let started = Instant::now();
    let (code, run) = project.run_json(&[]);
    let elapsed = started.elapsed();
    assert_eq!(code, 1, "{run}");
    let fetch = run.step("fetch");
    assert_eq!(fetch["status"], "failed");
    assert_eq!(attempts(fetch), [(1, 3), (2, 3)], "{fetch}");
    assert_eq!(fetch["error_kind"]["Exit"]["code"], 3, "the last attempt's error is the step's");
    assert_eq!(run.step("after")["status"], "skipped");
    // Backoff 100 ms, then doubled: the run waited at least 300 ms in all.
    assert!(elapsed >= Duration::from_millis(300), "retried after {elapsed:?}");

    let run_id = run["id"].as_str().unwrap();
    let shown = project.show_json(run_id);
    assert_eq!(shown.step("fetch")["attempts"], fetch["attempts"], "the history keeps each attempt");
    let show = printed(&project.weir(&["show", run_id]));
    assert!(show.contains("attempt 1 failed after"), "{show}");
    assert!(show.contains("attempt 2 failed after"), "{show}");

    let gc = project.weir(&["gc"]);
    assert!(gc.status.success(), "{}", printed(&gc));
    for attempt in ["1", "2", "3"] {
        let logs = project.weir(&["logs", run_id, "fetch", "--attempt", attempt]);
        assert!(logs.status.success(), "attempt {attempt}: {}", printed(&logs));
        assert!(printed(&logs).contains("failing with status 3"), "{}", printed(&logs));
    }
    // (`weir gc` keeps the retried attempts' logs: the history names them.)
    let last = project.weir(&["logs", run_id, "fetch"]);
    assert!(printed(&last).contains("these are the last attempt's logs"), "{}", printed(&last));
    let missing = project.weir(&["logs", run_id, "fetch", "--attempt", "4"]);
    assert!(!missing.status.success());
    assert!(printed(&missing).contains("made 3 attempt(s); there is no attempt 4"), "{}", printed(&missing));

    let explain = printed(&project.weir(&["explain", run_id, "fetch"]));
    assert!(explain.contains("attempt 2 failed and was retried: exited with status 3"), "{explain}");

    let human = printed(&project.weir(&["run", "pipeline.toml"]));
    assert!(human.contains("3 attempts"), "{human}");
}

#[test]
fn only_the_failures_retry_on_names_are_retried() {
    let project = Project::new();
    project.manifest(
        r#"
name = "selective"

[defaults]
retries = 2
retry_backoff = "10ms"
retry_on = ["exit:75"]

[steps.other_code]
module = "tool-p1.wasm"
args = ["fail", "3"]
outputs = { result = "file" }

[steps.temporary]
module = "tool-p1.wasm"
args = ["fail", "75"]
outputs = { result = "file" }

[steps.opted_out]
module = "tool-p1.wasm"
args = ["fail", "75"]
outputs = { result = "file" }
retries = 0

[steps.no_output]
module = "tool-p1.wasm"
args = ["nothing"]
outputs = { result = "file" }
retry_on = ["trap", "exit", "timeout"]
"#,
    );
    let (code, run) = project.run_json(&[]);
    assert_eq!(code, 1, "{run}");
    assert_eq!(attempts(run.step("other_code")), [], "exit 3 is not in retry_on");
    assert_eq!(attempts(run.step("temporary")), [(1, 75), (2, 75)], "[defaults] apply");
    assert_eq!(attempts(run.step("opted_out")), [], "a step's own `retries` wins");
    // A missing output is the step's contract broken, not a transient failure.
    assert_eq!(run.step("no_output")["error_kind"]["MissingOutput"]["output"], "result");
    assert_eq!(attempts(run.step("no_output")), []);
}

#[test]
fn bad_retry_fields_are_refused_naming_the_field() {
    let project = Project::new();
    let step = |fields: &str| {
        format!("name = \"bad\"\n\n[steps.s]\nmodule = \"tool-p1.wasm\"\nargs = [\"nothing\"]\n{fields}\n")
    };
    for (manifest, expected) in [
        (step("retries = -1"), "`retries`"),
        (step("retries = 50"), "50 retries is more than the 20"),
        (step("retry_on = [\"oom\"]"), "`retry_on[0]`"),
        (step("retry_on = \"exit\""), "expected a list"),
        (step("retry_backoff = 5"), "`retry_backoff`"),
        ("name = \"bad\"\n[defaults]\nretry_backoff = \"soon\"\n".to_owned(), "`defaults.retry_backoff`"),
    ] {
        project.manifest(&manifest);
        let output = project.weir(&["run", "pipeline.toml"]);
        assert_eq!(output.status.code(), Some(2), "{manifest}: {}", printed(&output));
        assert!(printed(&output).contains(expected), "{manifest}: expected {expected} in {}", printed(&output));
    }
}

/// A native step that fails until it has been called `succeed_on` times
/// for the same input, then copies its input to its output.
struct Flaky {
    succeed_on: u32,
    calls: Mutex<HashMap<Vec<u8>, u32>>,
}

impl NativeStep for Flaky {
    fn name(&self) -> &str {
        "flaky"
    }
    fn version(&self) -> u32 {
        1
    }
    fn run(&self, context: &mut StepContext<'_>) -> Result<(), String> {
        let data = std::fs::read(context.input("data")).map_err(|err| err.to_string())?;
        let mut calls = self.calls.lock().unwrap();
        let count = calls.entry(data.clone()).or_default();
        *count += 1;
        if *count < self.succeed_on {
            return Err(format!("call {count} of {}: the service is busy", String::from_utf8_lossy(&data)));
        }
        std::fs::write(context.output("copy"), data).map_err(|err| err.to_string())
    }
}

fn flaky_engine(project: &Project, succeed_on: u32) -> Engine {
    let flaky = Flaky { succeed_on, calls: Mutex::new(HashMap::new()) };
    Engine::builder().workspace(project.workspace()).native_step(flaky).build().unwrap()
}

fn native_retry(retries: u32) -> RetryPolicy {
    RetryPolicy { on: vec![weir::RetryOn::Native], backoff: Duration::from_millis(5), ..RetryPolicy::new(retries) }
}

#[test]
fn a_step_that_succeeds_on_a_retry_is_cached_like_any_other() {
    let project = Project::new();
    let input = project.write("data.txt", "rows");
    let engine = flaky_engine(&project, 3);
    let pipeline = Pipeline::builder("retried")
        .input("data", input)
        .step(
            StepBuilder::native("fetch", "flaky")
                .input("data", "inputs.data")
                .output("copy", OutputKind::File)
                .retry(native_retry(5)),
        )
        .build()
        .unwrap();
    let report = engine.run(&pipeline, &RunOptions::new()).unwrap();
    let fetch = &report.steps["fetch"];
    assert_eq!(fetch.status, StepStatus::Ran);
    let numbers: Vec<u32> = fetch.attempts.iter().map(|attempt| attempt.attempt).collect();
    assert_eq!(numbers, [1, 2], "succeeded on the third attempt");
    assert!(fetch.attempts[1].error.contains("call 2 of rows: the service is busy"), "{:?}", fetch.attempts);
    assert!(matches!(fetch.attempts[0].error_kind, StepErrorKind::Native { .. }));
    let copy = engine.store().read_file(&fetch.outputs["copy"].digest).unwrap();
    assert_eq!(copy, b"rows");

    let again = engine.run(&pipeline, &RunOptions::new()).unwrap();
    assert_eq!(again.steps["fetch"].status, StepStatus::Cached);
    assert!(again.steps["fetch"].attempts.is_empty());
}

#[test]
fn each_entry_of_a_map_step_is_retried_on_its_own() {
    let project = Project::new();
    project.write("parts/a", "alpha");
    project.write("parts/b", "beta");
    let engine = flaky_engine(&project, 2);
    let pipeline = Pipeline::builder("mapped")
        .input("parts", project.path().join("parts"))
        .step(
            StepBuilder::native("fetch", "flaky")
                .input("data", "inputs.parts")
                .map("data")
                .output("copy", OutputKind::File)
                .retry(native_retry(1)),
        )
        .build()
        .unwrap();
    let report = engine.run(&pipeline, &RunOptions::new()).unwrap();
    let fetch = &report.steps["fetch"];
    assert_eq!(fetch.status, StepStatus::Ran, "{:?}", fetch.error);
    let mut entries: Vec<(Option<&str>, u32)> =
        fetch.attempts.iter().map(|attempt| (attempt.entry.as_deref(), attempt.attempt)).collect();
    entries.sort();
    assert_eq!(entries, [(Some("a"), 1), (Some("b"), 1)]);
}

/// Cancels its token when a retry is announced.
struct CancelOnRetry(CancelToken);

impl EventSink for CancelOnRetry {
    fn event(&self, event: &Event<'_>) {
        if matches!(event, Event::StepRetrying { .. }) {
            self.0.cancel();
        }
    }
}

#[test]
fn cancelling_a_run_ends_a_retry_backoff_at_once() {
    let project = Project::new();
    let input = project.write("data.txt", "rows");
    let engine = flaky_engine(&project, 10);
    let pipeline = Pipeline::builder("cancelled")
        .input("data", input)
        .step(
            StepBuilder::native("fetch", "flaky")
                .input("data", "inputs.data")
                .output("copy", OutputKind::File)
                .retry(RetryPolicy { backoff: Duration::from_secs(60), ..native_retry(3) }),
        )
        .build()
        .unwrap();
    let token = CancelToken::new();
    let options = RunOptions::new().cancel_with(token.clone()).events(Arc::new(CancelOnRetry(token)));
    let started = Instant::now();
    let report = engine.run(&pipeline, &options).unwrap();
    assert!(started.elapsed() < Duration::from_secs(30), "waited out the backoff: {:?}", started.elapsed());
    let fetch = &report.steps["fetch"];
    assert_eq!(fetch.status, StepStatus::Cancelled);
    assert_eq!(fetch.attempts.len(), 1, "the failed attempt is kept");
}
