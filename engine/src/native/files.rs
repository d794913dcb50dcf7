//! Guest paths in native-function payloads, resolved to the step's own
//! directories and never outside them, and bounded like the guest is.

use std::io::Read;
use std::path::{Component, Path};
use weir_abi::contract::{INPUT_DIR, OUTPUT_DIR};

use cap_std::fs::Dir;

use crate::Limits;
use crate::limits::OutputUsage;

/// The step's `/in` and `/out`, as capability handles: every access goes
/// through them, so `..`, absolute paths and symbolic links cannot escape.
/// Writes count against the step's `output` and `files` quotas.
pub(crate) struct GuestFiles {
    in_dir: Dir,
    out_dir: Dir,
    limits: Limits,
}

impl GuestFiles {
    pub(crate) fn new(in_dir: Dir, out_dir: Dir, limits: Limits) -> Self {
        Self { in_dir, out_dir, limits }
    }

    /// Reads `/in/...` or `/out/...`, refusing a file of more than `max` bytes.
    pub(crate) fn read(&self, guest_path: &str, max: u64) -> Result<Vec<u8>, String> {
        let (dir, relative) = self.resolve(guest_path)?;
        let cannot = |err: std::io::Error| format!("cannot read {guest_path}: {err}");
        let file = dir.open(relative).map_err(cannot)?;
        let mut bytes = Vec::new();
        file.take(max.saturating_add(1)).read_to_end(&mut bytes).map_err(cannot)?;
        if bytes.len() as u64 > max {
            return Err(format!(
                "cannot read {guest_path}: it is larger than the {max} bytes the step's memory limit leaves (limits.memory)"
            ));
        }
        Ok(bytes)
    }

    /// Writes `/out/...` (creating or replacing the file), unless that would
    /// pass the step's output quotas.
    pub(crate) fn write(&self, guest_path: &str, bytes: &[u8]) -> Result<(), String> {
        let (dir, relative) = self.resolve(guest_path)?;
        if !std::ptr::eq(dir, &self.out_dir) {
            return Err(format!("cannot write {guest_path}: only paths under /out are writable"));
        }
        self.check_quota(guest_path, relative, bytes.len() as u64)?;
        dir.write(relative, bytes).map_err(|err| format!("cannot write {guest_path}: {err}"))
    }

    /// Refuses a write of `len` bytes to `relative` that would pass `limits.output` or `limits.files`.
    fn check_quota(&self, guest_path: &str, relative: &Path, len: u64) -> Result<(), String> {
        let usage = OutputUsage::measure(&self.out_dir, &self.limits)
            .map_err(|err| format!("cannot write {guest_path}: /out cannot be measured: {err}"))?;
        let replaced =
            self.out_dir.symlink_metadata(relative).ok().filter(|meta| meta.is_file()).map(|meta| meta.len());
        let after = OutputUsage {
            bytes: usage.bytes.saturating_sub(replaced.unwrap_or(0)).saturating_add(len),
            files: usage.files + u64::from(replaced.is_none()),
        };
        match after.breach(&self.limits) {
            Some(breach) => Err(format!("cannot write {guest_path}: the step {breach}")),
            None => Ok(()),
        }
    }

    fn resolve<'a>(&self, guest_path: &'a str) -> Result<(&Dir, &'a Path), String> {
        let outside = || format!("{guest_path} is outside the step's directories (use a path under /in or /out)");
        let under = |root: &str| guest_path.strip_prefix(root).and_then(|rest| rest.strip_prefix('/'));
        let (dir, relative) = if let Some(rest) = under(INPUT_DIR) {
            (&self.in_dir, rest)
        } else if let Some(rest) = under(OUTPUT_DIR) {
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
        let files = GuestFiles::new(open("in"), open("out"), Limits::default());

        assert_eq!(files.read("/in/a", 100).unwrap(), b"A");
        files.write("/out/c", b"C").unwrap();
        assert_eq!(files.read("/out/c", 100).unwrap(), b"C");
        for bad in ["/etc/passwd", "/in/../secret", "/in/", "in/a", "/out/./c", "/in/link", "/inx/a"] {
            assert!(files.read(bad, 100).is_err(), "{bad} must not resolve");
        }
        assert!(files.write("/in/new", b"x").unwrap_err().contains("only paths under /out"));
        assert!(!temp.path().join("in/new").exists());
    }
}

#[cfg(test)]
mod quota_tests {
    use cap_std::ambient_authority;

    use super::*;

    #[test]
    fn writes_and_reads_are_bounded_like_the_guest() {
        let temp = tempfile::tempdir().unwrap();
        for sub in ["in", "out"] {
            std::fs::create_dir(temp.path().join(sub)).unwrap();
        }
        std::fs::write(temp.path().join("in/big"), vec![0u8; 1000]).unwrap();
        let open = |sub: &str| Dir::open_ambient_dir(temp.path().join(sub), ambient_authority()).unwrap();
        let limits = Limits { output: 100, files: 2, ..Limits::default() };
        let files = GuestFiles::new(open("in"), open("out"), limits);

        assert!(files.read("/in/big", 999).unwrap_err().contains("limits.memory"));
        assert_eq!(files.read("/in/big", 1000).unwrap().len(), 1000);
        files.write("/out/a", &[1; 60]).unwrap();
        files.write("/out/a", &[2; 90]).unwrap();
        assert!(files.write("/out/b", &[3; 20]).unwrap_err().contains("limits.output"));
        files.write("/out/b", &[3; 10]).unwrap();
        assert!(files.write("/out/c", &[]).unwrap_err().contains("limits.files"));
        assert_eq!(std::fs::read(temp.path().join("out/a")).unwrap(), vec![2; 90]);
        assert!(!temp.path().join("out/c").exists());
    }
}
