//! `PUT /v1/blobs/{digest}` and `HEAD /v1/blobs/{digest}`: content a tenant
//! uploads to publish pipelines and to give as inputs. A tenant sees only
//! the blobs it uploaded itself (even where the store holds the bytes for
//! another), so a blob's existence leaks nothing across tenants.

use std::io::Write;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use futures_util::StreamExt;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use weir::Digest;

use crate::ServerError;
use crate::auth::Caller;
use crate::problem::Problem;
use crate::state::AppState;

/// An uploaded blob.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BlobInfo {
    /// Its digest.
    #[schema(value_type = String)]
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
}

/// Whether `tenant` uploaded blob `digest`.
pub fn owns(state: &AppState, tenant: &str, digest: &Digest) -> Result<bool, ServerError> {
    let found = state.db.with(|conn| {
        conn.query_row(
            "SELECT 1 FROM blobs WHERE tenant = ?1 AND digest = ?2",
            params![tenant, digest.to_string()],
            |_| Ok(()),
        )
        .optional()
    })?;
    Ok(found.is_some())
}

fn parse_digest(text: &str) -> Result<Digest, Problem> {
    Digest::parse(text).map_err(|err| Problem::bad_field("digest", err))
}

/// Whether the caller has uploaded a blob.
#[utoipa::path(head, path = "/v1/blobs/{digest}", tag = "blobs",
    params(("digest" = String, Path, description = "`blake3:<hex>`")),
    responses((status = 200, description = "You uploaded it"), (status = 404, description = "You did not")),
    security(("bearer" = [])))]
pub async fn head(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Path(digest): Path<String>,
) -> Result<StatusCode, Problem> {
    let digest = parse_digest(&digest)?;
    if owns(&state, &caller.tenant, &digest)? {
        Ok(StatusCode::OK)
    } else {
        Err(Problem::not_found(format!("blob {digest}")))
    }
}

/// Uploads a blob: the body's BLAKE3 digest must be the one in the path.
#[utoipa::path(put, path = "/v1/blobs/{digest}", tag = "blobs",
    params(("digest" = String, Path, description = "`blake3:<hex>` of the body")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 201, description = "Stored", body = BlobInfo),
        (status = 200, description = "You had uploaded it already", body = BlobInfo),
        (status = 400, description = "The body's digest differs", body = Problem),
        (status = 413, description = "Over the blob size limit", body = Problem)),
    security(("bearer" = [])))]
pub async fn put(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Path(digest): Path<String>,
    body: Body,
) -> Result<(StatusCode, axum::Json<BlobInfo>), Problem> {
    let digest = parse_digest(&digest)?;
    let limit = state.config.max_blob_bytes;
    let uploads = state.engine.store().root().join("server").join("uploads");
    std::fs::create_dir_all(&uploads).map_err(|err| ServerError::io(format!("creating {}", uploads.display()), err))?;
    let temp = uploads.join(crate::tokens::random_hex(8)?);
    let received = receive(body, &temp, limit).await;
    let result = match received {
        Ok((size, hash)) if hash != digest => Err(Problem::bad_field(
            "digest",
            format!("the body ({size} bytes) hashes to {hash}, not {digest}: it was changed or cut short"),
        )),
        Ok((size, _)) => store(&state, &caller.tenant, &temp, digest, size),
        Err(problem) => Err(problem),
    };
    let _ = std::fs::remove_file(&temp);
    result
}

/// Stores `bytes` as a blob `tenant` uploaded (as `PUT /v1/blobs` would)
/// and returns its digest.
pub fn put_bytes(state: &AppState, tenant: &str, bytes: &[u8]) -> Result<Digest, Problem> {
    let uploads = state.engine.store().root().join("server").join("uploads");
    std::fs::create_dir_all(&uploads).map_err(|err| ServerError::io(format!("creating {}", uploads.display()), err))?;
    let temp = uploads.join(crate::tokens::random_hex(8)?);
    let written =
        std::fs::write(&temp, bytes).map_err(|err| ServerError::io(format!("writing {}", temp.display()), err));
    let digest = Digest::of(bytes);
    let stored = written.map_err(Problem::from).and_then(|()| store(state, tenant, &temp, digest, bytes.len() as u64));
    let _ = std::fs::remove_file(&temp);
    stored.map(|_| digest)
}

/// Streams `body` into `temp`, hashing it, refusing more than `limit` bytes.
async fn receive(body: Body, temp: &std::path::Path, limit: u64) -> Result<(u64, Digest), Problem> {
    let mut file =
        std::fs::File::create(temp).map_err(|err| ServerError::io(format!("creating {}", temp.display()), err))?;
    let mut hasher = blake3::Hasher::new();
    let mut size = 0u64;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|err| Problem::new(StatusCode::BAD_REQUEST, format!("reading the body: {err}")))?;
        size += chunk.len() as u64;
        if size > limit {
            return Err(Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the blob is over the server's limit of {limit} bytes (`weir serve --max-blob-size`)"),
            ));
        }
        hasher.update(&chunk);
        file.write_all(&chunk).map_err(|err| ServerError::io(format!("writing {}", temp.display()), err))?;
    }
    file.sync_all().map_err(|err| ServerError::io(format!("writing {}", temp.display()), err))?;
    Ok((size, Digest::from_bytes(*hasher.finalize().as_bytes())))
}

fn store(
    state: &AppState,
    tenant: &str,
    temp: &std::path::Path,
    digest: Digest,
    size: u64,
) -> Result<(StatusCode, axum::Json<BlobInfo>), Problem> {
    let had = owns(state, tenant, &digest)?;
    // Until the blob is listed, a garbage collection would not keep it.
    let _listing = state.engine.store().hold_off_gc()?;
    let artifact = state.engine.store().import(temp)?;
    if artifact.digest != digest {
        return Err(Problem::internal(format!("the store hashed an upload to {}, not {digest}", artifact.digest)));
    }
    state.db.with(|conn| {
        conn.execute(
            "INSERT OR IGNORE INTO blobs (tenant, digest, size) VALUES (?1, ?2, ?3)",
            params![tenant, digest.to_string(), i64::try_from(size).unwrap_or(i64::MAX)],
        )
    })?;
    let status = if had { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, axum::Json(BlobInfo { digest, size })))
}
