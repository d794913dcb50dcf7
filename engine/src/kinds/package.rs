//! `uses = "normalize.tar"`: the module of a step package, read from its
//! image layout and checked against the layer's digest each time a run
//! prepares it, kept in the store (where worker processes find it), then
//! run like any module. Its cache key is the module's
//! own digest, so a package re-tagged or re-versioned around the same bytes
//! keeps its cache.

use super::{Preparation, Prepared, StepKind};
use crate::StepCode;
use crate::cache_key::CodeKey;
use crate::error::{ValidationError, ValidationErrorKind as Kind};
use crate::executor::CodeRef;
use crate::step_exec::JobCode;

/// The step package kind.
pub(crate) struct Package;

impl StepKind for Package {
    fn field(&self) -> &'static str {
        "uses"
    }

    /// The package was opened and checked when the manifest was read.
    fn check(&self, _: &StepCode) -> Result<(), ValidationError> {
        Ok(())
    }

    fn prepare(&self, code: &StepCode, with: &Preparation<'_>) -> Result<Prepared, ValidationError> {
        let StepCode::Package(package) = code else { unreachable!("the package kind prepares packages") };
        let failed = |why: String| ValidationError::new(Kind::Package(why));
        let bytes = crate::package::read_module(package, with.files).map_err(failed)?;
        // Where a worker process (or a Slurm node) finds it.
        with.store
            .put_bytes(&bytes)
            .map_err(|err| failed(format!("storing the module of {}: {err}", package.source.display())))?;
        let program = with
            .runtime
            .prepare_bytes(bytes, with.flavor)
            .map_err(|why| failed(format!("the module of {}: {why}", package.source.display())))?;
        Ok(Prepared {
            reference: CodeRef::Module { digest: program.digest },
            key: CodeKey::Wasm { module: program.digest },
            argv0: package.name.clone(),
            code: JobCode::Wasm(program),
        })
    }
}
