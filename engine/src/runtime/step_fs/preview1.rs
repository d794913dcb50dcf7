//! The `fd_*` and `path_*` functions of `wasi_snapshot_preview1` over a
//! [`StepFs`]: each decodes its arguments from the guest's memory, calls
//! the file system and encodes the results in WASI's layouts. They are
//! defined over wasmtime-wasi's (the linker allows the shadowing), which
//! still provides everything else: arguments, clocks, randomness,
//! `poll_oneoff` (clock subscriptions; the descriptors here are not its),
//! `proc_exit`.
//!
//! A call that takes `/out` past a quota traps: the guest stops there, and
//! the step fails naming the quota.

use std::ops::Range;

use wasmtime::{Caller, Extern, Linker};

use super::{DirEntry, Errno, Filestat, OpenFlags, Outcome, SetTime, StepFs, Whence};
use crate::runtime::sandbox::CoreState;

const MODULE: &str = "wasi_snapshot_preview1";

/// The guest's linear memory, with WASI's little-endian layouts.
struct Memory<'a>(&'a mut [u8]);

impl Memory<'_> {
    fn range(&self, ptr: u32, len: u32) -> Outcome<Range<usize>> {
        let start = ptr as usize;
        let end = start.checked_add(len as usize).ok_or(Errno::Fault)?;
        if end > self.0.len() { Err(Errno::Fault) } else { Ok(start..end) }
    }

    fn bytes(&self, ptr: u32, len: u32) -> Outcome<&[u8]> {
        Ok(&self.0[self.range(ptr, len)?])
    }

    fn bytes_mut(&mut self, ptr: u32, len: u32) -> Outcome<&mut [u8]> {
        let range = self.range(ptr, len)?;
        Ok(&mut self.0[range])
    }

    fn put(&mut self, ptr: u32, bytes: &[u8]) -> Outcome<()> {
        self.bytes_mut(ptr, bytes.len() as u32)?.copy_from_slice(bytes);
        Ok(())
    }

    fn put_u32(&mut self, ptr: u32, value: u32) -> Outcome<()> {
        self.put(ptr, &value.to_le_bytes())
    }

    fn put_u64(&mut self, ptr: u32, value: u64) -> Outcome<()> {
        self.put(ptr, &value.to_le_bytes())
    }

    fn string(&self, ptr: u32, len: u32) -> Outcome<String> {
        String::from_utf8(self.bytes(ptr, len)?.to_vec()).map_err(|_| Errno::Ilseq)
    }

    /// The `(buf, buf_len)` pairs of an `iovec` or `ciovec` array.
    fn vectors(&self, ptr: u32, count: u32) -> Outcome<Vec<(u32, u32)>> {
        let table = self.bytes(ptr, count.checked_mul(8).ok_or(Errno::Fault)?)?;
        Ok(table
            .chunks_exact(8)
            .map(|pair| {
                let word = |at: usize| u32::from_le_bytes(pair[at..at + 4].try_into().expect("four bytes"));
                (word(0), word(4))
            })
            .collect())
    }
}

/// Runs `call` with the memory and file system of the calling guest; its
/// error becomes the errno returned, a passed quota a trap.
fn with_fs(
    caller: &mut Caller<'_, CoreState>,
    call: impl FnOnce(&mut Memory<'_>, &mut StepFs) -> Outcome<()>,
) -> wasmtime::Result<i32> {
    let Some(memory) = caller.get_export("memory").and_then(Extern::into_memory) else {
        return Ok(Errno::Fault as i32);
    };
    let (bytes, state) = memory.data_and_store_mut(caller);
    let Some(fs) = state.fs.as_mut() else {
        return Err(wasmtime::Error::msg("the engine ran a guest with its own file system but gave it none"));
    };
    let outcome = call(&mut Memory(bytes), fs);
    if let Some(breach) = fs.breach() {
        return Err(wasmtime::Error::msg(breach.to_string()));
    }
    Ok(match outcome {
        Ok(()) => 0,
        Err(errno) => errno as i32,
    })
}

fn encode_filestat(memory: &mut Memory<'_>, ptr: u32, stat: &Filestat) -> Outcome<()> {
    let mut bytes = [0u8; 64];
    bytes[0..8].copy_from_slice(&Filestat::DEVICE.to_le_bytes());
    bytes[8..16].copy_from_slice(&stat.inode.to_le_bytes());
    bytes[16] = stat.filetype;
    bytes[24..32].copy_from_slice(&stat.links.to_le_bytes());
    bytes[32..40].copy_from_slice(&stat.size.to_le_bytes());
    for (slot, time) in stat.times.iter().enumerate() {
        bytes[40 + 8 * slot..48 + 8 * slot].copy_from_slice(&time.to_le_bytes());
    }
    memory.put(ptr, &bytes)
}

/// Encodes `entries` (the first with cookie `cookie`) as `dirent`s and
/// names into `buf`, cutting the last one short where the buffer ends, as
/// WASI has it (a full buffer tells the guest to ask again).
fn encode_dirents(entries: &[DirEntry], cookie: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for (next, entry) in (cookie + 1..).zip(entries) {
        out.extend_from_slice(&next.to_le_bytes());
        out.extend_from_slice(&entry.inode.to_le_bytes());
        out.extend_from_slice(&(entry.name.len() as u32).to_le_bytes());
        out.extend_from_slice(&[entry.filetype, 0, 0, 0]);
        out.extend_from_slice(entry.name.as_bytes());
    }
    out
}

fn set_time(flags: u16, given: u16, now: u16, at: u64) -> Outcome<SetTime> {
    match (flags & given != 0, flags & now != 0) {
        (true, true) => Err(Errno::Inval),
        (true, false) => Ok(SetTime::At(at)),
        (false, true) => Ok(SetTime::Now),
        (false, false) => Ok(SetTime::Keep),
    }
}

/// The access and modification times of `fst_flags`.
fn times(fst_flags: u32, access: u64, modification: u64) -> Outcome<(SetTime, SetTime)> {
    let flags = u16::try_from(fst_flags).map_err(|_| Errno::Inval)?;
    Ok((set_time(flags, 1, 2, access)?, set_time(flags, 4, 8, modification)?))
}

/// Defines the file-system functions over whatever `linker` holds.
pub(crate) fn add_to_linker(linker: &mut Linker<CoreState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    add_descriptor_functions(linker)?;
    add_io_functions(linker)?;
    add_path_functions(linker)?;
    linker.allow_shadowing(false);
    Ok(())
}

type Ctx<'a> = Caller<'a, CoreState>;

fn add_descriptor_functions(linker: &mut Linker<CoreState>) -> wasmtime::Result<()> {
    linker.func_wrap(MODULE, "fd_prestat_get", |mut caller: Ctx<'_>, fd: u32, ptr: u32| {
        with_fs(&mut caller, |memory, fs| {
            let name = fs.prestat(fd)?;
            memory.put_u32(ptr, 0)?;
            memory.put_u32(ptr + 4, name.len() as u32)
        })
    })?;
    linker.func_wrap(MODULE, "fd_prestat_dir_name", |mut caller: Ctx<'_>, fd: u32, ptr: u32, len: u32| {
        with_fs(&mut caller, |memory, fs| {
            let name = fs.prestat(fd)?;
            if (len as usize) < name.len() {
                return Err(Errno::Nametoolong);
            }
            memory.put(ptr, name.as_bytes())
        })
    })?;
    linker.func_wrap(MODULE, "fd_close", |mut caller: Ctx<'_>, fd: u32| with_fs(&mut caller, |_, fs| fs.close(fd)))?;
    linker.func_wrap(MODULE, "fd_renumber", |mut caller: Ctx<'_>, fd: u32, to: u32| {
        with_fs(&mut caller, |_, fs| fs.renumber(fd, to))
    })?;
    linker.func_wrap(MODULE, "fd_fdstat_get", |mut caller: Ctx<'_>, fd: u32, ptr: u32| {
        with_fs(&mut caller, |memory, fs| {
            let stat = fs.fdstat(fd)?;
            let mut bytes = [0u8; 24];
            bytes[0] = stat.filetype;
            bytes[2..4].copy_from_slice(&u16::from(stat.append).to_le_bytes());
            bytes[8..16].copy_from_slice(&stat.rights.to_le_bytes());
            bytes[16..24].copy_from_slice(&stat.inheriting.to_le_bytes());
            memory.put(ptr, &bytes)
        })
    })?;
    linker.func_wrap(MODULE, "fd_fdstat_set_flags", |mut caller: Ctx<'_>, fd: u32, flags: u32| {
        // `append` (1) is kept; `nonblock` (4) means nothing to a file;
        // the synchronous-write flags are not offered.
        with_fs(&mut caller, |_, fs| {
            if flags & !0b101 != 0 {
                return Err(Errno::Notsup);
            }
            fs.set_append(fd, flags & 1 != 0)
        })
    })?;
    linker.func_wrap(MODULE, "fd_fdstat_set_rights", |mut caller: Ctx<'_>, fd: u32, _: u64, _: u64| {
        with_fs(&mut caller, |_, fs| fs.check_open(fd).and(Err(Errno::Notsup)))
    })?;
    linker.func_wrap(MODULE, "fd_filestat_get", |mut caller: Ctx<'_>, fd: u32, ptr: u32| {
        with_fs(&mut caller, |memory, fs| {
            let stat = fs.filestat(fd)?;
            encode_filestat(memory, ptr, &stat)
        })
    })?;
    linker.func_wrap(MODULE, "fd_filestat_set_size", |mut caller: Ctx<'_>, fd: u32, size: u64| {
        with_fs(&mut caller, |_, fs| fs.set_size(fd, size))
    })?;
    linker.func_wrap(
        MODULE,
        "fd_filestat_set_times",
        |mut caller: Ctx<'_>, fd: u32, access: u64, modification: u64, flags: u32| {
            with_fs(&mut caller, |_, fs| {
                let (access, modification) = times(flags, access, modification)?;
                fs.set_times(fd, access, modification)
            })
        },
    )?;
    for name in ["fd_sync", "fd_datasync"] {
        linker
            .func_wrap(MODULE, name, |mut caller: Ctx<'_>, fd: u32| with_fs(&mut caller, |_, fs| fs.check_open(fd)))?;
    }
    linker.func_wrap(MODULE, "fd_advise", |mut caller: Ctx<'_>, fd: u32, _: u64, _: u64, advice: u32| {
        with_fs(&mut caller, |_, fs| if advice > 5 { Err(Errno::Inval) } else { fs.check_open(fd) })
    })?;
    linker.func_wrap(MODULE, "fd_allocate", |mut caller: Ctx<'_>, fd: u32, offset: u64, len: u64| {
        with_fs(&mut caller, |_, fs| fs.allocate(fd, offset, len))
    })?;
    linker.func_wrap(
        MODULE,
        "fd_readdir",
        |mut caller: Ctx<'_>, fd: u32, buf: u32, len: u32, cookie: u64, used: u32| {
            with_fs(&mut caller, |memory, fs| {
                let encoded = encode_dirents(&fs.read_dir(fd, cookie, len as usize)?, cookie);
                let fits = encoded.len().min(len as usize);
                memory.put(buf, &encoded[..fits])?;
                memory.put_u32(used, fits as u32)
            })
        },
    )?;
    Ok(())
}

fn add_io_functions(linker: &mut Linker<CoreState>) -> wasmtime::Result<()> {
    /// Reads into the buffers of `iovs` in turn, from `at` (else the
    /// descriptor's position); the bytes read.
    fn read(memory: &mut Memory<'_>, fs: &mut StepFs, fd: u32, iovs: (u32, u32), at: Option<u64>) -> Outcome<u32> {
        let mut total = 0usize;
        for (ptr, len) in memory.vectors(iovs.0, iovs.1)? {
            let offset = at.map(|at| at + total as u64);
            let read = match fs.read(fd, memory.bytes_mut(ptr, len)?, offset) {
                Ok(read) => read,
                Err(_) if total > 0 => break,
                Err(errno) => return Err(errno),
            };
            total += read;
            if read < len as usize {
                break;
            }
        }
        Ok(total as u32)
    }
    /// Writes the buffers of `iovs` in turn; the bytes written.
    fn write(memory: &mut Memory<'_>, fs: &mut StepFs, fd: u32, iovs: (u32, u32), at: Option<u64>) -> Outcome<u32> {
        let mut total = 0usize;
        for (ptr, len) in memory.vectors(iovs.0, iovs.1)? {
            let offset = at.map(|at| at + total as u64);
            total += match fs.write(fd, memory.bytes(ptr, len)?, offset) {
                Ok(written) => written,
                Err(_) if total > 0 && fs.breach().is_none() => break,
                Err(errno) => return Err(errno),
            };
        }
        Ok(total as u32)
    }
    /// Moves bytes between the buffers of `iovs` and the file (`writes`:
    /// into the file), from `at` (else the descriptor's position), and
    /// stores how many at `done`.
    fn transfer(
        caller: &mut Ctx<'_>,
        fd: u32,
        iovs: (u32, u32),
        at: Option<u64>,
        done: u32,
        writes: bool,
    ) -> wasmtime::Result<i32> {
        with_fs(caller, |memory, fs| {
            let moved = if writes { write(memory, fs, fd, iovs, at)? } else { read(memory, fs, fd, iovs, at)? };
            memory.put_u32(done, moved)
        })
    }
    linker.func_wrap(MODULE, "fd_read", |mut caller: Ctx<'_>, fd: u32, iovs: u32, count: u32, done: u32| {
        transfer(&mut caller, fd, (iovs, count), None, done, false)
    })?;
    linker.func_wrap(
        MODULE,
        "fd_pread",
        |mut caller: Ctx<'_>, fd: u32, iovs: u32, count: u32, at: u64, done: u32| {
            transfer(&mut caller, fd, (iovs, count), Some(at), done, false)
        },
    )?;
    linker.func_wrap(MODULE, "fd_write", |mut caller: Ctx<'_>, fd: u32, iovs: u32, count: u32, done: u32| {
        transfer(&mut caller, fd, (iovs, count), None, done, true)
    })?;
    linker.func_wrap(
        MODULE,
        "fd_pwrite",
        |mut caller: Ctx<'_>, fd: u32, iovs: u32, count: u32, at: u64, done: u32| {
            transfer(&mut caller, fd, (iovs, count), Some(at), done, true)
        },
    )?;
    linker.func_wrap(MODULE, "fd_seek", |mut caller: Ctx<'_>, fd: u32, offset: i64, whence: u32, result: u32| {
        with_fs(&mut caller, |memory, fs| {
            let whence = match whence {
                0 => Whence::Start,
                1 => Whence::Current,
                2 => Whence::End,
                _ => return Err(Errno::Inval),
            };
            let position = fs.seek(fd, offset, whence)?;
            memory.put_u64(result, position)
        })
    })?;
    linker.func_wrap(MODULE, "fd_tell", |mut caller: Ctx<'_>, fd: u32, result: u32| {
        with_fs(&mut caller, |memory, fs| {
            let position = fs.tell(fd)?;
            memory.put_u64(result, position)
        })
    })?;
    Ok(())
}

fn add_path_functions(linker: &mut Linker<CoreState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        MODULE,
        "path_open",
        |mut caller: Ctx<'_>,
         fd: u32,
         lookup: u32,
         path: u32,
         len: u32,
         oflags: u32,
         base: u64,
         _inheriting: u64,
         fdflags: u32,
         opened: u32| {
            with_fs(&mut caller, |memory, fs| {
                use super::rights::{READING, WRITING};
                let path = memory.string(path, len)?;
                if fdflags & !0b101 != 0 {
                    return Err(Errno::Notsup);
                }
                let flags = OpenFlags {
                    create: oflags & 1 != 0,
                    directory: oflags & 2 != 0,
                    exclusive: oflags & 4 != 0,
                    truncate: oflags & 8 != 0,
                    read: base & READING != 0,
                    write: base & WRITING != 0 || fdflags & 1 != 0,
                    append: fdflags & 1 != 0,
                    follow: lookup & 1 != 0,
                };
                let new = fs.open(fd, &path, flags)?;
                memory.put_u32(opened, new)
            })
        },
    )?;
    linker.func_wrap(MODULE, "path_create_directory", |mut caller: Ctx<'_>, fd: u32, path: u32, len: u32| {
        with_fs(&mut caller, |memory, fs| fs.create_dir(fd, &memory.string(path, len)?))
    })?;
    linker.func_wrap(MODULE, "path_remove_directory", |mut caller: Ctx<'_>, fd: u32, path: u32, len: u32| {
        with_fs(&mut caller, |memory, fs| fs.remove_dir(fd, &memory.string(path, len)?))
    })?;
    linker.func_wrap(MODULE, "path_unlink_file", |mut caller: Ctx<'_>, fd: u32, path: u32, len: u32| {
        with_fs(&mut caller, |memory, fs| fs.unlink_file(fd, &memory.string(path, len)?))
    })?;
    linker.func_wrap(
        MODULE,
        "path_filestat_get",
        |mut caller: Ctx<'_>, fd: u32, lookup: u32, path: u32, len: u32, ptr: u32| {
            with_fs(&mut caller, |memory, fs| {
                let stat = fs.path_filestat(fd, &memory.string(path, len)?, lookup & 1 != 0)?;
                encode_filestat(memory, ptr, &stat)
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "path_filestat_set_times",
        |mut caller: Ctx<'_>, fd: u32, lookup: u32, path: u32, len: u32, access: u64, modification: u64, flags: u32| {
            with_fs(&mut caller, |memory, fs| {
                let (access, modification) = times(flags, access, modification)?;
                fs.path_set_times(fd, &memory.string(path, len)?, lookup & 1 != 0, access, modification)
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "path_rename",
        |mut caller: Ctx<'_>, fd: u32, from: u32, from_len: u32, to_fd: u32, to: u32, to_len: u32| {
            with_fs(&mut caller, |memory, fs| {
                fs.rename(fd, &memory.string(from, from_len)?, to_fd, &memory.string(to, to_len)?)
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "path_link",
        |mut caller: Ctx<'_>, fd: u32, _lookup: u32, from: u32, from_len: u32, to_fd: u32, to: u32, to_len: u32| {
            with_fs(&mut caller, |memory, fs| {
                fs.link(fd, &memory.string(from, from_len)?, to_fd, &memory.string(to, to_len)?)
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "path_symlink",
        |mut caller: Ctx<'_>, target: u32, target_len: u32, fd: u32, path: u32, len: u32| {
            with_fs(&mut caller, |memory, fs| {
                fs.symlink(&memory.string(target, target_len)?, fd, &memory.string(path, len)?)
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "path_readlink",
        |mut caller: Ctx<'_>, fd: u32, path: u32, len: u32, buf: u32, buf_len: u32, used: u32| {
            with_fs(&mut caller, |memory, fs| {
                let target = fs.read_link(fd, &memory.string(path, len)?)?;
                let fits = target.len().min(buf_len as usize);
                memory.put(buf, &target.as_bytes()[..fits])?;
                memory.put_u32(used, fits as u32)
            })
        },
    )?;
    Ok(())
}
