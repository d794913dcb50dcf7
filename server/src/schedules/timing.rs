//! When a cron schedule fires: parsing, and the decision at a given time.

use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;

use super::{MISFIRE_AFTER_SECONDS, Misfire};
use crate::problem::Problem;

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
pub(super) fn at(seconds: f64) -> DateTime<Utc> {
    Utc.timestamp_opt(seconds.floor() as i64, 0).single().unwrap_or_default()
}

pub(super) fn seconds(time: &DateTime<impl TimeZone>) -> f64 {
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
pub(super) fn slot_key(slot: f64) -> String {
    at(slot).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
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
