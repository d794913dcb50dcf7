//! The `slurm` executor against a real Slurm cluster on this host
//! (`scripts/slurm-cluster.sh up`: nodes n1 and n2, n2 with one GPU). Each
//! test is skipped, saying so, when no cluster answers `sinfo`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use serde_json::Value;
use weir_tests::{Project, send_signal, weir_bin};

use crate::digits::digits;

/// Whether a Slurm cluster with both test nodes answers.
fn up() -> bool {
    let nodes = Command::new("sinfo").args(["--noheader", "--Node", "--format=%N"]).output();
    let up = nodes.is_ok_and(|out| {
        let text = String::from_utf8_lossy(&out.stdout);
        out.status.success() && text.contains("n1") && text.contains("n2")
    });
    if !up {
        eprintln!("skipped: no Slurm cluster answers `sinfo` (scripts/slurm-cluster.sh up starts one)");
    }
    up
}

/// The tests share the one cluster; a test that must see where Slurm places
/// work while both nodes are idle has it to itself (`cluster_to_itself`).
static CLUSTER: RwLock<()> = RwLock::new(());

/// A turn on the cluster shared with other tests, or `None` (skipped) without one.
fn cluster() -> Option<RwLockReadGuard<'static, ()>> {
    up().then(|| CLUSTER.read().unwrap_or_else(PoisonError::into_inner))
}

/// The cluster to this test alone, or `None` (skipped) without one.
fn cluster_to_itself() -> Option<RwLockWriteGuard<'static, ()>> {
    up().then(|| CLUSTER.write().unwrap_or_else(PoisonError::into_inner))
}

fn slurm_run(project: &Project, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["run", "pipeline.toml", "--json", "--executor", "slurm"];
    args.extend_from_slice(extra);
    project.weir_json(&args)
}

fn step<'a>(document: &'a Value, name: &str) -> &'a Value {
    document["steps"].as_array().unwrap().iter().find(|step| step["step"] == name).unwrap()
}

/// The job arrays whose tasks ran map step `name`'s entries.
fn arrays_of<'a>(document: &'a Value, name: &str) -> std::collections::BTreeSet<&'a str> {
    step(document, name)["placements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|placement| placement["job"].as_str().unwrap().split_once('_').expect("an array task's id").0)
        .collect()
}

/// A project with the tool module and `n` files in `batch/`.
fn tool_project(manifest: &str, files: usize) -> Project {
    let project = Project::new();
    for i in 0..files {
        project.write(&format!("batch/{i}.txt"), format!("entry {i}"));
    }
    project.write("seed.txt", "seed");
    project.manifest(manifest);
    project
}

/// Jobs of this user whose name starts with `weir-` that Slurm still runs.
fn live_jobs() -> Vec<String> {
    let out = Command::new("squeue").args(["--noheader", "--format=%i %j %T"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|line| line.contains(" weir-") && (line.ends_with("RUNNING") || line.ends_with("PENDING")))
        .map(str::to_owned)
        .collect()
}

/// `weir run --executor slurm` started in the background, with `extra` arguments.
fn spawn_run(project: &Project, extra: &[&str]) -> Child {
    Command::new(weir_bin())
        .args(["run", "pipeline.toml", "--json", "--executor", "slurm", "--workspace"])
        .arg(project.workspace())
        .args(extra)
        .current_dir(project.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until Slurm runs a job of `project` (its frames file names the
/// workspace); returns its id.
fn wait_for_job(project: &Project) -> String {
    wait_for_jobs(project, 1).remove(0)
}

/// Waits until Slurm runs `count` jobs (or array tasks) of `project`;
/// returns their ids, sorted.
fn wait_for_jobs(project: &Project, count: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let workspace = project.workspace().display().to_string();
    loop {
        let out = Command::new("squeue").args(["--noheader", "--states=RUNNING", "--format=%i %k"]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut jobs: Vec<String> = text
            .lines()
            .filter(|line| line.contains(&workspace))
            .map(|line| line.split_whitespace().next().unwrap().to_owned())
            .collect();
        if jobs.len() >= count {
            jobs.sort();
            return jobs;
        }
        assert!(Instant::now() < deadline, "{count} job(s) of this run did not start: {text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn digits_on_slurm_gives_the_outputs_of_a_local_run() {
    let Some(_turn) = cluster() else { return };
    let on_cluster = digits();
    let (code, clustered) = slurm_run(&on_cluster, &[]);
    assert_eq!(code, 0, "{clustered}");
    let local = digits();
    let (code, here) = local.run_json(&[]);
    assert_eq!(code, 0);
    assert_eq!(clustered["outputs"], here["outputs"], "the same output digests");
    for name in ["data/validate", "train", "evaluate", "score"] {
        let placements = step(&clustered, name)["placements"].as_array().unwrap().clone();
        assert!(!placements.is_empty(), "{name} ran on the cluster: {clustered}");
        for placement in placements {
            assert_eq!(placement["executor"], "slurm");
            assert_eq!(placement["state"], "COMPLETED");
            assert!(["n1", "n2"].contains(&placement["node"].as_str().unwrap_or("")), "{placement}");
        }
    }
    // Reused locally: the executor is not part of any cache key.
    let again = on_cluster.run_json(&[]).1;
    assert_eq!(again["ran"], 0, "{again}");
    let shown = on_cluster.weir(&["show", "last"]);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(!shown.contains("slurm job"), "the last run ran nothing on the cluster");
}

#[test]
fn a_map_step_is_one_job_array_over_both_nodes_and_a_gpu_step_lands_on_the_gpu_node() {
    let Some(_turn) = cluster_to_itself() else { return };
    let project = tool_project(
        "name = \"spread\"\n[inputs]\nbatch = \"batch\"\nseed = \"seed.txt\"\n\
         [steps.nap]\nmodule = \"tool-p1.wasm\"\nargs = [\"nap\", \"1500\"]\nmap = \"batch\"\ninputs = { batch = \"inputs.batch\" }\noutputs = { result = \"file\" }\n\
         [steps.gpu]\nmodule = \"tool-p1.wasm\"\nargs = [\"upper\"]\nresources = { gpu = 1 }\ninputs = { text = \"inputs.seed\" }\noutputs = { result = \"file\" }\n",
        4,
    );
    let (code, document) = slurm_run(&project, &["-j", "8"]);
    assert_eq!(code, 0, "{document}");
    let nodes: std::collections::BTreeSet<&str> = step(&document, "nap")["placements"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|placement| placement["node"].as_str())
        .collect();
    assert_eq!(nodes.into_iter().collect::<Vec<_>>(), ["n1", "n2"], "{document}");
    // The entries went out together, as the tasks of one job array.
    assert_eq!(arrays_of(&document, "nap").len(), 1, "{document}");
    let gpu = &step(&document, "gpu")["placements"][0];
    assert_eq!(gpu["node"], "n2", "only n2 has a GPU: {document}");
    assert_eq!(step(&document, "gpu")["warnings"], serde_json::json!([]), "no local-GPU warning on a cluster");
}

/// The most jobs of `project` seen at once while `run` went on, polling
/// `squeue`: (array tasks running, other jobs queued or running without a
/// result yet).
///
/// A job's comment is the file its worker writes frames to, next to the
/// spec it reads (`.job`), which the coordinator removes once it has the
/// job's result: from then on the job no longer counts against `--jobs`,
/// though Slurm may list it a moment longer while it ends.
fn most_at_once(project: &Project, mut run: Child) -> (usize, usize, std::process::Output) {
    let workspace = project.workspace().display().to_string();
    let (mut tasks, mut singles) = (0, 0);
    let awaits_result = |line: &str| {
        let frames = Path::new(line.split(' ').nth(3).unwrap_or_default());
        frames.with_extension("job").exists()
    };
    while run.try_wait().unwrap().is_none() {
        let out = Command::new("squeue").args(["--noheader", "--format=%i %j %T %k"]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let ours: Vec<&str> = text.lines().filter(|line| line.contains(&workspace)).collect();
        let running_tasks =
            ours.iter().filter(|line| line.contains(" weir-map-") && line.contains(" RUNNING ")).count();
        tasks = tasks.max(running_tasks);
        singles = singles.max(ours.iter().filter(|line| !line.contains(" weir-map-") && awaits_result(line)).count());
        std::thread::sleep(Duration::from_millis(50));
    }
    (tasks, singles, run.wait_with_output().unwrap())
}

#[test]
fn jobs_bounds_an_arrays_running_tasks_and_the_other_jobs_queued() {
    let Some(_turn) = cluster_to_itself() else { return };
    let project = tool_project(
        "name = \"throttled\"\n[inputs]\nbatch = \"batch\"\nseed = \"seed.txt\"\n\
         [steps.nap]\nmodule = \"tool-p1.wasm\"\nargs = [\"nap\", \"1500\"]\nmap = \"batch\"\ninputs = { batch = \"inputs.batch\" }\noutputs = { result = \"file\" }\n\
         [steps.a]\nmodule = \"tool-p1.wasm\"\nargs = [\"nap\", \"1500\"]\ninputs = { text = \"inputs.seed\" }\noutputs = { result = \"file\" }\n\
         [steps.b]\nmodule = \"tool-p1.wasm\"\nargs = [\"nap\", \"1501\"]\ninputs = { text = \"inputs.seed\" }\noutputs = { result = \"file\" }\n\
         [steps.c]\nmodule = \"tool-p1.wasm\"\nargs = [\"nap\", \"1502\"]\ninputs = { text = \"inputs.seed\" }\noutputs = { result = \"file\" }\n",
        6,
    );
    // Four slots on the two nodes: without the throttle, four tasks would run at once.
    let (tasks, singles, output) = most_at_once(&project, spawn_run(&project, &["-j", "2"]));
    let document: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(0), "{document}");
    assert_eq!(tasks, 2, "`-j 2`: two of the array's tasks at a time (`%2`)");
    assert!(singles <= 2, "`-j 2`: at most two other jobs queued at once, saw {singles}");
    // All six entries went out in one submission, as one array.
    assert_eq!(arrays_of(&document, "nap").len(), 1, "{document}");
    for name in ["a", "b", "c"] {
        assert_eq!(step(&document, name)["status"], "ran", "{document}");
    }
}

#[test]
fn a_job_whose_worker_is_killed_is_submitted_again() {
    let Some(_turn) = cluster() else { return };
    let project = tool_project(
        "name = \"retried\"\n[inputs]\nseed = \"seed.txt\"\n\
         [steps.slow]\nmodule = \"tool-p1.wasm\"\nargs = [\"nap\", \"4000\"]\ninputs = { text = \"inputs.seed\" }\noutputs = { result = \"file\" }\n",
        0,
    );
    let run = spawn_run(&project, &[]);
    let first = wait_for_job(&project);
    let workspace = project.workspace().display().to_string();
    // Slurm says RUNNING before the node has started the batch script: wait
    // for the worker itself.
    let workers = weir_tests::wait_for_processes(
        &format!("worker --workspace {workspace}"),
        &format!("the worker of job {first}"),
    );
    // The worker on its node dies (as when a node's process is killed).
    for pid in workers {
        send_signal(pid, libc::SIGKILL);
    }
    let output = run.wait_with_output().unwrap();
    let document: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(0), "{document}\n{}", String::from_utf8_lossy(&output.stderr));
    let placement = &step(&document, "slow")["placements"][0];
    assert_eq!(placement["submissions"], 2, "{document}");
    assert_ne!(placement["job"], first.as_str(), "a new job");
    assert!(String::from_utf8_lossy(&output.stderr).contains("submitting step `slow` again"));
}

#[test]
fn a_job_cancelled_outside_fails_its_step_with_slurms_word() {
    let Some(_turn) = cluster() else { return };
    let project = tool_project(
        "name = \"scancelled\"\n[inputs]\nseed = \"seed.txt\"\n\
         [steps.slow]\nmodule = \"tool-p1.wasm\"\nargs = [\"nap\", \"30000\"]\ninputs = { text = \"inputs.seed\" }\noutputs = { result = \"file\" }\n",
        0,
    );
    let run = spawn_run(&project, &[]);
    let job = wait_for_job(&project);
    assert!(Command::new("scancel").arg(&job).status().unwrap().success());
    let output = run.wait_with_output().unwrap();
    let document: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(1), "{document}");
    let error = step(&document, "slow")["error"].as_str().unwrap().to_owned();
    assert!(error.contains(&format!("Slurm job {job}")) && error.contains("CANCELLED"), "{error}");
    assert!(error.contains("cancelled outside weir"), "{error}");
    // Slurm's exit code (signal 15, SIGTERM, from scancel) is in the error and the history.
    assert!(error.contains("exit code 0:15"), "{error}");
    let placement = &step(&document, "slow")["placements"][0];
    assert_eq!(placement["exit_code"], "0:15", "{document}");
    let shown = project.weir(&["show", "last"]);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains(&format!("slurm job {job}")) && shown.contains("CANCELLED, exit code 0:15"), "{shown}");
}

#[test]
fn interrupting_the_run_cancels_its_jobs_and_a_restarted_run_adopts_a_running_one() {
    let Some(_turn) = cluster() else { return };
    let manifest = "name = \"adopted\"\n[inputs]\nseed = \"seed.txt\"\n\
         [steps.slow]\nmodule = \"tool-p1.wasm\"\nargs = [\"nap\", \"6000\"]\ninputs = { text = \"inputs.seed\" }\noutputs = { result = \"file\" }\n";
    // Ctrl-C: the run ends cancelled and its job is gone from the queue.
    let project = tool_project(manifest, 0);
    let run = spawn_run(&project, &[]);
    let job = wait_for_job(&project);
    send_signal(run.id(), libc::SIGINT);
    let output = run.wait_with_output().unwrap();
    let document: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(document["status"], "cancelled", "{document}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while live_jobs().iter().any(|line| line.starts_with(&format!("{job} "))) {
        assert!(Instant::now() < deadline, "job {job} still queued: {:?}", live_jobs());
        std::thread::sleep(Duration::from_millis(100));
    }

    // A coordinator killed outright leaves its job running; started again,
    // it follows that job instead of submitting another.
    let project = tool_project(manifest, 0);
    let mut run = spawn_run(&project, &[]);
    let job = wait_for_job(&project);
    run.kill().unwrap();
    run.wait().unwrap();
    let (code, document) = slurm_run(&project, &[]);
    assert_eq!(code, 0, "{document}");
    let placement = &step(&document, "slow")["placements"][0];
    assert_eq!(placement["job"], job.as_str(), "the running job was adopted: {document}");
    assert_eq!(placement["submissions"], 1);
}

#[test]
fn a_server_runs_triggered_steps_on_the_cluster_and_its_ui_says_where() {
    let Some(_turn) = cluster() else { return };
    let project = tool_project(
        "name = \"served\"\n[inputs]\nseed = \"seed.txt\"\n\
         [steps.up]\nmodule = \"tool-p1.wasm\"\nargs = [\"upper\"]\ninputs = { text = \"inputs.seed\" }\noutputs = { result = \"file\" }\n",
        0,
    );
    let token = crate::server::token(&project, "alice", false);
    let server = crate::server::Server::start(&project, &["--executor", "slurm"]);
    crate::server::publish(&project, &server, &token, &project.path().join("pipeline.toml"), &[]);
    let id = crate::server::trigger(&server, &token, "served", &serde_json::json!({}));
    let document = crate::server::finished(&server, &token, &id);
    assert_eq!(document["status"], "succeeded", "{document}");
    let placement = &crate::server::step(&document, "up")["placements"][0];
    assert_eq!(placement["executor"], "slurm", "{document}");
    let node = placement["node"].as_str().unwrap().to_owned();

    // The step's page in the web UI says where it ran.
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build().into();
    let login = agent
        .post(format!("{}/login", server.base))
        .header("Origin", &server.base)
        .content_type("application/x-www-form-urlencoded")
        .send(format!("token={token}"))
        .unwrap();
    let cookie = login.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let mut page = agent.get(format!("{}/runs/{id}/steps/up", server.base)).header("Cookie", &cookie).call().unwrap();
    let page = page.body_mut().read_to_string().unwrap();
    let job = placement["job"].as_str().unwrap();
    assert!(page.contains(&format!("slurm job <code>{job}</code> on node <code>{node}</code>: COMPLETED")), "{page}");
}

#[test]
fn slurm_options_choose_the_partition_and_a_bad_one_fails_with_sbatchs_word() {
    let Some(_turn) = cluster() else { return };
    // The pipeline's partition `second` has only node n1; one step takes the
    // pipeline's, the other overrides it with the default partition's name.
    let project = tool_project(
        "name = \"placed\"\n[executor.slurm]\npartition = \"second\"\n[inputs]\nbatch = \"batch\"\nseed = \"seed.txt\"\n\
         [steps.nap]\nmodule = \"tool-p1.wasm\"\nargs = [\"nap\", \"200\"]\nmap = \"batch\"\ninputs = { batch = \"inputs.batch\" }\noutputs = { result = \"file\" }\n\
         [steps.gpu]\nmodule = \"tool-p1.wasm\"\nargs = [\"upper\"]\nresources = { gpu = 1 }\nslurm = { partition = \"main\" }\ninputs = { text = \"inputs.seed\" }\noutputs = { result = \"file\" }\n",
        3,
    );
    let (code, document) = slurm_run(&project, &["-j", "8"]);
    assert_eq!(code, 0, "{document}");
    for placement in step(&document, "nap")["placements"].as_array().unwrap() {
        assert_eq!(placement["node"], "n1", "partition `second` is n1 alone: {document}");
    }
    // Only n2 has a GPU, and it is not in `second`: the step's own partition won.
    assert_eq!(step(&document, "gpu")["placements"][0]["node"], "n2", "{document}");

    let project = tool_project(
        "name = \"misplaced\"\n[inputs]\nseed = \"seed.txt\"\n\
         [steps.up]\nmodule = \"tool-p1.wasm\"\nargs = [\"upper\"]\nslurm = { partition = \"nowhere\" }\ninputs = { text = \"inputs.seed\" }\noutputs = { result = \"file\" }\n",
        0,
    );
    let (code, document) = slurm_run(&project, &[]);
    assert_eq!(code, 1, "{document}");
    let error = step(&document, "up")["error"].as_str().unwrap();
    assert!(
        error.contains("submitting it to Slurm") && error.contains("invalid partition specified: nowhere"),
        "{error}"
    );
}

#[test]
fn a_restarted_run_adopts_the_running_tasks_of_its_job_array() {
    let Some(_turn) = cluster() else { return };
    let project = tool_project(
        "name = \"arrayed\"\n[inputs]\nbatch = \"batch\"\n\
         [steps.nap]\nmodule = \"tool-p1.wasm\"\nargs = [\"nap\", \"6000\"]\nmap = \"batch\"\ninputs = { batch = \"inputs.batch\" }\noutputs = { result = \"file\" }\n",
        2,
    );
    let mut run = spawn_run(&project, &["-j", "8"]);
    // Both tasks run (one on each node); then the coordinator dies.
    let tasks = wait_for_jobs(&project, 2);
    run.kill().unwrap();
    run.wait().unwrap();
    let (code, document) = slurm_run(&project, &["-j", "8"]);
    assert_eq!(code, 0, "{document}");
    let placements = step(&document, "nap")["placements"].as_array().unwrap();
    let mut jobs: Vec<String> =
        placements.iter().map(|placement| placement["job"].as_str().unwrap().to_owned()).collect();
    jobs.sort();
    assert_eq!(jobs, tasks, "the running tasks were adopted, not submitted again: {document}");
    assert!(placements.iter().all(|placement| placement["submissions"] == 1), "{document}");
}
