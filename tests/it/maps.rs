//! Map steps: each entry's logs and metrics are recorded and shown, and the
//! step's own metrics are their means.

use weir_tests::{Project, RunDocument, steps_with, write_settled};

fn measuring(project: &Project) {
    project.manifest(
        "name = \"maps\"\n[inputs]\nbatches = \"data\"\n[steps.m]\nmodule = \"sdk-tool.wasm\"\nargs = [\"measure\", \"batch\"]\n\
         map = \"batch\"\ninputs = { batch = \"inputs.batches\" }\noutputs = { result = \"file\" }\n",
    );
}

#[test]
fn map_entries_keep_their_metrics_and_logs() {
    let project = Project::new();
    project.write("data/a.txt", "abc");
    write_settled(&project.path().join("data/b.txt"), "abcde");
    measuring(&project);

    let output = project.weir(&["run", "pipeline.toml"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("ran 2/2 entries") && text.contains("bytes=4"), "{text}");

    let logs = project.weir(&["logs", "last", "m"]);
    let logs = String::from_utf8_lossy(&logs.stdout);
    assert!(logs.contains("--- entry a.txt: stdout ---\nmeasured 3 bytes"), "{logs}");
    assert!(logs.contains("--- entry b.txt: stdout ---\nmeasured 5 bytes"), "{logs}");
    let json = project.weir(&["logs", "last", "m", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json["entries"]["b.txt"]["stdout"], "measured 5 bytes\n");

    let status = project.weir(&["status", "pipeline.toml"]);
    assert_eq!(status.status.code(), Some(0), "{}", String::from_utf8_lossy(&status.stdout));
    project.write("data/c.txt", "abcdefghijklmnopqrstuvwxyz");
    let status = project.weir(&["status", "pipeline.toml"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert_eq!(status.status.code(), Some(1), "{text}");
    assert!(text.contains("m  would run   input batch: blake3:"), "a new entry changes the mapped directory: {text}");
    let (code, summary) = project.run_json(&[]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(steps_with(&summary, "ran"), ["m"]);
    let step = &summary.step("m");
    assert_eq!(step["metrics"]["bytes"], (3.0 + 5.0 + 26.0) / 3.0, "the mean over the entries");
    assert_eq!(step["entries"]["a.txt"]["status"], "cached");
    assert_eq!(step["entries"]["a.txt"]["metrics"]["bytes"], 3.0, "a reused entry keeps its metrics");
    assert_eq!(step["entries"]["c.txt"]["status"], "ran");
    assert!(step["entries"]["c.txt"]["logs"]["stdout"].is_string());

    let show = project.weir(&["show", "last", "--json"]);
    let show: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    let recorded = show.step("m").clone();
    assert_eq!(recorded["entries"]["c.txt"]["metrics"]["bytes"], 26.0);
    assert_eq!(recorded["entries"]["b.txt"]["status"], "cached");
    assert_eq!(recorded["metrics"]["bytes"], (3.0 + 5.0 + 26.0) / 3.0);
    let text = project.weir(&["run", "pipeline.toml"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("ran 0/3 entries"));
}

#[test]
fn a_map_over_an_empty_directory_says_so() {
    let project = Project::new();
    std::fs::create_dir_all(project.path().join("data")).unwrap();
    measuring(&project);
    let (code, summary) = project.run_json(&[]);
    assert_eq!(code, 0, "{summary}");
    let step = &summary.step("m");
    assert_eq!(step["status"], "ran", "nothing was reused: {summary}");
    let warning = step["warnings"][0].as_str().unwrap();
    assert!(warning.contains("mapped over `batch`, an empty directory: no entry ran"), "{warning}");
    let output = project.weir(&["run", "pipeline.toml"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("warning: step `m` mapped over `batch`, an empty directory"), "{stderr}");
}
