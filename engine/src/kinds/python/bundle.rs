//! What a Python step is built from: its script, the `.py` files beside it
//! and in packages beneath it that it imports, its requirements files, and what
//! weir adds (the SDK, the entry module, the world). Their digest names the
//! build and is the step's code in the cache key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::imports;
use crate::{Digest, PythonScript};

/// The componentize-py release weir builds with (its CPython and its
/// bindings are part of every build, so they are part of the digest).
pub(crate) const COMPONENTIZE_PY_VERSION: &str = "0.25.1";

/// What weir adds to every build, as (path in the build, contents).
pub(super) const WEIR_FILES: [(&str, &str); 7] = [
    ("app/weir/__init__.py", include_str!("../../../../guest-sdk/python/weir/__init__.py")),
    ("app/weir/native.py", include_str!("../../../../guest-sdk/python/weir/native.py")),
    ("app/weir/_msgpack.py", include_str!("../../../../guest-sdk/python/weir/_msgpack.py")),
    ("app/weir_entry.py", include_str!("entry.py")),
    ("wit/python.wit", include_str!("python.wit")),
    ("wit/deps/step/step.wit", include_str!("../../../../wit/step.wit")),
    ("wit/deps/cli/run.wit", include_str!("run.wit")),
];

/// Top-level names weir's build uses; a bundled module may not take them.
const RESERVED: [&str; 5] =
    ["weir", "weir_entry", "wit_world", "componentize_py_types", "componentize_py_async_support"];

/// Entries a directory walk skips.
fn skipped(name: &str) -> bool {
    name.starts_with('.') || name == "__pycache__"
}

/// The sources of one Python step.
#[derive(Debug)]
pub(crate) struct Bundle {
    /// The script's directory: every bundled path is relative to it.
    pub dir: PathBuf,
    /// The script, relative to `dir`.
    pub script: String,
    /// The `.py` files beside the script (or in packages beneath it) that
    /// it imports, transitively; relative to `dir`, sorted.
    pub modules: Vec<String>,
    /// Requirements files (pip's format), as given.
    pub requirements: Vec<PathBuf>,
    /// The digest of all of the above and of what weir adds.
    pub digest: Digest,
}

impl Bundle {
    /// Gathers the sources of `code`. The error is a sentence naming the file.
    pub(crate) fn gather(code: &PythonScript) -> Result<Bundle, String> {
        let script_path = &code.script;
        if script_path.extension().is_none_or(|ext| ext != "py") {
            return Err(format!("{} is not a Python script (a `.py` file)", script_path.display()));
        }
        let (Some(dir), Some(script)) = (script_path.parent(), script_path.file_name()) else {
            return Err(format!("{} is not a file", script_path.display()));
        };
        if !script_path.is_file() {
            return Err(format!("Python script {} not found", script_path.display()));
        }
        let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir }.to_owned();
        let script = script.to_string_lossy().into_owned();
        let mut available = Vec::new();
        collect(&dir, "", &mut available)?;
        available.retain(|module| *module != script);
        available.sort();
        // Each bundled file is read once, for the import scan and the digest.
        let mut sources: BTreeMap<String, String> = BTreeMap::new();
        let mut read = |relative: &str| -> Result<String, String> {
            if let Some(source) = sources.get(relative) {
                return Ok(source.clone());
            }
            let path = dir.join(relative);
            let source =
                std::fs::read_to_string(&path).map_err(|err| format!("cannot read {}: {err}", path.display()))?;
            sources.insert(relative.to_owned(), source.clone());
            Ok(source)
        };
        let script_source = read(&script)?;
        let modules = imports::needed(&script_source, &available, &mut read)?;
        if let Some(clash) = std::iter::once(&script).chain(&modules).find(|path| {
            let top = path.split('/').next().unwrap_or_default();
            RESERVED.contains(&top.trim_end_matches(".py"))
        }) {
            return Err(format!(
                "{} bundles {clash}, whose name weir's build uses (rename it; reserved: {})",
                script_path.display(),
                RESERVED.join(", ")
            ));
        }
        let mut hasher = blake3::Hasher::new();
        let mut part = |bytes: &[u8]| {
            hasher.update(&(bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        };
        part(b"weir python step 1");
        part(COMPONENTIZE_PY_VERSION.as_bytes());
        for (path, contents) in WEIR_FILES {
            part(path.as_bytes());
            part(contents.as_bytes());
        }
        part(script.as_bytes());
        for relative in std::iter::once(&script).chain(&modules) {
            part(relative.as_bytes());
            part(read(relative)?.as_bytes());
        }
        for requirements in &code.requirements {
            let bytes = std::fs::read(requirements)
                .map_err(|err| format!("cannot read requirements file {}: {err}", requirements.display()))?;
            part(&bytes);
        }
        let digest = Digest::from_bytes(*hasher.finalize().as_bytes());
        Ok(Bundle { dir, script, modules, requirements: code.requirements.clone(), digest })
    }

    /// The importable names of the bundled modules (`helper`, `pkg`,
    /// `pkg.sub`), for the build to import them all.
    pub(crate) fn module_names(&self) -> Vec<String> {
        self.modules.iter().map(|path| imports::module_name(path)).collect()
    }
}

/// The `.py` files of `dir` (relative to the bundle's root, under `prefix`)
/// and those of its packages (subdirectories with an `__init__.py`),
/// recursively.
fn collect(dir: &Path, prefix: &str, found: &mut Vec<String>) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|err| format!("cannot list {}: {err}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|err| format!("cannot list {}: {err}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if skipped(&name) {
            continue;
        }
        let path = entry.path();
        let relative = format!("{prefix}{name}");
        if path.is_dir() {
            if path.join("__init__.py").is_file() {
                collect(&path, &format!("{relative}/"), found)?;
            }
        } else if name.ends_with(".py") {
            found.push(relative);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(dir: &Path) -> PythonScript {
        PythonScript { script: dir.join("clean.py"), requirements: Vec::new() }
    }

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn bundles_helpers_and_packages_and_digests_only_them() {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("clean.py"), "import helper\nfrom pkg import sub\n");
        write(&dir.path().join("helper.py"), "X = 1\n");
        write(&dir.path().join("pkg/__init__.py"), "");
        write(&dir.path().join("pkg/sub.py"), "");
        write(&dir.path().join("notes/readme.py"), "not a package");
        write(&dir.path().join("other_step.py"), "import helper\n");
        write(&dir.path().join("data.csv"), "a,b\n");
        let bundle = Bundle::gather(&script(dir.path())).unwrap();
        assert_eq!(bundle.modules, ["helper.py", "pkg/__init__.py", "pkg/sub.py"]);
        assert_eq!(bundle.module_names(), ["helper", "pkg", "pkg.sub"]);

        write(&dir.path().join("data.csv"), "c,d\n");
        write(&dir.path().join("notes/readme.py"), "still not a package");
        write(&dir.path().join("other_step.py"), "raise SystemExit('not imported')\n");
        assert_eq!(Bundle::gather(&script(dir.path())).unwrap().digest, bundle.digest, "unbundled files do not count");
        write(&dir.path().join("pkg/sub.py"), "Y = 2\n");
        assert_ne!(Bundle::gather(&script(dir.path())).unwrap().digest, bundle.digest, "a package module counts");
    }

    #[test]
    fn refuses_what_is_not_a_script_and_reserved_names() {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("clean.txt"), "");
        let not_py = PythonScript { script: dir.path().join("clean.txt"), requirements: Vec::new() };
        assert!(Bundle::gather(&not_py).unwrap_err().contains("not a Python script"));
        assert!(Bundle::gather(&script(dir.path())).unwrap_err().contains("not found"));
        write(&dir.path().join("clean.py"), "import weir\n");
        write(&dir.path().join("weir.py"), "");
        let err = Bundle::gather(&script(dir.path())).unwrap_err();
        assert!(err.contains("weir.py") && err.contains("reserved"), "{err}");
    }
}
