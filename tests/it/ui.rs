//! The web UI of `weir serve` over HTTP, as a browser uses it: signing in,
//! sessions, tenant isolation, CSRF and origin checks, the security
//! headers, text from steps shown as text, the trigger form, live log
//! events, and the designer. (`tests/ui` drives the same pages in Chromium.)

use serde_json::{Value, json};
use weir_tests::Project;

use crate::server::{Server, finished, publish, spinning_pipeline, step, token, trigger, up_pipeline, wait_for_step};

/// A response, without following redirects.
struct Page {
    status: u16,
    headers: ureq::http::HeaderMap,
    body: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers.get("location").and_then(|value| value.to_str().ok()).unwrap_or("")
    }
}

/// A browser's requests: the session cookie and this site's origin.
struct Browser<'a> {
    server: &'a Server,
    cookie: Option<String>,
}

impl<'a> Browser<'a> {
    fn new(server: &'a Server) -> Self {
        Browser { server, cookie: None }
    }

    fn send(&self, method: &str, path: &str, body: Option<(&str, String)>, extra: &[(&str, &str)]) -> Page {
        let agent: ureq::Agent =
            ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build().into();
        let mut request = ureq::http::Request::builder().method(method).uri(format!("{}{path}", self.server.base));
        if let Some(cookie) = &self.cookie {
            request = request.header("Cookie", cookie);
        }
        if method != "GET" && !extra.iter().any(|(name, _)| *name == "Origin") {
            request = request.header("Origin", &self.server.base);
        }
        let (content_type, bytes) = body.unwrap_or(("text/plain", String::new()));
        request = request.header("Content-Type", content_type);
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        let mut response = agent.run(request.body(bytes.into_bytes()).unwrap()).unwrap();
        let body = response.body_mut().read_to_string().unwrap_or_default();
        Page { status: response.status().as_u16(), headers: response.headers().clone(), body }
    }

    fn get(&self, path: &str) -> Page {
        self.send("GET", path, None, &[])
    }

    fn form(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let body = fields.iter().map(|(name, value)| format!("{name}={}", encode(value))).collect::<Vec<_>>().join("&");
        self.send("POST", path, Some(("application/x-www-form-urlencoded", body)), &[])
    }

    fn json(&self, path: &str, body: &Value, csrf: &str) -> (u16, Value) {
        let page = self.send("POST", path, Some(("application/json", body.to_string())), &[("X-CSRF-Token", csrf)]);
        let value = serde_json::from_str(&page.body).unwrap_or_else(|_| panic!("not JSON: {}", page.body));
        (page.status, value)
    }

    /// Signs in with `token` and keeps the session cookie.
    fn sign_in(&mut self, token: &str) {
        let page = self.form("/login", &[("token", token), ("next", "/")]);
        assert_eq!(page.status, 303, "{}", page.body);
        let cookie = page.headers["set-cookie"].to_str().unwrap();
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
        self.cookie = Some(cookie.split(';').next().unwrap().to_owned());
    }

    /// The CSRF secret of the session, as a page's forms carry it.
    fn csrf(&self) -> String {
        let page = self.get("/pipelines");
        attribute(&page.body, "name=\"csrf\" value=\"").expect("a form with the CSRF secret")
    }
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (byte as char).to_string(),
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// The value after `prefix` up to the next quote, with HTML's escapes undone.
fn attribute(html: &str, prefix: &str) -> Option<String> {
    let start = html.find(prefix)? + prefix.len();
    let value = &html[start..start + html[start..].find('"')?];
    Some(
        value
            .replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&#39;", "'")
            .replace("&amp;", "&"),
    )
}

#[test]
fn signing_in_makes_a_session_that_sees_only_its_tenant_until_it_ends() {
    let project = Project::new();
    let manifest = up_pipeline(&project, "hello");
    let alice = token(&project, "alice", false);
    let bob = token(&project, "bob", false);
    let server = Server::start(&project, &[]);
    publish(&project, &server, &alice, &manifest, &[]);
    let id = trigger(&server, &alice, "up", &json!({}));
    let document = finished(&server, &alice, &id);
    let output = step(&document, "again")["outputs"]["result"].as_str().unwrap().to_owned();

    let mut browser = Browser::new(&server);
    let away = browser.get(&format!("/runs/{id}"));
    assert_eq!((away.status, away.location()), (303, format!("/login?next=%2Fruns%2F{id}").as_str()));
    let refused = browser.form("/login", &[("token", "weir_nope_nope")]);
    assert_eq!(refused.status, 401);
    assert!(refused.body.contains("unknown or revoked"), "{}", refused.body);

    browser.sign_in(&alice);
    let runs = browser.get("/");
    assert_eq!(runs.status, 200);
    assert!(runs.body.contains(&id), "the run is listed");
    let policy = runs.headers["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("script-src 'self'") && !policy.contains("unsafe-inline"), "{policy}");
    assert_eq!(runs.headers["x-content-type-options"], "nosniff");
    let run = browser.get(&format!("/runs/{id}"));
    assert_eq!(run.status, 200);
    for shown in ["data-step=\"up\"", "data-step=\"again\"", "s-ran", "Timeline"] {
        assert!(run.body.contains(shown), "{shown} on the run page");
    }
    let artifact = browser.get(&format!("/artifacts/{output}"));
    assert_eq!((artifact.status, artifact.body.as_str()), (200, "HELLO"));

    // Bob's session sees none of it, exactly as if it did not exist.
    let mut other = Browser::new(&server);
    other.sign_in(&bob);
    for path in
        [format!("/runs/{id}"), format!("/runs/{id}/steps/up"), "/pipelines/up".into(), format!("/artifacts/{output}")]
    {
        assert_eq!(other.get(&path).status, 404, "{path}");
    }
    assert!(!other.get("/").body.contains(&id));

    // Signing out needs the session's secret; then the cookie is worthless.
    assert_eq!(browser.form("/logout", &[]).status, 403);
    let csrf = browser.csrf();
    assert_eq!(browser.form("/logout", &[("csrf", &csrf)]).location(), "/login");
    assert_eq!(browser.get("/").status, 303);

    // Revoking the token ends its sessions at once.
    browser.sign_in(&alice);
    let id_of_token = alice.split('_').nth(1).unwrap();
    assert!(project.weir(&["token", "revoke", id_of_token]).status.success());
    assert_eq!(browser.get("/").location(), "/login?next=%2F");
}

#[test]
fn state_changes_need_the_session_secret_and_this_origin_and_logs_stream_live() {
    let project = Project::new();
    let manifest = spinning_pipeline(&project);
    std::fs::copy(project.path().join("sdk-tool.wasm"), project.path().join("spin/build/sdk.wasm")).unwrap();
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace(
            "module = \"build/tool.wasm\"\nargs = [\"${params.mode}\"]",
            "module = \"build/sdk.wasm\"\nargs = [\"chatty-spin\"]",
        ),
    )
    .unwrap();
    let alice = token(&project, "alice", false);
    let server = Server::start(&project, &[]);
    publish(&project, &server, &alice, &manifest, &[]);
    let id = trigger(&server, &alice, "spin", &json!({}));
    wait_for_step(&server, &alice, &id, "quick");

    let mut browser = Browser::new(&server);
    browser.sign_in(&alice);
    let csrf = browser.csrf();
    let path = format!("/runs/{id}/cancel");
    assert_eq!(browser.form(&path, &[]).status, 403, "no secret");
    assert_eq!(browser.form(&path, &[("csrf", "0000")]).status, 403, "a wrong secret");
    let foreign = browser.send(
        "POST",
        &path,
        Some(("application/x-www-form-urlencoded", format!("csrf={csrf}"))),
        &[("Origin", "http://evil.example")],
    );
    assert_eq!(foreign.status, 403, "another origin");
    let page = browser.get(&format!("/runs/{id}"));
    assert!(page.body.contains(&format!("data-live=\"/runs/{id}/live\"")), "a running run's page follows it live");

    // The spinning step's first line arrives while it runs.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let live = server.call("GET", &format!("/v1/runs/{id}"), Some(&alice), None).json();
        assert_eq!(live["status"], "running");
        let step_page = browser.get(&format!("/runs/{id}/steps/slow"));
        if step_page.body.contains("Streamed as the step writes them") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the slow step's page never showed it running");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Followed while the step runs: its first line arrives live, before the cancel.
    let mut followed = server.follow(&alice, &id);
    let mut events: Vec<(String, Value)> = Vec::new();
    while !events.iter().any(|(name, data)| name == "log" && data["step"] == "slow") {
        events.push(followed.next().expect("the stream ended before the slow step wrote a line"));
    }
    let cancelled = browser.form(&path, &[("csrf", &csrf)]);
    assert_eq!((cancelled.status, cancelled.location()), (303, format!("/runs/{id}").as_str()));
    let shown = server.call("GET", &format!("/v1/runs/{id}"), Some(&alice), None).json();
    assert_eq!(shown["status"], "cancelled", "the page shown after cancelling says how the run ended");
    events.extend(followed);
    let log = events.iter().position(|(name, data)| name == "log" && data["step"] == "slow");
    let log = log.unwrap_or_else(|| panic!("no log event of the slow step: {events:?}"));
    assert_eq!(events[log].1["text"], "warming up\n");
    assert_eq!(events[log].1["stream"], "stdout");
    let ended = events.iter().position(|(name, data)| name == "step_finished" && data["step"] == "slow").unwrap();
    assert!(log < ended, "the log line came before the step ended");
    assert_eq!(finished(&server, &alice, &id)["status"], "cancelled");

    let retried = browser.form(&format!("/runs/{id}/retry"), &[("csrf", &csrf)]);
    assert_eq!(retried.status, 303);
    let new_id = retried.location().strip_prefix("/runs/").unwrap().to_owned();
    assert_ne!(new_id, id);
    server.call("POST", &format!("/v1/runs/{new_id}/cancel"), Some(&alice), None);
}

#[test]
fn text_a_step_writes_is_shown_as_text_never_as_markup() {
    let project = Project::new();
    project.write("hostile/data/in.txt", "x");
    std::fs::create_dir_all(project.path().join("hostile/build")).unwrap();
    std::fs::copy(project.path().join("sdk-tool.wasm"), project.path().join("hostile/build/sdk.wasm")).unwrap();
    let manifest = project.write(
        "hostile/pipeline.toml",
        "name = \"hostile\"\n[steps.evil]\nmodule = \"build/sdk.wasm\"\nargs = [\"hostile\"]\noutputs = { result = \"file\" }\n",
    );
    let alice = token(&project, "alice", false);
    let server = Server::start(&project, &[]);
    publish(&project, &server, &alice, &manifest, &[]);
    let id = trigger(&server, &alice, "hostile", &json!({}));
    assert_eq!(finished(&server, &alice, &id)["status"], "succeeded");
    let mut browser = Browser::new(&server);
    browser.sign_in(&alice);
    for path in [format!("/runs/{id}/steps/evil"), format!("/runs/{id}"), "/".into(), "/metrics".into()] {
        let page = browser.get(&path);
        assert_eq!(page.status, 200, "{path}");
        for raw in ["<script>alert", "<img src=x"] {
            assert!(!page.body.contains(raw), "{path} holds raw markup {raw}: {}", page.body);
        }
    }
    let step = browser.get(&format!("/runs/{id}/steps/evil")).body;
    assert!(
        step.contains("&lt;script&gt;alert(&#39;stdout&#39;)&lt;/script&gt;")
            || step.contains("&lt;script&gt;alert('stdout')&lt;/script&gt;"),
        "{step}"
    );
    assert!(step.contains("&lt;img src=x onerror=alert("), "{step}");
    assert!(step.contains("&lt;script&gt;alert("), "the metric's name is shown as text");
}

#[test]
fn the_trigger_form_checks_each_parameter_against_its_type() {
    let project = Project::new();
    project.write("typed/data/in.txt", "x");
    std::fs::create_dir_all(project.path().join("typed/build")).unwrap();
    std::fs::copy(project.path().join("tool-p1.wasm"), project.path().join("typed/build/tool.wasm")).unwrap();
    let manifest = project.write(
        "typed/pipeline.toml",
        "name = \"typed\"\n[params]\ncount = 2\nrate = 0.5\nloud = false\n\
         [steps.echo]\nmodule = \"build/tool.wasm\"\nargs = [\"args\", \"${params.count}\", \"${params.rate}\", \"${params.loud}\"]\noutputs = { result = \"file\" }\n",
    );
    let alice = token(&project, "alice", false);
    let server = Server::start(&project, &[]);
    publish(&project, &server, &alice, &manifest, &[]);
    let mut browser = Browser::new(&server);
    browser.sign_in(&alice);
    let form = browser.get("/pipelines/typed");
    for field in [
        "name=\"param.count\" type=\"number\" step=\"1\"",
        "name=\"param.rate\" type=\"number\" step=\"any\"",
        "select id=\"param-loud\"",
    ] {
        assert!(form.body.contains(field), "{field} in {}", form.body);
    }
    let csrf = browser.csrf();
    let fields = |count: &'static str| {
        vec![
            ("csrf", csrf.clone()),
            ("version", "1".into()),
            ("param.count", count.into()),
            ("param.rate", "0.5".into()),
            ("param.loud", "true".into()),
        ]
    };
    let send = |fields: Vec<(&str, String)>| {
        let borrowed: Vec<(&str, &str)> = fields.iter().map(|(name, value)| (*name, value.as_str())).collect();
        browser.form("/pipelines/typed/trigger", &borrowed)
    };
    let refused = send(fields("two"));
    assert_eq!(refused.status, 400);
    assert!(refused.body.contains("`two` is not integer"), "{}", refused.body);
    assert!(refused.body.contains("aria-invalid=\"true\""), "the field is marked");
    let started = send(fields("3"));
    assert_eq!(started.status, 303, "{}", started.body);
    let id = started.location().strip_prefix("/runs/").unwrap().to_owned();
    let document = finished(&server, &alice, &id);
    assert_eq!(document["params"], json!({ "count": 3, "rate": 0.5, "loud": true }));

    // The runs list pages: one run a page here, the newest first.
    let first = trigger(&server, &alice, "typed", &json!({}));
    finished(&server, &alice, &first);
    let page = browser.get("/runs?page_size=1&pipeline=typed");
    assert!(page.body.contains(&first) && !page.body.contains(&id), "{}", page.body);
    let next = attribute(&page.body, "rel=\"next\" href=\"").expect("a link to the next page");
    let older = browser.get(&next);
    assert!(older.body.contains(&id) && !older.body.contains(&first), "{}", older.body);

    // A schedule shows its next fire, and pauses and resumes from the page.
    let schedule =
        server.call("POST", "/v1/schedules", Some(&alice), Some(&json!({ "pipeline": "typed", "cron": "0 6 * * *" })));
    assert_eq!(schedule.status, 201, "{}", schedule.text());
    let schedule = schedule.json()["id"].as_str().unwrap().to_owned();
    let shown = browser.get("/pipelines/typed").body;
    assert!(shown.contains(&schedule) && shown.contains("06:00:00") && shown.contains("s-active"), "{shown}");
    assert_eq!(browser.form(&format!("/schedules/{schedule}/pause"), &[]).status, 403, "no secret");
    let paused = browser.form(&format!("/schedules/{schedule}/pause"), &[("csrf", &csrf)]);
    assert_eq!(paused.status, 303);
    assert_eq!(server.call("GET", &format!("/v1/schedules/{schedule}"), Some(&alice), None).json()["paused"], true);
    assert!(browser.get("/pipelines/typed").body.contains("s-paused"));
    browser.form(&format!("/schedules/{schedule}/resume"), &[("csrf", &csrf)]);
    assert_eq!(server.call("GET", &format!("/v1/schedules/{schedule}"), Some(&alice), None).json()["paused"], false);
}

#[test]
fn the_designer_round_trips_a_version_and_saves_edits_as_one_that_runs() {
    let project = Project::new();
    let manifest = up_pipeline(&project, "hello");
    let alice = token(&project, "alice", false);
    let server = Server::start(&project, &[]);
    publish(&project, &server, &alice, &manifest, &[]);
    let mut browser = Browser::new(&server);
    browser.sign_in(&alice);
    let page = browser.get("/pipelines/up/designer");
    assert_eq!(page.status, 200);
    let data: Value = serde_json::from_str(&attribute(&page.body, "data-model=\"").unwrap()).unwrap();
    let csrf = attribute(&page.body, "data-csrf=\"").unwrap();
    let text = data["checked"]["manifest"].as_str().unwrap().to_owned();
    assert_eq!(text, std::fs::read_to_string(&manifest).unwrap(), "the manifest as published");
    assert_eq!(data["modules"], json!(["build/tool.wasm"]), "the version's modules to choose from");

    // Opened and saved unchanged: the same version.
    let (status, saved) = browser.json("/pipelines/up/designer", &json!({ "version": "1", "manifest": text }), &csrf);
    assert_eq!((status, &saved["version"], &saved["created"]), (200, &json!("1"), &json!(false)), "{saved}");
    // Without the session's secret nothing is saved.
    let (status, _) = browser.json("/pipelines/up/designer", &json!({ "version": "1", "manifest": text }), "nope");
    assert_eq!(status, 403);

    let edit = |manifest: &str, edit: Value| {
        browser.json(
            "/pipelines/up/designer/check",
            &json!({ "version": "1", "manifest": manifest, "edit": edit }),
            &csrf,
        )
    };
    let (status, added) = edit(&text, json!({ "op": "add_step", "step": "third", "module": "build/tool.wasm" }));
    assert_eq!(status, 200, "{added}");
    let (_, wired) = edit(
        added["manifest"].as_str().unwrap(),
        json!({ "op": "connect", "step": "third", "input": "text", "source": "again.nope" }),
    );
    let problem = wired["problems"].as_array().unwrap().iter().find(|p| p["step"] == "third");
    let problem = problem.unwrap_or_else(|| panic!("the engine's problem is on the step at fault: {wired}"));
    assert!(problem["message"].as_str().unwrap().contains("nope"), "{problem}");
    let (status, refused) =
        browser.json("/pipelines/up/designer", &json!({ "version": "1", "manifest": wired["manifest"] }), &csrf);
    assert_eq!(status, 400, "a pipeline the engine refuses is not saved: {refused}");
    let (_, rewired) = edit(
        wired["manifest"].as_str().unwrap(),
        json!({ "op": "connect", "step": "third", "input": "text", "source": "again.result" }),
    );
    let (_, output) = edit(
        rewired["manifest"].as_str().unwrap(),
        json!({ "op": "set_output", "step": "third", "output": "result", "kind": "file" }),
    );
    let (_, argued) =
        edit(output["manifest"].as_str().unwrap(), json!({ "op": "set_args", "step": "third", "args": ["upper"] }));
    let (_, limited) = edit(
        argued["manifest"].as_str().unwrap(),
        json!({ "op": "set_limit", "step": "third", "name": "timeout", "value": "1m" }),
    );
    assert_eq!(limited["problems"], json!([]), "{limited}");
    let edited = limited["manifest"].as_str().unwrap();
    let added = "\n[steps.third]\nmodule = \"build/tool.wasm\"\ninputs = { text = \"again.result\" }\n\
                 outputs = { result = \"file\" }\nargs = [\"upper\"]\nlimits = { timeout = \"1m\" }\n";
    assert!(edited.contains(added), "the step as a person would write it:\n{edited}");
    assert_eq!(edited.replacen(added, "", 1), text, "the rest is kept as written");

    let (status, saved) = browser.json("/pipelines/up/designer", &json!({ "version": "1", "manifest": edited }), &csrf);
    assert_eq!((status, &saved["version"], &saved["created"]), (201, &json!("2"), &json!(true)), "{saved}");
    let id = trigger(&server, &alice, "up", &json!({ "version": "2" }));
    let document = finished(&server, &alice, &id);
    assert_eq!(document["status"], "succeeded", "{document}");
    // `third` upper-cases what is upper-case already: the same key as
    // `again`, whose result it reuses.
    assert_eq!(step(&document, "third")["status"], "cached", "{document}");
    assert_eq!(step(&document, "third")["outputs"]["result"], step(&document, "again")["outputs"]["result"]);
}
