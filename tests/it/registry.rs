//! Step packages in a real OCI registry (Docker distribution on loopback):
//! push, pull, `uses = "REGISTRY/REPOSITORY:TAG"` pinned in weir.lock,
//! offline runs, `weir update`, a tampered blob, and other OCI clients.

use std::process::Command;

use weir::package::Sha256Digest;
use weir_tests::{LocalRegistry, Project, output_digest, printed, steps_with};

use super::packages::{UPPER, pack, write_foreign_layout};
use super::server::{Server, finished, token, trigger};

/// A project with `upper/step.toml` and `data/text.txt`, and the step
/// pushed as `REGISTRY/ml/upper:1.0`.
pub(crate) fn pushed(registry: &LocalRegistry) -> Project {
    let project = Project::new();
    project.write("upper/step.toml", UPPER);
    project.write("data/text.txt", "hello\n");
    let reference = format!("{}/ml/upper:1.0", registry.address);
    let output = project.weir(&["step", "push", "upper/step.toml", &reference]);
    assert!(output.status.success(), "{}", printed(&output));
    project
}

pub(crate) fn uses(registry: &LocalRegistry, repository: &str) -> String {
    format!(
        r#"
name = "registry"
[inputs]
text = "data/text.txt"
[steps.up]
uses = "{}/{repository}"
inputs = {{ text = "inputs.text" }}
params = {{ word = "${{params.w}}" }}
[params]
w = "yo"
"#,
        registry.address
    )
}

fn lock_pin(project: &Project, reference: &str) -> String {
    let lock: toml::Table = std::fs::read_to_string(project.path().join("weir.lock")).unwrap().parse().unwrap();
    lock["packages"][reference].as_str().unwrap().to_owned()
}

#[test]
fn a_pushed_package_pulls_back_byte_for_byte_and_by_digest() {
    let Some(registry) = LocalRegistry::start() else { return };
    let project = pushed(&registry);
    pack(&project, "upper/step.toml", "upper.tar");
    let (_, packed) = project.weir_json(&["step", "inspect", "upper.tar", "--json"]);
    let digest = packed["digest"].as_str().unwrap();

    let reference = format!("{}/ml/upper:1.0", registry.address);
    let output = project.weir(&["step", "pull", &reference, "-o", "pulled.tar"]);
    assert!(output.status.success(), "{}", printed(&output));
    let (_, pulled) = project.weir_json(&["step", "inspect", "pulled.tar", "--json"]);
    assert_eq!(pulled["digest"], digest);
    assert_eq!(pulled["descriptor"], packed["descriptor"]);

    let by_digest = format!("{}/ml/upper@{digest}", registry.address);
    let output = project.weir(&["step", "pull", &by_digest, "-o", "pinned.tar"]);
    assert!(output.status.success(), "{}", printed(&output));
    let wrong = format!("{}/ml/upper@{}", registry.address, Sha256Digest::of(b"nothing"));
    let output = project.weir(&["step", "pull", &wrong, "-o", "wrong.tar"]);
    assert!(!output.status.success() && !project.path().join("wrong.tar").exists(), "{}", printed(&output));
}

#[test]
fn a_tag_is_pinned_in_the_lock_file_and_runs_offline_from_the_workspace() {
    let Some(mut registry) = LocalRegistry::start() else { return };
    let project = pushed(&registry);
    project.manifest(&uses(&registry, "ml/upper:1.0"));
    let (code, first) = project.run_json(&[]);
    assert_eq!(code, 0, "{first}");
    assert_eq!(project.cat(output_digest(&first, "up", "result")), "HELLO\n[yo]");
    let reference = format!("{}/ml/upper:1.0", registry.address);
    let pin = lock_pin(&project, &reference);
    assert!(project.workspace().join(format!("packages/sha256-{}.tar", &pin["sha256:".len()..])).is_file());

    registry.stop();
    let (code, offline) = project.run_json(&["--param", "w=offline"]);
    assert_eq!(code, 0, "{offline}");
    assert_eq!(steps_with(&offline, "ran"), ["up"], "the kept package runs without the registry");
    assert_eq!(project.cat(output_digest(&offline, "up", "result")), "HELLO\n[offline]");

    std::fs::remove_dir_all(project.workspace().join("packages")).unwrap();
    let output = project.weir(&["run", "pipeline.toml"]);
    let text = printed(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.contains("field `uses`") && text.contains(&format!("{}/ml/upper@{pin}", registry.address)), "{text}");

    registry.restart();
    let (code, refetched) = project.run_json(&[]);
    assert_eq!(code, 0, "{refetched}");
    assert_eq!(steps_with(&refetched, "cached"), ["up"]);
}

#[test]
fn a_moved_tag_is_followed_only_after_weir_update() {
    let Some(registry) = LocalRegistry::start() else { return };
    let project = pushed(&registry);
    project.manifest(&uses(&registry, "ml/upper:1.0"));
    let (code, first) = project.run_json(&[]);
    assert_eq!(code, 0, "{first}");
    let reference = format!("{}/ml/upper:1.0", registry.address);
    let old = lock_pin(&project, &reference);

    project.write("upper/step.toml", UPPER.replace("tool-p1", "tool-p2"));
    let output = project.weir(&["step", "push", "upper/step.toml", &reference]);
    assert!(output.status.success(), "{}", printed(&output));
    let (code, pinned) = project.run_json(&[]);
    assert_eq!(code, 0, "{pinned}");
    assert_eq!(steps_with(&pinned, "cached"), ["up"], "the lock file still pins the old digest");
    assert_eq!(lock_pin(&project, &reference), old);

    let output = project.weir(&["update", "pipeline.toml"]);
    let text = printed(&output);
    assert!(output.status.success(), "{text}");
    let new = lock_pin(&project, &reference);
    assert_ne!(new, old);
    assert!(text.contains(&format!("{reference}: {old} -> {new}")), "{text}");
    let (code, updated) = project.run_json(&[]);
    assert_eq!(code, 0, "{updated}");
    assert_eq!(steps_with(&updated, "ran"), ["up"], "a new module is new code");
    let text = printed(&project.weir(&["update", "pipeline.toml"]));
    assert!(text.contains("every package is pinned to what its tag names"), "{text}");
}

#[test]
fn a_blob_changed_in_the_registry_is_refused_on_pull() {
    let Some(registry) = LocalRegistry::start() else { return };
    let project = pushed(&registry);
    let module = std::fs::read(project.path().join("tool-p1.wasm")).unwrap();
    let digest = Sha256Digest::of(&module).to_string();
    let blob = registry.blob_file(&digest);
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[100] ^= 0x55;
    std::fs::write(&blob, bytes).unwrap();

    project.manifest(&uses(&registry, "ml/upper:1.0"));
    let output = project.weir(&["run", "pipeline.toml"]);
    let text = printed(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.contains(&digest), "{text}");
    assert!(!project.path().join("weir.lock").exists(), "nothing is pinned to a package that failed to pull");
    assert!(!project.workspace().join("packages").read_dir().is_ok_and(|mut dir| dir.next().is_some()));
}

/// `skopeo` reads what weir pushed, and pushes a Wasm artifact without a
/// weir descriptor that a step then uses with its own interface.
#[test]
fn another_oci_client_reads_weirs_packages_and_weir_uses_its_artifacts() {
    let Some(registry) = LocalRegistry::start() else { return };
    if Command::new("skopeo").arg("--version").output().is_err() {
        eprintln!("skipped: `skopeo` is not installed (make setup installs it as root)");
        return;
    }
    let project = pushed(&registry);
    let reference = format!("docker://{}/ml/upper:1.0", registry.address);
    let raw = Command::new("skopeo").args(["inspect", "--raw", "--tls-verify=false", &reference]).output().unwrap();
    assert!(raw.status.success(), "{}", printed(&raw));
    let manifest: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(manifest["config"]["mediaType"], "application/vnd.wasm.config.v0+json");
    assert_eq!(manifest["layers"][0]["mediaType"], "application/wasm");
    pack(&project, "upper/step.toml", "upper.tar");
    let (_, packed) = project.weir_json(&["step", "inspect", "--json", "upper.tar"]);
    assert_eq!(Sha256Digest::of(&raw.stdout).to_string(), packed["digest"].as_str().unwrap());

    let module = std::fs::read(project.path().join("tool-p2.wasm")).unwrap();
    write_foreign_layout(&project.path().join("foreign"), &module);
    let source = format!("oci:{}", project.path().join("foreign").display());
    let destination = format!("docker://{}/ml/foreign:1", registry.address);
    let copy = Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false", "--preserve-digests", &source, &destination])
        .output()
        .unwrap();
    assert!(copy.status.success(), "{}", printed(&copy));
    project.manifest(&format!(
        r#"
name = "foreign"
[inputs]
text = "data/text.txt"
[steps.up]
uses = "{}/ml/foreign:1"
args = ["upper", "z"]
inputs = {{ text = "inputs.text" }}
outputs = {{ result = "file" }}
"#,
        registry.address
    ));
    let (code, summary) = project.run_json(&[]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(project.cat(output_digest(&summary, "up", "result")), "HELLO\n[z]");
}

#[test]
fn a_pipeline_of_registry_packages_is_published_by_reference_and_the_server_pulls_what_its_lock_pins() {
    let Some(registry) = LocalRegistry::start() else { return };
    let project = pushed(&registry);
    project.manifest(&uses(&registry, "ml/upper:1.0"));
    let (code, local) = project.run_json(&[]);
    assert_eq!(code, 0, "{local}");
    let pin = lock_pin(&project, &format!("{}/ml/upper:1.0", registry.address));

    // A server that may not pull from this registry refuses the pipeline.
    let closed = Project::new();
    let server = Server::start(&closed, &[]);
    let alice = token(&closed, "alice", false);
    let output = project.weir(&["publish", "pipeline.toml", "--server", &server.base, "--token", &alice]);
    let text = printed(&output);
    assert!(!output.status.success() && text.contains("weir serve --registry"), "{text}");
    drop(server);

    let served = Project::new();
    let server = Server::start(&served, &["--registry", &registry.address]);
    let alice = token(&served, "alice", false);
    let output = project.weir(&["publish", "pipeline.toml", "--server", &server.base, "--token", &alice]);
    let text = printed(&output);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("3 file(s)"), "the manifest, its input and weir.lock; not the package: {text}");
    let kept = served.workspace().join(format!("packages/sha256-{}.tar", &pin["sha256:".len()..]));
    assert!(kept.is_file(), "the server pulled the pinned package into its workspace");

    let id = trigger(&server, &alice, "registry", &serde_json::json!({ "params": { "w": "served" } }));
    let document = finished(&server, &alice, &id);
    assert_eq!(document["status"], "succeeded", "{document}");
}
