//! The engine: a workspace store, a WebAssembly runtime and a worker pool,
//! shared by every run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rayon::prelude::*;

use crate::cancel::CancelToken;
use crate::error::{ValidationError, ValidationErrorKind as Kind};
use crate::events::{Event, EventSink, GuardedSink, OwnedEvent};
use crate::executor::{Cluster, Executor, ExecutorKind, LocalExecutor, ProcessExecutor, SlurmExecutor, WorkerPool};
use crate::history::{History, OpenRun, RunEnd, RunStart};
use crate::host_files::HostFiles;
use crate::kinds::{Preparation, Prepared};
use crate::native::{NativeFunction, NativeStep, Natives, detect_gpus};
use crate::params::{self, Params};
use crate::remote::{CacheRemote, Counters, Transfer};
use crate::report::RunStatus;
use crate::run_id::new_run_id;
use crate::runtime::{Flavor, MAX_WASM_STACK, Runtime, WORKER_STACK};
use crate::scheduler::{Admission, Coordinator, PlannedStep, RunScope, Services};
use crate::step_exec::JobCode;
use crate::store::ImportError;
use crate::tenant::{self, StoreAccount, Tenant};
use crate::tenant_view::TenantView;
use crate::{
    Artifact, DEFAULT_TENANT, Digest, Error, GcReport, Limits, Pipeline, Result, RunOptions, RunReport, Step, StepCode,
    Store, TenantQuota,
};

/// Runs pipelines in a workspace. Cheap to clone: an `Arc` inside.
///
/// Compiled modules are kept for the engine's lifetime (and on disk), so an
/// application that runs many pipelines should keep one engine.
///
/// An engine is `Send + Sync` and serves concurrent runs: call
/// [`run`](Engine::run) from several threads, or [`start`](Engine::start)
/// several runs. They share its workers, GPU slots and tenants' quotas (one
/// ledger), and an identical step in flight in two runs (or two processes on
/// one workspace) executes once, the other reusing its result. The
/// application's code never breaks a run: a native function or step that
/// panics fails its step, and an event sink that panics is silenced with a
/// warning in the report; however a run ends, its history record is closed.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

pub(crate) struct EngineInner {
    pub(crate) store: Store,
    pub(crate) runtime: Runtime,
    /// The workers that execute steps, started by the first run that has a
    /// step to execute (see [`EngineInner::pool`]).
    pool: OnceLock<Arc<rayon::ThreadPool>>,
    jobs: usize,
    /// On the `slurm` executor, the most tasks of a job array that run at
    /// once and the most other jobs queued at once: `jobs` when it was set,
    /// else [`MAX_JOBS`] (the cores of this machine do not bound a cluster).
    cluster_throttle: usize,
    /// Where steps execute.
    executor: ExecutorKind,
    /// Warm worker processes of the `process` executor.
    workers: OnceLock<Arc<WorkerPool>>,
    /// The cluster of the `slurm` executor, connected by the first run.
    cluster: std::sync::Mutex<Option<Arc<Cluster>>>,
    pub(crate) natives: Arc<Natives>,
    pub(crate) gpu_slots: usize,
    pub(crate) gpus_detected: usize,
    pub(crate) history: History,
    pub(crate) admission: Arc<Admission>,
    /// The registered tenants; [`Engine::set_tenant`] changes them while runs go on.
    tenants: std::sync::RwLock<BTreeMap<String, Arc<TenantQuota>>>,
    /// Each tenant's store account, once one of its runs needed it.
    store_accounts: std::sync::Mutex<BTreeMap<Arc<str>, Arc<StoreAccount>>>,
    default_limits: Limits,
}

/// Configures an [`Engine`].
#[derive(Clone)]
pub struct EngineBuilder {
    workspace: PathBuf,
    jobs: Option<usize>,
    gpu_slots: Option<usize>,
    natives: Natives,
    tenants: BTreeMap<String, TenantQuota>,
    default_limits: Limits,
    executor: ExecutorKind,
}

impl Default for EngineBuilder {
    fn default() -> Self {
        Self {
            workspace: PathBuf::from(".weir"),
            executor: ExecutorKind::Local,
            jobs: None,
            gpu_slots: None,
            natives: Natives::with_builtins(),
            tenants: BTreeMap::new(),
            default_limits: Limits::default(),
        }
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
            .field("tenants", &self.tenants)
            .field("default_limits", &self.default_limits)
            .field("executor", &self.executor)
            .finish()
    }
}

impl EngineBuilder {
    /// The workspace directory holding the store (default `./.weir`).
    pub fn workspace(mut self, dir: impl Into<PathBuf>) -> Self {
        self.workspace = dir.into();
        self
    }

    /// How many steps may execute at once (default: the number of cores;
    /// 1 to [`MAX_JOBS`]). Each is a worker thread, started when a run first
    /// has a step to execute. On the `slurm` executor it bounds the cluster
    /// instead: each job array runs at most this many tasks at once
    /// (`--array=…%N`) and at most this many other jobs are queued at once
    /// (default there: [`MAX_JOBS`]).
    pub fn jobs(mut self, jobs: usize) -> Self {
        self.jobs = Some(jobs);
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

    /// Registers tenant `name` with its quota. Once any tenant is registered,
    /// runs must name a registered tenant (or the default one).
    pub fn tenant(mut self, name: impl Into<String>, quota: TenantQuota) -> Self {
        self.tenants.insert(name.into(), quota);
        self
    }

    /// Where steps execute (default [`ExecutorKind::Local`]). Results are
    /// the same and shared in the cache whichever executor computed them.
    pub fn executor(mut self, executor: ExecutorKind) -> Self {
        self.executor = executor;
        self
    }

    /// The limits of steps that do not set their own (default [`Limits::default`]).
    pub fn default_limits(mut self, limits: Limits) -> Self {
        self.default_limits = limits;
        self
    }

    /// Opens the workspace and starts the runtime and worker pool.
    pub fn build(self) -> Result<Engine> {
        let jobs = self.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        check_jobs(jobs)?;
        // On a cluster, an execution waits in Slurm's queue rather than for
        // a worker here: the cluster throttles, and admission bounds only
        // how many are handed over at once (and tenants' quotas).
        let on_cluster = matches!(self.executor, ExecutorKind::Slurm(_));
        let admitted = if on_cluster { CLUSTER_ADMITTED } else { jobs };
        let store = Store::open(&self.workspace)?;
        for (name, quota) in &self.tenants {
            check_tenant(name, quota, store.root())?;
        }
        let runtime = Runtime::new(&store.path_of("compiled"), &store.secret()?, jobs)?;
        let gpus_detected = detect_gpus();
        let gpu_slots = self.gpu_slots.unwrap_or(gpus_detected);
        let natives = Arc::new(self.natives);
        let history = History::open(store.root())?;
        let inner = EngineInner {
            store,
            runtime,
            pool: OnceLock::new(),
            jobs,
            cluster_throttle: self.jobs.unwrap_or(MAX_JOBS),
            executor: self.executor,
            workers: OnceLock::new(),
            cluster: std::sync::Mutex::new(None),
            natives,
            gpu_slots,
            gpus_detected,
            history,
            admission: Admission::new(admitted, gpu_slots, gpus_detected),
            tenants: std::sync::RwLock::new(
                self.tenants.into_iter().map(|(name, quota)| (name, Arc::new(quota))).collect(),
            ),
            store_accounts: std::sync::Mutex::default(),
            default_limits: self.default_limits,
        };
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

    /// Closes the engine: waits (at most a second) for its worker threads
    /// to let go of it, then drops it here, so that what closing does (the
    /// store's janitor finishing its queue and removing pooled scratch
    /// directories) is done when this returns. A program that exits right
    /// after a run calls it; while other clones of the engine are held, it
    /// stays open and the last one dropped closes it.
    pub fn close(self) {
        const PATIENCE: std::time::Duration = std::time::Duration::from_secs(1);
        let started = std::time::Instant::now();
        let mut inner = self.inner;
        while started.elapsed() < PATIENCE {
            match Arc::try_unwrap(inner) {
                Ok(only) => return drop(only),
                Err(shared) => inner = shared,
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// Packs the step the descriptor file `descriptor` describes (see
    /// [`Packed::from_descriptor`](crate::package::Packed::from_descriptor)),
    /// building a Python step's component with componentize-py, cached in
    /// this engine's store.
    pub fn pack_step(&self, descriptor: &Path) -> Result<crate::package::Packed, ValidationError> {
        crate::package::Packed::from_descriptor_building(descriptor, &|python| {
            crate::kinds::python_component(python, &self.inner.store)
        })
    }

    /// The workspace's content-addressed store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// What tenant `name` may read: its runs, and the artifacts its runs
    /// imported, produced or logged. Fails for a tenant this engine does not
    /// know (once any is registered).
    pub fn tenant<'a>(&'a self, name: &'a str) -> Result<TenantView<'a>> {
        self.tenant_of(Some(name))?;
        Ok(TenantView::new(name, &self.inner.store, &self.inner.history))
    }

    /// Sends the results of tenant `tenant`'s run `run` (a run id, a
    /// prefix, or `last`) to a shared cache: each step's cache entry with
    /// the objects it names that `remote` lacks, then the run's keys (for
    /// [`pull_run`](Engine::pull_run)). A map step's entries are sent by the
    /// runs that execute them ([`RunOptions::remote_cache`]).
    pub fn push_run(&self, tenant: &str, run: &str, remote: &dyn CacheRemote) -> Result<Transfer> {
        let detail = self.tenant(tenant)?.run(run)?;
        let moved = Counters::default();
        let mut sent = Vec::new();
        let results = detail.steps.iter().filter(|step| {
            matches!(step.status, crate::StepStatus::Ran | crate::StepStatus::Cached) && step.entries.is_empty()
        });
        for (step, key) in results.filter_map(|step| Some((&step.step, step.cache_key?))) {
            match crate::remote::push(&self.inner.store, remote, &key, &moved) {
                Ok(true) => sent.push(key),
                Ok(false) => moved.failed(format!("step `{step}`: its result is no longer in the workspace")),
                Err(why) => moved.failed(format!("step `{step}`: {why}")),
            }
        }
        remote.put_run(&detail.summary.id, &sent).map_err(|err| Error::Remote(err.to_string()))?;
        Ok(moved.transfer())
    }

    /// Copies the results a shared cache recorded for run `run_id` (see
    /// [`push_run`](Engine::push_run)) into the workspace, each checked
    /// against its digests; a later run reuses them.
    pub fn pull_run(&self, run_id: &str, remote: &dyn CacheRemote) -> Result<Transfer> {
        let keys = remote.run_keys(run_id).map_err(|err| Error::Remote(err.to_string()))?;
        // Garbage collection waits while objects arrive ahead of their entries.
        let _held = self.inner.store.lock_for_run()?;
        let moved = Counters::default();
        for key in keys.iter().filter(|key| self.inner.store.cache_get(key).is_none()) {
            match crate::remote::pull(&self.inner.store, remote, key, &moved) {
                Ok(Some(_)) => {}
                Ok(None) => moved.failed(format!("{key}: the shared cache has no such entry any more")),
                Err(err) => moved.failed(format!("{key}: {err}")),
            }
        }
        Ok(moved.transfer())
    }

    /// Runs `pipeline` to completion.
    ///
    /// Returns `Err` only if nothing could run (invalid parameters or
    /// modules, unreadable inputs, workspace errors). Step failures are
    /// reported in the [`RunReport`], whose status is then `failed`.
    pub fn run(&self, pipeline: &Pipeline, options: &RunOptions) -> Result<RunReport> {
        let params = options.resolve(pipeline)?;
        let tenant = self.tenant_of(options.tenant_name())?;
        let files = self.host_files(&tenant, pipeline)?;
        let exports = self.export_files(&tenant, &files, pipeline, options)?;
        let read_only = options.is_read_only();
        let _workspace =
            if read_only { self.inner.store.lock_for_reading()? } else { self.inner.store.lock_for_run()? };
        let plan = self.plan(pipeline, &params, &tenant, &files, read_only)?;
        let scope = self.run_scope(tenant, pipeline)?;
        let inputs = self.import_inputs(pipeline, &files, &scope, read_only)?;
        let run_id = options.chosen_run_id().map_or_else(new_run_id, str::to_owned);
        let tenant_name = scope.tenant.name.clone();
        let start = RunStart {
            id: &run_id,
            started: crate::history::now(),
            kind: if options.is_verification() { "verify" } else { "run" },
            tenant: &tenant_name,
            pipeline: pipeline.name(),
            manifest_path: pipeline.manifest.as_ref().map(|origin| origin.path.as_path()),
            manifest_digest: pipeline.manifest_digest().map(ToString::to_string),
            params: &serde_json::to_value(&params).unwrap_or_default(),
            inputs: inputs
                .iter()
                .map(|(name, artifact)| (name.clone(), artifact.digest, pipeline.inputs()[name].display().to_string()))
                .collect(),
            labels: options.labels(),
        };
        let executor = self.executor(&plan, &files, read_only)?;
        // A read-only run is recorded only in memory, for its report.
        let scratch_history;
        let history = if read_only {
            scratch_history = History::in_memory()?;
            &scratch_history
        } else {
            &self.inner.history
        };
        let record = OpenRun::start(history, &start)?;
        let sink = options.event_sink().map(|sink| Arc::new(GuardedSink::new(sink)));
        let emit = |event: &Event<'_>| {
            if let Some(sink) = &sink {
                sink.event(event);
            }
        };
        emit(&Event::RunStarted { run: &run_id, pipeline: pipeline.name() });
        let services = Services {
            store: &self.inner.store,
            history,
            admission: self.inner.admission.clone(),
            gpu_slots: self.inner.gpu_slots,
            gpus_detected: self.inner.gpus_detected,
            cluster_gpus: matches!(self.inner.executor, ExecutorKind::Slurm(_)) && !read_only,
        };
        let driven = Coordinator::new(&services, options, &run_id, scope, plan, inputs, sink.clone())
            .drive(pipeline.name(), executor.as_ref());
        let (mut report, records) = driven?;
        report.outputs = pipeline
            .outputs()
            .iter()
            .filter_map(|(name, bound)| Some((name.clone(), *report.output(&bound.step, &bound.output)?)))
            .collect();
        self.inner.store.sync()?;
        // Exports come before the run is closed, so a run whose export fails
        // (a corrupt artifact, a full disk) is recorded as failed.
        let exported = if report.succeeded() && options.writes_exports() {
            self.export_outputs(pipeline, &report, &exports)
        } else {
            Ok(())
        };
        if let Err(err) = &exported {
            report.status = RunStatus::Failed;
            report.warnings.push(format!("exporting the outputs failed: {err}"));
        }
        let outputs = report.outputs.iter().map(|(name, artifact)| (name.clone(), artifact.digest)).collect();
        let end = RunEnd::now(report.status, outputs, report.warnings.clone());
        record.close(&end)?;
        emit(&Event::RunFinished { run: &run_id, status: report.status });
        report.record = Some(crate::RunDetail::assemble(&start, &end, records));
        exported.map(|()| report)
    }

    /// Runs `pipeline` like [`Engine::run`], delivering every event to
    /// `sink` on the calling thread, in order: the sink may borrow from the
    /// caller's stack and need not be `Send`. (The run itself goes on a
    /// thread of its own; the options' own sink, if any, is replaced.) A
    /// sink that panics is not called again, and the report says so.
    pub fn run_scoped(
        &self,
        pipeline: &Pipeline,
        options: &RunOptions,
        sink: &mut dyn FnMut(&Event<'_>),
    ) -> Result<RunReport> {
        let (send, events) = std::sync::mpsc::channel::<OwnedEvent>();
        let forward = move |event: &Event<'_>| drop(send.send(OwnedEvent::of(event)));
        let handle = self.start(pipeline.clone(), options.clone().events(Arc::new(forward)))?;
        let mut panicked = None;
        // The channel closes when the run has ended and dropped its sink.
        for event in events {
            if panicked.is_none()
                && let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sink(&event.event())))
            {
                panicked = Some(crate::bridge::panic_text(&*panic));
            }
        }
        let mut report = handle.wait()?;
        if let Some(panic) = panicked {
            report.warnings.push(format!("the event sink panicked ({panic}) and received no further events"));
        }
        Ok(report)
    }

    /// Starts running `pipeline` on a thread of its own and returns at once
    /// with a handle to wait for the run or cancel it. The options' cancel
    /// token, if they have one, is the handle's; events go to the options'
    /// sink as with [`Engine::run`].
    pub fn start(&self, pipeline: Pipeline, options: RunOptions) -> Result<RunHandle> {
        let cancel = options.cancel_token().cloned().unwrap_or_default();
        let options = options.cancel_with(cancel.clone());
        let engine = self.clone();
        let thread = std::thread::Builder::new()
            .name(format!("weir-run-{}", pipeline.name()))
            .spawn(move || engine.run(&pipeline, &options))
            .map_err(|err| Error::Runtime(format!("starting a run's thread: {err}")))?;
        Ok(RunHandle { cancel, thread })
    }

    /// The engine's executor for a run of `plan`. For the `process`
    /// executor, every module is put in the store first: that is where a
    /// worker process finds it. (A read-only run executes nothing.)
    fn executor(&self, plan: &[PlannedStep<'_>], files: &HostFiles, read_only: bool) -> Result<Box<dyn Executor>> {
        if read_only || self.inner.executor == ExecutorKind::Local {
            return Ok(Box::new(LocalExecutor::new(self.inner.clone())));
        }
        for planned in plan {
            if let (JobCode::Wasm(program), Some(module)) = (&planned.prepared.code, planned.step.module()) {
                self.store_module(program.digest, module, files)?;
            }
        }
        let command = match &self.inner.executor {
            ExecutorKind::Process { command } => command,
            ExecutorKind::Slurm(options) => {
                let mut cluster = self.inner.cluster.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let cluster = match &*cluster {
                    Some(cluster) => cluster.clone(),
                    None => cluster
                        .insert(Cluster::connect(
                            options.clone(),
                            self.inner.store.root(),
                            self.inner.cluster_throttle,
                        )?)
                        .clone(),
                };
                return Ok(Box::new(SlurmExecutor::new(self.inner.clone(), cluster)));
            }
            ExecutorKind::Local => unreachable!("handled above"),
        };
        let workers = self
            .inner
            .workers
            .get_or_init(|| Arc::new(WorkerPool::new(command.clone(), self.inner.store.root())))
            .clone();
        Ok(Box::new(ProcessExecutor::new(self.inner.clone(), workers)))
    }

    /// Puts the module at `path`, which hashes to `digest`, in the store.
    fn store_module(&self, digest: Digest, path: &Path, files: &HostFiles) -> Result<()> {
        let store = &self.inner.store;
        if store.contains(&Artifact { kind: crate::OutputKind::File, digest }) {
            return Ok(());
        }
        let bytes = files.read_capped(path, crate::runtime::MAX_MODULE_BYTES).map_err(|why| Error::Io {
            context: format!("reading module {}", path.display()),
            source: std::io::Error::other(why),
        })?;
        if store.put_bytes(&bytes)? != digest {
            let reason = format!("{} changed while the run was being prepared", path.display());
            return Err(Error::Config { setting: "module".into(), reason });
        }
        Ok(())
    }

    /// The only directory the files of `tenant`'s pipelines may be in, or
    /// `None` for the default tenant (the operator), who may name any path.
    /// A tenant without a configured `root` gets `WORKSPACE/tenants/NAME`,
    /// created here. Load the tenant's manifests with
    /// [`Pipeline::from_manifest_within`] this directory.
    pub fn tenant_root(&self, tenant: &str) -> Result<Option<PathBuf>> {
        let tenant = self.tenant_of(Some(tenant))?;
        if tenant.is_operator() {
            return Ok(None);
        }
        let root = match &tenant.quota.root {
            Some(root) => root.clone(),
            None => {
                let root = self.inner.store.root().join(crate::tenant::TENANT_ROOTS).join(&*tenant.name);
                std::fs::create_dir_all(&root).map_err(Error::io(format!("creating {}", root.display())))?;
                root
            }
        };
        Ok(Some(root))
    }

    /// How `tenant` reaches the host files `pipeline` names. A pipeline
    /// loaded from a manifest for a tenant other than the default must have
    /// been loaded within that tenant's root, and reaches only files beneath
    /// it. The operator's pipelines, and pipelines built in code (which carry
    /// the embedding application's authority), reach any path.
    fn host_files(&self, tenant: &Tenant, pipeline: &Pipeline) -> Result<HostFiles> {
        if pipeline.manifest.is_none() {
            return Ok(HostFiles::Ambient);
        }
        let Some(root) = self.tenant_root(&tenant.name)? else {
            return Ok(HostFiles::Ambient);
        };
        let files = HostFiles::within(&root).map_err(Error::io(format!("opening {}", root.display())))?;
        if pipeline.confined_to.as_deref() != files.root() {
            let why = format!(
                "tenant `{}` may run only a manifest loaded within {} (Pipeline::from_manifest_within)",
                tenant.name,
                root.display()
            );
            return Err(ValidationError::new(Kind::Forbidden(why)).in_file(pipeline.file()).into());
        }
        Ok(files)
    }

    /// Where the run's exports may be written: beneath the tenant's root; for
    /// the operator, beneath the manifest's directory (the current directory
    /// for a pipeline built in code) unless exports may go anywhere. Every
    /// export path is checked now, before anything runs.
    fn export_files(
        &self,
        tenant: &Tenant,
        files: &HostFiles,
        pipeline: &Pipeline,
        options: &RunOptions,
    ) -> Result<HostFiles> {
        let exports = match files {
            HostFiles::Within(_) => files.clone(),
            HostFiles::Ambient if options.allows_exports_anywhere() && tenant.is_operator() => HostFiles::Ambient,
            HostFiles::Ambient => {
                let base = match pipeline.file().and_then(Path::parent) {
                    Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
                    _ => PathBuf::from("."),
                };
                if pipeline.outputs().values().all(|output| output.export.is_none()) {
                    return Ok(HostFiles::Ambient);
                }
                HostFiles::within(&base).map_err(Error::io(format!("opening {}", base.display())))?
            }
        };
        for (name, output) in pipeline.outputs() {
            if let Some(path) = &output.export {
                exports.check(path).map_err(|why| {
                    let hint = if exports.confined() && tenant.is_operator() {
                        " (`--export-anywhere`, or RunOptions::exports_anywhere, allows it)"
                    } else {
                        ""
                    };
                    ValidationError::new(Kind::Forbidden(format!("{why}{hint}")))
                        .in_field(format!("outputs.{name}.export"))
                        .in_file(pipeline.file())
                })?;
            }
        }
        Ok(exports)
    }

    /// Registers tenant `name` with `quota`, or changes its quota, while the
    /// engine serves runs. Runs that start later get the new quota whole;
    /// runs already going on are held to its step, memory and store quotas
    /// from their next step on (their steps' limits were fixed when they
    /// started). Checked as [`EngineBuilder::build`] checks a tenant.
    pub fn set_tenant(&self, name: &str, quota: TenantQuota) -> Result<()> {
        check_tenant(name, &quota, self.inner.store.root())?;
        let quota = Arc::new(quota);
        let mut tenants = self.inner.tenants.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        tenants.insert(name.to_owned(), quota.clone());
        let mut accounts = self.inner.store_accounts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match quota.store_bytes {
            Some(bytes) => accounts.get(name).into_iter().for_each(|account| account.set_quota(bytes)),
            None => drop(accounts.remove(name)),
        }
        self.inner.admission.set_quota(&Tenant { name: name.into(), quota });
        Ok(())
    }

    /// The quota of registered tenant `name`.
    pub fn tenant_quota(&self, name: &str) -> Option<TenantQuota> {
        let tenants = self.inner.tenants.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        tenants.get(name).map(|quota| TenantQuota::clone(quota))
    }

    /// Removes from the store every object and tree that no cache entry and
    /// no retained run references; with `keep_runs`, first forgets all but
    /// that many most recent runs. Waits for the runs in progress in this
    /// workspace (in any process) to end, and blocks new ones meanwhile.
    pub fn gc(&self, keep_runs: Option<usize>) -> Result<GcReport> {
        self.gc_keeping(keep_runs, || Ok(BTreeSet::new()))
    }

    /// [`gc`](Engine::gc) that also keeps what `also_keep` names (and the
    /// trees among it, whole): artifacts the application references outside
    /// the history, such as a server's published files. `also_keep` is asked
    /// once every run has ended and the workspace is held, so what the
    /// application stored under a [`Store::hold_off_gc`] is in its answer.
    pub fn gc_keeping(
        &self,
        keep_runs: Option<usize>,
        also_keep: impl FnOnce() -> Result<BTreeSet<Digest>>,
    ) -> Result<GcReport> {
        let _exclusive = self.inner.store.lock_exclusive()?;
        let pruned = match keep_runs {
            Some(keep) => self.inner.history.prune_runs(keep)?,
            None => Vec::new(),
        };
        let mut retained = self.inner.history.referenced_digests()?;
        retained.extend(also_keep()?);
        let report = self.inner.store.collect_garbage(&retained)?;
        // Tenants' holdings changed: their accounts are made again on next use.
        self.inner.store_accounts.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
        Ok(GcReport { pruned_runs: pruned, ..report })
    }

    /// The tenant named by a run's options, with its quota.
    fn tenant_of(&self, name: Option<&str>) -> Result<Tenant, ValidationError> {
        let name = name.unwrap_or(DEFAULT_TENANT);
        tenant::check_name(name).map_err(|reason| {
            ValidationError::new(Kind::InvalidName { name: name.to_owned(), reason }).in_field("tenant")
        })?;
        let tenants = self.inner.tenants.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let quota = match tenants.get(name) {
            Some(quota) => quota.clone(),
            None if name == DEFAULT_TENANT || tenants.is_empty() => Arc::new(TenantQuota::default()),
            None => {
                let known = tenants.keys().cloned().collect();
                return Err(ValidationError::new(Kind::UnknownTenant { tenant: name.to_owned(), known }));
            }
        };
        Ok(Tenant { name: name.into(), quota })
    }

    /// The run's tenant, its account when it has a store quota, and the
    /// id of `pipeline`'s reuse index.
    fn run_scope(&self, tenant: Tenant, pipeline: &Pipeline) -> Result<RunScope> {
        let store = match tenant.quota.store_bytes {
            None => None,
            Some(quota) => Some(self.store_account(&tenant, quota)?),
        };
        let manifest = pipeline.manifest.as_ref().map(|origin| origin.path.as_path());
        let reuse_index = crate::store::ReuseIndex::id_of(&tenant.name, pipeline.name(), manifest);
        Ok(RunScope { tenant, store, reuse_index })
    }

    /// `tenant`'s store account, shared by all its runs on this engine:
    /// made on first use from the inputs, outputs and logs of its recorded
    /// runs, then charged as artifacts are stored.
    fn store_account(&self, tenant: &Tenant, quota: u64) -> Result<Arc<StoreAccount>> {
        let mut accounts = self.inner.store_accounts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(account) = accounts.get(&tenant.name) {
            return Ok(account.clone());
        }
        let mut held = std::collections::HashSet::new();
        let mut bytes = 0u64;
        for digest in self.inner.history.tenant_artifacts(&tenant.name)? {
            if let Some(kind) = self.inner.store.kind_of(&digest) {
                bytes = bytes.saturating_add(self.inner.store.artifact_size(&Artifact { kind, digest })?);
                held.insert(digest);
            }
        }
        let account = Arc::new(StoreAccount::new(tenant.name.clone(), quota, held, bytes));
        accounts.insert(tenant.name.clone(), account.clone());
        Ok(account)
    }

    /// Resolves every step's limits, code, argv and parameters, compiling modules.
    fn plan<'p>(
        &self,
        pipeline: &'p Pipeline,
        params: &Params,
        tenant: &Tenant,
        files: &HostFiles,
        read_only: bool,
    ) -> Result<Vec<PlannedStep<'p>>, ValidationError> {
        let file = pipeline.file();
        let located = |step: &Step, err: ValidationError| err.in_step(step.name()).in_file(step.defined_in().or(file));
        // Every step is planned whatever the others' problems, so all are reported at once.
        let mut problems = Vec::new();
        let limits: Vec<Option<Limits>> = pipeline
            .steps()
            .iter()
            .map(|step| self.limits_of(step, tenant).map_err(|err| problems.push(located(step, err))).ok())
            .collect();
        let (prepared, failures) = self.prepare_code(pipeline, &limits, files, read_only);
        problems.extend(failures);
        let mut planned = Vec::with_capacity(limits.len());
        for (step, limits) in pipeline.steps().iter().zip(limits) {
            let Some(limits) = limits else { continue };
            // Code that could not be prepared has had its problem reported.
            let Some(code) = prepared[&(step.code(), Flavor::of(&limits))].clone() else { continue };
            match self.plan_step(step, params, code, limits) {
                Ok(step) => planned.push(step),
                Err(err) => problems.push(located(step, err)),
            }
        }
        // Reported in the pipeline's order of steps, whichever pass found them.
        let position = |err: &ValidationError| {
            let step = err.location().step.as_deref();
            pipeline.steps().iter().position(|candidate| Some(candidate.name()) == step)
        };
        problems.sort_by_key(position);
        ValidationError::all(problems)?;
        Ok(planned)
    }

    /// The limits `step` runs under for `tenant`.
    fn limits_of(&self, step: &Step, tenant: &Tenant) -> Result<Limits, ValidationError> {
        let quota = &tenant.quota;
        let above = |field: &'static str, asked: u64, max: u64| {
            let tenant = tenant.name.to_string();
            ValidationError::new(Kind::LimitAboveTenant { tenant, field, asked, max })
                .in_field(format!("limits.{field}"))
        };
        let limits = self
            .inner
            .default_limits
            .resolve(step.limits(), &quota.max_limits)
            .map_err(|exceeded| above(exceeded.field, exceeded.asked, exceeded.max))?;
        if limits.memory > quota.memory {
            return Err(above("memory", limits.memory, quota.memory));
        }
        if limits.stack > MAX_WASM_STACK {
            let why = format!(
                "a stack of {} is more than weir allows ({})",
                Limits::show("stack", limits.stack),
                Limits::show("stack", MAX_WASM_STACK)
            );
            return Err(ValidationError::new(Kind::BadSize(why)).in_field("limits.stack"));
        }
        Ok(limits)
    }

    fn plan_step<'p>(
        &self,
        step: &'p Step,
        params: &Params,
        prepared: Prepared,
        limits: Limits,
    ) -> Result<PlannedStep<'p>, ValidationError> {
        let natives = &self.inner.natives;
        let argv0 = prepared.argv0.clone();
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
        // The key sees ignored parameters as their unrendered `${params.NAME}`.
        let mut placeholders = params.clone();
        for name in step.ignored_params() {
            placeholders.insert(name.clone(), serde_json::Value::String(format!("${{params.{name}}}")));
        }
        let (mut argv, mut keyed_argv) = (vec![argv0.clone()], vec![argv0]);
        for (i, arg) in step.args().iter().enumerate() {
            argv.push(params::render(arg, params).map_err(syntax(format!("args[{i}]")))?);
            keyed_argv.push(params::render(arg, &placeholders).map_err(syntax(format!("args[{i}]")))?);
        }
        let declared_params = serde_json::Value::Object(step.params().clone());
        let step_params = params::resolve(&declared_params, params).map_err(syntax("params".to_owned()))?;
        for (name, kind) in &step.param_types {
            if let Some(value) = step_params.get(name).filter(|value| !kind.admits(value)) {
                let why = format!("{value} is not {}, the type the step's package declares", kind.described());
                return Err(ValidationError::new(Kind::Package(why)).in_field(format!("params.{name}")));
            }
        }
        let mut keyed_params = params::resolve(&declared_params, &placeholders).map_err(syntax("params".to_owned()))?;
        if let Some(keyed) = keyed_params.as_object_mut() {
            keyed.retain(|name, _| !step.ignored_params().contains(name));
        }
        Ok(PlannedStep {
            step,
            prepared,
            argv,
            keyed_argv,
            params: step_params,
            keyed_params,
            natives: declared,
            limits,
        })
    }

    /// Prepares each distinct code once per flavor its steps need, by its
    /// kind, in parallel (compiling modules is the slow part). A failure is
    /// reported once, located at the first step with that code.
    fn prepare_code<'p>(
        &self,
        pipeline: &'p Pipeline,
        limits: &[Option<Limits>],
        files: &HostFiles,
        read_only: bool,
    ) -> (PreparedCode<'p>, Vec<ValidationError>) {
        let mut first_user: BTreeMap<(&StepCode, Flavor), &Step> = BTreeMap::new();
        for (step, limits) in pipeline.steps().iter().zip(limits) {
            if let Some(limits) = limits {
                first_user.entry((step.code(), Flavor::of(limits))).or_insert(step);
            }
        }
        let distinct: Vec<((&StepCode, Flavor), &Step)> = first_user.into_iter().collect();
        let prepared = self.map_on_pool(&distinct, |&((code, flavor), step)| {
            let with = Preparation {
                runtime: &self.inner.runtime,
                natives: &self.inner.natives,
                files,
                store: &self.inner.store,
                flavor,
                read_only,
            };
            let kind = code.kind();
            kind.prepare(code, &with).map_err(|err| {
                err.in_field(kind.field()).in_step(step.name()).in_file(step.defined_in().or(pipeline.file()))
            })
        });
        let mut failures = Vec::new();
        let prepared = distinct
            .into_iter()
            .zip(prepared)
            .map(|((key, _), result)| (key, result.map_err(|err| failures.push(err)).ok()))
            .collect();
        (prepared, failures)
    }

    /// `f` of each item, computed on rayon's global pool (one thread a core:
    /// this is hashing and compiling, not steps), or on this thread
    /// when there is just one (waking a pool thread then costs more than it
    /// can save).
    fn map_on_pool<T: Sync, R: Send>(&self, items: &[T], f: impl Fn(&T) -> R + Sync + Send) -> Vec<R> {
        if items.len() <= 1 {
            return items.iter().map(f).collect();
        }
        items.par_iter().map(f).collect()
    }

    /// Imports every pipeline input into the store, in parallel. A tenant
    /// with a store quota is charged for the inputs it did not hold before,
    /// and an input that does not fit is refused before it is copied whole.
    /// A read-only run only works out their digests.
    fn import_inputs(
        &self,
        pipeline: &Pipeline,
        files: &HostFiles,
        scope: &RunScope,
        read_only: bool,
    ) -> Result<BTreeMap<String, Artifact>> {
        let store = &self.inner.store;
        let inputs: Vec<(&String, &PathBuf)> = pipeline.inputs().iter().collect();
        self.map_on_pool(&inputs, |&(name, path)| {
            let located = |kind: Kind| {
                let err = ValidationError::new(kind).in_field(format!("inputs.{name}")).in_file(pipeline.file());
                Error::Validation(err)
            };
            let budget = scope.store.as_ref().map_or(u64::MAX, |account| account.remaining());
            let artifact = store.import_from(files, path, (!read_only).then_some(budget)).map_err(|err| match err {
                ImportError::Store(err) => err,
                ImportError::Refused(why) => located(Kind::Forbidden(why)),
                ImportError::Missing(missing) => located(Kind::InputMissing { path: missing }),
            })?;
            if let Some(account) = scope.store.as_ref().filter(|_| !read_only) {
                account
                    .charge(&[artifact], |artifact| store.artifact_size(artifact))?
                    .map_err(|quota| located(Kind::TooLarge(format!("the input {quota}"))))?;
            }
            Ok((name.clone(), artifact))
        })
        .into_iter()
        .collect()
    }

    /// Copies every pipeline output that has an export path out of the
    /// store, through `exports` (which confines where they may go).
    fn export_outputs(&self, pipeline: &Pipeline, report: &RunReport, exports: &HostFiles) -> Result<()> {
        for (name, declared) in pipeline.outputs() {
            if let (Some(path), Some(artifact)) = (&declared.export, report.outputs.get(name)) {
                let (dir, file_name) = exports.export_parent(path).map_err(|why| Error::Io {
                    context: format!("exporting output `{name}`"),
                    source: std::io::Error::other(why),
                })?;
                let _one_at_a_time = self.inner.store.lock_export(path)?;
                self.inner.store.export_replacing(&artifact.digest, &dir, Path::new(&file_name), path)?;
            }
        }
        Ok(())
    }
}

/// A run started with [`Engine::start`].
#[derive(Debug)]
pub struct RunHandle {
    cancel: CancelToken,
    thread: std::thread::JoinHandle<Result<RunReport>>,
}

impl RunHandle {
    /// Asks the run to stop (see [`CancelToken`]); [`wait`](RunHandle::wait)
    /// then returns its report, with status `cancelled` unless every step
    /// had already ended.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// The run's cancel token, to cancel it from elsewhere.
    pub fn cancel_token(&self) -> &CancelToken {
        &self.cancel
    }

    /// Whether the run has ended (so [`wait`](RunHandle::wait) will not block).
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Waits for the run to end and returns what [`Engine::run`] would have.
    pub fn wait(self) -> Result<RunReport> {
        self.thread.join().unwrap_or_else(|panic| {
            Err(Error::Runtime(format!("the run's thread panicked: {}", crate::bridge::panic_text(&*panic))))
        })
    }
}

/// Each distinct code of a run with the flavor it runs in, prepared (`None`
/// where that failed).
type PreparedCode<'p> = BTreeMap<(&'p StepCode, Flavor), Option<Prepared>>;

/// The most steps an engine may execute at once: each is a thread with a
/// large stack, and far more than the cores only helps steps that wait.
pub const MAX_JOBS: usize = 256;

/// On the `slurm` executor, the most executions of one engine handed to the
/// cluster at once (Slurm's own default `MaxJobCount` is 10,000).
const CLUSTER_ADMITTED: usize = 10_000;

fn check_jobs(jobs: usize) -> Result<()> {
    if (1..=MAX_JOBS).contains(&jobs) {
        return Ok(());
    }
    let reason = format!("{jobs} is not between 1 and {MAX_JOBS} (steps that may execute at once)");
    Err(Error::Config { setting: "jobs".to_owned(), reason })
}

impl Drop for EngineInner {
    fn drop(&mut self) {
        if let Some(cluster) = self.cluster.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
            cluster.stop();
        }
    }
}

impl EngineInner {
    /// The worker pool, started on first use with a thread per job slot.
    pub(crate) fn pool(&self) -> Result<Arc<rayon::ThreadPool>> {
        if let Some(pool) = self.pool.get() {
            return Ok(pool.clone());
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(self.jobs)
            .stack_size(WORKER_STACK)
            .thread_name(|i| format!("weir-worker-{i}"))
            .build()
            .map_err(|err| Error::Runtime(format!("starting the worker pool: {err}")))?;
        // Two runs starting it at once: one pool is kept, the other dropped.
        Ok(self.pool.get_or_init(|| Arc::new(pool)).clone())
    }
}

/// Refuses a tenant that is not well formed: a bad name, no step allowed at
/// once, or a root overlapping the workspace at `workspace`.
fn check_tenant(name: &str, quota: &TenantQuota, workspace: &Path) -> Result<()> {
    let setting = || format!("tenant `{name}`");
    tenant::check_name(name).map_err(|reason| Error::Config { setting: setting(), reason })?;
    if quota.concurrent_steps == 0 {
        let reason = "concurrent_steps must be at least 1".to_owned();
        return Err(Error::Config { setting: setting(), reason });
    }
    match &quota.root {
        Some(root) => check_tenant_root(name, root, workspace),
        None => Ok(()),
    }
}

/// Refuses a tenant root that overlaps the workspace: a tenant that could
/// read the workspace would read other tenants' objects and the history, and
/// one that could write it could replace the tenants file or compiled code.
fn check_tenant_root(name: &str, root: &Path, workspace: &Path) -> Result<()> {
    let root = std::path::absolute(root).map_err(Error::io(format!("tenant `{name}`: resolving its root")))?;
    let root = root.canonicalize().unwrap_or(root);
    if root.starts_with(workspace) || workspace.starts_with(&root) {
        let reason = format!(
            "its root {} overlaps the workspace {}; give it a directory of its own",
            root.display(),
            workspace.display()
        );
        return Err(Error::Config { setting: format!("tenant `{name}`"), reason });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{OutputKind, StepBuilder, StepStatus};

    fn product(dir: &Path) -> Pipeline {
        let floats = |values: &[f32]| values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>();
        std::fs::write(dir.join("a.f32"), floats(&[1.0, 2.0])).unwrap();
        std::fs::write(dir.join("b.f32"), floats(&[3.0, 4.0])).unwrap();
        Pipeline::builder("product")
            .input("a", dir.join("a.f32"))
            .input("b", dir.join("b.f32"))
            .step(
                StepBuilder::native("multiply", "matmul")
                    .input("a", "inputs.a")
                    .input("b", "inputs.b")
                    .params([("m", 1), ("n", 1), ("k", 2)])
                    .output("c", OutputKind::File),
            )
            .build()
            .unwrap()
    }

    #[test]
    fn a_run_with_nothing_to_execute_starts_no_worker() {
        let dir = tempfile::tempdir().unwrap();
        let pipeline = product(dir.path());
        let first = Engine::builder().workspace(dir.path().join("ws")).jobs(4).build().unwrap();
        assert!(first.inner.pool.get().is_none(), "nothing is started before a run needs it");
        first.run(&pipeline, &RunOptions::new()).unwrap();
        assert!(first.inner.pool.get().is_some());

        let cached = Engine::builder().workspace(dir.path().join("ws")).jobs(MAX_JOBS).build().unwrap();
        let report = cached.run(&pipeline, &RunOptions::new()).unwrap();
        assert_eq!(report.steps["multiply"].status, StepStatus::Cached);
        assert!(cached.inner.pool.get().is_none(), "a fully cached run created {MAX_JOBS} threads");
    }

    #[test]
    fn jobs_must_be_between_one_and_the_maximum() {
        let dir = tempfile::tempdir().unwrap();
        for jobs in [0, MAX_JOBS + 1, 1_000_000] {
            let err = Engine::builder().workspace(dir.path()).jobs(jobs).build().err().expect("refused");
            assert!(matches!(&err, Error::Config { setting, .. } if setting == "jobs"), "{err}");
            assert!(err.to_string().contains(&format!("{jobs} is not between 1 and {MAX_JOBS}")), "{err}");
        }
    }

    #[test]
    fn tenants_registered_while_the_engine_serves_apply_to_the_next_run() {
        let dir = tempfile::tempdir().unwrap();
        let pipeline = product(dir.path());
        let engine =
            Engine::builder().workspace(dir.path().join("ws")).tenant("alice", TenantQuota::default()).build().unwrap();
        let as_bob = RunOptions::new().tenant("bob");
        let err = engine.run(&pipeline, &as_bob).expect_err("bob is not a tenant yet");
        assert!(err.to_string().contains("bob"), "{err}");

        engine.set_tenant("bob", TenantQuota::default().store_bytes(1)).unwrap();
        assert_eq!(engine.tenant_quota("bob").unwrap().store_bytes, Some(1));
        let err = engine.run(&pipeline, &as_bob).expect_err("8-byte inputs do not fit bob's store quota");
        assert!(err.to_string().contains("larger than the 1 bytes it may take"), "{err}");

        engine.set_tenant("bob", TenantQuota::default().store_bytes(1 << 20)).unwrap();
        assert!(engine.run(&pipeline, &as_bob).unwrap().succeeded(), "the raised quota holds the run");

        let stuck = TenantQuota::default().concurrent_steps(0);
        let err = engine.set_tenant("carol", stuck).expect_err("no step at once is refused");
        assert!(err.to_string().contains("concurrent_steps must be at least 1"), "{err}");
        assert!(engine.tenant_quota("carol").is_none(), "a refused tenant is not registered");
        let inside = TenantQuota::default().root(dir.path().join("ws/objects"));
        assert!(engine.set_tenant("carol", inside).is_err(), "a root inside the workspace is refused");
    }
}
