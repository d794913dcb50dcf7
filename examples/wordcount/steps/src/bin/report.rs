//! A Markdown report: the text's statistics and its `top` most frequent words.

#[derive(serde::Deserialize)]
struct Params {
    title: String,
    top: usize,
}

#[derive(serde::Deserialize)]
struct Stats {
    lines: u64,
    words: u64,
    chars: u64,
}

fn main() -> Result<(), weir_guest::Error> {
    let params: Params = weir_guest::params()?;
    let stats: Stats = serde_json::from_slice(&std::fs::read(weir_guest::input("stats"))?)
        .map_err(|err| std::io::Error::new(std::io::ErrorKind::InvalidData, err))?;
    let counts = std::fs::read_to_string(weir_guest::input("counts"))?;
    let mut report = format!(
        "# {}\n\n{} lines, {} words, {} characters.\n\n| rank | word | count |\n|---:|---|---:|\n",
        params.title, stats.lines, stats.words, stats.chars
    );
    for (rank, line) in counts.lines().take(params.top).enumerate() {
        let (word, count) = line.split_once('\t').unwrap_or((line, "?"));
        report.push_str(&format!("| {} | {word} | {count} |\n", rank + 1));
    }
    std::fs::write(weir_guest::output("report"), report)?;
    println!("wrote the top {} words", params.top);
    Ok(())
}
