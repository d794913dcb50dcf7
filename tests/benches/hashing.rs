//! Hashing and data movement (`cargo bench -p weir-tests --bench hashing`):
//! - a 1 GiB input file: BLAKE3 throughput of weir's hashing against `b3sum`
//!   on the same file (if `b3sum` is installed: `cargo install b3sum`), the
//!   first import (copy into the store, hash, sync), and a re-import of the
//!   unchanged file (a stat check, no bytes read);
//! - a directory of 10,000 small files: first import and unchanged re-import;
//! - how a 1 GiB input reaches a step: the staging time of a step that takes
//!   it (inputs are hard links to read-only store objects, never copies).
//!
//! Prints Markdown tables of medians. The page cache is warm throughout:
//! every figure is CPU and memory bound, not disk bound.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use weir::{Engine, OutputKind, Pipeline, RunOptions, StepBuilder, Store};
use weir_tests::{Wasi, tool};

const GIB: u64 = 1 << 30;

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn timed<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let started = Instant::now();
    let value = f();
    (started.elapsed(), value)
}

fn ms(duration: Duration) -> String {
    let ms = duration.as_secs_f64() * 1000.0;
    if ms < 1.0 { format!("{:.0} µs", ms * 1000.0) } else { format!("{ms:.1} ms") }
}

fn gib_per_s(bytes: u64, duration: Duration) -> f64 {
    bytes as f64 / GIB as f64 / duration.as_secs_f64()
}

/// Writes `bytes` of pseudo-random data (incompressible, so no file system
/// shortcut applies).
fn random_file(path: &Path, bytes: u64) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..bytes / block.len() as u64 {
        for chunk in block.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes());
        }
        file.write_all(&block).expect("write");
    }
}

fn b3sum(path: &Path) -> Option<Duration> {
    let run = || Command::new("b3sum").arg(path).output().ok().filter(|out| out.status.success());
    run()?;
    Some(median((0..5).map(|_| timed(run).0).collect()))
}

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return;
    }
    let dir = tempfile::tempdir_in(std::env::temp_dir()).expect("temp dir");
    let big = dir.path().join("big.bin");
    random_file(&big, GIB);
    let _ = std::fs::read(&big); // warm the page cache

    let hash_only = median(
        (0..5)
            .map(|_| {
                timed(|| {
                    let mut hasher = blake3::Hasher::new();
                    hasher.update_mmap_rayon(&big).expect("hash");
                    hasher.finalize()
                })
                .0
            })
            .collect(),
    );
    let mut first = Vec::new();
    let mut again = Vec::new();
    for round in 0..3 {
        let store = Store::open(dir.path().join(format!("ws{round}"))).expect("store");
        first.push(timed(|| store.import(&big).expect("import")).0);
        again.extend((0..5).map(|_| timed(|| store.import(&big).expect("import")).0));
    }
    println!("## A 1 GiB input file\n");
    println!("| measure | median | throughput |\n|---|---:|---:|");
    let reference = b3sum(&big);
    if let Some(b3) = reference {
        println!("| `b3sum` (all cores, memory-mapped) | {} | {:.2} GiB/s |", ms(b3), gib_per_s(GIB, b3));
    }
    println!("| weir's hashing of the file | {} | {:.2} GiB/s |", ms(hash_only), gib_per_s(GIB, hash_only));
    let first = median(first);
    println!(
        "| first import: copy into the store (in the kernel) and hash | {} | {:.2} GiB/s |",
        ms(first),
        gib_per_s(GIB, first)
    );
    println!("| re-import, file unchanged (stat check) | {} | — |", ms(median(again)));
    match reference {
        Some(b3) => {
            println!("\nhashing throughput, weir / b3sum: **{:.2}**\n", b3.as_secs_f64() / hash_only.as_secs_f64())
        }
        None => println!("\n`b3sum` is not installed (`cargo install b3sum`): no ratio.\n"),
    }

    let small = dir.path().join("small");
    std::fs::create_dir(&small).expect("mkdir");
    for i in 0..10_000 {
        std::fs::write(small.join(format!("{i:05}.txt")), format!("file {i}\n")).expect("write");
    }
    std::thread::sleep(Duration::from_secs(2)); // past the window in which fresh files are not stat-cached
    let store = Store::open(dir.path().join("ws-small")).expect("store");
    let (first_dir, _) = timed(|| store.import(&small).expect("import"));
    let again_dir = median((0..5).map(|_| timed(|| store.import(&small).expect("import")).0).collect());
    println!("## A directory of 10,000 small files\n");
    println!("| measure | median |\n|---|---:|");
    println!("| first import | {} |", ms(first_dir));
    println!("| re-import, unchanged | {} |", ms(again_dir));

    let engine = Engine::builder().workspace(dir.path().join("ws-step")).build().expect("engine");
    let pipeline = Pipeline::builder("stage")
        .input("big", &big)
        .step(
            StepBuilder::new("reads", tool(Wasi::P1))
                .args(["args", "staged"])
                .input("data", "inputs.big")
                .output("result", OutputKind::File),
        )
        .build()
        .expect("pipeline");
    let forced = RunOptions::new().no_cache(true);
    let _ = engine.run(&pipeline, &forced);
    let stage = median(
        (0..7)
            .map(|_| {
                let report = engine.run(&pipeline, &forced).expect("run");
                report.steps["reads"].phases.map(|phases| phases.stage).unwrap_or_default()
            })
            .collect(),
    );
    println!("\n## How a 1 GiB input reaches a step\n");
    println!("| measure | median |\n|---|---:|");
    println!("| staging `/in` with the 1 GiB input (a hard link) | {} |", ms(stage));
}
