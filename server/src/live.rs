//! The runs the server is executing: each one's cancel token and the events
//! it has sent so far, which a client following `GET /v1/runs/{id}/events`
//! reads from the start, then live. A run leaves this registry when it
//! ends; the history then tells its story.

use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use futures_util::Stream;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::watch;
use weir::{CancelToken, Event, EventSink, RunDetail};

/// The most events one run keeps for late followers: metrics, progress and
/// log writes beyond it are dropped from the replay (step starts and ends
/// never are; a step's whole log is in its record once it settles).
const MAX_KEPT_EVENTS: usize = 10_000;

/// One server-sent event: its name and JSON data (live events carry `at`,
/// the server's time in seconds since the Unix epoch).
#[derive(Debug, Clone, Serialize)]
pub struct RunEvent {
    /// `run_started`, `step_started`, `progress`, `metric`, `log`, `step_retrying`, `step_finished` or `run_finished`.
    pub name: &'static str,
    /// What happened.
    pub data: Value,
}

/// A run being executed.
pub struct LiveRun {
    /// The tenant it runs for.
    pub tenant: String,
    /// Cancels it.
    pub cancel: CancelToken,
    events: Mutex<Vec<RunEvent>>,
    /// How many events there are, and whether the run has ended.
    progress: watch::Sender<(usize, bool)>,
}

impl LiveRun {
    fn push(&self, event: RunEvent) {
        let mut events = self.events.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let droppable = matches!(event.name, "metric" | "progress" | "log");
        if droppable && events.len() >= MAX_KEPT_EVENTS {
            return;
        }
        events.push(event);
        let count = events.len();
        drop(events);
        self.progress.send_modify(|progress| progress.0 = count);
    }

    /// Records the run's end: its last event.
    pub fn end(&self, data: Value) {
        self.push(RunEvent { name: "run_finished", data });
        self.progress.send_modify(|progress| progress.1 = true);
    }

    /// Waits until the run has ended (and is recorded), or `limit` passed.
    pub async fn wait_for_end(&self, limit: std::time::Duration) {
        let mut receiver = self.progress.subscribe();
        let _ended = tokio::time::timeout(limit, receiver.wait_for(|&(_, ended)| ended)).await;
    }

    /// Every event from the first, then each as it comes, until the end.
    pub fn follow(self: Arc<Self>) -> impl Stream<Item = RunEvent> + Send + 'static {
        let receiver = self.progress.subscribe();
        futures_util::stream::unfold((self, receiver, 0usize), |(run, mut receiver, next)| async move {
            loop {
                let (count, ended) = *receiver.borrow_and_update();
                if next < count {
                    let event = run.events.lock().unwrap_or_else(std::sync::PoisonError::into_inner)[next].clone();
                    return Some((event, (run, receiver, next + 1)));
                }
                if ended || receiver.changed().await.is_err() {
                    return None;
                }
            }
        })
    }
}

/// Passes a run's events to its [`LiveRun`].
struct Sink(Arc<LiveRun>);

impl EventSink for Sink {
    fn event(&self, event: &Event<'_>) {
        if let Some(event) = to_run_event(event) {
            self.0.push(event);
        }
    }
}

fn to_run_event(event: &Event<'_>) -> Option<RunEvent> {
    let (name, data) = match *event {
        Event::RunStarted { run, pipeline } => ("run_started", json!({ "run": run, "pipeline": pipeline })),
        Event::StepStarted { run, step } => ("step_started", json!({ "run": run, "step": step })),
        Event::StepFinished { run, step, status } => {
            ("step_finished", json!({ "run": run, "step": step, "status": status.as_str() }))
        }
        Event::Metric { run, step, name, value, at } => {
            ("metric", json!({ "run": run, "step": step, "name": name, "value": value, "at": at }))
        }
        Event::Progress { run, step, done, total } => {
            ("progress", json!({ "run": run, "step": step, "done": done, "total": total }))
        }
        Event::Log { run, step, stream, text } => {
            ("log", json!({ "run": run, "step": step, "stream": stream.as_str(), "text": text }))
        }
        Event::StepRetrying { run, step, entry, attempt, attempts, error, delay } => (
            "step_retrying",
            json!({ "run": run, "step": step, "entry": entry, "attempt": attempt, "attempts": attempts,
                    "error": error, "delay_ms": delay.as_secs_f64() * 1000.0 }),
        ),
        // The server sends `run_finished` itself, once the run is recorded.
        Event::RunFinished { .. } => return None,
        _ => return None,
    };
    let mut data = data;
    data["at"] = json!(crate::db::now());
    Some(RunEvent { name, data })
}

/// The events of a run that has ended, from what the history kept.
pub fn replay(detail: &RunDetail) -> Vec<RunEvent> {
    let run = &detail.summary.id;
    let mut events =
        vec![RunEvent { name: "run_started", data: json!({ "run": run, "pipeline": detail.summary.pipeline }) }];
    for step in &detail.steps {
        let data = json!({ "run": run, "step": step.step, "status": step.status.as_str() });
        events.push(RunEvent { name: "step_finished", data });
    }
    events
        .push(RunEvent { name: "run_finished", data: json!({ "run": run, "status": detail.summary.status.as_str() }) });
    events
}

/// The runs being executed, by id.
#[derive(Default)]
pub struct LiveRuns {
    runs: DashMap<String, Arc<LiveRun>>,
}

impl LiveRuns {
    /// Registers run `id` and returns it with the sink for its events.
    pub fn register(&self, id: &str, tenant: &str) -> (Arc<LiveRun>, Arc<dyn EventSink>) {
        let run = Arc::new(LiveRun {
            tenant: tenant.to_owned(),
            cancel: CancelToken::new(),
            events: Mutex::new(Vec::new()),
            progress: watch::channel((0, false)).0,
        });
        self.runs.insert(id.to_owned(), run.clone());
        (run.clone(), Arc::new(Sink(run)))
    }

    /// Run `id`, if it is being executed for `tenant`.
    pub fn get(&self, id: &str, tenant: &str) -> Option<Arc<LiveRun>> {
        self.runs.get(id).map(|run| run.clone()).filter(|run| run.tenant == tenant)
    }

    /// Forgets run `id` (it ended) and returns it.
    pub fn remove(&self, id: &str) -> Option<Arc<LiveRun>> {
        self.runs.remove(id).map(|(_, run)| run)
    }

    /// Cancels every run.
    pub fn cancel_all(&self) {
        for run in &self.runs {
            run.cancel.cancel();
        }
    }

    /// How many runs are being executed.
    pub fn len(&self) -> usize {
        self.runs.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }
}
