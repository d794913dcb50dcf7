//! # weir-guest: write weir pipeline steps in Rust
//!
//! A weir step is an ordinary WASI command (`fn main()`), built for
//! `wasm32-wasip2`. This crate wraps the step contract and the host bridge:
//!
//! - each input is at `/in/<name>` (read-only): [`input`];
//! - each declared output must be written at `/out/<name>`: [`output`];
//! - the step's parameters are a JSON object in `/in/.params.json`: [`params`];
//! - [`metric`], [`metric_at`] and [`progress`] report to the engine as the step runs;
//! - [`native::gemm`], [`native::Gemm`] and [`native::Tensor`] run the
//!   engine's matrix product (on a GPU when the step holds one) with raw
//!   `f32` operands, tensors kept with the engine, or files; [`native::call`]
//!   hands other work to a native function of the engine, with MessagePack
//!   payloads. The step must declare the functions it calls in its
//!   manifest: `natives = ["gemm"]`.
//!
//! A complete step, which reads a matrix, multiplies it by its transpose
//! through the engine's `gemm`, and reports a metric:
//!
//! ```no_run
//! #[derive(serde::Deserialize)]
//! struct Params {
//!     rows: usize,
//!     cols: usize,
//! }
//!
//! fn main() -> Result<(), weir_guest::Error> {
//!     let params: Params = weir_guest::params()?;
//!     let bytes = std::fs::read(weir_guest::input("matrix"))?;
//!     let a: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
//!     // C = A · Aᵀ (rows × rows).
//!     let c = weir_guest::native::gemm(params.rows, params.rows, params.cols, &a, &a, false, true)?;
//!     let trace: f32 = (0..params.rows).map(|i| c[i * params.rows + i]).sum();
//!     weir_guest::metric("trace", f64::from(trace));
//!     std::fs::write(weir_guest::output("gram"), c.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>())?;
//!     Ok(())
//! }
//! ```
//!
//! Running a step without weir: it is still a plain command. With the
//! `wasmtime` CLI, map the directories and let the bridge's imports do
//! nothing: `wasmtime run -W unknown-imports-default=y --dir in::/in --dir
//! out::/out step.wasm` (metrics and progress are then dropped and native
//! calls fail). Built for the host instead, to run it under a debugger, set
//! [`INPUT_DIR_VAR`] and [`OUTPUT_DIR_VAR`] to the directories that stand
//! for `/in` and `/out` (`WEIR_IN=data/in WEIR_OUT=data/out cargo run`);
//! [`metric`] and [`progress`] then print to stderr and native calls return
//! [`Error::Native`]. Inside weir's sandbox there are no environment
//! variables, so a step always sees `/in` and `/out` there.
//!
//! Returning [`Error`] from `main` prints it as a sentence naming the file
//! or parameter, not as a debug structure.

mod host;
pub mod native;

use std::path::PathBuf;

pub use weir_abi::contract::{INPUT_DIR, OUTPUT_DIR, PARAMS_FILE};
/// Outside weir, the directory to use for [`INPUT_DIR`].
pub const INPUT_DIR_VAR: &str = "WEIR_IN";
/// Outside weir, the directory to use for [`OUTPUT_DIR`].
pub const OUTPUT_DIR_VAR: &str = "WEIR_OUT";

pub use weir_abi::Matrix;

/// Errors of the step contract and the bridge. Its `Debug` form is its
/// message, so `fn main() -> Result<(), weir_guest::Error>` prints a
/// readable sentence when the step fails.
#[non_exhaustive]
pub enum Error {
    /// An I/O operation failed.
    Io(std::io::Error),
    /// A file of the contract (an input, an output, the parameters) could
    /// not be read or written.
    File {
        /// The file, as the step named it.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The parameters do not match the type the step expects.
    Params(serde_json::Error),
    /// A native call's payload or result could not be encoded or decoded.
    Payload(String),
    /// The engine refused or failed a native call (unknown or undeclared
    /// function, bad payload, a path outside the step's directories, …).
    Native(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Io(err) => write!(f, "{err}"),
            Error::File { path, source } => write!(f, "{}: {source}", path.display()),
            Error::Params(err) => write!(f, "bad step parameters in {INPUT_DIR}/{PARAMS_FILE}: {err}"),
            Error::Payload(why) => write!(f, "native call payload: {why}"),
            Error::Native(why) => write!(f, "native call failed: {why}"),
        }
    }
}

impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(err) | Error::File { source: err, .. } => Some(err),
            Error::Params(err) => Some(err),
            Error::Payload(_) | Error::Native(_) => None,
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
    let text = read_text(input(PARAMS_FILE))?;
    serde_json::from_str(&text).map_err(Error::Params)
}

/// The path of input `name`: `/in/<name>` (a file or a directory).
pub fn input(name: &str) -> PathBuf {
    contract_dir(INPUT_DIR_VAR, INPUT_DIR).join(name)
}

/// The path where output `name` must be written: `/out/<name>`.
pub fn output(name: &str) -> PathBuf {
    contract_dir(OUTPUT_DIR_VAR, OUTPUT_DIR).join(name)
}

/// The bytes of input file `name`; an error names the file.
pub fn read_input(name: &str) -> Result<Vec<u8>, Error> {
    let path = input(name);
    std::fs::read(&path).map_err(|source| Error::File { path, source })
}

/// The text of input file `name`; an error names the file.
pub fn read_input_text(name: &str) -> Result<String, Error> {
    read_text(input(name))
}

/// Writes output file `name`; an error names the file.
pub fn write_output(name: &str, contents: impl AsRef<[u8]>) -> Result<(), Error> {
    let path = output(name);
    std::fs::write(&path, contents).map_err(|source| Error::File { path, source })
}

fn read_text(path: PathBuf) -> Result<String, Error> {
    std::fs::read_to_string(&path).map_err(|source| Error::File { path, source })
}

/// `/in` or `/out`, or the directory the environment variable names outside weir.
fn contract_dir(variable: &str, sandboxed: &str) -> PathBuf {
    std::env::var_os(variable).map_or_else(|| PathBuf::from(sandboxed), PathBuf::from)
}

/// Records a value of metric `name` (e.g. a training loss); the engine keeps
/// every value as an event and reports the last one with the step.
pub fn metric(name: &str, value: f64) {
    host::metric(name, value);
}

/// Records a value of metric `name` at position `at` of the step's making,
/// such as the epoch or batch it belongs to; charts plot the values against
/// these positions rather than the order they came in.
pub fn metric_at(name: &str, value: f64, at: u64) {
    host::metric_at(name, value, at);
}

/// Reports progress: `done` units of work out of `total`.
pub fn progress(done: u64, total: u64) {
    host::progress(done, total);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_contract() {
        if std::env::var_os(INPUT_DIR_VAR).is_none() && std::env::var_os(OUTPUT_DIR_VAR).is_none() {
            assert_eq!(input("text"), PathBuf::from("/in/text"));
            assert_eq!(output("result"), PathBuf::from("/out/result"));
        }
    }

    #[test]
    fn errors_read_as_sentences_naming_the_file() {
        let missing = Error::File { path: "/in/values".into(), source: std::io::ErrorKind::NotFound.into() };
        assert_eq!(format!("{missing:?}"), "/in/values: entity not found");
        let params = Error::Params(serde_json::from_str::<u32>("-5").unwrap_err());
        assert!(
            format!("{params:?}").starts_with("bad step parameters in /in/.params.json: invalid value"),
            "{params:?}"
        );
    }

    #[test]
    fn params_errors_name_the_file() {
        let err = Error::Params(serde_json::from_str::<u32>("\"x\"").unwrap_err());
        assert!(err.to_string().contains("/in/.params.json"), "{err}");
    }

    #[test]
    fn outside_weir_native_calls_fail_cleanly() {
        let err = native::call::<_, Vec<f32>>("gemm", &1u8).unwrap_err();
        assert!(matches!(&err, Error::Native(why) if why.contains("not running under weir")), "{err}");
    }
}
