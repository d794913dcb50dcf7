//! The checks made on a running guest every few epoch ticks: its wall-clock
//! timeout, its quotas on `/out` and its run's cancellation. A breach interrupts the guest and is
//! remembered, so the failure names the limit rather than the interruption.

use std::time::Instant;

use cap_std::fs::Dir;
use wasmtime::{Store, UpdateDeadline};

use super::limiter::MemoryLimiter;
use super::ticker;
use crate::cancel::CancelToken;
use crate::limits::OutputUsage;
use crate::{Limits, StepErrorKind};

/// Epoch ticks between two checks (the granularity of timeouts and quotas).
const CHECK_EVERY_TICKS: u64 = 5;

/// What bounds one execution: its memory limiter and its watch.
pub(crate) struct Guard {
    pub(crate) limiter: MemoryLimiter,
    watch: Watch,
}

impl Guard {
    /// The guard of an execution under `limits`, measuring `out_dir` (none
    /// when the engine counts what the guest writes itself).
    pub(crate) fn new(limits: Limits, out_dir: Option<Dir>, cancel: Option<CancelToken>) -> Self {
        Self {
            limiter: MemoryLimiter::new(limits.memory),
            watch: Watch { started: Instant::now(), limits, out_dir, cancel, breach: None },
        }
    }

    /// The limit the guest passed, if it passed one.
    pub(crate) fn breach(&self) -> Option<StepErrorKind> {
        if let Some(kind) = &self.watch.breach {
            return Some(kind.clone());
        }
        self.limiter.hit().then_some(StepErrorKind::MemoryLimit { limit: self.watch.limits.memory })
    }
}

/// Periodic checks of a running guest.
struct Watch {
    started: Instant,
    limits: Limits,
    out_dir: Option<Dir>,
    /// The run's cancellation, which interrupts the guest like a timeout.
    cancel: Option<CancelToken>,
    breach: Option<StepErrorKind>,
}

impl Watch {
    fn check(&mut self) -> Option<StepErrorKind> {
        if self.cancel.as_ref().is_some_and(CancelToken::is_cancelled) {
            return Some(StepErrorKind::Cancelled);
        }
        if self.started.elapsed() >= self.limits.timeout {
            return Some(StepErrorKind::Timeout { limit: self.limits.timeout });
        }
        self.out_dir.as_ref().and_then(|dir| OutputUsage::check(dir, &self.limits))
    }
}

/// Installs the guard's memory limiter, fuel and periodic checks on a fresh
/// store (none for code compiled without epoch checks: a guest without a
/// timeout, or one in a worker process that is killed on timeout).
pub(crate) fn arm<T: 'static>(
    store: &mut Store<T>,
    limits: &Limits,
    interruptible: bool,
    guard: fn(&mut T) -> &mut Guard,
) {
    store.limiter(move |state| &mut guard(state).limiter as &mut dyn wasmtime::ResourceLimiter);
    if let Some(fuel) = limits.fuel {
        // Fails only when the engine does not meter fuel, which `Flavor` rules out.
        let _ = store.set_fuel(fuel);
    }
    if !interruptible {
        return;
    }
    let first_check = CHECK_EVERY_TICKS.min(ticker::ticks_for(limits.timeout));
    store.set_epoch_deadline(first_check);
    store.epoch_deadline_callback(move |mut context| {
        let watch = &mut guard(context.data_mut()).watch;
        match watch.check() {
            None => Ok(UpdateDeadline::Continue(CHECK_EVERY_TICKS)),
            Some(breach) => {
                watch.breach = Some(breach);
                Ok(UpdateDeadline::Interrupt)
            }
        }
    });
}
