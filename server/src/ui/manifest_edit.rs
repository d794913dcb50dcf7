//! The designer's edits of a manifest, made on its TOML text with
//! `toml_edit`: an edit changes only what it names, so comments, order and
//! layout stay as the author wrote them, and a manifest opened and saved
//! without an edit is the same bytes (the same digest, the same version).
//! Also the model the designer draws: the steps as the manifest writes them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use toml_edit::{DocumentMut, InlineTable, Item, TableLike, Value};

use crate::problem::Problem;

/// One edit the designer asks for.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Edit {
    /// A new step running `module`.
    AddStep { step: String, module: String },
    /// Removes a step (steps reading its outputs are then reported).
    RemoveStep { step: String },
    /// Feeds `source` (`inputs.NAME` or `STEP.OUTPUT`) to input `input` of `step`.
    Connect { step: String, input: String, source: String },
    /// Removes input `input` of `step`.
    Disconnect { step: String, input: String },
    /// Declares output `output` of `step` as `kind` (`file`, `dir`), or removes it (`None`).
    SetOutput { step: String, output: String, kind: Option<String> },
    /// Sets the native functions `step` may call (none: removes the list).
    SetNatives { step: String, natives: Vec<String> },
    /// Sets the arguments `step` runs with, or removes them (`None`).
    SetArgs { step: String, args: Option<Vec<String>> },
    /// Sets parameter `name` of `step` to a TOML value, or removes it (`None`).
    SetParam { step: String, name: String, value: Option<String> },
    /// Sets limit `name` of `step` (`memory`, `timeout`, …), or removes it (`None`).
    SetLimit { step: String, name: String, value: Option<String> },
}

/// A step as the manifest writes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepModel {
    /// Its name.
    pub name: String,
    /// What it runs: `module`, `pipeline`, `crate`, or `other`.
    pub kind: String,
    /// The module, sub-pipeline or crate path.
    pub code: Option<String>,
    /// The arguments it runs with.
    pub args: Vec<String>,
    /// The native functions it may call.
    pub natives: Vec<String>,
    /// Input name → source (`inputs.NAME` or `STEP.OUTPUT`).
    pub inputs: BTreeMap<String, String>,
    /// Output name → kind; for a sub-pipeline, the outputs other steps read.
    pub outputs: BTreeMap<String, String>,
    /// Parameter name → TOML value.
    pub params: BTreeMap<String, String>,
    /// Limit name → TOML value.
    pub limits: BTreeMap<String, String>,
}

/// The pipeline as the designer draws it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Model {
    /// The pipeline's name.
    pub name: String,
    /// Its inputs.
    pub inputs: Vec<String>,
    /// Its steps, in the manifest's order.
    pub steps: Vec<StepModel>,
}

/// The limits a step may set (as the manifest spells them).
const LIMITS: [&str; 7] = ["memory", "timeout", "fuel", "stack", "output", "files", "log"];

fn parse(manifest: &str) -> Result<DocumentMut, Problem> {
    manifest.parse().map_err(|err| Problem::bad_field("manifest", format!("not valid TOML: {err}")))
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(text) => text.value().clone(),
        other => other.to_string().trim().to_owned(),
    }
}

fn entries(table: Option<&dyn TableLike>) -> BTreeMap<String, String> {
    let Some(table) = table else { return BTreeMap::new() };
    table.iter().filter_map(|(key, item)| item.as_value().map(|value| (key.to_owned(), text_of(value)))).collect()
}

fn literals(table: Option<&dyn TableLike>) -> BTreeMap<String, String> {
    let Some(table) = table else { return BTreeMap::new() };
    table
        .iter()
        .filter_map(|(key, item)| item.as_value().map(|value| (key.to_owned(), value.to_string().trim().to_owned())))
        .collect()
}

/// The model of `manifest`.
pub fn model(manifest: &str) -> Result<Model, Problem> {
    let document = parse(manifest)?;
    let name = document.get("name").and_then(Item::as_str).unwrap_or_default().to_owned();
    let inputs = document
        .get("inputs")
        .and_then(Item::as_table_like)
        .map(|table| table.iter().map(|(key, _)| key.to_owned()).collect())
        .unwrap_or_default();
    let mut steps = Vec::new();
    if let Some(table) = document.get("steps").and_then(Item::as_table_like) {
        for (name, item) in table.iter() {
            let Some(step) = item.as_table_like() else { continue };
            let (kind, code) = ["module", "pipeline", "crate"]
                .iter()
                .find_map(|kind| step.get(kind).and_then(Item::as_str).map(|code| (*kind, Some(code.to_owned()))))
                .unwrap_or(("other", None));
            steps.push(StepModel {
                name: name.to_owned(),
                kind: kind.to_owned(),
                code,
                args: step
                    .get("args")
                    .and_then(Item::as_array)
                    .map(|args| args.iter().map(text_of).collect())
                    .unwrap_or_default(),
                natives: step
                    .get("natives")
                    .and_then(Item::as_array)
                    .map(|natives| natives.iter().map(text_of).collect())
                    .unwrap_or_default(),
                inputs: entries(step.get("inputs").and_then(Item::as_table_like)),
                outputs: entries(step.get("outputs").and_then(Item::as_table_like)),
                params: literals(step.get("params").and_then(Item::as_table_like)),
                limits: literals(step.get("limits").and_then(Item::as_table_like)),
            });
        }
    }
    // A sub-pipeline declares its outputs in its own file: show those the
    // other steps read.
    let read: Vec<(String, String)> = steps
        .iter()
        .flat_map(|step| step.inputs.values())
        .filter_map(|source| source.split_once('.'))
        .map(|(step, output)| (step.to_owned(), output.to_owned()))
        .collect();
    for step in steps.iter_mut().filter(|step| step.kind == "pipeline") {
        for (producer, output) in &read {
            if *producer == step.name {
                step.outputs.entry(output.clone()).or_insert_with(|| "pipeline output".into());
            }
        }
    }
    Ok(Model { name, inputs, steps })
}

fn check_name(field: &str, name: &str) -> Result<(), Problem> {
    let fine =
        !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if fine {
        Ok(())
    } else {
        Err(Problem::bad_field(field, format!("`{name}` is not a name: use 1 to 64 letters, digits, `_` or `-`")))
    }
}

/// Step `step`'s table, which must exist.
fn step_table<'a>(document: &'a mut DocumentMut, step: &str) -> Result<&'a mut dyn TableLike, Problem> {
    document
        .get_mut("steps")
        .and_then(Item::as_table_like_mut)
        .and_then(|steps| steps.get_mut(step))
        .and_then(Item::as_table_like_mut)
        .ok_or_else(|| Problem::bad_field("step", format!("the manifest has no step `{step}`")))
}

/// Sub-table `name` of `table` (`inputs`, `params`, …), made an inline
/// table when missing.
fn sub_table<'a>(table: &'a mut dyn TableLike, name: &str) -> Result<&'a mut dyn TableLike, Problem> {
    if table.get(name).is_none() {
        table.insert(name, Item::Value(Value::InlineTable(InlineTable::new())));
    }
    table
        .get_mut(name)
        .and_then(Item::as_table_like_mut)
        .ok_or_else(|| Problem::bad_field(name, format!("`{name}` of the step is not a table")))
}

/// Sets (or, for `None`, removes) `key` of `table`; removing the last key
/// of a sub-table removes the sub-table.
fn set(table: &mut dyn TableLike, sub: &str, key: &str, value: Option<Value>) -> Result<(), Problem> {
    match value {
        Some(value) => {
            let entries = sub_table(table, sub)?;
            match entries.get_mut(key) {
                // Keeps the decoration (spacing, comments) of the old value.
                Some(Item::Value(old)) => {
                    let decor = old.decor().clone();
                    *old = value;
                    *old.decor_mut() = decor;
                }
                _ => {
                    entries.insert(key, Item::Value(value));
                }
            }
        }
        None => {
            if let Some(entries) = table.get_mut(sub).and_then(Item::as_table_like_mut) {
                entries.remove(key);
                if entries.is_empty() {
                    table.remove(sub);
                }
            }
        }
    }
    Ok(())
}

/// Sets (or, for `None`, removes) list `key` of a step's `table`.
fn set_list(table: &mut dyn TableLike, key: &str, list: Option<&[String]>) -> Result<(), Problem> {
    let Some(list) = list else {
        table.remove(key);
        return Ok(());
    };
    let array = Value::Array(list.iter().map(String::as_str).collect());
    match table.get_mut(key) {
        Some(Item::Value(old)) => {
            let decor = old.decor().clone();
            *old = array;
            *old.decor_mut() = decor;
        }
        _ => {
            table.insert(key, Item::Value(array));
        }
    }
    Ok(())
}

/// A TOML value from the text of a form field, naming `field` when it is none.
fn toml_value(field: &str, text: &str) -> Result<Value, Problem> {
    text.trim().parse::<Value>().map_err(|err| {
        Problem::bad_field(field, format!("`{text}` is not a TOML value (quote text: \"like this\"): {err}"))
    })
}

/// `manifest` with `edit` made.
pub fn apply(manifest: &str, edit: &Edit) -> Result<String, Problem> {
    let mut document = parse(manifest)?;
    match edit {
        Edit::AddStep { step, module } => {
            check_name("step", step)?;
            if module.trim().is_empty() {
                return Err(Problem::bad_field("module", "choose the module the step runs"));
            }
            let steps = document.entry("steps").or_insert_with(|| {
                let mut table = toml_edit::Table::new();
                table.set_implicit(true);
                Item::Table(table)
            });
            let steps =
                steps.as_table_like_mut().ok_or_else(|| Problem::bad_field("steps", "`steps` is not a table"))?;
            if steps.contains_key(step) {
                return Err(Problem::bad_field("step", format!("there is a step `{step}` already")));
            }
            let mut table = toml_edit::Table::new();
            table.insert("module", toml_edit::value(module.trim()));
            steps.insert(step, Item::Table(table));
        }
        Edit::RemoveStep { step } => {
            step_table(&mut document, step)?;
            if let Some(steps) = document.get_mut("steps").and_then(Item::as_table_like_mut) {
                steps.remove(step);
            }
        }
        Edit::Connect { step, input, source } => {
            check_name("input", input)?;
            let known_form =
                source.split_once('.').is_some_and(|(from, name)| !from.is_empty() && !name.is_empty() && from != step);
            if !known_form {
                return Err(Problem::bad_field(
                    "source",
                    format!("`{source}` is not `inputs.NAME` or `STEP.OUTPUT` of another step"),
                ));
            }
            set(step_table(&mut document, step)?, "inputs", input, Some(Value::from(source.as_str())))?;
        }
        Edit::Disconnect { step, input } => set(step_table(&mut document, step)?, "inputs", input, None)?,
        Edit::SetOutput { step, output, kind } => {
            check_name("output", output)?;
            if let Some(kind) = kind
                && kind != "file"
                && kind != "dir"
            {
                return Err(Problem::bad_field("kind", format!("`{kind}` is not `file` or `dir`")));
            }
            let value = kind.as_deref().map(Value::from);
            set(step_table(&mut document, step)?, "outputs", output, value)?;
        }
        Edit::SetArgs { step, args } => set_list(step_table(&mut document, step)?, "args", args.as_deref())?,
        Edit::SetNatives { step, natives } => {
            for native in natives {
                check_name("natives", native)?;
            }
            let natives = (!natives.is_empty()).then_some(natives.as_slice());
            set_list(step_table(&mut document, step)?, "natives", natives)?;
        }
        Edit::SetParam { step, name, value } => {
            check_name("name", name)?;
            let field = format!("params.{name}");
            let value = value
                .as_deref()
                .filter(|text| !text.trim().is_empty())
                .map(|text| toml_value(&field, text))
                .transpose()?;
            set(step_table(&mut document, step)?, "params", name, value)?;
        }
        Edit::SetLimit { step, name, value } => {
            if !LIMITS.contains(&name.as_str()) {
                return Err(Problem::bad_field(
                    "name",
                    format!("`{name}` is not a limit (one of {})", LIMITS.join(", ")),
                ));
            }
            let field = format!("limits.{name}");
            // `256MiB` and `5m` are written as text, numbers as numbers.
            let value = value
                .as_deref()
                .map(str::trim)
                .filter(|text| !text.is_empty())
                .map(|text| toml_value(&field, text).or_else(|_| Ok::<_, Problem>(Value::from(text))))
                .transpose()?;
            set(step_table(&mut document, step)?, "limits", name, value)?;
        }
    }
    Ok(document.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"# A comment the designer keeps.
name = "demo"

[inputs]
text = "data/in.txt"

[steps.upper]
module = "build/tool.wasm"   # the tool
inputs = { text = "inputs.text" }
outputs = { result = "file" }
params = { times = 2 }
"#;

    #[test]
    fn the_model_is_the_manifest_as_written() {
        let model = model(MANIFEST).unwrap();
        assert_eq!(model.name, "demo");
        assert_eq!(model.inputs, ["text"]);
        let step = &model.steps[0];
        assert_eq!(
            (step.name.as_str(), step.kind.as_str(), step.code.as_deref()),
            ("upper", "module", Some("build/tool.wasm"))
        );
        assert_eq!(step.inputs["text"], "inputs.text");
        assert_eq!(step.outputs["result"], "file");
        assert_eq!(step.params["times"], "2");
    }

    #[test]
    fn edits_change_only_what_they_name() {
        let added = apply(MANIFEST, &Edit::AddStep { step: "count".into(), module: "build/tool.wasm".into() }).unwrap();
        let wired = apply(
            &added,
            &Edit::Connect { step: "count".into(), input: "words".into(), source: "upper.result".into() },
        )
        .unwrap();
        let param =
            apply(&wired, &Edit::SetParam { step: "upper".into(), name: "times".into(), value: Some("3".into()) })
                .unwrap();
        let argued =
            apply(&param, &Edit::SetArgs { step: "count".into(), args: Some(vec!["count".into(), "--all".into()]) })
                .unwrap();
        assert_eq!(model(&argued).unwrap().steps[1].args, ["count", "--all"]);
        let param = apply(&argued, &Edit::SetArgs { step: "count".into(), args: None }).unwrap();
        let limited =
            apply(&param, &Edit::SetLimit { step: "count".into(), name: "memory".into(), value: Some("64MiB".into()) })
                .unwrap();
        assert!(limited.starts_with("# A comment the designer keeps.\nname = \"demo\""), "{limited}");
        assert!(limited.contains("module = \"build/tool.wasm\"   # the tool"), "{limited}");
        assert!(limited.contains("params = { times = 3 }"), "{limited}");
        assert!(limited.contains("[steps.count]\nmodule = \"build/tool.wasm\"\ninputs = { words = \"upper.result\" }\nlimits = { memory = \"64MiB\" }\n"), "{limited}");
        let model = model(&limited).unwrap();
        assert_eq!(model.steps[1].inputs["words"], "upper.result");
        // Undoing each edit gives back the manifest's bytes.
        let back = apply(&limited, &Edit::RemoveStep { step: "count".into() }).unwrap();
        let back =
            apply(&back, &Edit::SetParam { step: "upper".into(), name: "times".into(), value: Some("2".into()) })
                .unwrap();
        assert_eq!(back, MANIFEST);
    }

    #[test]
    fn bad_edits_name_their_field() {
        let cases = [
            (Edit::AddStep { step: "upper".into(), module: "m.wasm".into() }, "step"),
            (Edit::AddStep { step: "no spaces".into(), module: "m.wasm".into() }, "step"),
            (Edit::Connect { step: "upper".into(), input: "x".into(), source: "nodot".into() }, "source"),
            (Edit::Connect { step: "missing".into(), input: "x".into(), source: "inputs.text".into() }, "step"),
            (
                Edit::SetParam { step: "upper".into(), name: "times".into(), value: Some("not toml".into()) },
                "params.times",
            ),
            (Edit::SetLimit { step: "upper".into(), name: "speed".into(), value: Some("1".into()) }, "name"),
            (Edit::SetOutput { step: "upper".into(), output: "o".into(), kind: Some("blob".into()) }, "kind"),
        ];
        for (edit, field) in cases {
            let problem = apply(MANIFEST, &edit).unwrap_err();
            assert_eq!(problem.field.as_deref(), Some(field), "{edit:?}: {}", problem.detail);
        }
    }
}
