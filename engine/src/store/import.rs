//! Importing pipeline inputs (host files and directories) into the store.
//!
//! A host file is copied and hashed in one pass. Its (size, mtime, ctime,
//! inode, device) is recorded under `inputs/`, so the next run re-reads the
//! file only if one of those changed.

use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Artifact, Durability, Store, Tree, TreeEntry, set_read_only, split};
use crate::{Digest, Error, OutputKind, Result};

/// What a host file looked like when it was last hashed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StatRecord {
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    inode: u64,
    device: u64,
    digest: Digest,
}

/// Files modified this recently are not recorded: a write within the same
/// timestamp tick could go unnoticed.
const RACY_WINDOW_NS: i128 = 2_000_000_000;

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
        let stat = StatRecord::of(metadata, Digest::of(b""));
        if let Some(known) = self.stat_lookup(&record_name)
            && (StatRecord { digest: known.digest, ..stat.clone() }) == known
            && self.contains(&Artifact { kind: OutputKind::File, digest: known.digest })
        {
            return Ok(known.digest);
        }
        let digest = self.copy_in(path)?;
        if !stat.is_racy() {
            self.stat_record(&record_name, &StatRecord { digest, ..stat })?;
        }
        Ok(digest)
    }

    /// Copies a host file into `tmp/`, hashes the copy, and renames it into
    /// place. Copying first (in the kernel: `copy_file_range`, a reflink
    /// where the file system can) and hashing the private copy means the
    /// digest always describes the stored bytes, even if the host file
    /// changes meanwhile; the copy is hashed memory-mapped on all cores.
    fn copy_in(&self, path: &Path) -> Result<Digest> {
        let context = || format!("importing {}", path.display());
        let temp = self.temp_name("import");
        let temp_path = self.path_of("tmp").join(&temp);
        fs::copy(path, &temp_path).map_err(|e| Error::io(context())(e))?;
        let mut hasher = blake3::Hasher::new();
        hasher.update_mmap_rayon(&temp_path).map_err(|e| Error::io(context())(e))?;
        let digest: Digest = hasher.finalize().into();
        let (fan, rest) = split(&digest);
        if self.inner.objects.symlink_metadata(Path::new(&fan).join(&rest)).is_ok() {
            let _ = self.inner.tmp.remove_file(&temp);
            return Ok(digest);
        }
        self.settle(Durability::Content, || fs::File::open(&temp_path)?.sync_all())
            .map_err(|e| Error::io(context())(e))?;
        set_read_only(&self.inner.tmp, &temp)?;
        self.rename_into(&temp, &self.inner.objects, &fan, &rest)?;
        Ok(digest)
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

impl StatRecord {
    #[cfg(unix)]
    fn of(metadata: &fs::Metadata, digest: Digest) -> Self {
        use std::os::unix::fs::MetadataExt;
        let nanos = |secs: i64, nsecs: i64| i128::from(secs) * 1_000_000_000 + i128::from(nsecs);
        Self {
            size: metadata.len(),
            mtime_ns: nanos(metadata.mtime(), metadata.mtime_nsec()),
            ctime_ns: nanos(metadata.ctime(), metadata.ctime_nsec()),
            inode: metadata.ino(),
            device: metadata.dev(),
            digest,
        }
    }

    #[cfg(not(unix))]
    fn of(metadata: &fs::Metadata, digest: Digest) -> Self {
        let mtime_ns = metadata
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as i128);
        Self { size: metadata.len(), mtime_ns, ctime_ns: mtime_ns, inode: 0, device: 0, digest }
    }

    /// Whether the file changed too recently for its timestamps to be trusted.
    fn is_racy(&self) -> bool {
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i128);
        now - self.mtime_ns.max(self.ctime_ns) < RACY_WINDOW_NS
    }
}
