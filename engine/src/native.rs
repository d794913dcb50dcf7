//! Native code that steps can use: functions guests call through the host
//! bridge (`weir:step/host.call-native`), and whole steps implemented in Rust.
//!
//! The embedding application registers its own with
//! [`EngineBuilder::native_function`](crate::EngineBuilder::native_function)
//! and [`EngineBuilder::native_step`](crate::EngineBuilder::native_step);
//! built-ins (the `gemm` function and the `matmul` step) are always there.

#[cfg(feature = "cuda")]
mod cuda;
mod files;
pub(crate) mod gemm;
mod registry;
mod typed;

use std::path::{Path, PathBuf};

pub(crate) use files::GuestFiles;
pub(crate) use registry::Natives;
pub use typed::{TypedFunction, native_fn};

/// How many CUDA devices this machine has: 0 without the `cuda` feature.
pub(crate) fn detect_gpus() -> usize {
    #[cfg(feature = "cuda")]
    {
        cuda::device_count()
    }
    #[cfg(not(feature = "cuda"))]
    {
        0
    }
}

use crate::telemetry::Telemetry;

/// Where a native function or step may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GpuSupport {
    /// Only on the CPU.
    #[default]
    CpuOnly,
    /// On a GPU when the calling step holds a GPU slot on a machine with a
    /// GPU, otherwise on the CPU.
    CpuOrGpu,
    /// Only on a GPU: calling it from a step without a GPU is an error.
    GpuOnly,
}

/// The device a call runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Device {
    /// The CPU.
    Cpu,
    /// The GPU with this CUDA ordinal.
    Gpu {
        /// The CUDA device ordinal.
        ordinal: usize,
    },
}

/// A function guests call by name with a MessagePack payload.
///
/// Its name and version are part of the cache key of every step that
/// declares it (`natives = ["NAME"]`): bump the version whenever a change
/// could change a result. [`native_fn`] builds one from a typed closure.
pub trait NativeFunction: Send + Sync + 'static {
    /// The name guests call it by.
    fn name(&self) -> &str;
    /// The version; part of the cache key of steps that may call it.
    fn version(&self) -> u32;
    /// Where it can run (default: CPU only).
    fn gpu(&self) -> GpuSupport {
        GpuSupport::CpuOnly
    }
    /// Handles one call. An `Err` reaches the guest as an error value.
    fn call(&self, context: &CallContext<'_>, payload: &[u8]) -> Result<Vec<u8>, String>;
}

/// What a [`NativeFunction`] call can see of the calling step.
pub struct CallContext<'a> {
    pub(crate) step: &'a str,
    pub(crate) run: &'a str,
    pub(crate) tenant: &'a str,
    pub(crate) device: Device,
    pub(crate) files: &'a GuestFiles,
    pub(crate) memory_budget: u64,
}

impl CallContext<'_> {
    /// Bytes of host memory the call may allocate: the calling step's memory
    /// limit less what its guest holds. A function that needs more must
    /// refuse (its buffers count against the step's limit like the guest's).
    pub fn memory_budget(&self) -> u64 {
        self.memory_budget
    }

    /// The calling step.
    pub fn step(&self) -> &str {
        self.step
    }

    /// The run of the calling step.
    pub fn run(&self) -> &str {
        self.run
    }

    /// The tenant whose run it is ([`DEFAULT_TENANT`](crate::DEFAULT_TENANT) for the operator).
    pub fn tenant(&self) -> &str {
        self.tenant
    }

    /// The device this call should run on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Reads a file the guest names by its path (`/in/...` or `/out/...`).
    /// Paths that leave the step's directories are refused, and so is a file
    /// larger than [`memory_budget`](Self::memory_budget).
    pub fn read_file(&self, guest_path: &str) -> Result<Vec<u8>, String> {
        self.files.read(guest_path, self.memory_budget)
    }

    /// Writes a file the guest names by its path under `/out`. A write that
    /// would pass the step's `output` or `files` quota is refused.
    pub fn write_file(&self, guest_path: &str, bytes: &[u8]) -> Result<(), String> {
        self.files.write(guest_path, bytes)
    }
}

/// A whole step implemented in Rust: the same contract as a wasm step
/// (inputs, outputs, parameters), used from a manifest as `native = "NAME"`.
pub trait NativeStep: Send + Sync + 'static {
    /// The name a manifest refers to it by.
    fn name(&self) -> &str;
    /// The version; part of the cache key of steps that run it.
    fn version(&self) -> u32;
    /// Where it can run (default: CPU only).
    fn gpu(&self) -> GpuSupport {
        GpuSupport::CpuOnly
    }
    /// Runs the step: read [`StepContext::input`]s, write every declared
    /// [`StepContext::output`]. An `Err` fails the step with that message.
    fn run(&self, context: &mut StepContext<'_>) -> Result<(), String>;
}

/// What a [`NativeStep`] sees: host paths of its inputs and outputs, its
/// parameters, and the telemetry it reports.
pub struct StepContext<'a> {
    pub(crate) step: &'a str,
    pub(crate) run: &'a str,
    pub(crate) tenant: &'a str,
    pub(crate) device: Device,
    pub(crate) in_dir: &'a Path,
    pub(crate) out_dir: &'a Path,
    pub(crate) params: &'a serde_json::Value,
    pub(crate) telemetry: &'a mut Telemetry,
    pub(crate) cancel: Option<&'a crate::CancelToken>,
}

impl StepContext<'_> {
    /// The run of the step.
    pub fn run(&self) -> &str {
        self.run
    }

    /// The tenant whose run it is ([`DEFAULT_TENANT`](crate::DEFAULT_TENANT) for the operator).
    pub fn tenant(&self) -> &str {
        self.tenant
    }

    /// Whether the run was cancelled: a long native step should check it
    /// now and then and return early (its result is then discarded and the
    /// step reported as cancelled).
    pub fn cancelled(&self) -> bool {
        self.cancel.is_some_and(crate::CancelToken::is_cancelled)
    }

    /// The step's name.
    pub fn step(&self) -> &str {
        self.step
    }

    /// The device the step should run on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Host path of input `name` (read it, do not modify it).
    pub fn input(&self, name: &str) -> PathBuf {
        self.in_dir.join(name)
    }

    /// Host path where output `name` must be written.
    pub fn output(&self, name: &str) -> PathBuf {
        self.out_dir.join(name)
    }

    /// The step's resolved parameters, decoded.
    pub fn params<T: serde::de::DeserializeOwned>(&self) -> Result<T, String> {
        T::deserialize(self.params).map_err(|err| format!("bad parameters: {err}"))
    }

    /// Records a metric value.
    pub fn metric(&mut self, name: &str, value: f64) {
        self.telemetry.metric(self.step, name, value, None);
    }

    /// Records a metric value at position `at` of the caller's making (an
    /// epoch, a batch), which charts plot it against.
    pub fn metric_at(&mut self, name: &str, value: f64, at: u64) {
        self.telemetry.metric(self.step, name, value, Some(at));
    }

    /// Reports progress.
    pub fn progress(&mut self, done: u64, total: u64) {
        self.telemetry.progress(self.step, done, total);
    }
}
