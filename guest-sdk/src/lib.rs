//! # weir-guest: write weir pipeline steps in Rust
//!
//! A weir step is an ordinary WASI command (`fn main()`), built for
//! `wasm32-wasip2` (or `wasm32-wasip1`). This crate wraps the step contract:
//!
//! - each input is at `/in/<name>` (read-only): [`input`];
//! - each declared output must be written at `/out/<name>`: [`output`];
//! - the step's parameters are a JSON object in `/in/.params.json`: [`params`].
//!
//! Because the contract is only files, a step built with this crate can be
//! run and tested without weir: prepare `/in` and `/out` directories and map
//! them in with any WASI runtime (e.g. `wasmtime run --dir in::/in --dir out::/out step.wasm`).
//!
//! ```no_run
//! #[derive(serde::Deserialize)]
//! struct Params {
//!     n: usize,
//! }
//!
//! fn main() -> Result<(), weir_guest::Error> {
//!     let params: Params = weir_guest::params()?;
//!     let text = std::fs::read_to_string(weir_guest::input("text"))?;
//!     let head: String = text.lines().take(params.n).collect::<Vec<_>>().join("\n");
//!     std::fs::write(weir_guest::output("head"), head)?;
//!     Ok(())
//! }
//! ```

use std::path::PathBuf;

/// Where inputs are mounted inside the sandbox.
pub const INPUT_DIR: &str = "/in";
/// Where outputs are written inside the sandbox.
pub const OUTPUT_DIR: &str = "/out";
/// The parameters file, inside [`INPUT_DIR`].
pub const PARAMS_FILE: &str = ".params.json";

/// Errors of the step contract.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A file of the contract could not be read or written.
    Io(std::io::Error),
    /// The parameters do not match the type the step expects.
    Params(serde_json::Error),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Io(err) => write!(f, "{err}"),
            Error::Params(err) => write!(f, "bad step parameters in {INPUT_DIR}/{PARAMS_FILE}: {err}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(err) => Some(err),
            Error::Params(err) => Some(err),
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Self {
        Error::Io(err)
    }
}

/// The step's parameters, decoded from `/in/.params.json`.
pub fn params<T: serde::de::DeserializeOwned>() -> Result<T, Error> {
    let text = std::fs::read_to_string(PathBuf::from(INPUT_DIR).join(PARAMS_FILE))?;
    serde_json::from_str(&text).map_err(Error::Params)
}

/// The path of input `name`: `/in/<name>` (a file or a directory).
pub fn input(name: &str) -> PathBuf {
    PathBuf::from(INPUT_DIR).join(name)
}

/// The path where output `name` must be written: `/out/<name>`.
pub fn output(name: &str) -> PathBuf {
    PathBuf::from(OUTPUT_DIR).join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_contract() {
        assert_eq!(input("text"), PathBuf::from("/in/text"));
        assert_eq!(output("result"), PathBuf::from("/out/result"));
    }

    #[test]
    fn params_errors_name_the_file() {
        let err = Error::Params(serde_json::from_str::<u32>("\"x\"").unwrap_err());
        assert!(err.to_string().contains("/in/.params.json"), "{err}");
    }
}
