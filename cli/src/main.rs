//! The `weir` command: run pipelines and read artifacts from the store.
//!
//! Exit codes: 0 when the run succeeded, 1 when a step failed, 2 for usage,
//! validation and workspace errors.

/// mimalloc rather than glibc's allocator: a run allocates and frees many
/// small objects on several threads (BENCHMARKS.md, Session 16).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod client;
mod compare_cmd;
mod config;
mod engine_args;
mod history_cmds;
mod interrupt;
mod new;
mod progress;
mod publish;
mod registry;
mod remote;
mod render;
mod report;
mod run_table;
mod serve_cmd;
mod shared_cache;
mod signing;
mod status_cmd;
mod step_cmd;
mod sweep;
mod terminal;
mod verify_cmd;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use weir::{Engine, History, Pipeline, RunOptions, Store, TenantView};

/// Tenants and their quotas, in the workspace directory.
const TENANTS_FILE: &str = "tenants.toml";

#[derive(Parser)]
#[command(name = "weir", version, about = "Run pipelines of sandboxed WASI steps with memoized outputs")]
struct Cli {
    #[command(flatten)]
    workspace: WorkspaceArg,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct WorkspaceArg {
    /// The workspace directory holding the store.
    #[arg(long, global = true, env = "WEIR_HOME", hide_env_values = true, default_value = ".weir")]
    workspace: PathBuf,
    /// The tenant to act as: its runs, cache entries and artifacts are its
    /// own, and its quotas (from `WORKSPACE/tenants.toml`) apply.
    #[arg(long, global = true, env = "WEIR_TENANT", hide_env_values = true, default_value = weir::DEFAULT_TENANT)]
    tenant: String,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline manifest, reusing every step whose inputs did not change.
    Run(RunArgs),
    /// Show which steps a run would execute and why (a dry run).
    ///
    /// Executes nothing and writes nothing. Exit status 0: up to date;
    /// 1: something would run; 2: the pipeline cannot run.
    Status(status_cmd::StatusArgs),
    /// Build and compile every step's code ahead of a run (Python steps take
    /// tens of seconds to build); executes nothing.
    Build {
        /// The pipeline manifest (TOML).
        manifest: PathBuf,
    },
    /// Run a pipeline once per combination of parameter values (a grid, or
    /// --random draws), several at once; steps whose inputs are the same in
    /// several runs execute once. Ends with the runs' metrics side by side.
    Sweep(sweep::SweepArgs),
    /// Send a run's results (each step's cache entry and the artifacts it
    /// names) to the shared cache, for teammates to `weir pull` or reuse.
    Push {
        /// A run id, a unique prefix of one, or `last`.
        run: String,
        #[command(flatten)]
        cache: shared_cache::RemoteCacheArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Copy the results the shared cache holds for a run (pushed by a
    /// teammate) into the workspace, each checked against its digests.
    Pull {
        /// The run's id, as whoever pushed it printed it.
        run: String,
        #[command(flatten)]
        cache: shared_cache::RemoteCacheArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make and read step packages: a step's module and interface as an OCI
    /// artifact (docs/packages.md).
    #[command(subcommand)]
    Step(step_cmd::StepCommand),
    /// Make keys for signing step packages (minisign format).
    #[command(subcommand)]
    Key(signing::KeyCommand),
    /// Resolve the tags of the registry packages a pipeline uses again,
    /// pull what changed, and rewrite its lock file (weir.lock).
    Update {
        /// The pipeline manifest (TOML).
        manifest: PathBuf,
    },
    /// Create NAME/: a pipeline with one step written in Rust (a crate weir
    /// builds) or Python, sample input, ready for `weir run NAME/pipeline.toml`.
    New {
        /// The pipeline's name, and the directory to create.
        name: String,
        /// Write the step in Python (a script weir builds with componentize-py).
        #[arg(long)]
        python: bool,
    },
    /// Write a file artifact's bytes to stdout.
    Cat {
        /// The artifact's digest (`blake3:<hex>`), or a unique prefix of it (`blake3:87d6089a`).
        digest: String,
    },
    /// Copy a file or directory artifact out of the store.
    Export {
        /// The artifact's digest (`blake3:<hex>`), or a unique prefix of it.
        digest: String,
        /// Where to write it (a file is replaced; a directory must not exist).
        path: PathBuf,
    },
    /// Recent runs: status, duration, steps ran and reused. With `--sweep`,
    /// `--metric` or `--sort`: the runs' parameters and final metric values.
    Runs {
        #[command(flatten)]
        remote: remote::RemoteArgs,
        #[command(flatten)]
        query: run_table::RunQuery,
        #[command(flatten)]
        columns: run_table::MetricColumns,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Every step of a run: status, duration, reuse source, outputs, metrics, error.
    Show {
        #[command(flatten)]
        remote: remote::RemoteArgs,
        /// A run id, a unique prefix of one, or `last`.
        run: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// A step's stdout and stderr in a run.
    Logs {
        #[command(flatten)]
        remote: remote::RemoteArgs,
        /// A run id, a unique prefix of one, or `last`.
        run: String,
        /// The step.
        step: String,
        /// The logs of this attempt of a step that was retried (1 for the
        /// first); by default, the last attempt's.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        attempt: Option<u32>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One row per run with its parameters and final metric values.
    Metrics {
        #[command(flatten)]
        query: run_table::RunQuery,
        #[command(flatten)]
        columns: run_table::MetricColumns,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Runs side by side: the parameters that differ, each metric's last
    /// and best value, and which steps' results differ and why.
    Compare(compare_cmd::CompareArgs),
    /// Why a step ran or was reused in a run.
    Explain {
        /// A run id, a unique prefix of one, or `last`.
        run: String,
        /// The step.
        step: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The chain of steps and inputs that produced an artifact.
    Lineage {
        /// The artifact's digest, or a unique prefix of it.
        digest: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The pipeline graph of a manifest, with the step statuses of a run.
    Graph {
        /// The pipeline manifest.
        manifest: PathBuf,
        /// Colour steps by their status in this run.
        #[arg(long)]
        run: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
        format: GraphFormat,
    },
    /// Execute again the steps of a run that have cached results (or only
    /// STEP) and report any whose outputs differ: a step marked reusable
    /// that is not deterministic. Exit 1 when one differs.
    Verify {
        /// A run id, a unique prefix of one, or `last`.
        run: String,
        /// Only this step.
        step: Option<String>,
        /// Print the run's JSON summary.
        #[arg(long)]
        json: bool,
    },
    /// Remove from the store every artifact that no cache entry and no
    /// retained run references. Waits for runs in progress to end.
    Gc {
        /// Forget all but this many most recent runs first (default: keep all).
        #[arg(long, value_name = "N")]
        keep_runs: Option<usize>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Maintain the content-addressed store.
    Store {
        #[command(subcommand)]
        action: StoreAction,
    },
    /// Serve jobs of the `process` executor on stdin and stdout (started by
    /// `weir run --executor process`, not by hand).
    #[command(hide = true)]
    Worker,
    /// Serve the workspace over an authenticated HTTP API: published
    /// pipelines, runs, events, artifacts (docs/server.md). Stops on SIGTERM
    /// or Ctrl-C after recording every run.
    Serve(serve_cmd::ServeArgs),
    /// Manage the bearer tokens of `weir serve`.
    Token {
        #[command(subcommand)]
        action: serve_cmd::TokenAction,
    },
    /// Upload a pipeline (manifest, modules, sub-pipelines, inputs) to a
    /// server as a new immutable version.
    Publish(publish::PublishArgs),
    /// A self-contained HTML report of a run: graph, steps, metric charts.
    Report {
        /// A run id, a unique prefix of one, or `last`.
        run: String,
        /// The HTML file to write.
        #[arg(short, long)]
        output: PathBuf,
    },
}

#[derive(Subcommand)]
enum StoreAction {
    /// Re-hash every stored artifact; report (and with --repair remove) any
    /// whose bytes changed on disk, so the steps that made them run again.
    Verify {
        /// Remove corrupt entries.
        #[arg(long)]
        repair: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum GraphFormat {
    Dot,
    Mermaid,
    Svg,
}

#[derive(Args)]
struct RunArgs {
    /// The pipeline manifest (TOML).
    manifest: PathBuf,
    /// Override a pipeline parameter; the value is parsed as the default's type.
    #[arg(long = "param", value_name = "NAME=VALUE", value_parser = parse_param)]
    params: Vec<(String, String)>,
    /// Execute this step even if a cached result exists (repeatable).
    #[arg(long, value_name = "STEP")]
    rerun: Vec<String>,
    /// Run only this step (a sub-pipeline's name: all its steps) and what it
    /// needs upstream; the others are `not requested` (repeatable).
    #[arg(long, value_name = "STEP")]
    target: Vec<String>,
    /// Execute every step; cached results are ignored (and replaced).
    #[arg(long, conflicts_with = "read_only")]
    no_cache: bool,
    /// Execute nothing: show which steps would run and why, as `weir status`
    /// does (and exit as it does).
    #[arg(long, conflicts_with_all = ["no_cache", "read_only"])]
    dry_run: bool,
    /// Write nothing to the workspace: reuse every step's cached result (a
    /// step that would execute fails) and record nothing in the history.
    /// Works on a workspace this user may not write to; exports are written.
    #[arg(long)]
    read_only: bool,
    #[command(flatten)]
    engine: engine_args::EngineArgs,
    #[command(flatten)]
    cache: shared_cache::RemoteCacheArgs,
    /// Print exactly one JSON object describing the run on stdout.
    #[arg(long)]
    json: bool,
    /// Let exports go anywhere on the host (absolute paths, `..`). Without
    /// it they must lie beneath the manifest's directory. Only the default
    /// tenant may use it; other tenants export beneath their own directory.
    #[arg(long)]
    export_anywhere: bool,
}

/// `options` with the command line's `--param`, `--rerun` and `--target`
/// (shared by `weir run` and `weir status`).
fn with_steps_and_params(
    mut options: RunOptions,
    params: Vec<(String, String)>,
    rerun: Vec<String>,
    target: Vec<String>,
) -> RunOptions {
    for (name, value) in params {
        options = options.param_text(name, value);
    }
    for step in rerun {
        options = options.rerun(step);
    }
    for step in target {
        options = options.target(step);
    }
    options
}

fn parse_param(text: &str) -> Result<(String, String), String> {
    let (name, value) = text.split_once('=').ok_or_else(|| format!("`{text}`: expected NAME=VALUE"))?;
    Ok((name.trim().to_owned(), value.to_owned()))
}

fn main() -> ExitCode {
    restore_broken_pipe_default();
    let cli = Cli::parse();
    match execute(cli) {
        Ok(code) => code,
        Err(err) => {
            print_error(&err);
            ExitCode::from(2)
        }
    }
}

fn execute(cli: Cli) -> anyhow::Result<ExitCode> {
    let workspace = cli.workspace.workspace;
    let tenant = cli.workspace.tenant.as_str();
    match cli.command {
        Command::Run(args) if args.dry_run => {
            let status = status_cmd::StatusArgs {
                manifest: args.manifest,
                params: args.params,
                rerun: args.rerun,
                target: args.target,
                json: args.json,
            };
            with_json_refusal(status.json, || status_cmd::status(&workspace, tenant, status))
        }
        Command::Run(args) => with_json_refusal(args.json, || run_pipeline(&workspace, tenant, args)),
        Command::Push { run, cache, json } => {
            let remote = cache.required(&workspace)?;
            let engine = open_engine(&workspace, Engine::builder())?;
            let moved = engine.push_run(tenant, &run, remote.as_ref())?;
            shared_cache::print_transfer("sent", &moved, json)
        }
        Command::Pull { run, cache, json } => {
            let remote = cache.required(&workspace)?;
            let engine = open_engine(&workspace, Engine::builder())?;
            let moved = engine.pull_run(&run, remote.as_ref())?;
            shared_cache::print_transfer("pulled", &moved, json)
        }
        Command::Sweep(args) => sweep::sweep(&workspace, tenant, args),
        Command::Status(args) => with_json_refusal(args.json, || status_cmd::status(&workspace, tenant, args)),
        Command::Build { manifest } => status_cmd::build(&workspace, tenant, &manifest),
        Command::Serve(args) => serve_cmd::serve(&workspace, args),
        Command::Token { action } => serve_cmd::token(&workspace, tenant, action),
        Command::Publish(args) => publish::publish(&workspace, args),
        Command::Worker => weir::serve_worker(&workspace).map(|()| ExitCode::SUCCESS).map_err(Into::into),
        Command::Cat { digest } => {
            let (store, history) = (Store::open(&workspace)?, History::open(&workspace)?);
            let view = TenantView::new(tenant, &store, &history);
            let digest = view.artifact(&digest)?;
            if view.kind_of(&digest)? == weir::OutputKind::Dir {
                bail!("{digest} is a directory artifact; use `weir export {digest} PATH`");
            }
            view.write_file_to(&digest, &mut std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Export { digest, path } => {
            let (store, history) = (Store::open(&workspace)?, History::open(&workspace)?);
            let view = TenantView::new(tenant, &store, &history);
            let digest = view.artifact(&digest)?;
            let kind = view.export(&digest, &path)?;
            eprintln!("exported {kind} {digest} to {}", path.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Runs { remote, query, columns, json } => {
            if let Some(client) = remote.client()? {
                if query.is_narrowed() || columns.is_set() {
                    bail!("--label, --sweep, --metric and --sort read the local history; not with --remote");
                }
                return remote::runs(&client, query.pipeline.as_deref(), query.limit, json).map(|()| ExitCode::SUCCESS);
            }
            let (store, history) = recorded(&workspace)?;
            let view = TenantView::new(tenant, &store, &history);
            if query.sweep.is_some() || columns.is_set() {
                return run_table::print(&view, &query.filter(), &columns, json).map(|()| ExitCode::SUCCESS);
            }
            history_cmds::runs(&view, &query.filter(), json).map(|()| ExitCode::SUCCESS)
        }
        Command::Show { remote, run, json } => {
            if let Some(client) = remote.client()? {
                return history_cmds::print_run(&remote::run(&client, &run)?, json).map(|()| ExitCode::SUCCESS);
            }
            let (store, history) = recorded(&workspace)?;
            history_cmds::show(&TenantView::new(tenant, &store, &history), &run, json).map(|()| ExitCode::SUCCESS)
        }
        Command::Logs { remote, run, step, attempt, json } => {
            if let Some(client) = remote.client()? {
                if attempt.is_some() {
                    anyhow::bail!("--attempt reads the local history; it cannot be used with --remote");
                }
                return remote::logs(&client, &run, &step, json).map(|()| ExitCode::SUCCESS);
            }
            let (store, history) = recorded(&workspace)?;
            history_cmds::logs(&TenantView::new(tenant, &store, &history), &run, &step, attempt, json)
                .map(|()| ExitCode::SUCCESS)
        }
        Command::Metrics { query, columns, json } => {
            let (store, history) = recorded(&workspace)?;
            let view = TenantView::new(tenant, &store, &history);
            run_table::print(&view, &query.filter(), &columns, json).map(|()| ExitCode::SUCCESS)
        }
        Command::Compare(args) => {
            let (store, history) = recorded(&workspace)?;
            compare_cmd::compare(&TenantView::new(tenant, &store, &history), &args).map(|()| ExitCode::SUCCESS)
        }
        Command::Explain { run, step, json } => {
            let (store, history) = recorded(&workspace)?;
            history_cmds::explain(&TenantView::new(tenant, &store, &history), &run, &step, json)
                .map(|()| ExitCode::SUCCESS)
        }
        Command::Lineage { digest, json } => {
            let (store, history) = recorded(&workspace)?;
            let view = TenantView::new(tenant, &store, &history);
            let digest = view.artifact(&digest)?;
            history_cmds::lineage(&view, &digest, json).map(|()| ExitCode::SUCCESS)
        }
        Command::Store { action: StoreAction::Verify { repair, json } } => {
            let report = Store::open(&workspace)?.verify(repair)?;
            if json {
                crate::render::print_json(&report)?;
            } else {
                println!("checked {} artifacts: {} corrupt", report.checked, report.corrupt.len());
                for digest in &report.corrupt {
                    println!("  corrupt: {digest}{}", if repair { " (removed)" } else { "" });
                }
                if report.dropped_cache_entries > 0 {
                    println!("  dropped {} cache entries that needed them", report.dropped_cache_entries);
                }
            }
            Ok(if report.corrupt.is_empty() || repair { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Command::Gc { keep_runs, json } => {
            let report =
                open_engine(&workspace, Engine::builder())?.gc_keeping(keep_runs, || kept_by_server(&workspace))?;
            if json {
                crate::render::print_json(&report)?;
            } else {
                println!(
                    "removed {} objects and {} trees ({} bytes); kept {}; forgot {} runs",
                    report.removed_objects,
                    report.removed_trees,
                    report.freed_bytes,
                    report.kept,
                    report.pruned_runs.len()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { run, step, json } => {
            history(&workspace)?;
            let engine = open_engine(&workspace, Engine::builder())?;
            verify_cmd::verify(&engine, &engine.tenant(tenant)?, &run, step, json)
        }
        Command::Step(command) => step_cmd::run(command, &workspace),
        Command::Key(command) => signing::run(command).map(|()| ExitCode::SUCCESS),
        Command::Update { manifest } => {
            let engine = open_engine(&workspace, Engine::builder())?;
            step_cmd::update(&engine, tenant, &manifest)
        }
        Command::New { name, python } => {
            let language = if python { new::Language::Python } else { new::Language::Rust };
            let root = new::create(&name, language)?;
            println!("created {}/: run it with `weir run {}`", root.display(), root.join("pipeline.toml").display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Graph { manifest, run, format } => {
            graph_command(&workspace, tenant, &manifest, run.as_deref(), format)
        }
        Command::Report { run, output } => {
            let (store, history) = recorded(&workspace)?;
            let view = TenantView::new(tenant, &store, &history);
            let run = view.run(&run)?;
            let series = view.metric_series(&run.summary.id)?;
            std::fs::write(&output, report::html(&run, &series))
                .with_context(|| format!("writing {}", output.display()))?;
            eprintln!("wrote the report of run {} to {}", run.summary.id, output.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// What `weir serve` keeps in the workspace besides the history's artifacts
/// (its tenants' published files), for garbage collection to keep too.
fn kept_by_server(workspace: &Path) -> weir::Result<std::collections::BTreeSet<weir::Digest>> {
    weir_server::kept_blobs(workspace).map_err(|err| weir::Error::Io {
        context: "reading what the server keeps (server.db)".to_owned(),
        source: std::io::Error::other(err.to_string()),
    })
}

/// Builds the engine of `workspace`, with the tenants of its tenants file.
pub(crate) fn open_engine(workspace: &Path, mut builder: weir::EngineBuilder) -> anyhow::Result<Engine> {
    let tenants_file = workspace.join(TENANTS_FILE);
    if tenants_file.exists() {
        for (name, quota) in weir::TenantQuota::from_file(&tenants_file)? {
            builder = builder.tenant(name, quota);
        }
    }
    builder.workspace(workspace).build().with_context(|| format!("opening workspace {}", workspace.display()))
}

/// Prints an error on stderr, a line for each problem (a validation can find several).
fn print_error(err: &anyhow::Error) {
    for line in describe(err).lines() {
        eprintln!("error: {line}");
    }
}

/// An error and its causes as one line, each cause said once: weir's errors
/// already end with their cause, which the chain would otherwise repeat.
fn describe(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let cause = cause.to_string();
        if text.ends_with(&cause) {
            continue;
        }
        // A cause that begins with the context already said ("opening
        // workspace W: …" under "opening workspace W") replaces it.
        if !text.is_empty() && cause.starts_with(&text) {
            text = cause;
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause);
    }
    text
}

/// Lets `weir … | head` end quietly, as Unix tools do, when the reader
/// closes the pipe (Rust ignores SIGPIPE, so printing would panic instead).
fn restore_broken_pipe_default() {
    #[cfg(unix)]
    // SAFETY: called first thing in `main`, before any thread exists; setting
    // a signal's disposition to its default has no other precondition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// The workspace's run history (the workspace must exist).
/// The store and history of a workspace where something has run.
fn recorded(workspace: &Path) -> anyhow::Result<(Store, History)> {
    let history = history(workspace)?;
    Ok((Store::open(workspace)?, history))
}

fn history(workspace: &Path) -> anyhow::Result<History> {
    if workspace.exists() && !workspace.is_dir() {
        bail!("workspace {} is a file, not a directory", workspace.display());
    }
    if !History::exists_in(workspace) {
        bail!("no run history in {}: nothing has run in this workspace", workspace.display());
    }
    Ok(History::open(workspace)?)
}

fn graph_command(
    workspace: &Path,
    tenant: &str,
    manifest: &Path,
    run: Option<&str>,
    format: GraphFormat,
) -> anyhow::Result<ExitCode> {
    let pipeline = match tenant {
        weir::DEFAULT_TENANT => Pipeline::from_manifest_with(manifest, &packages(workspace)?)?,
        _ => load_pipeline(&open_engine(workspace, Engine::builder())?, tenant, manifest)?,
    };
    let mut statuses = BTreeMap::new();
    if let Some(run) = run {
        let (store, history) = recorded(workspace)?;
        let detail = TenantView::new(tenant, &store, &history).run(run)?;
        let known = detail.steps.iter().filter(|step| pipeline.step(&step.step).is_some()).count();
        if detail.summary.pipeline != pipeline.name() || known == 0 {
            eprintln!(
                "warning: run {} is of pipeline `{}`, not `{}`: {known} of its steps are in this graph",
                detail.summary.id,
                detail.summary.pipeline,
                pipeline.name()
            );
        }
        statuses = detail.steps.into_iter().map(|step| (step.step, step.status)).collect();
    }
    let graph = weir_server::render::Graph::new(&pipeline, &statuses);
    print!(
        "{}",
        match format {
            GraphFormat::Dot => graph.dot(),
            GraphFormat::Mermaid => graph.mermaid(),
            GraphFormat::Svg => graph.svg(),
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// Loads a manifest as `tenant` may: anywhere for the default tenant (the
/// operator), only beneath its own directory for another.
pub(crate) fn load_pipeline(engine: &Engine, tenant: &str, manifest: &Path) -> anyhow::Result<Pipeline> {
    load_pipeline_with(engine, tenant, manifest, &packages(engine.store().root())?)
}

/// Like [`load_pipeline`], resolving registry packages through `packages`.
pub(crate) fn load_pipeline_with(
    engine: &Engine,
    tenant: &str,
    manifest: &Path,
    packages: &weir::package::Packages,
) -> anyhow::Result<Pipeline> {
    Ok(match engine.tenant_root(tenant)? {
        None => Pipeline::from_manifest_with(manifest, packages)?,
        Some(root) => Pipeline::from_manifest_within_with(root, manifest, packages)?,
    })
}

/// The registry packages of the workspace at `workspace`, pulled with the
/// registry settings of the environment.
pub(crate) fn packages(workspace: &Path) -> anyhow::Result<weir::package::Packages> {
    let policy = config::WorkspaceConfig::load(workspace)?.packages.policy(workspace)?;
    Ok(weir::package::Packages::new(workspace.join("packages"))
        .fetching(Arc::new(registry::Puller::new(registry::RegistryArgs::from_env())))
        .trusting(policy))
}

/// Prints a run's document (the JSON of `docs/run.schema.json`) on stdout.
pub(crate) fn print_record(report: &weir::RunReport) -> anyhow::Result<()> {
    let Some(record) = &report.record else {
        bail!(
            "run {} ended {}, but its record could not be read: {}",
            report.run_id,
            report.status,
            report.warnings.join("; ")
        )
    };
    crate::render::print_json(record)?;
    Ok(())
}

/// `weir run`. With `--json`, a run refused before anything ran still prints
/// exactly one JSON object: `status` `invalid` (the pipeline, a parameter or
/// a module is wrong) or `error` (the workspace), and the `errors`.
/// Runs `command`; with `json`, a failure to start is also one JSON object
/// on stdout (exit status 2), so a script reading stdout always gets one.
fn with_json_refusal(json: bool, command: impl FnOnce() -> anyhow::Result<ExitCode>) -> anyhow::Result<ExitCode> {
    if !json {
        return command();
    }
    command().or_else(|err| {
        print_error(&err);
        crate::render::print_json(&refusal(&err))?;
        Ok(ExitCode::from(2))
    })
}

/// The JSON object of a run that could not start.
fn refusal(err: &anyhow::Error) -> serde_json::Value {
    let validation = err.downcast_ref::<weir::ValidationError>().or_else(|| match err.downcast_ref::<weir::Error>() {
        Some(weir::Error::Validation(validation)) => Some(validation),
        _ => None,
    });
    let Some(validation) = validation else {
        return serde_json::json!({"status": "error", "errors": [{"message": describe(err)}]});
    };
    let errors: Vec<serde_json::Value> = validation
        .errors()
        .map(|error| {
            let location = error.location();
            serde_json::json!({
                "file": location.file.as_ref().map(|file| file.display().to_string()),
                "step": location.step,
                "field": location.field,
                "message": error.kind().to_string(),
            })
        })
        .collect();
    serde_json::json!({"status": "invalid", "errors": errors})
}

fn run_pipeline(workspace: &std::path::Path, tenant: &str, args: RunArgs) -> anyhow::Result<ExitCode> {
    if args.export_anywhere && tenant != weir::DEFAULT_TENANT {
        bail!("--export-anywhere: tenant `{tenant}` exports only beneath its own directory");
    }
    let options = RunOptions::new()
        .no_cache(args.no_cache)
        .read_only(args.read_only)
        .tenant(tenant)
        .exports_anywhere(args.export_anywhere);
    let mut options = with_steps_and_params(options, args.params, args.rerun, args.target);
    if let Some(remote) = args.cache.remote(workspace)? {
        options = options.remote_cache(remote);
    }
    let engine = args.engine.open(workspace)?;
    let pipeline = load_pipeline(&engine, tenant, &args.manifest)?;
    let live = (!args.json && std::io::stdout().is_terminal())
        .then(|| Arc::new(progress::Progress::new(pipeline.steps().len())));
    if let Some(live) = &live {
        options = options.events(live.clone());
    }
    let cancel = weir::CancelToken::new();
    let interrupts = interrupt::Interrupts::watch(cancel.clone())?;
    let report = engine.run(&pipeline, &options.cancel_with(cancel));
    if let Some(live) = &live {
        live.clear();
    }
    let report = report?;
    if let Some(usage) = &report.remote {
        eprintln!("{}", shared_cache::summary(usage));
    }
    if args.json {
        print_record(&report)?;
    } else {
        render::print_report(&pipeline, &report);
    }
    engine.close();
    let code = interrupts.exit_code().unwrap_or(if report.succeeded() { ExitCode::SUCCESS } else { ExitCode::from(1) });
    // The process exits next: the report and the pipeline, a few allocations
    // per step each, are left to the exit instead of being freed one by one.
    std::mem::forget((report, pipeline));
    Ok(code)
}
