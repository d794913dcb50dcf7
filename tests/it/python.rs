//! Steps written in Python (`python = "script.py"`), built with
//! componentize-py (`make setup` installs it; `make test` names it in
//! `WEIR_COMPONENTIZE_PY`). Each test is skipped, saying so, without it.
//! A build takes 10–20 s, so each test builds one bundle and asks much of it.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use weir_tests::{Project, output_digest, weir_bin};

/// Whether componentize-py is there to build Python steps.
pub(crate) fn componentize_py() -> bool {
    let tool = std::env::var_os(weir::COMPONENTIZE_PY_VAR).unwrap_or_else(|| "componentize-py".into());
    let found = Command::new(tool).arg("--version").output().is_ok_and(|out| out.status.success());
    if !found {
        eprintln!("skipped: no componentize-py (make setup installs it; make test names it in WEIR_COMPONENTIZE_PY)");
    }
    found
}

/// The stderr of a command that weir refused before running anything (exit 2).
fn refused(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "expected a refusal, got:\n{stderr}");
    stderr
}

fn step<'a>(summary: &'a Value, name: &str) -> &'a Value {
    summary["steps"].as_array().unwrap().iter().find(|step| step["step"] == name).unwrap()
}

const CLEAN: &str = r#"
import json

import weir
from helper import twice
from shapes import area

params = weir.params()
text = weir.read_input_text("raw")
lines = text.splitlines()
for done, line in enumerate(lines, 1):
    weir.progress(done, len(lines))
weir.metric("lines", len(lines))
for epoch, loss in [(0, 1.0), (5, 0.5), (10, 0.25)]:
    weir.metric("loss", loss, step=epoch)
try:
    weir.metric("loss", 0.0, step=-1)
    bad_step = "accepted"
except ValueError as error:
    bad_step = str(error)

product = weir.native.gemm(2, 2, 3, [1, 2, 3, 4, 5, 6], [1, 0, 0, 1, 1, 1])
with weir.native.Tensor.upload([2.0, 0.0, 0.0, 2.0]) as scale:
    scaled = weir.native.Gemm(2, 2, 2).values(list(product), scale)
called = weir.native.call("gemm", {"m": 1, "n": 1, "k": 2, "a": [1.0, 2.0], "b": [3.0, 4.0], "trans_a": False, "trans_b": False})

weir.write_output("table", json.dumps({
    "threshold": twice(params["threshold"]),
    "label": params["label"],
    "upper": text.upper(),
    "product": list(product),
    "scaled": list(scaled),
    "called": called["c"] if isinstance(called["c"], list) else "packed",
    "area": area(3, 4),
    "bad_step": bad_step,
}, sort_keys=True))
print("cleaned", len(lines), "lines")
"#;

const PIPELINE: &str = r#"
name = "clean"
[inputs]
raw = "raw.txt"
[steps.clean]
python = "steps/clean.py"
inputs = { raw = "inputs.raw" }
outputs = { table = "file" }
params = { threshold = 0.25, label = "first" }
natives = ["gemm"]
"#;

#[test]
fn a_python_step_reads_params_and_inputs_calls_natives_and_is_rerun_only_when_its_bundle_changes() {
    if !componentize_py() {
        return;
    }
    let project = Project::new();
    project.write("raw.txt", "one\ntwo\nthree\n");
    project.write("steps/clean.py", CLEAN);
    project.write("steps/helper.py", "def twice(x):\n    return 2 * x\n");
    project.write("steps/shapes/__init__.py", "from .rect import area\n");
    project.write("steps/shapes/rect.py", "def area(w, h):\n    return w * h\n");
    project.write("steps/notes.txt", "not code");
    // Another step's script beside it: neither bundled nor run by this build.
    project.write("steps/other_step.py", "raise SystemExit('another step ran at build time')\n");
    project.manifest(PIPELINE);

    let built = project.weir(&["build", "pipeline.toml"]);
    assert!(String::from_utf8_lossy(&built.stderr).contains("building Python step"), "{built:?}");
    assert_eq!(String::from_utf8_lossy(&built.stdout), "clean: the code of its 1 step is built\n");
    let status = project.weir(&["status", "pipeline.toml"]);
    assert!(!String::from_utf8_lossy(&status.stderr).contains("building"), "the build is kept: {status:?}");

    let (code, first) = project.run_json(&[]);
    assert_eq!(code, 0, "{first}");
    let clean = step(&first, "clean");
    assert_eq!(clean["status"], "ran");
    assert_eq!(clean["metrics"]["lines"], 3.0);
    assert_eq!(clean["metrics"]["loss"], 0.25, "a metric's last value is the step's");
    let history = weir::History::open(&project.workspace()).unwrap();
    let loss = &history.metric_series(first["id"].as_str().unwrap()).unwrap()["clean.loss"];
    assert_eq!((loss.at.as_slice(), loss.values.as_slice()), ([0, 5, 10].as_slice(), [1.0, 0.5, 0.25].as_slice()));
    let table: Value = serde_json::from_str(&project.cat(output_digest(&first, "clean", "table"))).unwrap();
    assert_eq!(table["threshold"], 0.5);
    assert_eq!(table["label"], "first");
    assert_eq!(table["upper"], "ONE\nTWO\nTHREE\n");
    // [[1,2,3],[4,5,6]] · [[1,0],[0,1],[1,1]] = [[4,5],[10,11]]; then · 2I.
    assert_eq!(table["product"], serde_json::json!([4.0, 5.0, 10.0, 11.0]));
    assert_eq!(table["scaled"], serde_json::json!([8.0, 10.0, 20.0, 22.0]));
    assert_eq!(table["called"], serde_json::json!([11.0]));
    assert_eq!(table["area"], 12);
    assert_eq!(table["bad_step"], "weir.metric: step must be a whole number >= 0, not -1");
    let stdout = project.cat(clean["logs"]["stdout"].as_str().unwrap());
    assert_eq!(stdout, "cleaned 3 lines\n");

    let (_, again) = project.run_json(&[]);
    assert_eq!(step(&again, "clean")["status"], "cached");
    project.write("steps/notes.txt", "still not code");
    project.write("steps/stray.csv", "a,b\n");
    project.write("steps/other_step.py", "print('edited')\n");
    let (_, unrelated) = project.run_json(&[]);
    assert_eq!(step(&unrelated, "clean")["status"], "cached", "files it does not import do not count");

    project.write("steps/shapes/rect.py", "def area(w, h):\n    return w * h + 1\n");
    let (code, edited) = project.run_json(&[]);
    assert_eq!(code, 0, "{edited}");
    assert_eq!(step(&edited, "clean")["status"], "ran", "a bundled package module counts");
    let table: Value = serde_json::from_str(&project.cat(output_digest(&edited, "clean", "table"))).unwrap();
    assert_eq!(table["area"], 13);
}

const PROBE: &str = r#"
import socket
import sys

import weir

mode = weir.params()["mode"]
if mode == "sandbox":
    found = []
    for path in ["/etc/passwd", "/work", "/", "/in/../../etc/hostname"]:
        try:
            open(path).read()
            found.append(f"opened {path}")
        except OSError as err:
            found.append(f"denied {path}: {type(err).__name__}")
    try:
        socket.create_connection(("127.0.0.1", 80))
        found.append("connected")
    except OSError as err:
        found.append(f"network: {err}")
    weir.write_output("report", "\n".join(found))
elif mode == "raise":
    def load(name):
        raise ValueError(f"column {name} is missing")
    load("label")
elif mode == "exit":
    sys.exit(3)
else:
    while True:
        pass
"#;

#[test]
fn a_python_step_is_sandboxed_and_limited_and_its_exceptions_carry_the_traceback() {
    if !componentize_py() {
        return;
    }
    let project = Project::new();
    project.write("probe.py", PROBE);
    project.manifest(
        r#"
name = "probe"
[steps.sandbox]
python = "probe.py"
params = { mode = "sandbox" }
outputs = { report = "file" }
[steps.raise]
python = "probe.py"
params = { mode = "raise" }
outputs = { report = "file" }
[steps.exit]
python = "probe.py"
params = { mode = "exit" }
outputs = { report = "file" }
[steps.spin]
python = "probe.py"
params = { mode = "spin" }
outputs = { report = "file" }
limits = { timeout = "2s" }
"#,
    );
    let (code, summary) = project.run_json(&[]);
    assert_eq!(code, 1, "{summary}");

    let report = project.cat(output_digest(&summary, "sandbox", "report"));
    for path in ["/etc/passwd", "/work", "/", "/in/../../etc/hostname"] {
        assert!(report.contains(&format!("denied {path}: ")), "{path} must be out of reach:\n{report}");
    }
    assert!(!report.contains("opened") && !report.contains("connected"), "{report}");
    assert!(report.contains("network: a weir step has no network access"), "{report}");

    let raised = step(&summary, "raise");
    assert_eq!(raised["status"], "failed");
    let error = raised["error"].as_str().unwrap();
    assert!(error.contains("Traceback (most recent call last)"), "{error}");
    assert!(error.contains("File \"probe.py\", line 24, in load"), "the frame names the script and line: {error}");
    assert!(error.contains("raise ValueError(f\"column {name} is missing\")"), "the source line: {error}");
    assert!(error.contains("ValueError: column label is missing"), "{error}");
    assert!(!error.contains("weir_entry"), "weir's own frame is not shown: {error}");

    let exited = step(&summary, "exit");
    assert_eq!(exited["status"], "failed");
    assert!(exited["error"].as_str().unwrap().contains("exited with status 1"), "{exited}");

    let spin = step(&summary, "spin");
    assert_eq!(spin["status"], "failed");
    assert!(spin["error"].as_str().unwrap().contains("timeout"), "{spin}");
}

/// A pipeline of one Python step, `fit`, running `steps/fit.py`.
const FIT_PIPELINE: &str = "name = \"fit\"\n[steps.fit]\npython = \"steps/fit.py\"\noutputs = { model = \"file\" }\n";

/// A project whose pipeline is [`FIT_PIPELINE`], with `script` as its step.
fn fit_project(script: &str) -> Project {
    let project = Project::new();
    project.write("steps/fit.py", script);
    project.manifest(FIT_PIPELINE);
    project
}

#[test]
fn a_python_step_that_imports_what_cannot_run_in_the_sandbox_fails_to_build_naming_the_module() {
    if !componentize_py() {
        return;
    }
    let project = fit_project("import json\nimport numpy as np\nprint(np.zeros(3))\n");
    let output = project.weir(&["run", "pipeline.toml"]);
    let stderr = refused(&output);
    assert!(stderr.contains("step `fit`, field `python`"), "{stderr}");
    assert!(stderr.contains("fit.py, line 2: `numpy` cannot be imported in the sandbox"), "{stderr}");
    assert!(stderr.contains("only pure-Python modules"), "{stderr}");
}

#[test]
fn without_componentize_py_a_python_step_says_how_to_install_it() {
    let project = fit_project("print('hi')\n");
    let output = Command::new(weir_bin())
        .args(["run", "pipeline.toml", "--workspace"])
        .arg(project.workspace())
        .current_dir(project.path())
        .env(weir::COMPONENTIZE_PY_VAR, project.path().join("no-such-componentize-py"))
        .output()
        .unwrap();
    let stderr = refused(&output);
    assert!(stderr.contains("pip install componentize-py==0.25.1"), "{stderr}");
    assert!(stderr.contains("WEIR_COMPONENTIZE_PY"), "{stderr}");
}

#[test]
fn a_missing_python_script_is_an_error_at_its_field() {
    let project = Project::new();
    project.manifest("name = \"fit\"\n[steps.fit]\npython = \"steps/nope.py\"\noutputs = { model = \"file\" }\n");
    let output = project.weir(&["run", "pipeline.toml"]);
    let stderr = refused(&output);
    assert!(stderr.contains("step `fit`, field `python`"), "{stderr}");
    assert!(stderr.contains("nope.py not found"), "{stderr}");
}

#[test]
fn a_tenant_may_not_build_a_python_step() {
    let project = Project::new();
    project.write(".weir/tenants.toml", "[tenants.mallory]\n");
    project.write_as("mallory", "steps/fit.py", "print('hi')\n");
    project.write_as("mallory", "pipeline.toml", FIT_PIPELINE);
    let stderr = project.refused_as("mallory");
    assert!(stderr.contains("step `fit`, field `python`"), "{stderr}");
    assert!(stderr.contains("only the operator may do"), "{stderr}");
}

#[test]
fn publishing_a_python_step_is_refused_naming_the_step() {
    let project = fit_project("print('hi')\n");
    // Refused before any server is reached: none listens here.
    let output = project.weir(&["publish", "pipeline.toml", "--server", "http://127.0.0.1:9", "--token", "weir_a_b"]);
    let stderr = refused(&output);
    assert!(stderr.contains("steps.fit.python: a published pipeline cannot carry a Python step yet"), "{stderr}");
}

#[test]
fn a_new_python_project_runs_as_created_and_names_a_bad_line() {
    if !componentize_py() {
        return;
    }
    let project = Project::new();
    let created = project.weir(&["new", "--python", "demo"]);
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    assert!(String::from_utf8_lossy(&created.stdout).contains("weir run demo/pipeline.toml"));
    assert!(project.path().join("demo/steps/standardize.py").is_file());
    assert!(!project.path().join("demo/step").exists(), "no Rust crate in a Python project");

    let (code, first) = project.weir_json(&["run", "demo/pipeline.toml", "--json"]);
    assert_eq!(code, 0, "{first}");
    let standardize = step(&first, "standardize");
    assert_eq!(standardize["metrics"]["mean"], 18.0, "the sample values' mean");
    let scaled = std::fs::read_to_string(project.path().join("demo/results/scaled.txt")).unwrap();
    let values: Vec<f64> = scaled.lines().map(|line| line.parse().unwrap()).collect();
    assert_eq!(values.len(), 6, "{scaled}");
    assert!(values.iter().sum::<f64>().abs() < 1e-9, "z-scores sum to zero: {scaled}");

    project.write("demo/values.txt", "1\n2\nthree\n");
    let (code, bad) = project.weir_json(&["run", "demo/pipeline.toml", "--json"]);
    assert_eq!(code, 1, "{bad}");
    let error = step(&bad, "standardize")["error"].as_str().unwrap();
    assert!(error.contains("line 3: `three` is not a number"), "{error}");
}

/// A pure-Python wheel of package `tiny` (version `version`, whose `VERSION`
/// is that string), written into `dir` with the Python that runs componentize-py.
fn tiny_wheel(dir: &Path, version: &str) {
    let script = format!(
        r#"
import zipfile
with zipfile.ZipFile("tiny-{version}-py3-none-any.whl", "w") as wheel:
    wheel.writestr("tiny/__init__.py", "VERSION = '{version}'\n")
    wheel.writestr("tiny-{version}.dist-info/METADATA", "Metadata-Version: 2.1\nName: tiny\nVersion: {version}\n")
    wheel.writestr("tiny-{version}.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: weir-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    wheel.writestr("tiny-{version}.dist-info/RECORD", "")
"#
    );
    let made = Command::new("python3").arg("-c").arg(script).current_dir(dir).output().unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
}

#[test]
fn requirements_are_vendored_into_the_build_and_count_in_the_key() {
    if !componentize_py() {
        return;
    }
    let project = Project::new();
    let wheels = project.path().join("wheels");
    std::fs::create_dir_all(&wheels).unwrap();
    tiny_wheel(&wheels, "1.0");
    tiny_wheel(&wheels, "2.0");
    // Offline: the requirements file points pip at the local wheels only.
    let requirements = |pin: &str| format!("--no-index\n--find-links {}\ntiny=={pin}\n", wheels.display());
    project.write("steps/requirements.txt", requirements("1.0"));
    project.write("steps/fit.py", "import tiny\nimport weir\nweir.write_output('model', tiny.VERSION)\n");
    project.manifest(&format!("{FIT_PIPELINE}requirements = [\"steps/requirements.txt\"]\n"));

    let (code, first) = project.run_json(&[]);
    assert_eq!(code, 0, "{first}");
    assert_eq!(project.cat(output_digest(&first, "fit", "model")), "1.0");

    project.write("steps/requirements.txt", requirements("2.0"));
    let (code, pinned) = project.run_json(&[]);
    assert_eq!(code, 0, "{pinned}");
    assert_eq!(step(&pinned, "fit")["status"], "ran", "another pin is another bundle");
    assert_eq!(project.cat(output_digest(&pinned, "fit", "model")), "2.0");

    project.write("steps/requirements.txt", requirements("3.0"));
    let output = project.weir(&["run", "pipeline.toml"]);
    let stderr = refused(&output);
    assert!(stderr.contains("installing the requirements of") && stderr.contains("tiny==3.0"), "{stderr}");
}

/// A descriptor packing the template's script as a Python step package.
const STANDARDIZE: &str = r#"
name = "standardize"
version = "0.1.0"
python = "standardize.py"
[inputs]
values = "file"
[outputs]
scaled = "file"
[params]
scale = { type = "float", default = 1.0 }
"#;

#[test]
fn a_python_step_is_packed_as_its_built_component_and_runs_from_the_package() {
    if !componentize_py() {
        return;
    }
    let project = Project::new();
    let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk/python/template/standardize.py");
    project.write("std/standardize.py", std::fs::read_to_string(template).unwrap());
    project.write("std/step.toml", STANDARDIZE);
    let output = project.weir(&["step", "pack", "std/step.toml", "-o", "standardize.tar"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let inspected = project.weir(&["step", "inspect", "standardize.tar", "--json"]);
    let inspected: Value = serde_json::from_slice(&inspected.stdout).unwrap();
    let config = &inspected["manifest"]["config"];
    assert_eq!(config["mediaType"], weir::package::WASM_CONFIG_MEDIA_TYPE);

    project.write("data/values.txt", "10\n20\n30\n");
    project.manifest(
        "name = \"packaged-python\"\n[inputs]\nvalues = \"data/values.txt\"\n\
         [steps.z]\nuses = \"standardize.tar\"\ninputs = { values = \"inputs.values\" }\nparams = { scale = 2.0 }\n",
    );
    let output = project.weir(&["run", "pipeline.toml", "--json"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    let scaled: Vec<f64> =
        project.cat(output_digest(&summary, "z", "scaled")).lines().map(|line| line.parse().unwrap()).collect();
    let expected = [-2.0 * 1.224_744_871, 0.0, 2.0 * 1.224_744_871];
    assert!(scaled.iter().zip(expected).all(|(got, want)| (got - want).abs() < 1e-6), "{scaled:?}");
    assert_eq!(step(&summary, "z")["metrics"]["mean"], 20.0);

    project.write("std/step.toml", STANDARDIZE.replace("python = ", "module = \"x.wasm\"\npython = "));
    let output = project.weir(&["step", "pack", "std/step.toml", "-o", "bad.tar"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("field `python`") && stderr.contains("name one"), "{stderr}");
}
