//! A step package's descriptor (`step.toml`): the step's name and version,
//! its module, its argv template and its interface (inputs, outputs,
//! parameters), default limits, the natives it calls and the resources it
//! holds. The same text is the package's descriptor layer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::error::{ValidationError, ValidationErrorKind as Kind};
use crate::manifest::{RawLimits, parse_limits, parse_toml, table_field};
use crate::params::{references, toml_to_json};
use crate::{LimitOverrides, OutputKind, Resources};

/// What a step package declares about its step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepDescriptor {
    /// The step's name (argv\[0\] of its runs).
    pub name: String,
    /// Its version, as its authors number it.
    pub version: String,
    /// What it does, in a sentence or two.
    pub description: Option<String>,
    /// The module or component, relative to the descriptor file. Packing
    /// reads it; in a package the wasm layer is the module and this is
    /// ignored.
    pub module: Option<PathBuf>,
    /// Instead of a module, a Python step: its script (and `requirements`),
    /// relative to the descriptor file, which packing builds into the
    /// package's component.
    pub python: Option<PathBuf>,
    /// The requirements files of a Python step.
    pub requirements: Vec<PathBuf>,
    /// The argv template (after argv\[0\]); `${params.NAME}` names one of
    /// its parameters.
    pub args: Vec<String>,
    /// The inputs a step using it must bind, by name.
    pub inputs: BTreeMap<String, OutputKind>,
    /// The outputs it writes, by name.
    pub outputs: BTreeMap<String, OutputKind>,
    /// Its parameters: type, default, description.
    pub params: BTreeMap<String, ParamSpec>,
    /// Its default limits (a step using it may only narrow them).
    pub limits: LimitOverrides,
    /// The native functions it calls through the host bridge.
    pub natives: Vec<String>,
    /// The resources it holds while it runs.
    pub resources: Resources,
}

/// A declared parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    /// The type of its values.
    pub kind: ParamType,
    /// Its value when a step does not set it; without one it is required.
    pub default: Option<Value>,
    /// What it means.
    pub description: Option<String>,
}

/// The type of a declared parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    /// A whole number.
    Int,
    /// A number (a whole number is accepted too).
    Float,
    /// `true` or `false`.
    Bool,
    /// Text.
    String,
    /// A list of values.
    List,
    /// A table of values.
    Table,
}

impl ParamType {
    /// Whether `value` is of this type.
    pub fn admits(self, value: &Value) -> bool {
        match self {
            ParamType::Int => value.is_i64() || value.is_u64(),
            ParamType::Float => value.is_number(),
            ParamType::Bool => value.is_boolean(),
            ParamType::String => value.is_string(),
            ParamType::List => value.is_array(),
            ParamType::Table => value.is_object(),
        }
    }

    /// Its name with an article, for messages ("an int").
    pub fn described(self) -> &'static str {
        match self {
            ParamType::Int => "an int",
            ParamType::Float => "a float",
            ParamType::Bool => "a bool",
            ParamType::String => "a string",
            ParamType::List => "a list",
            ParamType::Table => "a table",
        }
    }

    /// Its name, as a descriptor writes it.
    pub fn name(self) -> &'static str {
        match self {
            ParamType::Int => "int",
            ParamType::Float => "float",
            ParamType::Bool => "bool",
            ParamType::String => "string",
            ParamType::List => "list",
            ParamType::Table => "table",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDescriptor {
    name: String,
    version: String,
    description: Option<String>,
    module: Option<PathBuf>,
    python: Option<PathBuf>,
    #[serde(default)]
    requirements: Vec<PathBuf>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    inputs: BTreeMap<String, OutputKind>,
    #[serde(default)]
    outputs: BTreeMap<String, OutputKind>,
    #[serde(default)]
    params: BTreeMap<String, toml::Value>,
    limits: Option<toml::Value>,
    #[serde(default)]
    natives: Vec<String>,
    resources: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParam {
    #[serde(rename = "type")]
    kind: ParamType,
    default: Option<toml::Value>,
    description: Option<String>,
}

fn invalid(why: impl Into<String>) -> ValidationError {
    ValidationError::new(Kind::Package(why.into()))
}

impl StepDescriptor {
    /// Parses and checks descriptor text; errors name `path` and the field.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ValidationError> {
        Self::parse_unlocated(text, path).map_err(|err| err.in_file(Some(path)))
    }

    fn parse_unlocated(text: &str, path: &Path) -> Result<Self, ValidationError> {
        let raw: RawDescriptor = parse_toml(text, path)?;
        check_name(&raw.name).map_err(|why| invalid(why).in_field("name"))?;
        if raw.version.trim().is_empty() {
            return Err(invalid("the version must not be empty").in_field("version"));
        }
        if raw.module.is_some() && raw.python.is_some() {
            let why = "`module` and `python` each give the step's code: name one of them";
            return Err(invalid(why).in_field("python"));
        }
        if raw.python.is_none() && !raw.requirements.is_empty() {
            return Err(invalid("`requirements` belong to a Python step (`python = …`)").in_field("requirements"));
        }
        let mut params = BTreeMap::new();
        for (name, value) in raw.params {
            let field = format!("params.{name}");
            check_name(&name).map_err(|why| invalid(why).in_field(&field))?;
            let spec = RawParam::deserialize(value).map_err(|err| {
                invalid(format!("{} (a parameter is declared like {{ type = \"int\", default = 1 }})", err.message()))
                    .in_field(&field)
            })?;
            let default = spec
                .default
                .map(|value| toml_to_json(&value))
                .transpose()
                .map_err(|why| invalid(why).in_field(format!("{field}.default")))?;
            if let Some(default) = &default
                && !spec.kind.admits(default)
            {
                let why = format!("the default {default} is not {}", spec.kind.described());
                return Err(invalid(why).in_field(format!("{field}.default")));
            }
            params.insert(name, ParamSpec { kind: spec.kind, default, description: spec.description });
        }
        for (i, arg) in raw.args.iter().enumerate() {
            let field = format!("args[{i}]");
            let named = references(&Value::String(arg.clone())).map_err(|why| invalid(why).in_field(&field))?;
            if let Some(unknown) = named.iter().find(|name| !params.contains_key(*name)) {
                let why = format!("`${{params.{unknown}}}` names no parameter declared in [params]");
                return Err(invalid(why).in_field(field));
            }
        }
        for (table, names) in [("inputs", &raw.inputs), ("outputs", &raw.outputs)] {
            for name in names.keys() {
                check_name(name).map_err(|why| invalid(why).in_field(format!("{table}.{name}")))?;
            }
        }
        let limits = parse_limits(&table_field::<RawLimits>(raw.limits, "limits")?.unwrap_or_default())?;
        Ok(StepDescriptor {
            name: raw.name,
            version: raw.version,
            description: raw.description,
            module: raw.module,
            python: raw.python,
            requirements: raw.requirements,
            args: raw.args,
            inputs: raw.inputs,
            outputs: raw.outputs,
            params,
            limits,
            natives: raw.natives,
            resources: table_field::<Resources>(raw.resources, "resources")?.unwrap_or_default(),
        })
    }
}

/// A name in a descriptor: a step, parameter, input or output name.
fn check_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !name.starts_with('.');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid name: use 1 to 128 letters, digits, `_`, `-` and `.`, not starting with `.`"
        ))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(text: &str) -> Result<StepDescriptor, String> {
        StepDescriptor::parse(text, Path::new("step.toml")).map_err(|err| err.to_string())
    }

    #[test]
    fn a_full_descriptor_reads_every_field() {
        let descriptor = parse(
            r#"
name = "upper"
version = "1.0.0"
description = "Upper-cases text."
module = "build/upper.wasm"
args = ["upper", "--times=${params.times}"]
natives = ["gemm"]
resources = { gpu = 1 }
limits = { memory = "64MiB", timeout = "30s" }
[inputs]
text = "file"
[outputs]
result = "file"
[params]
times = { type = "int", default = 1, description = "How often." }
lower = { type = "bool" }
"#,
        )
        .unwrap();
        assert_eq!(descriptor.name, "upper");
        assert_eq!(descriptor.module.as_deref(), Some(Path::new("build/upper.wasm")));
        assert_eq!(descriptor.inputs["text"], OutputKind::File);
        assert_eq!(descriptor.params["times"].default, Some(json!(1)));
        assert_eq!(descriptor.params["lower"].default, None);
        assert_eq!(descriptor.limits.memory, Some(64 << 20));
        assert_eq!(descriptor.resources.gpu, 1);
    }

    #[test]
    fn bad_descriptors_name_the_field() {
        let cases = [
            ("name = \"a b\"\nversion = \"1\"", "field `name`"),
            ("name = \"a\"\nversion = \"\"", "field `version`"),
            ("name = \"a\"\nversion = \"1\"\nparams = { n = { type = \"int\", default = \"x\" } }", "params.n.default"),
            ("name = \"a\"\nversion = \"1\"\nparams = { n = { type = \"number\" } }", "params.n"),
            ("name = \"a\"\nversion = \"1\"\nargs = [\"${params.n}\"]", "args[0]"),
            ("name = \"a\"\nversion = \"1\"\nlimits = { memory = \"lots\" }", "limits.memory"),
            ("name = \"a\"\nversion = \"1\"\ninputs = { \"../x\" = \"file\" }", "inputs.../x"),
        ];
        for (text, field) in cases {
            let error = parse(text).expect_err(text);
            assert!(error.contains(field), "{text}: {error}");
        }
    }

    #[test]
    fn a_float_parameter_takes_whole_numbers_and_an_int_does_not_take_fractions() {
        assert!(ParamType::Float.admits(&json!(2)));
        assert!(!ParamType::Int.admits(&json!(2.5)));
        assert!(!ParamType::String.admits(&json!(2)));
    }
}
