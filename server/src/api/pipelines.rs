//! Published pipelines and their immutable versions.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auth::Caller;
use crate::bundle::Bundle;
use crate::db::now;
use crate::launch::InputInfo;
use crate::problem::{Json, Problem};
use crate::state::AppState;

/// `POST /v1/pipelines`: a new version made of uploaded blobs.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// The manifest's path among `files`.
    pub manifest: String,
    /// Every file of the pipeline: path relative to the manifest's
    /// directory → digest of a blob you uploaded.
    pub files: BTreeMap<String, String>,
    /// The version's name (default: the next number).
    #[serde(default)]
    pub version: Option<String>,
    /// Whether the new version becomes the default (default: yes).
    #[serde(default = "yes")]
    pub make_default: bool,
}

fn yes() -> bool {
    true
}

/// A published version.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VersionInfo {
    /// The pipeline's name (from its manifest).
    pub pipeline: String,
    /// The version's name.
    pub version: String,
    /// The digest of its content (manifest and files).
    pub content: String,
    /// When it was published (seconds since the Unix epoch).
    pub created: f64,
    /// The parameters with their defaults.
    #[schema(value_type = Object)]
    pub params: Value,
    /// The pipeline inputs.
    pub inputs: BTreeMap<String, InputInfo>,
}

/// A pipeline and its default version.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PipelineInfo {
    /// Its name.
    pub name: String,
    /// The version a trigger runs unless it names one.
    pub default_version: String,
    /// When it was first published.
    pub created: f64,
}

/// `PATCH /v1/pipelines/{name}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelinePatch {
    /// The version to make the default.
    pub default_version: String,
}

/// The pipelines list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PipelineList {
    /// The pipelines, by name.
    pub pipelines: Vec<PipelineInfo>,
}

/// A pipeline's versions.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VersionList {
    /// Its versions, oldest first.
    pub versions: Vec<VersionInfo>,
}

/// Publishes a version. The same content again returns the version that
/// has it (200); a new one is 201.
#[utoipa::path(post, path = "/v1/pipelines", tag = "pipelines", request_body = PublishRequest,
    responses(
        (status = 201, description = "Published", body = VersionInfo),
        (status = 200, description = "This content was published before as this version", body = VersionInfo),
        (status = 400, description = "A path leaves the bundle, a blob was not uploaded, the manifest is invalid", body = Problem),
        (status = 409, description = "The named version exists with other content", body = Problem)),
    security(("bearer" = [])))]
pub async fn publish(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Json(request): Json<PublishRequest>,
) -> Result<(StatusCode, axum::Json<VersionInfo>), Problem> {
    if let Some(version) = &request.version {
        check_version_name(version)?;
    }
    let bundle = Bundle::parse(&request.manifest, &request.files)?;
    for (path, digest) in &bundle.files {
        if !crate::api::blobs::owns(&state, &caller.tenant, digest)? {
            return Err(Problem::bad_field(
                format!("files[{path:?}]"),
                format!("{digest} is not a blob you uploaded (PUT /v1/blobs/{digest})"),
            ));
        }
    }
    let state2 = state.clone();
    let tenant = caller.tenant.clone();
    tokio::task::spawn_blocking(move || record_version(&state2, &tenant, &bundle, &request))
        .await
        .map_err(Problem::internal)?
}

pub(crate) fn record_version(
    state: &AppState,
    tenant: &str,
    bundle: &Bundle,
    request: &PublishRequest,
) -> Result<(StatusCode, axum::Json<VersionInfo>), Problem> {
    let materialized = bundle.materialize(state, tenant)?;
    let (pipeline, unpublished) = materialized.load_without_inputs()?;
    let name = pipeline.name().to_owned();
    let content = bundle.content().to_string();
    if let Some(existing) = version_where(state, tenant, &name, "content", &content)? {
        return Ok((StatusCode::OK, axum::Json(existing)));
    }
    let mut inputs = BTreeMap::new();
    for (input, input_path) in pipeline.inputs() {
        let path = materialized
            .relative(input_path)
            .ok_or_else(|| Problem::bad_field(format!("inputs.{input}"), "not a path in the bundle"))?;
        let published = !unpublished.iter().any(|missing| missing == input_path);
        inputs.insert(input.clone(), InputInfo { path, published });
    }
    for step in pipeline.steps() {
        if let Some(module) = step.module() {
            let known = materialized.relative(module).is_some_and(|path| bundle.files.contains_key(&path));
            if !known {
                return Err(Problem::bad_field(
                    format!("steps.{}.module", step.name()),
                    format!(
                        "{} is not among the published files",
                        materialized.hide_paths(&module.display().to_string())
                    ),
                ));
            }
        }
    }
    let params = serde_json::to_value(pipeline.params()).map_err(Problem::internal)?;
    let created = now();
    let inserted = state.db.with(|conn| {
        let tx = conn.transaction()?;
        let seq: i64 = tx.query_row(
            "SELECT coalesce(max(seq), 0) + 1 FROM versions WHERE tenant = ?1 AND pipeline = ?2",
            params![tenant, name],
            |row| row.get(0),
        )?;
        let version = request.version.clone().unwrap_or_else(|| seq.to_string());
        let taken: bool = tx
            .query_row("SELECT 1 FROM versions WHERE tenant = ?1 AND pipeline = ?2 AND version = ?3", params![tenant, name, version], |_| Ok(()))
            .optional()?
            .is_some();
        if taken {
            return Ok(Err(version));
        }
        tx.execute(
            "INSERT INTO versions (tenant, pipeline, version, seq, content, bundle, params, inputs, created)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                tenant,
                name,
                version,
                seq,
                content,
                serde_json::to_string(bundle).unwrap_or_default(),
                params.to_string(),
                serde_json::to_string(&inputs).unwrap_or_default(),
                created
            ],
        )?;
        tx.execute(
            "INSERT INTO pipelines (tenant, name, default_version, created) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (tenant, name) DO UPDATE SET default_version = CASE WHEN ?5 THEN excluded.default_version ELSE default_version END",
            params![tenant, name, version, created, request.make_default],
        )?;
        tx.commit()?;
        Ok(Ok(version))
    })?;
    let version = inserted.map_err(|version| {
        Problem::conflict(format!(
            "version `{version}` of pipeline `{name}` exists with other content: versions are immutable, publish under another name"
        ))
    })?;
    Ok((StatusCode::CREATED, axum::Json(VersionInfo { pipeline: name, version, content, created, params, inputs })))
}

fn version_where(
    state: &AppState,
    tenant: &str,
    pipeline: &str,
    column: &str,
    value: &str,
) -> Result<Option<VersionInfo>, Problem> {
    let query = format!(
        "SELECT pipeline, version, content, created, params, inputs FROM versions WHERE tenant = ?1 AND pipeline = ?2 AND {column} = ?3"
    );
    let row = state.db.with(|conn| conn.query_row(&query, params![tenant, pipeline, value], version_row).optional())?;
    Ok(row)
}

fn version_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<VersionInfo> {
    Ok(VersionInfo {
        pipeline: row.get(0)?,
        version: row.get(1)?,
        content: row.get(2)?,
        created: row.get(3)?,
        params: serde_json::from_str(&row.get::<_, String>(4)?).unwrap_or_default(),
        inputs: serde_json::from_str(&row.get::<_, String>(5)?).unwrap_or_default(),
    })
}

/// A version name: 1 to 64 of A-Z a-z 0-9 . _ -, not starting with `.`.
fn check_version_name(version: &str) -> Result<(), Problem> {
    let ok = (1..=64).contains(&version.len())
        && !version.starts_with('.')
        && version.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Problem::bad_field(
            "version",
            format!("{version:?} is not 1 to 64 of A-Z a-z 0-9 . _ - (not starting with `.`)"),
        ))
    }
}

/// The caller's pipelines.
#[utoipa::path(get, path = "/v1/pipelines", tag = "pipelines",
    responses((status = 200, body = PipelineList)), security(("bearer" = [])))]
pub async fn list(caller: Caller, State(state): State<Arc<AppState>>) -> Result<axum::Json<PipelineList>, Problem> {
    let pipelines = state.db.with(|conn| {
        let mut statement =
            conn.prepare("SELECT name, default_version, created FROM pipelines WHERE tenant = ?1 ORDER BY name")?;
        let rows = statement.query_map([&caller.tenant], pipeline_row)?;
        rows.collect()
    })?;
    Ok(axum::Json(PipelineList { pipelines }))
}

fn pipeline_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<PipelineInfo> {
    Ok(PipelineInfo { name: row.get(0)?, default_version: row.get(1)?, created: row.get(2)? })
}

fn find(state: &AppState, tenant: &str, name: &str) -> Result<PipelineInfo, Problem> {
    state
        .db
        .with(|conn| {
            conn.query_row(
                "SELECT name, default_version, created FROM pipelines WHERE tenant = ?1 AND name = ?2",
                params![tenant, name],
                pipeline_row,
            )
            .optional()
        })?
        .ok_or_else(|| Problem::not_found(format!("pipeline `{name}`")))
}

/// One pipeline.
#[utoipa::path(get, path = "/v1/pipelines/{name}", tag = "pipelines",
    params(("name" = String, Path)),
    responses((status = 200, body = PipelineInfo), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn get(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<axum::Json<PipelineInfo>, Problem> {
    Ok(axum::Json(find(&state, &caller.tenant, &name)?))
}

/// A pipeline's versions, oldest first.
#[utoipa::path(get, path = "/v1/pipelines/{name}/versions", tag = "pipelines",
    params(("name" = String, Path)),
    responses((status = 200, body = VersionList), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn versions(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<axum::Json<VersionList>, Problem> {
    find(&state, &caller.tenant, &name)?;
    let versions = state.db.with(|conn| {
        let mut statement = conn.prepare(
            "SELECT pipeline, version, content, created, params, inputs FROM versions WHERE tenant = ?1 AND pipeline = ?2 ORDER BY seq",
        )?;
        let rows = statement.query_map(params![caller.tenant, name], version_row)?;
        rows.collect()
    })?;
    Ok(axum::Json(VersionList { versions }))
}

/// Changes a pipeline's default version.
#[utoipa::path(patch, path = "/v1/pipelines/{name}", tag = "pipelines", request_body = PipelinePatch,
    params(("name" = String, Path)),
    responses((status = 200, body = PipelineInfo), (status = 400, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn patch(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Json(patch): Json<PipelinePatch>,
) -> Result<axum::Json<PipelineInfo>, Problem> {
    find(&state, &caller.tenant, &name)?;
    if version_where(&state, &caller.tenant, &name, "version", &patch.default_version)?.is_none() {
        return Err(Problem::bad_field(
            "default_version",
            format!("pipeline `{name}` has no version `{}`", patch.default_version),
        ));
    }
    state.db.with(|conn| {
        conn.execute(
            "UPDATE pipelines SET default_version = ?3 WHERE tenant = ?1 AND name = ?2",
            params![caller.tenant, name, patch.default_version],
        )
    })?;
    Ok(axum::Json(find(&state, &caller.tenant, &name)?))
}
