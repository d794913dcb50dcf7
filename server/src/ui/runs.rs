//! The runs list, a run's page (live graph, steps, timeline, metrics), a
//! step's page (params, inputs, outputs, logs, metrics, why it ran), and
//! the actions on a run (cancel, retry) and its artifacts.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use weir::{MetricSeries, RunDetail, StepRecord, StepStatus};

use super::page::{Page, PageResult, UiError, duration, short_digest, status_badge, svg, time};
use super::session::{CsrfForm, Viewer, url_encode};
use crate::api::runs::{RunFilter, RunItem};
use crate::problem::{Problem, Query};
use crate::render::{Graph, chart, compact, status_word, timeline};
use crate::state::AppState;

/// Runs per page of the list.
const PAGE_SIZE: usize = 25;
/// Metrics shown per run in the list.
const HEADLINE_METRICS: usize = 3;

/// Runs on a worker thread what reads the databases.
pub(super) async fn blocking<T: Send + 'static>(
    state: &Arc<AppState>,
    work: impl FnOnce(&AppState) -> Result<T, Problem> + Send + 'static,
) -> Result<T, UiError> {
    let state = state.clone();
    Ok(tokio::task::spawn_blocking(move || work(&state)).await.map_err(Problem::internal)??)
}

/// What the list shows of a run besides its row in `server.db`.
struct RunLine {
    item: RunItem,
    counts: Option<(usize, usize)>,
    metrics: BTreeMap<String, f64>,
}

/// `/`: the runs, newest first, filtered and a page at a time.
pub async fn list(viewer: Viewer, State(state): State<Arc<AppState>>, Query(filter): Query<RunFilter>) -> PageResult {
    let mut asked = filter.clone();
    asked.page_size = Some(filter.page_size.unwrap_or(PAGE_SIZE));
    let listed = crate::api::runs::list(viewer.caller.clone(), State(state.clone()), Query(asked)).await;
    let (lines, next, error) = match listed {
        Ok(axum::Json(page)) => {
            let lines = blocking(&state, move |state| {
                let history = state.engine.history();
                Ok(page
                    .runs
                    .into_iter()
                    .map(|item| {
                        let counts = history.summary(&item.id).ok().map(|summary| (summary.ran, summary.cached));
                        let metrics = history.final_metrics(&item.id).unwrap_or_default();
                        RunLine { item, counts, metrics }
                    })
                    .collect::<Vec<_>>())
            })
            .await?;
            (lines, page.next_page_token, None)
        }
        Err(problem) => (Vec::new(), None, Some(problem.detail)),
    };
    let field = |value: &Option<String>| value.clone().unwrap_or_default();
    let body = html! {
        h1 { "Runs" }
        form.filters method="get" action="/" role="search" {
            label { "Pipeline " input name="pipeline" value=(field(&filter.pipeline)); }
            label { "Version " input name="version" size="6" value=(field(&filter.version)); }
            label { "Status "
                select name="status" {
                    option value="" { "any" }
                    @for status in ["running", "succeeded", "failed", "cancelled", "killed"] {
                        option value=(status) selected[filter.status.as_deref() == Some(status)] { (status) }
                    }
                }
            }
            label { "Label " input name="label" placeholder="KEY=VALUE" value=(field(&filter.label)); }
            label { "After " input name="created_after" placeholder="2026-12-01T00:00:00Z" value=(field(&filter.created_after)); }
            label { "Before " input name="created_before" placeholder="RFC 3339" value=(field(&filter.created_before)); }
            button type="submit" { "Filter" }
        }
        @if let Some(error) = error { p.error role="alert" { (error) } }
        @if lines.is_empty() {
            p { "No runs yet. Trigger one from a " a href="/pipelines" { "pipeline" } "'s page." }
        } @else {
            table.runs {
                thead { tr { th { "run" } th { "pipeline" } th { "version" } th { "status" } th { "started (UTC)" } th { "duration" } th { "steps" } th { "metrics" } } }
                tbody {
                    @for line in &lines {
                        tr {
                            td { a href={ "/runs/" (line.item.id) } { code { (line.item.id) } } }
                            td { a href={ "/pipelines/" (url_encode(&line.item.pipeline)) } { (line.item.pipeline) } }
                            td { (line.item.version) }
                            td { (status_badge(&line.item.status)) }
                            td { (time(line.item.created)) }
                            td { @if let Some(ended) = line.item.ended { (duration((ended - line.item.created) * 1000.0)) } }
                            td { @if let Some((ran, reused)) = line.counts { (ran) " ran · " (reused) " reused" } }
                            td.metrics {
                                @for (name, value) in headline(&line.metrics) {
                                    span.metric { (name) " = " (compact(*value)) } " "
                                }
                            }
                        }
                    }
                }
            }
        }
        @if let Some(token) = next {
            @let mut next_filter = filter.clone();
            @let _ = next_filter.page_token.replace(token);
            p { a rel="next" href={ "/?" (filter_query(&next_filter)) } { "Older runs →" } }
        }
    };
    Ok(Page::new("Runs", &viewer, "runs").render(body).into_response())
}

/// The metrics a run is known by: accuracies, losses and scores first.
fn headline(metrics: &BTreeMap<String, f64>) -> impl Iterator<Item = (&String, &f64)> {
    const TELLING: [&str; 6] = ["accuracy", "loss", "f1", "auc", "error", "score"];
    let rank = |name: &str| {
        let metric = name.rsplit_once('.').map_or(name, |(_, metric)| metric).to_ascii_lowercase();
        TELLING.iter().position(|word| metric.contains(word)).unwrap_or(TELLING.len())
    };
    let mut ranked: Vec<_> = metrics.iter().collect();
    ranked.sort_by_key(|(name, _)| rank(name));
    ranked.into_iter().take(HEADLINE_METRICS)
}

/// `filter` as a query string.
fn filter_query(filter: &RunFilter) -> String {
    let fields = [
        ("pipeline", &filter.pipeline),
        ("version", &filter.version),
        ("status", &filter.status),
        ("label", &filter.label),
        ("created_after", &filter.created_after),
        ("created_before", &filter.created_before),
        ("page_token", &filter.page_token),
    ];
    fields
        .iter()
        .filter_map(|(name, value)| value.as_ref().map(|value| format!("{name}={}", url_encode(value))))
        .collect::<Vec<_>>()
        .join("&")
}

/// A run as the pages need it: the server's row, the history's record
/// (absent until the run starts recording), and the graph of its version.
struct RunView {
    item: RunItem,
    detail: Option<RunDetail>,
    graph: Graph,
    series: BTreeMap<String, MetricSeries>,
}

async fn run_view(state: &Arc<AppState>, tenant: &str, id: &str) -> Result<RunView, UiError> {
    let (tenant, id) = (tenant.to_owned(), id.to_owned());
    blocking(state, move |state| {
        let item = crate::api::runs::find(state, &tenant, &id)?;
        let detail = state.engine.history().run_detail(&id).ok();
        let statuses: BTreeMap<String, StepStatus> =
            detail.iter().flat_map(|detail| detail.steps.iter().map(|step| (step.step.clone(), step.status))).collect();
        let graph = match crate::launch::version_pipeline(state, &tenant, &item.pipeline, Some(&item.version)) {
            Ok((_, pipeline)) => Graph::new(&pipeline, &statuses),
            Err(_) => detail.as_ref().map_or_else(|| Graph::from_run(&empty_run(&item)), Graph::from_run),
        };
        let series = state.engine.history().metric_series(&id).unwrap_or_default();
        Ok(RunView { item, detail, graph, series })
    })
    .await
}

fn empty_run(item: &RunItem) -> RunDetail {
    serde_json::from_value(serde_json::json!({
        "id": item.id, "pipeline": item.pipeline, "tenant": item.tenant, "manifest_path": null,
        "manifest_digest": null, "status": "running", "kind": "run", "started": item.created, "ended": null,
        "host": "", "ran": 0, "cached": 0, "failed": 0, "skipped": 0, "cancelled": 0,
        "params": {}, "outputs": {}, "warnings": [], "steps": [],
    }))
    .expect("an empty run document reads back")
}

/// `/runs/{id}`: the graph coloured by status (live while the run goes on),
/// the steps, the timeline, the metrics, and cancel or retry.
pub async fn show(viewer: Viewer, State(state): State<Arc<AppState>>, Path(id): Path<String>) -> PageResult {
    let run = run_view(&state, &viewer.caller.tenant, &id).await?;
    let item = &run.item;
    let running = item.status == "running";
    let link = |step: &str| format!("/runs/{}/steps/{}", url_encode(&item.id), url_encode(step));
    let steps: &[StepRecord] = run.detail.as_ref().map_or(&[], |detail| &detail.steps);
    let charted: Vec<_> = run.series.iter().filter(|(_, values)| values.len() > 1).collect();
    let body = html! {
        div.run data-run=(item.id) data-live=[running.then(|| format!("/runs/{}/live", item.id))] {
            h1 { "Run " code { (item.id) } " " span #run-status { (status_badge(&item.status)) } }
            p.facts {
                "Pipeline " a href={ "/pipelines/" (url_encode(&item.pipeline)) } { (item.pipeline) }
                ", version " (item.version) ", started " (time(item.created)) " UTC"
                @if let Some(ended) = item.ended { ", took " (duration((ended - item.created) * 1000.0)) }
                @if let Some(retry_of) = &item.retry_of { ", a retry of " a href={ "/runs/" (retry_of) } { code { (retry_of) } } }
                "."
            }
            @if let Some(detail) = &run.detail {
                p { (detail.summary.ran) " ran, " (detail.summary.cached) " reused, " (detail.summary.failed) " failed, "
                    (detail.summary.skipped) " skipped, " (detail.summary.cancelled) " cancelled." }
                @if detail.params.as_object().is_some_and(|params| !params.is_empty()) {
                    p { "Parameters: " code { (detail.params) } }
                }
            }
            @if !item.labels.is_empty() {
                p { "Labels: " @for (key, value) in &item.labels { code.label { (key) "=" (value) } " " } }
            }
            @if let Some(error) = &item.error { p.error role="alert" { (error) } }
            div.actions {
                @if running {
                    form method="post" action={ "/runs/" (item.id) "/cancel" } {
                        input type="hidden" name="csrf" value=(viewer.csrf);
                        button.danger type="submit" { "Cancel run" }
                    }
                } @else {
                    form method="post" action={ "/runs/" (item.id) "/retry" } {
                        input type="hidden" name="csrf" value=(viewer.csrf);
                        button type="submit" { "Retry" }
                    }
                }
                a.button href={ "/compare?a=" (item.id) } { "Compare with…" }
            }
            h2 { "Graph" }
            p.hint { "Each step is a link: Tab to it, or use the arrow keys once one has focus." }
            div.graph #graph { (svg(run.graph.linked_svg(&link))) }
            h2 { "Steps" }
            table.steps #steps {
                thead { tr { th { "step" } th { "status" } th { "duration" } th { "reused from" } th { "metrics" } } }
                tbody {
                    @for step in steps {
                        tr data-step=(step.step) {
                            td { a href=(link(&step.step)) { (step.step) } }
                            td.status { (status_badge_of(step.status)) }
                            td { (duration(step.duration_ms)) }
                            td { @if let Some(from) = &step.reused_from { a href={ "/runs/" (from) } { code { (from) } } } }
                            td.metrics { @for (name, value) in &step.metrics { span.metric { (name) " = " (compact(*value)) } " " } }
                        }
                    }
                }
            }
            @if steps.iter().any(|step| step.finished.is_some()) {
                @if let Some(detail) = &run.detail {
                    h2 { "Timeline" }
                    div.timeline-wrap { (svg(timeline(detail))) }
                }
            }
            h2 { "Metrics" }
            @if charted.is_empty() {
                p { "No metric was reported more than once." }
            }
            div.charts {
                @for (name, values) in charted {
                    figure.chart { figcaption { (name) } (svg(chart(&[(name.as_str(), values)]))) }
                }
            }
        }
    };
    Ok(Page::new(&format!("Run {id}"), &viewer, "runs").render(body).into_response())
}

fn status_badge_of(status: StepStatus) -> Markup {
    html! { span class={ "badge s-" (status.as_str()) } { (status_word(status)) } }
}

/// `/runs/{id}/live`: the run's events (the API's stream), for the page's script.
pub async fn live(viewer: Viewer, State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    match crate::api::run_data::events(viewer.caller, State(state), Path(id)).await {
        Ok(stream) => stream.into_response(),
        Err(problem) => problem.into_response(),
    }
}

/// How long cancelling from the run's page waits for the run to stop, so
/// that the page it shows next says how it ended (a run that takes longer
/// is shown still stopping, and its page follows it live).
const CANCEL_SETTLE: std::time::Duration = std::time::Duration::from_secs(3);

/// Cancels a running run, waits a moment for it to stop, then shows it.
pub async fn cancel(
    viewer: Viewer,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    axum::Form(form): axum::Form<CsrfForm>,
) -> PageResult {
    viewer.check_csrf(form.csrf.as_deref())?;
    let live = state.live.get(&id, &viewer.caller.tenant);
    let _accepted = crate::api::runs::cancel(viewer.caller, State(state), Path(id.clone())).await?;
    if let Some(live) = live {
        live.wait_for_end(CANCEL_SETTLE).await;
    }
    Ok(Redirect::to(&format!("/runs/{}", url_encode(&id))).into_response())
}

/// Starts a run's trigger again, then shows the new run.
pub async fn retry(
    viewer: Viewer,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    axum::Form(form): axum::Form<CsrfForm>,
) -> PageResult {
    viewer.check_csrf(form.csrf.as_deref())?;
    let (accepted, _) = crate::api::runs::retry_run(state, viewer.caller.tenant, id).await?;
    Ok(Redirect::to(&format!("/runs/{}", url_encode(&accepted.id))).into_response())
}

/// `/runs/{id}/steps/{step}`: one step of a run in full.
pub async fn step(
    viewer: Viewer,
    State(state): State<Arc<AppState>>,
    Path((id, step_name)): Path<(String, String)>,
) -> PageResult {
    let tenant = viewer.caller.tenant.clone();
    let (run, name) = (id.clone(), step_name.clone());
    let found = blocking(&state, move |state| {
        let item = crate::api::runs::find(state, &tenant, &run)?;
        let view = state.engine.tenant(&tenant)?;
        let record = view.step(&run, &name).ok();
        let defined = crate::launch::version_pipeline(state, &tenant, &item.pipeline, Some(&item.version))
            .ok()
            .and_then(|(_, pipeline)| pipeline.step(&name).map(|step| step.params().clone()));
        if record.is_none() && defined.is_none() {
            return Err(Problem::not_found(format!("step `{name}` of run `{run}`")));
        }
        // As run when the key was recorded, else as the manifest writes them.
        let params = record.as_ref().and_then(StepRecord::resolved_params).or(defined).map(serde_json::Value::Object);
        let explanation = record.as_ref().and_then(|_| view.explain(&run, &name).ok());
        let read = |digest: &weir::Digest| {
            view.read_file(digest).map(|bytes| String::from_utf8_lossy(&bytes).into_owned()).unwrap_or_default()
        };
        let logs = record
            .as_ref()
            .and_then(|record| record.logs.as_ref())
            .map(|logs| (read(&logs.stdout), read(&logs.stderr)));
        let prefix = format!("{name}.");
        let series: BTreeMap<String, MetricSeries> = view
            .metric_series(&run)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(metric, values)| metric.strip_prefix(&prefix).map(|metric| (metric.to_owned(), values)))
            .collect();
        Ok((item, record, params, explanation, logs, series))
    })
    .await?;
    let (item, record, params, explanation, logs, series) = found;
    let running = item.status == "running";
    let status = record.as_ref().map(|record| record.status);
    let settled = status.is_some_and(|status| status != StepStatus::Running);
    let body = html! {
        div.step data-run=(item.id) data-step=(step_name)
            data-live=[(running && !settled).then(|| format!("/runs/{}/live", item.id))] {
            p.crumbs { a href={ "/runs/" (item.id) } { "← run " code { (item.id) } } }
            h1 { "Step " code { (step_name) } " "
                span #step-status { @match status { Some(status) => (status_badge_of(status)), None => (status_badge("pending")) } } }
            @if let Some(record) = &record {
                p.facts {
                    "Took " (duration(record.duration_ms))
                    @if let Some(from) = &record.reused_from { "; reused from run " a href={ "/runs/" (from) } { code { (from) } } }
                    @if let Some(forced) = &record.forced { "; made to execute: " (forced) }
                    "."
                }
                @if let Some(key) = &record.cache_key { p { "Cache key " code.digest { (key) } } }
                @if !record.details.placements.is_empty() {
                    ul.placements {
                        @for placement in &record.details.placements {
                            li { (placement.executor) " job " code { (placement.job) }
                                @if let Some(node) = &placement.node { " on node " code { (node) } }
                                ": " (placement.state)
                                @if let Some(code) = &placement.exit_code { ", exit code " code { (code) } }
                                @if placement.submissions > 1 { ", submitted " (placement.submissions) " times" } }
                        }
                    }
                }
                @if let Some(error) = &record.error { h2 { "Error" } pre.error { (error) } }
            } @else {
                p { "The step has not settled yet; this page updates when it does." }
            }
            @if let Some(explanation) = &explanation {
                h2 { "Why it " (if explanation.status == StepStatus::Cached { "was reused" } else { "ran" }) }
                ul.reasons { @for reason in &explanation.reasons { li { (reason) } } }
            }
            h2 { "Parameters" }
            @match &params {
                Some(params) if params.as_object().is_some_and(|map| !map.is_empty()) => {
                    table.kv { @for (name, value) in params.as_object().into_iter().flatten() { tr { th { (name) } td { code { (value) } } } } }
                }
                _ => p { "None." },
            }
            @if let Some(record) = &record {
                h2 { "Inputs" }
                (digest_table(&record.inputs))
                h2 { "Outputs" }
                (digest_table(&record.outputs))
                @if !record.entries.is_empty() {
                    h2 { "Entries" }
                    table { thead { tr { th { "entry" } th { "status" } th { "metrics" } } }
                        tbody { @for (entry, report) in &record.entries {
                            tr { td { (entry) } td { (status_badge_of(report.status)) }
                                 td { @for (name, value) in &report.metrics { span.metric { (name) " = " (compact(*value)) } " " } } }
                        } }
                    }
                }
            }
            h2 { "Logs" }
            @match &logs {
                Some((stdout, stderr)) => {
                    h3 { "stdout" } pre.log #stdout { (stdout) }
                    h3 { "stderr" } pre.log #stderr { (stderr) }
                }
                None if running && !settled => {
                    p.hint { "Streamed as the step writes them." }
                    h3 { "stdout" } pre.log #stdout aria-live="polite" {}
                    h3 { "stderr" } pre.log #stderr {}
                }
                None => p { "No logs were kept for this step." },
            }
            h2 { "Metrics" }
            @if series.is_empty() { p { "None." } }
            div.charts {
                @for (name, values) in &series {
                    figure.chart {
                        figcaption { (name) }
                        @if values.len() > 1 { (svg(chart(&[(name.as_str(), values)]))) }
                        @else { p { (values.values.first().map_or_else(String::new, |value| compact(*value))) } }
                    }
                }
            }
        }
    };
    Ok(Page::new(&format!("{step_name} of {id}"), &viewer, "runs").render(body).into_response())
}

fn digest_table(digests: &BTreeMap<String, weir::Digest>) -> Markup {
    html! {
        @if digests.is_empty() { p { "None." } } @else {
            table.kv {
                @for (name, digest) in digests {
                    @let text = digest.to_string();
                    tr {
                        th { (name) }
                        td { a href={ "/artifacts/" (text) } title=(text) download=(name) { code { (short_digest(&text)) "…" } } }
                        td { a href={ "/lineage?digest=" (text) } { "lineage" } }
                    }
                }
            }
        }
    }
}

/// `/artifacts/{digest}`: a file's bytes, or a directory as a tar archive.
pub async fn artifact(viewer: Viewer, State(state): State<Arc<AppState>>, Path(digest): Path<String>) -> PageResult {
    Ok(crate::api::artifacts::get(viewer.caller, State(state), Path(digest)).await?)
}
