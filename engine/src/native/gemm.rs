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
    /// Checks that the operands have the sizes the shape implies.
    fn check(&self, a: &[f32], b: &[f32]) -> Result<(), String> {
        let elements = |rows: usize, cols: usize, what: &str| {
            rows.checked_mul(cols).filter(|&count| count <= MAX_ELEMENTS).ok_or_else(|| {
                format!("{what} would have {rows} × {cols} elements, more than the {MAX_ELEMENTS} allowed")
            })
        };
        let (a_len, b_len) = (elements(self.m, self.k, "A")?, elements(self.k, self.n, "B")?);
        elements(self.m, self.n, "C")?;
        if a.len() != a_len {
            return Err(format!("A has {} values; m × k = {} × {} needs {a_len}", a.len(), self.m, self.k));
        }
        if b.len() != b_len {
            return Err(format!("B has {} values; k × n = {} × {} needs {b_len}", b.len(), self.k, self.n));
        }
        Ok(())
    }
}

/// `C = op(A) · op(B)` on `device`, after checking the operand sizes.
pub(crate) fn multiply(shape: Shape, a: &[f32], b: &[f32], device: Device) -> Result<Vec<f32>, String> {
    shape.check(a, b)?;
    match device {
        Device::Cpu => Ok(multiply_cpu(shape, a, b)),
        Device::Gpu { ordinal } => multiply_gpu(ordinal, shape, a, b),
    }
}

/// The CPU path.
pub(crate) fn multiply_cpu(shape: Shape, a: &[f32], b: &[f32]) -> Vec<f32> {
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

#[cfg(feature = "cuda")]
fn multiply_gpu(ordinal: usize, shape: Shape, a: &[f32], b: &[f32]) -> Result<Vec<f32>, String> {
    super::cuda::sgemm(ordinal, shape, a, b)
}

#[cfg(not(feature = "cuda"))]
fn multiply_gpu(_ordinal: usize, shape: Shape, a: &[f32], b: &[f32]) -> Result<Vec<f32>, String> {
    // Without the `cuda` feature no GPU is ever detected, so no step holds a
    // real device; a fake slot count still runs here, on the CPU.
    Ok(multiply_cpu(shape, a, b))
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

fn unpack(bytes: &[u8], what: &str) -> Result<Vec<f32>, String> {
    Matrix::unpack(bytes).ok_or_else(|| format!("{what}: {} bytes is not a whole number of f32 values", bytes.len()))
}

fn pack(values: &[f32]) -> Vec<u8> {
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
    fn rejects_wrong_sizes_and_huge_shapes() {
        let shape = Shape { m: 2, n: 2, k: 2, trans_a: false, trans_b: false };
        assert!(multiply(shape, &[1.0; 3], &[1.0; 4], Device::Cpu).unwrap_err().contains("A has 3 values"));
        let huge = Shape { m: 1 << 20, n: 1 << 20, k: 0, trans_a: false, trans_b: false };
        assert!(multiply(huge, &[], &[], Device::Cpu).unwrap_err().contains("C would have"));
        let overflow = Shape { m: usize::MAX, n: 2, k: 2, trans_a: false, trans_b: false };
        assert!(multiply(overflow, &[], &[1.0; 4], Device::Cpu).is_err());
    }
}
