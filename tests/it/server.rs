//! `weir serve` driven over HTTP on a free loopback port: tokens, publish,
//! trigger, events, artifacts, cancel, retry, idempotency, pagination,
//! tenant isolation, limits, SIGTERM and SIGKILL with a restart.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weir_tests::{Project, assert_run_document, send_signal, weir_bin};

/// A `weir serve` process over a project's workspace.
pub(crate) struct Server {
    child: Child,
    pub(crate) base: String,
}

impl Server {
    pub(crate) fn start(project: &Project, extra: &[&str]) -> Server {
        let mut child = Command::new(weir_bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--workspace"])
            .arg(project.workspace())
            .args(extra)
            .env_remove("WEIR_HOME")
            .env_remove("WEIR_TENANT")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start weir serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("read the address");
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Server { child, base }
    }

    pub(crate) fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> Reply {
        self.request(method, path, token, body.map(|body| body.to_string().into_bytes()), &[])
    }

    /// Run `id`'s events, read as the server sends them.
    pub(crate) fn follow(&self, token: &str, run: &str) -> impl Iterator<Item = (String, Value)> + use<> {
        let path = format!("/v1/runs/{run}/events");
        let request = ureq::http::Request::get(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {token}"))
            .body(())
            .expect("a request");
        let response = ureq::Agent::new_with_defaults().run(request).unwrap_or_else(|err| panic!("GET {path}: {err}"));
        let mut lines = BufReader::new(response.into_body().into_reader()).lines();
        std::iter::from_fn(move || {
            let mut name = String::new();
            for line in lines.by_ref() {
                let line = line.expect("read the event stream");
                if let Some(event) = line.strip_prefix("event: ") {
                    event.clone_into(&mut name);
                } else if let Some(data) = line.strip_prefix("data: ") {
                    return Some((name, serde_json::from_str(data).unwrap()));
                }
            }
            None
        })
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let url = format!("{}{path}", self.base);
        let mut request = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        if body.is_some() {
            request = request.header("Content-Type", "application/json");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(body.unwrap_or_default()).expect("a request");
        let mut response = agent.run(request).unwrap_or_else(|err| panic!("{method} {path}: {err}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.body_mut().with_config().limit(u64::MAX).read_to_vec().unwrap_or_default();
        Reply { status, headers, body }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to exit and returns its exit code.
    fn wait(mut self) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            assert!(Instant::now() < deadline, "the server did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) struct Reply {
    pub(crate) status: u16,
    headers: ureq::http::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|err| panic!("not JSON ({err}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A problem document's detail, checking the media type.
    fn problem(&self) -> Value {
        assert_eq!(self.headers["content-type"], "application/problem+json", "{}", self.text());
        self.json()
    }
}

/// `weir token create --tenant TENANT`: the token, alone on stdout.
pub(crate) fn token(project: &Project, tenant: &str, admin: bool) -> String {
    let mut args = vec!["token", "create", "--tenant", tenant];
    if admin {
        args.push("--admin");
    }
    let output = project.weir(&args);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "only the token on stdout: {stdout:?}");
    stdout.trim().to_owned()
}

/// The upper-casing pipeline `up` with its module and input beneath the manifest.
pub(crate) fn up_pipeline(project: &Project, text: &str) -> std::path::PathBuf {
    project.write("pub/data/text.txt", text);
    std::fs::create_dir_all(project.path().join("pub/build")).unwrap();
    std::fs::copy(project.path().join("tool-p1.wasm"), project.path().join("pub/build/tool.wasm")).unwrap();
    project.write(
        "pub/pipeline.toml",
        "name = \"up\"\n[params]\nmode = \"upper\"\n[inputs]\ntext = \"data/text.txt\"\n\
         [steps.up]\nmodule = \"build/tool.wasm\"\nargs = [\"${params.mode}\"]\ninputs = { text = \"inputs.text\" }\noutputs = { result = \"file\" }\n\
         [steps.again]\nmodule = \"build/tool.wasm\"\nargs = [\"upper\"]\ninputs = { text = \"up.result\" }\noutputs = { result = \"file\" }\n\
         [outputs]\nshouted = { from = \"again.result\", export = \"out/shouted.txt\" }\n",
    )
}

pub(crate) fn publish(
    project: &Project,
    server: &Server,
    token: &str,
    manifest: &std::path::Path,
    extra: &[&str],
) -> Value {
    let mut args = vec!["publish", manifest.to_str().unwrap(), "--server", &server.base, "--token", token, "--json"];
    args.extend_from_slice(extra);
    let output = project.weir(&args);
    assert!(output.status.success(), "publish failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The events of a run, as (name, data), until it ends.
pub(crate) fn events(server: &Server, token: &str, run: &str) -> Vec<(String, Value)> {
    server.follow(token, run).collect()
}

pub(crate) fn trigger(server: &Server, token: &str, pipeline: &str, body: &Value) -> String {
    let reply = server.call("POST", &format!("/v1/pipelines/{pipeline}/runs"), Some(token), Some(body));
    assert_eq!(reply.status, 202, "{}", reply.text());
    let id = reply.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(reply.headers["location"], format!("/v1/runs/{id}").as_str());
    id
}

/// Follows run `id` to its end and returns its document.
pub(crate) fn finished(server: &Server, token: &str, id: &str) -> Value {
    let events = events(server, token, id);
    let (last, data) = events.last().expect("events");
    assert_eq!(last, "run_finished", "{events:?}");
    let reply = server.call("GET", &format!("/v1/runs/{id}"), Some(token), None);
    assert_eq!(reply.status, 200);
    let document = reply.json();
    assert_eq!(document["status"], data["status"]);
    document
}

pub(crate) fn step<'a>(document: &'a Value, name: &str) -> &'a Value {
    document["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|step| step["step"] == name)
        .unwrap_or_else(|| panic!("no step {name}: {document}"))
}

#[test]
fn a_published_pipeline_runs_on_trigger_and_its_outputs_download() {
    let project = Project::new();
    let manifest = up_pipeline(&project, "the weir holds");
    let alice = token(&project, "alice", false);
    let server = Server::start(&project, &[]);

    let version = publish(&project, &server, &alice, &manifest, &[]);
    assert_eq!((version["pipeline"].as_str(), version["version"].as_str()), (Some("up"), Some("1")));
    assert_eq!(version["inputs"]["text"], json!({ "path": "data/text.txt", "published": true }));
    // The same content again is the same version.
    assert_eq!(publish(&project, &server, &alice, &manifest, &[])["version"], "1");

    let id = trigger(&server, &alice, "up", &json!({ "labels": { "team": "vision" } }));
    let followed = events(&server, &alice, &id);
    let names: Vec<&str> = followed.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names.first(), Some(&"run_started"));
    assert_eq!(names.iter().filter(|name| **name == "step_started").count(), 2, "{names:?}");
    assert_eq!(names.iter().filter(|name| **name == "step_finished").count(), 2, "{names:?}");
    assert_eq!(followed.last().unwrap().1["status"], "succeeded");

    let document = finished(&server, &alice, &id);
    assert_eq!((document["version"].as_str(), document["labels"]["team"].as_str()), (Some("1"), Some("vision")));
    assert_eq!(document["manifest_path"], "pipeline.toml", "no path of the server's disk");
    let mut plain = document.clone();
    for key in ["version", "retry_of"] {
        plain.as_object_mut().unwrap().remove(key);
    }
    assert_run_document(&plain);
    let shouted = document["outputs"]["shouted"].as_str().unwrap();
    let artifact = server.call("GET", &format!("/v1/artifacts/{shouted}"), Some(&alice), None);
    assert_eq!((artifact.status, artifact.text().as_str()), (200, "THE WEIR HOLDS"));
    // Exports are never performed on the server.
    assert!(!project.path().join("pub/out").exists());
    assert!(
        std::fs::read_dir(project.workspace().join("tenants/alice"))
            .unwrap()
            .all(|entry| entry.unwrap().file_name() != "out")
    );

    // A second trigger reuses both steps; an input given by digest replaces the published one.
    let again = finished(&server, &alice, &trigger(&server, &alice, "up", &json!({})));
    assert_eq!(step(&again, "up")["status"], "cached");
    let text = b"another text".to_vec();
    let digest = format!("blake3:{}", blake3::hash(&text).to_hex());
    let put = server.request("PUT", &format!("/v1/blobs/{digest}"), Some(&alice), Some(text), &[]);
    assert_eq!(put.status, 201, "{}", put.text());
    let replaced = finished(&server, &alice, &trigger(&server, &alice, "up", &json!({ "inputs": { "text": digest } })));
    assert_eq!(step(&replaced, "up")["status"], "ran");
    let output = replaced["outputs"]["shouted"].as_str().unwrap();
    assert_eq!(server.call("GET", &format!("/v1/artifacts/{output}"), Some(&alice), None).text(), "ANOTHER TEXT");

    // Logs, metrics and lineage of the run.
    let logs = server.call("GET", &format!("/v1/runs/{id}/steps/up/logs"), Some(&alice), None);
    assert_eq!(logs.status, 200, "{}", logs.text());
    assert!(logs.json()["stdout"].is_string());
    let lineage = server.call("GET", &format!("/v1/runs/{id}/lineage"), Some(&alice), None).json();
    let chain = lineage["outputs"]["shouted"].as_array().unwrap();
    assert!(chain.iter().any(|node| node["output"] == "text" && node["step"].is_null()), "{lineage}");
    assert_eq!(server.call("GET", &format!("/v1/runs/{id}/metrics"), Some(&alice), None).status, 200);

    // The CLI reads the same run from the server.
    let remote = ["--server", server.base.as_str(), "--token", alice.as_str()];
    let shown = project.weir(&[&["show", id.as_str(), "--json"][..], &remote].concat());
    assert!(shown.status.success(), "{}", String::from_utf8_lossy(&shown.stderr));
    let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown, plain, "weir show --server prints the run document");
    let listed = project.weir(&[&["runs", "--json"][..], &remote].concat());
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 3);
    let logs = project.weir(&[&["logs", id.as_str(), "up"][..], &remote].concat());
    assert!(String::from_utf8_lossy(&logs.stdout).contains("--- stderr ---"));
    let refused = project.weir(&["show", "nope", "--server", &server.base, "--token", "weir_x_y"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("401"), "{}", String::from_utf8_lossy(&refused.stderr));

    // A late follower of a finished run gets its story from the history.
    let replay = events(&server, &alice, &id);
    assert_eq!(replay.last().unwrap(), &("run_finished".to_owned(), json!({ "run": id, "status": "succeeded" })));
    assert_eq!(replay.iter().filter(|(name, _)| name == "step_finished").count(), 2);
}

#[test]
fn every_call_needs_a_valid_token_and_sees_only_its_tenant() {
    let project = Project::new();
    let manifest = up_pipeline(&project, "alice's secret");
    let alice = token(&project, "alice", false);
    let bob = token(&project, "bob", false);
    let server = Server::start(&project, &[]);
    assert_eq!(server.call("GET", "/healthz", None, None).status, 200);
    let openapi = server.call("GET", "/openapi.json", None, None).json();
    assert!(openapi["openapi"].as_str().unwrap().starts_with("3.1"), "{}", openapi["openapi"]);
    assert!(openapi["paths"]["/v1/pipelines/{name}/runs"]["post"].is_object());

    for token in [None, Some("nonsense"), Some("weir_0000_0000")] {
        let reply = server.call("GET", "/v1/runs", token, None);
        assert_eq!(reply.status, 401, "{token:?}");
        assert!(reply.problem()["detail"].as_str().unwrap().contains("token") || token.is_none());
    }

    publish(&project, &server, &alice, &manifest, &[]);
    let run = trigger(&server, &alice, "up", &json!({}));
    let document = finished(&server, &alice, &run);
    let secret = document["outputs"]["shouted"].as_str().unwrap().to_owned();

    // Bob sees none of it: the same 404 as for what does not exist.
    let missing = "20990101T000000Z-0000000000";
    for path in [
        format!("/v1/runs/{run}"),
        format!("/v1/runs/{run}/events"),
        format!("/v1/runs/{run}/steps/up/logs"),
        format!("/v1/runs/{run}/lineage"),
        format!("/v1/artifacts/{secret}"),
        "/v1/pipelines/up".to_owned(),
        format!("/v1/runs/{missing}"),
    ] {
        let reply = server.call("GET", &path, Some(&bob), None);
        assert_eq!(reply.status, 404, "{path}: {}", reply.text());
        assert!(!reply.text().contains("alice"), "{path}: no hint of the owner");
    }
    assert_eq!(server.call("POST", &format!("/v1/runs/{run}/cancel"), Some(&bob), None).status, 404);
    assert_eq!(server.call("POST", "/v1/pipelines/up/runs", Some(&bob), Some(&json!({}))).status, 404);
    assert!(server.call("GET", "/v1/runs", Some(&bob), None).json()["runs"].as_array().unwrap().is_empty());
    // Bob may not use alice's blobs either, even knowing their digests.
    let blob = document["steps"][0]["inputs"]["text"].as_str().unwrap();
    assert_eq!(server.call("HEAD", &format!("/v1/blobs/{blob}"), Some(&bob), None).status, 404);
    assert_eq!(server.call("HEAD", &format!("/v1/blobs/{blob}"), Some(&alice), None).status, 200);

    // Token management is for admins; a revoked token is refused at once.
    assert_eq!(server.call("GET", "/v1/tokens", Some(&alice), None).status, 403);
    let admin = token(&project, "ops", true);
    let listed = server.call("GET", "/v1/tokens", Some(&admin), None).json();
    assert_eq!(listed["tokens"].as_array().unwrap().len(), 3);
    assert!(!listed.to_string().contains(alice.rsplit('_').next().unwrap()), "secrets are never listed");
    let bob_id = bob.split('_').nth(1).unwrap();
    let output = project.weir(&["token", "revoke", bob_id]);
    assert!(output.status.success());
    assert_eq!(server.call("GET", "/v1/runs", Some(&bob), None).status, 401);
}

#[test]
fn triggers_are_checked_idempotent_and_runs_page_by_filter() {
    let project = Project::new();
    let manifest = up_pipeline(&project, "pages");
    let alice = token(&project, "alice", false);
    let server = Server::start(&project, &[]);
    publish(&project, &server, &alice, &manifest, &[]);

    for (body, field) in [
        (json!({ "params": { "mode": 3 } }), "params.mode"),
        (json!({ "params": { "mode": ["a"] } }), "params.mode"),
        (json!({ "params": { "epochs": 3 } }), "params.epochs"),
        (json!({ "inputs": { "nope": "blake3:00" } }), "inputs.nope"),
        (json!({ "inputs": { "text": format!("blake3:{}", "0".repeat(64)) } }), "inputs.text"),
        (json!({ "labels": { "bad key": "x" } }), "labels.bad key"),
    ] {
        let reply = server.call("POST", "/v1/pipelines/up/runs", Some(&alice), Some(&body));
        assert_eq!(reply.status, 400, "{body}: {}", reply.text());
        let problem = reply.problem();
        assert_eq!(problem["field"], field, "{problem}");
        assert!(problem["detail"].as_str().unwrap().contains(field));
        assert!(!problem["detail"].as_str().unwrap().contains("--param"), "the CLI's words: {problem}");
    }
    let unknown = server.call("POST", "/v1/pipelines/up/runs", Some(&alice), Some(&json!({ "version": "9" })));
    assert_eq!(unknown.status, 404);
    let malformed =
        server.request("POST", "/v1/pipelines/up/runs", Some(&alice), Some(b"{\"params\": [".to_vec()), &[]);
    assert_eq!(malformed.status, 400, "{}", malformed.text());

    // The same Idempotency-Key twice: one run.
    let keyed = |key: &str| {
        server.request("POST", "/v1/pipelines/up/runs", Some(&alice), Some(b"{}".to_vec()), &[("Idempotency-Key", key)])
    };
    let first = keyed("nightly-2026-11-30");
    let second = keyed("nightly-2026-11-30");
    assert_eq!((first.status, second.status), (202, 200));
    assert_eq!(first.json()["id"], second.json()["id"]);
    let first_id = first.json()["id"].as_str().unwrap().to_owned();
    finished(&server, &alice, &first_id);

    let mut ids = vec![first_id];
    for i in 0..4 {
        let id =
            trigger(&server, &alice, "up", &json!({ "labels": { "batch": if i % 2 == 0 { "even" } else { "odd" } } }));
        finished(&server, &alice, &id);
        ids.push(id);
    }
    let mut paged = Vec::new();
    let mut token = None::<String>;
    loop {
        let path = match &token {
            None => "/v1/runs?page_size=2".to_owned(),
            Some(token) => format!("/v1/runs?page_size=2&page_token={token}"),
        };
        let page = server.call("GET", &path, Some(&alice), None).json();
        let runs = page["runs"].as_array().unwrap();
        assert!(runs.len() <= 2);
        paged.extend(runs.iter().map(|run| run["id"].as_str().unwrap().to_owned()));
        match page["next_page_token"].as_str() {
            Some(next) => token = Some(next.to_owned()),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(paged, ids, "every run once, newest first");
    let over = server.call("GET", "/v1/runs?page_size=100000", Some(&alice), None);
    assert_eq!((over.status, over.problem()["field"].as_str()), (400, Some("page_size")));
    let even = server.call("GET", "/v1/runs?label=batch=even", Some(&alice), None).json();
    assert_eq!(even["runs"].as_array().unwrap().len(), 2);
    let succeeded = server.call("GET", "/v1/runs?status=succeeded&pipeline=up&version=1", Some(&alice), None).json();
    assert_eq!(succeeded["runs"].as_array().unwrap().len(), 5);
    assert_eq!(
        server.call("GET", "/v1/runs?created_after=2099-01-01T00:00:00Z", Some(&alice), None).json()["runs"],
        json!([])
    );
    assert_eq!(server.call("GET", "/v1/runs?created_after=yesterday", Some(&alice), None).status, 400);
    assert_eq!(server.call("GET", "/v1/runs?status=asleep", Some(&alice), None).status, 400);
}

/// A pipeline whose `slow` step spins until cancelled, after a quick one.
pub(crate) fn spinning_pipeline(project: &Project) -> std::path::PathBuf {
    project.write("spin/data/text.txt", "spin");
    std::fs::create_dir_all(project.path().join("spin/build")).unwrap();
    std::fs::copy(project.path().join("tool-p1.wasm"), project.path().join("spin/build/tool.wasm")).unwrap();
    project.write(
        "spin/pipeline.toml",
        "name = \"spin\"\n[params]\nmode = \"spin\"\n[inputs]\ntext = \"data/text.txt\"\n\
         [steps.quick]\nmodule = \"build/tool.wasm\"\nargs = [\"upper\"]\ninputs = { text = \"inputs.text\" }\noutputs = { result = \"file\" }\n\
         [steps.slow]\nmodule = \"build/tool.wasm\"\nargs = [\"${params.mode}\"]\ninputs = { text = \"quick.result\" }\noutputs = { result = \"file\" }\n",
    )
}

/// Waits until run `id`'s step `name` has started.
pub(crate) fn wait_for_step(server: &Server, token: &str, id: &str, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let document = server.call("GET", &format!("/v1/runs/{id}"), Some(token), None).json();
        let started = document["steps"].as_array().is_some_and(|steps| steps.iter().any(|step| step["step"] == name));
        if started {
            return;
        }
        assert!(Instant::now() < deadline, "step {name} never started: {document}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_run_is_cancelled_and_its_retry_reuses_what_succeeded() {
    let project = Project::new();
    let manifest = spinning_pipeline(&project);
    let alice = token(&project, "alice", false);
    let server = Server::start(&project, &[]);
    publish(&project, &server, &alice, &manifest, &[]);
    let id = trigger(&server, &alice, "spin", &json!({}));
    wait_for_step(&server, &alice, &id, "slow");
    let cancel = server.call("POST", &format!("/v1/runs/{id}/cancel"), Some(&alice), None);
    assert_eq!(cancel.status, 202, "{}", cancel.text());
    let document = finished(&server, &alice, &id);
    assert_eq!(document["status"], "cancelled");
    assert_eq!(step(&document, "quick")["status"], "ran");
    assert_eq!(server.call("POST", &format!("/v1/runs/{id}/cancel"), Some(&alice), None).status, 409);

    let retry = server.call("POST", &format!("/v1/runs/{id}/retry"), Some(&alice), None);
    assert_eq!(retry.status, 202, "{}", retry.text());
    let retried = retry.json()["id"].as_str().unwrap().to_owned();
    wait_for_step(&server, &alice, &retried, "slow");
    let listed = server.call("GET", "/v1/runs?status=running", Some(&alice), None).json();
    assert_eq!(listed["runs"][0]["retry_of"], id.as_str());
    server.call("POST", &format!("/v1/runs/{retried}/cancel"), Some(&alice), None);
    let document = finished(&server, &alice, &retried);
    assert_eq!(step(&document, "quick")["status"], "cached", "{document}");
}

#[test]
fn publishing_refuses_files_outside_the_bundle_and_blobs_are_checked() {
    let project = Project::new();
    let alice = token(&project, "alice", false);
    let server = Server::start(&project, &["--max-blob-size", "1KiB", "--max-json-size", "2KiB"]);
    let upload = |bytes: &[u8]| {
        let digest = format!("blake3:{}", blake3::hash(bytes).to_hex());
        let reply = server.request("PUT", &format!("/v1/blobs/{digest}"), Some(&alice), Some(bytes.to_vec()), &[]);
        assert_eq!(reply.status, 201, "{}", reply.text());
        digest
    };
    let module = upload(&std::fs::read(project.path().join("tool-p1.wasm")).unwrap()[..1000]);
    let big = vec![7u8; 2000];
    let digest = format!("blake3:{}", blake3::hash(&big).to_hex());
    let too_big = server.request("PUT", &format!("/v1/blobs/{digest}"), Some(&alice), Some(big), &[]);
    assert_eq!(too_big.status, 413);
    assert!(too_big.problem()["detail"].as_str().unwrap().contains("1024 bytes"));
    let huge = json!({ "manifest": "x".repeat(3000), "files": {} });
    let refused = server.call("POST", "/v1/pipelines", Some(&alice), Some(&huge));
    assert_eq!(refused.status, 413);
    assert!(refused.problem()["detail"].as_str().unwrap().contains("2048 bytes"), "{}", refused.text());
    let lying = server.request("PUT", &format!("/v1/blobs/{module}"), Some(&alice), Some(b"other".to_vec()), &[]);
    assert_eq!((lying.status, lying.problem()["field"].as_str()), (400, Some("digest")));

    for (manifest, field) in [
        ("name = \"p\"\n[inputs]\ntext = \"../secret.txt\"\n", "inputs.text"),
        ("name = \"p\"\n[inputs]\ntext = \"/etc/passwd\"\n", "inputs.text"),
        ("name = \"p\"\n[steps.s]\nmodule = \"/usr/lib/x.wasm\"\noutputs = { r = \"file\" }\n", "steps.s.module"),
        ("name = \"p\"\n[steps.s]\ncrate = \"step\"\noutputs = { r = \"file\" }\n", "steps.s.crate"),
    ] {
        let manifest_digest = upload(manifest.as_bytes());
        let body =
            json!({ "manifest": "pipeline.toml", "files": { "pipeline.toml": manifest_digest, "tool.wasm": module } });
        let reply = server.call("POST", "/v1/pipelines", Some(&alice), Some(&body));
        assert_eq!(reply.status, 400, "{manifest}: {}", reply.text());
        let problem = reply.problem();
        assert_eq!(problem["field"], field, "{problem}");
        assert!(
            !problem["detail"].as_str().unwrap().contains(project.workspace().to_str().unwrap()),
            "no server path: {problem}"
        );
    }
    let body = json!({ "manifest": "pipeline.toml", "files": { "pipeline.toml": module, "../x": module } });
    let reply = server.call("POST", "/v1/pipelines", Some(&alice), Some(&body));
    assert_eq!((reply.status, reply.problem()["field"].as_str()), (400, Some("files[\"../x\"]")));
    // A blob another tenant uploaded is not yours to publish with.
    let bob = token(&project, "bob", false);
    let body = json!({ "manifest": "pipeline.toml", "files": { "pipeline.toml": module } });
    let reply = server.call("POST", "/v1/pipelines", Some(&bob), Some(&body));
    assert_eq!((reply.status, reply.problem()["field"].as_str()), (400, Some("files[\"pipeline.toml\"]")));
}

#[test]
fn named_versions_are_immutable_and_the_default_moves() {
    let project = Project::new();
    let manifest = up_pipeline(&project, "versions");
    let alice = token(&project, "alice", false);
    let server = Server::start(&project, &[]);
    assert_eq!(publish(&project, &server, &alice, &manifest, &["--version", "v1"])["version"], "v1");
    project.write(
        "pub/pipeline.toml",
        std::fs::read_to_string(&manifest).unwrap().replace("mode = \"upper\"", "mode = \"shout\""),
    );
    let output = project.weir(&[
        "publish",
        manifest.to_str().unwrap(),
        "--server",
        &server.base,
        "--token",
        &alice,
        "--version",
        "v1",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("immutable"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(publish(&project, &server, &alice, &manifest, &["--no-default"])["version"], "2");
    let pipeline = server.call("GET", "/v1/pipelines/up", Some(&alice), None).json();
    assert_eq!(pipeline["default_version"], "v1");
    let patched = server.call("PATCH", "/v1/pipelines/up", Some(&alice), Some(&json!({ "default_version": "2" })));
    assert_eq!(patched.json()["default_version"], "2");
    let bad = server.call("PATCH", "/v1/pipelines/up", Some(&alice), Some(&json!({ "default_version": "7" })));
    assert_eq!((bad.status, bad.problem()["field"].as_str()), (400, Some("default_version")));
    let versions = server.call("GET", "/v1/pipelines/up/versions", Some(&alice), None).json();
    let names: Vec<&str> =
        versions["versions"].as_array().unwrap().iter().map(|v| v["version"].as_str().unwrap()).collect();
    assert_eq!(names, ["v1", "2"]);
    let id = trigger(&server, &alice, "up", &json!({}));
    assert_eq!(finished(&server, &alice, &id)["version"], "2");

    // Without inputs, each trigger gives them.
    project.write(
        "pub/pipeline.toml",
        std::fs::read_to_string(&manifest).unwrap().replace("name = \"up\"", "name = \"bare\""),
    );
    let bare = publish(&project, &server, &alice, &manifest, &["--no-inputs"]);
    assert_eq!(bare["inputs"]["text"]["published"], false);
    let refused = server.call("POST", "/v1/pipelines/bare/runs", Some(&alice), Some(&json!({})));
    assert_eq!((refused.status, refused.problem()["field"].as_str()), (400, Some("inputs.text")));
}

#[test]
fn sigterm_records_every_run_and_a_killed_server_restarts_cleanly() {
    let project = Project::new();
    let manifest = spinning_pipeline(&project);
    let alice = token(&project, "alice", false);

    // SIGTERM: the spinning run is cancelled after the grace period, recorded, exit 0.
    let server = Server::start(&project, &["--grace", "200ms"]);
    publish(&project, &server, &alice, &manifest, &[]);
    let cancelled = trigger(&server, &alice, "spin", &json!({}));
    wait_for_step(&server, &alice, &cancelled, "slow");
    send_signal(server.pid(), libc::SIGTERM);
    assert_eq!(server.wait(), Some(0));

    // SIGKILL mid-run: the restart settles the run as killed and keeps its artifacts.
    let server = Server::start(&project, &[]);
    let document = server.call("GET", &format!("/v1/runs/{cancelled}"), Some(&alice), None).json();
    assert_eq!(document["status"], "cancelled", "{document}");
    let killed = trigger(&server, &alice, "spin", &json!({}));
    wait_for_step(&server, &alice, &killed, "slow");
    send_signal(server.pid(), libc::SIGKILL);
    server.wait();
    let server = Server::start(&project, &[]);
    let document = server.call("GET", &format!("/v1/runs/{killed}"), Some(&alice), None).json();
    assert_eq!(document["status"], "killed", "{document}");
    let listed = server.call("GET", "/v1/runs?status=killed", Some(&alice), None).json();
    assert_eq!(listed["runs"][0]["id"], killed.as_str());
    let quick = step(&document, "quick")["outputs"]["result"].as_str().unwrap().to_owned();
    assert_eq!(server.call("GET", &format!("/v1/artifacts/{quick}"), Some(&alice), None).text(), "SPIN");
    // The server still runs pipelines, reusing what the killed run stored.
    let again = trigger(&server, &alice, "spin", &json!({ "params": { "mode": "upper" } }));
    let document = finished(&server, &alice, &again);
    assert_eq!(
        (document["status"].as_str(), step(&document, "quick")["status"].as_str()),
        (Some("succeeded"), Some("cached"))
    );
}

#[test]
fn a_token_over_its_rate_is_told_when_to_come_back() {
    let project = Project::new();
    let alice = token(&project, "alice", false);
    let server = Server::start(&project, &["--rate-limit", "1"]);
    let statuses: Vec<u16> = (0..4).map(|_| server.call("GET", "/v1/runs", Some(&alice), None).status).collect();
    assert_eq!(&statuses[..2], [200, 200], "a burst of twice the rate");
    let refused = server.call("GET", "/v1/runs", Some(&alice), None);
    assert_eq!(refused.status, 429);
    assert!(refused.headers["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
}

/// The runs of schedule `id`, as (slot, run id).
fn scheduled_runs(server: &Server, token: &str, id: &str) -> Vec<(String, String)> {
    let page =
        server.call("GET", &format!("/v1/runs?page_size=500&label=weir.schedule={id}"), Some(token), None).json();
    let runs = page["runs"].as_array().unwrap();
    runs.iter()
        .map(|run| (run["labels"]["weir.slot"].as_str().unwrap().to_owned(), run["id"].as_str().unwrap().to_owned()))
        .collect()
}

fn wait_for_runs(server: &Server, token: &str, id: &str, count: usize) -> Vec<(String, String)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let runs = scheduled_runs(server, token, id);
        if runs.len() >= count {
            return runs;
        }
        assert!(Instant::now() < deadline, "schedule {id} fired {} run(s), not {count}", runs.len());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn schedules_fire_each_slot_once_across_a_restart_and_files_trigger_runs() {
    let project = Project::new();
    let manifest = up_pipeline(&project, "scheduled");
    let alice = token(&project, "alice", false);
    let bob = token(&project, "bob", false);
    let drop_dir = project.path().join("drop");
    std::fs::create_dir_all(&drop_dir).unwrap();
    let watch_root = format!("alice={}", drop_dir.display());
    let server = Server::start(&project, &["--watch-root", &watch_root]);
    publish(&project, &server, &alice, &manifest, &[]);

    for (body, status, field) in [
        (json!({ "pipeline": "up", "cron": "every second" }), 400, Some("cron")),
        (json!({ "pipeline": "up", "cron": "* * * * * *", "timezone": "Mars/Olympus" }), 400, Some("timezone")),
        (json!({ "pipeline": "up", "cron": "* * * * * *", "params": { "mode": 1 } }), 400, Some("params.mode")),
        (json!({ "pipeline": "up" }), 400, Some("cron")),
        (json!({ "pipeline": "up", "watch": { "path": "../etc/passwd", "input": "text" } }), 400, Some("watch.path")),
        (json!({ "pipeline": "up", "watch": { "path": "t.txt", "input": "nope" } }), 400, Some("watch.input")),
        (json!({ "pipeline": "nope", "cron": "* * * * * *" }), 404, None),
    ] {
        let reply = server.call("POST", "/v1/schedules", Some(&alice), Some(&body));
        assert_eq!(reply.status, status, "{body}: {}", reply.text());
        assert_eq!(reply.problem()["field"].as_str(), field, "{body}");
    }
    // Bob has no watched directory, and sees no schedule of alice's.
    let bobs = server.call(
        "POST",
        "/v1/schedules",
        Some(&bob),
        Some(&json!({ "pipeline": "up", "watch": { "path": "t.txt", "input": "text" } })),
    );
    assert_eq!((bobs.status, bobs.problem()["field"].as_str()), (400, Some("watch.path")), "bob may watch nothing");

    let created =
        server.call("POST", "/v1/schedules", Some(&alice), Some(&json!({ "pipeline": "up", "cron": "* * * * * *" })));
    assert_eq!(created.status, 201, "{}", created.text());
    let id = created.json()["id"].as_str().unwrap().to_owned();
    assert!(created.json()["next_fire"].as_f64().is_some());
    assert_eq!(server.call("GET", &format!("/v1/schedules/{id}"), Some(&bob), None).status, 404);
    wait_for_runs(&server, &alice, &id, 2);

    // Paused, it fires nothing.
    assert_eq!(server.call("POST", &format!("/v1/schedules/{id}/pause"), Some(&alice), None).json()["paused"], true);
    std::thread::sleep(Duration::from_millis(300));
    let paused = scheduled_runs(&server, &alice, &id).len();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(scheduled_runs(&server, &alice, &id).len(), paused);

    // Killed and restarted, the schedule goes on without firing a slot twice.
    server.call("POST", &format!("/v1/schedules/{id}/resume"), Some(&alice), None);
    wait_for_runs(&server, &alice, &id, paused + 1);
    send_signal(server.pid(), libc::SIGKILL);
    server.wait();
    let server = Server::start(&project, &["--watch-root", &watch_root]);
    let before = scheduled_runs(&server, &alice, &id).len();
    let runs = wait_for_runs(&server, &alice, &id, before + 2);
    let mut slots: Vec<&String> = runs.iter().map(|(slot, _)| slot).collect();
    slots.sort();
    slots.dedup();
    assert_eq!(slots.len(), runs.len(), "a slot fired twice: {runs:?}");
    let schedule = server.call("GET", &format!("/v1/schedules/{id}"), Some(&alice), None).json();
    assert!(schedule["fires"].as_array().unwrap().iter().any(|fire| fire["outcome"] == "started"), "{schedule}");
    assert_eq!(server.call("DELETE", &format!("/v1/schedules/{id}"), Some(&alice), None).status, 204);

    // A watched file triggers a run with its content as the input.
    let watch = json!({ "pipeline": "up", "watch": { "path": "incoming.txt", "input": "text" } });
    let created = server.call("POST", "/v1/schedules", Some(&alice), Some(&watch));
    assert_eq!(created.status, 201, "{}", created.text());
    let watcher = created.json()["id"].as_str().unwrap().to_owned();
    std::fs::write(drop_dir.join("incoming.txt"), "dropped off").unwrap();
    let (slot, run) = wait_for_runs(&server, &alice, &watcher, 1).remove(0);
    assert_eq!(slot, "change-1");
    let document = finished(&server, &alice, &run);
    let output = document["outputs"]["shouted"].as_str().unwrap();
    assert_eq!(server.call("GET", &format!("/v1/artifacts/{output}"), Some(&alice), None).text(), "DROPPED OFF");
}

#[test]
fn a_directory_artifact_downloads_as_a_tar_archive() {
    let project = Project::new();
    std::fs::create_dir_all(project.path().join("dir/build")).unwrap();
    std::fs::copy(project.path().join("tool-p1.wasm"), project.path().join("dir/build/tool.wasm")).unwrap();
    let manifest = project.write(
        "dir/pipeline.toml",
        "name = \"many\"\n[steps.make]\nmodule = \"build/tool.wasm\"\nargs = [\"files\", \"3\"]\noutputs = { many = \"dir\", result = \"file\" }\n",
    );
    let alice = token(&project, "alice", false);
    let server = Server::start(&project, &[]);
    publish(&project, &server, &alice, &manifest, &[]);
    let document = finished(&server, &alice, &trigger(&server, &alice, "many", &json!({})));
    let many = step(&document, "make")["outputs"]["many"].as_str().unwrap().to_owned();
    let reply = server.call("GET", &format!("/v1/artifacts/{many}"), Some(&alice), None);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.headers["content-type"], "application/x-tar");
    let archive = project.path().join("many.tar");
    std::fs::write(&archive, &reply.body).unwrap();
    let listed = Command::new("tar").arg("-tf").arg(&archive).output().expect("tar");
    let mut names: Vec<String> = String::from_utf8(listed.stdout).unwrap().lines().map(str::to_owned).collect();
    names.sort();
    assert_eq!(names, ["0", "1", "2"]);
}

#[test]
fn admins_set_tenants_quotas_which_the_file_keeps_and_runs_obey_at_once() {
    let project = Project::new();
    let manifest = up_pipeline(&project, "fourteen bytes");
    let admin = token(&project, "ops", true);
    let alice = token(&project, "alice", false);
    let server = Server::start(&project, &[]);
    let tenants_file = project.workspace().join("tenants.toml");

    let put = |token: &str, name: &str, body: Value| {
        server.call("PUT", &format!("/v1/tenants/{name}"), Some(token), Some(&body))
    };
    assert_eq!(put(&alice, "alice", json!({ "store": "1GiB" })).status, 403, "only admins set quotas");
    assert_eq!(server.call("GET", "/v1/tenants", Some(&admin), None).json(), json!({ "tenants": [] }));
    for (body, field) in [
        (json!({ "memory": "lots" }), "memory"),
        (json!({ "concurrent_steps": 0 }), "concurrent_steps"),
        (json!({ "limits": { "timeout": "soon" } }), "limits.timeout"),
        (json!({ "cpus": 2 }), ""),
    ] {
        let reply = put(&admin, "alice", body.clone());
        assert_eq!(reply.status, 400, "{body}: {}", reply.text());
        if !field.is_empty() {
            assert_eq!(reply.problem()["field"], field, "{body}");
        }
        assert!(!tenants_file.exists(), "a refused change writes nothing");
    }
    assert_eq!(put(&admin, "not%20a%20name", json!({})).problem()["field"], "name");

    let reply = put(&admin, "ops", json!({}));
    assert_eq!(reply.status, 201, "{}", reply.text());
    let reply = put(&admin, "alice", json!({ "store": 10, "limits": { "timeout": "1m" } }));
    assert_eq!(reply.status, 201, "{}", reply.text());
    assert_eq!(reply.json(), json!({ "name": "alice", "quota": { "store": 10, "limits": { "timeout": "1m" } } }));
    let text = std::fs::read_to_string(&tenants_file).unwrap();
    assert!(text.contains("[tenants.alice]\nstore = 10\nlimits = { timeout = \"1m\" }"), "{text}");

    // Alice reads her own quota only; another tenant is 404 like a missing one.
    let own = server.call("GET", "/v1/tenants", Some(&alice), None).json();
    assert_eq!(own["tenants"].as_array().unwrap().len(), 1, "{own}");
    assert_eq!(server.call("GET", "/v1/tenants/alice", Some(&alice), None).json()["quota"]["store"], 10);
    assert_eq!(server.call("GET", "/v1/tenants/ops", Some(&alice), None).status, 404);
    // Now that tenants are listed, a token only for one of them.
    let reply = server.call("POST", "/v1/tokens", Some(&admin), Some(&json!({ "tenant": "zed" })));
    assert_eq!(reply.problem()["field"], "tenant", "{}", reply.text());

    // The 10-byte store quota holds the run; raising it lets the next one through.
    publish(&project, &server, &alice, &manifest, &[]);
    let held = trigger(&server, &alice, "up", &json!({}));
    let (last, data) = events(&server, &alice, &held).pop().unwrap();
    assert_eq!((last.as_str(), &data["status"]), ("run_finished", &json!("failed")), "{data}");
    assert!(data["error"].as_str().unwrap().contains("larger than the 10 bytes"), "{data}");
    assert_eq!(put(&admin, "alice", json!({ "store": "1MiB" })).status, 200);
    let run = trigger(&server, &alice, "up", &json!({}));
    assert_eq!(finished(&server, &alice, &run)["status"], "succeeded");
    assert!(std::fs::read_to_string(&tenants_file).unwrap().contains("store = \"1MiB\""));
}

#[test]
fn garbage_collection_keeps_what_the_server_published_and_uploaded() {
    let project = Project::new();
    let manifest = up_pipeline(&project, "kept text");
    let alice = token(&project, "alice", false);
    let server = Server::start(&project, &[]);
    publish(&project, &server, &alice, &manifest, &[]);
    // Uploaded but not yet used by any run or version.
    let text = b"an upload".to_vec();
    let digest = format!("blake3:{}", blake3::hash(&text).to_hex());
    assert_eq!(server.request("PUT", &format!("/v1/blobs/{digest}"), Some(&alice), Some(text), &[]).status, 201);

    // Nothing of the history references these blobs, yet gc keeps them all.
    let output = project.weir(&["gc", "--json"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["removed_objects"], 0, "{report}");

    // A trigger with the upload as input writes a new bundle from the blobs: module and all.
    let run = trigger(&server, &alice, "up", &json!({ "inputs": { "text": digest } }));
    let document = finished(&server, &alice, &run);
    assert_eq!(document["status"], "succeeded", "{document}");
    let shouted = document["outputs"]["shouted"].as_str().unwrap();
    assert_eq!(server.call("GET", &format!("/v1/artifacts/{shouted}"), Some(&alice), None).text(), "AN UPLOAD");
}
