//! A run killed mid-way leaves a store whose every entry is whole, and the
//! next run reuses what completed.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use weir_tests::{Project, steps_with, weir_bin};

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() { files.extend(files_under(&path)) } else { files.push(path) }
    }
    files
}

/// Every object and tree in the store hashes to its own name.
fn assert_store_consistent(workspace: &Path) {
    for kind in ["objects", "trees"] {
        for file in files_under(&workspace.join(kind)) {
            let fan = file.parent().unwrap().file_name().unwrap().to_string_lossy().into_owned();
            let name = format!("{fan}{}", file.file_name().unwrap().to_string_lossy());
            let actual = blake3::hash(&std::fs::read(&file).unwrap()).to_hex().to_string();
            assert_eq!(actual, name, "{} does not match its digest", file.display());
        }
    }
}

#[test]
fn a_killed_run_leaves_a_consistent_store_and_the_next_run_resumes() {
    let project = Project::new();
    project.manifest(
        r#"
name = "crash"
[params]
ms = 60000
[steps.quick]
module = "tool-p1.wasm"
args = ["args", "done"]
outputs = { result = "file" }
[steps.slow]
module = "tool-p2.wasm"
args = ["nap", "${params.ms}"]
inputs = { after = "quick.result" }
outputs = { result = "file" }
"#,
    );
    let workspace = project.workspace();
    let mut child = Command::new(weir_bin())
        .args(["run", "pipeline.toml", "--workspace"])
        .arg(&workspace)
        .current_dir(project.path())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while files_under(&workspace.join("cache")).is_empty() {
        assert!(Instant::now() < deadline, "the quick step never finished");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "weir was killed mid-run");

    assert_store_consistent(&workspace);
    let (code, summary) = project.run_json(&["--param", "ms=1"]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(steps_with(&summary, "cached"), ["quick"]);
    assert_eq!(steps_with(&summary, "ran"), ["slow"]);
    assert_store_consistent(&workspace);
    let leftovers: Vec<_> = std::fs::read_dir(workspace.join("tmp")).unwrap().collect();
    assert!(leftovers.is_empty(), "the killed run's scratch was swept: {leftovers:?}");
}
