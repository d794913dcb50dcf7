//! The run history's writer for one run: the coordinator hands it each
//! step as it settles (and the steps that start executing); it decides when
//! to write, so recording never waits on a running step and a fully reused
//! run costs one transaction per wake-up, not one per step.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::live_metrics::MetricTap;
use crate::history::{MetricPoint, StepRecord};
use crate::{History, Store};

/// How often a long run syncs the store, bounding what a machine crash loses.
const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// How long a settled step's record may wait to be written with others: a
/// commit per executed step cost about 55 µs of a trivial step's 300; this
/// bounds what a killed process leaves unrecorded (its results are in the
/// store either way, so the next run reuses them).
const FLUSH_AFTER: Duration = Duration::from_millis(25);

/// Writes one run's step records.
pub(super) struct Recorder<'a> {
    history: &'a History,
    store: &'a Store,
    run_id: &'a str,
    /// Settled steps not yet written.
    settled: Vec<StepRecord>,
    /// When the oldest of them settled.
    unwritten_since: Option<Instant>,
    /// Steps executing whose `running` record is not written yet: written
    /// only once a wait is long, so quick steps cost no extra write.
    executing: Vec<StepRecord>,
    /// Steps settled so far, by name: their metric values are in their records.
    done: std::collections::BTreeSet<String>,
    /// Every settled step's record (without its metric series), for the
    /// run's document.
    kept: Vec<StepRecord>,
    /// Whether the kept records keep their key material (`weir status`
    /// explains a read-only run from it); otherwise only the history has it.
    keep_material: bool,
    /// Metric values executors report, kept until written.
    metric_tap: Arc<MetricTap>,
    last_sync: Instant,
}

impl<'a> Recorder<'a> {
    pub(super) fn new(
        history: &'a History,
        store: &'a Store,
        run_id: &'a str,
        metric_tap: Arc<MetricTap>,
        keep_material: bool,
    ) -> Self {
        Self {
            keep_material,
            history,
            store,
            run_id,
            settled: Vec::new(),
            unwritten_since: None,
            executing: Vec::new(),
            done: std::collections::BTreeSet::new(),
            kept: Vec::new(),
            metric_tap,
            last_sync: Instant::now(),
        }
    }

    /// A step started executing; `record` is its `running` record.
    pub(super) fn executing(&mut self, record: StepRecord) {
        self.executing.push(record);
    }

    /// A step settled with `record`.
    pub(super) fn settled(&mut self, record: StepRecord) {
        self.executing.retain(|running| running.step != record.step);
        self.done.insert(record.step.clone());
        self.settled.push(record);
        self.unwritten_since.get_or_insert_with(Instant::now);
    }

    /// How long until the settled steps' records are due to be written
    /// (zero: now); `None` when there are none.
    pub(super) fn flush_due_in(&self) -> Option<Duration> {
        self.unwritten_since.map(|since| FLUSH_AFTER.saturating_sub(since.elapsed()))
    }

    /// The records of every step that settled.
    pub(super) fn into_records(mut self) -> Vec<StepRecord> {
        let unwritten = std::mem::take(&mut self.settled);
        self.keep(unwritten);
        self.kept
    }

    /// Keeps `records`, once written, for the run's document: without their
    /// metric series, and without their key material unless asked to.
    fn keep(&mut self, records: Vec<StepRecord>) {
        let keep_material = self.keep_material;
        self.kept.extend(records.into_iter().map(|record| StepRecord {
            series: Vec::new(),
            key_material: record.key_material.filter(|_| keep_material),
            ..record
        }));
    }

    /// The wait is long: writes the `running` records of the steps
    /// executing, and what they reported so far, so a run killed meanwhile
    /// lists them with their metric values.
    pub(super) fn waiting_long(&mut self) {
        let records = std::mem::take(&mut self.executing);
        let live = self.live_metrics();
        // A failure here costs only the record of a killed run's last steps.
        let _ = self.history.record_steps(self.run_id, &records, &live);
    }

    /// Writes the settled steps' records in one transaction; on failure,
    /// the names of the steps that were not recorded, and why. Every second
    /// of a long run, it also syncs the store.
    pub(super) fn flush(&mut self) -> Result<(), (Vec<String>, crate::Error)> {
        if self.last_sync.elapsed() >= SYNC_INTERVAL {
            // A failure here surfaces at the sync that ends the run.
            let _ = self.store.sync();
            self.last_sync = Instant::now();
        }
        let records = std::mem::take(&mut self.settled);
        self.unwritten_since = None;
        let live = self.live_metrics();
        let written = self
            .history
            .record_steps(self.run_id, &records, &live)
            .map_err(|err| (records.iter().map(|record| record.step.clone()).collect(), err));
        self.keep(records);
        written
    }

    /// The metric values reported since the last call by steps still
    /// executing (a settled step's are in its record).
    fn live_metrics(&self) -> BTreeMap<String, Vec<MetricPoint>> {
        let mut live = self.metric_tap.take();
        live.retain(|step, _| !self.done.contains(step));
        live
    }
}
