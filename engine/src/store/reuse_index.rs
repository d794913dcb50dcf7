//! Reuse indexes: the cache entries a pipeline's last run reused, kept in
//! one file per pipeline (`cache/reuse/<id>`), so that a fully reused run
//! reads one file where it read one per step (an `openat`, a `read` and a
//! `close` each). What remains per reused step is the `stat` of its outputs.
//!
//! An index is a copy of entries, trusted only while none of them can have
//! changed: every change to an existing entry (a re-execution whose result
//! replaces it, a removal for a quota or by `store verify --repair`) writes
//! a new token to `cache/reuse/token` *after* changing the entry, and an
//! index is used only when it carries the token that was in force before
//! its entries were read. A new entry changes no token: no index holds its
//! key. A run that reads an index sees the entries as they were when it
//! started; a replacement made while it runs is seen by the next run.
//!
//! An index is a shortcut, never a source of truth: the artifacts of an
//! entry taken from it are checked as those of an entry read from its own
//! file, and an index that is missing, stale or undecodable costs the reads
//! it would have saved. Removing `cache/` removes the indexes with it.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{CacheEntry, Durability, Store, read_small};
use crate::{Digest, Result};

/// The directory of the indexes and their token, under `cache/` (not a
/// fan-out directory: its name is not two hex digits).
const INDEXES: &str = "reuse";
/// The token's file in [`INDEXES`].
const TOKEN: &str = "token";

/// The token found when a run began.
#[derive(Clone, Copy, PartialEq)]
enum Token {
    /// No token was ever written: no entry was replaced or removed since
    /// indexes were first kept (or `cache/` was emptied).
    Absent,
    /// A file that is not a token (torn by a crash, say): every index is
    /// stale until a new token is written.
    Unreadable,
    /// The token in force.
    Is(Digest),
}

/// The layout of an index file: one of another layout is not read.
const LAYOUT: u32 = 1;

/// An index as stored.
#[derive(Serialize, Deserialize)]
struct IndexFile {
    /// [`LAYOUT`], as the fields are stored by position.
    layout: u32,
    /// The token in force when its entries were read.
    token: Digest,
    entries: Vec<(Digest, CacheEntry)>,
}

/// One run's use of its pipeline's index: the entries it may take from
/// it, and what it reused (the next index).
pub(crate) struct ReuseIndex {
    /// Which index: see [`ReuseIndex::id_of`].
    id: Digest,
    token: Token,
    /// The entries of the index, if it was valid.
    entries: HashMap<Digest, CacheEntry>,
    /// The keys of the entries the run reused, each with its entry unless
    /// it is the index's unchanged (copied only if the index is written).
    reused: HashMap<Digest, Option<CacheEntry>>,
    /// Whether `reused` holds an entry that was not in the index as it is.
    changed: bool,
}

impl ReuseIndex {
    /// The id of the index of `tenant`'s pipeline `name`, loaded from the
    /// manifest at `manifest` (if it was).
    pub(crate) fn id_of(tenant: &str, name: &str, manifest: Option<&Path>) -> Digest {
        let manifest = manifest.map(|path| path.to_string_lossy()).unwrap_or_default();
        Digest::of(format!("weir reuse index\0{tenant}\0{name}\0{manifest}").as_bytes())
    }

    /// The entry the index holds under `key`, if it holds one.
    pub(crate) fn get(&self, key: &Digest) -> Option<CacheEntry> {
        self.entries.get(key).cloned()
    }

    /// Notes that the run reused `entry` under `key`: `as_indexed` when it
    /// is the index's entry unchanged.
    pub(crate) fn reused(&mut self, key: Digest, entry: &CacheEntry, as_indexed: bool) {
        self.changed |= !as_indexed;
        self.reused.insert(key, (!as_indexed).then(|| entry.clone()));
    }

    /// Notes that the entry under `key` was not reused after all (it was
    /// too old for its step).
    pub(crate) fn not_reused(&mut self, key: &Digest) {
        self.reused.remove(key);
    }

    /// Whether the entries the run reused differ from the index's: then it
    /// is written again. (Without `changed`, each reused entry is one of the
    /// index's, so the same number means the same entries; a step executed
    /// or not reached leaves its entry out.)
    fn is_outdated(&self) -> bool {
        self.changed || self.reused.len() != self.entries.len()
    }
}

impl Store {
    /// The index `id`, with its entries if its token is the one in force.
    pub(crate) fn reuse_index(&self, id: Digest) -> ReuseIndex {
        let token = self.reuse_token();
        let entries = match token {
            Token::Is(token) => self.read_index(&id, token).unwrap_or_default(),
            Token::Absent | Token::Unreadable => HashMap::new(),
        };
        let reused = HashMap::with_capacity(entries.len());
        ReuseIndex { id, token, entries, reused, changed: false }
    }

    /// Writes `index`'s next version (the entries its run reused) if it
    /// differs from the one read, under the token in force when the run
    /// began, so a change since leaves it stale. The index of a run that
    /// reused nothing of it is removed.
    pub(crate) fn save_reuse_index(&self, index: &ReuseIndex) -> Result<()> {
        if !index.is_outdated() {
            return Ok(());
        }
        let path = Path::new(INDEXES).join(index.id.hex());
        if index.reused.is_empty() {
            return match self.inner.cache.remove_file(&path) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                    Err(crate::Error::io(format!("removing the reuse index {}", path.display()))(err))
                }
                _ => Ok(()),
            };
        }
        let token = match index.token {
            Token::Is(token) => token,
            // No change since the first index can have been made: a token
            // written now, unless another process wrote one first, holds.
            Token::Absent => match self.create_token()? {
                Some(token) => token,
                None => return Ok(()),
            },
            // Replaced, so the next run can keep an index.
            Token::Unreadable => return self.invalidate_reuse_indexes(),
        };
        let mut entries: Vec<(Digest, CacheEntry)> = index
            .reused
            .iter()
            .filter_map(|(key, entry)| Some((*key, entry.as_ref().or_else(|| index.entries.get(key))?.clone())))
            .collect();
        // In key order, so that the same entries make the same file.
        entries.sort_unstable_by_key(|(key, _)| *key);
        let file = IndexFile { layout: LAYOUT, token, entries };
        // Fields by position, not by name: every run reads the index whole.
        let bytes = rmp_serde::to_vec(&file).map_err(|err| crate::Error::Io {
            context: "encoding a reuse index".into(),
            source: std::io::Error::other(err),
        })?;
        let temp = self.write_temp(&bytes, Durability::Record, false)?;
        self.rename_into(&temp, &self.inner.cache, INDEXES, &index.id.hex())
    }

    /// Makes every index stale. Called after an entry was replaced or
    /// removed, never before (see the module's notes).
    pub(crate) fn invalidate_reuse_indexes(&self) -> Result<()> {
        let temp = self.write_temp(self.new_token().hex().as_bytes(), Durability::Record, false)?;
        self.rename_into(&temp, &self.inner.cache, INDEXES, TOKEN)
    }

    /// Writes the first token, unless one exists: `None` then.
    fn create_token(&self) -> Result<Option<Digest>> {
        let token = self.new_token();
        let temp = self.write_temp(token.hex().as_bytes(), Durability::Record, false)?;
        if self.rename_new_from(&self.inner.tmp, Path::new(&temp), &self.inner.cache, INDEXES, TOKEN)? {
            return Ok(Some(token));
        }
        let _ = self.inner.tmp.remove_file(&temp);
        Ok(None)
    }

    /// A token no process wrote before: the digest of a temporary name,
    /// which is unique to this process and moment.
    fn new_token(&self) -> Digest {
        Digest::of(self.temp_name("token").as_bytes())
    }

    fn reuse_token(&self) -> Token {
        match read_small(&self.inner.cache, &Path::new(INDEXES).join(TOKEN)) {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Token::Absent,
            Err(_) => Token::Unreadable,
            Ok(bytes) => std::str::from_utf8(&bytes)
                .ok()
                .and_then(|text| Digest::parse(text).ok())
                .map_or(Token::Unreadable, Token::Is),
        }
    }

    /// The entries of index `id`, if it exists, decodes, and was written
    /// under `token`.
    fn read_index(&self, id: &Digest, token: Digest) -> Option<HashMap<Digest, CacheEntry>> {
        let bytes = read_small(&self.inner.cache, &Path::new(INDEXES).join(id.hex())).ok()?;
        let file: IndexFile = rmp_serde::from_slice(&bytes).ok()?;
        (file.layout == LAYOUT && file.token == token).then(|| file.entries.into_iter().collect())
    }
}
