//! A published pipeline version's files: the manifest and everything it
//! names, each a blob by digest at a path relative to the manifest's
//! directory. A bundle is written out (materialized) beneath its tenant's
//! directory and loaded confined to it, so it can never name a path of the
//! server's disk.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::Serialize;
use weir::package::{Packages, TrustPolicy};
use weir::{Digest, Engine, Pipeline};

use crate::ServerError;
use crate::problem::Problem;
use crate::state::AppState;

/// The directory, beneath a tenant's root, of its materialized bundles.
const PUBLISHED: &str = ".published";

/// The files of a pipeline version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Bundle {
    /// The manifest's path among `files`.
    pub manifest: String,
    /// Each file's path (relative, `/`-separated) and digest.
    pub files: BTreeMap<String, Digest>,
}

impl Bundle {
    /// Checks a bundle as a client sent it: plain relative paths, digests,
    /// the manifest among the files. Errors name the field.
    pub fn parse(manifest: &str, files: &BTreeMap<String, String>) -> Result<Bundle, Problem> {
        check_path(manifest).map_err(|why| Problem::bad_field("manifest", why))?;
        let mut parsed = BTreeMap::new();
        for (path, digest) in files {
            let field = || format!("files[{path:?}]");
            check_path(path).map_err(|why| Problem::bad_field(field(), why))?;
            let digest = Digest::parse(digest).map_err(|err| Problem::bad_field(field(), err))?;
            parsed.insert(path.clone(), digest);
        }
        if !parsed.contains_key(manifest) {
            return Err(Problem::bad_field("manifest", format!("{manifest:?} is not among `files`")));
        }
        let bundle = Bundle { manifest: manifest.to_owned(), files: parsed };
        // A file may not also be a directory of another (`a` and `a/b`).
        for path in bundle.files.keys() {
            let mut prefix = String::new();
            for part in path.split('/') {
                if !prefix.is_empty() && bundle.files.contains_key(&prefix) {
                    return Err(Problem::bad_field(
                        format!("files[{path:?}]"),
                        format!("{prefix:?} is a file, so it cannot also be a directory"),
                    ));
                }
                if !prefix.is_empty() {
                    prefix.push('/');
                }
                prefix.push_str(part);
            }
        }
        Ok(bundle)
    }

    /// The digest of the bundle's content: publishing the same content
    /// twice finds the same version.
    pub fn content(&self) -> Digest {
        Digest::of(&serde_json::to_vec(self).unwrap_or_default())
    }

    /// The bundle with the file at `path` (and anything beneath it, where it
    /// was a directory) replaced by `digest`.
    pub fn replacing(&self, path: &str, digest: Digest) -> Bundle {
        let mut files = self.files.clone();
        let below = format!("{path}/");
        files.retain(|name, _| !name.starts_with(&below));
        files.insert(path.to_owned(), digest);
        Bundle { manifest: self.manifest.clone(), files }
    }

    /// Writes the bundle's files beneath `tenant`'s directory (once: a
    /// bundle's directory is named by its content) and returns that
    /// directory and the root its pipeline must be loaded within.
    pub fn materialize(&self, state: &AppState, tenant: &str) -> Result<Materialized, ServerError> {
        let engine = &state.engine;
        let tenant_root = engine.tenant_root(tenant)?;
        let root = tenant_root.clone().unwrap_or_else(|| engine.store().root().join("server"));
        let dir = root.join(PUBLISHED).join(self.content().hex());
        if !dir.is_dir() {
            let parent = root.join(PUBLISHED);
            std::fs::create_dir_all(&parent)
                .map_err(|err| ServerError::io(format!("creating {}", parent.display()), err))?;
            let temp = parent.join(format!(".tmp-{}", crate::tokens::random_hex(8)?));
            let written = self.write_into(engine, &temp);
            let renamed = written.and_then(|()| match std::fs::rename(&temp, &dir) {
                Ok(()) => Ok(()),
                // Another request materialized the same bundle first.
                Err(_) if dir.is_dir() => Ok(()),
                Err(err) => Err(ServerError::io(format!("moving a bundle to {}", dir.display()), err)),
            });
            if renamed.is_err() || temp.exists() {
                let _ = std::fs::remove_dir_all(&temp);
            }
            renamed?;
        }
        let confined_to = if tenant_root.is_some() { root } else { dir.clone() };
        Ok(Materialized {
            manifest: dir.join(&self.manifest),
            dir,
            confined_to,
            kept_packages: engine.store().root().join("packages"),
            trust: state.config.packages.clone(),
            registry: state.config.registry.clone(),
        })
    }

    fn write_into(&self, engine: &Engine, dir: &Path) -> Result<(), ServerError> {
        for (path, digest) in &self.files {
            let dest = dir.join(path);
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|err| ServerError::io(format!("creating {}", parent.display()), err))?;
            }
            engine.store().export(digest, &dest)?;
        }
        Ok(())
    }
}

/// A bundle written out on the server's disk.
#[derive(Debug, Clone)]
pub struct Materialized {
    /// The bundle's directory.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: PathBuf,
    /// The directory its pipeline is loaded within (the tenant's root).
    pub confined_to: PathBuf,
    /// The workspace's kept registry packages.
    kept_packages: PathBuf,
    /// Which packages its steps may use.
    trust: TrustPolicy,
    /// Where packages named by reference are pulled from.
    registry: Option<crate::config::PackageSource>,
}

impl Materialized {
    /// Loads the bundle's pipeline as the server runs it: confined, with no
    /// exports. A validation error becomes a 400 that names the file by its
    /// path in the bundle, never by its path on the server.
    pub fn load(&self) -> Result<Pipeline, Problem> {
        self.load_within(&self.confined_to)
    }

    /// Loads the pipeline confined to the bundle itself: how publishing
    /// checks that the manifest names nothing outside it.
    pub fn load_strictly(&self) -> Result<Pipeline, Problem> {
        self.load_within(&self.dir)
    }

    /// Loads the pipeline as [`load_strictly`](Self::load_strictly) does
    /// where some inputs' files were not published: each gets an empty
    /// placeholder (every trigger must replace it), and their paths are
    /// returned.
    pub fn load_without_inputs(&self) -> Result<(Pipeline, Vec<PathBuf>), Problem> {
        let err = match Pipeline::from_manifest_within_with(&self.dir, &self.manifest, &self.packages()) {
            Ok(pipeline) => return Ok((pipeline.without_exports(), Vec::new())),
            Err(err) => err,
        };
        let mut missing = Vec::new();
        for problem in err.errors() {
            match problem.kind() {
                weir::ValidationErrorKind::InputMissing { path } if path.starts_with(&self.dir) => {
                    missing.push(path.clone())
                }
                _ => return Err(self.problem(&err)),
            }
        }
        for path in &missing {
            let placed = path.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|()| std::fs::write(path, b""));
            placed.map_err(|err| ServerError::io(format!("writing a placeholder at {}", path.display()), err))?;
        }
        Ok((self.load_strictly()?, missing))
    }

    fn load_within(&self, root: &Path) -> Result<Pipeline, Problem> {
        let pipeline = Pipeline::from_manifest_within_with(root, &self.manifest, &self.packages())
            .map_err(|err| self.problem(&err))?;
        Ok(pipeline.without_exports())
    }

    /// The packages its steps may use, checked against the server's trust
    /// policy: archives it carries, and registry packages as its lock file
    /// pins them (kept in the workspace, or pulled from a registry the
    /// server allows).
    pub fn packages(&self) -> Packages {
        let packages = Packages::new(&self.kept_packages).trusting(self.trust.clone()).frozen();
        match &self.registry {
            Some(source) => packages.fetching(source.0.clone()),
            None => packages,
        }
    }

    /// A validation error as a 400 naming the field, with the bundle's paths
    /// shown relative.
    pub fn problem(&self, err: &weir::ValidationError) -> Problem {
        {
            let location = err.location();
            let field = match (&location.step, &location.field) {
                (Some(step), Some(field)) => Some(format!("steps.{step}.{field}")),
                (Some(step), None) => Some(format!("steps.{step}")),
                (None, field) => field.clone(),
            };
            let mut problem = Problem::new(axum::http::StatusCode::BAD_REQUEST, self.hide_paths(&err.to_string()));
            problem.field = field;
            problem
        }
    }

    /// `text` with the server's paths of the bundle's files shown relative.
    pub fn hide_paths(&self, text: &str) -> String {
        let mut prefix = self.dir.display().to_string();
        prefix.push('/');
        let text = text.replace(&prefix, "");
        text.replace(&self.confined_to.display().to_string(), "<tenant directory>")
    }

    /// The path, relative to the bundle, of a file of its pipeline.
    pub fn relative(&self, path: &Path) -> Option<String> {
        bundle_path(path, &self.dir)
    }
}

/// `path` as a bundle names it: relative to `root`, `/`-separated, when it
/// lies beneath it (plain names only, UTF-8).
pub fn bundle_path(path: &Path, root: &Path) -> Option<String> {
    let relative = path.strip_prefix(root).ok()?;
    let parts: Option<Vec<&str>> = relative
        .components()
        .map(|part| match part {
            Component::Normal(name) => name.to_str(),
            _ => None,
        })
        .collect();
    parts.filter(|parts| !parts.is_empty()).map(|parts| parts.join("/"))
}

/// The path within its bundle of `path`, a file of a materialized bundle
/// (`…/.published/<content>/dir/pipeline.toml` → `dir/pipeline.toml`);
/// `None` for any other path.
pub fn published_path(path: &str) -> Option<&str> {
    let (_, rest) = path.rsplit_once(&format!("/{PUBLISHED}/"))?;
    rest.split_once('/').map(|(_, inside)| inside)
}

/// A bundle path: relative, `/`-separated names, no `.`, `..` or empty part.
pub(crate) fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() || path.len() > 1024 {
        return Err("a path must have 1 to 1024 characters".into());
    }
    if path.starts_with('/') || path.contains('\\') {
        return Err(format!(
            "{path:?} is not a relative `/`-separated path: a published pipeline names only its own files"
        ));
    }
    for part in path.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return Err(format!(
                "{path:?} has a `{part}` part: a published pipeline names only files beneath its manifest's directory"
            ));
        }
        if part.chars().any(char::is_control) {
            return Err(format!("{path:?} has a control character"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(text: &str) -> String {
        Digest::of(text.as_bytes()).to_string()
    }

    #[test]
    fn paths_outside_the_bundle_are_refused_naming_the_file() {
        for bad in ["/etc/passwd", "../x", "a/../../x", "a//b", "./a", "a\\b", ""] {
            let files = BTreeMap::from([("p.toml".to_owned(), digest("m")), (bad.to_owned(), digest("x"))]);
            let problem = Bundle::parse("p.toml", &files).unwrap_err();
            assert_eq!(problem.status, 400, "{bad}");
            assert_eq!(problem.field.as_deref(), Some(format!("files[{bad:?}]").as_str()));
        }
        let files = BTreeMap::from([("p.toml".to_owned(), "blake3:nothex".to_owned())]);
        assert_eq!(Bundle::parse("p.toml", &files).unwrap_err().field.as_deref(), Some("files[\"p.toml\"]"));
        let files = BTreeMap::from([("a".to_owned(), digest("m"))]);
        assert_eq!(Bundle::parse("p.toml", &files).unwrap_err().field.as_deref(), Some("manifest"));
        let files = BTreeMap::from([("a".to_owned(), digest("m")), ("a/b".to_owned(), digest("n"))]);
        assert_eq!(Bundle::parse("a", &files).unwrap_err().field.as_deref(), Some("files[\"a/b\"]"));
    }

    #[test]
    fn the_content_digest_covers_paths_and_digests_and_a_replacement_drops_a_directory() {
        let files = BTreeMap::from([
            ("p.toml".to_owned(), digest("m")),
            ("data/a".to_owned(), digest("a")),
            ("data/b".to_owned(), digest("b")),
        ]);
        let bundle = Bundle::parse("p.toml", &files).unwrap();
        assert_eq!(bundle.content(), Bundle::parse("p.toml", &files).unwrap().content());
        let replaced = bundle.replacing("data", Digest::of(b"new"));
        assert_eq!(replaced.files.keys().collect::<Vec<_>>(), ["data", "p.toml"]);
        assert_ne!(replaced.content(), bundle.content());
        let mut moved = files.clone();
        moved.insert("data/c".to_owned(), moved["data/b"].clone());
        moved.remove("data/b");
        assert_ne!(Bundle::parse("p.toml", &moved).unwrap().content(), bundle.content());
    }
}
