//! The run history: an SQLite database in the workspace (`history.db`),
//! written as a run goes (a crash loses at most the steps in flight), read by
//! `weir runs`, `show`, `logs`, `metrics`, `explain`, `lineage` and `report`.

mod compare;
mod explain;
mod queries;
mod retention;
mod schema;
mod tenancy;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, params};

pub use compare::{Comparison, MetricSummary, StepComparison, lower_is_better};
pub(crate) use explain::Execution;
pub use explain::Explanation;
pub use queries::{
    LineageNode, MetricPoint, MetricRow, MetricSeries, RunDetail, RunFilter, RunSummary, StepDetails, StepRecord,
};

use crate::{Error, Result};

/// The history database of a workspace. Every write is one transaction.
pub struct History {
    conn: Mutex<Connection>,
}

/// The file name of the database inside the workspace.
pub(crate) const DATABASE: &str = "history.db";

fn db_error(context: &str) -> impl FnOnce(rusqlite::Error) -> Error + '_ {
    move |err| Error::History(format!("{context}: {err}"))
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// This machine's name, for the `host` column.
pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// A run's history record while the run goes on. However the run ends
/// before [`OpenRun::close`] (an error, a panic), the record is closed as
/// `failed`, so no run stays `running` for the life of the process.
pub(crate) struct OpenRun<'h> {
    history: &'h History,
    id: String,
    closed: bool,
}

impl<'h> OpenRun<'h> {
    /// Starts recording `run`.
    pub(crate) fn start(history: &'h History, run: &RunStart<'_>) -> Result<Self> {
        history.start_run(run)?;
        Ok(Self { history, id: run.id.to_owned(), closed: false })
    }

    /// Closes the record with how the run ended.
    pub(crate) fn close(mut self, end: &RunEnd) -> Result<()> {
        self.closed = true;
        self.history.finish_run(&self.id, end)
    }
}

impl Drop for OpenRun<'_> {
    fn drop(&mut self) {
        if !self.closed {
            // Nothing more can be done about a failure here; the next process
            // that opens the workspace marks a run left open as killed.
            let end = RunEnd::now(crate::RunStatus::Failed, BTreeMap::new(), Vec::new());
            let _ = self.history.finish_run(&self.id, &end);
        }
    }
}

/// What is known of a run when it starts.
pub(crate) struct RunStart<'a> {
    pub id: &'a str,
    /// When it started (seconds since the Unix epoch).
    pub started: f64,
    /// `run`, or `verify` for a run of `weir verify`.
    pub kind: &'a str,
    pub tenant: &'a str,
    pub pipeline: &'a str,
    pub manifest_path: Option<&'a Path>,
    pub manifest_digest: Option<String>,
    pub params: &'a serde_json::Value,
    pub inputs: Vec<(String, crate::Digest, String)>,
    pub labels: &'a std::collections::BTreeMap<String, String>,
}

/// How a run ended.
pub(crate) struct RunEnd {
    pub status: crate::RunStatus,
    /// When (seconds since the Unix epoch).
    pub ended: f64,
    /// The digests of the pipeline outputs whose steps succeeded.
    pub outputs: BTreeMap<String, crate::Digest>,
    pub warnings: Vec<String>,
}

impl RunEnd {
    /// A run ending now.
    pub(crate) fn now(
        status: crate::RunStatus,
        outputs: BTreeMap<String, crate::Digest>,
        warnings: Vec<String>,
    ) -> Self {
        Self { status, ended: now(), outputs, warnings }
    }
}

/// Whether this process may write the database and create files beside it.
fn writable(root: &Path, database: &Path) -> bool {
    use rustix::fs::{Access, access};
    access(root, Access::WRITE_OK).is_ok() && access(database, Access::WRITE_OK).is_ok()
}

/// `path` as the path of a `file:` URI: `%`, `?` and `#` escaped.
fn url_path(path: &Path) -> String {
    let mut escaped = String::new();
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => escaped.push_str("%25"),
            '?' => escaped.push_str("%3f"),
            '#' => escaped.push_str("%23"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// Puts the database in write-ahead-log mode (a persistent setting). The
/// switch needs an exclusive lock, for which SQLite does not wait, so a
/// process that meets another one opening the same new workspace retries.
fn use_wal(conn: &Connection) -> Result<()> {
    let mut attempts = 0;
    loop {
        let mode: rusqlite::Result<String> = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0));
        match mode {
            Ok(mode) if mode.eq_ignore_ascii_case("wal") => return Ok(()),
            Err(_) | Ok(_) if attempts < 500 => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Ok(mode) => return Err(Error::History(format!("cannot use write-ahead logging (journal mode {mode})"))),
            Err(err) => return Err(db_error("configuring the run history")(err)),
        }
    }
}

impl History {
    /// Whether the workspace at `root` has a run history (something ran there).
    pub fn exists_in(root: &Path) -> bool {
        root.join(DATABASE).is_file()
    }

    /// Opens (creating or migrating) the history of the workspace at `root`,
    /// and marks runs of this host whose process is gone as `killed`.
    ///
    /// A history that cannot be written (a read-only file system, another
    /// user's workspace) is opened read-only: it serves queries, and
    /// recording fails.
    pub fn open(root: &Path) -> Result<History> {
        let path = root.join(DATABASE);
        match Self::open_writable(&path) {
            Err(err) if path.is_file() && !writable(root, &path) => Self::open_read_only(&path).map_err(|_| err),
            opened => opened,
        }
    }

    fn open_writable(path: &Path) -> Result<History> {
        let mut conn = Connection::open(path).map_err(db_error("opening the run history"))?;
        conn.busy_timeout(std::time::Duration::from_secs(30)).map_err(db_error("configuring the run history"))?;
        // Closing does not checkpoint the log into the database (SQLite
        // checkpoints as the log grows instead): a short-lived `weir` process
        // would otherwise pay a checkpoint and its syncs on every exit.
        conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
            .map_err(db_error("configuring the run history"))?;
        use_wal(&conn)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(db_error("configuring the run history"))?;
        schema::migrate(&mut conn)?;
        let history = History { conn: Mutex::new(conn) };
        history.mark_killed()?;
        Ok(history)
    }

    /// Opens the database as an immutable file, as SQLite reads a database
    /// in write-ahead-log mode where it cannot create its index files.
    fn open_read_only(path: &Path) -> Result<History> {
        use rusqlite::OpenFlags;
        let mut uri = url_path(path);
        uri.insert_str(0, "file:");
        uri.push_str("?immutable=1");
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(uri, flags).map_err(db_error("opening the run history"))?;
        schema::migrate(&mut conn)?;
        Ok(History { conn: Mutex::new(conn) })
    }

    /// A history kept in memory only, as a read-only run records itself
    /// (for its report) without writing to the workspace.
    pub(crate) fn in_memory() -> Result<History> {
        let mut conn = Connection::open_in_memory().map_err(db_error("opening a history in memory"))?;
        schema::migrate(&mut conn)?;
        Ok(History { conn: Mutex::new(conn) })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let mut conn = self.conn.lock().map_err(|_| Error::History("the history connection was poisoned".into()))?;
        f(&mut conn)
    }

    /// Runs left `running` by a process of this host that no longer exists were killed.
    fn mark_killed(&self) -> Result<()> {
        self.with(|conn| {
            let running: Vec<(String, i64)> = conn
                .prepare("SELECT id, pid FROM runs WHERE status = 'running' AND host = ?1")
                .and_then(|mut stmt| stmt.query_map([host_name()], |row| Ok((row.get(0)?, row.get(1)?)))?.collect())
                .map_err(db_error("reading running runs"))?;
            for (id, pid) in running {
                let alive = pid == i64::from(std::process::id())
                    || !cfg!(target_os = "linux")
                    || Path::new("/proc").join(pid.to_string()).exists();
                if !alive {
                    conn.execute("UPDATE runs SET status = 'killed' WHERE id = ?1", [&id])
                        .and_then(|_| {
                            conn.execute(
                                "UPDATE step_runs SET status = 'killed' WHERE run_id = ?1 AND status = 'running'",
                                [&id],
                            )
                        })
                        .map_err(db_error("marking a killed run"))?;
                }
            }
            Ok(())
        })
    }

    /// Records the start of a run.
    pub(crate) fn start_run(&self, run: &RunStart<'_>) -> Result<()> {
        self.with(|conn| {
            let tx = conn.transaction().map_err(db_error("recording a run"))?;
            tx.execute(
                "INSERT INTO runs (id, pipeline, manifest_digest, params, started, status, host, pid, tenant, manifest_path, kind)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'running', ?6, ?7, ?8, ?9, ?10)",
                params![
                    run.id,
                    run.pipeline,
                    run.manifest_digest,
                    run.params.to_string(),
                    run.started,
                    host_name(),
                    i64::from(std::process::id()),
                    run.tenant,
                    run.manifest_path.map(|path| path.display().to_string()),
                    run.kind
                ],
            )
            .map_err(db_error("recording a run"))?;
            for (name, digest, path) in &run.inputs {
                tx.execute(
                    "INSERT INTO run_inputs (run_id, name, digest, path) VALUES (?1, ?2, ?3, ?4)",
                    params![run.id, name, digest.to_string(), path],
                )
                .map_err(db_error("recording a run input"))?;
            }
            for (key, value) in run.labels {
                tx.execute("INSERT INTO run_labels (run_id, key, value) VALUES (?1, ?2, ?3)", params![run.id, key, value])
                    .map_err(db_error("recording a run's labels"))?;
            }
            tx.commit().map_err(db_error("recording a run"))
        })
    }

    /// Records how a run ended.
    pub(crate) fn finish_run(&self, id: &str, end: &RunEnd) -> Result<()> {
        let outputs = serde_json::to_string(&end.outputs).unwrap_or_default();
        let warnings = serde_json::to_string(&end.warnings).unwrap_or_default();
        self.with(|conn| {
            conn.execute(
                "UPDATE runs SET status = ?2, ended = ?3, outputs = ?4, warnings = ?5 WHERE id = ?1",
                params![id, end.status.as_str(), end.ended, outputs, warnings],
            )
            .map_err(db_error("recording the end of a run"))?;
            // A step still executing when its run ends (an engine error) never finished.
            conn.execute("UPDATE step_runs SET status = 'killed' WHERE run_id = ?1 AND status = 'running'", [id])
                .map_err(db_error("recording the end of a run"))?;
            Ok(())
        })
    }
}
