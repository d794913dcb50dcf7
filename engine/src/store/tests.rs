use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use cap_std::ambient_authority;
use cap_std::fs::Dir;

use super::listing::{Listed, listable};
use super::*;

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("ws")).unwrap();
    (dir, store)
}

/// A scratch directory's `out/`: its handle and host path.
fn scratch(store: &Store) -> (Dir, PathBuf) {
    let scratch = store.take_scratch().unwrap();
    (scratch.out_dir, scratch.path.join("out"))
}

#[test]
fn bytes_round_trip_and_corruption_is_detected() {
    let (_dir, store) = store();
    let digest = store.put_bytes(b"hello").unwrap();
    assert_eq!(digest, Digest::of(b"hello"));
    assert_eq!(store.read_file(&digest).unwrap(), b"hello");
    assert_eq!(store.kind_of(&digest), Some(OutputKind::File));

    let hex = digest.hex();
    let path = store.root().join("objects").join(&hex[..2]).join(&hex[2..]);
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    assert!(perms.readonly(), "stored objects are read-only");
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&path, perms).unwrap();
    std::fs::write(&path, b"jello").unwrap();
    assert!(matches!(store.read_file(&digest), Err(Error::Corrupt { .. })));
}

#[test]
fn missing_artifact_is_not_found() {
    let (_dir, store) = store();
    let digest = Digest::of(b"never stored");
    assert!(matches!(store.read_file(&digest), Err(Error::ArtifactNotFound { .. })));
    assert_eq!(store.kind_of(&digest), None);
}

#[test]
fn directory_digest_covers_names_and_contents_and_is_canonical() {
    let (dir, store) = store();
    let make = |name: &str, files: &[(&str, &str)]| {
        let root = dir.path().join(name);
        for (path, contents) in files {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, contents).unwrap();
        }
        store.import(&root).unwrap()
    };
    let a = make("a", &[("x.txt", "1"), ("sub/y.txt", "2")]);
    let same = make("b", &[("sub/y.txt", "2"), ("x.txt", "1")]);
    let renamed = make("c", &[("x.txt", "1"), ("sub/z.txt", "2")]);
    let changed = make("d", &[("x.txt", "1"), ("sub/y.txt", "3")]);
    assert_eq!(a.kind, OutputKind::Dir);
    assert_eq!(a, same);
    assert_ne!(a.digest, renamed.digest);
    assert_ne!(a.digest, changed.digest);
    assert_eq!(store.kind_of(&a.digest), Some(OutputKind::Dir));

    let out = dir.path().join("exported");
    store.export(&a.digest, &out).unwrap();
    assert_eq!(std::fs::read_to_string(out.join("sub/y.txt")).unwrap(), "2");
    assert!(store.export(&a.digest, &out).is_err(), "a directory export never overwrites");
}

#[test]
fn import_reuses_the_digest_of_an_unchanged_file_and_notices_changes() {
    let (dir, store) = store();
    let input = dir.path().join("input.txt");
    std::fs::write(&input, "first").unwrap();
    // Age the file past the racy window so its stat record is kept.
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    std::fs::File::options().write(true).open(&input).unwrap().set_modified(old).unwrap();
    let first = store.import(&input).unwrap();
    assert_eq!(first.digest, Digest::of(b"first"));
    assert_eq!(store.import(&input).unwrap(), first);

    std::fs::write(&input, "second").unwrap();
    assert_eq!(store.import(&input).unwrap().digest, Digest::of(b"second"));
}

/// Lists `out` as a step's collection does, with `files` declared as file outputs.
fn listing<const N: usize>(out: &Dir, files: [&str; N]) -> OutListing {
    OutListing::read(out, listable(out).unwrap().as_fd(), files, &crate::Limits::default()).unwrap()
}

#[test]
fn ingest_moves_files_and_rejects_links_and_wrong_kinds() {
    let (_dir, store) = store();
    let (out, out_path) = scratch(&store);
    out.write("result", b"data").unwrap();
    out.create_dir_all("tree/sub").unwrap();
    out.write("tree/sub/f", b"nested").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", out_path.join("link")).unwrap();
    std::os::unix::fs::symlink("/etc", out_path.join("tree/escape")).unwrap();
    let mut listed = listing(&out, ["result", "link", "nope"]);

    let file = store.ingest_output(&out, "result", OutputKind::File, listed.take("result")).unwrap();
    assert_eq!(store.read_file(&file.artifact.digest).unwrap(), b"data");
    assert!(!out_path.join("result").exists(), "the output was moved, not copied");
    assert!(!file.left_in_out);

    let missing = store.ingest_output(&out, "nope", OutputKind::File, listed.take("nope")).unwrap_err();
    assert_eq!(missing, StepErrorKind::MissingOutput { output: "nope".into() });
    let link = store.ingest_output(&out, "link", OutputKind::File, listed.take("link")).unwrap_err();
    assert!(matches!(&link, StepErrorKind::BadOutput { reason, .. } if reason.contains("symbolic link")), "{link}");
    let tree = listed.take("tree");
    let nested = store.ingest_output(&out, "tree", OutputKind::Dir, tree).unwrap_err();
    assert!(matches!(&nested, StepErrorKind::BadOutput { reason, .. } if reason.contains("tree/escape")), "{nested}");
    let kind = store.ingest_output(&out, "tree", OutputKind::File, Some(Listed::Dir)).unwrap_err();
    assert!(
        matches!(&kind, StepErrorKind::BadOutput { reason, .. } if reason.contains("declared as a file")),
        "{kind}"
    );
}

#[test]
fn a_file_the_listing_did_not_open_is_opened_by_name_and_stored() {
    let (_dir, store) = store();
    let (out, out_path) = scratch(&store);
    out.write("result", b"undeclared when listed").unwrap();
    let mut listed = listing(&out, []);
    let found = listed.take("result");
    assert!(matches!(found, Some(Listed::File(None))), "listed without being opened");

    let file = store.ingest_output(&out, "result", OutputKind::File, found).unwrap();
    assert_eq!(store.read_file(&file.artifact.digest).unwrap(), b"undeclared when listed");
    assert!(!file.left_in_out && !out_path.join("result").exists(), "moved into the store");
}

#[test]
fn an_output_whose_bytes_the_store_holds_stays_in_out_for_the_cleanup() {
    let (_dir, store) = store();
    let (out, out_path) = scratch(&store);
    store.put_bytes(b"known").unwrap();
    out.write("again", b"known").unwrap();
    out.write("stray", b"not declared").unwrap();
    let mut listed = listing(&out, ["again"]);

    let again = store.ingest_output(&out, "again", OutputKind::File, listed.take("again")).unwrap();
    assert_eq!(again.artifact.digest, Digest::of(b"known"));
    assert!(again.left_in_out && out_path.join("again").exists());
    assert_eq!(listed.into_top_level(), [("stray".into(), false)], "what was not taken is left");
}

#[test]
fn the_listing_of_out_counts_every_entry_and_byte_against_the_quotas() {
    let (_dir, store) = store();
    let (out, _) = scratch(&store);
    out.write("declared", vec![0u8; 600]).unwrap();
    out.write("undeclared", vec![0u8; 300]).unwrap();
    out.create_dir_all("tree/sub").unwrap();
    out.write("tree/sub/deep", vec![0u8; 200]).unwrap();
    // 5 entries (3 at the top, `sub` and `deep` below) holding 1,100 bytes.
    let limits = |files, output| crate::Limits { files, output, ..crate::Limits::default() };
    // One listable handle for every listing, as a scratch directory keeps.
    let handle = listable(&out).unwrap();
    let read = |limits| OutListing::read(&out, handle.as_fd(), ["declared"], &limits);

    let within = read(limits(5, 1_100)).unwrap();
    let top: Vec<_> = within.into_top_level();
    assert_eq!(top, [("declared".into(), false), ("tree".into(), true), ("undeclared".into(), false)]);
    assert_eq!(read(limits(4, 1_100)).unwrap_err(), StepErrorKind::FilesLimit { limit: 4 });
    // The 200 bytes below the top level count too.
    assert_eq!(read(limits(5, 1_099)).unwrap_err(), StepErrorKind::OutputLimit { limit: 1_099 });
}

#[test]
fn materialize_links_files_and_rebuilds_directories() {
    let (dir, store) = store();
    let root = dir.path().join("data");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("sub/f"), "x").unwrap();
    let tree = store.import(&root).unwrap();
    let (dest, dest_path) = scratch(&store);
    store.materialize(&tree, &dest, Path::new("input")).unwrap();
    assert_eq!(std::fs::read_to_string(dest_path.join("input/sub/f")).unwrap(), "x");
    let _ = Dir::open_ambient_dir(&dest_path, ambient_authority()).unwrap();
}

#[test]
fn cache_entries_require_their_artifacts() {
    let (_dir, store) = store();
    let log = store.put_bytes(b"").unwrap();
    let output = store.put_bytes(b"out").unwrap();
    let key = Digest::of(b"key");
    let entry = CacheEntry {
        outputs: [("r".to_owned(), Artifact { kind: OutputKind::File, digest: output })].into(),
        stdout: log,
        stderr: log,
        metrics: [("loss".to_owned(), 0.25)].into(),
        run_id: "run".into(),
        created: Some(1.5e9),
        checked: std::collections::BTreeMap::new(),
    };
    assert_eq!(store.cache_get(&key), None);
    store.cache_put(&key, &entry).unwrap();
    assert_eq!(store.cache_get(&key), Some(entry));

    let hex = output.hex();
    std::fs::remove_file(store.root().join("objects").join(&hex[..2]).join(&hex[2..])).unwrap();
    assert_eq!(store.cache_get(&key), None, "an entry whose output is gone is a miss");
}

#[test]
fn a_new_entry_is_written_in_place_and_one_found_torn_counts_as_absent_and_is_replaced() {
    let (dir, store) = store();
    let log = store.put_bytes(b"").unwrap();
    let output = store.put_bytes(b"out").unwrap();
    let key = Digest::of(b"key");
    store.cache_put(&key, &entry_with(output, log)).unwrap();
    assert_eq!(store.cache_get(&key), Some(entry_with(output, log)));
    assert!(
        entries(&dir.path().join("ws/tmp")).is_empty(),
        "no temporary file: {:?}",
        entries(&dir.path().join("ws/tmp"))
    );

    // What a reader may meet while the entry is being written, or after a
    // crash in the middle of it: a prefix of its bytes.
    let hex = key.hex();
    let path = dir.path().join("ws/cache").join(&hex[..2]).join(&hex[2..]);
    let whole = std::fs::read(&path).unwrap();
    for len in [0, 1, whole.len() / 2, whole.len() - 1] {
        std::fs::write(&path, &whole[..len]).unwrap();
        assert_eq!(store.cache_get(&key), None, "a prefix of {len} bytes is no entry");
    }
    let second = store.put_bytes(b"second").unwrap();
    store.cache_put(&key, &entry_with(second, log)).unwrap();
    assert_eq!(store.cache_get(&key), Some(entry_with(second, log)), "the torn entry was replaced");
}

#[test]
fn a_reused_entry_is_intact_missing_or_corrupt() {
    let (_dir, store) = store();
    let log = store.put_bytes(b"").unwrap();
    let [kept, changed, lost] = [b"kept", b"edit", b"lost"].map(|bytes| store.put_bytes(bytes).unwrap());
    let entry_of = |output: Digest| entry_with(output, log);
    let object = |digest: Digest| object_path(&store, &digest);
    let keys = [kept, changed, lost].map(|output| {
        let key = Digest::of(output.hex().as_bytes());
        store.cache_put(&key, &entry_of(output)).unwrap();
        key
    });
    // Each lookup as the first of a run.
    let run = || checks(&store, true);
    assert_eq!(store.cache_get_intact(&keys[0], &mut run()), Ok(Some(entry_of(kept))));
    // Checked once: the next run trusts the bytes but still sees a removal.
    assert_eq!(store.cache_get_intact(&keys[0], &mut run()), Ok(Some(entry_of(kept))));
    std::fs::remove_file(object(kept)).unwrap();
    assert_eq!(store.cache_get_intact(&keys[0], &mut run()), Ok(None), "a checked artifact removed since is a miss");

    let path = object(changed);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&path, b"EDIT").unwrap();
    assert_eq!(store.cache_get_intact(&keys[1], &mut run()), Err(vec![changed]));
    assert!(!path.exists(), "the corrupt artifact is removed");
    assert_eq!(store.cache_get_intact(&keys[1], &mut run()), Ok(None), "and the entry is a miss from then on");

    std::fs::remove_file(object(lost)).unwrap();
    assert_eq!(store.cache_get_intact(&keys[2], &mut run()), Ok(None), "a missing artifact is a miss, not corruption");

    // A symbolic link where an object was is corrupt too, and removed.
    std::os::unix::fs::symlink("/etc/hostname", object(lost)).unwrap();
    assert_eq!(store.cache_get_intact(&keys[2], &mut run()), Err(vec![lost]));
    assert!(object(lost).symlink_metadata().is_err(), "the link is removed");
}

/// The path of file artifact `digest` in `store`.
fn object_path(store: &Store, digest: &Digest) -> PathBuf {
    let hex = digest.hex();
    store.root().join("objects").join(&hex[..2]).join(&hex[2..])
}

/// An entry whose single output `r` is `output`, with empty logs `log`.
fn entry_with(output: Digest, log: Digest) -> CacheEntry {
    CacheEntry {
        outputs: [("r".to_owned(), Artifact { kind: OutputKind::File, digest: output })].into(),
        stdout: log,
        stderr: log,
        metrics: std::collections::BTreeMap::new(),
        run_id: "run".into(),
        created: None,
        checked: std::collections::BTreeMap::new(),
    }
}

#[test]
fn a_run_looks_at_an_artifact_once() {
    let (_dir, store) = store();
    let log = store.put_bytes(b"").unwrap();
    let [first, second] = [b"first", b"other"].map(|bytes| store.put_bytes(bytes).unwrap());
    let keys = [first, second].map(|output| {
        let key = Digest::of(output.hex().as_bytes());
        store.cache_put(&key, &entry_with(output, log)).unwrap();
        key
    });
    let mut run = checks(&store, true);
    assert!(store.cache_get_intact(&keys[0], &mut run).unwrap().is_some());
    // Nothing removes what a run found while it holds the workspace (gc and
    // repair wait for it): the shared log is not looked at again.
    std::fs::remove_file(object_path(&store, &log)).unwrap();
    assert!(store.cache_get_intact(&keys[1], &mut run).unwrap().is_some());
    assert_eq!(store.cache_get_intact(&keys[1], &mut checks(&store, true)), Ok(None), "the next run looks");
}

#[test]
fn an_artifact_whose_stamp_is_unchanged_is_reused_without_being_read() {
    let (dir, store) = store();
    let log = store.put_bytes(b"").unwrap();
    let output = store.put_bytes(b"out").unwrap();
    let path = object_path(&store, &output);
    // Changed behind the store's back, then stamped as if an earlier
    // process had hashed it: the stamp is what is trusted.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&path, b"OUT").unwrap();
    let stamp = |path: &Path| crate::file_stamp::FileStamp::of(&std::fs::symlink_metadata(path).unwrap());
    let mut stamped = entry_with(output, log);
    stamped.checked = [(output, stamp(&path)), (log, stamp(&object_path(&store, &log)))].into();
    let (key, unstamped_key) = (Digest::of(b"stamped"), Digest::of(b"unstamped"));
    store.cache_put(&key, &stamped).unwrap();
    store.cache_put(&unstamped_key, &entry_with(output, log)).unwrap();

    let next_process = || Store::open(dir.path().join("ws")).unwrap();
    assert_eq!(
        next_process().cache_get_intact(&key, &mut checks(&store, false)),
        Ok(Some(stamped.clone())),
        "not read again"
    );
    // Without the stamp, or with another one, the bytes are hashed.
    assert_eq!(next_process().cache_get_intact(&unstamped_key, &mut checks(&store, false)), Err(vec![output]));
    assert!(!path.exists(), "the corrupt artifact is removed");
    assert_eq!(
        next_process().cache_get_intact(&key, &mut checks(&store, false)),
        Ok(None),
        "and the stamped entry is a miss"
    );
}

#[test]
fn a_reuse_records_the_stamps_of_what_it_hashed() {
    let (dir, store) = store();
    let log = store.put_bytes(b"").unwrap();
    let output = store.put_bytes(b"out").unwrap();
    let key = Digest::of(b"key");
    store.cache_put(&key, &entry_with(output, log)).unwrap();
    let next_process = || Store::open(dir.path().join("ws")).unwrap();
    assert!(
        next_process().cache_get_intact(&key, &mut checks(&store, true)).unwrap().unwrap().checked.is_empty(),
        "too new to stamp"
    );

    // Files older than the window in which a change could keep their stamp.
    std::thread::sleep(std::time::Duration::from_millis(2_100));
    assert!(next_process().cache_get_intact(&key, &mut checks(&store, false)).unwrap().is_some());
    assert!(store.cache_read(&key).unwrap().checked.is_empty(), "a read-only lookup writes nothing");
    assert!(next_process().cache_get_intact(&key, &mut checks(&store, true)).unwrap().is_some());
    let stamp = |digest: &Digest| {
        crate::file_stamp::FileStamp::of(&std::fs::symlink_metadata(object_path(&store, digest)).unwrap())
    };
    let recorded = store.cache_read(&key).unwrap().checked;
    assert_eq!(recorded, [(output, stamp(&output)), (log, stamp(&log))].into());
}

#[test]
fn abandoned_temporaries_of_dead_processes_are_swept_on_open() {
    let (dir, store) = store();
    let tmp = store.root().join("tmp");
    let dead = tmp.join("step-999999999-000000001-0");
    std::fs::create_dir_all(dead.join("out")).unwrap();
    let ours = tmp.join(store.temp_name("step"));
    std::fs::create_dir(&ours).unwrap();
    let foreign = tmp.join("notes.txt");
    std::fs::write(&foreign, "kept").unwrap();
    drop(store);
    let _store = Store::open(dir.path().join("ws")).unwrap();
    assert!(!dead.exists(), "a dead process's scratch is removed");
    assert!(ours.exists(), "a live process's scratch is kept");
    assert!(foreign.exists(), "names weir did not make are kept");
    assert_eq!(temp_owner("blob-42-000000007-3"), Some(42));
    assert_eq!(temp_owner("import-x-1-2"), None);
}

#[test]
fn verify_finds_and_repairs_corrupt_objects() {
    let (_dir, store) = store();
    let good = store.put_bytes(b"good").unwrap();
    let bad = store.put_bytes(b"bad").unwrap();
    let tree =
        store.put_tree(&Tree::new(vec![TreeEntry { name: "g".into(), kind: OutputKind::File, digest: good }])).unwrap();
    let hex = bad.hex();
    let path = store.root().join("objects").join(&hex[..2]).join(&hex[2..]);
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&path, perms).unwrap();
    std::fs::write(&path, b"tampered").unwrap();

    let report = store.verify(false).unwrap();
    assert_eq!(report.checked, 3);
    assert_eq!(report.corrupt, [bad]);
    assert!(path.exists(), "verify alone changes nothing");
    let repaired = store.verify(true).unwrap();
    assert_eq!(repaired.corrupt, [bad]);
    assert!(!path.exists());
    assert_eq!(store.kind_of(&tree), Some(OutputKind::Dir));
    assert!(store.verify(false).unwrap().corrupt.is_empty());
}

/// Waits (at most five seconds) until the janitor has pooled `n` directories.
fn wait_for_pool(store: &Store, n: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while store.inner.janitor.pooled() != n {
        assert!(std::time::Instant::now() < deadline, "the janitor never pooled {n} scratch directories");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

fn entries(path: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(path).unwrap().map(|entry| entry.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

#[test]
fn a_scratch_directory_whose_leftovers_are_known_is_emptied_and_reused() {
    let (_dir, store) = store();
    let scratch = store.take_scratch().unwrap();
    let path = scratch.path.clone();
    scratch.in_dir.write("data", b"input").unwrap();
    scratch.in_dir.create_dir_all("tree/sub").unwrap();
    scratch.in_dir.write("tree/sub/f", b"x").unwrap();
    scratch.out_dir.write("result", b"output").unwrap();
    scratch.out_dir.create_dir_all("extra/deeper").unwrap();
    scratch.root.write("stderr", b"a spilled log").unwrap();
    let leftovers = Leftovers {
        inputs: vec![("data".into(), OutputKind::File), ("tree".into(), OutputKind::Dir)],
        outputs: vec![("result".into(), false), ("extra".into(), true), ("moved-away".into(), false)],
        files: vec!["stderr".into()],
    };
    store.release_scratch(UsedScratch { scratch, leftovers: Some(leftovers) });
    wait_for_pool(&store, 1);

    let again = store.take_scratch().unwrap();
    assert_eq!(again.path, path, "the pooled directory is used again");
    assert_eq!(entries(&path), ["in", "out"]);
    assert!(entries(&path.join("in")).is_empty() && entries(&path.join("out")).is_empty());
}

#[test]
fn a_scratch_directory_of_unknown_contents_is_removed_and_the_pool_goes_with_the_store() {
    let (dir, store) = store();
    let failed = store.take_scratch().unwrap();
    let failed_path = failed.path.clone();
    failed.out_dir.write("partial", b"half").unwrap();
    store.release_scratch(UsedScratch { scratch: failed, leftovers: None });
    let emptied = store.take_scratch().unwrap();
    store.release_scratch(UsedScratch { scratch: emptied, leftovers: Some(Leftovers::default()) });
    wait_for_pool(&store, 1);
    assert!(!failed_path.exists(), "a failed execution's directory is never reused");

    // A leftover that cannot be removed as described (a directory named as
    // a file) keeps the directory out of the pool.
    let odd = store.take_scratch().unwrap();
    let odd_path = odd.path.clone();
    odd.out_dir.create_dir("looks-like-a-file").unwrap();
    let wrong = Leftovers { outputs: vec![("looks-like-a-file".into(), false)], ..Leftovers::default() };
    store.release_scratch(UsedScratch { scratch: odd, leftovers: Some(wrong) });
    drop(store);
    assert!(!odd_path.exists());
    assert!(entries(&dir.path().join("ws/tmp")).is_empty(), "closing the store removes the pooled directories");
}

#[test]
fn a_key_lock_holds_against_every_other_handle_until_its_holder_lets_go() {
    let (dir, store) = store();
    let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
    let held = store.try_lock_key(&a).unwrap().expect("a free key");
    assert!(store.try_lock_key(&a).unwrap().is_none(), "held, for this process's other threads too");
    let other = store.try_lock_key(&b).unwrap().expect("another key is another lock");
    let waited = std::thread::scope(|scope| {
        let waiter = scope.spawn(|| store.lock_key(&a).map(drop));
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!waiter.is_finished(), "a waiter waits while the key is held");
        drop(held);
        waiter.join().unwrap()
    });
    waited.unwrap();
    assert!(store.try_lock_key(&a).unwrap().is_some(), "free once its holder and the waiter let go");
    drop(other);
    assert_eq!(entries(&dir.path().join("ws/locks")), ["keys"], "every key's lock is in one file");
}

#[test]
fn a_released_key_lock_unlocks_its_byte_and_its_description_serves_the_next_key() {
    let (_dir, store) = store();
    let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
    drop(store.try_lock_key(&a).unwrap().expect("a free key"));
    let on_b = store.try_lock_key(&b).unwrap().expect("the kept description locks another key");
    let on_a = store.try_lock_key(&a).unwrap().expect("and holds the first one no longer");
    assert!(store.try_lock_key(&a).unwrap().is_none(), "each held key lock has a description to itself");
    assert!(store.try_lock_key(&b).unwrap().is_none());
    drop((on_a, on_b));

    // A burst of locks held at once keeps only so many descriptions after.
    let burst: Vec<_> = (0..100u32).map(|i| store.lock_key(&Digest::of(&i.to_le_bytes())).unwrap()).collect();
    drop(burst);
    assert_eq!(store.inner.idle_key_handles.len(), super::locks::IDLE_KEY_HANDLES_MAX);
}

#[test]
fn a_kept_key_lock_description_still_excludes_other_processes_after_garbage_collection() {
    let (dir, store) = store();
    let key = Digest::of(b"a");
    drop(store.try_lock_key(&key).unwrap().expect("a free key"));
    store.lock_export(Path::new("/somewhere")).map(drop).unwrap();
    store.collect_garbage(&std::collections::BTreeSet::new()).unwrap();
    assert_eq!(entries(&dir.path().join("ws/locks")), ["keys"], "export locks go, the key lock file stays");
    // Another process's store opens the key lock file anew.
    let other_process = Store::open(dir.path().join("ws")).unwrap();
    let held = other_process.try_lock_key(&key).unwrap().expect("a free key");
    assert!(store.try_lock_key(&key).unwrap().is_none(), "the kept description locks the same file");
    drop(held);
}

/// The reuse checks of a run of one pipeline, with its reuse index.
fn checks(store: &Store, may_write: bool) -> ReuseChecks {
    ReuseChecks::new(may_write, store.reuse_index(Digest::of(b"a pipeline")))
}

#[test]
fn a_reuse_index_is_stale_once_an_entry_it_may_hold_is_replaced_or_removed() {
    let (_dir, store) = store();
    let log = store.put_bytes(b"").unwrap();
    let [first, second] = [&b"first"[..], b"second"].map(|bytes| store.put_bytes(bytes).unwrap());
    let [key, other] = [&b"key"[..], b"other"].map(Digest::of);
    store.cache_put(&key, &entry_with(first, log)).unwrap();
    let reuse = |store: &Store| {
        let mut run = checks(store, true);
        let found = store.cache_get_intact(&key, &mut run).unwrap().map(|entry| entry.outputs["r"].digest);
        store.save_reuse_index(run.next_index().unwrap()).unwrap();
        found
    };
    let indexed = |store: &Store| store.reuse_index(Digest::of(b"a pipeline")).get(&key).map(|e| e.outputs["r"].digest);
    assert_eq!(reuse(&store), Some(first));
    assert_eq!(indexed(&store), Some(first), "the run wrote its index");

    // A new entry, and a renewal of the same result, leave it valid.
    store.cache_put(&other, &entry_with(second, log)).unwrap();
    store.cache_renew(&key, &entry_with(first, log)).unwrap();
    assert_eq!(indexed(&store), Some(first));

    // A replacement does not: the index would name the old result.
    store.cache_put(&key, &entry_with(second, log)).unwrap();
    assert_eq!(indexed(&store), None, "stale after the replacement");
    assert_eq!(reuse(&store), Some(second));
    assert_eq!(indexed(&store), Some(second), "written again under the new token");

    // Nor does a removal.
    store.cache_remove(&key).unwrap();
    assert_eq!(indexed(&store), None, "stale after the removal");
    assert_eq!(reuse(&store), None);
}

#[test]
fn garbage_collection_keeps_the_empty_object_that_every_empty_log_is() {
    let (_dir, store) = store();
    let empty = store.put_bytes(b"").unwrap();
    let other = store.put_bytes(b"unreferenced").unwrap();
    let report = store.collect_garbage(&std::collections::BTreeSet::new()).unwrap();
    assert_eq!((report.removed_objects, report.kept), (1, 1), "{report:?}");
    assert!(store.open_file(&other).is_err());
    assert_eq!(std::io::read_to_string(store.open_file(&empty).unwrap()).unwrap(), "");
    assert_eq!(store.put_bytes(b"").unwrap(), empty);
}

/// A store this process created makes each fan-out directory before its
/// first put (see `fan_out`); one removed after that is made again when a
/// put finds it missing, and a store opened again tries first as before.
#[test]
fn fan_out_directories_are_made_as_puts_need_them() {
    let (dir, store) = store();
    let digest = store.put_bytes(b"fanned").unwrap();
    let hex = digest.hex();
    let fan = store.root().join("objects").join(&hex[..2]);
    std::fs::remove_dir_all(&fan).unwrap();
    assert_eq!(store.put_bytes(b"fanned").unwrap(), digest);
    assert_eq!(store.read_file(&digest).unwrap(), b"fanned");
    std::fs::remove_dir_all(&fan).unwrap();
    let reopened = Store::open(dir.path().join("ws")).unwrap();
    assert_eq!(reopened.put_bytes(b"fanned").unwrap(), digest);
    assert_eq!(reopened.read_file(&digest).unwrap(), b"fanned");
}

/// A step's output kept in an unnamed file becomes an object with its
/// bytes, read-only; storing the same bytes again finds the object.
#[test]
fn an_unnamed_file_becomes_an_object() {
    use std::os::unix::fs::FileExt;
    let (_dir, store) = store();
    assert!(store.has_unnamed_files());
    let file = store.unnamed_file().unwrap();
    file.write_all_at(b"unnamed bytes", 0).unwrap();
    let digest = store.adopt_unnamed(Some(&file), 13, &|| "out".into()).unwrap();
    assert_eq!(digest, Digest::of(b"unnamed bytes"));
    assert_eq!(store.read_file(&digest).unwrap(), b"unnamed bytes");
    let hex = digest.hex();
    let path = store.root().join("objects").join(&hex[..2]).join(&hex[2..]);
    assert!(std::fs::metadata(&path).unwrap().permissions().readonly());
    let again = store.unnamed_file().unwrap();
    again.write_all_at(b"unnamed bytes", 0).unwrap();
    assert_eq!(store.adopt_unnamed(Some(&again), 13, &|| "out".into()).unwrap(), digest);
    // Nothing is left in tmp/ by the probe or the files.
    let left: Vec<_> = std::fs::read_dir(store.root().join("tmp")).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}
