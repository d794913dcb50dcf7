//! Whole files read and written by name, as native functions take their
//! file operands (`Matrix::File`, `c_file`): the same lookups, permissions
//! and quotas as the guest's own calls, except that a write which would pass
//! a quota is refused before anything is written, and the step goes on (the
//! guest sees an error value, as with host directories).

use super::{Descriptor, DirRef, Errno, Found, NodeKind, OpenFlags, StepFs, filetype};
use crate::StepErrorKind;
use crate::limits::OutputUsage;

/// One of the step's two directories.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mount {
    /// `/in`, read-only.
    In,
    /// `/out`.
    Out,
}

/// Why a whole file was not read or written.
#[derive(Debug, PartialEq)]
pub(crate) enum NotDone {
    /// The file system refused (no such file, a directory, ...).
    Refused(Errno),
    /// The file holds more than the bytes the reader allowed.
    TooLarge,
    /// Writing it would pass this quota; nothing was written.
    Quota(StepErrorKind),
}

impl From<Errno> for NotDone {
    fn from(errno: Errno) -> Self {
        NotDone::Refused(errno)
    }
}

impl StepFs {
    /// The bytes of file `path` (relative, plain components) of `mount`,
    /// following symbolic links within it; more than `max` bytes are refused.
    pub(crate) fn read_whole(&mut self, mount: Mount, path: &str, max: u64) -> Result<Vec<u8>, NotDone> {
        let reading = OpenFlags { read: true, follow: true, ..OpenFlags::default() };
        self.with_open(mount, path, reading, |fs, fd| {
            let stat = fs.filestat(fd)?;
            if stat.filetype == filetype::DIRECTORY {
                return Err(Errno::Isdir.into());
            }
            let size = stat.size;
            if size > max {
                return Err(NotDone::TooLarge);
            }
            let mut bytes = vec![0; usize::try_from(size).map_err(|_| NotDone::TooLarge)?];
            let mut done = 0;
            while done < bytes.len() {
                match fs.read(fd, &mut bytes[done..], Some(done as u64))? {
                    0 => break,
                    read => done += read,
                }
            }
            bytes.truncate(done);
            Ok(bytes)
        })
    }

    /// Makes file `path` of `/out` hold `bytes`, creating or replacing it,
    /// unless that would pass `limits.output` or `limits.files`.
    pub(crate) fn write_whole(&mut self, path: &str, bytes: &[u8]) -> Result<(), NotDone> {
        let replaced = self.with_root(Mount::Out, |fs, root| match fs.find(root, path, true) {
            Ok(Found::Node(node)) => match fs.nodes[node].kind {
                NodeKind::File { size, .. } => Ok(Some(size)),
                _ => Err(NotDone::Refused(Errno::Loop)),
            },
            Ok(_) => Err(NotDone::Refused(Errno::Isdir)),
            Err(Errno::Noent) => Ok(None),
            Err(errno) => Err(errno.into()),
        })?;
        let after = OutputUsage {
            bytes: self.bytes.saturating_sub(replaced.unwrap_or(0)).saturating_add(bytes.len() as u64),
            files: self.files + u64::from(replaced.is_none()),
        };
        if let Some(quota) = after.breach(&self.limits) {
            return Err(NotDone::Quota(quota));
        }
        let replacing = OpenFlags { create: true, truncate: true, write: true, follow: true, ..OpenFlags::default() };
        self.with_open(Mount::Out, path, replacing, |fs, fd| {
            fs.write(fd, bytes, Some(0))?;
            Ok(())
        })
    }

    /// Runs `op` with a descriptor of `path` of `mount` opened with `flags`,
    /// closed afterwards.
    fn with_open<T>(
        &mut self,
        mount: Mount,
        path: &str,
        flags: OpenFlags,
        op: impl FnOnce(&mut Self, u32) -> Result<T, NotDone>,
    ) -> Result<T, NotDone> {
        let fd = self.with_root(mount, |fs, root| Ok(fs.open(root, path, flags)?))?;
        let result = op(self, fd);
        self.descriptors[fd as usize] = None;
        result
    }

    /// Runs `op` with a descriptor of `mount`'s root, closed afterwards (the
    /// guest's own descriptors are not used: it may have closed them).
    fn with_root<T>(
        &mut self,
        mount: Mount,
        op: impl FnOnce(&mut Self, u32) -> Result<T, NotDone>,
    ) -> Result<T, NotDone> {
        let dir = match mount {
            Mount::In => DirRef::In,
            Mount::Out => DirRef::Out(0),
        };
        let root = self.insert(Descriptor::Dir { dir, preopen: None })?;
        let result = op(self, root);
        self.descriptors[root as usize] = None;
        result
    }
}
