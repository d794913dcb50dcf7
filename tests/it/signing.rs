//! Signed step packages (docs/packages.md): `weir key generate`, `weir step
//! sign`, and a workspace whose `[packages]` policy requires a signature by
//! a trusted key, for archives and for packages in a registry.

use serde_json::json;
use weir_tests::{LocalRegistry, Project, output_digest, printed, steps_with};

use super::packages::{pack, project_with_upper, uses_upper};
use super::registry::{pushed, uses};
use super::server::{Server, finished, token, trigger};

/// Makes the key pair `NAME.key`/`NAME.pub` in the project; returns the key ID.
fn generate_key(project: &Project, name: &str) -> String {
    let output = project.weir(&["key", "generate", name]);
    let text = printed(&output);
    assert!(output.status.success(), "{text}");
    let id = text.split_whitespace().nth(1).unwrap().trim_end_matches(':').to_owned();
    assert_eq!(id.len(), 16, "{text}");
    id
}

fn sign(project: &Project, package: &str, key: &str) -> String {
    let output = project.weir(&["step", "sign", package, "--key", key]);
    let text = printed(&output);
    assert!(output.status.success(), "{text}");
    text
}

/// The workspace trusts the project's `NAME.pub` (named relative to the
/// workspace) and requires signatures.
fn require_signed_by(project: &Project, name: &str) {
    let config = format!("[packages]\nrequire_signed = true\ntrusted_keys = [\"../{name}.pub\"]\n");
    std::fs::create_dir_all(project.workspace()).unwrap();
    std::fs::write(project.workspace().join("config.toml"), config).unwrap();
}

/// `weir run pipeline.toml`, refused before anything runs: its message.
fn refused(project: &Project) -> String {
    let output = project.weir(&["run", "pipeline.toml"]);
    let text = printed(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.contains("step `up`, field `uses`"), "{text}");
    text
}

/// The reference `minisign` tool (when installed) accepts weir's signature
/// of `package` as a signature of its manifest digest by `key`.
fn minisign_agrees(project: &Project, package: &str, key: &str) {
    if std::process::Command::new("minisign").arg("-v").output().is_err() {
        eprintln!("minisign is not installed: not checking the signature with it (make setup installs it)");
        return;
    }
    let (_, inspected) = project.weir_json(&["step", "inspect", package, "--json"]);
    project.write("digest", inspected["digest"].as_str().unwrap());
    let output = std::process::Command::new("minisign")
        .args(["-V", "-p", key, "-m", "digest", "-x", &format!("{package}.minisig")])
        .current_dir(project.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "minisign refuses weir's signature: {}", printed(&output));
}

#[test]
fn a_workspace_that_requires_signatures_runs_only_packages_signed_by_a_key_it_trusts() {
    let project = project_with_upper("1.0.0");
    project.manifest(&uses_upper(""));
    let (code, unsigned_run) = project.run_json(&[]);
    assert_eq!(code, 0, "without a policy an unsigned package runs: {unsigned_run}");

    let team = generate_key(&project, "team");
    let other = generate_key(&project, "other");
    let output = project.weir(&["key", "generate", "team"]);
    assert!(!output.status.success() && printed(&output).contains("--force"), "{}", printed(&output));

    std::fs::write(project.workspace().join("config.toml"), "[packages]\nrequire_signed = true\n").unwrap();
    let text = printed(&project.weir(&["run", "pipeline.toml"]));
    assert!(text.contains("packages.trusted_keys lists no key"), "{text}");

    require_signed_by(&project, "team");
    let text = refused(&project);
    assert!(text.contains("upper.tar") && text.contains("is not signed") && text.contains("team.pub"), "{text}");
    assert!(text.contains(&format!("minisign public key: {team}")), "the expected key is named by ID: {text}");

    sign(&project, "upper.tar", "other.key");
    let text = refused(&project);
    assert!(text.contains("does not trust") && text.contains(&format!("weir key {other}")), "{text}");
    assert!(text.contains("team.pub"), "{text}");

    let signed = sign(&project, "upper.tar", "team.key");
    assert!(signed.contains("upper.tar.minisig") && signed.contains(&team), "{signed}");
    let inspected = printed(&project.weir(&["step", "inspect", "upper.tar"]));
    assert!(inspected.contains(&format!("signed   signature from weir key {team}")), "{inspected}");
    minisign_agrees(&project, "upper.tar", "team.pub");
    project.write("data/text.txt", "signed\n");
    let (code, run) = project.run_json(&["--param", "w=ok"]);
    assert_eq!(code, 0, "{run}");
    assert_eq!(steps_with(&run, "ran"), ["up"]);
    assert_eq!(project.cat(output_digest(&run, "up", "result")), "SIGNED\n[hi]");

    // A signature moved onto other bytes does not vouch for them.
    project.write("upper/step.toml", super::packages::UPPER.replace("1.0.0", "6.6.6"));
    pack(&project, "upper/step.toml", "evil.tar");
    std::fs::copy(project.path().join("upper.tar.minisig"), project.path().join("evil.tar.minisig")).unwrap();
    project.manifest(&uses_upper("").replace("upper.tar", "evil.tar"));
    let text = refused(&project);
    assert!(text.contains("does not match its digest"), "{text}");
}

#[test]
fn a_registry_signature_is_pulled_checked_and_kept_for_offline_runs() {
    let Some(mut registry) = LocalRegistry::start() else { return };
    let project = pushed(&registry);
    let team = generate_key(&project, "team");
    require_signed_by(&project, "team");
    project.manifest(&uses(&registry, "ml/upper:1.0"));
    let text = refused(&project);
    assert!(text.contains("ml/upper:1.0") && text.contains("is not signed"), "{text}");

    let reference = format!("{}/ml/upper:1.0", registry.address);
    let signed = sign(&project, &reference, "team.key");
    assert!(signed.contains(&team), "{signed}");
    let digest = signed.split(['(', ')']).nth(1).unwrap().to_owned();
    let tag = format!("sha256-{}.sig", &digest["sha256:".len()..]);
    assert!(signed.contains(&tag), "{signed}");
    let tags = std::process::Command::new("skopeo")
        .args(["list-tags", "--tls-verify=false", &format!("docker://{}/ml/upper", registry.address)])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&tags.stdout).contains(&tag), "another OCI client sees the signature's tag");

    let inspected = printed(&project.weir(&["step", "inspect", &reference]));
    for line in [format!("package  {reference}"), format!("digest   {digest}"), "step     upper 1.0.0".to_owned()] {
        assert!(inspected.contains(&line), "inspecting by reference: no `{line}` in\n{inspected}");
    }
    assert!(inspected.contains(&format!("signed   signature from weir key {team}")), "{inspected}");

    let (code, first) = project.run_json(&[]);
    assert_eq!(code, 0, "{first}");
    assert_eq!(project.cat(output_digest(&first, "up", "result")), "HELLO\n[yo]");
    let kept = project.workspace().join(format!("packages/sha256-{}.tar.minisig", &digest["sha256:".len()..]));
    assert!(kept.is_file(), "the signature is kept beside the package");

    registry.stop();
    let (code, offline) = project.run_json(&["--param", "w=offline"]);
    assert_eq!(code, 0, "the kept signature serves an offline run: {offline}");
    assert_eq!(project.cat(output_digest(&offline, "up", "result")), "HELLO\n[offline]");

    // The kept signature is what is checked: another key's is refused.
    let other = generate_key(&project, "other");
    std::fs::write(
        project.workspace().join("config.toml"),
        "[packages]\nrequire_signed = true\ntrusted_keys = [\"../other.pub\"]\n",
    )
    .unwrap();
    let text = refused(&project);
    assert!(text.contains("does not trust") && text.contains(&format!("minisign public key: {other}")), "{text}");
}

#[test]
fn a_server_that_requires_signatures_takes_only_published_packages_signed_by_a_key_it_trusts() {
    let project = project_with_upper("1.0.0");
    project.manifest(&uses_upper(""));
    let team = generate_key(&project, "team");
    let served = Project::new();
    std::fs::copy(project.path().join("team.pub"), served.path().join("team.pub")).unwrap();
    require_signed_by(&served, "team");
    let server = Server::start(&served, &[]);
    let alice = token(&served, "alice", false);
    let publish = || project.weir(&["publish", "pipeline.toml", "--server", &server.base, "--token", &alice]);

    let output = publish();
    let text = printed(&output);
    assert!(!output.status.success(), "{text}");
    assert!(text.contains("step `up`, field `uses`") && text.contains("is not signed"), "{text}");
    assert!(text.contains(&format!("../team.pub (minisign public key: {team})")), "{text}");
    assert!(!text.contains(&served.path().display().to_string()), "no path of the server's disk: {text}");

    sign(&project, "upper.tar", "team.key");
    let output = publish();
    assert!(output.status.success(), "{}", printed(&output));
    let id = trigger(&server, &alice, "packaged", &json!({}));
    let document = finished(&server, &alice, &id);
    assert_eq!(document["status"], "succeeded", "{document}");
}
