//! Locks shared between the processes (and runs) using one workspace.
//!
//! - The *workspace lock* (`lock` at the root) is held shared by every run
//!   for its whole duration and exclusively by `weir gc`, so garbage
//!   collection never removes what a run has stored but not yet recorded.
//! - A *key lock* is held while a step with that key executes, so identical
//!   steps in flight at once, in any process, execute once: the others wait
//!   (without holding a worker), then reuse the result. It is one byte of the
//!   file `locks/keys`, at an offset taken from the key, locked through an
//!   open file description of its own (`F_OFD_SETLK`): so every key shares
//!   one file, made once, where a file per key cost a journaled file
//!   creation per executed step (and left one file per key until `gc`).
//!   A released key lock unlocks its byte and keeps its description for the
//!   next key lock, so that an executed step opens nothing to take one.
//!
//! - An *export lock* (`locks/export-<digest of the path>`) is held while a
//!   run replaces an export destination, so runs exporting to one path
//!   replace it one at a time (the last one's outputs are what remain).
//!   Garbage collection removes these files; it keeps `locks/keys`.
//!
//! All are advisory locks on open files (`flock`, or a byte range for key
//! locks): the operating system releases them when the holder exits, however
//! it exits.

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use super::Store;
use crate::{Digest, Error, Result};

/// Name of the workspace lock file.
const WORKSPACE_LOCK: &str = "lock";
/// Directory of the lock files.
pub(super) const KEY_LOCKS: &str = "locks";
/// The file under [`KEY_LOCKS`] whose bytes are the key locks.
const KEY_LOCK_FILE: &str = "keys";
/// How the name of an export lock file under [`KEY_LOCKS`] begins.
pub(super) const EXPORT_LOCK_PREFIX: &str = "export-";

/// A held lock; dropping it releases the lock.
#[derive(Debug)]
pub(crate) struct Held {
    _file: Option<File>,
}

/// A held key lock; dropping it unlocks its byte and gives its open file
/// description back to the store for the next key lock.
#[derive(Debug)]
pub(crate) struct HeldKey {
    /// `None` once dropped.
    file: Option<File>,
    offset: i64,
    store: Store,
}

impl Drop for HeldKey {
    fn drop(&mut self) {
        // A description whose byte could not be unlocked is closed instead,
        // which releases every lock it holds.
        if let Some(file) = self.file.take()
            && set_byte(&file, self.offset, Lock::Unlock).is_ok()
        {
            self.store.inner.idle_key_handles.give_back(file);
        }
    }
}

/// Open descriptions of the key lock file that hold no lock, at most
/// [`IDLE_KEY_HANDLES_MAX`]. Each held key lock has a description to
/// itself: two locks of one description never wait for each other, even on
/// one byte.
#[derive(Debug, Default)]
pub(super) struct IdleKeyHandles(Mutex<Vec<File>>);

/// Idle key lock descriptions kept at most: as many as a busy engine holds
/// at once, while a burst of waiters (a thread each, see the scheduler's
/// `await_key`) closes what it opened beyond that.
pub(super) const IDLE_KEY_HANDLES_MAX: usize = 64;

impl IdleKeyHandles {
    fn take(&self) -> Option<File> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).pop()
    }

    /// Keeps `file` for the next key lock, or closes it when enough are kept.
    fn give_back(&self, file: File) {
        let mut idle = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < IDLE_KEY_HANDLES_MAX {
            idle.push(file);
        }
    }

    /// How many are kept.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
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
    pub(crate) fn lock_key(&self, key: &Digest) -> Result<HeldKey> {
        let (file, offset) = (self.idle_key_handle()?, key_offset(key));
        set_byte(&file, offset, Lock::Wait).map_err(Error::io(format!("locking cache key {key}")))?;
        Ok(HeldKey { file: Some(file), offset, store: self.clone() })
    }

    /// Takes the lock of export destination `path`, waiting while another
    /// run (in any process) writes there.
    pub(crate) fn lock_export(&self, path: &Path) -> Result<Held> {
        let name = format!("{EXPORT_LOCK_PREFIX}{}", Digest::of(path.as_os_str().as_encoded_bytes()).hex());
        let file = self.lock_file(&self.root().join(KEY_LOCKS).join(name))?;
        file.lock().map_err(Error::io(format!("locking the export to {}", path.display())))?;
        Ok(Held { _file: Some(file) })
    }

    /// Takes the lock of cache key `key` if no other execution holds it.
    pub(crate) fn try_lock_key(&self, key: &Digest) -> Result<Option<HeldKey>> {
        let (file, offset) = (self.idle_key_handle()?, key_offset(key));
        match set_byte(&file, offset, Lock::Try) {
            Ok(true) => Ok(Some(HeldKey { file: Some(file), offset, store: self.clone() })),
            Ok(false) => {
                self.inner.idle_key_handles.give_back(file);
                Ok(None)
            }
            Err(err) => Err(Error::io(format!("locking cache key {key}"))(err)),
        }
    }

    /// An open description of the key lock file holding no lock: an idle
    /// one if there is one, else a new one.
    fn idle_key_handle(&self) -> Result<File> {
        match self.inner.idle_key_handles.take() {
            Some(file) => Ok(file),
            None => self.lock_file(&self.root().join(KEY_LOCKS).join(KEY_LOCK_FILE)),
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

/// The byte of the key lock file that is `key`'s lock: from its first eight
/// bytes, within the offsets `fcntl` takes (two keys share a byte with odds
/// of one in 2⁶³, and would then only wait for each other).
fn key_offset(key: &Digest) -> i64 {
    let mut first = [0; 8];
    first.copy_from_slice(&key.as_bytes()[..8]);
    i64::try_from(u64::from_le_bytes(first) >> 1).unwrap_or(i64::MAX)
}

/// What [`set_byte`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lock {
    /// Lock it, waiting while another description holds it.
    Wait,
    /// Lock it if no other description holds it.
    Try,
    /// Unlock it (whether this description held it or not).
    Unlock,
}

/// Locks byte `offset` of `file` for writing, or unlocks it, with an
/// open-file-description lock (released too when the description is
/// closed); `Ok(false)` when another description (of any thread or process)
/// holds it and `how` is [`Lock::Try`].
fn set_byte(file: &File, offset: i64, how: Lock) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: `flock` is plain data, for which all zeroes is a valid
    // value (and `l_pid` must be zero for an open-file-description lock).
    let mut range: libc::flock = unsafe { std::mem::zeroed() };
    range.l_type = if how == Lock::Unlock { libc::F_UNLCK } else { libc::F_WRLCK } as _;
    range.l_whence = libc::SEEK_SET as _;
    range.l_start = offset;
    range.l_len = 1;
    let command = if how == Lock::Wait { libc::F_OFD_SETLKW } else { libc::F_OFD_SETLK };
    loop {
        // SAFETY: the descriptor is open for as long as `file` is
        // borrowed, and `range` outlives the call, which only reads it.
        if unsafe { libc::fcntl(file.as_raw_fd(), command, &range) } == 0 {
            return Ok(true);
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN | libc::EACCES) if how == Lock::Try => return Ok(false),
            _ => return Err(err),
        }
    }
}

/// Whether an error says the file system or the file may not be written.
fn is_read_only(err: &std::io::Error) -> bool {
    matches!(err.kind(), std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::PermissionDenied)
}
