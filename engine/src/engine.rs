//! The engine: a workspace store, a WebAssembly runtime and a worker pool,
//! shared by every run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;

use crate::error::{ValidationError, ValidationErrorKind as Kind};
use crate::history::{History, RunStart};
use crate::native::{NativeFunction, NativeStep, Natives, detect_gpus};
use crate::params::{self, Params};
use crate::run_id::new_run_id;
use crate::runtime::{Program, Runtime};
use crate::scheduler::{Coordinator, PlannedStep};
use crate::step_exec::JobCode;
use crate::{Artifact, Error, Pipeline, Result, RunOptions, RunReport, Step, StepCode, Store};

/// Runs pipelines in a workspace. Cheap to clone: an `Arc` inside.
///
/// Compiled modules are kept for the engine's lifetime (and on disk), so an
/// application that runs many pipelines should keep one engine.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

pub(crate) struct EngineInner {
    pub(crate) store: Store,
    pub(crate) runtime: Runtime,
    pub(crate) pool: rayon::ThreadPool,
    pub(crate) natives: Arc<Natives>,
    pub(crate) gpu_slots: usize,
    pub(crate) gpus_detected: usize,
    pub(crate) history: History,
}

/// Configures an [`Engine`].
#[derive(Clone)]
pub struct EngineBuilder {
    workspace: PathBuf,
    jobs: Option<usize>,
    gpu_slots: Option<usize>,
    natives: Natives,
}

impl Default for EngineBuilder {
    fn default() -> Self {
        Self { workspace: PathBuf::from(".weir"), jobs: None, gpu_slots: None, natives: Natives::with_builtins() }
    }
}

impl std::fmt::Debug for EngineBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineBuilder")
            .field("workspace", &self.workspace)
            .field("jobs", &self.jobs)
            .field("gpu_slots", &self.gpu_slots)
            .field("native_functions", &self.natives.function_names())
            .field("native_steps", &self.natives.step_names())
            .finish()
    }
}

impl EngineBuilder {
    /// The workspace directory holding the store (default `./.weir`).
    pub fn workspace(mut self, dir: impl Into<PathBuf>) -> Self {
        self.workspace = dir.into();
        self
    }

    /// How many steps may execute at once (default: the number of cores).
    pub fn jobs(mut self, jobs: usize) -> Self {
        self.jobs = Some(jobs.max(1));
        self
    }

    /// How many steps that ask for a GPU may run at once (default: the
    /// number of GPUs detected, which is 0 without the `cuda` feature). More
    /// slots than GPUs is allowed, e.g. to test scheduling; native functions
    /// then run on their CPU path.
    pub fn gpu_slots(mut self, slots: usize) -> Self {
        self.gpu_slots = Some(slots);
        self
    }

    /// Registers a native function guests may call (replacing one of the same name).
    pub fn native_function(mut self, function: impl NativeFunction) -> Self {
        self.natives.add_function(Arc::new(function));
        self
    }

    /// Registers a native step manifests may use as `native = "NAME"`.
    pub fn native_step(mut self, step: impl NativeStep) -> Self {
        self.natives.add_step(Arc::new(step));
        self
    }

    /// Opens the workspace and starts the runtime and worker pool.
    pub fn build(self) -> Result<Engine> {
        let store = Store::open(&self.workspace)?;
        let runtime = Runtime::new(&store.path_of("compiled"))?;
        let jobs = self.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(jobs)
            .thread_name(|i| format!("weir-worker-{i}"))
            .build()
            .map_err(|err| Error::Runtime(format!("starting the worker pool: {err}")))?;
        let gpus_detected = detect_gpus();
        let gpu_slots = self.gpu_slots.unwrap_or(gpus_detected);
        let natives = Arc::new(self.natives);
        let history = History::open(store.root())?;
        let inner = EngineInner { store, runtime, pool, natives, gpu_slots, gpus_detected, history };
        Ok(Engine { inner: Arc::new(inner) })
    }
}

impl Engine {
    /// Configures an engine.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// GPU slots the scheduler hands out.
    pub fn gpu_slots(&self) -> usize {
        self.inner.gpu_slots
    }

    /// CUDA devices found on this machine.
    pub fn gpus_detected(&self) -> usize {
        self.inner.gpus_detected
    }

    /// The workspace's run history.
    pub fn history(&self) -> &History {
        &self.inner.history
    }

    /// The workspace's content-addressed store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Runs `pipeline` to completion.
    ///
    /// Returns `Err` only if nothing could run (invalid parameters or
    /// modules, unreadable inputs, workspace errors). Step failures are
    /// reported in the [`RunReport`], whose status is then `failed`.
    pub fn run(&self, pipeline: &Pipeline, options: &RunOptions) -> Result<RunReport> {
        let params = options.resolve(pipeline)?;
        let plan = self.plan(pipeline, &params)?;
        let inputs = self.import_inputs(pipeline)?;
        let run_id = new_run_id();
        self.inner.history.start_run(&RunStart {
            id: &run_id,
            pipeline: pipeline.name(),
            manifest_digest: pipeline
                .file()
                .and_then(|file| std::fs::read(file).ok())
                .map(|b| crate::Digest::of(&b).to_string()),
            params: &serde_json::to_value(&params).unwrap_or_default(),
            inputs: inputs
                .iter()
                .map(|(name, artifact)| (name.clone(), artifact.digest, pipeline.inputs()[name].display().to_string()))
                .collect(),
        })?;
        let mut report = Coordinator::new(&self.inner, options, &run_id, plan, inputs).drive(pipeline.name());
        report.outputs = pipeline
            .outputs()
            .iter()
            .filter_map(|(name, bound)| Some((name.clone(), *report.output(&bound.step, &bound.output)?)))
            .collect();
        self.save_report(&report)?;
        self.inner.history.finish_run(&run_id, if report.succeeded() { "succeeded" } else { "failed" })?;
        if report.succeeded() {
            self.export_outputs(pipeline, &report)?;
        }
        Ok(report)
    }

    /// Resolves every step's code, argv and parameters, compiling modules.
    fn plan<'p>(&self, pipeline: &'p Pipeline, params: &Params) -> Result<Vec<PlannedStep<'p>>, ValidationError> {
        let programs = self.prepare_programs(pipeline)?;
        pipeline
            .steps()
            .iter()
            .map(|step| {
                self.plan_step(step, params, &programs).map_err(|err| err.in_step(step.name()).in_file(pipeline.file()))
            })
            .collect()
    }

    fn plan_step<'p>(
        &self,
        step: &'p Step,
        params: &Params,
        programs: &BTreeMap<PathBuf, Arc<Program>>,
    ) -> Result<PlannedStep<'p>, ValidationError> {
        let natives = &self.inner.natives;
        let (code, native_version, argv0) = match step.code() {
            StepCode::Wasm(module) => (JobCode::Wasm(programs[module].clone()), 0, program_name(module)),
            StepCode::Native(name) => {
                let native = natives.step(name).ok_or_else(|| {
                    let known = natives.step_names();
                    ValidationError::new(Kind::UnknownNative { what: "step", name: name.clone(), known })
                        .in_field("native")
                })?;
                (JobCode::Native(native.clone()), native.version(), name.clone())
            }
        };
        let mut declared = BTreeMap::new();
        for name in step.natives() {
            let function = natives.function(name).ok_or_else(|| {
                let known = natives.function_names();
                ValidationError::new(Kind::UnknownNative { what: "function", name: name.clone(), known })
                    .in_field("natives")
            })?;
            declared.insert(name.clone(), function.version());
        }
        let asked = step.resources().gpu;
        if self.inner.gpu_slots > 0 && asked as usize > self.inner.gpu_slots {
            let slots = self.inner.gpu_slots;
            return Err(ValidationError::new(Kind::TooManyGpus { asked, slots }).in_field("resources.gpu"));
        }
        let syntax = |field: String| move |why: String| ValidationError::new(Kind::Syntax(why)).in_field(field);
        let mut argv = vec![argv0];
        for (i, arg) in step.args().iter().enumerate() {
            argv.push(params::render(arg, params).map_err(syntax(format!("args[{i}]")))?);
        }
        let step_params = params::resolve(&serde_json::Value::Object(step.params().clone()), params)
            .map_err(syntax("params".to_owned()))?;
        Ok(PlannedStep { step, code, native_version, argv, params: step_params, natives: declared })
    }

    /// Compiles each distinct module once, in parallel.
    fn prepare_programs(&self, pipeline: &Pipeline) -> Result<BTreeMap<PathBuf, Arc<Program>>, ValidationError> {
        let mut first_user: BTreeMap<&Path, &str> = BTreeMap::new();
        for step in pipeline.steps() {
            if let Some(module) = step.module() {
                first_user.entry(module).or_insert(step.name());
            }
        }
        let modules: Vec<(&Path, &str)> = first_user.into_iter().collect();
        let runtime = &self.inner.runtime;
        self.inner.pool.install(|| {
            modules
                .par_iter()
                .map(|&(path, step)| {
                    let program = runtime.prepare(path).map_err(|reason| {
                        ValidationError::new(Kind::InvalidModule { path: path.to_owned(), reason })
                            .in_step(step)
                            .in_field("module")
                            .in_file(pipeline.file())
                    })?;
                    Ok((path.to_owned(), program))
                })
                .collect()
        })
    }

    /// Imports every pipeline input into the store, in parallel.
    fn import_inputs(&self, pipeline: &Pipeline) -> Result<BTreeMap<String, Artifact>> {
        let store = &self.inner.store;
        self.inner.pool.install(|| {
            pipeline
                .inputs()
                .par_iter()
                .map(|(name, path)| {
                    if !path.exists() {
                        let err = ValidationError::new(Kind::InputMissing { path: path.clone() });
                        return Err(err.in_field(format!("inputs.{name}")).in_file(pipeline.file()).into());
                    }
                    Ok((name.clone(), store.import(path)?))
                })
                .collect()
        })
    }

    /// Copies every pipeline output that has an export path out of the store.
    fn export_outputs(&self, pipeline: &Pipeline, report: &RunReport) -> Result<()> {
        for (name, declared) in pipeline.outputs() {
            if let (Some(path), Some(artifact)) = (&declared.export, report.outputs.get(name)) {
                self.inner.store.export_replacing(&artifact.digest, path)?;
            }
        }
        Ok(())
    }

    /// Writes the run's summary to `runs/<run_id>.json`.
    fn save_report(&self, report: &RunReport) -> Result<()> {
        let path = self.inner.store.path_of("runs").join(format!("{}.json", report.run_id));
        let json = serde_json::to_vec_pretty(report)
            .map_err(|err| Error::io("encoding the run summary")(std::io::Error::other(err)))?;
        let temp = path.with_extension("json.tmp");
        std::fs::write(&temp, json)
            .and_then(|()| std::fs::rename(&temp, &path))
            .map_err(Error::io(format!("writing {}", path.display())))
    }
}

/// argv\[0\] of a step: its module's file name, so renaming a step keeps its cache.
fn program_name(module: &Path) -> String {
    module.file_name().map_or_else(|| "step".to_owned(), |name| name.to_string_lossy().into_owned())
}
