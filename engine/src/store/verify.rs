//! `weir store verify`: re-hashing every object and tree of the store, so
//! bytes changed on disk are found and, with `repair`, removed (a cache
//! entry whose artifact is gone is a miss, so the step is recomputed).

use std::path::Path;

use serde::Serialize;

use super::Store;
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
            let context = || format!("listing the store under {}", self.root().display());
            for fan in dir.entries().map_err(|e| Error::io(context())(e))? {
                let fan = fan.map_err(|e| Error::io(context())(e))?.file_name();
                let Ok(sub) = dir.open_dir(&fan) else { continue };
                for entry in sub.entries().map_err(|e| Error::io(context())(e))? {
                    let name = entry.map_err(|e| Error::io(context())(e))?.file_name();
                    let hex = format!("{}{}", fan.to_string_lossy(), name.to_string_lossy());
                    let Ok(digest) = Digest::parse(&hex) else { continue };
                    report.checked += 1;
                    let path = Path::new(&fan).join(&name);
                    let intact = dir.read(&path).map(|bytes| Digest::of(&bytes) == digest).unwrap_or(false);
                    if !intact {
                        report.corrupt.push(digest);
                        if repair {
                            dir.remove_file(&path).map_err(Error::io(format!("removing corrupt entry {digest}")))?;
                        }
                    }
                }
            }
        }
        Ok(report)
    }
}
