//! Schedules in `server.db`: saved after checking, listed, paused, deleted.

use std::collections::BTreeMap;

use rusqlite::{OptionalExtension, params};

use super::timing::{at, parse_cron, parse_tz, seconds};
use super::{Fire, Misfire, Schedule, ScheduleSpec, watched_path};
use crate::ServerError;
use crate::launch::TriggerRequest;
use crate::problem::Problem;
use crate::state::AppState;

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
pub(super) fn active(state: &AppState) -> Result<Vec<Schedule>, ServerError> {
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
