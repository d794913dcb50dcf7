//! Runs the embedding example: `embed [STEP.wasm] [NUMBERS] [WORKSPACE]`.

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let module = PathBuf::from(args.next().unwrap_or_else(|| "examples/embed/build/summarize.wasm".into()));
    let numbers = PathBuf::from(args.next().unwrap_or_else(|| "examples/embed/data/numbers.txt".into()));
    let workspace = PathBuf::from(args.next().unwrap_or_else(|| "examples/embed/.weir".into()));
    let (report, reused) = weir_embed_example::run(&module, &numbers, &workspace)?;
    print!("{report}");
    if reused {
        println!("(every step was reused from the cache)");
    }
    let empty = workspace.join("empty.txt");
    std::fs::create_dir_all(&workspace)?;
    std::fs::write(&empty, "")?;
    let tour = weir_embed_example::tour(&module, &numbers, &empty, &workspace)?;
    println!("events: {}", tour.events.join("; "));
    println!("a directory output holds: {}", tour.files.join(", "));
    println!("a failure: {}", tour.failure);
    for report in &tour.concurrent {
        print!("concurrent: {report}");
    }
    println!("a cancelled run ended cancelled: {}", tour.cancelled);
    Ok(())
}
