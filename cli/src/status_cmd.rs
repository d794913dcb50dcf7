//! `weir status` and `weir run --dry-run`: which steps would run, and why,
//! without executing anything or writing to the workspace (but the builds of
//! steps' code); `weir build`, which prepares that code ahead of a run.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use weir::{Engine, Freshness, PipelineStatus, RunOptions};

use crate::terminal::printable;

/// `weir status`.
#[derive(Args)]
pub(crate) struct StatusArgs {
    /// The pipeline manifest (TOML).
    pub manifest: PathBuf,
    /// Override a pipeline parameter, as `weir run --param` does.
    #[arg(long = "param", value_name = "NAME=VALUE", value_parser = crate::parse_param)]
    pub params: Vec<(String, String)>,
    /// Count this step as forced to execute, as `weir run --rerun` does (repeatable).
    #[arg(long, value_name = "STEP")]
    pub rerun: Vec<String>,
    /// Only this step and what it needs, as `weir run --target` (repeatable).
    #[arg(long, value_name = "STEP")]
    pub target: Vec<String>,
    /// Print one JSON object: the pipeline, `up_to_date`, and each step's
    /// status (`up_to_date`, `would_run`, or `not_requested` with
    /// `--target`) with its reasons.
    #[arg(long)]
    pub json: bool,
}

/// Prints what a run would do. Exit status: 0 when every step is up to
/// date, 1 when some step would run (2, from the caller, when the pipeline
/// cannot run at all).
pub(crate) fn status(workspace: &Path, tenant: &str, args: StatusArgs) -> anyhow::Result<ExitCode> {
    let engine = crate::open_engine(workspace, Engine::builder().workspace(workspace))?;
    let pipeline = crate::load_pipeline(&engine, tenant, &args.manifest)?;
    let options = RunOptions::new().tenant(tenant);
    let options = crate::with_steps_and_params(options, args.params, args.rerun, args.target);
    let status = engine.status(&pipeline, &options)?;
    if args.json {
        crate::render::print_json(&status)?;
    } else {
        print_status(&status);
    }
    Ok(if status.up_to_date { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// `weir build`: prepares every step's code as a run would (building Python
/// steps, compiling modules into the workspace's cache) and says how many.
pub(crate) fn build(workspace: &Path, tenant: &str, manifest: &Path) -> anyhow::Result<ExitCode> {
    let engine = crate::open_engine(workspace, Engine::builder().workspace(workspace))?;
    let pipeline = crate::load_pipeline(&engine, tenant, manifest)?;
    let status = engine.status(&pipeline, &RunOptions::new().tenant(tenant))?;
    let steps = status.steps.len();
    println!(
        "{}: the code of its {steps} step{} is built",
        printable(&status.pipeline),
        if steps == 1 { "" } else { "s" }
    );
    Ok(ExitCode::SUCCESS)
}

fn print_status(status: &PipelineStatus) {
    let would_run = status.steps.iter().filter(|step| step.status == Freshness::WouldRun).count();
    let requested = status.steps.iter().filter(|step| step.status != Freshness::NotRequested).count();
    let pipeline = printable(&status.pipeline);
    match would_run {
        0 => println!("{pipeline}: up to date ({requested} steps)"),
        n => println!("{pipeline}: {n} of {requested} steps would run"),
    }
    let width = status.steps.iter().map(|step| step.step.chars().count()).max().unwrap_or(0);
    for step in &status.steps {
        let label = match step.status {
            Freshness::UpToDate => "up to date",
            Freshness::WouldRun => "would run",
            Freshness::NotRequested => "not needed",
        };
        let mut reasons = step.reasons.iter().map(|reason| printable(reason));
        let first = reasons.next().unwrap_or_default();
        println!("  {:<width$}  {label:<10}  {first}", printable(&step.step));
        for reason in reasons {
            println!("  {:<width$}  {:<10}  {reason}", "", "");
        }
    }
}
