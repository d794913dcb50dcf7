//! Steps' scratch directories (`tmp/step-…` with `in/` and `out/`), kept
//! open and used again: after a step that succeeded, the janitor removes by
//! name what the step left (its staged inputs, its outputs, spilled logs; the
//! parameters file stays, for the next staging to overwrite) and the
//! directory goes back to a small pool, so the next execution skips
//! creating, opening, listing and removing three directories (about twenty
//! file-system metadata operations per executed step, each 70–200 µs on a
//! busy disk). A directory whose contents are not known for certain (the
//! step failed, a removal failed) is removed whole instead, never reused.

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use cap_std::fs::Dir;

use super::Store;
use crate::limits::TopLevel;
use crate::{Error, OutputKind, Result};

/// Directories kept for reuse at most (more executions at once than this
/// each create their own, removed afterwards).
pub(super) const POOL_MAX: usize = 16;

/// A step's scratch directory, with `in/` and `out/` open.
#[derive(Debug)]
pub(crate) struct Scratch {
    /// Its name under `tmp/`.
    name: String,
    /// Its host path.
    pub(crate) path: PathBuf,
    /// The directory itself (spilled logs go here).
    pub(crate) root: Dir,
    /// `in/`: the staged inputs and parameters.
    pub(crate) in_dir: Dir,
    /// `out/`: what the step writes.
    pub(crate) out_dir: Dir,
    /// `out/` again, as a handle that can be listed (see
    /// [`listable`](super::listing::listable)).
    pub(crate) out_listable: OwnedFd,
    /// The bytes of the parameters file in `in/`, as the last staging wrote
    /// them (`None`: none was, or its write failed). A guest cannot change
    /// them (`/in` is read-only to it) and the janitor leaves the file, so
    /// a staging with the same parameters need not write it again.
    pub(crate) staged_params: Option<Vec<u8>>,
}

/// Everything an execution left in its scratch directory, so that it can
/// be emptied by name. Complete only when the step's `/out` was listed after
/// the step ended.
#[derive(Debug, Default)]
pub(crate) struct Leftovers {
    /// Entries of `in/`: the staged inputs, with their kinds.
    pub(crate) inputs: Vec<(String, OutputKind)>,
    /// The top-level entries left in `out/` (not moved into the store), and
    /// whether each is a directory.
    pub(crate) outputs: TopLevel,
    /// Files of the directory itself (logs that spilled to disk).
    pub(crate) files: Vec<String>,
}

/// A scratch directory once its execution is over: to be emptied and
/// reused when what it holds is known, removed whole otherwise.
#[derive(Debug)]
pub(crate) struct UsedScratch {
    pub(crate) scratch: Scratch,
    pub(crate) leftovers: Option<Leftovers>,
}

impl Scratch {
    /// The name of the directory under `tmp/`.
    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// Removes `leftovers`; `Err` when anything could not be removed (the
    /// directory is then not reused). Entries already gone (an output moved
    /// into the store) are fine.
    pub(super) fn empty(&self, leftovers: &Leftovers) -> std::io::Result<()> {
        let gone = |result: std::io::Result<()>| match result {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        };
        for (name, kind) in &leftovers.inputs {
            gone(match kind {
                OutputKind::File => self.in_dir.remove_file(name),
                OutputKind::Dir => self.in_dir.remove_dir_all(name),
            })?;
        }
        for (name, is_dir) in &leftovers.outputs {
            gone(if *is_dir { self.out_dir.remove_dir_all(name) } else { self.out_dir.remove_file(name) })?;
        }
        for name in &leftovers.files {
            gone(self.root.remove_file(name))?;
        }
        Ok(())
    }
}

impl Store {
    /// A scratch directory for one execution: an emptied one from the pool,
    /// or a new one.
    pub(crate) fn take_scratch(&self) -> Result<Scratch> {
        if let Some(scratch) = self.inner.janitor.take_pooled() {
            return Ok(scratch);
        }
        let name = self.temp_name("step");
        let path = self.path_of("tmp").join(&name);
        let io = |what: &str| Error::io(format!("creating scratch directory {}{what}", path.display()));
        self.inner.tmp.create_dir(&name).map_err(io(""))?;
        let root = self.inner.tmp.open_dir(&name).map_err(io(""))?;
        root.create_dir("in").map_err(io("/in"))?;
        root.create_dir("out").map_err(io("/out"))?;
        let in_dir = root.open_dir("in").map_err(io("/in"))?;
        let out_dir = root.open_dir("out").map_err(io("/out"))?;
        let out_listable = super::listing::listable(&out_dir).map_err(io("/out"))?;
        Ok(Scratch { name, path, root, in_dir, out_dir, out_listable, staged_params: None })
    }

    /// Hands a used scratch directory to the store's background janitor:
    /// emptied and pooled for the next execution, or removed. Called after
    /// the result is reported, so cleaning up is off the path from a step
    /// being ready to it being recorded (a process that dies first leaves
    /// the directory to the next one's sweep).
    pub(crate) fn release_scratch(&self, used: UsedScratch) {
        self.inner.janitor.release(used);
    }
}
