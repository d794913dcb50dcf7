//! Counts each word, skipping stop words; writes `word<TAB>count` lines,
//! most frequent first.

use std::collections::BTreeMap;

#[derive(serde::Deserialize)]
struct Params {
    stop_words: Vec<String>,
}

fn main() -> Result<(), weir_guest::Error> {
    let params: Params = weir_guest::params()?;
    let words = std::fs::read_to_string(weir_guest::input("words"))?;
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for word in words.lines().filter(|w| !params.stop_words.iter().any(|s| s == w)) {
        *counts.entry(word).or_default() += 1;
    }
    let mut ranked: Vec<(&str, u64)> = counts.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let lines: Vec<String> = ranked.iter().map(|(word, n)| format!("{word}\t{n}")).collect();
    std::fs::write(weir_guest::output("counts"), lines.join("\n"))?;
    Ok(())
}
