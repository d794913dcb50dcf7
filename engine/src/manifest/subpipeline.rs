//! Sub-pipelines: a step `pipeline = "other.toml"` is replaced by the other
//! manifest's steps, named `STEP/INNER`, with the inner pipeline's inputs
//! bound to the step's `inputs` and its parameters to the step's `params`
//! (or the inner defaults). The inner `[outputs]` become addressable as
//! `STEP.OUTPUT`. Inlined steps are ordinary steps: each is cached on its
//! own, so two pipelines that use the same sub-pipeline on the same data
//! share its results.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::defaults::RetryFields;
use super::{RawManifest, RawStep, Reach, code_step, parse_toml, read_text, slurm_table, syntax};
use crate::StepBuilder;
use crate::error::{ValidationError, ValidationErrorKind as Kind};
use crate::params::{Params, rebind, toml_to_json};

/// How names inside one (sub-)pipeline map to the outer pipeline.
pub(super) struct Scope {
    prefix: String,
    params: Option<Params>,
    inputs: Option<BTreeMap<String, String>>,
    /// The `[defaults]` its steps take (the outer scope's filled in).
    defaults: RetryFields,
    /// The Slurm options its steps take (the outer scope's filled in).
    slurm: crate::SlurmRequest,
}

impl Scope {
    /// The top-level manifest: names are kept as written.
    pub(super) fn top(defaults: RetryFields, slurm: crate::SlurmRequest) -> Self {
        Self { prefix: String::new(), params: None, inputs: None, defaults, slurm }
    }

    /// An input reference rewritten into the outer pipeline's names.
    fn reference(&self, reference: &str) -> Result<String, ValidationError> {
        match reference.split_once('.') {
            Some(("inputs", input)) => match &self.inputs {
                Some(bound) => bound
                    .get(input)
                    .cloned()
                    .ok_or_else(|| ValidationError::new(Kind::UnknownInput { input: input.to_owned() })),
                None => Ok(reference.to_owned()),
            },
            Some((step, output)) => Ok(format!("{}{step}.{output}", self.prefix)),
            None => Ok(reference.to_owned()),
        }
    }
}

/// `STEP.OUTPUT` references of sub-pipeline outputs, mapped to the inlined
/// step outputs they stand for.
#[derive(Default)]
pub(super) struct Aliases(BTreeMap<String, String>);

impl Aliases {
    /// Follows aliases (sub-pipelines may nest) to a real step output.
    pub(super) fn resolve(&self, reference: &str) -> String {
        let mut current = reference.to_owned();
        for _ in 0..64 {
            match self.0.get(&current) {
                Some(next) => current = next.clone(),
                None => break,
            }
        }
        current
    }
}

/// The most steps a pipeline may have once its sub-pipelines are inlined.
/// Sub-pipelines that each use the next one twice multiply: without a bound,
/// a few short files would make millions of steps.
pub(crate) const MAX_STEPS: usize = 10_000;
/// The most manifest text read for one pipeline, the same sub-pipeline
/// counted each time it is inlined.
pub(crate) const MAX_TOTAL_MANIFEST_BYTES: usize = 64 << 20;

/// Collects the steps of a manifest, inlining sub-pipelines.
pub(super) struct Inliner<'f> {
    steps: Vec<StepBuilder>,
    aliases: Aliases,
    stack: Vec<PathBuf>,
    reach: Reach<'f>,
    /// Manifest bytes read so far, the top-level manifest included.
    bytes_read: usize,
}

impl<'f> Inliner<'f> {
    /// An inliner for the manifest at `root`, of `root_bytes` bytes and
    /// `root_steps` steps, whose sub-pipelines are read through `files`.
    pub(super) fn new(root: &Path, reach: Reach<'f>, root_bytes: usize, root_steps: usize) -> Self {
        Self {
            steps: Vec::with_capacity(root_steps),
            aliases: Aliases::default(),
            stack: vec![canonical(root)],
            reach,
            bytes_read: root_bytes,
        }
    }

    /// Adds step `name` of the manifest `file`, read in `scope`.
    pub(super) fn add_step(
        &mut self,
        name: &str,
        value: toml::Value,
        file: &Path,
        scope: &Scope,
    ) -> Result<(), ValidationError> {
        let full = format!("{}{name}", scope.prefix);
        let located = |err: ValidationError| err.in_step(&full).in_file(Some(file));
        let mut value = value;
        let code = value.as_table_mut().map(super::code::take_fields).unwrap_or_default();
        let mut raw = RawStep::deserialize(value).map_err(|err| {
            let error = syntax(err.message());
            located(match super::unknown_key(err.message()) {
                Some(key) => error.in_field(key),
                None => error,
            })
        })?;
        raw.code = code;
        let base = file.parent().unwrap_or(Path::new("."));
        if let Some(sub) = raw.pipeline.take() {
            return self.inline(&full, raw, base.join(sub), scope).map_err(located);
        }
        for (input, source) in raw.inputs.iter_mut() {
            *source = scope.reference(source).map_err(|err| located(err.in_field(format!("inputs.{input}"))))?;
        }
        if let Some(bindings) = &scope.params {
            check_bound(&raw, bindings).map_err(located)?;
        }
        if self.steps.len() == MAX_STEPS {
            let why = format!("the pipeline has more than {MAX_STEPS} steps once its sub-pipelines are inlined");
            return Err(located(ValidationError::new(Kind::TooLarge(why))));
        }
        let retry = raw.retry_fields().over(&scope.defaults).policy("").map_err(located)?;
        let slurm = slurm_table(raw.slurm.take(), "slurm").map_err(located)?.over(&scope.slurm);
        let mut step = code_step(&full, raw, base, self.reach, scope.params.as_ref()).map_err(located)?.slurm(slurm);
        if let Some(policy) = retry {
            step = step.retry(policy);
        }
        if scope.params.is_some() {
            step = step.defined_in(file);
        }
        self.steps.push(step);
        Ok(())
    }

    /// Replaces step `full` by the steps of the manifest at `path`.
    fn inline(&mut self, full: &str, raw: RawStep, path: PathBuf, scope: &Scope) -> Result<(), ValidationError> {
        let code_fields = !raw.code.is_empty()
            || !raw.args.is_empty()
            || !raw.outputs.is_empty()
            || !raw.natives.is_empty()
            || raw.resources.is_some()
            || raw.limits.is_some()
            || raw.reuse.is_some()
            || raw.deterministic.is_some()
            || raw.map.is_some();
        if code_fields {
            return Err(syntax("a `pipeline` step takes only `inputs` and `params`").in_field("pipeline"));
        }
        let key = canonical(&path);
        if self.stack.contains(&key) {
            let chain: Vec<String> = self.stack.iter().chain([&key]).map(|p| p.display().to_string()).collect();
            return Err(
                syntax(format!("sub-pipelines include each other: {}", chain.join(" -> "))).in_field("pipeline")
            );
        }
        self.reach.files.check(&path).map_err(|why| ValidationError::new(Kind::Forbidden(why)).in_field("pipeline"))?;
        let text = read_text(&path, self.reach.files).map_err(|why| {
            ValidationError::new(Kind::Unreadable(format!("sub-pipeline {why}"))).in_field("pipeline")
        })?;
        self.bytes_read = self.bytes_read.saturating_add(text.len());
        if self.bytes_read > MAX_TOTAL_MANIFEST_BYTES {
            let why = format!(
                "its manifests add up to more than {MAX_TOTAL_MANIFEST_BYTES} bytes, each sub-pipeline counted every time it is used"
            );
            return Err(ValidationError::new(Kind::TooLarge(why)).in_field("pipeline"));
        }
        let inner: RawManifest = parse_toml(&text, &path)?;
        inner.defaults.policy("defaults.").map_err(|err| err.in_file(Some(&path)))?;
        let params = bind_params(&raw, &inner.params, scope)?;
        let inputs = bind_inputs(&raw, &inner.inputs, scope)?;
        // Retry fields and Slurm options on the `pipeline` step apply to each of its steps.
        let defaults = raw.retry_fields().over(&inner.defaults.over(&scope.defaults));
        let inner_slurm =
            slurm_table(inner.executor.slurm, "executor.slurm").map_err(|err| err.in_file(Some(&path)))?;
        let slurm = slurm_table(raw.slurm, "slurm")?.over(&inner_slurm.over(&scope.slurm));
        let inner_scope =
            Scope { prefix: format!("{full}/"), params: Some(params), inputs: Some(inputs), defaults, slurm };
        self.stack.push(key);
        for (name, value) in inner.steps {
            self.add_step(&name, value, &path, &inner_scope)?;
        }
        self.stack.pop();
        for (name, output) in &inner.outputs {
            let target = inner_scope.reference(output.source()).map_err(|err| err.in_file(Some(&path)))?;
            self.aliases.0.insert(format!("{full}.{name}"), target);
        }
        Ok(())
    }

    /// The steps, with references to sub-pipeline outputs resolved.
    pub(super) fn finish(mut self) -> (Vec<StepBuilder>, Aliases) {
        for step in &mut self.steps {
            step.map_inputs(|reference| self.aliases.resolve(reference));
        }
        (self.steps, self.aliases)
    }
}

/// The inner pipeline's parameters: its defaults, overridden by the step's
/// `params` (which may use the outer pipeline's parameters).
fn bind_params(raw: &RawStep, declared: &toml::Table, scope: &Scope) -> Result<Params, ValidationError> {
    let mut params = Params::new();
    for (name, default) in declared {
        params.insert(name.clone(), toml_to_json(default).map_err(syntax)?);
    }
    for (name, value) in &raw.params {
        let field = format!("params.{name}");
        if !declared.contains_key(name) {
            let known = declared.keys().cloned().collect();
            return Err(ValidationError::new(Kind::UnknownParam { param: name.clone(), known }).in_field(field));
        }
        let mut value = toml_to_json(value).map_err(|why| syntax(why).in_field(field.clone()))?;
        if let Some(outer) = &scope.params {
            value = rebind(&value, outer).map_err(|why| syntax(why).in_field(field.clone()))?;
        }
        params.insert(name.clone(), value);
    }
    Ok(params)
}

/// The inner pipeline's inputs, each bound to a reference of the outer one.
fn bind_inputs(
    raw: &RawStep,
    declared: &BTreeMap<String, PathBuf>,
    scope: &Scope,
) -> Result<BTreeMap<String, String>, ValidationError> {
    let mut inputs = BTreeMap::new();
    for (name, source) in &raw.inputs {
        let field = format!("inputs.{name}");
        if !declared.contains_key(name) {
            let reason = format!("the sub-pipeline has no input named `{name}`");
            return Err(syntax(reason).in_field(field));
        }
        inputs.insert(name.clone(), scope.reference(source).map_err(|err| err.in_field(field))?);
    }
    if let Some(unbound) = declared.keys().find(|name| !inputs.contains_key(*name)) {
        return Err(syntax(format!("sub-pipeline input `{unbound}` is not bound")).in_field("inputs"));
    }
    Ok(inputs)
}

/// Checks that an inlined step refers only to its sub-pipeline's parameters.
fn check_bound(raw: &RawStep, bindings: &Params) -> Result<(), ValidationError> {
    let texts =
        raw.args.iter().enumerate().map(|(i, arg)| (format!("args[{i}]"), serde_json::Value::String(arg.clone())));
    let values =
        raw.params.iter().filter_map(|(name, value)| Some((format!("params.{name}"), toml_to_json(value).ok()?)));
    for (field, value) in texts.chain(values) {
        let names = crate::params::references(&value).map_err(|why| syntax(why).in_field(field.clone()))?;
        if let Some(param) = names.into_iter().find(|name| !bindings.contains_key(name)) {
            let known = bindings.keys().cloned().collect();
            return Err(ValidationError::new(Kind::UnknownParam { param, known }).in_field(field));
        }
    }
    Ok(())
}

fn canonical(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_owned())
}
