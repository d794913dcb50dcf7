//! The host side of `weir:step/tensors`: tensors a step keeps with the
//! engine between calls (in host memory, or on the step's GPU), and the
//! typed `gemm` that multiplies values, tensors and files without
//! MessagePack. Values cross the component boundary once each way.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};

use super::Bridge;
use crate::native::gemm::{Operand, Shape, Tensor, multiply_operands, pack, unpack};
use crate::runtime::wit_tensors::{Destination, GemmShape, Operand as WitOperand, Product};

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
    tensor.len() as u64 * 4
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
        let available = memory_budget.saturating_sub(self.tensors.bytes());
        let needed = values.len() as u64 * 4;
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

    /// The built-in `gemm` on values, tensors or files, its product sent
    /// where `into` says.
    pub(crate) fn gemm(
        &mut self,
        shape: GemmShape,
        a: WitOperand,
        b: WitOperand,
        into: Destination,
        memory_budget: u64,
    ) -> Result<Product, String> {
        let result = self.typed_gemm(shape, &a, &b, into, memory_budget);
        self.counted(result)
    }

    fn typed_gemm(
        &mut self,
        shape: GemmShape,
        a: &WitOperand,
        b: &WitOperand,
        into: Destination,
        memory_budget: u64,
    ) -> Result<Product, String> {
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
        let available = memory_budget.saturating_sub(self.tensors.bytes());
        if shape.result_bytes() > available {
            return Err(format!(
                "a {} × {} product needs {} bytes; the step's memory limit leaves {available} (limits.memory)",
                shape.m,
                shape.n,
                shape.result_bytes()
            ));
        }
        let (a_file, b_file) = (self.read_operand(a, "A", available)?, self.read_operand(b, "B", available)?);
        let product = multiply_operands(
            shape,
            self.operand(a, a_file.as_deref())?,
            self.operand(b, b_file.as_deref())?,
            device,
        )?;
        match into {
            Destination::Values => product.into_host().map(Product::Values),
            Destination::Tensor => Ok(Product::Tensor(self.tensors.insert(product))),
            Destination::File(path) => {
                let files = self.files.as_ref().ok_or("native functions are not available to this step")?;
                files.write(&path, &pack(&product.into_host()?))?;
                Ok(Product::File)
            }
        }
    }

    /// The values of a file operand, read from the step's directories.
    fn read_operand(&self, operand: &WitOperand, what: &str, max: u64) -> Result<Option<Vec<f32>>, String> {
        let WitOperand::File(path) = operand else { return Ok(None) };
        let files = self.files.as_ref().ok_or("native functions are not available to this step")?;
        unpack(&files.read(path, max)?, what).map(Some)
    }

    /// `operand` for the kernel; `file` holds its values if it is a file.
    fn operand<'a>(&'a self, operand: &'a WitOperand, file: Option<&'a [f32]>) -> Result<Operand<'a>, String> {
        match (operand, file) {
            (WitOperand::Values(values), _) => Ok(Operand::Host(values)),
            (WitOperand::Tensor(handle), _) => self.tensors.get(*handle).map(Tensor::operand),
            (WitOperand::File(_), Some(values)) => Ok(Operand::Host(values)),
            (WitOperand::File(path), None) => Err(format!("{path} was not read")),
        }
    }
}
