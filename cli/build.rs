//! Links the `weir` binary with packed relative relocations (DT_RELR) where
//! the toolchain and C library are known to support them (x86-64 Linux with
//! glibc 2.36 or later, which the binary then requires): its 91,000
//! relocations shrink from 2.1 MB of entries, read on every start, to 32 KB,
//! which takes about 0.9 ms off each `weir` process (BENCHMARKS.md,
//! Session 23).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("TARGET").is_ok_and(|target| target == "x86_64-unknown-linux-gnu") {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
