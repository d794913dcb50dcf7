//! Schedules: a cron expression in a time zone, or a watched file, that
//! triggers runs of a published pipeline. Every fire claims a unique key
//! (schedule, slot) in `server.db` before its run starts, so no slot ever
//! starts two runs, also across a restart. The scheduler ticks once a
//! second; [`tick`] takes the time, so tests drive it with any clock.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ServerError;
use crate::launch::{Origin, TriggerRequest, trigger};
use crate::problem::Problem;
use crate::state::AppState;

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

/// Parses a cron expression (5 fields, or 6 with seconds).
pub fn parse_cron(expression: &str) -> Result<Cron, Problem> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .build()
        .parse(expression)
        .map_err(|err| Problem::bad_field("cron", format!("`{expression}` is not a cron expression: {err}")))
}

/// Parses an IANA time zone name.
pub fn parse_tz(name: &str) -> Result<Tz, Problem> {
    Tz::from_str(name)
        .map_err(|_| Problem::bad_field("timezone", format!("`{name}` is not an IANA time zone (e.g. Europe/Berlin)")))
}

/// The whole second `seconds` falls in (cron slots are whole seconds).
fn at(seconds: f64) -> DateTime<Utc> {
    Utc.timestamp_opt(seconds.floor() as i64, 0).single().unwrap_or_default()
}

fn seconds(time: &DateTime<impl TimeZone>) -> f64 {
    time.timestamp_micros() as f64 / 1e6
}

/// What a timed schedule does at `now`: the slot to fire, if any, and the
/// next slot to wait for. `next_fire` is the earliest slot not yet handled.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The slot to fire (seconds since the Unix epoch).
    pub fire: Option<f64>,
    /// The first slot after `now`.
    pub next_fire: Option<f64>,
}

/// Decides a timed schedule's fire at `now`.
pub fn decide(cron: &Cron, tz: Tz, next_fire: f64, now: f64, misfire: Misfire) -> Decision {
    let local_now = at(now).with_timezone(&tz);
    let next = cron.find_next_occurrence(&local_now, false).ok().map(|time| seconds(&time));
    if next_fire > now {
        return Decision { fire: None, next_fire: Some(next_fire) };
    }
    let latest = cron.find_previous_occurrence(&local_now, true).ok().map(|time| seconds(&time));
    let fire = latest.filter(|latest| *latest >= next_fire).filter(|latest| {
        let on_time = now - latest <= MISFIRE_AFTER_SECONDS;
        on_time || misfire == Misfire::RunOnce
    });
    Decision { fire, next_fire: next }
}

/// The slot key of a timed fire.
fn slot_key(slot: f64) -> String {
    at(slot).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Claims `slot` of `schedule`: true the first time, false ever after.
pub fn claim(state: &AppState, schedule: &str, slot: &str, now: f64) -> Result<bool, ServerError> {
    let inserted = state.db.with(|conn| {
        conn.execute(
            "INSERT OR IGNORE INTO fires (schedule, slot, fired, outcome) VALUES (?1, ?2, ?3, 'claimed')",
            params![schedule, slot, now],
        )
    })?;
    Ok(inserted == 1)
}

/// Handles every schedule due at `now`.
pub fn tick(state: &Arc<AppState>, now: f64) -> Result<(), ServerError> {
    for schedule in active(state)? {
        let fired = match (&schedule.cron, &schedule.watch) {
            (Some(cron), _) => tick_cron(state, &schedule, cron, now),
            (None, Some(watch)) => tick_watch(state, &schedule, watch, now),
            (None, None) => Ok(()),
        };
        if let Err(err) = fired {
            eprintln!("weir serve: schedule {}: {err}", schedule.id);
        }
    }
    Ok(())
}

fn tick_cron(state: &Arc<AppState>, schedule: &Schedule, cron: &str, now: f64) -> Result<(), ServerError> {
    let Ok(cron) = parse_cron(cron) else { return Ok(()) };
    let next_fire = schedule.next_fire.unwrap_or(now);
    let decision = decide(&cron, schedule.tz(), next_fire, now, schedule.misfire);
    if decision.next_fire != schedule.next_fire {
        state.db.with(|conn| {
            conn.execute("UPDATE schedules SET next_fire = ?2 WHERE id = ?1", params![schedule.id, decision.next_fire])
        })?;
    }
    if let Some(slot) = decision.fire {
        fire(state, schedule, &slot_key(slot), BTreeMap::new(), now)?;
    }
    Ok(())
}

fn tick_watch(state: &Arc<AppState>, schedule: &Schedule, watch: &Watch, now: f64) -> Result<(), ServerError> {
    let Some(path) = watched_path(state, &schedule.tenant, &watch.path) else { return Ok(()) };
    let Ok(bytes) = std::fs::read(&path) else { return Ok(()) };
    let digest = weir::Digest::of(&bytes);
    let (last, changes): (Option<String>, i64) = state.db.with(|conn| {
        conn.query_row("SELECT last_digest, changes FROM schedules WHERE id = ?1", [&schedule.id], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
    })?;
    if last.as_deref() == Some(digest.to_string().as_str()) {
        return Ok(());
    }
    let changes = changes + 1;
    state.db.with(|conn| {
        conn.execute(
            "UPDATE schedules SET last_digest = ?2, changes = ?3 WHERE id = ?1",
            params![schedule.id, digest.to_string(), changes],
        )
    })?;
    let artifact = state.engine.store().import(&path)?;
    state.db.with(|conn| {
        conn.execute(
            "INSERT OR IGNORE INTO blobs (tenant, digest, size) VALUES (?1, ?2, ?3)",
            params![schedule.tenant, artifact.digest.to_string(), bytes.len() as i64],
        )
    })?;
    let inputs = BTreeMap::from([(watch.input.clone(), artifact.digest.to_string())]);
    fire(state, schedule, &format!("change-{changes}"), inputs, now)
}

/// The watched file `relative` of `tenant`, if the server allows the tenant
/// a directory and the file (links resolved) lies beneath it.
pub fn watched_path(state: &AppState, tenant: &str, relative: &str) -> Option<PathBuf> {
    let root = std::fs::canonicalize(state.config.watch_roots.get(tenant)?).ok()?;
    let path = std::fs::canonicalize(root.join(relative)).ok()?;
    path.starts_with(&root).then_some(path)
}

/// Fires `slot` of `schedule`: claims it, then starts a run unless the
/// schedule has its most runs running.
fn fire(
    state: &Arc<AppState>,
    schedule: &Schedule,
    slot: &str,
    inputs: BTreeMap<String, String>,
    now: f64,
) -> Result<(), ServerError> {
    if !claim(state, &schedule.id, slot, now)? {
        return Ok(());
    }
    let running: i64 = state.db.with(|conn| {
        conn.query_row("SELECT count(*) FROM runs WHERE schedule = ?1 AND status = 'running'", [&schedule.id], |row| {
            row.get(0)
        })
    })?;
    let outcome = |run: Option<&str>, outcome: &str| {
        state.db.with(|conn| {
            conn.execute(
                "UPDATE fires SET run = ?3, outcome = ?4 WHERE schedule = ?1 AND slot = ?2",
                params![schedule.id, slot, run, outcome],
            )
        })
    };
    if running >= i64::from(schedule.max_concurrent) {
        outcome(None, &format!("skipped: {running} run(s) of this schedule were running (max_concurrent)"))?;
        return Ok(());
    }
    let mut labels = schedule.labels.clone();
    labels.insert("weir.schedule".into(), schedule.id.clone());
    labels.insert("weir.slot".into(), slot.to_owned());
    let request = TriggerRequest { version: schedule.version.clone(), params: schedule.params.clone(), inputs, labels };
    let origin = Origin { schedule: Some(&schedule.id), ..Origin::default() };
    match trigger(state, &schedule.tenant, &schedule.pipeline, &request, origin) {
        Ok((accepted, _)) => outcome(Some(&accepted.id), "started")?,
        Err(problem) => outcome(None, &format!("failed: {}", problem.detail))?,
    };
    Ok(())
}

const COLUMNS: &str = "id, tenant, pipeline, version, cron, timezone, watch, params, labels, misfire, max_concurrent, paused, next_fire, created";

fn schedule_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Schedule> {
    let json = |index: usize| -> rusqlite::Result<String> { row.get(index) };
    Ok(Schedule {
        id: row.get(0)?,
        tenant: row.get(1)?,
        pipeline: row.get(2)?,
        version: row.get(3)?,
        cron: row.get(4)?,
        timezone: row.get(5)?,
        watch: row.get::<_, Option<String>>(6)?.and_then(|text| serde_json::from_str(&text).ok()),
        params: serde_json::from_str(&json(7)?).unwrap_or_default(),
        labels: serde_json::from_str(&json(8)?).unwrap_or_default(),
        misfire: if row.get::<_, String>(9)? == "skip" { Misfire::Skip } else { Misfire::RunOnce },
        max_concurrent: row.get(10)?,
        paused: row.get(11)?,
        next_fire: row.get(12)?,
        created: row.get(13)?,
        fires: Vec::new(),
    })
}

/// The schedules that are not paused.
fn active(state: &AppState) -> Result<Vec<Schedule>, ServerError> {
    state.db.with(|conn| {
        let mut statement = conn.prepare(&format!("SELECT {COLUMNS} FROM schedules WHERE paused = 0"))?;
        let rows = statement.query_map([], schedule_row)?;
        rows.collect()
    })
}

/// `tenant`'s schedules.
pub fn list(state: &AppState, tenant: &str) -> Result<Vec<Schedule>, ServerError> {
    state.db.with(|conn| {
        let mut statement =
            conn.prepare(&format!("SELECT {COLUMNS} FROM schedules WHERE tenant = ?1 ORDER BY created"))?;
        let rows = statement.query_map([tenant], schedule_row)?;
        rows.collect()
    })
}

/// `tenant`'s schedule `id` with its latest fires.
pub fn find(state: &AppState, tenant: &str, id: &str) -> Result<Schedule, Problem> {
    let schedule = state.db.with(|conn| {
        conn.query_row(
            &format!("SELECT {COLUMNS} FROM schedules WHERE tenant = ?1 AND id = ?2"),
            params![tenant, id],
            schedule_row,
        )
        .optional()
    })?;
    let mut schedule = schedule.ok_or_else(|| Problem::not_found(format!("schedule `{id}`")))?;
    schedule.fires = state.db.with(|conn| {
        let mut statement = conn.prepare(
            "SELECT slot, fired, run, outcome FROM fires WHERE schedule = ?1 ORDER BY fired DESC, slot DESC LIMIT 20",
        )?;
        let rows = statement.query_map([id], |row| {
            Ok(Fire { slot: row.get(0)?, fired: row.get(1)?, run: row.get(2)?, outcome: row.get(3)? })
        })?;
        rows.collect()
    })?;
    Ok(schedule)
}

/// Checks `spec` (complete, after a patch is applied) for `tenant` and
/// writes schedule `id`. A timed schedule's next slot is computed from `now`.
pub fn save(
    state: &AppState,
    tenant: &str,
    id: &str,
    spec: &ScheduleSpec,
    now: f64,
    created: bool,
) -> Result<(), Problem> {
    let pipeline = spec
        .pipeline
        .as_deref()
        .ok_or_else(|| Problem::bad_field("pipeline", "a schedule names the pipeline it runs"))?;
    let timezone = spec.timezone.clone().unwrap_or_else(|| "UTC".to_owned());
    let tz = parse_tz(&timezone)?;
    let next_fire = match (&spec.cron, &spec.watch) {
        (Some(cron), None) => {
            let cron = parse_cron(cron)?;
            let next = cron.find_next_occurrence(&at(now).with_timezone(&tz), false);
            Some(seconds(&next.map_err(|err| Problem::bad_field("cron", err))?))
        }
        (None, Some(watch)) => {
            crate::bundle::check_path(&watch.path).map_err(|why| Problem::bad_field("watch.path", why))?;
            let Some(root) = state.config.watch_roots.get(tenant) else {
                return Err(Problem::bad_field(
                    "watch.path",
                    "the server allows this tenant no directory to watch (`weir serve --watch-root TENANT=DIR`)",
                ));
            };
            if !root.join(&watch.path).starts_with(root) {
                return Err(Problem::bad_field("watch.path", "not beneath the allowed directory"));
            }
            None
        }
        _ => return Err(Problem::bad_field("cron", "give either `cron` or `watch`, not both or neither")),
    };
    let max_concurrent = spec.max_concurrent.unwrap_or(1);
    if max_concurrent == 0 {
        return Err(Problem::bad_field("max_concurrent", "at least 1"));
    }
    // The trigger a fire makes is checked now, so a bad one is refused here
    // (a file trigger's parameters are checked at each fire, with the file).
    let request = TriggerRequest {
        version: spec.version.clone(),
        params: spec.params.clone().unwrap_or_default(),
        inputs: BTreeMap::new(),
        labels: spec.labels.clone().unwrap_or_default(),
    };
    if let Some(watch) = &spec.watch {
        let version = crate::launch::find_version(state, tenant, pipeline, spec.version.as_deref())?;
        if !version.inputs.contains_key(&watch.input) {
            return Err(Problem::bad_field(
                "watch.input",
                format!("pipeline `{pipeline}` has no input `{}`", watch.input),
            ));
        }
    } else {
        crate::launch::prepare(state, tenant, pipeline, &request)?;
    }
    let misfire = match spec.misfire.unwrap_or_default() {
        Misfire::RunOnce => "run_once",
        Misfire::Skip => "skip",
    };
    let watch = spec.watch.as_ref().map(|watch| serde_json::to_string(watch).unwrap_or_default());
    let last_digest = spec
        .watch
        .as_ref()
        .and_then(|watch| watched_path(state, tenant, &watch.path))
        .and_then(|path| std::fs::read(path).ok())
        .map(|bytes| weir::Digest::of(&bytes).to_string());
    state.db.with(|conn| {
        if created {
            conn.execute(
                "INSERT INTO schedules (id, tenant, pipeline, version, cron, timezone, watch, params, labels, misfire, max_concurrent, paused, next_fire, last_digest, changes, created)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 0, ?12, ?13, 0, ?14)",
                params![id, tenant, pipeline, spec.version, spec.cron, timezone, watch, serde_json::to_string(&request.params).unwrap_or_default(), serde_json::to_string(&request.labels).unwrap_or_default(), misfire, max_concurrent, next_fire, last_digest, now],
            )
        } else {
            conn.execute(
                "UPDATE schedules SET pipeline = ?3, version = ?4, cron = ?5, timezone = ?6, watch = ?7, params = ?8, labels = ?9, misfire = ?10, max_concurrent = ?11, next_fire = ?12
                 WHERE id = ?1 AND tenant = ?2",
                params![id, tenant, pipeline, spec.version, spec.cron, timezone, watch, serde_json::to_string(&request.params).unwrap_or_default(), serde_json::to_string(&request.labels).unwrap_or_default(), misfire, max_concurrent, next_fire],
            )
        }
    })?;
    Ok(())
}

/// The spec a schedule was saved from.
pub fn spec_of(schedule: &Schedule) -> ScheduleSpec {
    ScheduleSpec {
        pipeline: Some(schedule.pipeline.clone()),
        version: schedule.version.clone(),
        cron: schedule.cron.clone(),
        timezone: Some(schedule.timezone.clone()),
        watch: schedule.watch.clone(),
        params: Some(schedule.params.clone()),
        labels: Some(schedule.labels.clone()),
        misfire: Some(schedule.misfire),
        max_concurrent: Some(schedule.max_concurrent),
    }
}

/// Pauses or resumes a schedule. A resumed timed schedule waits for its
/// next slot from `now` (the slots it missed while paused are not fired).
pub fn set_paused(state: &AppState, tenant: &str, id: &str, paused: bool, now: f64) -> Result<(), Problem> {
    let schedule = find(state, tenant, id)?;
    let next_fire = match (&schedule.cron, paused) {
        (Some(cron), false) => {
            let cron = parse_cron(cron)?;
            cron.find_next_occurrence(&at(now).with_timezone(&schedule.tz()), false).ok().map(|time| seconds(&time))
        }
        _ => schedule.next_fire,
    };
    state.db.with(|conn| {
        conn.execute(
            "UPDATE schedules SET paused = ?3, next_fire = ?4 WHERE id = ?1 AND tenant = ?2",
            params![id, tenant, paused, next_fire],
        )
    })?;
    Ok(())
}

/// Deletes a schedule (its runs and fire records stay).
pub fn delete(state: &AppState, tenant: &str, id: &str) -> Result<(), Problem> {
    let deleted = state
        .db
        .with(|conn| conn.execute("DELETE FROM schedules WHERE id = ?1 AND tenant = ?2", params![id, tenant]))?;
    if deleted == 0 {
        return Err(Problem::not_found(format!("schedule `{id}`")));
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn time(text: &str) -> f64 {
        seconds(&DateTime::parse_from_rfc3339(text).unwrap())
    }

    #[test]
    fn an_on_time_slot_fires_once_and_the_next_is_computed() {
        let cron = parse_cron("0 * * * *").unwrap();
        let slot = time("2026-11-30T10:00:00Z");
        let decision = decide(&cron, Tz::UTC, slot, slot + 0.5, Misfire::Skip);
        assert_eq!(decision, Decision { fire: Some(slot), next_fire: Some(time("2026-11-30T11:00:00Z")) });
        // Before the slot, nothing fires.
        let early = decide(&cron, Tz::UTC, slot, slot - 1.0, Misfire::RunOnce);
        assert_eq!(early, Decision { fire: None, next_fire: Some(slot) });
    }

    #[test]
    fn missed_slots_run_once_or_are_skipped() {
        let cron = parse_cron("*/10 * * * *").unwrap();
        let first_missed = time("2026-11-30T10:00:00Z");
        // The server was down from 10:00 to 11:35: nine slots missed.
        let now = time("2026-11-30T11:35:00Z");
        let once = decide(&cron, Tz::UTC, first_missed, now, Misfire::RunOnce);
        assert_eq!(once.fire, Some(time("2026-11-30T11:30:00Z")), "only the latest missed slot");
        assert_eq!(once.next_fire, Some(time("2026-11-30T11:40:00Z")));
        let skipped = decide(&cron, Tz::UTC, first_missed, now, Misfire::Skip);
        assert_eq!(skipped, Decision { fire: None, next_fire: Some(time("2026-11-30T11:40:00Z")) });
    }

    #[test]
    fn a_time_zone_moves_the_slot_with_daylight_saving() {
        let cron = parse_cron("0 9 * * *").unwrap();
        let berlin = parse_tz("Europe/Berlin").unwrap();
        let winter =
            cron.find_next_occurrence(&at(time("2026-01-15T00:00:00Z")).with_timezone(&berlin), false).unwrap();
        let summer =
            cron.find_next_occurrence(&at(time("2026-07-15T00:00:00Z")).with_timezone(&berlin), false).unwrap();
        assert_eq!(slot_key(seconds(&winter)), "2026-01-15T08:00:00Z");
        assert_eq!(slot_key(seconds(&summer)), "2026-07-15T07:00:00Z");
        assert_eq!(parse_tz("Mars/Olympus").unwrap_err().field.as_deref(), Some("timezone"));
        assert_eq!(parse_cron("every hour").unwrap_err().field.as_deref(), Some("cron"));
    }
}
