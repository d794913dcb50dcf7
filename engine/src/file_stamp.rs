//! What identifies a version of a host file without reading it: size,
//! modification and change times, inode and device. Pipeline inputs and
//! step modules are re-read only when their stamp changes.

use std::fs::Metadata;

use serde::{Deserialize, Serialize};

/// Files changed this recently are not trusted by their stamp: a write within
/// the same timestamp tick could go unnoticed.
const RACY_WINDOW_NS: i128 = 2_000_000_000;

/// A file's stamp. The change time covers what the others can miss: setting
/// a modification time back changes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FileStamp {
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    inode: u64,
    device: u64,
}

impl FileStamp {
    /// The stamp described by `metadata`.
    #[cfg(unix)]
    pub(crate) fn of(metadata: &Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        let nanos = |secs: i64, nsecs: i64| i128::from(secs) * 1_000_000_000 + i128::from(nsecs);
        Self {
            size: metadata.len(),
            mtime_ns: nanos(metadata.mtime(), metadata.mtime_nsec()),
            ctime_ns: nanos(metadata.ctime(), metadata.ctime_nsec()),
            inode: metadata.ino(),
            device: metadata.dev(),
        }
    }

    /// The stamp described by `metadata`.
    #[cfg(not(unix))]
    pub(crate) fn of(metadata: &Metadata) -> Self {
        let mtime_ns = metadata
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as i128);
        Self { size: metadata.len(), mtime_ns, ctime_ns: mtime_ns, inode: 0, device: 0 }
    }

    /// The stamp described by `stat` (a `statat` of the file by name, one
    /// system call where [`of`](Self::of) needs an open file or a path walk
    /// of the standard library's).
    pub(crate) fn of_stat(stat: &rustix::fs::Stat) -> Self {
        let nanos = |secs: i64, nsecs: u64| i128::from(secs) * 1_000_000_000 + i128::from(nsecs);
        Self {
            size: u64::try_from(stat.st_size).unwrap_or_default(),
            mtime_ns: nanos(stat.st_mtime, stat.st_mtime_nsec),
            ctime_ns: nanos(stat.st_ctime, stat.st_ctime_nsec),
            inode: stat.st_ino,
            device: stat.st_dev,
        }
    }

    /// Whether the file changed too recently for its stamp to be trusted.
    pub(crate) fn is_racy(&self) -> bool {
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i128);
        now - self.mtime_ns.max(self.ctime_ns) < RACY_WINDOW_NS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_rewritten_with_its_old_modification_time_has_a_new_stamp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("module.wasm");
        std::fs::write(&path, b"first").unwrap();
        let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(an_hour_ago).unwrap();
        let before = FileStamp::of(&std::fs::metadata(&path).unwrap());
        assert!(before.is_racy(), "its change time is now");
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&path, b"other").unwrap();
        file.set_modified(an_hour_ago).unwrap();
        let after = FileStamp::of(&std::fs::metadata(&path).unwrap());
        assert_eq!((after.size, after.mtime_ns, after.inode), (before.size, before.mtime_ns, before.inode));
        assert_ne!(after, before, "the change time gives it away");
    }
}
