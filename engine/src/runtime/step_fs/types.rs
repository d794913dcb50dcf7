//! The vocabulary of `wasi_snapshot_preview1` the file system speaks:
//! error numbers, file types, rights, and what its calls take and return.

/// A WASI error number (`wasi_snapshot_preview1`'s `errno`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub(crate) enum Errno {
    Acces = 2,
    Badf = 8,
    Exist = 20,
    Fault = 21,
    Fbig = 22,
    Ilseq = 25,
    Inval = 28,
    Io = 29,
    Isdir = 31,
    Loop = 32,
    Nametoolong = 37,
    Noent = 44,
    Nospc = 51,
    Notdir = 54,
    Notempty = 55,
    Notsup = 58,
    Perm = 63,
    Spipe = 70,
    Xdev = 75,
}

impl From<std::io::Error> for Errno {
    fn from(err: std::io::Error) -> Self {
        match err.raw_os_error() {
            Some(libc::ENOSPC | libc::EDQUOT) => Errno::Nospc,
            Some(libc::EFBIG) => Errno::Fbig,
            Some(libc::EACCES) => Errno::Acces,
            _ => Errno::Io,
        }
    }
}

/// What a WASI call returns besides its results.
pub(crate) type Outcome<T> = Result<T, Errno>;

/// File types (`filetype`).
pub(crate) mod filetype {
    pub const UNKNOWN: u8 = 0;
    pub const DIRECTORY: u8 = 3;
    pub const REGULAR_FILE: u8 = 4;
    pub const SYMBOLIC_LINK: u8 = 7;
}

/// What `fd_filestat_get` and `path_filestat_get` report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Filestat {
    pub inode: u64,
    pub filetype: u8,
    pub links: u64,
    pub size: u64,
    /// Access, modification and status change times, in nanoseconds since the epoch.
    pub times: [u64; 3],
}

impl Filestat {
    /// The device number every entry reports ("weir" in ASCII).
    pub(crate) const DEVICE: u64 = 0x7765_6972;
}

/// What `fd_fdstat_get` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fdstat {
    pub filetype: u8,
    pub append: bool,
    pub rights: u64,
    pub inheriting: u64,
}

/// Rights (`rights`), reported by `fd_fdstat_get`; like wasmtime-wasi, the
/// engine does not enforce them (a descriptor's access mode is what counts).
pub(crate) mod rights {
    pub const FD_DATASYNC: u64 = 1 << 0;
    pub const FD_READ: u64 = 1 << 1;
    pub const FD_WRITE: u64 = 1 << 6;
    pub const FD_ALLOCATE: u64 = 1 << 8;
    pub const FD_READDIR: u64 = 1 << 14;
    pub const FD_FILESTAT_SET_SIZE: u64 = 1 << 22;
    /// Every right that reads a file.
    pub const READING: u64 = FD_READ | FD_READDIR;
    /// Every right that changes a file.
    pub const WRITING: u64 = FD_DATASYNC | FD_WRITE | FD_ALLOCATE | FD_FILESTAT_SET_SIZE;
    /// What a file descriptor may do, both ways (bits 0–8 and 21–23, and `poll_fd_readwrite`).
    pub const FILE: u64 = 0x1ff | (0b111 << 21) | (1 << 27);
    /// What a directory descriptor may do (bits 9–20 and 23–26, and file status).
    pub const DIRECTORY: u64 = (0xfff << 9) | (0b1111 << 23) | (1 << 21) | (1 << 3) | (1 << 4);
}

/// How `path_open` opens.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct OpenFlags {
    pub create: bool,
    pub directory: bool,
    pub exclusive: bool,
    pub truncate: bool,
    pub read: bool,
    pub write: bool,
    pub append: bool,
    /// Whether a symbolic link as the last component is followed.
    pub follow: bool,
}

/// Whence a seek counts.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Whence {
    Start,
    Current,
    End,
}

/// A time to set on an entry: left as it is, now, or this time (ns).
#[derive(Debug, Clone, Copy)]
pub(crate) enum SetTime {
    Keep,
    Now,
    At(u64),
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DirEntry {
    pub name: String,
    pub inode: u64,
    pub filetype: u8,
}

impl std::fmt::Display for Errno {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self {
            Errno::Acces => "permission denied",
            Errno::Badf => "bad file descriptor",
            Errno::Exist => "file exists",
            Errno::Fault => "bad address",
            Errno::Fbig => "file too large",
            Errno::Ilseq => "illegal byte sequence",
            Errno::Inval => "invalid argument",
            Errno::Io => "input/output error",
            Errno::Isdir => "is a directory",
            Errno::Loop => "too many levels of symbolic links",
            Errno::Nametoolong => "file name too long",
            Errno::Noent => "no such file or directory",
            Errno::Nospc => "no space left on device",
            Errno::Notdir => "not a directory",
            Errno::Notempty => "directory not empty",
            Errno::Notsup => "not supported",
            Errno::Perm => "operation not permitted",
            Errno::Spipe => "illegal seek",
            Errno::Xdev => "cross-device link",
        };
        write!(f, "{what} (WASI errno {})", *self as u16)
    }
}

impl std::error::Error for Errno {}
