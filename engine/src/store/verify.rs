//! `weir store verify`: re-hashing every object and tree of the store, so
//! bytes changed on disk are found and, with `repair`, removed, together
//! with every cache entry that refers to them, directly or inside a
//! directory tree (so the steps that made them are recomputed).

use std::collections::HashMap;

use serde::Serialize;

use super::{Artifact, CacheEntry, Store, for_each_digest, hash_file};
use crate::{Digest, Error, OutputKind, Result};

/// What a verification found.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Objects and trees whose content was checked.
    pub checked: usize,
    /// Those whose content does not match their digest.
    pub corrupt: Vec<Digest>,
    /// Whether the corrupt entries were removed.
    pub repaired: bool,
    /// Cache entries removed by the repair because an artifact they name (or
    /// a file inside one of their directories) was removed.
    pub dropped_cache_entries: usize,
}

impl Store {
    /// Checks every stored artifact against its digest; with `repair`,
    /// removes the corrupt ones and the cache entries that need them, so
    /// that the steps that made them run again.
    pub fn verify(&self, repair: bool) -> Result<VerifyReport> {
        let mut report = VerifyReport { repaired: repair, ..VerifyReport::default() };
        for kind in [OutputKind::File, OutputKind::Dir] {
            let dir = self.kind_dir(kind);
            let mut stored = Vec::new();
            for_each_digest(dir, |digest, path| stored.push((digest, path)))?;
            for (digest, path) in stored {
                report.checked += 1;
                let intact =
                    dir.open(&path).and_then(|file| hash_file(&file.into_std())).is_ok_and(|found| found == digest);
                if !intact {
                    report.corrupt.push(digest);
                    if repair {
                        dir.remove_file(&path).map_err(Error::io(format!("removing corrupt entry {digest}")))?;
                    }
                }
            }
        }
        if repair && !report.corrupt.is_empty() {
            report.dropped_cache_entries = self.drop_incomplete_entries()?;
        }
        Ok(report)
    }

    /// Removes every cache entry that names an artifact not wholly in the
    /// store (a tree counts only with every file and tree beneath it), and
    /// with them every reuse index, which may hold them.
    fn drop_incomplete_entries(&self) -> Result<usize> {
        let mut entries = Vec::new();
        for_each_digest(&self.inner.cache, |key, path| entries.push((key, path)))?;
        let mut complete_trees = HashMap::new();
        let mut dropped = 0;
        for (key, path) in entries {
            let Ok(bytes) = self.inner.cache.read(&path) else { continue };
            let Ok(entry) = rmp_serde::from_slice::<CacheEntry>(&bytes) else { continue };
            let logs = [entry.stdout, entry.stderr].map(|digest| Artifact { kind: OutputKind::File, digest });
            let whole =
                entry.outputs.values().chain(&logs).all(|artifact| self.holds_all(artifact, &mut complete_trees));
            if !whole {
                self.inner.cache.remove_file(&path).map_err(Error::io(format!("removing cache entry {key}")))?;
                dropped += 1;
            }
        }
        if dropped > 0 {
            self.invalidate_reuse_indexes()?;
        }
        Ok(dropped)
    }

    /// Whether `artifact`, and for a tree everything beneath it, is stored;
    /// `known` remembers the trees already looked at.
    fn holds_all(&self, artifact: &Artifact, known: &mut HashMap<Digest, bool>) -> bool {
        if !self.contains(artifact) {
            return false;
        }
        if artifact.kind == OutputKind::File {
            return true;
        }
        if let Some(&whole) = known.get(&artifact.digest) {
            return whole;
        }
        let whole = self.read_tree(&artifact.digest).is_ok_and(|tree| {
            tree.entries()
                .iter()
                .all(|entry| self.holds_all(&Artifact { kind: entry.kind, digest: entry.digest }, known))
        });
        known.insert(artifact.digest, whole);
        whole
    }
}
