//! A team's shared cache: a remote store of cache entries (a `weir serve`
//! server) that a run looks in when its own store has no result for a step,
//! and that it sends the results of the steps it executed to. Nothing that
//! comes from a remote is trusted: every object is stored only if its bytes
//! hash to the digest the entry names, or the step executes here instead.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::store::{CacheEntry, Store};
use crate::{Artifact, Digest, OutputKind};

/// Why a remote could not answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RemoteError {
    /// It could not be reached: the run goes on without it.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// It answered with an error.
    #[error("{0}")]
    Refused(String),
}

/// A cache entry as it crosses to and from a remote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RemoteEntry {
    /// The step's outputs by name.
    pub outputs: BTreeMap<String, Artifact>,
    /// Its stdout.
    pub stdout: Digest,
    /// Its stderr.
    pub stderr: Digest,
    /// The last value of each metric it reported.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// The run that executed it (in the workspace that sent it).
    pub run_id: String,
    /// When it was computed (seconds since the Unix epoch).
    #[serde(default)]
    pub created: Option<f64>,
}

impl From<CacheEntry> for RemoteEntry {
    fn from(entry: CacheEntry) -> Self {
        // Stamps describe this store's files: they stay here.
        let CacheEntry { outputs, stdout, stderr, metrics, run_id, created, checked: _ } = entry;
        Self { outputs, stdout, stderr, metrics, run_id, created }
    }
}

impl From<RemoteEntry> for CacheEntry {
    fn from(entry: RemoteEntry) -> Self {
        let RemoteEntry { outputs, stdout, stderr, metrics, run_id, created } = entry;
        Self { outputs, stdout, stderr, metrics, run_id, created, checked: BTreeMap::new() }
    }
}

impl RemoteEntry {
    fn artifacts(&self) -> impl Iterator<Item = Artifact> + '_ {
        let logs = [self.stdout, self.stderr].map(|digest| Artifact { kind: OutputKind::File, digest });
        self.outputs.values().copied().chain(logs)
    }
}

/// Where shared cache entries live. Keys and objects are opaque to it: an
/// object is the bytes of a file, or the record of a directory (whose
/// entries are objects too). Implementations must be cheap to call from
/// several threads.
pub trait CacheRemote: Send + Sync {
    /// Where it is, for messages (`http://cache.example:8640`).
    fn describe(&self) -> String;
    /// The entry recorded under `key`, if any.
    fn entry(&self, key: &Digest) -> Result<Option<RemoteEntry>, RemoteError>;
    /// The bytes of object `digest`.
    fn object(&self, digest: &Digest) -> Result<Box<dyn Read + Send>, RemoteError>;
    /// Whether it holds object `digest` already.
    fn has_object(&self, digest: &Digest) -> Result<bool, RemoteError>;
    /// Stores object `digest`, `size` bytes read from what `open` opens
    /// (each time it is called: a remote may send the bytes more than once).
    fn put_object(
        &self,
        digest: &Digest,
        size: u64,
        open: &dyn Fn() -> std::io::Result<Box<dyn Read + Send>>,
    ) -> Result<(), RemoteError>;
    /// Records `entry` under `key` (every object it names was sent first).
    fn put_entry(&self, key: &Digest, entry: &RemoteEntry) -> Result<(), RemoteError>;
    /// Records the cache keys of run `run_id`'s steps, for `weir pull RUN`.
    fn put_run(&self, run_id: &str, keys: &[Digest]) -> Result<(), RemoteError>;
    /// The cache keys recorded for run `run_id`.
    fn run_keys(&self, run_id: &str) -> Result<Vec<Digest>, RemoteError>;
}

/// What moving entries to or from a remote did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Transfer {
    /// Entries moved.
    pub entries: u64,
    /// Objects moved (those the other side had already are not counted).
    pub objects: u64,
    /// Bytes of those objects.
    pub bytes: u64,
    /// Entries that could not be moved, each with why.
    pub failed: Vec<String>,
}

/// Why pulling an entry failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PullError {
    #[error("the shared cache at {0}: {1}")]
    Remote(String, RemoteError),
    #[error("the shared cache's result was refused: {0}")]
    Untrusted(String),
    #[error(transparent)]
    Store(#[from] crate::Error),
}

/// Copies the entry recorded under `key` on `remote`, with every object it
/// names that `store` lacks, into `store`; `None` when the remote has none.
pub(crate) fn pull(
    store: &Store,
    remote: &dyn CacheRemote,
    key: &Digest,
    moved: &Counters,
) -> Result<Option<CacheEntry>, PullError> {
    let located = |err| PullError::Remote(remote.describe(), err);
    let Some(entry) = remote.entry(key).map_err(located)? else { return Ok(None) };
    for artifact in entry.artifacts() {
        pull_object(store, remote, artifact, moved, 0)?;
    }
    let cached = CacheEntry::from(entry);
    store.cache_put(key, &cached)?;
    moved.entries.fetch_add(1, Ordering::Relaxed);
    Ok(Some(cached))
}

/// Directories nest at most this deep in what is pulled (a remote cannot
/// make a client recurse without end).
const MAX_DEPTH: usize = 256;
/// The largest directory record read from a remote (millions of entries).
const MAX_TREE_RECORD: u64 = 256 << 20;

fn pull_object(
    store: &Store,
    remote: &dyn CacheRemote,
    artifact: Artifact,
    moved: &Counters,
    depth: usize,
) -> Result<(), PullError> {
    if store.has_object(artifact.kind, &artifact.digest) {
        return Ok(());
    }
    if depth > MAX_DEPTH {
        return Err(PullError::Untrusted(format!("directories nest deeper than {MAX_DEPTH}")));
    }
    let located = |err| PullError::Remote(remote.describe(), err);
    let mut reader = CountingReader { inner: remote.object(&artifact.digest).map_err(located)?, read: 0 };
    match artifact.kind {
        OutputKind::File => {
            if let Err(found) = store.receive_file(&artifact.digest, &mut reader)? {
                return Err(PullError::Untrusted(format!("{} arrived as bytes hashing to {found}", artifact.digest)));
            }
        }
        OutputKind::Dir => {
            let mut bytes = Vec::new();
            // A tree record is small; a remote cannot make the client hold more.
            (&mut reader)
                .take(MAX_TREE_RECORD)
                .read_to_end(&mut bytes)
                .map_err(|err| located(RemoteError::Unreachable(err.to_string())))?;
            let tree = Store::check_tree(&artifact.digest, &bytes)
                .map_err(|why| PullError::Untrusted(format!("directory {}: {why}", artifact.digest)))?;
            for entry in tree.entries() {
                pull_object(store, remote, Artifact { kind: entry.kind, digest: entry.digest }, moved, depth + 1)?;
            }
            // Stored last: a directory in the store always has its entries.
            store.publish_tree_record(&artifact.digest, &bytes)?;
        }
    }
    moved.objects.fetch_add(1, Ordering::Relaxed);
    moved.bytes.fetch_add(reader.read, Ordering::Relaxed);
    Ok(())
}

/// Sends the entry recorded under `key` in `store`, and every object it
/// names that `remote` lacks; false when `store` has no such entry.
pub(crate) fn push(store: &Store, remote: &dyn CacheRemote, key: &Digest, moved: &Counters) -> Result<bool, String> {
    let Some(entry) = store.cache_get(key).map(RemoteEntry::from) else { return Ok(false) };
    for artifact in entry.artifacts() {
        push_object(store, remote, artifact, moved)?;
    }
    remote.put_entry(key, &entry).map_err(|err| err.to_string())?;
    moved.entries.fetch_add(1, Ordering::Relaxed);
    Ok(true)
}

/// Sends an object, a directory's entries before its record.
fn push_object(store: &Store, remote: &dyn CacheRemote, artifact: Artifact, moved: &Counters) -> Result<(), String> {
    if moved.is_known(&artifact.digest) {
        return Ok(());
    }
    if remote.has_object(&artifact.digest).map_err(|err| err.to_string())? {
        moved.know(artifact.digest);
        return Ok(());
    }
    if artifact.kind == OutputKind::Dir {
        for entry in store.list_dir(&artifact.digest).map_err(|err| err.to_string())? {
            push_object(store, remote, Artifact { kind: entry.kind, digest: entry.digest }, moved)?;
        }
    }
    let failed = |err: crate::Error| err.to_string();
    // A tree record is small: it is read once, for its size and to send.
    let record = match artifact.kind {
        OutputKind::File => None,
        OutputKind::Dir => {
            let mut record = Vec::new();
            let mut reader = store.object_reader(artifact.kind, &artifact.digest).map_err(failed)?;
            reader.read_to_end(&mut record).map_err(|err| err.to_string())?;
            Some(record)
        }
    };
    let size = match &record {
        Some(record) => record.len() as u64,
        None => store.artifact_size(&artifact).map_err(failed)?,
    };
    let open = || -> std::io::Result<Box<dyn Read + Send>> {
        match &record {
            Some(record) => Ok(Box::new(std::io::Cursor::new(record.clone()))),
            None => store
                .object_reader(artifact.kind, &artifact.digest)
                .map_err(|err| std::io::Error::other(err.to_string())),
        }
    };
    remote.put_object(&artifact.digest, size, &open).map_err(|err| err.to_string())?;
    moved.know(artifact.digest);
    moved.objects.fetch_add(1, Ordering::Relaxed);
    moved.bytes.fetch_add(size, Ordering::Relaxed);
    Ok(())
}

/// Counts what a transfer moved, from any thread.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    entries: AtomicU64,
    objects: AtomicU64,
    bytes: AtomicU64,
    failed: Mutex<Vec<String>>,
    /// Objects known to be on the other side already.
    known: Mutex<std::collections::HashSet<Digest>>,
}

impl Counters {
    fn is_known(&self, digest: &Digest) -> bool {
        self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains(digest)
    }

    fn know(&self, digest: Digest) {
        self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(digest);
    }

    /// Notes an entry that could not be moved.
    pub(crate) fn failed(&self, why: String) {
        self.failed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(why);
    }

    /// What was moved.
    pub(crate) fn transfer(&self) -> Transfer {
        Transfer {
            entries: self.entries.load(Ordering::Relaxed),
            objects: self.objects.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            failed: self.failed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone(),
        }
    }
}

/// A run's use of a remote: what it moved, and whether the remote has
/// stopped answering (then the run goes on without it).
pub(crate) struct RemoteUse<'r> {
    pub remote: &'r dyn CacheRemote,
    down: AtomicBool,
    pub pulled: Counters,
    pub pushed: Counters,
}

impl<'r> RemoteUse<'r> {
    pub(crate) fn new(remote: &'r dyn CacheRemote) -> Self {
        Self { remote, down: AtomicBool::new(false), pulled: Counters::default(), pushed: Counters::default() }
    }

    /// Whether the remote is still worth asking.
    pub(crate) fn is_up(&self) -> bool {
        !self.down.load(Ordering::Relaxed)
    }

    /// Notes that the remote did not answer; true the first time.
    pub(crate) fn went_down(&self) -> bool {
        !self.down.swap(true, Ordering::Relaxed)
    }
}

/// Counts the bytes read through it.
struct CountingReader {
    inner: Box<dyn Read + Send>,
    read: u64,
}

impl Read for CountingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}
