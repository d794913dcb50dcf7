//! A client of a `weir serve` server: bearer token, JSON, and problem
//! details turned into errors that say what the server said.

use anyhow::{Context, bail};
use serde_json::Value;

/// A server and the token to call it with.
pub(crate) struct Client {
    base: String,
    token: String,
    agent: ureq::Agent,
}

/// A response: its status and body.
pub(crate) struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as JSON.
    pub(crate) fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_slice(&self.body).context("the server's answer is not JSON")
    }
}

impl Client {
    /// A client of the server at `base` (`http://host:port`).
    pub(crate) fn new(base: &str, token: &str) -> anyhow::Result<Client> {
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            bail!("--server {base}: give the server's URL, e.g. http://127.0.0.1:8640");
        }
        let config = ureq::Agent::config_builder().http_status_as_error(false).build();
        Ok(Client { base: base.trim_end_matches('/').to_owned(), token: token.to_owned(), agent: config.into() })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn finish(
        &self,
        what: &str,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<Reply> {
        let mut response = response.with_context(|| format!("{what}: cannot reach {}", self.base))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(u64::MAX)
            .read_to_vec()
            .with_context(|| format!("{what}: reading the answer"))?;
        Ok(Reply { status, body })
    }

    /// `GET path`.
    pub(crate) fn get(&self, path: &str) -> anyhow::Result<Reply> {
        let response = self.agent.get(self.url(path)).header("Authorization", self.bearer()).call();
        self.finish(&format!("GET {path}"), response)
    }

    /// `HEAD path`.
    pub(crate) fn head(&self, path: &str) -> anyhow::Result<Reply> {
        let response = self.agent.head(self.url(path)).header("Authorization", self.bearer()).call();
        self.finish(&format!("HEAD {path}"), response)
    }

    /// `PUT path` with bytes.
    pub(crate) fn put(&self, path: &str, body: &[u8]) -> anyhow::Result<Reply> {
        let response = self
            .agent
            .put(self.url(path))
            .header("Authorization", self.bearer())
            .header("Content-Type", "application/octet-stream")
            .send(body);
        self.finish(&format!("PUT {path}"), response)
    }

    /// `POST path` with a JSON body.
    pub(crate) fn post(&self, path: &str, body: &Value) -> anyhow::Result<Reply> {
        let response = self
            .agent
            .post(self.url(path))
            .header("Authorization", self.bearer())
            .header("Content-Type", "application/json")
            .send(body.to_string().as_bytes());
        self.finish(&format!("POST {path}"), response)
    }

    fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }
}

/// The error a non-success reply stands for: the problem's detail.
pub(crate) fn refused(what: &str, reply: &Reply) -> anyhow::Error {
    let detail = serde_json::from_slice::<Value>(&reply.body)
        .ok()
        .and_then(|problem| problem["detail"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&reply.body).into_owned());
    anyhow::anyhow!("{what}: the server answered {}: {detail}", reply.status)
}
