//! What `weir` prints: the human-readable summary of a run (a line per
//! step, then a total), and JSON documents.

use std::io::Write;
use std::time::Duration;

use weir::{Pipeline, RunReport, RunStatus, StepReport, StepStatus};

use crate::terminal::printable;

/// Prints `value` as one line of JSON, written straight to a buffered
/// stdout: a run's document is most of a megabyte for a 1,000-step
/// pipeline, and building it in a string first cost more than writing it.
pub(crate) fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::with_capacity(64 << 10, std::io::stdout().lock());
    serde_json::to_writer(&mut out, value)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

/// Prints one line per step in pipeline order, failures in full on stderr.
pub(crate) fn print_report(pipeline: &Pipeline, report: &RunReport) {
    let width = pipeline.steps().iter().map(|step| step.name().len()).max().unwrap_or(0);
    let mut total = Duration::ZERO;
    for step in pipeline.steps() {
        let Some(result) = report.steps.get(step.name()) else {
            continue;
        };
        total += result.duration;
        let timing = match result.status {
            StepStatus::Cancelled if result.cache_key.is_none() => "(did not start)".to_owned(),
            StepStatus::Skipped => match &result.blocked_by {
                Some(upstream) => format!("(`{upstream}` did not succeed)"),
                None => "(upstream failed)".to_owned(),
            },
            _ => format_duration(result.duration) + &entries_text(result) + &attempts_text(result),
        };
        println!("  {:<8} {:<width$}  {timing}{}", status_word(result.status), step.name(), metrics_text(result));
        for warning in &result.warnings {
            eprintln!("warning: step `{}` {}", step.name(), printable(warning));
        }
        if let Some(error) = &result.error {
            eprintln!("{}", printable(&error.to_string()));
        }
    }
    let count = |status| report.steps_with(status).len();
    let mut others = match count(StepStatus::Cancelled) {
        0 => String::new(),
        n => format!(", {n} cancelled"),
    };
    if let n @ 1.. = count(StepStatus::NotRequested) {
        others.push_str(&format!(", {n} not requested"));
    }
    println!(
        "run {} {}: {} ran, {} cached, {} failed, {} skipped{others} ({} of step time)",
        report.run_id,
        match report.status {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Cancelled => "CANCELLED",
            _ => "FAILED",
        },
        count(StepStatus::Ran),
        count(StepStatus::Cached),
        count(StepStatus::Failed),
        count(StepStatus::Skipped),
        format_duration(total),
    );
}

/// For a map step, `  ran 2/5 entries` (and how many failed); else nothing.
fn entries_text(result: &StepReport) -> String {
    if result.entries.is_empty() {
        return String::new();
    }
    let count = |status| result.entries.values().filter(|entry| entry.status == status).count();
    let failed = match count(StepStatus::Failed) {
        0 => String::new(),
        n => format!(", {n} failed"),
    };
    format!("  ran {}/{} entries{failed}", count(StepStatus::Ran), result.entries.len())
}

/// For a step that was retried, `  3 attempts` (a map step: `  2 entry
/// retries`); else nothing.
fn attempts_text(result: &StepReport) -> String {
    let (own, entries): (Vec<_>, Vec<_>) = result.attempts.iter().partition(|attempt| attempt.entry.is_none());
    let mut text = String::new();
    if !own.is_empty() {
        text.push_str(&format!("  {} attempts", own.len() + 1));
    }
    match entries.len() {
        0 => {}
        1 => text.push_str("  1 entry retry"),
        n => text.push_str(&format!("  {n} entry retries")),
    }
    text
}

/// Metrics shown on a step's line; the rest are in `--json`.
const SHOWN_METRICS: usize = 4;

/// `  accuracy=0.968  loss=0.096`, at most [`SHOWN_METRICS`] of them, or
/// nothing when the step reported no metrics.
fn metrics_text(result: &StepReport) -> String {
    let mut text: String =
        result.metrics.iter().take(SHOWN_METRICS).map(|(name, value)| format!("  {name}={}", number(*value))).collect();
    if result.metrics.len() > SHOWN_METRICS {
        text.push_str(&format!("  (+{} more in --json)", result.metrics.len() - SHOWN_METRICS));
    }
    text
}

/// A metric value with at most four significant decimals.
pub(crate) fn number(value: f64) -> String {
    if value == value.trunc() && value.abs() < 1e15 {
        format!("{value}")
    } else {
        format!("{value:.4}").trim_end_matches('0').to_owned()
    }
}

fn status_word(status: StepStatus) -> &'static str {
    match status {
        StepStatus::Ran => "ran",
        StepStatus::Cached => "cached",
        StepStatus::Failed => "FAILED",
        StepStatus::Skipped => "skipped",
        StepStatus::Cancelled => "cancelled",
        StepStatus::Running => "running",
        StepStatus::Killed => "KILLED",
        StepStatus::NotRequested => "not requested",
        _ => "?",
    }
}

pub(crate) fn format_duration(duration: Duration) -> String {
    let ms = duration.as_secs_f64() * 1000.0;
    if ms < 1000.0 { format!("{ms:.1} ms") } else { format!("{:.2} s", ms / 1000.0) }
}
