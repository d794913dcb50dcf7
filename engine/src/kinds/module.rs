//! `module = "step.wasm"`: a WASI preview-1 module or preview-2 component,
//! compiled by the engine's runtime (once per module and flavor, cached on
//! disk) and keyed by the digest of its bytes.

use super::{Preparation, Prepared, StepKind, file_name};
use crate::StepCode;
use crate::cache_key::CodeKey;
use crate::error::{ValidationError, ValidationErrorKind as Kind};
use crate::executor::CodeRef;
use crate::module_kind::ModuleKind;
use crate::step_exec::JobCode;

/// The WebAssembly step kind.
pub(crate) struct Module;

impl StepKind for Module {
    fn field(&self) -> &'static str {
        "module"
    }

    /// The file exists and starts like WebAssembly.
    fn check(&self, code: &StepCode) -> Result<(), ValidationError> {
        let StepCode::Wasm(path) = code else { return Ok(()) };
        if !path.is_file() {
            return Err(ValidationError::new(Kind::ModuleMissing { path: path.to_owned() }));
        }
        ModuleKind::of_file(path)
            .map(|_| ())
            .map_err(|reason| ValidationError::new(Kind::InvalidModule { path: path.to_owned(), reason }))
    }

    fn prepare(&self, code: &StepCode, with: &Preparation<'_>) -> Result<Prepared, ValidationError> {
        let StepCode::Wasm(path) = code else { unreachable!("the module kind prepares modules") };
        let program = with
            .runtime
            .prepare(path, with.flavor, with.files, with.store, !with.read_only)
            .map_err(|reason| ValidationError::new(Kind::InvalidModule { path: path.to_owned(), reason }))?;
        Ok(Prepared {
            reference: CodeRef::Module { digest: program.digest },
            key: CodeKey::Wasm { module: program.digest },
            argv0: file_name(path),
            code: JobCode::Wasm(program),
        })
    }
}
