//! Steps given as Rust crates, which weir builds, and `weir new`, which
//! makes a project of one: it runs as created, a build is reused while the
//! crate's sources are unchanged, and a broken crate is a located error.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use weir_tests::{Project, RunDocument, assert_run_document, weir_bin};

/// Builds of the crates the tests make share one target directory, so the
/// guest SDK and its dependencies compile once.
fn shared_target() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/crate-steps")
}

/// `weir ARGS…` in the project's directory with its workspace, cargo
/// building into the shared target directory; `cargo` replaces `$CARGO`.
fn weir(project: &Project, args: &[&str], cargo: Option<&str>) -> Output {
    let mut command = Command::new(weir_bin());
    command.args(args).arg("--workspace").arg(project.workspace()).current_dir(project.path());
    command.env("CARGO_TARGET_DIR", shared_target()).env_remove("WEIR_HOME").env_remove("WEIR_TENANT");
    if let Some(cargo) = cargo {
        command.env("CARGO", cargo);
    }
    command.output().expect("run weir")
}

fn run_json(project: &Project, manifest: &str, cargo: Option<&str>) -> (i32, serde_json::Value) {
    let output = weir(project, &["run", manifest, "--json"], cargo);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let document: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|err| panic!("{err}: {stdout}\n{}", String::from_utf8_lossy(&output.stderr)));
    if document["status"] != "invalid" {
        assert_run_document(&document);
    }
    (output.status.code().unwrap(), document)
}

#[test]
fn a_new_project_runs_as_created_and_rebuilds_only_when_its_sources_change() {
    let project = Project::new();
    let created = weir(&project, &["new", "demo"], None);
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    assert!(String::from_utf8_lossy(&created.stdout).contains("weir run demo/pipeline.toml"));

    let (code, first) = run_json(&project, "demo/pipeline.toml", None);
    assert_eq!(code, 0, "{first}");
    let step = first.step("standardize");
    assert_eq!(step["status"], "ran");
    assert_eq!(step["metrics"]["mean"], 18.0, "the sample values' mean");
    let exported = std::fs::read_to_string(project.path().join("demo/results/scaled.txt")).unwrap();
    assert_eq!(exported.lines().count(), 6, "{exported}");

    // Unchanged sources: cargo is not even invoked (it would fail here).
    let (code, again) = run_json(&project, "demo/pipeline.toml", Some("/bin/false"));
    assert_eq!(code, 0, "{again}");
    assert_eq!(again.step("standardize")["status"], "cached");

    // Changed sources: rebuilt, and the step executes the new code.
    let main = project.path().join("demo/step/src/main.rs");
    let source = std::fs::read_to_string(&main).unwrap();
    std::fs::write(&main, source.replace("metric(\"mean\"", "metric(\"average\"")).unwrap();
    let (code, rebuilt) = run_json(&project, "demo/pipeline.toml", None);
    assert_eq!(code, 0, "{rebuilt}");
    let step = rebuilt.step("standardize");
    assert_eq!(step["status"], "ran");
    assert_eq!(step["metrics"]["average"], 18.0, "{step}");
}

#[test]
fn a_crate_that_does_not_compile_is_an_error_at_its_field() {
    let project = Project::new();
    assert!(weir(&project, &["new", "broken"], None).status.success());
    let main = project.path().join("broken/step/src/main.rs");
    std::fs::write(&main, "fn main() { let x: u32 = not_defined_anywhere; }\n").unwrap();
    // A link loop in the sources is hashed as a link, not followed forever.
    std::os::unix::fs::symlink("..", project.path().join("broken/step/src/up")).unwrap();
    let output = weir(&project, &["run", "broken/pipeline.toml"], None);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("pipeline.toml") && stderr.contains("standardize") && stderr.contains("crate"), "{stderr}");
    assert!(stderr.contains("not_defined_anywhere"), "cargo's message is shown: {stderr}");

    let (code, refused) = run_json(&project, "broken/pipeline.toml", None);
    assert_eq!(code, 2);
    assert_eq!(refused["status"], "invalid");
    assert_eq!(refused["errors"][0]["field"], "crate", "{refused}");
}

#[test]
fn new_refuses_a_bad_name_or_an_existing_directory() {
    let project = Project::new();
    let bad = weir(&project, &["new", "bad name"], None);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("`bad name` cannot name a pipeline"));
    project.write("taken/keep.txt", "mine");
    let taken = weir(&project, &["new", "taken"], None);
    assert_eq!(taken.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&taken.stderr).contains("already exists"));
    assert_eq!(std::fs::read_to_string(project.path().join("taken/keep.txt")).unwrap(), "mine");
}

#[test]
fn a_tenant_may_not_have_weir_build_a_crate() {
    let project = Project::new();
    project.write_as("alice", "step/Cargo.toml", "[package]\nname = \"s\"\nversion = \"0.1.0\"\n");
    project.write_as(
        "alice",
        "pipeline.toml",
        "name = \"t\"\n[steps.s]\ncrate = \"step\"\noutputs = { result = \"file\" }\n",
    );
    let stderr = project.refused_as("alice");
    assert!(stderr.contains("crate") && stderr.contains("only the operator"), "{stderr}");
}
