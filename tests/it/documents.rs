//! One document for a run: `weir run --json` and `weir show --json` print
//! the same object, described by `docs/run.schema.json` (every run document
//! the tests read is checked against it), with its steps in pipeline order.

use weir_tests::{Project, RunDocument, assert_run_document};

/// `z_first` feeds `a_second` feeds a map step; `broken` fails and
/// `after_broken` is skipped: names sort differently from the pipeline order.
fn mixed(project: &Project) {
    project.write("data/one.txt", "1");
    project.write("data/two.txt", "22");
    project.manifest(
        "name = \"mixed\"\n[inputs]\ndata = \"data\"\n\
         [outputs]\nfirst = { from = \"z_first.result\" }\n\
         [steps.z_first]\nmodule = \"tool-p1.wasm\"\nargs = [\"args\", \"hello\"]\noutputs = { result = \"file\" }\n\
         [steps.a_second]\nmodule = \"tool-p1.wasm\"\nargs = [\"copy\", \"x\", \"result\"]\n\
         inputs = { x = \"z_first.result\" }\noutputs = { result = \"file\" }\n\
         [steps.m]\nmodule = \"sdk-tool.wasm\"\nargs = [\"measure\", \"batch\"]\nmap = \"batch\"\n\
         inputs = { batch = \"inputs.data\", gate = \"a_second.result\" }\noutputs = { result = \"file\" }\n\
         [steps.broken]\nmodule = \"tool-p1.wasm\"\nargs = [\"fail\", \"3\"]\noutputs = { result = \"file\" }\n\
         [steps.after_broken]\nmodule = \"tool-p1.wasm\"\nargs = [\"copy\", \"x\", \"result\"]\n\
         inputs = { x = \"broken.result\" }\noutputs = { result = \"file\" }\n",
    );
}

#[test]
fn run_and_show_print_the_same_document_with_steps_in_pipeline_order() {
    let project = Project::new();
    mixed(&project);
    let (code, ran) = project.run_json(&[]);
    assert_eq!(code, 1, "{ran}");
    let shown = project.show_json(ran["id"].as_str().unwrap());
    assert_eq!(ran, shown, "one document for a run, however it is asked for");

    let order: Vec<&str> = ran["steps"].as_array().unwrap().iter().map(|s| s["step"].as_str().unwrap()).collect();
    let position = |name: &str| order.iter().position(|&step| step == name).unwrap();
    assert!(position("z_first") < position("a_second") && position("a_second") < position("m"), "{order:?}");
    assert!(position("broken") < position("after_broken"), "{order:?}");
    let positions: Vec<u64> =
        ran["steps"].as_array().unwrap().iter().map(|s| s["position"].as_u64().unwrap()).collect();
    assert!(positions.windows(2).all(|pair| pair[0] < pair[1]), "{positions:?}");

    assert_eq!((ran["ran"].as_u64(), ran["failed"].as_u64(), ran["skipped"].as_u64()), (Some(3), Some(1), Some(1)));
    assert_eq!(ran["outputs"]["first"], ran.step("z_first")["outputs"]["result"]);
    let broken = ran.step("broken");
    assert_eq!(broken["error_kind"]["Exit"]["code"], 3, "{broken}");
    assert!(broken["error"].as_str().unwrap().contains("exited with status 3"));
    assert_eq!(ran.step("after_broken")["blocked_by"], "broken");
    assert!(ran.step("z_first")["phases"]["run_ms"].is_number(), "an execution's phases are kept");
    let map = ran.step("m");
    assert_eq!(map["entries"]["two.txt"]["metrics"]["bytes"], 2.0, "map entries are in the document");

    // Reused, the steps point at the run that executed them.
    let (_, again) = project.run_json(&[]);
    assert_eq!(again.step("a_second")["status"], "cached");
    assert_eq!(again.step("a_second")["reused_from"], ran["id"]);
    assert_eq!(again, project.show_json("last"));
}

#[test]
fn the_schema_rejects_what_is_not_a_run() {
    let project = Project::new();
    mixed(&project);
    let (_, ran) = project.run_json(&[]);
    let mut renamed = ran.clone();
    renamed["run_id"] = renamed["id"].take();
    renamed.as_object_mut().unwrap().remove("id");
    let caught = std::panic::catch_unwind(|| assert_run_document(&renamed));
    assert!(caught.is_err(), "a document without `id` must fail the schema");
    let mut keyed = ran.clone();
    keyed["steps"] = serde_json::json!({ "z_first": ran.step("z_first").clone() });
    assert!(std::panic::catch_unwind(|| assert_run_document(&keyed)).is_err(), "steps are a list");
}
