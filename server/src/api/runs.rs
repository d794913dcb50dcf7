//! Runs: trigger, list, read, cancel, retry.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::ServerConfig;
use crate::auth::Caller;
use crate::launch::{Accepted, Origin, TriggerRequest, trigger};
use crate::problem::{Json, Problem, Query};
use crate::state::AppState;

/// Starts a run of a published pipeline. With an `Idempotency-Key` header,
/// a trigger repeated with the same key returns the first one's run (200)
/// instead of starting another.
#[utoipa::path(post, path = "/v1/pipelines/{name}/runs", tag = "runs", request_body = TriggerRequest,
    params(("name" = String, Path), ("Idempotency-Key" = Option<String>, Header, description = "Makes a retried trigger return the original run")),
    responses(
        (status = 202, description = "Started; `Location` names the run", body = Accepted),
        (status = 200, description = "A trigger with this Idempotency-Key had started this run", body = Accepted),
        (status = 400, description = "A parameter or input is unknown or of the wrong type", body = Problem),
        (status = 404, description = "No such pipeline or version", body = Problem)),
    security(("bearer" = [])))]
pub async fn create(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Json(request): Json<TriggerRequest>,
) -> Result<Response, Problem> {
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .filter(|key| (1..=255).contains(&key.len()) && key.bytes().all(|byte| byte.is_ascii_graphic()))
                .ok_or_else(|| Problem::bad_field("Idempotency-Key", "must be 1 to 255 visible ASCII characters"))?
                .to_owned(),
        ),
    };
    let tenant = caller.tenant.clone();
    let state2 = state.clone();
    let (accepted, started) = tokio::task::spawn_blocking(move || {
        let origin = Origin { idempotency_key: key.as_deref(), ..Origin::default() };
        trigger(&state2, &tenant, &name, &request, origin)
    })
    .await
    .map_err(Problem::internal)??;
    Ok(accepted_response(accepted, started))
}

fn accepted_response(accepted: Accepted, started: bool) -> Response {
    let status = if started { StatusCode::ACCEPTED } else { StatusCode::OK };
    let location = HeaderValue::from_str(&format!("/v1/runs/{}", accepted.id)).expect("a run id is a header value");
    let mut response = (status, axum::Json(accepted)).into_response();
    response.headers_mut().insert(header::LOCATION, location);
    response
}

/// `GET /v1/runs` filters and page.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RunFilter {
    /// Only runs of this pipeline.
    pub pipeline: Option<String>,
    /// Only runs of this version.
    pub version: Option<String>,
    /// Only runs with this status (empty: any).
    #[param(pattern = "^(running|succeeded|failed|cancelled|killed)?$")]
    pub status: Option<String>,
    /// Only runs with this label, as `KEY=VALUE` (empty: any).
    #[param(pattern = "^([A-Za-z0-9_./-]{1,63}=.*)?$")]
    pub label: Option<String>,
    /// Only runs created after this time (RFC 3339, or seconds since the Unix epoch).
    pub created_after: Option<String>,
    /// Only runs created before this time.
    pub created_before: Option<String>,
    /// Runs per page (default 50, at most 500).
    #[param(minimum = 1, maximum = 500)]
    pub page_size: Option<usize>,
    /// The `next_page_token` of the previous page.
    pub page_token: Option<String>,
}

impl RunFilter {
    /// The filter with empty values (`?status=`) taken as not given, as a
    /// form leaves them.
    fn without_empty(self) -> RunFilter {
        let given = |value: Option<String>| value.filter(|value| !value.is_empty());
        RunFilter {
            pipeline: given(self.pipeline),
            version: given(self.version),
            status: given(self.status),
            label: given(self.label),
            created_after: given(self.created_after),
            created_before: given(self.created_before),
            page_size: self.page_size,
            page_token: given(self.page_token),
        }
    }
}

/// A run in a list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunItem {
    /// Its id.
    pub id: String,
    /// The pipeline.
    pub pipeline: String,
    /// The version run.
    pub version: String,
    /// `running`, `succeeded`, `failed`, `cancelled` or `killed`.
    pub status: String,
    /// Its labels.
    pub labels: std::collections::BTreeMap<String, String>,
    /// When it was triggered (seconds since the Unix epoch).
    pub created: f64,
    /// When it ended.
    pub ended: Option<f64>,
    /// Why it failed before any step ran, if it did.
    pub error: Option<String>,
    /// The run it retried, if it is a retry.
    pub retry_of: Option<String>,
    /// The tenant it ran for.
    #[serde(skip)]
    pub tenant: String,
}

/// A page of runs, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunPage {
    /// The runs.
    pub runs: Vec<RunItem>,
    /// Give it as `page_token` for the next page; absent on the last.
    pub next_page_token: Option<String>,
}

const STATUSES: [&str; 5] = ["running", "succeeded", "failed", "cancelled", "killed"];

/// The caller's runs, newest first.
#[utoipa::path(get, path = "/v1/runs", tag = "runs", params(RunFilter),
    responses((status = 200, body = RunPage), (status = 400, body = Problem)), security(("bearer" = [])))]
pub async fn list(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Query(filter): Query<RunFilter>,
) -> Result<axum::Json<RunPage>, Problem> {
    let filter = filter.without_empty();
    let size = filter.page_size.unwrap_or(50);
    if !(1..=ServerConfig::MAX_PAGE_SIZE).contains(&size) {
        return Err(Problem::bad_field(
            "page_size",
            format!("{size} is not between 1 and {}", ServerConfig::MAX_PAGE_SIZE),
        ));
    }
    if let Some(status) = &filter.status
        && !STATUSES.contains(&status.as_str())
    {
        return Err(Problem::bad_field("status", format!("`{status}` is not one of {}", STATUSES.join(", "))));
    }
    let label = match &filter.label {
        None => None,
        Some(text) => Some(
            text.split_once('=').ok_or_else(|| Problem::bad_field("label", format!("`{text}` is not KEY=VALUE")))?,
        ),
    };
    if let Some((key, value)) = label {
        crate::launch::check_label(key, value).map_err(|problem| Problem::bad_field("label", problem.detail))?;
    }
    let after = filter.created_after.as_deref().map(|text| parse_time("created_after", text)).transpose()?;
    let before = filter.created_before.as_deref().map(|text| parse_time("created_before", text)).transpose()?;
    // A page token is the position (SQLite row id: trigger order) of the
    // last run of the previous page.
    let before_row = match &filter.page_token {
        None => None,
        Some(token) => Some(
            token
                .parse::<i64>()
                .ok()
                .filter(|row| *row > 0)
                .ok_or_else(|| Problem::bad_field("page_token", "not a token this server gave"))?,
        ),
    };
    let mut runs = state.db.with(|conn| {
        let mut statement = conn.prepare(
            "SELECT id, pipeline, version, status, labels, created, ended, error, retry_of, tenant, rowid FROM runs
             WHERE tenant = ?1
               AND (?2 IS NULL OR pipeline = ?2) AND (?3 IS NULL OR version = ?3) AND (?4 IS NULL OR status = ?4)
               AND (?5 IS NULL OR json_extract(labels, '$.\"' || ?5 || '\"') = ?6)
               AND (?7 IS NULL OR created > ?7) AND (?8 IS NULL OR created < ?8)
               AND (?9 IS NULL OR rowid < ?9)
             ORDER BY rowid DESC LIMIT ?10",
        )?;
        let rows = statement.query_map(
            params![
                caller.tenant,
                filter.pipeline,
                filter.version,
                filter.status,
                label.map(|(key, _)| key),
                label.map(|(_, value)| value),
                after,
                before,
                before_row,
                (size + 1) as i64
            ],
            |row| Ok((run_item(row)?, row.get::<_, i64>(10)?)),
        )?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
    })?;
    let next_page_token = if runs.len() > size {
        runs.truncate(size);
        runs.last().map(|(_, row)| row.to_string())
    } else {
        None
    };
    let runs = runs.into_iter().map(|(run, _)| run).collect();
    Ok(axum::Json(RunPage { runs, next_page_token }))
}

fn run_item(row: &rusqlite::Row<'_>) -> rusqlite::Result<RunItem> {
    Ok(RunItem {
        id: row.get(0)?,
        pipeline: row.get(1)?,
        version: row.get(2)?,
        status: row.get(3)?,
        labels: serde_json::from_str(&row.get::<_, String>(4)?).unwrap_or_default(),
        created: row.get(5)?,
        ended: row.get(6)?,
        error: row.get(7)?,
        retry_of: row.get(8)?,
        tenant: row.get(9)?,
    })
}

/// A time given as RFC 3339 or as seconds since the Unix epoch.
fn parse_time(field: &str, text: &str) -> Result<f64, Problem> {
    if let Ok(seconds) = text.parse::<f64>() {
        return Ok(seconds);
    }
    chrono::DateTime::parse_from_rfc3339(text).map(|time| time.timestamp_millis() as f64 / 1000.0).map_err(|err| {
        Problem::bad_field(field, format!("`{text}` is not an RFC 3339 time or seconds since the Unix epoch: {err}"))
    })
}

/// The caller's run `id` as the server recorded it.
pub fn find(state: &AppState, tenant: &str, id: &str) -> Result<RunItem, Problem> {
    state
        .db
        .with(|conn| {
            conn.query_row(
                "SELECT id, pipeline, version, status, labels, created, ended, error, retry_of, tenant FROM runs WHERE tenant = ?1 AND id = ?2",
                params![tenant, id],
                run_item,
            )
            .optional()
        })?
        .ok_or_else(|| Problem::not_found(format!("run `{id}`")))
}

/// A run: the document `weir run --json` prints (its steps, their status,
/// outputs and errors), with the server's `version`, `labels` and `retry_of`.
#[utoipa::path(get, path = "/v1/runs/{id}", tag = "runs", params(("id" = String, Path)),
    responses((status = 200, description = "The run document (docs/run.schema.json, whose labels are the trigger's) with version and retry_of", body = Object),
        (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn get(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, Problem> {
    let item = find(&state, &caller.tenant, &id)?;
    Ok(axum::Json(document(&state, &item)?))
}

/// The run document of `item`: the history's, or (before the run reached
/// the history, or when it never could) what the server knows.
pub fn document(state: &AppState, item: &RunItem) -> Result<Value, Problem> {
    let mut document = match state.engine.history().run_detail(&item.id) {
        Ok(detail) => serde_json::to_value(&detail).map_err(Problem::internal)?,
        Err(weir::Error::NotInHistory(_)) => json!({
            "id": item.id,
            "pipeline": item.pipeline,
            "tenant": item.tenant,
            "manifest_path": null,
            "manifest_digest": null,
            "status": item.status,
            "kind": "run",
            "started": item.created,
            "ended": item.ended,
            "host": "",
            "ran": 0, "cached": 0, "failed": 0, "skipped": 0, "cancelled": 0,
            "params": {},
            "outputs": {},
            "warnings": [],
            "steps": [],
        }),
        Err(err) => return Err(err.into()),
    };
    // The manifest's path on the server's disk is none of a tenant's business:
    // it is shown as the path in the published version.
    if let Some(path) = document["manifest_path"].as_str() {
        document["manifest_path"] = json!(crate::bundle::published_path(path));
    }
    document["version"] = json!(item.version);
    document["labels"] = json!(item.labels);
    document["retry_of"] = json!(item.retry_of);
    if let Some(error) = &item.error {
        document["error"] = json!(error);
    }
    Ok(document)
}

/// Asks a running run to stop.
#[utoipa::path(post, path = "/v1/runs/{id}/cancel", tag = "runs", params(("id" = String, Path)),
    responses((status = 202, description = "Cancelling; follow the events for the end", body = Object),
        (status = 404, body = Problem), (status = 409, description = "The run has ended", body = Problem)),
    security(("bearer" = [])))]
pub async fn cancel(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<(StatusCode, axum::Json<Value>), Problem> {
    if let Some(run) = state.live.get(&id, &caller.tenant) {
        run.cancel.cancel();
        return Ok((StatusCode::ACCEPTED, axum::Json(json!({ "id": id, "status": "cancelling" }))));
    }
    let item = find(&state, &caller.tenant, &id)?;
    Err(Problem::conflict(format!("run `{id}` has ended ({}): there is nothing to cancel", item.status)))
}

/// Runs a run's trigger again as a new run: every step that succeeded is
/// reused from the cache, the rest execute.
#[utoipa::path(post, path = "/v1/runs/{id}/retry", tag = "runs", params(("id" = String, Path)),
    responses((status = 202, body = Accepted), (status = 404, body = Problem), (status = 409, description = "The run is still running", body = Problem)),
    security(("bearer" = [])))]
pub async fn retry(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let (accepted, started) = retry_run(state, caller.tenant, id).await?;
    Ok(accepted_response(accepted, started))
}

/// Starts run `id`'s trigger again as a new run (refused while it runs).
pub async fn retry_run(state: Arc<AppState>, tenant: String, id: String) -> Result<(Accepted, bool), Problem> {
    let item = find(&state, &tenant, &id)?;
    if item.status == "running" {
        return Err(Problem::conflict(format!("run `{id}` is still running: cancel it or wait for it to end")));
    }
    let request: String =
        state.db.with(|conn| conn.query_row("SELECT request FROM runs WHERE id = ?1", [&id], |row| row.get(0)))?;
    let request: TriggerRequest = serde_json::from_str(&request).map_err(Problem::internal)?;
    tokio::task::spawn_blocking(move || {
        let origin = Origin { retry_of: Some(&id), ..Origin::default() };
        trigger(&state, &tenant, &item.pipeline, &request, origin)
    })
    .await
    .map_err(Problem::internal)?
}
