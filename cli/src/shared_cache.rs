//! The team's shared cache on a `weir serve` server, as the engine's
//! [`CacheRemote`]: entries under `/v1/cache/entries`, objects as the
//! tenant's blobs (`/v1/blobs`), a run's keys under `/v1/cache/runs`.
//! `--remote URL` (or `[remote] url` in the workspace's `config.toml`) names
//! the server; `--token` (or `WEIR_TOKEN`) the tenant's token.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use clap::Args;
use weir::{CacheRemote, Digest, RemoteEntry, RemoteError};

use crate::config::WorkspaceConfig;

/// How long a call to the shared cache may take to connect; a server that
/// does not answer in time counts as unreachable (the run goes on locally).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How many times a call waits out a 429 before it gives up.
const MAX_WAITS: usize = 20;

/// `--remote`, `--token`, `--offline`.
#[derive(Args)]
pub(crate) struct RemoteCacheArgs {
    /// A `weir serve` server whose shared cache the run reads (before
    /// executing a step) and writes (after). Default: `[remote] url` in the
    /// workspace's config.toml.
    #[arg(long, value_name = "URL")]
    remote: Option<String>,
    /// The tenant's bearer token for --remote.
    #[arg(long, env = "WEIR_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Never contact the shared cache, even one the workspace's config names.
    #[arg(long, conflicts_with = "remote")]
    offline: bool,
}

impl RemoteCacheArgs {
    /// The shared cache these options (and `workspace`'s config) name, if any.
    pub(crate) fn remote(&self, workspace: &Path) -> anyhow::Result<Option<Arc<HttpCache>>> {
        if self.offline {
            return Ok(None);
        }
        let url = match &self.remote {
            Some(url) => Some(url.clone()),
            None => WorkspaceConfig::load(workspace)?.remote.map(|remote| remote.url),
        };
        let Some(url) = url else { return Ok(None) };
        let Some(token) = &self.token else {
            bail!("the shared cache at {url} needs a token: --token or WEIR_TOKEN (or --offline)");
        };
        Ok(Some(Arc::new(HttpCache::new(&url, token)?)))
    }
}

impl RemoteCacheArgs {
    /// The shared cache, which the command cannot do without.
    pub(crate) fn required(&self, workspace: &Path) -> anyhow::Result<Arc<HttpCache>> {
        match self.remote(workspace)? {
            Some(remote) => Ok(remote),
            None => bail!("name the shared cache: --remote URL (or `[remote] url` in the workspace's config.toml)"),
        }
    }
}

/// Prints what `weir push` or `weir pull` moved; exit 1 when something could not be.
pub(crate) fn print_transfer(verb: &str, moved: &weir::Transfer, json: bool) -> anyhow::Result<std::process::ExitCode> {
    if json {
        crate::render::print_json(moved)?;
    } else {
        println!("{verb} {} result(s): {} objects, {} bytes", moved.entries, moved.objects, moved.bytes);
        for failure in &moved.failed {
            eprintln!("error: {failure}");
        }
    }
    Ok(if moved.failed.is_empty() { std::process::ExitCode::SUCCESS } else { std::process::ExitCode::from(1) })
}

/// A `weir serve` server's shared cache.
pub(crate) struct HttpCache {
    base: String,
    bearer: String,
    agent: ureq::Agent,
}

impl HttpCache {
    fn new(base: &str, token: &str) -> anyhow::Result<Self> {
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            bail!("--remote {base}: give the server's URL, e.g. http://127.0.0.1:8640");
        }
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .build()
            .into();
        Ok(Self { base: base.trim_end_matches('/').to_owned(), bearer: format!("Bearer {token}"), agent })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request, again after the wait the server asks for while it
    /// answers 429 (over the token's rate). Failing to connect makes the
    /// cache unreachable (the run stops asking it); a connection that breaks
    /// fails only this call.
    fn call(
        &self,
        what: &str,
        request: impl Fn(&ureq::Agent, String) -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
        path: &str,
    ) -> Result<ureq::http::Response<ureq::Body>, RemoteError> {
        for _ in 0..MAX_WAITS {
            let response = self.send(what, &request, path)?;
            if response.status().as_u16() != 429 {
                return Ok(response);
            }
            let wait = response
                .headers()
                .get("retry-after")
                .and_then(|value| value.to_str().ok()?.trim().parse::<u64>().ok())
                .map_or(Duration::from_millis(200), |seconds| Duration::from_secs(seconds.min(5)));
            std::thread::sleep(wait);
        }
        self.send(what, &request, path)
    }

    fn send(
        &self,
        what: &str,
        request: &impl Fn(&ureq::Agent, String) -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
        path: &str,
    ) -> Result<ureq::http::Response<ureq::Body>, RemoteError> {
        request(&self.agent, self.url(path)).map_err(|err| {
            let message = format!("{what}: {err}");
            match &err {
                ureq::Error::ConnectionFailed | ureq::Error::HostNotFound | ureq::Error::Timeout(_) => {
                    RemoteError::Unreachable(message)
                }
                ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                    RemoteError::Unreachable(message)
                }
                _ => RemoteError::Refused(message),
            }
        })
    }

    /// The error of a reply that is not a success: the problem's detail.
    fn refused(what: &str, mut response: ureq::http::Response<ureq::Body>) -> RemoteError {
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().unwrap_or_default();
        let detail = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|problem| problem["detail"].as_str().map(str::to_owned))
            .unwrap_or(body);
        RemoteError::Refused(format!("{what}: the server answered {status}: {detail}"))
    }

    fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<Option<T>, RemoteError> {
        let what = format!("GET {path}");
        let mut response =
            self.call(&what, |agent, url| agent.get(url).header("Authorization", &self.bearer).call(), path)?;
        match response.status().as_u16() {
            200 => {
                let unexpected = |err: String| RemoteError::Refused(format!("{what}: an unexpected answer: {err}"));
                let body = response.body_mut().read_to_vec().map_err(|err| unexpected(err.to_string()))?;
                serde_json::from_slice(&body).map(Some).map_err(|err| unexpected(err.to_string()))
            }
            404 => Ok(None),
            _ => Err(Self::refused(&what, response)),
        }
    }

    fn put_json(&self, path: &str, body: &impl serde::Serialize) -> Result<(), RemoteError> {
        let what = format!("PUT {path}");
        let text = serde_json::to_vec(body).map_err(|err| RemoteError::Refused(err.to_string()))?;
        let response = self.call(
            &what,
            |agent, url| {
                agent
                    .put(url)
                    .header("Authorization", &self.bearer)
                    .header("Content-Type", "application/json")
                    .send(&text[..])
            },
            path,
        )?;
        match response.status().as_u16() {
            200 | 201 => Ok(()),
            _ => Err(Self::refused(&what, response)),
        }
    }
}

impl CacheRemote for HttpCache {
    fn describe(&self) -> String {
        self.base.clone()
    }

    fn entry(&self, key: &Digest) -> Result<Option<RemoteEntry>, RemoteError> {
        self.get_json(&format!("/v1/cache/entries/{key}"))
    }

    fn object(&self, digest: &Digest) -> Result<Box<dyn Read + Send>, RemoteError> {
        let path = format!("/v1/blobs/{digest}");
        let what = format!("GET {path}");
        let response =
            self.call(&what, |agent, url| agent.get(url).header("Authorization", &self.bearer).call(), &path)?;
        match response.status().as_u16() {
            200 => Ok(Box::new(response.into_body().into_reader())),
            _ => Err(Self::refused(&what, response)),
        }
    }

    fn has_object(&self, digest: &Digest) -> Result<bool, RemoteError> {
        let path = format!("/v1/blobs/{digest}");
        let what = format!("HEAD {path}");
        let response =
            self.call(&what, |agent, url| agent.head(url).header("Authorization", &self.bearer).call(), &path)?;
        match response.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(Self::refused(&what, response)),
        }
    }

    fn put_object(
        &self,
        digest: &Digest,
        size: u64,
        open: &dyn Fn() -> std::io::Result<Box<dyn Read + Send>>,
    ) -> Result<(), RemoteError> {
        let path = format!("/v1/blobs/{digest}");
        let what = format!("PUT {path} ({size} bytes)");
        let response = self.call(
            &what,
            |agent, url| {
                let bytes = open().map_err(ureq::Error::Io)?;
                agent
                    .put(url)
                    .header("Authorization", &self.bearer)
                    .header("Content-Type", "application/octet-stream")
                    .header("Content-Length", size.to_string())
                    .send(ureq::SendBody::from_owned_reader(bytes))
            },
            &path,
        )?;
        match response.status().as_u16() {
            200 | 201 => Ok(()),
            _ => Err(Self::refused(&what, response)),
        }
    }

    fn put_entry(&self, key: &Digest, entry: &RemoteEntry) -> Result<(), RemoteError> {
        self.put_json(&format!("/v1/cache/entries/{key}"), entry)
    }

    fn put_run(&self, run_id: &str, keys: &[Digest]) -> Result<(), RemoteError> {
        self.put_json(&format!("/v1/cache/runs/{run_id}"), &serde_json::json!({ "keys": keys }))
    }

    fn run_keys(&self, run_id: &str) -> Result<Vec<Digest>, RemoteError> {
        #[derive(serde::Deserialize)]
        struct Keys {
            keys: Vec<Digest>,
        }
        match self.get_json::<Keys>(&format!("/v1/cache/runs/{run_id}"))? {
            Some(run) => Ok(run.keys),
            None => Err(RemoteError::Refused(format!("the shared cache at {} has no run {run_id}", self.base))),
        }
    }
}

/// `pulled 5 results (12 objects, 3.4 KiB) from http://…; sent 2 (…)`.
pub(crate) fn summary(usage: &weir::RemoteUsage) -> String {
    let part = |verb: &str, transfer: &weir::Transfer| {
        format!("{verb} {} result(s) ({} objects, {} bytes)", transfer.entries, transfer.objects, transfer.bytes)
    };
    format!("shared cache {}: {}; {}", usage.at, part("pulled", &usage.pulled), part("sent", &usage.pushed))
}
