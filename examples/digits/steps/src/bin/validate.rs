//! Checks the raw CSV: 64 pixels in 0..=16 and a label 0..=9 per row. A bad
//! row fails the step with its line number. Writes the rows back unchanged.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string(weir_guest::input("raw"))?;
    let data = digits_steps::parse_csv(&text, true).map_err(|why| format!("invalid digits data: {why}"))?;
    weir_guest::metric("rows", data.rows() as f64);
    std::fs::write(weir_guest::output("checked"), text)?;
    Ok(())
}
