//! Lower-cases the text and keeps only letters, digits and apostrophes,
//! one word per line.

fn main() -> Result<(), weir_guest::Error> {
    let text = std::fs::read_to_string(weir_guest::input("text"))?;
    let words: Vec<String> = text
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .map(|word| word.trim_matches('\'').to_lowercase())
        .filter(|word| !word.is_empty())
        .collect();
    std::fs::write(weir_guest::output("words"), words.join("\n"))?;
    Ok(())
}
