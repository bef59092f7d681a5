//! The cluster keyring: the keys a node accepts gossip under, for rotation without downtime.
//!
//! A node seals every datagram and stream frame with the ring's **primary** key and opens
//! with **any** key in the ring (primary first). Rotating the cluster key is then a rolling
//! procedure in three passes, each finished on every node before the next starts (SIGHUP
//! after each edit of the keyring file; docs/design.md and deploy/README.md spell it out):
//! 1. add the new key as a secondary line — every node now opens both;
//! 2. make the new key the primary (first line) — nodes seal with it, and peers that are
//!    still on the old primary are still understood;
//! 3. remove the old key.
//!
//! File format (`--cluster-keyring`): one key per line (base64 of 32 bytes, as printed by
//! `directory keygen`), the first one primary; blank lines and lines starting with `#` are
//! ignored. At most [`MAX_KEYS`] keys.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use chacha20poly1305::XChaCha20Poly1305;
use sha2::{Digest, Sha256};

use super::key::{ClusterKey, ClusterKeyError};

/// Most keys a ring holds. Every packet that fails to open is tried against each key, so
/// the ring stays small; a rotation needs two.
pub const MAX_KEYS: usize = 8;

/// A validated set of keys: one primary and the secondaries (no duplicates).
#[derive(Clone, PartialEq, Eq)]
pub struct Keys {
    primary: ClusterKey,
    secondary: Vec<ClusterKey>,
}

impl Keys {
    /// One key, primary, no secondaries.
    pub fn single(primary: ClusterKey) -> Self {
        Self {
            primary,
            secondary: Vec::new(),
        }
    }

    /// `primary` plus `secondary` (duplicates of any key are dropped).
    pub fn new(primary: ClusterKey, secondary: Vec<ClusterKey>) -> Result<Self, KeyringError> {
        let mut keys = Self::single(primary);
        for key in secondary {
            if key != keys.primary && !keys.secondary.contains(&key) {
                keys.secondary.push(key);
            }
        }
        if keys.len() > MAX_KEYS {
            return Err(KeyringError::TooManyKeys(keys.len()));
        }
        Ok(keys)
    }

    /// Parses the keyring file format (module docs).
    pub fn parse(text: &str) -> Result<Self, KeyringError> {
        let mut keys = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let key = line
                .parse::<ClusterKey>()
                .map_err(|source| KeyringError::BadKey {
                    line: index + 1,
                    source,
                })?;
            keys.push(key);
        }
        let mut keys = keys.into_iter();
        let primary = keys.next().ok_or(KeyringError::Empty)?;
        Self::new(primary, keys.collect())
    }

    /// Number of keys, primary included.
    pub fn len(&self) -> usize {
        1 + self.secondary.len()
    }

    /// Always false: a ring has a primary.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Short public id of the primary key (for logs).
    pub fn primary_id(&self) -> KeyId {
        KeyId::of(&self.primary)
    }

    fn ciphers(&self) -> Ciphers {
        Ciphers {
            all: std::iter::once(&self.primary)
                .chain(&self.secondary)
                .map(ClusterKey::cipher)
                .collect(),
        }
    }
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Keys(primary {}, {} in all)",
            self.primary_id(),
            self.len()
        )
    }
}

/// The first 4 bytes of a key's SHA-256 in hex: names a key in logs without revealing it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeyId([u8; 4]);

impl KeyId {
    fn of(key: &ClusterKey) -> Self {
        let digest = Sha256::digest(key.as_bytes());
        Self([digest[0], digest[1], digest[2], digest[3]])
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a keyring could not be used. On a reload, the previous keys stay in use.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyringError {
    /// The file could not be read (missing, permissions).
    #[error("cannot read the keyring file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A line is not a key. Generate keys with `directory keygen`.
    #[error("keyring line {line}: {source}")]
    BadKey {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        source: ClusterKeyError,
    },
    /// The file holds no key: gossip would have nothing to seal with.
    #[error("the keyring holds no key")]
    Empty,
    /// More than [`MAX_KEYS`] distinct keys: remove old ones.
    #[error("the keyring holds {0} keys; at most {MAX_KEYS} are allowed")]
    TooManyKeys(usize),
    /// A reload was asked of a ring that was not loaded from a file.
    #[error("this keyring was not loaded from a file")]
    NoFile,
}

/// The ciphers of one key set, primary first.
pub(super) struct Ciphers {
    all: Vec<XChaCha20Poly1305>,
}

impl Ciphers {
    /// The cipher that seals.
    pub(super) fn primary(&self) -> &XChaCha20Poly1305 {
        // `Keys` always has a primary, so `all` is never empty.
        &self.all[0]
    }

    /// Every cipher that may open, primary first.
    pub(super) fn all(&self) -> &[XChaCha20Poly1305] {
        &self.all
    }
}

/// The keys in force, shared by the driver and every stream session of a node; replacing
/// them (a reload) takes effect on the next packet. Cheap to clone.
#[derive(Clone)]
pub struct Keyring {
    current: Arc<RwLock<Arc<Ciphers>>>,
    file: Option<Arc<Path>>,
}

impl Keyring {
    /// A ring of fixed keys (no file to reload from).
    pub fn new(keys: &Keys) -> Self {
        Self {
            current: Arc::new(RwLock::new(Arc::new(keys.ciphers()))),
            file: None,
        }
    }

    /// Loads the keyring file at `path`; [`Self::reload`] reads it again.
    pub fn load(path: &Path) -> Result<(Self, Keys), KeyringError> {
        let keys = read_file(path)?;
        let ring = Self {
            file: Some(Arc::from(path)),
            ..Self::new(&keys)
        };
        Ok((ring, keys))
    }

    /// Reads the file again and swaps the keys in; on error the previous keys stay.
    pub fn reload(&self) -> Result<Keys, KeyringError> {
        let path = self.file.as_deref().ok_or(KeyringError::NoFile)?;
        let keys = read_file(path)?;
        self.replace(&keys);
        Ok(keys)
    }

    /// The file this ring was loaded from.
    pub fn path(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Puts `keys` in force for every sealer and opener sharing this ring.
    pub fn replace(&self, keys: &Keys) {
        let ciphers = Arc::new(keys.ciphers());
        // A poisoned lock only means a panic elsewhere while swapping an `Arc`: the value
        // inside is still a whole `Arc`, so it is safe to keep using.
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = ciphers;
    }

    pub(super) fn ciphers(&self) -> Arc<Ciphers> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl From<ClusterKey> for Keyring {
    fn from(key: ClusterKey) -> Self {
        Self::new(&Keys::single(key))
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("keys", &self.ciphers().all.len())
            .field("file", &self.file)
            .finish()
    }
}

fn read_file(path: &Path) -> Result<Keys, KeyringError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyringError::Read {
        path: path.to_owned(),
        source,
    })?;
    Keys::parse(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_of(keys: &[&ClusterKey]) -> String {
        let mut text = String::from("# primary first\n\n");
        for k in keys {
            text.push_str(&k.to_base64());
            text.push('\n');
        }
        text
    }

    #[test]
    fn the_first_key_is_primary_and_duplicates_collapse() {
        let (a, b) = (ClusterKey::generate(), ClusterKey::generate());
        let keys = Keys::parse(&file_of(&[&a, &b, &a, &b])).unwrap();
        assert_eq!(keys, Keys::new(a.clone(), vec![b]).unwrap());
        assert_eq!(keys.len(), 2);
        assert_eq!(keys.primary_id(), Keys::single(a).primary_id());
    }

    #[test]
    fn bad_files_are_refused_with_the_line() {
        assert!(matches!(
            Keys::parse("# nothing\n"),
            Err(KeyringError::Empty)
        ));
        let good = ClusterKey::generate().to_base64();
        assert!(matches!(
            Keys::parse(&format!("{good}\nnot-a-key\n")),
            Err(KeyringError::BadKey { line: 2, .. })
        ));
        let many: Vec<ClusterKey> = (0..=MAX_KEYS).map(|_| ClusterKey::generate()).collect();
        let refs: Vec<&ClusterKey> = many.iter().collect();
        assert!(matches!(
            Keys::parse(&file_of(&refs)),
            Err(KeyringError::TooManyKeys(9))
        ));
    }

    #[test]
    fn a_bad_reload_keeps_the_previous_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyring");
        let (a, b) = (ClusterKey::generate(), ClusterKey::generate());
        std::fs::write(&path, file_of(&[&a])).unwrap();
        let (ring, keys) = Keyring::load(&path).unwrap();
        assert_eq!(keys.len(), 1);
        std::fs::write(&path, "garbage\n").unwrap();
        assert!(ring.reload().is_err());
        assert_eq!(ring.ciphers().all().len(), 1);
        std::fs::write(&path, file_of(&[&b, &a])).unwrap();
        assert_eq!(
            ring.reload().unwrap().primary_id(),
            Keys::single(b).primary_id()
        );
        assert_eq!(ring.ciphers().all().len(), 2);
        assert!(matches!(
            Keyring::from(a).reload(),
            Err(KeyringError::NoFile)
        ));
        let text = format!("{:?}", Keys::parse(&file_of(&[&ClusterKey::generate()])));
        assert!(text.contains("primary"), "{text}");
    }
}
