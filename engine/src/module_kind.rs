//! Telling a WebAssembly core module from a component by its header.

use std::io::Read;
use std::path::Path;

/// The two kinds of WebAssembly binary a step may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ModuleKind {
    /// A core module: a WASI preview-1 command.
    Core,
    /// A component: a WASI preview-2 command.
    Component,
}

const MAGIC: &[u8; 4] = b"\0asm";
/// Version field of core modules (version 1).
const CORE_VERSION: [u8; 4] = [1, 0, 0, 0];
/// Layer field (the last two header bytes) of components.
const COMPONENT_LAYER: [u8; 2] = [1, 0];

impl ModuleKind {
    /// Classifies a binary by its 8-byte header.
    pub(crate) fn of_bytes(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() < 8 || &bytes[..4] != MAGIC {
            return Err("not a WebAssembly binary (no `\\0asm` header)".to_owned());
        }
        if bytes[4..8] == CORE_VERSION {
            Ok(Self::Core)
        } else if bytes[6..8] == COMPONENT_LAYER {
            Ok(Self::Component)
        } else {
            Err(format!("unsupported WebAssembly version {:?}", &bytes[4..8]))
        }
    }

    /// Classifies the binary in a file by reading its header.
    pub(crate) fn of_file(path: &Path) -> Result<Self, String> {
        let mut header = [0u8; 8];
        let mut file = std::fs::File::open(path).map_err(|err| format!("cannot read it: {err}"))?;
        let read = file.read(&mut header).map_err(|err| format!("cannot read it: {err}"))?;
        Self::of_bytes(&header[..read])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_headers() {
        assert_eq!(ModuleKind::of_bytes(b"\0asm\x01\0\0\0"), Ok(ModuleKind::Core));
        assert_eq!(ModuleKind::of_bytes(b"\0asm\x0d\0\x01\0"), Ok(ModuleKind::Component));
        assert!(ModuleKind::of_bytes(b"#!/bin/sh\n").unwrap_err().contains("not a WebAssembly binary"));
        assert!(ModuleKind::of_bytes(b"\0asm").is_err());
        assert!(ModuleKind::of_bytes(b"\0asm\x02\0\0\0").unwrap_err().contains("unsupported"));
    }
}
