//! The run history: what is recorded across runs, and the commands that
//! read it (`runs`, `show`, `logs`, `metrics`, `explain`, `lineage`,
//! `graph`, `report`).

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use weir_tests::{Project, RunDocument, output_digest, weir_bin};

fn json(project: &Project, args: &[&str]) -> Value {
    let output = project.weir(args);
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|err| panic!("{args:?}: {err}"))
}

fn text(project: &Project, args: &[&str]) -> String {
    let output = project.weir(args);
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// in -> first -> second, plus `train` (metrics) and `always` (reuse = false).
fn chain(project: &Project) {
    project.write("data/text.txt", "hello\n");
    project.manifest(
        r#"
name = "chain"
[params]
word = "a"
[inputs]
text = "data/text.txt"
[steps.first]
module = "tool-p1.wasm"
args = ["upper", "${params.word}"]
inputs = { text = "inputs.text" }
outputs = { result = "file" }
[steps.second]
module = "tool-p2.wasm"
args = ["upper", "2"]
inputs = { text = "first.result" }
outputs = { result = "file" }
[steps.train]
module = "sdk-tool.wasm"
args = ["metrics"]
outputs = { result = "file" }
[steps.always]
module = "tool-p1.wasm"
args = ["args", "x"]
outputs = { result = "file" }
reuse = false
"#,
    );
}

#[test]
fn runs_show_logs_and_metrics_read_back_what_was_recorded() {
    let project = Project::new();
    chain(&project);
    let (_, first) = project.run_json(&[]);
    let (_, second) = project.run_json(&["--param", "word=b"]);
    let runs = json(&project, &["runs", "--json"]);
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["id"], second["id"], "newest first");
    assert_eq!(runs[0]["status"], "succeeded");
    assert_eq!((runs[0]["ran"].as_u64(), runs[0]["cached"].as_u64()), (Some(3), Some(1)));
    assert_eq!((runs[1]["ran"].as_u64(), runs[1]["cached"].as_u64()), (Some(4), Some(0)));
    assert_eq!(json(&project, &["runs", "--json", "--limit", "1"]).as_array().unwrap().len(), 1);
    assert_eq!(json(&project, &["runs", "--json", "--pipeline", "other"]).as_array().unwrap().len(), 0);

    let show = json(&project, &["show", "last", "--json"]);
    assert_eq!(show["id"], second["id"]);
    assert_eq!(show["params"]["word"], "b");
    let train = show.step("train");
    assert_eq!(train["status"], "cached");
    assert_eq!(train["reused_from"], first["id"]);
    assert_eq!(train["metrics"]["loss"], 0.25);
    let prefix = &first["id"].as_str().unwrap()[..20];
    assert_eq!(json(&project, &["show", prefix, "--json"])["id"], first["id"]);

    let metrics = json(&project, &["metrics", "--json", "--metric", "loss"]);
    let rows = metrics.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["metrics"], serde_json::json!({"train.loss": 0.25}));
    assert_eq!(rows[0]["params"]["word"], "b");
    assert!(text(&project, &["metrics"]).contains("train.accuracy"));

    let logs = json(&project, &["logs", first["id"].as_str().unwrap(), "first", "--json"]);
    assert_eq!(logs["stderr"], "");
}

#[test]
fn logs_keep_a_failed_steps_stderr() {
    let project = Project::new();
    project.manifest(
        "name = \"f\"\n[steps.bad]\nmodule = \"tool-p1.wasm\"\nargs = [\"fail\", \"4\"]\noutputs = { r = \"file\" }\n",
    );
    assert_eq!(project.run_json(&[]).0, 1);
    let logs = text(&project, &["logs", "last", "bad"]);
    assert!(logs.contains("something went wrong: failing with status 4"), "{logs}");
    let show = json(&project, &["show", "last", "--json"]);
    assert!(show["steps"][0]["error"].as_str().unwrap().contains("exited with status 4"));
    assert_eq!(show["status"], "failed");
}

fn explain(project: &Project, step: &str) -> Value {
    json(project, &["explain", "last", step, "--json"])
}

fn reasons(explanation: &Value) -> Vec<String> {
    explanation["reasons"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_owned()).collect()
}

#[test]
fn explain_names_every_reason() {
    let project = Project::new();
    chain(&project);
    project.run_json(&[]);
    assert_eq!(reasons(&explain(&project, "first")), ["first execution: no earlier run of `chain` executed this step"]);

    project.run_json(&[]);
    let cached = reasons(&explain(&project, "first"));
    assert!(cached[0].starts_with("reused: its cache key blake3:"), "{cached:?}");
    assert_eq!(reasons(&explain(&project, "always")), ["forced by reuse = false"]);

    project.run_json(&["--param", "word=z"]);
    assert_eq!(
        reasons(&explain(&project, "first")),
        [
            "param word: a → z (in the arguments)",
            "arguments changed: [\"tool-p1.wasm\",\"upper\",\"a\"] → [\"tool-p1.wasm\",\"upper\",\"z\"]"
        ]
    );

    project.write("data/text.txt", "changed\n");
    project.run_json(&["--param", "word=z"]);
    let input = reasons(&explain(&project, "first"));
    assert_eq!(input.len(), 1, "{input:?}");
    assert!(input[0].starts_with("input text: blake3:") && input[0].contains(" → blake3:"), "{input:?}");

    project.run_json(&["--param", "word=z", "--rerun", "second"]);
    assert_eq!(reasons(&explain(&project, "second"))[0], "forced by --rerun second");
    project.run_json(&["--param", "word=z", "--no-cache"]);
    assert_eq!(reasons(&explain(&project, "train"))[0], "forced by --no-cache");

    let manifest = std::fs::read_to_string(project.path().join("pipeline.toml")).unwrap();
    project.manifest(
        &manifest.replace("[steps.first]\nmodule = \"tool-p1.wasm\"", "[steps.first]\nmodule = \"tool-p2.wasm\""),
    );
    project.run_json(&["--param", "word=z"]);
    let module = reasons(&explain(&project, "first"));
    assert!(module.iter().any(|r| r.starts_with("module changed: blake3:")), "{module:?}");

    let param = Project::new();
    param.manifest("name = \"p\"\n[params]\nrate = 0.1\n[steps.s]\nmodule = \"sdk-tool.wasm\"\nargs = [\"metrics\"]\nparams = { learning_rate = \"${params.rate}\" }\noutputs = { result = \"file\" }\n");
    param.run_json(&[]);
    param.run_json(&["--param", "rate=0.05"]);
    assert_eq!(reasons(&explain(&param, "s")), ["param learning_rate: 0.1 → 0.05"]);
}

#[test]
fn explain_says_a_step_was_skipped() {
    let project = Project::new();
    project.manifest(
        "name = \"s\"\n[steps.bad]\nmodule = \"tool-p1.wasm\"\nargs = [\"fail\", \"1\"]\noutputs = { r = \"file\" }\n\
         [steps.after]\nmodule = \"tool-p1.wasm\"\nargs = [\"concat\"]\ninputs = { x = \"bad.r\" }\noutputs = { result = \"file\" }\n",
    );
    project.run_json(&[]);
    assert_eq!(reasons(&explain(&project, "after")), ["skipped: a step it depends on failed"]);
}

#[test]
fn lineage_follows_a_chain_back_to_the_input_file() {
    let project = Project::new();
    chain(&project);
    let (_, summary) = project.run_json(&[]);
    let last = output_digest(&summary, "second", "result");
    let chain = json(&project, &["lineage", last, "--json"]);
    let links: Vec<(Value, Value)> =
        chain.as_array().unwrap().iter().map(|node| (node["step"].clone(), node["output"].clone())).collect();
    assert_eq!(
        links,
        [
            (Value::from("second"), Value::from("result")),
            (Value::from("first"), Value::from("result")),
            (Value::Null, Value::from("text")),
        ]
    );
    let input = &chain[2];
    assert!(input["path"].as_str().unwrap().ends_with("data/text.txt"));
    let unknown = project.weir(&["lineage", &format!("blake3:{}", "ab".repeat(32))]);
    assert_eq!(unknown.status.code(), Some(2));
}

#[test]
fn a_killed_run_is_marked_and_the_next_run_works() {
    let project = Project::new();
    project.manifest("name = \"k\"\n[steps.slow]\nmodule = \"tool-p1.wasm\"\nargs = [\"nap\", \"60000\"]\noutputs = { result = \"file\" }\n");
    let mut child = Command::new(weir_bin())
        .args(["run", "pipeline.toml", "--workspace"])
        .arg(project.workspace())
        .current_dir(project.path())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !project.workspace().join("history.db").exists() || text(&project, &["runs"]).lines().count() < 2 {
        assert!(Instant::now() < deadline, "the run never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    project.manifest("name = \"k\"\n[steps.slow]\nmodule = \"tool-p1.wasm\"\nargs = [\"nap\", \"1\"]\noutputs = { result = \"file\" }\n");
    assert_eq!(project.run_json(&[]).0, 0);
    let runs = json(&project, &["runs", "--json"]);
    assert_eq!(runs[0]["status"], "succeeded");
    assert_eq!(runs[1]["status"], "killed");
}

#[test]
fn a_newer_schema_is_refused_with_a_clear_error() {
    let project = Project::new();
    chain(&project);
    project.run_json(&[]);
    let db = rusqlite::Connection::open(project.workspace().join("history.db")).unwrap();
    db.execute_batch("PRAGMA user_version = 999").unwrap();
    drop(db);
    let output = project.weir(&["runs"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("schema version 999, newer than this weir understands"), "{stderr}");
}

#[test]
fn run_ids_resolve_by_prefix_and_last_with_clear_errors() {
    let project = Project::new();
    let output = project.weir(&["show", "last"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no run history"));
    chain(&project);
    project.run_json(&[]);
    project.run_json(&[]);
    let ambiguous = project.weir(&["show", "2"]);
    assert!(String::from_utf8_lossy(&ambiguous.stderr).contains("matches several runs"));
    let missing = project.weir(&["show", "nope"]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no run `nope`"));
}

#[test]
fn the_graph_in_dot_is_read_back_by_graphviz() {
    let project = Project::new();
    chain(&project);
    project.run_json(&[]);
    let dot = text(&project, &["graph", "pipeline.toml", "--run", "last"]);
    let mut child = Command::new("dot")
        .arg("-Tplain")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("graphviz `dot` is needed for this test: apt-get install graphviz");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(dot.as_bytes()).unwrap();
    let plain = String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap();
    let nodes: Vec<&str> =
        plain.lines().filter(|l| l.starts_with("node ")).map(|l| l.split(' ').nth(1).unwrap()).collect();
    assert_eq!(nodes.len(), 5, "{plain}");
    for expected in ["in_text", "s_first", "s_second", "s_train", "s_always"] {
        assert!(nodes.contains(&expected), "{expected} missing in {nodes:?}");
    }
    let edges: Vec<(&str, &str)> = plain
        .lines()
        .filter(|l| l.starts_with("edge "))
        .map(|l| {
            let parts: Vec<&str> = l.split(' ').collect();
            (parts[1], parts[2])
        })
        .collect();
    assert_eq!(edges, [("in_text", "s_first"), ("s_first", "s_second")]);
    assert!(plain.contains("\"first (ran)\""), "{plain}");
    let mermaid = text(&project, &["graph", "pipeline.toml", "--format", "mermaid"]);
    assert!(
        mermaid.starts_with("flowchart LR") && mermaid.contains("s_first -->|result → text| s_second"),
        "{mermaid}"
    );
    let svg = text(&project, &["graph", "pipeline.toml", "--format", "svg"]);
    assert!(svg.starts_with("<svg") && svg.matches("<rect").count() == 5, "{svg}");
}

#[test]
fn the_report_is_one_self_contained_page() {
    let project = Project::new();
    chain(&project);
    project.run_json(&[]);
    let page = project.path().join("report.html");
    let output = project.weir(&["report", "last", "-o", page.to_str().unwrap()]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let html = std::fs::read_to_string(page).unwrap();
    assert!(html.starts_with("<!doctype html>"));
    assert!(!html.contains("http://") || html.matches("http://").all(|_| html.contains("http://www.w3.org/2000/svg")));
    assert!(!html.contains("<script src") && !html.contains("<link"), "no external resources");
    assert!(html.contains("<figcaption>train.loss</figcaption>"), "a chart per metric");
    assert!(html.contains("<polyline"), "the loss series is drawn as a line");
    assert_eq!(html.matches("<tr><td>").count(), 4, "a row per step");
}

#[test]
fn lineage_reaches_the_input_file_through_a_step_that_passes_it_on() {
    let project = Project::new();
    project.write("data/raw.csv", "a,b\n1,2\n");
    project.manifest(
        "name = \"pass\"\n[inputs]\nraw = \"data/raw.csv\"\n[steps.validate]\nmodule = \"tool-p1.wasm\"\n\
         args = [\"copy\", \"data\", \"result\"]\ninputs = { data = \"inputs.raw\" }\noutputs = { result = \"file\" }\n",
    );
    let (_, summary) = project.run_json(&[]);
    let digest = output_digest(&summary, "validate", "result");
    let chain = json(&project, &["lineage", digest, "--json"]);
    let nodes = chain.as_array().unwrap();
    assert_eq!(nodes.len(), 2, "{chain}");
    assert_eq!(nodes[0]["step"], "validate");
    assert_eq!(nodes[1]["step"], Value::Null);
    assert!(nodes[1]["path"].as_str().unwrap().ends_with("data/raw.csv"), "{chain}");
    let text = text(&project, &["lineage", digest]);
    assert!(text.contains("(passed through unchanged)") && text.contains("data/raw.csv"), "{text}");
}

#[test]
fn metrics_read_as_a_table_and_reused_steps_keep_their_curves() {
    let project = Project::new();
    chain(&project);
    let (_, first) = project.run_json(&[]);
    project.run_json(&["--param", "word=z"]);
    let table = text(&project, &["metrics"]);
    let lines: Vec<&str> = table.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["run", "status", "word", "train.accuracy", "train.loss"], "{table}");
    assert!(lines[1].split_whitespace().collect::<Vec<_>>().ends_with(&["z", "0.875", "0.25"]), "{table}");
    assert!(!table.contains("0.250000") && !table.contains('{'), "numbers formatted, params not JSON: {table}");
    let chosen = text(&project, &["metrics", "--metric", "loss"]);
    assert_eq!(
        chosen.lines().next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["run", "status", "word", "train.loss"]
    );

    // `train` was reused by the second run; its curve is the first run's.
    let history = weir::History::open(&project.workspace()).unwrap();
    let last = history.resolve_run(weir::DEFAULT_TENANT, "last").unwrap();
    assert_ne!(last, first["id"].as_str().unwrap());
    let loss = &history.metric_series(&last).unwrap()["train.loss"];
    assert_eq!(loss.values, [1.0, 0.5, 0.25]);
    assert_eq!(loss.at, [0, 1, 2], "values reported without a position are placed in report order");

    project.write("other.toml", "name = \"other\"\n[steps.x]\nmodule = \"tool-p1.wasm\"\nargs = [\"nothing\"]\n");
    let output = project.weir(&["graph", "other.toml", "--run", "last"]);
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is of pipeline `chain`, not `other`: 0 of its steps are in this graph"), "{stderr}");
}

#[test]
fn a_run_of_more_steps_than_one_written_batch_records_every_step_in_order() {
    // Past 128 steps the records are written on a thread of their own while
    // later steps are decided: none may be lost, duplicated or reordered.
    const STEPS: usize = 300;
    let project = Project::new();
    project.write("seed.txt", "s");
    let mut manifest = String::from("name = \"long\"\n[inputs]\nseed = \"seed.txt\"\n");
    for i in 0..STEPS {
        let input = if i == 0 { "inputs.seed".to_owned() } else { format!("s{}.result", i - 1) };
        manifest.push_str(&format!(
            "[steps.s{i}]\nmodule = \"tool-p1.wasm\"\nargs = [\"upper\", \"{i}\"]\ninputs = {{ text = \"{input}\" }}\noutputs = {{ result = \"file\" }}\n"
        ));
    }
    project.manifest(&manifest);
    let (code, first) = project.run_json(&[]);
    assert_eq!(code, 0, "{first}");
    let (code, second) = project.run_json(&[]);
    assert_eq!(code, 0, "{second}");

    let names = |document: &Value| -> Vec<String> {
        document["steps"].as_array().unwrap().iter().map(|step| step["step"].as_str().unwrap().to_owned()).collect()
    };
    let shown = json(&project, &["show", "last", "--json"]);
    assert_eq!(shown["id"], second["id"]);
    assert_eq!(names(&shown), names(&second), "the history holds the steps the run reported, in its order");
    assert_eq!(names(&second).len(), STEPS);
    for step in shown["steps"].as_array().unwrap() {
        assert_eq!(step["status"], "cached", "{step}");
        assert_eq!(step["reused_from"], first["id"], "{step}");
        assert!(step["warnings"].as_array().is_none_or(Vec::is_empty), "{step}");
    }
    let runs = json(&project, &["runs", "--json"]);
    assert_eq!((runs[0]["ran"].as_u64(), runs[0]["cached"].as_u64()), (Some(0), Some(STEPS as u64)));
    assert_eq!((runs[1]["ran"].as_u64(), runs[1]["cached"].as_u64()), (Some(STEPS as u64), Some(0)));
}
