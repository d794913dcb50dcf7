//! Host-bridge benchmarks (`cargo bench -p weir-tests --bench bridge`):
//! a small native call's round trip (guest → host → guest), and `gemm`
//! through the bridge against the same CPU kernel called directly, side by
//! side: in-memory operands at 256³ and 1024³ (the typed `weir:step/tensors`
//! call and the MessagePack `call-native` one), and file operands at 1024³
//! and 4096³. Times inside the guest are taken by the guest itself, so step
//! start-up is not counted.

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use weir::{CallContext, Engine, NativeFunction, OutputKind, Pipeline, RunOptions, StepBuilder};

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
    workspace: tempfile::TempDir,
    engine: Engine,
}

impl Bench {
    fn new() -> Self {
        let workspace = tempfile::tempdir().expect("workspace");
        let engine = Engine::builder().workspace(workspace.path()).native_function(Echo).build().expect("engine");
        Self { workspace, engine }
    }

    /// Runs the SDK test guest with `args` (and pipeline inputs `a` and `b`
    /// when `files` are given); returns the nanoseconds it reports.
    fn guest_nanos(&self, args: &[String], natives: &[&str], files: Option<(&Path, &Path)>) -> u64 {
        let mut step = StepBuilder::new("bench", weir_tests::sdk_tool()).args(args).output("result", OutputKind::File);
        for native in natives {
            step = step.native_function(*native);
        }
        let mut pipeline = Pipeline::builder("bench");
        if let Some((a, b)) = files {
            step = step.input("a", "inputs.a").input("b", "inputs.b").output("c", OutputKind::File);
            pipeline = pipeline.input("a", a).input("b", b);
        }
        let pipeline = pipeline.step(step.memory_limit(1 << 32)).build().expect("pipeline");
        let report = self.engine.run(&pipeline, &RunOptions::new().no_cache(true)).expect("run");
        let digest = report.output("bench", "result").expect("bench step succeeded").digest;
        let text = String::from_utf8(self.engine.store().read_file(&digest).expect("result")).expect("utf-8");
        text.strip_prefix("ok: ").and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("guest said: {text}"))
    }
}

/// Square operands of `n`² values, as the guest makes them.
fn operands(n: usize) -> (Vec<f32>, Vec<f32>) {
    ((0..n * n).map(|i| (i % 7) as f32).collect(), (0..n * n).map(|i| (i % 5) as f32).collect())
}

/// The kernel the engine uses, called directly.
fn direct(n: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0f32; n * n];
    let s = n as isize;
    // SAFETY: a, b and out each hold n*n elements with row stride n.
    unsafe { matrixmultiply::sgemm(n, n, n, 1.0, a.as_ptr(), s, 1, b.as_ptr(), s, 1, 0.0, out.as_mut_ptr(), s, 1) };
    out
}

fn round_trip(c: &mut Criterion) {
    let bench = Bench::new();
    c.bench_function("bridge/round_trip_16B", |b| {
        b.iter_custom(|iters| {
            Duration::from_nanos(bench.guest_nanos(&["bench-echo".into(), iters.to_string()], &["echo"], None))
        })
    });
}

/// In-memory operands: the direct call, the typed call, the MessagePack call.
fn gemm_in_memory(c: &mut Criterion) {
    let bench = Bench::new();
    for n in [256, 1024] {
        let (a, b) = operands(n);
        let mut group = c.benchmark_group(format!("gemm_{n}"));
        group.sample_size(if n >= 1024 { 10 } else { 30 });
        group.bench_function("direct_cpu", |bencher| bencher.iter(|| direct(n, &a, &b)));
        // One step makes all of a sample's products, as a training loop would.
        for (name, mode) in [("through_bridge", "bench-gemm"), ("through_bridge_msgpack", "bench-gemm-packed")] {
            group.bench_function(name, |bencher| {
                bencher.iter_custom(|iters| {
                    let args = [mode.into(), n.to_string(), iters.to_string()];
                    Duration::from_nanos(bench.guest_nanos(&args, &["gemm"], None))
                })
            });
        }
        group.finish();
    }
}

/// File operands and result: the direct call reads the same files, multiplies
/// and writes the product; through the bridge nothing passes the guest.
fn gemm_files(c: &mut Criterion) {
    let bench = Bench::new();
    for n in [1024, 4096] {
        let (a, b) = operands(n);
        let (a_file, b_file, c_file) = (
            bench.workspace.path().join("a.f32"),
            bench.workspace.path().join("b.f32"),
            bench.workspace.path().join("c.f32"),
        );
        let bytes = |values: &[f32]| values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>();
        std::fs::write(&a_file, bytes(&a)).expect("a");
        std::fs::write(&b_file, bytes(&b)).expect("b");
        let mut group = c.benchmark_group(format!("gemm_files_{n}"));
        group.sample_size(10);
        group.bench_function("direct_cpu", |bencher| {
            bencher.iter_custom(|iters| {
                let started = Instant::now();
                for _ in 0..iters {
                    let read = |path: &Path| {
                        let bytes = std::fs::read(path).expect("operand");
                        bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect::<Vec<_>>()
                    };
                    let product = direct(n, &read(&a_file), &read(&b_file));
                    std::fs::write(&c_file, bytes(&product)).expect("c");
                }
                started.elapsed()
            })
        });
        group.bench_function("through_bridge", |bencher| {
            bencher.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        let args = ["bench-gemm-files".into(), n.to_string()];
                        Duration::from_nanos(bench.guest_nanos(&args, &["gemm"], Some((&a_file, &b_file))))
                    })
                    .sum()
            })
        });
        group.finish();
    }
}

criterion_group!(benches, round_trip, gemm_in_memory, gemm_files);
criterion_main!(benches);
