//! The GPU path (cargo feature `cuda`): cuBLAS through `cudarc`, whose
//! libraries are loaded when first used, so the same binary runs on
//! machines without a GPU (where no device is detected).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublas::{CudaBlas, Gemm, GemmConfig};
use cudarc::driver::{CudaContext, CudaSlice, CudaStream};

use super::gemm::{Operand, Shape};

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
    // cudarc panics where a library it loads is missing: a machine with
    // CUDA's driver but without cuBLAS on the library path gets this error
    // (in the step's report) instead, and later calls are not poisoned.
    // SAFETY: `is_culib_present` only tries to load the library.
    if !unsafe { cudarc::cublas::sys::is_culib_present() } {
        return Err(CUBLAS_MISSING.to_owned());
    }
    let context = CudaContext::new(ordinal).map_err(|err| format!("CUDA device {ordinal}: {err}"))?;
    let stream = context.default_stream();
    let blas = CudaBlas::new(stream.clone()).map_err(|err| format!("cuBLAS on device {ordinal}: {err}"))?;
    let handle = Arc::new(Mutex::new(DeviceHandle { stream, blas }));
    handles.insert(ordinal, handle.clone());
    Ok(handle)
}

/// The error of a product on a GPU where cuBLAS cannot be loaded.
const CUBLAS_MISSING: &str =
    "cuBLAS could not be loaded (libcublas.so.13): put the directory that holds it on LD_LIBRARY_PATH";

/// Values kept on a GPU (a `weir:step/tensors` tensor of a step holding
/// one, or a product computed there). Freed when dropped.
pub(crate) struct DeviceTensor {
    ordinal: usize,
    values: CudaSlice<f32>,
}

fn cuda_error(err: cudarc::driver::DriverError) -> String {
    format!("CUDA: {err}")
}

impl DeviceTensor {
    /// Copies `values` to device `ordinal`.
    pub(crate) fn upload(ordinal: usize, values: &[f32]) -> Result<Self, String> {
        let handle = handle(ordinal)?;
        let device = handle.lock().map_err(|_| "CUDA handle poisoned")?;
        let values = device.stream.clone_htod(values).map_err(cuda_error)?;
        Ok(Self { ordinal, values })
    }

    /// How many values it holds.
    pub(crate) fn len(&self) -> usize {
        self.values.len()
    }

    /// Copies its values back to the host.
    pub(crate) fn download(&self) -> Result<Vec<f32>, String> {
        let handle = handle(self.ordinal)?;
        let device = handle.lock().map_err(|_| "CUDA handle poisoned")?;
        device.stream.clone_dtoh(&self.values).map_err(cuda_error)
    }
}

/// `C = op(A) · op(B)`, row-major, with cuBLAS on device `ordinal`; the
/// product stays on the device. Host operands are copied over for the call;
/// device operands must be on the same device.
///
/// cuBLAS is column-major: a row-major matrix is its transpose in
/// column-major order, so we compute `Cᵀ = op(B)ᵀ · op(A)ᵀ`, passing B first.
pub(crate) fn sgemm(ordinal: usize, shape: Shape, a: Operand<'_>, b: Operand<'_>) -> Result<DeviceTensor, String> {
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
    // Host operands are copied to the device; device ones are used in place.
    let stage = |operand: Operand<'_>| -> Result<Option<CudaSlice<f32>>, String> {
        match operand {
            Operand::Host(values) => device.stream.clone_htod(values).map(Some).map_err(cuda_error),
            Operand::Gpu(tensor) if tensor.ordinal == ordinal => Ok(None),
            Operand::Gpu(tensor) => {
                Err(format!("a tensor on GPU {} cannot be an operand of a product on GPU {ordinal}", tensor.ordinal))
            }
        }
    };
    let (a_staged, b_staged) = (stage(a)?, stage(b)?);
    let (a_dev, b_dev) = (resident(&a_staged, a), resident(&b_staged, b));
    let mut c_dev = device.stream.alloc_zeros::<f32>(m * n).map_err(cuda_error)?;
    // SAFETY: the operands hold m*k, k*n and m*n elements (checked by the
    // caller), which is what the dimensions and leading dimensions above
    // describe; all three live on the stream the handle uses.
    unsafe { device.blas.gemm(config, b_dev, a_dev, &mut c_dev) }.map_err(|err| format!("cuBLAS sgemm: {err}"))?;
    Ok(DeviceTensor { ordinal, values: c_dev })
}

/// The device copy of `operand`: its staged copy, or the tensor itself.
fn resident<'a>(staged: &'a Option<CudaSlice<f32>>, operand: Operand<'a>) -> &'a CudaSlice<f32> {
    match (staged, operand) {
        (Some(staged), _) => staged,
        (None, Operand::Gpu(tensor)) => &tensor.values,
        (None, Operand::Host(_)) => unreachable!("host operands are always staged"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_cublas_is_an_error_that_says_where_to_put_it() {
        // SAFETY: only tries to load the library.
        if unsafe { cudarc::cublas::sys::is_culib_present() } {
            return; // a machine with cuBLAS on its library path: nothing to check here
        }
        for _ in 0..2 {
            let err = handle(0).err().expect("no handle without cuBLAS");
            assert!(err.contains("LD_LIBRARY_PATH"), "{err}");
        }
    }
}
