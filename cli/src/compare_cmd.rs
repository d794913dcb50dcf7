//! `weir compare RUN RUN…`: runs side by side — the parameters that differ,
//! each metric's last and best value, which steps' results differ and why —
//! as text, JSON, or an HTML page with the metric curves overlaid.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use weir::{Comparison, MetricSeries, MetricSummary, TenantView};

use crate::render::number;
use crate::report::STYLE;
use crate::run_table::{metric_named, param_text, print_columns};
use crate::terminal::printable;
use weir_server::render::chart;
use weir_server::render::escape;

/// `weir compare`.
#[derive(Args)]
pub(crate) struct CompareArgs {
    /// Two or more runs: ids, unique prefixes, or `last`. The first is the
    /// one the others are compared with.
    #[arg(num_args = 2.., required = true, value_name = "RUN")]
    runs: Vec<String>,
    /// Only these metrics (repeatable): `loss`, or `train.loss` for one step's.
    #[arg(long, value_name = "METRIC")]
    metric: Vec<String>,
    /// Print the comparison as one JSON object.
    #[arg(long)]
    json: bool,
    /// Also write an HTML page with each metric's curves overlaid.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
}

pub(crate) fn compare(view: &TenantView<'_>, args: &CompareArgs) -> anyhow::Result<()> {
    let runs: Vec<&str> = args.runs.iter().map(String::as_str).collect();
    let mut comparison = view.compare(&runs)?;
    if !args.metric.is_empty() {
        comparison.metrics.retain(|column, _| args.metric.iter().any(|name| metric_named(column, name)));
    }
    if let Some(path) = &args.html {
        let mut series = Vec::new();
        for run in &comparison.runs {
            series.push(view.metric_series(&run.id)?);
        }
        std::fs::write(path, html(&comparison, &series)).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote the comparison to {}", path.display());
    }
    if args.json {
        crate::render::print_json(&comparison)?;
        return Ok(());
    }
    print_text(&comparison);
    Ok(())
}

/// `0.81 (best 0.78)`, or `0.81` when the last value is the best.
fn metric_cell(summary: &Option<MetricSummary>) -> String {
    match summary {
        None => "-".to_owned(),
        Some(s) if s.best == s.last || s.points == 1 => number(s.last),
        Some(s) => format!("{} (best {})", number(s.last), number(s.best)),
    }
}

fn print_text(comparison: &Comparison) {
    let ids: Vec<String> = comparison.runs.iter().map(|run| run.id.clone()).collect();
    let pipelines: Vec<&str> = comparison.runs.iter().map(|run| run.pipeline.as_str()).collect();
    let same_pipeline = pipelines.iter().all(|p| *p == pipelines[0]);
    let of = if same_pipeline { format!(" of `{}`", pipelines[0]) } else { String::new() };
    println!("{} runs{of}", ids.len());
    let header = |first: &str| std::iter::once(first.to_owned()).chain(ids.iter().cloned()).collect::<Vec<_>>();
    let mut status = header("");
    status[0] = "status".to_owned();
    status[1..].iter_mut().zip(&comparison.runs).for_each(|(cell, run)| *cell = run.status.to_string());
    print_columns(&[header("run"), status]);

    println!("\nparameters that differ:");
    if comparison.params.is_empty() {
        println!("  (none: every run had the same parameters)");
    } else {
        let mut table = vec![header("  param")];
        for (name, values) in &comparison.params {
            table.push(std::iter::once(format!("  {name}")).chain(values.iter().map(param_text)).collect());
        }
        print_columns(&table);
    }

    println!("\nmetrics (last value, and the best when it differs):");
    if comparison.metrics.is_empty() {
        println!("  (none reported)");
    } else {
        let mut table = vec![header("  metric")];
        for (name, values) in &comparison.metrics {
            table.push(std::iter::once(format!("  {name}")).chain(values.iter().map(metric_cell)).collect());
        }
        print_columns(&table);
    }

    println!("\nsteps (compared with the first run):");
    let width = comparison.steps.iter().map(|step| step.step.chars().count()).max().unwrap_or(0);
    for step in &comparison.steps {
        let statuses: Vec<String> =
            step.statuses.iter().map(|status| status.map_or("-".to_owned(), |s| s.to_string())).collect();
        let differs = step.same_as_first.iter().skip(1).filter(|same| !**same).count();
        let verdict =
            if differs == 0 { "same result in every run".to_owned() } else { format!("differs in {differs}") };
        println!("  {:<width$}  {}  ({verdict})", printable(&step.step), statuses.join(" / "));
        for (run, changes) in comparison.runs.iter().zip(&step.changes).skip(1) {
            if !changes.is_empty() {
                println!("      {}: {}", run.id, printable(&changes.join("; ")));
            }
        }
    }
}

/// The comparison as a self-contained page: the tables, then a chart per
/// metric with a line per run.
fn html(comparison: &Comparison, series: &[BTreeMap<String, MetricSeries>]) -> String {
    let ids: Vec<&str> = comparison.runs.iter().map(|run| run.id.as_str()).collect();
    let head: String = ids.iter().map(|id| format!("<th><code>{}</code></th>", escape(id))).collect();
    let mut page = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>weir compare</title>\n<style>{STYLE}</style></head>\n<body>\n\
         <h1>{} runs compared</h1>\n<h2>Parameters that differ</h2>\n<table>\n<tr><th>param</th>{head}</tr>\n",
        ids.len()
    );
    for (name, values) in &comparison.params {
        let cells: String = values.iter().map(|value| format!("<td>{}</td>", escape(&param_text(value)))).collect();
        let _ = writeln!(page, "<tr><td>{}</td>{cells}</tr>", escape(name));
    }
    let _ = writeln!(page, "</table>\n<h2>Metrics</h2>\n<table>\n<tr><th>metric</th>{head}</tr>");
    for (name, values) in &comparison.metrics {
        let cells: String = values.iter().map(|value| format!("<td>{}</td>", escape(&metric_cell(value)))).collect();
        let _ = writeln!(page, "<tr><td>{}</td>{cells}</tr>", escape(name));
    }
    let _ = writeln!(page, "</table>\n<h2>Steps</h2>\n<table>\n<tr><th>step</th>{head}</tr>");
    for step in &comparison.steps {
        let cells: String = step
            .statuses
            .iter()
            .zip(&step.changes)
            .map(|(status, changes)| {
                let status = status.map_or("-", |s| s.as_str());
                format!("<td class=\"{status}\">{status}<br>{}</td>", escape(&changes.join("; ")))
            })
            .collect();
        let _ = writeln!(page, "<tr><td>{}</td>{cells}</tr>", escape(&step.step));
    }
    page.push_str("</table>\n<h2>Curves</h2>\n");
    let charted: Vec<&String> = comparison
        .metrics
        .keys()
        .filter(|name| series.iter().any(|run| run.get(*name).is_some_and(|v| v.len() > 1)))
        .collect();
    if charted.is_empty() {
        page.push_str("<p>No metric was reported more than once in a run.</p>\n");
    }
    for name in charted {
        let none = MetricSeries::default();
        let lines: Vec<(&str, &MetricSeries)> =
            ids.iter().zip(series).map(|(id, run)| (*id, run.get(name).unwrap_or(&none))).collect();
        let _ = writeln!(page, "<figure><figcaption>{}</figcaption>{}</figure>", escape(name), chart(&lines));
    }
    page.push_str("</body></html>\n");
    page
}
