//! Step kinds: what a step runs. Each kind, in a file of its own, checks a
//! step's code when the pipeline is built, makes it runnable when a run is
//! planned, and supplies the code's part of the cache key and the reference
//! by which another process finds it. The rest of the engine asks the kind
//! and never matches on it.
//!
//! Adding a kind: its file here, its [`StepCode`] variant and its line in
//! [`StepCode::kind`]; how a manifest writes it is a `CodeKind` in
//! `manifest/code.rs` (which may also produce an existing kind's code, as
//! `crate` produces a module).

mod module;
mod native;
mod package;
pub(crate) mod python;

use std::path::Path;

pub(crate) use module::Module;
pub(crate) use native::Native;
pub(crate) use package::Package;
pub(crate) use python::{Python, component_of as python_component};

use crate::StepCode;
use crate::cache_key::CodeKey;
use crate::error::ValidationError;
use crate::executor::CodeRef;
use crate::host_files::HostFiles;
use crate::native::Natives;
use crate::runtime::{Flavor, Runtime};
use crate::step_exec::JobCode;
use crate::store::Store;

/// A kind of step.
pub(crate) trait StepKind: Sync {
    /// The manifest field that names its code (`module`, `native`): errors
    /// about the code are located there.
    fn field(&self) -> &'static str;

    /// Checks the code when the step is built, before anything runs.
    fn check(&self, code: &StepCode) -> Result<(), ValidationError>;

    /// Makes the code runnable for a step whose limits need `flavor`.
    /// Identical code of several steps is prepared once per flavor.
    fn prepare(&self, code: &StepCode, with: &Preparation<'_>) -> Result<Prepared, ValidationError>;
}

/// What preparing code may use.
pub(crate) struct Preparation<'a> {
    pub runtime: &'a Runtime,
    pub natives: &'a Natives,
    /// How the run reaches host files (a tenant's are confined).
    pub files: &'a HostFiles,
    /// The workspace's store (where builds are kept).
    pub store: &'a Store,
    pub flavor: Flavor,
    /// Whether the run is read-only: what it learns of host files (their
    /// stamps) is not recorded.
    pub read_only: bool,
}

/// Code made runnable.
#[derive(Clone)]
pub(crate) struct Prepared {
    /// What a job runs in this process.
    pub code: JobCode,
    /// How another process finds it.
    pub reference: CodeRef,
    /// Its part of the cache key.
    pub key: CodeKey,
    /// argv\[0\] of the step (independent of the step's name, so renaming a
    /// step keeps its cache).
    pub argv0: String,
}

impl StepCode {
    /// The kind of step this code is.
    pub(crate) fn kind(&self) -> &'static dyn StepKind {
        match self {
            StepCode::Wasm(_) => &Module,
            StepCode::Native(_) => &Native,
            StepCode::Python(_) => &Python,
            StepCode::Package(_) => &Package,
        }
    }
}

/// The file name of `path`, as argv\[0\].
fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(|| "step".to_owned(), |name| name.to_string_lossy().into_owned())
}
