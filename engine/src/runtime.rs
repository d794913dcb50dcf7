//! The WebAssembly runtime: a shared `wasmtime::Engine` per [`Flavor`] of
//! limits (almost always just one), linkers built once, each module compiled
//! once per flavor (cached in memory and on disk, and loaded from disk only
//! when a step executes), and a fresh `Store` for every execution.

mod capped_log;
mod compile_cache;
mod determinism;
mod execute;
mod limiter;
mod sandbox;
mod step_fs;
mod tensor_imports;
mod ticker;
mod watch;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use dashmap::DashMap;
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, InstancePre, Linker, Module, PoolingAllocationConfig};
use wasmtime_wasi::p2::bindings::sync::CommandPre;

pub(crate) use capped_log::{CappedLog, Captured, LogTee};
pub(crate) use execute::{Executed, GuestDirs, Invocation};
/// The types of the `weir:step/tensors` interface.
pub(crate) use sandbox::weir::step::tensors as wit_tensors;
use sandbox::{ComponentState, CoreState};
#[cfg(test)]
pub(crate) use step_fs::tests::with_inputs as step_fs_fixture;
pub(crate) use step_fs::{Input as StepInput, Mount, NotDone, Produced, SharedFs, StepFs, lock_shared};

use crate::file_stamp::FileStamp;
use crate::host_files::HostFiles;
use crate::module_kind::ModuleKind;
use crate::{Digest, Error, Limits, Result};

/// The largest WebAssembly stack a step may ask for. Guests run on the
/// worker's own stack, so workers get [`WORKER_STACK`], which leaves room
/// above this for the host's frames.
pub(crate) const MAX_WASM_STACK: u64 = 32 << 20;
/// Stack size of the worker threads that run guests.
pub(crate) const WORKER_STACK: usize = 48 << 20;

/// A module or component ready to run: linked, or, when its compiled code
/// was on disk, linked on its first execution, so that a run which executes
/// none of its steps never loads code.
pub(crate) struct Program {
    /// Digest of the module's bytes (part of the cache key).
    pub digest: Digest,
    /// The engine settings it was compiled for, among them whether the code
    /// checks for interruption (timeouts, quotas and cancellation
    /// in-process; code run where a timeout kills the process is compiled
    /// without).
    flavor: Flavor,
    engine: Engine,
    linked: OnceLock<Result<ProgramKind, String>>,
    /// Where the module's bytes are until it is linked: what is compiled
    /// again if the code on disk cannot be loaded then.
    unlinked: Mutex<Option<Source>>,
}

/// Where the bytes of a module not yet linked are.
enum Source {
    /// Held in memory.
    Held(Vec<u8>),
    /// In the store, under the module's digest.
    Stored(crate::store::Store),
    /// In a host file, which had the module's digest when the run was planned.
    HostFile(HostFiles, PathBuf),
}

impl Source {
    /// The bytes of module `digest`.
    fn into_bytes(self, digest: &Digest) -> Result<Vec<u8>, String> {
        match self {
            Self::Held(bytes) => Ok(bytes),
            Self::Stored(store) => store.read_file(digest).map_err(|err| format!("reading it from the store: {err}")),
            Self::HostFile(files, path) => {
                let file = files.open_file(&path).map_err(|why| format!("cannot read it: {why}"))?;
                let bytes = read_module(file, &path)?;
                if Digest::of(&bytes) != *digest {
                    return Err(format!(
                        "{} changed after the run was planned (its steps' cache keys name the module as it was); \
                         run again to use the new one",
                        path.display()
                    ));
                }
                Ok(bytes)
            }
        }
    }
}

/// The bytes of the module file `file`, opened from `path`.
fn read_module(file: std::fs::File, path: &Path) -> Result<Vec<u8>, String> {
    crate::host_files::read_open_capped(file, path, MAX_MODULE_BYTES).map_err(|why| format!("cannot read it: {why}"))
}

enum ProgramKind {
    Core(Linked<InstancePre<CoreState>>),
    Component(Linked<CommandPre<ComponentState>>),
}

/// A program linked twice: against wasmtime-wasi's file system (host
/// directories) and against the engine's own ([`StepFs`]).
struct Linked<P> {
    host_dirs: P,
    own_fs: P,
}

impl<P> Linked<P> {
    /// The linking for a guest given the engine's file system, or host directories.
    fn for_fs(&self, own_fs: bool) -> &P {
        if own_fs { &self.own_fs } else { &self.host_dirs }
    }
}

/// The engine settings a step's limits decide, each of which needs its own
/// `wasmtime::Engine`: whether fuel is metered and whether the code checks
/// for interruption (both compiled into the code), and the stack size (a
/// setting of the engine, not of a store).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Flavor {
    metered: bool,
    interruptible: bool,
    stack: u64,
}

impl Flavor {
    /// The flavor that enforces `limits`.
    pub(crate) fn of(limits: &Limits) -> Self {
        Self { metered: limits.fuel.is_some(), interruptible: limits.interruptible(), stack: stack_class(limits.stack) }
    }

    /// The flavor that enforces `limits` in a process that is killed when
    /// the timeout passes: no interruption checks in the code.
    pub(crate) fn killed_on_timeout(limits: &Limits) -> Self {
        Self { interruptible: false, ..Self::of(limits) }
    }
}

/// The smallest stack class: every stack size is rounded up to a power of
/// two from here to [`MAX_WASM_STACK`], so however many distinct `stack`
/// values steps ask for, there are at most seven stack sizes and so seven
/// engines of each kind (a guest gets at least the stack it asked for).
const MIN_STACK_CLASS: u64 = 512 << 10;

/// The stack class that holds `stack` bytes.
fn stack_class(stack: u64) -> u64 {
    stack.max(MIN_STACK_CLASS).checked_next_power_of_two().unwrap_or(MAX_WASM_STACK).min(MAX_WASM_STACK)
}

/// Compiles, caches and runs WASI programs. Shared by all steps of all runs
/// of an engine.
pub(crate) struct Runtime {
    compiled_dir: PathBuf,
    /// The most executions that run at once: what each engine's pool of
    /// instance slots is sized for.
    concurrent: usize,
    /// The workspace's secret, which authenticates compiled code on disk.
    secret: [u8; 32],
    flavors: DashMap<Flavor, Arc<FlavoredRuntime>>,
    /// The digest of each module file prepared, with the stamp it had then.
    module_digests: DashMap<PathBuf, (FileStamp, Digest)>,
    /// Advances the epoch of every interruptible engine. It is started with
    /// the runtime, which fails without it: interruptible code is never run
    /// where nothing would interrupt it.
    ticker: ticker::EpochTicker,
}

/// One `wasmtime::Engine` with its linkers and programs.
struct FlavoredRuntime {
    flavor: Flavor,
    engine: Engine,
    /// Set up on the first link: a run that links nothing needs none.
    linkers: OnceLock<Result<Linkers, String>>,
    programs: DashMap<Digest, Arc<Program>>,
    disk_cache: compile_cache::CompileCache,
}

/// What guests are linked against: WASI and weir's host functions.
struct Linkers {
    core: Linker<CoreState>,
    /// `core` with the file-system functions of [`StepFs`] over wasmtime-wasi's.
    core_own_fs: Linker<CoreState>,
    component: wasmtime::component::Linker<ComponentState>,
    /// `component` with `wasi:filesystem` of [`StepFs`] over wasmtime-wasi's.
    component_own_fs: wasmtime::component::Linker<ComponentState>,
}

/// The largest module weir reads (from a file, or a package).
pub(crate) const MAX_MODULE_BYTES: u64 = 1 << 30;

impl Runtime {
    /// A runtime whose compiled modules are cached under `compiled_dir`,
    /// authenticated with `secret`, for at most `concurrent` executions at
    /// once. Fails if the epoch ticker cannot be started or the default
    /// flavor's engine cannot be set up.
    pub(crate) fn new(compiled_dir: &Path, secret: &[u8; 32], concurrent: usize) -> Result<Self> {
        let ticker = ticker::EpochTicker::start()
            .map_err(|err| Error::Runtime(format!("starting the timeout thread: {err}")))?;
        let runtime = Self {
            compiled_dir: compiled_dir.to_owned(),
            concurrent,
            secret: *secret,
            flavors: DashMap::new(),
            module_digests: DashMap::new(),
            ticker,
        };
        runtime.flavor(Flavor::of(&Limits::default())).map_err(Error::Runtime)?;
        Ok(runtime)
    }

    /// The program of the module at `path` for steps whose limits need
    /// `flavor` (see [`FlavoredRuntime::prepare`]). The error is a reason for
    /// the user: the module is not a valid WASI command.
    ///
    /// A module file is read and hashed only when its stamp is new: one seen
    /// before by this runtime, or recorded in `store` when an earlier
    /// process hashed it, stands for its digest. Its bytes are then read
    /// only if a step executes and its compiled code is not on disk, and
    /// checked against that digest. Unless `record` is false (a read-only
    /// run), a file hashed here has its stamp recorded in `store`. The file
    /// is opened through `files`, which may confine where it is.
    pub(crate) fn prepare(
        &self,
        path: &Path,
        flavor: Flavor,
        files: &HostFiles,
        store: &crate::store::Store,
        record: bool,
    ) -> Result<Arc<Program>, String> {
        let runtime = self.flavor(flavor)?;
        let file = files.open_file(path).map_err(|why| format!("cannot read it: {why}"))?;
        let metadata = file.metadata().map_err(|err| format!("cannot read it: {err}"))?;
        if metadata.len() > MAX_MODULE_BYTES {
            return Err(format!("it is larger than {MAX_MODULE_BYTES} bytes"));
        }
        let stamp = FileStamp::of(&metadata);
        if let Some(known) = self.module_digests.get(path).filter(|known| known.0 == stamp)
            && let Some(program) = runtime.programs.get(&known.1)
        {
            return Ok(program.clone());
        }
        if let Some(digest) = store.recorded_digest(path, &stamp) {
            let program = runtime.prepare_known(digest, Source::HostFile(files.clone(), path.to_owned()))?;
            self.module_digests.insert(path.to_owned(), (stamp, digest));
            return Ok(program);
        }
        let bytes = read_module(file, path)?;
        let program = runtime.prepare(bytes)?;
        if !stamp.is_racy() {
            self.module_digests.insert(path.to_owned(), (stamp, program.digest));
            if record {
                // Only a cache: without the record, the next run hashes the file again.
                let _ = store.record_digest(path, stamp, program.digest);
            }
        }
        Ok(program)
    }

    /// The program of a module's `bytes` for `flavor` (see
    /// [`FlavoredRuntime::prepare`]).
    pub(crate) fn prepare_bytes(&self, bytes: Vec<u8>, flavor: Flavor) -> Result<Arc<Program>, String> {
        self.flavor(flavor)?.prepare(bytes)
    }

    /// The program of the module `store` holds as `digest`, for `flavor`:
    /// read from the store only if it must be compiled (see
    /// [`FlavoredRuntime::prepare`]).
    pub(crate) fn prepare_stored(
        &self,
        store: &crate::store::Store,
        digest: Digest,
        flavor: Flavor,
    ) -> Result<Arc<Program>, String> {
        self.flavor(flavor)?.prepare_known(digest, Source::Stored(store.clone()))
    }

    /// `program`, linked: on its first execution when it was prepared from
    /// code on disk.
    fn linked<'p>(&self, program: &'p Program) -> Result<&'p ProgramKind, String> {
        let linked = program.linked.get_or_init(|| {
            let source = program.unlinked.lock().unwrap_or_else(PoisonError::into_inner).take();
            // Gone only if an earlier attempt panicked after taking it.
            let source = source.ok_or("an earlier attempt to link it did not finish")?;
            self.flavor(program.flavor)?.link(&source.into_bytes(&program.digest)?, &program.digest)
        });
        linked.as_ref().map_err(Clone::clone)
    }

    fn flavor(&self, flavor: Flavor) -> Result<Arc<FlavoredRuntime>, String> {
        if let Some(runtime) = self.flavors.get(&flavor) {
            return Ok(runtime.clone());
        }
        let runtime = Arc::new(FlavoredRuntime::new(flavor, self.concurrent, &self.compiled_dir, self.secret)?);
        let runtime = self.flavors.entry(flavor).or_insert(runtime).clone();
        if flavor.interruptible {
            self.ticker.tick(&runtime.engine);
        }
        Ok(runtime)
    }
}

/// Core instances one execution may hold: a component instantiates several
/// core modules (14 for a Python step built by componentize-py).
const CORE_INSTANCES_PER_EXECUTION: u32 = 32;
/// Linear memories one execution, or one core module, may define (one for a
/// Python step).
const MEMORIES_PER_EXECUTION: u32 = 4;
/// Tables one execution, or one core module, may define (two for a Python
/// step).
const TABLES_PER_EXECUTION: u32 = 8;
/// The most elements a table may hold (a module's function table; 20,000 by
/// wasmtime's default, which large interpreters pass).
const TABLE_ELEMENTS: usize = 1 << 18;

/// The most bytes of a slot's linear memory reset in place when its
/// execution ends: the pages the guest wrote, found by the kernel's
/// `PAGEMAP_SCAN` and copied back from the image or zeroed, stay mapped for
/// the next execution; beyond this many the rest is reset by `madvise`. A
/// trivial step writes a few dozen pages. At most this much per memory of a
/// slot stays resident between executions.
const KEEP_RESIDENT: usize = 1 << 20;
/// The same for each table (8,192 function references).
const TABLE_KEEP_RESIDENT: usize = 64 << 10;

/// An engine whose instances come from a pool of slots sized for
/// `concurrent` executions at once: an execution's memory is reset when it
/// ends rather than unmapped (the pages it wrote in place, up to
/// [`KEEP_RESIDENT`], where the kernel can say which they are), and a slot
/// keeps its module's initial image mapped for that module's next execution
/// (docs/design.md, "Runtime").
fn pooled_engine(config: &mut Config, concurrent: usize) -> wasmtime::Result<Engine> {
    let executions = u32::try_from(concurrent).unwrap_or(u32::MAX);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(executions)
        .total_core_instances(executions.saturating_mul(CORE_INSTANCES_PER_EXECUTION))
        .total_memories(executions.saturating_mul(MEMORIES_PER_EXECUTION))
        .total_tables(executions.saturating_mul(TABLES_PER_EXECUTION))
        // Guests run on the worker's stack: no execution takes a fiber stack.
        .total_stacks(0)
        .max_memories_per_module(MEMORIES_PER_EXECUTION)
        .max_tables_per_module(TABLES_PER_EXECUTION)
        .table_elements(TABLE_ELEMENTS);
    // Without the scan, wasmtime would clear the first bytes of every memory
    // kept resident, touched or not: slower than `madvise` (Session 23).
    if PoolingAllocationConfig::is_pagemap_scan_available() {
        pool.linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(TABLE_KEEP_RESIDENT)
            .pagemap_scan(wasmtime::Enabled::Yes);
    }
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(config)
}

impl FlavoredRuntime {
    fn new(flavor: Flavor, concurrent: usize, compiled_dir: &Path, secret: [u8; 32]) -> Result<Self, String> {
        let stack = usize::try_from(flavor.stack.min(MAX_WASM_STACK)).unwrap_or(usize::MAX);
        let mut config = Config::new();
        config
            .epoch_interruption(flavor.interruptible)
            .parallel_compilation(true)
            .consume_fuel(flavor.metered)
            // Guests run on the worker's own stack, not on async fibers, but
            // wasmtime refuses a WebAssembly stack larger than the fiber size.
            .async_stack_size(stack + (1 << 20))
            .max_wasm_stack(stack);
        let engine = pooled_engine(&mut config, concurrent).or_else(|_| {
            // The pool's address space could not be reserved (a `ulimit -v`,
            // say): every instance then maps and unmaps its own memory.
            config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
            Engine::new(&config).map_err(|err| format!("setting up the WebAssembly engine: {}", chain(&err)))
        })?;
        Ok(Self {
            disk_cache: compile_cache::CompileCache::new(&engine, compiled_dir, secret),
            flavor,
            engine,
            linkers: OnceLock::new(),
            programs: DashMap::new(),
        })
    }

    fn linkers(&self) -> Result<&Linkers, String> {
        let linkers = self.linkers.get_or_init(|| {
            let setup = |err: wasmtime::Error| format!("linking WASI: {}", chain(&err));
            let mut core = Linker::new(&self.engine);
            wasmtime_wasi::p1::add_to_linker_sync(&mut core, |state: &mut CoreState| &mut state.wasi).map_err(setup)?;
            let mut core_own_fs = core.clone();
            step_fs::preview1::add_to_linker(&mut core_own_fs).map_err(setup)?;
            let mut component = wasmtime::component::Linker::new(&self.engine);
            wasmtime_wasi::p2::add_to_linker_sync(&mut component).map_err(setup)?;
            sandbox::add_host_to_linker::<ComponentState, wasmtime::component::HasSelf<ComponentState>>(
                &mut component,
                |state| state,
            )
            .map_err(setup)?;
            tensor_imports::add_to_linker(&mut component).map_err(setup)?;
            let mut component_own_fs = component.clone();
            step_fs::preview2::add_to_linker(&mut component_own_fs, ComponentState::own_fs).map_err(setup)?;
            Ok(Linkers { core, core_own_fs, component, component_own_fs })
        });
        linkers.as_ref().map_err(Clone::clone)
    }

    /// The program of a module's `bytes`: cached in memory, or linked later
    /// when its compiled code is on disk, or compiled and linked now (the
    /// error then says why it is not a valid step).
    fn prepare(&self, bytes: Vec<u8>) -> Result<Arc<Program>, String> {
        self.prepare_known(Digest::of(&bytes), Source::Held(bytes))
    }

    /// [`prepare`](Self::prepare) for module `digest`, whose bytes are at
    /// `source`.
    fn prepare_known(&self, digest: Digest, source: Source) -> Result<Arc<Program>, String> {
        if let Some(program) = self.programs.get(&digest) {
            return Ok(program.clone());
        }
        let (linked, unlinked) = if self.disk_cache.holds(&digest) {
            (OnceLock::new(), Some(source))
        } else {
            (OnceLock::from(Ok(self.link(&source.into_bytes(&digest)?, &digest)?)), None)
        };
        let program = Arc::new(Program {
            digest,
            flavor: self.flavor,
            engine: self.engine.clone(),
            linked,
            unlinked: Mutex::new(unlinked),
        });
        Ok(self.programs.entry(digest).or_insert(program).clone())
    }

    /// A module's `bytes` loaded from the code on disk or compiled, and
    /// linked.
    fn link(&self, bytes: &[u8], digest: &Digest) -> Result<ProgramKind, String> {
        Ok(match ModuleKind::of_bytes(bytes)? {
            ModuleKind::Core => ProgramKind::Core(self.link_core(bytes, digest)?),
            ModuleKind::Component => ProgramKind::Component(self.link_component(bytes, digest)?),
        })
    }

    fn link_core(&self, bytes: &[u8], digest: &Digest) -> Result<Linked<InstancePre<CoreState>>, String> {
        self.disk_cache.load_or_compile(
            digest,
            |engine, serialized| {
                // SAFETY: `serialized` was produced by `Module::serialize` with an
                // engine of this configuration (the cache directory is keyed by the
                // engine's compatibility hash): its MAC, keyed with the workspace's
                // secret, proves that this engine wrote it for this module.
                unsafe { Module::deserialize(engine, serialized) }
            },
            |engine| {
                let module = Module::new(engine, bytes)?;
                let serialized = module.serialize()?;
                Ok((module, serialized))
            },
            |module| {
                match module.get_export("_start") {
                    Some(wasmtime::ExternType::Func(_)) => {}
                    _ => return Err("it exports no `_start` function; a step must be a WASI command".to_owned()),
                }
                let linkers = self.linkers()?;
                let link = |linker: &Linker<CoreState>| {
                    linker.instantiate_pre(&module).map_err(|err| format!("cannot link it: {}", chain(&err)))
                };
                Ok(Linked { host_dirs: link(&linkers.core)?, own_fs: link(&linkers.core_own_fs)? })
            },
        )
    }

    fn link_component(&self, bytes: &[u8], digest: &Digest) -> Result<Linked<CommandPre<ComponentState>>, String> {
        self.disk_cache.load_or_compile(
            digest,
            |engine, serialized| {
                // SAFETY: as for modules above: our own serialization, same engine
                // configuration, MAC verified.
                unsafe { Component::deserialize(engine, serialized) }
            },
            |engine| {
                let component = Component::new(engine, bytes)?;
                let serialized = component.serialize()?;
                Ok((component, serialized))
            },
            |component| {
                let linkers = self.linkers()?;
                let link = |linker: &wasmtime::component::Linker<ComponentState>| {
                    let pre =
                        linker.instantiate_pre(&component).map_err(|err| format!("cannot link it: {}", chain(&err)))?;
                    CommandPre::new(pre).map_err(|err| format!("it is not a WASI command component: {}", chain(&err)))
                };
                Ok(Linked { host_dirs: link(&linkers.component)?, own_fs: link(&linkers.component_own_fs)? })
            },
        )
    }
}

/// An error with its causes, as one line.
pub(crate) fn chain(err: &wasmtime::Error) -> String {
    err.chain().map(|cause| cause.to_string()).collect::<Vec<_>>().join(": ")
}

#[cfg(test)]
mod tests;
