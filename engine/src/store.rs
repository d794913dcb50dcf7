//! The content-addressed store of a workspace: artifacts named by digest,
//! and cache entries that map a step's cache key to its outputs.
//!
//! Layout under the workspace directory:
//!
//! ```text
//! objects/ab/cdef…   file artifacts and logs (read-only), named by BLAKE3 of their bytes
//! trees/ab/cdef…     directory artifacts: canonical tree encodings, named by their BLAKE3
//! cache/ab/cdef…     cache entries, named by cache key
//! cache/reuse/…      reuse indexes: copies of a pipeline's entries (see `reuse_index`)
//! inputs/ab/cdef…    stat records of imported host files, named by BLAKE3 of the path
//! compiled/…         compiled modules, authenticated with secret.key (see the runtime)
//! secret.key         the workspace's secret (owner-only)
//! locks/keys         locks of cache keys being computed, a byte each (see `locks`)
//! lock               the workspace lock: shared by runs, exclusive for gc
//! tmp/               scratch and staging; always on the same file system as the store
//! ```
//!
//! Every entry is written under a temporary name in `tmp/`, then renamed into
//! place, so a process killed at any point leaves no partial entry. Objects
//! and trees reach the disk before anything can rely on them after a machine
//! crash, cache entries need not (see [`Durability`]). A cache entry is only
//! written after all its objects, and a lookup checks that they exist.

mod cache;
mod durability;
mod fan_out;
mod gc;
mod import;
mod ingest;
mod janitor;
mod listing;
mod locks;
mod reuse_index;
mod scratch;

pub use locks::GcHold;
mod materialize;
mod secret;
mod transfer;
mod tree;
mod unnamed;
mod verify;

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use serde::{Deserialize, Serialize};

pub(crate) use cache::{CacheEntry, ReuseChecks};
use fan_out::FanOut;
pub use gc::GcReport;
pub(crate) use import::ImportError;
use ingest::IfKnown;
pub(crate) use ingest::check_output_kind;
pub(crate) use listing::{Listed, OutListing};
pub(crate) use reuse_index::ReuseIndex;
pub(crate) use scratch::{Leftovers, Scratch, UsedScratch};
pub(crate) use tree::Tree;
pub use tree::TreeEntry;
pub use verify::VerifyReport;

#[cfg(test)]
use crate::StepErrorKind;
use crate::{Digest, Error, OutputKind, Result};

/// An artifact in the store: its kind and digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Artifact {
    /// File or directory.
    pub kind: OutputKind,
    /// The content digest.
    pub digest: Digest,
}

/// A workspace's content-addressed store. Cheap to clone: an `Arc` inside.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    objects: FanOut,
    trees: FanOut,
    cache: FanOut,
    inputs: FanOut,
    tmp: Dir,
    next_temp: AtomicU64,
    /// The machine's boot id when objects are synced in batches (see
    /// `durability`); `None` when each object is synced as it is written.
    boot_id: Option<String>,
    /// Whether content was written since the last sync (when deferred).
    unsynced: std::sync::atomic::AtomicBool,
    /// Removes scratch directories in the background.
    janitor: janitor::Janitor,
    /// Artifacts re-hashed and found intact by this process (see `cache`).
    verified: dashmap::DashSet<Digest>,
    /// Open descriptions of the key lock file holding no lock.
    idle_key_handles: locks::IdleKeyHandles,
    /// Whether this process has stored (or found) the empty object, which
    /// garbage collection never removes: every empty log is that object, so
    /// storing one after the first costs nothing.
    empty_object_stored: std::sync::atomic::AtomicBool,
    /// Whether step outputs can be unnamed files (see `unnamed`), once probed.
    unnamed_files: std::sync::OnceLock<bool>,
}

/// What a store file is, for when it must reach the disk.
///
/// Content (objects and trees) must never exist with other bytes than its
/// name says: it is synced before the rename, or, where the store defers
/// syncing (see `durability`), checked after a machine crash. Records (cache
/// entries, input stat records) are never synced: one lost or torn by a
/// crash fails to decode and counts as absent, which costs a recomputation,
/// never a wrong result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    Content,
    Record,
}

/// Subdirectories created in every workspace.
const LAYOUT: [&str; 7] = ["objects", "trees", "cache", "inputs", "compiled", "tmp", locks::KEY_LOCKS];

/// Files from this size on are hashed memory-mapped, on all cores.
const MAP_AT: u64 = 1 << 20;

impl Store {
    /// Opens the store of the workspace at `root`, creating it if needed.
    pub fn open(root: impl AsRef<Path>) -> Result<Store> {
        let root = root.as_ref();
        if root.exists() && !root.is_dir() {
            return Err(Error::Io {
                context: format!("opening workspace {}", root.display()),
                source: io::Error::new(io::ErrorKind::NotADirectory, "it is a file, not a directory"),
            });
        }
        std::fs::create_dir_all(root).map_err(Error::io(format!("creating workspace {}", root.display())))?;
        let root = root.canonicalize().map_err(Error::io(format!("opening workspace {}", root.display())))?;
        let root_dir = Dir::open_ambient_dir(&root, ambient_authority())
            .map_err(Error::io(format!("opening workspace {}", root.display())))?;
        let mut created = Vec::new();
        for sub in LAYOUT {
            match root_dir.create_dir(sub) {
                Ok(()) => created.push(sub),
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
                Err(err) => return Err(Error::io(format!("creating {}", root.join(sub).display()))(err)),
            }
        }
        let open =
            |sub: &str| root_dir.open_dir(sub).map_err(Error::io(format!("opening {}", root.join(sub).display())));
        let fanned = |sub: &str| open(sub).map(|dir| FanOut::new(dir, created.contains(&sub)));
        let tmp = open("tmp")?;
        sweep_abandoned(&tmp);
        let janitor = janitor::Janitor::new(tmp.try_clone().map_err(Error::io(format!("opening {}", root.display())))?);
        let inner = Inner {
            objects: fanned("objects")?,
            trees: fanned("trees")?,
            cache: fanned("cache")?,
            inputs: fanned("inputs")?,
            tmp,
            root,
            next_temp: AtomicU64::new(0),
            boot_id: durability::boot_id(),
            unsynced: std::sync::atomic::AtomicBool::new(false),
            janitor,
            verified: dashmap::DashSet::new(),
            idle_key_handles: locks::IdleKeyHandles::default(),
            empty_object_stored: std::sync::atomic::AtomicBool::new(false),
            unnamed_files: std::sync::OnceLock::new(),
        };
        let store = Store { inner: Arc::new(inner) };
        store.recover_after_reboot()?;
        Ok(store)
    }

    /// The workspace directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Host path of a subdirectory of the workspace (e.g. `runs`).
    pub(crate) fn path_of(&self, sub: &str) -> PathBuf {
        self.inner.root.join(sub)
    }

    /// A fresh name under `tmp/`, unique across threads and processes.
    pub(crate) fn temp_name(&self, what: &str) -> String {
        let n = self.inner.next_temp.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        format!("{what}-{}-{nanos:09}-{n}", std::process::id())
    }

    /// Which kind of artifact `digest` names, if the store has it.
    pub fn kind_of(&self, digest: &Digest) -> Option<OutputKind> {
        let (fan, rest) = split(digest);
        let exists = |dir: &Dir| has_entry(dir, &Path::new(&fan).join(&rest));
        if exists(&self.inner.objects) {
            Some(OutputKind::File)
        } else if exists(&self.inner.trees) {
            Some(OutputKind::Dir)
        } else {
            None
        }
    }

    /// The stored artifacts (files and trees) whose digest starts with
    /// `prefix`: hex digits, optionally after `blake3:`, at least 4 of them.
    /// An abbreviated digest names an artifact when exactly one matches.
    pub fn digests_with_prefix(&self, prefix: &str) -> Result<Vec<Digest>> {
        let hex = prefix.strip_prefix("blake3:").unwrap_or(prefix).to_ascii_lowercase();
        if hex.len() < 4 || hex.len() > 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let expected = "expected `blake3:` and 64 hex digits, or the first 4 or more of them";
            return Err(Error::Io {
                context: format!("`{prefix}` is not a digest"),
                source: io::Error::new(io::ErrorKind::InvalidInput, expected),
            });
        }
        let (fan, rest) = hex.split_at(2);
        let mut found = Vec::new();
        for dir in [&self.inner.objects, &self.inner.trees] {
            let Ok(entries) = dir.read_dir(fan) else { continue };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(name) = name.to_str().filter(|name| name.starts_with(rest)) else { continue };
                if let Ok(digest) = Digest::parse(&format!("{fan}{name}")) {
                    found.push(digest);
                }
            }
        }
        found.sort_by_key(Digest::hex);
        found.dedup();
        Ok(found)
    }

    /// Whether the store holds `artifact`.
    pub fn contains(&self, artifact: &Artifact) -> bool {
        let (fan, rest) = split(&artifact.digest);
        has_entry(self.kind_dir(artifact.kind), &Path::new(&fan).join(rest))
    }

    /// Bytes of content an artifact holds: a file's length, or the sum over
    /// the files of a directory.
    pub fn artifact_size(&self, artifact: &Artifact) -> Result<u64> {
        match artifact.kind {
            OutputKind::File => {
                let (fan, rest) = split(&artifact.digest);
                let meta = self.inner.objects.symlink_metadata(Path::new(&fan).join(rest));
                meta.map(|meta| meta.len()).map_err(Error::io(format!("reading the size of {}", artifact.digest)))
            }
            OutputKind::Dir => self.read_tree(&artifact.digest)?.entries().iter().try_fold(0u64, |total, entry| {
                let size = self.artifact_size(&Artifact { kind: entry.kind, digest: entry.digest })?;
                Ok(total.saturating_add(size))
            }),
        }
    }

    /// The bytes of a file artifact, checked against its digest.
    pub fn read_file(&self, digest: &Digest) -> Result<Vec<u8>> {
        self.read_verified(&self.inner.objects, digest).map_err(|err| self.file_or_wrong_kind(err, digest))
    }

    /// For a file read that found nothing: [`Error::WrongKind`] when the
    /// digest names a directory artifact (read it with
    /// [`list_dir`](Self::list_dir) and [`lookup`](Self::lookup)).
    fn file_or_wrong_kind(&self, err: Error, digest: &Digest) -> Error {
        match err {
            Error::ArtifactNotFound { .. } if self.kind_of(digest) == Some(OutputKind::Dir) => {
                Error::WrongKind { digest: *digest, expected: OutputKind::File }
            }
            other => other,
        }
    }

    /// Writes a file artifact to `sink` after checking it against the
    /// digest, streaming: it is never held in memory whole.
    pub fn write_file_to(&self, digest: &Digest, sink: &mut impl Write) -> Result<()> {
        let mut file = self.open_file(digest)?;
        io::copy(&mut file, sink).map(|_| ()).map_err(Error::io(format!("writing {digest}")))
    }

    /// Opens a file artifact for reading, after checking its content against
    /// the digest (hashed streaming, or memory-mapped when large).
    pub fn open_file(&self, digest: &Digest) -> Result<std::fs::File> {
        use std::io::{Seek, SeekFrom};
        let (fan, rest) = split(digest);
        let mut file = match self.inner.objects.open(Path::new(&fan).join(rest)) {
            Ok(file) => file.into_std(),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return Err(self.file_or_wrong_kind(Error::ArtifactNotFound { digest: *digest }, digest));
            }
            Err(err) => return Err(Error::io(format!("reading {digest}"))(err)),
        };
        let found = hash_file(&file).map_err(Error::io(format!("reading {digest}")))?;
        if found != *digest {
            return Err(Error::Corrupt {
                what: digest.to_string(),
                reason: "its content does not match its digest".into(),
            });
        }
        file.seek(SeekFrom::Start(0)).map_err(Error::io(format!("reading {digest}")))?;
        Ok(file)
    }

    /// Opens a file artifact for reading without checking its content: for
    /// a step's input, which a step reads as a hard link of the object would
    /// give it (objects are checked when stored, and after a machine crash).
    pub(crate) fn open_object_unchecked(&self, digest: &Digest) -> io::Result<std::fs::File> {
        let (fan, rest) = split(digest);
        let flags = rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::CLOEXEC;
        let path = format!("{fan}/{rest}");
        Ok(rustix::fs::openat(&self.inner.objects, path.as_str(), flags, rustix::fs::Mode::empty())?.into())
    }

    /// Stores `bytes` as a file artifact.
    pub(crate) fn put_bytes(&self, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest::of(bytes);
        if bytes.is_empty() && self.inner.empty_object_stored.load(Ordering::Acquire) {
            return Ok(digest);
        }
        self.publish_bytes(&self.inner.objects, &digest, bytes, true)?;
        if bytes.is_empty() {
            self.inner.empty_object_stored.store(true, Ordering::Release);
        }
        Ok(digest)
    }

    fn kind_dir(&self, kind: OutputKind) -> &FanOut {
        match kind {
            OutputKind::File => &self.inner.objects,
            OutputKind::Dir => &self.inner.trees,
        }
    }

    fn read_verified(&self, dir: &Dir, digest: &Digest) -> Result<Vec<u8>> {
        let (fan, rest) = split(digest);
        let bytes = match dir.read(Path::new(&fan).join(rest)) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return Err(Error::ArtifactNotFound { digest: *digest });
            }
            Err(err) => return Err(Error::io(format!("reading {digest}"))(err)),
        };
        if Digest::of(&bytes) != *digest {
            return Err(Error::Corrupt {
                what: digest.to_string(),
                reason: "its content does not match its digest".into(),
            });
        }
        Ok(bytes)
    }

    /// Writes `bytes` under `name` in `dir` (fanned out by the digest) atomically.
    fn publish_bytes(&self, dir: &FanOut, digest: &Digest, bytes: &[u8], read_only: bool) -> Result<()> {
        let (fan, rest) = split(digest);
        if has_entry(dir, &Path::new(&fan).join(&rest)) {
            return Ok(());
        }
        let temp = self.write_temp(bytes, Durability::Content, read_only)?;
        self.rename_into(&temp, dir, &fan, &rest)
    }

    /// Runs `sync` (syncing a file just written) if the file is content and
    /// the store does not defer syncing.
    fn settle(&self, durability: Durability, sync: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
        match (durability, &self.inner.boot_id) {
            (Durability::Record, _) => Ok(()),
            (Durability::Content, None) => sync(),
            (Durability::Content, Some(_)) => {
                self.inner.unsynced.store(true, Ordering::Release);
                Ok(())
            }
        }
    }

    /// Writes a temporary file under `tmp/` and returns its name.
    fn write_temp(&self, bytes: &[u8], durability: Durability, read_only: bool) -> Result<String> {
        let name = self.temp_name("blob");
        let file =
            self.inner.tmp.create(&name).map_err(Error::io("creating a temporary file in the store"))?.into_std();
        (&file)
            .write_all(bytes)
            .and_then(|()| self.settle(durability, || file.sync_all()))
            .and_then(|()| if read_only { make_read_only(&file) } else { Ok(()) })
            .map_err(Error::io("writing a temporary file in the store"))?;
        Ok(name)
    }

    /// Renames `tmp/<temp>` to `<dir>/<fan>/<rest>`, creating the fan-out directory.
    fn rename_into(&self, temp: &str, dir: &FanOut, fan: &str, rest: &str) -> Result<()> {
        self.rename_from(&self.inner.tmp, Path::new(temp), dir, fan, rest)
    }

    /// Renames `from_dir/from` to `<dir>/<fan>/<rest>`, creating the fan-out
    /// directory when the rename finds it missing.
    fn rename_from(&self, from_dir: &Dir, from: &Path, dir: &FanOut, fan: &str, rest: &str) -> Result<()> {
        let to = Path::new(fan).join(rest);
        let renamed = in_fan_dir(
            dir,
            fan,
            |err: &io::Error| err.kind() == io::ErrorKind::NotFound,
            || rename_to_digest(from_dir, from, dir, &to),
        )?;
        renamed.map_err(Error::io(format!("moving {} into the store", from.display())))
    }

    /// Moves `from_dir/from` to `<dir>/<fan>/<rest>` unless an entry is
    /// there already: `Ok(false)` then, and `from` stays. One `renameat2`
    /// that refuses to replace, where the file system has it; a `stat`, then
    /// [`rename_from`](Self::rename_from), elsewhere.
    fn rename_new_from(&self, from_dir: &Dir, from: &Path, dir: &FanOut, fan: &str, rest: &str) -> Result<bool> {
        #[cfg(target_os = "linux")]
        if single_name(from) {
            use rustix::io::Errno;
            let to = Path::new(fan).join(rest);
            let renamed = in_fan_dir(
                dir,
                fan,
                |err| *err == Errno::NOENT,
                || rustix::fs::renameat_with(from_dir, from, dir, &to, rustix::fs::RenameFlags::NOREPLACE),
            )?;
            match renamed {
                Ok(()) => return Ok(true),
                Err(Errno::EXIST) => return Ok(false),
                // A file system without the flag: the portable way below.
                Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {}
                Err(err) => return Err(Error::io(format!("moving {} into the store", from.display()))(err.into())),
            }
        }
        if has_entry(dir, &Path::new(fan).join(rest)) {
            return Ok(false);
        }
        self.rename_from(from_dir, from, dir, fan, rest)?;
        Ok(true)
    }

    /// Writes `bytes` as the record `<dir>/<fan>/<rest>` in place, unless a
    /// file is there already (`Ok(false)`). Only for records, which a reader
    /// that finds them torn counts as absent (see [`Durability`]); a write
    /// that fails removes what it wrote.
    fn create_record(&self, dir: &FanOut, fan: &str, rest: &str, bytes: &[u8]) -> Result<bool> {
        let to = Path::new(fan).join(rest);
        let failed = |err| Error::io(format!("writing the record {fan}{rest}"))(err);
        let mut options = cap_std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        let created = in_fan_dir(
            dir,
            fan,
            |err: &io::Error| err.kind() == io::ErrorKind::NotFound,
            || dir.open_with(&to, &options),
        )?;
        let file = match created {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
            Err(err) => return Err(failed(err)),
        };
        if let Err(err) = file.into_std().write_all(bytes) {
            let _ = dir.remove_file(&to);
            return Err(failed(err));
        }
        Ok(true)
    }
}

/// Runs `attempt`, which puts something in `dir/fan`, and once more after
/// creating that fan-out directory if it failed for want of it (`missing`
/// says which errors mean that): the directory almost always exists, so
/// trying first saves a `mkdir` per stored artifact (except in a store this
/// process created, where it is made first: see `fan_out`).
fn in_fan_dir<T, E>(
    dir: &FanOut,
    fan: &str,
    missing: impl Fn(&E) -> bool,
    attempt: impl Fn() -> std::result::Result<T, E>,
) -> Result<std::result::Result<T, E>> {
    dir.prepare(fan)?;
    match attempt() {
        Err(err) if missing(&err) => {
            ensure_dir(dir, fan)?;
            Ok(attempt())
        }
        other => Ok(other),
    }
}

/// Removes what processes that no longer exist left in `tmp/` (scratch
/// directories and half-written files of a killed run). Nothing in the store
/// refers to them. Entries of live processes, and names weir did not make,
/// are left alone.
fn sweep_abandoned(tmp: &Dir) {
    let Ok(entries) = tmp.entries() else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(temp_owner) else {
            continue;
        };
        if pid != std::process::id() && !process_alive(pid) {
            let _ = tmp.remove_dir_all(&name).or_else(|_| tmp.remove_file(&name));
        }
    }
}

/// The process id inside a name made by [`Store::temp_name`]: `what-PID-NANOS-N`.
fn temp_owner(name: &str) -> Option<u32> {
    let mut parts = name.rsplitn(4, '-');
    let (_n, _nanos, pid) = (parts.next()?, parts.next()?, parts.next()?);
    parts.next()?;
    pid.parse().ok()
}

/// Whether a process with this id exists; `true` where that cannot be told.
fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") { Path::new("/proc").join(pid.to_string()).exists() } else { true }
}

/// Calls `visit(digest, path)` for each entry of a fanned-out store
/// directory (`ab/cdef…`) named by a digest; other names are skipped.
fn for_each_digest(dir: &Dir, mut visit: impl FnMut(Digest, PathBuf)) -> Result<()> {
    let context = || "listing the store".to_owned();
    for fan in dir.entries().map_err(|e| Error::io(context())(e))? {
        let fan = fan.map_err(|e| Error::io(context())(e))?.file_name();
        let Ok(sub) = dir.open_dir(&fan) else { continue };
        for entry in sub.entries().map_err(|e| Error::io(context())(e))? {
            let name = entry.map_err(|e| Error::io(context())(e))?.file_name();
            if let Ok(digest) = Digest::parse(&format!("{}{}", fan.to_string_lossy(), name.to_string_lossy())) {
                visit(digest, Path::new(&fan).join(&name));
            }
        }
    }
    Ok(())
}

/// Splits a digest's hex into a two-digit fan-out directory and the rest.
fn split(digest: &Digest) -> (String, String) {
    let hex = digest.hex();
    (hex[..2].to_owned(), hex[2..].to_owned())
}

/// Whether `dir` holds an entry at the digest-named `path`: one `statx`,
/// where cap-std's `symlink_metadata` opens, stats and closes (a reused
/// step checks every artifact of its entry). Only for the store's own
/// `FAN/REST` paths, which are hex digits and cannot leave `dir`.
fn has_entry(dir: &Dir, path: &Path) -> bool {
    rustix::fs::statat(dir, path, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).is_ok()
}

/// Renames `from_dir/from` to the digest-named `to` under `dir`: one
/// `renameat` where cap-std's opens the target's parent first. `from` must
/// be a single name (a temporary or an output's, made or checked by weir);
/// anything else goes through cap-std's checks.
fn rename_to_digest(from_dir: &Dir, from: &Path, dir: &Dir, to: &Path) -> io::Result<()> {
    match single_name(from) {
        true => Ok(rustix::fs::renameat(from_dir, from, dir, to)?),
        false => from_dir.rename(from, dir, to),
    }
}

/// Hard-links the digest-named `from` under `dir` as `to` in `to_dir`: one
/// `linkat` where cap-std's opens the source's parent first. Same
/// restriction on `to` as `from` of [`rename_to_digest`].
fn link_from_digest(dir: &Dir, from: &Path, to_dir: &Dir, to: &Path) -> io::Result<()> {
    match single_name(to) {
        true => Ok(rustix::fs::linkat(dir, from, to_dir, to, rustix::fs::AtFlags::empty())?),
        false => dir.hard_link(from, to_dir, to),
    }
}

/// Whether `path` is one plain name (no separator, not `.` or `..`).
fn single_name(path: &Path) -> bool {
    let mut components = path.components();
    matches!((components.next(), components.next()), (Some(std::path::Component::Normal(_)), None))
}

/// Reads the small file at the digest-named `path` under `dir` (a cache
/// entry): open, one read, close, without the size queries `fs::read`
/// makes. A short read of a regular file is its end; were it not, the
/// entry would not decode and would count as absent (the step runs again).
/// Same restriction on `path` as [`has_entry`].
fn read_small(dir: &Dir, path: &Path) -> io::Result<Vec<u8>> {
    const FIRST_READ: usize = 4096;
    let mut file = open_stored(dir, path)?;
    let mut bytes = vec![0; FIRST_READ];
    let read = loop {
        match file.read(&mut bytes) {
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            other => break other?,
        }
    };
    bytes.truncate(read);
    if read == FIRST_READ {
        file.read_to_end(&mut bytes)?;
    }
    Ok(bytes)
}

/// Opens the store's own file `path` (digest-named, beneath `dir`) for
/// reading: one `openat`, not following a symlink in its place, where
/// cap-std's `open` resolves the path a component at a time.
fn open_stored(dir: &Dir, path: &Path) -> io::Result<std::fs::File> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::openat(dir, path, OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW, Mode::empty())?;
    Ok(std::fs::File::from(fd))
}

fn ensure_dir(dir: &Dir, name: &str) -> Result<()> {
    match dir.create_dir(name) {
        Err(err) if err.kind() != io::ErrorKind::AlreadyExists => {
            Err(Error::io(format!("creating store directory {name}"))(err))
        }
        _ => Ok(()),
    }
}

/// Makes an open file read-only through its handle (`fchmod`; changing it
/// by name would open it again).
fn make_read_only(file: &std::fs::File) -> io::Result<()> {
    set_read_only(file, file.metadata()?.permissions())
}

/// [`make_read_only`] of a file whose permissions `perms` the caller has.
fn set_read_only(file: &std::fs::File, mut perms: std::fs::Permissions) -> io::Result<()> {
    perms.set_readonly(true);
    file.set_permissions(perms)
}

/// Hashes an open file. A small one is read whole into a buffer of its
/// size (a fixed streaming buffer would cost more to allocate and zero than
/// the file to read); a large one is memory-mapped and hashed on all cores.
fn hash_file(file: &std::fs::File) -> io::Result<Digest> {
    hash_file_of_len(file, file.metadata()?.len())
}

/// [`hash_file`] of a file whose length `len` the caller already has.
fn hash_file_of_len(file: &std::fs::File, len: u64) -> io::Result<Digest> {
    let mut hasher = blake3::Hasher::new();
    if len >= MAP_AT {
        // SAFETY: the file is private to the store's scratch area (an output
        // of a step that has ended, a log, an import's copy), so nothing
        // truncates or rewrites it while it is mapped.
        let map = unsafe { memmap2::Mmap::map(file)? };
        hasher.update_rayon(&map);
    } else {
        // Read with the length known (`read_to_end` would ask for it again,
        // with a `statx` and an `lseek`).
        let mut bytes = vec![0; usize::try_from(len).map_err(io::Error::other)?];
        (&mut &*file).read_exact(&mut bytes)?;
        hasher.update(&bytes);
    }
    Ok(hasher.finalize().into())
}

#[cfg(test)]
mod tests;
