//! The `weir:step/tensors` imports, linked by hand rather than through the
//! trait `bindgen!` generates for them: a generated host function receives
//! its lists already copied into `Vec`s, while `gemm` here reads its raw
//! operands where they lie in the guest's linear memory (the guest is
//! paused during the call). Values then cross the boundary once: as the
//! product, on its way back. The types are still `bindgen!`'s, so the
//! signatures are checked against the WIT when a component is linked.

use wasmtime::StoreContextMut;
use wasmtime::component::{ComponentType, Lift, Linker, WasmList, WasmStr};

use super::sandbox::ComponentState;
use super::wit_tensors::{Destination, GemmShape};
use crate::bridge::Source;

/// The WIT `operand`, lifted without copying its bytes.
#[derive(ComponentType, Lift)]
#[component(variant)]
enum Operand {
    #[component(name = "raw")]
    Raw(WasmList<u8>),
    #[component(name = "tensor")]
    Tensor(u32),
    #[component(name = "file")]
    File(WasmStr),
}

/// The instance name the guest imports.
const INSTANCE: &str = "weir:step/tensors@0.1.0";

type Store<'a> = StoreContextMut<'a, ComponentState>;

/// Defines `weir:step/tensors` in `linker`.
pub(super) fn add_to_linker(linker: &mut Linker<ComponentState>) -> wasmtime::Result<()> {
    let mut tensors = linker.instance(INSTANCE)?;
    tensors.func_wrap("upload", |mut store: Store<'_>, (values,): (Vec<f32>,)| {
        let state = store.data_mut();
        let budget = state.guard.limiter.remaining();
        Ok((state.bridge.upload(values, budget),))
    })?;
    tensors.func_wrap("download", |mut store: Store<'_>, (tensor,): (u32,)| {
        Ok((store.data_mut().bridge.download(tensor),))
    })?;
    tensors.func_wrap("release", |mut store: Store<'_>, (tensor,): (u32,)| {
        Ok((store.data_mut().bridge.release(tensor),))
    })?;
    tensors.func_wrap(
        "gemm",
        |mut store: Store<'_>, (shape, a, b, into): (GemmShape, Operand, Operand, Destination)| {
            let product = {
                let store = &store;
                let view = |operand: &Operand| -> wasmtime::Result<Source<'_>> {
                    Ok(match operand {
                        Operand::Raw(bytes) => Source::Raw(bytes.as_le_slice(store)),
                        Operand::Tensor(handle) => Source::Tensor(*handle),
                        Operand::File(path) => Source::File(path.to_str(store)?),
                    })
                };
                let state = store.data();
                state.bridge.multiply(shape, view(&a)?, view(&b)?, state.guard.limiter.remaining())
            };
            Ok((store.data_mut().bridge.deliver(product, into),))
        },
    )?;
    Ok(())
}
