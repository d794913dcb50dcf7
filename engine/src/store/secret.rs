//! The workspace's secret: 32 random bytes in `secret.key`, readable only by
//! the workspace's owner. It keys the MAC that authenticates compiled code
//! on disk, so a file placed under `compiled/` by anyone who does not know
//! it is never loaded as code. No tenant path reaches the workspace, so no
//! tenant can read it.

use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;

use super::Store;
use crate::{Error, Result};

/// The file holding the secret, in the workspace directory.
const SECRET_FILE: &str = "secret.key";
const SECRET_LEN: usize = 32;

impl Store {
    /// The workspace's secret key, created on first use.
    pub(crate) fn secret(&self) -> Result<[u8; SECRET_LEN]> {
        let path = self.root().join(SECRET_FILE);
        let context = || format!("reading the workspace secret {}", path.display());
        match std::fs::read(&path) {
            Ok(bytes) => bytes
                .try_into()
                .map_err(|_| Error::Corrupt { what: SECRET_FILE.into(), reason: "it is not 32 bytes".into() }),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                let mut secret = [0u8; SECRET_LEN];
                getrandom::fill(&mut secret).map_err(|err| Error::io(context())(io::Error::other(err.to_string())))?;
                let temp = path.with_extension(format!("key.{}.tmp", std::process::id()));
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&temp)
                    .map_err(|e| Error::io(context())(e))?;
                file.write_all(&secret).and_then(|()| file.sync_all()).map_err(|e| Error::io(context())(e))?;
                // Two processes creating it at once: the first link wins, both use its bytes.
                let linked = std::fs::hard_link(&temp, &path);
                let _ = std::fs::remove_file(&temp);
                match linked {
                    Ok(()) => Ok(secret),
                    Err(err) if err.kind() == io::ErrorKind::AlreadyExists => self.secret(),
                    Err(err) => Err(Error::io(context())(err)),
                }
            }
            Err(err) => Err(Error::io(context())(err)),
        }
    }
}
