//! The native functions and steps an engine knows, by name.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{NativeFunction, NativeStep, gemm};

/// Registered native functions and steps. A later registration under a name
/// replaces the earlier one, so an application can replace a built-in.
#[derive(Clone)]
pub(crate) struct Natives {
    functions: BTreeMap<String, Arc<dyn NativeFunction>>,
    steps: BTreeMap<String, Arc<dyn NativeStep>>,
    /// Whether `gemm` is still the built-in one (not replaced by the application).
    builtin_gemm: bool,
}

impl Natives {
    /// The built-in functions and steps.
    pub(crate) fn with_builtins() -> Self {
        let mut natives = Self { functions: BTreeMap::new(), steps: BTreeMap::new(), builtin_gemm: false };
        natives.add_function(Arc::new(gemm::Gemm::new()));
        natives.add_step(Arc::new(gemm::MatmulStep));
        natives.builtin_gemm = true;
        natives
    }

    pub(crate) fn add_function(&mut self, function: Arc<dyn NativeFunction>) {
        self.builtin_gemm &= function.name() != weir_abi::GEMM;
        self.functions.insert(function.name().to_owned(), function);
    }

    pub(crate) fn add_step(&mut self, step: Arc<dyn NativeStep>) {
        self.steps.insert(step.name().to_owned(), step);
    }

    pub(crate) fn function(&self, name: &str) -> Option<&Arc<dyn NativeFunction>> {
        self.functions.get(name)
    }

    /// Whether `gemm` is the built-in one, which the typed tensor interface
    /// (`weir:step/tensors`) calls directly.
    pub(crate) fn builtin_gemm(&self) -> bool {
        self.builtin_gemm
    }

    pub(crate) fn step(&self, name: &str) -> Option<&Arc<dyn NativeStep>> {
        self.steps.get(name)
    }

    /// Names of the registered functions.
    pub(crate) fn function_names(&self) -> Vec<String> {
        self.functions.keys().cloned().collect()
    }

    /// Names of the registered steps.
    pub(crate) fn step_names(&self) -> Vec<String> {
        self.steps.keys().cloned().collect()
    }
}
