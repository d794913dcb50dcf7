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
use crate::limits::{parse_duration, parse_size};
use crate::params::{Params, rebind, toml_to_json};
use crate::{Limits, OutputKind, Pipeline, PipelineBuilder, Resources, StepBuilder};

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
    map: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    memory: Option<toml::Value>,
    timeout: Option<String>,
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
        builder.source_file(path).build()
    }
}

fn read_manifest(path: &Path) -> Result<String, ValidationError> {
    std::fs::read_to_string(path)
        .map_err(|err| ValidationError::new(Kind::Unreadable(err.to_string())).in_file(Some(path)))
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
        .reuse(raw.reuse.unwrap_or(true));
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

fn parse_limits(raw: &RawLimits) -> Result<Limits, ValidationError> {
    let mut limits = Limits::default();
    if let Some(memory) = &raw.memory {
        let bytes = match memory {
            toml::Value::Integer(bytes) => u64::try_from(*bytes).map_err(|_| format!("`{bytes}` is not a size")),
            toml::Value::String(text) => parse_size(text),
            other => Err(format!("`{other}` is not a size: write it like \"64MiB\"")),
        };
        limits.memory = bytes.map_err(|why| ValidationError::new(Kind::BadSize(why)).in_field("limits.memory"))?;
    }
    if let Some(timeout) = &raw.timeout {
        limits.timeout = parse_duration(timeout)
            .map_err(|why| ValidationError::new(Kind::BadDuration(why)).in_field("limits.timeout"))?;
    }
    Ok(limits)
}
