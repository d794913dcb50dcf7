//! `weir serve`: one shared [`weir::Engine`] behind an authenticated HTTP
//! API. Tenants publish pipelines as immutable versions of content-addressed
//! blobs, trigger runs, follow their events, and download their artifacts;
//! each sees only its own. The server's state is SQLite in the workspace
//! (`server.db`, beside the engine's run history); one server owns one
//! workspace. See `docs/server.md`.

mod api;
mod auth;
mod bundle;
mod config;
mod db;
mod launch;
mod live;
mod problem;
pub mod render;
mod schedules;
mod state;
mod tenants;
mod tokens;
mod ui;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

pub use api::ApiDoc;
pub use bundle::bundle_path;
pub use config::{PackageSource, ServerConfig};
pub use db::kept_blobs;
pub use tenants::{Quantity, TenantLimits, TenantSpec};
pub use tokens::{Caller, TokenInfo, Tokens};
use weir::Engine;

use crate::db::Database;
use crate::state::AppState;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A file or socket operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// `server.db` failed.
    #[error("server database: {0}")]
    Database(String),
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] weir::Error),
}

impl ServerError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> ServerError {
        ServerError::Io { context: context.into(), source }
    }
}

/// Serves `engine`'s workspace until SIGTERM or SIGINT, then stops
/// accepting, lets running runs go on for the configured grace period,
/// cancels those still running, waits until every run is recorded and
/// returns. Prints `listening on http://ADDRESS` on stdout once it accepts
/// connections.
pub fn serve(engine: Engine, config: ServerConfig) -> Result<(), ServerError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("weir-serve")
        .build()
        .map_err(|err| ServerError::io("starting the async runtime", err))?;
    runtime.block_on(serve_async(engine, config))
}

async fn serve_async(engine: Engine, config: ServerConfig) -> Result<(), ServerError> {
    let db = Arc::new(Database::open(engine.store().root())?);
    let state = Arc::new(AppState::new(engine, db, config));
    let settled = launch::settle_orphans(&state)?;
    if settled > 0 {
        eprintln!("weir serve: {settled} run(s) left running by a server that stopped were settled");
    }
    let listen = state.config.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|err| ServerError::io(format!("listening on {listen}"), err))?;
    let address = listener.local_addr().map_err(|err| ServerError::io("reading the listening address", err))?;
    println!("listening on http://{address}");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let drained = Arc::new(tokio::sync::Notify::new());
    let stopping = {
        let state = state.clone();
        let drained = drained.clone();
        async move {
            stop_signal().await;
            eprintln!("weir serve: stopping: no new connections; {} run(s) executing", state.live.len());
            state.draining.store(true, Ordering::SeqCst);
            tokio::spawn(async move {
                drain(&state).await;
                drained.notify_one();
            });
        }
    };
    tokio::spawn(schedules::run_scheduler(state.clone()));
    let app = api::router(state.clone());
    // Small responses (a trigger's 202, an event) go out at once instead of
    // waiting out Nagle's algorithm against the client's delayed ACK (40 ms).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(err) = tcp.set_nodelay(true) {
            eprintln!("weir serve: setting TCP_NODELAY: {err}");
        }
    });
    axum::serve(listener, app).with_graceful_shutdown(stopping).await.map_err(|err| ServerError::io("serving", err))?;
    if !state.live.is_empty() {
        drained.notified().await;
    }
    eprintln!("weir serve: stopped; every run is recorded");
    Ok(())
}

/// Waits for running runs up to the grace period, cancels the rest, and
/// waits until they are recorded.
async fn drain(state: &AppState) {
    let deadline = tokio::time::Instant::now() + state.config.grace;
    while !state.live.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if !state.live.is_empty() {
        eprintln!("weir serve: the grace period is over: cancelling {} run(s)", state.live.len());
        state.live.cancel_all();
    }
    while !state.live.is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut interrupt)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = interrupt.recv() => {}
    }
}
