//! Tenants: namespaced cache entries, runs and artifacts; quotas; and fair
//! admission, so one tenant's long queue does not starve another's step.

use std::collections::BTreeMap;
use std::time::Duration;

use weir::{Engine, OutputKind, Pipeline, RunOptions, StepBuilder, TenantQuota};
use weir_tests::{Project, RunDocument, Wasi, output_digest, tool};

/// Writes an upper-casing pipeline of `text` in each tenant's directory.
fn upper_pipeline(project: &Project, tenants: &[&str], text: &str) {
    for tenant in tenants {
        project.write_as(tenant, "text.txt", text);
        project.write_as(
            tenant,
            "pipeline.toml",
            "name = \"up\"\n[inputs]\ntext = \"text.txt\"\n[steps.up]\nmodule = \"tool-p1.wasm\"\nargs = [\"upper\"]\ninputs = { text = \"inputs.text\" }\noutputs = { result = \"file\" }\n",
        );
    }
}

fn weir_as(project: &Project, tenant: &str, args: &[&str]) -> std::process::Output {
    project.weir_as(tenant, args)
}

fn run_as(project: &Project, tenant: &str) -> (i32, serde_json::Value) {
    project.run_json_as(tenant, &[])
}

#[test]
fn tenants_do_not_share_cache_entries_runs_or_artifacts() {
    let project = Project::new();
    upper_pipeline(&project, &["alice", "bob"], "alice's secret");
    let (code, alice) = run_as(&project, "alice");
    assert_eq!(code, 0, "{alice}");
    let secret = output_digest(&alice, "up", "result").to_owned();

    let (_, bob) = run_as(&project, "bob");
    assert_eq!(bob.step("up")["status"], "ran", "bob must not reuse alice's entry");
    let (_, alice_again) = run_as(&project, "alice");
    assert_eq!(alice_again.step("up")["status"], "cached");

    upper_pipeline(&project, &["bob"], "bob's own text");
    let (_, bob_own) = run_as(&project, "bob");
    let bobs = output_digest(&bob_own, "up", "result").to_owned();

    let runs = |tenant: &str| {
        let output = weir_as(&project, tenant, &["runs", "--json"]);
        let runs: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        runs.as_array().unwrap().iter().map(|run| run["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    let (alice_runs, bob_runs) = (runs("alice"), runs("bob"));
    assert_eq!(alice_runs.len(), 2);
    assert_eq!(bob_runs.len(), 2);
    assert!(alice_runs.iter().all(|id| !bob_runs.contains(id)));

    let alice_run = alice["id"].as_str().unwrap();
    let output = weir_as(&project, "bob", &["show", alice_run]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no run"), "bob cannot see alice's run");

    let output = weir_as(&project, "alice", &["cat", &bobs]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains(&format!("no artifact {bobs} in the store")));
    let output = weir_as(&project, "alice", &["cat", &secret]);
    assert_eq!(String::from_utf8_lossy(&output.stdout), "ALICE'S SECRET");
    let output = weir_as(&project, "bob", &["lineage", &secret, "--json"]);
    let chain: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let producers: Vec<&str> = chain.as_array().unwrap().iter().map(|node| node["run_id"].as_str().unwrap()).collect();
    assert!(!producers.is_empty(), "bob produced the same bytes in his own run");
    assert!(producers.iter().all(|id| bob_runs.iter().any(|own| own == id)), "lineage shows only bob's runs");
}

#[test]
fn quotas_and_maximum_limits_of_a_tenants_file_apply() {
    let project = Project::new();
    project.write(
        ".weir/tenants.toml",
        r#"
[tenants.small]
concurrent_steps = 1
store = "8KiB"
limits = { memory = "64MiB", timeout = "1m" }
[tenants.big]
"#,
    );
    for tenant in ["small", "big"] {
        project.write_as(tenant, "big.txt", vec![b'a'; 4096]);
        project.write_as(tenant, "small.txt", "ok");
    }
    let manifest = |text: &str| {
        for tenant in ["small", "big"] {
            project.write_as(tenant, "pipeline.toml", text);
        }
    };
    manifest(
        r#"
name = "quota"
[inputs]
big = "big.txt"
small = "small.txt"
[steps.large_output]
module = "tool-p1.wasm"
args = ["upper"]
inputs = { text = "inputs.big" }
outputs = { result = "file" }
[steps.small_output]
module = "tool-p1.wasm"
args = ["copy", "data", "result"]
inputs = { data = "inputs.small" }
outputs = { result = "file" }
[steps.nap_a]
module = "tool-p1.wasm"
args = ["nap", "300", "a"]
outputs = { result = "file" }
[steps.nap_b]
module = "tool-p2.wasm"
args = ["nap", "300", "b"]
outputs = { result = "file" }
[steps.greedy]
module = "tool-p1.wasm"
args = ["alloc"]
outputs = { result = "file" }
"#,
    );
    let (code, summary) = project.run_json_as("small", &["--jobs", "2"]);
    assert_eq!(code, 1, "{summary}");
    let error = summary.step("large_output")["error"].as_str().unwrap();
    assert!(
        error.contains("outputs and logs of 4096 bytes would exceed tenant `small`'s store quota")
            && error.contains("of 8192 bytes in use)"),
        "{error}"
    );
    assert_eq!(summary.step("small_output")["status"], "ran");
    let greedy = summary.step("greedy")["error"].as_str().unwrap();
    assert!(greedy.contains("memory limit of 64MiB"), "the default is lowered to the tenant's maximum: {greedy}");
    let interval = |step: &str| {
        let text = project.cat_as("small", output_digest(&summary, step, "result"));
        let (start, end) = text.split_once(' ').unwrap();
        (start.parse::<u64>().unwrap(), end.parse::<u64>().unwrap())
    };
    let (a, b) = (interval("nap_a"), interval("nap_b"));
    assert!(a.1 <= b.0 || b.1 <= a.0, "concurrent_steps = 1 ran two steps at once: {a:?} {b:?}");

    let (code, big) = project.run_json_as("big", &[]);
    assert_eq!(big.step("large_output")["status"], "ran", "{big}");
    assert_eq!(code, 1, "alloc without a tenant maximum still hits the default limit");

    let output = project.weir(&["run", "pipeline.toml", "--tenant", "mallory"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("no tenant named `mallory` is registered (registered: big, small)")
    );

    let tenants = std::fs::read_to_string(project.workspace().join("tenants.toml")).unwrap();
    project.write(".weir/tenants.toml", format!("{tenants}\n[tenants.stuck]\nconcurrent_steps = 0\n"));
    let output = project.weir(&["run", "pipeline.toml", "--tenant", "stuck"]);
    assert_eq!(output.status.code(), Some(2), "a tenant that could never run a step is refused");
    assert!(String::from_utf8_lossy(&output.stderr).contains("tenant `stuck`: concurrent_steps must be at least 1"));
    project.write(".weir/tenants.toml", tenants);

    manifest(
        "name = \"asks\"\n[steps.s]\nmodule = \"tool-p1.wasm\"\nargs = [\"nothing\"]\nlimits = { memory = \"128MiB\" }\n",
    );
    let output =
        project.weir_as("small", &["run", project.tenant_dir("small").join("pipeline.toml").to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "step `s`, field `limits.memory`: limits.memory = 128MiB is above the maximum of tenant `small` (64MiB)"
        ),
        "{stderr}"
    );

    manifest(
        "name = \"asks\"\n[steps.s]\nmodule = \"tool-p1.wasm\"\nargs = [\"nothing\"]\nlimits = { timeout = \"none\" }\n",
    );
    let output =
        project.weir_as("small", &["run", project.tenant_dir("small").join("pipeline.toml").to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "uninterruptible code is refused to a tenant with a maximum timeout");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("limits.timeout = none is above the maximum of tenant `small` (60s)"), "{stderr}");
}

/// A tenant with a queue of long steps and a tenant with a single step
/// share one worker: the single step goes next, not after the queue.
#[test]
fn a_tenant_with_one_step_is_not_starved_by_another_tenants_queue() {
    let project = Project::new();
    let engine = Engine::builder()
        .workspace(project.workspace())
        .jobs(1)
        .tenant("busy", TenantQuota::default())
        .tenant("quiet", TenantQuota::default())
        .build()
        .unwrap();
    let naps = |name: &str, count: usize| {
        let mut builder = Pipeline::builder(name);
        for i in 0..count {
            builder = builder.step(
                StepBuilder::new(format!("nap{i}"), tool(Wasi::P1))
                    .args(["nap", "150", &format!("{name}{i}")])
                    .output("result", OutputKind::File),
            );
        }
        builder.build().unwrap()
    };
    let (busy, quiet) = (naps("busy", 12), naps("quiet", 1));
    let intervals = |engine: &Engine, report: &weir::RunReport| -> BTreeMap<String, (u64, u64)> {
        report
            .steps
            .iter()
            .map(|(name, step)| {
                let bytes = engine.store().read_file(&step.outputs["result"].digest).unwrap();
                let text = String::from_utf8(bytes).unwrap();
                let (start, end) = text.split_once(' ').unwrap();
                (name.clone(), (start.parse().unwrap(), end.parse().unwrap()))
            })
            .collect()
    };
    let (busy_report, quiet_report) = std::thread::scope(|scope| {
        let busy_run = scope.spawn(|| engine.run(&busy, &RunOptions::new().tenant("busy")).unwrap());
        std::thread::sleep(Duration::from_millis(400));
        let quiet_report = engine.run(&quiet, &RunOptions::new().tenant("quiet")).unwrap();
        (busy_run.join().unwrap(), quiet_report)
    });
    assert!(busy_report.succeeded() && quiet_report.succeeded());
    let quiet_start = intervals(&engine, &quiet_report)["nap0"].0;
    let busy_before = intervals(&engine, &busy_report).values().filter(|(start, _)| *start < quiet_start).count();
    assert!(busy_before <= 5, "{busy_before} of the busy tenant's 12 steps started before the quiet tenant's one");
}

#[test]
fn concurrent_runs_of_a_tenant_share_its_store_quota() {
    let project = Project::new();
    let text = project.write("text.txt", vec![b'a'; 1000]);
    // Alone, a run holds the input (1000 bytes), a nap's few bytes and one
    // new output of 1003 bytes: about 2030 of the 2500 allowed. Two at once
    // would hold about 3060.
    let quota = weir::TenantQuota::default().store_bytes(2500);
    let engine = weir::Engine::builder().workspace(project.workspace()).jobs(4).tenant("t", quota).build().unwrap();
    let pipeline = |word: &str| {
        weir::Pipeline::builder(format!("run-{word}"))
            .input("text", &text)
            .step(
                weir::StepBuilder::new("wait", weir_tests::tool(weir_tests::Wasi::P1))
                    .args(["nap", "500", word])
                    .output("result", weir::OutputKind::File),
            )
            .step(
                weir::StepBuilder::new("big", weir_tests::tool(weir_tests::Wasi::P1))
                    .args(["upper", word])
                    .input("text", "inputs.text")
                    .input("after", "wait.result")
                    .output("result", weir::OutputKind::File),
            )
            .build()
            .unwrap()
    };
    let options = weir::RunOptions::new().tenant("t");
    let first = engine.start(pipeline("1"), options.clone()).unwrap();
    let second = engine.start(pipeline("2"), options).unwrap();
    let reports = [first.wait().unwrap(), second.wait().unwrap()];
    let failed: Vec<String> = reports.iter().flat_map(|r| r.failures()).map(ToString::to_string).collect();
    assert_eq!(failed.len(), 1, "exactly one of the two outputs fits what is left: {failed:?}");
    assert!(failed[0].contains("would exceed tenant `t`'s store quota"), "{failed:?}");
}

#[test]
fn a_tenant_view_shows_only_the_tenants_own_runs_and_artifacts() {
    let project = Project::new();
    let engine = weir::Engine::builder()
        .workspace(project.workspace())
        .tenant("alice", weir::TenantQuota::default())
        .tenant("bob", weir::TenantQuota::default())
        .build()
        .unwrap();
    let pipeline = |word: &str| weir_tests::say_pipeline("words", word);
    let run_as =
        |tenant: &str, word: &str| engine.run(&pipeline(word), &weir::RunOptions::new().tenant(tenant)).unwrap();
    let (alices, bobs) = (run_as("alice", "mine"), run_as("bob", "secret"));
    let bobs_output = bobs.output("say", "result").unwrap().digest;

    let alice = engine.tenant("alice").unwrap();
    let runs: Vec<String> = alice.runs(&weir::RunFilter::newest(10)).unwrap().into_iter().map(|run| run.id).collect();
    assert_eq!(runs, std::slice::from_ref(&alices.run_id));
    assert_eq!(alice.run("last").unwrap().summary.id, alices.run_id);
    let not_hers = alice.run(&bobs.run_id).unwrap_err();
    assert!(matches!(not_hers, weir::Error::NotInHistory(_)), "{not_hers}");
    assert!(alice.step(&bobs.run_id, "say").is_err() && alice.explain(&bobs.run_id, "say").is_err());
    for refused in [alice.read_file(&bobs_output).err(), alice.lineage(&bobs_output).err()] {
        let refused = refused.expect("bob's artifact is not alice's to read");
        assert!(matches!(refused, weir::Error::ArtifactNotFound { .. }), "{refused}");
    }
    let prefix = &bobs_output.to_string()[..14];
    assert!(alice.artifact(prefix).is_err(), "a prefix does not find another tenant's artifact");
    let mine = alices.output("say", "result").unwrap().digest;
    assert_eq!(alice.read_file(&mine).unwrap(), b"mine");

    let operator = engine.tenant(weir::DEFAULT_TENANT).unwrap();
    assert_eq!(operator.read_file(&bobs_output).unwrap(), b"secret", "the operator reads every artifact");
    assert!(operator.runs(&weir::RunFilter::newest(10)).unwrap().is_empty(), "but lists only its own runs");
    let unknown = engine.tenant("mallory").err().expect("an unregistered tenant has no view");
    assert!(unknown.to_string().contains("mallory"), "{unknown}");
}
