//! Calling the engine's native functions: the matrix product through the
//! typed `weir:step/tensors` interface ([`gemm`], [`Gemm`], [`Tensor`]),
//! and any function by name with MessagePack payloads ([`call`]).

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
/// means `A` is stored as `k × m` (likewise `trans_b`).
///
/// The operands and the product cross the sandbox boundary once each, as
/// raw `f32` lists (`weir:step/tensors`). To keep an operand with the engine
/// across calls (a model's weights on the GPU), use [`Tensor`] and [`Gemm`];
/// for matrices too large for the step's memory, file operands ([`Gemm::to_file`]).
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
    Gemm::new(m, n, k).transpose_a(trans_a).transpose_b(trans_b).values(a, b)
}

/// The same product through the generic, MessagePack call (`call-native`):
/// more copies, so slower for large matrices. Kept for engines whose `gemm`
/// an application replaced, which only `call-native` reaches.
#[allow(clippy::too_many_arguments)]
pub fn gemm_packed(
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

/// Values kept with the engine (on the step's GPU when it holds one) for
/// later products: upload a model's weights once, use them every epoch.
///
/// It counts against the step's memory limit until dropped (or until the
/// step ends). Its handle is valid only in the step execution that made it.
#[derive(Debug)]
pub struct Tensor {
    handle: u32,
}

impl Tensor {
    /// Keeps `values` with the engine.
    pub fn upload(values: &[f32]) -> Result<Self, Error> {
        host::tensors::upload(values).map(|handle| Tensor { handle }).map_err(Error::Native)
    }

    /// A copy of its values.
    pub fn to_vec(&self) -> Result<Vec<f32>, Error> {
        host::tensors::download(self.handle).map_err(Error::Native)
    }

    /// Its handle, as the engine knows it.
    pub fn handle(&self) -> u32 {
        self.handle
    }

    /// A tensor by a handle obtained elsewhere; the engine refuses, with an
    /// error, any handle that is not one of this step's live tensors.
    pub fn from_handle(handle: u32) -> Self {
        Tensor { handle }
    }
}

impl Drop for Tensor {
    fn drop(&mut self) {
        // An error here means the handle was already invalid: nothing to free.
        let _ = host::tensors::release(self.handle);
    }
}

/// An operand of a [`Gemm`]: values in guest memory, a [`Tensor`], or a
/// file of little-endian `f32` under `/in` or `/out` (which never passes
/// through guest memory).
#[derive(Debug, Clone, Copy)]
pub enum Operand<'a> {
    /// Row-major values.
    Values(&'a [f32]),
    /// A tensor kept with the engine.
    Tensor(&'a Tensor),
    /// A file, by its path in the step (`/in/...` or `/out/...`).
    File(&'a str),
}

impl<'a> From<&'a [f32]> for Operand<'a> {
    fn from(values: &'a [f32]) -> Self {
        Operand::Values(values)
    }
}

impl<'a> From<&'a Vec<f32>> for Operand<'a> {
    fn from(values: &'a Vec<f32>) -> Self {
        Operand::Values(values)
    }
}

impl<'a> From<&'a Tensor> for Operand<'a> {
    fn from(tensor: &'a Tensor) -> Self {
        Operand::Tensor(tensor)
    }
}

impl<'a> Operand<'a> {
    fn raw(self) -> host::tensors::Operand<'a> {
        match self {
            Operand::Values(values) => host::tensors::Operand::Raw(f32_bytes(values)),
            Operand::Tensor(tensor) => host::tensors::Operand::Tensor(tensor.handle),
            Operand::File(path) => host::tensors::Operand::File(path),
        }
    }
}

/// A matrix product `C = op(A) · op(B)` with the engine's `gemm`: `op(A)`
/// is `m × k`, `op(B)` is `k × n`, `C` is `m × n`, all row-major.
///
/// ```no_run
/// use weir_guest::native::{Gemm, Tensor};
/// # fn main() -> Result<(), weir_guest::Error> {
/// let (x, w) = (vec![1.0f32; 64 * 32], vec![0.5f32; 32 * 10]);
/// let weights = Tensor::upload(&w)?;                        // kept with the engine
/// let logits = Gemm::new(64, 10, 32).values(&x, &weights)?; // 64 × 10, back in the guest
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Gemm {
    m: usize,
    n: usize,
    k: usize,
    trans_a: bool,
    trans_b: bool,
}

impl Gemm {
    /// An `m × k` by `k × n` product.
    pub fn new(m: usize, n: usize, k: usize) -> Self {
        Gemm { m, n, k, trans_a: false, trans_b: false }
    }

    /// Whether `A` is stored transposed (as `k × m`).
    pub fn transpose_a(mut self, transposed: bool) -> Self {
        self.trans_a = transposed;
        self
    }

    /// Whether `B` is stored transposed (as `n × k`).
    pub fn transpose_b(mut self, transposed: bool) -> Self {
        self.trans_b = transposed;
        self
    }

    /// The product's values, in guest memory.
    pub fn values<'a>(self, a: impl Into<Operand<'a>>, b: impl Into<Operand<'a>>) -> Result<Vec<f32>, Error> {
        match self.run(a.into(), b.into(), host::tensors::Destination::Values)? {
            host::tensors::Product::Values(values) => Ok(values),
            _ => Err(Error::Payload("the engine did not return values".into())),
        }
    }

    /// The product kept with the engine, as a tensor.
    pub fn to_tensor<'a>(self, a: impl Into<Operand<'a>>, b: impl Into<Operand<'a>>) -> Result<Tensor, Error> {
        match self.run(a.into(), b.into(), host::tensors::Destination::Tensor)? {
            host::tensors::Product::Tensor(handle) => Ok(Tensor { handle }),
            _ => Err(Error::Payload("the engine did not return a tensor".into())),
        }
    }

    /// The product written to `path` under `/out`, as little-endian `f32`.
    pub fn to_file<'a>(self, a: impl Into<Operand<'a>>, b: impl Into<Operand<'a>>, path: &str) -> Result<(), Error> {
        self.run(a.into(), b.into(), host::tensors::Destination::File(path)).map(drop)
    }

    fn run(
        self,
        a: Operand<'_>,
        b: Operand<'_>,
        into: host::tensors::Destination<'_>,
    ) -> Result<host::tensors::Product, Error> {
        let dimension = |value: usize, name: &str| {
            u32::try_from(value).map_err(|_| Error::Native(format!("gemm: {name} = {value} is too large")))
        };
        let shape = host::tensors::GemmShape {
            m: dimension(self.m, "m")?,
            n: dimension(self.n, "n")?,
            k: dimension(self.k, "k")?,
            trans_a: self.trans_a,
            trans_b: self.trans_b,
        };
        host::tensors::gemm(shape, a.raw(), b.raw(), into).map_err(Error::Native)
    }
}

/// `values` as their little-endian bytes, in place (WebAssembly is little-endian).
fn f32_bytes(values: &[f32]) -> &[u8] {
    // SAFETY: the bytes of `values` are initialized, `u8` has no alignment
    // requirement, and the slice covers exactly the memory of `values`.
    unsafe { std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values)) }
}
