//! Validated newtypes for everything a client can put into the registry.
//!
//! Each type is parsed once, at the edge (HTTP body, CLI flag, network frame), and is valid
//! by construction afterwards. Deserialization goes through the same parser, so a replicated
//! entry from another node cannot smuggle in an invalid value either.

use std::sync::Arc;

use crate::ErrorCode;

/// Longest service name, instance id or node name, in bytes.
pub const MAX_NAME_LEN: usize = 63;

/// Why a value was rejected. Nothing is changed by a rejected value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// The service name is not `[a-z0-9][a-z0-9._-]{0,62}`. Remedy: rename the service.
    #[error("invalid service name {0:?}: must match [a-z0-9][a-z0-9._-]{{0,62}}")]
    ServiceName(String),
    /// The instance id is not `[a-z0-9][a-z0-9._-]{0,62}`. Remedy: pick another id.
    #[error("invalid instance id {0:?}: must match [a-z0-9][a-z0-9._-]{{0,62}}")]
    InstanceId(String),
    /// The node name is not `[a-z0-9][a-z0-9._-]{0,62}`. Remedy: fix the node's configuration.
    #[error("invalid node name {0:?}: must match [a-z0-9][a-z0-9._-]{{0,62}}")]
    NodeName(String),
    /// The address is not `host:port` (IPv4, `[IPv6]` or DNS name, port 1-65535).
    #[error("invalid address {value:?}: {reason}")]
    Address {
        /// The rejected input.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The TTL is unparsable or outside 1s..=1h.
    #[error("invalid ttl {0:?}: must be a duration like \"10s\" between 1s and 1h")]
    Ttl(String),
    /// Too many tags, an empty tag, a tag over 1 KiB or one with control characters.
    #[error("invalid tags: {0}")]
    Tags(String),
    /// Too many meta keys, or a key/value that is empty, too long or has bad characters.
    #[error("invalid meta: {0}")]
    Meta(String),
    /// The fingerprint is not 64 hex digits (a SHA-256).
    #[error(
        "invalid fingerprint {0:?}: must be 64 hex digits (SHA-256 of the certificate's SubjectPublicKeyInfo)"
    )]
    Fingerprint(String),
    /// A topic or subscription pattern is malformed (see [`crate::Topic`] and
    /// [`crate::TopicPattern`]).
    #[error("invalid topic {value:?}: {reason}")]
    Topic {
        /// The rejected input.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Too many subscriptions, or one that is malformed.
    #[error("invalid subscriptions: {0}")]
    Subscriptions(String),
}

impl ValidationError {
    /// The stable code used in HTTP error bodies.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::ServiceName(_) => ErrorCode::InvalidServiceName,
            Self::InstanceId(_) => ErrorCode::InvalidInstanceId,
            Self::NodeName(_) => ErrorCode::InvalidNodeName,
            Self::Address { .. } => ErrorCode::InvalidAddress,
            Self::Ttl(_) => ErrorCode::InvalidTtl,
            Self::Tags(_) => ErrorCode::InvalidTags,
            Self::Meta(_) => ErrorCode::InvalidMeta,
            Self::Fingerprint(_) => ErrorCode::InvalidFingerprint,
            Self::Topic { .. } => ErrorCode::InvalidTopic,
            Self::Subscriptions(_) => ErrorCode::InvalidSubscriptions,
        }
    }
}

/// `[a-z0-9][a-z0-9._-]{0,62}`.
fn is_valid_name(s: &str) -> bool {
    let bytes = s.as_bytes();
    let Some(first) = bytes.first() else {
        return false;
    };
    bytes.len() <= MAX_NAME_LEN
        && (first.is_ascii_lowercase() || first.is_ascii_digit())
        && bytes.iter().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
}

/// Declares a cheap-to-clone validated name type (`Arc<str>` inside), parsed by
/// [`is_valid_name`] through [`validated_string!`].
macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $variant:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Parses and validates `value`.
            pub fn new(value: &str) -> Result<Self, ValidationError> {
                if is_valid_name(value) {
                    Ok(Self(Arc::from(value)))
                } else {
                    Err(ValidationError::$variant(value.to_owned()))
                }
            }

            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        $crate::newtype::text_type!($name);

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

name_type!(
    /// A service name such as `orders`: `[a-z0-9][a-z0-9._-]{0,62}`.
    ServiceName,
    ServiceName
);
name_type!(
    /// An instance id, unique within its service: `[a-z0-9][a-z0-9._-]{0,62}`.
    InstanceId,
    InstanceId
);
name_type!(
    /// The name of a directory node: `[a-z0-9][a-z0-9._-]{0,62}`.
    NodeName,
    NodeName
);

impl NodeName {
    /// A stable 64-bit id for this node (FNV-1a of the name), used to break ties between
    /// versions written at the same hybrid-logical-clock instant. Stable across builds and
    /// platforms, unlike `std`'s hasher.
    pub fn id(&self) -> u64 {
        use std::hash::Hasher as _;
        // `write`, not `Hash::hash`: the latter appends a terminator byte to a `str`.
        let mut hasher = fnv::FnvHasher::default();
        hasher.write(self.0.as_bytes());
        hasher.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Address, Ttl};
    use proptest::prelude::*;

    #[test]
    fn node_ids_are_fnv_1a_64_of_the_name() {
        // Published FNV-1a 64 test vectors: the id must never change across builds, since
        // nodes compare it to break version ties.
        assert_eq!(NodeName::new("a").unwrap().id(), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(NodeName::new("foobar").unwrap().id(), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn names_follow_the_documented_pattern() {
        assert!(ServiceName::new("orders").is_ok());
        assert!(ServiceName::new("0rders.v2_x-y").is_ok());
        assert!(ServiceName::new(&"a".repeat(63)).is_ok());
        for bad in [
            "",
            "Orders",
            "-orders",
            ".x",
            "_x",
            "a b",
            "ä",
            &"a".repeat(64),
            "a/b",
        ] {
            assert_eq!(
                ServiceName::new(bad).unwrap_err().code(),
                "invalid_service_name",
                "{bad:?}"
            );
        }
        assert_eq!(
            InstanceId::new("X").unwrap_err().code(),
            "invalid_instance_id"
        );
    }

    #[test]
    fn deserialization_validates_like_parsing() {
        assert!(serde_json::from_str::<ServiceName>("\"Bad\"").is_err());
        assert!(serde_json::from_str::<Address>("\"nohost\"").is_err());
        assert!(serde_json::from_str::<Ttl>("\"2h\"").is_err());
        let ttl: Ttl = serde_json::from_str("\"15s\"").unwrap();
        assert_eq!(serde_json::to_string(&ttl).unwrap(), "\"15s\"");
    }

    #[test]
    fn node_ids_are_stable() {
        let a = NodeName::new("node-a").unwrap();
        assert_eq!(a.id(), NodeName::new("node-a").unwrap().id());
        assert_ne!(a.id(), NodeName::new("node-b").unwrap().id());
    }

    proptest! {
        #[test]
        fn valid_names_are_accepted_and_round_trip(s in "[a-z0-9][a-z0-9._-]{0,62}") {
            let n = ServiceName::new(&s).unwrap();
            prop_assert_eq!(n.as_str(), s.as_str());
            let json = serde_json::to_string(&n).unwrap();
            prop_assert_eq!(serde_json::from_str::<ServiceName>(&json).unwrap(), n);
        }

        #[test]
        fn name_validation_matches_the_pattern(s in "\\PC{0,70}") {
            let expected = !s.is_empty()
                && s.len() <= 63
                && s.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || ".-_".contains(c));
            prop_assert_eq!(InstanceId::new(&s).is_ok(), expected);
        }
    }
}
