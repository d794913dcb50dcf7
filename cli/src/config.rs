//! The workspace's settings file, `WORKSPACE/config.toml`: defaults that the
//! command line overrides.
//!
//! ```toml
//! executor = "process"   # where steps run: "local" (default), "process" or "slurm"
//!
//! [remote]                # the team's shared cache (a `weir serve` server)
//! url = "http://cache.example:8640"
//! ```
//!
//! Step packages can be required to be signed by a trusted key (see
//! docs/packages.md); a key is a minisign public key file, relative to the
//! workspace, or its base64 line:
//!
//! ```toml
//! [packages]
//! require_signed = true
//! trusted_keys = ["keys/team.pub"]
//! ```
//!
//! The executor may also be a table, with the `slurm` executor's options:
//!
//! ```toml
//! [executor]
//! kind = "slurm"
//! [executor.slurm]
//! partition = "gpu"       # also account, qos, constraint
//! retries = 2             # submissions again of a job the cluster lost
//! poll = "2s"             # how often squeue is asked
//! arrays = true           # a map step's entries as one job array
//! ```

use std::path::Path;

use anyhow::Context;
use serde::Deserialize;

/// The settings file's name, in the workspace directory.
pub(crate) const CONFIG_FILE: &str = "config.toml";

/// What the settings file may set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WorkspaceConfig {
    /// The default executor of `weir run`.
    pub executor: Option<ExecutorSetting>,
    /// The shared cache `weir run` uses unless told `--offline`.
    pub remote: Option<RemoteConfig>,
    /// Which step packages the workspace's pipelines may use.
    #[serde(default)]
    pub packages: PackagesConfig,
}

/// `[packages]`: the workspace's trust policy for step packages.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PackagesConfig {
    /// Refuse a package without a valid signature by a trusted key.
    #[serde(default)]
    pub require_signed: bool,
    /// The trusted minisign public keys: files (relative to the workspace)
    /// or base64 lines.
    #[serde(default)]
    pub trusted_keys: Vec<String>,
}

impl PackagesConfig {
    /// The trust policy it sets; `workspace` is where key files are found.
    pub(crate) fn policy(&self, workspace: &Path) -> anyhow::Result<weir::package::TrustPolicy> {
        let config = workspace.join(CONFIG_FILE);
        if !self.require_signed {
            return Ok(weir::package::TrustPolicy::default());
        }
        if self.trusted_keys.is_empty() {
            anyhow::bail!(
                "{}: packages.require_signed is set, but packages.trusted_keys lists no key to trust",
                config.display()
            );
        }
        let mut policy = weir::package::TrustPolicy::requiring_signatures();
        for (i, key) in self.trusted_keys.iter().enumerate() {
            let field = format!("{}: packages.trusted_keys[{i}]", config.display());
            let path = workspace.join(key);
            let (name, text) = if key.ends_with(".pub") || path.is_file() {
                let text =
                    std::fs::read_to_string(&path).with_context(|| format!("{field}: reading {}", path.display()))?;
                // Named as written: a server's refusals must not show its paths.
                (key.clone(), text)
            } else {
                (format!("packages.trusted_keys[{i}]"), key.clone())
            };
            policy = policy.trust(name, &text).map_err(|why| anyhow::anyhow!("{field}: {why}"))?;
        }
        Ok(policy)
    }
}

/// `[remote]`: the shared cache (its token comes from `--token` or `WEIR_TOKEN`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RemoteConfig {
    /// The server's URL.
    pub url: String,
}

/// `executor = "NAME"`, or an `[executor]` table.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum ExecutorSetting {
    /// Just the executor's name.
    Name(String),
    /// The executor's name and options.
    Table(ExecutorTable),
}

/// `[executor]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExecutorTable {
    /// `local`, `process` or `slurm`.
    pub kind: Option<String>,
    /// `[executor.slurm]`.
    #[serde(default)]
    pub slurm: SlurmTable,
}

/// `[executor.slurm]`: what every Slurm job of the workspace carries.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SlurmTable {
    pub partition: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    pub constraint: Option<String>,
    pub retries: Option<u32>,
    pub poll: Option<String>,
    pub arrays: Option<bool>,
}

impl ExecutorSetting {
    /// The executor's name, if the setting gives one.
    pub(crate) fn kind(&self) -> Option<&str> {
        match self {
            ExecutorSetting::Name(name) => Some(name),
            ExecutorSetting::Table(table) => table.kind.as_deref(),
        }
    }

    /// The `[executor.slurm]` options, if the setting is a table.
    pub(crate) fn slurm(&self) -> Option<&SlurmTable> {
        match self {
            ExecutorSetting::Name(_) => None,
            ExecutorSetting::Table(table) => Some(&table.slurm),
        }
    }
}

impl SlurmTable {
    /// `options` with what this table sets.
    pub(crate) fn apply(&self, mut options: weir::SlurmOptions) -> Result<weir::SlurmOptions, String> {
        let request = weir::SlurmRequest {
            partition: self.partition.clone(),
            account: self.account.clone(),
            qos: self.qos.clone(),
            constraint: self.constraint.clone(),
        };
        request.check().map_err(|(option, why)| format!("executor.slurm.{option}: {why}"))?;
        options.request = request.over(&options.request);
        if let Some(retries) = self.retries {
            options.retries = retries;
        }
        if let Some(arrays) = self.arrays {
            options.arrays = arrays;
        }
        if let Some(poll) = &self.poll {
            options.poll = weir::text::parse_duration(poll).map_err(|why| format!("executor.slurm.poll: {why}"))?;
        }
        Ok(options)
    }
}

impl WorkspaceConfig {
    /// The settings of `workspace`, or the defaults when it has no file
    /// (or is no directory, which opening it then reports).
    pub(crate) fn load(workspace: &Path) -> anyhow::Result<Self> {
        if !workspace.is_dir() {
            return Ok(Self::default());
        }
        let path = workspace.join(CONFIG_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
        };
        toml::from_str(&text).with_context(|| format!("{}: invalid settings", path.display()))
    }
}
