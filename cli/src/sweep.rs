//! `weir sweep`: one run per combination of parameter values, several at
//! once, each labelled with the sweep's id; steps whose key is the same in
//! several runs execute once (the engine's in-flight sharing) and are reused
//! by the rest.

mod plan;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::bail;
use clap::Args;
use weir::{Engine, Pipeline, RunOptions, RunStatus, TenantView};

use crate::run_table::{self, MetricColumns, SWEEP_LABEL};
use crate::{engine_args, interrupt};

/// `weir sweep MANIFEST --param NAME=VALUES…`.
#[derive(Args)]
pub(crate) struct SweepArgs {
    /// The pipeline manifest (TOML).
    manifest: PathBuf,
    /// A swept parameter: `NAME=V1,V2,…` (each value parsed as the
    /// default's type); with --random also `NAME=LOW..HIGH` or
    /// `NAME=log:LOW..HIGH`. A single value sets a parameter for every run.
    #[arg(long = "param", value_name = "NAME=VALUES", value_parser = crate::parse_param, required = true)]
    params: Vec<(String, String)>,
    /// Draw N combinations at random instead of running the whole grid.
    #[arg(long, value_name = "N")]
    random: Option<usize>,
    /// The seed of --random: the same seed draws the same runs.
    #[arg(long, default_value_t = 0, requires = "random")]
    seed: u64,
    /// How many runs go at once (their steps share the engine's workers).
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    concurrent: u16,
    #[command(flatten)]
    engine: engine_args::EngineArgs,
    #[command(flatten)]
    columns: MetricColumns,
    /// Print one JSON object: the sweep's id and its runs.
    #[arg(long)]
    json: bool,
}

/// What became of one run of the sweep.
#[derive(serde::Serialize)]
struct SweptRun {
    run_id: Option<String>,
    status: String,
    /// The swept parameters' values, as given.
    params: serde_json::Map<String, serde_json::Value>,
    /// Why it could not run, if it could not.
    error: Option<String>,
}

/// Runs the sweep; exit 0 when every run succeeded, 1 otherwise.
pub(crate) fn sweep(workspace: &Path, tenant: &str, args: SweepArgs) -> anyhow::Result<ExitCode> {
    let engine = args.engine.open(workspace)?;
    let pipeline = crate::load_pipeline(&engine, tenant, &args.manifest)?;
    let combinations = combinations(&pipeline, &args)?;
    let sweep_id = weir::new_run_id();
    // The runs would overwrite each other's exports: a run's outputs are in
    // the store, and `weir export` writes them out.
    let base = RunOptions::new().tenant(tenant).label(SWEEP_LABEL, &sweep_id).exports(false);
    // Every combination is checked before the first run starts.
    for combination in &combinations {
        with_params(base.clone(), combination).resolve(&pipeline)?;
    }
    let cancel = weir::CancelToken::new();
    let interrupts = interrupt::Interrupts::watch(cancel.clone())?;
    let base = base.cancel_with(cancel.clone());
    if !args.json {
        println!("sweep {sweep_id}: {} runs of `{}`", combinations.len(), pipeline.name());
    }
    let swept = run_all(&engine, &pipeline, &base, &combinations, &args, &cancel);
    let failed = swept.iter().filter(|run| run.status != RunStatus::Succeeded.as_str()).count();
    if args.json {
        println!("{}", serde_json::json!({ "sweep": sweep_id, "runs": swept }));
    } else {
        println!();
        let view = TenantView::new(tenant, engine.store(), engine.history());
        let filter = weir::RunFilter::newest(combinations.len()).label(SWEEP_LABEL, &sweep_id);
        run_table::print(&view, &filter, &args.columns, false)?;
        println!("\nlist them again with `weir runs --sweep {sweep_id}`; compare two with `weir compare RUN RUN`");
    }
    if let Some(code) = interrupts.exit_code() {
        return Ok(code);
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// The sweep's runs: the grid of the `--param` values, or `--random` draws.
fn combinations(pipeline: &Pipeline, args: &SweepArgs) -> anyhow::Result<Vec<plan::Combination>> {
    let mut axes = Vec::new();
    for (name, text) in &args.params {
        let Some(default) = pipeline.params().get(name) else {
            let known: Vec<&str> = pipeline.params().keys().map(String::as_str).collect();
            bail!("--param {name}: the pipeline has no parameter `{name}` (it has: {})", known.join(", "));
        };
        axes.push(plan::Axis::parse(name, text, default).map_err(anyhow::Error::msg)?);
    }
    let drawn = match args.random {
        Some(count) => plan::random(&axes, count, args.seed),
        None => plan::grid(&axes),
    };
    drawn.map_err(anyhow::Error::msg)
}

fn with_params(mut options: RunOptions, combination: &plan::Combination) -> RunOptions {
    for (name, value) in combination {
        options = options.param_text(name, value);
    }
    options
}

/// Runs every combination, `--concurrent` at a time, printing a line as each
/// ends; stops starting runs once `cancel` is cancelled.
fn run_all(
    engine: &Engine,
    pipeline: &Pipeline,
    base: &RunOptions,
    combinations: &[plan::Combination],
    args: &SweepArgs,
    cancel: &weir::CancelToken,
) -> Vec<SweptRun> {
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<SweptRun>>> = Mutex::new((0..combinations.len()).map(|_| None).collect());
    let workers = usize::from(args.concurrent).min(combinations.len());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(combination) = combinations.get(index) else { break };
                    let run = if cancel.is_cancelled() {
                        swept(
                            combination,
                            None,
                            RunStatus::Cancelled.as_str(),
                            Some("the sweep was interrupted".into()),
                        )
                    } else {
                        match engine.run(pipeline, &with_params(base.clone(), combination)) {
                            Ok(report) => swept(combination, Some(report.run_id.clone()), report.status.as_str(), None),
                            Err(err) => swept(combination, None, "error", Some(err.to_string())),
                        }
                    };
                    let finished = done.fetch_add(1, Ordering::Relaxed) + 1;
                    if !args.json {
                        println!("[{finished}/{}] {}", combinations.len(), describe(&run));
                    }
                    results.lock().unwrap_or_else(std::sync::PoisonError::into_inner)[index] = Some(run);
                }
            });
        }
    });
    results.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner).into_iter().flatten().collect()
}

fn swept(combination: &plan::Combination, run_id: Option<String>, status: &str, error: Option<String>) -> SweptRun {
    let params = combination.iter().map(|(name, value)| (name.clone(), serde_json::json!(value))).collect();
    SweptRun { run_id, status: status.to_owned(), params, error }
}

/// `run 2026…-ab12 lr=0.01 epochs=20: succeeded`.
fn describe(run: &SweptRun) -> String {
    let params: Vec<String> =
        run.params.iter().map(|(name, value)| format!("{name}={}", value.as_str().unwrap_or_default())).collect();
    let error = run.error.as_deref().map(|error| format!(": {error}")).unwrap_or_default();
    format!("run {} {}: {}{error}", run.run_id.as_deref().unwrap_or("-"), params.join(" "), run.status)
}
