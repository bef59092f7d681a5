//! Reading entries written before registrations had subscriptions (on-disk format 1 as
//! first released): the same postcard shape without the live record's last field. A data
//! directory written by an older build therefore still loads; every entry is written back
//! in the current shape the next time its slot changes.
//!
//! Telling the shapes apart is safe: read as the current shape, an old live entry puts its
//! `at_ms` (a wall-clock time in milliseconds, far above any possible count) where the
//! subscription count goes, and decoding fails for lack of bytes; tombstones have the same
//! bytes in both shapes.

use serde::{Deserialize, Serialize};

use crate::gossip::proto::wire::{EntryKey, LiveRecord, WireEntry, WireState};
use crate::registry::{TombstoneReason, Version};

/// An entry as the first release stored it.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct LegacyStoredEntry {
    entry: LegacyEntry,
    at_ms: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct LegacyEntry {
    key: EntryKey,
    version: Version,
    state: LegacyState,
}

#[derive(Debug, Serialize, Deserialize)]
enum LegacyState {
    Live(LegacyLive),
    Tombstone {
        reason: TombstoneReason,
        age_ms: u64,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct LegacyLive {
    address: String,
    tags: Vec<String>,
    meta: Vec<(String, String)>,
    ttl_ms: u64,
    fingerprint: Option<[u8; 32]>,
    owner: String,
    registered_at_ms: u64,
    lease_remaining_ms: u64,
}

impl LegacyStoredEntry {
    /// The entry in the current wire shape (no subscriptions) and its `at_ms`.
    pub(super) fn upgraded(self) -> (WireEntry, u64) {
        let state = match self.entry.state {
            LegacyState::Live(l) => WireState::Live(LiveRecord {
                address: l.address,
                tags: l.tags,
                meta: l.meta,
                ttl_ms: l.ttl_ms,
                fingerprint: l.fingerprint,
                owner: l.owner,
                registered_at_ms: l.registered_at_ms,
                lease_remaining_ms: l.lease_remaining_ms,
                subscriptions: Vec::new(),
            }),
            LegacyState::Tombstone { reason, age_ms } => WireState::Tombstone { reason, age_ms },
        };
        let entry = WireEntry {
            key: self.entry.key,
            version: self.entry.version,
            state,
        };
        (entry, self.at_ms)
    }
}

#[cfg(test)]
pub(super) fn legacy_live_bytes(at_ms: u64) -> Vec<u8> {
    let entry = LegacyStoredEntry {
        entry: LegacyEntry {
            key: EntryKey::new("orders", "o-1"),
            version: Version { hlc: 3, node: 1 },
            state: LegacyState::Live(LegacyLive {
                address: "10.0.0.1:80".into(),
                tags: vec!["v1".into()],
                meta: Vec::new(),
                ttl_ms: 30_000,
                fingerprint: None,
                owner: "node-a".into(),
                registered_at_ms: 1_700_000_000_000,
                lease_remaining_ms: 0,
            }),
        },
        at_ms,
    };
    postcard::to_allocvec(&entry).unwrap()
}
