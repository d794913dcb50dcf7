//! `--server URL --token T` on the history commands: read runs from a
//! `weir serve` server instead of a local workspace.

use anyhow::bail;
use clap::Args;
use serde_json::Value;
use weir::RunDetail;

use crate::client::{Client, refused};

/// Where a history command reads from, when not the local workspace.
#[derive(Args)]
pub(crate) struct RemoteArgs {
    /// Read from this `weir serve` server instead of the workspace.
    #[arg(long, value_name = "URL", requires = "token")]
    server: Option<String>,
    /// The bearer token for --server.
    #[arg(long, env = "WEIR_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl RemoteArgs {
    /// The client of the server asked for, if one was.
    pub(crate) fn client(&self) -> anyhow::Result<Option<Client>> {
        match (&self.server, &self.token) {
            (Some(server), Some(token)) => Ok(Some(Client::new(server, token)?)),
            _ => Ok(None),
        }
    }
}

/// `GET path` as JSON, refusing anything but 200.
fn get_json(client: &Client, path: &str) -> anyhow::Result<Value> {
    let reply = client.get(path)?;
    if reply.status != 200 {
        return Err(refused(&format!("GET {path}"), &reply));
    }
    reply.json()
}

/// `weir runs --server`: the server's runs, newest first.
pub(crate) fn runs(client: &Client, pipeline: Option<&str>, limit: usize, as_json: bool) -> anyhow::Result<()> {
    let mut path = format!("/v1/runs?page_size={}", limit.clamp(1, 500));
    if let Some(pipeline) = pipeline {
        path.push_str(&format!("&pipeline={}", encode(pipeline)));
    }
    let page = get_json(client, &path)?;
    let runs = page["runs"].as_array().cloned().unwrap_or_default();
    if as_json {
        println!("{}", Value::Array(runs));
        return Ok(());
    }
    println!("{:<28} {:<16} {:<8} {:<10}", "run", "pipeline", "version", "status");
    for run in runs {
        let text = |key: &str| run[key].as_str().unwrap_or("-").to_owned();
        println!("{:<28} {:<16} {:<8} {:<10}", text("id"), text("pipeline"), text("version"), text("status"));
    }
    Ok(())
}

/// `weir show --server`: the run's document.
pub(crate) fn run(client: &Client, run: &str) -> anyhow::Result<RunDetail> {
    let document = get_json(client, &format!("/v1/runs/{}", encode(run)))?;
    Ok(serde_json::from_value(document)?)
}

/// `weir logs --server`: a step's stdout and stderr.
pub(crate) fn logs(client: &Client, run: &str, step: &str, as_json: bool) -> anyhow::Result<()> {
    let logs = get_json(client, &format!("/v1/runs/{}/steps/{}/logs", encode(run), encode(step)))?;
    if as_json {
        println!("{logs}");
        return Ok(());
    }
    for stream in ["stdout", "stderr"] {
        let Some(text) = logs[stream].as_str() else { bail!("the server's logs have no {stream}") };
        println!("--- {stream} ---\n{}", crate::terminal::printable(text));
    }
    Ok(())
}

/// `text` percent-encoded for a URL path segment or query value.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (byte as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}
