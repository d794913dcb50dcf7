//! Keys and signatures for step packages, in minisign's formats
//! (`weir key generate`, `weir step sign`; see docs/packages.md).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use minisign::{KeyPair, SecretKey, SecretKeyBox};
use weir::package::{Sha256Digest, signed_message};

/// The environment variable holding the password of an encrypted secret key.
const PASSWORD_VAR: &str = "WEIR_KEY_PASSWORD";

/// `weir key`'s commands.
#[derive(clap::Subcommand)]
pub(crate) enum KeyCommand {
    /// Make a key pair for signing step packages: NAME.key (secret; encrypted
    /// with WEIR_KEY_PASSWORD when it is set) and NAME.pub (what a
    /// workspace's packages.trusted_keys lists).
    Generate {
        /// The path of the key files, without extension.
        name: PathBuf,
        /// Replace key files that exist.
        #[arg(long)]
        force: bool,
    },
}

/// Runs a `weir key` command.
pub(crate) fn run(command: KeyCommand) -> anyhow::Result<()> {
    let KeyCommand::Generate { name, force } = command;
    let secret_path = name.with_extension("key");
    let public_path = name.with_extension("pub");
    for path in [&secret_path, &public_path] {
        if path.exists() && !force {
            bail!("{} exists: keep it, or pass --force to replace it", path.display());
        }
    }
    let password = std::env::var(PASSWORD_VAR).ok().filter(|password| !password.is_empty());
    let encrypted = password.is_some();
    let KeyPair { pk, sk } = match password {
        Some(password) => KeyPair::generate_encrypted_keypair(Some(password)),
        None => KeyPair::generate_unencrypted_keypair(),
    }
    .context("generating a key pair")?;
    let key_id = key_id(sk.keynum());
    let comment = format!("weir secret key {key_id}");
    write_secret(&secret_path, &sk.to_box(Some(&comment))?.to_string())?;
    std::fs::write(&public_path, pk.to_box()?.to_string())
        .with_context(|| format!("writing {}", public_path.display()))?;
    println!("key {key_id}: secret key {}, public key {}", secret_path.display(), public_path.display());
    if !encrypted {
        eprintln!(
            "note: {} is not encrypted (set {PASSWORD_VAR} when generating to encrypt it); keep it private",
            secret_path.display()
        );
    }
    Ok(())
}

/// Writes a secret key readable by its owner only.
fn write_secret(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))
}

/// A key ID as minisign prints it.
fn key_id(keynum: &[u8]) -> String {
    let bytes: [u8; 8] = keynum.try_into().unwrap_or_default();
    format!("{:016X}", u64::from_le_bytes(bytes))
}

/// The secret key in `path`, decrypted with WEIR_KEY_PASSWORD if it is
/// encrypted.
fn secret_key(path: &Path) -> anyhow::Result<SecretKey> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading the secret key {}", path.display()))?;
    let boxed = SecretKeyBox::from_string(&text)
        .map_err(|err| anyhow::anyhow!("{} is not a minisign secret key: {err}", path.display()))?;
    let key = match std::env::var(PASSWORD_VAR).ok().filter(|password| !password.is_empty()) {
        Some(password) => boxed.into_secret_key(Some(password)),
        None => boxed.into_unencrypted_secret_key(),
    };
    key.map_err(|err| {
        anyhow::anyhow!("{} cannot sign: {err} (an encrypted key needs its password in {PASSWORD_VAR})", path.display())
    })
}

/// A `.minisig` text signing the package `named` whose manifest has
/// `digest`, with the secret key in `key`; and the key's ID.
pub(crate) fn sign(key: &Path, digest: &Sha256Digest, named: &str) -> anyhow::Result<(String, String)> {
    let secret = secret_key(key)?;
    let key_id = key_id(secret.keynum());
    let trusted = format!("weir step package {named} {digest}");
    let untrusted = format!("signature from weir key {key_id}");
    let signature = minisign::sign(None, &secret, signed_message(digest).as_slice(), Some(&trusted), Some(&untrusted))
        .with_context(|| format!("signing with {}", key.display()))?;
    Ok((signature.into_string(), key_id))
}
