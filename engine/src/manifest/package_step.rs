//! A step that `uses` a package with a descriptor: the descriptor supplies
//! its argv, natives, resources, outputs and default limits, and checks the
//! inputs and parameters the manifest gives it, before anything runs.

use serde_json::Value;

use super::RawStep;
use crate::error::{ValidationError, ValidationErrorKind as Kind};
use crate::package::StepDescriptor;
use crate::params::{Params, rebind, toml_to_json};
use crate::{LimitOverrides, Limits};

fn mismatch(why: String) -> ValidationError {
    ValidationError::new(Kind::Package(why))
}

/// How messages name the package.
fn named(descriptor: &StepDescriptor) -> String {
    format!("package `{}` {}", descriptor.name, descriptor.version)
}

/// The names a table of the descriptor declares, for messages.
fn listed<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<&str> = names.map(String::as_str).collect();
    if names.is_empty() { "none".to_owned() } else { names.join(", ") }
}

/// Checks `raw` against the package's interface and fills in what the
/// package supplies. Each error names the field and what the package
/// declares.
pub(super) fn apply(descriptor: &StepDescriptor, raw: &mut RawStep) -> Result<(), ValidationError> {
    let package = named(descriptor);
    let supplied = [
        ("args", !raw.args.is_empty(), "set its parameters instead"),
        ("natives", !raw.natives.is_empty(), "a step may not grant its package more natives"),
        ("resources", raw.resources.is_some(), "the package declares what it holds"),
    ];
    if let Some((field, _, hint)) = supplied.into_iter().find(|(_, set, _)| *set) {
        return Err(mismatch(format!("`{field}` comes from {package}; {hint}")).in_field(field));
    }
    for input in raw.inputs.keys() {
        if !descriptor.inputs.contains_key(input) {
            let why = format!("{package} has no input `{input}` (it declares: {})", listed(descriptor.inputs.keys()));
            return Err(mismatch(why).in_field(format!("inputs.{input}")));
        }
    }
    if let Some(unbound) = descriptor.inputs.keys().find(|input| !raw.inputs.contains_key(*input)) {
        let why = format!("{package} needs input `{unbound}`, and the step does not bind it");
        return Err(mismatch(why).in_field("inputs"));
    }
    for (output, kind) in &raw.outputs {
        match descriptor.outputs.get(output) {
            Some(declared) if declared == kind => {}
            Some(declared) => {
                let why = format!("{package} writes `{output}` as a {declared}, not a {kind}");
                return Err(mismatch(why).in_field(format!("outputs.{output}")));
            }
            None => {
                let why =
                    format!("{package} has no output `{output}` (it declares: {})", listed(descriptor.outputs.keys()));
                return Err(mismatch(why).in_field(format!("outputs.{output}")));
            }
        }
    }
    raw.outputs = descriptor.outputs.clone();
    let params = params(descriptor, raw)?;
    raw.args = descriptor
        .args
        .iter()
        .enumerate()
        .map(|(i, template)| match rebind(&Value::String(template.clone()), &params) {
            Ok(Value::String(text)) => Ok(text),
            Ok(other) => Ok(other.to_string()),
            Err(why) => Err(mismatch(format!("{package}: {why}")).in_field(format!("args[{i}]"))),
        })
        .collect::<Result<_, _>>()?;
    raw.natives = descriptor.natives.clone();
    raw.resources = Some(toml::Value::try_from(descriptor.resources).expect("resources serialize"));
    Ok(())
}

/// The step's parameters: each one the manifest sets declared and of the
/// declared type (a `${params.NAME}` template is checked when the run
/// resolves it), the defaults of the others filled in, none required left
/// unset. `raw.params` gets the defaults too: the step receives them in
/// `/in/.params.json`.
fn params(descriptor: &StepDescriptor, raw: &mut RawStep) -> Result<Params, ValidationError> {
    let package = named(descriptor);
    let mut params = Params::new();
    for (name, value) in &raw.params {
        let field = format!("params.{name}");
        let Some(spec) = descriptor.params.get(name) else {
            let why =
                format!("{package} has no parameter `{name}` (it declares: {})", listed(descriptor.params.keys()));
            return Err(mismatch(why).in_field(field));
        };
        let value = toml_to_json(value).map_err(|why| mismatch(why).in_field(&field))?;
        let templated = value.as_str().is_some_and(|text| text.contains("${params."));
        if !templated && !spec.kind.admits(&value) {
            let why = format!("{value} is not {}, the type {package} declares", spec.kind.described());
            return Err(mismatch(why).in_field(field));
        }
        params.insert(name.clone(), value);
    }
    for (name, spec) in &descriptor.params {
        if params.contains_key(name) {
            continue;
        }
        let Some(default) = &spec.default else {
            let why = format!(
                "{package} requires parameter `{name}` ({}), and the step does not set it",
                spec.kind.described()
            );
            return Err(mismatch(why).in_field(format!("params.{name}")));
        };
        raw.params.insert(name.clone(), toml::Value::try_from(default).expect("a JSON parameter is a TOML value"));
        params.insert(name.clone(), default.clone());
    }
    Ok(params)
}

/// The limits of a step: those it sets, each within its package's, and the
/// package's for the rest.
pub(super) fn narrowed(
    step: LimitOverrides,
    package: Option<&StepDescriptor>,
) -> Result<LimitOverrides, ValidationError> {
    let Some(descriptor) = package else { return Ok(step) };
    let ceiling = Limits::UNBOUNDED.with(&descriptor.limits);
    Limits::UNBOUNDED.resolve(&step, &ceiling).map_err(|exceeded| {
        let why = format!(
            "{} is above the {} that {} allows; a step may only narrow its package's limits",
            Limits::show(exceeded.field, exceeded.asked),
            Limits::show(exceeded.field, exceeded.max),
            named(descriptor)
        );
        mismatch(why).in_field(format!("limits.{}", exceeded.field))
    })?;
    Ok(step.or(&descriptor.limits))
}
