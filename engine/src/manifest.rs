//! Loading a pipeline from a TOML manifest.
//!
//! The manifest is parsed into raw structs that reject unknown keys, then fed
//! to the [`PipelineBuilder`], which does all semantic validation. Relative
//! paths are resolved against the manifest's directory. Sub-pipelines
//! (`pipeline = "other.toml"`) are inlined here; see [`subpipeline`].

mod subpipeline;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{ValidationError, ValidationErrorKind as Kind};
use crate::limits::{parse_size, parse_timeout};
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
    module: Option<PathBuf>,
    native: Option<String>,
    pipeline: Option<PathBuf>,
    #[serde(default)]
    natives: Vec<String>,
    #[serde(default)]
    resources: Option<Resources>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    inputs: BTreeMap<String, String>,
    #[serde(default)]
    outputs: BTreeMap<String, OutputKind>,
    #[serde(default)]
    params: toml::Table,
    #[serde(default)]
    limits: Option<RawLimits>,
    reuse: Option<bool>,
    deterministic: Option<bool>,
    map: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    memory: Option<toml::Value>,
    timeout: Option<String>,
    fuel: Option<toml::Value>,
    stack: Option<toml::Value>,
    output: Option<toml::Value>,
    files: Option<toml::Value>,
    log: Option<toml::Value>,
}

impl Pipeline {
    /// Loads and validates the pipeline in a TOML manifest file.
    pub fn from_manifest(path: impl AsRef<Path>) -> Result<Pipeline, ValidationError> {
        let path = path.as_ref();
        let text = read_manifest(path)?;
        Self::from_manifest_str(&text, path)
    }

    /// Parses and validates manifest text; `path` locates relative paths and errors.
    pub fn from_manifest_str(text: &str, path: &Path) -> Result<Pipeline, ValidationError> {
        let builder = parse(text, path).map_err(|err| err.in_file(Some(path)))?;
        let mut pipeline = builder.source_file(path).build()?;
        pipeline.manifest = Some(ManifestOrigin {
            path: std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned()),
            digest: crate::Digest::of(text.as_bytes()),
        });
        Ok(pipeline)
    }
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
    #[serde(default)]
    limits: RawLimits,
}

/// Loads tenants and their quotas from a TOML file such as
///
/// ```toml
/// [tenants.alice]
/// concurrent_steps = 2
/// memory = "1GiB"        # across its running steps
/// store = "10GiB"        # bytes of outputs it may hold
/// limits = { memory = "256MiB", timeout = "1m" }
/// ```
pub fn load_tenants(path: &Path) -> Result<BTreeMap<String, crate::TenantQuota>, ValidationError> {
    let text = read_manifest(path)?;
    let raw: RawTenants = toml::from_str(&text).map_err(|err| syntax(err.to_string()).in_file(Some(path)))?;
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
        };
        tenants.insert(name, quota);
    }
    Ok(tenants)
}

/// The largest manifest weir reads: far beyond any real one, and a bound on
/// what a manifest naming a device or a huge file as a sub-pipeline costs.
const MAX_MANIFEST_BYTES: u64 = 16 << 20;

fn read_manifest(path: &Path) -> Result<String, ValidationError> {
    read_text(path).map_err(|why| ValidationError::new(Kind::Unreadable(why)).in_file(Some(path)))
}

/// The text of a manifest file, or why it cannot be read.
fn read_text(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|err| err.to_string())?;
    if !meta.is_file() {
        return Err("it is not a regular file".to_owned());
    }
    if meta.len() > MAX_MANIFEST_BYTES {
        return Err(format!("it is {} bytes; a manifest may be at most {MAX_MANIFEST_BYTES}", meta.len()));
    }
    std::fs::read_to_string(path).map_err(|err| err.to_string())
}

fn syntax(message: impl Into<String>) -> ValidationError {
    ValidationError::new(Kind::Syntax(message.into()))
}

fn parse_raw(text: &str) -> Result<RawManifest, ValidationError> {
    toml::from_str(text).map_err(|err| syntax(err.to_string().trim_end()))
}

fn parse(text: &str, path: &Path) -> Result<PipelineBuilder, ValidationError> {
    let base = path.parent().unwrap_or(Path::new("."));
    let raw = parse_raw(text)?;
    let mut builder = PipelineBuilder::new(raw.name);
    for (name, value) in &raw.params {
        let value = toml_to_json(value).map_err(|why| syntax(why).in_field(format!("params.{name}")))?;
        builder = builder.param(name, value);
    }
    for (name, input) in raw.inputs {
        builder = builder.input(name, base.join(input));
    }
    let mut inliner = subpipeline::Inliner::new(path);
    for (name, value) in raw.steps {
        inliner.add_step(&name, value, path, &subpipeline::Scope::top())?;
    }
    let (steps, aliases) = inliner.finish();
    for step in steps {
        builder = builder.step(step);
    }
    for (name, output) in raw.outputs {
        let source = aliases.resolve(output.source());
        builder = match output {
            RawOutput::Export(RawExport { export: Some(export), .. }) => {
                builder.export(name, source, base.join(export))
            }
            _ => builder.output(name, source),
        };
    }
    Ok(builder)
}

/// A step that runs code (not a sub-pipeline), with its references already
/// rewritten into the outer pipeline's names.
fn code_step(name: &str, raw: RawStep, base: &Path, bindings: Option<&Params>) -> Result<StepBuilder, ValidationError> {
    let step = match (&raw.module, raw.native) {
        (Some(module), None) => StepBuilder::new(name, base.join(module)),
        (None, Some(function)) => StepBuilder::native(name, function),
        _ => {
            return Err(syntax(
                "a step needs exactly one of `module` (a WASI program), `native` (a native step) and `pipeline`",
            ));
        }
    };
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
        .resources(raw.resources.unwrap_or_default())
        .args(args)
        .limits(parse_limits(&raw.limits.unwrap_or_default())?)
        .reuse(raw.reuse.unwrap_or(true))
        .deterministic(raw.deterministic.unwrap_or(false));
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

fn parse_limits(raw: &RawLimits) -> Result<LimitOverrides, ValidationError> {
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
