//! The raw host bridge: the `weir:step/host` and `weir:step/tensors`
//! imports on WebAssembly, and stand-ins that print or fail when the step is
//! built for the host.

#[cfg(target_arch = "wasm32")]
mod bindings {
    // Borrowed operands: a guest's values are passed where they are, not
    // copied into an owned list first.
    wit_bindgen::generate!({
        path: "../wit",
        world: "step",
        ownership: Borrowing { duplicate_if_necessary: false },
    });
}

#[cfg(target_arch = "wasm32")]
pub(crate) use bindings::weir::step::host::{call_native, metric, metric_at, progress};
#[cfg(target_arch = "wasm32")]
pub(crate) use bindings::weir::step::tensors;

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn metric(name: &str, value: f64) {
    eprintln!("metric {name} = {value}");
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn metric_at(name: &str, value: f64, at: u64) {
    eprintln!("metric {name} = {value} at {at}");
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn progress(done: u64, total: u64) {
    eprintln!("progress {done}/{total}");
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn call_native(function: &str, _payload: &[u8]) -> Result<Vec<u8>, String> {
    Err(format!("cannot call native function `{function}`: not running under weir"))
}

/// Stand-ins for `weir:step/tensors` outside weir: every call fails. The
/// types mirror the generated ones; nothing reads their fields here.
#[cfg(not(target_arch = "wasm32"))]
#[allow(dead_code)]
pub(crate) mod tensors {
    /// Where an operand's values come from.
    pub enum Operand<'a> {
        /// The values, as little-endian `f32` bytes.
        Raw(&'a [u8]),
        /// A tensor's handle.
        Tensor(u32),
        /// A file under `/in` or `/out`.
        File(&'a str),
    }

    /// Where a product goes.
    pub enum Destination<'a> {
        /// Back as values.
        Values,
        /// Into a new tensor.
        Tensor,
        /// Into a file under `/out`.
        File(&'a str),
    }

    /// A product.
    pub enum Product {
        /// The values.
        Values(Vec<f32>),
        /// A new tensor's handle.
        Tensor(u32),
        /// Written to the file.
        File,
    }

    /// A product's shape.
    pub struct GemmShape {
        pub m: u32,
        pub n: u32,
        pub k: u32,
        pub trans_a: bool,
        pub trans_b: bool,
    }

    fn outside() -> String {
        "cannot use engine tensors: not running under weir".to_owned()
    }

    pub fn upload(_values: &[f32]) -> Result<u32, String> {
        Err(outside())
    }

    pub fn download(_tensor: u32) -> Result<Vec<f32>, String> {
        Err(outside())
    }

    pub fn release(_tensor: u32) -> Result<(), String> {
        Err(outside())
    }

    pub fn gemm(
        _shape: GemmShape,
        _a: Operand<'_>,
        _b: Operand<'_>,
        _into: Destination<'_>,
    ) -> Result<Product, String> {
        Err(outside())
    }
}
