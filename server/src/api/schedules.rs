//! Schedules: cron expressions with time zones, and watched files.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;

use crate::auth::Caller;
use crate::db::now;
use crate::problem::{Json, Problem};
use crate::schedules::{self, Schedule, ScheduleSpec};
use crate::state::AppState;

/// The schedules list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ScheduleList {
    /// The caller's schedules, oldest first.
    pub schedules: Vec<Schedule>,
}

/// The caller's schedules.
#[utoipa::path(get, path = "/v1/schedules", tag = "schedules",
    responses((status = 200, body = ScheduleList)), security(("bearer" = [])))]
pub async fn list(caller: Caller, State(state): State<Arc<AppState>>) -> Result<axum::Json<ScheduleList>, Problem> {
    Ok(axum::Json(ScheduleList { schedules: schedules::list(&state, &caller.tenant)? }))
}

/// Creates a schedule: `pipeline` and either `cron` (with `timezone`) or `watch`.
#[utoipa::path(post, path = "/v1/schedules", tag = "schedules", request_body = ScheduleSpec,
    responses((status = 201, body = Schedule), (status = 400, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn create(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Json(spec): Json<ScheduleSpec>,
) -> Result<(StatusCode, axum::Json<Schedule>), Problem> {
    let id = format!("sch-{}", crate::tokens::random_hex(6)?);
    let saved = state.clone();
    let tenant = caller.tenant.clone();
    let schedule_id = id.clone();
    tokio::task::spawn_blocking(move || schedules::save(&saved, &tenant, &schedule_id, &spec, now(), true))
        .await
        .map_err(Problem::internal)??;
    Ok((StatusCode::CREATED, axum::Json(schedules::find(&state, &caller.tenant, &id)?)))
}

/// One schedule with its latest fires.
#[utoipa::path(get, path = "/v1/schedules/{id}", tag = "schedules", params(("id" = String, Path)),
    responses((status = 200, body = Schedule), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn get(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<axum::Json<Schedule>, Problem> {
    Ok(axum::Json(schedules::find(&state, &caller.tenant, &id)?))
}

/// Changes the fields given; the rest stay.
#[utoipa::path(patch, path = "/v1/schedules/{id}", tag = "schedules", params(("id" = String, Path)), request_body = ScheduleSpec,
    responses((status = 200, body = Schedule), (status = 400, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn patch(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Json(patch): Json<ScheduleSpec>,
) -> Result<axum::Json<Schedule>, Problem> {
    let current = schedules::find(&state, &caller.tenant, &id)?;
    let mut spec = schedules::spec_of(&current);
    if patch.cron.is_some() {
        spec.watch = None;
    }
    if patch.watch.is_some() {
        spec.cron = None;
    }
    let ScheduleSpec { pipeline, version, cron, timezone, watch, params, labels, misfire, max_concurrent } = patch;
    spec.pipeline = pipeline.or(spec.pipeline);
    spec.version = version.or(spec.version);
    spec.cron = cron.or(spec.cron);
    spec.timezone = timezone.or(spec.timezone);
    spec.watch = watch.or(spec.watch);
    spec.params = params.or(spec.params);
    spec.labels = labels.or(spec.labels);
    spec.misfire = misfire.or(spec.misfire);
    spec.max_concurrent = max_concurrent.or(spec.max_concurrent);
    let saved = state.clone();
    let tenant = caller.tenant.clone();
    let schedule_id = id.clone();
    tokio::task::spawn_blocking(move || schedules::save(&saved, &tenant, &schedule_id, &spec, now(), false))
        .await
        .map_err(Problem::internal)??;
    Ok(axum::Json(schedules::find(&state, &caller.tenant, &id)?))
}

/// Deletes a schedule (its runs stay).
#[utoipa::path(delete, path = "/v1/schedules/{id}", tag = "schedules", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn delete(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    schedules::delete(&state, &caller.tenant, &id)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Pauses a schedule: it fires nothing until resumed.
#[utoipa::path(post, path = "/v1/schedules/{id}/pause", tag = "schedules", params(("id" = String, Path)),
    responses((status = 200, body = Schedule), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn pause(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<axum::Json<Schedule>, Problem> {
    schedules::set_paused(&state, &caller.tenant, &id, true, now())?;
    Ok(axum::Json(schedules::find(&state, &caller.tenant, &id)?))
}

/// Resumes a paused schedule from its next slot (slots missed while paused are not fired).
#[utoipa::path(post, path = "/v1/schedules/{id}/resume", tag = "schedules", params(("id" = String, Path)),
    responses((status = 200, body = Schedule), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn resume(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<axum::Json<Schedule>, Problem> {
    schedules::set_paused(&state, &caller.tenant, &id, false, now())?;
    Ok(axum::Json(schedules::find(&state, &caller.tenant, &id)?))
}
