//! The raw host bridge: the `weir:step/host` imports on WebAssembly, and
//! stand-ins that print or fail when the step is built for the host.

#[cfg(target_arch = "wasm32")]
mod bindings {
    wit_bindgen::generate!({ path: "../wit", world: "step" });
}

#[cfg(target_arch = "wasm32")]
pub(crate) use bindings::weir::step::host::{call_native, metric, progress};

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn metric(name: &str, value: f64) {
    eprintln!("metric {name} = {value}");
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn progress(done: u64, total: u64) {
    eprintln!("progress {done}/{total}");
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn call_native(function: &str, _payload: &[u8]) -> Result<Vec<u8>, String> {
    Err(format!("cannot call native function `{function}`: not running under weir"))
}
