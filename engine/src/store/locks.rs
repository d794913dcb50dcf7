//! Locks shared between the processes (and runs) using one workspace.
//!
//! - The *workspace lock* (`lock` at the root) is held shared by every run
//!   for its whole duration and exclusively by `weir gc`, so garbage
//!   collection never removes what a run has stored but not yet recorded.
//! - A *key lock* (`locks/<cache key>`) is held while a step with that key
//!   executes, so identical steps in flight at once, in any process, execute
//!   once: the others wait (without holding a worker), then reuse the result.
//!
//! - An *export lock* (`locks/export-<digest of the path>`) is held while a
//!   run replaces an export destination, so runs exporting to one path
//!   replace it one at a time (the last one's outputs are what remain).
//!
//! All are advisory `flock` locks on open files: the operating system
//! releases them when the holder exits, however it exits.

use std::fs::{File, OpenOptions};
use std::path::Path;

use super::Store;
use crate::{Digest, Error, Result};

/// Name of the workspace lock file.
const WORKSPACE_LOCK: &str = "lock";
/// Directory of the key lock files.
pub(super) const KEY_LOCKS: &str = "locks";

/// A held lock; dropping it releases the lock.
#[derive(Debug)]
pub(crate) struct Held {
    _file: Option<File>,
}

/// Holds garbage collection off (see [`Store::hold_off_gc`]) until dropped.
#[derive(Debug)]
pub struct GcHold {
    _held: Held,
}

impl Store {
    /// Holds garbage collection of this workspace (in any process) off while
    /// the application stores objects and records, elsewhere, that it keeps
    /// them ([`Engine::gc_keeping`](crate::Engine::gc_keeping) then keeps
    /// them): as a run holds it off between storing and recording. Waits
    /// while a collection is going on.
    pub fn hold_off_gc(&self) -> Result<GcHold> {
        Ok(GcHold { _held: self.lock_for_run()? })
    }

    /// Takes the workspace lock shared, as a run does (waits while a
    /// garbage collection holds it).
    pub(crate) fn lock_for_run(&self) -> Result<Held> {
        let file = self.lock_file(&self.root().join(WORKSPACE_LOCK)).map_err(|err| match err {
            Error::Io { source, .. } if is_read_only(&source) => Error::Io {
                context: format!(
                    "the workspace {} is read-only: `weir runs`, `show`, `cat` and `export` read it, and \
                     `weir run --read-only` reuses its cached results without recording anything",
                    self.root().display()
                ),
                source,
            },
            other => other,
        })?;
        file.lock_shared().map_err(Error::io("taking the workspace lock"))?;
        Ok(Held { _file: Some(file) })
    }

    /// Takes the workspace lock shared without writing anything, as a
    /// read-only run does; a workspace without a lock file (never run in,
    /// or on a read-only file system) has no garbage collection to wait for.
    pub(crate) fn lock_for_reading(&self) -> Result<Held> {
        let Ok(file) = File::open(self.root().join(WORKSPACE_LOCK)) else { return Ok(Held { _file: None }) };
        file.lock_shared().map_err(Error::io("taking the workspace lock"))?;
        Ok(Held { _file: Some(file) })
    }

    /// Takes the workspace lock exclusively, as garbage collection does
    /// (waits for every run to end).
    pub(crate) fn lock_exclusive(&self) -> Result<Held> {
        let file = self.lock_file(&self.root().join(WORKSPACE_LOCK))?;
        file.lock().map_err(Error::io("taking the workspace lock"))?;
        Ok(Held { _file: Some(file) })
    }

    /// Takes the lock of cache key `key`, waiting while another execution
    /// with that key holds it.
    pub(crate) fn lock_key(&self, key: &Digest) -> Result<Held> {
        let file = self.lock_file(&self.root().join(KEY_LOCKS).join(key.hex()))?;
        file.lock().map_err(Error::io(format!("locking cache key {key}")))?;
        Ok(Held { _file: Some(file) })
    }

    /// Takes the lock of export destination `path`, waiting while another
    /// run (in any process) writes there.
    pub(crate) fn lock_export(&self, path: &Path) -> Result<Held> {
        let name = format!("export-{}", Digest::of(path.as_os_str().as_encoded_bytes()).hex());
        let file = self.lock_file(&self.root().join(KEY_LOCKS).join(name))?;
        file.lock().map_err(Error::io(format!("locking the export to {}", path.display())))?;
        Ok(Held { _file: Some(file) })
    }

    /// Takes the lock of cache key `key` if no other execution holds it.
    pub(crate) fn try_lock_key(&self, key: &Digest) -> Result<Option<Held>> {
        let file = self.lock_file(&self.root().join(KEY_LOCKS).join(key.hex()))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Held { _file: Some(file) })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(err)) => Err(Error::io(format!("locking cache key {key}"))(err)),
        }
    }

    fn lock_file(&self, path: &Path) -> Result<File> {
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(Error::io(format!("opening lock file {}", path.display())))
    }
}

/// Whether an error says the file system or the file may not be written.
fn is_read_only(err: &std::io::Error) -> bool {
    matches!(err.kind(), std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::PermissionDenied)
}
