//! The ACL file: its JSON format, its validation, and the creation of tokens.
//!
//! ```json
//! {
//!   "anonymous": ["read:*"],
//!   "tokens": [
//!     {
//!       "id": "5c0e8a1f9b2d7e43",
//!       "name": "billing peers",
//!       "secret_sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
//!       "rules": ["write:billing", "read:*"]
//!     }
//!   ]
//! }
//! ```
//!
//! - `anonymous` (optional, default `[]`): the rules of a request without a token. With the
//!   default, such a request may only call `GET /v1/health`.
//! - `tokens`: each with a public `id` (16 hex digits, shown in logs and the audit trail), a
//!   human `name`, the SHA-256 of its secret (64 hex digits) and its `rules`.
//!
//! Unknown fields are errors (a typo must not silently drop a rule). The secret itself is
//! never stored: a plain SHA-256 is enough because secrets are 32 random bytes — there is no
//! dictionary to try and 2^256 guesses to make, so a slow password hash (argon2, bcrypt)
//! would add latency to every request and no security.

use std::collections::HashSet;
use std::path::Path;

use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::rules::{Rule, RuleError};

/// Prefix of every token secret, so secret scanners and humans recognise one.
pub const SECRET_PREFIX: &str = "dirtok_";

/// The parsed ACL file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclFile {
    /// Rules of requests without a token.
    #[serde(default)]
    pub anonymous: Vec<Rule>,
    /// The tokens.
    #[serde(default)]
    pub tokens: Vec<TokenEntry>,
}

/// One token as stored in the file (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// Public id: 16 hex digits, logged with every write made with the token.
    pub id: String,
    /// What the token is for (free text).
    pub name: String,
    /// SHA-256 of the secret, 64 lowercase hex digits.
    pub secret_sha256: String,
    /// What the token may do.
    pub rules: Vec<Rule>,
}

/// Why an ACL file could not be used. On a reload, the node keeps its previous rules.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AclFileError {
    /// The file cannot be read (missing, no permission). Remedy: fix the path or rights.
    #[error("cannot read the ACL file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid JSON of the documented shape (this includes a malformed rule).
    #[error("invalid ACL file {path}: {message}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong, with line and column.
        message: String,
    },
    /// The JSON is well formed but a token is inconsistent (bad id or hash, duplicates).
    #[error("invalid ACL file {path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The file cannot be written (token creation). Nothing changed.
    #[error("cannot write the ACL file {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A rule given to `acl token create` does not parse.
    #[error(transparent)]
    Rule(#[from] RuleError),
}

impl AclFile {
    /// Reads and validates the file at `path`; also returns the SHA-256 of its bytes.
    pub fn load(path: &Path) -> Result<(Self, [u8; 32]), AclFileError> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| AclFileError::Read {
            path: shown.clone(),
            source,
        })?;
        let file: Self = serde_json::from_slice(&bytes).map_err(|e| AclFileError::Format {
            path: shown.clone(),
            message: e.to_string(),
        })?;
        file.validate().map_err(|message| AclFileError::Invalid {
            path: shown,
            message,
        })?;
        Ok((file, Sha256::digest(&bytes).into()))
    }

    /// Checks what the JSON shape cannot: id and hash formats, no duplicates.
    fn validate(&self) -> Result<(), String> {
        let mut ids = HashSet::new();
        let mut hashes = HashSet::new();
        for token in &self.tokens {
            if !is_hex(&token.id, 16) {
                return Err(format!("token id {:?} is not 16 hex digits", token.id));
            }
            if !is_hex(&token.secret_sha256, 64) {
                return Err(format!(
                    "token {}: secret_sha256 is not 64 lowercase hex digits",
                    token.id
                ));
            }
            if !ids.insert(&token.id) {
                return Err(format!("token id {} appears twice", token.id));
            }
            if !hashes.insert(&token.secret_sha256) {
                return Err(format!("token {}: the same secret is used twice", token.id));
            }
        }
        Ok(())
    }

    /// Adds a new token with `name` and `rules` and returns it with its secret (to show
    /// once; only its hash is kept).
    pub fn create_token(&mut self, name: &str, rules: Vec<Rule>) -> (TokenEntry, String) {
        let secret = format!(
            "{SECRET_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
        );
        let entry = TokenEntry {
            id: hex::encode(rand::random::<[u8; 8]>()),
            name: name.to_owned(),
            secret_sha256: hex::encode(secret_hash(&secret)),
            rules,
        };
        self.tokens.push(entry.clone());
        (entry, secret)
    }

    /// Writes the file to `path` atomically (a temporary file renamed over it), readable
    /// by its owner only.
    pub fn save(&self, path: &Path) -> Result<(), AclFileError> {
        let write_err = |source| AclFileError::Write {
            path: path.display().to_string(),
            source,
        };
        let mut text =
            serde_json::to_string_pretty(self).map_err(|e| write_err(std::io::Error::other(e)))?;
        text.push('\n');
        let tmp = path.with_extension("tmp");
        write_private(&tmp, text.as_bytes()).map_err(write_err)?;
        std::fs::rename(&tmp, path).map_err(write_err)
    }
}

/// The SHA-256 of a presented secret, as stored in the file.
pub fn secret_hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

fn is_hex(text: &str, len: usize) -> bool {
    text.len() == len
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("acl-{}-{name}.json", std::process::id()))
    }

    #[test]
    fn a_created_token_is_stored_by_hash_and_survives_a_save_and_load() {
        let path = temp_path("roundtrip");
        let mut file = AclFile::default();
        let (entry, secret) = file.create_token("billing", vec!["write:billing".parse().unwrap()]);
        assert!(secret.starts_with(SECRET_PREFIX) && secret.len() > 40);
        file.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&secret), "the secret is never written");
        let (loaded, hash) = AclFile::load(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(loaded.tokens, std::slice::from_ref(&entry));
        assert_eq!(entry.secret_sha256, hex::encode(secret_hash(&secret)));
        assert_eq!(hash, <[u8; 32]>::from(Sha256::digest(text.as_bytes())));
    }

    #[test]
    fn inconsistent_files_are_rejected_with_the_reason() {
        let path = temp_path("bad");
        let token = r#"{"id":"0123456789abcdef","name":"a","secret_sha256":"HASH","rules":[]}"#;
        let good_hash = "a".repeat(64);
        let cases = [
            ("{", "EOF"),
            (r#"{"anonymus":[]}"#, "unknown field"),
            (r#"{"anonymous":["root"]}"#, "invalid rule"),
            (
                &format!(r#"{{"tokens":[{}]}}"#, token.replace("HASH", "xyz")),
                "secret_sha256",
            ),
            (
                &format!(
                    r#"{{"tokens":[{0},{0}]}}"#,
                    token.replace("HASH", &good_hash)
                ),
                "appears twice",
            ),
        ];
        for (text, expected) in cases {
            std::fs::write(&path, text).unwrap();
            let err = AclFile::load(&path).unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            AclFile::load(&path),
            Err(AclFileError::Read { .. })
        ));
    }
}
