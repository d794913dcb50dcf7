//! Tenants and their quotas: admins list and set them (the workspace's
//! `tenants.toml`, applied at once); a tenant's token reads its own.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;

use crate::auth::Caller;
use crate::problem::{Json, Problem};
use crate::state::AppState;
use crate::tenants::{TenantSpec, TenantsError, TenantsFile};

/// A tenant and its quotas.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Tenant {
    /// Its name.
    pub name: String,
    /// Its quotas, as its table in `tenants.toml` has them.
    pub quota: TenantSpec,
}

/// The tenants list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TenantList {
    /// Every tenant by name (an admin), or the caller's own tenant.
    pub tenants: Vec<Tenant>,
}

impl From<TenantsError> for Problem {
    fn from(err: TenantsError) -> Problem {
        match err {
            TenantsError::NotFound(name) => Problem::not_found(format!("tenant `{name}`")),
            TenantsError::Invalid { field, reason } => Problem::bad_field(field, reason),
            TenantsError::Server(err) => err.into(),
        }
    }
}

fn tenants_file(state: &AppState) -> Result<&TenantsFile, Problem> {
    state.tenants.as_ref().ok_or_else(|| {
        Problem::new(StatusCode::NOT_IMPLEMENTED, "this server manages no tenants file (ServerConfig::tenants_file)")
    })
}

/// The tenants: every one for an admin, the caller's own otherwise.
#[utoipa::path(get, path = "/v1/tenants", tag = "tenants",
    responses((status = 200, body = TenantList), (status = 501, body = Problem)), security(("bearer" = [])))]
pub async fn list(caller: Caller, State(state): State<Arc<AppState>>) -> Result<axum::Json<TenantList>, Problem> {
    let tenants = tenants_file(&state)?
        .list()?
        .into_iter()
        .filter(|(name, _)| caller.admin || *name == caller.tenant)
        .map(|(name, quota)| Tenant { name, quota })
        .collect();
    Ok(axum::Json(TenantList { tenants }))
}

/// One tenant: any for an admin, only the caller's own otherwise.
#[utoipa::path(get, path = "/v1/tenants/{name}", tag = "tenants", params(("name" = String, Path)),
    responses((status = 200, body = Tenant), (status = 501, body = Problem)), security(("bearer" = [])))]
pub async fn get(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<axum::Json<Tenant>, Problem> {
    if !caller.admin && name != caller.tenant {
        return Err(TenantsError::NotFound(name).into());
    }
    let quota = tenants_file(&state)?.get(&name)?;
    Ok(axum::Json(Tenant { name, quota }))
}

/// Adds a tenant or replaces its quotas (admin only): written to the
/// workspace's `tenants.toml` (its other tables and comments kept) and
/// applied at once — to runs going on from their next step.
#[utoipa::path(put, path = "/v1/tenants/{name}", tag = "tenants", params(("name" = String, Path)),
    request_body = TenantSpec,
    responses((status = 200, description = "Its quotas were replaced", body = Tenant),
        (status = 201, description = "The tenant was added", body = Tenant),
        (status = 403, body = Problem), (status = 501, body = Problem)),
    security(("bearer" = [])))]
pub async fn put(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Json(spec): Json<TenantSpec>,
) -> Result<(StatusCode, axum::Json<Tenant>), Problem> {
    caller.require_admin()?;
    let file = tenants_file(&state)?;
    let created = file.put(&state.engine, &name, &spec)?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, axum::Json(Tenant { name, quota: spec })))
}
