//! Per-step overhead, phase by phase (`cargo bench -p weir-tests --bench
//! overhead`): a trivial WASI step (reads a small input, writes a small
//! output) executed again and again in a warm engine with its module
//! compiled, timed from the start of the run to its end (so including
//! planning, the cache-key computation, the history record and the run
//! summary), and split into the phases the engine reports.
//!
//! Then the same step 100 times in one pipeline (independent copies, one
//! worker), so that what a run costs once is shared: the whole run divided
//! by 100 is the per-step cost from ready to recorded, cleanup included.
//!
//! Prints median and p99 per phase as a Markdown table. `WEIR_BENCH_RUNS`
//! sets the number of runs (default 300).

use std::time::{Duration, Instant};

use weir::{Engine, Phases, Pipeline, RunOptions};
use weir_tests::{Wasi, tool, write_settled};

/// One run: its wall time, the step's time on its worker, and its phases.
struct Sample {
    total: Duration,
    step: Duration,
    phases: Phases,
}

/// A row of the table: its label and what it measures of a sample.
type Row = (&'static str, fn(&Sample) -> Duration);

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * fraction).round() as usize]
}

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return;
    }
    let runs: usize = std::env::var("WEIR_BENCH_RUNS").ok().and_then(|n| n.parse().ok()).unwrap_or(300);
    let dir = tempfile::tempdir().expect("temp dir");
    write_settled(&dir.path().join("seed.txt"), "a small input");
    let manifest = dir.path().join("pipeline.toml");
    std::fs::write(
        &manifest,
        format!(
            "name = \"one\"\n[inputs]\nseed = \"seed.txt\"\n[steps.copy]\nmodule = \"{}\"\nargs = [\"copy\", \"x\", \"out\"]\ninputs = {{ x = \"inputs.seed\" }}\noutputs = {{ out = \"file\" }}\n",
            tool(Wasi::P1).display()
        ),
    )
    .expect("manifest");
    let pipeline = Pipeline::from_manifest(&manifest).expect("pipeline");
    let engine = Engine::builder().workspace(dir.path().join(".weir")).build().expect("engine");
    engine.run(&pipeline, &RunOptions::new()).expect("warm-up");
    let forced = RunOptions::new().no_cache(true);

    let mut samples: Vec<Sample> = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        let report = engine.run(&pipeline, &forced).expect("run");
        let total = started.elapsed();
        let step = &report.steps["copy"];
        let phases = step.phases.expect("an executed step reports its phases");
        samples.push(Sample { total, step: step.duration, phases });
    }
    let column = |pick: fn(&Sample) -> Duration| {
        let mut values: Vec<Duration> = samples.iter().map(pick).collect();
        values.sort();
        (percentile(&values, 0.5), percentile(&values, 0.99))
    };
    let rows: [Row; 9] = [
        ("stage (scratch dir, link inputs, params)", |s| s.phases.stage),
        ("sandbox (WASI context, store)", |s| s.phases.sandbox),
        ("instantiate", |s| s.phases.instantiate),
        ("run (the guest)", |s| s.phases.run),
        ("ingest (hash, store outputs and logs)", |s| s.phases.ingest),
        ("cache entry", |s| s.phases.cache),
        ("step, all phases (worker)", |s| s.step),
        ("run overhead outside the step (plan, key, history, summary)", |s| s.total.saturating_sub(s.step)),
        ("whole run, ready to recorded", |s| s.total),
    ];
    println!("per-step overhead over {runs} runs of a one-step pipeline (µs)\n");
    println!("| phase | median | p99 |\n|---|---:|---:|");
    for (name, pick) in rows {
        let (median, p99) = column(pick);
        println!("| {name} | {:.0} | {:.0} |", median.as_secs_f64() * 1e6, p99.as_secs_f64() * 1e6);
    }

    let wide_manifest = dir.path().join("wide.toml");
    let mut toml = String::from("name = \"wide\"\n[inputs]\nseed = \"seed.txt\"\n");
    for i in 0..100 {
        toml.push_str(&format!(
            "[steps.copy{i}]\nmodule = \"{}\"\nargs = [\"copy\", \"x\", \"out\", \"{i}\"]\ninputs = {{ x = \"inputs.seed\" }}\noutputs = {{ out = \"file\" }}\n",
            tool(Wasi::P1).display()
        ));
    }
    std::fs::write(&wide_manifest, toml).expect("manifest");
    let wide = Pipeline::from_manifest(&wide_manifest).expect("pipeline");
    let engine = Engine::builder().workspace(dir.path().join(".weir-wide")).jobs(1).build().expect("engine");
    engine.run(&wide, &RunOptions::new()).expect("warm-up");
    let mut per_step: Vec<Duration> = (0..(runs / 30).max(5))
        .map(|_| {
            let started = Instant::now();
            assert!(engine.run(&wide, &forced).expect("run").succeeded());
            started.elapsed() / 100
        })
        .collect();
    per_step.sort();
    println!(
        "\n100 independent steps in one run, one worker: {:.0} µs per step (median of {} runs)",
        percentile(&per_step, 0.5).as_secs_f64() * 1e6,
        per_step.len()
    );
}
