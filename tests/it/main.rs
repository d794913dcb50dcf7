//! Integration tests: real guests, built from source, run by the engine and
//! the `weir` binary. One binary, a file per feature; each test gets its own
//! project directory and workspace.

mod attacks;
mod bridge;
mod caching;
mod cancel;
mod cli;
mod concurrency;
mod contract;
mod crash;
mod crates;
mod determinism;
mod digits;
mod digits_py;
mod documents;
mod embedding;
mod executors;
mod failures;
mod history;
mod hostile;
mod maps;
mod natives;
mod packages;
mod parallel;
mod python;
mod read_only;
mod registry;
mod retries;
mod sandbox;
mod server;
mod shared_cache;
mod signing;
mod slurm;
mod status;
mod sweeps;
mod template;
mod tenants;
mod tensors;
mod ui;
mod validation;
mod wordcount;
