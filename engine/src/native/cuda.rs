//! The GPU path (cargo feature `cuda`): cuBLAS through `cudarc`, whose
//! libraries are loaded when first used, so the same binary runs on
//! machines without a GPU (where no device is detected).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublas::{CudaBlas, Gemm, GemmConfig};
use cudarc::driver::{CudaContext, CudaStream};

use super::gemm::Shape;

/// CUDA devices on this machine; 0 when the driver library is absent.
pub(crate) fn device_count() -> usize {
    // SAFETY: `is_culib_present` only tries to load the driver library and
    // reports whether that worked.
    let present = std::panic::catch_unwind(|| unsafe { cudarc::driver::sys::is_culib_present() }).unwrap_or(false);
    if !present {
        return 0;
    }
    std::panic::catch_unwind(CudaContext::device_count)
        .ok()
        .and_then(Result::ok)
        .map_or(0, |count| usize::try_from(count).unwrap_or(0))
}

/// One stream and cuBLAS handle per device, made on first use.
struct DeviceHandle {
    stream: Arc<CudaStream>,
    blas: CudaBlas,
}

fn handle(ordinal: usize) -> Result<Arc<Mutex<DeviceHandle>>, String> {
    static HANDLES: OnceLock<Mutex<HashMap<usize, Arc<Mutex<DeviceHandle>>>>> = OnceLock::new();
    let mut handles = HANDLES.get_or_init(Default::default).lock().map_err(|_| "CUDA handle table poisoned")?;
    if let Some(handle) = handles.get(&ordinal) {
        return Ok(handle.clone());
    }
    let context = CudaContext::new(ordinal).map_err(|err| format!("CUDA device {ordinal}: {err}"))?;
    let stream = context.default_stream();
    let blas = CudaBlas::new(stream.clone()).map_err(|err| format!("cuBLAS on device {ordinal}: {err}"))?;
    let handle = Arc::new(Mutex::new(DeviceHandle { stream, blas }));
    handles.insert(ordinal, handle.clone());
    Ok(handle)
}

/// `C = op(A) · op(B)`, row-major, with cuBLAS (which is column-major: a
/// row-major matrix is its transpose in column-major order, so we compute
/// `Cᵀ = op(B)ᵀ · op(A)ᵀ`, passing B first).
pub(crate) fn sgemm(ordinal: usize, shape: Shape, a: &[f32], b: &[f32]) -> Result<Vec<f32>, String> {
    let Shape { m, n, k, trans_a, trans_b } = shape;
    let dim = |value: usize| i32::try_from(value).map_err(|_| format!("dimension {value} is too large for cuBLAS"));
    let op =
        |transposed: bool| if transposed { cublasOperation_t::CUBLAS_OP_T } else { cublasOperation_t::CUBLAS_OP_N };
    let config = GemmConfig {
        transa: op(trans_b),
        transb: op(trans_a),
        m: dim(n)?,
        n: dim(m)?,
        k: dim(k)?,
        alpha: 1.0f32,
        lda: dim(if trans_b { k } else { n })?,
        ldb: dim(if trans_a { m } else { k })?,
        beta: 0.0f32,
        ldc: dim(n)?,
    };
    let handle = handle(ordinal)?;
    let device = handle.lock().map_err(|_| "CUDA handle poisoned")?;
    let cuda = |err: cudarc::driver::DriverError| format!("CUDA: {err}");
    let a_dev = device.stream.clone_htod(a).map_err(cuda)?;
    let b_dev = device.stream.clone_htod(b).map_err(cuda)?;
    let mut c_dev = device.stream.alloc_zeros::<f32>(m * n).map_err(cuda)?;
    // SAFETY: the operands hold m*k, k*n and m*n elements (checked by the
    // caller), which is what the dimensions and leading dimensions above
    // describe; all three live on the stream the handle uses.
    unsafe { device.blas.gemm(config, &b_dev, &a_dev, &mut c_dev) }.map_err(|err| format!("cuBLAS sgemm: {err}"))?;
    device.stream.clone_dtoh(&c_dev).map_err(cuda)
}
