//! Guest paths in native-function payloads, resolved to the step's own
//! directories and never outside them, and bounded like the guest is.

use std::io::Read;
use std::path::{Component, Path};
use std::sync::{Mutex, Weak};

use cap_std::fs::Dir;
use weir_abi::contract::{INPUT_DIR, OUTPUT_DIR};

use crate::Limits;
use crate::limits::OutputUsage;
use crate::runtime::{Mount, NotDone, StepFs, lock_shared};

/// The step's `/in` and `/out`, where native functions find the files a
/// guest names. Every access stays inside them: `..`, absolute paths and
/// symbolic links cannot escape. Writes count against the step's `output`
/// and `files` quotas, and one that would pass a quota is refused.
pub(crate) enum GuestFiles {
    /// Scratch directories of the host, as capability handles.
    Host { in_dir: Dir, out_dir: Dir, limits: Limits },
    /// The engine's own file system (`runtime/step_fs`). The store's state
    /// owns it; the bridge only refers to it.
    Own(Weak<Mutex<StepFs>>),
}

impl GuestFiles {
    /// Reads `/in/...` or `/out/...`, refusing a file of more than `max` bytes.
    pub(crate) fn read(&self, guest_path: &str, max: u64) -> Result<Vec<u8>, String> {
        let (mount, relative) = resolve(guest_path)?;
        let cannot = |why: &dyn std::fmt::Display| format!("cannot read {guest_path}: {why}");
        let too_large =
            || cannot(&format!("it is larger than the {max} bytes the step's memory limit leaves (limits.memory)"));
        match self {
            GuestFiles::Host { in_dir, out_dir, .. } => {
                let dir = if mount == Mount::In { in_dir } else { out_dir };
                let file = dir.open(relative).map_err(|err| cannot(&err))?;
                let mut bytes = Vec::new();
                file.take(max.saturating_add(1)).read_to_end(&mut bytes).map_err(|err| cannot(&err))?;
                if bytes.len() as u64 > max {
                    return Err(too_large());
                }
                Ok(bytes)
            }
            GuestFiles::Own(fs) => {
                let fs = fs.upgrade().ok_or_else(|| cannot(&ENDED))?;
                let read = lock_shared(&fs).read_whole(mount, relative, max);
                read.map_err(|not_done| match not_done {
                    NotDone::TooLarge => too_large(),
                    NotDone::Refused(errno) => cannot(&errno),
                    NotDone::Quota(quota) => cannot(&quota),
                })
            }
        }
    }

    /// Writes `/out/...` (creating or replacing the file), unless that would
    /// pass the step's output quotas.
    pub(crate) fn write(&self, guest_path: &str, bytes: &[u8]) -> Result<(), String> {
        let (mount, relative) = resolve(guest_path)?;
        let cannot = |why: &dyn std::fmt::Display| format!("cannot write {guest_path}: {why}");
        if mount != Mount::Out {
            return Err(cannot(&"only paths under /out are writable"));
        }
        let passes = |quota: &dyn std::fmt::Display| cannot(&format!("the step {quota}"));
        match self {
            GuestFiles::Host { out_dir, limits, .. } => {
                if let Some(quota) = host_quota_after(out_dir, limits, relative, bytes.len() as u64)
                    .map_err(|err| cannot(&format!("/out cannot be measured: {err}")))?
                {
                    return Err(passes(&quota));
                }
                out_dir.write(relative, bytes).map_err(|err| cannot(&err))
            }
            GuestFiles::Own(fs) => {
                let fs = fs.upgrade().ok_or_else(|| cannot(&ENDED))?;
                let written = lock_shared(&fs).write_whole(relative, bytes);
                written.map_err(|not_done| match not_done {
                    NotDone::Quota(quota) => passes(&quota),
                    NotDone::Refused(errno) => cannot(&errno),
                    NotDone::TooLarge => cannot(&"it is too large"),
                })
            }
        }
    }
}

/// Why the engine's own file system is gone: the store's state took it
/// back (only a call made after the guest ended meets this).
const ENDED: &str = "the step's file system is closed (the guest has ended)";

/// The quota a write of `len` bytes to `relative` of `out_dir` would pass.
fn host_quota_after(
    out_dir: &Dir,
    limits: &Limits,
    relative: &str,
    len: u64,
) -> std::io::Result<Option<crate::StepErrorKind>> {
    let usage = OutputUsage::measure(out_dir, limits)?;
    let replaced = out_dir.symlink_metadata(relative).ok().filter(|meta| meta.is_file()).map(|meta| meta.len());
    let after = OutputUsage {
        bytes: usage.bytes.saturating_sub(replaced.unwrap_or(0)).saturating_add(len),
        files: usage.files + u64::from(replaced.is_none()),
    };
    Ok(after.breach(limits))
}

/// Which directory `guest_path` is under, and its path there: plain
/// components only, none empty.
fn resolve(guest_path: &str) -> Result<(Mount, &str), String> {
    let outside = || format!("{guest_path} is outside the step's directories (use a path under /in or /out)");
    let under = |root: &str| guest_path.strip_prefix(root).and_then(|rest| rest.strip_prefix('/'));
    let (mount, relative) = if let Some(rest) = under(INPUT_DIR) {
        (Mount::In, rest)
    } else if let Some(rest) = under(OUTPUT_DIR) {
        (Mount::Out, rest)
    } else {
        return Err(outside());
    };
    let plain = Path::new(relative).components().all(|part| matches!(part, Component::Normal(_)));
    if relative.is_empty() || !plain {
        return Err(outside());
    }
    Ok((mount, relative))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use cap_std::ambient_authority;

    use super::*;
    use crate::runtime::{SharedFs, StepInput, step_fs_fixture};

    /// What keeps the [`GuestFiles`] of [`both`] working.
    struct Kept {
        _host_dirs: tempfile::TempDir,
        _own_fs: SharedFs,
        _own_store: tempfile::TempDir,
    }

    /// Both kinds of guest files under `limits`, with `inputs` in `/in` and,
    /// in `/out`, a directory `d` and a symbolic link `link` to `../secret`,
    /// outside it (a file `secret` beside the host directories).
    fn both(inputs: &[(&str, &[u8])], limits: Limits) -> (Vec<(&'static str, GuestFiles)>, Kept) {
        let temp = tempfile::tempdir().unwrap();
        for sub in ["in", "out"] {
            std::fs::create_dir(temp.path().join(sub)).unwrap();
        }
        for (name, bytes) in inputs {
            std::fs::write(temp.path().join("in").join(name), bytes).unwrap();
        }
        std::fs::create_dir(temp.path().join("out/d")).unwrap();
        std::fs::write(temp.path().join("secret"), b"S").unwrap();
        std::os::unix::fs::symlink("../secret", temp.path().join("out/link")).unwrap();
        let open = |sub: &str| Dir::open_ambient_dir(temp.path().join(sub), ambient_authority()).unwrap();
        let host = GuestFiles::Host { in_dir: open("in"), out_dir: open("out"), limits };

        let mut fixture = step_fs_fixture(limits, |store| {
            let stored = |bytes: &[u8]| StepInput::Object(store.put_bytes(bytes).unwrap());
            inputs.iter().map(|(name, bytes)| ((*name).to_owned(), stored(bytes))).collect()
        });
        fixture.fs.symlink("../secret", 4, "link").unwrap();
        fixture.fs.create_dir(4, "d").unwrap();
        let fs = Arc::new(Mutex::new(fixture.fs));
        let own = GuestFiles::Own(Arc::downgrade(&fs));
        (vec![("host", host), ("own", own)], Kept { _host_dirs: temp, _own_fs: fs, _own_store: fixture._dir })
    }

    #[test]
    fn only_paths_inside_the_step_directories_resolve() {
        let (both, _kept) = both(&[("a", b"A")], Limits::default());
        for (kind, files) in both {
            assert_eq!(files.read("/in/a", 100).unwrap(), b"A", "{kind}");
            files.write("/out/c", b"C").unwrap();
            assert_eq!(files.read("/out/c", 100).unwrap(), b"C", "{kind}");
            for bad in ["/etc/passwd", "/in/../secret", "/in/", "in/a", "/out/./c", "/out/link", "/inx/a", "/in/b"] {
                assert!(files.read(bad, 100).is_err(), "{kind}: {bad} must not resolve");
            }
            let refused = files.write("/in/new", b"x").unwrap_err();
            assert!(refused.contains("only paths under /out"), "{kind}: {refused}");
            assert!(files.read("/in/new", 100).is_err(), "{kind}");
            assert!(files.write("/out/link", b"x").is_err(), "{kind}: a write through a link out of /out");
            let missing_dir = files.write("/out/no/such", b"x").unwrap_err();
            assert!(missing_dir.contains("cannot write /out/no/such"), "{kind}: {missing_dir}");
            let missing = files.read("/in/b", 100).unwrap_err().to_lowercase();
            assert!(missing.contains("cannot read /in/b: no such file or directory"), "{kind}: {missing}");
            let dir = files.read("/out/d", 100).unwrap_err().to_lowercase();
            assert!(dir.contains("cannot read /out/d: is a directory"), "{kind}: {dir}");
            let over_dir = files.write("/out/d", b"x").unwrap_err().to_lowercase();
            assert!(over_dir.contains("cannot write /out/d: is a directory"), "{kind}: {over_dir}");
        }
    }

    #[test]
    fn writes_and_reads_are_bounded_like_the_guest() {
        let limits = Limits { output: 100, files: 4, ..Limits::default() };
        let (both, _kept) = both(&[("big", &[0u8; 1000])], limits);
        for (kind, files) in both {
            let refused = files.read("/in/big", 999).unwrap_err();
            assert!(refused.contains("limits.memory"), "{kind}: {refused}");
            assert_eq!(files.read("/in/big", 1000).unwrap().len(), 1000, "{kind}");
            files.write("/out/a", &[1; 60]).unwrap();
            files.write("/out/a", &[2; 90]).unwrap();
            let refused = files.write("/out/b", &[3; 20]).unwrap_err();
            assert!(refused.contains("limits.output"), "{kind}: {refused}");
            files.write("/out/b", &[3; 10]).unwrap();
            let refused = files.write("/out/c", &[]).unwrap_err();
            assert!(refused.contains("limits.files"), "{kind}: {refused}");
            assert_eq!(files.read("/out/a", 1000).unwrap(), vec![2; 90], "{kind}");
            assert!(files.read("/out/c", 1000).is_err(), "{kind}: a refused write leaves nothing");
        }
    }

    #[test]
    fn a_write_refused_for_a_quota_does_not_stop_the_step() {
        let limits = Limits { output: 10, ..Limits::default() };
        let fixture = step_fs_fixture(limits, |_| Vec::new());
        let fs = Arc::new(Mutex::new(fixture.fs));
        let files = GuestFiles::Own(Arc::downgrade(&fs));
        assert!(files.write("/out/a", &[0; 11]).unwrap_err().contains("limits.output"));
        assert_eq!(lock_shared(&fs).breach(), None, "the guest sees an error value and goes on");
        drop(fs);
        assert!(files.read("/out/a", 100).unwrap_err().contains("the guest has ended"));
    }
}
