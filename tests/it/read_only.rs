//! Read-only workspaces: `weir run --read-only` reuses cached results and
//! writes nothing; a workspace on a read-only file system still serves
//! `runs`, `show`, `cat` and `export`.

use std::path::Path;
use std::process::Command;

use weir_tests::{Project, RunDocument, files_under, weir_bin};

fn two_steps(project: &Project, word: &str) {
    project.manifest(&format!(
        "name = \"ro\"\n[params]\nword = \"{word}\"\n\
         [steps.say]\nmodule = \"tool-p1.wasm\"\nargs = [\"args\", \"${{params.word}}\"]\noutputs = {{ result = \"file\" }}\n\
         [steps.copy]\nmodule = \"tool-p1.wasm\"\nargs = [\"copy\", \"x\", \"result\"]\n\
         inputs = {{ x = \"say.result\" }}\noutputs = {{ result = \"file\" }}\n"
    ));
}

/// Asserts that nothing beneath the workspace changed since `before`.
fn assert_unchanged(workspace: &Path, before: &[(String, u64, std::time::SystemTime)]) {
    let after = snapshot(workspace);
    let changed: Vec<_> = after.iter().filter(|file| !before.contains(file)).collect();
    let gone: Vec<_> = before.iter().filter(|file| !after.contains(file)).collect();
    assert!(changed.is_empty() && gone.is_empty(), "written: {changed:?}\nremoved: {gone:?}");
}

/// Every path beneath the workspace with its size and modification time,
/// but SQLite's shared-memory index (`history.db-shm`), which every reader
/// of a database in write-ahead-log mode touches and which holds no data,
/// and `tmp/`: scratch that an earlier process left there (its background
/// cleanup cut short at exit) is swept by whichever process opens the store
/// next, and it holds nothing the store refers to.
fn snapshot(workspace: &Path) -> Vec<(String, u64, std::time::SystemTime)> {
    let scratch = workspace.join("tmp");
    let mut all: Vec<_> = files_under(workspace)
        .into_iter()
        .filter(|path| !path.ends_with("history.db-shm") && !path.starts_with(&scratch))
        .map(|path| {
            let meta = std::fs::metadata(&path).unwrap();
            (path.display().to_string(), meta.len(), meta.modified().unwrap())
        })
        .collect();
    all.sort();
    all
}

#[test]
fn a_read_only_run_reuses_everything_and_writes_nothing() {
    let project = Project::new();
    two_steps(&project, "hello");
    let (code, first) = project.run_json(&[]);
    assert_eq!(code, 0, "{first}");
    let before = snapshot(&project.workspace());

    let (code, reused) = project.run_json(&["--read-only"]);
    assert_eq!(code, 0, "{reused}");
    assert_eq!(reused["status"], "succeeded");
    assert_eq!(reused.step("copy")["status"], "cached");
    assert_eq!(reused.step("copy")["reused_from"], first["id"]);
    assert_eq!(reused.step("copy")["outputs"], first.step("copy")["outputs"]);
    assert_unchanged(&project.workspace(), &before);
    let runs = project.weir(&["runs", "--json"]);
    let runs: serde_json::Value = serde_json::from_slice(&runs.stdout).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 1, "the read-only run is not recorded: {runs}");
}

#[test]
fn a_read_only_run_fails_the_steps_that_would_execute_and_writes_nothing() {
    let project = Project::new();
    two_steps(&project, "hello");
    assert_eq!(project.run_json(&[]).0, 0);
    let before = snapshot(&project.workspace());

    let (code, changed) = project.run_json(&["--read-only", "--param", "word=bye"]);
    assert_eq!(code, 1, "{changed}");
    let say = changed.step("say");
    assert_eq!(say["status"], "failed");
    assert_eq!(say["error_kind"], "ReadOnly");
    assert!(say["error"].as_str().unwrap().contains("would execute, but the run is read-only"), "{say}");
    assert_eq!(changed.step("copy")["status"], "skipped");
    assert_unchanged(&project.workspace(), &before);
    let output = project.weir(&["run", "pipeline.toml", "--read-only", "--no-cache"]);
    assert_eq!(output.status.code(), Some(2), "--no-cache contradicts --read-only");
}

/// Runs `weir ARGS…` with the workspace mounted read-only in a mount
/// namespace of its own; `None` where this machine cannot make one.
fn weir_on_read_only_mount(project: &Project, args: &[&str]) -> Option<std::process::Output> {
    let workspace = project.workspace();
    let script = "mount --bind \"$1\" \"$1\" && mount -o remount,bind,ro \"$1\" && shift && exec \"$@\"";
    let mut command = Command::new("unshare");
    command.args(["--mount", "--map-root-user", "sh", "-c", script, "sh"]).arg(&workspace).arg(weir_bin());
    command.args(args).arg("--workspace").arg(&workspace).current_dir(project.path());
    let probe = Command::new("unshare").args(["--mount", "--map-root-user", "true"]).status();
    if !probe.is_ok_and(|status| status.success()) {
        eprintln!("skipped: this machine cannot make a mount namespace (unshare --mount)");
        return None;
    }
    Some(command.env_remove("WEIR_HOME").env_remove("WEIR_TENANT").output().expect("run unshare"))
}

#[test]
fn a_workspace_on_a_read_only_file_system_serves_reads() {
    let project = Project::new();
    two_steps(&project, "hello");
    let (code, first) = project.run_json(&[]);
    assert_eq!(code, 0, "{first}");
    let digest = first.step("copy")["outputs"]["result"].as_str().unwrap().to_owned();
    let Some(runs) = weir_on_read_only_mount(&project, &["runs"]) else { return };
    assert!(runs.status.success(), "{}", String::from_utf8_lossy(&runs.stderr));
    assert!(String::from_utf8_lossy(&runs.stdout).contains(first["id"].as_str().unwrap()));

    let shown = weir_on_read_only_mount(&project, &["show", "last", "--json"]).unwrap();
    assert!(shown.status.success(), "{}", String::from_utf8_lossy(&shown.stderr));
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["id"], first["id"]);

    let cat = weir_on_read_only_mount(&project, &["cat", &digest[..15]]).unwrap();
    assert_eq!(String::from_utf8_lossy(&cat.stdout), "hello", "{}", String::from_utf8_lossy(&cat.stderr));
    let target = project.path().join("exported.txt");
    let export = weir_on_read_only_mount(&project, &["export", &digest, target.to_str().unwrap()]).unwrap();
    assert!(export.status.success(), "{}", String::from_utf8_lossy(&export.stderr));
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "hello");

    let refused = weir_on_read_only_mount(&project, &["run", "pipeline.toml"]).unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is read-only") && stderr.contains("--read-only"), "{stderr}");
    let reused = weir_on_read_only_mount(&project, &["run", "pipeline.toml", "--read-only", "--json"]).unwrap();
    assert!(reused.status.success(), "{}", String::from_utf8_lossy(&reused.stderr));
    let reused: serde_json::Value = serde_json::from_slice(&reused.stdout).unwrap();
    assert_eq!(reused.step("copy")["status"], "cached");

    // Without SQLite's log and index files (checkpointed away), which a
    // reader cannot create on a read-only file system.
    let database = project.workspace().join("history.db");
    rusqlite::Connection::open(&database).unwrap().execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").unwrap();
    assert!(!project.workspace().join("history.db-shm").exists());
    let shown = weir_on_read_only_mount(&project, &["show", "last", "--json"]).unwrap();
    assert!(shown.status.success(), "{}", String::from_utf8_lossy(&shown.stderr));
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["id"], first["id"]);
}

#[test]
fn a_read_only_run_fails_a_map_over_a_changed_directory_and_writes_nothing() {
    let project = Project::new();
    project.write("data/a.txt", "abc");
    project.manifest(
        "name = \"rm\"\n[inputs]\nbatches = \"data\"\n[steps.m]\nmodule = \"sdk-tool.wasm\"\n\
         args = [\"measure\", \"batch\"]\nmap = \"batch\"\ninputs = { batch = \"inputs.batches\" }\n\
         outputs = { result = \"file\" }\n",
    );
    assert_eq!(project.run_json(&[]).0, 0);
    project.write("data/b.txt", "abcde");
    let before = snapshot(&project.workspace());
    let (code, refused) = project.run_json(&["--read-only"]);
    assert_eq!(code, 1, "{refused}");
    let step = refused.step("m");
    assert_eq!(step["status"], "failed");
    assert_eq!(step["error_kind"], "ReadOnly", "the changed directory was not stored: {step}");
    assert_unchanged(&project.workspace(), &before);
}
