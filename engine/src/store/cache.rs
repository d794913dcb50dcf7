//! Cache entries: a step's cache key mapped to the outputs it produced.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Artifact, Durability, Store, split};
use crate::{Digest, Error, Result};

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
}

impl Store {
    /// The entry recorded under `key`, if it exists and all its artifacts are
    /// still in the store. An entry that cannot be decoded counts as absent.
    pub(crate) fn cache_get(&self, key: &Digest) -> Option<CacheEntry> {
        let (fan, rest) = split(key);
        let bytes = self.inner.cache.read(Path::new(&fan).join(rest)).ok()?;
        let entry: CacheEntry = rmp_serde::from_slice(&bytes).ok()?;
        let logs = [entry.stdout, entry.stderr].map(|digest| Artifact { kind: crate::OutputKind::File, digest });
        let complete = entry.outputs.values().chain(&logs).all(|artifact| self.contains(artifact));
        complete.then_some(entry)
    }

    /// Records `entry` under `key`, replacing any earlier entry atomically.
    pub(crate) fn cache_put(&self, key: &Digest, entry: &CacheEntry) -> Result<()> {
        let bytes = rmp_serde::to_vec_named(entry)
            .map_err(|err| Error::Io { context: "encoding a cache entry".into(), source: io::Error::other(err) })?;
        let temp = self.write_temp(&bytes, Durability::Record)?;
        let (fan, rest) = split(key);
        self.rename_into(&temp, &self.inner.cache, &fan, &rest)
    }
}
