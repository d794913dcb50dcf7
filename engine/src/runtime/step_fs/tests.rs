//! The engine's own file system, driven as the preview-1 functions drive it.

use super::{Errno, Input, OpenFlags, Produced, SetTime, StepFs, Whence, filetype};
use crate::runtime::capped_log::CappedLog;
use crate::store::Store;
use crate::{Limits, StepErrorKind};

const IN: u32 = 3;
const OUT: u32 = 4;

/// A file system, with the directory that holds its store and logs.
pub(crate) struct Fixture {
    pub _dir: tempfile::TempDir,
    pub store: Store,
    pub fs: StepFs,
}

/// A file system whose `/in` holds `data` (stored) and `.params.json`.
fn fixture(limits: Limits) -> Fixture {
    with_inputs(limits, |store| {
        let data = store.put_bytes(b"stored input").unwrap();
        vec![("data".to_owned(), Input::Object(data)), (".params.json".to_owned(), Input::Bytes((*b"{}").into()))]
    })
}

/// A file system under `limits` whose `/in` holds what `inputs` puts in the store.
pub(crate) fn with_inputs(limits: Limits, inputs: impl FnOnce(&Store) -> Vec<(String, Input)>) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("ws")).unwrap();
    assert!(store.has_unnamed_files(), "the test machine's tmpfs or ext4 has O_TMPFILE");
    let log = |name| {
        CappedLog::new(
            cap_std::fs::Dir::open_ambient_dir(dir.path(), cap_std::ambient_authority()).unwrap(),
            name,
            1 << 20,
            None,
        )
    };
    let inputs = inputs(&store);
    let fs = StepFs::new(inputs, store.clone(), limits, log("stdout"), log("stderr"));
    Fixture { _dir: dir, store, fs }
}

fn reading() -> OpenFlags {
    OpenFlags { read: true, follow: true, ..OpenFlags::default() }
}

fn creating() -> OpenFlags {
    OpenFlags { create: true, truncate: true, write: true, read: true, follow: true, ..OpenFlags::default() }
}

fn read_all(fs: &mut StepFs, fd: u32) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 5];
    loop {
        let read = fs.read(fd, &mut buf, None).unwrap();
        if read == 0 {
            return all;
        }
        all.extend_from_slice(&buf[..read]);
    }
}

fn names(fs: &StepFs, fd: u32) -> Vec<String> {
    fs.read_dir(fd, 0, usize::MAX).unwrap().into_iter().map(|entry| entry.name).collect()
}

#[test]
fn inputs_are_read_from_the_store_and_cannot_be_changed() {
    let Fixture { mut fs, _dir, .. } = fixture(Limits::default());
    assert_eq!(fs.prestat(IN), Ok("/in"));
    assert_eq!(fs.prestat(OUT), Ok("/out"));
    assert_eq!(fs.prestat(5), Err(Errno::Badf));
    assert_eq!(names(&fs, IN), [".", "..", ".params.json", "data"]);
    let fd = fs.open(IN, "data", reading()).unwrap();
    assert_eq!(read_all(&mut fs, fd), b"stored input");
    assert_eq!(fs.filestat(fd).unwrap().size, 12);
    assert_eq!(fs.seek(fd, -5, Whence::End), Ok(7));
    assert_eq!(read_all(&mut fs, fd), b"input");
    let mut head = [0u8; 6];
    assert_eq!(fs.read(fd, &mut head, Some(0)), Ok(6));
    assert_eq!(&head, b"stored");
    assert_eq!(fs.write(fd, b"x", None), Err(Errno::Badf));
    let params = fs.open(IN, "./.params.json", reading()).unwrap();
    assert_eq!(read_all(&mut fs, params), b"{}");
    // Nothing in /in can be written, made, removed or renamed.
    assert_eq!(fs.open(IN, "data", OpenFlags { write: true, ..reading() }), Err(Errno::Perm));
    assert_eq!(fs.open(IN, "new", creating()), Err(Errno::Perm));
    assert_eq!(fs.unlink_file(IN, "data"), Err(Errno::Perm));
    assert_eq!(fs.create_dir(IN, "d"), Err(Errno::Perm));
    assert_eq!(fs.rename(IN, "data", IN, "moved"), Err(Errno::Perm));
    assert_eq!(fs.rename(IN, "data", OUT, "moved"), Err(Errno::Xdev));
    assert_eq!(fs.link(IN, "data", OUT, "linked"), Err(Errno::Xdev));
    assert_eq!(fs.set_times(fd, SetTime::Now, SetTime::Now), Err(Errno::Perm));
    assert_eq!(fs.open(IN, "data/", reading()), Err(Errno::Notdir));
    assert_eq!(fs.path_filestat(IN, "data", true).unwrap().size, 12);
}

#[test]
fn lookups_stay_beneath_the_directory_they_start_from() {
    let Fixture { mut fs, _dir, .. } = fixture(Limits::default());
    fs.create_dir(OUT, "a").unwrap();
    let a = fs.open(OUT, "a", OpenFlags { directory: true, ..reading() }).unwrap();
    for path in ["..", "../x", "/etc/passwd", "b/../../x"] {
        assert!(matches!(fs.open(a, path, reading()), Err(Errno::Perm | Errno::Noent)), "{path}");
    }
    assert_eq!(fs.open(IN, "../out", reading()), Err(Errno::Perm));
    assert_eq!(fs.open(OUT, "a/..", reading()).map(|fd| fs.filestat(fd).unwrap().filetype), Ok(filetype::DIRECTORY));
    // A link is followed only within the lookup's start.
    fs.symlink("../../../etc/passwd", OUT, "escape").unwrap();
    assert_eq!(fs.open(OUT, "escape", reading()), Err(Errno::Perm));
    assert_eq!(fs.read_link(OUT, "escape").as_deref(), Ok("../../../etc/passwd"));
    fs.symlink("a", OUT, "to-a").unwrap();
    let file = fs.open(OUT, "to-a/f", creating()).unwrap();
    fs.write(file, b"through a link", None).unwrap();
    let again = fs.open(OUT, "a/f", reading()).unwrap();
    assert_eq!(read_all(&mut fs, again), b"through a link");
    assert_eq!(fs.open(OUT, "to-a", OpenFlags { follow: false, ..reading() }), Err(Errno::Loop));
    fs.symlink("loop", OUT, "loop").unwrap();
    assert_eq!(fs.open(OUT, "loop", reading()), Err(Errno::Loop));
    assert_eq!(fs.path_filestat(OUT, "to-a", false).unwrap().filetype, filetype::SYMBOLIC_LINK);
    assert_eq!(fs.path_filestat(OUT, "to-a", true).unwrap().filetype, filetype::DIRECTORY);
}

#[test]
fn out_behaves_as_a_directory_tree() {
    let Fixture { mut fs, _dir, .. } = fixture(Limits::default());
    fs.create_dir(OUT, "d").unwrap();
    assert_eq!(fs.create_dir(OUT, "d"), Err(Errno::Exist));
    let fd = fs.open(OUT, "d/f.txt", creating()).unwrap();
    assert_eq!(fs.write(fd, b"hello", None), Ok(5));
    assert_eq!(fs.write(fd, b"!", Some(9)), Ok(1));
    assert_eq!(fs.filestat(fd).unwrap().size, 10);
    assert_eq!(fs.seek(fd, 0, Whence::Start), Ok(0));
    assert_eq!(read_all(&mut fs, fd), b"hello\0\0\0\0!");
    fs.set_size(fd, 3).unwrap();
    assert_eq!(fs.read(fd, &mut [0; 8], Some(0)), Ok(3));
    assert_eq!(fs.open(OUT, "d/f.txt", OpenFlags { exclusive: true, ..creating() }), Err(Errno::Exist));
    let append = fs.open(OUT, "d/f.txt", OpenFlags { write: true, append: true, ..OpenFlags::default() }).unwrap();
    fs.write(append, b"-end", None).unwrap();
    assert!(fs.fdstat(append).unwrap().append);
    assert_eq!(fs.read(fd, &mut [0; 16], Some(0)), Ok(7));
    // Directories: listing, removal, renames.
    assert_eq!(names(&fs, OUT), [".", "..", "d"]);
    let d = fs.open(OUT, "d", reading()).unwrap();
    assert_eq!(fs.read_dir(d, 2, usize::MAX).unwrap()[0].name, "f.txt");
    assert_eq!(fs.read_dir(d, 3, usize::MAX).unwrap(), []);
    // A turn returns what fills its buffer: the entry that passes it, no more.
    assert_eq!(fs.read_dir(d, 0, 1).unwrap().len(), 1);
    assert_eq!(fs.read_dir(d, 1, super::DIRENT_BYTES + 3).unwrap().len(), 2);
    assert_eq!(fs.remove_dir(OUT, "d"), Err(Errno::Notempty));
    assert_eq!(fs.unlink_file(OUT, "d"), Err(Errno::Isdir));
    assert_eq!(fs.open(OUT, "d", creating()), Err(Errno::Isdir));
    fs.rename(OUT, "d/f.txt", OUT, "top").unwrap();
    assert_eq!(fs.rename(OUT, "d", OUT, "d/inside"), Err(Errno::Inval));
    assert_eq!(fs.rename(OUT, "top", OUT, "d"), Err(Errno::Isdir));
    fs.remove_dir(OUT, "d").unwrap();
    assert_eq!(fs.remove_dir(OUT, "top"), Err(Errno::Notdir));
    assert_eq!(fs.open(OUT, "top/", reading()), Err(Errno::Notdir));
    assert_eq!(fs.link(OUT, "top", OUT, "hard"), Err(Errno::Notsup));
    assert_eq!(names(&fs, OUT), [".", "..", "top"]);
    // A file unlinked while open stays readable through its descriptor.
    fs.unlink_file(OUT, "top").unwrap();
    assert_eq!(fs.read(fd, &mut [0; 16], Some(0)), Ok(7));
    assert_eq!(fs.open(OUT, "top", reading()), Err(Errno::Noent));
    assert_eq!(fs.close(fd), Ok(()));
    assert_eq!(fs.close(fd), Err(Errno::Badf));
}

#[test]
fn outputs_become_objects_without_a_copy() {
    let Fixture { mut fs, store, _dir } = fixture(Limits::default());
    let fd = fs.open(OUT, "result", creating()).unwrap();
    fs.write(fd, b"the result", None).unwrap();
    fs.open(OUT, "empty", creating()).unwrap();
    fs.create_dir(OUT, "dir").unwrap();
    fs.symlink("result", OUT, "link").unwrap();
    let Some(Produced::File(file, len)) = fs.take_output("result") else { panic!("a file") };
    let digest = store.adopt_unnamed(file.as_ref(), len, &|| "result".into()).unwrap();
    assert_eq!(store.read_file(&digest).unwrap(), b"the result");
    // Stored again (the same bytes): the object is there already.
    let again = fs.open(OUT, "again", creating()).unwrap();
    fs.write(again, b"the result", None).unwrap();
    let Some(Produced::File(file, len)) = fs.take_output("again") else { panic!("a file") };
    assert_eq!(store.adopt_unnamed(file.as_ref(), len, &|| "again".into()).unwrap(), digest);
    let Some(Produced::File(None, 0)) = fs.take_output("empty") else { panic!("an empty file holds no backing file") };
    assert_eq!(store.adopt_unnamed(None, 0, &|| "empty".into()).unwrap(), crate::Digest::of(b""));
    assert!(matches!(fs.take_output("dir"), Some(Produced::Dir)));
    assert!(matches!(fs.take_output("link"), Some(Produced::Symlink)));
    assert!(fs.take_output("missing").is_none());
}

#[test]
fn the_quotas_are_counted_as_the_guest_writes() {
    let limits = Limits { output: 10, files: 3, ..Limits::default() };
    let Fixture { mut fs, _dir, .. } = fixture(limits);
    let fd = fs.open(OUT, "a", creating()).unwrap();
    fs.write(fd, b"12345678", None).unwrap();
    // Rewriting bytes, and shrinking, free no more than they took.
    fs.write(fd, b"abcd", Some(0)).unwrap();
    fs.set_size(fd, 2).unwrap();
    fs.seek(fd, 2, Whence::Start).unwrap();
    fs.write(fd, b"12345678", None).unwrap();
    assert!(fs.breach().is_none());
    // An unlinked file counts no more.
    fs.unlink_file(OUT, "a").unwrap();
    let fd = fs.open(OUT, "b", creating()).unwrap();
    fs.write(fd, b"0123456789", None).unwrap();
    assert!(fs.breach().is_none());
    assert_eq!(fs.write(fd, b"!", None), Err(Errno::Nospc));
    assert_eq!(fs.breach(), Some(StepErrorKind::OutputLimit { limit: 10 }));

    let Fixture { mut fs, _dir, .. } = fixture(limits);
    fs.create_dir(OUT, "d").unwrap();
    fs.open(OUT, "d/1", creating()).unwrap();
    fs.remove_dir(OUT, "d").unwrap_err();
    fs.unlink_file(OUT, "d/1").unwrap();
    fs.open(OUT, "d/2", creating()).unwrap();
    fs.symlink("2", OUT, "d/3").unwrap();
    assert!(fs.breach().is_none());
    assert_eq!(fs.create_dir(OUT, "e"), Err(Errno::Nospc));
    assert_eq!(fs.breach(), Some(StepErrorKind::FilesLimit { limit: 3 }));
}

#[test]
fn descriptors_are_numbered_from_the_lowest_free_one_and_renumbered() {
    let Fixture { mut fs, _dir, .. } = fixture(Limits::default());
    let first = fs.open(IN, "data", reading()).unwrap();
    let second = fs.open(IN, ".params.json", reading()).unwrap();
    assert_eq!((first, second), (5, 6));
    fs.close(first).unwrap();
    assert_eq!(fs.open(IN, "data", reading()), Ok(5));
    fs.renumber(second, 5).unwrap();
    assert_eq!(read_all(&mut fs, 5), b"{}");
    assert_eq!(fs.check_open(6), Err(Errno::Badf));
    assert_eq!(fs.renumber(5, 9), Err(Errno::Badf));
    // stdout and stderr are the logs; stdin is empty.
    assert_eq!(fs.write(1, b"out", None), Ok(3));
    assert_eq!(fs.read(0, &mut [0; 4], None), Ok(0));
    assert_eq!(fs.seek(1, 0, Whence::Start), Err(Errno::Spipe));
}
