//! Compiled modules kept on disk, so a new process does not recompile.
//!
//! Files live in `compiled/<engine>/<module digest>.cwasm`, where `<engine>`
//! is a hash of wasmtime's compatibility key (version, target, settings):
//! an engine only ever sees files it can load. Each file is the BLAKE3 of the
//! serialized code followed by the code, and is checked before loading.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use wasmtime::Engine;

use super::chain;
use crate::Digest;

/// The on-disk cache of compiled code for one engine configuration.
pub(crate) struct CompileCache {
    engine: Engine,
    dir: PathBuf,
}

const CHECKSUM_LEN: usize = 32;

impl CompileCache {
    pub(crate) fn new(engine: &Engine, compiled_root: &Path) -> Self {
        let mut hasher = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        env!("CARGO_PKG_VERSION").hash(&mut hasher);
        let dir = compiled_root.join(format!("{:016x}", hasher.finish()));
        Self { engine: engine.clone(), dir }
    }

    /// Loads the compiled form of module `digest` with `load`, or compiles it
    /// with `compile` (which also returns the serialized form) and stores it.
    pub(crate) fn load_or_compile<T>(
        &self,
        digest: &Digest,
        load: impl FnOnce(&Engine, &[u8]) -> wasmtime::Result<T>,
        compile: impl FnOnce(&Engine) -> wasmtime::Result<(T, Vec<u8>)>,
    ) -> Result<T, String> {
        let path = self.dir.join(format!("{}.cwasm", digest.hex()));
        if let Some(loaded) = read_verified(&path).and_then(|code| load(&self.engine, &code).ok()) {
            return Ok(loaded);
        }
        let (compiled, serialized) =
            compile(&self.engine).map_err(|err| format!("not valid WebAssembly: {}", chain(&err)))?;
        // A cache that cannot be written only costs a recompile next time.
        let _ = self.write(&path, &serialized);
        Ok(compiled)
    }

    fn write(&self, path: &Path, code: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let temp = path.with_extension(format!("{}.tmp", std::process::id()));
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(blake3::hash(code).as_bytes())?;
        file.write_all(code)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    }
}

/// The code in a cache file, if the file exists and its checksum matches.
fn read_verified(path: &Path) -> Option<Vec<u8>> {
    let mut bytes = std::fs::read(path).ok()?;
    if bytes.len() < CHECKSUM_LEN || blake3::hash(&bytes[CHECKSUM_LEN..]).as_bytes() != &bytes[..CHECKSUM_LEN] {
        return None;
    }
    bytes.drain(..CHECKSUM_LEN);
    Some(bytes)
}
