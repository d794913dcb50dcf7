//! Token management, for admin tokens.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::auth::Caller;
use crate::problem::{Json, Problem};
use crate::state::AppState;
use crate::tokens::TokenInfo;

/// `POST /v1/tokens`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// The tenant the token acts for (one of the workspace's tenants).
    pub tenant: String,
    /// Whether it may manage tokens too.
    #[serde(default)]
    pub admin: bool,
}

/// A created token: `token` is shown this once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    /// The token's record.
    #[serde(flatten)]
    pub info: TokenInfo,
    /// The bearer token.
    pub token: String,
}

/// The tokens list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenList {
    /// Every token, newest first (never their secrets).
    pub tokens: Vec<TokenInfo>,
}

/// Every token (admin only).
#[utoipa::path(get, path = "/v1/tokens", tag = "tokens",
    responses((status = 200, body = TokenList), (status = 403, body = Problem)), security(("bearer" = [])))]
pub async fn list(caller: Caller, State(state): State<Arc<AppState>>) -> Result<axum::Json<TokenList>, Problem> {
    caller.require_admin()?;
    Ok(axum::Json(TokenList { tokens: state.tokens.list()? }))
}

/// Creates a token (admin only).
#[utoipa::path(post, path = "/v1/tokens", tag = "tokens", request_body = NewToken,
    responses((status = 201, body = CreatedToken), (status = 400, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn create(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Json(request): Json<NewToken>,
) -> Result<(StatusCode, axum::Json<CreatedToken>), Problem> {
    caller.require_admin()?;
    state.engine.tenant(&request.tenant).map_err(|err| Problem::bad_field("tenant", err))?;
    let (info, token) = state.tokens.create(&request.tenant, request.admin)?;
    Ok((StatusCode::CREATED, axum::Json(CreatedToken { info, token })))
}

/// Revokes a token (admin only).
#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "tokens", params(("id" = String, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn revoke(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    caller.require_admin()?;
    if state.tokens.revoke(&id)? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Problem::not_found(format!("token `{id}`")))
    }
}
