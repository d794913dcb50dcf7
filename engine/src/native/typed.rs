//! Native functions from typed closures: MessagePack decoding and encoding
//! done once, here.

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{CallContext, GpuSupport, NativeFunction};

/// A [`NativeFunction`] made from a closure over typed values; see [`native_fn`].
pub struct TypedFunction<I, O, F> {
    name: String,
    version: u32,
    gpu: GpuSupport,
    function: F,
    types: PhantomData<fn(I) -> O>,
}

/// A native function `name` at `version` that decodes its MessagePack
/// payload as `I`, runs `function`, and encodes the `O` it returns.
///
/// ```
/// let double = weir::native_fn("double", 1, |_context, values: Vec<f64>| {
///     Ok(values.iter().map(|v| v * 2.0).collect::<Vec<f64>>())
/// });
/// # let _ = double;
/// ```
pub fn native_fn<I, O, F>(name: impl Into<String>, version: u32, function: F) -> TypedFunction<I, O, F>
where
    I: DeserializeOwned,
    O: Serialize,
    F: Fn(&CallContext<'_>, I) -> Result<O, String> + Send + Sync + 'static,
{
    TypedFunction { name: name.into(), version, gpu: GpuSupport::CpuOnly, function, types: PhantomData }
}

impl<I, O, F> TypedFunction<I, O, F> {
    /// Declares where the function can run.
    pub fn gpu(mut self, gpu: GpuSupport) -> Self {
        self.gpu = gpu;
        self
    }
}

impl<I, O, F> NativeFunction for TypedFunction<I, O, F>
where
    I: DeserializeOwned + 'static,
    O: Serialize + 'static,
    F: Fn(&CallContext<'_>, I) -> Result<O, String> + Send + Sync + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn version(&self) -> u32 {
        self.version
    }

    fn gpu(&self) -> GpuSupport {
        self.gpu
    }

    fn call(&self, context: &CallContext<'_>, payload: &[u8]) -> Result<Vec<u8>, String> {
        let input: I =
            rmp_serde::from_slice(payload).map_err(|err| format!("malformed payload for `{}`: {err}", self.name))?;
        let output = (self.function)(context, input)?;
        rmp_serde::to_vec_named(&output).map_err(|err| format!("encoding the result of `{}`: {err}", self.name))
    }
}
