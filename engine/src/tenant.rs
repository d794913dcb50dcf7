//! Tenants: who a run belongs to and what each may use: how many steps at
//! once, how much memory across its running steps, how many bytes of the
//! store, and the largest limits its steps may ask for.
//!
//! A tenant's cache keys, runs and logs are its own (the tenant is part of
//! every cache key, and history queries are filtered by it); identical
//! content is still stored once on disk.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::Limits;

/// The tenant of runs that name none: the operator's own namespace.
pub const DEFAULT_TENANT: &str = "default";

/// What one tenant may use. The default bounds nothing.
#[derive(Debug, Clone, PartialEq)]
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

/// The bytes a tenant holds in the store during a run, against its quota.
#[derive(Debug)]
pub(crate) struct StoreAccount {
    tenant: Arc<str>,
    quota: u64,
    used: AtomicU64,
}

impl StoreAccount {
    pub(crate) fn new(tenant: Arc<str>, quota: u64, used: u64) -> Self {
        Self { tenant, quota, used: AtomicU64::new(used) }
    }

    /// Bytes still free under the quota.
    pub(crate) fn remaining(&self) -> u64 {
        self.quota.saturating_sub(self.used.load(Ordering::Acquire))
    }

    /// Charges `bytes` of new outputs, or says why they do not fit.
    pub(crate) fn charge(&self, bytes: u64) -> Result<(), crate::StepErrorKind> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.quota)
            })
            .map(|_| ())
            .map_err(|used| crate::StepErrorKind::StoreQuota {
                tenant: self.tenant.to_string(),
                needed: bytes,
                used,
                quota: self.quota,
            })
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

    #[test]
    fn store_account_refuses_what_does_not_fit_and_keeps_what_did() {
        let account = StoreAccount::new("t".into(), 100, 40);
        account.charge(60).unwrap();
        let err = account.charge(1).unwrap_err();
        assert_eq!(err, crate::StepErrorKind::StoreQuota { tenant: "t".into(), needed: 1, used: 100, quota: 100 });
    }

    #[test]
    fn tenant_names() {
        assert!(check_name("team-a_1").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("../other").is_err());
        assert!(check_name(&"x".repeat(65)).is_err());
    }
}
