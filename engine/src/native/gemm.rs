//! The built-in matrix product: the `gemm` native function and the `matmul`
//! native step. CPU path: `matrixmultiply` (cache-blocked SIMD kernels,
//! threaded); GPU path: cuBLAS, with the `cuda` feature.

use weir_abi::{GemmRequest, GemmResponse, Matrix};

use super::{CallContext, Device, GpuSupport, NativeFunction, NativeStep, StepContext};

/// The most elements any operand or result may have (1 GiB of `f32`), so a
/// guest cannot make the host allocate without bound.
const MAX_ELEMENTS: usize = 1 << 28;

/// Version of both `gemm` and `matmul`; bump when results could change.
const VERSION: u32 = 1;

/// Products of host operands with less work than this (m·n·k) run on the
/// CPU even in a step holding a GPU: copying the operands over and the
/// product back costs more than the GPU saves. Through the bridge on an H200
/// with 16 cores (BENCHMARKS.md, Session 25) a 128³ product took 65 µs on
/// the GPU and 52 µs on the CPU, a 256³ one 141 and 185 µs.
const GPU_MIN_WORK: u64 = 1 << 22;

/// The dimensions and layout of one product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shape {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub trans_a: bool,
    pub trans_b: bool,
}

impl Shape {
    /// Checks that operands of `a_len` and `b_len` values have the sizes the
    /// shape implies.
    pub(crate) fn check(&self, a_len: usize, b_len: usize) -> Result<(), String> {
        let elements = |rows: usize, cols: usize, what: &str| {
            rows.checked_mul(cols).filter(|&count| count <= MAX_ELEMENTS).ok_or_else(|| {
                format!("{what} would have {rows} × {cols} elements, more than the {MAX_ELEMENTS} allowed")
            })
        };
        let (a_want, b_want) = (elements(self.m, self.k, "A")?, elements(self.k, self.n, "B")?);
        elements(self.m, self.n, "C")?;
        if a_len != a_want {
            return Err(format!("A has {a_len} values; m × k = {} × {} needs {a_want}", self.m, self.k));
        }
        if b_len != b_want {
            return Err(format!("B has {b_len} values; k × n = {} × {} needs {b_want}", self.k, self.n));
        }
        Ok(())
    }

    /// Multiply-adds of the product: m·n·k.
    fn work(&self) -> u64 {
        (self.m as u64).saturating_mul(self.n as u64).saturating_mul(self.k as u64)
    }

    /// Bytes of the product `C`.
    pub(crate) fn result_bytes(&self) -> u64 {
        (self.m as u64).saturating_mul(self.n as u64).saturating_mul(4)
    }
}

/// An operand of a product: values in host memory, or a tensor kept on a GPU.
#[derive(Clone, Copy)]
pub(crate) enum Operand<'a> {
    /// Values in host memory.
    Host(&'a [f32]),
    /// A tensor on a GPU.
    #[cfg(feature = "cuda")]
    Gpu(&'a super::cuda::DeviceTensor),
}

impl<'a> Operand<'a> {
    /// Its values in host memory: borrowed, or copied from the GPU.
    #[cfg(feature = "cuda")]
    fn on_host(self) -> Result<std::borrow::Cow<'a, [f32]>, String> {
        match self {
            Operand::Host(values) => Ok(std::borrow::Cow::Borrowed(values)),
            Operand::Gpu(tensor) => tensor.download().map(std::borrow::Cow::Owned),
        }
    }

    fn len(&self) -> usize {
        match self {
            Operand::Host(values) => values.len(),
            #[cfg(feature = "cuda")]
            Operand::Gpu(tensor) => tensor.len(),
        }
    }
}

/// Values computed or kept by the engine: in host memory, or on a GPU.
pub(crate) enum Tensor {
    /// In host memory.
    Host(Vec<f32>),
    /// On a GPU.
    #[cfg(feature = "cuda")]
    Gpu(super::cuda::DeviceTensor),
}

impl Tensor {
    /// `values`, kept on `device`.
    pub(crate) fn upload(values: Vec<f32>, device: Device) -> Result<Self, String> {
        match device {
            Device::Cpu => Ok(Tensor::Host(values)),
            #[cfg(feature = "cuda")]
            Device::Gpu { ordinal } => super::cuda::DeviceTensor::upload(ordinal, &values).map(Tensor::Gpu),
            #[cfg(not(feature = "cuda"))]
            Device::Gpu { .. } => Ok(Tensor::Host(values)),
        }
    }

    /// How many values it holds.
    pub(crate) fn len(&self) -> usize {
        self.operand().len()
    }

    /// It, as an operand of another product.
    pub(crate) fn operand(&self) -> Operand<'_> {
        match self {
            Tensor::Host(values) => Operand::Host(values),
            #[cfg(feature = "cuda")]
            Tensor::Gpu(tensor) => Operand::Gpu(tensor),
        }
    }

    /// Its values in host memory (copied from the GPU if they are there).
    pub(crate) fn into_host(self) -> Result<Vec<f32>, String> {
        match self {
            Tensor::Host(values) => Ok(values),
            #[cfg(feature = "cuda")]
            Tensor::Gpu(tensor) => tensor.download(),
        }
    }

    /// A copy of its values in host memory.
    pub(crate) fn to_host(&self) -> Result<Vec<f32>, String> {
        match self {
            Tensor::Host(values) => Ok(values.clone()),
            #[cfg(feature = "cuda")]
            Tensor::Gpu(tensor) => tensor.download(),
        }
    }
}

/// `C = op(A) · op(B)` on `device`, after checking the operand sizes.
pub(crate) fn multiply(shape: Shape, a: &[f32], b: &[f32], device: Device) -> Result<Vec<f32>, String> {
    multiply_operands(shape, Operand::Host(a), Operand::Host(b), device)?.into_host()
}

/// `C = op(A) · op(B)` on `device`, with the operands where they are: on a
/// GPU the product stays there (a host operand is copied over for the call);
/// on the CPU a GPU operand is copied to the host first.
pub(crate) fn multiply_operands(
    shape: Shape,
    a: Operand<'_>,
    b: Operand<'_>,
    device: Device,
) -> Result<Tensor, String> {
    shape.check(a.len(), b.len())?;
    match (placement(shape, a, b, device), a, b) {
        (Device::Cpu, Operand::Host(a), Operand::Host(b)) => Ok(Tensor::Host(multiply_cpu(shape, a, b))),
        #[cfg(feature = "cuda")]
        (Device::Gpu { ordinal }, a, b) => super::cuda::sgemm(ordinal, shape, a, b).map(Tensor::Gpu),
        #[cfg(not(feature = "cuda"))]
        (Device::Gpu { .. }, Operand::Host(a), Operand::Host(b)) => {
            // Without the `cuda` feature no GPU is ever detected, so no step
            // holds a real device; a fake slot count still runs here, on the CPU.
            Ok(Tensor::Host(multiply_cpu(shape, a, b)))
        }
        #[cfg(feature = "cuda")]
        (Device::Cpu, a, b) => {
            let (a, b) = (a.on_host()?, b.on_host()?);
            Ok(Tensor::Host(multiply_cpu(shape, &a, &b)))
        }
    }
}

/// Where a product asked for on `device` runs: on a GPU unless both
/// operands are in host memory and the product is too small to repay
/// copying them there (see [`GPU_MIN_WORK`]).
fn placement(shape: Shape, a: Operand<'_>, b: Operand<'_>, device: Device) -> Device {
    match (device, a, b) {
        (Device::Gpu { .. }, Operand::Host(_), Operand::Host(_)) if shape.work() < GPU_MIN_WORK => Device::Cpu,
        _ => device,
    }
}

/// The CPU path.
fn multiply_cpu(shape: Shape, a: &[f32], b: &[f32]) -> Vec<f32> {
    let Shape { m, n, k, trans_a, trans_b } = shape;
    let mut c = vec![0.0f32; m * n];
    if m == 0 || n == 0 || k == 0 {
        return c;
    }
    // Row and column strides of op(A) and op(B) in their row-major storage.
    let (rsa, csa) = if trans_a { (1, m as isize) } else { (k as isize, 1) };
    let (rsb, csb) = if trans_b { (1, k as isize) } else { (n as isize, 1) };
    // SAFETY: `shape.check` established a.len() == m*k and b.len() == k*n;
    // with the strides above every index sgemm forms for op(A) (m × k) and
    // op(B) (k × n) is inside those slices, and c has m*n elements laid out
    // with strides (n, 1). The slices do not overlap (c is a fresh Vec).
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            rsa,
            csa,
            b.as_ptr(),
            rsb,
            csb,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
    c
}

/// The `gemm` native function.
pub(crate) struct Gemm;

impl Gemm {
    pub(crate) fn new() -> Self {
        Gemm
    }
}

impl NativeFunction for Gemm {
    fn name(&self) -> &str {
        weir_abi::GEMM
    }

    fn version(&self) -> u32 {
        VERSION
    }

    fn gpu(&self) -> GpuSupport {
        GpuSupport::CpuOrGpu
    }

    fn call(&self, context: &CallContext<'_>, payload: &[u8]) -> Result<Vec<u8>, String> {
        let request: GemmRequest =
            rmp_serde::from_slice(payload).map_err(|err| format!("malformed payload for `gemm`: {err}"))?;
        check_memory(&request, context.memory_budget())?;
        let load = |matrix: &Matrix, what: &str| -> Result<Vec<f32>, String> {
            match matrix {
                Matrix::Values(values) => Ok(values.clone()),
                Matrix::Packed(bytes) => unpack(bytes, what),
                Matrix::File { file } => unpack(&context.read_file(file)?, what),
            }
        };
        let (a, b) = (load(&request.a, "A")?, load(&request.b, "B")?);
        let shape =
            Shape { m: request.m, n: request.n, k: request.k, trans_a: request.trans_a, trans_b: request.trans_b };
        let c = multiply(shape, &a, &b, context.device())?;
        let c = match (&request.c_file, &request.a) {
            (Some(file), _) => {
                context.write_file(file, &pack(&c))?;
                Matrix::File { file: file.clone() }
            }
            (None, Matrix::Packed(_)) => Matrix::Packed(pack(&c)),
            (None, _) => Matrix::Values(c),
        };
        rmp_serde::to_vec_named(&GemmResponse { c }).map_err(|err| format!("encoding the result of `gemm`: {err}"))
    }
}

/// Refuses a product whose host buffers (the operands, the result, and the
/// result's encoding) would take more than `budget` bytes.
fn check_memory(request: &GemmRequest, budget: u64) -> Result<(), String> {
    let elements = [(request.m, request.k), (request.k, request.n), (request.m, request.n), (request.m, request.n)]
        .iter()
        .try_fold(0u64, |total, &(rows, cols)| {
            (rows as u64).checked_mul(cols as u64).and_then(|count| total.checked_add(count))
        });
    let bytes = elements.and_then(|count| count.checked_mul(4)).unwrap_or(u64::MAX);
    if bytes > budget {
        return Err(format!(
            "a {} × {} × {} product needs {bytes} bytes of host memory; the step's memory limit leaves {budget} (limits.memory)",
            request.m, request.n, request.k
        ));
    }
    Ok(())
}

/// Decodes little-endian `f32` values; `what` names them in the error.
pub(crate) fn unpack(bytes: &[u8], what: &str) -> Result<Vec<f32>, String> {
    Matrix::unpack(bytes).ok_or_else(|| format!("{what}: {} bytes is not a whole number of f32 values", bytes.len()))
}

/// Encodes values as little-endian bytes.
pub(crate) fn pack(values: &[f32]) -> Vec<u8> {
    match Matrix::packed(values) {
        Matrix::Packed(bytes) => bytes,
        _ => unreachable!("Matrix::packed always packs"),
    }
}

/// The `matmul` native step: inputs `a` and `b` (files of little-endian
/// `f32`), parameters `m`, `n`, `k` (and optional `trans_a`, `trans_b`),
/// output `c`.
pub(crate) struct MatmulStep;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MatmulParams {
    m: usize,
    n: usize,
    k: usize,
    #[serde(default)]
    trans_a: bool,
    #[serde(default)]
    trans_b: bool,
}

impl NativeStep for MatmulStep {
    fn name(&self) -> &str {
        "matmul"
    }

    fn version(&self) -> u32 {
        VERSION
    }

    fn gpu(&self) -> GpuSupport {
        GpuSupport::CpuOrGpu
    }

    fn run(&self, context: &mut StepContext<'_>) -> Result<(), String> {
        let params: MatmulParams = context.params()?;
        let read = |name: &str| {
            let bytes = std::fs::read(context.input(name)).map_err(|err| format!("reading input `{name}`: {err}"))?;
            unpack(&bytes, name)
        };
        let (a, b) = (read("a")?, read("b")?);
        let shape = Shape { m: params.m, n: params.n, k: params.k, trans_a: params.trans_a, trans_b: params.trans_b };
        let c = multiply(shape, &a, &b, context.device())?;
        std::fs::write(context.output("c"), pack(&c)).map_err(|err| format!("writing output `c`: {err}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(shape: Shape, a: &[f32], b: &[f32]) -> Vec<f32> {
        let Shape { m, n, k, trans_a, trans_b } = shape;
        let at = |i: usize, l: usize| if trans_a { a[l * m + i] } else { a[i * k + l] };
        let bt = |l: usize, j: usize| if trans_b { b[j * k + l] } else { b[l * n + j] };
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|l| at(i, l) * bt(l, j)).sum();
            }
        }
        c
    }

    #[test]
    fn matches_the_definition_for_every_transpose() {
        let (m, n, k) = (5, 3, 4);
        let a: Vec<f32> = (0..m * k).map(|i| i as f32 * 0.5 - 3.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32).sin()).collect();
        for (trans_a, trans_b) in [(false, false), (true, false), (false, true), (true, true)] {
            let shape = Shape { m, n, k, trans_a, trans_b };
            let got = multiply(shape, &a, &b, Device::Cpu).unwrap();
            for (x, y) in got.iter().zip(naive(shape, &a, &b)) {
                assert!((x - y).abs() < 1e-4, "{trans_a} {trans_b}: {x} vs {y}");
            }
        }
    }

    #[test]
    fn small_products_of_host_values_stay_on_the_cpu_in_a_gpu_step() {
        let square = |n: usize| Shape { m: n, n, k: n, trans_a: false, trans_b: false };
        let gpu = Device::Gpu { ordinal: 0 };
        let (a, b) = (Operand::Host(&[]), Operand::Host(&[]));
        assert_eq!(placement(square(128), a, b, gpu), Device::Cpu);
        assert_eq!(placement(square(161), a, b, gpu), Device::Cpu);
        assert_eq!(placement(square(162), a, b, gpu), gpu);
        assert_eq!(placement(Shape { m: 64, n: 64, k: 1 << 10, ..square(0) }, a, b, gpu), gpu);
        assert_eq!(placement(square(4096), a, b, Device::Cpu), Device::Cpu);
    }

    #[test]
    fn rejects_wrong_sizes_and_huge_shapes() {
        let shape = Shape { m: 2, n: 2, k: 2, trans_a: false, trans_b: false };
        assert!(multiply(shape, &[1.0; 3], &[1.0; 4], Device::Cpu).unwrap_err().contains("A has 3 values"));
        let huge = Shape { m: 1 << 20, n: 1 << 20, k: 0, trans_a: false, trans_b: false };
        assert!(multiply(huge, &[], &[], Device::Cpu).unwrap_err().contains("C would have"));
        let overflow = Shape { m: usize::MAX, n: 2, k: 2, trans_a: false, trans_b: false };
        assert!(multiply(overflow, &[], &[1.0; 4], Device::Cpu).is_err());
    }
}
