//! Step packages: a step's module and its descriptor as an OCI artifact
//! (the CNCF Wasm layout, plus a descriptor layer), so a step can be shared
//! with its interface and pinned by digest. See `docs/packages.md`.
//!
//! A package's manifest lists the Wasm config, one `application/wasm`
//! layer (the module or component) and, when weir packed it, one
//! [`DESCRIPTOR_MEDIA_TYPE`] layer (the `step.toml` text). Packing is
//! reproducible: the same descriptor and module give the same digest.

mod descriptor;
mod layout;
mod oci;
mod pinned;
mod signature;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use descriptor::{ParamSpec, ParamType, StepDescriptor};
pub use oci::{
    BlobRef, DESCRIPTOR_MEDIA_TYPE, ImageIndex, ImageManifest, MANIFEST_MEDIA_TYPE, Sha256Digest,
    WASM_CONFIG_MEDIA_TYPE, WASM_LAYER_MEDIA_TYPE, WasmConfig,
};
pub use pinned::is_reference;
pub use pinned::{Fetch, LOCK_FILE, Packages};
pub use signature::{
    EMPTY_CONFIG_MEDIA_TYPE, SIGNATURE_MEDIA_TYPE, SIGNATURE_SUFFIX, SignatureArtifact, TrustPolicy, signature_path,
    signature_tag, signed_message,
};

use crate::error::{ValidationError, ValidationErrorKind as Kind};
use crate::host_files::HostFiles;
use crate::module_kind::ModuleKind;
use crate::runtime::MAX_MODULE_BYTES;
use layout::{Layout, MAX_DOCUMENT_BYTES};

/// A package read from an image layout: its manifest checked, its
/// descriptor (if it has one) parsed. The module is read, and checked,
/// only when a run needs it.
pub struct Package {
    /// Where the layout is (a tar archive or a directory).
    pub source: PathBuf,
    /// The digest of its manifest: what pins it.
    pub digest: Sha256Digest,
    /// Its manifest.
    pub manifest: ImageManifest,
    /// Its descriptor and the descriptor's text, when it has one (a Wasm
    /// artifact from another tool may not).
    pub descriptor: Option<(StepDescriptor, String)>,
    /// The layer holding its module.
    pub module: BlobRef,
    /// The index's entry for its manifest.
    entry: BlobRef,
    layout: Layout,
}

impl Package {
    /// Opens the package in the image layout at `path` (a tar archive or a
    /// directory), checking its manifest, config and descriptor.
    pub fn open(path: &Path) -> Result<Package, String> {
        Self::open_with(path, &HostFiles::Ambient)
    }

    pub(crate) fn open_with(path: &Path, files: &HostFiles) -> Result<Package, String> {
        let layout = Layout::open(path, files)?;
        let index = layout.index(files)?;
        let entry = match index.manifests.as_slice() {
            [entry] => entry,
            entries => {
                return Err(format!(
                    "{}: index.json lists {} manifests; a step package has exactly one",
                    path.display(),
                    entries.len()
                ));
            }
        };
        if entry.media_type != MANIFEST_MEDIA_TYPE {
            return Err(format!(
                "{}: its manifest is a `{}`, not an OCI image manifest",
                path.display(),
                entry.media_type
            ));
        }
        let manifest: ImageManifest = serde_json::from_slice(&layout.blob(entry, MAX_DOCUMENT_BYTES, files)?)
            .map_err(|err| format!("{}: its manifest: {err}", path.display()))?;
        let located = |why: String| format!("{}: {why}", path.display());
        let module = read_manifest(&manifest).map_err(located)?;
        let config = &manifest.config;
        serde_json::from_slice::<WasmConfig>(&layout.blob(config, MAX_DOCUMENT_BYTES, files)?)
            .map_err(|err| located(format!("its Wasm config: {err}")))?;
        let descriptor = match manifest.layers.iter().find(|layer| layer.media_type == DESCRIPTOR_MEDIA_TYPE) {
            None => None,
            Some(layer) => {
                let bytes = layout.blob(layer, MAX_DOCUMENT_BYTES, files)?;
                let text = String::from_utf8(bytes).map_err(|_| located("its descriptor is not UTF-8".into()))?;
                let name = PathBuf::from(format!("{}#descriptor", path.display()));
                let descriptor = StepDescriptor::parse(&text, &name).map_err(|err| err.to_string())?;
                Some((descriptor, text))
            }
        };
        Ok(Package {
            source: path.to_owned(),
            digest: entry.digest.clone(),
            manifest,
            descriptor,
            module,
            entry: entry.clone(),
            layout,
        })
    }

    /// The bytes of its module, checked against the layer's digest.
    pub fn module_bytes(&self) -> Result<Vec<u8>, String> {
        self.layout.blob(&self.module, MAX_MODULE_BYTES, &HostFiles::Ambient)
    }

    /// All of it in memory, every blob checked: what pushing it sends.
    pub fn to_packed(&self) -> Result<Packed, String> {
        let files = &HostFiles::Ambient;
        let mut blobs = vec![(self.digest.clone(), self.layout.blob(&self.entry, MAX_DOCUMENT_BYTES, files)?)];
        for blob in std::iter::once(&self.manifest.config).chain(&self.manifest.layers) {
            blobs.push((blob.digest.clone(), self.layout.blob(blob, MAX_MODULE_BYTES, files)?));
        }
        Ok(Packed {
            digest: self.digest.clone(),
            manifest: self.manifest.clone(),
            index: ImageIndex {
                schema_version: 2,
                media_type: Some(oci::INDEX_MEDIA_TYPE.to_owned()),
                manifests: vec![self.entry.clone()],
            },
            blobs,
        })
    }

    /// How a step runs it; `kept`: it is one of the workspace's kept
    /// packages (read without a tenant's confinement).
    pub(crate) fn code(&self, kept: bool) -> crate::PackagedModule {
        crate::PackagedModule {
            source: self.source.clone(),
            kept,
            module: self.module.digest.clone(),
            module_size: self.module.size,
            name: self.descriptor.as_ref().map_or_else(|| "step".to_owned(), |(descriptor, _)| descriptor.name.clone()),
        }
    }
}

/// The module layer of a Wasm artifact's manifest.
fn read_manifest(manifest: &ImageManifest) -> Result<BlobRef, String> {
    if manifest.config.media_type != WASM_CONFIG_MEDIA_TYPE {
        return Err(format!(
            "its config is a `{}`, not a Wasm artifact's `{WASM_CONFIG_MEDIA_TYPE}`",
            manifest.config.media_type
        ));
    }
    let mut wasm = manifest.layers.iter().filter(|layer| layer.media_type == WASM_LAYER_MEDIA_TYPE);
    match (wasm.next(), wasm.next()) {
        (Some(layer), None) => Ok(layer.clone()),
        (None, _) => Err(format!("it has no `{WASM_LAYER_MEDIA_TYPE}` layer")),
        (Some(_), Some(_)) => Err(format!("it has several `{WASM_LAYER_MEDIA_TYPE}` layers; a step package has one")),
    }
}

/// The bytes of a packaged step's module, read from its layout and checked
/// against the layer's digest.
pub(crate) fn read_module(code: &crate::PackagedModule, files: &HostFiles) -> Result<Vec<u8>, String> {
    let files = if code.kept { &HostFiles::Ambient } else { files };
    let layout = Layout::open(&code.source, files)?;
    let layer = BlobRef {
        media_type: WASM_LAYER_MEDIA_TYPE.to_owned(),
        digest: code.module.clone(),
        size: code.module_size,
        annotations: BTreeMap::new(),
    };
    layout.blob(&layer, MAX_MODULE_BYTES, files).map_err(|why| format!("{}: {why}", code.source.display()))
}

/// A package made from a descriptor, in memory: its blobs and the index
/// that lists its manifest.
pub struct Packed {
    /// The digest of its manifest.
    pub digest: Sha256Digest,
    /// Its manifest.
    pub manifest: ImageManifest,
    /// The index of a layout holding it (its manifest tagged with the
    /// descriptor's version).
    pub index: ImageIndex,
    /// Every blob: manifest, config and layers.
    pub blobs: Vec<(Sha256Digest, Vec<u8>)>,
}

impl Packed {
    /// Packs the step described by the descriptor file `path`: its module
    /// (the descriptor's `module`, relative to the descriptor) and its text.
    /// A Python step (`python =`) needs an engine to build it
    /// ([`Engine::pack_step`](crate::Engine::pack_step)).
    pub fn from_descriptor(path: &Path) -> Result<Packed, ValidationError> {
        Self::from_descriptor_building(path, &|_| {
            Err("a Python step is built when it is packed: pack it with an engine (`weir step pack`)".to_owned())
        })
    }

    /// Like [`Packed::from_descriptor`]; `build` turns a Python step's
    /// script into its component's bytes.
    pub(crate) fn from_descriptor_building(
        path: &Path,
        build: &dyn Fn(&crate::PythonScript) -> Result<Vec<u8>, String>,
    ) -> Result<Packed, ValidationError> {
        let fail = |why: String| ValidationError::new(Kind::Package(why)).in_file(Some(path));
        let text = std::fs::read_to_string(path).map_err(|err| fail(format!("cannot read it: {err}")))?;
        let descriptor = StepDescriptor::parse(&text, path)?;
        let beside = |relative: &PathBuf| path.parent().unwrap_or(Path::new(".")).join(relative);
        let (module, module_path) = match (&descriptor.module, &descriptor.python) {
            (Some(module), _) => {
                let module_path = beside(module);
                let bytes = std::fs::read(&module_path).map_err(|err| {
                    fail(format!("cannot read the module {}: {err}", module_path.display())).in_field("module")
                })?;
                (bytes, module_path)
            }
            (None, Some(script)) => {
                let python = crate::PythonScript {
                    script: beside(script),
                    requirements: descriptor.requirements.iter().map(beside).collect(),
                };
                (build(&python).map_err(|why| fail(why).in_field("python"))?, python.script)
            }
            (None, None) => {
                let why = "`module` is missing: packing needs the module's path (or a Python step's `python`)";
                return Err(fail(why.into()).in_field("module"));
            }
        };
        let os = match ModuleKind::of_bytes(&module) {
            Ok(ModuleKind::Core) => "wasip1",
            Ok(ModuleKind::Component) => "wasip2",
            Err(why) => {
                return Err(fail(format!("{} is not a WASI program: {why}", module_path.display())).in_field("module"));
            }
        };
        let module_layer = BlobRef::of(WASM_LAYER_MEDIA_TYPE, &module);
        let descriptor_layer = BlobRef::of(DESCRIPTOR_MEDIA_TYPE, text.as_bytes());
        let config = WasmConfig {
            architecture: "wasm".to_owned(),
            os: os.to_owned(),
            layer_digests: vec![module_layer.digest.clone()],
        };
        let config = serde_json::to_vec(&config).expect("a config serializes");
        let annotations = BTreeMap::from([
            ("org.opencontainers.image.title".to_owned(), descriptor.name.clone()),
            ("org.opencontainers.image.version".to_owned(), descriptor.version.clone()),
        ]);
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: Some(MANIFEST_MEDIA_TYPE.to_owned()),
            artifact_type: Some(WASM_CONFIG_MEDIA_TYPE.to_owned()),
            config: BlobRef::of(WASM_CONFIG_MEDIA_TYPE, &config),
            layers: vec![module_layer, descriptor_layer],
            subject: None,
            annotations,
        };
        let manifest_bytes = serde_json::to_vec(&manifest).expect("a manifest serializes");
        let mut entry = BlobRef::of(MANIFEST_MEDIA_TYPE, &manifest_bytes);
        entry.annotations.insert(oci::REF_NAME_ANNOTATION.to_owned(), descriptor.version.clone());
        let index = ImageIndex {
            schema_version: 2,
            media_type: Some(oci::INDEX_MEDIA_TYPE.to_owned()),
            manifests: vec![entry.clone()],
        };
        let blobs = vec![
            (entry.digest.clone(), manifest_bytes),
            (manifest.config.digest.clone(), config),
            (manifest.layers[0].digest.clone(), module),
            (manifest.layers[1].digest.clone(), text.into_bytes()),
        ];
        Ok(Packed { digest: entry.digest, manifest, index, blobs })
    }

    /// A package from its manifest's bytes and its blobs, as pulled from a
    /// registry: it must be a Wasm artifact, and every blob its manifest
    /// lists must be there and match its digest. `tag` names it in the
    /// layout's index.
    pub fn assemble(manifest_bytes: Vec<u8>, blobs: Vec<Vec<u8>>, tag: Option<&str>) -> Result<Packed, String> {
        let manifest: ImageManifest =
            serde_json::from_slice(&manifest_bytes).map_err(|err| format!("its manifest: {err}"))?;
        read_manifest(&manifest)?;
        let mut entry = BlobRef::of(MANIFEST_MEDIA_TYPE, &manifest_bytes);
        if let Some(tag) = tag {
            entry.annotations.insert(oci::REF_NAME_ANNOTATION.to_owned(), tag.to_owned());
        }
        let mut checked = vec![(entry.digest.clone(), manifest_bytes)];
        for blob in std::iter::once(&manifest.config).chain(&manifest.layers) {
            let bytes = blobs
                .iter()
                .find(|bytes| bytes.len() as u64 == blob.size && Sha256Digest::of(bytes) == blob.digest)
                .ok_or_else(|| {
                    format!("blob {} ({}) is missing or does not match its digest", blob.digest, blob.media_type)
                })?;
            checked.push((blob.digest.clone(), bytes.clone()));
        }
        let index = ImageIndex {
            schema_version: 2,
            media_type: Some(oci::INDEX_MEDIA_TYPE.to_owned()),
            manifests: vec![entry.clone()],
        };
        Ok(Packed { digest: entry.digest, manifest, index, blobs: checked })
    }

    /// The bytes of the blob with `digest`.
    pub fn blob(&self, digest: &Sha256Digest) -> Option<&[u8]> {
        self.blobs.iter().find(|(known, _)| known == digest).map(|(_, bytes)| bytes.as_slice())
    }

    /// Writes it as a tar archive of an OCI image layout at `out`.
    pub fn write_archive(&self, out: &Path) -> std::io::Result<()> {
        let blobs: Vec<_> = self.blobs.iter().map(|(digest, bytes)| (digest.clone(), bytes.as_slice())).collect();
        layout::write_archive(out, &self.index, &blobs)
    }
}

#[cfg(test)]
mod tests;
