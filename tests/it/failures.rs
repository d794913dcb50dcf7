//! Failing steps: typed errors with stderr, isolation of independent
//! branches, skipped dependents, and nothing cached from a failure.

use weir_tests::{Project, RunDocument, Wasi, steps_with};

fn single(wasi: Wasi, args: &str) -> serde_json::Value {
    let project = Project::new();
    project.manifest(&format!(
        "name = \"f\"\n[steps.bad]\nmodule = \"{}\"\nargs = [{args}]\noutputs = {{ result = \"file\" }}\n",
        wasi.tool_name()
    ));
    let (code, summary) = project.run_json(&[]);
    assert_eq!(code, 1, "{summary}");
    assert_eq!(summary["status"], "failed");
    assert_eq!(summary.step("bad")["status"], "failed");
    summary
}

fn error_of(summary: &serde_json::Value) -> String {
    summary.step("bad")["error"].as_str().expect("error text").to_owned()
}

#[test]
fn a_nonzero_exit_fails_with_the_status_and_stderr_tail() {
    for wasi in Wasi::ALL {
        let error = error_of(&single(wasi, "\"fail\", \"3\""));
        // WASI 0.2's `exit` carries only success or failure; components that
        // use it report status 1.
        let status = if wasi == Wasi::P1 { 3 } else { 1 };
        assert!(error.starts_with(&format!("step `bad` failed: exited with status {status}")), "{error}");
        assert!(error.contains("something went wrong: failing with status 3"), "{error}");
    }
}

#[test]
fn a_trap_fails_with_the_panic_message() {
    for wasi in Wasi::ALL {
        let error = error_of(&single(wasi, "\"panic\""));
        assert!(error.contains("trapped:"), "{error}");
        assert!(error.contains("the guest panicked on purpose"), "{error}");
    }
}

#[test]
fn an_unwritten_output_fails_the_step() {
    for wasi in Wasi::ALL {
        let error = error_of(&single(wasi, "\"nothing\""));
        assert!(error.contains("declared output `result` was not written to /out/result"), "{error}");
    }
}

#[test]
fn a_failure_skips_dependents_but_not_independent_branches() {
    let project = Project::new();
    project.manifest(
        r#"
name = "isolation"
[steps.bad]
module = "tool-p1.wasm"
args = ["fail", "2"]
outputs = { result = "file" }

[steps.after_bad]
module = "tool-p1.wasm"
args = ["concat"]
inputs = { x = "bad.result" }
outputs = { result = "file" }

[steps.last]
module = "tool-p1.wasm"
args = ["concat"]
inputs = { x = "after_bad.result", y = "good.result" }
outputs = { result = "file" }

[steps.good]
module = "tool-p2.wasm"
args = ["args", "fine"]
outputs = { result = "file" }

[steps.after_good]
module = "tool-p2.wasm"
args = ["concat"]
inputs = { y = "good.result" }
outputs = { result = "file" }
"#,
    );
    let (code, summary) = project.run_json(&[]);
    assert_eq!(code, 1);
    assert_eq!(summary["status"], "failed");
    assert_eq!(steps_with(&summary, "failed"), ["bad"]);
    assert_eq!(steps_with(&summary, "skipped"), ["after_bad", "last"]);
    assert_eq!(steps_with(&summary, "ran"), ["after_good", "good"]);
    assert!(summary.step("after_bad")["error"].is_null());

    // Failures are not cached: the failed step executes again, the rest is reused.
    let (code, again) = project.run_json(&[]);
    assert_eq!(code, 1);
    assert_eq!(steps_with(&again, "failed"), ["bad"]);
    assert_eq!(steps_with(&again, "cached"), ["after_good", "good"]);
}

#[test]
fn the_text_report_names_failures_and_the_stderr_tail() {
    let project = Project::new();
    project.manifest("name = \"t\"\n[steps.bad]\nmodule = \"tool-p1.wasm\"\nargs = [\"fail\", \"5\"]\noutputs = { result = \"file\" }\n");
    let output = project.weir(&["run", "pipeline.toml"]);
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stdout.contains("FAILED") && stdout.contains("bad"), "{stdout}");
    assert!(stdout.contains("0 ran, 0 cached, 1 failed, 0 skipped"), "{stdout}");
    assert!(stderr.contains("exited with status 5") && stderr.contains("failing with status 5"), "{stderr}");
}

#[test]
fn a_flood_of_stderr_is_cut_at_the_log_limit_and_reported_by_its_tail() {
    let project = Project::new();
    project.manifest("name = \"f\"\n[steps.bad]\nmodule = \"tool-p1.wasm\"\nargs = [\"flood\", \"24\"]\noutputs = { r = \"file\" }\n");
    let (code, summary) = project.run_json(&[]);
    assert_eq!(code, 1);
    let error = summary.step("bad")["error"].as_str().unwrap();
    assert!(error.starts_with("step `bad` failed: exited with status 3"), "{}", &error[..200.min(error.len())]);
    assert!(error.len() < 6000, "the error keeps only the tail of stderr ({} bytes)", error.len());
    assert!(error.contains("log truncated here"), "the tail ends with the truncation marker");
    let stderr = project.cat_bytes(summary.step("bad")["logs"]["stderr"].as_str().unwrap());
    let cap = weir::Limits::DEFAULT_LOG as usize;
    assert!(
        stderr.len() > cap && stderr.len() < cap + 200,
        "the default limits.log keeps {cap} bytes: {}",
        stderr.len()
    );
    assert!(stderr[..cap].iter().all(|&b| b == b'x' || b == b'\n'));
    let warnings = summary.step("bad")["warnings"].to_string();
    assert!(warnings.contains("stderr was truncated at 16MiB (limits.log)"), "{warnings}");
}
