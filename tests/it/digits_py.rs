//! The Python digits example (`examples/digits-py`) end to end: every step
//! built with componentize-py, training through the `gemm` bridge, the same
//! split as the Rust example byte for byte (so the two share the `prep`
//! module and the cache), and a step re-run only when its own script changed.
//! Skipped, saying so, without componentize-py.

use std::path::Path;

use serde_json::Value;
use weir_tests::{Project, copy_tree, digits_steps, output_digest, steps_with};

use crate::python::componentize_py;

/// A project holding `digits-py/` (the Python example) and `digits/` (the
/// Rust example's data and prep module, its two steps built), side by side
/// as in the repository.
fn both_examples() -> Project {
    let project = Project::new();
    copy_tree("examples/digits-py", &project.path().join("digits-py"));
    for what in ["data", "prep.toml"] {
        let to = project.path().join("digits").join(what);
        let from = Path::new("examples/digits").join(what);
        if what == "data" {
            copy_tree(from.to_str().unwrap(), &to);
        } else {
            std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(from), to).unwrap();
        }
    }
    std::fs::create_dir_all(project.path().join("digits/build")).unwrap();
    for step in ["validate", "prep"] {
        let built = digits_steps().join(format!("{step}.wasm"));
        std::fs::copy(built, project.path().join(format!("digits/build/{step}.wasm"))).unwrap();
    }
    // Results of a run in the repository are not part of the example.
    let _ = std::fs::remove_dir_all(project.path().join("digits-py/results"));
    project
}

fn run(project: &Project, manifest: &str) -> Value {
    let (code, summary) = project.weir_json(&["run", manifest, "--json"]);
    assert_eq!(code, 0, "{summary}");
    summary
}

fn step<'a>(summary: &'a Value, name: &str) -> &'a Value {
    summary["steps"].as_array().unwrap().iter().find(|step| step["step"] == name).unwrap()
}

#[test]
fn the_python_digits_example_learns_makes_the_rust_split_and_reruns_only_what_changed() {
    if !componentize_py() {
        return;
    }
    let project = both_examples();
    let first = run(&project, "digits-py/pipeline.toml");
    assert_eq!(steps_with(&first, "ran"), ["data/split", "data/validate", "evaluate", "score", "train"]);
    let accuracy = step(&first, "evaluate")["metrics"]["accuracy"].as_f64().unwrap();
    assert!(accuracy >= 0.95, "test accuracy {accuracy} is below 0.95");
    let split = &step(&first, "data/split")["metrics"];
    assert_eq!(split["train_rows"].as_f64().unwrap() + split["test_rows"].as_f64().unwrap(), 1497.0);

    let truth = std::fs::read_to_string(project.path().join("digits/data/score-labels.txt")).unwrap();
    let mut predicted = String::new();
    for batch in ["batch-01.csv", "batch-02.csv", "batch-03.csv"] {
        let exported = project.path().join("digits-py/results/predictions").join(batch);
        predicted.push_str(&std::fs::read_to_string(exported).unwrap());
    }
    assert_eq!(predicted.lines().count(), 300);
    let right = predicted.lines().zip(truth.lines()).filter(|(p, t)| p == t).count();
    assert!(right >= 270, "only {right} of 300 scoring images right");

    // The Rust prep module makes the very same files, so the Python
    // pipeline over it reuses every step: the two share the module and the cache.
    let rust_prep = run(&project, "digits/prep.toml");
    for output in ["train", "test"] {
        assert_eq!(
            output_digest(&rust_prep, "split", output),
            output_digest(&first, "data/split", output),
            "the `{output}` split differs between the Rust and the Python prep"
        );
    }
    let manifest = std::fs::read_to_string(project.path().join("digits-py/pipeline.toml")).unwrap();
    let over_rust = manifest.replace(r#"pipeline = "prep.toml""#, r#"pipeline = "../digits/prep.toml""#);
    assert_ne!(over_rust, manifest, "the example names its prep module");
    project.write("digits-py/over-rust-prep.toml", over_rust);
    let shared = run(&project, "digits-py/over-rust-prep.toml");
    assert_eq!(steps_with(&shared, "cached"), ["data/split", "data/validate", "evaluate", "score", "train"]);

    // Each script is bundled with what it imports, not with the other steps'
    // scripts beside it: an edit to train.py re-runs training only (the
    // same model then reuses evaluate and score), one to the shared module all.
    let train = project.path().join("digits-py/steps/train.py");
    let source = std::fs::read_to_string(&train).unwrap();
    std::fs::write(&train, format!("{source}\n# an edit that changes nothing\n")).unwrap();
    let retrained = run(&project, "digits-py/pipeline.toml");
    assert_eq!(steps_with(&retrained, "ran"), ["train"]);
    assert_eq!(steps_with(&retrained, "cached"), ["data/split", "data/validate", "evaluate", "score"]);
}
