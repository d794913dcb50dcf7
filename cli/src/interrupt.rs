//! Ctrl-C and SIGTERM during a run: the first cancels the run (steps that
//! finished keep their results, the rest are recorded as cancelled) and the
//! command exits with 128 + the signal's number once the run is recorded; a
//! second Ctrl-C exits at once.

use std::process::ExitCode;

use weir::CancelToken;

/// Watches for the signals while a run lasts; stops watching when dropped.
pub(crate) struct Interrupts {
    #[cfg(unix)]
    watcher: unix::Watcher,
}

impl Interrupts {
    /// Cancels `token` on the first SIGINT or SIGTERM from now on.
    pub(crate) fn watch(token: CancelToken) -> anyhow::Result<Self> {
        #[cfg(unix)]
        return Ok(Self { watcher: unix::Watcher::start(token)? });
        #[cfg(not(unix))]
        {
            let _ = token;
            Ok(Self {})
        }
    }

    /// The exit status owed to the signal that cancelled the run, if one
    /// did: 130 for SIGINT, 143 for SIGTERM.
    pub(crate) fn exit_code(&self) -> Option<ExitCode> {
        #[cfg(unix)]
        return self.watcher.received().map(|signal| ExitCode::from(128 + signal as u8));
        #[cfg(not(unix))]
        None
    }
}

#[cfg(unix)]
mod unix {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicI32, Ordering};
    use std::thread::JoinHandle;

    use signal_hook::consts::{SIGINT, SIGTERM};
    use signal_hook::iterator::{Handle, Signals};
    use weir::CancelToken;

    pub(super) struct Watcher {
        received: Arc<AtomicI32>,
        handle: Handle,
        /// Hands its `Signals` back when it ends, so that their socket stays
        /// open until joined: `Handle::close` wakes the thread by writing to
        /// that socket, and a thread that saw the close first and dropped
        /// its end made the write raise SIGPIPE, which kills weir (it keeps
        /// the default disposition so that `weir … | head` ends quietly).
        thread: Option<JoinHandle<Signals>>,
    }

    impl Watcher {
        pub(super) fn start(token: CancelToken) -> std::io::Result<Self> {
            let mut signals = Signals::new([SIGINT, SIGTERM])?;
            let handle = signals.handle();
            let received = Arc::new(AtomicI32::new(0));
            let seen = received.clone();
            let thread = std::thread::Builder::new().name("weir-signals".into()).spawn(move || {
                watch(&mut signals, &seen, &token);
                signals
            })?;
            Ok(Self { received, handle, thread: Some(thread) })
        }

        /// The first signal received, if any.
        pub(super) fn received(&self) -> Option<i32> {
            Some(self.received.load(Ordering::SeqCst)).filter(|&signal| signal != 0)
        }
    }

    /// Cancels `token` on the first signal, recording it in `seen`, and exits
    /// on a second SIGINT; returns when the watcher is closed.
    fn watch(signals: &mut Signals, seen: &AtomicI32, token: &CancelToken) {
        for signal in signals.forever() {
            if seen.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
                eprintln!(
                    "\ncancelling the run: waiting for running steps to stop (press Ctrl-C again to exit at once)"
                );
                token.cancel();
            } else if signal == SIGINT {
                // The run stays `running` in the history until the next
                // run finds its process gone and marks it `killed`.
                eprintln!("\ninterrupted again: exiting without waiting");
                std::process::exit(128 + SIGINT);
            }
        }
    }

    impl Drop for Watcher {
        fn drop(&mut self) {
            self.handle.close();
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn a_watcher_dropped_at_once_does_not_raise_sigpipe() {
        // As in `weir`, SIGPIPE kills. A run refused right after the watcher
        // started drops it while its thread may still be starting or already
        // ending.
        // SAFETY: setting a signal's disposition to its default has no other
        // precondition.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
        for attempt in 0..500_u64 {
            let interrupts = Interrupts::watch(CancelToken::new()).unwrap();
            // Dropped anywhere from at once to 100 µs later, to meet the
            // thread at every point of its start.
            let start = std::time::Instant::now();
            while start.elapsed() < std::time::Duration::from_micros(attempt % 100) {
                std::hint::spin_loop();
            }
            assert_eq!(interrupts.exit_code(), None);
        }
    }
}
