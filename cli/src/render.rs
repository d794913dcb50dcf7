//! The human-readable summary of a run: a line per step, then a total.

use std::time::Duration;

use weir::{Pipeline, RunReport, StepReport, StepStatus};

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
            StepStatus::Skipped => "(upstream failed)".to_owned(),
            _ => format_duration(result.duration),
        };
        println!("  {:<8} {:<width$}  {timing}{}", status_word(result.status), step.name(), metrics_text(result));
        for warning in &result.warnings {
            eprintln!("warning: step `{}` {warning}", step.name());
        }
        if let Some(error) = &result.error {
            eprintln!("{error}");
        }
    }
    let count = |status| report.steps_with(status).len();
    println!(
        "run {} {}: {} ran, {} cached, {} failed, {} skipped ({} of step time)",
        report.run_id,
        if report.succeeded() { "succeeded" } else { "FAILED" },
        count(StepStatus::Ran),
        count(StepStatus::Cached),
        count(StepStatus::Failed),
        count(StepStatus::Skipped),
        format_duration(total),
    );
}

/// `  loss=0.25 accuracy=0.875`, or nothing when the step reported no metrics.
fn metrics_text(result: &StepReport) -> String {
    result.metrics.iter().map(|(name, value)| format!("  {name}={value}")).collect()
}

fn status_word(status: StepStatus) -> &'static str {
    match status {
        StepStatus::Ran => "ran",
        StepStatus::Cached => "cached",
        StepStatus::Failed => "FAILED",
        StepStatus::Skipped => "skipped",
    }
}

fn format_duration(duration: Duration) -> String {
    let ms = duration.as_secs_f64() * 1000.0;
    if ms < 1000.0 { format!("{ms:.1} ms") } else { format!("{:.2} s", ms / 1000.0) }
}
