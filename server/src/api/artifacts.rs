//! `GET /v1/artifacts/{digest}`: an artifact's bytes, streamed; a directory
//! as a tar stream. A tenant reads only artifacts its runs imported,
//! produced or logged (another's is 404, like one that does not exist).

use std::io::Write;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::sync::mpsc;
use weir::{Digest, OutputKind, TenantView};

use crate::auth::Caller;
use crate::problem::Problem;
use crate::state::AppState;

/// Streams an artifact: a file's bytes, or a directory as a tar archive.
#[utoipa::path(get, path = "/v1/artifacts/{digest}", tag = "artifacts", params(("digest" = String, Path)),
    responses(
        (status = 200, description = "A file (application/octet-stream) or a directory (application/x-tar)", body = Vec<u8>, content_type = "application/octet-stream"),
        (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn get(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Path(digest): Path<String>,
) -> Result<Response, Problem> {
    let digest = Digest::parse(&digest).map_err(|err| Problem::bad_field("digest", err))?;
    let kind = state
        .engine
        .tenant(&caller.tenant)?
        .kind_of(&digest)
        .map_err(|_| Problem::not_found(format!("artifact {digest}")))?;
    let tenant = caller.tenant.clone();
    let body = stream_blocking(move |writer| match state.engine.tenant(&tenant) {
        Ok(view) => write_artifact(&view, &digest, kind, writer),
        Err(err) => Err(std::io::Error::other(err.to_string())),
    });
    let content_type = match kind {
        OutputKind::File => "application/octet-stream",
        OutputKind::Dir => "application/x-tar",
    };
    let mut response = body.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(response)
}

fn write_artifact(
    view: &TenantView<'_>,
    digest: &Digest,
    kind: OutputKind,
    writer: &mut Chunked,
) -> std::io::Result<()> {
    let failed = |err: weir::Error| std::io::Error::other(err.to_string());
    match kind {
        OutputKind::File => view.write_file_to(digest, writer).map_err(failed),
        OutputKind::Dir => {
            let mut archive = tar::Builder::new(writer);
            append_dir(view, &mut archive, digest, "")?;
            archive.finish()
        }
    }
}

fn append_dir(
    view: &TenantView<'_>,
    archive: &mut tar::Builder<&mut Chunked>,
    digest: &Digest,
    prefix: &str,
) -> std::io::Result<()> {
    let failed = |err: weir::Error| std::io::Error::other(err.to_string());
    for entry in view.list_dir(digest).map_err(failed)? {
        let path = format!("{prefix}{}", entry.name);
        let mut header = tar::Header::new_gnu();
        match entry.kind {
            OutputKind::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                archive.append_data(&mut header, format!("{path}/"), std::io::empty())?;
                append_dir(view, archive, &entry.digest, &format!("{path}/"))?;
            }
            OutputKind::File => {
                let file = view.open_file(&entry.digest).map_err(failed)?;
                header.set_size(file.metadata()?.len());
                header.set_mode(0o644);
                archive.append_data(&mut header, &path, file)?;
            }
        }
    }
    Ok(())
}

/// A response body that `write` fills on a blocking thread, in chunks of
/// 64 KiB (not one per small write: a tar header is 512 bytes). A failure
/// cuts the body short: the status was already sent.
pub(crate) fn stream_blocking(write: impl FnOnce(&mut Chunked) -> std::io::Result<()> + Send + 'static) -> Body {
    let (sender, receiver) = mpsc::channel::<std::io::Result<Bytes>>(8);
    tokio::task::spawn_blocking(move || {
        let mut writer = std::io::BufWriter::with_capacity(64 << 10, ChannelWriter { sender: sender.clone() });
        if let Err(err) = write(&mut writer).and_then(|()| writer.flush()) {
            let _ = sender.blocking_send(Err(err));
        }
    });
    Body::from_stream(futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|chunk| (chunk, receiver))
    }))
}

/// What an artifact is written to: a response body, in 64 KiB chunks.
pub(crate) type Chunked = std::io::BufWriter<ChannelWriter>;

/// Sends what is written to it, in chunks, to a response body.
pub(crate) struct ChannelWriter {
    sender: mpsc::Sender<std::io::Result<Bytes>>,
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.sender
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
