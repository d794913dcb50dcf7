//! Directory artifacts: a canonical encoding of names, kinds and digests.

use serde::{Deserialize, Serialize};

use super::Store;
use crate::{Digest, Error, OutputKind, Result};

/// Tag at the start of every tree encoding; bump it if the format changes.
const FORMAT: &str = "weir-tree-1";

/// One entry of a directory artifact: a file or a subdirectory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeEntry {
    /// The entry's file name.
    pub name: String,
    /// File or directory.
    pub kind: OutputKind,
    /// The file's digest, or the subdirectory's tree digest.
    pub digest: Digest,
}

/// A directory: its entries sorted by name. The directory's digest is the
/// BLAKE3 of this encoding, so it covers every name and every content below.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Tree {
    entries: Vec<TreeEntry>,
}

impl Tree {
    /// A tree of these entries (sorted here, so the encoding is canonical).
    pub(crate) fn new(mut entries: Vec<TreeEntry>) -> Self {
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Self { entries }
    }

    /// The entries, sorted by name.
    pub(crate) fn entries(&self) -> &[TreeEntry] {
        &self.entries
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec(&(FORMAT, &self.entries)).expect("serializing a tree to memory cannot fail")
    }

    pub(super) fn decode(bytes: &[u8]) -> Result<Self, String> {
        let (format, entries): (String, Vec<TreeEntry>) =
            rmp_serde::from_slice(bytes).map_err(|err| err.to_string())?;
        if format != FORMAT {
            return Err(format!("unknown tree format `{format}`"));
        }
        Ok(Self { entries })
    }
}

impl Store {
    /// Stores a tree whose entries are already in the store; returns its digest.
    pub(crate) fn put_tree(&self, tree: &Tree) -> Result<Digest> {
        let bytes = tree.encode();
        let digest = Digest::of(&bytes);
        self.publish_bytes(&self.inner.trees, &digest, &bytes, true)?;
        Ok(digest)
    }

    /// Reads a directory artifact's tree, checked against its digest.
    pub(crate) fn read_tree(&self, digest: &Digest) -> Result<Tree> {
        let bytes = self.read_verified(&self.inner.trees, digest)?;
        Tree::decode(&bytes).map_err(|reason| Error::Corrupt { what: digest.to_string(), reason })
    }
}

impl Store {
    /// The entries of directory artifact `digest`, sorted by name.
    pub fn list_dir(&self, digest: &Digest) -> Result<Vec<TreeEntry>> {
        match self.kind_of(digest) {
            Some(OutputKind::Dir) => Ok(self.read_tree(digest)?.entries().to_vec()),
            Some(OutputKind::File) => Err(Error::WrongKind { digest: *digest, expected: OutputKind::Dir }),
            None => Err(Error::ArtifactNotFound { digest: *digest }),
        }
    }

    /// The artifact at `path` (names separated by `/`) inside directory
    /// artifact `digest`, e.g. `predictions/batch-01.csv`.
    pub fn lookup(&self, digest: &Digest, path: &str) -> Result<crate::Artifact> {
        let mut current = crate::Artifact { kind: OutputKind::Dir, digest: *digest };
        for name in path.split('/').filter(|name| !name.is_empty()) {
            let entries = self.list_dir(&current.digest)?;
            let entry = entries.iter().find(|entry| entry.name == name).ok_or_else(|| Error::Io {
                context: format!("reading {path} in {digest}"),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, format!("no entry `{name}`")),
            })?;
            current = crate::Artifact { kind: entry.kind, digest: entry.digest };
        }
        Ok(current)
    }
}
