//! `weir explain`: why a step ran or was reused, found by comparing its cache
//! key material with that of the step's most recent earlier execution.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::OptionalExtension;
use serde::Serialize;
use serde_json::Value;

use super::{History, db_error};
use crate::cache_key::{CodeKey, RecordedKey};
use crate::{Result, StepStatus};

/// Why a step of a run ran, was reused, or was skipped.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Explanation {
    /// The run.
    pub run_id: String,
    /// The step.
    pub step: String,
    /// Its status in the run.
    pub status: StepStatus,
    /// The earlier run its key was compared with, if any.
    pub compared_with: Option<String>,
    /// The reasons, in words.
    pub reasons: Vec<String>,
}

impl History {
    /// Explains the status of `step` in run `run_id`.
    pub fn explain(&self, run_id: &str, step: &str) -> Result<Explanation> {
        let record = self.step_record(run_id, step)?;
        let (pipeline, tenant, started): (String, String, f64) = self.with(|conn| {
            conn.query_row("SELECT pipeline, tenant, started FROM runs WHERE id = ?1", [run_id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(db_error("reading a run"))
        })?;
        let mut explanation = Explanation {
            run_id: run_id.to_owned(),
            step: step.to_owned(),
            status: record.status,
            compared_with: None,
            reasons: Vec::new(),
        };
        match record.status {
            StepStatus::Skipped => explanation.reasons.push("skipped: a step it depends on failed".into()),
            StepStatus::NotRequested => explanation
                .reasons
                .push("not requested: the run was asked for other steps (--target), which do not need it".into()),
            StepStatus::Cancelled if record.cache_key.is_none() => {
                explanation.reasons.push("cancelled: the run was stopped before the step started".into())
            }
            StepStatus::Cancelled => explanation
                .reasons
                .push("cancelled: the run was stopped while the step executed; the next run executes it again".into()),
            StepStatus::Cached => {
                let source = match record.reused_from.as_deref() {
                    None => "(unknown)".to_owned(),
                    Some(run) if self.run_exists(run)? => run.to_owned(),
                    Some(run) => format!("{run} (no longer in the history: forgotten by `weir gc --keep-runs`)"),
                };
                explanation.reasons.push(format!(
                    "reused: its cache key {} matched the result of run {source}",
                    short(&record.cache_key.map(|k| k.to_string()).unwrap_or_default()),
                ));
            }
            _ => {
                let execution = Execution {
                    pipeline: &pipeline,
                    tenant: &tenant,
                    step,
                    before: started,
                    key_material: record.key_material.as_deref(),
                    params: &self.run_params(run_id)?,
                    forced: record.forced.as_deref(),
                };
                (explanation.compared_with, explanation.reasons) = self.why_executes(&execution)?;
            }
        }
        for attempt in &record.details.attempts {
            let entry = attempt.entry.as_deref().map(|entry| format!(" of entry `{entry}`")).unwrap_or_default();
            explanation
                .reasons
                .push(format!("attempt {}{entry} failed and was retried: {}", attempt.attempt, attempt.error_kind));
        }
        Ok(explanation)
    }

    /// Why `execution` of a step executes rather than reuses a result:
    /// what differs from the step's most recent earlier execution (by the
    /// same tenant, in a pipeline of the same name), and that run's id.
    pub(crate) fn why_executes(&self, execution: &Execution<'_>) -> Result<(Option<String>, Vec<String>)> {
        let mut reasons = Vec::new();
        if let Some(forced) = execution.forced {
            reasons.push(format!("forced by {forced}"));
        }
        let new = RecordedKey::of(execution.key_material);
        if !new.ignored_params.is_empty() {
            let names = new.ignored_params.join(", ");
            reasons.push(format!("ignored: {names} (ignored_params: not in its cache key)"));
        }
        let pipeline = execution.pipeline;
        let previous = self.execution_before(pipeline, execution.step, execution.tenant, execution.before)?;
        let Some((previous_run, previous)) = previous else {
            reasons.push(format!("first execution: no earlier run of `{pipeline}` executed this step"));
            return Ok((None, reasons));
        };
        let differences = self.key_changes(&previous_run, previous.key_material.as_deref(), execution.params, &new)?;
        if differences.is_empty() && execution.forced.is_none() {
            reasons.push(format!(
                "its cache key equals that of run {previous_run}, but no reusable result was found \
                 (that execution failed, or its entry or outputs are gone)"
            ));
        }
        reasons.extend(differences);
        Ok((Some(previous_run), reasons))
    }
}

/// An execution of a step, to explain.
pub(crate) struct Execution<'a> {
    /// The pipeline's name.
    pub pipeline: &'a str,
    /// The tenant running it.
    pub tenant: &'a str,
    /// The step.
    pub step: &'a str,
    /// When its run started: earlier executions are those of runs started before.
    pub before: f64,
    /// Its cache key material, as recorded.
    pub key_material: Option<&'a str>,
    /// Its run's pipeline parameters.
    pub params: &'a Value,
    /// What forced it to execute, if anything.
    pub forced: Option<&'a str>,
}

impl History {
    /// What differs, in words, from the key material `old` of an execution
    /// in run `old_run` to `new`, that of an execution in a run with
    /// pipeline parameters `new_params`.
    pub(crate) fn key_changes(
        &self,
        old_run: &str,
        old: Option<&str>,
        new_params: &Value,
        new: &RecordedKey,
    ) -> Result<Vec<String>> {
        let old = RecordedKey::of(old);
        let mut changes = Vec::new();
        if old.args != new.args {
            changes.extend(argument_params(&old.args, &new.args, &self.run_params(old_run)?, new_params));
        }
        changes.extend(differences(&old, new));
        Ok(changes)
    }

    /// Whether run `run_id` is still recorded.
    fn run_exists(&self, run_id: &str) -> Result<bool> {
        self.with(|conn| {
            conn.query_row("SELECT 1 FROM runs WHERE id = ?1", [run_id], |_| Ok(()))
                .optional()
                .map(|found| found.is_some())
                .map_err(db_error("reading a run"))
        })
    }

    /// The pipeline parameters a run was given.
    fn run_params(&self, run_id: &str) -> Result<Value> {
        let text: String = self.with(|conn| {
            conn.query_row("SELECT params FROM runs WHERE id = ?1", [run_id], |r| r.get(0))
                .map_err(db_error("reading a run"))
        })?;
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// The pipeline parameters that changed between two runs and show in the
/// step's arguments (the old value in the old ones, the new in the new), in
/// words: `param word: hello → bye (in the arguments)`.
fn argument_params(old_args: &[String], new_args: &[String], old_params: &Value, new_params: &Value) -> Vec<String> {
    let rendered = |value: &Value| match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let appears = |args: &[String], text: &str| args.iter().any(|arg| arg.contains(text));
    let Some(new_params) = new_params.as_object() else { return Vec::new() };
    new_params
        .iter()
        .filter_map(|(name, new)| {
            let old = old_params.get(name).filter(|old| *old != new)?;
            let (old, new) = (rendered(old), rendered(new));
            (appears(old_args, &old) && appears(new_args, &new))
                .then(|| format!("param {name}: {old} → {new} (in the arguments)"))
        })
        .collect()
}

/// `blake3:0123456789ab…`
fn short(digest: &str) -> String {
    match digest.get(..19) {
        Some(head) if digest.len() > 19 => format!("{head}…"),
        _ => digest.to_owned(),
    }
}

/// A parameter value in words.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "(none)".into(),
        other => other.to_string(),
    }
}

/// The parts of the key material that differ, in words.
fn differences(old: &RecordedKey, new: &RecordedKey) -> Vec<String> {
    let mut out = Vec::new();
    if old.format != new.format {
        out.push("the cache key format changed (a different weir version)".into());
    }
    match (&old.code, &new.code) {
        (a, b) if a == b => {}
        (Some(CodeKey::Wasm { module: a }), Some(CodeKey::Wasm { module: b })) => {
            out.push(format!("module changed: {} → {}", short(&a.to_string()), short(&b.to_string())))
        }
        (Some(CodeKey::Native { version: a, .. }), Some(CodeKey::Native { name, version: b })) => {
            out.push(format!("native step {name} version {a} → {b}"))
        }
        _ => out.push("the step's code changed kind (module or native step)".into()),
    }
    if old.args != new.args {
        out.push(format!("arguments changed: {} → {}", json(&old.args), json(&new.args)));
    }
    compare_maps(&old.params, &new.params, "param", &mut out, text);
    compare_maps(&old.inputs, &new.inputs, "input", &mut out, |artifact| short(&artifact.digest.to_string()));
    compare_maps(&old.natives, &new.natives, "native function", &mut out, |version| format!("version {version}"));
    if old.outputs != new.outputs {
        out.push(format!("declared outputs changed: {} → {}", json(&old.outputs), json(&new.outputs)));
    }
    if old.memory_limit != new.memory_limit {
        out.push(format!("memory limit {} → {} bytes", old.memory_limit, new.memory_limit));
    }
    out
}

/// A value as compact JSON.
fn json(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// Compares two maps key by key.
fn compare_maps<'m, V: PartialEq + 'm>(
    old: impl IntoIterator<Item = (&'m String, &'m V)>,
    new: impl IntoIterator<Item = (&'m String, &'m V)>,
    what: &str,
    out: &mut Vec<String>,
    show: impl Fn(&V) -> String,
) {
    let (old, new): (BTreeMap<_, _>, BTreeMap<_, _>) = (old.into_iter().collect(), new.into_iter().collect());
    let names: BTreeSet<&String> = old.keys().chain(new.keys()).copied().collect();
    for name in names {
        match (old.get(name), new.get(name)) {
            (Some(a), Some(b)) if a != b => out.push(format!("{what} {name}: {} → {}", show(a), show(b))),
            (Some(a), None) => out.push(format!("{what} {name} removed (was {})", show(a))),
            (None, Some(b)) => out.push(format!("{what} {name} added ({})", show(b))),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn differences_are_named_in_words() {
        let key = |value: Value| -> RecordedKey { serde_json::from_value(value).unwrap() };
        let old = json!({"format": 2, "code": {"Wasm": {"module": format!("blake3:{}", "a".repeat(64))}}, "args": ["x"],
            "params": {"learning_rate": 0.1, "epochs": 3}, "inputs": {"data": {"kind": "file", "digest": format!("blake3:{}", "1".repeat(64))}},
            "natives": {"gemm": 1}, "outputs": {"m": "file"}, "memory_limit": 10});
        let mut new = old.clone();
        new["params"]["learning_rate"] = json!(0.05);
        new["inputs"]["data"]["digest"] = json!(format!("blake3:{}", "2".repeat(64)));
        new["natives"]["gemm"] = json!(2);
        let found = differences(&key(old.clone()), &key(new.clone()));
        assert_eq!(
            found,
            [
                "param learning_rate: 0.1 → 0.05",
                "input data: blake3:111111111111… → blake3:222222222222…",
                "native function gemm: version 1 → version 2",
            ]
        );
        new["code"]["Wasm"]["module"] = json!(format!("blake3:{}", "b".repeat(64)));
        let args = |word: &str| ["tool.wasm".to_owned(), "upper".to_owned(), word.to_owned()];
        let (old_args, new_args) = (args("hello!"), args("bye!"));
        let params = |word: &str| json!({"word": word, "unused": 1});
        assert_eq!(
            argument_params(&old_args, &new_args, &params("hello"), &params("bye")),
            ["param word: hello → bye (in the arguments)"]
        );
        let found = differences(&key(old), &key(new));
        assert!(found[0].starts_with("module changed: blake3:aaaaaaaaaaaa… → blake3:bbbbbbbbbbbb…"), "{found:?}");
    }
}
