//! Whole runs through the `weir` binary, process start to exit
//! (`cargo bench -p weir-tests --bench pipelines`):
//! - a 1,000-step chain and a 1,000-step fan-out/fan-in: every step executed
//!   (`--no-cache`, module already compiled), fully reused, and reused after
//!   changing the parameter of one leaf step;
//! - the compile cache: the first run of a new module (Cranelift compiles
//!   it) against a new process that loads the compiled module from disk.
//!
//! Prints a Markdown table of medians. `WEIR_BENCH_QUICK=1` runs fewer repeats.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use weir_tests::{Wasi, tool, weir_bin, write_settled};

/// A 1,000-step chain: each step copies its predecessor's output; the last
/// takes the `leaf` parameter.
fn chain(module: &Path) -> String {
    let mut toml = String::from("name = \"chain\"\n[params]\nleaf = \"a\"\n[inputs]\nseed = \"seed.txt\"\n");
    for i in 0..1000 {
        let source = if i == 0 { "inputs.seed".to_owned() } else { format!("s{}.out", i - 1) };
        let extra = if i == 999 { ", \"${params.leaf}\"" } else { "" };
        toml.push_str(&format!(
            "[steps.s{i}]\nmodule = \"{}\"\nargs = [\"copy\", \"x\", \"out\"{extra}]\ninputs = {{ x = \"{source}\" }}\noutputs = {{ out = \"file\" }}\n",
            module.display()
        ));
    }
    toml
}

/// One input fanned out to 999 steps (each writes its own output), joined by one.
fn fan(module: &Path) -> String {
    let mut toml = String::from("name = \"fan\"\n[params]\nleaf = \"a\"\n[inputs]\nseed = \"seed.txt\"\n");
    let mut joined = Vec::new();
    for i in 0..999 {
        let extra = if i == 0 { "\"${params.leaf}\"".to_owned() } else { format!("\"{i}\"") };
        toml.push_str(&format!(
            "[steps.f{i}]\nmodule = \"{}\"\nargs = [\"upper\", {extra}]\ninputs = {{ text = \"inputs.seed\" }}\noutputs = {{ result = \"file\" }}\n",
            module.display()
        ));
        joined.push(format!("i{i} = \"f{i}.result\""));
    }
    toml.push_str(&format!(
        "[steps.join]\nmodule = \"{}\"\nargs = [\"concat\"]\ninputs = {{ {} }}\noutputs = {{ result = \"file\" }}\n",
        module.display(),
        joined.join(", ")
    ));
    toml
}

fn weir(workspace: &Path, manifest: &Path, extra: &[&str]) -> Duration {
    let started = Instant::now();
    let output = Command::new(weir_bin())
        .arg("run")
        .arg(manifest)
        .arg("--workspace")
        .arg(workspace)
        .arg("--json")
        .args(extra)
        .output()
        .expect("weir");
    let elapsed = started.elapsed();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    elapsed
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn row(what: &str, duration: Duration) {
    println!("| {what} | {:.0} ms |", duration.as_secs_f64() * 1000.0);
}

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return;
    }
    let quick = std::env::var_os("WEIR_BENCH_QUICK").is_some();
    let (cold_repeats, warm_repeats) = if quick { (1, 3) } else { (3, 11) };
    let dir = tempfile::tempdir().expect("temp dir");
    write_settled(&dir.path().join("seed.txt"), "seed");
    let module = tool(Wasi::P1);
    println!("| run (process start to exit, median) | time |\n|---|---:|");
    for (slug, name, text) in
        [("chain", "chain of 1,000", chain(&module)), ("fan", "fan-out/fan-in of 1,000", fan(&module))]
    {
        let manifest = dir.path().join(format!("{slug}.toml"));
        std::fs::write(&manifest, text).expect("manifest");
        let workspace = dir.path().join(format!("ws-{slug}"));
        weir(&workspace, &manifest, &[]);
        let cold = median((0..cold_repeats).map(|_| weir(&workspace, &manifest, &["--no-cache"])).collect());
        let reused = median((0..warm_repeats).map(|_| weir(&workspace, &manifest, &[])).collect());
        let mut flip = 0;
        let changed = median(
            (0..warm_repeats)
                .map(|_| {
                    flip += 1;
                    let leaf = format!("leaf={}", if flip % 2 == 0 { "a" } else { "b" });
                    weir(&workspace, &manifest, &["--param", &leaf])
                })
                .collect(),
        );
        row(&format!("{name}: every step executed (`--no-cache`)"), cold);
        row(&format!("{name}: fully reused"), reused);
        row(&format!("{name}: one leaf parameter changed"), changed);
    }
    let one = |module: &Path| -> PathBuf {
        let manifest = dir.path().join("one.toml");
        std::fs::write(
            &manifest,
            format!(
                "name = \"one\"\n[steps.s]\nmodule = \"{}\"\nargs = [\"args\", \"x\"]\noutputs = {{ result = \"file\" }}\n",
                module.display()
            ),
        )
        .expect("manifest");
        manifest
    };
    let mut first = Vec::new();
    let mut loaded = Vec::new();
    for round in 0..cold_repeats.max(3) {
        let workspace = dir.path().join(format!("compile-{round}"));
        let manifest = one(&tool(Wasi::P2));
        first.push(weir(&workspace, &manifest, &[]));
        loaded.push(weir(&workspace, &manifest, &["--no-cache"]));
    }
    row("one step, new module: first run (compiles the component)", median(first));
    row("one step, same module, new process: compiled code loaded from disk", median(loaded));
}
