use std::path::{Path, PathBuf};

use super::*;

/// The smallest WebAssembly core module.
const EMPTY_MODULE: &[u8] = b"\0asm\x01\0\0\0";

const DESCRIPTOR: &str = r#"
name = "upper"
version = "1.0.0"
module = "upper.wasm"
args = ["upper", "${params.word}"]
[inputs]
text = "file"
[outputs]
result = "file"
[params]
word = { type = "string", default = "hi" }
"#;

/// A descriptor and its module in `dir`, packed into `dir/upper.tar`.
fn packed(dir: &Path) -> (Packed, PathBuf) {
    std::fs::write(dir.join("upper.wasm"), EMPTY_MODULE).unwrap();
    std::fs::write(dir.join("step.toml"), DESCRIPTOR).unwrap();
    let packed = Packed::from_descriptor(&dir.join("step.toml")).unwrap();
    let archive = dir.join("upper.tar");
    packed.write_archive(&archive).unwrap();
    (packed, archive)
}

/// The layout of the archive at `archive`, unpacked into `dir`.
fn unpacked(archive: &Path, dir: &Path) -> PathBuf {
    tar::Archive::new(std::fs::File::open(archive).unwrap()).unpack(dir).unwrap();
    dir.to_owned()
}

#[test]
fn a_packed_archive_opens_with_its_descriptor_and_module() {
    let temp = tempfile::tempdir().unwrap();
    let (packed, archive) = packed(temp.path());
    let package = Package::open(&archive).unwrap();
    assert_eq!(package.digest, packed.digest);
    let (descriptor, text) = package.descriptor.as_ref().unwrap();
    assert_eq!(descriptor.name, "upper");
    assert_eq!(text, DESCRIPTOR);
    assert_eq!(package.module_bytes().unwrap(), EMPTY_MODULE);
    assert_eq!(package.module.digest, Sha256Digest::of(EMPTY_MODULE));
    assert_eq!(package.code(false).name, "upper");
}

#[test]
fn packing_the_same_files_twice_gives_the_same_bytes() {
    let temp = tempfile::tempdir().unwrap();
    let (first, archive) = packed(temp.path());
    let bytes = std::fs::read(&archive).unwrap();
    let (second, again) = packed(temp.path());
    assert_eq!(first.digest, second.digest);
    assert_eq!(bytes, std::fs::read(again).unwrap());
}

#[test]
fn an_unpacked_layout_directory_opens_like_the_archive() {
    let temp = tempfile::tempdir().unwrap();
    let (packed, archive) = packed(temp.path());
    let dir = unpacked(&archive, &temp.path().join("layout"));
    let package = Package::open(&dir).unwrap();
    assert_eq!(package.digest, packed.digest);
    assert_eq!(package.module_bytes().unwrap(), EMPTY_MODULE);
}

#[test]
fn a_changed_blob_is_refused_naming_its_digest() {
    let temp = tempfile::tempdir().unwrap();
    let (packed, archive) = packed(temp.path());
    let dir = unpacked(&archive, &temp.path().join("layout"));
    let blob = |digest: &Sha256Digest| dir.join("blobs/sha256").join(digest.hex());

    let module = &packed.manifest.layers[0].digest;
    std::fs::write(blob(module), b"\0asm\x01\0\0\x01").unwrap();
    let package = Package::open(&dir).unwrap();
    let error = package.module_bytes().unwrap_err();
    assert!(error.contains(&module.to_string()) && error.contains("does not match its digest"), "{error}");
    assert!(read_module(&package.code(false), &HostFiles::Ambient).is_err());

    let descriptor = &packed.manifest.layers[1].digest;
    std::fs::write(blob(descriptor), DESCRIPTOR.replace("hi", "ho")).unwrap();
    let error = Package::open(&dir).err().unwrap();
    assert!(error.contains(&descriptor.to_string()), "{error}");
}

#[test]
fn a_layout_that_is_not_one_step_package_is_refused_saying_why() {
    let temp = tempfile::tempdir().unwrap();
    let (packed, archive) = packed(temp.path());
    let dir = unpacked(&archive, &temp.path().join("layout"));
    let index_path = dir.join("index.json");
    let index = std::fs::read_to_string(&index_path).unwrap();

    let mut two = packed.index.clone();
    two.manifests.push(two.manifests[0].clone());
    std::fs::write(&index_path, serde_json::to_vec(&two).unwrap()).unwrap();
    assert!(Package::open(&dir).err().unwrap().contains("lists 2 manifests"));

    let traversal = index.replace(&format!("sha256:{}", packed.digest.hex()), "sha256:../../../etc/passwd");
    std::fs::write(&index_path, traversal).unwrap();
    assert!(Package::open(&dir).err().unwrap().contains("not a sha256 digest"));

    std::fs::write(&index_path, &index).unwrap();
    std::fs::remove_file(dir.join("oci-layout")).unwrap();
    assert!(Package::open(&dir).err().unwrap().contains("has no `oci-layout`"));

    let not_tar = temp.path().join("not.tar");
    std::fs::write(&not_tar, b"hello").unwrap();
    assert!(Package::open(&not_tar).err().unwrap().contains("not a tar archive"));
}

#[test]
fn a_manifest_without_exactly_one_wasm_layer_or_the_wasm_config_is_refused() {
    let temp = tempfile::tempdir().unwrap();
    let (packed, _) = packed(temp.path());
    let mut manifest = packed.manifest.clone();
    manifest.config.media_type = "application/vnd.oci.image.config.v1+json".into();
    assert!(read_manifest(&manifest).unwrap_err().contains("not a Wasm artifact"));
    let mut manifest = packed.manifest.clone();
    manifest.layers.push(manifest.layers[0].clone());
    assert!(read_manifest(&manifest).unwrap_err().contains("several"));
    manifest.layers.clear();
    assert!(read_manifest(&manifest).unwrap_err().contains("no `application/wasm` layer"));
}

#[test]
fn packing_needs_a_module_that_is_webassembly() {
    let temp = tempfile::tempdir().unwrap();
    let descriptor = temp.path().join("step.toml");
    std::fs::write(&descriptor, DESCRIPTOR.replace("module = \"upper.wasm\"\n", "")).unwrap();
    let error = Packed::from_descriptor(&descriptor).err().unwrap().to_string();
    assert!(error.contains("field `module`") && error.contains("missing"), "{error}");
    std::fs::write(&descriptor, DESCRIPTOR).unwrap();
    std::fs::write(temp.path().join("upper.wasm"), b"#!/bin/sh\n").unwrap();
    let error = Packed::from_descriptor(&descriptor).err().unwrap().to_string();
    assert!(error.contains("is not a WASI program"), "{error}");
}
