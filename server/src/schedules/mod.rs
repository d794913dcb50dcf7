//! Schedules: a cron expression in a time zone, or a watched file, that
//! triggers runs of a published pipeline. Every fire claims a unique key
//! (schedule, slot) in `server.db` before its run starts, so no slot ever
//! starts two runs, also across a restart. The scheduler ticks once a
//! second; [`tick`] takes the time, so tests drive it with any clock.
//!
//! `timing` decides what a cron schedule fires (pure), `firing` claims and
//! starts runs, `store` reads and writes schedules.

mod firing;
mod store;
mod timing;

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::state::AppState;

pub use firing::{tick, watched_path};
pub use store::{delete, find, list, save, set_paused, spec_of};

/// A slot more than this many seconds in the past when the scheduler sees
/// it was missed (the server was down or the schedule paused).
pub const MISFIRE_AFTER_SECONDS: f64 = 60.0;

/// What to do about slots that were missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Misfire {
    /// Run the latest missed slot once (however many were missed).
    #[default]
    RunOnce,
    /// Skip missed slots; run only those on time.
    Skip,
}

/// A file whose content triggers a run when it changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Watch {
    /// The file, relative to the directory the server allows the tenant
    /// (`weir serve --watch-root TENANT=DIR`).
    pub path: String,
    /// The pipeline input the file's content is given as.
    pub input: String,
}

/// `POST /v1/schedules`, and each field `PATCH` may change.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// The published pipeline to run.
    #[serde(default)]
    pub pipeline: Option<String>,
    /// The version (default: the pipeline's default at each fire).
    #[serde(default)]
    pub version: Option<String>,
    /// A cron expression (5 fields, or 6 with seconds first); give it or `watch`.
    #[serde(default)]
    pub cron: Option<String>,
    /// The cron expression's time zone (IANA name; default `UTC`).
    #[serde(default)]
    pub timezone: Option<String>,
    /// A file to watch instead of a cron expression.
    #[serde(default)]
    pub watch: Option<Watch>,
    /// Parameters of each run.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub params: Option<BTreeMap<String, Value>>,
    /// Labels of each run (besides `weir.schedule` and `weir.slot`).
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    /// What to do about missed slots (default `run_once`).
    #[serde(default)]
    pub misfire: Option<Misfire>,
    /// The most runs of this schedule at once (default 1); a slot that finds
    /// that many running is skipped.
    #[serde(default)]
    pub max_concurrent: Option<u32>,
}

/// A schedule as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Schedule {
    /// Its id.
    pub id: String,
    /// Its tenant.
    #[serde(skip)]
    pub tenant: String,
    /// The pipeline it runs.
    pub pipeline: String,
    /// The version, or none for the default at each fire.
    pub version: Option<String>,
    /// The cron expression, for a timed schedule.
    pub cron: Option<String>,
    /// Its time zone.
    pub timezone: String,
    /// The watched file, for a file trigger.
    pub watch: Option<Watch>,
    /// Parameters of each run.
    #[schema(value_type = Object)]
    pub params: BTreeMap<String, Value>,
    /// Labels of each run.
    pub labels: BTreeMap<String, String>,
    /// What it does about missed slots.
    pub misfire: Misfire,
    /// The most runs at once.
    pub max_concurrent: u32,
    /// Whether it is paused.
    pub paused: bool,
    /// The next slot (seconds since the Unix epoch), for a timed schedule.
    pub next_fire: Option<f64>,
    /// When it was created.
    pub created: f64,
    /// Its latest fires, newest first.
    pub fires: Vec<Fire>,
}

/// One fire of a schedule.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Fire {
    /// The slot: its time (RFC 3339) for cron, `change-N` for a watched file.
    pub slot: String,
    /// When it fired.
    pub fired: f64,
    /// The run it started.
    pub run: Option<String>,
    /// `started`, or why no run started.
    pub outcome: String,
}

impl Schedule {
    /// The schedule's time zone.
    fn tz(&self) -> Tz {
        Tz::from_str(&self.timezone).unwrap_or(Tz::UTC)
    }
}

/// Ticks every second until the server stops.
pub async fn run_scheduler(state: Arc<AppState>) {
    let mut interval = tokio::time::interval(std::time::Duration::from_secs(1));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        interval.tick().await;
        if state.draining.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let ticking = state.clone();
        let result = tokio::task::spawn_blocking(move || tick(&ticking, crate::db::now())).await;
        if let Ok(Err(err)) = result {
            eprintln!("weir serve: the scheduler: {err}");
        }
    }
}
