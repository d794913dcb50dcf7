//! Firing: each tick, the schedules that are due claim their slot and start a run.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use rusqlite::params;

use super::timing::{decide, parse_cron, slot_key};
use super::{Schedule, Watch, store};
use crate::ServerError;
use crate::launch::{Origin, TriggerRequest, trigger};
use crate::state::AppState;

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
    for schedule in store::active(state)? {
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
