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
];

/// The schema version this build of weir writes.
pub(crate) const VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database to [`VERSION`]; refuses a database from a newer weir.
pub(crate) fn migrate(conn: &Connection) -> Result<()> {
    let current: i64 =
        conn.query_row("PRAGMA user_version", [], |row| row.get(0)).map_err(db_error("reading the schema version"))?;
    if current > VERSION {
        return Err(Error::History(format!(
            "the run history has schema version {current}, newer than this weir understands ({VERSION}); \
             use a newer weir"
        )));
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = index as i64 + 1;
        conn.execute_batch(&format!("BEGIN; {migration}; PRAGMA user_version = {version}; COMMIT;"))
            .map_err(db_error("migrating the run history"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_a_new_database_and_refuses_a_newer_one() {
        let conn = Connection::open_in_memory().unwrap();
        migrate(&conn).unwrap();
        let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0)).unwrap();
        assert_eq!(version, VERSION);
        migrate(&conn).unwrap();
        conn.execute_batch(&format!("PRAGMA user_version = {}", VERSION + 1)).unwrap();
        let err = migrate(&conn).unwrap_err().to_string();
        assert!(err.contains("newer than this weir understands"), "{err}");
    }
}
