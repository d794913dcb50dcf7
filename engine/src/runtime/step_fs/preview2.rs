//! `wasi:filesystem` (its `types` and `preopens`) over a [`StepFs`], for a
//! preview-2 component: defined over wasmtime-wasi's (the linker allows the
//! shadowing), which still provides everything else (streams' plumbing,
//! clocks, randomness, stdio, exit).
//!
//! A `descriptor` resource is a descriptor number of the file system. A
//! stream reads or writes through a duplicate of its descriptor, so that it
//! works as long as the guest holds it, as WASI has it, and shares the file
//! system with the descriptors (hence the mutex). A call that takes `/out`
//! past a quota traps, and the step fails naming the quota.

use bytes::Bytes;
use wasmtime::component::{HasData, Resource, ResourceTable};
use wasmtime_wasi::p2::bindings::clocks::wall_clock::Datetime;
use wasmtime_wasi::p2::bindings::filesystem::preopens;
use wasmtime_wasi::p2::bindings::filesystem::types::ErrorCode;
use wasmtime_wasi::p2::bindings::sync::filesystem::types::{
    self, Advice, Descriptor, DescriptorFlags, DescriptorStat, DescriptorType, DirectoryEntry, DirectoryEntryStream,
    Filesize, MetadataHashValue, NewTimestamp, PathFlags,
};
use wasmtime_wasi::p2::{
    DynInputStream, DynOutputStream, FsError, FsResult, InputStream, OutputStream, Pollable, StreamError, StreamResult,
};

use super::{DirEntry, Errno, Filestat, OpenFlags, Outcome, SetTime, SharedFs, StepFs, Whence, filetype, lock_shared};

/// The most bytes one read or one write of a stream moves.
const STREAM_CHUNK: usize = 1 << 20;

/// What the `wasi:filesystem` functions see of a component's state.
pub(crate) struct OwnFsView<'a> {
    /// `None` only if the engine linked the guest to its file system but
    /// gave it none (every call then traps).
    pub fs: Option<&'a SharedFs>,
    /// The store's resources, where streams and listings are kept.
    pub table: &'a mut ResourceTable,
}

/// The [`HasData`] of [`OwnFsView`].
pub(crate) struct OwnFs;

impl HasData for OwnFs {
    type Data<'a> = OwnFsView<'a>;
}

/// Defines `wasi:filesystem/types` and `preopens` over whatever `linker`
/// holds, with `view` giving each call its file system.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    view: fn(&mut T) -> OwnFsView<'_>,
) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    types::add_to_linker::<T, OwnFs>(linker, view)?;
    preopens::add_to_linker::<T, OwnFs>(linker, view)?;
    linker.allow_shadowing(false);
    Ok(())
}

/// The error a guest is given for `errno`.
fn error_code(errno: Errno) -> ErrorCode {
    match errno {
        Errno::Acces => ErrorCode::Access,
        Errno::Badf => ErrorCode::BadDescriptor,
        Errno::Exist => ErrorCode::Exist,
        Errno::Fault | Errno::Inval => ErrorCode::Invalid,
        Errno::Fbig => ErrorCode::FileTooLarge,
        Errno::Ilseq => ErrorCode::IllegalByteSequence,
        Errno::Io => ErrorCode::Io,
        Errno::Isdir => ErrorCode::IsDirectory,
        Errno::Loop => ErrorCode::Loop,
        Errno::Nametoolong => ErrorCode::NameTooLong,
        Errno::Noent => ErrorCode::NoEntry,
        Errno::Nospc => ErrorCode::InsufficientSpace,
        Errno::Notdir => ErrorCode::NotDirectory,
        Errno::Notempty => ErrorCode::NotEmpty,
        Errno::Notsup => ErrorCode::Unsupported,
        Errno::Perm => ErrorCode::NotPermitted,
        Errno::Spipe => ErrorCode::InvalidSeek,
        Errno::Xdev => ErrorCode::CrossDevice,
    }
}

/// The trap that stops a guest which passed a quota, if it did.
fn breach_trap(fs: &StepFs) -> Option<wasmtime::Error> {
    fs.breach().map(|breach| wasmtime::Error::msg(breach.to_string()))
}

impl OwnFsView<'_> {
    /// Runs `call` on the file system: its error becomes the guest's, a
    /// passed quota a trap.
    fn with<R>(&mut self, call: impl FnOnce(&mut StepFs) -> Outcome<R>) -> FsResult<R> {
        let Some(fs) = self.fs else {
            return Err(FsError::trap(wasmtime::Error::msg(
                "the engine linked a guest to its own file system but gave it none",
            )));
        };
        let mut fs = lock_shared(fs);
        let outcome = call(&mut fs);
        if let Some(trap) = breach_trap(&fs) {
            return Err(FsError::trap(trap));
        }
        outcome.map_err(|errno| error_code(errno).into())
    }

    /// A stream over a duplicate of descriptor `fd`, at `offset` (else at
    /// the end, appending).
    fn stream(&mut self, fd: u32, offset: Option<u64>) -> FsResult<FileStream> {
        let shared = self.fs.cloned();
        let fd = self.with(|fs| {
            let copy = fs.duplicate(fd)?;
            let placed = match offset {
                Some(offset) => {
                    fs.seek(copy, i64::try_from(offset).map_err(|_| Errno::Inval)?, Whence::Start).map(drop)
                }
                None => fs.set_append(copy, true),
            };
            if let Err(errno) = placed {
                fs.close(copy)?;
                return Err(errno);
            }
            Ok(copy)
        })?;
        let fs = shared.expect("`with` fails without a file system");
        Ok(FileStream { fs, fd, closed: false })
    }

    fn is_dir(&mut self, fd: &Resource<Descriptor>) -> FsResult<bool> {
        Ok(self.with(|fs| fs.fdstat(fd.rep()))?.filetype == filetype::DIRECTORY)
    }

    /// Refuses a stream that writes to a directory (a bad descriptor) or to
    /// an input (not permitted). One on an output file opened only to read
    /// is made, and its first write fails, as on host directories.
    fn writable_file(&mut self, fd: &Resource<Descriptor>) -> FsResult<()> {
        if self.is_dir(fd)? {
            return Err(ErrorCode::BadDescriptor.into());
        }
        self.not_an_input(fd)
    }

    /// Refuses a write to an input as not permitted.
    fn not_an_input(&mut self, fd: &Resource<Descriptor>) -> FsResult<()> {
        if self.with(|fs| fs.is_input(fd.rep()))? {
            return Err(ErrorCode::NotPermitted.into());
        }
        Ok(())
    }
}

fn datetime(ns: u64) -> Datetime {
    Datetime { seconds: ns / 1_000_000_000, nanoseconds: (ns % 1_000_000_000) as u32 }
}

fn set_time(time: NewTimestamp) -> SetTime {
    match time {
        NewTimestamp::NoChange => SetTime::Keep,
        NewTimestamp::Now => SetTime::Now,
        NewTimestamp::Timestamp(at) => {
            SetTime::At(at.seconds.saturating_mul(1_000_000_000).saturating_add(u64::from(at.nanoseconds)))
        }
    }
}

fn descriptor_type(filetype: u8) -> DescriptorType {
    match filetype {
        filetype::DIRECTORY => DescriptorType::Directory,
        filetype::REGULAR_FILE => DescriptorType::RegularFile,
        filetype::SYMBOLIC_LINK => DescriptorType::SymbolicLink,
        _ => DescriptorType::Unknown,
    }
}

fn descriptor_stat(stat: &Filestat) -> DescriptorStat {
    let [accessed, modified, changed] = stat.times.map(|ns| Some(datetime(ns)));
    DescriptorStat {
        type_: descriptor_type(stat.filetype),
        link_count: stat.links,
        size: stat.size,
        data_access_timestamp: accessed,
        data_modification_timestamp: modified,
        status_change_timestamp: changed,
    }
}

/// What identifies an entry: its inode number and the file system's device.
fn metadata_hash(stat: &Filestat) -> MetadataHashValue {
    MetadataHashValue { lower: stat.inode, upper: Filestat::DEVICE }
}

fn follows(path_flags: PathFlags) -> bool {
    path_flags.contains(PathFlags::SYMLINK_FOLLOW)
}

impl preopens::Host for OwnFsView<'_> {
    fn get_directories(&mut self) -> wasmtime::Result<Vec<(Resource<Descriptor>, String)>> {
        let preopens = self.with(StepFs::preopens).map_err(|err| match err.downcast() {
            Ok(code) => wasmtime::Error::msg(format!("opening the preopened directories: {code}")),
            Err(trap) => trap,
        })?;
        Ok(preopens.into_iter().map(|(fd, path)| (Resource::new_own(fd), path.to_owned())).collect())
    }
}

impl types::Host for OwnFsView<'_> {
    fn convert_error_code(&mut self, err: FsError) -> wasmtime::Result<types::ErrorCode> {
        err.downcast().map(Into::into)
    }

    fn filesystem_error_code(
        &mut self,
        err: Resource<wasmtime_wasi::p2::IoError>,
    ) -> wasmtime::Result<Option<types::ErrorCode>> {
        let err = self.table.get(&err)?;
        Ok(err.downcast_ref::<Errno>().map(|errno| error_code(*errno).into()))
    }
}

impl types::HostDescriptor for OwnFsView<'_> {
    fn read_via_stream(&mut self, fd: Resource<Descriptor>, offset: Filesize) -> FsResult<Resource<DynInputStream>> {
        if self.is_dir(&fd)? {
            return Err(ErrorCode::IsDirectory.into());
        }
        let stream: DynInputStream = Box::new(self.stream(fd.rep(), Some(offset))?);
        Ok(self.table.push(stream)?)
    }

    fn write_via_stream(&mut self, fd: Resource<Descriptor>, offset: Filesize) -> FsResult<Resource<DynOutputStream>> {
        self.writable_file(&fd)?;
        let stream: DynOutputStream = Box::new(self.stream(fd.rep(), Some(offset))?);
        Ok(self.table.push(stream)?)
    }

    fn append_via_stream(&mut self, fd: Resource<Descriptor>) -> FsResult<Resource<DynOutputStream>> {
        self.writable_file(&fd)?;
        let stream: DynOutputStream = Box::new(self.stream(fd.rep(), None)?);
        Ok(self.table.push(stream)?)
    }

    fn advise(&mut self, fd: Resource<Descriptor>, _: Filesize, _: Filesize, _: Advice) -> FsResult<()> {
        if self.is_dir(&fd)? {
            return Err(ErrorCode::BadDescriptor.into());
        }
        Ok(())
    }

    fn sync_data(&mut self, fd: Resource<Descriptor>) -> FsResult<()> {
        self.with(|fs| fs.check_open(fd.rep()))
    }

    fn sync(&mut self, fd: Resource<Descriptor>) -> FsResult<()> {
        self.with(|fs| fs.check_open(fd.rep()))
    }

    fn get_flags(&mut self, fd: Resource<Descriptor>) -> FsResult<DescriptorFlags> {
        let access = self.with(|fs| fs.access(fd.rep()))?;
        Ok([
            (access.read, DescriptorFlags::READ),
            (access.write, DescriptorFlags::WRITE),
            (access.mutate_dir, DescriptorFlags::MUTATE_DIRECTORY),
        ]
        .into_iter()
        .filter(|(granted, _)| *granted)
        .fold(DescriptorFlags::empty(), |flags, (_, flag)| flags | flag))
    }

    fn get_type(&mut self, fd: Resource<Descriptor>) -> FsResult<DescriptorType> {
        Ok(descriptor_type(self.with(|fs| fs.fdstat(fd.rep()))?.filetype))
    }

    fn set_size(&mut self, fd: Resource<Descriptor>, size: Filesize) -> FsResult<()> {
        self.with(|fs| fs.set_size(fd.rep(), size))
    }

    fn set_times(
        &mut self,
        fd: Resource<Descriptor>,
        access: NewTimestamp,
        modification: NewTimestamp,
    ) -> FsResult<()> {
        self.with(|fs| fs.set_times(fd.rep(), set_time(access), set_time(modification)))
    }

    fn read(&mut self, fd: Resource<Descriptor>, len: Filesize, offset: Filesize) -> FsResult<(Vec<u8>, bool)> {
        let mut buf = vec![0; usize::try_from(len).unwrap_or(usize::MAX).min(STREAM_CHUNK)];
        let read = self.with(|fs| fs.read(fd.rep(), &mut buf, Some(offset)))?;
        buf.truncate(read);
        Ok((buf, read == 0))
    }

    fn write(&mut self, fd: Resource<Descriptor>, buf: Vec<u8>, offset: Filesize) -> FsResult<Filesize> {
        self.not_an_input(&fd)?;
        Ok(self.with(|fs| fs.write(fd.rep(), &buf, Some(offset)))? as Filesize)
    }

    fn read_directory(&mut self, fd: Resource<Descriptor>) -> FsResult<Resource<DirectoryEntryStream>> {
        if !self.is_dir(&fd)? {
            return Err(ErrorCode::NotDirectory.into());
        }
        // Preview 2 lists no `.` and `..`: start past them.
        let entries = self.with(|fs| fs.read_dir(fd.rep(), 2, usize::MAX))?;
        let listing = self.table.push(Listing(entries.into_iter()))?;
        Ok(Resource::new_own(listing.rep()))
    }

    fn create_directory_at(&mut self, fd: Resource<Descriptor>, path: String) -> FsResult<()> {
        self.with(|fs| fs.create_dir(fd.rep(), &path))
    }

    fn stat(&mut self, fd: Resource<Descriptor>) -> FsResult<DescriptorStat> {
        Ok(descriptor_stat(&self.with(|fs| fs.filestat(fd.rep()))?))
    }

    fn stat_at(&mut self, fd: Resource<Descriptor>, path_flags: PathFlags, path: String) -> FsResult<DescriptorStat> {
        Ok(descriptor_stat(&self.with(|fs| fs.path_filestat(fd.rep(), &path, follows(path_flags)))?))
    }

    fn set_times_at(
        &mut self,
        fd: Resource<Descriptor>,
        path_flags: PathFlags,
        path: String,
        access: NewTimestamp,
        modification: NewTimestamp,
    ) -> FsResult<()> {
        self.with(|fs| {
            fs.path_set_times(fd.rep(), &path, follows(path_flags), set_time(access), set_time(modification))
        })
    }

    fn link_at(
        &mut self,
        fd: Resource<Descriptor>,
        _: PathFlags,
        old_path: String,
        new_fd: Resource<Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        self.with(|fs| fs.link(fd.rep(), &old_path, new_fd.rep(), &new_path))
    }

    fn open_at(
        &mut self,
        fd: Resource<Descriptor>,
        path_flags: PathFlags,
        path: String,
        oflags: types::OpenFlags,
        flags: DescriptorFlags,
    ) -> FsResult<Resource<Descriptor>> {
        use types::OpenFlags as Open;
        let syncs = DescriptorFlags::FILE_INTEGRITY_SYNC
            | DescriptorFlags::DATA_INTEGRITY_SYNC
            | DescriptorFlags::REQUESTED_WRITE_SYNC;
        if flags.intersects(syncs) {
            return Err(ErrorCode::Unsupported.into());
        }
        if oflags.contains(Open::DIRECTORY) && oflags.intersects(Open::CREATE | Open::EXCLUSIVE | Open::TRUNCATE) {
            return Err(ErrorCode::Invalid.into());
        }
        // As wasmtime-wasi opens: creating or truncating writes, and a
        // descriptor not opened for writing reads.
        let write = flags.contains(DescriptorFlags::WRITE) || oflags.intersects(Open::CREATE | Open::TRUNCATE);
        let open = OpenFlags {
            create: oflags.contains(Open::CREATE),
            directory: oflags.contains(Open::DIRECTORY),
            exclusive: oflags.contains(Open::EXCLUSIVE),
            truncate: oflags.contains(Open::TRUNCATE),
            read: flags.contains(DescriptorFlags::READ) || !flags.contains(DescriptorFlags::WRITE),
            write,
            append: false,
            follow: follows(path_flags),
        };
        Ok(Resource::new_own(self.with(|fs| fs.open(fd.rep(), &path, open))?))
    }

    fn readlink_at(&mut self, fd: Resource<Descriptor>, path: String) -> FsResult<String> {
        self.with(|fs| fs.read_link(fd.rep(), &path))
    }

    fn remove_directory_at(&mut self, fd: Resource<Descriptor>, path: String) -> FsResult<()> {
        self.with(|fs| fs.remove_dir(fd.rep(), &path))
    }

    fn rename_at(
        &mut self,
        fd: Resource<Descriptor>,
        old_path: String,
        new_fd: Resource<Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        self.with(|fs| fs.rename(fd.rep(), &old_path, new_fd.rep(), &new_path))
    }

    fn symlink_at(&mut self, fd: Resource<Descriptor>, target: String, path: String) -> FsResult<()> {
        self.with(|fs| fs.symlink(&target, fd.rep(), &path))
    }

    fn unlink_file_at(&mut self, fd: Resource<Descriptor>, path: String) -> FsResult<()> {
        self.with(|fs| fs.unlink_file(fd.rep(), &path))
    }

    fn is_same_object(&mut self, a: Resource<Descriptor>, b: Resource<Descriptor>) -> wasmtime::Result<bool> {
        let inode = |view: &mut Self, fd: u32| view.with(|fs| fs.filestat(fd)).map(|stat| stat.inode).ok();
        let (a, b) = (inode(self, a.rep()), inode(self, b.rep()));
        Ok(a.is_some() && a == b)
    }

    fn metadata_hash(&mut self, fd: Resource<Descriptor>) -> FsResult<MetadataHashValue> {
        Ok(metadata_hash(&self.with(|fs| fs.filestat(fd.rep()))?))
    }

    fn metadata_hash_at(
        &mut self,
        fd: Resource<Descriptor>,
        path_flags: PathFlags,
        path: String,
    ) -> FsResult<MetadataHashValue> {
        Ok(metadata_hash(&self.with(|fs| fs.path_filestat(fd.rep(), &path, follows(path_flags)))?))
    }

    fn drop(&mut self, fd: Resource<Descriptor>) -> wasmtime::Result<()> {
        // A descriptor the guest holds is open: closing it cannot fail.
        self.with(|fs| fs.close(fd.rep())).map_err(|err| match err.downcast() {
            Ok(code) => wasmtime::Error::msg(format!("closing a descriptor: {code}")),
            Err(trap) => trap,
        })
    }
}

/// The entries of a directory as it was listed, handed out one at a time.
struct Listing(std::vec::IntoIter<DirEntry>);

impl types::HostDirectoryEntryStream for OwnFsView<'_> {
    fn read_directory_entry(&mut self, listing: Resource<DirectoryEntryStream>) -> FsResult<Option<DirectoryEntry>> {
        let listing = self.table.get_mut(&Resource::<Listing>::new_borrow(listing.rep()))?;
        Ok(listing.0.next().map(|entry| DirectoryEntry { type_: descriptor_type(entry.filetype), name: entry.name }))
    }

    fn drop(&mut self, listing: Resource<DirectoryEntryStream>) -> wasmtime::Result<()> {
        self.table.delete(Resource::<Listing>::new_own(listing.rep()))?;
        Ok(())
    }
}

/// A stream reading or writing a file through a descriptor of its own,
/// closed when the stream is dropped.
struct FileStream {
    fs: SharedFs,
    fd: u32,
    /// Whether an operation failed (the stream is closed from then on).
    closed: bool,
}

impl FileStream {
    /// Runs `call` on the stream's descriptor: an error closes the stream,
    /// a passed quota traps.
    fn with<R>(&mut self, call: impl FnOnce(&mut StepFs, u32) -> Outcome<R>) -> StreamResult<R> {
        if self.closed {
            return Err(StreamError::Closed);
        }
        let mut fs = lock_shared(&self.fs);
        let outcome = call(&mut fs, self.fd);
        if let Some(trap) = breach_trap(&fs) {
            return Err(StreamError::Trap(trap));
        }
        outcome.map_err(|errno| {
            self.closed = true;
            StreamError::LastOperationFailed(wasmtime::Error::new(errno))
        })
    }
}

impl Drop for FileStream {
    fn drop(&mut self) {
        // The descriptor is the stream's own; it is open.
        let _ = lock_shared(&self.fs).close(self.fd);
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for FileStream {
    /// A file is always ready.
    async fn ready(&mut self) {}
}

#[wasmtime_wasi::async_trait]
impl InputStream for FileStream {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        if size == 0 {
            return Ok(Bytes::new());
        }
        let mut buf = vec![0; size.min(STREAM_CHUNK)];
        let read = self.with(|fs, fd| fs.read(fd, &mut buf, None))?;
        if read == 0 {
            self.closed = true;
            return Err(StreamError::Closed);
        }
        buf.truncate(read);
        Ok(buf.into())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for FileStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.with(|fs, fd| fs.write(fd, &bytes, None)).map(drop)
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.with(|_, _| Ok(()))
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        self.with(|_, _| Ok(STREAM_CHUNK))
    }
}
