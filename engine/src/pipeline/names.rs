//! Which names steps, inputs, outputs and parameters may have.

use crate::error::{ValidationError, ValidationErrorKind};

/// Step names that would make a reference ambiguous.
const RESERVED_STEP_NAMES: [&str; 2] = ["inputs", "params"];

/// Checks a name of a step, input, output or parameter: letters, digits, `_`
/// and `-`, not starting with `-`. Dots are excluded because they separate
/// the parts of a reference; a leading dot would collide with `/in/.params.json`.
pub fn check(name: &str) -> Result<(), ValidationError> {
    let valid = !name.is_empty()
        && !name.starts_with('-')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if valid { Ok(()) } else { Err(invalid(name, "use letters, digits, `_` and `-` (not first)")) }
}

/// Checks a step name: a valid name that is not reserved. Steps inlined from
/// a sub-pipeline are named `OUTER/INNER`, so `/` may separate valid names.
pub(crate) fn check_step(name: &str) -> Result<(), ValidationError> {
    if name.split('/').any(|part| check(part).is_err()) {
        return Err(invalid(name, "use letters, digits, `_` and `-` (not first)"));
    }
    if RESERVED_STEP_NAMES.contains(&name) {
        return Err(invalid(name, "reserved; it would make references ambiguous"));
    }
    Ok(())
}

/// Checks the name of a native function or native step: a name, optionally
/// with `.`-separated namespaces (`ml.softmax`).
pub(crate) fn check_function(name: &str) -> Result<(), ValidationError> {
    if name.split('.').all(|part| check(part).is_ok()) {
        Ok(())
    } else {
        Err(invalid(name, "use letters, digits, `_`, `-`, and `.` between parts"))
    }
}

fn invalid(name: &str, reason: &str) -> ValidationError {
    ValidationError::new(ValidationErrorKind::InvalidName { name: name.to_owned(), reason: reason.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_names_and_rejects_the_rest() {
        for good in ["train", "step_2", "a-b", "X9"] {
            assert!(check_step(good).is_ok(), "{good}");
        }
        for bad in ["", "-x", "a.b", "a b", ".params.json", "ü", "a/b"] {
            assert!(check(bad).is_err(), "{bad}");
        }
        assert!(check_step("inputs").is_err());
        assert!(check_step("data/prep").is_ok());
        assert!(check_step("data/").is_err());
        assert!(check("data/prep").is_err());
        assert!(check("inputs").is_ok());
    }
}
