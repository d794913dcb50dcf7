//! Per-run choices: parameter overrides, forced re-runs, cache bypass.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::Value;

use crate::Pipeline;
use crate::cancel::CancelToken;
use crate::error::{ValidationError, ValidationErrorKind as Kind};
use crate::events::EventSink;
use crate::params::{Params, parse_like};

/// Options of one run. The default runs with the pipeline's default
/// parameters and reuses every cached step. Cheap to clone and `Send +
/// Sync`: one value may serve many runs (its sink and cancel token are
/// shared by them).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    params: BTreeMap<String, Override>,
    rerun: BTreeSet<String>,
    targets: BTreeSet<String>,
    no_cache: bool,
    tenant: Option<String>,
    verify: Option<Verify>,
    events: Option<Sink>,
    exports_anywhere: bool,
    cancel: Option<CancelToken>,
    read_only: bool,
    run_id: Option<String>,
    labels: BTreeMap<String, String>,
    skip_exports: bool,
    remote: Option<Remote>,
}

/// A shared cache (its own type so `RunOptions` can be `Debug`).
#[derive(Clone)]
struct Remote(Arc<dyn crate::CacheRemote>);

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CacheRemote({})", self.0.describe())
    }
}

/// Whether `--rerun NAME` covers `step`: it is the step, or a sub-pipeline
/// (at any depth) that holds it.
fn covers(name: &str, step: &str) -> bool {
    step.strip_prefix(name).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Which steps a verifying run re-executes: all, or one.
#[derive(Debug, Clone)]
struct Verify {
    step: Option<String>,
}

/// An event sink (its own type so `RunOptions` can be `Debug`).
#[derive(Clone)]
struct Sink(Arc<dyn EventSink>);

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventSink")
    }
}

#[derive(Debug, Clone)]
enum Override {
    /// A value to use as is (its type must match the default's).
    Value(Value),
    /// Text to parse as the default's type, as `--param NAME=TEXT` gives.
    Text(String),
}

impl RunOptions {
    /// Default options.
    pub fn new() -> Self {
        Self::default()
    }

    /// Overrides a pipeline parameter with a value of the default's type.
    pub fn param(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.params.insert(name.into(), Override::Value(value.into()));
        self
    }

    /// Overrides a pipeline parameter with text parsed as the default's type.
    pub fn param_text(mut self, name: impl Into<String>, text: impl Into<String>) -> Self {
        self.params.insert(name.into(), Override::Text(text.into()));
        self
    }

    /// Forces `step` to execute even if a cached result exists; a sub-pipeline's
    /// name forces every step inlined from it.
    pub fn rerun(mut self, step: impl Into<String>) -> Self {
        self.rerun.insert(step.into());
        self
    }

    /// Runs only `step` (a sub-pipeline's name: every step inlined from it)
    /// and the steps it needs upstream; repeatable. The other steps are
    /// reported as [`StepStatus::NotRequested`](crate::StepStatus::NotRequested)
    /// and the pipeline outputs they would give are not exported.
    pub fn target(mut self, step: impl Into<String>) -> Self {
        self.targets.insert(step.into());
        self
    }

    /// Ignores all cached results (new results are still recorded).
    pub fn no_cache(mut self, no_cache: bool) -> Self {
        self.no_cache = no_cache;
        self
    }

    /// Runs as `tenant` (default: [`DEFAULT_TENANT`](crate::DEFAULT_TENANT)):
    /// its quotas apply, and its cache entries and runs are its own.
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// Lets the default tenant (the operator) export to any host path. Without
    /// it, exports must lie beneath the manifest's directory (the current
    /// directory for a pipeline built in code), so a manifest cannot write
    /// over files elsewhere. Other tenants export only beneath their root,
    /// whatever this says.
    pub fn exports_anywhere(mut self, allow: bool) -> Self {
        self.exports_anywhere = allow;
        self
    }

    /// Writes nothing to the workspace: every step must be reused from the
    /// cache (a step that would execute fails instead), and the run is not
    /// recorded in the history (its [`RunReport::record`](crate::RunReport::record)
    /// still describes it). Works on a workspace the process may not write.
    /// Exports are still written.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Whether the run may write nothing to the workspace.
    pub(crate) fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Whether this is a verifying run (`weir verify`).
    pub(crate) fn is_verification(&self) -> bool {
        self.verify.is_some()
    }

    /// Looks up steps in `remote` (a team's shared cache) when the
    /// workspace has no result for them, and sends it the results of the
    /// steps the run executes. A remote that stops answering is left alone
    /// for the rest of the run, with a warning; a result whose bytes do not
    /// match its digests is refused and the step executes.
    pub fn remote_cache(mut self, remote: Arc<dyn crate::CacheRemote>) -> Self {
        self.remote = Some(Remote(remote));
        self
    }

    /// The shared cache, if the run has one.
    pub(crate) fn remote(&self) -> Option<&dyn crate::CacheRemote> {
        self.remote.as_ref().map(|remote| &*remote.0)
    }

    /// Whether a successful run writes the pipeline's exports (default
    /// `true`). A sweep's runs do not: they would overwrite each other, and
    /// their outputs are in the store (`weir export DIGEST PATH`).
    pub fn exports(mut self, write: bool) -> Self {
        self.skip_exports = !write;
        self
    }

    /// Whether the run writes exports (see [`RunOptions::exports`]).
    pub(crate) fn writes_exports(&self) -> bool {
        !self.skip_exports
    }

    /// Whether exports may go anywhere (see [`RunOptions::exports_anywhere`]).
    pub(crate) fn allows_exports_anywhere(&self) -> bool {
        self.exports_anywhere
    }

    /// The tenant named, if any.
    pub(crate) fn tenant_name(&self) -> Option<&str> {
        self.tenant.as_deref()
    }

    /// Makes this a verifying run: every step that has a cached result (or
    /// only `step`, when given) is executed again and its outputs compared
    /// with the cached ones; a difference fails the step with
    /// [`StepErrorKind::Nondeterministic`](crate::StepErrorKind::Nondeterministic).
    /// Downstream steps get the cached outputs, and nothing is written to
    /// the cache.
    pub fn verify(mut self, step: Option<String>) -> Self {
        self.verify = Some(Verify { step });
        self
    }

    /// Whether this run re-executes `step` to compare with its cached result.
    pub(crate) fn verifies(&self, step: &str) -> bool {
        self.verify.as_ref().is_some_and(|verify| verify.step.as_deref().is_none_or(|only| only == step))
    }

    /// Delivers the run's events (steps starting and finishing, metrics,
    /// progress) to `sink` as they happen.
    pub fn events(mut self, sink: Arc<dyn EventSink>) -> Self {
        self.events = Some(Sink(sink));
        self
    }

    /// Lets `token` cancel the run (see [`CancelToken`]).
    pub fn cancel_with(mut self, token: CancelToken) -> Self {
        self.cancel = Some(token);
        self
    }

    /// The token that cancels the run, if any.
    pub(crate) fn cancel_token(&self) -> Option<&CancelToken> {
        self.cancel.as_ref()
    }

    /// Whether the run was asked to stop.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancel.as_ref().is_some_and(CancelToken::is_cancelled)
    }

    /// The event sink, if any.
    pub(crate) fn event_sink(&self) -> Option<Arc<dyn EventSink>> {
        self.events.as_ref().map(|sink| sink.0.clone())
    }

    /// Why `step` must execute, if the options force it.
    pub(crate) fn forced_by(&self, step: &str) -> Option<String> {
        if self.no_cache {
            return Some("--no-cache".to_owned());
        }
        self.rerun.iter().find(|name| covers(name, step)).map(|name| format!("--rerun {name}"))
    }

    /// Whether the run is to settle `step`: every step, unless targets were
    /// named (then those and what they need, which the caller adds).
    pub(crate) fn targets(&self, step: &str) -> bool {
        self.targets.is_empty() || self.targets.iter().any(|name| covers(name, step))
    }

    /// Whether `step` must execute rather than reuse a cached result.
    pub(crate) fn forces(&self, step: &str) -> bool {
        self.forced_by(step).is_some()
    }

    /// Records the run under `id` (from [`new_run_id`](crate::new_run_id))
    /// instead of a new id, so a caller knows it before the run starts. Only
    /// for options of one run: a second run with the same id is refused.
    pub fn run_id(mut self, id: impl Into<String>) -> Self {
        self.run_id = Some(id.into());
        self
    }

    /// Records the run with label `key` = `value`, by which `weir runs
    /// --label` (and [`RunFilter`](crate::RunFilter)) find it; a sweep labels its
    /// runs `weir.sweep`. Setting a key again replaces its value.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// The run's labels.
    pub(crate) fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }

    /// The id the run is to be recorded under, if the caller chose it.
    pub(crate) fn chosen_run_id(&self) -> Option<&str> {
        self.run_id.as_deref()
    }

    /// Checks the options against `pipeline` (parameters known and of the
    /// default's type, `rerun` naming steps) and returns the run's parameters.
    pub fn resolve(&self, pipeline: &Pipeline) -> Result<Params, ValidationError> {
        let located = |err: ValidationError| err.in_file(pipeline.file());
        let steps = || pipeline.steps().iter().map(|step| step.name().to_owned());
        for (option, names) in [("--rerun", &self.rerun), ("--target", &self.targets)] {
            let Some(step) = names.iter().find(|name| !pipeline.steps().iter().any(|step| covers(name, step.name())))
            else {
                continue;
            };
            let mut known: Vec<String> = steps().collect();
            let groups = known.iter().filter_map(|name| name.rsplit_once('/').map(|(group, _)| group.to_owned()));
            let groups: std::collections::BTreeSet<String> = groups.collect();
            known.extend(groups);
            known.sort();
            let kind = Kind::UnknownRerunStep { option, step: step.clone(), known };
            return Err(located(ValidationError::new(kind)));
        }
        if let Some(step) = self.verify.as_ref().and_then(|v| v.step.as_ref()).filter(|s| pipeline.step(s).is_none()) {
            let kind = Kind::UnknownRerunStep { option: "verify", step: step.clone(), known: steps().collect() };
            return Err(located(ValidationError::new(kind)));
        }
        let mut params = pipeline.params().clone();
        for (name, value) in &self.params {
            let default = params.get(name).ok_or_else(|| {
                located(
                    ValidationError::new(Kind::UnknownParam {
                        param: name.clone(),
                        known: pipeline.params().keys().cloned().collect(),
                    })
                    .in_field(format!("--param {name}")),
                )
            })?;
            let value = match value {
                Override::Text(text) => parse_like(default, text),
                Override::Value(value) => same_type(default, value),
            };
            let value = value.map_err(|reason| {
                located(
                    ValidationError::new(Kind::BadParamValue { param: name.clone(), reason })
                        .in_field(format!("--param {name}")),
                )
            })?;
            params.insert(name.clone(), value);
        }
        Ok(params)
    }
}

/// Accepts `value` if it has the type of `default` (an integer may stand for a float).
fn same_type(default: &Value, value: &Value) -> Result<Value, String> {
    let kind = |v: &Value| match v {
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Bool(_) => "boolean",
        Value::Array(_) => "list",
        Value::Object(_) => "table",
        Value::Null => "null",
    };
    match (kind(default), kind(value)) {
        (a, b) if a == b => Ok(value.clone()),
        ("float", "integer") => Ok(value.as_f64().map_or(Value::Null, Value::from)),
        (expected, found) => {
            let article = |kind: &str| if kind.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
            Err(format!(
                "expected {} {expected} like the default ({default}), got {} {found} ({value})",
                article(expected),
                article(found)
            ))
        }
    }
}
