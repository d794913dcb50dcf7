//! The step contract: what a guest sees under /in and /out, its parameters
//! and arguments, for preview-1 modules and preview-2 components alike.

use serde_json::{Value, json};
use weir_tests::{Project, Wasi, output_digest};

fn params_and_args(wasi: Wasi) {
    let project = Project::new();
    project.manifest(&format!(
        r#"
name = "contract"
[params]
word = "hello"
n = 3
rate = 0.5
tags = ["a", "b"]

[steps.showparams]
module = "{tool}"
args = ["params"]
params = {{ fixed = 7, word = "${{params.word}}", rate = "${{params.rate}}", tags = "${{params.tags}}", label = "w=${{params.word}} n=${{params.n}}", nested = {{ n = "${{params.n}}" }} }}
outputs = {{ result = "file" }}

[steps.args]
module = "{tool}"
args = ["args", "${{params.word}}", "n=${{params.n}}", "${{params.rate}}"]
outputs = {{ result = "file" }}
"#,
        tool = wasi.tool_name()
    ));
    let (code, summary) = project.run_json(&["--param", "n=4"]);
    assert_eq!(code, 0, "{summary}");
    let params: Value = serde_json::from_str(&project.cat(output_digest(&summary, "showparams", "result"))).unwrap();
    assert_eq!(
        params,
        json!({"fixed": 7, "word": "hello", "rate": 0.5, "tags": ["a", "b"], "label": "w=hello n=4", "nested": {"n": 4}})
    );
    assert_eq!(project.cat(output_digest(&summary, "args", "result")), "hello\nn=4\n0.5");
}

#[test]
fn preview1_module_gets_params_and_args() {
    params_and_args(Wasi::P1);
}

#[test]
fn preview2_component_gets_params_and_args() {
    params_and_args(Wasi::P2);
}

fn directories(wasi: Wasi) {
    let project = Project::new();
    project.write("data/corpus/one.txt", "1");
    project.write("data/corpus/deep/two.txt", "22");
    project.write("data/single.txt", "333");
    project.manifest(&format!(
        r#"
name = "dirs"
[inputs]
corpus = "data/corpus"
single = "data/single.txt"

[steps.make]
module = "{tool}"
args = ["tree", "made"]
outputs = {{ made = "dir" }}

[steps.look]
module = "{tool}"
args = ["list-in"]
inputs = {{ corpus = "inputs.corpus", single = "inputs.single", made = "make.made" }}
outputs = {{ result = "file" }}
"#,
        tool = wasi.tool_name()
    ));
    let (code, summary) = project.run_json(&[]);
    assert_eq!(code, 0, "{summary}");
    let listing = project.cat(output_digest(&summary, "look", "result"));
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(
        lines,
        [
            "/in/.params.json file 2",
            "/in/corpus dir",
            "/in/corpus/deep dir",
            "/in/corpus/deep/two.txt file 2",
            "/in/corpus/one.txt file 1",
            "/in/made dir",
            "/in/made/a.txt file 5",
            "/in/made/sub dir",
            "/in/made/sub/b.txt file 4",
            "/in/single file 3",
        ]
    );

    let exported = project.path().join("exported");
    let made = output_digest(&summary, "make", "made");
    let output = project.weir(&["export", made, exported.to_str().unwrap()]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(std::fs::read_to_string(exported.join("sub/b.txt")).unwrap(), "beta");
}

#[test]
fn preview1_directory_inputs_and_outputs() {
    directories(Wasi::P1);
}

#[test]
fn preview2_directory_inputs_and_outputs() {
    directories(Wasi::P2);
}
