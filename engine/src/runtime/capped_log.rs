//! A guest's stdout or stderr, cut at `limits.log` bytes: past the cap a
//! marker is written once and the rest is dropped, so a flooding guest
//! costs neither disk nor memory. A log stays in memory until it passes
//! [`SPILL_AT`] bytes and only then becomes a file in the step's scratch
//! directory: most steps write little or nothing, and for them a log costs
//! no file to create, read back and delete. A log may also be shown as it
//! is written ([`LogTee`]): each write it keeps becomes an [`Event::Log`].

use std::fs::File;
use std::io::Write;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use cap_std::fs::Dir;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

use crate::events::{Event, EventSink, LogStream};

/// Bytes a log may hold in memory before it moves to a file.
pub(crate) const SPILL_AT: usize = 64 << 10;

/// A log that keeps at most `cap` bytes of what the guest writes. Clones
/// share the log.
#[derive(Clone)]
pub(crate) struct CappedLog {
    inner: Arc<Inner>,
}

struct Inner {
    spool: Mutex<Spool>,
    /// Where the log goes when it spills: a directory and a file name.
    spill_to: (Dir, String),
    cap: u64,
    written: AtomicU64,
    tee: Option<LogTee>,
}

/// Where a log's writes are shown as they happen: a run's event sink.
pub(crate) struct LogTee {
    /// The sink.
    pub sink: Arc<dyn EventSink>,
    /// The run, named in each event.
    pub run: String,
    /// The step, named in each event.
    pub step: String,
    /// Which log this is.
    pub stream: LogStream,
}

impl LogTee {
    fn show(&self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(bytes);
        self.sink.event(&Event::Log { run: &self.run, step: &self.step, stream: self.stream, text: &text });
    }
}

/// Where a log's bytes are.
enum Spool {
    Memory(Vec<u8>),
    File(File),
}

/// A finished log.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Captured {
    /// The whole log (it never passed [`SPILL_AT`] bytes).
    Memory(Vec<u8>),
    /// The log is the file of this name in the directory it spilled to.
    File(String),
}

impl Captured {
    /// The name of the file the log spilled to, if it did.
    pub(crate) fn file_name(&self) -> Option<&str> {
        match self {
            Captured::Memory(_) => None,
            Captured::File(name) => Some(name),
        }
    }
}

impl CappedLog {
    /// An empty log cut at `cap` bytes, which becomes file `name` of `dir`
    /// if it grows past [`SPILL_AT`] bytes, and whose writes `tee` shows.
    pub(crate) fn new(dir: Dir, name: &str, cap: u64, tee: Option<LogTee>) -> Self {
        let inner = Inner {
            spool: Mutex::new(Spool::Memory(Vec::new())),
            spill_to: (dir, name.to_owned()),
            cap,
            written: AtomicU64::new(0),
            tee,
        };
        Self { inner: Arc::new(inner) }
    }

    /// Whether the guest wrote more than the cap.
    pub(crate) fn truncated(&self) -> bool {
        self.inner.written.load(Ordering::Relaxed) > self.inner.cap
    }

    /// Ends the log and hands over what it kept (the log is empty after).
    pub(crate) fn finish(&self) -> Captured {
        let mut spool = self.inner.spool.lock().unwrap_or_else(PoisonError::into_inner);
        match &mut *spool {
            Spool::Memory(bytes) => Captured::Memory(std::mem::take(bytes)),
            Spool::File(_) => Captured::File(self.inner.spill_to.1.clone()),
        }
    }

    /// Writes what fits under the cap and the marker when the cap is first
    /// passed; the guest always sees the whole buffer as written.
    pub(crate) fn write_capped(&self, bytes: &[u8]) -> std::io::Result<()> {
        let inner = &self.inner;
        let before = inner.written.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        if before > inner.cap {
            return Ok(());
        }
        let room = usize::try_from(inner.cap - before).unwrap_or(usize::MAX);
        let mut spool = inner.spool.lock().unwrap_or_else(PoisonError::into_inner);
        if bytes.len() <= room {
            self.append(&mut spool, bytes)?;
            drop(spool);
            if let Some(tee) = &inner.tee {
                tee.show(bytes);
            }
            return Ok(());
        }
        let marker =
            format!("\n[weir: log truncated here: it passed limits.log = {}]\n", crate::Limits::show("log", inner.cap));
        self.append(&mut spool, &bytes[..room])?;
        self.append(&mut spool, marker.as_bytes())?;
        drop(spool);
        if let Some(tee) = &inner.tee {
            tee.show(&bytes[..room]);
            tee.show(marker.as_bytes());
        }
        Ok(())
    }

    /// Appends to the spool, moving it to its file when it grows too large.
    fn append(&self, spool: &mut Spool, bytes: &[u8]) -> std::io::Result<()> {
        match spool {
            Spool::Memory(kept) if kept.len() + bytes.len() <= SPILL_AT => {
                kept.extend_from_slice(bytes);
                Ok(())
            }
            Spool::Memory(kept) => {
                let (dir, name) = &self.inner.spill_to;
                let mut file = dir.create(name)?.into_std();
                file.write_all(kept)?;
                file.write_all(bytes)?;
                *spool = Spool::File(file);
                Ok(())
            }
            Spool::File(file) => file.write_all(bytes),
        }
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

    fn log_in(dir: &tempfile::TempDir, cap: u64) -> CappedLog {
        CappedLog::new(Dir::open_ambient_dir(dir.path(), cap_std::ambient_authority()).unwrap(), "log", cap, None)
    }

    #[test]
    fn keeps_the_cap_then_one_marker() {
        let dir = tempfile::tempdir().unwrap();
        let log = log_in(&dir, 10);
        log.write_capped(b"0123456").unwrap();
        log.write_capped(b"789abc").unwrap();
        log.write_capped(b"never kept").unwrap();
        assert!(log.truncated());
        let Captured::Memory(bytes) = log.finish() else { panic!("a small log stays in memory") };
        let text = String::from_utf8(bytes).unwrap();
        assert_eq!(text, "0123456789\n[weir: log truncated here: it passed limits.log = 10B]\n");
        assert!(!dir.path().join("log").exists(), "no file for a log that stays small");
    }

    #[test]
    fn under_the_cap_everything_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let log = log_in(&dir, 10);
        log.write_capped(b"0123456789").unwrap();
        assert!(!log.truncated());
        assert_eq!(log.finish(), Captured::Memory(b"0123456789".to_vec()));
    }

    #[test]
    fn a_large_log_moves_to_its_file_with_everything_written_before() {
        let dir = tempfile::tempdir().unwrap();
        let log = log_in(&dir, 1 << 20);
        let line = [b'y'; 1000];
        for _ in 0..100 {
            log.write_capped(&line).unwrap();
        }
        assert_eq!(log.finish(), Captured::File("log".to_owned()));
        let kept = std::fs::read(dir.path().join("log")).unwrap();
        assert_eq!(kept.len(), 100 * 1000);
        assert!(kept.iter().all(|&b| b == b'y'));
    }
}
