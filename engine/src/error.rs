//! The engine's typed errors: pipeline validation, step failures, and store or I/O problems.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::Digest;

/// The result type of weir's fallible operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Anything that stops weir from loading or running a pipeline.
///
/// A step that fails is *not* an `Error`: the run completes, and the step's
/// [`StepError`] is reported in its [`StepReport`](crate::StepReport).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The pipeline definition, a parameter or a module is invalid; nothing ran.
    #[error(transparent)]
    Validation(#[from] ValidationError),
    /// Reading or writing the workspace, a pipeline input or an export failed.
    #[error("{context}: {source}")]
    Io {
        /// What weir was doing, naming the path.
        context: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// No artifact with this digest is in the store.
    #[error("no artifact {digest} in the store")]
    ArtifactNotFound {
        /// The digest that was looked up.
        digest: Digest,
    },
    /// The artifact is of the other kind: a directory read as a file, or a
    /// file listed as a directory.
    #[error("{digest} is a {} artifact, not a {expected}", other_kind(*expected))]
    WrongKind {
        /// The artifact.
        digest: Digest,
        /// The kind the operation needs.
        expected: crate::OutputKind,
    },
    /// Something in the store does not match its digest or cannot be decoded.
    #[error("store entry {what} is corrupt: {reason}")]
    Corrupt {
        /// Which entry.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The run history database failed.
    #[error("run history: {0}")]
    History(String),
    /// A shared cache could not be used.
    #[error("shared cache: {0}")]
    Remote(String),
    /// A run or step named on the command line is not in the history.
    #[error("{0}")]
    NotInHistory(String),
    /// The WebAssembly runtime could not be set up.
    #[error("WebAssembly runtime: {0}")]
    Runtime(String),
    /// The engine's configuration is invalid (a builder setting, a tenant).
    #[error("{setting}: {reason}")]
    Config {
        /// The setting, e.g. `jobs` or ``tenant `alice` ``.
        setting: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl Error {
    /// An [`Error::Io`] with a description of what was being done.
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}

/// Where in a pipeline definition a problem was found: file, step and field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location {
    /// The manifest file, when the pipeline came from one.
    pub file: Option<PathBuf>,
    /// The step, when the problem is inside one.
    pub step: Option<String>,
    /// The field, e.g. `inputs.text` or `limits.memory`.
    pub field: Option<String>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(file) = &self.file {
            parts.push(file.display().to_string());
        }
        if let Some(step) = &self.step {
            parts.push(format!("step `{step}`"));
        }
        if let Some(field) = &self.field {
            parts.push(format!("field `{field}`"));
        }
        f.write_str(&parts.join(", "))
    }
}

/// A pipeline that cannot run as defined, with where and why. When several
/// problems were found at once (as a compiler reports them), this is the
/// first, and [`ValidationError::errors`] lists them all; the message has a
/// line for each.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}{}{}", prefix(&self.inner.location), self.inner.kind, more_lines(&self.inner.more))]
pub struct ValidationError {
    inner: Box<ValidationErrorInner>,
}

#[derive(Debug, Clone)]
struct ValidationErrorInner {
    location: Location,
    kind: ValidationErrorKind,
    /// Problems found besides this one, in the order found.
    more: Vec<ValidationError>,
}

/// The most problems one validation reports.
const MAX_REPORTED: usize = 20;

fn more_lines(more: &[ValidationError]) -> String {
    more.iter().map(|err| format!("\n{err}")).collect()
}

fn prefix(location: &Location) -> String {
    let text = location.to_string();
    if text.is_empty() { text } else { format!("{text}: ") }
}

impl ValidationError {
    pub(crate) fn new(kind: ValidationErrorKind) -> Self {
        Self { inner: Box::new(ValidationErrorInner { location: Location::default(), kind, more: Vec::new() }) }
    }

    /// `Err` of every problem in `errors` (at most [`MAX_REPORTED`]), or `Ok`
    /// when there is none.
    pub(crate) fn all(errors: Vec<ValidationError>) -> Result<(), ValidationError> {
        let mut errors = errors.into_iter().flat_map(ValidationError::into_errors).take(MAX_REPORTED);
        let Some(mut first) = errors.next() else { return Ok(()) };
        first.inner.more = errors.collect();
        Err(first)
    }

    /// Every problem found: this one, then the others.
    pub fn errors(&self) -> impl Iterator<Item = &ValidationError> {
        std::iter::once(self).chain(&self.inner.more)
    }

    fn into_errors(mut self) -> Vec<ValidationError> {
        let more = std::mem::take(&mut self.inner.more);
        std::iter::once(self).chain(more).collect()
    }

    /// What is wrong.
    pub fn kind(&self) -> &ValidationErrorKind {
        &self.inner.kind
    }

    /// File, step and field of the problem.
    pub fn location(&self) -> &Location {
        &self.inner.location
    }

    pub(crate) fn in_step(self, step: &str) -> Self {
        self.locate(&|location| {
            location.step.get_or_insert_with(|| step.to_owned());
        })
    }

    pub(crate) fn in_field(self, field: impl Into<String>) -> Self {
        let field = field.into();
        self.locate(&|location| {
            location.field.get_or_insert_with(|| field.clone());
        })
    }

    pub(crate) fn in_file(self, file: Option<&std::path::Path>) -> Self {
        self.locate(&|location| {
            if location.file.is_none() {
                location.file = file.map(|path| path.to_owned());
            }
        })
    }

    /// Applies `fill` to the location of this problem and of the others.
    fn locate(mut self, fill: &dyn Fn(&mut Location)) -> Self {
        fill(&mut self.inner.location);
        self.inner.more = std::mem::take(&mut self.inner.more).into_iter().map(|err| err.locate(fill)).collect();
        self
    }
}

/// The kinds of validation problem.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationErrorKind {
    /// The manifest file cannot be read.
    #[error("cannot read the manifest: {0}")]
    Unreadable(String),
    /// The manifest is not valid TOML or does not fit the schema (unknown key, wrong type).
    #[error("{0}")]
    Syntax(String),
    /// The data dependencies form a cycle.
    #[error("the steps form a cycle: {}", cycle_text(steps))]
    Cycle {
        /// The steps in the cycle, in dependency order, the first repeated at the end.
        steps: Vec<String>,
    },
    /// A reference names a step that does not exist.
    #[error("no step named `{step}`")]
    UnknownStep {
        /// The missing step.
        step: String,
    },
    /// A reference names an output that the step does not declare.
    #[error("step `{step}` has no output named `{output}`")]
    UnknownOutput {
        /// The referenced step.
        step: String,
        /// The missing output.
        output: String,
    },
    /// A reference names a pipeline input that does not exist.
    #[error("no pipeline input named `{input}`")]
    UnknownInput {
        /// The missing input.
        input: String,
    },
    /// A `${params.X}` reference or `--param X=…` names an undeclared parameter.
    #[error("no pipeline parameter named `{param}`{}", known_list(known))]
    UnknownParam {
        /// The missing parameter.
        param: String,
        /// The parameters that do exist.
        known: Vec<String>,
    },
    /// A parameter value does not fit the parameter's type.
    #[error("bad value for parameter `{param}`: {reason}")]
    BadParamValue {
        /// The parameter.
        param: String,
        /// Why the value does not fit.
        reason: String,
    },
    /// Two things that must have distinct names share one.
    #[error("duplicate name `{name}`")]
    DuplicateName {
        /// The repeated name.
        name: String,
    },
    /// A name contains characters that are not allowed, or is reserved.
    #[error("invalid name `{name}`: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Why it is rejected.
        reason: String,
    },
    /// A reference is not of the form `inputs.NAME` or `STEP.OUTPUT`.
    #[error("bad reference `{reference}`: expected `inputs.NAME` or `STEP.OUTPUT`")]
    BadReference {
        /// The malformed reference.
        reference: String,
    },
    /// The step's module file does not exist.
    #[error("module file {} not found", path.display())]
    ModuleMissing {
        /// The path that was looked for.
        path: PathBuf,
    },
    /// The step's module file is not a usable WebAssembly module or component.
    #[error("{} is not a valid WASI command: {reason}", path.display())]
    InvalidModule {
        /// The module file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A path names a host file the pipeline may not use (outside its
    /// tenant's directory, or an export outside the allowed directory).
    #[error("{0}")]
    Forbidden(String),
    /// The pipeline is larger than weir accepts (steps, manifest bytes).
    #[error("{0}")]
    TooLarge(String),
    /// A step's `crate` could not be built (with cargo's messages).
    #[error("{0}")]
    BuildFailed(String),
    /// A step package (`uses`) cannot be read, fails verification, or does
    /// not fit the way the step uses it.
    #[error("{0}")]
    Package(String),
    /// A pipeline input's host path does not exist.
    #[error("input path {} not found", path.display())]
    InputMissing {
        /// The missing path.
        path: PathBuf,
    },
    /// A size such as `limits.memory` could not be parsed.
    #[error("{0}")]
    BadSize(String),
    /// A duration such as `limits.timeout` could not be parsed.
    #[error("{0}")]
    BadDuration(String),
    /// A native step or function is not registered with the engine.
    #[error("no native {what} named `{name}` is registered (registered: {})", known.join(", "))]
    UnknownNative {
        /// `step` or `function`.
        what: &'static str,
        /// The missing name.
        name: String,
        /// The registered names.
        known: Vec<String>,
    },
    /// A map step's `map` does not name a directory input of the step.
    #[error("cannot map over input `{input}`: {reason}")]
    BadMap {
        /// The input named by `map`.
        input: String,
        /// Why it cannot be mapped over.
        reason: String,
    },
    /// A step asks for more GPU slots than the engine has.
    #[error("asks for {asked} GPU slots, but the engine has only {slots}")]
    TooManyGpus {
        /// Slots asked for.
        asked: u32,
        /// Slots the engine has.
        slots: usize,
    },
    /// A step's limit is above what its tenant allows.
    #[error(
        "limits.{field} = {} is above the maximum of tenant `{tenant}` ({})",
        crate::Limits::show(field, *asked),
        crate::Limits::show(field, *max)
    )]
    LimitAboveTenant {
        /// The tenant.
        tenant: String,
        /// The key of the `limits` table.
        field: &'static str,
        /// The value asked for (as in [`crate::LimitExceeded::asked`]).
        asked: u64,
        /// The tenant's maximum.
        max: u64,
    },
    /// A run names a tenant the engine does not know.
    #[error("no tenant named `{tenant}` is registered (registered: {})", known.join(", "))]
    UnknownTenant {
        /// The tenant asked for.
        tenant: String,
        /// The registered tenants.
        known: Vec<String>,
    },
    /// A step named in the run options (`--rerun`, `verify`) is not in the pipeline.
    #[error("`{option} {step}`: no such step in the pipeline (steps: {})", known.join(", "))]
    UnknownRerunStep {
        /// The option that names it.
        option: &'static str,
        /// The unknown step.
        step: String,
        /// The names it could have been: steps and, for `--rerun`, sub-pipelines.
        known: Vec<String>,
    },
}

fn other_kind(kind: crate::OutputKind) -> crate::OutputKind {
    match kind {
        crate::OutputKind::File => crate::OutputKind::Dir,
        crate::OutputKind::Dir => crate::OutputKind::File,
    }
}

fn cycle_text(steps: &[String]) -> String {
    steps.join(" -> ")
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        " (the pipeline declares no parameters)".to_owned()
    } else {
        format!(" (known: {})", known.join(", "))
    }
}

/// Which WebAssembly trap ended a guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum TrapCode {
    /// An `unreachable` instruction: what a Rust panic or an abort becomes.
    Unreachable,
    /// A load or store outside linear memory.
    MemoryOutOfBounds,
    /// A table access out of bounds.
    TableOutOfBounds,
    /// An indirect call to a null table entry.
    IndirectCallToNull,
    /// An indirect call with the wrong signature.
    BadSignature,
    /// An integer overflow (e.g. `i32::MIN / -1`).
    IntegerOverflow,
    /// An integer division by zero.
    IntegerDivisionByZero,
    /// A float that cannot be converted to the integer type.
    BadConversionToInteger,
    /// Any other trap, or an error that was not a trap.
    Other,
}

impl From<Option<&wasmtime::Trap>> for TrapCode {
    fn from(trap: Option<&wasmtime::Trap>) -> Self {
        use wasmtime::Trap;
        match trap {
            Some(Trap::UnreachableCodeReached) => TrapCode::Unreachable,
            Some(Trap::MemoryOutOfBounds) => TrapCode::MemoryOutOfBounds,
            Some(Trap::TableOutOfBounds) => TrapCode::TableOutOfBounds,
            Some(Trap::IndirectCallToNull) => TrapCode::IndirectCallToNull,
            Some(Trap::BadSignature) => TrapCode::BadSignature,
            Some(Trap::IntegerOverflow) => TrapCode::IntegerOverflow,
            Some(Trap::IntegerDivisionByZero) => TrapCode::IntegerDivisionByZero,
            Some(Trap::BadConversionToInteger) => TrapCode::BadConversionToInteger,
            _ => TrapCode::Other,
        }
    }
}

/// Why one execution of a step failed, with the tail of its stderr.
#[derive(Debug, Clone, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[error("step `{step}` failed: {kind}{}", stderr_block(stderr_tail))]
pub struct StepError {
    /// The failed step.
    pub step: String,
    /// The cause.
    pub kind: StepErrorKind,
    /// The last lines the guest wrote to stderr (empty when it wrote none).
    pub stderr_tail: String,
}

fn entry_failures(failed: &[(String, StepErrorKind)]) -> String {
    failed.iter().map(|(entry, kind)| format!("entry `{entry}` {kind}")).collect::<Vec<_>>().join("; ")
}

fn stderr_block(tail: &str) -> String {
    if tail.trim().is_empty() { String::new() } else { format!("\n--- stderr (tail) ---\n{}", tail.trim_end()) }
}

/// The causes of a step failure.
#[derive(Debug, Clone, PartialEq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum StepErrorKind {
    /// The guest exited with a non-zero status.
    #[error("exited with status {code}")]
    Exit {
        /// The exit status.
        code: i32,
    },
    /// The guest trapped (e.g. `unreachable`, a Rust panic, out-of-bounds access).
    #[error("trapped: {message}")]
    Trap {
        /// Which trap.
        code: TrapCode,
        /// The runtime's description of the trap, without the backtrace.
        message: String,
        /// The guest's call stack when it trapped, a frame a line (may be empty).
        backtrace: String,
    },
    /// The guest ran past its wall-clock timeout and was interrupted.
    #[error("timed out after {limit:?} (limits.timeout)")]
    Timeout {
        /// The timeout that applied.
        limit: Duration,
    },
    /// The run was cancelled while the step executed, and it was interrupted.
    #[error("was cancelled")]
    Cancelled,
    /// The step had no reusable result, and the run was read-only
    /// ([`RunOptions::read_only`](crate::RunOptions::read_only)), so it could not execute.
    #[error("has no reusable result and would execute, but the run is read-only")]
    ReadOnly,
    /// The guest tried to grow its memory past the limit.
    #[error("exceeded its memory limit of {} (limits.memory)", crate::Limits::show("memory", *limit))]
    MemoryLimit {
        /// The memory limit that applied, in bytes.
        limit: u64,
    },
    /// The guest spent all the fuel it was given.
    #[error("ran out of fuel after {limit} units (limits.fuel)")]
    FuelExhausted {
        /// The fuel it was given.
        limit: u64,
    },
    /// The guest recursed past its WebAssembly stack.
    #[error("overflowed its stack of {} (limits.stack)", crate::Limits::show("stack", *limit))]
    StackOverflow {
        /// The stack size that applied, in bytes.
        limit: u64,
    },
    /// The guest wrote more bytes under `/out` than allowed.
    #[error("wrote more than its output quota of {} (limits.output)", crate::Limits::show("output", *limit))]
    OutputLimit {
        /// The quota, in bytes.
        limit: u64,
    },
    /// The guest created more files under `/out` than allowed.
    #[error("created more than its quota of {limit} files (limits.files)")]
    FilesLimit {
        /// The quota, in files.
        limit: u64,
    },
    /// `/out` could not be measured against the quotas (e.g. nested past
    /// what the host can open): a guest cannot escape its quotas that way.
    #[error("wrote /out so that its quotas cannot be checked ({reason}) (limits.output, limits.files)")]
    OutputUnmeasurable {
        /// Why measuring failed.
        reason: String,
    },
    /// Storing the step's outputs and logs would take its tenant past its store quota.
    #[error(
        "outputs and logs of {needed} bytes would exceed tenant `{tenant}`'s store quota ({used} of {quota} bytes in use)"
    )]
    StoreQuota {
        /// The tenant.
        tenant: String,
        /// Bytes the outputs need.
        needed: u64,
        /// Bytes the tenant already holds.
        used: u64,
        /// The tenant's quota.
        quota: u64,
    },
    /// Executed again by `weir verify`, the step wrote different outputs than
    /// the cached ones: it is not deterministic, yet its results are reused.
    #[error("is not reproducible: executed again, it wrote different {}", outputs.join(", "))]
    Nondeterministic {
        /// Each differing output, with the cached and the new digest.
        outputs: Vec<String>,
    },
    /// A declared output was not written to `/out/<name>`.
    #[error("declared output `{output}` was not written to /out/{output}")]
    MissingOutput {
        /// The missing output.
        output: String,
    },
    /// A declared output exists but is not what was declared (or contains a
    /// symlink or special file).
    #[error("output `{output}`: {reason}")]
    BadOutput {
        /// The output.
        output: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A native step returned an error or panicked.
    #[error("native step failed: {message}")]
    Native {
        /// What the native step said.
        message: String,
    },
    /// Entries of a map step failed.
    #[error("{} of {total} entries failed: {}", failed.len(), entry_failures(failed))]
    MapEntries {
        /// Each failed entry with its error.
        failed: Vec<(String, StepErrorKind)>,
        /// How many entries the step had.
        total: usize,
    },
    /// The engine could not prepare or collect the step (workspace I/O).
    #[error("engine error: {0}")]
    Engine(String),
}
