//! Loading a pipeline from a TOML manifest.
//!
//! The manifest is parsed into raw structs that reject unknown keys, then fed
//! to the [`PipelineBuilder`], which does all semantic validation. Relative
//! paths are resolved against the manifest's directory. Sub-pipelines
//! (`pipeline = "other.toml"`) are inlined here; see [`subpipeline`].

mod code;
mod defaults;
mod package_step;
mod rust_crate;
mod subpipeline;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{ValidationError, ValidationErrorKind as Kind};
use crate::host_files::HostFiles;
use crate::limits::{parse_size, parse_timeout};
use crate::package::Packages;
use crate::params::{Params, rebind, toml_to_json};
use crate::pipeline::ManifestOrigin;
use crate::{LimitOverrides, OutputKind, Pipeline, PipelineBuilder, Resources, StepBuilder};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    name: String,
    #[serde(default)]
    params: toml::Table,
    #[serde(default)]
    inputs: BTreeMap<String, PathBuf>,
    #[serde(default)]
    steps: toml::Table,
    #[serde(default)]
    outputs: BTreeMap<String, RawOutput>,
    /// Settings every step takes unless it sets its own.
    #[serde(default)]
    defaults: defaults::RetryFields,
    /// `[executor.slurm]`: where its steps go on a Slurm cluster.
    #[serde(default)]
    executor: RawExecutor,
}

/// A manifest's `[executor]` table: what it asks of the executors that
/// honour it (which executor runs it is the workspace's choice).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawExecutor {
    slurm: Option<toml::Value>,
}

/// A pipeline output: `"STEP.OUTPUT"`, or `{ from = "STEP.OUTPUT", export = "path" }`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawOutput {
    Reference(String),
    Export(RawExport),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExport {
    from: String,
    export: Option<PathBuf>,
}

impl RawOutput {
    fn source(&self) -> &str {
        match self {
            RawOutput::Reference(source) => source,
            RawOutput::Export(export) => &export.from,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    /// The fields that name the step's code (see `code`), taken out of the
    /// table before the rest is read.
    #[serde(skip)]
    code: toml::Table,
    pipeline: Option<PathBuf>,
    #[serde(default)]
    natives: Vec<String>,
    #[serde(default)]
    resources: Option<toml::Value>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    inputs: BTreeMap<String, String>,
    #[serde(default)]
    outputs: BTreeMap<String, OutputKind>,
    #[serde(default)]
    params: toml::Table,
    #[serde(default)]
    limits: Option<toml::Value>,
    reuse: Option<toml::Value>,
    #[serde(default)]
    ignored_params: Vec<String>,
    deterministic: Option<bool>,
    map: Option<String>,
    retries: Option<toml::Value>,
    retry_backoff: Option<toml::Value>,
    retry_on: Option<toml::Value>,
    slurm: Option<toml::Value>,
}

impl RawStep {
    /// The step's own retry fields.
    fn retry_fields(&self) -> defaults::RetryFields {
        defaults::RetryFields {
            retries: self.retries.clone(),
            retry_backoff: self.retry_backoff.clone(),
            retry_on: self.retry_on.clone(),
        }
    }
}

/// A `limits` table as a manifest (or a package descriptor) writes it.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    memory: Option<toml::Value>,
    timeout: Option<String>,
    fuel: Option<toml::Value>,
    stack: Option<toml::Value>,
    output: Option<toml::Value>,
    files: Option<toml::Value>,
    log: Option<toml::Value>,
}

impl Pipeline {
    /// Loads and validates the pipeline in a TOML manifest file. Its paths
    /// (sub-pipelines, modules, inputs, exports) may name any host file: this
    /// is how the operator loads a pipeline.
    pub fn from_manifest(path: impl AsRef<Path>) -> Result<Pipeline, ValidationError> {
        load(path.as_ref(), &HostFiles::Ambient, None)
    }

    /// Like [`Pipeline::from_manifest`], with steps that `uses` a registry
    /// package resolved through `packages` (pinned in the manifest's
    /// `weir.lock`, kept in the workspace, fetched when missing).
    pub fn from_manifest_with(path: impl AsRef<Path>, packages: &Packages) -> Result<Pipeline, ValidationError> {
        load(path.as_ref(), &HostFiles::Ambient, Some(packages))
    }

    /// Loads a pipeline whose every file lies beneath `root` (a relative
    /// `path` is relative to the current directory, as always): the manifest,
    /// its sub-pipelines, modules and inputs, and its exports. An absolute
    /// path elsewhere, a `..`, or a symbolic link that leaves `root` is an
    /// error naming the field. This is how a tenant's pipeline is loaded
    /// (see [`Engine::tenant_root`](crate::Engine::tenant_root)).
    pub fn from_manifest_within(root: impl AsRef<Path>, path: impl AsRef<Path>) -> Result<Pipeline, ValidationError> {
        Self::load_within(root.as_ref(), path.as_ref(), None)
    }

    /// Like [`Pipeline::from_manifest_within`], with registry packages
    /// resolved through `packages`.
    pub fn from_manifest_within_with(
        root: impl AsRef<Path>,
        path: impl AsRef<Path>,
        packages: &Packages,
    ) -> Result<Pipeline, ValidationError> {
        Self::load_within(root.as_ref(), path.as_ref(), Some(packages))
    }

    fn load_within(root: &Path, path: &Path, packages: Option<&Packages>) -> Result<Pipeline, ValidationError> {
        let files = HostFiles::within(root).map_err(|err| {
            ValidationError::new(Kind::Unreadable(format!("the directory {}: {err}", root.display())))
        })?;
        let path = std::path::absolute(path)
            .map_err(|err| ValidationError::new(Kind::Unreadable(format!("{}: {err}", path.display()))))?;
        load(&path, &files, packages)
    }

    /// Parses and validates manifest text; `path` locates relative paths and errors.
    pub fn from_manifest_str(text: &str, path: &Path) -> Result<Pipeline, ValidationError> {
        parse_and_build(text, path, reach(path, &HostFiles::Ambient, None))
    }
}

/// What loading a manifest may reach: host files (a tenant's are
/// confined) and, when given, registry packages.
#[derive(Clone, Copy)]
pub(super) struct Reach<'a> {
    pub files: &'a HostFiles,
    pub packages: Option<&'a Packages>,
    /// Where the lock file is: the top-level manifest's directory.
    pub lock_dir: &'a Path,
}

fn reach<'a>(path: &'a Path, files: &'a HostFiles, packages: Option<&'a Packages>) -> Reach<'a> {
    Reach { files, packages, lock_dir: path.parent().unwrap_or(Path::new(".")) }
}

fn load(path: &Path, files: &HostFiles, packages: Option<&Packages>) -> Result<Pipeline, ValidationError> {
    let text = read_manifest(path, files)?;
    parse_and_build(&text, path, reach(path, files, packages))
}

fn parse_and_build(text: &str, path: &Path, reach: Reach<'_>) -> Result<Pipeline, ValidationError> {
    let files = reach.files;
    let builder = parse(text, path, reach).map_err(|err| err.in_file(Some(path)))?;
    let mut pipeline = builder.source_file(path).build()?;
    pipeline.manifest = Some(ManifestOrigin {
        path: std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned()),
        digest: crate::Digest::of(text.as_bytes()),
    });
    pipeline.confined_to = files.root().map(Path::to_owned);
    Ok(pipeline)
}

/// The `[tenants.NAME]` tables of a tenants file: per tenant its quotas
/// (`concurrent_steps`, `memory`, `store`) and the most its steps may ask
/// for (a `limits` table with the keys of a step's).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenants {
    #[serde(default)]
    tenants: BTreeMap<String, RawTenant>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    concurrent_steps: Option<usize>,
    memory: Option<toml::Value>,
    store: Option<toml::Value>,
    root: Option<PathBuf>,
    #[serde(default)]
    limits: RawLimits,
}

/// Loads tenants and their quotas from a TOML file such as
///
/// ```toml
/// [tenants.alice]
/// concurrent_steps = 2
/// memory = "1GiB"        # across its running steps
/// store = "10GiB"        # bytes of outputs, logs and inputs it may hold
/// root = "/srv/weir/alice"  # where its files must be (default WORKSPACE/tenants/alice)
/// limits = { memory = "256MiB", timeout = "1m", log = "16MiB" }
/// ```
///
/// A relative `root` is relative to the tenants file's directory.
pub(crate) fn load_tenants(path: &Path) -> Result<BTreeMap<String, crate::TenantQuota>, ValidationError> {
    let text = read_manifest(path, &HostFiles::Ambient)?;
    let raw: RawTenants = parse_toml(&text, path)?;
    let mut tenants = BTreeMap::new();
    for (name, raw) in raw.tenants {
        let located = |err: ValidationError| err.in_file(Some(path)).in_step(&format!("tenants.{name}"));
        crate::tenant::check_name(&name).map_err(|why| syntax(why).in_field("name")).map_err(located)?;
        let size = |field: &str, value: &Option<toml::Value>| {
            value.as_ref().map(|value| quantity(value, parse_size, field)).transpose()
        };
        let defaults = crate::TenantQuota::default();
        let quota = crate::TenantQuota {
            concurrent_steps: raw.concurrent_steps.unwrap_or(defaults.concurrent_steps),
            memory: size("memory", &raw.memory).map_err(located)?.unwrap_or(defaults.memory),
            store_bytes: size("store", &raw.store).map_err(located)?,
            max_limits: crate::Limits::UNBOUNDED.with(&parse_limits(&raw.limits).map_err(located)?),
            root: raw.root.map(|root| path.parent().unwrap_or(Path::new(".")).join(root)),
        };
        tenants.insert(name, quota);
    }
    Ok(tenants)
}

/// The largest manifest weir reads: far beyond any real one, and a bound on
/// what a manifest naming a device or a huge file as a sub-pipeline costs.
const MAX_MANIFEST_BYTES: u64 = 16 << 20;

fn read_manifest(path: &Path, files: &HostFiles) -> Result<String, ValidationError> {
    read_text(path, files).map_err(|why| ValidationError::new(Kind::Unreadable(why)).in_file(Some(path)))
}

/// The text of a manifest file, or why it cannot be read.
fn read_text(path: &Path, files: &HostFiles) -> Result<String, String> {
    let bytes = files.read_capped(path, MAX_MANIFEST_BYTES).map_err(|why| {
        if why.ends_with(&format!("larger than {MAX_MANIFEST_BYTES} bytes")) {
            format!("{why}; a manifest may be at most {MAX_MANIFEST_BYTES}")
        } else {
            why
        }
    })?;
    String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8 text", path.display()))
}

fn syntax(message: impl Into<String>) -> ValidationError {
    ValidationError::new(Kind::Syntax(message.into()))
}

/// Parses TOML text read from `path`. The error quotes the offending line
/// only when the file is named like a manifest (`*.toml`): a path that names
/// some other file (`/etc/shadow`, `/proc/self/environ`) must not have its
/// content echoed into a message.
pub(crate) fn parse_toml<T: serde::de::DeserializeOwned>(text: &str, path: &Path) -> Result<T, ValidationError> {
    toml::from_str(text).map_err(|err| {
        let located = err.span().map(|span| line_and_column(text, span.start));
        let message = match located {
            _ if path.extension().is_some_and(|ext| ext == "toml") => err.to_string().trim_end().to_owned(),
            Some((line, column)) => format!("{} (line {line}, column {column})", err.message().trim_end()),
            None => err.message().trim_end().to_owned(),
        };
        syntax(message).in_file(Some(path))
    })
}

/// The 1-based line and column of byte `offset` in `text`.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line = before.iter().filter(|&&byte| byte == b'\n').count() + 1;
    let column = before.iter().rev().take_while(|&&byte| byte != b'\n').count() + 1;
    (line, column)
}

fn parse(text: &str, path: &Path, reach: Reach<'_>) -> Result<PipelineBuilder, ValidationError> {
    let files = reach.files;
    let base = path.parent().unwrap_or(Path::new("."));
    let raw: RawManifest = parse_toml(text, path)?;
    let mut builder = PipelineBuilder::new(raw.name);
    for (name, value) in &raw.params {
        let value = toml_to_json(value).map_err(|why| syntax(why).in_field(format!("params.{name}")))?;
        builder = builder.param(name, value);
    }
    for (name, input) in raw.inputs {
        let input = base.join(input);
        files
            .check(&input)
            .map_err(|why| ValidationError::new(Kind::Forbidden(why)).in_field(format!("inputs.{name}")))?;
        builder = builder.input(name, input);
    }
    raw.defaults.policy("defaults.")?;
    let slurm = slurm_table(raw.executor.slurm, "executor.slurm")?;
    let top = subpipeline::Scope::top(raw.defaults, slurm);
    let mut inliner = subpipeline::Inliner::new(path, reach, text.len(), raw.steps.len());
    let mut problems = Vec::new();
    for (name, value) in raw.steps {
        if let Err(err) = inliner.add_step(&name, value, path, &top) {
            problems.push(err);
        }
    }
    ValidationError::all(problems)?;
    let (steps, aliases) = inliner.finish();
    builder = builder.steps(steps);
    for (name, output) in raw.outputs {
        let source = aliases.resolve(output.source());
        builder = match output {
            RawOutput::Export(RawExport { export: Some(export), .. }) => {
                let export = base.join(export);
                files.check(&export).map_err(|why| {
                    ValidationError::new(Kind::Forbidden(why)).in_field(format!("outputs.{name}.export"))
                })?;
                builder.export(name, source, export)
            }
            _ => builder.output(name, source),
        };
    }
    Ok(builder)
}

/// A step that runs code (not a sub-pipeline), with its references already
/// rewritten into the outer pipeline's names.
fn code_step(
    name: &str,
    raw: RawStep,
    base: &Path,
    reach: Reach<'_>,
    bindings: Option<&Params>,
) -> Result<StepBuilder, ValidationError> {
    let mut raw = raw;
    let code = code::step_code(&raw.code, &code::Site { base, reach })?;
    if let Some(descriptor) = &code.package {
        package_step::apply(descriptor, &mut raw)?;
    }
    let mut step = StepBuilder::with_code(name.to_owned(), code.step);
    if let Some(descriptor) = &code.package {
        step = step.param_types(descriptor.params.iter().map(|(name, spec)| (name.clone(), spec.kind)).collect());
    }
    let rebound = |value: serde_json::Value, field: String| match bindings {
        Some(bindings) => rebind(&value, bindings).map_err(|why| syntax(why).in_field(field)),
        None => Ok(value),
    };
    let mut args = Vec::new();
    for (i, arg) in raw.args.into_iter().enumerate() {
        match rebound(serde_json::Value::String(arg), format!("args[{i}]"))? {
            serde_json::Value::String(text) => args.push(text),
            other => args.push(other.to_string()),
        }
    }
    let mut step = step
        .resources(table_field::<Resources>(raw.resources, "resources")?.unwrap_or_default())
        .args(args)
        .limits(package_step::narrowed(
            parse_limits(&table_field::<RawLimits>(raw.limits, "limits")?.unwrap_or_default())?,
            code.package.as_ref(),
        )?)
        .deterministic(raw.deterministic.unwrap_or(false));
    step = match raw.reuse {
        None => step,
        Some(toml::Value::Boolean(reuse)) => step.reuse(reuse),
        Some(toml::Value::String(age)) => {
            step.max_age(crate::limits::parse_duration(&age).map_err(|why| syntax(why).in_field("reuse"))?)
        }
        Some(other) => {
            let why = format!("expected true, false or a maximum age such as \"7d\", found {other}");
            return Err(syntax(why).in_field("reuse"));
        }
    };
    for name in raw.ignored_params {
        step = step.ignored_param(name);
    }
    if let Some(input) = raw.map {
        step = step.map(input);
    }
    for function in raw.natives {
        step = step.native_function(function);
    }
    for (input, source) in raw.inputs {
        step = step.input(input, source);
    }
    for (output, kind) in raw.outputs {
        step = step.output(output, kind);
    }
    for (param, value) in &raw.params {
        let field = format!("params.{param}");
        let value = toml_to_json(value).map_err(|why| syntax(why).in_field(field.clone()))?;
        step = step.param(param, rebound(value, field)?);
    }
    Ok(step)
}

/// A step's table-valued field (`limits`, `resources`), decoded on its own
/// so an error in it names the field.
pub(crate) fn table_field<T: serde::de::DeserializeOwned>(
    value: Option<toml::Value>,
    field: &str,
) -> Result<Option<T>, ValidationError> {
    let located = |message: &str| match unknown_key(message) {
        Some(key) => format!("{field}.{key}"),
        None => field.to_owned(),
    };
    value
        .map(|value| T::deserialize(value).map_err(|err| syntax(err.message()).in_field(located(err.message()))))
        .transpose()
}

/// A `slurm` table (a step's, or a manifest's `[executor.slurm]`), its
/// values checked; an error names `field`.
fn slurm_table(value: Option<toml::Value>, field: &str) -> Result<crate::SlurmRequest, ValidationError> {
    let request = table_field::<crate::SlurmRequest>(value, field)?.unwrap_or_default();
    request.check().map_err(|(option, why)| syntax(why).in_field(format!("{field}.{option}")))?;
    Ok(request)
}

/// The field a step-level deserialization error is about: the unknown key
/// it names, if it names one.
pub(super) fn unknown_key(message: &str) -> Option<&str> {
    message.strip_prefix("unknown field `")?.split('`').next()
}

/// The limits a `limits` table sets; an error names the field.
pub(crate) fn parse_limits(raw: &RawLimits) -> Result<LimitOverrides, ValidationError> {
    let size = |field: &str, value: &Option<toml::Value>| {
        value.as_ref().map(|value| quantity(value, parse_size, &format!("limits.{field}"))).transpose()
    };
    let count = |field: &str, value: &Option<toml::Value>| {
        value.as_ref().map(|value| quantity(value, parse_count, &format!("limits.{field}"))).transpose()
    };
    let timeout = raw
        .timeout
        .as_deref()
        .map(|text| {
            parse_timeout(text).map_err(|why| ValidationError::new(Kind::BadDuration(why)).in_field("limits.timeout"))
        })
        .transpose()?;
    Ok(LimitOverrides {
        memory: size("memory", &raw.memory)?,
        timeout,
        fuel: count("fuel", &raw.fuel)?,
        stack: size("stack", &raw.stack)?,
        output: size("output", &raw.output)?,
        files: count("files", &raw.files)?,
        log: size("log", &raw.log)?,
    })
}

/// A non-negative quantity written as an integer or as text that `parse` reads.
fn quantity(value: &toml::Value, parse: fn(&str) -> Result<u64, String>, field: &str) -> Result<u64, ValidationError> {
    let parsed = match value {
        toml::Value::Integer(number) => u64::try_from(*number).map_err(|_| format!("`{number}` is negative")),
        toml::Value::String(text) => parse(text),
        other => Err(format!("`{other}` is not a number: write it like \"64MiB\" or 1000")),
    };
    parsed.map_err(|why| ValidationError::new(Kind::BadSize(why)).in_field(field))
}

/// Parses a plain count such as `1000` or `1_000_000`.
fn parse_count(text: &str) -> Result<u64, String> {
    text.trim().replace('_', "").parse().map_err(|_| format!("`{text}` is not a whole number"))
}
