//! Step packages in OCI registries (`weir step push`, `weir step pull`),
//! through `oci-client`: HTTPS, except for a registry on loopback or one
//! named with `--insecure`; credentials from flags or Docker's config file.

use std::path::PathBuf;

use anyhow::{Context, bail};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use weir::package::{BlobRef, MANIFEST_MEDIA_TYPE, Packed, Sha256Digest, SignatureArtifact, signature_tag};

/// How to reach registries: given on the command line.
#[derive(clap::Args, Clone, Default)]
pub(crate) struct RegistryArgs {
    /// Talk plain HTTP to this registry (HOST[:PORT]); may be repeated.
    /// Registries on loopback always use HTTP.
    #[arg(long, value_name = "REGISTRY", env = INSECURE_VAR, value_delimiter = ',')]
    insecure: Vec<String>,
    /// The user to log in as; the password is read from
    /// WEIR_REGISTRY_PASSWORD. Without it, Docker's config file
    /// ($DOCKER_CONFIG/config.json or ~/.docker/config.json) is used, else
    /// the registry is reached anonymously.
    #[arg(long, env = USERNAME_VAR)]
    username: Option<String>,
}

const INSECURE_VAR: &str = "WEIR_INSECURE_REGISTRIES";
const USERNAME_VAR: &str = "WEIR_REGISTRY_USERNAME";

impl RegistryArgs {
    /// The settings the environment gives (for commands that load a
    /// manifest, which pull the registry packages it uses).
    pub(crate) fn from_env() -> Self {
        let insecure = std::env::var(INSECURE_VAR).unwrap_or_default();
        RegistryArgs {
            insecure: insecure.split(',').filter(|name| !name.is_empty()).map(str::to_owned).collect(),
            username: std::env::var(USERNAME_VAR).ok(),
        }
    }
}

/// Pulls the packages a manifest uses (see `weir::package::Packages`).
pub(crate) struct Puller {
    args: RegistryArgs,
    /// The only registries it pulls from, when limited.
    allowed: Option<Vec<String>>,
}

impl Puller {
    /// Pulls from any registry, reached as `args` say.
    pub(crate) fn new(args: RegistryArgs) -> Self {
        Puller { args, allowed: None }
    }

    /// Pulls only from `registries` (HOST[:PORT]).
    pub(crate) fn only_from(mut self, registries: Vec<String>) -> Self {
        self.allowed = Some(registries);
        self
    }

    /// A client for `reference`'s registry, if it may be reached.
    fn registry(&self, reference: &str) -> anyhow::Result<(Registry, Reference)> {
        let parsed = self::reference(reference)?;
        if let Some(allowed) = &self.allowed
            && !allowed.iter().any(|registry| registry == parsed.registry())
        {
            bail!(
                "{reference}: this server pulls packages only from {} (weir serve --registry)",
                if allowed.is_empty() { "no registry".to_owned() } else { allowed.join(", ") }
            );
        }
        Ok((Registry::new(&parsed, &self.args)?, parsed))
    }
}

impl weir::package::Fetch for Puller {
    fn fetch(&self, reference: &str) -> Result<Packed, String> {
        let pulled = self.registry(reference).and_then(|(registry, parsed)| registry.pull(&parsed));
        pulled.map_err(|err| format!("{err:#}"))
    }

    fn signature(&self, reference: &str, digest: &Sha256Digest) -> Result<Option<String>, String> {
        let pulled = self.registry(reference).and_then(|(registry, parsed)| registry.pull_signature(&parsed, digest));
        pulled.map_err(|err| format!("{err:#}"))
    }
}

/// A client for the registry of one reference.
pub(crate) struct Registry {
    client: Client,
    auth: RegistryAuth,
    runtime: tokio::runtime::Runtime,
}

/// A parsed package reference (`registry/repository:tag` or `…@sha256:…`).
pub(crate) fn reference(text: &str) -> anyhow::Result<Reference> {
    let reference: Reference =
        text.parse().with_context(|| format!("`{text}` is not a registry reference (REGISTRY/REPOSITORY:TAG)"))?;
    if !text.starts_with(reference.registry()) {
        bail!("`{text}` names no registry: write it in full, e.g. registry.example.com/{text}");
    }
    Ok(reference)
}

impl Registry {
    /// A client for `reference`'s registry.
    pub(crate) fn new(reference: &Reference, args: &RegistryArgs) -> anyhow::Result<Self> {
        // rustls's process-wide provider; a second install finds the first.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let registry = reference.resolve_registry().to_owned();
        let plain = args.insecure.contains(&registry) || on_loopback(&registry);
        let protocol = if plain { ClientProtocol::HttpsExcept(vec![registry.clone()]) } else { ClientProtocol::Https };
        let client = Client::new(ClientConfig { protocol, ..ClientConfig::default() });
        let auth = credentials(&registry, args)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the registry client's runtime")?;
        Ok(Registry { client, auth, runtime })
    }

    /// Pushes `packed` as `reference`: its blobs the registry lacks, then
    /// its manifest. Returns the manifest's digest.
    pub(crate) fn push(&self, packed: &Packed, reference: &Reference) -> anyhow::Result<Sha256Digest> {
        let manifest = &packed.manifest;
        let mut blobs = Vec::new();
        for blob in std::iter::once(&manifest.config).chain(&manifest.layers) {
            blobs.push((&blob.digest, packed.blob(&blob.digest).context("a packed blob is missing")?));
        }
        let manifest_bytes = packed.blob(&packed.digest).context("the packed manifest is missing")?;
        self.push_artifact(reference, &blobs, manifest_bytes)?;
        Ok(packed.digest.clone())
    }

    /// Pushes the blobs of an artifact the registry lacks, then its
    /// manifest, as `target`.
    fn push_artifact(
        &self,
        target: &Reference,
        blobs: &[(&Sha256Digest, &[u8])],
        manifest: &[u8],
    ) -> anyhow::Result<()> {
        let whole = target.whole();
        self.runtime.block_on(async {
            self.client
                .auth(target, &self.auth, RegistryOperation::Push)
                .await
                .with_context(|| format!("logging in to push {whole}"))?;
            for (digest, bytes) in blobs {
                let digest = digest.to_string();
                if self.client.blob_exists(target, &digest).await.unwrap_or(false) {
                    continue;
                }
                self.client
                    .push_blob(target, bytes.to_vec(), &digest)
                    .await
                    .with_context(|| format!("pushing blob {digest} to {whole}"))?;
            }
            self.client
                .push_manifest_raw(target, manifest.to_vec(), MANIFEST_MEDIA_TYPE.parse()?)
                .await
                .with_context(|| format!("pushing the manifest of {whole}"))?;
            Ok(())
        })
    }

    /// The descriptor of the manifest `reference` names (what a signature's
    /// `subject` points at).
    pub(crate) fn manifest(&self, reference: &Reference) -> anyhow::Result<BlobRef> {
        let (bytes, _) = self
            .runtime
            .block_on(self.client.pull_manifest_raw(reference, &self.auth, &[MANIFEST_MEDIA_TYPE]))
            .with_context(|| format!("pulling the manifest of {}", reference.whole()))?;
        Ok(BlobRef::of(MANIFEST_MEDIA_TYPE, &bytes))
    }

    /// Pushes `signature` as the signature of the package whose manifest is
    /// `subject`, in `reference`'s repository (tagged by the package's
    /// digest). Returns the tag.
    pub(crate) fn push_signature(
        &self,
        reference: &Reference,
        subject: BlobRef,
        signature: &str,
    ) -> anyhow::Result<String> {
        let tag = signature_tag(&subject.digest);
        let target = signature_reference(reference, &subject.digest);
        let artifact = SignatureArtifact::new(signature, subject);
        let blobs: Vec<(&Sha256Digest, &[u8])> =
            artifact.blobs.iter().map(|(digest, bytes)| (digest, bytes.as_slice())).collect();
        self.push_artifact(&target, &blobs, &artifact.manifest)?;
        Ok(tag)
    }

    /// The signature kept for the package with `digest` in `reference`'s
    /// repository, checked against its digest; `None` when there is none.
    pub(crate) fn pull_signature(
        &self,
        reference: &Reference,
        digest: &Sha256Digest,
    ) -> anyhow::Result<Option<String>> {
        let target = signature_reference(reference, digest);
        let whole = target.whole();
        self.runtime.block_on(async {
            let bytes = match self.client.pull_manifest_raw(&target, &self.auth, &[MANIFEST_MEDIA_TYPE]).await {
                Ok((bytes, _)) => bytes,
                Err(err) if not_found(&err) => return Ok(None),
                Err(err) => return Err(err).with_context(|| format!("pulling the signature {whole}")),
            };
            let layer = SignatureArtifact::layer(&bytes).map_err(|why| anyhow::anyhow!("{whole}: {why}"))?;
            let mut text = Vec::new();
            self.client
                .pull_blob(&target, layer.digest.to_string().as_str(), &mut text)
                .await
                .with_context(|| format!("pulling the signature {whole}"))?;
            if Sha256Digest::of(&text) != layer.digest {
                bail!("{whole}: the registry sent a signature that does not match its digest {}", layer.digest);
            }
            String::from_utf8(text).map(Some).map_err(|_| anyhow::anyhow!("{whole}: the signature is not text"))
        })
    }

    /// Pulls the package `reference` names, every blob checked against its
    /// digest (and the manifest against the reference's digest, if it has
    /// one).
    pub(crate) fn pull(&self, reference: &Reference) -> anyhow::Result<Packed> {
        let whole = reference.whole();
        self.runtime.block_on(async {
            let (manifest_bytes, _) = self
                .client
                .pull_manifest_raw(reference, &self.auth, &[MANIFEST_MEDIA_TYPE])
                .await
                .with_context(|| format!("pulling the manifest of {whole}"))?;
            let manifest_bytes = manifest_bytes.to_vec();
            let actual = Sha256Digest::of(&manifest_bytes);
            if let Some(pinned) = reference.digest()
                && pinned != actual.to_string()
            {
                bail!("{whole}: the registry sent a manifest whose digest is {actual}");
            }
            let manifest: weir::package::ImageManifest = serde_json::from_slice(&manifest_bytes)
                .with_context(|| format!("{whole}: its manifest is not an OCI image manifest"))?;
            let mut blobs = Vec::new();
            for blob in std::iter::once(&manifest.config).chain(&manifest.layers) {
                let mut bytes = Vec::new();
                self.client
                    .pull_blob(reference, blob.digest.to_string().as_str(), &mut bytes)
                    .await
                    .with_context(|| format!("pulling blob {} ({}) of {whole}", blob.digest, blob.media_type))?;
                blobs.push(bytes);
            }
            Packed::assemble(manifest_bytes, blobs, reference.tag()).map_err(|why| anyhow::anyhow!("{whole}: {why}"))
        })
    }
}

/// Where the signature of the package with `digest` in `reference`'s
/// repository is tagged.
fn signature_reference(reference: &Reference, digest: &Sha256Digest) -> Reference {
    Reference::with_tag(reference.registry().to_owned(), reference.repository().to_owned(), signature_tag(digest))
}

/// Whether a registry's answer says the manifest asked for does not exist.
fn not_found(err: &OciDistributionError) -> bool {
    match err {
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::ServerError { code, .. } => *code == 404,
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().all(|error| {
            matches!(error.code, OciErrorCode::ManifestUnknown | OciErrorCode::NotFound | OciErrorCode::NameUnknown)
        }),
        _ => false,
    }
}

/// Whether `registry` (HOST[:PORT]) is on this machine.
fn on_loopback(registry: &str) -> bool {
    let host = match registry.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|byte| byte.is_ascii_digit()) => host,
        _ => registry,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The credentials for `registry`: `--username` and WEIR_REGISTRY_PASSWORD,
/// else Docker's config file, else none.
fn credentials(registry: &str, args: &RegistryArgs) -> anyhow::Result<RegistryAuth> {
    if let Some(username) = &args.username {
        let password = std::env::var("WEIR_REGISTRY_PASSWORD")
            .context("--username needs the password in the environment variable WEIR_REGISTRY_PASSWORD")?;
        return Ok(RegistryAuth::Basic(username.clone(), password));
    }
    let Some(config) = docker_config() else { return Ok(RegistryAuth::Anonymous) };
    let text = match std::fs::read_to_string(&config) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(RegistryAuth::Anonymous),
        Err(err) => return Err(err).with_context(|| format!("reading {}", config.display())),
    };
    let parsed: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", config.display()))?;
    let Some(encoded) = parsed["auths"][registry]["auth"].as_str() else { return Ok(RegistryAuth::Anonymous) };
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .with_context(|| format!("{}: auths.\"{registry}\".auth is not base64 of USER:PASSWORD", config.display()))?;
    let (user, password) = decoded
        .split_once(':')
        .with_context(|| format!("{}: auths.\"{registry}\".auth is not USER:PASSWORD", config.display()))?;
    Ok(RegistryAuth::Basic(user.to_owned(), password.to_owned()))
}

/// Docker's config file.
fn docker_config() -> Option<PathBuf> {
    match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) => Some(PathBuf::from(dir).join("config.json")),
        None => std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker/config.json")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_are_recognised_with_or_without_a_port() {
        for registry in ["localhost", "localhost:5000", "127.0.0.1:5000", "[::1]:5000", "127.1.2.3"] {
            assert!(on_loopback(registry), "{registry}");
        }
        for registry in ["registry.example.com", "10.0.0.1:5000", "localhost.example.com:5000"] {
            assert!(!on_loopback(registry), "{registry}");
        }
    }

    #[test]
    fn a_reference_must_name_its_registry() {
        assert!(reference("localhost:5000/ml/upper:1.0").is_ok());
        let error = reference("ml/upper:1.0").err().unwrap().to_string();
        assert!(error.contains("names no registry"), "{error}");
    }
}
