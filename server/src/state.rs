//! What every request handler shares.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use dashmap::DashMap;
use weir::{Engine, Pipeline};

use crate::ServerConfig;
use crate::auth::RateLimiter;
use crate::db::Database;
use crate::live::LiveRuns;
use crate::tenants::TenantsFile;
use crate::tokens::Tokens;

/// The most loaded pipelines kept for reuse by later triggers.
const MAX_CACHED_PIPELINES: usize = 256;

/// The server's shared state.
pub struct AppState {
    /// The one engine every run executes on.
    pub engine: Engine,
    /// `server.db`.
    pub db: Arc<Database>,
    /// The bearer tokens.
    pub tokens: Tokens,
    /// Each token's request rate.
    pub limiter: RateLimiter,
    /// The settings.
    pub config: ServerConfig,
    /// The runs being executed.
    pub live: LiveRuns,
    /// The tenants file, when tenants are managed over the API.
    pub tenants: Option<TenantsFile>,
    /// The web UI's signed-in sessions.
    pub ui_sessions: crate::ui::Sessions,
    /// Set once the server is stopping: triggers are refused.
    pub draining: AtomicBool,
    /// Pipelines loaded from materialized bundles, by manifest path.
    pipelines: DashMap<PathBuf, Pipeline>,
}

impl AppState {
    /// The state of a server of `engine` with `config`.
    pub fn new(engine: Engine, db: Arc<Database>, config: ServerConfig) -> AppState {
        AppState {
            engine,
            tokens: Tokens::with_database(db.clone()),
            db,
            limiter: RateLimiter::new(config.rate_per_second, config.rate_burst),
            tenants: config.tenants_file.clone().map(TenantsFile::new),
            config,
            live: LiveRuns::default(),
            ui_sessions: crate::ui::Sessions::default(),
            draining: AtomicBool::new(false),
            pipelines: DashMap::new(),
        }
    }

    /// The pipeline of the manifest at `manifest`, loaded by `load` once.
    pub fn pipeline<E>(&self, manifest: &PathBuf, load: impl FnOnce() -> Result<Pipeline, E>) -> Result<Pipeline, E> {
        if let Some(pipeline) = self.pipelines.get(manifest) {
            return Ok(pipeline.clone());
        }
        let pipeline = load()?;
        if self.pipelines.len() >= MAX_CACHED_PIPELINES {
            self.pipelines.clear();
        }
        self.pipelines.insert(manifest.clone(), pipeline.clone());
        Ok(pipeline)
    }
}
