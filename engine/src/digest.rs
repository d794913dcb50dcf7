//! Content digests: `blake3:<hex>` names for artifacts and cache keys.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The BLAKE3 digest of some content, written `blake3:<64 hex digits>`.
///
/// A file artifact's digest is the BLAKE3 hash of its bytes; a directory
/// artifact's digest is the hash of its canonical tree encoding (see
/// [`Artifact`](crate::Artifact)).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest([u8; 32]);

/// The prefix of every digest's text form.
const PREFIX: &str = "blake3:";

impl Digest {
    /// Digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    /// Wraps a raw 32-byte BLAKE3 hash.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw hash bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64 lowercase hex digits, without the `blake3:` prefix.
    pub fn hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }

    /// Parses a full digest (`blake3:<hex>`) or bare hex of 64 digits.
    pub fn parse(text: &str) -> Result<Self, ParseDigestError> {
        let hex = text.strip_prefix(PREFIX).unwrap_or(text);
        blake3::Hash::from_hex(hex).map(|hash| Self(*hash.as_bytes())).map_err(|_| ParseDigestError(text.to_owned()))
    }
}

impl From<blake3::Hash> for Digest {
    fn from(hash: blake3::Hash) -> Self {
        Self(*hash.as_bytes())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A string that is not a digest.
#[derive(Debug, Clone, thiserror::Error)]
#[error("`{0}` is not a digest: expected `blake3:` followed by 64 hex digits")]
pub struct ParseDigestError(String);

impl FromStr for Digest {
    type Err = ParseDigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(DigestVisitor)
    }
}

/// Parses a digest from the text a deserializer lends, without copying it
/// into a `String` first (a reused run decodes thousands).
struct DigestVisitor;

impl serde::de::Visitor<'_> for DigestVisitor {
    type Value = Digest;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a digest: `blake3:` and 64 hex digits")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Digest, E> {
        Digest::parse(text).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips() {
        let digest = Digest::of(b"hello");
        let text = digest.to_string();
        assert_eq!(text, "blake3:ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f");
        assert_eq!(Digest::parse(&text).unwrap(), digest);
        assert_eq!(Digest::parse(&digest.hex()).unwrap(), digest);
    }

    #[test]
    fn rejects_malformed_text() {
        for bad in ["", "blake3:", "blake3:xyz", "sha256:00", &"a".repeat(63)] {
            let err = Digest::parse(bad).unwrap_err();
            assert!(err.to_string().contains("is not a digest"), "{bad}: {err}");
        }
    }
}
