//! What a tenant owns in the history: the artifacts its runs imported or
//! produced, which bounds what it may read and what counts against its quota.

use rusqlite::OptionalExtension;

use super::{History, db_error};
use crate::{Digest, Result};

impl History {
    /// Whether a run of `tenant` imported, produced or logged `digest`.
    pub fn tenant_knows(&self, tenant: &str, digest: &Digest) -> Result<bool> {
        let text = digest.to_string();
        self.with(|conn| {
            conn.query_row(
                "SELECT 1 FROM runs r WHERE r.tenant = ?2 AND (
                    EXISTS (SELECT 1 FROM artifacts a WHERE a.run_id = r.id AND a.digest = ?1)
                    OR EXISTS (SELECT 1 FROM run_inputs i WHERE i.run_id = r.id AND i.digest = ?1)
                    OR EXISTS (SELECT 1 FROM step_runs s WHERE s.run_id = r.id AND (s.stdout = ?1 OR s.stderr = ?1))
                    OR EXISTS (SELECT 1 FROM entry_runs e WHERE e.run_id = r.id AND (e.stdout = ?1 OR e.stderr = ?1))
                 ) LIMIT 1",
                [&text, tenant],
                |_| Ok(()),
            )
            .optional()
            .map(|found| found.is_some())
            .map_err(db_error("checking an artifact's owner"))
        })
    }

    /// Every distinct artifact `tenant`'s runs imported, produced or logged:
    /// what counts against its store quota.
    pub(crate) fn tenant_artifacts(&self, tenant: &str) -> Result<Vec<Digest>> {
        let listing = || db_error("listing a tenant's artifacts");
        self.with(|conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT a.digest FROM artifacts a JOIN runs r ON r.id = a.run_id WHERE r.tenant = ?1
                     UNION SELECT i.digest FROM run_inputs i JOIN runs r ON r.id = i.run_id WHERE r.tenant = ?1
                     UNION SELECT s.stdout FROM step_runs s JOIN runs r ON r.id = s.run_id
                           WHERE r.tenant = ?1 AND s.stdout IS NOT NULL
                     UNION SELECT s.stderr FROM step_runs s JOIN runs r ON r.id = s.run_id
                           WHERE r.tenant = ?1 AND s.stderr IS NOT NULL
                     UNION SELECT e.stdout FROM entry_runs e JOIN runs r ON r.id = e.run_id
                           WHERE r.tenant = ?1 AND e.stdout IS NOT NULL
                     UNION SELECT e.stderr FROM entry_runs e JOIN runs r ON r.id = e.run_id
                           WHERE r.tenant = ?1 AND e.stderr IS NOT NULL",
                )
                .map_err(listing())?;
            let rows = stmt
                .query_map([tenant], |row| row.get::<_, String>(0))
                .map_err(listing())?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(listing())?;
            Ok(rows.iter().filter_map(|text| text.parse().ok()).collect())
        })
    }
}
