//! # weir: an embedded workflow engine for machine-learning pipelines
//!
//! A [`Pipeline`] is a graph of steps. Each step is a WASI program (a
//! preview-1 module or a preview-2 component) that reads its inputs under
//! `/in`, writes its outputs under `/out`, and gets its parameters as JSON in
//! `/in/.params.json`. weir derives the order from the data dependencies,
//! runs independent steps in parallel, keeps every output in a
//! content-addressed [`Store`], and on a re-run reuses every step whose
//! module, parameters and inputs did not change.
//!
//! The main types:
//! - [`Pipeline`], built in code with [`Pipeline::builder`] or loaded from a
//!   TOML manifest with [`Pipeline::from_manifest`]; validated as a whole.
//! - [`Engine`], made by [`Engine::builder`]: a workspace, a WebAssembly
//!   runtime that compiles each module once, and a worker pool.
//! - [`RunOptions`] (parameter overrides, forced re-runs) and the
//!   [`RunReport`] that [`Engine::run`] returns.
//! - [`Store`]: read artifacts back by [`Digest`].
//!
//! A runnable example, with the built-in native step `matmul` (so it needs
//! no WebAssembly file):
//!
//! ```
//! use weir::{Engine, OutputKind, Pipeline, RunOptions, StepBuilder, StepStatus};
//!
//! let dir = tempfile::tempdir()?;
//! let floats = |values: &[f32]| values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>();
//! std::fs::write(dir.path().join("a.f32"), floats(&[1.0, 2.0, 3.0, 4.0]))?; // 2 × 2
//! std::fs::write(dir.path().join("b.f32"), floats(&[10.0, 20.0]))?; // 2 × 1
//!
//! let pipeline = Pipeline::builder("product")
//!     .input("a", dir.path().join("a.f32"))
//!     .input("b", dir.path().join("b.f32"))
//!     .step(
//!         StepBuilder::native("multiply", "matmul")
//!             .input("a", "inputs.a")
//!             .input("b", "inputs.b")
//!             .params([("m", 2), ("n", 1), ("k", 2)])
//!             .output("c", OutputKind::File),
//!     )
//!     .build()?;
//!
//! let engine = Engine::builder().workspace(dir.path().join(".weir")).build()?;
//! let report = engine.run(&pipeline, &RunOptions::new())?;
//! let c = engine.store().read_file(&report.output("multiply", "c").expect("multiplied").digest)?;
//! assert_eq!(c, floats(&[50.0, 110.0]));
//!
//! // Nothing changed, so the second run reuses the result.
//! let again = engine.run(&pipeline, &RunOptions::new())?;
//! assert_eq!(again.steps["multiply"].status, StepStatus::Cached);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A WASI step is the same, with a module (see the README for the manifest):
//!
//! ```no_run
//! use weir::{Engine, OutputKind, Pipeline, RunOptions, StepBuilder};
//!
//! let pipeline = Pipeline::builder("hello")
//!     .param("word", "hello")
//!     .input("text", "data/text.txt")
//!     .step(
//!         StepBuilder::new("upper", "build/tool.wasm")
//!             .args(["upper", "${params.word}"])
//!             .input("text", "inputs.text")
//!             .output("result", OutputKind::File),
//!     )
//!     .build()?;
//! let engine = Engine::builder().workspace(".weir").build()?;
//! let report = engine.run(&pipeline, &RunOptions::new().param("word", "hi"))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod bridge;
mod cache_key;
mod cancel;
mod digest;
mod engine;
mod error;
mod events;
mod executor;
mod file_stamp;
mod history;
mod host_files;
mod kinds;
mod limits;
mod manifest;
mod module_kind;
mod native;
mod options;
pub mod package;
mod params;
mod pipeline;
mod remote;
mod report;
mod retry;
mod run_id;
mod runtime;
mod scheduler;
mod status;
mod step_exec;
mod store;
mod telemetry;
mod tenant;
mod tenant_view;

pub use cancel::CancelToken;
pub use digest::{Digest, ParseDigestError};
pub use engine::{Engine, EngineBuilder, MAX_JOBS, RunHandle};
pub use error::{Error, Location, Result, StepError, StepErrorKind, TrapCode, ValidationError, ValidationErrorKind};
pub use events::{Event, EventSink, LogStream};
pub use executor::{ExecutorKind, SlurmOptions, SlurmRequest, serve_worker};
pub use history::{
    Comparison, Explanation, History, LineageNode, MetricPoint, MetricRow, MetricSeries, MetricSummary, RunDetail,
    RunFilter, RunSummary, StepComparison, StepDetails, StepRecord, lower_is_better,
};
pub use kinds::python::COMPONENTIZE_PY_VAR;
pub use limits::{LimitExceeded, LimitOverrides, Limits};
pub use native::{CallContext, Device, GpuSupport, NativeFunction, NativeStep, StepContext, TypedFunction, native_fn};
pub use options::RunOptions;
pub use params::Params;
pub use pipeline::{
    InputRef, OutputKind, PackagedModule, Pipeline, PipelineBuilder, PipelineOutput, PythonScript, Resources, Step,
    StepBuilder, StepCode,
};
pub use remote::{CacheRemote, RemoteEntry, RemoteError, Transfer};
pub use report::{
    Attempt, EntryReport, Logs, Phases, Placement, RemoteUsage, RunReport, RunStatus, StepReport, StepStatus,
    Verification,
};
pub use retry::{MAX_RETRIES, RetryOn, RetryPolicy};
pub use run_id::new_run_id;
pub use status::{Freshness, PipelineStatus, StepStatusLine};
pub use store::{Artifact, GcHold, GcReport, Store, TreeEntry, VerifyReport};
pub use tenant::{DEFAULT_TENANT, TenantQuota};
pub use tenant_view::TenantView;

/// How manifests and the command line write values: durations, sizes,
/// timeouts, and a parameter's value given as text.
pub mod text {
    pub use crate::limits::{parse_duration, parse_size, parse_timeout};
    pub use crate::params::parse_like;
    pub use crate::pipeline::names::check as check_name;
}
