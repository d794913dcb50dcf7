//! The WebAssembly runtime: one shared `wasmtime::Engine`, linkers built once,
//! each module compiled once (cached in memory and on disk), and a fresh
//! `Store` for every execution.

mod compile_cache;
mod execute;
mod limiter;
mod sandbox;
mod ticker;

use std::path::Path;
use std::sync::Arc;

use dashmap::DashMap;
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstancePre, Linker, Module};
use wasmtime_wasi::p2::bindings::sync::CommandPre;

pub(crate) use execute::Invocation;
use sandbox::{ComponentState, CoreState};

use crate::module_kind::ModuleKind;
use crate::{Digest, Error, Result};

/// A module or component compiled and linked, ready to instantiate.
pub(crate) struct Program {
    /// Digest of the module's bytes (part of the cache key).
    pub digest: Digest,
    kind: ProgramKind,
}

enum ProgramKind {
    Core(InstancePre<CoreState>),
    Component(CommandPre<ComponentState>),
}

/// Compiles, caches and runs WASI programs. Shared by all steps of all runs
/// of an engine.
pub(crate) struct Runtime {
    engine: Engine,
    core_linker: Linker<CoreState>,
    component_linker: wasmtime::component::Linker<ComponentState>,
    programs: DashMap<Digest, Arc<Program>>,
    disk_cache: compile_cache::CompileCache,
    _ticker: ticker::EpochTicker,
}

impl Runtime {
    /// A runtime whose compiled modules are cached under `compiled_dir`.
    pub(crate) fn new(compiled_dir: &Path) -> Result<Self> {
        let mut config = Config::new();
        config.epoch_interruption(true).parallel_compilation(true);
        let engine = Engine::new(&config).map_err(|err| Error::Runtime(err.to_string()))?;
        let mut core_linker = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut core_linker, |state: &mut CoreState| &mut state.wasi)
            .map_err(|err| Error::Runtime(err.to_string()))?;
        let mut component_linker = wasmtime::component::Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut component_linker).map_err(|err| Error::Runtime(err.to_string()))?;
        sandbox::add_host_to_linker::<ComponentState, wasmtime::component::HasSelf<ComponentState>>(
            &mut component_linker,
            |state| state,
        )
        .map_err(|err| Error::Runtime(err.to_string()))?;
        Ok(Self {
            disk_cache: compile_cache::CompileCache::new(&engine, compiled_dir),
            _ticker: ticker::EpochTicker::start(engine.clone()),
            engine,
            core_linker,
            component_linker,
            programs: DashMap::new(),
        })
    }

    /// Compiles and links the module at `path`, or returns the cached program.
    /// The error is a reason for the user: the module is not a valid WASI command.
    pub(crate) fn prepare(&self, path: &Path) -> Result<Arc<Program>, String> {
        let bytes = std::fs::read(path).map_err(|err| format!("cannot read it: {err}"))?;
        let digest = Digest::of(&bytes);
        if let Some(program) = self.programs.get(&digest) {
            return Ok(program.clone());
        }
        let kind = match ModuleKind::of_bytes(&bytes)? {
            ModuleKind::Core => ProgramKind::Core(self.link_core(&bytes, &digest)?),
            ModuleKind::Component => ProgramKind::Component(self.link_component(&bytes, &digest)?),
        };
        let program = Arc::new(Program { digest, kind });
        self.programs.insert(digest, program.clone());
        Ok(program)
    }

    fn link_core(&self, bytes: &[u8], digest: &Digest) -> Result<InstancePre<CoreState>, String> {
        let module = self.disk_cache.load_or_compile(
            digest,
            |engine, serialized| {
                // SAFETY: `serialized` was produced by `Module::serialize` with an
                // engine of this configuration (the cache directory is keyed by the
                // engine's compatibility hash) and its checksum was verified.
                unsafe { Module::deserialize(engine, serialized) }
            },
            |engine| {
                let module = Module::new(engine, bytes)?;
                let serialized = module.serialize()?;
                Ok((module, serialized))
            },
        )?;
        match module.get_export("_start") {
            Some(wasmtime::ExternType::Func(_)) => {}
            _ => return Err("it exports no `_start` function; a step must be a WASI command".to_owned()),
        }
        self.core_linker.instantiate_pre(&module).map_err(|err| format!("cannot link it: {}", chain(&err)))
    }

    fn link_component(&self, bytes: &[u8], digest: &Digest) -> Result<CommandPre<ComponentState>, String> {
        let component = self.disk_cache.load_or_compile(
            digest,
            |engine, serialized| {
                // SAFETY: as for modules above: our own serialization, same engine
                // configuration, checksum verified.
                unsafe { Component::deserialize(engine, serialized) }
            },
            |engine| {
                let component = Component::new(engine, bytes)?;
                let serialized = component.serialize()?;
                Ok((component, serialized))
            },
        )?;
        let pre = self
            .component_linker
            .instantiate_pre(&component)
            .map_err(|err| format!("cannot link it: {}", chain(&err)))?;
        CommandPre::new(pre).map_err(|err| format!("it is not a WASI command component: {}", chain(&err)))
    }
}

/// An error with its causes, as one line.
pub(crate) fn chain(err: &wasmtime::Error) -> String {
    err.chain().map(|cause| cause.to_string()).collect::<Vec<_>>().join(": ")
}
