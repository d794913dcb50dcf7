//! `weir explain`: why a step ran or was reused, found by comparing its cache
//! key material with that of the step's most recent earlier execution.

use std::collections::BTreeSet;

use rusqlite::OptionalExtension;
use serde::Serialize;
use serde_json::Value;

use super::{History, db_error};
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
        let pipeline: String = self.with(|conn| {
            conn.query_row("SELECT pipeline FROM runs WHERE id = ?1", [run_id], |r| r.get(0))
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
                if let Some(forced) = &record.forced {
                    explanation.reasons.push(format!("forced by {forced}"));
                }
                let material: Value =
                    record.key_material.as_deref().and_then(|t| serde_json::from_str(t).ok()).unwrap_or_default();
                if let Some(ignored) = material["ignored_params"].as_array().filter(|names| !names.is_empty()) {
                    let names: Vec<String> = ignored.iter().map(text).collect();
                    explanation
                        .reasons
                        .push(format!("ignored: {} (ignored_params: not in its cache key)", names.join(", ")));
                }
                match self.previous_execution(&pipeline, step, run_id)? {
                    None => explanation
                        .reasons
                        .push(format!("first execution: no earlier run of `{pipeline}` executed this step")),
                    Some((previous_run, previous)) => {
                        let parse = |text: &Option<String>| -> Value {
                            text.as_deref().and_then(|t| serde_json::from_str(t).ok()).unwrap_or(Value::Null)
                        };
                        let (old, new) = (parse(&previous.key_material), parse(&record.key_material));
                        let mut differences = Vec::new();
                        if old["args"] != new["args"] {
                            let params = |run: &str| self.run_params(run);
                            differences.extend(argument_params(
                                &old["args"],
                                &new["args"],
                                &params(&previous_run)?,
                                &params(run_id)?,
                            ));
                        }
                        differences.extend(self::differences(&old, &new));
                        if differences.is_empty() && record.forced.is_none() {
                            explanation.reasons.push(format!(
                                "its cache key equals that of run {previous_run}, but no reusable result was found \
                                 (that execution failed, or its entry or outputs are gone)"
                            ));
                        }
                        explanation.reasons.extend(differences);
                        explanation.compared_with = Some(previous_run);
                    }
                }
            }
        }
        Ok(explanation)
    }
}

impl History {
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
fn argument_params(old_args: &Value, new_args: &Value, old_params: &Value, new_params: &Value) -> Vec<String> {
    let rendered = |value: &Value| match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let appears = |args: &Value, text: &str| {
        args.as_array().is_some_and(|args| args.iter().any(|arg| arg.as_str().is_some_and(|arg| arg.contains(text))))
    };
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

fn text(value: &Value) -> String {
    match value {
        Value::String(s) if s.starts_with("blake3:") => short(s),
        Value::String(s) => s.clone(),
        Value::Null => "(none)".into(),
        other => other.to_string(),
    }
}

/// The parts of the key material that differ, in words.
fn differences(old: &Value, new: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if old["format"] != new["format"] {
        out.push("the cache key format changed (a different weir version)".into());
    }
    match (&old["code"], &new["code"]) {
        (a, b) if a == b => {}
        (a, b) if a.get("Wasm").is_some() && b.get("Wasm").is_some() => {
            out.push(format!("module changed: {} → {}", text(&a["Wasm"]["module"]), text(&b["Wasm"]["module"])))
        }
        (a, b) if a.get("Native").is_some() && b.get("Native").is_some() => out.push(format!(
            "native step {} version {} → {}",
            text(&b["Native"]["name"]),
            a["Native"]["version"],
            b["Native"]["version"]
        )),
        _ => out.push("the step's code changed kind (module or native step)".into()),
    }
    if old["args"] != new["args"] {
        out.push(format!("arguments changed: {} → {}", old["args"], new["args"]));
    }
    compare_maps(&old["params"], &new["params"], "param", &mut out, text);
    compare_maps(&old["inputs"], &new["inputs"], "input", &mut out, |v| text(&v["digest"]));
    compare_maps(&old["natives"], &new["natives"], "native function", &mut out, |v| format!("version {v}"));
    if old["outputs"] != new["outputs"] {
        out.push(format!("declared outputs changed: {} → {}", old["outputs"], new["outputs"]));
    }
    if old["memory_limit"] != new["memory_limit"] {
        out.push(format!("memory limit {} → {} bytes", old["memory_limit"], new["memory_limit"]));
    }
    out
}

/// Compares two JSON objects key by key.
fn compare_maps(old: &Value, new: &Value, what: &str, out: &mut Vec<String>, show: impl Fn(&Value) -> String) {
    let empty = serde_json::Map::new();
    let (old, new) = (old.as_object().unwrap_or(&empty), new.as_object().unwrap_or(&empty));
    let names: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
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
        let old = json!({"format": 2, "code": {"Wasm": {"module": "blake3:aaaaaaaaaaaaaaaaaaaa"}}, "args": ["x"],
            "params": {"learning_rate": 0.1, "epochs": 3}, "inputs": {"data": {"kind": "file", "digest": "blake3:111111111111111111"}},
            "natives": {"gemm": 1}, "outputs": {"m": "file"}, "memory_limit": 10});
        let mut new = old.clone();
        new["params"]["learning_rate"] = json!(0.05);
        new["inputs"]["data"]["digest"] = json!("blake3:222222222222222222");
        new["natives"]["gemm"] = json!(2);
        let found = differences(&old, &new);
        assert_eq!(
            found,
            [
                "param learning_rate: 0.1 → 0.05",
                "input data: blake3:111111111111… → blake3:222222222222…",
                "native function gemm: version 1 → version 2",
            ]
        );
        new["code"]["Wasm"]["module"] = json!("blake3:bbbbbbbbbbbbbbbbbbbb");
        let (old_args, new_args) = (json!(["tool.wasm", "upper", "hello!"]), json!(["tool.wasm", "upper", "bye!"]));
        let params = |word: &str| json!({"word": word, "unused": 1});
        assert_eq!(
            argument_params(&old_args, &new_args, &params("hello"), &params("bye")),
            ["param word: hello → bye (in the arguments)"]
        );
        assert!(differences(&old, &new)[0].starts_with("module changed: blake3:aaaaaaaaaaaa… → blake3:bbbbbbbbbbbb…"));
    }
}
