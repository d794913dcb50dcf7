//! The workspace's settings file, `WORKSPACE/config.toml`: defaults that the
//! command line overrides.
//!
//! ```toml
//! executor = "process"   # where steps run: "local" (default) or "process"
//!
//! [remote]                # the team's shared cache (a `weir serve` server)
//! url = "http://cache.example:8640"
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
    pub executor: Option<String>,
    /// The shared cache `weir run` uses unless told `--offline`.
    pub remote: Option<RemoteConfig>,
}

/// `[remote]`: the shared cache (its token comes from `--token` or `WEIR_TOKEN`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RemoteConfig {
    /// The server's URL.
    pub url: String,
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
