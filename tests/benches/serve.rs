//! `weir serve` under load (`cargo bench -p weir-tests --bench serve`): a
//! release server on a free loopback port, a one-step pipeline published to
//! it (the step copies a small input, `reuse = false`, so every run executes
//! it), and clients that trigger a run and follow its events to the end.
//!
//! Prints, as Markdown: trigger-to-start latency (the client's send time to
//! the run's `started`, when its steps were ready to dispatch, both on this
//! machine's clock); completed runs per second and trigger-to-end p50/p99 at 1, 8 and
//! 64 clients; and the server's resident memory after 1,000 and after all
//! runs. `WEIR_BENCH_RUNS` sets the number of runs of the memory phase
//! (default 10,000); each phase is bounded in count and in time.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use weir_tests::{Wasi, tool, weir_bin, write_settled};

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

struct Client {
    agent: ureq::Agent,
    base: String,
    token: String,
}

/// One run: trigger-to-start and trigger-to-end, in milliseconds.
struct Sample {
    start_ms: f64,
    end_ms: f64,
}

impl Client {
    fn new(base: &str, token: &str) -> Client {
        let agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        Client { agent, base: base.to_owned(), token: token.to_owned() }
    }

    fn run_once(&self) -> Sample {
        let sent = now();
        let mut reply = self
            .agent
            .post(format!("{}/v1/pipelines/one/runs", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .header("Content-Type", "application/json")
            .send("{}")
            .expect("trigger");
        assert_eq!(reply.status().as_u16(), 202);
        let accepted: Value = serde_json::from_slice(&reply.body_mut().read_to_vec().unwrap()).unwrap();
        let id = accepted["id"].as_str().unwrap();
        let mut events = self
            .agent
            .get(format!("{}/v1/runs/{id}/events", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .call()
            .expect("events");
        let reader = BufReader::new(events.body_mut().as_reader());
        let mut name = String::new();
        for line in reader.lines() {
            let line = line.expect("event line");
            if let Some(event) = line.strip_prefix("event: ") {
                name = event.to_owned();
            } else if let Some(data) = line.strip_prefix("data: ")
                && name == "run_finished"
            {
                let data: Value = serde_json::from_str(data).unwrap();
                assert_eq!(data["status"], "succeeded", "{data}");
                break;
            }
        }
        let ended = now();
        // The run's `started` is the engine's time its steps became ready to
        // dispatch (validated, planned, inputs hashed): a run that ends
        // before its follower connects shows no live `step_started`.
        let mut document = self
            .agent
            .get(format!("{}/v1/runs/{id}", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .call()
            .expect("run document");
        let document: Value = serde_json::from_slice(&document.body_mut().read_to_vec().unwrap()).unwrap();
        let started = document["started"].as_f64().expect("started");
        Sample { start_ms: (started - sent) * 1e3, end_ms: (ended - sent) * 1e3 }
    }
}

fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * fraction).round() as usize]
}

/// `total` runs by `clients` clients at once (or as many as fit in `limit`):
/// the samples and the wall time.
fn load(base: &str, token: &str, clients: usize, total: usize, limit: Duration) -> (Vec<Sample>, Duration) {
    let next = AtomicUsize::new(0);
    let began = Instant::now();
    let samples = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..clients)
            .map(|_| {
                scope.spawn(|| {
                    let client = Client::new(base, token);
                    let mut samples = Vec::new();
                    while next.fetch_add(1, Ordering::Relaxed) < total && began.elapsed() < limit {
                        samples.push(client.run_once());
                    }
                    samples
                })
            })
            .collect();
        workers.into_iter().flat_map(|worker| worker.join().expect("client")).collect::<Vec<_>>()
    });
    (samples, began.elapsed())
}

fn resident_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return;
    }
    let memory_runs: usize = std::env::var("WEIR_BENCH_RUNS").ok().and_then(|n| n.parse().ok()).unwrap_or(10_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let project = dir.path().join("one");
    std::fs::create_dir_all(project.join("build")).unwrap();
    std::fs::copy(tool(Wasi::P1), project.join("build/tool.wasm")).unwrap();
    write_settled(&project.join("seed.txt"), "a small input");
    std::fs::write(
        project.join("pipeline.toml"),
        "name = \"one\"\n[inputs]\nseed = \"seed.txt\"\n[steps.copy]\nmodule = \"build/tool.wasm\"\nargs = [\"copy\", \"x\", \"out\"]\nreuse = false\ninputs = { x = \"inputs.seed\" }\noutputs = { out = \"file\" }\n",
    )
    .unwrap();
    let workspace = dir.path().join("ws");
    let weir = |args: &[&str]| {
        let output = Command::new(weir_bin()).args(args).arg("--workspace").arg(&workspace).output().expect("weir");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    };
    let token = weir(&["token", "create", "--tenant", "bench"]);
    let mut server = Command::new(weir_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--rate-limit", "1000000", "--workspace"])
        .arg(&workspace)
        .stdout(Stdio::piped())
        .spawn()
        .expect("weir serve");
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let base = line.trim().strip_prefix("listening on ").expect("address").to_owned();
    let manifest = project.join("pipeline.toml");
    weir(&["publish", manifest.to_str().unwrap(), "--server", &base, "--token", &token]);
    load(&base, &token, 4, 100, Duration::from_secs(30)); // warm-up: the module compiled, the bundle loaded

    println!("| clients | runs | runs/s | trigger→start p50 | p99 | trigger→end p50 | p99 |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for clients in [1, 8, 64] {
        let (samples, wall) = load(&base, &token, clients, 2000, Duration::from_secs(20));
        let mut start: Vec<f64> = samples.iter().map(|sample| sample.start_ms).collect();
        let mut end: Vec<f64> = samples.iter().map(|sample| sample.end_ms).collect();
        start.sort_by(f64::total_cmp);
        end.sort_by(f64::total_cmp);
        println!(
            "| {clients} | {} | {:.0} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms |",
            samples.len(),
            samples.len() as f64 / wall.as_secs_f64(),
            percentile(&start, 0.5),
            percentile(&start, 0.99),
            percentile(&end, 0.5),
            percentile(&end, 0.99)
        );
    }

    let pid = server.id();
    let (first, _) = load(&base, &token, 64, 1000, Duration::from_secs(120));
    let after_first = resident_mib(pid);
    let (rest, wall) = load(&base, &token, 64, memory_runs.saturating_sub(1000), Duration::from_secs(600));
    println!(
        "\nresident memory: {after_first:.1} MiB after {} runs, {:.1} MiB after {} more ({:.0} runs/s)",
        first.len(),
        resident_mib(pid),
        rest.len(),
        rest.len() as f64 / wall.as_secs_f64()
    );
    let _ = server.kill();
    let _ = server.wait();
}
