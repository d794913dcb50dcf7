//! Metrics and progress a step reports while it runs.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::events::{Event, EventSink};
use crate::history::MetricPoint;

/// Longest metric name kept.
const MAX_NAME_LEN: usize = 128;
/// Most distinct metric names a step may record.
const MAX_METRICS: usize = 1024;
/// Most metric values a step's history keeps (the last value is always kept).
const MAX_POINTS: usize = 100_000;

/// The telemetry of one step execution; forwards each report as an event.
#[derive(Default)]
pub(crate) struct Telemetry {
    metrics: BTreeMap<String, f64>,
    points: Vec<MetricPoint>,
    progress: Option<(u64, u64)>,
    dropped: u64,
    events: Option<Arc<dyn EventSink>>,
    /// The run whose step reports, named in its events.
    run: String,
}

impl Telemetry {
    pub(crate) fn new(events: Option<Arc<dyn EventSink>>, run: &str) -> Self {
        Self { events, run: run.to_owned(), ..Self::default() }
    }

    /// Records a metric value, at position `at` when the step gave one.
    /// Names that are empty, too long or hold control characters, and names
    /// past the per-step maximum, are dropped.
    pub(crate) fn metric(&mut self, step: &str, name: &str, value: f64, at: Option<u64>) {
        let valid = !name.is_empty() && name.len() <= MAX_NAME_LEN && !name.chars().any(char::is_control);
        let room = self.metrics.len() < MAX_METRICS || self.metrics.contains_key(name);
        if !(valid && room) {
            self.dropped += 1;
            return;
        }
        self.metrics.insert(name.to_owned(), value);
        if self.points.len() < MAX_POINTS {
            self.points.push(MetricPoint { name: name.to_owned(), value, at, time: crate::history::now() });
        }
        if let Some(sink) = &self.events {
            sink.event(&Event::Metric { run: &self.run, step, name, value, at });
        }
    }

    /// Records progress.
    pub(crate) fn progress(&mut self, step: &str, done: u64, total: u64) {
        self.progress = Some((done, total));
        if let Some(sink) = &self.events {
            sink.event(&Event::Progress { run: &self.run, step, done, total });
        }
    }

    /// The last value of each metric, and every value in order.
    pub(crate) fn into_metrics(self) -> (BTreeMap<String, f64>, Vec<MetricPoint>) {
        (self.metrics, self.points)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl EventSink for Recorder {
        fn event(&self, event: &Event<'_>) {
            self.0.lock().unwrap().push(format!("{event:?}"));
        }
    }

    #[test]
    fn keeps_last_values_and_drops_bad_names() {
        let recorder = Arc::new(Recorder::default());
        let mut telemetry = Telemetry::new(Some(recorder.clone()), "run");
        telemetry.metric("s", "loss", 1.0, None);
        telemetry.metric("s", "loss", 0.5, Some(7));
        telemetry.metric("s", "", 3.0, None);
        telemetry.metric("s", "bad\nname", 3.0, None);
        telemetry.metric("s", &"x".repeat(MAX_NAME_LEN + 1), 3.0, None);
        telemetry.progress("s", 1, 2);
        let dropped = telemetry.dropped;
        let (metrics, points) = telemetry.into_metrics();
        assert_eq!(metrics, BTreeMap::from([("loss".to_owned(), 0.5)]));
        assert_eq!(points.iter().map(|p| (p.value, p.at)).collect::<Vec<_>>(), [(1.0, None), (0.5, Some(7))]);
        assert_eq!(dropped, 3);
        assert_eq!(recorder.0.lock().unwrap().len(), 3);
    }
}
