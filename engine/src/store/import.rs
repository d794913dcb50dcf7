//! Importing pipeline inputs (host files and directories) into the store.
//!
//! A host file is copied into the store and the copy hashed. Its stamp
//! (size, mtime, ctime, inode, device) is recorded under `inputs/`, so the
//! next run re-reads the file only if one of those changed. Module files
//! are not copied, but their digests are recorded the same way.

use std::fs;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Artifact, Durability, IfKnown, Store, Tree, TreeEntry, split};
use crate::file_stamp::FileStamp;
use crate::host_files::{HostFiles, HostKind};
use crate::{Digest, Error, OutputKind, Result};

/// What a host file looked like when it was last hashed, and its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StatRecord {
    stamp: FileStamp,
    digest: Digest,
}

/// Why an input could not be imported.
#[derive(Debug)]
pub(crate) enum ImportError {
    /// The input may not be imported as it is (special file, outside the
    /// pipeline's directory, larger than the bytes it may take).
    Refused(String),
    /// Nothing is at this path (the input, or an entry of an input directory).
    Missing(std::path::PathBuf),
    /// Reading it or writing the store failed.
    Store(Error),
}

impl From<Error> for ImportError {
    fn from(err: Error) -> Self {
        ImportError::Store(err)
    }
}

impl Store {
    /// Imports a host file or directory (following symbolic links) into the store.
    pub fn import(&self, path: &Path) -> Result<Artifact> {
        self.import_from(&HostFiles::Ambient, path, Some(u64::MAX)).map_err(|err| match err {
            ImportError::Store(err) => err,
            ImportError::Refused(why) => {
                Error::Io { context: format!("reading input {}", path.display()), source: std::io::Error::other(why) }
            }
            ImportError::Missing(missing) => Error::Io {
                context: format!("reading input {}", missing.display()),
                source: std::io::ErrorKind::NotFound.into(),
            },
        })
    }

    /// Imports the file or directory `path`, reached through `files`, taking
    /// at most `max_bytes` of new content into the store; with `None`, only
    /// works out its digest and writes nothing (a read-only run).
    pub(crate) fn import_from(
        &self,
        files: &HostFiles,
        path: &Path,
        max_bytes: Option<u64>,
    ) -> Result<Artifact, ImportError> {
        let mut left = max_bytes;
        self.import_entry(files, path, &mut left)
    }

    fn import_entry(&self, files: &HostFiles, path: &Path, left: &mut Option<u64>) -> Result<Artifact, ImportError> {
        match files.kind(path).map_err(ImportError::Refused)? {
            None => Err(ImportError::Missing(path.to_owned())),
            Some(HostKind::Dir) => Ok(Artifact { kind: OutputKind::Dir, digest: self.import_dir(files, path, left)? }),
            Some(HostKind::File) => {
                Ok(Artifact { kind: OutputKind::File, digest: self.import_file(files, path, left)? })
            }
        }
    }

    fn import_dir(&self, files: &HostFiles, path: &Path, left: &mut Option<u64>) -> Result<Digest, ImportError> {
        let mut entries = Vec::new();
        for name in files.list(path).map_err(ImportError::Refused)? {
            let child = path.join(&name);
            let name = name.into_string().map_err(|name| {
                ImportError::Refused(format!("{name:?} in {} is not a UTF-8 file name", path.display()))
            })?;
            let artifact = self.import_entry(files, &child, left)?;
            entries.push(TreeEntry { name, kind: artifact.kind, digest: artifact.digest });
        }
        let tree = Tree::new(entries);
        match left {
            Some(_) => Ok(self.put_tree(&tree)?),
            None => Ok(Digest::of(&tree.encode())),
        }
    }

    fn import_file(&self, files: &HostFiles, path: &Path, left: &mut Option<u64>) -> Result<Digest, ImportError> {
        let file = files.open_file(path).map_err(ImportError::Refused)?;
        let metadata = file.metadata().map_err(Error::io(format!("reading input {}", path.display())))?;
        let stamp = FileStamp::of(&metadata);
        if let Some(digest) = self.recorded_digest(path, &stamp)
            && self.contains(&Artifact { kind: OutputKind::File, digest })
        {
            return Ok(digest);
        }
        let Some(left) = left else {
            let digest = super::hash_file(&file).map_err(Error::io(format!("reading input {}", path.display())))?;
            return Ok(digest);
        };
        let too_large =
            || ImportError::Refused(format!("{} is larger than the {} bytes it may take", path.display(), *left));
        if metadata.len() > *left {
            return Err(too_large());
        }
        let (digest, copied) = self.copy_in(file, path, *left)?.ok_or_else(too_large)?;
        *left -= copied;
        self.record_digest(path, stamp, digest)?;
        Ok(digest)
    }

    /// The digest recorded for the host file at `path` when it had `stamp`
    /// (see [`record_digest`](Self::record_digest)).
    pub(crate) fn recorded_digest(&self, path: &Path, stamp: &FileStamp) -> Option<Digest> {
        self.stat_lookup(&record_name(path)).filter(|known| known.stamp == *stamp).map(|known| known.digest)
    }

    /// Records that the host file at `path`, as `stamp` describes it, holds
    /// bytes whose digest is `digest`, so that a later run need not read it
    /// while its stamp stays the same. A stamp too recent to trust is not
    /// recorded: a write in the same tick would not change it.
    pub(crate) fn record_digest(&self, path: &Path, stamp: FileStamp, digest: Digest) -> Result<()> {
        if stamp.is_racy() {
            return Ok(());
        }
        self.stat_record(&record_name(path), &StatRecord { stamp, digest })
    }

    /// Copies an open host file into `tmp/`, hashes the copy, and renames it
    /// into place; `None` when the file holds more than `max` bytes (it may
    /// have grown, or lied about its size). Copying first (in the kernel:
    /// `copy_file_range`, a reflink where the file system can) and hashing
    /// the private copy means the digest always describes the stored bytes,
    /// even if the host file changes meanwhile (a large copy is hashed
    /// memory-mapped, on all cores).
    fn copy_in(&self, file: fs::File, path: &Path, max: u64) -> Result<Option<(Digest, u64)>> {
        let context = || format!("importing {}", path.display());
        let temp = self.temp_name("import");
        let mut copy = self.inner.tmp.create(&temp).map_err(|e| Error::io(context())(e))?.into_std();
        let copied =
            std::io::copy(&mut file.take(max.saturating_add(1)), &mut copy).map_err(|e| Error::io(context())(e))?;
        drop(copy);
        if copied > max {
            let _ = self.inner.tmp.remove_file(&temp);
            return Ok(None);
        }
        let digest = self.adopt_file(&self.inner.tmp, Path::new(&temp), IfKnown::Remove, &context)?.digest();
        Ok(Some((digest, copied)))
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
        let temp = self.write_temp(&bytes, Durability::Record, false)?;
        let (fan, rest) = split(name);
        self.rename_into(&temp, &self.inner.inputs, &fan, &rest)
    }
}

/// The name of the stat record of the host file at `path`.
fn record_name(path: &Path) -> Digest {
    Digest::of(path.as_os_str().as_encoded_bytes())
}
