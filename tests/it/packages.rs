//! Step packages (docs/packages.md): `weir step pack` and `inspect`, and
//! pipelines that `uses` a package, checked against its descriptor.

use std::collections::BTreeMap;
use std::path::Path;

use weir::package::{
    BlobRef, ImageIndex, ImageManifest, MANIFEST_MEDIA_TYPE, Sha256Digest, WASM_CONFIG_MEDIA_TYPE,
    WASM_LAYER_MEDIA_TYPE,
};
use weir_tests::{Project, RunDocument, output_digest, printed, steps_with, template_step};

/// The descriptor of the test tool's `upper` mode, as `upper/step.toml`.
pub(crate) const UPPER: &str = r#"
name = "upper"
version = "1.0.0"
description = "Upper-cases a text and appends a word."
module = "../tool-p1.wasm"
args = ["upper", "${params.word}"]
limits = { memory = "64MiB", timeout = "30s" }
[inputs]
text = "file"
[outputs]
result = "file"
[params]
word = { type = "string", default = "hi" }
times = { type = "int", default = 1 }
"#;

/// A project with `upper.tar` packed from [`UPPER`] (with `version`) and
/// `data/text.txt`.
pub(crate) fn project_with_upper(version: &str) -> Project {
    let project = Project::new();
    project.write("upper/step.toml", UPPER.replace("1.0.0", version));
    project.write("data/text.txt", "hello\n");
    pack(&project, "upper/step.toml", "upper.tar");
    project
}

pub(crate) fn pack(project: &Project, descriptor: &str, archive: &str) -> String {
    let output = project.weir(&["step", "pack", descriptor, "-o", archive]);
    assert!(output.status.success(), "{}", printed(&output));
    printed(&output)
}

/// A pipeline whose step `up` uses `upper.tar` with `extra` lines.
pub(crate) fn uses_upper(extra: &str) -> String {
    format!(
        r#"
name = "packaged"
[params]
w = "yo"
[inputs]
text = "data/text.txt"
[steps.up]
uses = "upper.tar"
inputs = {{ text = "inputs.text" }}
{extra}
"#
    )
}

#[test]
fn inspect_prints_the_descriptor_and_the_digests_of_a_packed_step() {
    let project = project_with_upper("1.0.0");
    let (code, inspected) = project.weir_json(&["step", "inspect", "upper.tar", "--json"]);
    assert_eq!(code, 0, "{inspected}");
    let module = std::fs::read(project.path().join("tool-p1.wasm")).unwrap();
    assert_eq!(inspected["module"]["digest"], Sha256Digest::of(&module).to_string());
    assert_eq!(inspected["module"]["mediaType"], WASM_LAYER_MEDIA_TYPE);
    assert_eq!(inspected["manifest"]["config"]["mediaType"], WASM_CONFIG_MEDIA_TYPE);
    assert_eq!(inspected["descriptor"], UPPER);
    let digest = inspected["digest"].as_str().unwrap();
    assert!(pack(&project, "upper/step.toml", "again.tar").contains(digest), "packing is reproducible");

    let text = printed(&project.weir(&["step", "inspect", "upper.tar"]));
    for line in ["step     upper 1.0.0", "inputs   text (file)", "param    word (string, default \"hi\")", digest] {
        assert!(text.contains(line), "no `{line}` in:\n{text}");
    }
}

#[test]
fn a_pipeline_runs_a_packaged_step_with_its_declared_defaults_and_argv() {
    let project = project_with_upper("1.0.0");
    project.manifest(&uses_upper(r#"params = { word = "${params.w}" }"#));
    let (code, first) = project.run_json(&[]);
    assert_eq!(code, 0, "{first}");
    assert_eq!(project.cat(output_digest(&first, "up", "result")), "HELLO\n[yo]");

    let (code, again) = project.run_json(&["--param", "w=there"]);
    assert_eq!(code, 0, "{again}");
    assert_eq!(project.cat(output_digest(&again, "up", "result")), "HELLO\n[there]");

    project.manifest(&uses_upper(""));
    let (code, defaults) = project.run_json(&[]);
    assert_eq!(code, 0, "{defaults}");
    assert_eq!(project.cat(output_digest(&defaults, "up", "result")), "HELLO\n[hi]");
}

#[test]
fn a_repackaged_step_with_the_same_module_keeps_its_cache() {
    let project = project_with_upper("1.0.0");
    project.manifest(&uses_upper(""));
    let (code, first) = project.run_json(&[]);
    assert_eq!(code, 0, "{first}");
    assert_eq!(steps_with(&first, "ran"), ["up"]);

    project.write("upper/step.toml", UPPER.replace("1.0.0", "1.0.1"));
    pack(&project, "upper/step.toml", "upper.tar");
    let (code, second) = project.run_json(&["--executor", "process"]);
    assert_eq!(code, 0, "{second}");
    assert_eq!(steps_with(&second, "cached"), ["up"]);

    project.write("upper/step.toml", UPPER.replace("tool-p1", "tool-p2"));
    pack(&project, "upper/step.toml", "upper.tar");
    let (code, third) = project.run_json(&["--executor", "process"]);
    assert_eq!(code, 0, "{third}");
    assert_eq!(steps_with(&third, "ran"), ["up"], "another module is other code");
    assert_eq!(project.cat(output_digest(&third, "up", "result")), "HELLO\n[hi]");
}

#[test]
fn a_step_that_does_not_fit_its_package_is_refused_naming_the_field() {
    let project = project_with_upper("1.0.0");
    let cases = [
        ("inputs = { txt = \"inputs.text\" }", "inputs.txt", "has no input `txt` (it declares: text)"),
        ("params = { times = \"x\" }", "params.times", "\"x\" is not an int"),
        ("params = { nope = 1 }", "params.nope", "has no parameter `nope` (it declares: times, word)"),
        ("limits = { memory = \"1GiB\" }", "limits.memory", "1GiB is above the 64MiB"),
        ("args = [\"fail\", \"3\"]", "args", "comes from package `upper` 1.0.0"),
        ("natives = [\"gemm\"]", "natives", "may not grant its package more natives"),
        ("outputs = { result = \"dir\" }", "outputs.result", "writes `result` as a file, not a dir"),
        ("outputs = { other = \"file\" }", "outputs.other", "has no output `other`"),
    ];
    let bound = "inputs = { text = \"inputs.text\" }";
    for (extra, field, why) in cases {
        let manifest =
            if extra.starts_with("inputs") { uses_upper("").replace(bound, extra) } else { uses_upper(extra) };
        project.manifest(&manifest);
        let output = project.weir(&["run", "pipeline.toml"]);
        let text = printed(&output);
        assert_eq!(output.status.code(), Some(2), "{extra}: {text}");
        assert!(text.contains(&format!("step `up`, field `{field}`")) && text.contains(why), "{extra}: {text}");
    }
    project.manifest(&uses_upper("").replace(bound, ""));
    let text = printed(&project.weir(&["run", "pipeline.toml"]));
    assert!(text.contains("needs input `text`, and the step does not bind it"), "{text}");

    project.write("upper/step.toml", UPPER.replace("default = \"hi\" ", ""));
    pack(&project, "upper/step.toml", "upper.tar");
    project.manifest(&uses_upper(""));
    let text = printed(&project.weir(&["run", "pipeline.toml"]));
    assert!(text.contains("field `params.word`: package `upper` 1.0.0 requires parameter `word` (a string)"), "{text}");
}

#[test]
fn a_tampered_module_layer_is_refused_before_anything_runs() {
    let project = project_with_upper("1.0.0");
    project.manifest(&uses_upper(""));
    let archive = project.path().join("upper.tar");
    let pristine = std::fs::read(&archive).unwrap();
    let module = std::fs::read(project.path().join("tool-p1.wasm")).unwrap();
    let at = find(&pristine, &module[..4096]).expect("the module's bytes are in the archive") + 2048;
    let mut tampered = pristine.clone();
    tampered[at] ^= 0x55;
    std::fs::write(&archive, &tampered).unwrap();

    let output = project.weir(&["run", "pipeline.toml"]);
    let text = printed(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    let digest = Sha256Digest::of(&module).to_string();
    assert!(text.contains("field `uses`") && text.contains(&format!("{digest} (application/wasm) does not match")));
    let inspected = project.weir(&["step", "inspect", "upper.tar"]);
    assert!(!inspected.status.success() && printed(&inspected).contains("does not match its digest"));

    std::fs::write(&archive, &pristine).unwrap();
    let (code, summary) = project.run_json(&[]);
    assert_eq!(code, 0, "{summary}");
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

/// A Wasm artifact another tool made (the CNCF layout, no weir descriptor)
/// in an image layout directory: a step using it gives its interface itself.
#[test]
fn a_package_without_a_descriptor_runs_with_the_interface_the_manifest_gives() {
    let project = Project::new();
    project.write("data/text.txt", "plain\n");
    let module = std::fs::read(project.path().join("tool-p2.wasm")).unwrap();
    write_foreign_layout(&project.path().join("foreign"), &module);
    project.manifest(
        r#"
name = "foreign"
[inputs]
text = "data/text.txt"
[steps.up]
uses = "foreign"
args = ["upper", "x"]
inputs = { text = "inputs.text" }
outputs = { result = "file" }
"#,
    );
    let (code, summary) = project.run_json(&[]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(project.cat(output_digest(&summary, "up", "result")), "PLAIN\n[x]");
    let inspected = printed(&project.weir(&["step", "inspect", "foreign"]));
    assert!(inspected.contains("no weir descriptor"), "{inspected}");
}

pub(crate) fn write_foreign_layout(dir: &Path, module: &[u8]) {
    let config = br#"{"architecture":"wasm","os":"wasip2","layerDigests":[]}"#;
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(MANIFEST_MEDIA_TYPE.into()),
        artifact_type: None,
        config: BlobRef::of(WASM_CONFIG_MEDIA_TYPE, config),
        layers: vec![BlobRef::of(WASM_LAYER_MEDIA_TYPE, module)],
        subject: None,
        annotations: BTreeMap::new(),
    };
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    let index = ImageIndex {
        schema_version: 2,
        media_type: None,
        manifests: vec![BlobRef::of(MANIFEST_MEDIA_TYPE, &manifest_bytes)],
    };
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    for bytes in [&config[..], module, &manifest_bytes] {
        std::fs::write(blobs.join(Sha256Digest::of(bytes).hex()), bytes).unwrap();
    }
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion": "1.0.0"}"#).unwrap();
}

/// The guest SDK's template ships a descriptor: packed, its step runs from
/// the package like the module it packs.
#[test]
fn the_templates_descriptor_packs_a_step_a_pipeline_can_use() {
    let project = Project::new();
    let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk/template");
    let descriptor = std::fs::read_to_string(template.join("step.toml")).unwrap();
    let module = template_step();
    project.write(
        "standardize/step.toml",
        descriptor.replace("target/wasm32-wasip2/release/standardize.wasm", module.to_str().unwrap()),
    );
    pack(&project, "standardize/step.toml", "standardize.tar");
    project.write("values.txt", "1\n3\n");
    project.manifest(
        r#"
name = "template-package"
[inputs]
values = "values.txt"
[steps.standardize]
uses = "standardize.tar"
inputs = { values = "inputs.values" }
params = { scale = 2 }
"#,
    );
    let (code, summary) = project.run_json(&[]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(summary.step("standardize")["metrics"]["mean"], 2.0);
    assert_eq!(project.cat(output_digest(&summary, "standardize", "scaled")), "-2\n2\n");
}
