//! The cluster key: 32 random bytes shared by every node, written as base64.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::KeyInit;
use rand::RngExt as _;

/// The 32-byte cluster key shared by every node (`--cluster-key`, base64).
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterKey([u8; 32]);

impl ClusterKey {
    /// A fresh random key (what `directory keygen` prints).
    pub fn generate() -> Self {
        let mut key = [0u8; 32];
        rand::rng().fill(&mut key);
        Self(key)
    }

    /// The key's standard base64 text.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    /// The raw key bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub(super) fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub(super) fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&self.0.into())
    }
}

impl fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterKey(<redacted>)")
    }
}

/// A cluster key that is not base64 of exactly 32 bytes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClusterKeyError {
    /// Not standard base64. Generate one with `directory keygen`.
    #[error("the cluster key is not valid base64")]
    NotBase64,
    /// Decoded to the wrong length. Generate one with `directory keygen`.
    #[error("the cluster key must decode to 32 bytes, got {0}")]
    WrongLength(usize),
}

impl FromStr for ClusterKey {
    type Err = ClusterKeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .map_err(|_| ClusterKeyError::NotBase64)?;
        let key: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| ClusterKeyError::WrongLength(bytes.len()))?;
        Ok(Self(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_key_parses_only_32_byte_base64() {
        let key = ClusterKey::generate();
        assert_eq!(key.to_base64().parse::<ClusterKey>().unwrap(), key);
        assert_eq!(
            "not base64!".parse::<ClusterKey>(),
            Err(ClusterKeyError::NotBase64)
        );
        assert_eq!(
            "AAAA".parse::<ClusterKey>(),
            Err(ClusterKeyError::WrongLength(3))
        );
        assert!(!format!("{key:?}").contains(&key.to_base64()));
    }
}
