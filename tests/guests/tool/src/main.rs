//! A test guest whose behaviour is chosen by its first argument. Each mode
//! exercises one part of the step contract or one way to fail.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[path = "../../kernel.rs"]
mod kernel;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("");
    let rest = &args[args.len().min(2)..];
    match mode {
        "upper" => upper(rest),
        "concat" => concat(),
        "copy" => copy(&rest[0], &rest[1]),
        "params" => write("result", &fs::read("/in/.params.json").expect("params file")),
        "args" => write("result", rest.join("\n").as_bytes()),
        "env" => env(),
        "probe-read" => probe_read(&rest[0]),
        "probe-write" => probe_write(&rest[0]),
        "probe-link" => probe_link(&rest[0]),
        "list-in" => list_in(),
        "tree" => tree(&rest[0]),
        "fs-tour" => fs_tour(rest.first()),
        "stat-in" => stat_in(rest.first()),
        "symlink" => symlink(),
        "nothing" => {}
        "fail" => fail(rest[0].parse().expect("exit code")),
        "shout" => shout(&rest[0]),
        "panic" => panic!("the guest panicked on purpose"),
        "spin" => spin(),
        "alloc" => alloc(),
        "nap" => nap(rest[0].parse().expect("milliseconds")),
        "flood" => flood(rest[0].parse().expect("mebibytes")),
        "chatter" => chatter(rest[0].parse().expect("kibibytes")),
        "recurse" => println!("depth {}", recurse(0)),
        "fill" => fill(),
        "files" => files(rest[0].parse().expect("count")),
        "odd-names" => odd_names(),
        "deep" => deep(rest[0].parse().expect("depth"), rest[1].parse().expect("files per level")),
        "entropy" => entropy(),
        "residue" => residue(),
        "kernel" => write("result", kernel::train(rest[0].parse().expect("epochs")).to_string().as_bytes()),
        other => {
            eprintln!("unknown mode `{other}`");
            std::process::exit(64);
        }
    }
}

fn write(output: &str, bytes: &[u8]) {
    fs::write(Path::new("/out").join(output), bytes).expect("write output");
}

/// Upper-cases /in/text and appends the `word` parameter and argv.
fn upper(rest: &[String]) {
    let text = fs::read_to_string("/in/text").expect("read /in/text");
    let mut out = text.to_uppercase();
    for arg in rest {
        out.push_str(&format!("[{arg}]"));
    }
    write("result", out.as_bytes());
}

/// Concatenates every input file, in name order.
fn concat() {
    let mut names: Vec<String> = fs::read_dir("/in")
        .expect("list /in")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    let mut out = Vec::new();
    for name in names {
        out.extend(fs::read(Path::new("/in").join(&name)).expect("read input"));
    }
    write("result", &out);
}

fn copy(from: &str, to: &str) {
    let bytes = fs::read(Path::new("/in").join(from)).expect("read input");
    write(to, &bytes);
}

fn env() {
    let vars: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
    write("result", vars.join("\n").as_bytes());
}

/// Tries to read a path; records `ok:<bytes>` or `err:<message>`.
fn probe_read(path: &str) {
    let outcome = match fs::read(path) {
        Ok(bytes) => format!("ok:{}", bytes.len()),
        Err(err) => format!("err:{err}"),
    };
    write("result", outcome.as_bytes());
}

/// Tries to overwrite, append to and delete a path; records each outcome.
fn probe_write(path: &str) {
    let mut report = Vec::new();
    report.push(match fs::write(path, b"overwritten") {
        Ok(()) => "write:ok".to_owned(),
        Err(err) => format!("write:err:{err}"),
    });
    report.push(match fs::OpenOptions::new().append(true).open(path).and_then(|mut f| f.write_all(b"more")) {
        Ok(()) => "append:ok".to_owned(),
        Err(err) => format!("append:err:{err}"),
    });
    report.push(match fs::remove_file(path) {
        Ok(()) => "remove:ok".to_owned(),
        Err(err) => format!("remove:err:{err}"),
    });
    write("result", report.join("\n").as_bytes());
}

/// Lists /in recursively as `path kind` lines.
/// Lists everything the step can see, `/in` and (before it writes its
/// result) `/out`.
fn list_in() {
    let mut lines = Vec::new();
    walk(Path::new("/in"), &mut lines);
    walk(Path::new("/out"), &mut lines);
    lines.sort();
    write("result", lines.join("\n").as_bytes());
}

fn walk(dir: &Path, lines: &mut Vec<String>) {
    for entry in fs::read_dir(dir).expect("list") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            lines.push(format!("{} dir", path.display()));
            walk(&path, lines);
        } else {
            let len = fs::metadata(&path).expect("stat").len();
            lines.push(format!("{} file {len}", path.display()));
        }
    }
}

/// Writes a directory output `/out/<name>` with a nested file.
fn tree(name: &str) {
    let root = Path::new("/out").join(name);
    fs::create_dir_all(root.join("sub")).expect("mkdir");
    fs::write(root.join("a.txt"), b"alpha").expect("write");
    fs::write(root.join("sub/b.txt"), b"beta").expect("write");
}

/// Runs through the file-system calls a step makes (in `/out` and on
/// `/in/text`), recording each outcome, or the kind of error, as a line of
/// `/out/result`: the same guest on either kind of `/in` and `/out` must
/// record the same lines. Makes directory `/out/<dir>` if one is named.
fn fs_tour(dir: Option<&String>) {
    use std::io::{Read, Seek, SeekFrom};
    if let Some(dir) = dir {
        fs::create_dir(Path::new("/out").join(dir)).expect("mkdir");
    }
    let mut lines: Vec<String> = Vec::new();
    let mut note = |what: &str, outcome: std::io::Result<String>| {
        lines.push(match outcome {
            Ok(value) => format!("{what}: {value}"),
            Err(err) => format!("{what}: error {:?}", err.kind()),
        });
    };
    let listing = |dir: &str| -> std::io::Result<String> {
        let mut names = fs::read_dir(dir)?.map(|entry| Ok(entry?.file_name().into_string().unwrap())).collect::<std::io::Result<Vec<_>>>()?;
        names.sort();
        Ok(names.join(","))
    };
    note("mkdir -p", fs::create_dir_all("/out/a/b/c").map(|()| String::new()));
    note("mkdir again", fs::create_dir("/out/a/b").map(|()| String::new()));
    note("write", fs::write("/out/a/b/f", "hello").map(|()| String::new()));
    note(
        "append",
        fs::OpenOptions::new().append(true).open("/out/a/b/f").and_then(|mut f| f.write_all(b" world")).map(|()| String::new()),
    );
    note("read", fs::read_to_string("/out/a/b/f"));
    note("stat", fs::metadata("/out/a/b/f").map(|m| format!("file {} len {}", m.is_file(), m.len())));
    note("stat dir", fs::metadata("/out/a/b").map(|m| format!("dir {}", m.is_dir())));
    note(
        "overwrite in place",
        fs::OpenOptions::new().read(true).write(true).open("/out/a/b/f").and_then(|mut f| {
            f.seek(SeekFrom::Start(2))?;
            f.write_all(b"XY")?;
            f.seek(SeekFrom::End(-3))?;
            let mut tail = String::new();
            f.read_to_string(&mut tail)?;
            f.set_len(4)?;
            let position = f.stream_position()?;
            Ok(format!("tail {tail} position {position}"))
        }),
    );
    note("after set_len", fs::read_to_string("/out/a/b/f"));
    note("write past the end", fs::OpenOptions::new().write(true).open("/out/a/b/f").and_then(|mut f| {
        f.seek(SeekFrom::Start(6))?;
        f.write_all(b"!")?;
        Ok(format!("{:?}", fs::read("/out/a/b/f")?))
    }));
    note("rename", fs::rename("/out/a/b/f", "/out/a/g").map(|()| String::new()));
    note("list", listing("/out/a"));
    note("remove non-empty dir", fs::remove_dir("/out/a").map(|()| String::new()));
    note("remove a dir as a file", fs::remove_file("/out/a/b").map(|()| String::new()));
    note("remove a file as a dir", fs::remove_dir("/out/a/g").map(|()| String::new()));
    note("rename a dir over a non-empty one", fs::rename("/out/a/b/c", "/out/a").map(|()| String::new()));
    note("remove_dir_all", fs::remove_dir_all("/out/a/b").map(|()| String::new()));
    note("list again", listing("/out/a"));
    note("open missing", fs::read("/out/missing").map(|b| b.len().to_string()));
    note("create_new existing", fs::OpenOptions::new().write(true).create_new(true).open("/out/a/g").map(|_| String::new()));
    note("truncate", fs::File::create("/out/a/g").and_then(|f| f.metadata()).map(|m| m.len().to_string()));
    // SAFETY: both arguments are NUL-terminated C strings that outlive the call.
    let linked = unsafe { libc::symlink(c"g".as_ptr(), c"/out/a/link".as_ptr()) };
    note("symlink", if linked == 0 { Ok(String::new()) } else { Err(std::io::Error::last_os_error()) });
    note("read_link", fs::read_link("/out/a/link").map(|p| p.display().to_string()));
    note("lstat link", fs::symlink_metadata("/out/a/link").map(|m| format!("link {}", m.file_type().is_symlink())));
    note("read through link", fs::read("/out/a/link").map(|b| b.len().to_string()));
    note("input", fs::read_to_string("/in/text"));
    note("input stat", fs::metadata("/in/text").map(|m| format!("file {} len {}", m.is_file(), m.len())));
    note("input list", listing("/in"));
    note("write an input", fs::write("/in/text", "x").map(|()| String::new()));
    note("remove an input", fs::remove_file("/in/text").map(|()| String::new()));
    note("make a dir in /in", fs::create_dir("/in/d").map(|()| String::new()));
    note("input dir as a file", fs::read("/in").map(|b| b.len().to_string()));
    note("file as a dir", fs::read_dir("/in/text").map(|_| String::new()));
    note("write a file opened to read", fs::File::open("/out/a/g").and_then(|mut f| f.write_all(b"x")).map(|()| String::new()));
    note("write an input opened to read", fs::File::open("/in/text").and_then(|mut f| f.write_all(b"x")).map(|()| String::new()));
    note("pread a directory", fs::File::open("/out/a").and_then(|dir| {
        use std::os::fd::AsRawFd;
        let mut buf = [0u8; 4];
        // SAFETY: `buf` is valid for its length; the descriptor is open for the call.
        let read = unsafe { libc::pread(dir.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if read < 0 { Err(std::io::Error::last_os_error()) } else { Ok(read.to_string()) }
    }));
    note("dot-dot out of /out", fs::read("/out/a/../../in/text").map(|b| b.len().to_string()));
    write("result", lines.join("\n").as_bytes());
}

/// Writes the device and inode numbers `/in` has (which file system the
/// step was given), and makes directory `/out/<dir>` if one is named.
fn stat_in(dir: Option<&String>) {
    if let Some(dir) = dir {
        fs::create_dir(Path::new("/out").join(dir)).expect("mkdir");
    }
    // SAFETY: `stat` is plain data, filled by the call; the path is NUL-terminated.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::stat(c"/in".as_ptr(), &mut stat) }, 0, "stat /in");
    write("result", format!("dev {:#x} ino {}", stat.st_dev, stat.st_ino).as_bytes());
}

/// Writes an output that is a symbolic link: pointing out of the sandbox if
/// the runtime lets the guest create such a link, else to a sibling file.
fn symlink() {
    fs::write("/out/target", b"inside").expect("write");
    for target in [c"../../../../etc/passwd", c"target"] {
        // SAFETY: both arguments are NUL-terminated C strings that outlive the call.
        if unsafe { libc::symlink(target.as_ptr(), c"/out/result".as_ptr()) } == 0 {
            return;
        }
    }
    panic!("no symlink could be created: {}", std::io::Error::last_os_error());
}

fn fail(code: i32) {
    eprintln!("something went wrong: failing with status {code}");
    std::process::exit(code);
}

/// Writes `text` to stderr as it is (control characters included), then fails.
fn shout(text: &str) {
    eprintln!("{text}");
    std::process::exit(1);
}

fn spin() {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

fn alloc() {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![1u8; 1 << 20]);
        std::hint::black_box(&hoard);
    }
}

/// Sleeps, recording wall-clock start and end (ms since the epoch).
fn nap(millis: u64) {
    let now = || SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis();
    let start = now();
    std::thread::sleep(Duration::from_millis(millis));
    let end = now();
    write("result", format!("{start} {end}").as_bytes());
}

/// Writes `mebibytes` MiB of text to stderr, then fails.
fn flood(mebibytes: usize) {
    let line = format!("{}\n", "x".repeat(1023));
    let mut stderr = std::io::stderr().lock();
    for _ in 0..mebibytes * 1024 {
        stderr.write_all(line.as_bytes()).expect("stderr");
    }
    std::process::exit(3);
}

/// Writes `kibibytes` KiB to stdout, then succeeds.
fn chatter(kibibytes: usize) {
    let line = format!("{}\n", "y".repeat(1023));
    let mut stdout = std::io::stdout().lock();
    for _ in 0..kibibytes {
        stdout.write_all(line.as_bytes()).expect("stdout");
    }
    write("result", b"done");
}

/// Recurses without end on the WebAssembly stack (no locals in linear memory).
fn recurse(depth: u64) -> u64 {
    if depth == u64::MAX { depth } else { recurse(std::hint::black_box(depth + 1)).wrapping_add(depth) }
}

/// Appends to /out/result without end.
fn fill() {
    let chunk = vec![7u8; 1 << 20];
    let mut file = fs::File::create("/out/result").expect("create");
    loop {
        file.write_all(&chunk).expect("write");
    }
}

/// Creates `count` files in /out/many, then the result.
fn files(count: u64) {
    fs::create_dir("/out/many").expect("mkdir");
    for i in 0..count {
        fs::write(format!("/out/many/{i}"), b"").expect("create");
    }
    write("result", b"done");
}

/// File names that tools often get wrong, in /out/odd: each file holds its name.
const ODD_NAMES: [&str; 8] = ["line\nbreak", "-rf", " lead", "trail ", "...", "ünïcødé", "tab\there", "\u{1b}[31m"];

fn odd_names() {
    fs::create_dir("/out/odd").expect("mkdir");
    let long = "n".repeat(255);
    for name in ODD_NAMES.iter().copied().chain([long.as_str()]) {
        fs::write(Path::new("/out/odd").join(name), name).expect("create");
    }
}

/// Nests `depth` directories with 250-character names in /out/deep and
/// writes `files` files of 2 KiB in the deepest. Each level is reached from
/// the one above through its own descriptor, so no path is ever longer than
/// one name, while the host path of the deepest is far past `PATH_MAX`.
fn deep(depth: usize, files: usize) {
    use std::ffi::CString;
    fs::create_dir("/out/deep").expect("mkdir");
    let open_dir = |parent: libc::c_int, name: &CString| {
        // SAFETY: `name` is a NUL-terminated C string that outlives the call.
        let fd = unsafe { libc::openat(parent, name.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY) };
        assert!(fd >= 0, "cannot open a level");
        fd
    };
    let mut dir = open_dir(libc::AT_FDCWD, &CString::new("/out/deep").expect("name"));
    for level in 0..depth {
        let name = CString::new(char::from(b'a' + (level % 26) as u8).to_string().repeat(250)).expect("name");
        // SAFETY: `dir` is an open directory descriptor; `name` is NUL-terminated.
        assert_eq!(unsafe { libc::mkdirat(dir, name.as_ptr(), 0o755) }, 0, "mkdir at level {level}");
        dir = open_dir(dir, &name);
    }
    for i in 0..files {
        let name = CString::new(format!("f{i}")).expect("name");
        let flags = libc::O_WRONLY | libc::O_CREAT;
        let content = format!("{i:>2048}");
        // SAFETY: as above; the buffer is valid for its length.
        unsafe {
            let fd = libc::openat(dir, name.as_ptr(), flags, 0o644);
            assert!(fd >= 0, "create f{i}");
            assert_eq!(libc::write(fd, content.as_ptr().cast(), 2048), 2048);
            libc::close(fd);
        }
    }
}

/// Counts the bytes that are not zero in what must start zeroed (a static
/// buffer of the initial memory and pages grown now), then marks all of
/// them: an execution that saw another's marks would report them.
fn residue() {
    use std::sync::atomic::{AtomicU8, Ordering};
    // 2.5 MiB: more than the engine resets in place (1 MiB), so that both
    // ways of resetting a slot are checked.
    const PAGES: usize = 40;
    const PAGE: usize = 1 << 16;
    static MARKED: [AtomicU8; PAGE] = [const { AtomicU8::new(0) }; PAGE];
    let dirty_static = MARKED.iter().filter(|byte| byte.load(Ordering::Relaxed) != 0).count();
    MARKED.iter().for_each(|byte| byte.store(0xab, Ordering::Relaxed));
    let old_pages = core::arch::wasm32::memory_grow(0, PAGES);
    assert_ne!(old_pages, usize::MAX, "memory.grow failed");
    // SAFETY: the pages just grown belong to no allocation.
    let grown = unsafe { std::slice::from_raw_parts_mut((old_pages * PAGE) as *mut u8, PAGES * PAGE) };
    let dirty_grown = grown.iter().filter(|byte| **byte != 0).count();
    grown.fill(0xab);
    std::hint::black_box(grown);
    write("result", format!("static {dirty_static} grown {dirty_grown}").as_bytes());
}

/// Writes what the guest sees of time and randomness.
fn entropy() {
    use std::hash::BuildHasher;
    let wall = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_nanos();
    let started = std::time::Instant::now();
    let random = std::collections::hash_map::RandomState::new().hash_one(0u64);
    let elapsed = started.elapsed().as_nanos();
    write("result", format!("{wall} {elapsed} {random}").as_bytes());
}

/// Tries to hard-link `path` into /out and write through the link.
fn probe_link(path: &str) {
    let outcome = match fs::hard_link(path, "/out/linked") {
        Ok(()) => match fs::OpenOptions::new().append(true).open("/out/linked") {
            Ok(mut file) => format!("ok:write:{:?}", file.write_all(b"tampered")),
            Err(err) => format!("ok:open:err:{err}"),
        },
        Err(err) => format!("err:{err}"),
    };
    write("result", outcome.as_bytes());
}
