//! Run ids: the UTC start time, sortable, and a random suffix.

use std::time::{SystemTime, UNIX_EPOCH};

/// A new run id such as `20261127T052233Z-3f9a1c07d2`: sortable by start
/// second, unique by 40 random bits (a server starting hundreds of runs a
/// second must never draw the same id twice).
pub fn new_run_id() -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut random = [0u8; 5];
    if getrandom::fill(&mut random).is_err() {
        // No entropy source: the clock and process still make ids distinct.
        let seed = format!("{}:{}:{:?}", now.as_nanos(), std::process::id(), std::thread::current().id());
        random.copy_from_slice(&blake3::hash(seed.as_bytes()).as_bytes()[..5]);
    }
    let suffix: String = random.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("{}-{suffix}", utc_stamp(now.as_secs()))
}

/// `YYYYMMDDTHHMMSSZ` for seconds since the Unix epoch.
fn utc_stamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let (year, month, day) = civil_from_days(days);
    let rem = secs % 86_400;
    format!("{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Converts days since 1970-01-01 to a proleptic Gregorian date
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_utc_dates() {
        assert_eq!(utc_stamp(0), "19700101T000000Z");
        assert_eq!(utc_stamp(951_782_400), "20000229T000000Z");
        assert_eq!(utc_stamp(1_795_757_553), "20261127T053233Z");
    }

    #[test]
    fn ids_are_unique_and_sortable() {
        let a = new_run_id();
        let b = new_run_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), "20261127T052233Z-3f9a1c07d2".len());
    }
}
