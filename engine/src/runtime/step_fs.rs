//! The file system of a step kept by the engine itself, instead
//! of host directories handed to wasmtime-wasi: `/in` is the step's inputs,
//! each read straight from its object in the store (one `openat` when the
//! guest opens it), with the parameters file in memory; `/out` is a tree in
//! memory whose files are unnamed files of the store (see
//! `store/unnamed`), so that a declared output becomes an object with one
//! `linkat`, and nothing is staged, listed or removed. The quotas
//! (`limits.output`, `limits.files`) are counted as the guest writes, and a
//! write past one stops it.
//!
//! The semantics are those of a POSIX directory seen through WASI, with two
//! limits a step meets with a clear error: hard links are not supported
//! (`ENOTSUP`), and a symbolic link can be made, read and followed only
//! within the directory it was looked up from.
//!
//! [`preview1`] binds it to a core module: the `fd_*` and `path_*`
//! functions of `wasi_snapshot_preview1`, defined over wasmtime-wasi's;
//! [`preview2`] to a component: `wasi:filesystem`; [`whole`] serves the
//! file operands of native functions.

mod lookup;
pub(crate) mod preview1;
pub(crate) mod preview2;
#[cfg(test)]
pub(crate) mod tests;
mod tree;
mod types;
mod whole;

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use weir_abi::contract::{INPUT_DIR, OUTPUT_DIR};

use super::capped_log::CappedLog;
use crate::store::Store;
use crate::{Digest, Limits, StepErrorKind};

pub(crate) use types::{DirEntry, Errno, Fdstat, Filestat, OpenFlags, Outcome, SetTime, Whence, filetype, rights};
pub(crate) use whole::{Mount, NotDone};

/// The longest name a directory entry may have, in bytes.
const NAME_MAX: usize = 255;
/// Symbolic links one lookup may follow.
const SYMLINKS_MAX: usize = 40;
/// Descriptors a guest may hold open at once.
const DESCRIPTORS_MAX: usize = 1 << 14;
/// Bytes of a `dirent` before its name.
pub(crate) const DIRENT_BYTES: usize = 24;
/// Inode numbers: `/in` is 1, its entries follow; `/out`'s nodes from here.
const OUT_INODES: u64 = 1 << 32;

/// An input of the step, as `/in` shows it.
#[derive(Debug, Clone)]
pub(crate) enum Input {
    /// A file artifact of the store.
    Object(Digest),
    /// Bytes held in memory (the parameters file).
    Bytes(Arc<[u8]>),
}

/// A directory the guest can name: `/in` (flat) or a directory of `/out`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DirRef {
    In,
    Out(NodeId),
}

type NodeId = usize;

/// An entry of `/out`.
#[derive(Debug)]
struct Node {
    kind: NodeKind,
    /// Whether a directory entry names it (an unlinked file stays readable
    /// through its descriptors, but counts no more).
    linked: bool,
    times: [u64; 3],
}

#[derive(Debug)]
enum NodeKind {
    Dir(BTreeMap<String, NodeId>),
    /// A file: its bytes in an unnamed file of the store, made on its first
    /// byte (an empty file costs nothing).
    File {
        backing: Option<File>,
        size: u64,
    },
    Symlink(String),
}

/// What an open descriptor is.
enum Descriptor {
    Stdin,
    Log(CappedLog),
    Dir { dir: DirRef, preopen: Option<&'static str> },
    Input { index: usize, content: InputContent, position: u64 },
    Output { node: NodeId, position: u64, read: bool, write: bool, append: bool },
}

/// The bytes of an opened input.
#[derive(Debug, Clone)]
enum InputContent {
    /// An object (shared by the descriptors duplicated from the one that
    /// opened it), with its size and times once asked for.
    File {
        file: Arc<File>,
        stat: Option<(u64, [u64; 3])>,
    },
    Bytes(Arc<[u8]>),
}

/// What an entry found by a lookup is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    Dir(DirRef),
    Input(usize),
    Node(NodeId),
}

/// Where the lookup of a path ended: the directory holding its last
/// component, and that component (`None` when the path names a directory
/// by `.` or `..`).
struct Located {
    parent: DirRef,
    name: Option<String>,
    /// Whether the path ended with `/` (it must name a directory).
    trailing_slash: bool,
}

/// The file system of one execution.
pub(crate) struct StepFs {
    descriptors: Vec<Option<Descriptor>>,
    /// `/in`'s entries, sorted by name.
    inputs: Vec<(String, Input)>,
    nodes: Vec<Node>,
    store: Store,
    limits: Limits,
    /// Entries in `/out` and bytes of its files.
    files: u64,
    bytes: u64,
    breach: Option<StepErrorKind>,
    /// When the execution began: the times of `/in` and of new entries.
    began: u64,
}

/// A file system several owners reach: the store's state owns it; a
/// component's streams share it, and the bridge refers to it weakly (a
/// native function reads and writes file operands in it).
pub(crate) type SharedFs = Arc<Mutex<StepFs>>;

/// The file system behind `fs`, locked (a panic while it was locked
/// left it as consistent as any guest call does).
pub(crate) fn lock_shared(fs: &SharedFs) -> MutexGuard<'_, StepFs> {
    fs.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The file system back from its sharers, once the guest is done and its
/// streams are dropped (the bridge holds it only weakly).
pub(crate) fn take_back(fs: SharedFs) -> StepFs {
    match Arc::try_unwrap(fs) {
        Ok(fs) => fs.into_inner().unwrap_or_else(PoisonError::into_inner),
        Err(_) => unreachable!("only a component's streams share the file system, and they are dropped"),
    }
}

/// What a descriptor may do (preview 2's descriptor flags).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Access {
    pub read: bool,
    pub write: bool,
    pub mutate_dir: bool,
}

/// A declared output as the step left it.
pub(crate) enum Produced {
    /// A regular file: its unnamed file (if it holds a byte) and its size.
    File(Option<File>, u64),
    Dir,
    Symlink,
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
}

impl StepFs {
    /// The file system of a step with `inputs` (name and content; names are
    /// single components) under `limits`, its stdout and stderr the logs.
    pub(crate) fn new(
        mut inputs: Vec<(String, Input)>,
        store: Store,
        limits: Limits,
        stdout: CappedLog,
        stderr: CappedLog,
    ) -> Self {
        inputs.sort_by(|a, b| a.0.cmp(&b.0));
        let began = now_ns();
        let root = Node { kind: NodeKind::Dir(BTreeMap::new()), linked: true, times: [began; 3] };
        let descriptors = vec![
            Some(Descriptor::Stdin),
            Some(Descriptor::Log(stdout)),
            Some(Descriptor::Log(stderr)),
            Some(Descriptor::Dir { dir: DirRef::In, preopen: Some(INPUT_DIR) }),
            Some(Descriptor::Dir { dir: DirRef::Out(0), preopen: Some(OUTPUT_DIR) }),
        ];
        Self { descriptors, inputs, nodes: vec![root], store, limits, files: 0, bytes: 0, breach: None, began }
    }

    /// The quota the guest passed, which stopped it.
    pub(crate) fn breach(&self) -> Option<StepErrorKind> {
        self.breach.clone()
    }

    /// What the step left at `name` directly in `/out`, if anything.
    pub(crate) fn take_output(&mut self, name: &str) -> Option<Produced> {
        let NodeKind::Dir(root) = &self.nodes[0].kind else { return None };
        let id = *root.get(name)?;
        Some(match &mut self.nodes[id].kind {
            NodeKind::File { backing, size } => Produced::File(backing.take(), *size),
            NodeKind::Dir(_) => Produced::Dir,
            NodeKind::Symlink(_) => Produced::Symlink,
        })
    }

    // Descriptors.

    fn descriptor(&self, fd: u32) -> Outcome<&Descriptor> {
        self.descriptors.get(fd as usize).and_then(Option::as_ref).ok_or(Errno::Badf)
    }

    fn descriptor_mut(&mut self, fd: u32) -> Outcome<&mut Descriptor> {
        self.descriptors.get_mut(fd as usize).and_then(Option::as_mut).ok_or(Errno::Badf)
    }

    fn insert(&mut self, descriptor: Descriptor) -> Outcome<u32> {
        let slot = match self.descriptors.iter().position(Option::is_none) {
            Some(slot) => slot,
            None if self.descriptors.len() < DESCRIPTORS_MAX => {
                self.descriptors.push(None);
                self.descriptors.len() - 1
            }
            None => return Err(Errno::Nospc),
        };
        self.descriptors[slot] = Some(descriptor);
        Ok(slot as u32)
    }

    fn dir_of(&self, fd: u32) -> Outcome<DirRef> {
        match self.descriptor(fd)? {
            Descriptor::Dir { dir, .. } => Ok(*dir),
            _ => Err(Errno::Notdir),
        }
    }

    /// The guest path a preopened descriptor stands for.
    pub(crate) fn prestat(&self, fd: u32) -> Outcome<&'static str> {
        match self.descriptor(fd)? {
            Descriptor::Dir { preopen: Some(path), .. } => Ok(path),
            _ => Err(Errno::Badf),
        }
    }

    pub(crate) fn close(&mut self, fd: u32) -> Outcome<()> {
        self.descriptor(fd)?;
        self.descriptors[fd as usize] = None;
        Ok(())
    }

    pub(crate) fn renumber(&mut self, from: u32, to: u32) -> Outcome<()> {
        self.descriptor(from)?;
        self.descriptor(to)?;
        if from != to {
            self.descriptors[to as usize] = self.descriptors[from as usize].take();
        }
        Ok(())
    }

    /// A second descriptor on what `fd` is open on, with its own position
    /// (a preview-2 stream reads or writes through one).
    pub(crate) fn duplicate(&mut self, fd: u32) -> Outcome<u32> {
        let copy = match self.descriptor(fd)? {
            Descriptor::Dir { dir, .. } => Descriptor::Dir { dir: *dir, preopen: None },
            Descriptor::Input { index, content, position } => {
                Descriptor::Input { index: *index, content: content.clone(), position: *position }
            }
            Descriptor::Output { node, position, read, write, append } => {
                Descriptor::Output { node: *node, position: *position, read: *read, write: *write, append: *append }
            }
            Descriptor::Stdin | Descriptor::Log(_) => return Err(Errno::Badf),
        };
        self.insert(copy)
    }

    /// New descriptors of `/in` and `/out`, with the guest paths they stand
    /// for (a preview-2 guest owns, and drops, each one it is given).
    pub(crate) fn preopens(&mut self) -> Outcome<Vec<(u32, &'static str)>> {
        [(DirRef::In, INPUT_DIR), (DirRef::Out(0), OUTPUT_DIR)]
            .into_iter()
            .map(|(dir, path)| Ok((self.insert(Descriptor::Dir { dir, preopen: Some(path) })?, path)))
            .collect()
    }

    /// Whether `fd` is open on an input: preview 2 refuses writing to one
    /// as not permitted (`/in` is a read-only preopen), preview 1 as a bad
    /// descriptor (it was not opened for writing), as wasmtime-wasi does.
    pub(crate) fn is_input(&self, fd: u32) -> Outcome<bool> {
        Ok(matches!(self.descriptor(fd)?, Descriptor::Input { .. }))
    }

    /// What the descriptor may do: read, write, and (a directory of `/out`) change its entries.
    pub(crate) fn access(&self, fd: u32) -> Outcome<Access> {
        Ok(match self.descriptor(fd)? {
            Descriptor::Stdin => Access { read: true, ..Access::default() },
            Descriptor::Log(_) => Access { write: true, ..Access::default() },
            Descriptor::Dir { dir, .. } => Access { read: true, mutate_dir: *dir != DirRef::In, ..Access::default() },
            Descriptor::Input { .. } => Access { read: true, ..Access::default() },
            Descriptor::Output { read, write, .. } => Access { read: *read, write: *write, mutate_dir: false },
        })
    }

    pub(crate) fn fdstat(&self, fd: u32) -> Outcome<Fdstat> {
        let file = |read: bool, write: bool, append: bool| {
            let mut rights = rights::FILE;
            if !read {
                rights &= !rights::READING;
            }
            if !write {
                rights &= !rights::WRITING;
            }
            Fdstat { filetype: filetype::REGULAR_FILE, append, rights, inheriting: 0 }
        };
        Ok(match self.descriptor(fd)? {
            Descriptor::Stdin => {
                Fdstat { filetype: filetype::UNKNOWN, append: false, rights: rights::FD_READ, inheriting: 0 }
            }
            Descriptor::Log(_) => {
                Fdstat { filetype: filetype::UNKNOWN, append: false, rights: rights::FD_WRITE, inheriting: 0 }
            }
            Descriptor::Dir { .. } => Fdstat {
                filetype: filetype::DIRECTORY,
                append: false,
                rights: rights::DIRECTORY,
                inheriting: rights::DIRECTORY | rights::FILE,
            },
            Descriptor::Input { .. } => file(true, false, false),
            Descriptor::Output { read, write, append, .. } => file(*read, *write, *append),
        })
    }

    /// Sets a descriptor's flags: only `append` means anything to a file.
    pub(crate) fn set_append(&mut self, fd: u32, to: bool) -> Outcome<()> {
        match self.descriptor_mut(fd)? {
            Descriptor::Output { append, write: true, .. } => {
                *append = to;
                Ok(())
            }
            _ if to => Err(Errno::Notsup),
            _ => Ok(()),
        }
    }

    // Reading and writing.

    /// Reads into `buf` at the descriptor's position (advancing it), or at
    /// `at`; the bytes read.
    pub(crate) fn read(&mut self, fd: u32, buf: &mut [u8], at: Option<u64>) -> Outcome<usize> {
        let Self { descriptors, nodes, .. } = self;
        let descriptor = descriptors.get_mut(fd as usize).and_then(Option::as_mut).ok_or(Errno::Badf)?;
        let (position, read) = match descriptor {
            Descriptor::Stdin => return Ok(0),
            Descriptor::Input { content, position, .. } => {
                let offset = at.unwrap_or(*position);
                let read = match content {
                    InputContent::File { file, .. } => file.read_at(buf, offset)?,
                    InputContent::Bytes(bytes) => copy_from(bytes, offset, buf),
                };
                (position, read)
            }
            Descriptor::Output { node, position, read: true, .. } => {
                let offset = at.unwrap_or(*position);
                let NodeKind::File { backing, size } = &nodes[*node].kind else { return Err(Errno::Badf) };
                let room = usize::try_from(size.saturating_sub(offset)).unwrap_or(usize::MAX).min(buf.len());
                let read = match backing {
                    Some(file) if room > 0 => file.read_at(&mut buf[..room], offset)?,
                    _ => 0,
                };
                (position, read)
            }
            // wasmtime-wasi's answer to reading a directory's descriptor (a
            // preview-2 stream on one is refused earlier, as `is-directory`).
            _ => return Err(Errno::Badf),
        };
        if at.is_none() {
            *position += read as u64;
        }
        Ok(read)
    }

    /// Writes `buf` at the descriptor's position (advancing it; at the end
    /// when appending), or at `at`; the bytes written. A write that takes
    /// `/out` past `limits.output` is refused and stops the guest.
    pub(crate) fn write(&mut self, fd: u32, buf: &[u8], at: Option<u64>) -> Outcome<usize> {
        let (node, offset) = match self.descriptor(fd)? {
            Descriptor::Log(log) => {
                log.write_capped(buf)?;
                return Ok(buf.len());
            }
            Descriptor::Output { node, position, write: true, append, .. } => {
                let size = self.file_size(*node);
                (*node, if *append && at.is_none() { size } else { at.unwrap_or(*position) })
            }
            Descriptor::Dir { .. } => return Err(Errno::Isdir),
            _ => return Err(Errno::Badf),
        };
        let end = offset.checked_add(buf.len() as u64).ok_or(Errno::Fbig)?;
        if !buf.is_empty() {
            self.grow(node, end)?;
            let NodeKind::File { backing: Some(file), .. } = &self.nodes[node].kind else { return Err(Errno::Io) };
            file.write_all_at(buf, offset)?;
            self.nodes[node].times[1] = now_ns();
        }
        if at.is_none()
            && let Some(Descriptor::Output { position, .. }) = self.descriptors[fd as usize].as_mut()
        {
            *position = end;
        }
        Ok(buf.len())
    }

    fn file_size(&self, node: NodeId) -> u64 {
        match &self.nodes[node].kind {
            NodeKind::File { size, .. } => *size,
            _ => 0,
        }
    }

    /// Makes file `node` at least `to` bytes long (its backing file made if
    /// it has none), counting the growth against the quota.
    fn grow(&mut self, node: NodeId, to: u64) -> Outcome<()> {
        let size = self.file_size(node);
        if to > size {
            self.resize(node, to)?;
        } else {
            self.backing(node)?;
        }
        Ok(())
    }

    /// The backing file of file `node`, made if it has none.
    fn backing(&mut self, node: NodeId) -> Outcome<&File> {
        let NodeKind::File { backing, .. } = &mut self.nodes[node].kind else { return Err(Errno::Isdir) };
        if backing.is_none() {
            *backing = Some(self.store.unnamed_file()?);
        }
        Ok(backing.as_ref().expect("made above"))
    }

    /// Sets the size of file `node` to `to`, counting the change against the quota.
    fn resize(&mut self, node: NodeId, to: u64) -> Outcome<()> {
        let linked = self.nodes[node].linked;
        let size = self.file_size(node);
        if linked && to > size {
            self.charge_bytes(to - size)?;
        }
        if to > 0 || matches!(self.nodes[node].kind, NodeKind::File { backing: Some(_), .. }) {
            self.backing(node)?.set_len(to)?;
        }
        if let NodeKind::File { size, .. } = &mut self.nodes[node].kind {
            *size = to;
        }
        if linked && to < size {
            self.bytes -= size - to;
        }
        self.nodes[node].times[1] = now_ns();
        Ok(())
    }

    /// Counts `more` bytes against `limits.output`; past it, the guest is stopped.
    fn charge_bytes(&mut self, more: u64) -> Outcome<()> {
        let bytes = self.bytes.saturating_add(more);
        if bytes > self.limits.output {
            self.breach = Some(StepErrorKind::OutputLimit { limit: self.limits.output });
            return Err(Errno::Nospc);
        }
        self.bytes = bytes;
        Ok(())
    }

    /// Counts a new entry against `limits.files`; past it, the guest is stopped.
    fn charge_entry(&mut self) -> Outcome<()> {
        if self.files + 1 > self.limits.files {
            self.breach = Some(StepErrorKind::FilesLimit { limit: self.limits.files });
            return Err(Errno::Nospc);
        }
        self.files += 1;
        Ok(())
    }

    pub(crate) fn seek(&mut self, fd: u32, offset: i64, whence: Whence) -> Outcome<u64> {
        let size = match self.descriptor(fd)? {
            Descriptor::Input { content: InputContent::Bytes(bytes), .. } => Some(bytes.len() as u64),
            Descriptor::Input { .. } => None,
            Descriptor::Output { node, .. } => Some(self.file_size(*node)),
            Descriptor::Dir { .. } => return Err(Errno::Badf),
            Descriptor::Stdin | Descriptor::Log(_) => return Err(Errno::Spipe),
        };
        // An object's size is asked of it only when the seek counts from the end.
        let size = match size {
            Some(size) => size,
            None if matches!(whence, Whence::End) => self.filestat(fd)?.size,
            None => 0,
        };
        let (Descriptor::Input { position, .. } | Descriptor::Output { position, .. }) = self.descriptor_mut(fd)?
        else {
            return Err(Errno::Badf);
        };
        let base = match whence {
            Whence::Start => 0,
            Whence::Current => *position,
            Whence::End => size,
        };
        let to = i128::from(base) + i128::from(offset);
        *position = u64::try_from(to).map_err(|_| Errno::Inval)?;
        Ok(*position)
    }

    pub(crate) fn tell(&mut self, fd: u32) -> Outcome<u64> {
        self.seek(fd, 0, Whence::Current)
    }

    /// Sets the size of the file open at `fd` for writing.
    pub(crate) fn set_size(&mut self, fd: u32, size: u64) -> Outcome<()> {
        match self.descriptor(fd)? {
            Descriptor::Output { node, write: true, .. } => self.resize(*node, size),
            Descriptor::Dir { .. } => Err(Errno::Isdir),
            _ => Err(Errno::Badf),
        }
    }

    /// Makes the file open at `fd` for writing at least `offset + len` bytes long.
    pub(crate) fn allocate(&mut self, fd: u32, offset: u64, len: u64) -> Outcome<()> {
        let end = offset.checked_add(len).ok_or(Errno::Fbig)?;
        match self.descriptor(fd)? {
            Descriptor::Output { node, write: true, .. } => {
                let node = *node;
                if end > self.file_size(node) { self.resize(node, end) } else { Ok(()) }
            }
            Descriptor::Dir { .. } => Err(Errno::Isdir),
            _ => Err(Errno::Badf),
        }
    }

    /// `fd_sync`, `fd_datasync`, `fd_advise`: nothing to do, but the
    /// descriptor must be open (what reaches the disk is the store's concern).
    pub(crate) fn check_open(&self, fd: u32) -> Outcome<()> {
        self.descriptor(fd).map(|_| ())
    }

    // Status.

    pub(crate) fn filestat(&mut self, fd: u32) -> Outcome<Filestat> {
        let began = self.began;
        match self.descriptor_mut(fd)? {
            Descriptor::Stdin | Descriptor::Log(_) => {
                Ok(Filestat { inode: 0, filetype: filetype::UNKNOWN, links: 1, size: 0, times: [0; 3] })
            }
            Descriptor::Dir { dir, .. } => {
                let dir = *dir;
                Ok(self.stat_found(Found::Dir(dir)))
            }
            Descriptor::Input { index, content, .. } => {
                let size_and_times = match content {
                    InputContent::Bytes(bytes) => (bytes.len() as u64, [began; 3]),
                    InputContent::File { stat: Some(known), .. } => *known,
                    InputContent::File { file, stat } => *stat.insert(object_stat(file)?),
                };
                Ok(input_filestat(*index, size_and_times))
            }
            Descriptor::Output { node, .. } => {
                let node = *node;
                Ok(self.stat_found(Found::Node(node)))
            }
        }
    }

    /// The status of an entry found by a lookup (an input's is that of its
    /// descriptor once opened; by path, its size needs the object's).
    fn stat_found(&self, found: Found) -> Filestat {
        match found {
            Found::Dir(DirRef::In) => {
                Filestat { inode: 1, filetype: filetype::DIRECTORY, links: 1, size: 0, times: [self.began; 3] }
            }
            Found::Input(index) => input_filestat(index, (0, [self.began; 3])),
            Found::Dir(DirRef::Out(node)) | Found::Node(node) => {
                let entry = &self.nodes[node];
                let (filetype, size) = match &entry.kind {
                    NodeKind::Dir(children) => (filetype::DIRECTORY, children.len() as u64),
                    NodeKind::File { size, .. } => (filetype::REGULAR_FILE, *size),
                    NodeKind::Symlink(target) => (filetype::SYMBOLIC_LINK, target.len() as u64),
                };
                Filestat {
                    inode: OUT_INODES + node as u64,
                    filetype,
                    links: u64::from(entry.linked),
                    size,
                    times: entry.times,
                }
            }
        }
    }

    pub(crate) fn path_filestat(&self, fd: u32, path: &str, follow: bool) -> Outcome<Filestat> {
        let found = self.find(fd, path, follow)?;
        if let Found::Input(index) = found {
            // Its size is the object's.
            let size_and_times = match &self.inputs[index].1 {
                Input::Bytes(bytes) => (bytes.len() as u64, [self.began; 3]),
                Input::Object(digest) => object_stat(&self.store.open_object_unchecked(digest)?)?,
            };
            return Ok(input_filestat(index, size_and_times));
        }
        Ok(self.stat_found(found))
    }

    /// Sets the access and modification times of the entry open at `fd`
    /// (of `/out` only: `/in` is read-only).
    pub(crate) fn set_times(&mut self, fd: u32, access: SetTime, modification: SetTime) -> Outcome<()> {
        match self.descriptor(fd)? {
            Descriptor::Output { node, .. } | Descriptor::Dir { dir: DirRef::Out(node), .. } => {
                let node = *node;
                self.touch(node, access, modification);
                Ok(())
            }
            Descriptor::Stdin | Descriptor::Log(_) => Err(Errno::Badf),
            _ => Err(Errno::Perm),
        }
    }

    pub(crate) fn path_set_times(
        &mut self,
        fd: u32,
        path: &str,
        follow: bool,
        access: SetTime,
        modification: SetTime,
    ) -> Outcome<()> {
        match self.find(fd, path, follow)? {
            Found::Node(node) | Found::Dir(DirRef::Out(node)) => {
                self.touch(node, access, modification);
                Ok(())
            }
            _ => Err(Errno::Perm),
        }
    }

    fn touch(&mut self, node: NodeId, access: SetTime, modification: SetTime) {
        let now = now_ns();
        for (slot, time) in [(0, access), (1, modification)] {
            match time {
                SetTime::Keep => {}
                SetTime::Now => self.nodes[node].times[slot] = now,
                SetTime::At(at) => self.nodes[node].times[slot] = at,
            }
        }
        self.nodes[node].times[2] = now;
    }

    // Opening.

    pub(crate) fn open(&mut self, fd: u32, path: &str, flags: OpenFlags) -> Outcome<u32> {
        let located = self.locate(fd, path)?;
        let parent = located.parent;
        let found = match &located.name {
            None => Some(Found::Dir(parent)),
            Some(name) => self.lookup(parent, name)?,
        };
        let found = match found {
            Some(Found::Node(node)) if flags.follow && matches!(self.nodes[node].kind, NodeKind::Symlink(_)) => {
                Some(self.find(fd, path, true)?)
            }
            other => other,
        };
        let writes = flags.write || flags.truncate || flags.append;
        let descriptor = match found {
            None => {
                let name = located.name.clone().ok_or(Errno::Noent)?;
                if !flags.create {
                    return Err(Errno::Noent);
                }
                if parent == DirRef::In {
                    return Err(Errno::Perm);
                }
                if flags.directory || located.trailing_slash {
                    return Err(Errno::Isdir);
                }
                let node = self.link_new(parent, name, NodeKind::File { backing: None, size: 0 })?;
                Descriptor::Output { node, position: 0, read: flags.read, write: flags.write, append: flags.append }
            }
            Some(_) if flags.create && flags.exclusive => return Err(Errno::Exist),
            Some(Found::Dir(dir)) => {
                if writes {
                    return Err(Errno::Isdir);
                }
                Descriptor::Dir { dir, preopen: None }
            }
            Some(Found::Node(node)) => match &self.nodes[node].kind {
                NodeKind::Dir(_) if writes => return Err(Errno::Isdir),
                NodeKind::Dir(_) => Descriptor::Dir { dir: DirRef::Out(node), preopen: None },
                NodeKind::Symlink(_) => return Err(Errno::Loop),
                NodeKind::File { .. } if flags.directory || located.trailing_slash => return Err(Errno::Notdir),
                NodeKind::File { .. } => {
                    if flags.truncate {
                        self.resize(node, 0)?;
                    }
                    Descriptor::Output { node, position: 0, read: flags.read, write: flags.write, append: flags.append }
                }
            },
            Some(Found::Input(index)) => {
                if flags.directory || located.trailing_slash {
                    return Err(Errno::Notdir);
                }
                if writes || flags.create {
                    return Err(Errno::Perm);
                }
                self.open_input(index)?
            }
        };
        self.insert(descriptor)
    }

    fn open_input(&self, index: usize) -> Outcome<Descriptor> {
        let content = match &self.inputs[index].1 {
            Input::Object(digest) => {
                InputContent::File { file: Arc::new(self.store.open_object_unchecked(digest)?), stat: None }
            }
            Input::Bytes(bytes) => InputContent::Bytes(bytes.clone()),
        };
        Ok(Descriptor::Input { index, content, position: 0 })
    }
}

/// The status of `/in`'s `index`-th entry, of this size and these times.
fn input_filestat(index: usize, (size, times): (u64, [u64; 3])) -> Filestat {
    Filestat { inode: input_inode(index), filetype: filetype::REGULAR_FILE, links: 1, size, times }
}

/// The size and times of an object, as its file has them.
fn object_stat(file: &File) -> Outcome<(u64, [u64; 3])> {
    let metadata = file.metadata()?;
    let stamp = |time: std::io::Result<SystemTime>| {
        time.ok()
            .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |since| u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
    };
    let modified = stamp(metadata.modified());
    Ok((metadata.len(), [stamp(metadata.accessed()), modified, modified]))
}

/// The inode number `/in` shows for its `index`-th entry.
fn input_inode(index: usize) -> u64 {
    2 + index as u64
}

/// Copies what `bytes` holds from `offset` into `buf`; the bytes copied.
fn copy_from(bytes: &[u8], offset: u64, buf: &mut [u8]) -> usize {
    let start = usize::try_from(offset).unwrap_or(usize::MAX).min(bytes.len());
    let count = buf.len().min(bytes.len() - start);
    buf[..count].copy_from_slice(&bytes[start..start + count]);
    count
}
