//! Bearer tokens: `weir_<id>_<secret>`. Only the BLAKE3 hash of the secret
//! is stored; the id finds the row, the hash compares in constant time. A
//! secret is 256 random bits, so a fast hash is enough (a password hash
//! like Argon2 slows guessing of low-entropy secrets; these have none to
//! guess).

use std::path::Path;

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use crate::ServerError;
use crate::db::{Database, now};

const PREFIX: &str = "weir_";

/// Who a token acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's id (not secret; what `weir token revoke` takes).
    pub token: String,
    /// The tenant whose pipelines, runs and artifacts it sees.
    pub tenant: String,
    /// Whether it may also manage tokens.
    pub admin: bool,
}

/// A token as `weir token list` and `GET /v1/tokens` show it (never the secret).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TokenInfo {
    /// The token's id.
    pub id: String,
    /// Its tenant.
    pub tenant: String,
    /// Whether it is an admin token.
    pub admin: bool,
    /// When it was created (seconds since the Unix epoch).
    pub created: f64,
    /// When it was revoked, if it was.
    pub revoked: Option<f64>,
}

/// The tokens of a workspace's server.
pub struct Tokens {
    db: std::sync::Arc<Database>,
}

impl Tokens {
    /// The tokens of the workspace at `root` (for the `weir token` commands).
    pub fn open(root: &Path) -> Result<Tokens, ServerError> {
        Ok(Tokens { db: std::sync::Arc::new(Database::open(root)?) })
    }

    pub(crate) fn with_database(db: std::sync::Arc<Database>) -> Tokens {
        Tokens { db }
    }

    /// Creates a token for `tenant` and returns its text: shown once, never
    /// stored. (The caller checks that the tenant exists.)
    pub fn create(&self, tenant: &str, admin: bool) -> Result<(TokenInfo, String), ServerError> {
        let id = random_hex(6)?;
        let secret = random_hex(32)?;
        let hash = blake3::hash(secret.as_bytes());
        let created = now();
        self.db.with(|conn| {
            conn.execute(
                "INSERT INTO tokens (id, hash, tenant, admin, created) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, hash.as_bytes().as_slice(), tenant, admin, created],
            )
        })?;
        let info = TokenInfo { id: id.clone(), tenant: tenant.to_owned(), admin, created, revoked: None };
        Ok((info, format!("{PREFIX}{id}_{secret}")))
    }

    /// Every token, newest first.
    pub fn list(&self) -> Result<Vec<TokenInfo>, ServerError> {
        self.db.with(|conn| {
            let mut statement =
                conn.prepare("SELECT id, tenant, admin, created, revoked FROM tokens ORDER BY created DESC")?;
            let rows = statement.query_map([], |row| {
                Ok(TokenInfo {
                    id: row.get(0)?,
                    tenant: row.get(1)?,
                    admin: row.get(2)?,
                    created: row.get(3)?,
                    revoked: row.get(4)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Revokes token `id`: every later request with it is refused. Returns
    /// whether such a token existed (revoking twice is no error).
    pub fn revoke(&self, id: &str) -> Result<bool, ServerError> {
        let changed = self.db.with(|conn| {
            conn.execute("UPDATE tokens SET revoked = coalesce(revoked, ?2) WHERE id = ?1", params![id, now()])
        })?;
        Ok(changed > 0)
    }

    /// Who `text` (a token as created) acts for, or `None` for a malformed,
    /// unknown or revoked token.
    pub fn authenticate(&self, text: &str) -> Result<Option<Caller>, ServerError> {
        let Some((id, secret)) = text.strip_prefix(PREFIX).and_then(|rest| rest.split_once('_')) else {
            return Ok(None);
        };
        let row = self.db.with(|conn| {
            conn.query_row("SELECT hash, tenant, admin FROM tokens WHERE id = ?1 AND revoked IS NULL", [id], |row| {
                Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, String>(1)?, row.get::<_, bool>(2)?))
            })
            .optional()
        })?;
        let Some((stored, tenant, admin)) = row else { return Ok(None) };
        let Ok(stored) = <[u8; 32]>::try_from(stored.as_slice()) else { return Ok(None) };
        // `blake3::Hash` compares in constant time.
        if blake3::Hash::from(stored) != blake3::hash(secret.as_bytes()) {
            return Ok(None);
        }
        Ok(Some(Caller { token: id.to_owned(), tenant, admin }))
    }
}

/// `bytes` random bytes as lowercase hex.
pub(crate) fn random_hex(bytes: usize) -> Result<String, ServerError> {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer).map_err(|err| ServerError::Io {
        context: "drawing random bytes".into(),
        source: std::io::Error::other(err.to_string()),
    })?;
    Ok(buffer.iter().map(|byte| format!("{byte:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_authenticates_until_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = Tokens::open(dir.path()).unwrap();
        let (info, text) = tokens.create("alice", false).unwrap();
        let caller = tokens.authenticate(&text).unwrap().expect("a fresh token authenticates");
        assert_eq!((caller.tenant.as_str(), caller.admin, caller.token.as_str()), ("alice", false, info.id.as_str()));
        // A wrong secret with the right id, and garbage, are refused.
        let forged = format!("{}{}", &text[..text.len() - 1], if text.ends_with('0') { '1' } else { '0' });
        assert_eq!(tokens.authenticate(&forged).unwrap(), None);
        assert_eq!(tokens.authenticate("Bearer nonsense").unwrap(), None);
        assert!(tokens.revoke(&info.id).unwrap());
        assert_eq!(tokens.authenticate(&text).unwrap(), None);
        assert!(!tokens.revoke("nope").unwrap());
        let listed = tokens.list().unwrap();
        assert!(listed[0].revoked.is_some());
        // Only the hash is stored: the secret appears nowhere in the database.
        let secret = text.rsplit('_').next().unwrap();
        let bytes = std::fs::read(dir.path().join(crate::db::DATABASE)).unwrap();
        let wal = std::fs::read(dir.path().join("server.db-wal")).unwrap_or_default();
        for file in [bytes, wal] {
            assert!(!file.windows(secret.len()).any(|window| window == secret.as_bytes()));
        }
    }
}
