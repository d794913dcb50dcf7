//! Building and validating a [`Pipeline`] in code; the manifest loader uses it too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::{InputRef, OutputKind, Pipeline, PipelineOutput, Resources, Step, StepCode, graph, names};
use crate::error::{ValidationError, ValidationErrorKind as Kind};
use crate::{LimitOverrides, MAX_RETRIES, RetryPolicy, params};

/// Builds a [`Pipeline`]; [`build`](Self::build) validates it as a whole.
///
/// ```no_run
/// use weir::{OutputKind, Pipeline, StepBuilder};
///
/// let pipeline = Pipeline::builder("example")
///     .param("word", "hello")
///     .input("text", "data/text.txt")
///     .step(
///         StepBuilder::new("upper", "build/tool.wasm")
///             .args(["upper", "${params.word}"])
///             .input("text", "inputs.text")
///             .output("result", OutputKind::File),
///     )
///     .build()?;
/// # Ok::<(), weir::ValidationError>(())
/// ```
#[derive(Debug, Clone)]
pub struct PipelineBuilder {
    name: String,
    file: Option<PathBuf>,
    params: Vec<(String, Value)>,
    inputs: Vec<(String, PathBuf)>,
    steps: Vec<StepBuilder>,
    outputs: Vec<(String, String, Option<PathBuf>)>,
}

impl PipelineBuilder {
    /// A pipeline with this name and nothing in it yet.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            file: None,
            params: Vec::new(),
            inputs: Vec::new(),
            steps: Vec::new(),
            outputs: Vec::new(),
        }
    }

    /// Names the file the definition came from, for error messages.
    pub fn source_file(mut self, file: impl Into<PathBuf>) -> Self {
        self.file = Some(file.into());
        self
    }

    /// Declares a pipeline parameter with its default value.
    pub fn param(mut self, name: impl Into<String>, default: impl Into<Value>) -> Self {
        self.params.push((name.into(), default.into()));
        self
    }

    /// Declares a pipeline input: a host file or directory.
    pub fn input(mut self, name: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        self.inputs.push((name.into(), path.into()));
        self
    }

    /// Adds a step.
    pub fn step(mut self, step: StepBuilder) -> Self {
        self.steps.push(step);
        self
    }

    /// Adds `steps`, in order: [`step`](Self::step) for each, with room
    /// made for all of them at once.
    pub fn steps(mut self, steps: impl IntoIterator<Item = StepBuilder>) -> Self {
        self.steps.extend(steps);
        self
    }

    /// Declares a pipeline output `name` bound to `STEP.OUTPUT`.
    pub fn output(mut self, name: impl Into<String>, source: impl Into<String>) -> Self {
        self.outputs.push((name.into(), source.into(), None));
        self
    }

    /// Declares a pipeline output that is also copied to `path` after every
    /// successful run (a file is replaced; a directory is swapped in whole).
    pub fn export(mut self, name: impl Into<String>, source: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        self.outputs.push((name.into(), source.into(), Some(path.into())));
        self
    }

    /// Validates names, references, parameters, modules and the dependency
    /// graph, and orders the steps.
    pub fn build(self) -> Result<Pipeline, ValidationError> {
        let file = self.file.clone();
        self.validate_and_order().map_err(|err| err.in_file(file.as_deref()))
    }

    fn validate_and_order(self) -> Result<Pipeline, ValidationError> {
        names::check(&self.name).map_err(|err| err.in_field("name"))?;
        let params = unique("params", self.params, names::check)?;
        let inputs = unique("inputs", self.inputs, names::check)?;
        // Every step is checked, so all the problems are reported at once.
        let mut problems = Vec::new();
        for (name, path) in &inputs {
            if !path.exists() {
                let missing = ValidationError::new(Kind::InputMissing { path: path.clone() });
                problems.push(missing.in_field(format!("inputs.{name}")));
            }
        }
        let mut seen = BTreeSet::new();
        // Many steps run the same module: its file is checked once.
        let mut checked_code = BTreeSet::new();
        let mut steps = Vec::with_capacity(self.steps.len());
        for step in self.steps {
            let name = step.name.clone();
            let file = step.file.clone();
            let checked = names::check_step(&name)
                .and_then(|()| match seen.insert(name.clone()) {
                    true => Ok(()),
                    false => Err(ValidationError::new(Kind::DuplicateName { name: name.clone() })),
                })
                .and_then(|()| step.validate(&params, &inputs, &mut checked_code));
            match checked {
                Ok(step) => steps.push(step),
                Err(err) => problems.push(err.in_step(&name).in_file(file.as_deref())),
            }
        }
        ValidationError::all(problems)?;
        let steps = order(steps)?;
        let outputs = pipeline_outputs(self.outputs, &steps)?;
        Ok(Pipeline {
            name: self.name,
            file: self.file,
            params,
            inputs,
            steps,
            outputs,
            manifest: None,
            confined_to: None,
        })
    }
}

/// Checks names in a list of (name, value) pairs and that none repeats.
fn unique<T>(
    field: &str,
    pairs: Vec<(String, T)>,
    check: fn(&str) -> Result<(), ValidationError>,
) -> Result<BTreeMap<String, T>, ValidationError> {
    let mut map = BTreeMap::new();
    for (name, value) in pairs {
        let located = |err: ValidationError| err.in_field(format!("{field}.{name}"));
        check(&name).map_err(located)?;
        if map.insert(name.clone(), value).is_some() {
            return Err(located(ValidationError::new(Kind::DuplicateName { name: name.clone() })));
        }
    }
    Ok(map)
}

/// Checks the pipeline's outputs against the steps they name.
fn pipeline_outputs(
    declared: Vec<(String, String, Option<PathBuf>)>,
    steps: &[Step],
) -> Result<BTreeMap<String, PipelineOutput>, ValidationError> {
    let pairs = declared.into_iter().map(|(name, source, export)| (name, (source, export))).collect();
    let mut outputs = BTreeMap::new();
    for (name, (source, export)) in unique("outputs", pairs, names::check)? {
        let located = |kind| ValidationError::new(kind).in_field(format!("outputs.{name}"));
        let Some((step, output)) = source.split_once('.') else {
            return Err(located(Kind::BadReference { reference: source }));
        };
        let Some(producer) = steps.iter().find(|s| s.name == step) else {
            return Err(located(Kind::UnknownStep { step: step.to_owned() }));
        };
        if !producer.outputs.contains_key(output) {
            return Err(located(Kind::UnknownOutput { step: step.to_owned(), output: output.to_owned() }));
        }
        outputs.insert(name, PipelineOutput { step: step.to_owned(), output: output.to_owned(), export });
    }
    Ok(outputs)
}

/// Puts steps in dependency order after checking every step reference.
fn order(steps: Vec<Step>) -> Result<Vec<Step>, ValidationError> {
    let index: BTreeMap<&str, usize> = steps.iter().enumerate().map(|(i, s)| (s.name.as_str(), i)).collect();
    let mut deps = Vec::with_capacity(steps.len());
    for step in &steps {
        let mut step_deps = Vec::new();
        for (input, source) in &step.inputs {
            if let InputRef::Step { step: from, output } = source {
                let located = |kind| ValidationError::new(kind).in_step(&step.name).in_field(format!("inputs.{input}"));
                let &producer =
                    index.get(from.as_str()).ok_or_else(|| located(Kind::UnknownStep { step: from.clone() }))?;
                let Some(kind) = steps[producer].output_kind(output) else {
                    return Err(located(Kind::UnknownOutput { step: from.clone(), output: output.clone() }));
                };
                if step.map.as_deref() == Some(input.as_str()) && kind != OutputKind::Dir {
                    let reason = format!("`{from}.{output}` is a file, and a map step needs a directory");
                    return Err(ValidationError::new(Kind::BadMap { input: input.clone(), reason })
                        .in_step(&step.name)
                        .in_field("map"));
                }
                step_deps.push(producer);
            }
        }
        deps.push(step_deps);
    }
    match graph::topological_order(&deps) {
        Ok(order) => Ok(permuted(steps, &order)),
        Err(cycle) => {
            let names: Vec<String> = cycle.iter().map(|&i| steps[i].name.clone()).collect();
            let first = names[0].clone();
            Err(ValidationError::new(Kind::Cycle { steps: names }).in_step(&first).in_field("inputs"))
        }
    }
}

/// `items` rearranged so that position `k` holds what was at `order[k]` (a
/// permutation of the positions), in place: a step is a large value, and
/// moving a thousand of them into new vectors cost a run more than the
/// ordering itself.
fn permuted<T>(mut items: Vec<T>, order: &[usize]) -> Vec<T> {
    // Follows each cycle of the permutation once, swapping along it.
    let mut placed = vec![false; items.len()];
    for start in 0..items.len() {
        if placed[start] {
            continue;
        }
        let mut at = start;
        loop {
            placed[at] = true;
            let from = order[at];
            if from == start {
                break;
            }
            items.swap(at, from);
            at = from;
        }
    }
    items
}

/// One step of a [`PipelineBuilder`].
#[derive(Debug, Clone)]
pub struct StepBuilder {
    name: String,
    code: StepCode,
    natives: Vec<String>,
    resources: Resources,
    args: Vec<String>,
    inputs: Vec<(String, String)>,
    outputs: Vec<(String, OutputKind)>,
    params: Vec<(String, Value)>,
    limits: LimitOverrides,
    deterministic: bool,
    reuse: bool,
    max_age: Option<Duration>,
    retry: Option<RetryPolicy>,
    ignored_params: Vec<String>,
    param_types: BTreeMap<String, crate::package::ParamType>,
    map: Option<String>,
    slurm: crate::SlurmRequest,
    file: Option<PathBuf>,
}

impl StepBuilder {
    /// A step running the WASI module or component at `module`.
    pub fn new(name: impl Into<String>, module: impl Into<PathBuf>) -> Self {
        Self::with_code(name.into(), StepCode::Wasm(module.into()))
    }

    /// A step running the native step registered with the engine as `function`.
    pub fn native(name: impl Into<String>, function: impl Into<String>) -> Self {
        Self::with_code(name.into(), StepCode::Native(function.into()))
    }

    /// A step running the Python script `script` (see [`PythonScript`]).
    pub fn python(name: impl Into<String>, script: crate::PythonScript) -> Self {
        Self::with_code(name.into(), StepCode::Python(script))
    }

    pub(crate) fn with_code(name: String, code: StepCode) -> Self {
        Self {
            name,
            code,
            natives: Vec::new(),
            resources: Resources::default(),
            args: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            params: Vec::new(),
            limits: LimitOverrides::default(),
            deterministic: false,
            reuse: true,
            max_age: None,
            retry: None,
            ignored_params: Vec::new(),
            param_types: BTreeMap::new(),
            map: None,
            slurm: crate::SlurmRequest::default(),
            file: None,
        }
    }

    /// The manifest file that defines the step (a sub-pipeline's), named in
    /// its errors instead of the pipeline's own.
    pub(crate) fn defined_in(mut self, file: &Path) -> Self {
        self.file = Some(file.to_owned());
        self
    }

    /// Appends one command-line argument; `${params.NAME}` is substituted.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Appends command-line arguments; `${params.NAME}` is substituted.
    pub fn args<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Binds input `name` (seen at `/in/<name>`) to `inputs.NAME` or `STEP.OUTPUT`.
    pub fn input(mut self, name: impl Into<String>, source: impl Into<String>) -> Self {
        self.inputs.push((name.into(), source.into()));
        self
    }

    /// Declares an output the step writes at `/out/<name>`.
    pub fn output(mut self, name: impl Into<String>, kind: OutputKind) -> Self {
        self.outputs.push((name.into(), kind));
        self
    }

    /// Sets a step parameter; strings may use `${params.NAME}`.
    pub fn param(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.params.push((name.into(), value.into()));
        self
    }

    /// Sets several step parameters at once.
    pub fn params<K: Into<String>, V: Into<Value>>(mut self, params: impl IntoIterator<Item = (K, V)>) -> Self {
        self.params.extend(params.into_iter().map(|(name, value)| (name.into(), value.into())));
        self
    }

    /// Sets the sandbox limits the step overrides (unset ones keep the defaults).
    pub fn limits(mut self, limits: LimitOverrides) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the memory limit in bytes.
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.limits.memory = Some(bytes);
        self
    }

    /// Sets the wall-clock timeout ([`crate::Limits::NO_TIMEOUT`] for none).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.limits.timeout = Some(timeout);
        self
    }

    /// Makes the guest's clocks and random source virtual, seeded from the
    /// cache key (see [`Step::deterministic`](crate::Step::deterministic)).
    pub fn deterministic(mut self, deterministic: bool) -> Self {
        self.deterministic = deterministic;
        self
    }

    /// Allows the step to call the native function `function` through the
    /// host bridge; its name and version become part of the cache key.
    pub fn native_function(mut self, function: impl Into<String>) -> Self {
        self.natives.push(function.into());
        self
    }

    /// Sets the Slurm options (partition, account, qos, constraint) the step
    /// runs with under the `slurm` executor; they are not part of its cache key.
    pub fn slurm(mut self, request: crate::SlurmRequest) -> Self {
        self.slurm = request;
        self
    }

    /// Sets the resources the step holds while it runs.
    pub fn resources(mut self, resources: Resources) -> Self {
        self.resources = resources;
        self
    }

    /// Rewrites every input reference (used to inline sub-pipelines).
    pub(crate) fn map_inputs(&mut self, rewrite: impl Fn(&str) -> String) {
        for (_, source) in &mut self.inputs {
            *source = rewrite(source);
        }
    }

    /// Makes this a map step: it runs once per entry of directory input
    /// `input`, which each run sees at `/in/<input>`; each declared output is
    /// gathered into a directory keyed by entry name.
    pub fn map(mut self, input: impl Into<String>) -> Self {
        self.map = Some(input.into());
        self
    }

    /// Whether a cached result may be reused (default `true`).
    pub fn reuse(mut self, reuse: bool) -> Self {
        self.reuse = reuse;
        self
    }

    /// Reuses a cached result only while it is younger than `age` (the
    /// manifest's `reuse = "7d"`); an older one is executed again.
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = Some(age);
        self
    }

    /// Runs a failed execution again as `policy` says (default: never).
    /// Not part of the cache key: it changes how often a step is tried, not
    /// what a success produces.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// Leaves parameter `name` out of the cache key (e.g. how often to
    /// log): a step parameter of that name, and `${params.NAME}` in the
    /// args. Changing it alone does not make the step run again.
    pub fn ignored_param(mut self, name: impl Into<String>) -> Self {
        self.ignored_params.push(name.into());
        self
    }

    /// Checks each of the parameters named in `types`, once a run resolves
    /// them, against its type (what a step's package declares).
    pub(crate) fn param_types(mut self, types: BTreeMap<String, crate::package::ParamType>) -> Self {
        self.param_types = types;
        self
    }

    /// Validates the step; `checked_code` holds the code already found
    /// sound by earlier steps, and gains this step's.
    fn validate(
        self,
        params: &params::Params,
        inputs: &BTreeMap<String, PathBuf>,
        checked_code: &mut BTreeSet<StepCode>,
    ) -> Result<Step, ValidationError> {
        if !checked_code.contains(&self.code) {
            let kind = self.code.kind();
            kind.check(&self.code).map_err(|err| err.in_field(kind.field()))?;
            checked_code.insert(self.code.clone());
        }
        if let Err((option, why)) = self.slurm.check() {
            return Err(ValidationError::new(Kind::Syntax(why)).in_field(format!("slurm.{option}")));
        }
        if let Some(retry) = &self.retry
            && retry.retries > MAX_RETRIES
        {
            let why = format!("{} retries is more than the {MAX_RETRIES} a step may ask for", retry.retries);
            return Err(ValidationError::new(Kind::Syntax(why)).in_field("retries"));
        }
        let mut natives = std::collections::BTreeSet::new();
        for function in self.natives {
            names::check_function(&function).map_err(|err| err.in_field("natives"))?;
            if !natives.insert(function.clone()) {
                return Err(ValidationError::new(Kind::DuplicateName { name: function }).in_field("natives"));
            }
        }
        for (i, arg) in self.args.iter().enumerate() {
            check_references(&Value::String(arg.clone()), params).map_err(|err| err.in_field(format!("args[{i}]")))?;
        }
        let step_params = unique("params", self.params, names::check)?;
        for (name, value) in &step_params {
            check_references(value, params).map_err(|err| err.in_field(format!("params.{name}")))?;
        }
        let mut ignored_params = BTreeSet::new();
        for name in self.ignored_params {
            if !step_params.contains_key(&name) && !params.contains_key(&name) {
                let mut known: Vec<String> = step_params.keys().chain(params.keys()).cloned().collect();
                known.sort();
                known.dedup();
                return Err(ValidationError::new(Kind::UnknownParam { param: name, known }).in_field("ignored_params"));
            }
            ignored_params.insert(name);
        }
        let outputs = unique("outputs", self.outputs, names::check)?;
        let raw_inputs = unique("inputs", self.inputs, names::check)?;
        let mut resolved = BTreeMap::new();
        for (name, reference) in raw_inputs {
            let source = parse_reference(&reference, inputs).map_err(|err| err.in_field(format!("inputs.{name}")))?;
            resolved.insert(name, source);
        }
        if let Some(mapped) = &self.map {
            let source = resolved.get(mapped).ok_or_else(|| {
                ValidationError::new(Kind::BadMap {
                    input: mapped.clone(),
                    reason: "the step has no such input".into(),
                })
                .in_field("map")
            })?;
            if let InputRef::Pipeline(name) = source
                && !inputs[name].is_dir()
            {
                let reason = format!("pipeline input `{name}` is not a directory");
                return Err(ValidationError::new(Kind::BadMap { input: mapped.clone(), reason }).in_field("map"));
            }
        }
        Ok(Step {
            map: self.map,
            slurm: self.slurm,
            name: self.name,
            code: self.code,
            natives,
            resources: self.resources,
            args: self.args,
            inputs: resolved,
            outputs,
            params: step_params.into_iter().collect(),
            limits: self.limits,
            deterministic: self.deterministic,
            reuse: self.reuse,
            max_age: self.max_age,
            retry: self.retry.unwrap_or_default(),
            ignored_params,
            param_types: self.param_types,
            file: self.file,
        })
    }
}

/// Checks that every `${params.X}` in `value` names a declared parameter.
fn check_references(value: &Value, params: &params::Params) -> Result<(), ValidationError> {
    let names = params::references(value).map_err(|why| ValidationError::new(Kind::Syntax(why)))?;
    match names.into_iter().find(|name| !params.contains_key(name)) {
        Some(param) => Err(ValidationError::new(Kind::UnknownParam { param, known: params.keys().cloned().collect() })),
        None => Ok(()),
    }
}

/// Parses `inputs.NAME` (which must exist) or `STEP.OUTPUT` (checked later).
fn parse_reference(reference: &str, inputs: &BTreeMap<String, PathBuf>) -> Result<InputRef, ValidationError> {
    let bad = || ValidationError::new(Kind::BadReference { reference: reference.to_owned() });
    let (head, tail) = reference.split_once('.').ok_or_else(bad)?;
    if head.is_empty() || tail.is_empty() || tail.contains('.') {
        return Err(bad());
    }
    if head == "inputs" {
        if !inputs.contains_key(tail) {
            return Err(ValidationError::new(Kind::UnknownInput { input: tail.to_owned() }));
        }
        return Ok(InputRef::Pipeline(tail.to_owned()));
    }
    Ok(InputRef::Step { step: head.to_owned(), output: tail.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::permuted;

    #[test]
    fn a_permutation_is_applied_in_place_cycle_by_cycle() {
        let items: Vec<String> = (0..9).map(|i| format!("step {i}")).collect();
        // Cycles (0 4 2), (1 8), (3), (5 7 6): one of each length up to three.
        let orders: [&[usize]; 3] =
            [&[4, 8, 0, 3, 2, 7, 5, 6, 1], &[0, 1, 2, 3, 4, 5, 6, 7, 8], &[8, 7, 6, 5, 4, 3, 2, 1, 0]];
        for order in orders {
            let expected: Vec<String> = order.iter().map(|&i| items[i].clone()).collect();
            assert_eq!(permuted(items.clone(), order), expected, "{order:?}");
        }
    }
}
