//! Getting artifacts out of the store: into a step's `/in`, or exported to a host path.

use std::io;
use std::path::Path;

use cap_std::ambient_authority;
use cap_std::fs::Dir;

use super::{Artifact, Store, split};
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
        if self.inner.objects.hard_link(&source, dest, name).is_ok() {
            return Ok(());
        }
        let bytes = self.read_file(digest)?;
        dest.write(name, bytes).map_err(Error::io(format!("copying {digest} to {}", name.display())))
    }

    /// Copies an artifact out of the store to the host path `dest`.
    ///
    /// A file replaces `dest` atomically; a directory must not exist yet.
    pub fn export(&self, digest: &Digest, dest: &Path) -> Result<OutputKind> {
        let kind = self.kind_of(digest).ok_or(Error::ArtifactNotFound { digest: *digest })?;
        let parent = match dest.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let name = dest.file_name().ok_or_else(|| Error::Io {
            context: format!("exporting to {}", dest.display()),
            source: io::Error::new(io::ErrorKind::InvalidInput, "the destination has no file name"),
        })?;
        let parent_dir = Dir::open_ambient_dir(parent, ambient_authority())
            .map_err(Error::io(format!("opening export directory {}", parent.display())))?;
        match kind {
            OutputKind::File => {
                let temp = format!(".{}.weir-export", name.to_string_lossy());
                let bytes = self.read_file(digest)?;
                parent_dir
                    .write(&temp, bytes)
                    .and_then(|()| parent_dir.rename(&temp, &parent_dir, name))
                    .map_err(Error::io(format!("exporting to {}", dest.display())))?;
            }
            OutputKind::Dir => {
                if dest.exists() {
                    return Err(Error::Io {
                        context: format!("exporting a directory to {}", dest.display()),
                        source: io::Error::new(io::ErrorKind::AlreadyExists, "the destination already exists"),
                    });
                }
                self.materialize_copy(digest, &parent_dir, Path::new(name))?;
            }
        }
        Ok(kind)
    }

    /// Like [`export`](Self::export), but a directory replaces whatever is at
    /// `dest`: it is written beside it, then swapped in, so `dest` is never
    /// half-written. Parent directories are created.
    pub fn export_replacing(&self, digest: &Digest, dest: &Path) -> Result<OutputKind> {
        if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(Error::io(format!("creating {}", parent.display())))?;
        }
        if self.kind_of(digest) != Some(OutputKind::Dir) || !dest.exists() {
            return self.export(digest, dest);
        }
        let sibling = |suffix: &str| {
            let mut name = dest.file_name().unwrap_or_default().to_os_string();
            name.push(suffix);
            dest.with_file_name(name)
        };
        let (fresh, old) = (sibling(".weir-new"), sibling(".weir-old"));
        for stale in [&fresh, &old] {
            if stale.exists() {
                std::fs::remove_dir_all(stale).map_err(Error::io(format!("removing {}", stale.display())))?;
            }
        }
        let kind = self.export(digest, &fresh)?;
        std::fs::rename(dest, &old)
            .and_then(|()| std::fs::rename(&fresh, dest))
            .map_err(Error::io(format!("replacing {}", dest.display())))?;
        std::fs::remove_dir_all(&old).map_err(Error::io(format!("removing {}", old.display())))?;
        Ok(kind)
    }

    /// Writes a directory artifact as plain (writable) copies, never links.
    fn materialize_copy(&self, digest: &Digest, dest: &Dir, name: &Path) -> Result<()> {
        let context = || format!("exporting directory {}", name.display());
        dest.create_dir(name).map_err(|e| Error::io(context())(e))?;
        let sub = dest.open_dir(name).map_err(|e| Error::io(context())(e))?;
        for entry in self.read_tree(digest)?.entries() {
            match entry.kind {
                OutputKind::File => {
                    let bytes = self.read_file(&entry.digest)?;
                    sub.write(&entry.name, bytes).map_err(|e| Error::io(context())(e))?;
                }
                OutputKind::Dir => self.materialize_copy(&entry.digest, &sub, Path::new(&entry.name))?,
            }
        }
        Ok(())
    }
}
