//! Running one execution of a program in a fresh `Store`, and turning how it
//! ended into success or a typed failure.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use cap_std::fs::Dir;
use wasmtime::{Store, Trap, WasmBacktrace};
use wasmtime_wasi::I32Exit;

use super::capped_log::CappedLog;
use super::sandbox::{ComponentState, CoreState, wasi_context};
use super::step_fs::{SharedFs, StepFs, take_back};
use super::watch::{Guard, arm};
use super::{Program, ProgramKind, Runtime, chain};
use crate::bridge::Bridge;
use crate::cancel::CancelToken;
use crate::error::TrapCode;
use crate::{Digest, Limits, Phases, StepErrorKind};

/// What one execution gets: argv, its `/in` and `/out`, logs for stdout and
/// stderr, and its limits.
pub(crate) struct Invocation {
    /// argv, including argv\[0\].
    pub argv: Vec<String>,
    /// What the guest sees at `/in` and `/out`.
    pub dirs: GuestDirs,
    /// Receives the guest's stdout.
    pub stdout: CappedLog,
    /// Receives the guest's stderr.
    pub stderr: CappedLog,
    /// The sandbox limits.
    pub limits: Limits,
    /// For a deterministic step, the seed of its virtual clocks and random
    /// sources (its cache key).
    pub deterministic_seed: Option<Digest>,
    /// The host bridge (metrics, progress, native functions).
    pub bridge: Bridge,
    /// The run's cancellation, checked with the timeout.
    pub cancel: Option<CancelToken>,
}

/// Where a guest's `/in` and `/out` are.
pub(crate) enum GuestDirs {
    /// Host directories, which wasmtime-wasi opens.
    Host {
        /// Mounted read-only at `/in`.
        in_dir: PathBuf,
        /// Mounted writable at `/out`.
        out_dir: PathBuf,
        /// The same directory, open: the guard measures it as the guest writes.
        watched_out: Dir,
    },
    /// The engine's own file system (which the bridge may refer to).
    Own(SharedFs),
}

/// How an execution ended.
pub(crate) struct Executed {
    /// `Ok` when the guest exited with status 0.
    pub result: Result<(), StepErrorKind>,
    /// The bridge, with the telemetry the guest reported.
    pub bridge: Bridge,
    /// The sandbox, instantiation and run times.
    pub phases: Phases,
    /// The guest's file system as it left it, when the engine kept it.
    pub fs: Option<StepFs>,
}

impl Runtime {
    /// Runs `program` to completion.
    pub(crate) fn execute(&self, program: &Program, invocation: Invocation) -> Executed {
        let mut phases = Phases::default();
        let mut clock = Instant::now();
        let mut lap = |phase: &mut Duration| {
            *phase = clock.elapsed();
            clock = Instant::now();
        };
        let limits = invocation.limits;
        let failed = |why: String, bridge: Bridge, phases: Phases| Executed {
            result: Err(StepErrorKind::Engine(why)),
            bridge,
            phases,
            fs: None,
        };
        let kind = match self.linked(program) {
            Ok(kind) => kind,
            Err(why) => return failed(format!("linking its module: {why}"), invocation.bridge, phases),
        };
        let mut wasi = match wasi_context(&invocation) {
            Ok(wasi) => wasi,
            Err(why) => return failed(why, invocation.bridge, phases),
        };
        let Invocation { dirs, cancel, bridge, .. } = invocation;
        let (watched_out, fs) = match dirs {
            GuestDirs::Host { watched_out, .. } => (Some(watched_out), None),
            GuestDirs::Own(fs) => (None, Some(fs)),
        };
        let guard = Guard::new(limits, watched_out, cancel);
        let (result, breach, bridge, fs) = match kind {
            ProgramKind::Core(pre) => {
                let pre = pre.for_fs(fs.is_some());
                // A core module cannot reach the bridge: nothing else keeps its file system.
                let fs = fs.map(take_back);
                let mut store = Store::new(&program.engine, CoreState { wasi: wasi.build_p1(), fs, guard, bridge });
                arm(&mut store, &limits, program.flavor.interruptible, |state| &mut state.guard);
                lap(&mut phases.sandbox);
                let instance = pre.instantiate(&mut store);
                lap(&mut phases.instantiate);
                let result = instance.and_then(|instance| {
                    let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
                    start.call(&mut store, ())
                });
                lap(&mut phases.run);
                let state = store.into_data();
                let breach = state.guard.breach().or_else(|| state.fs.as_ref().and_then(StepFs::breach));
                (result, breach, state.bridge, state.fs)
            }
            ProgramKind::Component(pre) => {
                let pre = pre.for_fs(fs.is_some());
                let mut store = Store::new(&program.engine, ComponentState::new(wasi.build(), fs, guard, bridge));
                arm(&mut store, &limits, program.flavor.interruptible, |state| &mut state.guard);
                lap(&mut phases.sandbox);
                let command = pre.instantiate(&mut store);
                lap(&mut phases.instantiate);
                let result = command
                    .and_then(|command| command.wasi_cli_run().call_run(&mut store)?.map_err(|()| I32Exit(1).into()));
                lap(&mut phases.run);
                let (guard, bridge, fs) = store.into_data().finish();
                let breach = guard.breach().or_else(|| fs.as_ref().and_then(StepFs::breach));
                (result, breach, bridge, fs)
            }
        };
        Executed { result: classify(result, breach, &limits), bridge, phases, fs }
    }
}

/// Maps how the guest ended to success or a failure kind; a limit the guest
/// passed wins over the trap it caused.
fn classify(result: wasmtime::Result<()>, breach: Option<StepErrorKind>, limits: &Limits) -> Result<(), StepErrorKind> {
    let Err(err) = result else { return Ok(()) };
    if let Some(I32Exit(0)) = err.downcast_ref::<I32Exit>() {
        return Ok(());
    }
    if let Some(kind) = breach {
        return Err(kind);
    }
    match err.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => return Err(StepErrorKind::Timeout { limit: limits.timeout }),
        Some(Trap::OutOfFuel) => return Err(StepErrorKind::FuelExhausted { limit: limits.fuel.unwrap_or(0) }),
        Some(Trap::StackOverflow) => return Err(StepErrorKind::StackOverflow { limit: limits.stack }),
        _ => {}
    }
    if let Some(I32Exit(code)) = err.downcast_ref::<I32Exit>() {
        return Err(StepErrorKind::Exit { code: *code });
    }
    let trap = err.downcast_ref::<Trap>();
    let backtrace = err.downcast_ref::<WasmBacktrace>().map(|trace| trace.to_string()).unwrap_or_default();
    let message = match trap {
        Some(trap) => trap.to_string(),
        None => chain(&err),
    };
    Err(StepErrorKind::Trap { code: TrapCode::from(trap), message, backtrace })
}
