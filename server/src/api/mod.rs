//! The HTTP API under `/v1`, `/healthz` and `/openapi.json`.

pub mod artifacts;
pub mod blobs;
pub mod pipelines;
pub mod run_data;
pub mod runs;
pub mod schedules;
pub mod tokens;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Serialize;
use utoipa::OpenApi;

use crate::ServerConfig;
use crate::problem::Problem;
use crate::state::AppState;

/// The API's OpenAPI 3.1 description, generated from the handlers.
#[derive(OpenApi)]
#[openapi(
    info(title = "weir", description = "Published pipelines, their runs and artifacts. Every call but /healthz and /openapi.json needs `Authorization: Bearer TOKEN`."),
    paths(
        health, openapi,
        blobs::head, blobs::put,
        pipelines::publish, pipelines::list, pipelines::get, pipelines::versions, pipelines::patch,
        runs::create, runs::list, runs::get, runs::cancel, runs::retry,
        run_data::events, run_data::logs, run_data::metrics, run_data::lineage,
        artifacts::get,
        schedules::list, schedules::create, schedules::get, schedules::patch, schedules::delete, schedules::pause, schedules::resume,
        tokens::list, tokens::create, tokens::revoke,
    ),
    components(schemas(Problem)),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The server's health.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: &'static str,
    /// Runs executing now.
    pub running: usize,
}

/// Whether the server is up (no token needed).
#[utoipa::path(get, path = "/healthz", tag = "server", responses((status = 200, body = Health)))]
pub async fn health(State(state): State<Arc<AppState>>) -> axum::Json<Health> {
    axum::Json(Health { status: "ok", running: state.live.len() })
}

/// This API's OpenAPI 3.1 description (no token needed).
#[utoipa::path(get, path = "/openapi.json", tag = "server", responses((status = 200, description = "OpenAPI 3.1", body = Object)))]
pub async fn openapi() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}

/// The router of every endpoint.
pub fn router(state: Arc<AppState>) -> Router {
    let timeout = state.config.request_timeout;
    Router::new()
        .route("/healthz", get(health))
        .route("/openapi.json", get(openapi))
        .route("/v1/blobs/{digest}", put(blobs::put).head(blobs::head))
        .route("/v1/pipelines", get(pipelines::list).post(pipelines::publish))
        .route("/v1/pipelines/{name}", get(pipelines::get).patch(pipelines::patch))
        .route("/v1/pipelines/{name}/versions", get(pipelines::versions))
        .route("/v1/pipelines/{name}/runs", post(runs::create))
        .route("/v1/runs", get(runs::list))
        .route("/v1/runs/{id}", get(runs::get))
        .route("/v1/runs/{id}/cancel", post(runs::cancel))
        .route("/v1/runs/{id}/retry", post(runs::retry))
        .route("/v1/runs/{id}/events", get(run_data::events))
        .route("/v1/runs/{id}/steps/{step}/logs", get(run_data::logs))
        .route("/v1/runs/{id}/metrics", get(run_data::metrics))
        .route("/v1/runs/{id}/lineage", get(run_data::lineage))
        .route("/v1/artifacts/{digest}", get(artifacts::get))
        .route("/v1/schedules", get(schedules::list).post(schedules::create))
        .route("/v1/schedules/{id}", get(schedules::get).patch(schedules::patch).delete(schedules::delete))
        .route("/v1/schedules/{id}/pause", post(schedules::pause))
        .route("/v1/schedules/{id}/resume", post(schedules::resume))
        .route("/v1/tokens", get(tokens::list).post(tokens::create))
        .route("/v1/tokens/{id}", axum::routing::delete(tokens::revoke))
        .fallback(|| async { Problem::not_found("this path") })
        .method_not_allowed_fallback(|| async {
            Problem::new(StatusCode::METHOD_NOT_ALLOWED, "this method is not allowed on this path")
        })
        .layer(DefaultBodyLimit::max(ServerConfig::MAX_JSON_BYTES))
        .layer(axum::middleware::from_fn(move |request: Request, next: Next| deadline(timeout, request, next)))
        .with_state(state)
}

/// Answers 408 when a request is not answered in time (a slow client's
/// upload, a stuck handler); a streamed body (events, artifacts) is not cut.
async fn deadline(timeout: std::time::Duration, request: Request, next: Next) -> Response {
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => Problem::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("the request was not complete within {} s", timeout.as_secs()),
        )
        .into_response(),
    }
}
