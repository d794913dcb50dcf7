//! The web UI at `/`: server-rendered pages over the same state as the
//! API, for people rather than programs. Signing in turns a token into a
//! session cookie ([`session`]); every page shows only the signed-in
//! tenant's things, and another tenant's run or pipeline is a 404 exactly
//! like one that does not exist. The stylesheet and the one script are
//! compiled into the binary: nothing is fetched from elsewhere, so the UI
//! works on a machine without internet. See `docs/ui.md`.

mod designer;
mod insight;
mod manifest_edit;
mod page;
mod pipelines;
mod runs;
mod session;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

pub use session::Sessions;
use session::Viewer;

use crate::state::AppState;

/// What a UI page may load and do: its own script and stylesheet only (no
/// inline script, no other origin), no framing, forms posted only here.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The UI's routes.
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(runs::list))
        .route("/runs", get(runs::list))
        .route("/login", get(session::login_form).post(session::login))
        .route("/logout", post(session::logout))
        .route("/assets/{file}", get(asset))
        .route("/runs/{id}", get(runs::show))
        .route("/runs/{id}/live", get(runs::live))
        .route("/runs/{id}/cancel", post(runs::cancel))
        .route("/runs/{id}/retry", post(runs::retry))
        .route("/runs/{id}/steps/{step}", get(runs::step))
        .route("/artifacts/{digest}", get(runs::artifact))
        .route("/metrics", get(insight::metrics))
        .route("/compare", get(insight::compare))
        .route("/lineage", get(insight::lineage))
        .route("/pipelines", get(pipelines::list))
        .route("/pipelines/{name}", get(pipelines::show))
        .route("/pipelines/{name}/trigger", post(pipelines::trigger))
        .route("/schedules/{id}/{action}", post(pipelines::schedule_action))
        .route("/pipelines/{name}/designer", get(designer::open).post(designer::save))
        .route("/pipelines/{name}/designer/check", post(designer::check))
        .layer(axum::middleware::from_fn(guard))
}

/// Refuses cross-origin state changes and sets the security headers of
/// every UI response.
async fn guard(request: Request, next: Next) -> Response {
    if let Err(problem) = session::same_origin(request.method(), request.headers(), request.uri().path()) {
        return page::error_page(problem);
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}

/// The stylesheet and script, from the binary.
async fn asset(Path(file): Path<String>) -> Response {
    let (body, content_type) = match file.as_str() {
        "ui.css" => (include_str!("../../assets/ui.css"), "text/css; charset=utf-8"),
        "ui.js" => (include_str!("../../assets/ui.js"), "text/javascript; charset=utf-8"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        // The URL carries the version, so a copy may be kept.
        (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=86400")),
    ];
    (headers, body).into_response()
}
