//! Steps given as a Rust crate (`crate = "DIR"` in a manifest): weir builds
//! the crate for `wasm32-wasip2` in release mode and runs the module.
//!
//! A build is cached by the digest of the crate's sources (every file
//! beneath its directory but `target/` and hidden entries, and those of its
//! `path` dependencies, recursively): while they are unchanged, loading the
//! manifest does not invoke cargo at all. Each built module is copied to a
//! file named by its own digest, so two crates whose binaries share a name
//! never overwrite each other's module.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Digest;

/// The target weir builds crates for.
pub(crate) const TARGET: &str = "wasm32-wasip2";

/// Where the build of `dir` goes: `$CARGO_TARGET_DIR` when set (cargo's
/// own rule), else `dir/target`. (Cargo tells crates in one target
/// directory apart by name: two crates of the same name must not share one.)
fn target_dir(dir: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| dir.join("target"), PathBuf::from)
}

/// What the last build of a crate's binary was made from, and what it made.
#[derive(serde::Serialize, serde::Deserialize)]
struct BuildStamp {
    sources: Digest,
    module: Digest,
}

/// The module built from the crate in `dir` (its binary `bin`, or the one
/// named like the package), building it if its sources changed since the
/// last build. The error is a sentence, with cargo's messages when the
/// build failed.
pub(crate) fn built_module(dir: &Path, bin: Option<&str>) -> Result<PathBuf, String> {
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).map_err(|err| {
        format!("cannot read {}: {err} (a crate step names a directory with a Cargo.toml)", manifest.display())
    })?;
    let package: toml::Table = toml::from_str(&text).map_err(|err| format!("{}: {err}", manifest.display()))?;
    let bin = match bin {
        Some(bin) => bin.to_owned(),
        None => package
            .get("package")
            .and_then(|package| package.get("name"))
            .and_then(toml::Value::as_str)
            .ok_or_else(|| format!("{} has no [package] name; name the binary with `bin`", manifest.display()))?
            .to_owned(),
    };
    let sources = sources_digest(dir, &bin)?;
    let target = target_dir(dir);
    let builds = target.join("weir-builds");
    let stamp_path = builds.join(format!("{}-{bin}.json", Digest::of(dir.as_os_str().as_encoded_bytes()).hex()));
    let built = |module: &Digest| builds.join(format!("{}.wasm", module.hex()));
    if let Some(stamp) =
        std::fs::read(&stamp_path).ok().and_then(|bytes| serde_json::from_slice::<BuildStamp>(&bytes).ok())
        && stamp.sources == sources
        && std::fs::read(built(&stamp.module)).is_ok_and(|bytes| Digest::of(&bytes) == stamp.module)
    {
        return Ok(built(&stamp.module));
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // Like other tools that drive cargo, say why the wait.
    eprintln!("building {} (cargo build --release --target {TARGET})…", dir.display());
    let output = Command::new(&cargo)
        .args(["build", "--release", "--quiet", "--target", TARGET, "--bin", &bin, "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target)
        .output()
        .map_err(|err| format!("cannot run {} to build {}: {err}", Path::new(&cargo).display(), dir.display()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!(
            "building {} for {TARGET} failed ({}):\n{}",
            dir.display(),
            output.status,
            tail.join("\n")
        ));
    }
    let produced = target.join(TARGET).join("release").join(format!("{bin}.wasm"));
    let bytes = std::fs::read(&produced)
        .map_err(|err| format!("cargo built {} but {} cannot be read: {err}", dir.display(), produced.display()))?;
    let module = Digest::of(&bytes);
    // Taken again: the first build writes the crate's Cargo.lock.
    let sources = sources_digest(dir, &bin)?;
    let stamp = serde_json::to_vec(&BuildStamp { sources, module }).unwrap_or_default();
    std::fs::create_dir_all(&builds)
        .and_then(|()| std::fs::write(built(&module), &bytes))
        .and_then(|()| std::fs::write(&stamp_path, stamp))
        .map_err(|err| format!("keeping the module built from {}: {err}", dir.display()))?;
    Ok(built(&module))
}

/// The digest of everything a build of `bin` from `dir` reads: the files of
/// the crate and of its path dependencies, by relative path.
fn sources_digest(dir: &Path, bin: &str) -> Result<Digest, String> {
    let mut hasher = blake3::Hasher::new();
    hasher.update(TARGET.as_bytes());
    hasher.update(&[0]);
    hasher.update(bin.as_bytes());
    let mut crates = vec![dir.to_owned()];
    let mut seen = BTreeSet::new();
    while let Some(next) = crates.pop() {
        let next = next.canonicalize().map_err(|err| format!("cannot read {}: {err}", next.display()))?;
        if !seen.insert(next.clone()) {
            continue;
        }
        hasher.update(&[0]);
        hasher.update(next.as_os_str().as_encoded_bytes());
        hash_tree(&next, &next, &mut hasher)?;
        crates.extend(path_dependencies(&next));
    }
    Ok(Digest::from_bytes(*hasher.finalize().as_bytes()))
}

/// Hashes the entries beneath `dir` (not `target/` nor hidden entries), in
/// name order, with their paths relative to `root`. A symbolic link is
/// hashed as its target's name, never followed, so a link loop ends.
fn hash_tree(root: &Path, dir: &Path, hasher: &mut blake3::Hasher) -> Result<(), String> {
    fn reading(path: &Path) -> impl FnOnce(std::io::Error) -> String + '_ {
        move |err| format!("cannot read {}: {err}", path.display())
    }
    let mut entries: Vec<_> =
        std::fs::read_dir(dir).map_err(reading(dir))?.collect::<Result<_, _>>().map_err(reading(dir))?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') || (dir == root && name == "target") {
            continue;
        }
        let path = entry.path();
        let kind = entry.file_type().map_err(reading(&path))?;
        if kind.is_dir() {
            hash_tree(root, &path, hasher)?;
            continue;
        }
        let contents = if kind.is_symlink() {
            std::fs::read_link(&path).map_err(reading(&path))?.into_os_string().into_encoded_bytes()
        } else {
            std::fs::read(&path).map_err(reading(&path))?
        };
        let relative = path.strip_prefix(root).unwrap_or(&path);
        hasher.update(relative.as_os_str().as_encoded_bytes());
        hasher.update(&[0, u8::from(kind.is_symlink())]);
        hasher.update(&(contents.len() as u64).to_le_bytes());
        hasher.update(&contents);
    }
    Ok(())
}

/// The directories of the `path` dependencies the crate in `dir` declares
/// (also build and target-specific ones).
fn path_dependencies(dir: &Path) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string(dir.join("Cargo.toml")) else { return Vec::new() };
    let Ok(manifest) = toml::from_str::<toml::Table>(&text) else { return Vec::new() };
    let tables = ["dependencies", "build-dependencies"];
    let mut found = Vec::new();
    let mut collect = |table: &toml::Table| {
        for name in tables {
            for dependency in table.get(name).and_then(toml::Value::as_table).into_iter().flat_map(toml::Table::values)
            {
                if let Some(path) = dependency.get("path").and_then(toml::Value::as_str) {
                    found.push(dir.join(path));
                }
            }
        }
    };
    collect(&manifest);
    for target in manifest.get("target").and_then(toml::Value::as_table).into_iter().flat_map(toml::Table::values) {
        if let Some(target) = target.as_table() {
            collect(target);
        }
    }
    found
}
