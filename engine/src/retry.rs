//! Retrying a step whose execution failed for a reason that may not recur:
//! which failures qualify, how many times, and how long to wait between.

use std::fmt;
use std::time::Duration;

use crate::StepErrorKind;

/// The most retries a step may ask for.
pub const MAX_RETRIES: u32 = 20;

/// How a step is retried: `retries = 2`, `retry_backoff = "1s"` and
/// `retry_on = ["trap", "exit", "timeout"]` in a manifest. The default retries
/// nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// How many times a failed execution is run again (0: never).
    pub retries: u32,
    /// The wait before the first retry; it doubles before each next one.
    pub backoff: Duration,
    /// The failures that are retried.
    pub on: Vec<RetryOn>,
}

/// A kind of failure that may be retried. Limits the manifest sets
/// (memory, fuel, output quotas), engine errors and cancellation never are:
/// they would fail the same way again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryOn {
    /// The guest trapped (a panic, an out-of-bounds access…).
    Trap,
    /// The guest exited with a non-zero status; `Some(code)`: only with that one.
    Exit(Option<i32>),
    /// The guest ran past `limits.timeout`.
    Timeout,
    /// A native step returned an error or panicked.
    Native,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { retries: 0, backoff: Duration::from_secs(1), on: RetryOn::DEFAULT.to_vec() }
    }
}

impl RetryPolicy {
    /// A policy retrying the default failures (trap, exit, timeout) `retries` times.
    pub fn new(retries: u32) -> Self {
        Self { retries, ..Self::default() }
    }

    /// Whether a failure of this kind is retried.
    pub fn covers(&self, kind: &StepErrorKind) -> bool {
        self.on.iter().any(|on| on.matches(kind))
    }

    /// The wait before attempt `attempt` (2 for the first retry): the
    /// backoff, doubled for each retry before it.
    pub fn delay_before(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(2).min(16);
        self.backoff.saturating_mul(1 << doublings)
    }
}

impl RetryOn {
    /// What a policy retries unless told otherwise.
    pub const DEFAULT: [RetryOn; 3] = [RetryOn::Trap, RetryOn::Exit(None), RetryOn::Timeout];

    /// Reads one entry of `retry_on`: `trap`, `exit`, `exit:CODE`, `timeout` or `native`.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "trap" => Ok(RetryOn::Trap),
            "exit" => Ok(RetryOn::Exit(None)),
            "timeout" => Ok(RetryOn::Timeout),
            "native" => Ok(RetryOn::Native),
            _ => match text.strip_prefix("exit:").map(str::parse::<i32>) {
                Some(Ok(code)) if code != 0 => Ok(RetryOn::Exit(Some(code))),
                _ => Err(format!(
                    "`{text}` is not a failure to retry: use `trap`, `exit`, `exit:CODE` (a non-zero status), \
                     `timeout` or `native`"
                )),
            },
        }
    }

    fn matches(self, kind: &StepErrorKind) -> bool {
        match (self, kind) {
            (RetryOn::Trap, StepErrorKind::Trap { .. }) => true,
            (RetryOn::Exit(None), StepErrorKind::Exit { .. }) => true,
            (RetryOn::Exit(Some(wanted)), StepErrorKind::Exit { code }) => wanted == *code,
            (RetryOn::Timeout, StepErrorKind::Timeout { .. }) => true,
            (RetryOn::Native, StepErrorKind::Native { .. }) => true,
            _ => false,
        }
    }
}

impl fmt::Display for RetryOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RetryOn::Trap => f.write_str("trap"),
            RetryOn::Exit(None) => f.write_str("exit"),
            RetryOn::Exit(Some(code)) => write!(f, "exit:{code}"),
            RetryOn::Timeout => f.write_str("timeout"),
            RetryOn::Native => f.write_str("native"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TrapCode;

    fn trap() -> StepErrorKind {
        StepErrorKind::Trap { code: TrapCode::Unreachable, message: "boom".into(), backtrace: String::new() }
    }

    #[test]
    fn the_default_retries_transient_failures_and_never_a_limit_of_the_manifest() {
        let policy = RetryPolicy::new(2);
        assert!(policy.covers(&trap()));
        assert!(policy.covers(&StepErrorKind::Exit { code: 3 }));
        assert!(policy.covers(&StepErrorKind::Timeout { limit: Duration::from_secs(1) }));
        assert!(!policy.covers(&StepErrorKind::MemoryLimit { limit: 1 }));
        assert!(!policy.covers(&StepErrorKind::FuelExhausted { limit: 1 }));
        assert!(!policy.covers(&StepErrorKind::Cancelled));
        assert!(!policy.covers(&StepErrorKind::Native { message: "no".into() }));
        assert!(!policy.covers(&StepErrorKind::MissingOutput { output: "x".into() }));
    }

    #[test]
    fn an_exit_code_narrows_what_is_retried() {
        let policy = RetryPolicy { on: vec![RetryOn::parse("exit:75").unwrap()], ..RetryPolicy::new(1) };
        assert!(policy.covers(&StepErrorKind::Exit { code: 75 }));
        assert!(!policy.covers(&StepErrorKind::Exit { code: 1 }));
        assert!(!policy.covers(&trap()));
    }

    #[test]
    fn parsing_names_what_is_accepted() {
        for text in ["trap", "exit", "exit:3", "timeout", "native"] {
            assert_eq!(RetryOn::parse(text).unwrap().to_string(), text);
        }
        for bad in ["exit:0", "exit:x", "oom", ""] {
            let err = RetryOn::parse(bad).unwrap_err();
            assert!(err.contains("`trap`, `exit`, `exit:CODE`"), "{err}");
        }
    }

    #[test]
    fn the_backoff_doubles_before_each_retry() {
        let policy = RetryPolicy { backoff: Duration::from_millis(100), ..RetryPolicy::new(3) };
        let delays: Vec<_> = (2..=4).map(|attempt| policy.delay_before(attempt)).collect();
        assert_eq!(delays, [Duration::from_millis(100), Duration::from_millis(200), Duration::from_millis(400)]);
    }
}
