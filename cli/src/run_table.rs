//! Runs side by side, one row each with the parameters that tell them
//! apart and their final metric values: `weir metrics`, `weir runs --sweep`
//! and the table a sweep ends with.

use std::cmp::Ordering;

use anyhow::bail;
use clap::Args;
use weir::{MetricRow, RunFilter, TenantView};

use crate::render;

/// The label `weir sweep` gives each of its runs, valued with the sweep's id.
pub(crate) const SWEEP_LABEL: &str = "weir.sweep";

/// Which runs a listing shows.
#[derive(Args)]
pub(crate) struct RunQuery {
    /// Only runs of this pipeline.
    #[arg(long)]
    pub pipeline: Option<String>,
    /// Only runs with this label, as KEY=VALUE.
    #[arg(long, value_name = "KEY=VALUE", value_parser = crate::parse_param)]
    pub label: Option<(String, String)>,
    /// Only the runs of this sweep (the id `weir sweep` prints).
    #[arg(long, value_name = "ID", conflicts_with = "label")]
    pub sweep: Option<String>,
    /// How many runs, newest first.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
}

impl RunQuery {
    /// The history's filter for these options.
    pub(crate) fn filter(&self) -> RunFilter {
        let filter = RunFilter::newest(self.limit).pipeline(self.pipeline.as_deref());
        match (&self.sweep, &self.label) {
            (Some(sweep), _) => filter.label(SWEEP_LABEL, sweep),
            (None, Some((key, value))) => filter.label(key, value),
            (None, None) => filter,
        }
    }

    /// Whether any option beyond `--pipeline` and `--limit` was given.
    pub(crate) fn is_narrowed(&self) -> bool {
        self.label.is_some() || self.sweep.is_some()
    }
}

/// Which metrics the table shows, and the order of its rows.
#[derive(Args, Default)]
pub(crate) struct MetricColumns {
    /// Only these metrics as columns (repeatable): `loss`, or `train.loss` for one step's.
    #[arg(long, value_name = "METRIC")]
    pub metric: Vec<String>,
    /// Order the runs by this metric, highest first (`accuracy`), or lowest
    /// first with `:asc` (`loss:asc`); runs without it come last.
    #[arg(long, value_name = "METRIC[:asc]")]
    pub sort: Option<String>,
}

impl MetricColumns {
    /// Whether columns or an order were asked for.
    pub(crate) fn is_set(&self) -> bool {
        !self.metric.is_empty() || self.sort.is_some()
    }
}

/// Prints the table of the runs `filter` admits (as JSON rows with `as_json`).
pub(crate) fn print(
    view: &TenantView<'_>,
    filter: &RunFilter,
    columns: &MetricColumns,
    as_json: bool,
) -> anyhow::Result<()> {
    let mut rows = view.metrics(filter, None)?;
    if let Some(sort) = &columns.sort {
        sort_rows(&mut rows, sort)?;
    }
    if !columns.metric.is_empty() {
        for row in &mut rows {
            row.metrics.retain(|column, _| columns.metric.iter().any(|name| metric_named(column, name)));
        }
    }
    if as_json {
        crate::render::print_json(&rows)?;
        return Ok(());
    }
    if rows.is_empty() {
        println!("no runs");
        return Ok(());
    }
    let mut metrics: Vec<&String> = rows.iter().flat_map(|row| row.metrics.keys()).collect();
    metrics.sort();
    metrics.dedup();
    let params = differing_params(&rows);
    let mut table: Vec<Vec<String>> = Vec::new();
    let header = ["run", "status"]
        .iter()
        .map(|s| s.to_string())
        .chain(params.iter().cloned())
        .chain(metrics.iter().map(|m| m.to_string()));
    table.push(header.collect());
    for row in &rows {
        let mut cells = vec![row.run_id.clone(), row.status.to_string()];
        cells.extend(params.iter().map(|name| row.params.get(name).map_or("-".to_owned(), param_text)));
        cells.extend(metrics.iter().map(|name| row.metrics.get(*name).map_or("-".to_owned(), |v| render::number(*v))));
        table.push(cells);
    }
    print_columns(&table);
    Ok(())
}

/// Prints `table` with each column as wide as its widest cell.
pub(crate) fn print_columns(table: &[Vec<String>]) {
    let widths: Vec<usize> =
        (0..table[0].len()).map(|i| table.iter().map(|row| row[i].chars().count()).max().unwrap_or(0)).collect();
    for row in table {
        let line: Vec<String> = row.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        println!("{}", line.join("  ").trim_end());
    }
}

/// Whether metric column `column` (`STEP.METRIC`) is the one `name` names:
/// the whole column, or its metric.
pub(crate) fn metric_named(column: &str, name: &str) -> bool {
    column == name || column.rsplit_once('.').is_some_and(|(_, metric)| metric == name)
}

/// Orders `rows` by the metric `sort` names (`NAME` or `NAME:asc`).
fn sort_rows(rows: &mut [MetricRow], sort: &str) -> anyhow::Result<()> {
    let (name, ascending) = match sort.rsplit_once(':') {
        Some((name, "asc")) => (name, true),
        Some((name, "desc")) => (name, false),
        _ => (sort, false),
    };
    let mut columns: Vec<&String> =
        rows.iter().flat_map(|row| row.metrics.keys()).filter(|column| metric_named(column, name)).collect();
    columns.sort();
    columns.dedup();
    let column = match columns.as_slice() {
        [column] => (*column).clone(),
        [] if rows.is_empty() => return Ok(()),
        [] => bail!("--sort {sort}: none of these runs reported a metric `{name}`"),
        several => {
            let list: Vec<&str> = several.iter().map(|c| c.as_str()).collect();
            bail!("--sort {sort}: `{name}` is reported by several steps ({}); name one", list.join(", "))
        }
    };
    rows.sort_by(|a, b| match (a.metrics.get(&column), b.metrics.get(&column)) {
        (Some(x), Some(y)) if ascending => x.total_cmp(y),
        (Some(x), Some(y)) => y.total_cmp(x),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    });
    Ok(())
}

/// The parameters whose values differ between the rows (all of them when
/// there is one row): what tells the runs apart.
fn differing_params(rows: &[MetricRow]) -> Vec<String> {
    let mut names: Vec<&String> = rows.iter().filter_map(|row| row.params.as_object()).flat_map(|p| p.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|name| rows.len() == 1 || rows.iter().any(|row| row.params.get(*name) != rows[0].params.get(*name)))
        .cloned()
        .collect()
}

/// A parameter's value as a table cell.
pub(crate) fn param_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Number(number) => number.as_f64().map_or_else(|| number.to_string(), render::number),
        other => other.to_string(),
    }
}
