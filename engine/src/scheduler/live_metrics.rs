//! Metric values of executing steps, written to the history while the steps
//! run, so a run killed mid-way (its process gone) keeps what they reported.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::events::{Event, EventSink};
use crate::history::{MetricPoint, now};

/// The run's event sink as executors see it: every metric value is also
/// kept here until the coordinator writes it to the history.
pub(super) struct MetricTap {
    /// The application's sink, if any.
    inner: Option<Arc<dyn EventSink>>,
    /// Values not yet written, by step, in the order reported.
    pending: Mutex<Vec<(String, MetricPoint)>>,
}

impl MetricTap {
    pub(super) fn new(inner: Option<Arc<dyn EventSink>>) -> Self {
        Self { inner, pending: Mutex::default() }
    }

    /// The values reported since the last call, by step.
    pub(super) fn take(&self) -> BTreeMap<String, Vec<MetricPoint>> {
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        let mut by_step: BTreeMap<String, Vec<MetricPoint>> = BTreeMap::new();
        for (step, point) in pending {
            by_step.entry(step).or_default().push(point);
        }
        by_step
    }
}

impl EventSink for MetricTap {
    fn event(&self, event: &Event<'_>) {
        if let Event::Metric { step, name, value, at, .. } = *event {
            let point = MetricPoint { name: name.to_owned(), value, at, time: now() };
            self.pending.lock().unwrap_or_else(PoisonError::into_inner).push((step.to_owned(), point));
        }
        if let Some(inner) = &self.inner {
            inner.event(event);
        }
    }
}
