//! `weir serve` and `weir token`: run the HTTP API over the workspace, and
//! manage its bearer tokens.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use weir::Engine;
use weir_server::{ServerConfig, Tokens};

/// `weir serve`.
#[derive(Args)]
pub(crate) struct ServeArgs {
    /// The address to listen on (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:8640")]
    listen: SocketAddr,
    /// Allow listening on an address other than loopback (put the server
    /// behind a TLS-terminating reverse proxy: see docs/server.md).
    #[arg(long)]
    allow_remote: bool,
    /// On SIGTERM, how long running runs may go on before they are cancelled.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    grace: std::time::Duration,
    /// The largest blob upload.
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    max_blob_size: u64,
    /// The largest JSON request body.
    #[arg(long, default_value = "1MiB", value_parser = parse_size)]
    max_json_size: u64,
    /// Requests each token may make per second (bursts of twice as many).
    #[arg(long, default_value_t = 1000.0)]
    rate_limit: f64,
    /// The longest a request may take to arrive and be answered.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    request_timeout: std::time::Duration,
    /// Let TENANT's schedules watch files beneath DIR (repeatable): a file
    /// trigger elsewhere is refused.
    #[arg(long, value_name = "TENANT=DIR", value_parser = parse_watch_root)]
    watch_root: Vec<(String, std::path::PathBuf)>,
    /// Pull the packages published pipelines use by reference from this
    /// registry (HOST[:PORT], repeatable; as pinned in their weir.lock). A
    /// reference to any other registry is refused: tenants do not make the
    /// server reach hosts of their choosing.
    #[arg(long = "registry", value_name = "REGISTRY")]
    registries: Vec<String>,
    /// Steps at once, GPU slots and the executor, as for `weir run`.
    #[command(flatten)]
    engine: crate::engine_args::EngineArgs,
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    weir::text::parse_duration(text)
}

fn parse_watch_root(text: &str) -> Result<(String, std::path::PathBuf), String> {
    let (tenant, dir) = text.split_once('=').ok_or_else(|| format!("`{text}`: expected TENANT=DIR"))?;
    let dir = std::fs::canonicalize(dir).map_err(|err| format!("{dir}: {err}"))?;
    if !dir.is_dir() {
        return Err(format!("{}: not a directory", dir.display()));
    }
    Ok((tenant.to_owned(), dir))
}

fn parse_size(text: &str) -> Result<u64, String> {
    weir::text::parse_size(text)
}

/// Serves the workspace until SIGTERM or Ctrl-C.
pub(crate) fn serve(workspace: &Path, args: ServeArgs) -> anyhow::Result<ExitCode> {
    if !args.listen.ip().is_loopback() && !args.allow_remote {
        bail!(
            "--listen {}: not a loopback address; add --allow-remote to serve other machines (behind a TLS proxy)",
            args.listen
        );
    }
    if args.rate_limit.is_nan() || args.rate_limit <= 0.0 {
        bail!("--rate-limit {}: give a number of requests per second above 0", args.rate_limit);
    }
    let engine = args.engine.open(workspace)?;
    let mut config = ServerConfig::new(args.listen);
    config.grace = args.grace;
    config.packages = crate::config::WorkspaceConfig::load(workspace)?.packages.policy(workspace)?;
    // Without --registry the allow-list is empty: a pipeline that needs a
    // package the workspace has not kept is refused, naming the option.
    let puller =
        crate::registry::Puller::new(crate::registry::RegistryArgs::from_env()).only_from(args.registries.clone());
    config.registry = Some(weir_server::PackageSource(std::sync::Arc::new(puller)));
    config.max_blob_bytes = args.max_blob_size;
    config.max_json_bytes = usize::try_from(args.max_json_size).unwrap_or(usize::MAX);
    config.rate_per_second = args.rate_limit;
    config.rate_burst = args.rate_limit * 2.0;
    config.request_timeout = args.request_timeout;
    config.tenants_file = Some(workspace.join(crate::TENANTS_FILE));
    for (tenant, dir) in args.watch_root {
        engine.tenant(&tenant).with_context(|| format!("--watch-root {tenant}={}", dir.display()))?;
        config.watch_roots.insert(tenant, dir);
    }
    weir_server::serve(engine, config)?;
    Ok(ExitCode::SUCCESS)
}

/// `weir token`.
#[derive(Subcommand)]
pub(crate) enum TokenAction {
    /// Create a bearer token for the tenant given with --tenant and print
    /// it, alone, on stdout (it is shown only this once).
    Create {
        /// It may also manage tokens (`/v1/tokens`).
        #[arg(long)]
        admin: bool,
    },
    /// Every token: id, tenant, admin, created, revoked (never the secret).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token: every later request with it is refused.
    Revoke {
        /// The token's id (`weir token list`).
        id: String,
    },
}

/// Runs a `weir token` command.
pub(crate) fn token(workspace: &Path, tenant: &str, action: TokenAction) -> anyhow::Result<ExitCode> {
    let tokens =
        Tokens::open(workspace).with_context(|| format!("opening the server state of {}", workspace.display()))?;
    match action {
        TokenAction::Create { admin } => {
            let engine = crate::open_engine(workspace, Engine::builder().workspace(workspace))?;
            engine.tenant(tenant).with_context(|| format!("--tenant {tenant}"))?;
            let (info, token) = tokens.create(tenant, admin)?;
            let role = if admin { "an admin token" } else { "a token" };
            eprintln!("created {role} for tenant `{tenant}` (id {}); it is not shown again", info.id);
            println!("{token}");
        }
        TokenAction::List { json } => {
            let list = tokens.list()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!("{:<14} {:<16} {:<6} {:<10}", "ID", "TENANT", "ADMIN", "STATE");
                for token in list {
                    let state = if token.revoked.is_some() { "revoked" } else { "active" };
                    println!(
                        "{:<14} {:<16} {:<6} {state:<10}",
                        token.id,
                        token.tenant,
                        if token.admin { "yes" } else { "no" }
                    );
                }
            }
        }
        TokenAction::Revoke { id } => {
            if !tokens.revoke(&id)? {
                bail!("no token has id `{id}` (`weir token list`)");
            }
            eprintln!("revoked token {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
