//! Validated pipelines: steps, their data dependencies and their order.

mod builder;
mod graph;
pub(crate) mod names;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use builder::{PipelineBuilder, StepBuilder};

use crate::LimitOverrides;
use crate::params::Params;

/// A validated pipeline: steps in an order where every step comes after the
/// steps it depends on. Build one with [`Pipeline::builder`] or load a manifest
/// with [`Pipeline::from_manifest`](crate::Pipeline::from_manifest).
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub(crate) name: String,
    pub(crate) file: Option<PathBuf>,
    pub(crate) params: Params,
    pub(crate) inputs: BTreeMap<String, PathBuf>,
    pub(crate) steps: Vec<Step>,
    pub(crate) outputs: BTreeMap<String, PipelineOutput>,
    /// Where the pipeline was loaded from, when it came from a manifest.
    pub(crate) manifest: Option<ManifestOrigin>,
    /// The directory every file of the pipeline was confined to when it was
    /// loaded ([`Pipeline::from_manifest_within`]), if it was.
    pub(crate) confined_to: Option<PathBuf>,
}

/// The manifest file a pipeline was loaded from, as it was when loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ManifestOrigin {
    /// The file's canonical path (as given, where it cannot be resolved).
    pub(crate) path: PathBuf,
    /// The digest of the text the pipeline was parsed from.
    pub(crate) digest: crate::Digest,
}

/// A named output of the whole pipeline: a step's output, optionally
/// exported to a host path after every successful run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineOutput {
    /// The step that produces it.
    pub step: String,
    /// That step's output.
    pub output: String,
    /// Where to copy it after a successful run.
    pub export: Option<PathBuf>,
}

impl Pipeline {
    /// The pipeline with its named outputs kept but none exported to a host
    /// path: how a server runs a published pipeline, whose outputs its
    /// tenants download instead.
    pub fn without_exports(mut self) -> Self {
        for output in self.outputs.values_mut() {
            output.export = None;
        }
        self
    }

    /// Starts a pipeline definition in code.
    pub fn builder(name: impl Into<String>) -> PipelineBuilder {
        PipelineBuilder::new(name)
    }

    /// The pipeline's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The manifest the pipeline was loaded from, if any.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The digest of the manifest text the pipeline was loaded from, if it
    /// was loaded from one (recorded with every run, so a later change to
    /// the file can be noticed).
    pub fn manifest_digest(&self) -> Option<&crate::Digest> {
        self.manifest.as_ref().map(|origin| &origin.digest)
    }

    /// Pipeline parameters with their default values.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Pipeline inputs: name to host path.
    pub fn inputs(&self) -> &BTreeMap<String, PathBuf> {
        &self.inputs
    }

    /// The steps, each after all the steps it depends on.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// The pipeline's named outputs.
    pub fn outputs(&self) -> &BTreeMap<String, PipelineOutput> {
        &self.outputs
    }

    /// The step with this name.
    pub fn step(&self, name: &str) -> Option<&Step> {
        self.steps.iter().find(|step| step.name == name)
    }
}

/// One step of a pipeline: a WASI program with declared inputs, outputs,
/// parameters and limits.
#[derive(Debug, Clone)]
pub struct Step {
    pub(crate) name: String,
    pub(crate) code: StepCode,
    pub(crate) natives: std::collections::BTreeSet<String>,
    pub(crate) resources: Resources,
    pub(crate) args: Vec<String>,
    pub(crate) inputs: BTreeMap<String, InputRef>,
    pub(crate) outputs: BTreeMap<String, OutputKind>,
    pub(crate) params: serde_json::Map<String, serde_json::Value>,
    pub(crate) limits: LimitOverrides,
    pub(crate) deterministic: bool,
    pub(crate) reuse: bool,
    pub(crate) max_age: Option<std::time::Duration>,
    pub(crate) retry: crate::RetryPolicy,
    pub(crate) ignored_params: std::collections::BTreeSet<String>,
    /// The types its package declares for its parameters (checked once a
    /// run has resolved them).
    pub(crate) param_types: BTreeMap<String, crate::package::ParamType>,
    pub(crate) map: Option<String>,
    /// Where on a Slurm cluster it runs (not part of its cache key).
    pub(crate) slurm: crate::SlurmRequest,
    /// The manifest that defines it, when that is not the pipeline's own
    /// (a step inlined from a sub-pipeline): errors name this file.
    pub(crate) file: Option<PathBuf>,
}

impl Step {
    /// The step's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The manifest file that defines the step, when it came from a
    /// sub-pipeline; `None` for a step of the pipeline's own manifest.
    pub fn defined_in(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// What the step runs: a WebAssembly module or a registered native step.
    pub fn code(&self) -> &StepCode {
        &self.code
    }

    /// Path of the WebAssembly module or component, for a wasm step.
    pub fn module(&self) -> Option<&Path> {
        match &self.code {
            StepCode::Wasm(path) => Some(path),
            StepCode::Native(_) | StepCode::Python(_) | StepCode::Package(_) => None,
        }
    }

    /// Native functions the step may call through the host bridge.
    pub fn natives(&self) -> &std::collections::BTreeSet<String> {
        &self.natives
    }

    /// Resources the step needs while it runs (e.g. GPU slots).
    pub fn resources(&self) -> Resources {
        self.resources
    }

    /// The Slurm options it runs with under the `slurm` executor (its own
    /// over its pipeline's); they do not change its cache key.
    pub fn slurm(&self) -> &crate::SlurmRequest {
        &self.slurm
    }

    /// Command-line arguments (after argv\[0\]), before parameter substitution.
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// Inputs by the name the guest sees under `/in`.
    pub fn inputs(&self) -> &BTreeMap<String, InputRef> {
        &self.inputs
    }

    /// Declared outputs by the name the guest writes under `/out`.
    pub fn outputs(&self) -> &BTreeMap<String, OutputKind> {
        &self.outputs
    }

    /// Step parameters, before substitution of pipeline parameters.
    pub fn params(&self) -> &serde_json::Map<String, serde_json::Value> {
        &self.params
    }

    /// The sandbox limits the step sets; the rest take the engine's defaults.
    pub fn limits(&self) -> &LimitOverrides {
        &self.limits
    }

    /// Whether the guest's clocks and random source are virtual and seeded
    /// from the cache key, so that re-executing it gives the same bytes.
    pub fn deterministic(&self) -> bool {
        self.deterministic
    }

    /// Whether a cached result may be reused (`false` for side-effecting steps).
    pub fn reuse(&self) -> bool {
        self.reuse
    }

    /// How old a cached result may be and still be reused (`None`: any age).
    pub fn max_age(&self) -> Option<std::time::Duration> {
        self.max_age
    }

    /// How a failed execution is retried.
    pub fn retry(&self) -> &crate::RetryPolicy {
        &self.retry
    }

    /// Parameters that do not affect the result, left out of the cache key:
    /// step parameters of these names, and `${params.NAME}` in the args.
    pub fn ignored_params(&self) -> &std::collections::BTreeSet<String> {
        &self.ignored_params
    }

    /// For a map step, the directory input it runs once per entry of.
    pub fn map(&self) -> Option<&str> {
        self.map.as_deref()
    }

    /// The kind of artifact output `name` is downstream: a map step gathers
    /// each declared output into a directory keyed by entry name.
    pub fn output_kind(&self, name: &str) -> Option<OutputKind> {
        let declared = *self.outputs.get(name)?;
        Some(if self.map.is_some() { OutputKind::Dir } else { declared })
    }

    /// Names of the steps this one reads outputs of.
    pub fn upstream(&self) -> impl Iterator<Item = &str> {
        self.inputs.values().filter_map(|source| match source {
            InputRef::Step { step, .. } => Some(step.as_str()),
            InputRef::Pipeline(_) => None,
        })
    }
}

/// What a step runs (each kind is a plug-in of `engine/src/kinds/`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum StepCode {
    /// A WASI module or component at this path.
    Wasm(PathBuf),
    /// A native step registered with the engine under this name.
    Native(String),
    /// A Python script weir builds into a component.
    Python(PythonScript),
    /// The module of a step package (`uses`).
    Package(PackagedModule),
}

/// A packaged step's module: the layer of the package in an image layout
/// that holds it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PackagedModule {
    /// The image layout (a tar archive or a directory).
    pub source: PathBuf,
    /// Whether `source` is one of the workspace's kept registry packages
    /// (read directly, not through a tenant's confinement).
    pub kept: bool,
    /// The module layer's digest.
    pub module: crate::package::Sha256Digest,
    /// The module layer's length in bytes.
    pub module_size: u64,
    /// The package's step name (argv\[0\] of its runs).
    pub name: String,
}

/// A Python step's code: a script, bundled with the `.py` files beside it
/// and the packages beneath it (see `docs/python.md`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PythonScript {
    /// The script, run as `__main__` each time the step executes.
    pub script: PathBuf,
    /// Requirements files (pip's format) of pure-Python packages to vendor.
    pub requirements: Vec<PathBuf>,
}

/// Resources a step holds while it executes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// GPU slots (0: none).
    #[serde(default)]
    pub gpu: u32,
}

/// Where a step input comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum InputRef {
    /// A pipeline input, written `inputs.NAME`.
    Pipeline(String),
    /// Another step's output, written `STEP.OUTPUT`.
    Step {
        /// The producing step.
        step: String,
        /// Its output.
        output: String,
    },
}

impl fmt::Display for InputRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputRef::Pipeline(name) => write!(f, "inputs.{name}"),
            InputRef::Step { step, output } => write!(f, "{step}.{output}"),
        }
    }
}

/// Whether an artifact is a single file or a directory tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    /// A regular file.
    File,
    /// A directory of files and directories.
    Dir,
}

impl fmt::Display for OutputKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OutputKind::File => "file",
            OutputKind::Dir => "dir",
        })
    }
}
