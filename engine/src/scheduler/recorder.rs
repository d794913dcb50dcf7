//! The run history's writer for one run: the coordinator hands it each
//! step as it settles (and the steps that start executing); it decides when
//! to write, so recording never waits on a running step and a fully reused
//! run costs one transaction per wake-up, not one per step. In a run of
//! more steps than a batch, the writing is done on a thread of its own, so
//! the coordinator decides the next steps while the last ones are written.

use std::collections::BTreeMap;
use std::sync::{Arc, mpsc};
use std::thread::{Scope, ScopedJoinHandle};
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

/// How many settled records go to the writer thread at a time: a fully
/// reused 1,000-step chain is written in eight transactions while it is
/// decided, rather than in one at its end.
const BATCH: usize = 128;

/// Records for the writer thread to write in one transaction.
struct Batch {
    records: Vec<StepRecord>,
    live: BTreeMap<String, Vec<MetricPoint>>,
    /// Settled records (kept for the run's document, and a failure to write
    /// them is reported), not the `running` records of a long wait.
    settled: bool,
}

/// What the writer thread did.
#[derive(Default)]
pub(super) struct Written {
    /// The settled records it wrote (or tried to), in the form kept for the
    /// run's document, in the order they settled.
    kept: Vec<StepRecord>,
    /// The steps of each batch it could not write, and why.
    unrecorded: Vec<(Vec<String>, crate::Error)>,
}

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
    /// Where batches go when a writer thread writes them.
    writer: Option<mpsc::Sender<Batch>>,
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
            writer: None,
        }
    }

    /// Starts a thread in `scope` that writes the records from now on, when
    /// `steps` is more than a batch (a smaller run has nothing to overlap);
    /// [`join`](Self::join) it before the run's end is recorded. `None`
    /// where there is no thread (the records are then written here).
    pub(super) fn write_on<'scope>(
        &mut self,
        scope: &'scope Scope<'scope, '_>,
        steps: usize,
    ) -> Option<ScopedJoinHandle<'scope, Written>>
    where
        'a: 'scope,
    {
        if steps <= BATCH {
            return None;
        }
        let (sender, batches) = mpsc::channel();
        let (history, run_id, keep_material) = (self.history, self.run_id, self.keep_material);
        let writer = std::thread::Builder::new()
            .name("weir-history".into())
            .spawn_scoped(scope, move || write_batches(history, run_id, keep_material, &batches))
            .ok()?;
        self.writer = Some(sender);
        Some(writer)
    }

    /// Waits for the writer thread to write what it was sent; returns the
    /// steps it could not record, and why. (A panic there goes on here.)
    pub(super) fn join(&mut self, writer: ScopedJoinHandle<'_, Written>) -> Vec<(Vec<String>, crate::Error)> {
        self.writer = None;
        let mut written = writer.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        written.kept.append(&mut self.kept);
        self.kept = written.kept;
        written.unrecorded
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
        if self.writer.is_some() && self.settled.len() >= BATCH {
            // Sending cannot fail to record: failures come back at `join`.
            let _ = self.flush();
        }
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

    /// Keeps `records`, once written, for the run's document.
    fn keep(&mut self, records: Vec<StepRecord>) {
        let keep_material = self.keep_material;
        self.kept.extend(records.into_iter().map(|record| kept_form(record, keep_material)));
    }

    /// The wait is long: writes the `running` records of the steps
    /// executing, and what they reported so far, so a run killed meanwhile
    /// lists them with their metric values.
    pub(super) fn waiting_long(&mut self) {
        let records = std::mem::take(&mut self.executing);
        let live = self.live_metrics();
        match &self.writer {
            Some(writer) => drop(writer.send(Batch { records, live, settled: false })),
            // A failure here costs only the record of a killed run's last steps.
            None => drop(self.history.record_steps(self.run_id, &records, &live)),
        }
    }

    /// Writes the settled steps' records in one transaction (or hands them
    /// to the writer thread); on failure, the names of the steps that were
    /// not recorded, and why. Every second of a long run, it also syncs the
    /// store.
    pub(super) fn flush(&mut self) -> Result<(), (Vec<String>, crate::Error)> {
        if self.last_sync.elapsed() >= SYNC_INTERVAL {
            // A failure here surfaces at the sync that ends the run.
            let _ = self.store.sync();
            self.last_sync = Instant::now();
        }
        let records = std::mem::take(&mut self.settled);
        self.unwritten_since = None;
        let live = self.live_metrics();
        if let Some(writer) = &self.writer {
            // Only a writer that panicked is gone, and `join` raises that.
            let _ = writer.send(Batch { records, live, settled: true });
            return Ok(());
        }
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

/// `record` as the run's document keeps it: without its metric series, and
/// without its key material unless asked to (`weir status` explains a
/// read-only run from it; otherwise only the history has it).
fn kept_form(record: StepRecord, keep_material: bool) -> StepRecord {
    StepRecord { series: Vec::new(), key_material: record.key_material.filter(|_| keep_material), ..record }
}

/// The writer thread: writes each batch it receives in one transaction
/// until the recorder lets go of it.
fn write_batches(history: &History, run_id: &str, keep_material: bool, batches: &mpsc::Receiver<Batch>) -> Written {
    let mut written = Written::default();
    for Batch { records, live, settled } in batches {
        let result = history.record_steps(run_id, &records, &live);
        if !settled {
            continue; // As when written inline: a failure costs only a killed run's last steps.
        }
        if let Err(err) = result {
            written.unrecorded.push((records.iter().map(|record| record.step.clone()).collect(), err));
        }
        written.kept.extend(records.into_iter().map(|record| kept_form(record, keep_material)));
    }
    written
}
