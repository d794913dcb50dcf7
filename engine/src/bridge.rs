//! The host side of `weir:step/host` (a step's metrics, progress and calls
//! to native functions) and of `weir:step/tensors` (in `tensors`).
//! Everything the guest passes is checked here; every failure reaches the
//! guest as an error value, never as a host panic.

mod tensors;

pub(crate) use tensors::Source;

use std::collections::BTreeSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use crate::executor::JobSpec;
use crate::native::{CallContext, Device, GpuSupport, GuestFiles, NativeFunction, Natives};
use crate::telemetry::Telemetry;

/// Longest native function name a guest may pass.
const MAX_FUNCTION_NAME: usize = 256;

/// The bridge of one step execution.
pub(crate) struct Bridge {
    step: String,
    run: String,
    tenant: String,
    natives: Arc<Natives>,
    allowed: BTreeSet<String>,
    device: Device,
    files: GuestFiles,
    telemetry: Telemetry,
    failures: NativeFailures,
    tensors: tensors::Tensors,
}

/// The native calls of one execution that failed. The guest saw each as an
/// error value; the host sees them too: a panic fails the step, and a step
/// with any failed call is not cached (its result may depend on a failure
/// that will not happen again).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct NativeFailures {
    /// How many calls failed.
    pub count: u64,
    /// The first failure's message.
    pub first: Option<String>,
    /// The first panic of a native function, if one panicked.
    pub panic: Option<String>,
}

impl Bridge {
    /// A bridge for the step of `job`, which may call the native functions
    /// it declares on its device, with file references resolved in `files`.
    pub(crate) fn new(job: &JobSpec, natives: Arc<Natives>, files: GuestFiles, telemetry: Telemetry) -> Self {
        Self {
            step: job.step.clone(),
            run: job.run_id.clone(),
            tenant: job.tenant.clone(),
            natives,
            allowed: job.natives.clone(),
            device: job.device,
            files,
            telemetry,
            failures: NativeFailures::default(),
            tensors: tensors::Tensors::default(),
        }
    }

    pub(crate) fn metric(&mut self, name: &str, value: f64, at: Option<u64>) {
        self.telemetry.metric(&self.step, name, value, at);
    }

    pub(crate) fn progress(&mut self, done: u64, total: u64) {
        self.telemetry.progress(&self.step, done, total);
    }

    /// The telemetry gathered, and the native calls that failed.
    pub(crate) fn finish(self) -> (Telemetry, NativeFailures) {
        (self.telemetry, self.failures)
    }

    /// Calls native function `function` for the guest, which may allocate
    /// `memory_budget` bytes of host memory (what the step's memory limit
    /// leaves beyond its guest's). A failure is counted as well as returned.
    pub(crate) fn call_native(
        &mut self,
        function: &str,
        payload: &[u8],
        memory_budget: u64,
    ) -> Result<Vec<u8>, String> {
        let result = self.dispatch(function, payload, memory_budget);
        self.counted(result)
    }

    /// Counts `result` among the failed calls if it is an error.
    fn counted<T>(&mut self, result: Result<T, String>) -> Result<T, String> {
        if let Err(why) = &result {
            self.failures.count += 1;
            self.failures.first.get_or_insert_with(|| why.clone());
        }
        result
    }

    fn dispatch(&mut self, function: &str, payload: &[u8], memory_budget: u64) -> Result<Vec<u8>, String> {
        let (native, device) = self.resolve(function)?;
        let files = &self.files;
        let memory_budget = self.available(memory_budget);
        let context =
            CallContext { step: &self.step, run: &self.run, tenant: &self.tenant, device, files, memory_budget };
        catch_unwind(AssertUnwindSafe(|| native.call(&context, payload))).unwrap_or_else(|panic| {
            let why = format!("native function `{function}` panicked: {}", panic_text(&*panic));
            self.failures.panic.get_or_insert_with(|| why.clone());
            Err(why)
        })
    }

    /// What `memory_budget` leaves beside the step's tensors.
    fn available(&self, memory_budget: u64) -> u64 {
        memory_budget.saturating_sub(self.tensors.bytes())
    }

    /// The native function `function`, if the step may call it, and the
    /// device the call runs on.
    fn resolve(&self, function: &str) -> Result<(Arc<dyn NativeFunction>, Device), String> {
        if function.len() > MAX_FUNCTION_NAME {
            return Err(format!("native function name of {} bytes is too long", function.len()));
        }
        let Some(native) = self.natives.function(function) else {
            let known = self.natives.function_names().join(", ");
            return Err(format!("no native function named `{function}` (registered: {known})"));
        };
        if !self.allowed.contains(function) {
            return Err(format!(
                "step `{}` does not declare native function `{function}`; add it to the step's `natives`",
                self.step
            ));
        }
        let device = match (native.gpu(), self.device) {
            (GpuSupport::GpuOnly, Device::Cpu) => {
                return Err(format!(
                    "native function `{function}` runs only on a GPU, and step `{}` has none \
                     (declare resources = {{ gpu = 1 }} and run where a GPU is available)",
                    self.step
                ));
            }
            (GpuSupport::CpuOnly, _) => Device::Cpu,
            (_, device) => device,
        };
        Ok((native.clone(), device))
    }
}

/// The message of a panic payload.
pub(crate) fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}
