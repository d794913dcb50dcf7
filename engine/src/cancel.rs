//! Cancelling a run from another thread (a signal handler, a server request,
//! a user interface).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Asks a run to stop. Give a clone to [`RunOptions::cancel_with`](crate::RunOptions::cancel_with)
/// (or take the one of a [`RunHandle`](crate::RunHandle)) and call
/// [`cancel`](CancelToken::cancel) from any thread.
///
/// A cancelled run admits no new step; steps executing WebAssembly with a
/// timeout are interrupted within about 50 ms (a step with
/// `timeout = "none"` has no interruption checks and is let finish; a native
/// step stops when it checks [`StepContext::cancelled`](crate::StepContext::cancelled)).
/// Steps that finished keep their results, so the next run reuses them; the
/// others are reported, and kept in the history, as `cancelled`.
#[derive(Clone, Default)]
pub struct CancelToken {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    cancelled: AtomicBool,
    next_waker: AtomicU64,
    /// Called once on cancellation: each wakes a coordinator waiting for news.
    wakers: Mutex<Vec<(u64, Waker)>>,
}

/// Wakes a coordinator waiting for news.
type Waker = Arc<dyn Fn() + Send + Sync>;

impl std::fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelToken").field("cancelled", &self.is_cancelled()).finish()
    }
}

impl CancelToken {
    /// A token not yet cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancels every run given this token. Idempotent.
    pub fn cancel(&self) {
        if self.shared.cancelled.swap(true, Ordering::SeqCst) {
            return;
        }
        for (_, wake) in self.shared.wakers.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            wake();
        }
    }

    /// Whether [`cancel`](CancelToken::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.shared.cancelled.load(Ordering::SeqCst)
    }

    /// Calls `wake` when the token is cancelled (at once if it already is),
    /// until the returned guard is dropped.
    /// (A waker may be called twice when both race; waking is idempotent.)
    pub(crate) fn on_cancel(&self, wake: impl Fn() + Send + Sync + 'static) -> WakerGuard {
        let id = self.shared.next_waker.fetch_add(1, Ordering::Relaxed);
        let wake: Waker = Arc::new(wake);
        self.shared.wakers.lock().unwrap_or_else(PoisonError::into_inner).push((id, wake.clone()));
        if self.is_cancelled() {
            // Cancelled before registering: `cancel` may have missed this waker.
            wake();
        }
        WakerGuard { token: self.clone(), id }
    }
}

/// Unregisters a waker when dropped, so a token reused by many runs does not
/// accumulate them.
pub(crate) struct WakerGuard {
    token: CancelToken,
    id: u64,
}

impl Drop for WakerGuard {
    fn drop(&mut self) {
        self.token.shared.wakers.lock().unwrap_or_else(PoisonError::into_inner).retain(|(id, _)| *id != self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn wakers_are_called_only_while_registered() {
        let token = CancelToken::new();
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let guard = token.on_cancel(move || {
            counted.fetch_add(1, Ordering::SeqCst);
        });
        let dropped = calls.clone();
        drop(token.on_cancel(move || {
            dropped.fetch_add(100, Ordering::SeqCst);
        }));
        token.cancel();
        token.cancel();
        assert!(token.is_cancelled());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        drop(guard);
        assert!(token.shared.wakers.lock().unwrap().is_empty());
    }

    #[test]
    fn a_waker_registered_after_cancellation_is_called_at_once() {
        let token = CancelToken::new();
        token.cancel();
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let _guard = token.clone().on_cancel(move || {
            counted.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
