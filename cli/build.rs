//! Links the `weir` binary with packed relative relocations (DT_RELR) where
//! the linker and C library support them: its 91,000 relocations shrink from
//! 2.1 MB of entries, read on every start, to 32 KB, which takes about 0.9 ms
//! off each `weir` process (BENCHMARKS.md, Session 23).
//!
//! Support is probed, not assumed: a native x86-64 Linux build links a small
//! C program with the option and runs it. An older linker (binutils before
//! 2.38 ignores the option, with a warning) or C library (glibc before 2.36
//! cannot load such a binary) fails the probe, and the binary is linked as
//! usual.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

const OPTION: &str = "-Wl,-z,pack-relative-relocs";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    let target = std::env::var("TARGET").unwrap_or_default();
    let native = std::env::var("HOST").is_ok_and(|host| host == target);
    if native && target == "x86_64-unknown-linux-gnu" && links_and_runs_with_packed_relocations() {
        println!("cargo:rustc-link-arg-bins={OPTION}");
    }
}

/// Whether the linker driver Rust uses links a C program with [`OPTION`]
/// silently (an ignored option is only a warning), and the result runs here.
fn links_and_runs_with_packed_relocations() -> bool {
    let Ok(out_dir) = std::env::var("OUT_DIR") else { return false };
    let probe = Path::new(&out_dir).join("relr-probe");
    let linker = std::env::var("RUSTC_LINKER").unwrap_or_else(|_| "cc".to_owned());
    let compile = Command::new(linker)
        .args(["-x", "c", "-", "-o"])
        .arg(&probe)
        .args(["-pie", "-fPIE", OPTION])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut compile) = compile else { return false };
    // A pointer in initialized data: unless its relocation is applied, the
    // probe reads through an address of the file, not of the process, and fails.
    let source = b"static int x; int *p = &x; int main(void) { return *p; }\n";
    let written = compile.stdin.take().is_some_and(|mut stdin| stdin.write_all(source).is_ok());
    let linked = compile.wait_with_output().is_ok_and(|out| out.status.success() && out.stderr.is_empty());
    written && linked && Command::new(&probe).status().is_ok_and(|status| status.success())
}
