//! Line, word and character counts of the raw text, as JSON.

fn main() -> Result<(), weir_guest::Error> {
    let text = std::fs::read_to_string(weir_guest::input("text"))?;
    let stats = serde_json::json!({
        "lines": text.lines().count(),
        "words": text.split_whitespace().count(),
        "chars": text.chars().count(),
    });
    std::fs::write(weir_guest::output("stats"), stats.to_string())?;
    Ok(())
}
