//! What a step left in its `/out`, read in one pass when it ends: the
//! top-level entries, from one listing of the directory (their types from
//! the listing itself, not a `stat` each), measured against the output
//! quotas, with the declared file outputs opened on the way, so that storing
//! them needs no further lookup by name.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::{File, Metadata};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use cap_std::fs::Dir;
use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use crate::limits::{Limits, OutputUsage, TopLevel};
use crate::{OutputKind, StepErrorKind};

/// An entry directly in `/out`, as the listing found it.
#[derive(Debug)]
pub(crate) enum Listed {
    /// A regular file; opened, with its metadata, when it is a declared
    /// file output.
    File(Option<(File, Metadata)>),
    Dir,
    /// A symbolic link (outputs may not hold one).
    Link,
    /// Anything else: a FIFO, a socket, a device.
    Special,
}

/// The top level of a step's `/out` once the step ended.
#[derive(Debug)]
pub(crate) struct OutListing {
    entries: BTreeMap<OsString, Listed>,
}

/// A handle of directory `dir` that can be listed, which cap-std's
/// `O_PATH` handles cannot: opened once for a scratch directory's `out/`
/// and kept with it, for every listing of it.
pub(crate) fn listable(dir: &Dir) -> std::io::Result<OwnedFd> {
    Ok(rustix::fs::openat(dir, c".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?)
}

impl OutListing {
    /// Lists `out` through `listable` (its [`listable`] handle, read from
    /// the start whatever an earlier listing left) and measures it against
    /// `limits` (stopping at the first quota passed, as
    /// [`OutputUsage::check`] does); the regular files among `file_outputs`
    /// are opened. A passed quota, or a listing that failed, is the step's
    /// error.
    pub(crate) fn read<'a>(
        out: &Dir,
        listable: BorrowedFd<'_>,
        file_outputs: impl IntoIterator<Item = &'a str> + Clone,
        limits: &Limits,
    ) -> Result<Self, StepErrorKind> {
        let unmeasurable = |err: std::io::Error| StepErrorKind::OutputUnmeasurable { reason: err.to_string() };
        let mut usage = OutputUsage::default();
        let mut entries = BTreeMap::new();
        // A duplicate shares the handle's position, which is set back to
        // the start: no `openat` per listing.
        let rewound = rustix::io::fcntl_dupfd_cloexec(listable, 0)
            .and_then(|fd| rustix::fs::seek(&fd, rustix::fs::SeekFrom::Start(0)).map(|_| fd))
            .map_err(|err| unmeasurable(err.into()))?;
        let mut listing = rustix::fs::Dir::new(rewound).map_err(|err| unmeasurable(err.into()))?;
        while let Some(entry) = listing.read() {
            let entry = entry.map_err(|err| unmeasurable(err.into()))?;
            let name = OsStr::from_bytes(entry.file_name().to_bytes());
            if name == "." || name == ".." {
                continue;
            }
            usage.files += 1;
            let declared = || file_outputs.clone().into_iter().any(|output| OsStr::new(output) == name);
            let listed = Self::classify(out, name, entry.file_type(), declared, &mut usage).map_err(unmeasurable)?;
            if matches!(listed, Listed::Dir) && !usage.exceeds(limits) {
                let dir = out.open_dir(name).map_err(unmeasurable)?;
                usage = usage.add_tree(&dir, limits).map_err(unmeasurable)?;
            }
            if let Some(breach) = usage.breach(limits) {
                return Err(breach);
            }
            entries.insert(name.to_owned(), listed);
        }
        Ok(Self { entries })
    }

    /// What entry `name` is, adding a regular file's bytes to `usage`; a
    /// declared file output is opened (its bytes then come from the open
    /// file), any other file is looked at by name only where its size
    /// counts.
    fn classify(
        out: &Dir,
        name: &OsStr,
        listed_type: FileType,
        declared: impl FnOnce() -> bool,
        usage: &mut OutputUsage,
    ) -> std::io::Result<Listed> {
        // Some file systems leave the type out of the listing.
        let file_type = match listed_type {
            FileType::Unknown => {
                FileType::from_raw_mode(rustix::fs::statat(out, name, AtFlags::SYMLINK_NOFOLLOW)?.st_mode)
            }
            known => known,
        };
        Ok(match file_type {
            FileType::Directory => Listed::Dir,
            FileType::Symlink => Listed::Link,
            FileType::RegularFile if declared() => {
                let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                let file = File::from(rustix::fs::openat(out, name, flags, Mode::empty())?);
                let metadata = file.metadata()?;
                usage.bytes = usage.bytes.saturating_add(metadata.len());
                Listed::File(Some((file, metadata)))
            }
            FileType::RegularFile => {
                let size = rustix::fs::statat(out, name, AtFlags::SYMLINK_NOFOLLOW)?.st_size;
                usage.bytes = usage.bytes.saturating_add(u64::try_from(size).unwrap_or(0));
                Listed::File(None)
            }
            _ => Listed::Special,
        })
    }

    /// Takes what the listing found at `name` (`None`: nothing was there).
    pub(crate) fn take(&mut self, name: &str) -> Option<Listed> {
        self.entries.remove(OsStr::new(name))
    }

    /// The entries not taken, each with whether it is a directory.
    pub(crate) fn into_top_level(self) -> TopLevel {
        self.entries.into_iter().map(|(name, listed)| (name, matches!(listed, Listed::Dir))).collect()
    }
}

impl Listed {
    /// The kind of output this entry can be; links and special files can be
    /// none (`path` names the entry in the reason).
    pub(crate) fn kind(&self, path: &std::path::Path) -> Result<OutputKind, String> {
        match self {
            Listed::File(_) => Ok(OutputKind::File),
            Listed::Dir => Ok(OutputKind::Dir),
            Listed::Link => Err(format!(
                "{} is a symbolic link; outputs may hold only regular files and directories",
                path.display()
            )),
            Listed::Special => Err(format!(
                "{} is a special file; outputs may hold only regular files and directories",
                path.display()
            )),
        }
    }
}
