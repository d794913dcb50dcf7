//! Tenants: who a run belongs to and what each may use: how many steps at
//! once, how much memory across its running steps, how many bytes of the
//! store, and the largest limits its steps may ask for.
//!
//! A tenant's cache keys, runs and logs are its own (the tenant is part of
//! every cache key, and history queries are filtered by it); identical
//! content is still stored once on disk.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::{Artifact, Digest, Limits, StepErrorKind};

/// The tenant of runs that name none: the operator's own namespace.
pub const DEFAULT_TENANT: &str = "default";

/// What one tenant may use. The default bounds nothing.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TenantQuota {
    /// Steps of the tenant that may execute at once, across all its runs.
    pub concurrent_steps: usize,
    /// Bytes of memory limits (`limits.memory`) its executing steps may add up to.
    pub memory: u64,
    /// Bytes of step outputs it may hold in the store; `None` for no quota.
    pub store_bytes: Option<u64>,
    /// The largest limits its steps may ask for; steps that leave a limit
    /// unset get the engine's default lowered to this.
    pub max_limits: Limits,
    /// The only host directory its pipelines' files (manifests, modules,
    /// inputs, exports) may be in; `None` for `WORKSPACE/tenants/NAME`.
    /// Ignored for the default tenant, the operator, who may name any path.
    pub root: Option<PathBuf>,
}

impl Default for TenantQuota {
    fn default() -> Self {
        Self {
            concurrent_steps: usize::MAX,
            memory: u64::MAX,
            store_bytes: None,
            max_limits: Limits::UNBOUNDED,
            root: None,
        }
    }
}

impl TenantQuota {
    /// The tenants of a tenants file (`tenants.toml`), by name:
    ///
    /// ```toml
    /// [tenants.alice]
    /// concurrent_steps = 2
    /// memory = "2GiB"
    /// store = "10GiB"
    /// root = "/srv/weir/alice"
    /// limits = { memory = "256MiB", timeout = "1m" }
    /// ```
    ///
    /// A relative `root` is relative to the file's directory.
    pub fn from_file(
        path: &std::path::Path,
    ) -> Result<std::collections::BTreeMap<String, TenantQuota>, crate::ValidationError> {
        crate::manifest::load_tenants(path)
    }

    /// At most `steps` of the tenant's steps execute at once.
    pub fn concurrent_steps(mut self, steps: usize) -> Self {
        self.concurrent_steps = steps;
        self
    }

    /// Its executing steps' memory limits add up to at most `bytes`.
    pub fn memory(mut self, bytes: u64) -> Self {
        self.memory = bytes;
        self
    }

    /// It holds at most `bytes` of inputs, outputs and logs in the store.
    pub fn store_bytes(mut self, bytes: u64) -> Self {
        self.store_bytes = Some(bytes);
        self
    }

    /// Its steps ask for at most these limits.
    pub fn max_limits(mut self, limits: Limits) -> Self {
        self.max_limits = limits;
        self
    }

    /// Its pipelines' files lie beneath `root`.
    pub fn root(mut self, root: impl Into<PathBuf>) -> Self {
        self.root = Some(root.into());
        self
    }
}

/// A tenant as a run sees it: its name and its quota.
#[derive(Debug, Clone)]
pub(crate) struct Tenant {
    pub(crate) name: Arc<str>,
    pub(crate) quota: Arc<TenantQuota>,
}

impl Tenant {
    /// Whether this is the operator, who may name any host path.
    pub(crate) fn is_operator(&self) -> bool {
        &*self.name == DEFAULT_TENANT
    }
}

/// The directory that holds the default roots of tenants, in the workspace.
pub(crate) const TENANT_ROOTS: &str = "tenants";

/// The artifacts a tenant holds in the store and their bytes, against its
/// quota. One per tenant per engine, shared by all its runs (so concurrent
/// runs cannot each spend what is left), charged as artifacts are stored; an
/// artifact the tenant already holds is not charged again.
#[derive(Debug)]
pub(crate) struct StoreAccount {
    tenant: Arc<str>,
    /// Bytes it may hold; an operator may change it while runs go on.
    quota: AtomicU64,
    held: Mutex<Held>,
}

#[derive(Debug)]
struct Held {
    bytes: u64,
    digests: HashSet<Digest>,
}

impl StoreAccount {
    /// An account of `tenant` holding `digests`, of `bytes` in all.
    pub(crate) fn new(tenant: Arc<str>, quota: u64, digests: HashSet<Digest>, bytes: u64) -> Self {
        Self { tenant, quota: AtomicU64::new(quota), held: Mutex::new(Held { bytes, digests }) }
    }

    fn held(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn quota(&self) -> u64 {
        self.quota.load(Ordering::Relaxed)
    }

    /// Changes the quota: later charges are held to `bytes` (what is held
    /// already stays, even when over it).
    pub(crate) fn set_quota(&self, bytes: u64) {
        self.quota.store(bytes, Ordering::Relaxed);
    }

    /// Bytes still free under the quota.
    pub(crate) fn remaining(&self) -> u64 {
        self.quota().saturating_sub(self.held().bytes)
    }

    /// Charges the artifacts of `artifacts` the tenant does not hold yet
    /// (`size` measures one), all or none; the inner `Err` says why they do
    /// not fit.
    pub(crate) fn charge(
        &self,
        artifacts: &[Artifact],
        size: impl Fn(&Artifact) -> crate::Result<u64>,
    ) -> crate::Result<Result<(), StepErrorKind>> {
        let mut held = self.held();
        let mut new = Vec::new();
        let mut needed = 0u64;
        for artifact in artifacts {
            if !held.digests.contains(&artifact.digest) && !new.contains(&artifact.digest) {
                needed = needed.saturating_add(size(artifact)?);
                new.push(artifact.digest);
            }
        }
        let quota = self.quota();
        if held.bytes.saturating_add(needed) > quota {
            let tenant = self.tenant.to_string();
            return Ok(Err(StepErrorKind::StoreQuota { tenant, needed, used: held.bytes, quota }));
        }
        held.bytes += needed;
        held.digests.extend(new);
        Ok(Ok(()))
    }
}

/// Checks a tenant name: letters, digits, `-` and `_`, at most 64 characters.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    let valid =
        !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if valid { Ok(()) } else { Err("a tenant name is 1 to 64 letters, digits, `-` or `_`".to_owned()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OutputKind;

    fn file(byte: u8) -> Artifact {
        Artifact { kind: OutputKind::File, digest: Digest::of(&[byte]) }
    }

    #[test]
    fn store_account_charges_each_artifact_once_and_refuses_what_does_not_fit() {
        let account = StoreAccount::new("t".into(), 100, HashSet::from([file(0).digest]), 40);
        let size = |_: &Artifact| Ok(30);
        account.charge(&[file(0), file(1), file(1), file(2)], size).unwrap().unwrap();
        assert_eq!(account.remaining(), 0, "40 held, then two new artifacts of 30 (the known one is free)");
        account.charge(&[file(1)], size).unwrap().expect("held already: nothing to charge");
        let err = account.charge(&[file(3)], size).unwrap().unwrap_err();
        assert_eq!(err, StepErrorKind::StoreQuota { tenant: "t".into(), needed: 30, used: 100, quota: 100 });
        assert!(!account.held().digests.contains(&file(3).digest), "what did not fit is not held");
    }

    #[test]
    fn tenant_names() {
        assert!(check_name("team-a_1").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("../other").is_err());
        assert!(check_name(&"x".repeat(65)).is_err());
    }
}
