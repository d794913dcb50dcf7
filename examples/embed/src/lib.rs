//! Embedding weir in an application: the pipeline is built in code (no
//! manifest), the application registers a native function that the wasm
//! step calls through the bridge and a native step of its own, runs the
//! pipeline, and reads the result back from the store.
//!
//! The pipeline: `summarize` (the wasm step in `step/`) reads a file of
//! numbers and asks the application's `embed.stats` function for their
//! statistics; `render` (a native step) turns the statistics into a report.

use std::path::Path;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use weir::{Engine, NativeStep, OutputKind, Pipeline, RunOptions, StepBuilder, StepContext, native_fn};

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
        std::fs::write(context.output("report"), report).map_err(|err| err.to_string())
    }
}

/// Builds and runs the pipeline on `numbers` with the wasm step at `module`,
/// in `workspace`; returns the report and whether every step was reused.
pub fn run(module: &Path, numbers: &Path, workspace: &Path) -> anyhow::Result<(String, bool)> {
    let engine = Engine::builder()
        .workspace(workspace)
        .native_function(native_fn("embed.stats", 1, |_context, numbers: Vec<f64>| stats(&numbers)))
        .native_step(Render)
        .build()?;
    let pipeline = Pipeline::builder("embedded")
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
                .output("report", OutputKind::File),
        )
        .output("report", "render.report")
        .build()?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_of_numbers() {
        assert_eq!(stats(&[1.0, 2.0, 6.0]).unwrap(), Stats { count: 3, mean: 3.0, min: 1.0, max: 6.0 });
        assert!(stats(&[]).is_err());
    }
}
