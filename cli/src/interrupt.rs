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
        thread: Option<JoinHandle<()>>,
    }

    impl Watcher {
        pub(super) fn start(token: CancelToken) -> std::io::Result<Self> {
            let mut signals = Signals::new([SIGINT, SIGTERM])?;
            let handle = signals.handle();
            let received = Arc::new(AtomicI32::new(0));
            let seen = received.clone();
            let thread = std::thread::Builder::new().name("weir-signals".into()).spawn(move || {
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
            })?;
            Ok(Self { received, handle, thread: Some(thread) })
        }

        /// The first signal received, if any.
        pub(super) fn received(&self) -> Option<i32> {
            Some(self.received.load(Ordering::SeqCst)).filter(|&signal| signal != 0)
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
