//! `python = "steps/clean.py"`: a script weir builds into a WebAssembly
//! component with componentize-py (bundled with the `.py` files beside it
//! and in packages beneath it that it imports, its pure-Python requirements
//! and weir's Python SDK), then
//! runs like any component. The build is cached in the store by the
//! bundle's digest, which is also the code's part of the cache key: editing
//! a bundled helper re-runs the step, editing a file that is not bundled
//! does not.

mod build;
mod bundle;
mod imports;

pub use build::COMPONENTIZE_PY_VAR;

use super::{Preparation, Prepared, StepKind, file_name};
use crate::cache_key::CodeKey;
use crate::error::{ValidationError, ValidationErrorKind as Kind};
use crate::executor::CodeRef;
use crate::step_exec::JobCode;
use crate::{PythonScript, StepCode};
use bundle::Bundle;

/// The Python step kind.
pub(crate) struct Python;

impl StepKind for Python {
    fn field(&self) -> &'static str {
        "python"
    }

    /// The script and its requirements files exist (the build waits for
    /// the run: it takes tens of seconds).
    fn check(&self, code: &StepCode) -> Result<(), ValidationError> {
        let StepCode::Python(python) = code else { return Ok(()) };
        if !python.script.is_file() {
            return Err(ValidationError::new(Kind::BuildFailed(format!(
                "Python script {} not found",
                python.script.display()
            ))));
        }
        if let Some(missing) = python.requirements.iter().find(|path| !path.is_file()) {
            return Err(ValidationError::new(Kind::BuildFailed(format!(
                "requirements file {} not found",
                missing.display()
            )))
            .in_field("requirements"));
        }
        Ok(())
    }

    fn prepare(&self, code: &StepCode, with: &Preparation<'_>) -> Result<Prepared, ValidationError> {
        let StepCode::Python(python) = code else { unreachable!("the Python kind prepares Python scripts") };
        let failed = |why: String| ValidationError::new(Kind::BuildFailed(why));
        if with.files.confined() {
            return Err(ValidationError::new(Kind::Forbidden(FORBIDDEN_TO_TENANTS.to_owned())));
        }
        let bundle = Bundle::gather(python).map_err(failed)?;
        let component = build::component(&bundle, with.store).map_err(failed)?;
        let program = with
            .runtime
            .prepare_stored(with.store, component, with.flavor)
            .map_err(|why| failed(format!("the component built from {}: {why}", python.script.display())))?;
        Ok(Prepared {
            reference: CodeRef::Module { digest: program.digest },
            key: CodeKey::Python { bundle: bundle.digest },
            argv0: file_name(&python.script),
            code: JobCode::Wasm(program),
        })
    }
}

/// The component built from `python` (built now unless the store has
/// built the same bundle before), as bytes.
pub(crate) fn component_of(python: &PythonScript, store: &crate::store::Store) -> Result<Vec<u8>, String> {
    let bundle = Bundle::gather(python)?;
    let component = build::component(&bundle, store)?;
    store.read_file(&component).map_err(|err| format!("reading the build of {}: {err}", python.script.display()))
}

/// Why a tenant may not name a Python script.
pub(crate) const FORBIDDEN_TO_TENANTS: &str = "building a Python step runs componentize-py and pip on the host, \
     which only the operator may do; name a built `module` instead";

impl PythonScript {
    /// A Python step's code: the script at `script`, with no requirements.
    pub fn new(script: impl Into<std::path::PathBuf>) -> Self {
        Self { script: script.into(), requirements: Vec::new() }
    }
}
