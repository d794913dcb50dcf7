//! The team's shared cache: cache entries by key, which a tenant's clients
//! (`weir run --remote`) look up before executing a step and record after
//! executing one, and the keys of each run they pushed (`weir pull RUN`).
//! An entry names blobs the tenant uploaded (`PUT /v1/blobs`), read back
//! with `GET /v1/blobs/{digest}`. A tenant sees and writes only its own;
//! clients check every blob against its digest, so the server is trusted
//! with availability, not integrity.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use weir::{Artifact, Digest, OutputKind};

use super::artifacts::stream_blocking;
use super::blobs::owns;
use crate::auth::Caller;
use crate::problem::{Json, Problem};
use crate::state::AppState;

/// A step's recorded result, as `weir run --remote` sends and reads it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CacheEntry {
    /// The step's outputs by name, each `{"kind": "file" | "dir", "digest"}`
    /// (a directory's digest is that of its tree record, itself a blob).
    #[schema(value_type = Object)]
    pub outputs: BTreeMap<String, Artifact>,
    /// The blob of its stdout.
    #[schema(value_type = String)]
    pub stdout: Digest,
    /// The blob of its stderr.
    #[schema(value_type = String)]
    pub stderr: Digest,
    /// The last value of each metric it reported.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// The run that executed it, in the workspace that sent it.
    #[schema(max_length = 200)]
    pub run_id: String,
    /// When it was computed (seconds since the Unix epoch).
    #[serde(default)]
    pub created: Option<f64>,
}

/// The cache keys of a run's steps.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CacheRun {
    /// The keys, each `blake3:<hex>`.
    #[schema(value_type = Vec<String>)]
    pub keys: Vec<Digest>,
}

fn parse_digest(field: &str, text: &str) -> Result<Digest, Problem> {
    Digest::parse(text).map_err(|err| Problem::bad_field(field, err))
}

/// The entry the caller's tenant recorded under a cache key.
#[utoipa::path(get, path = "/v1/cache/entries/{key}", tag = "cache",
    params(("key" = String, Path, description = "The step's cache key, `blake3:<hex>`")),
    responses((status = 200, body = CacheEntry), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn get_entry(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
) -> Result<axum::Json<CacheEntry>, Problem> {
    let key = parse_digest("key", &key)?;
    let text: Option<String> = state.db.with(|conn| {
        conn.query_row(
            "SELECT entry FROM cache_entries WHERE tenant = ?1 AND key = ?2",
            params![caller.tenant, key.to_string()],
            |row| row.get(0),
        )
        .optional()
    })?;
    let text = text.ok_or_else(|| Problem::not_found(format!("cache entry {key}")))?;
    let entry = serde_json::from_str(&text).map_err(|err| Problem::internal(format!("cache entry {key}: {err}")))?;
    Ok(axum::Json(entry))
}

/// Records an entry under a cache key for the caller's tenant (replacing
/// one it had). Every blob it names must be one the tenant uploaded.
#[utoipa::path(put, path = "/v1/cache/entries/{key}", tag = "cache",
    params(("key" = String, Path, description = "The step's cache key, `blake3:<hex>`")),
    request_body = CacheEntry,
    responses(
        (status = 201, description = "Recorded", body = CacheEntry),
        (status = 200, description = "Replaced the tenant's entry under that key", body = CacheEntry),
        (status = 400, description = "A field is wrong, or names a blob the tenant did not upload", body = Problem)),
    security(("bearer" = [])))]
pub async fn put_entry(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
    Json(entry): Json<CacheEntry>,
) -> Result<(StatusCode, axum::Json<CacheEntry>), Problem> {
    let key = parse_digest("key", &key)?;
    if entry.run_id.is_empty() || entry.run_id.len() > 200 {
        return Err(Problem::bad_field("run_id", "a run id is 1 to 200 characters"));
    }
    let named = entry
        .outputs
        .iter()
        .map(|(name, artifact)| (format!("outputs.{name}"), artifact.digest))
        .chain([("stdout".to_owned(), entry.stdout), ("stderr".to_owned(), entry.stderr)]);
    for (field, digest) in named {
        if !owns(&state, &caller.tenant, &digest)? {
            return Err(Problem::bad_field(field, format!("blob {digest} was not uploaded (PUT /v1/blobs/{digest})")));
        }
    }
    let text = serde_json::to_string(&entry).map_err(Problem::internal)?;
    let replaced = state.db.with(|conn| {
        let tx = conn.transaction()?;
        let had = tx
            .query_row(
                "SELECT 1 FROM cache_entries WHERE tenant = ?1 AND key = ?2",
                params![caller.tenant, key.to_string()],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        tx.execute(
            "INSERT OR REPLACE INTO cache_entries (tenant, key, entry, created) VALUES (?1, ?2, ?3, ?4)",
            params![caller.tenant, key.to_string(), text, crate::db::now()],
        )?;
        tx.commit()?;
        Ok(had)
    })?;
    let status = if replaced { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, axum::Json(entry)))
}

/// The cache keys the caller's tenant recorded for a run.
#[utoipa::path(get, path = "/v1/cache/runs/{id}", tag = "cache", params(("id" = String, Path)),
    responses((status = 200, body = CacheRun), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn get_run(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<axum::Json<CacheRun>, Problem> {
    let text: Option<String> = state.db.with(|conn| {
        conn.query_row(
            "SELECT keys FROM cache_runs WHERE tenant = ?1 AND run_id = ?2",
            params![caller.tenant, id],
            |row| row.get(0),
        )
        .optional()
    })?;
    let text = text.ok_or_else(|| Problem::not_found(format!("run {id} in the shared cache")))?;
    let run = serde_json::from_str(&text).map_err(|err| Problem::internal(format!("cache run {id}: {err}")))?;
    Ok(axum::Json(run))
}

/// Records the cache keys of a run's steps for the caller's tenant, so a
/// teammate can `weir pull` them.
#[utoipa::path(put, path = "/v1/cache/runs/{id}", tag = "cache", params(("id" = String, Path)),
    request_body = CacheRun,
    responses((status = 200, description = "Recorded", body = CacheRun), (status = 400, body = Problem)),
    security(("bearer" = [])))]
pub async fn put_run(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Json(run): Json<CacheRun>,
) -> Result<axum::Json<CacheRun>, Problem> {
    if id.is_empty() || id.len() > 200 {
        return Err(Problem::bad_field("id", "a run id is 1 to 200 characters"));
    }
    const MAX_KEYS: usize = 100_000;
    if run.keys.len() > MAX_KEYS {
        return Err(Problem::bad_field("keys", format!("at most {MAX_KEYS} keys")));
    }
    let text = serde_json::to_string(&run).map_err(Problem::internal)?;
    state.db.with(|conn| {
        conn.execute(
            "INSERT OR REPLACE INTO cache_runs (tenant, run_id, keys, created) VALUES (?1, ?2, ?3, ?4)",
            params![caller.tenant, id, text, crate::db::now()],
        )
    })?;
    Ok(axum::Json(run))
}

/// A blob the caller's tenant uploaded, streamed.
#[utoipa::path(get, path = "/v1/blobs/{digest}", tag = "blobs",
    params(("digest" = String, Path, description = "`blake3:<hex>`")),
    responses(
        (status = 200, description = "Its bytes", body = Vec<u8>, content_type = "application/octet-stream"),
        (status = 404, description = "You did not upload it", body = Problem)),
    security(("bearer" = [])))]
pub async fn get_blob(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Path(digest): Path<String>,
) -> Result<Response, Problem> {
    let digest = parse_digest("digest", &digest)?;
    if !owns(&state, &caller.tenant, &digest)? || state.engine.store().kind_of(&digest) != Some(OutputKind::File) {
        return Err(Problem::not_found(format!("blob {digest}")));
    }
    // Opening checks the bytes against the digest: a corrupt blob is an
    // error, not a 200 whose body breaks off.
    let opened = tokio::task::spawn_blocking(move || state.engine.store().open_file(&digest))
        .await
        .map_err(Problem::internal)?;
    let mut file = opened.map_err(|err| Problem::internal(format!("blob {digest}: {err}")))?;
    let body = stream_blocking(move |writer| {
        std::io::copy(&mut file, writer)?;
        writer.flush()
    });
    let mut response = body.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    Ok(response)
}
