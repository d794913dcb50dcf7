//! Pipeline parameters: `${params.NAME}` templates and typed `--param` values.
//!
//! Parameter values are JSON values ([`serde_json::Value`]), because that is
//! how a step receives them (`/in/.params.json`).

use std::collections::BTreeMap;

use serde_json::Value;

/// Pipeline parameters by name.
pub type Params = BTreeMap<String, Value>;

const OPEN: &str = "${params.";

/// One piece of a template string.
enum Piece<'a> {
    Text(&'a str),
    /// `$${`, which stands for a literal `${`.
    Escaped,
    Param(&'a str),
}

/// Splits a template into literal text and `${params.NAME}` references.
/// `$${` escapes a literal `${`.
fn pieces(template: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(at) = rest.find("${") {
        if at > 0 && rest[..at].ends_with('$') {
            out.push(Piece::Text(&rest[..at - 1]));
            out.push(Piece::Escaped);
            rest = &rest[at + 2..];
            continue;
        }
        out.push(Piece::Text(&rest[..at]));
        let reference = &rest[at..];
        let Some(body) = reference.strip_prefix(OPEN) else {
            return Err(format!("bad reference in `{template}`: only `${{params.NAME}}` is supported"));
        };
        let Some(end) = body.find('}') else {
            return Err(format!("unclosed `${{` in `{template}`"));
        };
        out.push(Piece::Param(&body[..end]));
        rest = &body[end + 1..];
    }
    out.push(Piece::Text(rest));
    Ok(out)
}

/// The parameter names a value refers to through templates, in order.
pub(crate) fn references(value: &Value) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    collect_references(value, &mut names)?;
    Ok(names)
}

fn collect_references(value: &Value, names: &mut Vec<String>) -> Result<(), String> {
    match value {
        Value::String(text) => {
            for piece in pieces(text)? {
                if let Piece::Param(name) = piece {
                    names.push(name.to_owned());
                }
            }
        }
        Value::Array(items) => items.iter().try_for_each(|item| collect_references(item, names))?,
        Value::Object(map) => map.values().try_for_each(|item| collect_references(item, names))?,
        _ => {}
    }
    Ok(())
}

/// Substitutes parameters into `value`. A string that is exactly one
/// reference takes the parameter's value with its type; references inside
/// longer strings are replaced by the parameter's text.
pub(crate) fn resolve(value: &Value, params: &Params) -> Result<Value, String> {
    Ok(match value {
        Value::String(text) => resolve_string(text, params)?,
        Value::Array(items) => Value::Array(items.iter().map(|item| resolve(item, params)).collect::<Result<_, _>>()?),
        Value::Object(map) => Value::Object(
            map.iter().map(|(key, item)| Ok((key.clone(), resolve(item, params)?))).collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

fn resolve_string(text: &str, params: &Params) -> Result<Value, String> {
    let pieces = pieces(text)?;
    let lookup = |name: &str| params.get(name).ok_or_else(|| format!("no pipeline parameter named `{name}`"));
    if let [Piece::Text(""), Piece::Param(name), Piece::Text("")] = pieces.as_slice() {
        return lookup(name).cloned();
    }
    let mut out = String::new();
    for piece in pieces {
        match piece {
            Piece::Text(literal) => out.push_str(literal),
            Piece::Escaped => out.push_str("${"),
            Piece::Param(name) => out.push_str(&display(lookup(name)?)),
        }
    }
    Ok(Value::String(out))
}

/// Replaces references to the parameters in `bindings` by their bound
/// values, leaving every other reference and every `$${` escape as it is.
/// Used to inline a sub-pipeline, whose bindings may themselves be templates
/// over the outer pipeline's parameters.
pub(crate) fn rebind(value: &Value, bindings: &Params) -> Result<Value, String> {
    Ok(match value {
        Value::String(text) => {
            let pieces = pieces(text)?;
            if let [Piece::Text(""), Piece::Param(name), Piece::Text("")] = pieces.as_slice()
                && let Some(bound) = bindings.get(*name)
            {
                return Ok(bound.clone());
            }
            let mut out = String::new();
            for piece in pieces {
                match piece {
                    Piece::Text(literal) => out.push_str(literal),
                    Piece::Escaped => out.push_str("$${"),
                    Piece::Param(name) => match bindings.get(name) {
                        Some(bound) => out.push_str(&display(bound)),
                        None => out.push_str(&format!("{OPEN}{name}}}")),
                    },
                }
            }
            Value::String(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(|item| rebind(item, bindings)).collect::<Result<_, _>>()?),
        Value::Object(map) => Value::Object(
            map.iter().map(|(key, item)| Ok((key.clone(), rebind(item, bindings)?))).collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

/// Substitutes parameters into a string (an argv entry), always giving text.
pub(crate) fn render(template: &str, params: &Params) -> Result<String, String> {
    Ok(match resolve_string(template, params)? {
        Value::String(text) => text,
        other => display(&other),
    })
}

/// A parameter value as it appears inside text: strings bare, others as JSON.
fn display(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Parses `text` as a value of the same type as `default` (for `--param`).
///
/// Integers, floats, booleans and strings parse as such; lists and tables are
/// written as TOML values (`[1, 2]`, `{ a = 1 }`).
pub fn parse_like(default: &Value, text: &str) -> Result<Value, String> {
    let mismatch = |kind: &str| format!("`{text}` is not {kind}, the type of the default ({default})");
    match default {
        Value::String(_) => Ok(Value::String(text.to_owned())),
        Value::Bool(_) => text.parse::<bool>().map(Value::Bool).map_err(|_| mismatch("a boolean (true or false)")),
        Value::Number(number) if number.is_f64() => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| mismatch("a float")),
        Value::Number(_) => text.parse::<i64>().map(Value::from).map_err(|_| mismatch("an integer")),
        Value::Array(_) | Value::Object(_) | Value::Null => {
            let parsed = parse_toml_value(text).map_err(|why| format!("`{text}`: {why}"))?;
            if std::mem::discriminant(&parsed) == std::mem::discriminant(default) {
                Ok(parsed)
            } else {
                Err(mismatch(if default.is_array() { "a list" } else { "a table" }))
            }
        }
    }
}

/// Parses one TOML value written inline.
fn parse_toml_value(text: &str) -> Result<Value, String> {
    let table: toml::Table = format!("v = {text}").parse().map_err(|err: toml::de::Error| err.message().to_owned())?;
    toml_to_json(&table["v"])
}

/// Converts a TOML value to JSON; TOML date-times are rejected.
pub(crate) fn toml_to_json(value: &toml::Value) -> Result<Value, String> {
    Ok(match value {
        toml::Value::String(text) => Value::String(text.clone()),
        toml::Value::Integer(int) => Value::from(*int),
        toml::Value::Float(float) => serde_json::Number::from_f64(*float)
            .map(Value::Number)
            .ok_or_else(|| format!("{float} cannot be a parameter (not a finite number)"))?,
        toml::Value::Boolean(flag) => Value::Bool(*flag),
        toml::Value::Datetime(when) => {
            return Err(format!("date-time {when} cannot be a parameter; quote it as a string"));
        }
        toml::Value::Array(items) => Value::Array(items.iter().map(toml_to_json).collect::<Result<_, _>>()?),
        toml::Value::Table(table) => Value::Object(
            table.iter().map(|(key, item)| Ok((key.clone(), toml_to_json(item)?))).collect::<Result<_, String>>()?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn params() -> Params {
        [("word".to_owned(), json!("hello")), ("n".to_owned(), json!(3)), ("rate".to_owned(), json!(0.5))].into()
    }

    #[test]
    fn whole_reference_keeps_type() {
        assert_eq!(resolve(&json!("${params.n}"), &params()).unwrap(), json!(3));
        assert_eq!(resolve(&json!({"a": ["${params.rate}"]}), &params()).unwrap(), json!({"a": [0.5]}));
    }

    #[test]
    fn embedded_reference_renders_text() {
        assert_eq!(resolve(&json!("say ${params.word} ${params.n}x"), &params()).unwrap(), json!("say hello 3x"));
        assert_eq!(render("${params.n}", &params()).unwrap(), "3");
        assert_eq!(render("cost: $${params.n}", &params()).unwrap(), "cost: ${params.n}");
    }

    #[test]
    fn unknown_and_malformed_references_are_errors() {
        assert!(resolve(&json!("${params.nope}"), &params()).unwrap_err().contains("`nope`"));
        assert!(references(&json!("${env.HOME}")).unwrap_err().contains("only `${params.NAME}`"));
        assert!(references(&json!("${params.word")).unwrap_err().contains("unclosed"));
        assert_eq!(references(&json!(["${params.a}", {"x": "${params.b}-${params.c}"}])).unwrap(), ["a", "b", "c"]);
    }

    #[test]
    fn rebinding_substitutes_bound_names_and_keeps_the_rest() {
        let bindings: Params = [("seed".to_owned(), json!("${params.outer_seed}")), ("n".to_owned(), json!(5))].into();
        assert_eq!(rebind(&json!("${params.seed}"), &bindings).unwrap(), json!("${params.outer_seed}"));
        assert_eq!(rebind(&json!("${params.n}"), &bindings).unwrap(), json!(5));
        assert_eq!(
            rebind(&json!("n=${params.n} m=${params.m} $${x}"), &bindings).unwrap(),
            json!("n=5 m=${params.m} $${x}")
        );
        assert_eq!(
            rebind(&json!({"a": ["s${params.seed}"]}), &bindings).unwrap(),
            json!({"a": ["s${params.outer_seed}"]})
        );
    }

    #[test]
    fn overrides_parse_to_the_default_type() {
        assert_eq!(parse_like(&json!(1), "42").unwrap(), json!(42));
        assert_eq!(parse_like(&json!(0.1), "0.05").unwrap(), json!(0.05));
        assert_eq!(parse_like(&json!(0.1), "1").unwrap(), json!(1.0));
        assert_eq!(parse_like(&json!(false), "true").unwrap(), json!(true));
        assert_eq!(parse_like(&json!("x"), "42").unwrap(), json!("42"));
        assert_eq!(parse_like(&json!([1]), "[1, 2]").unwrap(), json!([1, 2]));
        assert!(parse_like(&json!(1), "1.5").unwrap_err().contains("not an integer"));
        assert!(parse_like(&json!(true), "yes").unwrap_err().contains("not a boolean"));
        assert!(parse_like(&json!([1]), "{ a = 1 }").unwrap_err().contains("not a list"));
    }
}
