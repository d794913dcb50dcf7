//! When what the store writes reaches the disk.
//!
//! An object or tree must never exist with other bytes than its name says,
//! even after a power failure: steps consume inputs by hard link, without
//! re-hashing them. Syncing every object as it is written costs a journal
//! commit per step, so on Linux the store defers it:
//!
//! - objects are renamed into place unsynced, and [`Store::sync`] makes
//!   everything written so far durable with one `syncfs(2)` (a run calls it
//!   when it ends, and every second while it goes on);
//! - the file `synced` records the boot in which the store was last written
//!   and the time up to which everything is known durable;
//! - opening a store last written in another boot (the machine went down,
//!   perhaps without syncing) re-hashes every object and tree changed after
//!   that time and removes those whose bytes do not match their name, so the
//!   steps that made them run again. Change times (`ctime`) are used, which
//!   a guest cannot set, unlike modification times.
//!
//! A process that is killed loses nothing the kernel already has, so only a
//! crash of the machine can leave unsynced objects behind. Elsewhere than
//! Linux (no boot id), objects are synced as they are written.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{OutputKind, Store, for_each_digest};
use crate::{Digest, Error, Result};

/// The state file, at the workspace root: `BOOT-ID SYNCED-UNTIL-NANOS`.
const STATE_FILE: &str = "synced";
/// Slack subtracted from the synced time when choosing what to re-hash:
/// covers clock granularity between this process and the file system.
const SLACK_NS: i128 = 2_000_000_000;

/// The id of the running boot of the machine, where the system has one.
pub(super) fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let id = id.trim();
    (!id.is_empty()).then(|| id.to_owned())
}

fn now_ns() -> i128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i128)
}

impl Store {
    /// Makes everything written to the store so far durable (one `syncfs`),
    /// and records it. Does nothing when no content was written since the
    /// last sync, or where objects are synced as written.
    pub fn sync(&self) -> Result<()> {
        let Some(boot) = &self.inner.boot_id else { return Ok(()) };
        if !self.inner.unsynced.swap(false, std::sync::atomic::Ordering::AcqRel) {
            return Ok(());
        }
        let started = now_ns();
        sync_file_system(self.root())?;
        let recorded = self.read_state().filter(|(id, _)| id == boot).map_or(i128::MIN, |(_, until)| until);
        if started > recorded {
            self.write_state(boot, started)?;
        }
        Ok(())
    }

    /// On opening: if the store was last written in another boot, re-hashes
    /// what changed since it was last known durable and removes what does
    /// not match; then records this boot. Returns the digests removed.
    pub(super) fn recover_after_reboot(&self) -> Result<Vec<Digest>> {
        let Some(boot) = &self.inner.boot_id else { return Ok(Vec::new()) };
        let since = match self.read_state() {
            Some((id, _)) if id == *boot => return Ok(Vec::new()),
            Some((_, until)) => until - SLACK_NS,
            // No state: a new store (nothing to check), or one whose state was
            // lost or torn (check everything).
            None if self.root().join(STATE_FILE).exists() => i128::MIN,
            None => now_ns(),
        };
        let mut removed = Vec::new();
        for (kind, name) in [(OutputKind::File, "objects"), (OutputKind::Dir, "trees")] {
            let dir = self.kind_dir(kind);
            let ambient = self.path_of(name);
            let mut recent = Vec::new();
            for_each_digest(dir, |digest, path| {
                if std::fs::symlink_metadata(ambient.join(&path)).is_ok_and(|meta| changed_ns(&meta) >= since) {
                    recent.push((digest, path));
                }
            })?;
            for (digest, path) in recent {
                let intact = dir.read(&path).is_ok_and(|bytes| Digest::of(&bytes) == digest);
                if !intact {
                    dir.remove_file(&path).map_err(Error::io(format!("removing torn entry {digest}")))?;
                    removed.push(digest);
                }
            }
        }
        self.write_state(boot, now_ns())?;
        Ok(removed)
    }

    fn read_state(&self) -> Option<(String, i128)> {
        let text = std::fs::read_to_string(self.root().join(STATE_FILE)).ok()?;
        let (id, until) = text.trim().split_once(' ')?;
        Some((id.to_owned(), until.parse().ok()?))
    }

    fn write_state(&self, boot: &str, until: i128) -> Result<()> {
        let path = self.root().join(STATE_FILE);
        let temp = self.path_of("tmp").join(self.temp_name("synced"));
        std::fs::write(&temp, format!("{boot} {until}\n"))
            .and_then(|()| std::fs::rename(&temp, &path))
            .map_err(Error::io(format!("recording {}", path.display())))
    }
}

/// When an entry's inode last changed (which a guest cannot set).
#[cfg(unix)]
fn changed_ns(meta: &std::fs::Metadata) -> i128 {
    use std::os::unix::fs::MetadataExt;
    i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec())
}

#[cfg(not(unix))]
fn changed_ns(meta: &std::fs::Metadata) -> i128 {
    meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos() as i128)
}

#[cfg(target_os = "linux")]
fn sync_file_system(root: &Path) -> Result<()> {
    let dir = std::fs::File::open(root).map_err(Error::io(format!("opening {}", root.display())))?;
    rustix::fs::syncfs(&dir).map_err(|err| Error::io(format!("syncing {}", root.display()))(err.into()))
}

#[cfg(not(target_os = "linux"))]
fn sync_file_system(_root: &Path) -> Result<()> {
    Ok(())
}
