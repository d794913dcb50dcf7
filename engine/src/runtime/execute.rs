//! Running one execution of a program in a fresh `Store`, and turning how it
//! ended into success or a typed failure.

use std::fs::File;
use std::path::PathBuf;

use wasmtime::{Store, Trap};
use wasmtime_wasi::I32Exit;

use super::limiter::MemoryLimiter;
use super::sandbox::{ComponentState, CoreState, wasi_context};
use super::{Program, ProgramKind, Runtime, chain, ticker};
use crate::bridge::Bridge;
use crate::{Limits, StepErrorKind};

/// What one execution gets: argv, its `/in` and `/out` host directories,
/// files for stdout and stderr, and its limits.
pub(crate) struct Invocation {
    /// argv, including argv\[0\].
    pub argv: Vec<String>,
    /// Host directory mounted read-only at `/in`.
    pub in_dir: PathBuf,
    /// Host directory mounted writable at `/out`.
    pub out_dir: PathBuf,
    /// Receives the guest's stdout.
    pub stdout: File,
    /// Receives the guest's stderr.
    pub stderr: File,
    /// Memory and time limits.
    pub limits: Limits,
    /// The host bridge (metrics, progress, native functions).
    pub bridge: Bridge,
}

impl Runtime {
    /// Runs `program` to completion; `Ok` when it exited with status 0.
    /// The bridge comes back with the telemetry the guest reported.
    pub(crate) fn execute(&self, program: &Program, invocation: Invocation) -> (Result<(), StepErrorKind>, Bridge) {
        let limits = invocation.limits;
        let mut wasi = match wasi_context(&invocation) {
            Ok(wasi) => wasi,
            Err(why) => return (Err(StepErrorKind::Engine(why)), invocation.bridge),
        };
        let limiter = MemoryLimiter::new(limits.memory);
        let bridge = invocation.bridge;
        let (result, memory_hit, bridge) = match &program.kind {
            ProgramKind::Core(pre) => {
                let mut store = Store::new(&self.engine, CoreState { wasi: wasi.build_p1(), limiter, bridge });
                arm(&mut store, limits, |state| &mut state.limiter);
                let result = pre.instantiate(&mut store).and_then(|instance| {
                    let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
                    start.call(&mut store, ())
                });
                let state = store.into_data();
                (result, state.limiter.hit(), state.bridge)
            }
            ProgramKind::Component(pre) => {
                let mut store = Store::new(&self.engine, ComponentState::new(wasi.build(), limiter, bridge));
                arm(&mut store, limits, |state| &mut state.limiter);
                let result = pre
                    .instantiate(&mut store)
                    .and_then(|command| command.wasi_cli_run().call_run(&mut store)?.map_err(|()| I32Exit(1).into()));
                let state = store.into_data();
                (result, state.limiter.hit(), state.bridge)
            }
        };
        (classify(result, memory_hit, limits), bridge)
    }
}

/// Installs the memory limiter and the timeout on a fresh store.
fn arm<T: 'static>(store: &mut Store<T>, limits: Limits, limiter: fn(&mut T) -> &mut MemoryLimiter) {
    store.limiter(move |state| limiter(state) as &mut dyn wasmtime::ResourceLimiter);
    store.set_epoch_deadline(ticker::ticks_for(limits.timeout));
    store.epoch_deadline_trap();
}

/// Maps how the guest ended to success or a failure kind.
fn classify(result: wasmtime::Result<()>, memory_hit: bool, limits: Limits) -> Result<(), StepErrorKind> {
    let Err(err) = result else { return Ok(()) };
    if let Some(I32Exit(0)) = err.downcast_ref::<I32Exit>() {
        return Ok(());
    }
    if err.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        return Err(StepErrorKind::Timeout { limit: limits.timeout });
    }
    if memory_hit {
        return Err(StepErrorKind::MemoryLimit { limit: limits.memory });
    }
    match err.downcast_ref::<I32Exit>() {
        Some(I32Exit(code)) => Err(StepErrorKind::Exit { code: *code }),
        None => Err(StepErrorKind::Trap { message: chain(&err) }),
    }
}
