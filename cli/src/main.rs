//! The `weir` command: run pipelines and read artifacts from the store.
//!
//! Exit codes: 0 when the run succeeded, 1 when a step failed, 2 for usage,
//! validation and workspace errors.

mod render;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use weir::{Digest, Engine, Pipeline, RunOptions, Store};

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
    #[arg(long, global = true, env = "WEIR_HOME", default_value = ".weir")]
    workspace: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline manifest, reusing every step whose inputs did not change.
    Run(RunArgs),
    /// Write a file artifact's bytes to stdout.
    Cat {
        /// The artifact's digest (`blake3:<hex>`).
        digest: Digest,
    },
    /// Copy a file or directory artifact out of the store.
    Export {
        /// The artifact's digest (`blake3:<hex>`).
        digest: Digest,
        /// Where to write it (a file is replaced; a directory must not exist).
        path: PathBuf,
    },
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
    /// Execute every step; cached results are ignored (and replaced).
    #[arg(long)]
    no_cache: bool,
    /// How many steps may execute at once (default: the number of cores).
    #[arg(long, short = 'j')]
    jobs: Option<usize>,
    /// GPU slots: how many steps that ask for a GPU may run at once
    /// (default: the number of GPUs detected).
    #[arg(long, value_name = "N")]
    gpus: Option<usize>,
    /// Print exactly one JSON object describing the run on stdout.
    #[arg(long)]
    json: bool,
}

fn parse_param(text: &str) -> Result<(String, String), String> {
    let (name, value) = text.split_once('=').ok_or_else(|| format!("`{text}`: expected NAME=VALUE"))?;
    Ok((name.trim().to_owned(), value.to_owned()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match execute(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn execute(cli: Cli) -> anyhow::Result<ExitCode> {
    let workspace = cli.workspace.workspace;
    match cli.command {
        Command::Run(args) => run(&workspace, args),
        Command::Cat { digest } => {
            let store = Store::open(&workspace)?;
            if store.kind_of(&digest) == Some(weir::OutputKind::Dir) {
                bail!("{digest} is a directory artifact; use `weir export {digest} PATH`");
            }
            store.write_file_to(&digest, &mut std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Export { digest, path } => {
            let kind = Store::open(&workspace)?.export(&digest, &path)?;
            eprintln!("exported {kind} {digest} to {}", path.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn run(workspace: &std::path::Path, args: RunArgs) -> anyhow::Result<ExitCode> {
    let pipeline = Pipeline::from_manifest(&args.manifest)?;
    let mut options = RunOptions::new().no_cache(args.no_cache);
    for (name, value) in args.params {
        options = options.param_text(name, value);
    }
    for step in args.rerun {
        options = options.rerun(step);
    }
    let mut builder = Engine::builder().workspace(workspace);
    if let Some(jobs) = args.jobs {
        builder = builder.jobs(jobs);
    }
    if let Some(gpus) = args.gpus {
        builder = builder.gpu_slots(gpus);
    }
    let engine = builder.build().with_context(|| format!("opening workspace {}", workspace.display()))?;
    let report = engine.run(&pipeline, &options)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        render::print_report(&pipeline, &report);
    }
    Ok(if report.succeeded() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
