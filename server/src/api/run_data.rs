//! What a run produced besides its document: events, logs, metrics, lineage.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use serde_json::json;
use weir::{LineageNode, TenantView};

use super::runs::find;
use crate::auth::Caller;
use crate::live::{RunEvent, replay};
use crate::problem::Problem;
use crate::state::AppState;

/// The run's events as server-sent events: step starts, progress, metrics,
/// log writes (`{"step", "stream": "stdout"|"stderr", "text"}`) and step ends, then `run_finished` with the run's status. A client that
/// connects late first gets what already happened (after the run ended:
/// each step's end, from the history).
#[utoipa::path(get, path = "/v1/runs/{id}/events", tag = "runs", params(("id" = String, Path)),
    responses((status = 200, description = "text/event-stream: run_started, step_started, progress, metric, log, step_retrying, step_finished, run_finished", content_type = "text/event-stream", body = String),
        (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn events(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, Problem> {
    let item = find(&state, &caller.tenant, &id)?;
    let events: futures_util::stream::BoxStream<'static, RunEvent> = match state.live.get(&id, &caller.tenant) {
        Some(run) => run.follow().boxed(),
        None => {
            let replayed = match state.engine.history().run_detail(&id) {
                Ok(detail) => replay(&detail),
                Err(_) => vec![RunEvent {
                    name: "run_finished",
                    data: json!({ "run": id, "status": item.status, "error": item.error }),
                }],
            };
            futures_util::stream::iter(replayed).boxed()
        }
    };
    let stream = events.map(|event| Ok(SseEvent::default().event(event.name).data(event.data.to_string())));
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// A step's captured output.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StepLogs {
    /// The step.
    pub step: String,
    /// What it wrote to stdout (lossy UTF-8).
    pub stdout: String,
    /// What it wrote to stderr.
    pub stderr: String,
}

fn view<'a>(state: &'a AppState, tenant: &'a str) -> Result<TenantView<'a>, Problem> {
    Ok(state.engine.tenant(tenant)?)
}

/// A step's stdout and stderr.
#[utoipa::path(get, path = "/v1/runs/{id}/steps/{step}/logs", tag = "runs",
    params(("id" = String, Path), ("step" = String, Path)),
    responses((status = 200, body = StepLogs), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn logs(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Path((id, step)): Path<(String, String)>,
) -> Result<axum::Json<StepLogs>, Problem> {
    find(&state, &caller.tenant, &id)?;
    let view = view(&state, &caller.tenant)?;
    let record = view.step(&id, &step).map_err(|_| Problem::not_found(format!("step `{step}` of run `{id}`")))?;
    let read = |digest| view.read_file(digest).map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
    let (stdout, stderr) = match &record.logs {
        Some(logs) => (read(&logs.stdout)?, read(&logs.stderr)?),
        None => (String::new(), String::new()),
    };
    Ok(axum::Json(StepLogs { step, stdout, stderr }))
}

/// Every metric value of a run.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunMetrics {
    /// Each metric's values in order, by `STEP.METRIC`.
    pub metrics: BTreeMap<String, Vec<f64>>,
    /// Each value's position, by `STEP.METRIC` and in the same order: the
    /// one the step gave with it (an epoch, a batch), or else its place in
    /// the series (0, 1, 2…).
    pub at: BTreeMap<String, Vec<u64>>,
}

/// Every metric value of a run, by `STEP.METRIC`.
#[utoipa::path(get, path = "/v1/runs/{id}/metrics", tag = "runs", params(("id" = String, Path)),
    responses((status = 200, body = RunMetrics), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn metrics(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<axum::Json<RunMetrics>, Problem> {
    find(&state, &caller.tenant, &id)?;
    let series = match state.engine.history().metric_series(&id) {
        Ok(series) => series,
        Err(weir::Error::NotInHistory(_)) => BTreeMap::new(),
        Err(err) => return Err(err.into()),
    };
    let (mut metrics, mut at) = (BTreeMap::new(), BTreeMap::new());
    for (name, series) in series {
        metrics.insert(name.clone(), series.values);
        at.insert(name, series.at);
    }
    Ok(axum::Json(RunMetrics { metrics, at }))
}

/// Where a run's outputs came from.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunLineage {
    /// For each of the run's outputs (`STEP.OUTPUT`, or the pipeline output's
    /// name), the chain of steps and inputs that produced it.
    #[schema(value_type = Object)]
    pub outputs: BTreeMap<String, Vec<LineageNode>>,
}

/// The lineage of a run's outputs.
#[utoipa::path(get, path = "/v1/runs/{id}/lineage", tag = "runs", params(("id" = String, Path)),
    responses((status = 200, body = RunLineage), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn lineage(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<axum::Json<RunLineage>, Problem> {
    find(&state, &caller.tenant, &id)?;
    let view = view(&state, &caller.tenant)?;
    let mut outputs = BTreeMap::new();
    let Ok(detail) = state.engine.history().run_detail(&id) else {
        return Ok(axum::Json(RunLineage { outputs }));
    };
    let mut named: Vec<(String, weir::Digest)> =
        detail.outputs.iter().map(|(name, digest)| (name.clone(), *digest)).collect();
    if named.is_empty() {
        for step in &detail.steps {
            named.extend(step.outputs.iter().map(|(output, digest)| (format!("{}.{output}", step.step), *digest)));
        }
    }
    for (name, digest) in named {
        outputs.insert(name, view.lineage(&digest)?);
    }
    Ok(axum::Json(RunLineage { outputs }))
}
