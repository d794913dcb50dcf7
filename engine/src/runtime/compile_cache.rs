//! Compiled modules kept on disk, so a new process does not recompile.
//!
//! Files live in `compiled/<engine>/<module digest>.cwasm`, where `<engine>`
//! is a hash of wasmtime's compatibility key (version, target, settings):
//! an engine only ever sees files it can load. Each file is a MAC followed by
//! the serialized code: BLAKE3 keyed with the workspace's secret, over the
//! module digest and the code. A file is loaded only if its MAC checks, so
//! code that someone without the secret placed or swapped under `compiled/`
//! (another module's code renamed, a hand-made file) is recompiled from the
//! module instead of run.
//!
//! Code is written only once it has also linked, so a file here says that
//! its module is a valid step for this engine: a run can plan with a module
//! whose code is on disk without loading it (see [`CompileCache::holds`]).

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
    secret: [u8; 32],
}

const MAC_LEN: usize = 32;

/// The layout of the files, part of the directory's name: files of a weir
/// that wrote code before it had linked are never taken for linked code.
const LAYOUT: u32 = 2;

impl CompileCache {
    pub(crate) fn new(engine: &Engine, compiled_root: &Path, secret: [u8; 32]) -> Self {
        let mut hasher = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        env!("CARGO_PKG_VERSION").hash(&mut hasher);
        LAYOUT.hash(&mut hasher);
        let dir = compiled_root.join(format!("{:016x}", hasher.finish()));
        Self { engine: engine.clone(), dir, secret }
    }

    /// Loads the compiled form of module `digest` with `load`, or compiles it
    /// with `compile` (which also returns the serialized form), and hands it
    /// to `link`; freshly compiled code is stored once it has linked.
    pub(crate) fn load_or_compile<T, L>(
        &self,
        digest: &Digest,
        load: impl FnOnce(&Engine, &[u8]) -> wasmtime::Result<T>,
        compile: impl FnOnce(&Engine) -> wasmtime::Result<(T, Vec<u8>)>,
        link: impl FnOnce(T) -> Result<L, String>,
    ) -> Result<L, String> {
        let path = self.path_of(digest);
        if let Some(loaded) = self.read_authentic(&path, digest).and_then(|code| load(&self.engine, &code).ok()) {
            return link(loaded);
        }
        let (compiled, serialized) = compile(&self.engine).map_err(|err| {
            let why = chain(&err);
            // wasmtime checks a module against its instance pool as it compiles it.
            let what =
                if why.contains("pooling allocator") { "more than a step may define" } else { "not valid WebAssembly" };
            format!("{what}: {why}")
        })?;
        let linked = link(compiled)?;
        // A cache that cannot be written only costs a recompile next time.
        let _ = self.write(&path, digest, &serialized);
        Ok(linked)
    }

    /// Whether code compiled from module `digest` is on disk, which says
    /// that the module compiled and linked with this engine. One `stat`: the
    /// file is not read, so its MAC is checked only when it is loaded (and
    /// code that fails the check is compiled again from the module then).
    pub(crate) fn holds(&self, digest: &Digest) -> bool {
        self.path_of(digest).is_file()
    }

    fn path_of(&self, digest: &Digest) -> PathBuf {
        self.dir.join(format!("{}.cwasm", digest.hex()))
    }

    fn write(&self, path: &Path, digest: &Digest, code: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let temp = path.with_extension(format!("{}.tmp", std::process::id()));
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(self.mac(digest, code).as_bytes())?;
        file.write_all(code)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    }

    /// The MAC of `code` compiled from module `digest`.
    fn mac(&self, digest: &Digest, code: &[u8]) -> blake3::Hash {
        let mut hasher = blake3::Hasher::new_keyed(&self.secret);
        hasher.update(digest.hex().as_bytes());
        hasher.update(code);
        hasher.finalize()
    }

    /// The code in the cache file of module `digest`, if the file exists and
    /// its MAC checks (compared in constant time).
    fn read_authentic(&self, path: &Path, digest: &Digest) -> Option<Vec<u8>> {
        let mut bytes = std::fs::read(path).ok()?;
        if bytes.len() < MAC_LEN {
            return None;
        }
        let stored = blake3::Hash::from_bytes(bytes[..MAC_LEN].try_into().ok()?);
        if stored != self.mac(digest, &bytes[MAC_LEN..]) {
            return None;
        }
        bytes.drain(..MAC_LEN);
        Some(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_code_written_with_the_secret_for_that_module_is_read_back() {
        let temp = tempfile::tempdir().unwrap();
        let engine = Engine::default();
        let cache = CompileCache::new(&engine, temp.path(), [7; 32]);
        let (module, other) = (Digest::of(b"module"), Digest::of(b"other"));
        let path = |digest: &Digest| cache.path_of(digest);
        assert!(!cache.holds(&module));
        cache.write(&path(&module), &module, b"native code").unwrap();
        assert_eq!(cache.read_authentic(&path(&module), &module).unwrap(), b"native code");
        assert!(cache.holds(&module));

        std::fs::copy(path(&module), path(&other)).unwrap();
        assert!(cache.read_authentic(&path(&other), &other).is_none(), "another module's code, renamed");
        let stranger = CompileCache::new(&engine, temp.path(), [8; 32]);
        assert!(stranger.read_authentic(&path(&module), &module).is_none(), "written with another secret");
        let mut forged = blake3::hash(b"evil code").as_bytes().to_vec();
        forged.extend_from_slice(b"evil code");
        std::fs::write(path(&module), forged).unwrap();
        assert!(cache.read_authentic(&path(&module), &module).is_none(), "a self-checksummed file");
    }
}
