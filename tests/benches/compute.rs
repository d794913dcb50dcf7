//! Compute in the sandbox, and scaling (`cargo bench -p weir-tests --bench
//! compute`):
//! - the same compute-bound Rust kernel (`tests/guests/kernel.rs`: softmax
//!   regression training, no bridge) compiled natively into this benchmark
//!   and as a WASI step, with the default timeout and with `timeout =
//!   "none"` (code compiled without interruption checks), and with the
//!   default timeout under the `process` executor (a worker process that a
//!   timeout kills, so no interruption checks either): median time of the
//!   kernel itself (the guest's run phase), and the ratios wasm/native;
//! - four independent kernel steps with 1 and with 2 workers: wall time of
//!   the run, and the speed-up;
//! - peak resident memory of the process while 100 small steps are in
//!   flight at once.
//!
//! Prints Markdown tables.

#[path = "../guests/kernel.rs"]
mod kernel;

use std::time::{Duration, Instant};

use weir::{Engine, ExecutorKind, Limits, OutputKind, Pipeline, RunOptions, StepBuilder};
use weir_tests::{Wasi, tool, weir_bin};

const EPOCHS: usize = 100;
const REPEATS: usize = 15;

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// A pipeline of `count` independent steps running `args` (plus a distinct
/// tag each) under `timeout`.
fn independent(name: &str, count: usize, args: &[&str], timeout: Duration) -> Pipeline {
    let mut builder = Pipeline::builder(name);
    for i in 0..count {
        let tag = format!("{name}-{i}");
        let mut all: Vec<&str> = args.to_vec();
        all.push(&tag);
        builder = builder.step(
            StepBuilder::new(format!("s{i}"), tool(Wasi::P1))
                .args(all)
                .timeout(timeout)
                .output("result", OutputKind::File),
        );
    }
    builder.build().expect("pipeline")
}

/// Peak resident set of this process so far, in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let epochs = EPOCHS.to_string();

    let engine = Engine::builder().workspace(dir.path().join("ws")).jobs(1).build().expect("engine");
    let process = Engine::builder()
        .workspace(dir.path().join("ws"))
        .jobs(1)
        .executor(ExecutorKind::Process { command: weir_bin() })
        .build()
        .expect("engine");
    let single = independent("kernel", 1, &["kernel", &epochs], Limits::DEFAULT_TIMEOUT);
    let trusted = independent("kernel", 1, &["kernel", &epochs], Limits::NO_TIMEOUT);
    let forced = RunOptions::new().no_cache(true);
    let native_loss = kernel::train(EPOCHS);
    for (engine, pipeline) in [(&engine, &single), (&engine, &trusted), (&process, &single)] {
        let warm = engine.run(pipeline, &forced).expect("warm-up");
        let result = engine.store().read_file(&warm.steps["s0"].outputs["result"].digest).expect("result");
        assert_eq!(String::from_utf8_lossy(&result), native_loss.to_string(), "wasm and native compute the same loss");
    }
    let run_phase =
        |engine: &Engine, pipeline| engine.run(pipeline, &forced).expect("run").steps["s0"].phases.expect("phases").run;
    // The four alternate, so all see the same machine conditions.
    let (mut native, mut wasm, mut uninterruptible, mut in_worker) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..REPEATS {
        let started = Instant::now();
        std::hint::black_box(kernel::train(std::hint::black_box(EPOCHS)));
        native.push(started.elapsed());
        wasm.push(run_phase(&engine, &single));
        uninterruptible.push(run_phase(&engine, &trusted));
        in_worker.push(run_phase(&process, &single));
    }
    let (native, wasm, uninterruptible, in_worker) =
        (median(native), median(wasm), median(uninterruptible), median(in_worker));
    let ratio = |wasm: Duration| wasm.as_secs_f64() / native.as_secs_f64();
    println!("## Compute: the kernel natively and in the sandbox ({EPOCHS} epochs, median of {REPEATS})\n");
    println!("| build | median | wasm/native |\n|---|---:|---:|");
    println!("| native (this benchmark, release) | {:.1} ms | |", ms(native));
    println!("| wasm32-wasip1 step, run phase (default timeout) | {:.1} ms | **{:.2}** |", ms(wasm), ratio(wasm));
    println!(
        "| wasm32-wasip1 step, run phase (`timeout = \"none\"`) | {:.1} ms | **{:.2}** |",
        ms(uninterruptible),
        ratio(uninterruptible)
    );
    println!(
        "| wasm32-wasip1 step, run phase (default timeout, `--executor process`) | {:.1} ms | **{:.2}** |\n",
        ms(in_worker),
        ratio(in_worker)
    );

    let four = independent("scaling", 4, &["kernel", &epochs], Limits::DEFAULT_TIMEOUT);
    let mut walls = Vec::new();
    for jobs in [1, 2] {
        let engine = Engine::builder().workspace(dir.path().join(format!("jobs{jobs}"))).jobs(jobs).build().unwrap();
        engine.run(&four, &forced).expect("warm-up");
        let wall = median(
            (0..3)
                .map(|_| {
                    let started = Instant::now();
                    assert!(engine.run(&four, &forced).expect("run").succeeded());
                    started.elapsed()
                })
                .collect(),
        );
        walls.push(wall);
    }
    println!("## Scaling: four independent kernel steps (median of 3 runs)\n");
    println!("| workers | wall |\n|---|---:|");
    println!("| `--jobs 1` | {:.0} ms |\n| `--jobs 2` | {:.0} ms |", ms(walls[0]), ms(walls[1]));
    println!("\nspeed-up with 2 workers on 2 cores: **{:.2}×**\n", walls[0].as_secs_f64() / walls[1].as_secs_f64());

    let engine = Engine::builder().workspace(dir.path().join("rss")).jobs(100).build().expect("engine");
    let hundred = independent("rss", 100, &["nap", "500"], Limits::DEFAULT_TIMEOUT);
    engine.run(&independent("rss-warm", 1, &["nap", "1"], Limits::DEFAULT_TIMEOUT), &forced).expect("warm-up");
    let before = peak_rss_kib();
    let started = Instant::now();
    assert!(engine.run(&hundred, &forced).expect("run").succeeded());
    let wall = started.elapsed();
    let after = peak_rss_kib();
    println!("## Memory: 100 steps in flight at once (`--jobs 100`, each sleeping 500 ms)\n");
    println!("| measure | value |\n|---|---:|");
    println!("| peak RSS of the process before | {:.1} MiB |", before as f64 / 1024.0);
    println!("| peak RSS with 100 steps in flight | {:.1} MiB |", after as f64 / 1024.0);
    println!("| per step in flight | {:.2} MiB |", (after - before) as f64 / 1024.0 / 100.0);
    println!("| wall time of the run | {:.0} ms |", ms(wall));
}
