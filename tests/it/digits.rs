//! The digits example end to end: accuracy, exactly which steps re-run, map
//! steps over scoring batches, sub-pipelines, and exported outputs.

use std::path::Path;

use serde_json::Value;
use weir_tests::{Project, RunDocument, copy_tree, digits_steps, output_digest, steps_with};

const STEPS: [&str; 5] = ["validate", "prep", "train", "evaluate", "score"];

/// A project holding a copy of `examples/digits` with its steps built.
/// Training runs for few epochs to keep the tests quick, unless `epochs` says otherwise.
pub(crate) fn digits() -> Project {
    let project = Project::new();
    for what in ["data", "pipeline.toml", "prep.toml", "tune.toml"] {
        let from = Path::new("examples/digits").join(what);
        let to = project.path().join(what);
        if what.ends_with(".toml") {
            let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(&from)).unwrap();
            std::fs::write(to, text).unwrap();
        } else {
            copy_tree(from.to_str().unwrap(), &to);
        }
    }
    std::fs::create_dir_all(project.path().join("build")).unwrap();
    for step in STEPS {
        std::fs::copy(digits_steps().join(format!("{step}.wasm")), project.path().join(format!("build/{step}.wasm")))
            .unwrap();
    }
    project
}

fn run(project: &Project, manifest: &str, extra: &[&str]) -> Value {
    let mut args = vec!["run", manifest, "--json"];
    args.extend_from_slice(extra);
    let output = project.weir(&args);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_str(&stdout).unwrap()
}

/// Each entry of the `score` step with its status.
fn entries(summary: &Value) -> Value {
    let entries = summary.step("score")["entries"].as_object().expect("entries");
    entries.iter().map(|(name, entry)| (name.clone(), entry["status"].clone())).collect()
}

#[test]
fn the_example_learns_reuses_and_reruns_only_what_changed() {
    let project = digits();
    let first = run(&project, "pipeline.toml", &[]);
    assert_eq!(steps_with(&first, "ran"), ["data/split", "data/validate", "evaluate", "score", "train"]);
    let accuracy = first.step("evaluate")["metrics"]["accuracy"].as_f64().unwrap();
    assert!(accuracy >= 0.93, "test accuracy {accuracy} is below 0.93");

    // The predictions of the 300 unseen scoring images are mostly right.
    let truth: Vec<String> = std::fs::read_to_string(project.path().join("data/score-labels.txt"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let mut predicted = Vec::new();
    for batch in ["batch-01.csv", "batch-02.csv", "batch-03.csv"] {
        let text = std::fs::read_to_string(project.path().join("results/predictions").join(batch)).unwrap();
        predicted.extend(text.lines().map(str::to_owned));
    }
    let right = predicted.iter().zip(&truth).filter(|(p, t)| p == t).count();
    assert_eq!(predicted.len(), 300);
    assert!(right as f64 / 300.0 >= 0.9, "only {right} of 300 scoring images right");

    let again = run(&project, "pipeline.toml", &[]);
    assert_eq!(steps_with(&again, "cached").len(), 5);

    let retrained = run(&project, "pipeline.toml", &["--param", "epochs=20"]);
    assert_eq!(steps_with(&retrained, "ran"), ["evaluate", "score", "train"]);
    assert_eq!(steps_with(&retrained, "cached"), ["data/split", "data/validate"]);

    let first_half: String = std::fs::read_to_string(project.path().join("data/score/batch-01.csv"))
        .unwrap()
        .lines()
        .take(50)
        .map(|l| format!("{l}\n"))
        .collect();
    project.write("data/score/batch-04.csv", first_half);
    let more = run(&project, "pipeline.toml", &["--param", "epochs=20"]);
    assert_eq!(steps_with(&more, "ran"), ["score"]);
    assert_eq!(
        entries(&more),
        serde_json::json!({"batch-01.csv": "cached", "batch-02.csv": "cached", "batch-03.csv": "cached", "batch-04.csv": "ran"})
    );
    let exported = |name: &str| std::fs::read_to_string(project.path().join("results/predictions").join(name)).unwrap();
    let head: Vec<String> = exported("batch-01.csv").lines().take(50).map(str::to_owned).collect();
    assert_eq!(exported("batch-04.csv").lines().collect::<Vec<_>>(), head);
}

#[test]
fn a_failed_map_entry_fails_the_step_and_names_the_entry() {
    let project = digits();
    project.write("data/score/batch-02.csv", "0,1,2\n");
    let output = project.weir(&["run", "pipeline.toml", "--json", "--param", "epochs=2"]);
    assert_eq!(output.status.code(), Some(1));
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    let error = summary.step("score")["error"].as_str().unwrap();
    assert!(error.contains("1 of 3 entries failed: entry `batch-02.csv`"), "{error}");
    assert!(error.contains("line 1: expected 64 columns, found 3"), "{error}");
    assert_eq!(entries(&summary)["batch-01.csv"], "ran");
    assert!(!project.path().join("results").exists(), "nothing is exported from a failed run");
}

#[test]
fn a_sub_pipeline_is_shared_and_cached_step_by_step() {
    let project = digits();
    let main = run(&project, "pipeline.toml", &["--param", "epochs=2"]);
    assert!(main.step("data/split")["outputs"]["train"].is_string());
    let tune = run(&project, "tune.toml", &["--param", "epochs=2"]);
    assert_eq!(steps_with(&tune, "cached"), ["data/split", "data/validate"]);
    assert_eq!(steps_with(&tune, "ran"), ["evaluate_fast", "evaluate_slow", "fast", "slow"]);

    // A different seed bound into the sub-pipeline changes only the split and what follows.
    let reseeded = run(&project, "tune.toml", &["--param", "epochs=2", "--param", "seed=8"]);
    assert_eq!(steps_with(&reseeded, "cached"), ["data/validate"]);
}

#[test]
fn parameters_are_typed_by_their_defaults() {
    let project = digits();
    for (param, message) in [
        ("epochs=1.5", "`1.5` is not an integer"),
        ("learning_rate=fast", "`fast` is not a float"),
        ("seed=[1]", "`[1]` is not an integer"),
    ] {
        let output = project.weir(&["run", "pipeline.toml", "--param", param]);
        assert_eq!(output.status.code(), Some(2), "{param}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(message), "{param}: {stderr}");
    }
}

#[test]
fn pipeline_outputs_are_reported_and_exported() {
    let project = digits();
    let summary = run(&project, "pipeline.toml", &["--param", "epochs=2"]);
    let model = summary["outputs"]["model"].as_str().unwrap();
    assert_eq!(model, output_digest(&summary, "train", "model"));
    let exported = std::fs::read(project.path().join("results/model.bin")).unwrap();
    assert_eq!(exported, project.cat_bytes(model));
    let confusion = std::fs::read_to_string(project.path().join("results/confusion.csv")).unwrap();
    assert!(confusion.starts_with("true\\predicted,0,1"), "{confusion}");

    // A new run replaces the exports.
    let retrained = run(&project, "pipeline.toml", &["--param", "epochs=3"]);
    let model = retrained["outputs"]["model"].as_str().unwrap();
    assert_eq!(std::fs::read(project.path().join("results/model.bin")).unwrap(), project.cat_bytes(model));
    assert_eq!(std::fs::read_dir(project.path().join("results/predictions")).unwrap().count(), 3);
}
