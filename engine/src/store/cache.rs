//! Cache entries: a step's cache key mapped to the outputs it produced.

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Artifact, Durability, ReuseIndex, Store, split};
use crate::file_stamp::FileStamp;
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
    /// The stamps (size, times, inode, device) of this entry's artifact
    /// files when they were last hashed and found intact: a file whose stamp
    /// is unchanged is reused without being read again. They describe this
    /// store's files only (never shared); absent in entries of older
    /// versions and before a first reuse.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub checked: BTreeMap<Digest, FileStamp>,
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

/// What the reuse checks of one run carry from lookup to lookup.
pub(crate) struct ReuseChecks {
    /// Whether a lookup may record stamps in the entries it checks, and the
    /// run write its pipeline's reuse index (not a read-only run, which
    /// writes nothing).
    may_write: bool,
    /// Artifacts found intact earlier in the run: not looked at again. (A
    /// run holds the workspace's lock, which `gc` and `store verify
    /// --repair` wait for, so what it found stays until it ends.)
    found: HashSet<Digest>,
    /// The entries the pipeline's last run reused, and what this one reuses.
    index: ReuseIndex,
}

impl ReuseChecks {
    /// The checks of a run that may (or may not) write to the store, with
    /// its pipeline's reuse index.
    pub(crate) fn new(may_write: bool, index: ReuseIndex) -> Self {
        Self { may_write, found: HashSet::new(), index }
    }

    /// Notes that the entry under `key`, found intact, was not reused.
    pub(crate) fn not_reused(&mut self, key: &Digest) {
        self.index.not_reused(key);
    }

    /// The reuse index to write when the run ends: none for a read-only run.
    pub(crate) fn next_index(&self) -> Option<&ReuseIndex> {
        self.may_write.then_some(&self.index)
    }
}

/// What [`Store::check_on_reuse`] found of an artifact.
enum OnReuse {
    /// Present, and (if small) its bytes match its digest; with the stamp
    /// to record when they were hashed just now and the file is not too new
    /// for its stamp to be trusted.
    Intact(Option<FileStamp>),
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
    pub(crate) fn cache_read(&self, key: &Digest) -> Option<CacheEntry> {
        let (fan, rest) = split(key);
        let bytes = super::read_small(&self.inner.cache, &Path::new(&fan).join(rest)).ok()?;
        rmp_serde::from_slice(&bytes).ok()
    }

    /// Like [`cache_get`](Self::cache_get), for an entry about to be reused:
    /// its small artifacts (files and tree records up to
    /// [`CHECKED_ON_REUSE`]) are re-hashed on their first reuse in this
    /// process, unless their file's stamp is the one recorded in the entry
    /// when they were last hashed; an artifact `checks` found earlier in the
    /// run is not looked at again. A corrupt one is removed, so the step
    /// runs again and stores good bytes; `Err` lists what was removed. Where
    /// the run may write, the stamps of artifacts hashed now are recorded in
    /// the entry, so the next process need not read them.
    pub(crate) fn cache_get_intact(
        &self,
        key: &Digest,
        checks: &mut ReuseChecks,
    ) -> Result<Option<CacheEntry>, Vec<Digest>> {
        let indexed = checks.index.get(key);
        let as_indexed = indexed.is_some();
        let Some(mut entry) = indexed.or_else(|| self.cache_read(key)) else { return Ok(None) };
        let mut corrupt = Vec::new();
        let mut complete = true;
        let mut stamped = Vec::new();
        for artifact in entry.outputs.values().chain(&entry.logs()) {
            if checks.found.contains(&artifact.digest) {
                continue;
            }
            match self.check_on_reuse(artifact, entry.checked.get(&artifact.digest)) {
                OnReuse::Intact(stamp) => {
                    checks.found.insert(artifact.digest);
                    stamped.extend(stamp.map(|stamp| (artifact.digest, stamp)));
                }
                OnReuse::Missing => complete = false,
                OnReuse::Corrupt => corrupt.push(artifact.digest),
            }
        }
        match (complete, corrupt.is_empty()) {
            (false, _) => Ok(None),
            (true, true) => {
                let restamped = checks.may_write && !stamped.is_empty();
                if restamped {
                    entry.checked.extend(stamped);
                    // Only a saving for later runs: one that could not be
                    // recorded leaves the entry as it was.
                    let _ = self.cache_renew(key, &entry);
                }
                checks.index.reused(*key, &entry, as_indexed && !restamped);
                Ok(Some(entry))
            }
            (true, false) => Err(corrupt),
        }
    }

    /// Whether `artifact` is still in the store with the bytes its digest
    /// names, checked once per process for small artifacts (a large one is
    /// trusted here and checked when read); a corrupt one is removed from
    /// the store. One `stat` for an artifact already checked, in this
    /// process or (`known`, its stamp then) by an earlier one; one `openat`
    /// for one to hash.
    fn check_on_reuse(&self, artifact: &Artifact, known: Option<&FileStamp>) -> OnReuse {
        let (fan, rest) = split(&artifact.digest);
        let path = Path::new(&fan).join(rest);
        let dir = self.kind_dir(artifact.kind);
        if self.inner.verified.contains(&artifact.digest) {
            return if super::has_entry(dir, &path) { OnReuse::Intact(None) } else { OnReuse::Missing };
        }
        if let Some(known) = known {
            match rustix::fs::statat(dir, &path, rustix::fs::AtFlags::SYMLINK_NOFOLLOW) {
                Ok(stat) if FileStamp::of_stat(&stat) == *known => {
                    self.inner.verified.insert(artifact.digest);
                    return OnReuse::Intact(None);
                }
                Ok(_) => {} // Changed since: hashed below.
                Err(_) => return OnReuse::Missing,
            }
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
        let Ok(metadata) = file.metadata() else { return OnReuse::Missing };
        let len = metadata.len();
        if len > CHECKED_ON_REUSE {
            return OnReuse::Intact(None);
        }
        if super::hash_file_of_len(&file, len).is_ok_and(|found| found == artifact.digest) {
            self.inner.verified.insert(artifact.digest);
            let stamp = FileStamp::of(&metadata);
            return OnReuse::Intact((!stamp.is_racy()).then_some(stamp));
        }
        remove_corrupt(dir, &path)
    }

    /// Forgets the entry under `key`, if there is one (and with it every
    /// reuse index, which may hold it).
    pub(crate) fn cache_remove(&self, key: &Digest) -> Result<()> {
        let (fan, rest) = split(key);
        match self.inner.cache.remove_file(Path::new(&fan).join(rest)) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => {
                Err(Error::Io { context: format!("removing the cache entry {key}"), source: err })
            }
            Err(_) => Ok(()),
            Ok(()) => self.invalidate_reuse_indexes(),
        }
    }

    /// Records `entry` under `key`. A new entry is written in place, one
    /// file creation: a reader that meets it half-written finds it cannot
    /// be decoded and counts it as absent, as it counts one torn by a crash
    /// (and a key's executions write it under the key's lock, which such a
    /// reader then waits for). An earlier entry is replaced atomically, which
    /// makes every reuse index stale, as one may hold the entry it replaced.
    pub(crate) fn cache_put(&self, key: &Digest, entry: &CacheEntry) -> Result<()> {
        let bytes = encode(entry)?;
        let (fan, rest) = split(key);
        if self.create_record(&self.inner.cache, &fan, &rest, &bytes)? {
            return Ok(());
        }
        let temp = self.write_temp(&bytes, Durability::Record, false)?;
        self.rename_into(&temp, &self.inner.cache, &fan, &rest)?;
        self.invalidate_reuse_indexes()
    }

    /// Replaces the entry under `key` by `entry`, the same result (outputs,
    /// logs and metrics) renewed or with the stamps of more of its files:
    /// no reuse index is made stale, since a copy that lacks the stamps
    /// only costs a file's hashing, and one of an earlier age is renewed
    /// by the step's next execution.
    pub(crate) fn cache_renew(&self, key: &Digest, entry: &CacheEntry) -> Result<()> {
        let temp = self.write_temp(&encode(entry)?, Durability::Record, false)?;
        let (fan, rest) = split(key);
        self.rename_into(&temp, &self.inner.cache, &fan, &rest)
    }
}

/// `entry` as it is recorded.
fn encode(entry: &CacheEntry) -> Result<Vec<u8>> {
    rmp_serde::to_vec_named(entry)
        .map_err(|err| Error::Io { context: "encoding a cache entry".into(), source: io::Error::other(err) })
}

/// Removes the corrupt artifact at `path`, so the step's next execution
/// stores good bytes.
fn remove_corrupt(dir: &cap_std::fs::Dir, path: &Path) -> OnReuse {
    let _ = dir.remove_file(path);
    OnReuse::Corrupt
}
