//! A complete weir step: standardizes a column of numbers.
//!
//! Contract (`step.toml` declares it; `pipeline.toml` runs the step):
//! - input `values`: a text file, one number per line;
//! - output `scaled`: the values as z-scores times the `scale` parameter;
//! - metrics `mean` and `std`; progress as it goes.

#[derive(serde::Deserialize)]
struct Params {
    /// Multiplies every z-score.
    scale: f64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let params: Params = weir_guest::params()?;
    let text = weir_guest::read_input_text("values")?;
    let mut values = Vec::new();
    for (number, line) in text.lines().enumerate().filter(|(_, line)| !line.trim().is_empty()) {
        let value: f64 = line.trim().parse().map_err(|err| format!("line {}: `{line}`: {err}", number + 1))?;
        values.push(value);
    }
    if values.is_empty() {
        return Err("input `values` holds no numbers".into());
    }
    let count = values.len() as f64;
    let mean = values.iter().sum::<f64>() / count;
    let std = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / count).sqrt();
    weir_guest::metric("mean", mean);
    weir_guest::metric("std", std);

    let mut out = String::new();
    for (i, value) in values.iter().enumerate() {
        let z = if std > 0.0 { (value - mean) / std } else { 0.0 };
        out.push_str(&format!("{}\n", z * params.scale));
        weir_guest::progress(i as u64 + 1, values.len() as u64);
    }
    weir_guest::write_output("scaled", out)?;
    Ok(())
}
