//! `weir new NAME`: a directory with a pipeline of one step, ready to
//! `weir run`: a Rust crate, or with `--python` a Python script (weir builds
//! either itself).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The step's code: the guest SDK's template, so there is one copy of it.
const STEP_MAIN: &str = include_str!("../../guest-sdk/template/src/main.rs");
/// The Python step's script: the Python SDK's template.
const STEP_PY: &str = include_str!("../../guest-sdk/python/template/standardize.py");
/// Sample input for the step.
const VALUES: &str = include_str!("../../guest-sdk/template/values.txt");
/// Where this weir's guest SDK is, when it was built from a checkout.
const GUEST_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../guest-sdk");

/// The language of the new project's step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Language {
    /// A crate weir builds with cargo.
    Rust,
    /// A script weir builds with componentize-py.
    Python,
}

/// Creates the project `name` in the current directory; returns its path.
pub(crate) fn create(name: &str, language: Language) -> anyhow::Result<PathBuf> {
    weir::text::check_name(name).map_err(|why| anyhow::anyhow!("`{name}` cannot name a pipeline: {why}"))?;
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        bail!("`{name}` cannot name a pipeline and its step's crate: it must start with a letter");
    }
    let root = PathBuf::from(name);
    if root.exists() {
        bail!("{} already exists; choose another name or remove it", root.display());
    }
    let mut files = vec![
        ("pipeline.toml", pipeline(name, language)),
        ("values.txt", VALUES.to_owned()),
        (".gitignore", "/.weir\n/results\n".to_owned()),
    ];
    match language {
        Language::Rust => files.extend([
            ("step/Cargo.toml", step_manifest(name, &guest_sdk()?)),
            ("step/src/main.rs", STEP_MAIN.to_owned()),
            ("step/.gitignore", "/target\n".to_owned()),
        ]),
        Language::Python => files.push(("steps/standardize.py", STEP_PY.to_owned())),
    }
    for (path, text) in files {
        let path = root.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(root)
}

/// The guest SDK to depend on: `$WEIR_GUEST_SDK`, else the one next to the
/// sources this weir was built from.
fn guest_sdk() -> anyhow::Result<PathBuf> {
    let sdk = std::env::var_os("WEIR_GUEST_SDK").map_or_else(|| PathBuf::from(GUEST_SDK), PathBuf::from);
    sdk.join("Cargo.toml").is_file().then(|| sdk.canonicalize().ok()).flatten().ok_or_else(|| {
        anyhow::anyhow!(
            "the guest SDK (weir-guest) is not at {}: set WEIR_GUEST_SDK to the `guest-sdk` directory of a weir checkout",
            sdk.display()
        )
    })
}

fn pipeline(name: &str, language: Language) -> String {
    let (about, code) = match language {
        Language::Rust => (
            "written in Rust. Run it with\n#   weir run {name}/pipeline.toml\n# weir builds the step's crate (cargo, \
             wasm32-wasip2, release) when its\n# sources changed",
            r#"crate = "step""#,
        ),
        Language::Python => (
            "written in Python. Run it with\n#   weir run {name}/pipeline.toml\n# weir builds the script with \
             componentize-py (docs/python.md) when\n# it or a module it imports changed",
            r#"python = "steps/standardize.py""#,
        ),
    };
    let about = about.replace("{name}", name);
    format!(
        r#"# A pipeline of one step, {about}, and reuses the step's result while nothing changed.
name = "{name}"

[params]
scale = 1.0

[inputs]
values = "values.txt"

[steps.standardize]
{code}
inputs = {{ values = "inputs.values" }}
outputs = {{ scaled = "file" }}
params = {{ scale = "${{params.scale}}" }}

[outputs]
scaled = {{ from = "standardize.scaled", export = "results/scaled.txt" }}
"#
    )
}

/// The step's crate, named like the pipeline: crates built into one target
/// directory (`CARGO_TARGET_DIR`) must have different names, or cargo takes
/// one for the other.
fn step_manifest(name: &str, sdk: &Path) -> String {
    let sdk = toml::Value::String(sdk.display().to_string());
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[dependencies]
weir-guest = {{ path = {sdk} }}
serde = {{ version = "1", features = ["derive"] }}

# A crate of its own, not part of an enclosing workspace.
[workspace]

[profile.release]
opt-level = "s"
"#
    )
}
