//! Resource limits of a step's sandbox, and the parsing of sizes and durations.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Limits applied to one execution of a step.
///
/// Defaults (used for every field a step leaves unset): [`Limits::DEFAULT_MEMORY`]
/// of linear memory and a [`Limits::DEFAULT_TIMEOUT`] wall-clock timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Bytes of linear memory the guest may hold, across all its memories.
    pub memory: u64,
    /// Wall-clock time the guest may run before it is interrupted.
    pub timeout: Duration,
}

impl Limits {
    /// Default memory limit: 512 MiB.
    pub const DEFAULT_MEMORY: u64 = 512 << 20;
    /// Default timeout: 10 minutes.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
}

impl Default for Limits {
    fn default() -> Self {
        Self { memory: Self::DEFAULT_MEMORY, timeout: Self::DEFAULT_TIMEOUT }
    }
}

/// Parses a size such as `64MiB`, `1.5GB`, `4096` or `512 KiB` into bytes.
///
/// Units: `B`, `KB`/`MB`/`GB`/`TB` (powers of 1000) and `KiB`/`MiB`/`GiB`/`TiB`
/// (powers of 1024); case-insensitive; a bare number is bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let (number, unit) = split_number(text);
    let factor: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1_000,
        "mb" | "m" => 1_000_000,
        "gb" | "g" => 1_000_000_000,
        "tb" | "t" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => {
            return Err(format!("`{text}` is not a size: unknown unit `{unit}` (use B, KiB, MiB, GiB, KB, MB or GB)"));
        }
    };
    let value: f64 =
        number.parse().map_err(|_| format!("`{text}` is not a size: expected a number and a unit, like `64MiB`"))?;
    let bytes = value * factor as f64;
    if !(0.0..=u64::MAX as f64).contains(&bytes) {
        return Err(format!("`{text}` is not a size: out of range"));
    }
    Ok(bytes.round() as u64)
}

/// Parses a duration such as `30s`, `500ms`, `2m`, `1.5h` or `1m30s`.
///
/// Units: `ms`, `s`, `m`, `h`; parts add up; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let error = |why: &str| format!("`{text}` is not a duration: {why} (use e.g. `30s`, `500ms`, `2m`, `1h`)");
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(error("it is empty"));
    }
    let mut total = 0.0f64;
    while !rest.is_empty() {
        let (number, after) = split_number(rest);
        let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let value: f64 = number.parse().map_err(|_| error("expected a number"))?;
        let seconds = match unit.trim() {
            "ms" => 0.001,
            "" | "s" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            other => return Err(error(&format!("unknown unit `{other}`"))),
        };
        total += value * seconds;
        rest = next.trim_start();
    }
    Duration::try_from_secs_f64(total).map_err(|_| error("out of range"))
}

/// Splits leading digits (and one decimal point) from the rest, trimming spaces.
fn split_number(text: &str) -> (&str, &str) {
    let text = text.trim();
    let end = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    (&text[..end], text[end..].trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("64 mib"), Ok(64 << 20));
        assert_eq!(parse_size("1.5GB"), Ok(1_500_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("2KiB"), Ok(2048));
        assert!(parse_size("12 parsecs").unwrap_err().contains("unknown unit `parsecs`"));
        assert!(parse_size("MiB").unwrap_err().contains("expected a number"));
        assert!(parse_size("-5MiB").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("10 fortnights").unwrap_err().contains("unknown unit `fortnights`"));
        assert!(parse_duration("soon").is_err());
    }
}
