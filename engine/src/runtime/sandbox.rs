//! What a guest can see: its argv, `/in` read-only, `/out` writable, stdout
//! and stderr captured (see `capped_log`), and nothing else: no host environment
//! variables, no other host path, no network. `/in` and `/out` are host
//! directories, or the engine's own file system (see `step_fs`).

use wasmtime::component::ResourceTable;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use weir_abi::contract::{INPUT_DIR, OUTPUT_DIR};

use super::chain;
use super::determinism::make_deterministic;
use super::execute::{GuestDirs, Invocation};
use super::step_fs::preview2::OwnFsView;
use super::step_fs::{SharedFs, StepFs, take_back};
use super::watch::Guard;
use crate::bridge::Bridge;

wasmtime::component::bindgen!({ path: "../wit", world: "step" });

pub(crate) use self::weir::step::host::add_to_linker as add_host_to_linker;

/// Store state of a preview-1 module (which cannot reach the host bridge).
pub(crate) struct CoreState {
    pub(crate) wasi: WasiP1Ctx,
    /// Its file system, when the engine keeps it (else wasmtime-wasi's
    /// preopens of host directories are).
    pub(crate) fs: Option<StepFs>,
    pub(crate) guard: Guard,
    pub(crate) bridge: Bridge,
}

/// Store state of a preview-2 component.
pub(crate) struct ComponentState {
    ctx: WasiCtx,
    table: ResourceTable,
    /// Its file system, when the engine keeps it (shared with the guest's
    /// streams, which the table holds, and known to the bridge).
    fs: Option<SharedFs>,
    pub(crate) guard: Guard,
    pub(crate) bridge: Bridge,
}

impl ComponentState {
    pub(crate) fn new(ctx: WasiCtx, fs: Option<SharedFs>, guard: Guard, bridge: Bridge) -> Self {
        Self { ctx, table: ResourceTable::new(), fs, guard, bridge }
    }

    /// What `wasi:filesystem` sees when the engine keeps the file system.
    pub(crate) fn own_fs(&mut self) -> OwnFsView<'_> {
        OwnFsView { fs: self.fs.as_ref(), table: &mut self.table }
    }

    /// The guard, the bridge and the file system, once the guest is done
    /// (its streams, which share the file system, dropped with the table).
    pub(crate) fn finish(self) -> (Guard, Bridge, Option<StepFs>) {
        let Self { table, fs, guard, bridge, .. } = self;
        drop(table);
        (guard, bridge, fs.map(take_back))
    }
}

impl self::weir::step::host::Host for ComponentState {
    fn metric(&mut self, name: String, value: f64) {
        self.bridge.metric(&name, value, None);
    }

    fn metric_at(&mut self, name: String, value: f64, at: u64) {
        self.bridge.metric(&name, value, Some(at));
    }

    fn progress(&mut self, done: u64, total: u64) {
        self.bridge.progress(done, total);
    }

    fn call_native(&mut self, function: String, payload: Vec<u8>) -> Result<Vec<u8>, String> {
        let budget = self.guard.limiter.remaining();
        self.bridge.call_native(&function, &payload, budget)
    }
}

impl WasiView for ComponentState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.ctx, table: &mut self.table }
    }
}

/// The WASI context of one execution (with its `/in` and `/out` when they
/// are host directories).
pub(crate) fn wasi_context(invocation: &Invocation) -> Result<WasiCtxBuilder, String> {
    let mut builder = WasiCtxBuilder::new();
    builder
        .args(&invocation.argv)
        .stdout(invocation.stdout.clone())
        .stderr(invocation.stderr.clone())
        .allow_blocking_current_thread(true)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    if let GuestDirs::Host { in_dir, out_dir, .. } = &invocation.dirs {
        builder
            .preopened_dir(in_dir, INPUT_DIR, FsPerms::ReadOnly)
            .map_err(|err| format!("opening /in: {}", chain(&err)))?;
        builder
            .preopened_dir(out_dir, OUTPUT_DIR, FsPerms::ReadWrite)
            .map_err(|err| format!("opening /out: {}", chain(&err)))?;
    }
    if let Some(seed) = &invocation.deterministic_seed {
        make_deterministic(&mut builder, seed);
    }
    Ok(builder)
}
