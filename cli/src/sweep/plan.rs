//! The runs of a sweep: every combination of the values given (a grid), or
//! combinations drawn at random, where a parameter may also be a range.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::Value;

/// The most runs one sweep makes.
pub(crate) const MAX_RUNS: usize = 1000;

/// One run's parameters, as `--param NAME=VALUE` texts.
pub(crate) type Combination = Vec<(String, String)>;

/// A swept parameter and the values it takes.
#[derive(Debug, PartialEq)]
pub(crate) struct Axis {
    name: String,
    values: Values,
}

#[derive(Debug, PartialEq)]
enum Values {
    /// These values, in order.
    List(Vec<String>),
    /// Drawn from `low` to `high` (both included), evenly or on a log scale;
    /// whole numbers for an integer parameter.
    Range { low: f64, high: f64, log: bool, integer: bool },
}

impl Axis {
    /// Reads `--param NAME=TEXT` for parameter `name`, whose default is
    /// `default`: `V1,V2,…` (commas inside `[…]`, `{…}` or quotes do not
    /// split), or `LOW..HIGH` / `log:LOW..HIGH` for a numeric parameter.
    pub(crate) fn parse(name: &str, text: &str, default: &Value) -> Result<Axis, String> {
        let (log, range) = match text.strip_prefix("log:") {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let bounds = range
            .split_once("..")
            .and_then(|(low, high)| Some((low.trim().parse::<f64>().ok()?, high.trim().parse::<f64>().ok()?)));
        let values = match bounds {
            Some((low, high)) => {
                let integer = default.is_i64() || default.is_u64();
                if !default.is_number() {
                    return Err(format!(
                        "--param {name}={text}: a range needs a numeric parameter; the default is {default}"
                    ));
                }
                if !low.is_finite() || !high.is_finite() || low > high || (log && low <= 0.0) {
                    let need = if log { "0 < LOW <= HIGH" } else { "LOW <= HIGH" };
                    return Err(format!("--param {name}={text}: a range needs {need}"));
                }
                Values::Range { low, high, log, integer }
            }
            None if log => return Err(format!("--param {name}={text}: `log:` takes a range, LOW..HIGH")),
            None => {
                let values = split_values(text);
                if values.iter().any(String::is_empty) {
                    return Err(format!("--param {name}={text}: an empty value (two commas, or one at an end)"));
                }
                Values::List(values)
            }
        };
        Ok(Axis { name: name.to_owned(), values })
    }
}

/// Every combination of the axes' values, the first axis varying slowest.
pub(crate) fn grid(axes: &[Axis]) -> Result<Vec<Combination>, String> {
    let mut combinations: Vec<Combination> = vec![Vec::new()];
    for axis in axes {
        let Values::List(values) = &axis.values else {
            return Err(format!("--param {}: a range is drawn from, with --random N; a grid takes a list", axis.name));
        };
        if combinations.len() * values.len() > MAX_RUNS {
            return Err(format!(
                "the grid has more than {MAX_RUNS} combinations; sweep fewer values, or draw --random N"
            ));
        }
        combinations = combinations
            .into_iter()
            .flat_map(|base| {
                values.iter().map(move |value| {
                    let mut combination = base.clone();
                    combination.push((axis.name.clone(), value.clone()));
                    combination
                })
            })
            .collect();
    }
    Ok(combinations)
}

/// `count` combinations drawn with a generator seeded by `seed` (the same
/// seed draws the same runs): a value of each list, a number in each range.
pub(crate) fn random(axes: &[Axis], count: usize, seed: u64) -> Result<Vec<Combination>, String> {
    if count == 0 || count > MAX_RUNS {
        return Err(format!("--random {count}: draw from 1 to {MAX_RUNS} runs"));
    }
    let mut rng = StdRng::seed_from_u64(seed);
    Ok((0..count)
        .map(|_| axes.iter().map(|axis| (axis.name.clone(), draw(&axis.values, &mut rng))).collect())
        .collect())
}

fn draw(values: &Values, rng: &mut StdRng) -> String {
    match *values {
        Values::List(ref values) => values[rng.random_range(0..values.len())].clone(),
        Values::Range { low, high, log, integer } => {
            let unit: f64 = rng.random();
            let value = if log { (low.ln() + unit * (high.ln() - low.ln())).exp() } else { low + unit * (high - low) };
            if integer {
                format!("{}", value.round().clamp(low.ceil(), high.floor()) as i64)
            } else {
                format!("{}", significant(value, 4))
            }
        }
    }
}

/// `value` rounded to `digits` significant digits (a drawn learning rate
/// reads 0.01234, not 0.012341234961).
fn significant(value: f64, digits: i32) -> f64 {
    if value == 0.0 || !value.is_finite() {
        return value;
    }
    let scale = 10f64.powi(digits - 1 - value.abs().log10().floor() as i32);
    (value * scale).round() / scale
}

/// Splits `text` at the commas outside brackets, braces and quotes.
fn split_values(text: &str) -> Vec<String> {
    let (mut values, mut current, mut depth, mut quote) = (Vec::new(), String::new(), 0i32, None);
    for c in text.chars() {
        match (c, quote) {
            ('"' | '\'', None) => quote = Some(c),
            (c, Some(open)) if c == open => quote = None,
            ('[' | '{', None) => depth += 1,
            (']' | '}', None) => depth -= 1,
            (',', None) if depth == 0 => {
                values.push(std::mem::take(&mut current).trim().to_owned());
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    values.push(current.trim().to_owned());
    values
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names(combinations: &[Combination]) -> Vec<String> {
        combinations
            .iter()
            .map(|c| c.iter().map(|(name, value)| format!("{name}={value}")).collect::<Vec<_>>().join(" "))
            .collect()
    }

    #[test]
    fn a_grid_is_every_combination_the_first_parameter_slowest() {
        let axes = [
            Axis::parse("lr", "0.01,0.02", &json!(0.1)).unwrap(),
            Axis::parse("epochs", "20, 40,60", &json!(10)).unwrap(),
        ];
        assert_eq!(
            names(&grid(&axes).unwrap()),
            [
                "lr=0.01 epochs=20",
                "lr=0.01 epochs=40",
                "lr=0.01 epochs=60",
                "lr=0.02 epochs=20",
                "lr=0.02 epochs=40",
                "lr=0.02 epochs=60"
            ]
        );
    }

    #[test]
    fn commas_inside_lists_tables_and_quotes_do_not_split() {
        let axis = Axis::parse("tags", "[1, 2],[3],'a,b'", &json!([])).unwrap();
        assert_eq!(axis.values, Values::List(vec!["[1, 2]".into(), "[3]".into(), "'a,b'".into()]));
    }

    #[test]
    fn random_draws_stay_in_their_ranges_and_repeat_with_the_seed() {
        let axes = [
            Axis::parse("lr", "log:0.001..0.1", &json!(0.01)).unwrap(),
            Axis::parse("epochs", "10..50", &json!(20)).unwrap(),
            Axis::parse("optimizer", "sgd,adam", &json!("sgd")).unwrap(),
        ];
        let drawn = random(&axes, 200, 7).unwrap();
        for combination in &drawn {
            let lr: f64 = combination[0].1.parse().unwrap();
            let epochs: i64 = combination[1].1.parse().unwrap();
            assert!((0.001..=0.1).contains(&lr), "{combination:?}");
            assert!((10..=50).contains(&epochs), "{combination:?}");
            assert!(["sgd", "adam"].contains(&combination[2].1.as_str()));
        }
        // A log scale puts about half of the draws below the geometric middle (0.01).
        let below = drawn.iter().filter(|c| c[0].1.parse::<f64>().unwrap() < 0.01).count();
        assert!((60..=140).contains(&below), "{below} of 200 below 0.01");
        assert_eq!(drawn, random(&axes, 200, 7).unwrap());
        assert_ne!(drawn, random(&axes, 200, 8).unwrap());
    }

    #[test]
    fn bad_sweeps_say_what_is_wrong() {
        let range = Axis::parse("lr", "0.1..0.01", &json!(0.1)).unwrap_err();
        assert!(range.contains("LOW <= HIGH"), "{range}");
        let text = Axis::parse("name", "1..2", &json!("x")).unwrap_err();
        assert!(text.contains("needs a numeric parameter"), "{text}");
        let log = Axis::parse("lr", "log:0..1", &json!(0.1)).unwrap_err();
        assert!(log.contains("0 < LOW"), "{log}");
        assert!(Axis::parse("lr", "0.1,,0.2", &json!(0.1)).unwrap_err().contains("empty value"));
        let ranged = [Axis::parse("lr", "0..1", &json!(0.1)).unwrap()];
        assert!(grid(&ranged).unwrap_err().contains("--random N"));
        let huge: Vec<Axis> =
            (0..4).map(|i| Axis::parse(&format!("p{i}"), "1,2,3,4,5,6", &json!(1)).unwrap()).collect();
        assert!(grid(&huge).unwrap_err().contains("more than 1000 combinations"));
        assert!(random(&ranged, 0, 1).is_err());
    }
}
