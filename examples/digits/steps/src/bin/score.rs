//! Predicts the digit of every row of one scoring batch (a CSV of 64 pixels
//! per row, no label). Run as a map step: once per batch file.

use digits_steps::{Model, parse_csv};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let model = Model::from_bytes(&std::fs::read(weir_guest::input("model"))?)?;
    let batch = parse_csv(&std::fs::read_to_string(weir_guest::input("batch"))?, false)
        .map_err(|why| format!("invalid scoring batch: {why}"))?;
    let predictions = model.predict(&batch.features, batch.rows())?;
    let lines: Vec<String> = predictions.iter().map(u8::to_string).collect();
    std::fs::write(weir_guest::output("predictions"), lines.join("\n") + "\n")?;
    weir_guest::metric("rows", batch.rows() as f64);
    Ok(())
}
