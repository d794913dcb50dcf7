//! OCI image layouts (`oci-layout`, `index.json`, `blobs/sha256/HEX`), in a
//! directory or a tar archive of one. Every blob is read through its
//! descriptor and checked against its digest and size.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::oci::{BlobRef, ImageIndex, Sha256Digest};
use crate::host_files::{HostFiles, HostKind};

/// The most bytes of a JSON or TOML document weir reads from a layout.
pub(crate) const MAX_DOCUMENT_BYTES: u64 = 4 << 20;

/// Where a layout's files are.
pub(crate) enum Layout {
    /// A tar archive: each member's data offset and length.
    Archive { path: PathBuf, members: HashMap<String, (u64, u64)> },
    /// A directory.
    Directory(PathBuf),
}

impl Layout {
    /// The layout at `path` (a directory, or else a tar archive), reached
    /// through `files`.
    pub(crate) fn open(path: &Path, files: &HostFiles) -> Result<Layout, String> {
        let layout = match files.kind(path)? {
            None => return Err(format!("{} not found", path.display())),
            Some(HostKind::Dir) => Layout::Directory(path.to_owned()),
            Some(HostKind::File) => {
                let file = files.open_file(path)?;
                let members = archive_members(file)
                    .map_err(|err| format!("{} is not a tar archive of an OCI image layout: {err}", path.display()))?;
                Layout::Archive { path: path.to_owned(), members }
            }
        };
        let marker = layout.read("oci-layout", MAX_DOCUMENT_BYTES, files)?;
        let version = serde_json::from_slice::<serde_json::Value>(&marker)
            .ok()
            .and_then(|marker| marker.get("imageLayoutVersion").and_then(|v| v.as_str()).map(str::to_owned));
        if version.as_deref() != Some("1.0.0") {
            return Err(format!("{}: `oci-layout` does not say imageLayoutVersion 1.0.0", path.display()));
        }
        Ok(layout)
    }

    /// The layout's `index.json`.
    pub(crate) fn index(&self, files: &HostFiles) -> Result<ImageIndex, String> {
        let bytes = self.read("index.json", MAX_DOCUMENT_BYTES, files)?;
        serde_json::from_slice(&bytes).map_err(|err| format!("{}: index.json: {err}", self.path().display()))
    }

    /// The blob `blob` describes, if it is at most `max` bytes and its
    /// bytes match its digest and size.
    pub(crate) fn blob(&self, blob: &BlobRef, max: u64, files: &HostFiles) -> Result<Vec<u8>, String> {
        if blob.size > max {
            return Err(format!(
                "blob {} ({}) is {} bytes, more than the {max} weir reads",
                blob.digest, blob.media_type, blob.size
            ));
        }
        let bytes = self.read(&format!("blobs/sha256/{}", blob.digest.hex()), blob.size, files)?;
        let actual = Sha256Digest::of(&bytes);
        if bytes.len() as u64 != blob.size || actual != blob.digest {
            return Err(format!(
                "blob {} ({}) does not match its digest: its {} bytes hash to {actual}; the package was altered or damaged",
                blob.digest,
                blob.media_type,
                bytes.len()
            ));
        }
        Ok(bytes)
    }

    fn path(&self) -> &Path {
        match self {
            Layout::Archive { path, .. } | Layout::Directory(path) => path,
        }
    }

    /// The member `name` (a path inside the layout), at most `max` bytes
    /// of it (one more shows it is longer).
    fn read(&self, name: &str, max: u64, files: &HostFiles) -> Result<Vec<u8>, String> {
        let missing = || format!("{} has no `{name}`", self.path().display());
        let mut bytes = Vec::new();
        match self {
            Layout::Directory(dir) => {
                let path = dir.join(name);
                if files.kind(&path)?.is_none() {
                    return Err(missing());
                }
                files.open_file(&path)?.take(max + 1).read_to_end(&mut bytes)
            }
            Layout::Archive { path, members } => {
                let &(offset, len) = members.get(name).ok_or_else(missing)?;
                let mut file = files.open_file(path)?;
                file.seek(SeekFrom::Start(offset)).and_then(|_| file.take(len.min(max + 1)).read_to_end(&mut bytes))
            }
        }
        .map_err(|err| format!("{}: reading `{name}`: {err}", self.path().display()))?;
        Ok(bytes)
    }
}

/// The regular files of a tar archive: each one's path (without a leading
/// `./`) and where its data lies.
fn archive_members(file: File) -> std::io::Result<HashMap<String, (u64, u64)>> {
    let mut archive = tar::Archive::new(file);
    let mut members = HashMap::new();
    for entry in archive.entries_with_seek()? {
        let entry = entry?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path()?.to_string_lossy().trim_start_matches("./").to_owned();
        members.insert(path, (entry.raw_file_position(), entry.size()));
    }
    Ok(members)
}

/// Writes an image layout holding `blobs` and listing `index` as a tar
/// archive at `out`: written beside it and renamed into place, so `out` is
/// never half-written. Members are written in a fixed order with fixed
/// metadata, so the same blobs give the same archive.
pub(crate) fn write_archive(out: &Path, index: &ImageIndex, blobs: &[(Sha256Digest, &[u8])]) -> std::io::Result<()> {
    let dir = out.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut temp = tempfile::NamedTempFile::new_in(dir)?;
    {
        let mut builder = tar::Builder::new(&mut temp);
        let index = serde_json::to_vec_pretty(index).map_err(std::io::Error::other)?;
        append(&mut builder, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        append(&mut builder, "index.json", &index)?;
        append_dir(&mut builder, "blobs/")?;
        append_dir(&mut builder, "blobs/sha256/")?;
        let mut sorted: Vec<_> = blobs.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        sorted.dedup_by(|a, b| a.0 == b.0);
        for (digest, bytes) in sorted {
            append(&mut builder, &format!("blobs/sha256/{}", digest.hex()), bytes)?;
        }
        builder.finish()?;
    }
    temp.flush()?;
    temp.as_file().sync_all()?;
    temp.persist(out).map_err(|err| err.error)?;
    Ok(())
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
}

fn append<W: Write>(builder: &mut tar::Builder<W>, path: &str, bytes: &[u8]) -> std::io::Result<()> {
    let mut header = header(tar::EntryType::Regular, 0o644, bytes.len() as u64);
    builder.append_data(&mut header, path, bytes)
}

fn append_dir<W: Write>(builder: &mut tar::Builder<W>, path: &str) -> std::io::Result<()> {
    let mut header = header(tar::EntryType::Directory, 0o755, 0);
    builder.append_data(&mut header, path, std::io::empty())
}
