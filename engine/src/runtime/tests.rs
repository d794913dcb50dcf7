//! Modules known by the stamps of their files.

use std::path::Path;

use super::{Flavor, Runtime};
use crate::file_stamp::FileStamp;
use crate::host_files::HostFiles;
use crate::store::Store;
use crate::{Digest, Limits};

/// A WASI command that does nothing (an empty `_start`), with a custom
/// section holding `tag`: modules of one size whose bytes differ.
fn module(tag: u8) -> Vec<u8> {
    let mut bytes = b"\0asm\x01\0\0\0".to_vec();
    bytes.extend([1, 4, 1, 0x60, 0, 0]); // one type: [] -> []
    bytes.extend([3, 2, 1, 0]); // one function of that type
    bytes.extend([7, 10, 1, 6]); // exported as `_start`
    bytes.extend(b"_start");
    bytes.extend([0, 0]);
    bytes.extend([10, 4, 1, 2, 0, 0x0b]); // its body: no locals, `end`
    bytes.extend([0, 3, 1, b'v', tag]); // custom section `v`
    bytes
}

fn stamp_of(path: &Path) -> FileStamp {
    FileStamp::of(&std::fs::metadata(path).unwrap())
}

#[test]
fn a_module_file_is_known_by_its_recorded_stamp_and_its_bytes_checked_when_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("ws")).unwrap();
    let (first, second) = (dir.path().join("first.wasm"), dir.path().join("second.wasm"));
    std::fs::write(&first, module(1)).unwrap();
    std::fs::write(&second, module(2)).unwrap();
    // Past the window in which a stamp is too recent to be recorded.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let flavor = Flavor::of(&Limits::default());
    let process = || Runtime::new(&dir.path().join("compiled"), &[7; 32], 1).unwrap();

    let hashed = process().prepare(&first, flavor, &HostFiles::Ambient, &store, true).unwrap();
    assert_eq!(hashed.digest, Digest::of(&module(1)));
    assert_eq!(store.recorded_digest(&first, &stamp_of(&first)), Some(hashed.digest));
    process().prepare(&second, flavor, &HostFiles::Ambient, &store, false).unwrap();
    assert_eq!(store.recorded_digest(&second, &stamp_of(&second)), None, "a read-only run records nothing");

    // A later process takes the digest from the record, and reads the
    // bytes only to link them, checking them against it.
    let later = process();
    let known = later.prepare(&first, flavor, &HostFiles::Ambient, &store, true).unwrap();
    assert_eq!(known.digest, hashed.digest);
    assert!(later.linked(&known).is_ok());

    // A record that does not describe the bytes (as if the file had changed
    // under an unchanged stamp) is caught when they are read.
    store.record_digest(&second, stamp_of(&second), Digest::of(b"other bytes")).unwrap();
    let err = process().prepare(&second, flavor, &HostFiles::Ambient, &store, true).err().unwrap();
    assert!(err.contains("second.wasm changed after the run was planned"), "{err}");
    std::fs::write(&second, module(3)).unwrap();
    assert_eq!(
        process().prepare(&second, flavor, &HostFiles::Ambient, &store, true).unwrap().digest,
        Digest::of(&module(3)),
        "a new stamp is hashed again"
    );
}
