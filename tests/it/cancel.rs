//! Cancelling a run: from the library (a run handle) and from the terminal
//! (a real SIGINT or SIGTERM sent to `weir run`). What finished is kept and
//! reused; the rest is recorded as cancelled.

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use weir::{Engine, Event, OutputKind, Pipeline, RunOptions, RunStatus, StepBuilder, StepErrorKind, StepStatus};
use weir_tests::{Project, RunDocument, Wasi, files_under, steps_with, tool, weir_bin};

/// `quick` finishes at once; `slow` (in the mode the parameter names, `spin`
/// by default: a loop that never ends) waits for it; `after` waits for `slow`.
const PIPELINE: &str = r#"
name = "stoppable"
[params]
mode = "spin"
[steps.quick]
module = "tool-p1.wasm"
args = ["args", "done"]
outputs = { result = "file" }
[steps.slow]
module = "tool-p1.wasm"
args = ["${params.mode}"]
inputs = { after = "quick.result" }
outputs = { result = "file" }
limits = { timeout = "TIMEOUT" }
[steps.after]
module = "tool-p1.wasm"
args = ["copy", "x", "result"]
inputs = { x = "slow.result" }
outputs = { result = "file" }
"#;

/// `weir run` of the project's pipeline, started in the background.
fn spawn_run(project: &Project, extra: &[&str]) -> Child {
    Command::new(weir_bin())
        .args(["run", "pipeline.toml", "--workspace"])
        .arg(project.workspace())
        .args(extra)
        .current_dir(project.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start weir")
}

/// Waits until `quick` has recorded its result (so `slow` is running).
fn wait_for_quick(project: &Project, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while files_under(&project.workspace().join("cache")).is_empty() {
        assert!(child.try_wait().unwrap().is_none(), "weir exited before it was interrupted");
        assert!(Instant::now() < deadline, "the quick step never finished");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
}

fn send(child: &Child, signal: &str) {
    let number = match signal {
        "INT" => libc::SIGINT,
        "TERM" => libc::SIGTERM,
        other => panic!("no signal {other} in these tests"),
    };
    weir_tests::send_signal(child.id(), number);
}

/// Waits for `child` to exit, killing it (and failing) after a minute.
fn exit_of(mut child: Child) -> (i32, String, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("weir did not stop within a minute of the signal");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.code().expect("an exit status, not a signal"), text(&output.stdout), text(&output.stderr))
}

#[test]
fn ctrl_c_cancels_the_run_records_it_and_the_next_run_resumes() {
    let project = Project::new();
    project.manifest(&PIPELINE.replace("TIMEOUT", "10m"));
    let mut child = spawn_run(&project, &["--json"]);
    wait_for_quick(&project, &mut child);
    send(&child, "INT");
    let (code, stdout, stderr) = exit_of(child);
    assert_eq!(code, 130, "stderr:\n{stderr}");
    assert!(stderr.contains("cancelling the run"), "{stderr}");
    let summary: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["status"], "cancelled", "{summary}");
    assert_eq!(steps_with(&summary, "ran"), ["quick"]);
    assert_eq!(steps_with(&summary, "cancelled"), ["after", "slow"]);
    assert!(summary.step("slow")["error"].as_str().unwrap().contains("was cancelled"), "{summary}");

    let shown = project.weir(&["show", "last", "--json"]);
    let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["status"], "cancelled", "{shown}");
    assert_eq!(shown["cancelled"], 2, "{shown}");
    let runs = String::from_utf8_lossy(&project.weir(&["runs"]).stdout).into_owned();
    assert!(runs.contains("cancelled") && runs.contains("2 cancelled"), "{runs}");

    let (code, summary) = project.run_json(&["--param", "mode=nothing"]);
    assert_eq!(code, 1, "{summary}"); // `nothing` writes no result, so `slow` fails
    assert_eq!(steps_with(&summary, "cached"), ["quick"], "what finished before the cancellation is reused");
}

#[test]
fn sigterm_cancels_the_run_with_status_143() {
    let project = Project::new();
    project.manifest(&PIPELINE.replace("TIMEOUT", "10m"));
    let mut child = spawn_run(&project, &[]);
    wait_for_quick(&project, &mut child);
    send(&child, "TERM");
    let (code, stdout, stderr) = exit_of(child);
    assert_eq!(code, 143, "stderr:\n{stderr}");
    assert!(stdout.contains("CANCELLED") && stdout.contains("2 cancelled"), "{stdout}");
    assert!(stdout.contains("(did not start)"), "`after` never started:\n{stdout}");
}

#[test]
fn a_second_ctrl_c_exits_at_once_when_a_step_cannot_be_interrupted() {
    let project = Project::new();
    // Without a timeout the guest has no interruption checks: the first
    // Ctrl-C waits for it, the second does not.
    project.manifest(&PIPELINE.replace("TIMEOUT", "none"));
    let mut child = spawn_run(&project, &[]);
    wait_for_quick(&project, &mut child);
    send(&child, "INT");
    std::thread::sleep(Duration::from_millis(500));
    assert!(child.try_wait().unwrap().is_none(), "the spinning step cannot be interrupted, so weir still waits");
    send(&child, "INT");
    let (code, _, stderr) = exit_of(child);
    assert_eq!(code, 130, "stderr:\n{stderr}");
    assert!(stderr.contains("exiting without waiting"), "{stderr}");

    // The next command finds the abandoned run and marks it killed, with
    // the step that was executing.
    let runs = String::from_utf8_lossy(&project.weir(&["runs"]).stdout).into_owned();
    assert!(runs.contains("killed"), "{runs}");
    let shown: Value = serde_json::from_slice(&project.weir(&["show", "last", "--json"]).stdout).unwrap();
    let statuses: Vec<(&str, &str)> = shown["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| (step["step"].as_str().unwrap(), step["status"].as_str().unwrap()))
        .collect();
    assert_eq!(statuses, [("quick", "ran"), ("slow", "killed")], "{shown}");
}

#[test]
fn a_killed_run_keeps_the_metrics_its_executing_step_had_reported() {
    let project = Project::new();
    project.manifest(
        "name = \"k\"\n[steps.waits]\nmodule = \"sdk-tool.wasm\"\nargs = [\"metrics-then-wait\", \"4\"]\n\
         outputs = { result = \"file\" }\n",
    );
    let mut child = spawn_run(&project, &[]);
    // The values reach the history while the step still executes.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let shown: Value =
            serde_json::from_slice(&project.weir(&["show", "last", "--json"]).stdout).unwrap_or_default();
        let step = shown.step("waits");
        if step["status"] == "running" && step["metrics"]["loss"] == 4.0 {
            break;
        }
        assert!(Instant::now() < deadline, "the metrics were not written while the step ran: {shown}");
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let shown = project.show_json("last");
    assert_eq!(shown["status"], "killed", "{shown}");
    assert_eq!(shown.step("waits")["status"], "killed");
    assert_eq!(shown.step("waits")["metrics"]["loss"], 4.0, "{shown}");
}

/// A pipeline built in code: `quick` and, independently, `slow` (spins
/// until cancelled) feeding `after`.
fn stoppable(project: &Project, jobs: usize) -> (Engine, Pipeline) {
    let pipeline = Pipeline::builder("stoppable")
        .param("mode", "spin")
        .step(StepBuilder::new("quick", tool(Wasi::P2)).args(["args", "done"]).output("result", OutputKind::File))
        .step(StepBuilder::new("slow", tool(Wasi::P1)).args(["${params.mode}"]).output("result", OutputKind::File))
        .step(
            StepBuilder::new("after", tool(Wasi::P1))
                .args(["copy", "x", "result"])
                .input("x", "slow.result")
                .output("result", OutputKind::File),
        )
        .build()
        .unwrap();
    let engine = Engine::builder().workspace(project.workspace()).jobs(jobs).build().unwrap();
    (engine, pipeline)
}

#[test]
fn a_run_handle_cancels_a_run_and_keeps_what_finished() {
    let project = Project::new();
    let (engine, pipeline) = stoppable(&project, 2);
    let finished: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = finished.clone();
    let sink = move |event: &Event<'_>| {
        if let Event::StepFinished { step, .. } = event {
            seen.lock().unwrap().push(step.to_string());
        }
    };
    let handle = engine.start(pipeline.clone(), RunOptions::new().events(Arc::new(sink))).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !finished.lock().unwrap().contains(&"quick".to_owned()) {
        assert!(Instant::now() < deadline && !handle.is_finished(), "quick never finished");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(!handle.is_finished(), "slow spins until cancelled");
    handle.cancel();
    let report = handle.wait().unwrap();

    assert_eq!(report.status, RunStatus::Cancelled);
    assert_eq!(report.steps["quick"].status, StepStatus::Ran);
    assert_eq!(report.steps["slow"].status, StepStatus::Cancelled);
    assert_eq!(report.steps["slow"].error.as_ref().unwrap().kind, StepErrorKind::Cancelled);
    assert!(report.steps["slow"].logs.is_some(), "an interrupted step keeps its logs");
    assert_eq!(report.steps["after"].status, StepStatus::Cancelled);
    assert!(report.failures().is_empty(), "a cancelled step is not a failure");
    let recorded = engine.history().run_detail(&report.run_id).unwrap();
    assert_eq!(recorded.summary.status, RunStatus::Cancelled);
    assert_eq!(recorded.summary.cancelled, 2);
    let reason = engine.history().explain(&report.run_id, "after").unwrap().reasons.join(" ");
    assert!(reason.contains("stopped before the step started"), "{reason}");

    let again = engine.run(&pipeline, &RunOptions::new().param("mode", "args")).unwrap();
    assert!(again.succeeded(), "{:?}", again.failures());
    assert_eq!(again.steps_with(StepStatus::Cached), ["quick"]);
    assert_eq!(again.steps_with(StepStatus::Ran), ["after", "slow"]);
}

#[test]
fn a_run_cancelled_before_it_starts_runs_nothing() {
    let project = Project::new();
    let (engine, pipeline) = stoppable(&project, 1);
    let token = weir::CancelToken::new();
    token.cancel();
    let report = engine.run(&pipeline, &RunOptions::new().cancel_with(token)).unwrap();
    assert_eq!(report.status, RunStatus::Cancelled);
    assert_eq!(report.steps_with(StepStatus::Cancelled), ["after", "quick", "slow"]);
    assert!(files_under(&project.workspace().join("cache")).is_empty(), "nothing ran, so nothing was cached");
}
