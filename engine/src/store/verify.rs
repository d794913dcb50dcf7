//! `weir store verify`: re-hashing every object and tree of the store, so
//! bytes changed on disk are found and, with `repair`, removed (a cache
//! entry whose artifact is gone is a miss, so the step is recomputed).

use serde::Serialize;

use super::{Store, for_each_digest};
use crate::{Digest, Error, OutputKind, Result};

/// What a verification found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    /// Objects and trees whose content was checked.
    pub checked: usize,
    /// Those whose content does not match their digest.
    pub corrupt: Vec<Digest>,
    /// Whether the corrupt entries were removed.
    pub repaired: bool,
}

impl Store {
    /// Checks every stored artifact against its digest; with `repair`,
    /// removes the corrupt ones so that the steps that made them run again.
    pub fn verify(&self, repair: bool) -> Result<VerifyReport> {
        let mut report = VerifyReport { repaired: repair, ..VerifyReport::default() };
        for kind in [OutputKind::File, OutputKind::Dir] {
            let dir = self.kind_dir(kind);
            let mut stored = Vec::new();
            for_each_digest(dir, |digest, path| stored.push((digest, path)))?;
            for (digest, path) in stored {
                report.checked += 1;
                let intact = dir.read(&path).map(|bytes| Digest::of(&bytes) == digest).unwrap_or(false);
                if !intact {
                    report.corrupt.push(digest);
                    if repair {
                        dir.remove_file(&path).map_err(Error::io(format!("removing corrupt entry {digest}")))?;
                    }
                }
            }
        }
        Ok(report)
    }
}
