//! Looking across runs: a metric over a pipeline's runs, two runs
//! compared, and where an artifact came from.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::IntoResponse;
use maud::html;
use serde::Deserialize;
use serde_json::Value;
use weir::{Digest, MetricSeries, RunFilter};

use super::page::{Page, PageResult, short_digest, status_badge, svg};
use super::runs::blocking;
use super::session::{Viewer, url_encode};
use crate::problem::Problem;
use crate::render::{Graph, chart, compact, status_word};
use crate::state::AppState;

/// Runs a metric is charted across.
const METRIC_RUNS: usize = 50;

/// `/metrics`'s query.
#[derive(Deserialize)]
pub struct MetricsQuery {
    pipeline: Option<String>,
    metric: Option<String>,
}

/// `/metrics`: one metric (`STEP.METRIC`) over a pipeline's latest runs.
pub async fn metrics(
    viewer: Viewer,
    State(state): State<Arc<AppState>>,
    Query(query): Query<MetricsQuery>,
) -> PageResult {
    let pipeline = query.pipeline.filter(|name| !name.is_empty());
    let tenant = viewer.caller.tenant.clone();
    let filter = RunFilter::newest(METRIC_RUNS).pipeline(pipeline.as_deref());
    let mut rows = blocking(&state, move |state| Ok(state.engine.tenant(&tenant)?.metrics(&filter, None)?)).await?;
    rows.reverse();
    let names: BTreeSet<&String> = rows.iter().flat_map(|row| row.metrics.keys()).collect();
    let chosen = query.metric.filter(|metric| names.contains(metric)).or_else(|| names.first().map(|m| (*m).clone()));
    // One value per run, oldest first.
    let values = MetricSeries::indexed(match &chosen {
        Some(metric) => rows.iter().filter_map(|row| row.metrics.get(metric).copied()).collect(),
        None => Vec::new(),
    });
    let pipelines = crate::api::pipelines::list(viewer.caller.clone(), State(state)).await?.0.pipelines;
    let body = html! {
        h1 { "Metrics across runs" }
        form.filters method="get" action="/metrics" {
            label { "Pipeline "
                select name="pipeline" {
                    option value="" { "any" }
                    @for known in &pipelines {
                        option value=(known.name) selected[pipeline.as_deref() == Some(known.name.as_str())] { (known.name) }
                    }
                }
            }
            label { "Metric "
                select name="metric" {
                    @for name in &names { option value=(name) selected[chosen.as_ref() == Some(*name)] { (name) } }
                }
            }
            button type="submit" { "Show" }
        }
        @match &chosen {
            None => p { "No run of these reported a metric." },
            Some(metric) => {
                figure.chart.wide {
                    figcaption { (metric) " over the " (values.len()) " latest runs that reported it, oldest first" }
                    (svg(chart(&[(metric.as_str(), &values)])))
                }
                table {
                    thead { tr { th { "run" } th { "status" } th { (metric) } th { "parameters" } } }
                    tbody { @for row in rows.iter().rev().filter(|row| row.metrics.contains_key(metric)) {
                        tr { td { a href={ "/runs/" (row.run_id) } { code { (row.run_id) } } }
                             td { (status_badge(row.status.as_str())) }
                             td { (compact(row.metrics[metric])) }
                             td { code { (row.params) } } }
                    } }
                }
            }
        }
    };
    Ok(Page::new("Metrics", &viewer, "metrics").render(body).into_response())
}

/// `/compare`'s query: the two runs.
#[derive(Deserialize)]
pub struct CompareQuery {
    a: Option<String>,
    b: Option<String>,
}

/// `/compare?a=RUN&b=RUN`: parameters and metrics that differ, and which
/// steps re-ran and why; with one run or none, a form to choose them.
pub async fn compare(
    viewer: Viewer,
    State(state): State<Arc<AppState>>,
    Query(query): Query<CompareQuery>,
) -> PageResult {
    let given = |run: Option<String>| run.filter(|id| !id.is_empty());
    let (a, b) = (given(query.a), given(query.b));
    let tenant = viewer.caller.tenant.clone();
    let (first, second) = (a.clone(), b.clone());
    let (recent, comparison) = blocking(&state, move |state| {
        let view = state.engine.tenant(&tenant)?;
        let pipeline = match &first {
            Some(id) => Some(view.run(id).map_err(|_| Problem::not_found(format!("run `{id}`")))?.summary.pipeline),
            None => None,
        };
        let recent = view.runs(&RunFilter::newest(50).pipeline(pipeline.as_deref()))?;
        let comparison = match (&first, &second) {
            (Some(a), Some(b)) => Some(view.compare(&[a, b]).map_err(|err| Problem::bad_field("b", err))?),
            _ => None,
        };
        Ok((recent, comparison))
    })
    .await?;
    let chooser = |name: &str, chosen: &Option<String>| {
        html! {
            select name=(name) required {
                option value="" { "choose a run" }
                @for run in &recent {
                    option value=(run.id) selected[chosen.as_deref() == Some(run.id.as_str())] {
                        (run.id) " · " (run.pipeline) " · " (run.status.as_str())
                    }
                }
            }
        }
    };
    let body = html! {
        h1 { "Compare two runs" }
        form.filters method="get" action="/compare" {
            label { "Run " (chooser("a", &a)) }
            label { "with " (chooser("b", &b)) }
            button type="submit" { "Compare" }
        }
        @if let Some(comparison) = &comparison {
            @let ids: Vec<&str> = comparison.runs.iter().map(|run| run.id.as_str()).collect();
            @let head = html! { th {} @for id in &ids { th { a href={ "/runs/" (id) } { code { (id) } } } } };
            h2 { "Parameters that differ" }
            @if comparison.params.is_empty() { p { "None: both runs had the same parameters." } } @else {
                table.compare #param-diff { thead { tr { (head) } }
                    tbody { @for (name, values) in &comparison.params {
                        tr { th { (name) } @for value in values { td { code { (param_text(value)) } } } }
                    } } }
            }
            h2 { "Metrics" }
            @if comparison.metrics.is_empty() { p { "Neither run reported a metric." } } @else {
                table.compare #metric-diff { thead { tr { (head) th { "change" } } }
                    tbody { @for (name, values) in &comparison.metrics {
                        tr { th { (name) }
                             @for value in values { td { @if let Some(summary) = value { (compact(summary.last)) } @else { "—" } } }
                             td { @if let [Some(first), Some(second)] = values.as_slice() { (signed(second.last - first.last)) } } }
                    } } }
            }
            h2 { "Steps" }
            table.compare #step-diff { thead { tr { th { "step" } @for id in &ids { th { code { (id) } } } th { "why it differs" } } }
                tbody { @for step in &comparison.steps {
                    tr class=[(!step.same_as_first.iter().all(|same| *same)).then_some("differs")] {
                        th { (step.step) }
                        @for status in &step.statuses { td { @if let Some(status) = status {
                            span class={ "badge s-" (status.as_str()) } { (status_word(*status)) } } @else { "—" } } }
                        td { @for change in step.changes.iter().flatten() { div { (change) } } }
                    }
                } } }
        }
    };
    Ok(Page::new("Compare", &viewer, "compare").render(body).into_response())
}

fn param_text(value: &Value) -> String {
    if value.is_null() { "—".into() } else { value.to_string() }
}

fn signed(delta: f64) -> String {
    if delta > 0.0 { format!("+{}", compact(delta)) } else { compact(delta) }
}

/// `/lineage`'s query.
#[derive(Deserialize)]
pub struct LineageQuery {
    digest: Option<String>,
}

/// `/lineage?digest=D`: the steps and runs that produced an artifact, and
/// what went into each, as a graph and a table.
pub async fn lineage(
    viewer: Viewer,
    State(state): State<Arc<AppState>>,
    Query(query): Query<LineageQuery>,
) -> PageResult {
    let asked = query.digest.filter(|digest| !digest.trim().is_empty());
    let chain = match &asked {
        None => None,
        Some(text) => {
            let digest = Digest::parse(text.trim()).map_err(|err| Problem::bad_field("digest", err))?;
            let tenant = viewer.caller.tenant.clone();
            Some(
                blocking(&state, move |state| {
                    state
                        .engine
                        .tenant(&tenant)?
                        .lineage(&digest)
                        .map_err(|_| Problem::not_found(format!("an artifact {digest} of yours")))
                })
                .await?,
            )
        }
    };
    let inputs_of = |inputs: &BTreeMap<String, Digest>| {
        html! { @for (name, digest) in inputs {
            div { (name) ": " a href={ "/lineage?digest=" (digest) } { code { (short_digest(&digest.to_string())) "…" } } }
        } }
    };
    let body = html! {
        h1 { "Lineage" }
        form.filters method="get" action="/lineage" role="search" {
            label { "Artifact digest " input name="digest" size="72" placeholder="blake3:…" value=(asked.clone().unwrap_or_default()); }
            button type="submit" { "Trace" }
        }
        @if let Some(chain) = &chain {
            div.graph { (svg(Graph::from_lineage(chain).svg())) }
            table #lineage {
                thead { tr { th { "artifact" } th { "made by" } th { "in run" } th { "from" } } }
                tbody { @for link in chain {
                    @let digest = link.digest.to_string();
                    tr {
                        td { a href={ "/artifacts/" (digest) } title=(digest) { code { (short_digest(&digest)) "…" } } }
                        td { @match &link.step {
                            Some(step) => { a href={ "/runs/" (link.run_id) "/steps/" (url_encode(step)) } { (step) } "." (link.output) },
                            None => { "pipeline input " code { (link.output) } },
                        } }
                        td { a href={ "/runs/" (link.run_id) } { code { (link.run_id) } } }
                        td { (inputs_of(&link.inputs)) }
                    }
                } }
            }
        }
    };
    Ok(Page::new("Lineage", &viewer, "lineage").render(body).into_response())
}
