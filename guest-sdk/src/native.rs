//! Calling the engine's native functions. Payloads are MessagePack.

use serde::Serialize;
use serde::de::DeserializeOwned;
use weir_abi::{GemmRequest, GemmResponse, Matrix};

use crate::{Error, host};

/// Calls native function `function` with `input`, decoding its result as `O`.
pub fn call<I: Serialize, O: DeserializeOwned>(function: &str, input: &I) -> Result<O, Error> {
    let payload = rmp_serde::to_vec_named(input).map_err(|err| Error::Payload(err.to_string()))?;
    let result = call_raw(function, &payload)?;
    rmp_serde::from_slice(&result).map_err(|err| Error::Payload(format!("result of `{function}`: {err}")))
}

/// Calls native function `function` with a payload already encoded.
pub fn call_raw(function: &str, payload: &[u8]) -> Result<Vec<u8>, Error> {
    host::call_native(function, payload).map_err(Error::Native)
}

/// `C = op(A) · op(B)` with the engine's `gemm` (on a GPU when the step holds
/// one): `op(A)` is `m × k`, `op(B)` is `k × n`, all row-major; `trans_a`
/// means `A` is stored as `k × m` (likewise `trans_b`). The operands travel
/// packed; for matrices too large to pass through memory, use [`call`] with
/// [`Matrix::File`] operands and `c_file`.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    b: &[f32],
    trans_a: bool,
    trans_b: bool,
) -> Result<Vec<f32>, Error> {
    let request = GemmRequest { m, n, k, a: Matrix::packed(a), b: Matrix::packed(b), trans_a, trans_b, c_file: None };
    let response: GemmResponse = call(weir_abi::GEMM, &request)?;
    match response.c {
        Matrix::Packed(bytes) => {
            Matrix::unpack(&bytes).ok_or_else(|| Error::Payload("C is not whole f32 values".into()))
        }
        Matrix::Values(values) => Ok(values),
        Matrix::File { file } => Err(Error::Payload(format!("unexpected file result {file}"))),
    }
}
