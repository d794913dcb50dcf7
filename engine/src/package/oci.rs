//! The OCI documents of a step package (image index, image manifest, the
//! CNCF Wasm config) and their sha256 digests.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The media type of an OCI image manifest.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// The media type of an OCI image index.
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// The config media type of a Wasm artifact (CNCF Wasm OCI artifact layout).
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// The media type of the layer holding the module or component.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";
/// The media type of the layer holding weir's step descriptor.
pub const DESCRIPTOR_MEDIA_TYPE: &str = "application/vnd.weir.step.v1+toml";
/// The annotation naming a manifest's tag in an image layout's index.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// A sha256 content digest, `sha256:` and 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sha256Digest(String);

impl Sha256Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Sha256Digest(format!("sha256:{:x}", Sha256::digest(bytes)))
    }

    /// Its 64 hex digits (a blob's file name in an image layout).
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }
}

impl TryFrom<String> for Sha256Digest {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let hex = text.strip_prefix("sha256:").ok_or_else(|| format!("`{text}` is not a sha256 digest"))?;
        if hex.len() != 64 || !hex.bytes().all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte)) {
            return Err(format!("`{text}` is not a sha256 digest (64 lowercase hex digits)"));
        }
        Ok(Sha256Digest(text))
    }
}

impl std::str::FromStr for Sha256Digest {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Self::try_from(text.to_owned())
    }
}

impl From<Sha256Digest> for String {
    fn from(digest: Sha256Digest) -> String {
        digest.0
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An OCI content descriptor: what a blob is, its digest and size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlobRef {
    /// What the blob holds.
    pub media_type: String,
    /// Its content digest.
    pub digest: Sha256Digest,
    /// Its length in bytes.
    pub size: u64,
    /// Annotations (a tag's name, in an index).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl BlobRef {
    /// The descriptor of `bytes` as a blob of `media_type`.
    pub fn of(media_type: &str, bytes: &[u8]) -> Self {
        BlobRef {
            media_type: media_type.to_owned(),
            digest: Sha256Digest::of(bytes),
            size: bytes.len() as u64,
            annotations: BTreeMap::new(),
        }
    }
}

/// An OCI image manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    /// Always 2.
    pub schema_version: u32,
    /// [`MANIFEST_MEDIA_TYPE`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The artifact's type (its config's media type, for a Wasm artifact).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The config blob.
    pub config: BlobRef,
    /// The layers.
    pub layers: Vec<BlobRef>,
    /// The manifest this one is about (a signature's package).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<BlobRef>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An OCI image index (an image layout's `index.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    /// Always 2.
    pub schema_version: u32,
    /// [`INDEX_MEDIA_TYPE`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The manifests it lists.
    pub manifests: Vec<BlobRef>,
}

/// The config of a Wasm artifact, as the CNCF layout defines it (weir
/// writes no creation time, so packing the same files gives the same
/// digest).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WasmConfig {
    /// Always `wasm`.
    pub architecture: String,
    /// `wasip1` for a core module, `wasip2` for a component.
    pub os: String,
    /// The digests of the Wasm layers.
    pub layer_digests: Vec<Sha256Digest>,
}
