//! Which host files a pipeline may name: its manifests and sub-pipelines,
//! modules, inputs and exports.
//!
//! The operator (the default tenant) may name any path the process can
//! reach. A tenant may not: its files resolve beneath a root directory
//! opened as a capability handle, so an absolute path, a `..`, or a symbolic
//! link that leaves the root is refused, and `/proc`, `/sys` or another
//! tenant's files are out of reach. Special files (FIFOs, devices, sockets)
//! are never read as files.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use cap_std::ambient_authority;
use cap_std::fs::Dir;

/// How a pipeline reaches host files.
#[derive(Debug, Clone)]
pub(crate) enum HostFiles {
    /// Any path the process can reach (the operator).
    Ambient,
    /// Only paths beneath one directory (a tenant).
    Within(Arc<Confinement>),
}

/// A directory, opened once, beneath which every path must resolve.
#[derive(Debug)]
pub(crate) struct Confinement {
    /// The root, canonical.
    root: PathBuf,
    /// The root as it was named (made absolute), which paths joined to it begin with.
    named: PathBuf,
    dir: Dir,
}

/// What a host path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HostKind {
    File,
    Dir,
}

impl Confinement {
    /// Opens `root` (which must be an existing directory) as the confinement root.
    pub(crate) fn open(root: &Path) -> io::Result<Self> {
        let named = std::path::absolute(root)?;
        let root = root.canonicalize()?;
        let dir = Dir::open_ambient_dir(&root, ambient_authority())?;
        Ok(Self { root, named, dir })
    }

    /// The root directory.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// `path` (relative to the current directory, as every path weir is
    /// given) relative to the root: it must lie beneath the root as written
    /// (paths elsewhere and `..` are refused before any file is touched).
    pub(crate) fn relative(&self, path: &Path) -> Result<PathBuf, String> {
        let absolute = std::path::absolute(path).map_err(|err| format!("{}: {err}", path.display()))?;
        let relative = absolute
            .strip_prefix(&self.root)
            .or_else(|_| absolute.strip_prefix(&self.named))
            .map_err(|_| self.outside(path))?;
        let plain = relative.components().all(|part| matches!(part, Component::Normal(_) | Component::CurDir));
        if !plain || relative.as_os_str().is_empty() {
            return Err(self.outside(path));
        }
        Ok(relative.to_owned())
    }

    fn outside(&self, path: &Path) -> String {
        format!("{} is outside {}, the directory it must be in", path.display(), self.root.display())
    }
}

impl HostFiles {
    /// Files confined beneath `root`.
    pub(crate) fn within(root: &Path) -> io::Result<Self> {
        Ok(HostFiles::Within(Arc::new(Confinement::open(root)?)))
    }

    /// Whether paths are confined.
    pub(crate) fn confined(&self) -> bool {
        matches!(self, HostFiles::Within(_))
    }

    /// The confinement root, if any.
    pub(crate) fn root(&self) -> Option<&Path> {
        match self {
            HostFiles::Ambient => None,
            HostFiles::Within(confinement) => Some(confinement.root()),
        }
    }

    /// Checks that `path` may be named at all (lexically), without touching it.
    pub(crate) fn check(&self, path: &Path) -> Result<(), String> {
        match self {
            HostFiles::Ambient => Ok(()),
            HostFiles::Within(confinement) => confinement.relative(path).map(|_| ()),
        }
    }

    /// What `path` is (following links, which may not leave a confinement),
    /// or `None` where nothing is. Anything but a regular file or a
    /// directory is an error.
    pub(crate) fn kind(&self, path: &Path) -> Result<Option<HostKind>, String> {
        let found = match self {
            HostFiles::Ambient => std::fs::metadata(path).map(|meta| (meta.is_dir(), meta.is_file())),
            HostFiles::Within(confinement) => {
                let relative = confinement.relative(path)?;
                confinement.dir.metadata(relative).map(|meta| (meta.is_dir(), meta.is_file()))
            }
        };
        match found {
            Ok((true, _)) => Ok(Some(HostKind::Dir)),
            Ok((_, true)) => Ok(Some(HostKind::File)),
            Ok(_) => Err(format!("{} is not a regular file or directory", path.display())),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(describe(path, &err)),
        }
    }

    /// Opens the regular file `path` for reading. It is looked at before it
    /// is opened, so a FIFO or device is refused instead of blocking weir.
    pub(crate) fn open_file(&self, path: &Path) -> Result<File, String> {
        match self.kind(path)? {
            Some(HostKind::File) => {}
            Some(HostKind::Dir) => return Err(format!("{} is a directory, not a file", path.display())),
            None => return Err(format!("{}: no such file", path.display())),
        }
        let file = match self {
            HostFiles::Ambient => File::open(path).map_err(|err| describe(path, &err))?,
            HostFiles::Within(confinement) => {
                let relative = confinement.relative(path)?;
                confinement.dir.open(relative).map_err(|err| describe(path, &err))?.into_std()
            }
        };
        let meta = file.metadata().map_err(|err| describe(path, &err))?;
        if !meta.is_file() {
            return Err(format!("{} is not a regular file", path.display()));
        }
        Ok(file)
    }

    /// Reads the regular file `path` whole, refusing one longer than `max` bytes.
    pub(crate) fn read_capped(&self, path: &Path, max: u64) -> Result<Vec<u8>, String> {
        read_open_capped(self.open_file(path)?, path, max)
    }

    /// The names in directory `path`.
    pub(crate) fn list(&self, path: &Path) -> Result<Vec<OsString>, String> {
        match self {
            HostFiles::Ambient => std::fs::read_dir(path)
                .and_then(|entries| entries.map(|entry| entry.map(|entry| entry.file_name())).collect())
                .map_err(|err| describe(path, &err)),
            HostFiles::Within(confinement) => {
                let relative = confinement.relative(path)?;
                let dir = confinement.dir.open_dir(relative).map_err(|err| describe(path, &err))?;
                dir.entries()
                    .and_then(|entries| entries.map(|entry| entry.map(|entry| entry.file_name())).collect())
                    .map_err(|err| describe(path, &err))
            }
        }
    }

    /// The directory an export to `dest` is written into, and the name in it.
    /// Confined, `dest` must lie beneath the root, and so must every
    /// directory on the way (created as needed, links not followed out).
    pub(crate) fn export_parent(&self, dest: &Path) -> Result<(Dir, OsString), String> {
        let name = dest.file_name().ok_or_else(|| format!("{} has no file name", dest.display()))?.to_owned();
        let parent = dest.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let creating = |err: io::Error| format!("creating {}: {err}", parent.display());
        let dir = match self {
            HostFiles::Ambient => {
                std::fs::create_dir_all(parent).map_err(creating)?;
                Dir::open_ambient_dir(parent, ambient_authority()).map_err(creating)?
            }
            HostFiles::Within(confinement) => {
                let relative = confinement.relative(dest)?;
                match relative.parent().filter(|parent| !parent.as_os_str().is_empty()) {
                    None => confinement.dir.try_clone().map_err(creating)?,
                    Some(parent) => {
                        confinement.dir.create_dir_all(parent).map_err(creating)?;
                        confinement.dir.open_dir(parent).map_err(creating)?
                    }
                }
            }
        };
        Ok((dir, name))
    }
}

/// `path: error`, without repeating the error's own text.
fn describe(path: &Path, err: &io::Error) -> String {
    format!("{}: {err}", path.display())
}

/// Reads `file`, opened from `path`, whole, refusing one longer than `max`
/// bytes. The buffer is sized from the file's length at once: growing it
/// by doubling copied a large file several times into fresh memory.
pub(crate) fn read_open_capped(file: File, path: &Path, max: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let length = file.metadata().map_or(0, |meta| meta.len()).min(max.saturating_add(1));
    let mut bytes = Vec::with_capacity(usize::try_from(length).unwrap_or(0));
    file.take(max.saturating_add(1)).read_to_end(&mut bytes).map_err(|err| describe(path, &err))?;
    if bytes.len() as u64 > max {
        return Err(format!("{} is larger than {max} bytes", path.display()));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn confined() -> (tempfile::TempDir, HostFiles) {
        let temp = tempfile::tempdir().unwrap();
        std::fs::create_dir(temp.path().join("root")).unwrap();
        std::fs::write(temp.path().join("root/own.txt"), b"own").unwrap();
        std::fs::write(temp.path().join("secret.txt"), b"secret").unwrap();
        std::os::unix::fs::symlink("../secret.txt", temp.path().join("root/link")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", temp.path().join("root/absolute")).unwrap();
        let files = HostFiles::within(&temp.path().join("root")).unwrap();
        (temp, files)
    }

    #[test]
    fn confined_paths_stay_beneath_the_root() {
        let (temp, files) = confined();
        let root = temp.path().join("root").canonicalize().unwrap();
        assert_eq!(files.read_capped(&root.join("own.txt"), 100).unwrap(), b"own");
        assert!(
            files.read_capped(Path::new("own.txt"), 100).is_err(),
            "relative to the current directory, not the root"
        );
        for bad in [
            temp.path().join("secret.txt"),
            root.join("../secret.txt"),
            root.join("link"),
            root.join("absolute"),
            PathBuf::from("/etc/hostname"),
            PathBuf::from("/proc/self/environ"),
        ] {
            assert!(files.read_capped(&bad, 100).is_err(), "{} must not be readable", bad.display());
            assert!(!matches!(files.kind(&bad), Ok(Some(_))), "{} must not be visible", bad.display());
        }
        assert!(files.read_capped(&root.join("own.txt"), 2).unwrap_err().contains("larger than 2 bytes"));
    }

    #[test]
    fn exports_cannot_leave_the_root() {
        let (temp, files) = confined();
        let root = temp.path().join("root").canonicalize().unwrap();
        let (dir, name) = files.export_parent(&root.join("out/deep/x")).unwrap();
        dir.write(&name, b"x").unwrap();
        assert_eq!(std::fs::read(root.join("out/deep/x")).unwrap(), b"x");
        std::os::unix::fs::symlink(temp.path(), root.join("escape")).unwrap();
        for bad in [temp.path().join("x"), root.join("../x"), root.join("escape/x")] {
            assert!(files.export_parent(&bad).is_err(), "{} must be refused", bad.display());
        }
    }

    #[test]
    fn special_files_are_not_files() {
        let files = HostFiles::Ambient;
        assert!(files.kind(Path::new("/dev/zero")).unwrap_err().contains("not a regular file"));
        assert!(files.open_file(Path::new("/dev/zero")).is_err());
    }
}
