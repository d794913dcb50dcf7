//! `native = "NAME"`: a step the embedding application registered with the
//! engine, run in-process, keyed by its name and version.

use super::{Preparation, Prepared, StepKind};
use crate::StepCode;
use crate::cache_key::CodeKey;
use crate::error::{ValidationError, ValidationErrorKind as Kind};
use crate::executor::CodeRef;
use crate::pipeline::names;
use crate::step_exec::JobCode;

/// The native step kind.
pub(crate) struct Native;

impl StepKind for Native {
    fn field(&self) -> &'static str {
        "native"
    }

    /// The name is a valid function name (whether it is registered is
    /// known only to the engine that runs it).
    fn check(&self, code: &StepCode) -> Result<(), ValidationError> {
        let StepCode::Native(name) = code else { return Ok(()) };
        names::check_function(name)
    }

    fn prepare(&self, code: &StepCode, with: &Preparation<'_>) -> Result<Prepared, ValidationError> {
        let StepCode::Native(name) = code else { unreachable!("the native kind prepares native steps") };
        let step = with.natives.step(name).ok_or_else(|| {
            let known = with.natives.step_names();
            ValidationError::new(Kind::UnknownNative { what: "step", name: name.clone(), known })
        })?;
        Ok(Prepared {
            reference: CodeRef::Native { name: name.clone(), version: step.version() },
            key: CodeKey::Native { name: name.clone(), version: step.version() },
            argv0: name.clone(),
            code: JobCode::Native(step.clone()),
        })
    }
}
