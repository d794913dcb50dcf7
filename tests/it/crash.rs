//! A run killed mid-way leaves a store whose every entry is whole, and the
//! next run reuses what completed.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use weir_tests::{Project, RunDocument, files_under, steps_with, tamper, weir_bin};

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

#[test]
fn store_verify_finds_a_tampered_output_and_repair_makes_it_recompute() {
    let project = Project::new();
    project.write("data/text.txt", "abc");
    project.manifest(
        "name = \"v\"\n[inputs]\ntext = \"data/text.txt\"\n\
         [steps.upper]\nmodule = \"tool-p1.wasm\"\nargs = [\"upper\"]\ninputs = { text = \"inputs.text\" }\noutputs = { result = \"file\" }\n",
    );
    let (_, summary) = project.run_json(&[]);
    let digest = summary.step("upper")["outputs"]["result"].as_str().unwrap().trim_start_matches("blake3:").to_owned();
    let object = project.workspace().join("objects").join(&digest[..2]).join(&digest[2..]);
    let mut perms = std::fs::metadata(&object).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&object, perms).unwrap();
    std::fs::write(&object, "XYZ").unwrap();

    let check = project.weir(&["store", "verify"]);
    assert_eq!(check.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&check.stdout).contains(&format!("corrupt: blake3:{digest}")));
    let repair = project.weir(&["store", "verify", "--repair"]);
    assert_eq!(repair.status.code(), Some(0));
    assert!(!object.exists());

    let (code, again) = project.run_json(&[]);
    assert_eq!(code, 0);
    assert_eq!(steps_with(&again, "ran"), ["upper"], "the step whose output was corrupt runs again");
    assert_eq!(project.cat(&format!("blake3:{digest}")), "ABC");
    assert_eq!(project.weir(&["store", "verify"]).status.code(), Some(0));
}

/// Objects are synced in batches; a store last written in another boot is
/// checked on opening, and an object torn by the crash is removed, so the
/// step that made it runs again.
#[test]
fn after_a_machine_crash_torn_objects_are_found_and_recomputed() {
    let Ok(boot) = std::fs::read_to_string("/proc/sys/kernel/random/boot_id") else {
        return; // objects are synced as they are written where there is no boot id
    };
    let project = Project::new();
    project.write("text.txt", "made before the crash");
    project.manifest(
        "name = \"crash\"\n[inputs]\ntext = \"text.txt\"\n[steps.up]\nmodule = \"tool-p1.wasm\"\nargs = [\"upper\"]\ninputs = { text = \"inputs.text\" }\noutputs = { result = \"file\" }\n",
    );
    let (code, first) = project.run_json(&[]);
    assert_eq!(code, 0, "{first}");
    let workspace = project.workspace();
    let state = std::fs::read_to_string(workspace.join("synced")).unwrap();
    assert!(state.starts_with(boot.trim()), "the run recorded its sync in this boot: {state}");

    let digest = first.step("up")["outputs"]["result"].as_str().unwrap().trim_start_matches("blake3:").to_owned();
    let object = workspace.join("objects").join(&digest[..2]).join(&digest[2..]);
    let mut permissions = std::fs::metadata(&object).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    permissions.set_readonly(false);
    std::fs::set_permissions(&object, permissions).unwrap();
    std::fs::write(&object, "torn").unwrap();
    std::fs::write(workspace.join("synced"), "an-earlier-boot 0\n").unwrap();

    let (code, second) = project.run_json(&[]);
    assert_eq!(code, 0, "{second}");
    assert_eq!(second.step("up")["status"], "ran", "the torn output was found and the step ran again");
    assert_eq!(project.cat(&format!("blake3:{digest}")), "MADE BEFORE THE CRASH");
    assert_store_consistent(&workspace);
}

#[test]
fn a_corrupt_cached_output_is_found_on_reuse_and_computed_again() {
    corrupt_output_is_found_after(|_| {});
}

#[test]
fn a_corrupt_output_is_found_though_an_earlier_reuse_recorded_its_stamp() {
    corrupt_output_is_found_after(|project| {
        // Files old enough for their stamps to be trusted: this reuse hashes
        // them and records their stamps, so the next one only compares those.
        std::thread::sleep(std::time::Duration::from_millis(2_100));
        let (code, reused) = project.run_json(&[]);
        assert_eq!(code, 0, "{reused}");
        assert_eq!(reused.step("up")["status"], "cached", "{reused}");
    });
}

/// Runs a two-step chain, then `between` (given the project), then
/// corrupts the first step's output: the next run finds it, computes it
/// again, and reuses the step below.
fn corrupt_output_is_found_after(between: impl FnOnce(&Project)) {
    let project = Project::new();
    project.write("text.txt", "hello");
    project.manifest(
        "name = \"c\"\n[inputs]\ntext = \"text.txt\"\n[steps.up]\nmodule = \"tool-p1.wasm\"\nargs = [\"upper\"]\n\
         inputs = { text = \"inputs.text\" }\noutputs = { result = \"file\" }\n\
         [steps.down]\nmodule = \"tool-p1.wasm\"\nargs = [\"copy\", \"text\", \"result\"]\ninputs = { text = \"up.result\" }\noutputs = { result = \"file\" }\n",
    );
    let (code, first) = project.run_json(&[]);
    assert_eq!(code, 0, "{first}");
    let digest = weir_tests::output_digest(&first, "up", "result").to_owned();
    between(&project);
    tamper(&project.workspace(), &digest);

    let (code, again) = project.run_json(&[]);
    assert_eq!(code, 0, "{again}");
    assert_eq!(again.step("up")["status"], "ran", "{again}");
    let warning = again.step("up")["warnings"][0].as_str().unwrap();
    assert!(warning.contains("cached result was corrupt") && warning.contains(&digest), "{warning}");
    assert_eq!(again.step("down")["status"], "cached", "the same bytes again: nothing below re-runs");
    assert_eq!(project.cat(&digest), "HELLO");
    let verify = project.weir(&["store", "verify"]);
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));
}

#[test]
fn a_run_whose_export_fails_is_recorded_as_failed() {
    let project = Project::new();
    project.write("big.bin", vec![7u8; 2 << 20]);
    project.manifest(
        "name = \"e\"\n[inputs]\nbig = \"big.bin\"\n[steps.copy]\nmodule = \"tool-p1.wasm\"\nargs = [\"copy\", \"data\", \"result\"]\n\
         inputs = { data = \"inputs.big\" }\noutputs = { result = \"file\" }\n[outputs]\nout = { from = \"copy.result\", export = \"out.bin\" }\n",
    );
    let (code, first) = project.run_json(&[]);
    assert_eq!(code, 0, "{first}");
    tamper(&project.workspace(), weir_tests::output_digest(&first, "copy", "result"));
    let output = project.weir(&["run", "pipeline.toml"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("is corrupt"));
    let runs: serde_json::Value = serde_json::from_slice(&project.weir(&["runs", "--json"]).stdout).unwrap();
    assert_eq!(runs[0]["status"], "failed", "{runs}");
}
