//! Host-bridge benchmarks (`cargo bench -p weir-tests --bench bridge`):
//! a small native call's round trip (guest → host → guest), and `gemm`
//! through the bridge against the same CPU kernel called directly, side by
//! side: in-memory operands at 256³ and 1024³ (the typed `weir:step/tensors`
//! call and the MessagePack `call-native` one), and file operands at 1024³
//! and 4096³. Times inside the guest are taken by the guest itself, so step
//! start-up is not counted.
//!
//! Built with `--features cuda` on a machine with a GPU, it also measures a
//! 4096³ cuBLAS product called directly against the same product requested
//! by a guest through the bridge, with operands kept on the device
//! (`gemm_gpu_4096`; `cargo bench -p weir-tests --features cuda --bench
//! bridge -- gemm_gpu`).

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use weir::{CallContext, Engine, NativeFunction, OutputKind, Pipeline, Resources, RunOptions, StepBuilder};

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
    /// when `files` are given) on the CPU; returns the nanoseconds it reports.
    fn guest_nanos(&self, args: &[String], natives: &[&str], files: Option<(&Path, &Path)>) -> u64 {
        self.guest_nanos_holding(Resources::default(), args, natives, files)
    }

    /// As [`guest_nanos`](Self::guest_nanos), the step holding `resources`.
    fn guest_nanos_holding(
        &self,
        resources: Resources,
        args: &[String],
        natives: &[&str],
        files: Option<(&Path, &Path)>,
    ) -> u64 {
        let mut step = StepBuilder::new("bench", weir_tests::sdk_tool())
            .args(args)
            .resources(resources)
            .output("result", OutputKind::File);
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

/// cuBLAS on the GPU: a 4096³ product called directly (operands on the
/// device, the product written into one buffer) against the same product
/// through the bridge, from a guest holding a GPU slot: with operands it
/// uploaded once and products kept on the device (`through_bridge_kept`), and
/// with operands passed as values, copied to the device and back on every
/// call (`through_bridge_values`, against the same copies made directly,
/// `direct_cublas_copies`). Throughput is in floating-point operations.
#[cfg(feature = "cuda")]
fn gemm_gpu(c: &mut Criterion) {
    use cudarc::cublas::sys::cublasOperation_t::CUBLAS_OP_N;
    use cudarc::cublas::{CudaBlas, Gemm, GemmConfig};
    use cudarc::driver::CudaContext;

    const N: usize = 4096;
    let bench = Bench::new();
    if bench.engine.gpus_detected() == 0 {
        eprintln!("gemm_gpu: no GPU detected, skipped");
        return;
    }
    let context = CudaContext::new(0).expect("CUDA device 0");
    let stream = context.default_stream();
    let blas = CudaBlas::new(stream.clone()).expect("cuBLAS");
    let (a_host, b_host) = operands(N);
    let (a, b) = (stream.clone_htod(&a_host).expect("A"), stream.clone_htod(&b_host).expect("B"));
    let mut product = stream.alloc_zeros::<f32>(N * N).expect("C");
    let n = i32::try_from(N).expect("size");
    // Row-major C = A · B is column-major Cᵀ = Bᵀ · Aᵀ: B goes first.
    let config = GemmConfig {
        transa: CUBLAS_OP_N,
        transb: CUBLAS_OP_N,
        m: n,
        n,
        k: n,
        alpha: 1.0f32,
        lda: n,
        ldb: n,
        beta: 0.0f32,
        ldc: n,
    };
    let mut group = c.benchmark_group(format!("gemm_gpu_{N}"));
    group.sample_size(10).throughput(criterion::Throughput::Elements(2 * (N as u64).pow(3)));
    group.bench_function("direct_cublas", |bencher| {
        bencher.iter_custom(|iters| {
            let started = Instant::now();
            for _ in 0..iters {
                // SAFETY: A, B and C hold N² values each, as the config says.
                unsafe { blas.gemm(config, &b, &a, &mut product) }.expect("sgemm");
            }
            stream.synchronize().expect("synchronize");
            started.elapsed()
        })
    });
    // What passing values costs without the bridge: both operands copied to
    // the device and the product back, around the same product.
    group.bench_function("direct_cublas_copies", |bencher| {
        bencher.iter(|| {
            let (a, b) = (stream.clone_htod(&a_host).expect("A"), stream.clone_htod(&b_host).expect("B"));
            let mut product = stream.alloc_zeros::<f32>(N * N).expect("C");
            // SAFETY: as above.
            unsafe { blas.gemm(config, &b, &a, &mut product) }.expect("sgemm");
            stream.clone_dtoh(&product).expect("download")
        })
    });
    let gpu = Resources { gpu: 1 };
    for (name, mode) in [("through_bridge_kept", "bench-gemm-kept"), ("through_bridge_values", "bench-gemm")] {
        group.bench_function(name, |bencher| {
            bencher.iter_custom(|iters| {
                let args = [mode.into(), N.to_string(), iters.to_string()];
                Duration::from_nanos(bench.guest_nanos_holding(gpu, &args, &["gemm"], None))
            })
        });
    }
    group.finish();
}

/// Small products of values through the bridge, from a step holding a GPU
/// against one without: where the copies to the device and back cost more
/// than the product saves.
#[cfg(feature = "cuda")]
fn gemm_gpu_small(c: &mut Criterion) {
    let bench = Bench::new();
    if bench.engine.gpus_detected() == 0 {
        eprintln!("gemm_gpu_small: no GPU detected, skipped");
        return;
    }
    for n in [64usize, 128, 256, 512] {
        let mut group = c.benchmark_group(format!("gemm_gpu_small_{n}"));
        group.sample_size(10).throughput(criterion::Throughput::Elements(2 * (n as u64).pow(3)));
        for (name, gpu) in [("values_step_with_gpu", 1), ("values_step_without", 0)] {
            group.bench_function(name, |bencher| {
                bencher.iter_custom(|iters| {
                    let args = ["bench-gemm".into(), n.to_string(), iters.to_string()];
                    Duration::from_nanos(bench.guest_nanos_holding(Resources { gpu }, &args, &["gemm"], None))
                })
            });
        }
        group.finish();
    }
}

#[cfg(feature = "cuda")]
criterion_group!(benches, round_trip, gemm_in_memory, gemm_files, gemm_gpu, gemm_gpu_small);
#[cfg(not(feature = "cuda"))]
criterion_group!(benches, round_trip, gemm_in_memory, gemm_files);
criterion_main!(benches);
