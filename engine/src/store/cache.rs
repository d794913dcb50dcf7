//! Cache entries: a step's cache key mapped to the outputs it produced.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Artifact, Durability, Store, split};
use crate::{Digest, Error, Result};

/// The largest artifact re-hashed when a cached result is reused.
pub(crate) const CHECKED_ON_REUSE: u64 = 1 << 20;

/// What a successful execution of a step produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct CacheEntry {
    /// Declared outputs by name.
    pub outputs: BTreeMap<String, Artifact>,
    /// The guest's stdout.
    pub stdout: Digest,
    /// The guest's stderr.
    pub stderr: Digest,
    /// The last value of each metric the step reported.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// The run that executed the step.
    pub run_id: String,
    /// When the result was recorded or last confirmed by an identical
    /// execution (seconds since the Unix epoch; absent in entries of older
    /// versions), for `reuse = "7d"`.
    #[serde(default)]
    pub created: Option<f64>,
}

impl CacheEntry {
    /// The log artifacts: stdout and stderr, or one of them when both hold
    /// the same bytes (most often, both empty).
    fn logs(&self) -> Vec<Artifact> {
        let mut logs = vec![Artifact { kind: crate::OutputKind::File, digest: self.stdout }];
        if self.stderr != self.stdout {
            logs.push(Artifact { kind: crate::OutputKind::File, digest: self.stderr });
        }
        logs
    }
}

impl Store {
    /// The entry recorded under `key`, if it exists and all its artifacts are
    /// still in the store. An entry that cannot be decoded counts as absent.
    pub(crate) fn cache_get(&self, key: &Digest) -> Option<CacheEntry> {
        let (fan, rest) = split(key);
        let bytes = super::read_small(&self.inner.cache, &Path::new(&fan).join(rest)).ok()?;
        let entry: CacheEntry = rmp_serde::from_slice(&bytes).ok()?;
        let complete = entry.outputs.values().chain(&entry.logs()).all(|artifact| self.contains(artifact));
        complete.then_some(entry)
    }

    /// Like [`cache_get`](Self::cache_get), for an entry about to be reused:
    /// its small artifacts (files and tree records up to
    /// [`CHECKED_ON_REUSE`]) are re-hashed on their first reuse in this
    /// process. A corrupt one is removed, so the step runs again and stores
    /// good bytes; `Err` lists what was removed.
    pub(crate) fn cache_get_intact(&self, key: &Digest) -> Result<Option<CacheEntry>, Vec<Digest>> {
        let Some(entry) = self.cache_get(key) else { return Ok(None) };
        let corrupt: Vec<Digest> = entry
            .outputs
            .values()
            .chain(&entry.logs())
            .filter(|artifact| !self.intact_on_reuse(artifact))
            .map(|artifact| artifact.digest)
            .collect();
        if corrupt.is_empty() { Ok(Some(entry)) } else { Err(corrupt) }
    }

    /// Whether `artifact` still holds the bytes its digest names, checked
    /// once per process for small artifacts (a large one is trusted here and
    /// checked when read); a corrupt one is removed from the store.
    fn intact_on_reuse(&self, artifact: &Artifact) -> bool {
        if self.inner.verified.contains(&artifact.digest) {
            return true;
        }
        let (fan, rest) = split(&artifact.digest);
        let path = Path::new(&fan).join(rest);
        let dir = self.kind_dir(artifact.kind);
        let Ok(file) = dir.open(&path) else { return false };
        let file = file.into_std();
        if file.metadata().is_ok_and(|meta| meta.len() > CHECKED_ON_REUSE) {
            return true;
        }
        if super::hash_file(&file).is_ok_and(|found| found == artifact.digest) {
            self.inner.verified.insert(artifact.digest);
            return true;
        }
        // Removing it makes the step's next execution store good bytes.
        let _ = dir.remove_file(&path);
        false
    }

    /// Forgets the entry under `key`, if there is one.
    pub(crate) fn cache_remove(&self, key: &Digest) -> Result<()> {
        let (fan, rest) = split(key);
        match self.inner.cache.remove_file(Path::new(&fan).join(rest)) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => {
                Err(Error::Io { context: format!("removing the cache entry {key}"), source: err })
            }
            _ => Ok(()),
        }
    }

    /// Records `entry` under `key`, replacing any earlier entry atomically.
    pub(crate) fn cache_put(&self, key: &Digest, entry: &CacheEntry) -> Result<()> {
        let bytes = rmp_serde::to_vec_named(entry)
            .map_err(|err| Error::Io { context: "encoding a cache entry".into(), source: io::Error::other(err) })?;
        let temp = self.write_temp(&bytes, Durability::Record, false)?;
        let (fan, rest) = split(key);
        self.rename_into(&temp, &self.inner.cache, &fan, &rest)
    }
}
