//! The team's shared cache: `weir run --remote` against a real `weir serve`
//! on loopback, `weir push` / `weir pull`, and a remote that lies.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use weir::{CacheRemote, Digest, Engine, OutputKind, Pipeline, RemoteEntry, RemoteError, RunOptions, StepBuilder};
use weir_tests::{Project, RunDocument, output_digest, printed, steps_with, tamper};

use crate::caching::chain;
use crate::server::{Server, token};

const STEPS: [&str; 4] = ["join", "prep", "shout", "upper"];

/// `weir run pipeline.toml --json EXTRA…` in `project`: exit code, document, stderr.
fn run(project: &Project, extra: &[&str]) -> (i32, Value, String) {
    let mut args = vec!["run", "pipeline.toml", "--json"];
    args.extend_from_slice(extra);
    let output = project.weir(&args);
    let document = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|err| panic!("{err}: {}", String::from_utf8_lossy(&output.stderr)));
    weir_tests::assert_run_document(&document);
    (output.status.code().unwrap(), document, String::from_utf8_lossy(&output.stderr).into_owned())
}

/// A server project, a tenant token on it, and its `--remote … --token …` arguments.
struct Shared {
    _project: Project,
    server: Server,
    workspace: std::path::PathBuf,
}

impl Shared {
    fn start() -> Shared {
        let project = Project::new();
        let server = Server::start(&project, &[]);
        let workspace = project.workspace();
        Shared { _project: project, server, workspace }
    }

    fn token(&self, tenant: &str) -> String {
        token(&self._project, tenant, false)
    }

    fn args<'a>(&'a self, token: &'a str) -> [&'a str; 4] {
        ["--remote", self.server.base.as_str(), "--token", token]
    }
}

#[test]
fn a_second_workspace_reuses_what_the_first_computed_and_nothing_else_sees_it() {
    let shared = Shared::start();
    let team = shared.token("team");
    let first = Project::new();
    chain(&first);
    let (code, computed, stderr) = run(&first, &shared.args(&team));
    assert_eq!(code, 0, "{computed}");
    assert_eq!(steps_with(&computed, "ran"), STEPS);
    assert!(stderr.contains("sent 4 result(s)"), "{stderr}");

    // An empty workspace: every step comes from the shared cache.
    let second = Project::new();
    chain(&second);
    let (code, reused, stderr) = run(&second, &shared.args(&team));
    assert_eq!(code, 0, "{reused}");
    assert_eq!(steps_with(&reused, "cached"), STEPS, "nothing executes: {reused}");
    assert!(stderr.contains("pulled 4 result(s)"), "{stderr}");
    for step in STEPS {
        assert_eq!(reused.step(step)["reused_from"], computed["id"]);
    }
    let result = output_digest(&reused, "join", "result");
    assert_eq!(result, output_digest(&computed, "join", "result"));
    assert_eq!(second.cat(result), first.cat(result), "the artifacts arrived");
    let verified = second.weir(&["store", "verify", "--json"]);
    assert!(verified.status.success(), "{}", printed(&verified));

    // Another tenant's clients see none of it.
    let other = shared.token("other");
    let third = Project::new();
    chain(&third);
    let (code, alone, stderr) = run(&third, &shared.args(&other));
    assert_eq!(code, 0, "{alone}");
    assert_eq!(steps_with(&alone, "ran"), STEPS);
    assert!(stderr.contains("pulled 0 result(s)"), "{stderr}");
}

#[test]
fn a_tampered_artifact_on_the_server_is_refused_and_computed_again() {
    let shared = Shared::start();
    let team = shared.token("team");
    let first = Project::new();
    chain(&first);
    let (_, computed, _) = run(&first, &shared.args(&team));
    tamper(&shared.workspace, output_digest(&computed, "upper", "result"));

    let second = Project::new();
    chain(&second);
    let (code, document, _) = run(&second, &shared.args(&team));
    assert_eq!(code, 0, "{document}");
    let upper = document.step("upper");
    assert_eq!(upper["status"], "ran", "{upper}");
    let warnings = upper["warnings"].to_string();
    assert!(warnings.contains("shared cache") && warnings.contains("computed here instead"), "{warnings}");
    assert_eq!(output_digest(&document, "upper", "result"), output_digest(&computed, "upper", "result"));
    assert_eq!(document.step("prep")["status"], "cached");
    assert_eq!(document.step("join")["status"], "cached", "the rest still comes from the cache");
}

#[test]
fn an_unreachable_shared_cache_leaves_the_run_local_with_a_warning() {
    let project = Project::new();
    chain(&project);
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let url = format!("http://{closed}");
    let (code, document, _) = run(&project, &["--remote", &url, "--token", "t"]);
    assert_eq!(code, 0, "{document}");
    assert_eq!(steps_with(&document, "ran"), STEPS);
    let warnings = document["warnings"].to_string();
    assert!(warnings.contains("is unreachable") && warnings.contains("went on without it"), "{warnings}");
    assert_eq!(warnings.matches("unreachable").count(), 1, "said once, not per step: {warnings}");

    let refused = project.weir(&["run", "pipeline.toml", "--remote", &url]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(printed(&refused).contains("needs a token"), "{}", printed(&refused));
}

#[test]
fn push_and_pull_move_a_run_explicitly_and_offline_never_calls() {
    let shared = Shared::start();
    let team = shared.token("team");
    let first = Project::new();
    chain(&first);
    let (code, computed, _) = run(&first, &[]);
    assert_eq!(code, 0);
    let run_id = computed["id"].as_str().unwrap();
    let mut push = vec!["push", "last", "--json"];
    push.extend(shared.args(&team));
    let pushed = first.weir(&push);
    assert!(pushed.status.success(), "{}", printed(&pushed));
    let moved: Value = serde_json::from_slice(&pushed.stdout).unwrap();
    assert_eq!(moved["entries"], 4, "{moved}");
    assert!(moved["bytes"].as_u64().unwrap() > 0);

    // The teammate's workspace names the shared cache in its config.
    let second = Project::new();
    chain(&second);
    std::fs::create_dir_all(second.workspace()).unwrap();
    let url = shared.server.base.clone();
    std::fs::write(second.workspace().join("config.toml"), format!("[remote]\nurl = \"{url}\"\n")).unwrap();
    let (_, offline, stderr) = run(&second, &["--offline"]);
    assert_eq!(steps_with(&offline, "ran"), STEPS, "--offline calls nobody");
    assert!(!stderr.contains("shared cache"), "{stderr}");

    let third = Project::new();
    chain(&third);
    let pulled = third.weir(&["pull", run_id, "--remote", &url, "--token", &team]);
    assert!(pulled.status.success(), "{}", printed(&pulled));
    assert!(printed(&pulled).contains("pulled 4 result(s)"), "{}", printed(&pulled));
    let (_, reused, _) = run(&third, &[]);
    assert_eq!(steps_with(&reused, "cached"), STEPS, "pulled results are reused offline");

    let missing = third.weir(&["pull", "no-such-run", "--remote", &url, "--token", &team]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(printed(&missing).contains("has no run no-such-run"), "{}", printed(&missing));
}

/// A remote in memory that serves whatever it is given, or lies.
#[derive(Default)]
struct Lying {
    entries: Mutex<BTreeMap<Digest, RemoteEntry>>,
    objects: Mutex<BTreeMap<Digest, Vec<u8>>>,
    corrupt: Mutex<bool>,
}

impl CacheRemote for Lying {
    fn describe(&self) -> String {
        "memory".into()
    }
    fn entry(&self, key: &Digest) -> Result<Option<RemoteEntry>, RemoteError> {
        Ok(self.entries.lock().unwrap().get(key).cloned())
    }
    fn object(&self, digest: &Digest) -> Result<Box<dyn Read + Send>, RemoteError> {
        let mut bytes = self.objects.lock().unwrap().get(digest).cloned().unwrap_or_default();
        if *self.corrupt.lock().unwrap() {
            bytes.iter_mut().for_each(|byte| *byte ^= 0xff);
        }
        Ok(Box::new(std::io::Cursor::new(bytes)))
    }
    fn has_object(&self, digest: &Digest) -> Result<bool, RemoteError> {
        Ok(self.objects.lock().unwrap().contains_key(digest))
    }
    fn put_object(
        &self,
        digest: &Digest,
        _size: u64,
        open: &dyn Fn() -> std::io::Result<Box<dyn Read + Send>>,
    ) -> Result<(), RemoteError> {
        let mut content = Vec::new();
        open().unwrap().read_to_end(&mut content).unwrap();
        self.objects.lock().unwrap().insert(*digest, content);
        Ok(())
    }
    fn put_entry(&self, key: &Digest, entry: &RemoteEntry) -> Result<(), RemoteError> {
        self.entries.lock().unwrap().insert(*key, entry.clone());
        Ok(())
    }
    fn put_run(&self, _run_id: &str, _keys: &[Digest]) -> Result<(), RemoteError> {
        Ok(())
    }
    fn run_keys(&self, _run_id: &str) -> Result<Vec<Digest>, RemoteError> {
        Ok(Vec::new())
    }
}

#[test]
fn bytes_that_do_not_hash_to_their_digest_are_never_stored() {
    let remote = Arc::new(Lying::default());
    let pipeline = || {
        Pipeline::builder("lie")
            .step(
                StepBuilder::new("say", weir_tests::tool(weir_tests::Wasi::P1))
                    .args(["args", "hello"])
                    .output("result", OutputKind::File),
            )
            .build()
            .unwrap()
    };
    let first = Project::new();
    let engine = Engine::builder().workspace(first.workspace()).build().unwrap();
    let options = RunOptions::new().remote_cache(remote.clone());
    let sent = engine.run(&pipeline(), &options).unwrap();
    assert_eq!(sent.remote.as_ref().unwrap().pushed.entries, 1);

    *remote.corrupt.lock().unwrap() = true;
    let second = Project::new();
    let engine = Engine::builder().workspace(second.workspace()).build().unwrap();
    let report = engine.run(&pipeline(), &options).unwrap();
    let say = &report.steps["say"];
    assert_eq!(say.status, weir::StepStatus::Ran, "computed, not taken on trust");
    assert!(say.warnings.iter().any(|w| w.contains("hashing to")), "{:?}", say.warnings);
    assert_eq!(report.remote.as_ref().unwrap().pulled.entries, 0);
    let digest = say.outputs["result"].digest;
    assert_eq!(engine.store().read_file(&digest).unwrap(), b"hello");
}

#[test]
fn a_directory_arrives_whole_with_its_record_stored_last() {
    let remote = Arc::new(Lying::default());
    let pipeline = || {
        Pipeline::builder("tree")
            .step(
                StepBuilder::new("grow", weir_tests::tool(weir_tests::Wasi::P1))
                    .args(["tree", "out"])
                    .output("out", OutputKind::Dir),
            )
            .build()
            .unwrap()
    };
    let options = RunOptions::new().remote_cache(remote.clone());
    let first = Project::new();
    let sent = Engine::builder().workspace(first.workspace()).build().unwrap().run(&pipeline(), &options).unwrap();
    // The directory's record, its subdirectory's, two files and the (empty) logs.
    assert_eq!(sent.remote.as_ref().unwrap().pushed.objects, 5, "{:?}", sent.remote);

    let second = Project::new();
    let engine = Engine::builder().workspace(second.workspace()).build().unwrap();
    let report = engine.run(&pipeline(), &options).unwrap();
    assert_eq!(report.steps["grow"].status, weir::StepStatus::Cached);
    let tree = report.steps["grow"].outputs["out"].digest;
    let exported = second.path().join("exported");
    engine.store().export(&tree, &exported).unwrap();
    assert_eq!(std::fs::read(exported.join("a.txt")).unwrap(), b"alpha");
    assert_eq!(std::fs::read(exported.join("sub/b.txt")).unwrap(), b"beta");
}
