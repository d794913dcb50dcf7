//! Guest paths in native-function payloads, resolved to the step's own
//! directories and never outside them.

use std::path::{Component, Path};

use cap_std::fs::Dir;

/// The step's `/in` and `/out`, as capability handles: every access goes
/// through them, so `..`, absolute paths and symbolic links cannot escape.
pub(crate) struct GuestFiles {
    in_dir: Dir,
    out_dir: Dir,
}

impl GuestFiles {
    pub(crate) fn new(in_dir: Dir, out_dir: Dir) -> Self {
        Self { in_dir, out_dir }
    }

    /// Reads `/in/...` or `/out/...`.
    pub(crate) fn read(&self, guest_path: &str) -> Result<Vec<u8>, String> {
        let (dir, relative) = self.resolve(guest_path)?;
        dir.read(relative).map_err(|err| format!("cannot read {guest_path}: {err}"))
    }

    /// Writes `/out/...` (creating or replacing the file).
    pub(crate) fn write(&self, guest_path: &str, bytes: &[u8]) -> Result<(), String> {
        let (dir, relative) = self.resolve(guest_path)?;
        if !std::ptr::eq(dir, &self.out_dir) {
            return Err(format!("cannot write {guest_path}: only paths under /out are writable"));
        }
        dir.write(relative, bytes).map_err(|err| format!("cannot write {guest_path}: {err}"))
    }

    fn resolve<'a>(&self, guest_path: &'a str) -> Result<(&Dir, &'a Path), String> {
        let outside = || format!("{guest_path} is outside the step's directories (use a path under /in or /out)");
        let (dir, relative) = if let Some(rest) = guest_path.strip_prefix("/in/") {
            (&self.in_dir, rest)
        } else if let Some(rest) = guest_path.strip_prefix("/out/") {
            (&self.out_dir, rest)
        } else {
            return Err(outside());
        };
        let relative = Path::new(relative);
        let plain = relative.components().all(|part| matches!(part, Component::Normal(_)));
        if relative.as_os_str().is_empty() || !plain {
            return Err(outside());
        }
        Ok((dir, relative))
    }
}

#[cfg(test)]
mod tests {
    use cap_std::ambient_authority;

    use super::*;

    #[test]
    fn only_paths_inside_the_step_directories_resolve() {
        let temp = tempfile::tempdir().unwrap();
        for sub in ["in", "out"] {
            std::fs::create_dir(temp.path().join(sub)).unwrap();
        }
        std::fs::write(temp.path().join("in/a"), b"A").unwrap();
        std::fs::write(temp.path().join("secret"), b"S").unwrap();
        std::os::unix::fs::symlink("../secret", temp.path().join("in/link")).unwrap();
        let open = |sub: &str| Dir::open_ambient_dir(temp.path().join(sub), ambient_authority()).unwrap();
        let files = GuestFiles::new(open("in"), open("out"));

        assert_eq!(files.read("/in/a").unwrap(), b"A");
        files.write("/out/c", b"C").unwrap();
        assert_eq!(files.read("/out/c").unwrap(), b"C");
        for bad in ["/etc/passwd", "/in/../secret", "/in/", "in/a", "/out/./c", "/in/link", "/inx/a"] {
            assert!(files.read(bad).is_err(), "{bad} must not resolve");
        }
        assert!(files.write("/in/new", b"x").unwrap_err().contains("only paths under /out"));
        assert!(!temp.path().join("in/new").exists());
    }
}
