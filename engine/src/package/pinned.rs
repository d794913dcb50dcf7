//! Packages named by registry reference (`uses =
//! "registry.example.com/ml/upper:1.2"`): each tag is pinned to a manifest
//! digest in the lock file next to the pipeline's manifest (`weir.lock`),
//! and each pinned package is kept in the workspace by digest, so a run
//! with a lock file and a warm workspace needs no registry at all.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::layout::MAX_DOCUMENT_BYTES;
use super::{Package, Packed, Sha256Digest, TrustPolicy, signature_path};
use crate::host_files::{HostFiles, HostKind};

/// The lock file's name, next to the top-level manifest.
pub const LOCK_FILE: &str = "weir.lock";

/// Fetches packages from registries (the `weir` binary does it over the
/// network; an embedder may plug in its own).
pub trait Fetch: Send + Sync {
    /// The package `reference` names (by tag or by `@sha256:` digest).
    fn fetch(&self, reference: &str) -> Result<Packed, String>;

    /// The signature (a `.minisig` text) the registry keeps for the package
    /// with `digest` in `reference`'s repository; `None` when it has none.
    fn signature(&self, reference: &str, digest: &Sha256Digest) -> Result<Option<String>, String> {
        let _ = (reference, digest);
        Ok(None)
    }
}

/// Where a manifest's registry packages come from: the workspace's kept
/// packages, the lock file, and (when given) a registry client.
pub struct Packages {
    dir: PathBuf,
    fetch: Option<Arc<dyn Fetch>>,
    update: bool,
    frozen: bool,
    trust: TrustPolicy,
    /// The lock files written by this resolver (when updating, each is
    /// started afresh, so references no longer used drop out).
    written: Mutex<Vec<PathBuf>>,
}

/// Whether `text` (a `uses` value) names a registry package rather than a
/// path: `HOST/…` where the host has a `.` or a port or is `localhost`.
pub fn is_reference(text: &str) -> bool {
    let Some((host, rest)) = text.split_once('/') else { return false };
    !rest.is_empty() && (host.contains('.') || host.contains(':') || host == "localhost") && !host.starts_with('.')
}

/// The lock file's TOML.
#[derive(serde::Serialize, serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LockFile {
    #[serde(default)]
    packages: BTreeMap<String, Sha256Digest>,
}

const LOCK_HEADER: &str = "# Written by weir: the manifest digest each package reference of the pipeline is pinned to.\n\
                           # Commit it with the pipeline; `weir update` resolves the tags again.\n";

impl Packages {
    /// Packages kept in `dir` (a workspace's `packages/`), fetched by
    /// nobody: a package neither kept nor fetchable is an error.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Packages {
            dir: dir.into(),
            fetch: None,
            update: false,
            frozen: false,
            trust: TrustPolicy::default(),
            written: Mutex::new(Vec::new()),
        }
    }

    /// Fetches what is not kept with `fetch`.
    pub fn fetching(mut self, fetch: Arc<dyn Fetch>) -> Self {
        self.fetch = Some(fetch);
        self
    }

    /// Resolves every tag again, ignoring the lock file and writing it anew
    /// with the references the manifest uses now.
    pub fn updating(mut self) -> Self {
        self.update = true;
        self
    }

    /// Uses only what the lock files pin (or a reference's own digest):
    /// a tag they do not pin is an error, and no lock file is written (a
    /// published pipeline, whose files are fixed).
    pub fn frozen(mut self) -> Self {
        self.frozen = true;
        self
    }

    /// Uses only packages `policy` accepts (see [`TrustPolicy`]).
    pub fn trusting(mut self, policy: TrustPolicy) -> Self {
        self.trust = policy;
        self
    }

    /// Checks `package` against the trust policy. Its signature is the file
    /// beside it (read through `files`); for a registry package (`reference`)
    /// whose kept signature is missing or not accepted, the registry is
    /// asked for its signature, which is then kept.
    pub(crate) fn check_trust(
        &self,
        package: &Package,
        named: &str,
        reference: Option<&str>,
        files: &HostFiles,
    ) -> Result<(), String> {
        if !self.trust.requires_signatures() {
            return Ok(());
        }
        let path = signature_path(&package.source);
        let files = if reference.is_some() { &HostFiles::Ambient } else { files };
        let kept = match files.kind(&path)? {
            Some(HostKind::File) => Some(
                String::from_utf8(files.read_capped(&path, MAX_DOCUMENT_BYTES)?)
                    .map_err(|_| format!("{} is not a minisign signature (not UTF-8)", path.display()))?,
            ),
            _ => None,
        };
        let refused = match self.trust.check(named, &package.digest, kept.as_deref()) {
            Ok(()) => return Ok(()),
            Err(why) => why,
        };
        let (Some(reference), Some(fetch)) = (reference, &self.fetch) else { return Err(refused) };
        match fetch.signature(reference, &package.digest) {
            Ok(Some(fresh)) if Some(&fresh) != kept.as_ref() => {
                self.trust.check(named, &package.digest, Some(&fresh))?;
                // Written beside it and renamed: a reader never sees half of it.
                let partial = path.with_extension(format!("minisig.{}.tmp", std::process::id()));
                std::fs::write(&partial, fresh)
                    .and_then(|()| std::fs::rename(&partial, &path))
                    .map_err(|err| format!("keeping {}: {err}", path.display()))
            }
            Ok(_) => Err(refused),
            Err(why) => Err(format!("{refused} (and asking the registry for its signature failed: {why})")),
        }
    }

    /// The kept archive of the package `reference` names for the manifest
    /// in `manifest_dir`, and the digest it is pinned to: pinned through the
    /// lock file (a new tag is resolved and recorded there), fetched when
    /// not kept.
    pub(crate) fn resolve(&self, reference: &str, manifest_dir: &Path) -> Result<(PathBuf, Sha256Digest), String> {
        let (repository, pinned) = match reference.split_once('@') {
            Some((repository, digest)) => (repository, Some(digest.parse::<Sha256Digest>()?)),
            None => (reference, None),
        };
        let digest = match pinned {
            Some(digest) => digest,
            None => match self.locked(reference, manifest_dir)? {
                Some(digest) => digest,
                None if self.frozen => {
                    return Err(format!(
                        "{reference} is not pinned in {LOCK_FILE} beside the manifest: run or update the pipeline \
                         (which writes its lock file) and publish it with the lock file"
                    ));
                }
                None => {
                    let packed = self.fetched(reference)?;
                    let path = self.keep(&packed)?;
                    self.pin(reference, &packed.digest, manifest_dir)?;
                    return Ok((path, packed.digest));
                }
            },
        };
        let path = self.kept(&digest);
        if !path.is_file() {
            let repository =
                repository.rsplit_once(':').filter(|(_, tag)| !tag.contains('/')).map_or(repository, |r| r.0);
            let packed = self.fetched(&format!("{repository}@{digest}"))?;
            if packed.digest != digest {
                return Err(format!("the registry sent {} for {reference}, pinned to {digest}", packed.digest));
            }
            self.keep(&packed)?;
        }
        Ok((path, digest))
    }

    /// The archive a package with `digest` is kept in.
    fn kept(&self, digest: &Sha256Digest) -> PathBuf {
        self.dir.join(format!("sha256-{}.tar", digest.hex()))
    }

    fn keep(&self, packed: &Packed) -> Result<PathBuf, String> {
        let path = self.kept(&packed.digest);
        std::fs::create_dir_all(&self.dir)
            .and_then(|()| packed.write_archive(&path))
            .map_err(|err| format!("keeping the package in {}: {err}", self.dir.display()))?;
        Ok(path)
    }

    fn fetched(&self, reference: &str) -> Result<Packed, String> {
        let fetch = self.fetch.as_ref().ok_or_else(|| {
            format!("{reference} is not in the workspace, and this engine has no registry client to pull it")
        })?;
        fetch.fetch(reference)
    }

    /// The digest the lock file pins `reference` to (none when updating).
    fn locked(&self, reference: &str, manifest_dir: &Path) -> Result<Option<Sha256Digest>, String> {
        if self.update {
            return Ok(None);
        }
        let _held = self.written.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(read_lock(&manifest_dir.join(LOCK_FILE))?.packages.get(reference).cloned())
    }

    /// Records `reference` → `digest` in the lock file, written beside it
    /// and renamed into place.
    fn pin(&self, reference: &str, digest: &Sha256Digest, manifest_dir: &Path) -> Result<(), String> {
        let mut written = self.written.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let path = manifest_dir.join(LOCK_FILE);
        let afresh = self.update && !written.contains(&path);
        let mut lock = if afresh { LockFile::default() } else { read_lock(&path)? };
        if !afresh && lock.packages.get(reference) == Some(digest) {
            return Ok(());
        }
        written.push(path.clone());
        lock.packages.insert(reference.to_owned(), digest.clone());
        let text = format!("{LOCK_HEADER}{}", toml::to_string(&lock).expect("a lock file serializes"));
        let temp = path.with_extension("lock.tmp");
        std::fs::write(&temp, text)
            .and_then(|()| std::fs::rename(&temp, &path))
            .map_err(|err| format!("writing {}: {err}", path.display()))
    }
}

fn read_lock(path: &Path) -> Result<LockFile, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).map_err(|err| format!("{}: {}", path.display(), err.message())),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(LockFile::default()),
        Err(err) => Err(format!("reading {}: {err}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frozen_resolver_uses_only_pins_and_writes_no_lock_file() {
        let dir = tempfile::tempdir().unwrap();
        let packages = Packages::new(dir.path().join("kept")).frozen();
        let error = packages.resolve("localhost:5000/ml/upper:1.0", dir.path()).unwrap_err();
        assert!(error.contains("is not pinned in weir.lock"), "{error}");
        assert!(!dir.path().join(LOCK_FILE).exists());

        let digest = Sha256Digest::of(b"a manifest");
        let lock = format!("[packages]\n\"localhost:5000/ml/upper:1.0\" = \"{digest}\"\n");
        std::fs::write(dir.path().join(LOCK_FILE), lock).unwrap();
        let error = packages.resolve("localhost:5000/ml/upper:1.0", dir.path()).unwrap_err();
        assert!(error.contains(&format!("localhost:5000/ml/upper@{digest}")), "pulled by its pin: {error}");
    }

    #[test]
    fn registry_references_are_told_from_paths() {
        for reference in ["localhost:5000/ml/upper:1.0", "registry.example.com/upper", "ghcr.io/a/b@sha256:00"] {
            assert!(is_reference(reference), "{reference}");
        }
        for path in ["upper.tar", "packages/upper.tar", "./x.y/upper.tar", "../up/upper.tar", "/abs/upper.tar"] {
            assert!(!is_reference(path), "{path}");
        }
    }
}
