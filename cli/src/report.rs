//! `weir report RUN -o FILE.html`: one self-contained page (no network) with
//! the run's graph, its step table, and a chart of every metric series.

use std::collections::BTreeMap;
use std::fmt::Write;

use weir::{MetricSeries, RunDetail};

use weir_server::render::{Graph, chart, compact, escape};

/// The HTML page for `run`, whose metric series are `series` (by `STEP.METRIC`).
pub(crate) fn html(run: &RunDetail, series: &BTreeMap<String, MetricSeries>) -> String {
    let summary = &run.summary;
    let mut page = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>weir run {id}</title>\n<style>{STYLE}</style></head>\n<body>\n\
         <h1>Run <code>{id}</code> of <code>{pipeline}</code>: <span class=\"{status}\">{status}</span></h1>\n\
         <p>{ran} ran, {cached} reused, {failed} failed, {skipped} skipped. Parameters: <code>{params}</code></p>\n\
         <h2>Graph</h2>\n<div class=\"graph\">{graph}</div>\n<h2>Steps</h2>\n<table>\n\
         <tr><th>step</th><th>status</th><th>duration</th><th>reused from</th><th>outputs</th><th>metrics</th><th>error</th></tr>\n",
        id = escape(&summary.id),
        pipeline = escape(&summary.pipeline),
        status = escape(summary.status.as_str()),
        ran = summary.ran,
        cached = summary.cached,
        failed = summary.failed,
        skipped = summary.skipped,
        params = escape(&run.params.to_string()),
        graph = Graph::from_run(run).svg(),
    );
    for step in &run.steps {
        let outputs: Vec<String> = step
            .outputs
            .iter()
            .map(|(name, digest)| format!("{}: <code>{}</code>", escape(name), short(&digest.to_string())))
            .collect();
        let metrics: Vec<String> =
            step.metrics.iter().map(|(name, value)| format!("{}={}", escape(name), compact(*value))).collect();
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td class=\"{status}\">{status}</td><td>{:.1} ms</td><td>{}</td><td>{}</td><td>{}</td><td><pre>{}</pre></td></tr>",
            escape(&step.step),
            step.duration_ms,
            escape(step.reused_from.as_deref().unwrap_or("")),
            outputs.join("<br>"),
            metrics.join("<br>"),
            escape(step.error.as_deref().unwrap_or("")),
            status = escape(step.status.as_str()),
        );
    }
    page.push_str("</table>\n<h2>Metrics</h2>\n");
    // A metric reported once is a number, shown in the table; series get a chart.
    let charted: Vec<_> = series.iter().filter(|(_, values)| values.len() > 1).collect();
    if charted.is_empty() {
        page.push_str("<p>No metric was reported more than once.</p>\n");
    }
    for (name, values) in charted {
        let _ =
            writeln!(page, "<figure><figcaption>{}</figcaption>{}</figure>", escape(name), chart(&[(name, values)]));
    }
    page.push_str("</body></html>\n");
    page
}

fn short(digest: &str) -> String {
    digest.chars().take(19).collect::<String>() + "…"
}

pub(crate) const STYLE: &str = "body{font-family:sans-serif;margin:2em;color:#222}code{font-size:90%}\
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}\
pre{margin:0;white-space:pre-wrap;max-width:40em}.ran{background:#c8f0c8}.cached{background:#d8e8ff}\
.failed{background:#ffc8c8}.skipped{background:#eee}.succeeded{color:#070}.killed{color:#a00}\
figure{display:inline-block;margin:0 1em 1em 0}figcaption{font-weight:bold}.graph{overflow-x:auto}";
