//! The HTTP API under `/v1`, `/healthz` and `/openapi.json`.

pub mod artifacts;
pub mod blobs;
pub mod cache;
pub mod pipelines;
pub mod run_data;
pub mod runs;
pub mod schedules;
pub mod tenants;
pub mod tokens;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::OpenApi;

use crate::problem::Problem;
use crate::state::AppState;

/// The API's OpenAPI 3.1 description, generated from the handlers.
#[derive(OpenApi)]
#[openapi(
    info(title = "weir", description = "Published pipelines, their runs and artifacts. Every call but /healthz and /openapi.json needs `Authorization: Bearer TOKEN`."),
    paths(
        health, openapi,
        blobs::head, blobs::put, cache::get_blob,
        cache::get_entry, cache::put_entry, cache::get_run, cache::put_run,
        pipelines::publish, pipelines::list, pipelines::get, pipelines::versions, pipelines::patch,
        runs::create, runs::list, runs::get, runs::cancel, runs::retry,
        run_data::events, run_data::logs, run_data::metrics, run_data::lineage,
        artifacts::get,
        schedules::list, schedules::create, schedules::get, schedules::patch, schedules::delete, schedules::pause, schedules::resume,
        tenants::list, tenants::get, tenants::put,
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
pub async fn openapi() -> axum::Json<Value> {
    static DOCUMENT: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    axum::Json(DOCUMENT.get_or_init(document).clone())
}

/// The OpenAPI document: what the handlers' annotations generate, with what
/// every operation shares said once here: errors are problem details, any
/// authenticated call may meet 401 and 429, any call with a path parameter
/// 404, and a digest in a path has the digest's form.
pub fn document() -> Value {
    let mut document = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    let problem = json!({ "application/problem+json": { "schema": { "$ref": "#/components/schemas/Problem" } } });
    let Some(paths) = document["paths"].as_object_mut() else { return document };
    for operations in paths.values_mut() {
        let Some(operations) = operations.as_object_mut() else { continue };
        for operation in operations.values_mut() {
            let secured = operation.get("security").is_some();
            let has_path_param = operation["parameters"]
                .as_array()
                .is_some_and(|params| params.iter().any(|param| param["in"] == "path"));
            let has_body = operation.get("requestBody").is_some();
            if let Some(params) = operation.get_mut("parameters").and_then(Value::as_array_mut) {
                for param in params.iter_mut() {
                    if param["name"] == "digest" || param["name"] == "key" {
                        param["schema"]["pattern"] = json!("^blake3:[0-9a-f]{64}$");
                    }
                    if param["name"] == "Idempotency-Key" {
                        param["schema"] =
                            json!({ "type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$" });
                    }
                }
            }
            let Some(responses) = operation["responses"].as_object_mut() else { continue };
            for response in responses.values_mut() {
                let Some(content) = response.get_mut("content") else { continue };
                if content["application/json"]["schema"]["$ref"] == "#/components/schemas/Problem" {
                    *content = problem.clone();
                }
            }
            let mut shared = vec![
                ("400", "The request is malformed"),
                ("408", "The request took too long to arrive"),
                ("500", "The server failed"),
            ];
            if secured {
                shared.extend([("401", "No valid bearer token"), ("429", "Over the token's rate limit")]);
                shared.push(("503", "The server is stopping"));
            }
            if has_path_param {
                shared.push(("404", "Not found (or another tenant's)"));
            }
            if has_body {
                shared.extend([
                    ("413", "The body is over the limit"),
                    ("415", "The body's content type is not the one documented"),
                ]);
            }
            for (status, description) in shared {
                responses.entry(status).or_insert_with(|| json!({ "description": description, "content": problem }));
            }
        }
    }
    document
}

/// The router of every endpoint.
pub fn router(state: Arc<AppState>) -> Router {
    let timeout = state.config.request_timeout;
    let json_limit = state.config.max_json_bytes;
    Router::new()
        .route("/healthz", get(health))
        .route("/openapi.json", get(openapi))
        .route("/v1/blobs/{digest}", put(blobs::put).head(blobs::head).get(cache::get_blob))
        .route("/v1/cache/entries/{key}", get(cache::get_entry).put(cache::put_entry))
        .route("/v1/cache/runs/{id}", get(cache::get_run).put(cache::put_run))
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
        .route("/v1/tenants", get(tenants::list))
        .route("/v1/tenants/{name}", get(tenants::get).put(tenants::put))
        .route("/v1/tokens", get(tokens::list).post(tokens::create))
        .route("/v1/tokens/{id}", axum::routing::delete(tokens::revoke))
        .merge(crate::ui::router())
        .fallback(|| async { Problem::not_found("this path") })
        .method_not_allowed_fallback(|| async {
            Problem::new(StatusCode::METHOD_NOT_ALLOWED, "this method is not allowed on this path")
        })
        .layer(DefaultBodyLimit::max(json_limit))
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
