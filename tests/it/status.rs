//! `weir status` and `weir run --dry-run`: what would run and why, with
//! nothing executed or written.

use serde_json::Value;
use weir_tests::{Project, files_under, write_settled};

use crate::caching::chain;

/// Each step's status and its reasons joined, by name.
fn lines(status: &Value) -> Vec<(String, String, String)> {
    status["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| {
            let reasons: Vec<&str> = step["reasons"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
            (step["step"].as_str().unwrap().to_owned(), step["status"].as_str().unwrap().to_owned(), reasons.join("; "))
        })
        .collect()
}

fn runs_recorded(project: &Project) -> usize {
    let output = project.weir(&["runs", "--json"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice::<Value>(&output.stdout).unwrap().as_array().unwrap().len()
}

#[test]
fn status_says_what_would_run_and_why_and_executes_nothing() {
    let project = Project::new();
    chain(&project);

    let (code, before) = project.weir_json(&["status", "pipeline.toml", "--json"]);
    assert_eq!(code, 1, "something would run: {before}");
    assert_eq!(before["up_to_date"], false);
    let found = lines(&before);
    assert_eq!(found.iter().map(|(step, _, _)| step.as_str()).collect::<Vec<_>>(), ["prep", "shout", "upper", "join"]);
    assert!(found.iter().all(|(_, status, _)| status == "would_run"), "{found:?}");
    assert!(found[0].2.contains("first execution"), "{found:?}");
    assert!(found[2].2.contains("after `prep`, which would run"), "{found:?}");
    assert_eq!(runs_recorded(&project), 0, "a status is not a run");
    assert!(files_under(&project.workspace().join("objects")).is_empty(), "nothing stored, not even the input");

    let (code, run) = project.run_json(&[]);
    assert_eq!(code, 0, "{run}");
    let run_id = run["id"].as_str().unwrap();
    let output = project.weir(&["status", "pipeline.toml"]);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.starts_with("chain: up to date (4 steps)\n"), "{text}");
    assert!(text.contains(&format!("up to date  reuses the result of run {run_id}")), "{text}");

    // A changed parameter: the step that uses it, and the one after it.
    let (code, changed) = project.weir_json(&["status", "pipeline.toml", "--param", "word=bye", "--json"]);
    assert_eq!(code, 1);
    let found = lines(&changed);
    assert_eq!(found[0].1, "up_to_date", "{found:?}");
    assert_eq!(found[1].1, "up_to_date", "{found:?}");
    assert_eq!(found[2].1, "would_run");
    assert!(found[2].2.contains("param word: hello → bye"), "{found:?}");
    assert_eq!(changed["steps"][2]["compared_with"], run_id);
    assert_eq!(found[3].1, "would_run");
    assert!(found[3].2.contains("after `upper`"), "{found:?}");

    // `run --dry-run` is the same, and records nothing either.
    let (code, dry) = project.weir_json(&["run", "pipeline.toml", "--dry-run", "--param", "word=bye", "--json"]);
    assert_eq!((code, lines(&dry)), (1, found));
    assert_eq!(runs_recorded(&project), 1);

    // A changed input file: from the first step on.
    write_settled(&project.path().join("data/text.txt"), "goodbye\n");
    let (code, edited) = project.weir_json(&["status", "pipeline.toml", "--json"]);
    assert_eq!(code, 1);
    let found = lines(&edited);
    assert!(found[0].2.contains("input text: blake3:"), "{found:?}");
    assert_eq!(found[1].1, "up_to_date", "shout reads no input: {found:?}");
}

#[test]
fn a_pipeline_that_cannot_run_has_status_2_and_says_why() {
    let project = Project::new();
    chain(&project);
    let (code, refused) = project.weir_json(&["status", "pipeline.toml", "--param", "nope=1", "--json"]);
    assert_eq!(code, 2, "{refused}");
    assert!(refused.to_string().contains("nope"), "{refused}");
    let output = project.weir(&["run", "pipeline.toml", "--dry-run", "--no-cache"]);
    assert_eq!(output.status.code(), Some(2), "--dry-run executes nothing, so --no-cache contradicts it");
}

#[test]
fn a_target_runs_only_what_it_needs_and_the_rest_is_not_requested() {
    let project = Project::new();
    chain(&project);
    let (code, targeted) = project.run_json(&["--target", "upper"]);
    assert_eq!(code, 0, "{targeted}");
    weir_tests::assert_run_document(&targeted);
    assert_eq!(targeted["status"], "succeeded");
    assert_eq!(weir_tests::steps_with(&targeted, "ran"), ["prep", "upper"]);
    assert_eq!(weir_tests::steps_with(&targeted, "not_requested"), ["join", "shout"]);

    // What is not requested is what a status of the whole pipeline says would run.
    let (code, after) = project.weir_json(&["status", "pipeline.toml", "--json"]);
    assert_eq!(code, 1);
    let would_run: Vec<String> =
        lines(&after).into_iter().filter(|(_, status, _)| status == "would_run").map(|(step, _, _)| step).collect();
    assert_eq!(would_run, ["shout", "join"]);
    let (code, _) = project.weir_json(&["status", "pipeline.toml", "--target", "upper", "--json"]);
    assert_eq!(code, 0, "what upper needs is up to date");

    // The full run then executes only the rest.
    let (code, full) = project.run_json(&[]);
    assert_eq!(code, 0, "{full}");
    assert_eq!(weir_tests::steps_with(&full, "cached"), ["prep", "upper"]);
    assert_eq!(weir_tests::steps_with(&full, "ran"), ["join", "shout"]);

    let output = project.weir(&["explain", targeted["id"].as_str().unwrap(), "join"]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("not requested"), "{text}{}", String::from_utf8_lossy(&output.stderr));

    let output = project.weir(&["run", "pipeline.toml", "--target", "nope"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--target") && stderr.contains("nope") && stderr.contains("upper"), "{stderr}");
}
