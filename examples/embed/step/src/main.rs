//! Reads numbers (one per line) and asks the embedding application's
//! `embed.stats` native function for their statistics, written as JSON.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string(weir_guest::input("numbers"))?;
    let mut numbers = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        numbers.push(line.trim().parse::<f64>().map_err(|err| format!("line {}: {err}", i + 1))?);
    }
    let stats: serde_json::Value = weir_guest::native::call("embed.stats", &numbers)?;
    std::fs::write(weir_guest::output("stats"), stats.to_string())?;
    Ok(())
}
