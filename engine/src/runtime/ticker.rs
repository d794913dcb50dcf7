//! One background thread that advances the epoch of every interruptible
//! engine of a runtime, so that a guest's epoch deadline (its timeout) is
//! reached while it runs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the epoch advances: the granularity of timeouts.
pub(crate) const TICK: Duration = Duration::from_millis(10);

/// Owns the ticking thread; dropping it stops the thread.
pub(crate) struct EpochTicker {
    engines: Arc<Mutex<Vec<wasmtime::Engine>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    /// Starts the thread, or says why it could not be started.
    pub(crate) fn start() -> std::io::Result<Self> {
        let engines: Arc<Mutex<Vec<wasmtime::Engine>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (ticked, flag) = (engines.clone(), stop.clone());
        let thread = std::thread::Builder::new().name("weir-epoch".into()).spawn(move || {
            let mut next = Instant::now() + TICK;
            loop {
                // Parked rather than asleep, so that dropping the ticker
                // wakes it at once instead of waiting out the tick (which
                // every `weir` process would otherwise pay at exit).
                let now = Instant::now();
                if now < next {
                    std::thread::park_timeout(next - now);
                }
                if flag.load(Ordering::Relaxed) {
                    return;
                }
                if Instant::now() < next {
                    continue; // woken early, and not to stop
                }
                // A thread held up for several ticks (a suspended machine)
                // does not tick them all at once.
                next = (next + TICK).max(Instant::now());
                for engine in ticked.lock().unwrap_or_else(PoisonError::into_inner).iter() {
                    engine.increment_epoch();
                }
            }
        })?;
        Ok(Self { engines, stop, thread: Some(thread) })
    }

    /// Advances `engine`'s epoch from now on.
    pub(crate) fn tick(&self, engine: &wasmtime::Engine) {
        let mut engines = self.engines.lock().unwrap_or_else(PoisonError::into_inner);
        if !engines.iter().any(|known| wasmtime::Engine::same(known, engine)) {
            engines.push(engine.clone());
        }
    }
}

/// Epoch ticks for a timeout, rounded up, plus one for the partial tick in progress.
pub(crate) fn ticks_for(timeout: Duration) -> u64 {
    let ticks = timeout.as_nanos().div_ceil(TICK.as_nanos()) + 1;
    u64::try_from(ticks).unwrap_or(u64::MAX)
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}
