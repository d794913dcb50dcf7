//! Loading a pipeline from a TOML manifest.
//!
//! The manifest is parsed into raw structs that reject unknown keys, then fed
//! to the [`PipelineBuilder`], which does all semantic validation. Relative
//! paths are resolved against the manifest's directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{ValidationError, ValidationErrorKind as Kind};
use crate::limits::{parse_duration, parse_size};
use crate::params::toml_to_json;
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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    module: Option<PathBuf>,
    native: Option<String>,
    #[serde(default)]
    natives: Vec<String>,
    #[serde(default)]
    resources: Resources,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    inputs: BTreeMap<String, String>,
    #[serde(default)]
    outputs: BTreeMap<String, OutputKind>,
    #[serde(default)]
    params: toml::Table,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default = "default_reuse")]
    reuse: bool,
}

fn default_reuse() -> bool {
    true
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
        let located = |err: ValidationError| err.in_file(Some(path));
        let text = std::fs::read_to_string(path)
            .map_err(|err| located(ValidationError::new(Kind::Unreadable(err.to_string()))))?;
        Self::from_manifest_str(&text, path)
    }

    /// Parses and validates manifest text; `path` locates relative paths and errors.
    pub fn from_manifest_str(text: &str, path: &Path) -> Result<Pipeline, ValidationError> {
        let base = path.parent().unwrap_or(Path::new("."));
        let builder = parse(text, base).map_err(|err| err.in_file(Some(path)))?;
        builder.source_file(path).build()
    }
}

fn syntax(message: impl Into<String>) -> ValidationError {
    ValidationError::new(Kind::Syntax(message.into()))
}

fn parse(text: &str, base: &Path) -> Result<PipelineBuilder, ValidationError> {
    let raw: RawManifest = toml::from_str(text).map_err(|err| syntax(err.to_string().trim_end()))?;
    let mut builder = PipelineBuilder::new(raw.name);
    for (name, value) in &raw.params {
        let value = toml_to_json(value).map_err(|why| syntax(why).in_field(format!("params.{name}")))?;
        builder = builder.param(name, value);
    }
    for (name, path) in raw.inputs {
        builder = builder.input(name, base.join(path));
    }
    for (name, value) in raw.steps {
        let step = parse_step(&name, value, base).map_err(|err| err.in_step(&name))?;
        builder = builder.step(step);
    }
    Ok(builder)
}

fn parse_step(name: &str, value: toml::Value, base: &Path) -> Result<StepBuilder, ValidationError> {
    let raw = RawStep::deserialize(value).map_err(|err| syntax(err.message()))?;
    let step = match (&raw.module, raw.native) {
        (Some(module), None) => StepBuilder::new(name, base.join(module)),
        (None, Some(function)) => StepBuilder::native(name, function),
        _ => return Err(syntax("a step needs exactly one of `module` (a WASI program) and `native` (a native step)")),
    };
    let mut step = step.resources(raw.resources).args(raw.args).limits(parse_limits(&raw.limits)?).reuse(raw.reuse);
    for (input, source) in raw.inputs {
        step = step.input(input, source);
    }
    for function in raw.natives {
        step = step.native_function(function);
    }
    for (output, kind) in raw.outputs {
        step = step.output(output, kind);
    }
    for (param, value) in &raw.params {
        let value = toml_to_json(value).map_err(|why| syntax(why).in_field(format!("params.{param}")))?;
        step = step.param(param, value);
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
