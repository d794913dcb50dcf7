//! Resource limits of a step's sandbox, how a step's overrides combine with
//! the engine's defaults and a tenant's ceiling, and the parsing of sizes and
//! durations.

use std::ffi::OsString;
use std::sync::Arc;
use std::time::Duration;

use cap_std::fs::Dir;
use serde::{Deserialize, Serialize};

/// The limits one execution of a step runs under.
///
/// [`Limits::default`] holds the engine's defaults, used for every field a
/// step leaves unset (see [`LimitOverrides`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Bytes of linear memory the guest may hold, across all its memories.
    pub memory: u64,
    /// Wall-clock time the guest may run before it is interrupted;
    /// [`Limits::NO_TIMEOUT`] for none (see there for what that trades).
    pub timeout: Duration,
    /// Units of fuel (roughly, WebAssembly instructions) the guest may spend;
    /// `None` runs unmetered (metering costs some speed).
    pub fuel: Option<u64>,
    /// Bytes of WebAssembly stack (deep recursion beyond it traps).
    pub stack: u64,
    /// Total bytes of the files the guest writes under `/out`.
    pub output: u64,
    /// Number of files and directories the guest creates under `/out`.
    pub files: u64,
    /// Bytes kept of each of stdout and stderr; the rest is dropped and a
    /// truncation marker written in its place.
    pub log: u64,
}

impl Limits {
    /// Default memory limit: 512 MiB.
    pub const DEFAULT_MEMORY: u64 = 512 << 20;
    /// Default timeout: 10 minutes.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
    /// No timeout (`timeout = "none"`). The step's code is then compiled
    /// without the interruption checks a timeout needs on every loop
    /// iteration and function call, which makes tight loops up to twice as
    /// fast; in exchange nothing can stop the guest before it ends, and its
    /// `output` and `files` quotas are checked only when it does. For code
    /// the embedder trusts; a tenant with a maximum timeout cannot ask for it.
    pub const NO_TIMEOUT: Duration = Duration::MAX;
    /// Default WebAssembly stack: 1 MiB.
    pub const DEFAULT_STACK: u64 = 1 << 20;
    /// Default output quota: 8 GiB.
    pub const DEFAULT_OUTPUT: u64 = 8 << 30;
    /// Default number of output files: 100,000.
    pub const DEFAULT_FILES: u64 = 100_000;
    /// Default bytes kept of each log: 16 MiB.
    pub const DEFAULT_LOG: u64 = 16 << 20;

    /// These limits with the fields `overrides` sets replaced.
    pub fn with(self, overrides: &LimitOverrides) -> Limits {
        Limits {
            memory: overrides.memory.unwrap_or(self.memory),
            timeout: overrides.timeout.unwrap_or(self.timeout),
            fuel: overrides.fuel.or(self.fuel),
            stack: overrides.stack.unwrap_or(self.stack),
            output: overrides.output.unwrap_or(self.output),
            files: overrides.files.unwrap_or(self.files),
            log: overrides.log.unwrap_or(self.log),
        }
    }

    /// The limits a step gets under a `ceiling` (a tenant's maximum): each
    /// field the step sets must be within it, each field it leaves unset is
    /// this default lowered to the ceiling. The error names the field, the
    /// value asked for and the maximum.
    pub fn resolve(self, overrides: &LimitOverrides, ceiling: &Limits) -> Result<Limits, LimitExceeded> {
        let check = |field: &'static str, asked: Option<u64>, default: u64, max: u64| match asked {
            Some(asked) if asked > max => Err(LimitExceeded { field, asked, max }),
            Some(asked) => Ok(asked),
            None => Ok(default.min(max)),
        };
        let fuel = match (overrides.fuel.or(self.fuel), ceiling.fuel) {
            (Some(asked), Some(max)) if overrides.fuel.is_some() && asked > max => {
                return Err(LimitExceeded { field: "fuel", asked, max });
            }
            (Some(asked), Some(max)) => Some(asked.min(max)),
            (None, Some(max)) => Some(max),
            (asked, None) => asked,
        };
        Ok(Limits {
            memory: check("memory", overrides.memory, self.memory, ceiling.memory)?,
            timeout: from_millis(check(
                "timeout",
                overrides.timeout.map(millis),
                millis(self.timeout),
                millis(ceiling.timeout),
            )?),
            fuel,
            stack: check("stack", overrides.stack, self.stack, ceiling.stack)?,
            output: check("output", overrides.output, self.output, ceiling.output)?,
            files: check("files", overrides.files, self.files, ceiling.files)?,
            log: check("log", overrides.log, self.log, ceiling.log)?,
        })
    }

    /// Whether the guest can be interrupted: it has a timeout.
    pub fn interruptible(&self) -> bool {
        self.timeout != Self::NO_TIMEOUT
    }

    /// A value of the field named `field` as a manifest would write it
    /// (`512MiB`, `10m`, `none`), for messages.
    pub fn show(field: &str, value: u64) -> String {
        match field {
            "timeout" if value == u64::MAX => "none".to_owned(),
            "timeout" => format!("{:?}", Duration::from_millis(value)),
            "memory" | "stack" | "output" | "log" => show_size(value),
            _ => value.to_string(),
        }
    }

    /// No limit at all: the ceiling of a tenant without one.
    pub const UNBOUNDED: Limits = Limits {
        memory: u64::MAX,
        timeout: Duration::MAX,
        fuel: None,
        stack: u64::MAX,
        output: u64::MAX,
        files: u64::MAX,
        log: u64::MAX,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory: Self::DEFAULT_MEMORY,
            timeout: Self::DEFAULT_TIMEOUT,
            fuel: None,
            stack: Self::DEFAULT_STACK,
            output: Self::DEFAULT_OUTPUT,
            files: Self::DEFAULT_FILES,
            log: Self::DEFAULT_LOG,
        }
    }
}

/// The limits a step sets itself (the keys of its `limits` table); each
/// unset field takes the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitOverrides {
    /// See [`Limits::memory`].
    pub memory: Option<u64>,
    /// See [`Limits::timeout`].
    pub timeout: Option<Duration>,
    /// See [`Limits::fuel`].
    pub fuel: Option<u64>,
    /// See [`Limits::stack`].
    pub stack: Option<u64>,
    /// See [`Limits::output`].
    pub output: Option<u64>,
    /// See [`Limits::files`].
    pub files: Option<u64>,
    /// See [`Limits::log`].
    pub log: Option<u64>,
}

impl LimitOverrides {
    /// These overrides, each unset field taken from `fallback`.
    pub fn or(self, fallback: &LimitOverrides) -> LimitOverrides {
        LimitOverrides {
            memory: self.memory.or(fallback.memory),
            timeout: self.timeout.or(fallback.timeout),
            fuel: self.fuel.or(fallback.fuel),
            stack: self.stack.or(fallback.stack),
            output: self.output.or(fallback.output),
            files: self.files.or(fallback.files),
            log: self.log.or(fallback.log),
        }
    }
}

/// A timeout in whole milliseconds, [`Limits::NO_TIMEOUT`] as `u64::MAX`.
fn millis(timeout: Duration) -> u64 {
    if timeout == Limits::NO_TIMEOUT { u64::MAX } else { u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX - 1) }
}

/// The inverse of [`millis`].
fn from_millis(millis: u64) -> Duration {
    if millis == u64::MAX { Limits::NO_TIMEOUT } else { Duration::from_millis(millis) }
}

/// Bytes in the largest binary unit that divides them (`64MiB`, `1000B`).
fn show_size(bytes: u64) -> String {
    const UNITS: [(u32, &str); 4] = [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")];
    UNITS
        .iter()
        .find(|(shift, _)| bytes != 0 && bytes.trailing_zeros() >= *shift)
        .map(|(shift, unit)| format!("{}{unit}", bytes >> shift))
        .unwrap_or_else(|| format!("{bytes}B"))
}

/// A step asks for more than its tenant allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitExceeded {
    /// The key of the `limits` table, e.g. `memory`.
    pub field: &'static str,
    /// What the step asked for (milliseconds for `timeout`, `u64::MAX` for
    /// none; [`Limits::show`] writes it as a manifest would).
    pub asked: u64,
    /// The tenant's maximum.
    pub max: u64,
}

/// The entries directly in a directory, each with whether it is a directory.
pub(crate) type TopLevel = Vec<(OsString, bool)>;

/// What a step has written under `/out` so far, against its quotas.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct OutputUsage {
    /// Bytes in regular files.
    pub bytes: u64,
    /// Files, directories and other entries.
    pub files: u64,
}

impl OutputUsage {
    /// Measures `dir` without following links, stopping as soon as a quota
    /// of `limits` is passed (so a guest that made a million files costs at
    /// most `limits.files` entries to look at). The walk goes through
    /// handles relative to each directory, as ingestion does, so no depth of
    /// nesting or length of names escapes it; an error in the walk is
    /// returned, and callers treat it as a breach.
    pub(crate) fn measure(dir: &Dir, limits: &Limits) -> std::io::Result<OutputUsage> {
        OutputUsage::default().add_tree(dir, limits)
    }

    /// The step error for `/out`: a passed quota, or a walk that failed.
    pub(crate) fn check(dir: &Dir, limits: &Limits) -> Option<crate::StepErrorKind> {
        match Self::measure(dir, limits) {
            Ok(usage) => usage.breach(limits),
            Err(err) => Some(crate::StepErrorKind::OutputUnmeasurable { reason: err.to_string() }),
        }
    }

    /// This usage with [`measure`](Self::measure) of `dir` added (the walk
    /// stops as soon as the sum passes a quota).
    pub(crate) fn add_tree(self, dir: &Dir, limits: &Limits) -> std::io::Result<OutputUsage> {
        let mut usage = self;
        // Directories still to list, each as its parent's handle and its name,
        // opened only when listed: open handles stay about the walk's depth.
        let mut pending: Vec<(Arc<Dir>, Option<OsString>)> = vec![(Arc::new(dir.try_clone()?), None)];
        while let Some((parent, name)) = pending.pop() {
            let dir = match name {
                None => parent,
                Some(name) => Arc::new(parent.open_dir(&name)?),
            };
            for entry in dir.entries()? {
                let entry = entry?;
                usage.files += 1;
                let file_type = entry.file_type()?;
                if file_type.is_dir() {
                    pending.push((dir.clone(), Some(entry.file_name())));
                } else if file_type.is_file() {
                    usage.bytes = usage.bytes.saturating_add(entry.metadata()?.len());
                }
                if usage.exceeds(limits) {
                    return Ok(usage);
                }
            }
        }
        Ok(usage)
    }

    /// The step error for a passed quota, if one is.
    pub(crate) fn breach(&self, limits: &Limits) -> Option<crate::StepErrorKind> {
        if self.files > limits.files {
            Some(crate::StepErrorKind::FilesLimit { limit: limits.files })
        } else if self.bytes > limits.output {
            Some(crate::StepErrorKind::OutputLimit { limit: limits.output })
        } else {
            None
        }
    }

    /// Whether a quota of `limits` is passed.
    pub(crate) fn exceeds(&self, limits: &Limits) -> bool {
        self.files > limits.files || self.bytes > limits.output
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

/// Parses a timeout: a duration (see [`parse_duration`]) or `none`
/// ([`Limits::NO_TIMEOUT`]).
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    if text.trim().eq_ignore_ascii_case("none") { Ok(Limits::NO_TIMEOUT) } else { parse_duration(text) }
}

/// Parses a duration such as `30s`, `500ms`, `2m`, `1.5h` or `1m30s`.
///
/// Units: `ms`, `s`, `m`, `h`, `d`; parts add up; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let error = |why: &str| format!("`{text}` is not a duration: {why} (use e.g. `30s`, `500ms`, `2m`, `1h`, `7d`)");
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
            "d" => 86400.0,
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
    fn overrides_within_a_ceiling_win_and_defaults_are_lowered_to_it() {
        let ceiling = Limits { memory: 64 << 20, fuel: Some(1000), ..Limits::UNBOUNDED };
        let defaults = Limits::default();
        let asked = LimitOverrides { memory: Some(32 << 20), files: Some(7), ..LimitOverrides::default() };
        let limits = defaults.resolve(&asked, &ceiling).unwrap();
        assert_eq!((limits.memory, limits.files, limits.fuel), (32 << 20, 7, Some(1000)));
        assert_eq!(limits.timeout, Limits::DEFAULT_TIMEOUT);
        let unset = defaults.resolve(&LimitOverrides::default(), &ceiling).unwrap();
        assert_eq!(unset.memory, 64 << 20, "the 512 MiB default is lowered to the ceiling");
        let greedy = LimitOverrides { fuel: Some(5000), ..LimitOverrides::default() };
        assert_eq!(defaults.resolve(&greedy, &ceiling), Err(LimitExceeded { field: "fuel", asked: 5000, max: 1000 }));
        let greedy = LimitOverrides { memory: Some(1 << 30), ..LimitOverrides::default() };
        assert_eq!(defaults.resolve(&greedy, &ceiling).unwrap_err().field, "memory");
    }

    #[test]
    fn no_timeout_is_refused_under_a_maximum_and_kept_without_one() {
        let none = LimitOverrides { timeout: Some(Limits::NO_TIMEOUT), ..LimitOverrides::default() };
        let limits = Limits::default().resolve(&none, &Limits::UNBOUNDED).unwrap();
        assert_eq!(limits.timeout, Limits::NO_TIMEOUT);
        assert!(!limits.interruptible());
        assert!(Limits::default().interruptible());
        let ceiling = Limits { timeout: Duration::from_secs(60), ..Limits::UNBOUNDED };
        let exceeded = Limits::default().resolve(&none, &ceiling).unwrap_err();
        assert_eq!(
            (Limits::show(exceeded.field, exceeded.asked), Limits::show("timeout", exceeded.max)),
            ("none".to_owned(), "60s".to_owned())
        );
    }

    #[test]
    fn values_are_shown_in_manifest_units() {
        assert_eq!(Limits::show("memory", 64 << 20), "64MiB");
        assert_eq!(Limits::show("output", 3 << 30), "3GiB");
        assert_eq!(Limits::show("log", 1000), "1000B");
        assert_eq!(Limits::show("files", 7), "7");
        assert_eq!(Limits::show("timeout", 1500), "1.5s");
    }

    #[test]
    fn timeouts() {
        assert_eq!(parse_timeout("none"), Ok(Limits::NO_TIMEOUT));
        assert_eq!(parse_timeout(" None "), Ok(Limits::NO_TIMEOUT));
        assert_eq!(parse_timeout("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_timeout("never").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("10 fortnights").unwrap_err().contains("unknown unit `fortnights`"));
        assert!(parse_duration("soon").is_err());
    }
}
