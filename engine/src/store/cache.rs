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

/// What [`Store::check_on_reuse`] found of an artifact.
enum OnReuse {
    /// Present, and (if small) its bytes match its digest.
    Intact,
    /// Not in the store: the entry is a miss.
    Missing,
    /// Its bytes no longer match its digest; it was removed.
    Corrupt,
}

impl Store {
    /// The entry recorded under `key`, if it exists and all its artifacts are
    /// still in the store. An entry that cannot be decoded counts as absent.
    pub(crate) fn cache_get(&self, key: &Digest) -> Option<CacheEntry> {
        let entry = self.cache_read(key)?;
        let complete = entry.outputs.values().chain(&entry.logs()).all(|artifact| self.contains(artifact));
        complete.then_some(entry)
    }

    /// The entry recorded under `key`, whatever became of its artifacts.
    fn cache_read(&self, key: &Digest) -> Option<CacheEntry> {
        let (fan, rest) = split(key);
        let bytes = super::read_small(&self.inner.cache, &Path::new(&fan).join(rest)).ok()?;
        rmp_serde::from_slice(&bytes).ok()
    }

    /// Like [`cache_get`](Self::cache_get), for an entry about to be reused:
    /// its small artifacts (files and tree records up to
    /// [`CHECKED_ON_REUSE`]) are re-hashed on their first reuse in this
    /// process. A corrupt one is removed, so the step runs again and stores
    /// good bytes; `Err` lists what was removed.
    pub(crate) fn cache_get_intact(&self, key: &Digest) -> Result<Option<CacheEntry>, Vec<Digest>> {
        let Some(entry) = self.cache_read(key) else { return Ok(None) };
        let mut corrupt = Vec::new();
        let mut complete = true;
        for artifact in entry.outputs.values().chain(&entry.logs()) {
            match self.check_on_reuse(artifact) {
                OnReuse::Intact => {}
                OnReuse::Missing => complete = false,
                OnReuse::Corrupt => corrupt.push(artifact.digest),
            }
        }
        match (complete, corrupt.is_empty()) {
            (false, _) => Ok(None),
            (true, true) => Ok(Some(entry)),
            (true, false) => Err(corrupt),
        }
    }

    /// Whether `artifact` is still in the store with the bytes its digest
    /// names, checked once per process for small artifacts (a large one is
    /// trusted here and checked when read); a corrupt one is removed from
    /// the store. One `openat` for an artifact not yet checked, one `statx`
    /// for one already checked.
    fn check_on_reuse(&self, artifact: &Artifact) -> OnReuse {
        let (fan, rest) = split(&artifact.digest);
        let path = Path::new(&fan).join(rest);
        let dir = self.kind_dir(artifact.kind);
        if self.inner.verified.contains(&artifact.digest) {
            return if super::has_entry(dir, &path) { OnReuse::Intact } else { OnReuse::Missing };
        }
        let file = match super::open_stored(dir, &path) {
            Ok(file) => file,
            // A symbolic link in its place.
            Err(err) if err.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
                return remove_corrupt(dir, &path);
            }
            // Absent, or not readable now (too many open files, say): a
            // miss, and what is there is left alone.
            Err(_) => return OnReuse::Missing,
        };
        let Ok(len) = file.metadata().map(|meta| meta.len()) else { return OnReuse::Missing };
        if len > CHECKED_ON_REUSE {
            return OnReuse::Intact;
        }
        if super::hash_file_of_len(&file, len).is_ok_and(|found| found == artifact.digest) {
            self.inner.verified.insert(artifact.digest);
            return OnReuse::Intact;
        }
        remove_corrupt(dir, &path)
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

/// Removes the corrupt artifact at `path`, so the step's next execution
/// stores good bytes.
fn remove_corrupt(dir: &cap_std::fs::Dir, path: &Path) -> OnReuse {
    let _ = dir.remove_file(path);
    OnReuse::Corrupt
}
