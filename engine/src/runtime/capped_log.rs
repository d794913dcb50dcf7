//! A guest's stdout or stderr, written to a file and cut at `limits.log`
//! bytes: past the cap a marker is written once and the rest is dropped, so
//! a flooding guest costs neither disk nor memory.

use std::fs::File;
use std::io::Write;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

/// A log file that keeps at most `cap` bytes of what the guest writes.
#[derive(Clone)]
pub(crate) struct CappedLog {
    inner: Arc<Inner>,
}

struct Inner {
    file: Mutex<File>,
    cap: u64,
    written: AtomicU64,
}

impl CappedLog {
    pub(crate) fn new(file: File, cap: u64) -> Self {
        Self { inner: Arc::new(Inner { file: Mutex::new(file), cap, written: AtomicU64::new(0) }) }
    }

    /// Writes what fits under the cap and the marker when the cap is first
    /// passed; the guest always sees the whole buffer as written.
    fn write_capped(&self, bytes: &[u8]) -> std::io::Result<()> {
        let inner = &self.inner;
        let before = inner.written.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        if before > inner.cap {
            return Ok(());
        }
        let room = usize::try_from(inner.cap - before).unwrap_or(usize::MAX);
        let mut file = inner.file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if bytes.len() <= room {
            return file.write_all(bytes);
        }
        file.write_all(&bytes[..room])?;
        write!(file, "\n[weir: log truncated here: it passed limits.log = {}]\n", crate::Limits::show("log", inner.cap))
    }
}

impl IsTerminal for CappedLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedLog {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CappedLog {
    async fn ready(&mut self) {}
}

impl OutputStream for CappedLog {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.write_capped(&bytes).map_err(|err| StreamError::LastOperationFailed(err.into()))
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(1 << 20)
    }
}

impl tokio::io::AsyncWrite for CappedLog {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Poll::Ready(self.write_capped(buf).map(|()| buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_cap_then_one_marker() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let log = CappedLog::new(File::create(&path).unwrap(), 10);
        log.write_capped(b"0123456").unwrap();
        log.write_capped(b"789abc").unwrap();
        log.write_capped(b"never kept").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("0123456789\n[weir: log truncated here"), "{text}");
        assert_eq!(text.matches("truncated").count(), 1);
        assert!(!text.contains("never"));
    }

    #[test]
    fn under_the_cap_everything_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let log = CappedLog::new(File::create(&path).unwrap(), 10);
        log.write_capped(b"0123456789").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"0123456789");
    }
}
