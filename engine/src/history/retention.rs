//! What the history keeps alive in the store, and forgetting old runs.

use std::collections::BTreeSet;

use rusqlite::params;

use super::queries::digests;
use super::{History, db_error};
use crate::{Digest, Result};

/// What the store must keep of a step's details: its attempts' logs.
#[derive(serde::Deserialize)]
struct RetriedLogs {
    #[serde(default)]
    attempts: Vec<RetriedAttempt>,
}

#[derive(serde::Deserialize)]
struct RetriedAttempt {
    logs: Option<crate::Logs>,
}

impl History {
    /// Removes every finished run but the `keep` most recent (of all
    /// tenants), with their steps, metrics and lineage; returns their ids.
    /// Verification runs (`weir verify`) are not among those kept.
    pub(crate) fn prune_runs(&self, keep: usize) -> Result<Vec<String>> {
        self.with(|conn| {
            let tx = conn.transaction().map_err(db_error("pruning runs"))?;
            let ids: Vec<String> = tx
                .prepare(
                    "SELECT id FROM runs WHERE status != 'running' AND id NOT IN
                     (SELECT id FROM runs WHERE kind = 'run' ORDER BY started DESC LIMIT ?1)",
                )
                .and_then(|mut stmt| stmt.query_map(params![keep as i64], |row| row.get(0))?.collect())
                .map_err(db_error("pruning runs"))?;
            for id in &ids {
                for table in ["metrics", "artifacts", "entry_runs", "step_runs", "run_inputs", "run_labels"] {
                    tx.execute(&format!("DELETE FROM {table} WHERE run_id = ?1"), [id])
                        .map_err(db_error("pruning runs"))?;
                }
                tx.execute("DELETE FROM runs WHERE id = ?1", [id]).map_err(db_error("pruning runs"))?;
            }
            tx.commit().map_err(db_error("pruning runs"))?;
            Ok(ids)
        })
    }

    /// Every digest a recorded run names: inputs, outputs and logs.
    pub(crate) fn referenced_digests(&self) -> Result<BTreeSet<Digest>> {
        self.with(|conn| {
            let mut found = BTreeSet::new();
            let mut collect = |sql: &str, read: &dyn Fn(&rusqlite::Row<'_>) -> rusqlite::Result<Vec<String>>| {
                let mut stmt = conn.prepare(sql)?;
                let mut rows = stmt.query([])?;
                while let Some(row) = rows.next()? {
                    for text in read(row)? {
                        if let Ok(digest) = text.parse() {
                            found.insert(digest);
                        }
                    }
                }
                Ok::<_, rusqlite::Error>(())
            };
            let first = |row: &rusqlite::Row<'_>| Ok(vec![row.get::<_, String>(0)?]);
            collect("SELECT digest FROM run_inputs", &first).map_err(db_error("reading references"))?;
            collect("SELECT digest FROM artifacts", &first).map_err(db_error("reading references"))?;
            collect("SELECT stdout, stderr FROM entry_runs", &|row| {
                Ok([row.get::<_, Option<String>>(0)?, row.get(1)?].into_iter().flatten().collect())
            })
            .map_err(db_error("reading references"))?;
            collect("SELECT outputs, stdout, stderr, details FROM step_runs", &|row| {
                let mut texts: Vec<String> =
                    digests(&row.get::<_, String>(0)?).values().map(|digest| digest.to_string()).collect();
                texts.extend(row.get::<_, Option<String>>(1)?);
                texts.extend(row.get::<_, Option<String>>(2)?);
                // The logs of attempts that were retried.
                let details: Option<String> = row.get(3)?;
                let attempts = details.and_then(|text| serde_json::from_str::<RetriedLogs>(&text).ok());
                for logs in attempts.into_iter().flat_map(|retried| retried.attempts).filter_map(|a| a.logs) {
                    texts.extend([logs.stdout.to_string(), logs.stderr.to_string()]);
                }
                Ok(texts)
            })
            .map_err(db_error("reading references"))?;
            Ok(found)
        })
    }
}
