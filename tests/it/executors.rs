//! The `process` executor: steps run in `weir worker` child processes. A
//! result is the same, and shared in the cache, whichever executor computed
//! it; a worker that dies fails only its step.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use weir_tests::{Project, RunDocument, files_under, output_digest, steps_with, weir_bin};

/// The digits-like chain of the caching tests: a file through two steps,
/// one calling the built-in `gemm` native function.
const CHAIN: &str = r#"
name = "chain"
[inputs]
text = "text.txt"
[steps.upper]
module = "tool-p2.wasm"
args = ["upper", "x"]
inputs = { text = "inputs.text" }
outputs = { result = "file" }
limits = { timeout = "30s" }
[steps.copy]
module = "tool-p1.wasm"
args = ["copy", "x", "result"]
inputs = { x = "upper.result" }
outputs = { result = "file" }
[steps.multiply]
module = "sdk-tool.wasm"
args = ["call", "gemm", '{"m": 2, "n": 1, "k": 2, "a": [1.0, 2.0, 3.0, 4.0], "b": [10.0, 20.0]}']
natives = ["gemm"]
outputs = { result = "file" }
"#;

#[test]
fn a_result_is_reused_whichever_executor_computed_it() {
    for (first, second) in [("process", "local"), ("local", "process")] {
        let project = Project::new();
        project.write("text.txt", "hello");
        project.manifest(CHAIN);
        let (code, computed) = project.run_json(&["--executor", first]);
        assert_eq!(code, 0, "{first}: {computed}");
        assert_eq!(steps_with(&computed, "ran"), ["copy", "multiply", "upper"], "{first}");
        let product = project.cat(output_digest(&computed, "multiply", "result"));
        assert!(product.contains("[50.0,110.0]"), "{first}: the built-in gemm ran: {product}");
        let (code, reused) = project.run_json(&["--executor", second]);
        assert_eq!(code, 0, "{second}: {reused}");
        assert_eq!(steps_with(&reused, "cached"), ["copy", "multiply", "upper"], "{first} then {second}");
        for step in ["upper", "copy", "multiply"] {
            assert_eq!(reused.step(step)["outputs"], computed.step(step)["outputs"], "{step}");
            assert_eq!(reused.step(step)["cache_key"], computed.step(step)["cache_key"], "{step}");
        }
        let (_, again) = project.run_json(&["--executor", second, "--no-cache"]);
        for step in ["upper", "copy", "multiply"] {
            assert_eq!(
                again.step(step)["outputs"],
                computed.step(step)["outputs"],
                "{step}: {second} computes the bytes {first} computed"
            );
        }
    }
}

#[test]
fn a_killed_worker_fails_only_its_step_and_the_workspace_default_applies() {
    let project = Project::new();
    project.write(".weir/config.toml", "executor = \"process\"\n");
    project.manifest(
        r#"
name = "crashy"
[steps.doomed]
module = "tool-p1.wasm"
args = ["spin"]
outputs = { result = "file" }
[steps.fine]
module = "tool-p2.wasm"
args = ["args", "ok"]
outputs = { result = "file" }
[steps.after]
module = "tool-p1.wasm"
args = ["copy", "x", "result"]
inputs = { x = "fine.result" }
outputs = { result = "file" }
"#,
    );
    let workspace = project.workspace();
    let child = Command::new(weir_bin())
        .args(["run", "pipeline.toml", "--json", "--jobs", "3", "--workspace"])
        .arg(&workspace)
        .current_dir(project.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Once `after` is cached, only `doomed` is left, spinning in its worker.
    let deadline = Instant::now() + Duration::from_secs(60);
    while files_under(&workspace.join("cache")).len() < 2 {
        assert!(Instant::now() < deadline, "the fine steps never finished");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let pattern = format!("worker --workspace {}", workspace.display());
    let workers = weir_tests::processes_matching(&pattern);
    assert!(!workers.is_empty(), "a `weir worker` of this workspace was running (the workspace's default executor)");
    for worker in workers {
        weir_tests::send_signal(worker, libc::SIGKILL);
    }
    let output = child.wait_with_output().unwrap();
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(1), "{summary}");
    assert_eq!(steps_with(&summary, "ran"), ["after", "fine"]);
    let error = summary.step("doomed")["error"].as_str().unwrap();
    assert!(error.contains("its worker process died while executing it"), "{error}");
    assert!(error.contains("signal: 9"), "{error}");

    let output = project.weir(&["run", "pipeline.toml", "--executor", "threads"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("unknown executor `threads` (known: local, process, slurm)"), "{stderr}");
    project.write(".weir/config.toml", "executor = \"fast\"\n");
    let output = project.weir(&["run", "pipeline.toml"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("config.toml: executor: unknown executor `fast`"), "{stderr}");
}

#[test]
fn ctrl_c_kills_the_worker_of_a_running_step() {
    let project = Project::new();
    project.manifest(
        "name = \"stop\"\n[steps.spin]\nmodule = \"tool-p1.wasm\"\nargs = [\"spin\"]\noutputs = { result = \"file\" }\nlimits = { timeout = \"none\" }\n",
    );
    let workspace = project.workspace();
    let child = Command::new(weir_bin())
        .args(["run", "pipeline.toml", "--json", "--executor", "process", "--workspace"])
        .arg(&workspace)
        .current_dir(project.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    weir_tests::wait_for_processes(&format!("worker --workspace {}", workspace.display()), "a worker");
    std::thread::sleep(Duration::from_millis(500));
    weir_tests::send_signal(child.id(), libc::SIGINT);
    let output = child.wait_with_output().unwrap();
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(130), "{summary}");
    assert_eq!(steps_with(&summary, "cancelled"), ["spin"], "without a timeout, only killing its worker stops it");
}

#[test]
fn a_job_is_not_lost_when_its_idle_worker_died_in_the_meantime() {
    let project = Project::new();
    let engine = weir::Engine::builder()
        .workspace(project.workspace())
        .jobs(1)
        .executor(weir::ExecutorKind::Process { command: weir_bin() })
        .build()
        .unwrap();
    let say = |word: &str| weir_tests::say_pipeline("say", word);
    assert!(engine.run(&say("one"), &weir::RunOptions::new()).unwrap().succeeded());
    // The worker that ran it waits, idle, for the next job: kill it.
    let pattern = format!("worker --workspace {}", project.workspace().display());
    let idle = weir_tests::processes_matching(&pattern);
    assert_eq!(idle.len(), 1, "one warm worker");
    weir_tests::send_signal(idle[0], libc::SIGKILL);
    std::thread::sleep(Duration::from_millis(100));
    let report = engine.run(&say("two"), &weir::RunOptions::new()).unwrap();
    assert!(report.succeeded(), "the job went to a new worker: {:?}", report.failures());
    assert_eq!(project.cat(&report.output("say", "result").unwrap().digest.to_string()), "two");
}

#[test]
fn a_worker_whose_compiled_code_is_damaged_compiles_the_module_from_the_store() {
    let project = Project::upper("tool-p2.wasm");
    let (code, first) = project.run_json(&["--executor", "process"]);
    assert_eq!(code, 0, "{first}");
    let compiled = weir_tests::compiled_code(&project.workspace());
    // The run's own (planned, never executed here) and the worker's, which
    // is compiled without interruption checks.
    assert_eq!(compiled.len(), 2, "{compiled:?}");
    for file in &compiled {
        std::fs::write(file, "not code").unwrap();
    }

    let (code, again) = project.run_json(&["--executor", "process", "--no-cache"]);
    assert_eq!(code, 0, "{again}");
    assert_eq!(project.cat(output_digest(&again, "upper", "result")), "HELLO");
    let replaced = compiled.iter().filter(|file| std::fs::read(file).unwrap() != b"not code").count();
    assert_eq!(replaced, 1, "the worker loaded its code, found it damaged and compiled the module again");
}
