//! Building a Python step into a WebAssembly component with componentize-py,
//! once per bundle: the component is kept in the store, and a small index
//! file (`builds/python/<bundle digest>`) names it. Builds are not
//! reproducible byte for byte (componentize-py snapshots a running
//! interpreter), which is why the cache key uses the bundle's digest.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::bundle::{Bundle, COMPONENTIZE_PY_VERSION, WEIR_FILES};
use crate::store::Store;
use crate::{Artifact, Digest, OutputKind};

/// The environment variable naming the componentize-py program to use
/// (else `componentize-py` is looked up on `PATH`).
pub const COMPONENTIZE_PY_VAR: &str = "WEIR_COMPONENTIZE_PY";

/// The component built from `bundle`, by its digest in `store`: built now
/// unless an earlier build is there. The error is a sentence: how to
/// install componentize-py, or what the build said.
pub(crate) fn component(bundle: &Bundle, store: &Store) -> Result<Digest, String> {
    let index = store.path_of("builds").join("python").join(bundle.digest.hex());
    if let Some(built) = std::fs::read_to_string(&index).ok().and_then(|text| Digest::parse(text.trim()).ok())
        && store.contains(&Artifact { kind: OutputKind::File, digest: built })
    {
        return Ok(built);
    }
    let work = store.path_of("tmp").join(store.temp_name("python-build"));
    let result = build_in(&work, bundle, store);
    // The build directory is scratch whatever happened.
    let _ = std::fs::remove_dir_all(&work);
    let built = result?;
    let keep = || -> std::io::Result<()> {
        std::fs::create_dir_all(index.parent().expect("the index is in a directory"))?;
        let partial = store.path_of("tmp").join(store.temp_name("python-index"));
        std::fs::write(&partial, built.hex())?;
        std::fs::rename(&partial, &index)
    };
    keep().map_err(|err| format!("recording the build of {}: {err}", bundle.script))?;
    Ok(built)
}

/// Builds `bundle` in the scratch directory `work` and stores the component.
fn build_in(work: &Path, bundle: &Bundle, store: &Store) -> Result<Digest, String> {
    let tool = componentize_py()?;
    let script = bundle.dir.join(&bundle.script);
    eprintln!("building Python step {} (componentize-py)…", script.display());
    let scratch = |err: std::io::Error| format!("preparing the build of {}: {err}", script.display());
    for (path, contents) in WEIR_FILES {
        write(&work.join(path), contents.as_bytes()).map_err(scratch)?;
    }
    for relative in std::iter::once(&bundle.script).chain(&bundle.modules) {
        let bytes = std::fs::read(bundle.dir.join(relative)).map_err(scratch)?;
        write(&work.join("app").join(relative), &bytes).map_err(scratch)?;
    }
    let plan = serde_json::json!({
        "script": bundle.script,
        "modules": bundle.modules,
        "module_names": bundle.module_names(),
    });
    write(&work.join("app/weir_build.json"), plan.to_string().as_bytes()).map_err(scratch)?;
    let mut command = Command::new(&tool);
    command.current_dir(work).env_remove("VIRTUAL_ENV").env("RUST_BACKTRACE", "0").args([
        "-d",
        "wit",
        "-w",
        "python-step",
        "componentize",
    ]);
    command.args(["weir_entry", "-p", "app"]);
    if !bundle.requirements.is_empty() {
        install_requirements(&tool, &work.join("site"), bundle)?;
        command.args(["-p", "site"]);
    }
    command.args(["-o", "step.wasm"]);
    let output = command.output().map_err(|err| format!("cannot run {}: {err}", tool.display()))?;
    if !output.status.success() {
        return Err(format!("building {} with componentize-py failed: {}", script.display(), what_went_wrong(&output)));
    }
    let bytes = std::fs::read(work.join("step.wasm"))
        .map_err(|err| format!("componentize-py built {} but its component cannot be read: {err}", script.display()))?;
    store.put_bytes(&bytes).map_err(|err| format!("storing the component built from {}: {err}", script.display()))
}

/// The componentize-py program, checked to be the release weir builds with.
fn componentize_py() -> Result<PathBuf, String> {
    let install = format!("pip install componentize-py=={COMPONENTIZE_PY_VERSION}");
    let tool = std::env::var_os(COMPONENTIZE_PY_VAR).map_or_else(|| PathBuf::from("componentize-py"), PathBuf::from);
    let output = Command::new(&tool).arg("--version").output().map_err(|err| {
        format!(
            "weir builds Python steps with componentize-py, and {} cannot be run ({err}): install it with \
             `{install}`, or set {COMPONENTIZE_PY_VAR} to the program",
            tool.display()
        )
    })?;
    let version = String::from_utf8_lossy(&output.stdout);
    let version = version.trim();
    if version.rsplit(' ').next() != Some(COMPONENTIZE_PY_VERSION) {
        return Err(format!(
            "weir builds Python steps with componentize-py {COMPONENTIZE_PY_VERSION} and {} is `{version}`: \
             install the right one with `{install}`",
            tool.display()
        ));
    }
    Ok(tool)
}

/// Vendors the bundle's requirements into `site` with the pip of the Python
/// that runs componentize-py: pure-Python wheels only, since nothing
/// compiled for the host can run in the sandbox.
fn install_requirements(tool: &Path, site: &Path, bundle: &Bundle) -> Result<(), String> {
    let python = tool.parent().map(|bin| bin.join("python3")).filter(|python| python.is_file());
    let python = python.unwrap_or_else(|| PathBuf::from("python3"));
    let mut command = Command::new(&python);
    command.args(["-m", "pip", "install", "--quiet", "--no-compile", "--disable-pip-version-check"]);
    command.args(["--only-binary=:all:", "--platform", "any", "--implementation", "py", "--target"]).arg(site);
    for requirements in &bundle.requirements {
        command.arg("-r").arg(requirements);
    }
    let output = command.output().map_err(|err| format!("cannot run {} -m pip: {err}", python.display()))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "installing the requirements of {} (pure-Python wheels only) failed: {}",
        bundle.dir.join(&bundle.script).display(),
        what_went_wrong(&output)
    ))
}

/// The message weir's entry module raised for the user (`weir: …`, which
/// componentize-py prints within its own line), or else the end of the
/// tool's output.
fn what_went_wrong(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    if let Some(ours) = stderr.lines().find_map(|line| line.split_once("weir: ").map(|(_, message)| message)) {
        return ours.to_owned();
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let all: Vec<&str> = stdout.lines().chain(stderr.lines()).filter(|line| !line.trim().is_empty()).collect();
    let tail = &all[all.len().saturating_sub(30)..];
    format!("{}\n{}", output.status, tail.join("\n"))
}

fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(path.parent().expect("a file in the build"))?;
    std::fs::write(path, bytes)
}
