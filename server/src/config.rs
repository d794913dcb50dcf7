//! How a server is set up: where it listens and its limits.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The settings of `weir serve`.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The address to listen on (the CLI refuses a non-loopback one unless asked).
    pub listen: SocketAddr,
    /// The largest blob upload, in bytes (413 above it).
    pub max_blob_bytes: u64,
    /// The largest JSON request body, in bytes (413 above it).
    pub max_json_bytes: usize,
    /// Requests each token may make per second, on average (429 above it).
    pub rate_per_second: f64,
    /// How many requests a token may make at once above the average.
    pub rate_burst: f64,
    /// The longest a request may take to arrive and be answered (a slow
    /// client's upload included); streamed responses (events, artifacts)
    /// are not cut.
    pub request_timeout: Duration,
    /// On SIGTERM, how long running runs may go on before they are cancelled.
    pub grace: Duration,
    /// The directory each tenant's schedules may watch files in (none: no
    /// file triggers for that tenant).
    pub watch_roots: BTreeMap<String, PathBuf>,
    /// The tenants file admins change over `/v1/tenants` (`weir serve`:
    /// `WORKSPACE/tenants.toml`, which the engine was built from); none:
    /// tenants are not managed over the API.
    pub tenants_file: Option<PathBuf>,
    /// Which step packages published pipelines may use (`weir serve`: the
    /// workspace's `[packages]` settings, docs/packages.md).
    pub packages: weir::package::TrustPolicy,
    /// Where the packages that published pipelines use by reference are
    /// pulled from (as their lock files pin them); none: only packages
    /// already kept in the workspace are used.
    pub registry: Option<PackageSource>,
}

/// A registry client for the packages published pipelines name by
/// reference (`weir serve --registry`).
#[derive(Clone)]
pub struct PackageSource(pub std::sync::Arc<dyn weir::package::Fetch>);

impl std::fmt::Debug for PackageSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PackageSource")
    }
}

impl ServerConfig {
    /// The most runs one `GET /v1/runs` page may hold.
    pub const MAX_PAGE_SIZE: usize = 500;

    /// The defaults, listening on `listen`.
    pub fn new(listen: SocketAddr) -> ServerConfig {
        ServerConfig {
            listen,
            max_blob_bytes: 1 << 30,
            max_json_bytes: 1 << 20,
            rate_per_second: 1000.0,
            rate_burst: 2000.0,
            request_timeout: Duration::from_secs(60),
            grace: Duration::from_secs(30),
            watch_roots: BTreeMap::new(),
            tenants_file: None,
            packages: weir::package::TrustPolicy::default(),
            registry: None,
        }
    }
}
