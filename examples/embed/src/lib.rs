//! Embedding weir in an application: the pipeline is built in code (no
//! manifest), the application registers a native function that the wasm
//! step calls through the bridge and a native step of its own, runs the
//! pipeline, and reads the result back from the store.
//!
//! The pipeline: `summarize` (the wasm step in `step/`) reads a file of
//! numbers and asks the application's `embed.stats` function for their
//! statistics; `render` (a native step) turns the statistics into a report
//! and a directory of files.
//!
//! [`run`] is the short path; [`tour`] shows the rest an application meets:
//! events through a closure, a failure handled by its kind, a directory
//! output read back, two runs at once on one engine, and a cancelled run.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use weir::{
    Engine, Event, NativeStep, OutputKind, Pipeline, RunOptions, RunStatus, StepBuilder, StepContext, StepErrorKind,
    StepStatus, native_fn,
};

/// What `embed.stats` returns for a list of numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// How many numbers.
    pub count: usize,
    /// Their mean.
    pub mean: f64,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
}

/// The application's native function: statistics of a list of numbers.
fn stats(numbers: &[f64]) -> Result<Stats, String> {
    if numbers.is_empty() {
        return Err("no numbers".into());
    }
    let sum: f64 = numbers.iter().sum();
    Ok(Stats {
        count: numbers.len(),
        mean: sum / numbers.len() as f64,
        min: numbers.iter().copied().fold(f64::INFINITY, f64::min),
        max: numbers.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    })
}

/// The application's native step: renders the statistics as a text report.
struct Render;

impl NativeStep for Render {
    fn name(&self) -> &str {
        "embed.render"
    }

    fn version(&self) -> u32 {
        1
    }

    fn run(&self, context: &mut StepContext<'_>) -> Result<(), String> {
        let title: String = context.params::<serde_json::Value>()?["title"].as_str().unwrap_or("Report").to_owned();
        let json = std::fs::read(context.input("stats")).map_err(|err| err.to_string())?;
        let stats: Stats = serde_json::from_slice(&json).map_err(|err| err.to_string())?;
        let report =
            format!("{title}\n{} numbers, mean {:.3}, from {} to {}\n", stats.count, stats.mean, stats.min, stats.max);
        std::fs::write(context.output("report"), &report).map_err(|err| err.to_string())?;
        // A directory output: the report and the statistics, side by side.
        let files = context.output("files");
        std::fs::create_dir_all(&files).map_err(|err| err.to_string())?;
        std::fs::write(files.join("report.txt"), report).map_err(|err| err.to_string())?;
        std::fs::write(files.join("stats.json"), json).map_err(|err| err.to_string())
    }
}

/// A native step that waits until its run is cancelled (or a minute passes).
struct Wait;

impl NativeStep for Wait {
    fn name(&self) -> &str {
        "embed.wait"
    }

    fn version(&self) -> u32 {
        1
    }

    fn run(&self, context: &mut StepContext<'_>) -> Result<(), String> {
        for _ in 0..6000 {
            if context.cancelled() {
                return Err("cancelled".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        std::fs::write(context.output("done"), "waited").map_err(|err| err.to_string())
    }
}

/// The engine of the example: its native function and steps registered.
fn engine(workspace: &Path) -> anyhow::Result<Engine> {
    Ok(Engine::builder()
        .workspace(workspace)
        .native_function(native_fn("embed.stats", 1, |_context, numbers: Vec<f64>| stats(&numbers)))
        .native_step(Render)
        .native_step(Wait)
        .build()?)
}

/// The example pipeline on `numbers`, with the wasm step at `module`.
fn pipeline(module: &Path, numbers: &Path) -> anyhow::Result<Pipeline> {
    Ok(Pipeline::builder("embedded")
        .param("title", "Numbers")
        .input("numbers", numbers)
        .step(
            StepBuilder::new("summarize", module)
                .input("numbers", "inputs.numbers")
                .native_function("embed.stats")
                .output("stats", OutputKind::File),
        )
        .step(
            StepBuilder::native("render", "embed.render")
                .input("stats", "summarize.stats")
                .param("title", "${params.title}")
                .output("report", OutputKind::File)
                .output("files", OutputKind::Dir),
        )
        .output("report", "render.report")
        .build()?)
}

/// Builds and runs the pipeline on `numbers` with the wasm step at `module`,
/// in `workspace`; returns the report and whether every step was reused.
pub fn run(module: &Path, numbers: &Path, workspace: &Path) -> anyhow::Result<(String, bool)> {
    let engine = engine(workspace)?;
    let pipeline = pipeline(module, numbers)?;
    let report = engine.run(&pipeline, &RunOptions::new())?;
    if !report.succeeded() {
        let errors: Vec<String> =
            report.steps.values().filter_map(|s| s.error.as_ref()).map(|e| e.to_string()).collect();
        bail!("the pipeline failed:\n{}", errors.join("\n"));
    }
    let reused = report.steps.values().all(|step| step.status == weir::StepStatus::Cached);
    let artifact = report.pipeline_output("report").context("the report output")?;
    let text = String::from_utf8(engine.store().read_file(&artifact.digest)?)?;
    Ok((text, reused))
}

/// What [`tour`] saw.
#[derive(Debug)]
pub struct Tour {
    /// Each event of the first run, in words.
    pub events: Vec<String>,
    /// How the run on an empty file failed, in words.
    pub failure: String,
    /// The files of the directory output.
    pub files: Vec<String>,
    /// The reports of two runs at once on one engine.
    pub concurrent: Vec<String>,
    /// Whether the cancelled run ended as cancelled.
    pub cancelled: bool,
}

/// Everything else an application meets, in `workspace`, with the wasm step
/// at `module` and numbers in `numbers` (`empty` is a file with none).
pub fn tour(module: &Path, numbers: &Path, empty: &Path, workspace: &Path) -> anyhow::Result<Tour> {
    let engine = engine(workspace)?;

    // Events through a closure; it is called from the run's thread and from workers.
    let events: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = events.clone();
    let sink = move |event: &Event<'_>| {
        let line = match event {
            Event::RunStarted { pipeline, .. } => format!("run of {pipeline} started"),
            Event::StepStarted { step, .. } => format!("{step} started"),
            Event::StepFinished { step, status, .. } => format!("{step} {status}"),
            Event::RunFinished { status, .. } => format!("run {status}"),
            _ => return,
        };
        seen.lock().expect("events").push(line);
    };
    let report = engine.run(&pipeline(module, numbers)?, &RunOptions::new().events(Arc::new(sink)))?;

    // A directory output, read back through the operator's view of the store.
    let view = engine.tenant(weir::DEFAULT_TENANT)?;
    let files = report.output("render", "files").context("the files output")?;
    let files = view.list_dir(&files.digest)?.into_iter().map(|entry| entry.name).collect();

    // A failure, handled by its kind: no numbers, so `embed.stats` refuses
    // and the guest exits non-zero; `render` is skipped because of it.
    let failed = engine.run(&pipeline(module, empty)?, &RunOptions::new())?;
    let failure = match failed.failures().first().map(|error| &error.kind) {
        Some(StepErrorKind::Exit { code }) => format!(
            "summarize exited with status {code} after {} failed native call(s); render was {} (blocked by {})",
            failed.steps["summarize"].native_failures,
            failed.steps["render"].status,
            failed.steps["render"].blocked_by.as_deref().unwrap_or("?")
        ),
        other => bail!("expected summarize to exit non-zero, got {other:?}"),
    };

    // Two runs at once on one engine, each on its own thread.
    let titles = ["First", "Second"];
    let mut handles = Vec::new();
    for title in titles {
        handles.push(engine.start(pipeline(module, numbers)?, RunOptions::new().param("title", title))?);
    }
    let mut concurrent = Vec::new();
    for handle in handles {
        let report = handle.wait()?;
        let artifact = report.pipeline_output("report").context("the report output")?;
        concurrent.push(String::from_utf8(view.read_file(&artifact.digest)?)?);
    }

    // A run cancelled from another thread: the waiting step sees it and stops.
    let waiting = Pipeline::builder("waiting")
        .step(StepBuilder::native("wait", "embed.wait").output("done", OutputKind::File))
        .build()?;
    let handle = engine.start(waiting, RunOptions::new())?;
    std::thread::sleep(Duration::from_millis(100));
    handle.cancel();
    let stopped = handle.wait()?;
    let cancelled = stopped.status == RunStatus::Cancelled && stopped.steps["wait"].status == StepStatus::Cancelled;

    let events = events.lock().expect("events").clone();
    Ok(Tour { events, failure, files, concurrent, cancelled })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_of_numbers() {
        assert_eq!(stats(&[1.0, 2.0, 6.0]).unwrap(), Stats { count: 3, mean: 3.0, min: 1.0, max: 6.0 });
        assert!(stats(&[]).is_err());
    }
}
