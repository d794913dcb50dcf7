//! Garbage collection: removing the objects and trees that nothing keeps.
//!
//! What is kept: every artifact a cache entry names (outputs and logs), every
//! digest the caller names (those of the runs it retains), everything inside
//! a kept tree, and the empty object. The caller holds the workspace lock
//! exclusively, so no run is between storing an object and recording it.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Serialize;

use super::locks::{EXPORT_LOCK_PREFIX, KEY_LOCKS};
use super::{Store, for_each_digest, split};
use crate::{Digest, Error, OutputKind, Result};

/// What a garbage collection removed.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct GcReport {
    /// Objects (files and logs) removed.
    pub removed_objects: usize,
    /// Trees (directory listings) removed.
    pub removed_trees: usize,
    /// Bytes freed (of the removed objects' and trees' own files).
    pub freed_bytes: u64,
    /// Objects and trees kept.
    pub kept: usize,
    /// Runs removed from the history (older than the ones retained).
    pub pruned_runs: Vec<String>,
}

impl Store {
    /// Removes every object and tree that no cache entry, no digest of
    /// `retained`, and no tree kept by either reaches. The caller must hold
    /// the workspace lock exclusively.
    pub(crate) fn collect_garbage(&self, retained: &BTreeSet<Digest>) -> Result<GcReport> {
        let mut live = BTreeSet::new();
        // The empty object stays whatever refers to it (see `put_bytes`).
        let mut roots: Vec<Digest> = retained.iter().copied().chain([Digest::of(b"")]).collect();
        for entry in self.cache_entries()? {
            roots.extend(entry.outputs.values().map(|artifact| artifact.digest));
            roots.extend([entry.stdout, entry.stderr]);
        }
        while let Some(digest) = roots.pop() {
            if !live.insert(digest) {
                continue;
            }
            if self.kind_of(&digest) == Some(OutputKind::Dir) {
                let tree = self.read_tree(&digest)?;
                roots.extend(tree.entries().iter().map(|entry| entry.digest));
            }
        }
        let mut report = GcReport::default();
        for kind in [OutputKind::File, OutputKind::Dir] {
            for digest in self.stored(kind)? {
                if live.contains(&digest) {
                    report.kept += 1;
                    continue;
                }
                let (fan, rest) = split(&digest);
                let path = Path::new(&fan).join(rest);
                let size = self.kind_dir(kind).symlink_metadata(&path).map_or(0, |meta| meta.len());
                self.kind_dir(kind).remove_file(&path).map_err(Error::io(format!("removing unreferenced {digest}")))?;
                report.freed_bytes += size;
                match kind {
                    OutputKind::File => report.removed_objects += 1,
                    OutputKind::Dir => report.removed_trees += 1,
                }
            }
        }
        self.remove_export_locks();
        Ok(report)
    }

    /// Every digest stored as an artifact of `kind`.
    fn stored(&self, kind: OutputKind) -> Result<Vec<Digest>> {
        let dir = self.kind_dir(kind);
        let mut digests = Vec::new();
        for_each_digest(dir, |digest, _| digests.push(digest))?;
        Ok(digests)
    }

    /// Every cache entry that can be read.
    fn cache_entries(&self) -> Result<Vec<super::CacheEntry>> {
        let mut keys = Vec::new();
        for_each_digest(&self.inner.cache, |key, _| keys.push(key))?;
        Ok(keys.iter().filter_map(|key| self.cache_get(key)).collect())
    }

    /// Removes the export lock files, one per destination ever exported to;
    /// with the workspace lock held exclusively, nobody holds or waits on
    /// one. The key lock file stays: a process may keep descriptions of it
    /// open between runs (see `locks`), which must go on locking the file
    /// every other process opens.
    fn remove_export_locks(&self) {
        let Ok(entries) = std::fs::read_dir(self.root().join(KEY_LOCKS)) else { return };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(EXPORT_LOCK_PREFIX) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}
