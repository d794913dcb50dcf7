//! The history's schema, versioned with SQLite's `user_version` and migrated
//! forward one step at a time.

use rusqlite::Connection;

use super::db_error;
use crate::{Error, Result};

/// Each migration brings the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: runs, step runs, metrics, lineage.
    "CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        pipeline TEXT NOT NULL,
        manifest_digest TEXT,
        params TEXT NOT NULL,
        started REAL NOT NULL,
        ended REAL,
        status TEXT NOT NULL,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL
    );
    CREATE INDEX runs_by_pipeline ON runs (pipeline, started);
    CREATE TABLE run_inputs (
        run_id TEXT NOT NULL REFERENCES runs (id),
        name TEXT NOT NULL,
        digest TEXT NOT NULL,
        path TEXT NOT NULL,
        PRIMARY KEY (run_id, name)
    );
    CREATE TABLE step_runs (
        run_id TEXT NOT NULL REFERENCES runs (id),
        step TEXT NOT NULL,
        position INTEGER NOT NULL,
        status TEXT NOT NULL,
        cache_key TEXT,
        reused_from TEXT,
        forced TEXT,
        duration_ms REAL NOT NULL,
        key_material TEXT,
        inputs TEXT NOT NULL,
        outputs TEXT NOT NULL,
        error TEXT,
        stdout TEXT,
        stderr TEXT,
        finished REAL NOT NULL,
        PRIMARY KEY (run_id, step)
    );
    CREATE INDEX step_runs_by_step ON step_runs (step, finished);
    CREATE TABLE metrics (
        run_id TEXT NOT NULL REFERENCES runs (id),
        step TEXT NOT NULL,
        name TEXT NOT NULL,
        value REAL NOT NULL,
        seq INTEGER NOT NULL,
        time REAL NOT NULL,
        PRIMARY KEY (run_id, step, name, seq)
    );
    CREATE TABLE artifacts (
        digest TEXT NOT NULL,
        run_id TEXT NOT NULL REFERENCES runs (id),
        step TEXT NOT NULL,
        output TEXT NOT NULL,
        inputs TEXT NOT NULL,
        PRIMARY KEY (digest, run_id, step, output)
    );",
    // 2: runs belong to a tenant, and remember their manifest file.
    "ALTER TABLE runs ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
    ALTER TABLE runs ADD COLUMN manifest_path TEXT;
    CREATE INDEX runs_by_tenant ON runs (tenant, started);",
    // 3: the entries of map steps, each with its status, logs and last metric values.
    "CREATE TABLE entry_runs (
        run_id TEXT NOT NULL REFERENCES runs (id),
        step TEXT NOT NULL,
        entry TEXT NOT NULL,
        status TEXT NOT NULL,
        stdout TEXT,
        stderr TEXT,
        metrics TEXT NOT NULL,
        PRIMARY KEY (run_id, step, entry)
    );",
    // 4: runs of `weir verify` are told apart from the runs they verify.
    "ALTER TABLE runs ADD COLUMN kind TEXT NOT NULL DEFAULT 'run';",
    // 5: the whole run document: a step's details (error kind, phases,
    // warnings…) and a run's pipeline outputs and warnings.
    "ALTER TABLE step_runs ADD COLUMN details TEXT;
    ALTER TABLE runs ADD COLUMN outputs TEXT;
    ALTER TABLE runs ADD COLUMN warnings TEXT;",
    // 6: labels on runs (a sweep's id, a schedule's), to find them by.
    "CREATE TABLE run_labels (
        run_id TEXT NOT NULL REFERENCES runs (id),
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (run_id, key)
    );
    CREATE INDEX run_labels_by_label ON run_labels (key, value);",
    // 7: a metric value's position as the step gave it (an epoch, a batch).
    "ALTER TABLE metrics ADD COLUMN at INTEGER;",
    // 8: only executed steps' records (those with key material, which
    // `execution_before` looks for) are indexed by step: a reused step's
    // record landed on a different page of the old index for every step,
    // which made recording a fully reused run write a page per step.
    "DROP INDEX step_runs_by_step;
    CREATE INDEX step_runs_executed ON step_runs (step) WHERE key_material IS NOT NULL;",
];

/// The schema version this build of weir writes.
pub(crate) const VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database to [`VERSION`]; refuses a database from a newer weir.
/// Each step runs in an immediate transaction that re-reads the version, so
/// processes opening a new workspace at once migrate it exactly once.
pub(crate) fn migrate(conn: &mut Connection) -> Result<()> {
    // An up-to-date database is not written to (it may be read-only).
    let current: i64 =
        conn.query_row("PRAGMA user_version", [], |row| row.get(0)).map_err(db_error("reading the schema version"))?;
    if current == VERSION {
        return Ok(());
    }
    loop {
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db_error("migrating the run history"))?;
        let current: i64 = tx
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(db_error("reading the schema version"))?;
        if current > VERSION {
            return Err(Error::History(format!(
                "the run history has schema version {current}, newer than this weir understands ({VERSION}); \
                 use a newer weir"
            )));
        }
        let Some(migration) = MIGRATIONS.get(current as usize) else { return Ok(()) };
        tx.execute_batch(&format!("{migration}; PRAGMA user_version = {};", current + 1))
            .map_err(db_error("migrating the run history"))?;
        tx.commit().map_err(db_error("migrating the run history"))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_a_new_database_and_refuses_a_newer_one() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0)).unwrap();
        assert_eq!(version, VERSION);
        migrate(&mut conn).unwrap();
        conn.execute_batch(&format!("PRAGMA user_version = {}", VERSION + 1)).unwrap();
        let err = migrate(&mut conn).unwrap_err().to_string();
        assert!(err.contains("newer than this weir understands"), "{err}");
    }

    #[test]
    fn only_records_with_key_material_are_indexed_by_step() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        let by_step: Vec<String> = conn
            .prepare(
                "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'step_runs' AND sql IS NOT NULL",
            )
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(by_step.len(), 1, "{by_step:?}");
        assert!(by_step[0].ends_with("ON step_runs (step) WHERE key_material IS NOT NULL"), "{by_step:?}");
    }
}
