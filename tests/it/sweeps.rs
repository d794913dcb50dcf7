//! `weir sweep`, `weir runs --sweep` and `weir compare`: many runs of one
//! pipeline with different parameters, sharing what they have in common,
//! then put side by side.

use serde_json::Value;
use weir_tests::{Project, RunDocument, printed};

/// A pipeline whose `prep` does not depend on the swept parameters and
/// whose `train` reports `loss` per epoch and `accuracy` from `lr` and `epochs`.
pub(crate) fn tuning(project: &Project) {
    project.write("data.txt", "training data\n");
    project.manifest(
        r#"
name = "tune"

[params]
lr = 0.1
epochs = 2
note = "baseline"

[inputs]
text = "data.txt"

[steps.prep]
module = "tool-p1.wasm"
args = ["copy", "text", "copied"]
inputs = { text = "inputs.text" }
outputs = { copied = "file" }

[steps.train]
module = "sdk-tool.wasm"
args = ["score"]
inputs = { data = "prep.copied" }
params = { lr = "${params.lr}", epochs = "${params.epochs}" }
outputs = { result = "file" }

[outputs]
trained = { from = "train.result", export = "results/trained.txt" }
"#,
    );
}

/// Sweeps `lr` × `epochs` over two values each: the sweep's id and run ids.
pub(crate) fn sweep_grid(project: &Project) -> (String, Vec<String>) {
    let args = ["sweep", "pipeline.toml", "--param", "lr=0.1,0.5", "--param", "epochs=2,4", "--json"];
    let (code, swept) = project.weir_json(&args);
    assert_eq!(code, 0, "{swept}");
    let runs: Vec<String> =
        swept["runs"].as_array().unwrap().iter().map(|run| run["run_id"].as_str().unwrap().to_owned()).collect();
    (swept["sweep"].as_str().unwrap().to_owned(), runs)
}

#[test]
fn a_grid_sweep_runs_every_combination_and_shares_the_common_steps() {
    let project = Project::new();
    tuning(&project);
    let (sweep, runs) = sweep_grid(&project);
    assert_eq!(runs.len(), 4);
    assert!(!project.path().join("results").exists(), "a sweep's runs would overwrite each other's exports");
    let documents: Vec<Value> = runs.iter().map(|run| project.show_json(run)).collect();
    let prep: Vec<&str> = documents.iter().map(|doc| doc.step("prep")["status"].as_str().unwrap()).collect();
    assert_eq!(prep.iter().filter(|status| **status == "ran").count(), 1, "prep executes once: {prep:?}");
    assert_eq!(prep.iter().filter(|status| **status == "cached").count(), 3, "{prep:?}");
    for doc in &documents {
        assert_eq!(doc.step("train")["status"], "ran");
        assert_eq!(doc["labels"]["weir.sweep"], sweep.as_str());
    }
    let params: Vec<(f64, i64)> = documents
        .iter()
        .map(|doc| (doc["params"]["lr"].as_f64().unwrap(), doc["params"]["epochs"].as_i64().unwrap()))
        .collect();
    assert_eq!(params, [(0.1, 2), (0.1, 4), (0.5, 2), (0.5, 4)]);

    // Listed by sweep, best first.
    let (code, rows) = project.weir_json(&["runs", "--sweep", &sweep, "--sort", "accuracy", "--json"]);
    assert_eq!(code, 0);
    let ranked: Vec<(f64, i64)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|row| (row["params"]["lr"].as_f64().unwrap(), row["params"]["epochs"].as_i64().unwrap()))
        .collect();
    assert_eq!(ranked, [(0.5, 4), (0.5, 2), (0.1, 4), (0.1, 2)], "{rows}");
    let (_, by_loss) = project.weir_json(&["runs", "--sweep", &sweep, "--sort", "loss:asc", "--json"]);
    assert_eq!(by_loss, rows, "lowest loss first is highest accuracy first");

    let table = project.weir(&["runs", "--sweep", &sweep, "--sort", "accuracy", "--metric", "accuracy"]);
    let table = printed(&table);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 5, "{table}");
    for column in ["run", "status", "epochs", "lr", "train.accuracy"] {
        assert!(lines[0].contains(column), "{table}");
    }
    assert!(!lines[0].contains("note"), "an unswept parameter is no column: {table}");
    assert!(!lines[0].contains("loss"), "only the chosen metric: {table}");
    assert!(lines[1].contains("0.9375"), "(1 - 0.5⁴) first: {table}");

    // The same sweep again executes nothing.
    let (_, again) = sweep_grid(&project);
    for run in &again {
        let doc = project.show_json(run);
        assert_eq!(doc["cached"], 2, "{doc}");
    }
}

#[test]
fn random_draws_stay_within_their_ranges_and_repeat_with_the_seed() {
    let project = Project::new();
    tuning(&project);
    let draw = |seed: &str| {
        let args = [
            "sweep",
            "pipeline.toml",
            "--random",
            "3",
            "--seed",
            seed,
            "--param",
            "lr=log:0.05..0.5",
            "--param",
            "epochs=1..3",
            "--json",
        ];
        let (code, swept) = project.weir_json(&args);
        assert_eq!(code, 0, "{swept}");
        swept["runs"].as_array().unwrap().iter().map(|run| run["params"].clone()).collect::<Vec<Value>>()
    };
    let first = draw("7");
    assert_eq!(first.len(), 3);
    for params in &first {
        let lr: f64 = params["lr"].as_str().unwrap().parse().unwrap();
        let epochs: i64 = params["epochs"].as_str().unwrap().parse().unwrap();
        assert!((0.05..=0.5).contains(&lr) && (1..=3).contains(&epochs), "{params}");
    }
    assert_eq!(draw("7"), first, "the same seed draws the same runs");
}

#[test]
fn a_bad_sweep_is_refused_before_any_run() {
    let project = Project::new();
    tuning(&project);
    for (args, expected) in [
        (vec!["--param", "rate=0.1,0.2"], "the pipeline has no parameter `rate` (it has: epochs, lr, note)"),
        (vec!["--param", "epochs=2,many"], "`many` is not an integer"),
        (vec!["--param", "lr=0..1"], "with --random N"),
        (vec!["--param", "note=1..2", "--random", "2"], "needs a numeric parameter"),
    ] {
        let mut all = vec!["sweep", "pipeline.toml"];
        all.extend(args);
        let output = project.weir(&all);
        assert_eq!(output.status.code(), Some(2), "{all:?}: {}", printed(&output));
        assert!(printed(&output).contains(expected), "{all:?}: expected {expected} in {}", printed(&output));
    }
    let (_, runs) = project.weir_json(&["runs", "--json"]);
    assert_eq!(runs, serde_json::json!([]), "nothing ran");
}

#[test]
fn compare_puts_runs_side_by_side_and_says_why_steps_differ() {
    let project = Project::new();
    tuning(&project);
    let (_, runs) = sweep_grid(&project);
    let (first, last) = (&runs[0], &runs[3]);
    let (code, comparison) = project.weir_json(&["compare", first, last, "--json"]);
    assert_eq!(code, 0, "{comparison}");
    assert_eq!(comparison["params"], serde_json::json!({"lr": [0.1, 0.5], "epochs": [2, 4]}));
    let accuracy = &comparison["metrics"]["train.accuracy"];
    assert_eq!(accuracy[1]["last"], 0.9375);
    let loss = &comparison["metrics"]["train.loss"];
    assert_eq!(loss[0]["points"], 2, "every value of the series counts");
    assert_eq!(loss[1]["best"], 0.0625, "a loss is best low");
    let steps = comparison["steps"].as_array().unwrap();
    assert_eq!(steps[0]["step"], "prep");
    assert_eq!(steps[0]["same_as_first"], serde_json::json!([true, true]), "prep's result is shared");
    assert_eq!(steps[1]["same_as_first"], serde_json::json!([true, false]));
    let why = steps[1]["changes"][1].as_array().unwrap();
    assert!(why.contains(&serde_json::json!("param lr: 0.1 → 0.5")), "{why:?}");
    assert!(why.contains(&serde_json::json!("param epochs: 2 → 4")), "{why:?}");

    let output = project.weir(&["compare", first, &runs[1], last, "--html", "compare.html"]);
    assert!(output.status.success(), "{}", printed(&output));
    let shown = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(shown.starts_with("3 runs of `tune`"), "{shown}");
    assert!(shown.contains("0.0625"), "{shown}");
    assert!(shown.contains("same result in every run"), "{shown}");
    assert!(shown.contains("param lr: 0.1 → 0.5"), "{shown}");
    let page = std::fs::read_to_string(project.path().join("compare.html")).unwrap();
    let loss_chart = page.split("<figcaption>train.loss</figcaption>").nth(1).expect("a chart of the loss");
    let loss_chart = loss_chart.split("</svg>").next().unwrap();
    assert_eq!(loss_chart.matches("<polyline").count(), 3, "a curve per run");
    assert!(loss_chart.contains(last.as_str()), "with a legend naming the runs");

    let unknown = project.weir(&["compare", first, "nosuchrun"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(printed(&unknown).contains("nosuchrun"), "{}", printed(&unknown));
}
