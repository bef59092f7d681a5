//! Access control in the spirit of Consul's ACLs: tokens with rules, loaded from a file.
//!
//! # Model
//! - A node started with `--acl-file PATH` enforces the rules of that file (format in
//!   [`AclFile`]); without one, every request may do everything ([`Access::open`]) and the
//!   node logs a warning at start.
//! - A request carries a token secret as `Authorization: Bearer <secret>` or
//!   `X-Directory-Token: <secret>`. The secret is hashed (SHA-256) and looked up; an unknown
//!   token is refused (401) whatever the anonymous rules say. No token: the `anonymous`
//!   rules apply, and a refusal asks for a token (401). A known token lacking a right: 403.
//! - Rules ([`Rule`]): `read:PATTERN`, `write:PATTERN` (implies read), `subscribe:PATTERN`
//!   and `publish:PATTERN` (topics), `operator` (members and metrics). `GET /v1/health` is always open.
//! - [`Acl::reload`] (SIGHUP) swaps in a new file atomically; a bad file keeps the old rules.
//!   Each node tells the cluster the hash of the file it enforces ([`Acl::short_hash`],
//!   gossiped with every datagram), so nodes with different files show up in the members
//!   view of any node.
//!
//! # Layout
//! - `rules`: [`Rule`] and [`RuleSet`], parsing and matching.
//! - `file`: [`AclFile`], the JSON format, validation, token creation, atomic save.
//! - `access`: [`Access`], the rights of one request, and [`Denied`].

mod access;
mod file;
mod rules;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;

pub use access::{Access, Denied};
pub use file::{AclFile, AclFileError, SECRET_PREFIX, TokenEntry, secret_hash};
pub use rules::{Rule, RuleError, RuleSet};

/// The rules a node enforces, reloadable. Cheap to share (`Arc` inside the server).
#[derive(Debug)]
pub struct Acl {
    path: PathBuf,
    current: RwLock<Arc<Policy>>,
    changed: tokio::sync::watch::Sender<u64>,
}

/// One loaded ACL file, ready for lookups.
#[derive(Debug)]
struct Policy {
    /// Token rules by SHA-256 of the secret.
    tokens: HashMap<[u8; 32], (Arc<str>, Arc<RuleSet>)>,
    anonymous: Arc<RuleSet>,
    file_hash: [u8; 32],
}

impl Policy {
    fn from_file(file: AclFile, file_hash: [u8; 32]) -> Self {
        let tokens = file
            .tokens
            .into_iter()
            .filter_map(|t| {
                let mut hash = [0u8; 32];
                // The file was validated: every hash is 64 hex digits.
                hex::decode_to_slice(&t.secret_sha256, &mut hash).ok()?;
                Some((hash, (Arc::from(t.id), Arc::new(RuleSet::new(t.rules)))))
            })
            .collect();
        Self {
            tokens,
            anonymous: Arc::new(RuleSet::new(file.anonymous)),
            file_hash,
        }
    }
}

/// The first 8 bytes of a file's SHA-256.
pub fn short(hash: &[u8; 32]) -> [u8; 8] {
    let mut out = [0u8; 8];
    out.copy_from_slice(&hash[..8]);
    out
}

impl Acl {
    /// Loads the ACL file at `path`; an unreadable or invalid file is an error.
    pub fn load(path: &Path) -> Result<Self, AclFileError> {
        let (file, hash) = AclFile::load(path)?;
        Ok(Self {
            path: path.to_owned(),
            current: RwLock::new(Arc::new(Policy::from_file(file, hash))),
            changed: tokio::sync::watch::Sender::new(0),
        })
    }

    /// Reads the file again and enforces it from now on. On error the previous rules stay
    /// in force (and the error says why). Returns the new file's hash.
    pub fn reload(&self) -> Result<[u8; 32], AclFileError> {
        let (file, hash) = AclFile::load(&self.path)?;
        *self.current.write() = Arc::new(Policy::from_file(file, hash));
        self.changed.send_modify(|generation| *generation += 1);
        Ok(hash)
    }

    /// The rights of a request presenting `secret` (or none).
    pub fn authenticate(&self, secret: Option<&str>) -> Result<Access, Denied> {
        let policy = self.current.read().clone();
        match secret {
            None => Ok(Access::anonymous(policy.anonymous.clone())),
            Some(secret) => policy
                .tokens
                .get(&secret_hash(secret))
                .map(|(id, rules)| Access::token(id.clone(), rules.clone()))
                .ok_or(Denied::UnknownToken),
        }
    }

    /// The first 8 bytes of the SHA-256 of the file in force: what the node tells the
    /// cluster (64 bits tell files apart; nothing secret is derived from it).
    pub fn short_hash(&self) -> [u8; 8] {
        short(&self.current.read().file_hash)
    }

    /// [`Self::short_hash`] as 16 hex digits, as shown in the members view and printed by
    /// `directory acl hash`.
    pub fn file_hash(&self) -> String {
        hex::encode(self.short_hash())
    }

    /// The file this node enforces.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Resolves at the next successful reload: long-lived streams end then, so their
    /// clients reconnect under the new rules.
    pub fn reloaded(&self) -> impl std::future::Future<Output = ()> + Send + use<> {
        let mut rx = self.changed.subscribe();
        async move {
            // An error means the Acl was dropped: the node is going away.
            let _ = rx.changed().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_found_by_secret_and_a_bad_reload_keeps_the_old_rules() {
        let path = std::env::temp_dir().join(format!("acl-mod-{}.json", std::process::id()));
        let mut file = AclFile {
            anonymous: vec!["read:public".parse().unwrap()],
            ..AclFile::default()
        };
        let (entry, secret) = file.create_token("a", vec!["write:a".parse().unwrap()]);
        file.save(&path).unwrap();
        let acl = Acl::load(&path).unwrap();
        let access = acl.authenticate(Some(&secret)).unwrap();
        assert_eq!(access.token_id(), Some(entry.id.as_str()));
        assert!(access.write("a").is_ok() && access.write("b").is_err());
        assert_eq!(
            acl.authenticate(Some("dirtok_nope")).unwrap_err(),
            Denied::UnknownToken
        );
        assert!(acl.authenticate(None).unwrap().read("public").is_ok());
        let hash = acl.file_hash();

        std::fs::write(&path, "{ not json").unwrap();
        assert!(acl.reload().is_err());
        assert_eq!(acl.file_hash(), hash, "the old file stays in force");
        assert!(acl.authenticate(Some(&secret)).is_ok());

        AclFile::default().save(&path).unwrap();
        acl.reload().unwrap();
        assert_ne!(acl.file_hash(), hash);
        assert_eq!(
            acl.authenticate(Some(&secret)).unwrap_err(),
            Denied::UnknownToken
        );
        std::fs::remove_file(&path).unwrap();
    }
}
