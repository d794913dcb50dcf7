//! Deterministic mode (virtual clocks and seeded randomness) and `weir
//! verify`, which finds reusable steps that are not reproducible.

use weir_tests::{Project, RunDocument, Wasi, output_digest};

fn entropy_pipeline(wasi: Wasi) -> String {
    let tool = wasi.tool_name();
    format!(
        r#"
name = "entropy"
[steps.det]
module = "{tool}"
args = ["entropy"]
deterministic = true
outputs = {{ result = "file" }}
[steps.nondet]
module = "{tool}"
args = ["entropy"]
outputs = {{ result = "file" }}
[steps.downstream]
module = "{tool}"
args = ["copy", "seen", "result"]
inputs = {{ seen = "nondet.result" }}
outputs = {{ result = "file" }}
"#
    )
}

#[test]
fn a_deterministic_step_sees_the_same_time_and_randomness_every_time() {
    for wasi in Wasi::ALL {
        let project = Project::new();
        project.manifest(&entropy_pipeline(wasi));
        let (code, first) = project.run_json(&["--no-cache"]);
        assert_eq!(code, 0, "{first}");
        let (code, second) = project.run_json(&["--no-cache"]);
        assert_eq!(code, 0, "{second}");
        let det = output_digest(&first, "det", "result");
        assert_eq!(det, output_digest(&second, "det", "result"), "{wasi:?}");
        assert_ne!(
            output_digest(&first, "nondet", "result"),
            output_digest(&second, "nondet", "result"),
            "{wasi:?}: an ordinary step sees real time and randomness"
        );
        let seen = project.cat(det);
        let fields: Vec<&str> = seen.split(' ').collect();
        assert!(fields[0].starts_with("946684800"), "{wasi:?}: virtual wall clock starts at 2000-01-01: {seen}");
        assert_eq!(
            fields[1].parse::<u64>().unwrap() % 1_000_000,
            0,
            "{wasi:?}: the monotonic clock ticks in ms: {seen}"
        );
    }
}

#[test]
fn verify_reports_the_reusable_step_that_is_not_reproducible() {
    let project = Project::new();
    project.manifest(&entropy_pipeline(Wasi::P2));
    let (code, first) = project.run_json(&[]);
    assert_eq!(code, 0, "{first}");

    let output = project.weir(&["verify", "last"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(!String::from_utf8_lossy(&output.stderr).contains("changed since run"), "the manifest is as it ran");
    let line = |step: &str| stdout.lines().find(|l| l.starts_with(step)).unwrap_or_default().to_owned();
    assert!(line("det").contains("reproduced"), "{stdout}");
    assert!(line("nondet").contains("DIFFERS") && line("nondet").contains("`result` (cached blake3:"), "{stdout}");
    assert!(line("downstream").contains("reproduced"), "downstream is checked on the cached outputs: {stdout}");

    let output = project.weir(&["verify", "last", "det", "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report.step("det")["verification"], "reproduced");
    assert_eq!(report.step("nondet")["status"], "cached");

    let (code, again) = project.run_json(&[]);
    assert_eq!(code, 0);
    for step in ["det", "nondet", "downstream"] {
        assert_eq!(again.step(step)["status"], "cached", "verify leaves the cache as it was");
        assert_eq!(output_digest(&again, step, "result"), output_digest(&first, step, "result"));
    }
    project.manifest(&format!("{}\n# edited after the run\n", entropy_pipeline(Wasi::P2)));
    let output = project.weir(&["verify", "last", "det"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("pipeline.toml changed since run last; verifying against it as it is now"), "{stderr}");
    let output = project.weir(&["verify", "last", "nosuchstep"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("`verify nosuchstep`: no such step"));
}

#[test]
fn verification_runs_are_marked_and_not_kept_as_runs() {
    let project = Project::new();
    project.manifest(&entropy_pipeline(Wasi::P1));
    let (_, first) = project.run_json(&[]);
    let (_, second) = project.run_json(&[]);
    let output = project.weir(&["verify", "last", "det"]);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let runs: serde_json::Value = serde_json::from_slice(&project.weir(&["runs", "--json"]).stdout).unwrap();
    let kinds: Vec<&str> = runs.as_array().unwrap().iter().map(|run| run["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["verify", "run", "run"]);
    let text = String::from_utf8_lossy(&project.weir(&["runs"]).stdout).into_owned();
    assert_eq!(text.matches("(verify)").count(), 1, "{text}");
    let shown = String::from_utf8_lossy(&project.weir(&["show", "last"]).stdout).into_owned();
    assert!(shown.starts_with("verification run "), "{shown}");

    let gc = project.weir(&["gc", "--keep-runs", "1", "--json"]);
    let gc: serde_json::Value = serde_json::from_slice(&gc.stdout).unwrap();
    assert_eq!(gc["pruned_runs"].as_array().unwrap().len(), 2, "the first run and the verification: {gc}");
    let (first_id, second_id) = (first["id"].as_str().unwrap(), second["id"].as_str().unwrap());
    let kept: serde_json::Value = serde_json::from_slice(&project.weir(&["runs", "--json"]).stdout).unwrap();
    assert_eq!(kept[0]["id"], second_id, "the real run is kept: {kept}");
    let explained = project.weir(&["explain", second_id, "det"]);
    let explained = String::from_utf8_lossy(&explained.stdout);
    assert!(
        explained.contains(&format!("run {first_id} (no longer in the history")),
        "explain says the run it names is gone: {explained}"
    );
}
