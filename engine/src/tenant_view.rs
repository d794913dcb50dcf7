//! One tenant's view of a workspace: its runs, and the artifacts its runs
//! imported, produced or logged. A service that serves many tenants reads
//! through a view, so it cannot show one tenant another's runs or bytes by
//! mistake: what belongs to another tenant is "not found", exactly like
//! what does not exist.

use std::io::Write;
use std::path::Path;

use crate::history::{
    Comparison, Explanation, History, LineageNode, MetricRow, RunDetail, RunFilter, RunSummary, StepRecord,
};
use crate::{Artifact, DEFAULT_TENANT, Digest, Error, OutputKind, Result, Store, TreeEntry};

/// What one tenant may read of a workspace. Made by
/// [`Engine::tenant`](crate::Engine::tenant), or with [`TenantView::new`]
/// from a store and a history opened without an engine.
///
/// Runs are named as the CLI names them: a full id, a unique prefix of one,
/// or `last`. The default tenant (the operator) reads every artifact, and
/// its own runs.
#[derive(Clone, Copy)]
pub struct TenantView<'a> {
    tenant: &'a str,
    store: &'a Store,
    history: &'a History,
}

impl<'a> TenantView<'a> {
    /// The view of `tenant` of `store` and `history` (one workspace's).
    pub fn new(tenant: &'a str, store: &'a Store, history: &'a History) -> Self {
        Self { tenant, store, history }
    }

    /// The tenant.
    pub fn tenant(&self) -> &str {
        self.tenant
    }

    /// The tenant's runs that `filter` admits, newest first.
    pub fn runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>> {
        self.history.runs(self.tenant, filter)
    }

    /// The id of the tenant's run named by `run`.
    pub fn run_id(&self, run: &str) -> Result<String> {
        self.history.resolve_run(self.tenant, run)
    }

    /// The tenant's run named by `run`, with every step.
    pub fn run(&self, run: &str) -> Result<RunDetail> {
        self.history.run_detail(&self.run_id(run)?)
    }

    /// Step `step` of the tenant's run named by `run`.
    pub fn step(&self, run: &str, step: &str) -> Result<StepRecord> {
        self.history.step_record(&self.run_id(run)?, step)
    }

    /// Every value of every metric of the tenant's run named by `run`, by
    /// `STEP.METRIC`, in order (a reused step's are those of the run that
    /// executed it).
    pub fn metric_series(&self, run: &str) -> Result<std::collections::BTreeMap<String, crate::MetricSeries>> {
        self.history.metric_series(&self.run_id(run)?)
    }

    /// The tenant's runs named by `runs` side by side: the parameters that
    /// differ, each metric's last and best value, and for each step whether
    /// its result is the first run's and, where not, why.
    pub fn compare(&self, runs: &[&str]) -> Result<Comparison> {
        let mut details = Vec::new();
        let mut series = Vec::new();
        for run in runs {
            let detail = self.run(run)?;
            series.push(self.metric_series(&detail.summary.id)?);
            details.push(detail);
        }
        if details.is_empty() {
            return Err(Error::History("name at least one run to compare".into()));
        }
        self.history.compare(&details, &series)
    }

    /// Why `step` ran or was reused in the tenant's run named by `run`.
    pub fn explain(&self, run: &str, step: &str) -> Result<Explanation> {
        self.history.explain(&self.run_id(run)?, step)
    }

    /// The tenant's runs with their parameters and final metric values.
    pub fn metrics(&self, filter: &RunFilter, metric: Option<&str>) -> Result<Vec<MetricRow>> {
        self.history.metrics_table(self.tenant, filter, metric)
    }

    /// The chain of the tenant's steps and inputs that produced `digest`.
    pub fn lineage(&self, digest: &Digest) -> Result<Vec<LineageNode>> {
        self.owned(digest)?;
        self.history.lineage(self.tenant, digest)
    }

    /// The tenant's artifact named by `text`: a digest, or a unique prefix
    /// of one (`blake3:87d6089a`).
    pub fn artifact(&self, text: &str) -> Result<Digest> {
        if let Ok(digest) = Digest::parse(text) {
            self.owned(&digest)?;
            return Ok(digest);
        }
        let mut matches = Vec::new();
        for digest in self.store.digests_with_prefix(text)? {
            if self.holds(&digest)? {
                matches.push(digest);
            }
        }
        match matches.as_slice() {
            [] => Err(Error::NotInHistory(format!("no artifact in the store starts with `{text}`"))),
            [digest] => Ok(*digest),
            many => {
                let listed: Vec<String> = many.iter().take(5).map(ToString::to_string).collect();
                let more = if many.len() > 5 { format!(" and {} more", many.len() - 5) } else { String::new() };
                Err(Error::NotInHistory(format!(
                    "`{text}` is ambiguous: it starts {} artifacts ({}{more}); give more digits",
                    many.len(),
                    listed.join(", ")
                )))
            }
        }
    }

    /// Whether artifact `digest` is a file or a directory.
    pub fn kind_of(&self, digest: &Digest) -> Result<OutputKind> {
        self.owned(digest)?;
        self.store.kind_of(digest).ok_or(Error::ArtifactNotFound { digest: *digest })
    }

    /// The bytes of file artifact `digest`.
    pub fn read_file(&self, digest: &Digest) -> Result<Vec<u8>> {
        self.owned(digest)?;
        self.store.read_file(digest)
    }

    /// File artifact `digest`, opened for reading.
    pub fn open_file(&self, digest: &Digest) -> Result<std::fs::File> {
        self.owned(digest)?;
        self.store.open_file(digest)
    }

    /// Writes file artifact `digest` to `sink`, streamed.
    pub fn write_file_to(&self, digest: &Digest, sink: &mut impl Write) -> Result<()> {
        self.owned(digest)?;
        self.store.write_file_to(digest, sink)
    }

    /// The entries of directory artifact `digest`.
    pub fn list_dir(&self, digest: &Digest) -> Result<Vec<TreeEntry>> {
        self.owned(digest)?;
        self.store.list_dir(digest)
    }

    /// The artifact at `path` inside the tenant's directory artifact `digest`.
    pub fn lookup(&self, digest: &Digest, path: &str) -> Result<Artifact> {
        self.owned(digest)?;
        self.store.lookup(digest, path)
    }

    /// Copies artifact `digest` out of the store to `dest`.
    pub fn export(&self, digest: &Digest, dest: &Path) -> Result<OutputKind> {
        self.owned(digest)?;
        self.store.export(digest, dest)
    }

    /// Whether the tenant may read `digest`: the operator reads anything,
    /// a tenant what its runs imported, produced or logged.
    fn holds(&self, digest: &Digest) -> Result<bool> {
        Ok(self.tenant == DEFAULT_TENANT || self.history.tenant_knows(self.tenant, digest)?)
    }

    /// Refuses a digest the tenant may not read, as if it were not stored.
    fn owned(&self, digest: &Digest) -> Result<()> {
        if self.holds(digest)? { Ok(()) } else { Err(Error::ArtifactNotFound { digest: *digest }) }
    }
}
