//! The server's own state, `WORKSPACE/server.db` (SQLite, beside the run
//! history the engine keeps): tokens, uploaded blobs, published pipeline
//! versions, the runs the server started, and schedules' fires.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::Connection;

use crate::ServerError;

/// The database's file name, in the workspace.
pub(crate) const DATABASE: &str = "server.db";

/// The schema, created when missing. A column is never reused for another
/// meaning; a change adds a migration step keyed by `user_version`.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    hash BLOB NOT NULL,
    tenant TEXT NOT NULL,
    admin INTEGER NOT NULL,
    created REAL NOT NULL,
    revoked REAL
);
CREATE TABLE IF NOT EXISTS blobs (
    tenant TEXT NOT NULL,
    digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (tenant, digest)
);
CREATE TABLE IF NOT EXISTS pipelines (
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    default_version TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (tenant, name)
);
CREATE TABLE IF NOT EXISTS versions (
    tenant TEXT NOT NULL,
    pipeline TEXT NOT NULL,
    version TEXT NOT NULL,
    seq INTEGER NOT NULL,
    content TEXT NOT NULL,
    bundle TEXT NOT NULL,
    params TEXT NOT NULL,
    inputs TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (tenant, pipeline, version),
    UNIQUE (tenant, pipeline, content)
);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    pipeline TEXT NOT NULL,
    version TEXT NOT NULL,
    status TEXT NOT NULL,
    labels TEXT NOT NULL,
    request TEXT NOT NULL,
    idempotency_key TEXT,
    retry_of TEXT,
    schedule TEXT,
    created REAL NOT NULL,
    ended REAL,
    error TEXT
);
CREATE TABLE IF NOT EXISTS schedules (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    pipeline TEXT NOT NULL,
    version TEXT,
    cron TEXT,
    timezone TEXT NOT NULL,
    watch TEXT,
    params TEXT NOT NULL,
    labels TEXT NOT NULL,
    misfire TEXT NOT NULL,
    max_concurrent INTEGER NOT NULL,
    paused INTEGER NOT NULL,
    next_fire REAL,
    last_digest TEXT,
    changes INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS fires (
    schedule TEXT NOT NULL,
    slot TEXT NOT NULL,
    fired REAL NOT NULL,
    run TEXT,
    outcome TEXT NOT NULL,
    PRIMARY KEY (schedule, slot)
);
CREATE TABLE IF NOT EXISTS cache_entries (
    tenant TEXT NOT NULL,
    key TEXT NOT NULL,
    entry TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (tenant, key)
);
CREATE TABLE IF NOT EXISTS cache_runs (
    tenant TEXT NOT NULL,
    run_id TEXT NOT NULL,
    keys TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (tenant, run_id)
);
CREATE INDEX IF NOT EXISTS runs_schedule ON runs (schedule, status);
CREATE UNIQUE INDEX IF NOT EXISTS runs_idempotency ON runs (tenant, idempotency_key);
CREATE INDEX IF NOT EXISTS runs_listing ON runs (tenant);
";

/// The connection to `server.db`, shared by every request.
pub struct Database {
    conn: Mutex<Connection>,
}

impl Database {
    /// Opens (creating) the server database of the workspace at `root`.
    pub(crate) fn open(root: &Path) -> Result<Database, ServerError> {
        std::fs::create_dir_all(root).map_err(|err| ServerError::io(format!("creating {}", root.display()), err))?;
        let path = root.join(DATABASE);
        let conn = Connection::open(&path).map_err(db_error("opening the server database"))?;
        conn.busy_timeout(std::time::Duration::from_secs(30)).map_err(db_error("configuring the server database"))?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(db_error("configuring the server database"))?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(db_error("configuring the server database"))?;
        conn.execute_batch(SCHEMA).map_err(db_error("creating the server database"))?;
        Ok(Database { conn: Mutex::new(conn) })
    }

    /// Runs `f` with the connection (one statement or transaction at a time).
    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T, ServerError> {
        let mut conn = self.conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut conn).map_err(db_error("the server database"))
    }
}

/// Every blob the server of the workspace at `root` holds for its tenants
/// (published files, uploads not yet published): what garbage collection
/// must keep besides the history's artifacts. None when it has no server
/// database.
pub fn kept_blobs(root: &Path) -> Result<std::collections::BTreeSet<weir::Digest>, ServerError> {
    if !root.join(DATABASE).exists() {
        return Ok(std::collections::BTreeSet::new());
    }
    let digests: Vec<String> = Database::open(root)?.with(|conn| {
        let mut statement = conn.prepare("SELECT DISTINCT digest FROM blobs")?;
        statement.query_map([], |row| row.get(0))?.collect()
    })?;
    digests
        .iter()
        .map(|text| {
            weir::Digest::parse(text).map_err(|err| ServerError::Database(format!("blob digest `{text}`: {err}")))
        })
        .collect()
}

/// Wraps a SQLite error with what was being done.
pub(crate) fn db_error(context: &'static str) -> impl Fn(rusqlite::Error) -> ServerError {
    move |err| ServerError::Database(format!("{context}: {err}"))
}

/// Seconds since the Unix epoch, as the run history counts time.
pub(crate) fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}
