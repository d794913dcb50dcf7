//! Host-bridge benchmarks (`cargo bench -p weir-tests --bench bridge`):
//! a small native call's round trip (guest → host → guest), and a 1024³
//! `gemm` through the bridge against the same CPU kernel called directly.
//! Times inside the guest are taken by the guest itself, so step start-up
//! is not counted.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use weir::{CallContext, Engine, NativeFunction, OutputKind, Pipeline, RunOptions, StepBuilder};

const GEMM_SIZE: usize = 1024;

/// Returns its payload untouched: the cost measured is the bridge's own.
struct Echo;

impl NativeFunction for Echo {
    fn name(&self) -> &str {
        "echo"
    }
    fn version(&self) -> u32 {
        1
    }
    fn call(&self, _context: &CallContext<'_>, payload: &[u8]) -> Result<Vec<u8>, String> {
        Ok(payload.to_vec())
    }
}

struct Bench {
    _workspace: tempfile::TempDir,
    engine: Engine,
}

impl Bench {
    fn new() -> Self {
        let workspace = tempfile::tempdir().expect("workspace");
        let engine = Engine::builder().workspace(workspace.path()).native_function(Echo).build().expect("engine");
        Self { _workspace: workspace, engine }
    }

    /// Runs the SDK test guest with `args`; returns the nanoseconds it reports.
    fn guest_nanos(&self, args: &[String], natives: &[&str]) -> u64 {
        let mut step = StepBuilder::new("bench", weir_tests::sdk_tool()).args(args).output("result", OutputKind::File);
        for native in natives {
            step = step.native_function(*native);
        }
        let pipeline = Pipeline::builder("bench").step(step).build().expect("pipeline");
        let report = self.engine.run(&pipeline, &RunOptions::new().no_cache(true)).expect("run");
        let digest = report.output("bench", "result").expect("bench step succeeded").digest;
        let text = String::from_utf8(self.engine.store().read_file(&digest).expect("result")).expect("utf-8");
        text.strip_prefix("ok: ").and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("guest said: {text}"))
    }
}

fn round_trip(c: &mut Criterion) {
    let bench = Bench::new();
    c.bench_function("bridge/round_trip_16B", |b| {
        b.iter_custom(|iters| {
            Duration::from_nanos(bench.guest_nanos(&["bench-echo".into(), iters.to_string()], &["echo"]))
        })
    });
}

fn gemm(c: &mut Criterion) {
    let bench = Bench::new();
    let n = GEMM_SIZE;
    let a: Vec<f32> = (0..n * n).map(|i| (i % 7) as f32).collect();
    let b: Vec<f32> = (0..n * n).map(|i| (i % 5) as f32).collect();
    let mut group = c.benchmark_group("gemm_1024");
    group.sample_size(10);
    group.bench_function("direct_cpu", |bencher| {
        bencher.iter(|| {
            let mut out = vec![0.0f32; n * n];
            let s = n as isize;
            // SAFETY: a, b and out each hold n*n elements with row stride n.
            unsafe {
                matrixmultiply::sgemm(n, n, n, 1.0, a.as_ptr(), s, 1, b.as_ptr(), s, 1, 0.0, out.as_mut_ptr(), s, 1)
            };
            out
        })
    });
    group.bench_function("through_bridge", |bencher| {
        bencher.iter_custom(|iters| {
            (0..iters)
                .map(|_| Duration::from_nanos(bench.guest_nanos(&["bench-gemm".into(), n.to_string()], &["gemm"])))
                .sum()
        })
    });
    group.finish();
}

criterion_group!(benches, round_trip, gemm);
criterion_main!(benches);
