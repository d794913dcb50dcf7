//! Signed packages: a detached minisign (ed25519) signature over a
//! package's manifest digest, where it is kept, and the policy that says
//! whose signatures a workspace accepts. See `docs/packages.md`.
//!
//! The signed message is the digest's text (`sha256:…`), so `minisign -V`
//! checks a weir signature too. Beside a package archive or layout
//! directory the signature is the file `PATH.minisig`; in a registry it is
//! an artifact tagged `sha256-HEX.sig` in the package's repository (the tag
//! convention cosign uses), whose one layer is the `.minisig` text and whose
//! `subject` is the package's manifest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::layout::MAX_DOCUMENT_BYTES;
use super::oci::{BlobRef, ImageManifest, MANIFEST_MEDIA_TYPE, Sha256Digest};

/// What a signature file's name adds to its package's path.
pub const SIGNATURE_SUFFIX: &str = ".minisig";
/// The media type of a signature artifact's layer (and its artifact type).
pub const SIGNATURE_MEDIA_TYPE: &str = "application/vnd.weir.signature.v1+minisig";
/// The media type of the empty config (`{}`) a signature artifact carries.
pub const EMPTY_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
const EMPTY_CONFIG: &[u8] = b"{}";

/// The message a package's signature signs: its manifest digest's text.
pub fn signed_message(digest: &Sha256Digest) -> Vec<u8> {
    digest.to_string().into_bytes()
}

/// The file a package's signature is kept in, beside the package at `path`.
pub fn signature_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(SIGNATURE_SUFFIX);
    PathBuf::from(name)
}

/// The tag a registry keeps the signature of the package with `digest`
/// under, in the package's repository.
pub fn signature_tag(digest: &Sha256Digest) -> String {
    format!("sha256-{}.sig", digest.hex())
}

/// A signature as a registry artifact: its manifest and blobs.
pub struct SignatureArtifact {
    /// The manifest's bytes, as pushed.
    pub manifest: Vec<u8>,
    /// Its config and its layer, by digest.
    pub blobs: Vec<(Sha256Digest, Vec<u8>)>,
}

impl SignatureArtifact {
    /// The artifact holding `signature` (a `.minisig` text) for the package
    /// whose manifest `subject` describes.
    pub fn new(signature: &str, subject: BlobRef) -> Self {
        let layer = BlobRef::of(SIGNATURE_MEDIA_TYPE, signature.as_bytes());
        let config = BlobRef::of(EMPTY_CONFIG_MEDIA_TYPE, EMPTY_CONFIG);
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: Some(MANIFEST_MEDIA_TYPE.to_owned()),
            artifact_type: Some(SIGNATURE_MEDIA_TYPE.to_owned()),
            config: config.clone(),
            layers: vec![layer.clone()],
            subject: Some(subject),
            annotations: BTreeMap::new(),
        };
        SignatureArtifact {
            manifest: serde_json::to_vec(&manifest).expect("a manifest serializes"),
            blobs: vec![(config.digest, EMPTY_CONFIG.to_vec()), (layer.digest, signature.as_bytes().to_vec())],
        }
    }

    /// The layer holding the signature, in the manifest `bytes` of a
    /// signature artifact.
    pub fn layer(bytes: &[u8]) -> Result<BlobRef, String> {
        let manifest: ImageManifest =
            serde_json::from_slice(bytes).map_err(|err| format!("the signature's manifest: {err}"))?;
        match manifest.layers.as_slice() {
            [layer] if layer.media_type == SIGNATURE_MEDIA_TYPE && layer.size <= MAX_DOCUMENT_BYTES => {
                Ok(layer.clone())
            }
            _ => Err(format!("the signature's manifest does not hold one `{SIGNATURE_MEDIA_TYPE}` layer")),
        }
    }
}

/// Whose signatures a workspace accepts on the step packages its pipelines
/// use. The default requires none.
#[derive(Debug, Clone, Default)]
pub struct TrustPolicy {
    required: bool,
    keys: Vec<TrustedKey>,
}

#[derive(Debug, Clone)]
struct TrustedKey {
    /// Where the key came from, for messages (a file, or a config field).
    name: String,
    key: minisign_verify::PublicKey,
    /// Its public key file's comment (minisign's names the key ID).
    comment: Option<String>,
}

impl TrustedKey {
    fn described(&self) -> String {
        match &self.comment {
            Some(comment) => format!("{} ({comment})", self.name),
            None => self.name.clone(),
        }
    }
}

impl TrustPolicy {
    /// A policy that refuses any package without a valid signature by one
    /// of the keys it is given with [`TrustPolicy::trust`].
    pub fn requiring_signatures() -> Self {
        TrustPolicy { required: true, keys: Vec::new() }
    }

    /// Trusts the minisign public key `text` (a `.pub` file's text, or its
    /// base64 line alone); `name` says where it came from in messages.
    pub fn trust(mut self, name: impl Into<String>, text: &str) -> Result<Self, String> {
        let name = name.into();
        let text = text.trim();
        let (key, comment) = if text.starts_with("untrusted comment:") {
            let key = minisign_verify::PublicKey::decode(text);
            let comment = key
                .as_ref()
                .ok()
                .and_then(|key| key.untrusted_comment())
                .map(|comment| comment.trim_start_matches("untrusted comment:").trim().to_owned());
            (key, comment)
        } else {
            (minisign_verify::PublicKey::from_base64(text), None)
        };
        let key = key.map_err(|err| format!("{name} is not a minisign public key: {err}"))?;
        self.keys.push(TrustedKey { name, key, comment });
        Ok(self)
    }

    /// Whether a package needs a signature to be used.
    pub fn requires_signatures(&self) -> bool {
        self.required
    }

    /// The keys it trusts, as messages name them.
    fn trusted(&self) -> String {
        if self.keys.is_empty() {
            return "none (the policy lists no key)".to_owned();
        }
        self.keys.iter().map(TrustedKey::described).collect::<Vec<_>>().join(", ")
    }

    /// Checks `signature` (a `.minisig` text; `None`: the package is not
    /// signed) of the package named `package`, whose manifest has `digest`.
    /// A policy that requires no signature accepts anything.
    pub fn check(&self, package: &str, digest: &Sha256Digest, signature: Option<&str>) -> Result<(), String> {
        if !self.required {
            return Ok(());
        }
        let Some(text) = signature else {
            return Err(format!(
                "{package} ({digest}) is not signed, and this workspace uses only packages signed by a key it \
                 trusts: {}",
                self.trusted()
            ));
        };
        let signature = minisign_verify::Signature::decode(text)
            .map_err(|err| format!("the signature of {package} ({digest}) is not a minisign signature: {err}"))?;
        let message = signed_message(digest);
        let mut wrong_key = true;
        for trusted in &self.keys {
            match trusted.key.verify(&message, &signature, false) {
                Ok(()) => return Ok(()),
                Err(minisign_verify::Error::UnexpectedKeyId) => {}
                Err(_) => wrong_key = false,
            }
        }
        let signer = signature.untrusted_comment().trim_start_matches("untrusted comment:").trim();
        Err(if wrong_key {
            format!(
                "{package} ({digest}) is signed by a key this workspace does not trust (its signature says: \
                 {signer}); expected a signature by one of: {}",
                self.trusted()
            )
        } else {
            format!(
                "the signature of {package} by a trusted key does not match its digest {digest} (it was made for \
                 other bytes, or altered)"
            )
        })
    }
}
