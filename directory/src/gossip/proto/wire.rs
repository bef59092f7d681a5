//! Wire formats: replicated entries, gossip datagrams and anti-entropy frames.
//!
//! Every payload starts with one version byte ([`WIRE_VERSION`]) followed by a postcard
//! body. A receiver drops (and counts) a payload with an unknown version instead of
//! guessing; a new version is introduced by accepting both for one release before sending
//! the new one. Sizes are bounded before decoding: datagrams by [`MAX_DATAGRAM`] (after the
//! encryption envelope), stream frames by [`MAX_FRAME`].

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::identity::NodeIdentity;
use crate::registry::{TombstoneReason, Version};

/// Version byte that prefixes every plaintext payload. 2: live records carry topic
/// subscriptions (1 had none; a node of either version drops the other's payloads as an
/// unsupported version, so mixed clusters must be upgraded together).
pub const WIRE_VERSION: u8 = 2;
/// Largest UDP datagram we send or accept, envelope included: below a 1,500-byte Ethernet
/// MTU with room for IP/UDP headers and tunnels (RFC 8085 guidance).
pub const MAX_DATAGRAM: usize = 1400;
/// Number of key buckets in an anti-entropy digest (one `u64` each).
pub const DIGEST_BUCKETS: usize = 64;
/// Largest anti-entropy stream frame we send or accept (envelope included).
pub const MAX_FRAME: usize = 4 * 1024 * 1024;

/// The key of a replicated entry: one service instance.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EntryKey {
    /// Service name.
    pub service: String,
    /// Instance id within the service.
    pub instance: String,
}

impl EntryKey {
    /// Builds a key.
    pub fn new(service: impl Into<String>, instance: impl Into<String>) -> Self {
        Self {
            service: service.into(),
            instance: instance.into(),
        }
    }
}

/// The fields of a live registration, as replicated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveRecord {
    /// `host:port` the instance listens on.
    pub address: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Metadata, sorted by key.
    pub meta: Vec<(String, String)>,
    /// Lease length in milliseconds.
    pub ttl_ms: u64,
    /// Optional certificate fingerprint (SHA-256 of the SubjectPublicKeyInfo).
    pub fingerprint: Option<[u8; 32]>,
    /// Name of the node that owns the lease (last accepted a register/heartbeat).
    pub owner: String,
    /// Registration time, Unix milliseconds (informational, never compared across nodes).
    pub registered_at_ms: u64,
    /// Lease time left when this copy was sent, in milliseconds: a relative duration, so
    /// expiry never compares wall clocks of different nodes.
    pub lease_remaining_ms: u64,
    /// Topic subscriptions as `(pattern, group)`; an empty group means the service.
    pub subscriptions: Vec<(String, String)>,
}

/// The state of an entry on the wire (the registry's [`crate::registry::EntryState`] holds
/// the same, validated and with the tombstone's age dropped).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireState {
    /// A registered instance.
    Live(LiveRecord),
    /// A deleted or expired instance, kept so that stale copies cannot resurrect it.
    Tombstone {
        /// Why it was deleted.
        reason: TombstoneReason,
        /// How long ago (milliseconds) the tombstone was created, as seen by the sender:
        /// every node collects it at about the same relative time.
        age_ms: u64,
    },
}

/// One replicated entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireEntry {
    /// Which instance.
    pub key: EntryKey,
    /// Its version.
    pub version: Version,
    /// Live record or tombstone.
    pub state: WireState,
}

impl WireEntry {
    /// Lease left for a live entry, `None` for a tombstone.
    pub fn lease_remaining(&self) -> Option<Duration> {
        match &self.state {
            WireState::Live(live) => Some(Duration::from_millis(live.lease_remaining_ms)),
            WireState::Tombstone { .. } => None,
        }
    }

    /// Whether this entry is a tombstone.
    pub fn is_tombstone(&self) -> bool {
        matches!(self.state, WireState::Tombstone { .. })
    }
}

/// One gossip datagram (before encryption): foca's SWIM message, if any, plus piggybacked
/// entries and departure notices.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Datagram {
    /// Bytes of one foca message, or empty for a pure dissemination packet.
    pub swim: Vec<u8>,
    /// Piggybacked entries (each sent a bounded number of times by each node).
    pub entries: Vec<WireEntry>,
    /// Set by a node that leaves gracefully, so members show it as "left", not "dead".
    pub leaving: Option<NodeIdentity>,
    /// The sender's advertised address and the short hash of the ACL file it enforces,
    /// shown in the members view so nodes with different files stand out.
    pub acl_hash: Option<(SocketAddr, [u8; 8])>,
}

/// One anti-entropy message on a stream (push-pull, digest first).
///
/// Initiator: `Digest` -> responder: `Keys` (only buckets that differ) -> initiator: `Push`
/// (entries the responder lacks or holds older, plus the keys it wants) -> responder: `Push`
/// (the wanted entries, `want` empty) -> done.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncMsg {
    /// One hash per key bucket (XOR of the hashes of every `(key, version)` in it).
    Digest {
        /// Bucket hashes, [`DIGEST_BUCKETS`] of them.
        buckets: Vec<u64>,
    },
    /// Every `(key, version)` the responder holds in the buckets that differ.
    Keys {
        /// Indices of the buckets that differed.
        buckets: Vec<u16>,
        /// The responder's versions in those buckets.
        versions: Vec<(EntryKey, Version)>,
    },
    /// Entries for the peer, and the keys we want from it.
    Push {
        /// Entries the peer lacks or holds an older version of.
        entries: Vec<WireEntry>,
        /// Keys the peer holds newer (or we lack).
        want: Vec<EntryKey>,
    },
}

/// A payload that could not be encoded or decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    /// Empty payload. Dropped; nothing changed.
    #[error("empty payload")]
    Empty,
    /// The version byte is not one we speak. Dropped; upgrade the older node.
    #[error("unsupported wire version {0}")]
    UnsupportedVersion(u8),
    /// The body is not valid postcard for the expected type, or has trailing bytes.
    /// Dropped; nothing changed.
    #[error("malformed payload")]
    Malformed,
    /// The payload is larger than the limit. Dropped (receiving) or not sent (sending).
    #[error("payload of {len} bytes exceeds the {limit}-byte limit")]
    TooLarge {
        /// Size of the payload.
        len: usize,
        /// The limit it exceeded.
        limit: usize,
    },
}

fn encode<T: Serialize>(value: &T, limit: usize) -> Result<Vec<u8>, WireError> {
    let mut out = vec![WIRE_VERSION];
    let body = postcard::to_allocvec(value).map_err(|_| WireError::Malformed)?;
    out.extend_from_slice(&body);
    if out.len() > limit {
        return Err(WireError::TooLarge {
            len: out.len(),
            limit,
        });
    }
    Ok(out)
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8], limit: usize) -> Result<T, WireError> {
    if bytes.len() > limit {
        return Err(WireError::TooLarge {
            len: bytes.len(),
            limit,
        });
    }
    let (&version, body) = bytes.split_first().ok_or(WireError::Empty)?;
    if version != WIRE_VERSION {
        return Err(WireError::UnsupportedVersion(version));
    }
    let (value, rest) = postcard::take_from_bytes(body).map_err(|_| WireError::Malformed)?;
    if !rest.is_empty() {
        return Err(WireError::Malformed);
    }
    Ok(value)
}

/// Encodes a datagram; fails if it exceeds `limit` bytes.
pub fn encode_datagram(datagram: &Datagram, limit: usize) -> Result<Vec<u8>, WireError> {
    encode(datagram, limit)
}

/// Decodes a datagram of at most `limit` bytes.
pub fn decode_datagram(bytes: &[u8], limit: usize) -> Result<Datagram, WireError> {
    decode(bytes, limit)
}

/// Encodes an anti-entropy frame; fails if it exceeds `limit` bytes.
pub fn encode_sync(msg: &SyncMsg, limit: usize) -> Result<Vec<u8>, WireError> {
    encode(msg, limit)
}

/// Decodes an anti-entropy frame of at most `limit` bytes.
pub fn decode_sync(bytes: &[u8], limit: usize) -> Result<SyncMsg, WireError> {
    decode(bytes, limit)
}

/// Encoded size of one entry inside a datagram (postcard, no framing).
pub fn entry_size(entry: &WireEntry) -> usize {
    postcard::experimental::serialized_size(entry).unwrap_or(usize::MAX)
}

/// A minimal live entry of service `svc` for unit tests elsewhere in `gossip`: written by
/// node 1 (owner `n1`), no tags or meta, `lease_ms` as both TTL and lease remaining.
#[cfg(test)]
pub(crate) fn test_live_entry(instance: &str, hlc: u64, lease_ms: u64) -> WireEntry {
    WireEntry {
        key: EntryKey::new("svc", instance),
        version: Version { hlc, node: 1 },
        state: WireState::Live(LiveRecord {
            address: "127.0.0.1:1".into(),
            tags: vec![],
            meta: vec![],
            ttl_ms: lease_ms,
            fingerprint: None,
            owner: "n1".into(),
            registered_at_ms: 0,
            lease_remaining_ms: lease_ms,
            subscriptions: Vec::new(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn live_entry(service: &str, instance: &str, hlc: u64) -> WireEntry {
        WireEntry {
            key: EntryKey::new(service, instance),
            version: Version { hlc, node: 7 },
            state: WireState::Live(LiveRecord {
                address: "127.0.0.1:7000".into(),
                tags: vec!["v2".into()],
                meta: vec![("zone".into(), "a".into())],
                ttl_ms: 10_000,
                fingerprint: None,
                owner: "node-1".into(),
                registered_at_ms: 1_700_000_000_000,
                lease_remaining_ms: 9_000,
                subscriptions: Vec::new(),
            }),
        }
    }

    #[test]
    fn datagram_round_trips() {
        let d = Datagram {
            swim: vec![1, 2, 3],
            entries: vec![live_entry("orders", "orders-1", 5)],
            leaving: None,
            acl_hash: Some(("127.0.0.1:7701".parse().unwrap(), [7; 8])),
        };
        let bytes = encode_datagram(&d, MAX_DATAGRAM).unwrap();
        assert_eq!(bytes[0], WIRE_VERSION);
        assert_eq!(decode_datagram(&bytes, MAX_DATAGRAM).unwrap(), d);
    }

    #[test]
    fn unknown_version_truncation_and_trailing_bytes_are_rejected() {
        let d = Datagram::default();
        let mut bytes = encode_datagram(&d, MAX_DATAGRAM).unwrap();
        bytes.push(0);
        assert_eq!(
            decode_datagram(&bytes, MAX_DATAGRAM),
            Err(WireError::Malformed)
        );
        assert_eq!(decode_datagram(&[], MAX_DATAGRAM), Err(WireError::Empty));
        assert_eq!(
            decode_datagram(&[9, 0, 0, 0], MAX_DATAGRAM),
            Err(WireError::UnsupportedVersion(9))
        );
        let full = encode_datagram(
            &Datagram {
                entries: vec![live_entry("a", "b", 1)],
                ..Datagram::default()
            },
            MAX_DATAGRAM,
        )
        .unwrap();
        assert_eq!(
            decode_datagram(&full[..full.len() - 3], MAX_DATAGRAM),
            Err(WireError::Malformed)
        );
    }

    #[test]
    fn oversized_payloads_are_refused_both_ways() {
        let d = Datagram {
            swim: vec![0; 2000],
            ..Datagram::default()
        };
        assert!(matches!(
            encode_datagram(&d, MAX_DATAGRAM),
            Err(WireError::TooLarge { .. })
        ));
        assert!(matches!(
            decode_datagram(&[WIRE_VERSION; 1500], MAX_DATAGRAM),
            Err(WireError::TooLarge { .. })
        ));
    }

    #[test]
    fn entries_keep_their_wire_bytes() {
        // Version and TombstoneReason are the registry's types: their postcard form must
        // stay the one of the wire's former copies (fields in order, variant indices).
        let tombstone = WireEntry {
            key: EntryKey::new("s", "i"),
            version: Version { hlc: 1, node: 2 },
            state: WireState::Tombstone {
                reason: TombstoneReason::Expired,
                age_ms: 3,
            },
        };
        let bytes = postcard::to_allocvec(&tombstone).unwrap();
        assert_eq!(bytes, [1, b's', 1, b'i', 1, 2, 1, 1, 3]);
    }

    #[test]
    fn entry_size_matches_encoding() {
        let e = live_entry("orders", "orders-1", 5);
        assert_eq!(entry_size(&e), postcard::to_allocvec(&e).unwrap().len());
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1600)) {
            let _ = decode_datagram(&bytes, MAX_DATAGRAM);
            let _ = decode_sync(&bytes, MAX_FRAME);
        }

        #[test]
        fn sync_messages_round_trip(service in "[a-z0-9]{1,20}", instance in "[a-z0-9-]{1,20}", hlc in any::<u64>(), want in proptest::collection::vec("[a-z]{1,8}", 0..5)) {
            let msg = SyncMsg::Push {
                entries: vec![live_entry(&service, &instance, hlc)],
                want: want.iter().map(|w| EntryKey::new(w.clone(), w.clone())).collect(),
            };
            let bytes = encode_sync(&msg, MAX_FRAME).unwrap();
            prop_assert_eq!(decode_sync(&bytes, MAX_FRAME).unwrap(), msg);
        }
    }
}
