//! Getting artifacts out of the store: into a step's `/in`, or exported to a host path.

use std::io;
use std::path::Path;

use cap_std::fs::Dir;

use super::{Artifact, Store, split};
use crate::host_files::HostFiles;
use crate::{Digest, Error, OutputKind, Result};

impl Store {
    /// Places `artifact` at `dest/name`: files are hard links to the (read-only)
    /// store objects, or copies where a link is impossible; directories are rebuilt.
    pub(crate) fn materialize(&self, artifact: &Artifact, dest: &Dir, name: &Path) -> Result<()> {
        match artifact.kind {
            OutputKind::File => self.link_or_copy(&artifact.digest, dest, name),
            OutputKind::Dir => {
                let context = || format!("preparing input directory {}", name.display());
                dest.create_dir(name).map_err(|e| Error::io(context())(e))?;
                let sub = dest.open_dir(name).map_err(|e| Error::io(context())(e))?;
                for entry in self.read_tree(&artifact.digest)?.entries() {
                    let child = Artifact { kind: entry.kind, digest: entry.digest };
                    self.materialize(&child, &sub, Path::new(&entry.name))?;
                }
                Ok(())
            }
        }
    }

    fn link_or_copy(&self, digest: &Digest, dest: &Dir, name: &Path) -> Result<()> {
        let (fan, rest) = split(digest);
        let source = Path::new(&fan).join(rest);
        if super::link_from_digest(&self.inner.objects, &source, dest, name).is_ok() {
            return Ok(());
        }
        self.copy_file_out(digest, dest, name)
    }

    /// Copies an artifact out of the store to the host path `dest`, creating
    /// its parent directories. A file replaces `dest` atomically; a directory
    /// must not exist yet. Files are streamed, never held in memory whole.
    pub fn export(&self, digest: &Digest, dest: &Path) -> Result<OutputKind> {
        let (dir, name) = HostFiles::Ambient.export_parent(dest).map_err(|why| Error::Io {
            context: format!("exporting to {}", dest.display()),
            source: io::Error::other(why),
        })?;
        self.export_into(digest, &dir, Path::new(&name), dest, false)
    }

    /// Like [`export`](Self::export) into `name` of `dir` (`shown` names it
    /// in errors), but a directory replaces whatever is there: it is written
    /// beside it, then swapped in, so it is never half-written. Everything
    /// happens through `dir`, so a link cannot lead the export elsewhere.
    pub(crate) fn export_replacing(&self, digest: &Digest, dir: &Dir, name: &Path, shown: &Path) -> Result<OutputKind> {
        self.export_into(digest, dir, name, shown, true)
    }

    fn export_into(&self, digest: &Digest, dir: &Dir, name: &Path, shown: &Path, replace: bool) -> Result<OutputKind> {
        let kind = self.kind_of(digest).ok_or(Error::ArtifactNotFound { digest: *digest })?;
        let context = || format!("exporting to {}", shown.display());
        match kind {
            OutputKind::File => {
                let mut temp = std::ffi::OsString::from(".");
                temp.push(name.as_os_str());
                temp.push(".weir-export");
                self.copy_file_out(digest, dir, Path::new(&temp))?;
                dir.rename(&temp, dir, name).map_err(|e| Error::io(context())(e))?;
            }
            OutputKind::Dir if dir.symlink_metadata(name).is_err() => self.materialize_copy(digest, dir, name)?,
            OutputKind::Dir if !replace => {
                return Err(Error::Io {
                    context: format!("exporting a directory to {}", shown.display()),
                    source: io::Error::new(io::ErrorKind::AlreadyExists, "something is there already"),
                });
            }
            OutputKind::Dir => self.swap_in(digest, dir, name, shown)?,
        }
        Ok(kind)
    }

    /// Writes directory artifact `digest` beside `name` in `dir`, then swaps
    /// it in for what is there.
    fn swap_in(&self, digest: &Digest, dir: &Dir, name: &Path, shown: &Path) -> Result<()> {
        let context = || format!("replacing {}", shown.display());
        let sibling = |suffix: &str| {
            let mut sibling = name.as_os_str().to_owned();
            sibling.push(suffix);
            std::path::PathBuf::from(sibling)
        };
        let remove = |path: &Path| dir.remove_dir_all(path).or_else(|_| dir.remove_file(path));
        let (fresh, old) = (sibling(".weir-new"), sibling(".weir-old"));
        for stale in [&fresh, &old] {
            if dir.symlink_metadata(stale).is_ok() {
                remove(stale).map_err(|e| Error::io(context())(e))?;
            }
        }
        self.materialize_copy(digest, dir, &fresh)?;
        dir.rename(name, dir, &old)
            .and_then(|()| dir.rename(&fresh, dir, name))
            .and_then(|()| remove(&old))
            .map_err(|e| Error::io(context())(e))
    }

    /// Writes file artifact `digest` to `name` in `dest` as a plain
    /// (writable) copy, streamed.
    fn copy_file_out(&self, digest: &Digest, dest: &Dir, name: &Path) -> Result<()> {
        let mut source = self.open_file(digest)?;
        let context = || format!("writing {}", name.display());
        let mut target = dest.create(name).map_err(|e| Error::io(context())(e))?;
        io::copy(&mut source, &mut target).map(|_| ()).map_err(|e| Error::io(context())(e))
    }

    /// Writes a directory artifact as plain (writable) copies, never links.
    fn materialize_copy(&self, digest: &Digest, dest: &Dir, name: &Path) -> Result<()> {
        let context = || format!("exporting directory {}", name.display());
        dest.create_dir(name).map_err(|e| Error::io(context())(e))?;
        let sub = dest.open_dir(name).map_err(|e| Error::io(context())(e))?;
        for entry in self.read_tree(digest)?.entries() {
            match entry.kind {
                OutputKind::File => self.copy_file_out(&entry.digest, &sub, Path::new(&entry.name))?,
                OutputKind::Dir => self.materialize_copy(&entry.digest, &sub, Path::new(&entry.name))?,
            }
        }
        Ok(())
    }
}
