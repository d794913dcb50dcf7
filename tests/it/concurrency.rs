//! Several processes on one workspace: concurrent runs that share work,
//! garbage collection beside a run, and SIGKILL at random moments.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use weir_tests::{Project, RunDocument, weir_bin};

/// Four independent naps (distinct keys) feeding one step.
const NAPS: &str = r#"
name = "naps"
[steps.a]
module = "tool-p1.wasm"
args = ["nap", "${params.ms}", "a"]
outputs = { result = "file" }
[steps.b]
module = "tool-p1.wasm"
args = ["nap", "${params.ms}", "b"]
outputs = { result = "file" }
[steps.c]
module = "tool-p2.wasm"
args = ["nap", "${params.ms}", "c"]
outputs = { result = "file" }
[steps.d]
module = "tool-p2.wasm"
args = ["nap", "${params.ms}", "d"]
outputs = { result = "file" }
[steps.join]
module = "tool-p1.wasm"
args = ["concat"]
inputs = { a = "a.result", b = "b.result", c = "c.result", d = "d.result" }
outputs = { result = "file" }
[params]
ms = 400
"#;

fn spawn_run(project: &Project, extra: &[&str]) -> Child {
    Command::new(weir_bin())
        .args(["run", "pipeline.toml", "--json", "--workspace"])
        .arg(project.workspace())
        .args(extra)
        .current_dir(project.path())
        .env_remove("WEIR_TENANT")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start weir")
}

fn finish(child: Child) -> (i32, Value) {
    let output = child.wait_with_output().unwrap();
    let summary = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|err| panic!("{err}: {}", String::from_utf8_lossy(&output.stderr)));
    (output.status.code().unwrap(), summary)
}

fn assert_store_verifies(project: &Project) {
    let output = project.weir(&["store", "verify", "--json"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["corrupt"], serde_json::json!([]));
}

#[test]
fn two_processes_running_the_same_pipeline_execute_each_step_once() {
    let project = Project::new();
    project.manifest(NAPS);
    let first = spawn_run(&project, &["--jobs", "2"]);
    let second = spawn_run(&project, &["--jobs", "2"]);
    let ((code_a, a), (code_b, b)) = (finish(first), finish(second));
    assert_eq!((code_a, code_b), (0, 0), "{a}\n{b}");
    for step in ["a", "b", "c", "d", "join"] {
        let statuses = [&a.step(step)["status"], &b.step(step)["status"]];
        let executed = statuses.iter().filter(|status| **status == "ran").count();
        assert_eq!(executed, 1, "step {step} executed {executed} times: {statuses:?}");
        assert_eq!(a.step(step)["outputs"], b.step(step)["outputs"]);
    }
    assert_store_verifies(&project);
}

#[test]
fn gc_removes_what_nothing_references_and_keeps_the_cache() {
    let project = Project::new();
    project.write("text.txt", "kept by the cache");
    project.manifest(
        r#"
name = "gc"
[inputs]
text = "text.txt"
[steps.cached]
module = "tool-p1.wasm"
args = ["upper"]
inputs = { text = "inputs.text" }
outputs = { result = "file" }
[steps.volatile]
module = "tool-p1.wasm"
args = ["args", "not cached"]
reuse = false
outputs = { result = "file" }
"#,
    );
    let (code, first) = project.run_json(&[]);
    assert_eq!(code, 0, "{first}");
    let kept = first.step("cached")["outputs"]["result"].as_str().unwrap().to_owned();
    let volatile = first.step("volatile")["outputs"]["result"].as_str().unwrap().to_owned();

    let output = project.weir(&["gc", "--json"]);
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["removed_objects"], 0, "every object is referenced by the cache or the run: {report}");

    let output = project.weir(&["gc", "--keep-runs", "0", "--json"]);
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["pruned_runs"].as_array().unwrap().len(), 1, "{report}");
    assert!(report["removed_objects"].as_u64().unwrap() >= 2, "the volatile output and the input go: {report}");
    assert_eq!(project.cat(&kept), "KEPT BY THE CACHE");
    assert!(!project.weir(&["cat", &volatile]).status.success(), "the unreferenced output is gone");

    let (code, again) = project.run_json(&[]);
    assert_eq!(code, 0, "{again}");
    assert_eq!(again.step("cached")["status"], "cached");
    assert_store_verifies(&project);
}

#[test]
fn gc_waits_for_a_run_in_progress_and_removes_nothing_it_stored() {
    let project = Project::new();
    project.manifest(NAPS);
    let run = spawn_run(&project, &["--jobs", "1", "--param", "ms=500"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !project.workspace().join("lock").exists()
        || std::fs::read_dir(project.workspace().join("cache")).map_or(0, |d| d.count()) == 0
    {
        assert!(Instant::now() < deadline, "the run never stored a result");
        std::thread::sleep(Duration::from_millis(20));
    }
    let gc = project.weir(&["gc", "--keep-runs", "0", "--json"]);
    assert!(gc.status.success(), "{}", String::from_utf8_lossy(&gc.stderr));
    let (code, summary) = finish(run);
    assert_eq!(code, 0, "{summary}");
    let report: Value = serde_json::from_slice(&gc.stdout).unwrap();
    assert_eq!(report["pruned_runs"].as_array().unwrap().len(), 1, "gc ran after the run ended: {report}");
    let (code, again) = project.run_json(&["--param", "ms=500"]);
    assert_eq!(code, 0, "{again}");
    for step in ["a", "b", "c", "d", "join"] {
        assert_eq!(again.step(step)["status"], "cached", "{step}: {again}");
    }
    assert_store_verifies(&project);
}

/// A small deterministic generator of kill delays.
fn delays(count: usize) -> Vec<u64> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..count)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            40 + state % 700
        })
        .collect()
}

#[test]
fn sigkill_at_random_moments_never_breaks_the_workspace() {
    let project = Project::new();
    project.manifest(&NAPS.replace("ms = 400", "ms = 120"));
    for delay in delays(8) {
        let mut child = spawn_run(&project, &["--jobs", "2"]);
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().unwrap();
        child.wait().unwrap();
        let killed = project.weir(&["show", "last", "--json"]);
        let completed: Vec<String> = if killed.status.success() {
            let detail: Value = serde_json::from_slice(&killed.stdout).unwrap();
            detail["steps"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|step| step["status"] == "ran")
                .map(|step| step["step"].as_str().unwrap().to_owned())
                .collect()
        } else {
            Vec::new()
        };
        assert_store_verifies(&project);
        let (code, next) = finish(spawn_run(&project, &["--jobs", "2"]));
        assert_eq!(code, 0, "after a kill at {delay} ms: {next}");
        for step in &completed {
            assert_eq!(next.step(step)["status"], "cached", "{step} completed before the kill at {delay} ms");
        }
        std::fs::remove_dir_all(project.workspace().join("cache")).unwrap();
    }
}

/// `a_slow` naps; `b_quick` records when it started. A second process,
/// with one worker, finds `a_slow` in flight in the first: it must wait for
/// it without holding its only worker, so `b_quick` starts at once.
#[test]
fn waiting_for_an_identical_step_in_another_process_holds_no_worker() {
    let project = Project::new();
    project.manifest(
        r#"
name = "waits"
[steps.a_slow]
module = "tool-p1.wasm"
args = ["nap", "1500"]
outputs = { result = "file" }
[steps.b_quick]
module = "tool-p1.wasm"
args = ["nap", "1", "${params.tag}"]
outputs = { result = "file" }
[params]
tag = "first"
"#,
    );
    let first = spawn_run(&project, &["--jobs", "2"]);
    // The first process's nap is in flight once both steps have taken a
    // scratch directory (after locking their keys).
    let scratch = project.workspace().join("tmp");
    let executing = || {
        let entries = std::fs::read_dir(&scratch).into_iter().flatten().flatten();
        entries.filter(|entry| entry.file_name().to_string_lossy().starts_with("step-")).count()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while executing() < 2 {
        assert!(Instant::now() < deadline, "the first run never started its steps");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    let second = spawn_run(&project, &["--jobs", "1", "--param", "tag=second"]);
    let (code, first) = finish(first);
    assert_eq!(code, 0, "{first}");
    let (code, second) = finish(second);
    assert_eq!(code, 0, "{second}");
    assert_eq!(second.step("a_slow")["status"], "cached", "the second reused the first's execution: {second}");
    let interval = |summary: &Value, step: &str| -> (u64, u64) {
        let text = project.cat(summary.step(step)["outputs"]["result"].as_str().unwrap());
        let (start, end) = text.split_once(' ').unwrap();
        (start.parse().unwrap(), end.parse().unwrap())
    };
    let (_, slow_end) = interval(&first, "a_slow");
    let (quick_start, _) = interval(&second, "b_quick");
    assert!(
        quick_start < slow_end,
        "the second process's only worker was held waiting for `a_slow` ({quick_start} >= {slow_end})"
    );
}

#[test]
fn processes_exporting_to_the_same_paths_replace_them_one_at_a_time() {
    let project = Project::new();
    project.write("parts/a.txt", "alpha\n");
    project.write("parts/b.txt", "beta\n");
    project.write("notes.txt", "notes\n");
    project.manifest(
        r#"
name = "exports"
[inputs]
parts = "parts"
notes = "notes.txt"
[steps.upper]
module = "tool-p1.wasm"
args = ["upper"]
map = "text"
inputs = { text = "inputs.parts" }
outputs = { result = "file" }
[steps.join]
module = "tool-p1.wasm"
args = ["concat"]
inputs = { a = "inputs.notes" }
outputs = { result = "file" }
[outputs]
shouted = { from = "upper.result", export = "results/shouted" }
joined = { from = "join.result", export = "results/joined.txt" }
"#,
    );
    // Cached after the first: what is left to race is the exports.
    let (code, first) = project.run_json(&[]);
    assert_eq!(code, 0, "{first}");
    for _ in 0..3 {
        let children: Vec<Child> = (0..6).map(|_| spawn_run(&project, &[])).collect();
        for child in children {
            let (code, summary) = finish(child);
            assert_eq!(code, 0, "{summary}");
        }
    }
    let shouted = project.path().join("results/shouted");
    assert_eq!(std::fs::read_to_string(shouted.join("a.txt")).unwrap(), "ALPHA\n");
    assert_eq!(std::fs::read_dir(project.path().join("results")).unwrap().count(), 2, "no temporary left behind");
}
