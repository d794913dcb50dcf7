//! How a step is retried, as a manifest writes it: on the step (`retries`,
//! `retry_backoff`, `retry_on`) or in the file's `[defaults]` table, which
//! every step of the file (and of the sub-pipelines it uses) takes unless it
//! sets its own.

use serde::Deserialize;

use super::syntax;
use crate::error::{ValidationError, ValidationErrorKind as Kind};
use crate::{RetryOn, RetryPolicy};

/// The retry fields of a step, or of `[defaults]`; each may be unset.
#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RetryFields {
    pub retries: Option<toml::Value>,
    pub retry_backoff: Option<toml::Value>,
    pub retry_on: Option<toml::Value>,
}

impl RetryFields {
    /// These fields, each one unset here taken from `outer`.
    pub(super) fn over(&self, outer: &RetryFields) -> RetryFields {
        RetryFields {
            retries: self.retries.clone().or_else(|| outer.retries.clone()),
            retry_backoff: self.retry_backoff.clone().or_else(|| outer.retry_backoff.clone()),
            retry_on: self.retry_on.clone().or_else(|| outer.retry_on.clone()),
        }
    }

    /// Whether any field is set.
    pub(super) fn is_set(&self) -> bool {
        self.retries.is_some() || self.retry_backoff.is_some() || self.retry_on.is_some()
    }

    /// The policy these fields make (none when no field is set); an error
    /// names the field, after `prefix` (`defaults.` for the table).
    pub(super) fn policy(&self, prefix: &str) -> Result<Option<RetryPolicy>, ValidationError> {
        if !self.is_set() {
            return Ok(None);
        }
        let field = |name: &str| format!("{prefix}{name}");
        let mut policy = RetryPolicy::default();
        if let Some(value) = &self.retries {
            policy.retries = value
                .as_integer()
                .and_then(|count| u32::try_from(count).ok())
                .ok_or_else(|| syntax(format!("expected a number of retries such as 2, found {value}")))
                .map_err(|err| err.in_field(field("retries")))?;
        }
        if let Some(value) = &self.retry_backoff {
            let text = value.as_str().ok_or_else(|| {
                syntax(format!("expected a duration such as \"1s\", found {value}")).in_field(field("retry_backoff"))
            })?;
            policy.backoff = crate::limits::parse_duration(text)
                .map_err(|why| ValidationError::new(Kind::BadDuration(why)).in_field(field("retry_backoff")))?;
        }
        if let Some(value) = &self.retry_on {
            let expected = || {
                syntax(format!("expected a list such as [\"trap\", \"exit\", \"timeout\"], found {value}"))
                    .in_field(field("retry_on"))
            };
            let items = value.as_array().ok_or_else(expected)?;
            policy.on = items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let text = item.as_str().ok_or_else(expected)?;
                    RetryOn::parse(text).map_err(|why| syntax(why).in_field(format!("{}[{i}]", field("retry_on"))))
                })
                .collect::<Result<_, _>>()?;
        }
        Ok(Some(policy))
    }
}
