//! The host side of `weir:step/tensors`: tensors a step keeps with the
//! engine between calls (in host memory, or on the step's GPU), and the
//! typed `gemm` that multiplies values, tensors and files without
//! MessagePack. Values cross the component boundary once each way.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};

use super::Bridge;
use crate::native::gemm::{Operand, Shape, Tensor, multiply_operands, pack, unpack};
use crate::runtime::wit_tensors::{Destination, GemmShape, Product};

/// The next tensor handle. Handles are unique in the process and never
/// reused, so a handle of another step (or tenant) never names one of this
/// step's tensors: it is refused as unknown.
static NEXT_HANDLE: AtomicU32 = AtomicU32::new(1);

/// The tensors of one step execution, freed when its bridge is dropped.
#[derive(Default)]
pub(crate) struct Tensors {
    held: HashMap<u32, Tensor>,
    bytes: u64,
}

impl Tensors {
    /// Bytes the tensors hold; they count against the step's memory limit.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    fn insert(&mut self, tensor: Tensor) -> u32 {
        let handle = loop {
            let handle = NEXT_HANDLE.fetch_add(1, Ordering::Relaxed);
            if handle != 0 {
                break handle;
            }
        };
        self.bytes += tensor_bytes(&tensor);
        self.held.insert(handle, tensor);
        handle
    }

    fn get(&self, handle: u32) -> Result<&Tensor, String> {
        self.held.get(&handle).ok_or_else(|| unknown(handle))
    }

    fn remove(&mut self, handle: u32) -> Result<Tensor, String> {
        let tensor = self.held.remove(&handle).ok_or_else(|| unknown(handle))?;
        self.bytes -= tensor_bytes(&tensor);
        Ok(tensor)
    }
}

fn tensor_bytes(tensor: &Tensor) -> u64 {
    f32_bytes(tensor.len())
}

/// Bytes of `count` `f32` values.
fn f32_bytes(count: usize) -> u64 {
    (count as u64).saturating_mul(4)
}

fn unknown(handle: u32) -> String {
    format!(
        "no tensor {handle} in this step: a tensor belongs to the step execution that made it \
         and lives until it is released or that step ends"
    )
}

impl Bridge {
    /// Keeps `values` as a tensor on the step's device, if the memory limit
    /// leaves room beside `memory_budget`'s other claims.
    pub(crate) fn upload(&mut self, values: Vec<f32>, memory_budget: u64) -> Result<u32, String> {
        let available = self.available(memory_budget);
        let needed = f32_bytes(values.len());
        let result = if needed > available {
            Err(format!(
                "a tensor of {needed} bytes does not fit: the step's memory limit leaves {available} (limits.memory)"
            ))
        } else {
            Tensor::upload(values, self.device).map(|tensor| self.tensors.insert(tensor))
        };
        self.counted(result)
    }

    /// The values of tensor `handle`.
    pub(crate) fn download(&mut self, handle: u32) -> Result<Vec<f32>, String> {
        let result = self.tensors.get(handle).and_then(Tensor::to_host);
        self.counted(result)
    }

    /// Frees tensor `handle`.
    pub(crate) fn release(&mut self, handle: u32) -> Result<(), String> {
        let result = self.tensors.remove(handle).map(drop);
        self.counted(result)
    }

    /// The built-in `gemm` of `a` and `b`, which may allocate up to
    /// `memory_budget` bytes beside the step's tensors. It only reads the
    /// step's state (its operands may be views of the guest's memory);
    /// [`deliver`](Self::deliver) then sends the product where it must go.
    pub(crate) fn multiply(
        &self,
        shape: GemmShape,
        a: Source<'_>,
        b: Source<'_>,
        memory_budget: u64,
    ) -> Result<Tensor, String> {
        let (_, device) = self.resolve(weir_abi::GEMM)?;
        if !self.natives.builtin_gemm() {
            return Err("`gemm` was replaced by the application, so `weir:step/tensors` cannot run it; \
                 call it through call-native instead"
                .to_owned());
        }
        let shape = Shape {
            m: shape.m as usize,
            n: shape.n as usize,
            k: shape.k as usize,
            trans_a: shape.trans_a,
            trans_b: shape.trans_b,
        };
        let available = self.available(memory_budget);
        if shape.result_bytes() > available {
            return Err(format!(
                "a {} × {} product needs {} bytes; the step's memory limit leaves {available} (limits.memory)",
                shape.m,
                shape.n,
                shape.result_bytes()
            ));
        }
        let (a, b) = (self.values(a, "A", available)?, self.values(b, "B", available)?);
        multiply_operands(shape, a.operand(), b.operand(), device)
    }

    /// Sends `product` where `into` says: back as values, into a new tensor,
    /// or into a file under `/out`. A failure (of the product or here) is counted.
    pub(crate) fn deliver(&mut self, product: Result<Tensor, String>, into: Destination) -> Result<Product, String> {
        let result = product.and_then(|product| match into {
            Destination::Values => product.into_host().map(Product::Values),
            Destination::Tensor => Ok(Product::Tensor(self.tensors.insert(product))),
            Destination::File(path) => {
                self.files.write(&path, &pack(&product.into_host()?))?;
                Ok(Product::File)
            }
        });
        self.counted(result)
    }

    /// The values `source` names: borrowed where they can be.
    fn values<'a>(&'a self, source: Source<'a>, what: &str, max: u64) -> Result<Values<'a>, String> {
        match source {
            Source::Raw(bytes) => match as_f32(bytes) {
                Some(values) => Ok(Values::Borrowed(values)),
                None => unpack(bytes, what).map(Values::Owned),
            },
            Source::Tensor(handle) => self.tensors.get(handle).map(Values::Tensor),
            Source::File(path) => unpack(&self.files.read(&path, max)?, what).map(Values::Owned),
        }
    }
}

/// Where an operand of the typed `gemm` comes from.
pub(crate) enum Source<'a> {
    /// Little-endian `f32` bytes (a view of the guest's memory).
    Raw(&'a [u8]),
    /// One of the step's tensors.
    Tensor(u32),
    /// A file under `/in` or `/out`, by its guest path.
    File(Cow<'a, str>),
}

/// An operand's values, resolved.
enum Values<'a> {
    Borrowed(&'a [f32]),
    Owned(Vec<f32>),
    Tensor(&'a Tensor),
}

impl Values<'_> {
    fn operand(&self) -> Operand<'_> {
        match self {
            Values::Borrowed(values) => Operand::Host(values),
            Values::Owned(values) => Operand::Host(values),
            Values::Tensor(tensor) => tensor.operand(),
        }
    }
}

/// `bytes` seen as `f32` values in place, when they are aligned for it and
/// the host is little-endian (as WebAssembly is); `None` otherwise.
fn as_f32(bytes: &[u8]) -> Option<&[f32]> {
    if cfg!(target_endian = "big") {
        return None;
    }
    // SAFETY: every bit pattern is a valid f32, and `align_to` only places
    // in the middle slice what is correctly aligned for it.
    let (head, values, tail) = unsafe { bytes.align_to::<f32>() };
    (head.is_empty() && tail.is_empty()).then_some(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[repr(align(4))]
    struct Aligned([u8; 16]);

    #[test]
    fn raw_operands_are_viewed_in_place_when_aligned_and_decoded_when_not() {
        let values = [1.5f32, -2.0, 3.25];
        let mut buffer = Aligned([0; 16]);
        for (i, value) in values.iter().enumerate() {
            buffer.0[i * 4..i * 4 + 4].copy_from_slice(&value.to_le_bytes());
        }
        let in_place = as_f32(&buffer.0[..12]).expect("an aligned window is viewed in place");
        assert_eq!(in_place, values);
        assert_eq!(in_place.as_ptr().cast::<u8>(), buffer.0.as_ptr(), "no copy");

        buffer.0.copy_within(0..12, 1);
        let misaligned = &buffer.0[1..13];
        assert!(as_f32(misaligned).is_none());
        assert_eq!(unpack(misaligned, "A").unwrap(), values, "decoded by copying instead");
    }
}
