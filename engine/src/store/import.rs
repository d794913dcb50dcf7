//! Importing pipeline inputs (host files and directories) into the store.
//!
//! A host file is copied into the store and the copy hashed. Its stamp
//! (size, mtime, ctime, inode, device) is recorded under `inputs/`, so the
//! next run re-reads the file only if one of those changed.

use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Artifact, Durability, IfKnown, Store, Tree, TreeEntry, split};
use crate::file_stamp::FileStamp;
use crate::{Digest, Error, OutputKind, Result};

/// What a host file looked like when it was last hashed, and its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StatRecord {
    stamp: FileStamp,
    digest: Digest,
}

impl Store {
    /// Imports a host file or directory (following symbolic links) into the store.
    pub fn import(&self, path: &Path) -> Result<Artifact> {
        let metadata = fs::metadata(path).map_err(Error::io(format!("reading input {}", path.display())))?;
        if metadata.is_dir() {
            return Ok(Artifact { kind: OutputKind::Dir, digest: self.import_dir(path)? });
        }
        if !metadata.is_file() {
            return Err(Error::Io {
                context: format!("reading input {}", path.display()),
                source: std::io::Error::other("not a regular file or directory"),
            });
        }
        Ok(Artifact { kind: OutputKind::File, digest: self.import_file(path, &metadata)? })
    }

    fn import_dir(&self, path: &Path) -> Result<Digest> {
        let context = || format!("reading input directory {}", path.display());
        let mut entries = Vec::new();
        for entry in fs::read_dir(path).map_err(|e| Error::io(context())(e))? {
            let entry = entry.map_err(|e| Error::io(context())(e))?;
            let child = entry.path();
            let name = entry.file_name().into_string().map_err(|name| Error::Io {
                context: context(),
                source: std::io::Error::other(format!("{name:?} is not a UTF-8 file name")),
            })?;
            let artifact = self.import(&child)?;
            entries.push(TreeEntry { name, kind: artifact.kind, digest: artifact.digest });
        }
        self.put_tree(&Tree::new(entries))
    }

    fn import_file(&self, path: &Path, metadata: &fs::Metadata) -> Result<Digest> {
        let record_name = Digest::of(path.as_os_str().as_encoded_bytes());
        let stamp = FileStamp::of(metadata);
        if let Some(known) = self.stat_lookup(&record_name)
            && known.stamp == stamp
            && self.contains(&Artifact { kind: OutputKind::File, digest: known.digest })
        {
            return Ok(known.digest);
        }
        let digest = self.copy_in(path)?;
        if !stamp.is_racy() {
            self.stat_record(&record_name, &StatRecord { stamp, digest })?;
        }
        Ok(digest)
    }

    /// Copies a host file into `tmp/`, hashes the copy, and renames it into
    /// place. Copying first (in the kernel: `copy_file_range`, a reflink
    /// where the file system can) and hashing the private copy means the
    /// digest always describes the stored bytes, even if the host file
    /// changes meanwhile (a large copy is hashed memory-mapped, on all cores).
    fn copy_in(&self, path: &Path) -> Result<Digest> {
        let context = || format!("importing {}", path.display());
        let temp = self.temp_name("import");
        fs::copy(path, self.path_of("tmp").join(&temp)).map_err(|e| Error::io(context())(e))?;
        self.adopt_file(&self.inner.tmp, Path::new(&temp), IfKnown::Remove, &context)
    }

    fn stat_lookup(&self, name: &Digest) -> Option<StatRecord> {
        let (fan, rest) = split(name);
        let bytes = self.inner.inputs.read(Path::new(&fan).join(rest)).ok()?;
        rmp_serde::from_slice(&bytes).ok()
    }

    fn stat_record(&self, name: &Digest, record: &StatRecord) -> Result<()> {
        let bytes = rmp_serde::to_vec(record).map_err(|err| Error::Io {
            context: "encoding an input stat record".into(),
            source: std::io::Error::other(err),
        })?;
        let temp = self.write_temp(&bytes, Durability::Record)?;
        let (fan, rest) = split(name);
        self.rename_into(&temp, &self.inner.inputs, &fan, &rest)
    }
}
