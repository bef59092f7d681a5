//! The on-disk form of one registry entry (postcard): the gossip wire form of the entry
//! (plain strings and numbers, validated again when read) with an absolute wall-clock time,
//! so that the time a node was down counts against leases and tombstone ages.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::legacy::LegacyStoredEntry;
use crate::gossip::convert::{from_wire, to_wire};
use crate::gossip::proto::wire::WireEntry;
use crate::registry::{
    Entry, EntryState, JournalOp, LiveState, Restored, ValidationError, Version,
};

/// One entry as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct StoredEntry {
    /// The entry; a live one's `lease_remaining_ms` is unused (zero): see `at_ms`.
    entry: WireEntry,
    /// Live: when the lease as held here ends. Tombstone: when it was written here
    /// (milliseconds since the Unix epoch).
    at_ms: u64,
}

impl StoredEntry {
    /// The stored form of a slot change (`None` for a removal).
    pub(super) fn of(op: &JournalOp) -> Option<Self> {
        match op {
            JournalOp::Live {
                record,
                version,
                expires_at,
            } => Some(Self {
                entry: to_wire(&Entry::live(record, *version, Duration::ZERO)),
                at_ms: unix_millis(*expires_at),
            }),
            JournalOp::Tombstone {
                service,
                instance,
                version,
                reason,
                written_at,
            } => Some(Self {
                entry: to_wire(&Entry::tombstone(service, instance, *version, *reason)),
                at_ms: unix_millis(*written_at),
            }),
            JournalOp::Forget { .. } => None,
        }
    }

    /// What to restore at wall time `now`; an entry that does not validate is an error.
    pub(super) fn restored(self, now: SystemTime) -> Result<Restored, ValidationError> {
        let at = UNIX_EPOCH + Duration::from_millis(self.at_ms);
        let mut entry = from_wire(self.entry)?;
        let age = match &mut entry.state {
            EntryState::Live(LiveState {
                lease_remaining, ..
            }) => {
                *lease_remaining = at.duration_since(now).unwrap_or(Duration::ZERO);
                Duration::ZERO
            }
            EntryState::Tombstone { .. } => now.duration_since(at).unwrap_or(Duration::ZERO),
        };
        Ok(Restored { entry, age })
    }

    pub(super) fn version(&self) -> Version {
        self.entry.version
    }

    pub(super) fn encode(&self) -> Vec<u8> {
        // Serializing owned, validated values into a Vec cannot fail.
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Decodes an entry in the current shape, or in the shape of the first release
    /// (see `legacy`).
    pub(super) fn decode(bytes: &[u8]) -> Result<Self, postcard::Error> {
        postcard::from_bytes(bytes).or_else(|current| {
            let legacy: LegacyStoredEntry = postcard::from_bytes(bytes).map_err(|_| current)?;
            let (entry, at_ms) = legacy.upgraded();
            Ok(Self { entry, at_ms })
        })
    }
}

fn unix_millis(t: SystemTime) -> u64 {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::registry::{Address, Meta, Record, Registration, Tags, Ttl};

    fn record() -> Arc<Record> {
        let meta = [("zone".to_owned(), "a".to_owned())].into_iter().collect();
        let reg = Registration {
            tags: Tags::new(vec!["v2".into()]).unwrap(),
            meta: Meta::new(meta).unwrap(),
            ttl: Ttl::from_duration(Duration::from_secs(30)).unwrap(),
            ..Registration::new(Address::new("10.0.0.1:80").unwrap())
        };
        Arc::new(Record {
            service: "orders".parse().unwrap(),
            instance: "o-1".parse().unwrap(),
            address: reg.address,
            tags: reg.tags,
            meta: reg.meta,
            ttl: reg.ttl,
            fingerprint: Some(crate::registry::Fingerprint::from_bytes([9; 32])),
            subscriptions: Default::default(),
            owner: "node-a".parse().unwrap(),
            index: 7,
            registered_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            lease_expires_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_030),
        })
    }

    #[test]
    fn live_entries_round_trip_and_downtime_counts_against_the_lease() {
        let rec = record();
        let version = Version { hlc: 5, node: 2 };
        let op = JournalOp::Live {
            expires_at: rec.lease_expires_at,
            record: rec.clone(),
            version,
        };
        let stored = StoredEntry::of(&op).unwrap();
        let decoded = StoredEntry::decode(&stored.encode()).unwrap();
        assert_eq!(decoded, stored);
        let now = rec.lease_expires_at - Duration::from_secs(12);
        let restored = decoded.clone().restored(now).unwrap();
        let EntryState::Live(live) = &restored.entry.state else {
            panic!("not live")
        };
        assert_eq!(live.lease_remaining, Duration::from_secs(12));
        assert_eq!(live.meta, rec.meta);
        assert_eq!(live.fingerprint, rec.fingerprint);
        assert_eq!(restored.entry.version, version);
        let late = decoded
            .restored(rec.lease_expires_at + Duration::from_secs(1))
            .unwrap();
        assert!(matches!(&late.entry.state, EntryState::Live(l) if l.lease_remaining.is_zero()));
    }

    #[test]
    fn an_entry_written_before_subscriptions_existed_still_loads() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_030);
        let bytes = super::super::legacy::legacy_live_bytes(unix_millis(at));
        let stored = StoredEntry::decode(&bytes).unwrap();
        let restored = stored.restored(at - Duration::from_secs(10)).unwrap();
        let EntryState::Live(live) = &restored.entry.state else {
            panic!("not live")
        };
        assert_eq!(live.lease_remaining, Duration::from_secs(10));
        assert!(live.subscriptions.is_empty());
        assert_eq!(live.tags.iter().collect::<Vec<_>>(), ["v1"]);
    }

    #[test]
    fn tombstones_round_trip_with_their_age_and_garbage_is_an_error() {
        let written = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let op = JournalOp::Tombstone {
            service: "s".parse().unwrap(),
            instance: "i".parse().unwrap(),
            version: Version { hlc: 1, node: 1 },
            reason: crate::registry::TombstoneReason::Deregistered,
            written_at: written,
        };
        let stored = StoredEntry::of(&op).unwrap();
        let back = StoredEntry::decode(&stored.encode()).unwrap();
        let restored = back.restored(written + Duration::from_secs(90)).unwrap();
        assert_eq!(restored.age, Duration::from_secs(90));
        assert!(!restored.entry.is_live());
        for bad in [&b""[..], b"\xff\xff\xff", &stored.encode()[..3]] {
            assert!(StoredEntry::decode(bad).is_err());
        }
        let forget = JournalOp::Forget {
            service: "s".parse().unwrap(),
            instance: "i".parse().unwrap(),
        };
        assert_eq!(StoredEntry::of(&forget), None);
    }
}
