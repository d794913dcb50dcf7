//! Errors as RFC 9457 problem details (`application/problem+json`), and
//! the extractors that turn a malformed request into one naming what is
//! wrong.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderValue, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use std::sync::Arc;

use crate::state::AppState;

/// A failed request: its status and a message that names the field.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// Always `about:blank`: the status and title say what kind of problem.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The HTTP status's reason phrase.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What is wrong, naming the field, parameter or resource.
    pub detail: String,
    /// The request field at fault (`params.epochs`, `files["../x"]`), when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// For 429: seconds until the next request may succeed.
    #[serde(skip)]
    pub retry_after: Option<u64>,
}

impl Problem {
    /// A problem of status `status`.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Problem {
        Problem {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            field: None,
            retry_after: None,
        }
    }

    /// 400, blaming `field`.
    pub fn bad_field(field: impl Into<String>, detail: impl std::fmt::Display) -> Problem {
        let field = field.into();
        let mut problem = Problem::new(StatusCode::BAD_REQUEST, format!("{field}: {detail}"));
        problem.field = Some(field);
        problem
    }

    /// 404 for `what`, the same whether it does not exist or belongs to
    /// another tenant.
    pub fn not_found(what: impl std::fmt::Display) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, format!("{what} not found"))
    }

    /// 409: the request conflicts with the resource's state.
    pub fn conflict(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::CONFLICT, detail)
    }

    /// 500 for a failure of the server, logged with the detail.
    pub fn internal(err: impl std::fmt::Display) -> Problem {
        eprintln!("weir serve: internal error: {err}");
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, err.to_string())
    }
}

impl From<crate::ServerError> for Problem {
    fn from(err: crate::ServerError) -> Problem {
        Problem::internal(err)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let retry_after = self.retry_after;
        let mut response = (status, axum::Json(self)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(seconds) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// A JSON request body, always an object; a malformed one is a 400 naming
/// where, one over the JSON body limit a 413 naming the limit.
pub struct Json<T>(pub T);

impl<T: serde::de::DeserializeOwned> FromRequest<Arc<AppState>> for Json<T> {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &Arc<AppState>) -> Result<Self, Problem> {
        // The router's `DefaultBodyLimit` is this limit.
        let limit = state.config.max_json_bytes;
        let value = match axum::Json::<serde_json::Value>::from_request(request, state).await {
            Ok(axum::Json(value)) => value,
            Err(rejection) => return Err(json_problem(rejection, limit)),
        };
        // Serde's derived structs also take an array of their fields in
        // order; every body this API documents is an object.
        if !value.is_object() {
            return Err(Problem::new(StatusCode::BAD_REQUEST, "request body: expected a JSON object"));
        }
        serde_path_to_error::deserialize(value)
            .map(Json)
            .map_err(|err| Problem::new(StatusCode::BAD_REQUEST, format!("request body: {err}")))
    }
}

fn json_problem(rejection: JsonRejection, limit: usize) -> Problem {
    let status = rejection.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return Problem::new(
            status,
            format!(
                "the request body is over the limit of {limit} bytes for JSON bodies (`weir serve --max-json-size`)"
            ),
        );
    }
    let detail = match &rejection {
        JsonRejection::JsonDataError(err) => {
            // The inner error names the path, e.g. `params.epochs: invalid type`.
            std::error::Error::source(err).map_or_else(|| err.body_text(), ToString::to_string)
        }
        other => other.body_text(),
    };
    // A body that is JSON of the wrong shape is as bad a request as one
    // that is not JSON (axum says 422); a missing content type stays 415.
    let status = if status == StatusCode::UNSUPPORTED_MEDIA_TYPE { status } else { StatusCode::BAD_REQUEST };
    Problem::new(status, format!("request body: {detail}"))
}

/// A query string; a malformed one is a 400 naming the parameter.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(rejection) => Err(query_problem(&rejection)),
        }
    }
}

fn query_problem(rejection: &QueryRejection) -> Problem {
    let detail = match rejection {
        QueryRejection::FailedToDeserializeQueryString(err) => {
            std::error::Error::source(err).map_or_else(|| err.body_text(), ToString::to_string)
        }
        other => other.body_text(),
    };
    Problem::new(StatusCode::BAD_REQUEST, format!("query string: {detail}"))
}

impl From<weir::Error> for Problem {
    fn from(err: weir::Error) -> Problem {
        match err {
            weir::Error::Validation(err) => Problem::new(StatusCode::BAD_REQUEST, err.to_string()),
            weir::Error::NotInHistory(what) => Problem::new(StatusCode::NOT_FOUND, what),
            weir::Error::ArtifactNotFound { digest } => Problem::not_found(format!("artifact {digest}")),
            other => Problem::internal(other),
        }
    }
}
