//! Moving a step's outputs from its scratch directory into the store.
//!
//! The walk goes through `cap-std` handles rooted at the scratch `out`
//! directory and never follows a symbolic link: a link, or any special file,
//! in an output is rejected.

use std::path::{Path, PathBuf};

use cap_std::fs::Dir;

use super::{Artifact, Durability, Store, Tree, TreeEntry, hash_file, make_read_only, split};
use crate::{Digest, Error, OutputKind, StepErrorKind};

impl Store {
    /// Moves output `name`, written by a guest into `out`, into the store.
    pub(crate) fn ingest_output(&self, out: &Dir, name: &str, kind: OutputKind) -> Result<Artifact, StepErrorKind> {
        let bad = |reason: String| StepErrorKind::BadOutput { output: name.to_owned(), reason };
        let metadata = match out.symlink_metadata(name) {
            Ok(metadata) => metadata,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(StepErrorKind::MissingOutput { output: name.to_owned() });
            }
            Err(err) => return Err(engine_error(Error::io(format!("reading /out/{name}"))(err))),
        };
        let found = entry_kind(&metadata.file_type(), Path::new(name)).map_err(bad)?;
        if found != kind {
            return Err(bad(format!("declared as a {kind} but the step wrote a {found}")));
        }
        let digest = match kind {
            OutputKind::File => self.ingest_file(out, Path::new(name)),
            OutputKind::Dir => self.ingest_dir(out, Path::new(name), Path::new(name)),
        };
        digest.map(|digest| Artifact { kind, digest }).map_err(|err| match err {
            IngestError::Rejected(reason) => bad(reason),
            IngestError::Store(err) => engine_error(err),
        })
    }

    /// Moves a file the engine wrote into a scratch directory (a step's log)
    /// into the store, streaming it: it is never read into memory whole.
    pub(crate) fn ingest_scratch_file(&self, dir: &Dir, name: &str) -> crate::Result<Digest> {
        self.ingest_file(dir, Path::new(name)).map_err(|err| match err {
            IngestError::Store(err) => err,
            IngestError::Rejected(reason) => Error::Corrupt { what: name.to_owned(), reason },
        })
    }

    fn ingest_file(&self, dir: &Dir, path: &Path) -> Result<Digest, IngestError> {
        let context = || format!("storing output file {}", path.display());
        // A known output stays where it is: the scratch directory's removal,
        // off the worker's path, takes it.
        Ok(self.adopt_file(dir, path, IfKnown::Keep, &context)?)
    }

    /// Hashes file `path` of `dir`, a private file nothing else writes, and
    /// moves it into the objects under its digest (synced as content, made
    /// read-only); where that object exists already, the file is kept or
    /// removed as `if_known` says. `context` names the file in errors.
    pub(super) fn adopt_file(
        &self,
        dir: &Dir,
        path: &Path,
        if_known: IfKnown,
        context: &dyn Fn() -> String,
    ) -> crate::Result<Digest> {
        let file = dir.open(path).map_err(|e| Error::io(context())(e))?.into_std();
        let digest = hash_file(&file).map_err(|e| Error::io(context())(e))?;
        let (fan, rest) = split(&digest);
        if super::has_entry(&self.inner.objects, &Path::new(&fan).join(&rest)) {
            if if_known == IfKnown::Remove {
                // A leftover is unreachable from any entry; failing to remove it loses nothing.
                let _ = dir.remove_file(path);
            }
            return Ok(digest);
        }
        self.settle(Durability::Content, || file.sync_all())
            .and_then(|()| make_read_only(&file))
            .map_err(|e| Error::io(context())(e))?;
        self.rename_from(dir, path, &self.inner.objects, &fan, &rest)?;
        Ok(digest)
    }

    /// Stores directory `name` of `parent`; `path` is its path under `/out`, for messages.
    fn ingest_dir(&self, parent: &Dir, name: &Path, path: &Path) -> Result<Digest, IngestError> {
        let context = || format!("storing output directory {}", path.display());
        let dir = parent.open_dir(name).map_err(|e| Error::io(context())(e))?;
        let mut entries = Vec::new();
        for entry in dir.entries().map_err(|e| Error::io(context())(e))? {
            let entry = entry.map_err(|e| Error::io(context())(e))?;
            let name = entry.file_name();
            let child: PathBuf = path.join(&name);
            let Some(text) = name.to_str() else {
                return Err(IngestError::Rejected(format!("{} is not a UTF-8 file name", child.display())));
            };
            let file_type = entry.file_type().map_err(|e| Error::io(context())(e))?;
            let kind = entry_kind(&file_type, &child).map_err(IngestError::Rejected)?;
            let digest = match kind {
                OutputKind::File => self.ingest_file(&dir, Path::new(text))?,
                OutputKind::Dir => self.ingest_dir(&dir, Path::new(text), &child)?,
            };
            entries.push(TreeEntry { name: text.to_owned(), kind, digest });
        }
        Ok(self.put_tree(&Tree::new(entries))?)
    }
}

/// Classifies an entry without following links; rejects links and special files.
fn entry_kind(file_type: &cap_std::fs::FileType, path: &Path) -> Result<OutputKind, String> {
    if file_type.is_symlink() {
        Err(format!("{} is a symbolic link; outputs may hold only regular files and directories", path.display()))
    } else if file_type.is_file() {
        Ok(OutputKind::File)
    } else if file_type.is_dir() {
        Ok(OutputKind::Dir)
    } else {
        Err(format!("{} is a special file; outputs may hold only regular files and directories", path.display()))
    }
}

fn engine_error(err: Error) -> StepErrorKind {
    StepErrorKind::Engine(err.to_string())
}

/// What [`Store::adopt_file`] does with a file whose object exists already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IfKnown {
    /// Leave it (its directory is removed as a whole later).
    Keep,
    /// Remove it now.
    Remove,
}

/// Why an output could not be stored.
enum IngestError {
    /// The guest wrote something outputs may not contain.
    Rejected(String),
    /// The store failed.
    Store(Error),
}

impl From<Error> for IngestError {
    fn from(err: Error) -> Self {
        IngestError::Store(err)
    }
}
