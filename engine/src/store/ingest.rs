//! Moving a step's outputs from its scratch directory into the store.
//!
//! The walk goes through `cap-std` handles rooted at the scratch `out`
//! directory and never follows a symbolic link: a link, or any special file,
//! in an output is rejected.

use std::fs::{File, Metadata};
use std::path::{Path, PathBuf};

use cap_std::fs::Dir;

use super::listing::Listed;
use super::{Artifact, Durability, Store, Tree, TreeEntry, hash_file_of_len, set_read_only, split};
use crate::{Digest, Error, OutputKind, StepErrorKind};

impl Store {
    /// Moves output `name` of `out`, as its listing found it (`None`: it is
    /// absent), into the store.
    pub(crate) fn ingest_output(
        &self,
        out: &Dir,
        name: &str,
        kind: OutputKind,
        found: Option<Listed>,
    ) -> Result<Ingested, StepErrorKind> {
        let bad = |reason: String| StepErrorKind::BadOutput { output: name.to_owned(), reason };
        let found = found.ok_or_else(|| StepErrorKind::MissingOutput { output: name.to_owned() })?;
        check_output_kind(name, kind, &found)?;
        let context = || format!("storing output file {name}");
        let adopted = |adopted: crate::Result<Adopted>| match adopted? {
            Adopted::Moved(digest) => Ok((digest, false)),
            Adopted::Known(digest) => Ok((digest, true)),
        };
        let stored = match found {
            Listed::File(Some((file, metadata))) => {
                adopted(self.adopt_opened(out, Path::new(name), &file, &metadata, IfKnown::Keep, &context))
            }
            Listed::File(None) => adopted(self.adopt_file(out, Path::new(name), IfKnown::Keep, &context)),
            // A directory (links and special files were refused above) stays
            // in `/out`, with any file in it whose bytes the store held already.
            Listed::Dir | Listed::Link | Listed::Special => {
                self.ingest_dir(out, Path::new(name), Path::new(name)).map(|digest| (digest, true))
            }
        };
        match stored {
            Ok((digest, left_in_out)) => Ok(Ingested { artifact: Artifact { kind, digest }, left_in_out }),
            Err(IngestError::Rejected(reason)) => Err(bad(reason)),
            Err(IngestError::Store(err)) => Err(engine_error(err)),
        }
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
        Ok(self.adopt_file(dir, path, IfKnown::Keep, &context)?.digest())
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
    ) -> crate::Result<Adopted> {
        let file = dir.open(path).map_err(|e| Error::io(context())(e))?.into_std();
        let metadata = file.metadata().map_err(|e| Error::io(context())(e))?;
        self.adopt_opened(dir, path, &file, &metadata, if_known, context)
    }

    /// [`adopt_file`](Self::adopt_file) of `file`, open already, with its `metadata`.
    fn adopt_opened(
        &self,
        dir: &Dir,
        path: &Path,
        file: &File,
        metadata: &Metadata,
        if_known: IfKnown,
        context: &dyn Fn() -> String,
    ) -> crate::Result<Adopted> {
        let digest = hash_file_of_len(file, metadata.len()).map_err(|e| Error::io(context())(e))?;
        let (fan, rest) = split(&digest);
        // Made ready as an object before it can become one; when the
        // object turns out to exist, this file is left (or removed) as it is.
        self.settle(Durability::Content, || file.sync_all())
            .and_then(|()| set_read_only(file, metadata.permissions()))
            .map_err(|e| Error::io(context())(e))?;
        if !self.rename_new_from(dir, path, &self.inner.objects, &fan, &rest)? {
            if if_known == IfKnown::Remove {
                // A leftover is unreachable from any entry; failing to remove it loses nothing.
                let _ = dir.remove_file(path);
            }
            return Ok(Adopted::Known(digest));
        }
        Ok(Adopted::Moved(digest))
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

/// Checks that output `name`, declared a `kind`, is what the step wrote
/// (`found`): of that kind, and no link or special file.
pub(crate) fn check_output_kind(name: &str, kind: OutputKind, found: &Listed) -> Result<(), StepErrorKind> {
    let bad = |reason: String| StepErrorKind::BadOutput { output: name.to_owned(), reason };
    let found_kind = found.kind(Path::new(name)).map_err(bad)?;
    if found_kind != kind {
        return Err(bad(format!("declared as a {kind} but the step wrote a {found_kind}")));
    }
    Ok(())
}

/// Classifies an entry without following links; rejects links and special files.
fn entry_kind(file_type: &cap_std::fs::FileType, path: &Path) -> Result<OutputKind, String> {
    let listed = if file_type.is_symlink() {
        Listed::Link
    } else if file_type.is_file() {
        Listed::File(None)
    } else if file_type.is_dir() {
        Listed::Dir
    } else {
        Listed::Special
    };
    listed.kind(path)
}

fn engine_error(err: Error) -> StepErrorKind {
    StepErrorKind::Engine(err.to_string())
}

/// An output as stored.
#[derive(Debug)]
pub(crate) struct Ingested {
    /// What it is in the store.
    pub artifact: Artifact,
    /// Whether it is still in `/out` (a directory, or a file whose bytes the
    /// store held already), for the scratch directory's cleanup to remove.
    pub left_in_out: bool,
}

/// What [`Store::adopt_file`] did with a file.
#[derive(Debug, Clone, Copy)]
pub(super) enum Adopted {
    /// Moved into the objects under its digest.
    Moved(Digest),
    /// Left where it was (or removed, as asked): the object existed already.
    Known(Digest),
}

impl Adopted {
    /// The digest of the file's bytes.
    pub(super) fn digest(self) -> Digest {
        match self {
            Adopted::Moved(digest) | Adopted::Known(digest) => digest,
        }
    }
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
