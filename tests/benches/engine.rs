//! Engine benchmarks (`cargo bench -p weir-tests --bench engine`; a quick
//! subset with `make bench-quick`):
//! - `step/overhead`: one trivial WASI step, executed (not reused) in a warm
//!   engine, from dispatch to recorded (staging, instantiation, run, ingest,
//!   cache entry, history);
//! - `chain_1000/reused_in_process`: a fully reused re-run of a 1,000-step
//!   chain through the library;
//! - `chain_1000/reused_cli`: the same through the `weir` binary, process
//!   start to exit;
//! - `chain_1000/status_in_process`, `chain_1000/status_cli`: `weir status`
//!   of the same chain with nothing changed (every step up to date).

use std::path::Path;
use std::process::Command;

use criterion::{Criterion, criterion_group, criterion_main};
use weir::{Engine, Pipeline, RunOptions};
use weir_tests::{Wasi, tool, weir_bin, write_settled};

/// A manifest of `steps` steps, each copying its predecessor's output.
fn chain_manifest(steps: usize, module: &Path) -> String {
    let mut toml = String::from("name = \"chain\"\n[inputs]\nseed = \"seed.txt\"\n");
    for i in 0..steps {
        let source = if i == 0 { "inputs.seed".to_owned() } else { format!("s{}.out", i - 1) };
        toml.push_str(&format!(
            "[steps.s{i}]\nmodule = \"{}\"\nargs = [\"copy\", \"x\", \"out\"]\ninputs = {{ x = \"{source}\" }}\noutputs = {{ out = \"file\" }}\n",
            module.display()
        ));
    }
    toml
}

fn write_chain(dir: &Path, steps: usize) -> std::path::PathBuf {
    write_settled(&dir.join("seed.txt"), "seed");
    let manifest = dir.join("pipeline.toml");
    std::fs::write(&manifest, chain_manifest(steps, &tool(Wasi::P1))).expect("manifest");
    manifest
}

fn step_overhead(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let manifest = write_chain(dir.path(), 1);
    let pipeline = Pipeline::from_manifest(&manifest).expect("pipeline");
    let engine = Engine::builder().workspace(dir.path().join(".weir")).build().expect("engine");
    engine.run(&pipeline, &RunOptions::new()).expect("warm-up");
    let forced = RunOptions::new().no_cache(true);
    c.bench_function("step/overhead", |b| b.iter(|| engine.run(&pipeline, &forced).expect("run")));
}

fn chain_reused(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let manifest = write_chain(dir.path(), 1000);
    let workspace = dir.path().join(".weir");
    let pipeline = Pipeline::from_manifest(&manifest).expect("pipeline");
    let engine = Engine::builder().workspace(&workspace).build().expect("engine");
    assert!(engine.run(&pipeline, &RunOptions::new()).expect("cold run").succeeded());
    let mut group = c.benchmark_group("chain_1000");
    group.sample_size(10);
    group.bench_function("reused_in_process", |b| b.iter(|| engine.run(&pipeline, &RunOptions::new()).expect("run")));
    group.bench_function("status_in_process", |b| {
        b.iter(|| assert!(engine.status(&pipeline, &RunOptions::new()).expect("status").up_to_date))
    });
    let binary = weir_bin();
    let cli = |command: &str| {
        let status = Command::new(&binary)
            .arg(command)
            .arg(&manifest)
            .arg("--workspace")
            .arg(&workspace)
            .arg("--json")
            .stdout(std::process::Stdio::null())
            .status()
            .expect("weir");
        assert!(status.success(), "weir {command}: nothing changed, so exit 0");
    };
    group.bench_function("reused_cli", |b| b.iter(|| cli("run")));
    group.bench_function("status_cli", |b| b.iter(|| cli("status")));
    group.finish();
}

criterion_group!(benches, step_overhead, chain_reused);
criterion_main!(benches);
