//! The command-line contract: the JSON summary, the text report, `cat`,
//! `export`, the workspace option and exit codes.

use std::process::Command;

use weir_tests::{Project, RunDocument, output_digest, weir_bin};

fn one_step(project: &Project) {
    project.write("data/text.txt", "abc");
    project.manifest(
        "name = \"cli\"\n[inputs]\ntext = \"data/text.txt\"\n\
         [steps.upper]\nmodule = \"tool-p2.wasm\"\nargs = [\"upper\"]\ninputs = { text = \"inputs.text\" }\noutputs = { result = \"file\" }\n",
    );
}

#[test]
fn json_summary_has_the_documented_shape() {
    let project = Project::new();
    one_step(&project);
    let output = project.weir(&["run", "pipeline.toml", "--json"]);
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(stdout.trim().lines().count(), 1, "exactly one JSON object: {stdout}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["pipeline"], "cli");
    assert_eq!(summary["status"], "succeeded");
    assert!(summary["id"].as_str().is_some_and(|id| !id.is_empty()));
    let step = &summary.step("upper");
    assert_eq!(step["status"], "ran");
    assert!(step["duration_ms"].as_f64().is_some_and(|ms| ms > 0.0));
    let digest = output_digest(&summary, "upper", "result");
    assert_eq!(digest, format!("blake3:{}", blake3::hash(b"ABC").to_hex()));
    assert!(step["error"].is_null());
    assert_eq!(project.cat(step["logs"]["stderr"].as_str().unwrap()), "");
}

#[test]
fn text_report_has_a_line_per_step_and_a_summary() {
    let project = Project::new();
    one_step(&project);
    let first = project.weir(&["run", "pipeline.toml"]);
    assert_eq!(first.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        stdout.lines().any(|l| l.trim_start().starts_with("ran") && l.contains("upper") && l.contains("ms")),
        "{stdout}"
    );
    assert!(stdout.contains("succeeded: 1 ran, 0 cached, 0 failed, 0 skipped"), "{stdout}");
    let second = project.weir(&["run", "pipeline.toml"]);
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(stdout.lines().any(|l| l.trim_start().starts_with("cached") && l.contains("upper")), "{stdout}");
}

#[test]
fn cat_and_export_read_artifacts_back() {
    let project = Project::new();
    one_step(&project);
    let (_, summary) = project.run_json(&[]);
    let digest = output_digest(&summary, "upper", "result");
    assert_eq!(project.cat(digest), "ABC");

    let dest = project.path().join("out/result.txt");
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    let export = project.weir(&["export", digest, dest.to_str().unwrap()]);
    assert!(export.status.success());
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), "ABC");

    let unknown = format!("blake3:{}", "0".repeat(64));
    let missing = project.weir(&["cat", &unknown]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no artifact"));

    let malformed = project.weir(&["cat", "sha1:abc"]);
    assert_eq!(malformed.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&malformed.stderr).contains("is not a digest"));
}

#[test]
fn the_workspace_comes_from_weir_home_when_not_given() {
    let project = Project::new();
    one_step(&project);
    let home = project.path().join("elsewhere");
    let output = Command::new(weir_bin())
        .args(["run", "pipeline.toml", "--json"])
        .current_dir(project.path())
        .env("WEIR_HOME", &home)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(home.join("objects").is_dir());
    assert!(!project.workspace().exists());
}

#[test]
fn usage_errors_exit_with_2() {
    let project = Project::new();
    let output = project.weir(&["run"]);
    assert_eq!(output.status.code(), Some(2));
    let output = project.weir(&["run", "pipeline.toml", "--param", "novalue"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("expected NAME=VALUE"));
}

/// `weir … | head` ends quietly when the reader closes the pipe early.
#[cfg(unix)]
#[test]
fn a_closed_output_pipe_ends_weir_without_a_panic() {
    use std::io::Read;
    let project = Project::new();
    let mut toml = String::from("name = \"wide\"\n");
    for i in 0..3000 {
        toml.push_str(&format!(
            "[steps.step_number_{i}]\nmodule = \"tool-p1.wasm\"\nargs = [\"nothing\"]\noutputs = {{ result = \"file\" }}\n"
        ));
    }
    project.manifest(&toml);
    let mut child = Command::new(weir_bin())
        .args(["graph", "pipeline.toml", "--format", "dot"])
        .current_dir(project.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn jobs_out_of_range_are_refused_with_the_range() {
    let project = Project::new();
    one_step(&project);
    for jobs in ["0", "-1", "1000000"] {
        let output = project.weir(&["run", "pipeline.toml", "--jobs", jobs]);
        assert_eq!(output.status.code(), Some(2), "--jobs {jobs}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(&format!("{jobs} steps at once: give a number from 1 to 256")), "{stderr}");
        assert!(!stderr.contains("-- -1"), "no advice to pass it as a positional argument: {stderr}");
    }
    let output = project.weir(&["run", "pipeline.toml", "--jobs", "256"]);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn help_does_not_show_empty_environment_values() {
    let output = Command::new(weir_bin()).args(["run", "--help"]).env_remove("WEIR_HOME").output().unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("[env: WEIR_HOME]") && !help.contains("WEIR_HOME="), "{help}");
}

#[test]
fn json_still_prints_one_object_when_the_run_is_refused() {
    let project = Project::new();
    project.manifest(
        "name = \"bad\"\n[steps.s]\nmodule = \"tool-p1.wasm\"\nargs = [\"nothing\"]\nlimits = { memroy = \"1MiB\" }\n",
    );
    let (code, refused) = project.weir_json(&["run", "pipeline.toml", "--json"]);
    assert_eq!(code, 2, "{refused}");
    assert_eq!(refused["status"], "invalid");
    let error = &refused["errors"][0];
    assert!(error["file"].as_str().unwrap().ends_with("pipeline.toml"), "{refused}");
    assert_eq!(error["step"], "s");
    assert!(error["message"].as_str().unwrap().contains("memroy"), "{refused}");

    project.manifest("name = \"bad\"\n[params]\nn = 1\n[steps.s]\nmodule = \"tool-p1.wasm\"\nargs = [\"nothing\"]\n");
    let (code, refused) = project.weir_json(&["run", "pipeline.toml", "--json", "--param", "n=x"]);
    assert_eq!(code, 2, "{refused}");
    assert_eq!(refused["status"], "invalid");
    assert!(refused["errors"][0]["message"].as_str().unwrap().contains("parameter `n`"), "{refused}");
}

#[test]
fn digests_can_be_abbreviated_when_unique() {
    let project = Project::new();
    one_step(&project);
    for i in 0..600 {
        project.write(&format!("data/many/{i}.txt"), format!("file {i}"));
    }
    project.manifest(
        "name = \"cli\"\n[inputs]\ntext = \"data/text.txt\"\nmany = \"data/many\"\n\
         [steps.upper]\nmodule = \"tool-p2.wasm\"\nargs = [\"upper\"]\ninputs = { text = \"inputs.text\" }\noutputs = { result = \"file\" }\n",
    );
    let (code, summary) = project.run_json(&[]);
    assert_eq!(code, 0, "{summary}");
    let digest = output_digest(&summary, "upper", "result").to_owned();
    for short in [&digest[..15], &digest[7..19]] {
        assert_eq!(project.cat(short), "ABC", "{short}");
    }
    // Among 600 objects, two share their first four hex digits.
    let mut seen = std::collections::BTreeMap::new();
    let mut shared = None;
    for path in weir_tests::files_under(&project.workspace().join("objects")) {
        let hex = format!(
            "{}{}",
            path.parent().unwrap().file_name().unwrap().to_string_lossy(),
            path.file_name().unwrap().to_string_lossy()
        );
        if seen.insert(hex[..4].to_owned(), ()).is_some() {
            shared = Some(hex[..4].to_owned());
        }
    }
    let shared = shared.expect("a shared prefix");
    let output = project.weir(&["cat", &shared]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("`{shared}` is ambiguous")) && stderr.contains("give more digits"), "{stderr}");
    let output = project.weir(&["cat", "blake3:0123456789abcdef0123"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.code() == Some(2) && stderr.contains("no artifact in the store starts with"), "{stderr}");
}

#[test]
fn errors_say_their_cause_once_and_a_file_is_no_workspace() {
    let project = Project::new();
    std::fs::create_dir_all(project.path().join("taken")).unwrap();
    project.write("dir/x.txt", "x");
    project.manifest(
        "name = \"cli\"\n[inputs]\nd = \"dir\"\n[steps.s]\nmodule = \"tool-p1.wasm\"\nargs = [\"list-in\"]\ninputs = { d = \"inputs.d\" }\noutputs = { result = \"file\" }\n",
    );
    let (code, summary) = project.run_json(&[]);
    assert_eq!(code, 0, "{summary}");
    let trees = weir_tests::files_under(&project.workspace().join("trees"));
    let tree = &trees[0];
    let digest = format!(
        "blake3:{}{}",
        tree.parent().unwrap().file_name().unwrap().to_string_lossy(),
        tree.file_name().unwrap().to_string_lossy()
    );
    let output = project.weir(&["export", &digest, "taken"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim(), "error: exporting a directory to taken: something is there already");

    project.write("plain-file", "not a workspace");
    for command in [&["runs"][..], &["run", "pipeline.toml"]] {
        let mut args = command.to_vec();
        args.extend(["--workspace", "plain-file"]);
        let output = Command::new(weir_bin()).args(&args).current_dir(project.path()).output().unwrap();
        assert_eq!(output.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("plain-file") && stderr.contains("is a file, not a directory"), "{stderr}");
        assert_eq!(stderr.matches("not a directory").count(), 1, "{stderr}");
        assert_eq!(stderr.matches("plain-file").count(), 1, "each cause said once: {stderr}");
    }
}
