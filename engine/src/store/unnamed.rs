//! Files without a name until they are stored: what a step writes in an
//! `/out` the engine keeps itself (see `runtime/step_fs`) goes into an
//! unnamed file of `tmp/` (`O_TMPFILE`), created read-only, which becomes an
//! object with one `linkat` once its digest is known. Nothing is left to
//! rename or remove: a file that never becomes an object vanishes when it
//! is closed, even when the process is killed.
//!
//! Linking an unnamed file goes through `/proc/self/fd` (the `AT_EMPTY_PATH`
//! way needs a capability), so the store uses such files only where a probe
//! found that both work: a file system without `O_TMPFILE`, or a system
//! without `/proc`, keeps steps on scratch directories.

use std::fs::File;
use std::os::fd::AsRawFd;

use rustix::fs::{AtFlags, CWD, Mode, OFlags};
use rustix::io::Errno;

use super::{Durability, Store, in_fan_dir, split};
use crate::{Digest, Error, Result};

impl Store {
    /// Whether this store can keep step outputs in unnamed files (probed
    /// once per store: an unnamed file created, linked into `tmp/` and
    /// unlinked).
    pub(crate) fn has_unnamed_files(&self) -> bool {
        *self.inner.unnamed_files.get_or_init(|| {
            let name = self.temp_name("probe");
            let linked = self.unnamed_file().and_then(|file| link_by_proc(&file, &self.inner.tmp, &name));
            let _ = self.inner.tmp.remove_file(&name);
            linked.is_ok()
        })
    }

    /// A new unnamed, read-only file in `tmp/`, open for reading and writing.
    pub(crate) fn unnamed_file(&self) -> std::io::Result<File> {
        let flags = OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC;
        Ok(File::from(rustix::fs::openat(&self.inner.tmp, c".", flags, Mode::from_raw_mode(0o444))?))
    }

    /// Stores unnamed `file` (from [`unnamed_file`](Self::unnamed_file),
    /// written only with positioned writes, so read from its start) of `len`
    /// bytes as an object, synced as content; `None`: nothing was written.
    /// `context` names it in errors.
    pub(crate) fn adopt_unnamed(&self, file: Option<&File>, len: u64, context: &dyn Fn() -> String) -> Result<Digest> {
        let Some(file) = file.filter(|_| len > 0) else {
            return self.put_bytes(&[]);
        };
        let digest = super::hash_file_of_len(file, len).map_err(Error::io(context()))?;
        let (fan, rest) = split(&digest);
        self.settle(Durability::Content, || file.sync_all()).map_err(Error::io(context()))?;
        let path = format!("{fan}/{rest}");
        let objects = &self.inner.objects;
        let linked = in_fan_dir(objects, &fan, |err| *err == Errno::NOENT, || link_by_proc_raw(file, objects, &path))?;
        match linked {
            // An object that exists holds the same bytes: this file is dropped.
            Ok(()) | Err(Errno::EXIST) => Ok(digest),
            Err(err) => Err(Error::io(context())(err.into())),
        }
    }
}

/// Gives unnamed `file` the name `name` in `dir`.
fn link_by_proc(file: &File, dir: &cap_std::fs::Dir, name: &str) -> std::io::Result<()> {
    Ok(link_by_proc_raw(file, dir, name)?)
}

fn link_by_proc_raw(file: &File, dir: &cap_std::fs::Dir, name: &str) -> rustix::io::Result<()> {
    let proc_path = format!("/proc/self/fd/{}", file.as_raw_fd());
    rustix::fs::linkat(CWD, proc_path.as_str(), dir, name, AtFlags::SYMLINK_FOLLOW)
}
