//! Conversions between the registry's [`Entry`] and the wire's [`WireEntry`].
//!
//! Entries from the network are parsed back into the registry's validated newtypes: an
//! entry that does not validate is refused (and counted), never applied.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::registry::{
    Address, Entry, EntryState as RegState, Fingerprint, InstanceId, LiveState, Meta, NodeName,
    ServiceName, Tags, TombstoneReason as RegReason, Ttl, ValidationError, Version,
};

use super::wire::{EntryKey, EntryState, EntryVersion, LiveRecord, TombstoneReason, WireEntry};

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The wire form of a local registry write (tombstones are fresh: age 0).
pub fn to_wire(entry: &Entry) -> WireEntry {
    let state = match &entry.state {
        RegState::Live(live) => EntryState::Live(LiveRecord {
            address: live.address.as_str().to_owned(),
            tags: live.tags.to_vec(),
            meta: live
                .meta
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            ttl_ms: millis(live.ttl.duration()),
            fingerprint: live.fingerprint.map(|f| *f.as_bytes()),
            owner: live.owner.as_str().to_owned(),
            registered_at_ms: millis(
                live.registered_at
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default(),
            ),
            lease_remaining_ms: millis(live.lease_remaining),
        }),
        RegState::Tombstone { reason } => EntryState::Tombstone {
            reason: match reason {
                RegReason::Deregistered => TombstoneReason::Deregistered,
                RegReason::Expired => TombstoneReason::Expired,
            },
            age_ms: 0,
        },
    };
    WireEntry {
        key: EntryKey::new(entry.service.as_str(), entry.instance.as_str()),
        version: EntryVersion {
            hlc: entry.version.hlc,
            node: entry.version.node,
        },
        state,
    }
}

/// The registry form of a remote entry. A live record not owned by `local` gets `grace`
/// added to its lease: the owner expires it authoritatively, the others only hold it until
/// the lease plus the grace (see docs/design.md, "Lease expiry").
pub fn to_registry(
    entry: WireEntry,
    local: &NodeName,
    grace: Duration,
) -> Result<Entry, ValidationError> {
    let state = match entry.state {
        EntryState::Live(live) => {
            let owner = NodeName::new(&live.owner)?;
            let mut lease_remaining = Duration::from_millis(live.lease_remaining_ms);
            if &owner != local {
                lease_remaining += grace;
            }
            let meta: BTreeMap<String, String> = live.meta.into_iter().collect();
            RegState::Live(LiveState {
                address: Address::new(&live.address)?,
                tags: Tags::new(live.tags)?,
                meta: Meta::new(meta)?,
                ttl: Ttl::from_duration(Duration::from_millis(live.ttl_ms))?,
                fingerprint: live.fingerprint.map(Fingerprint::from_bytes),
                owner,
                registered_at: UNIX_EPOCH
                    .checked_add(Duration::from_millis(live.registered_at_ms))
                    .unwrap_or(SystemTime::UNIX_EPOCH),
                lease_remaining,
            })
        }
        EntryState::Tombstone { reason, .. } => RegState::Tombstone {
            reason: match reason {
                TombstoneReason::Deregistered => RegReason::Deregistered,
                TombstoneReason::Expired => RegReason::Expired,
            },
        },
    };
    Ok(Entry {
        service: ServiceName::new(&entry.key.service)?,
        instance: InstanceId::new(&entry.key.instance)?,
        version: Version {
            hlc: entry.version.hlc,
            node: entry.version.node,
        },
        state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire_live(owner: &str) -> WireEntry {
        WireEntry {
            key: EntryKey::new("orders", "orders-1"),
            version: EntryVersion { hlc: 99, node: 3 },
            state: EntryState::Live(LiveRecord {
                address: "127.0.0.1:7000".into(),
                tags: vec!["v2".into()],
                meta: vec![("zone".into(), "a".into())],
                ttl_ms: 10_000,
                fingerprint: Some([7; 32]),
                owner: owner.into(),
                registered_at_ms: 1_700_000_000_000,
                lease_remaining_ms: 8_000,
            }),
        }
    }

    #[test]
    fn entries_round_trip_and_non_owned_leases_get_the_grace() {
        let local = NodeName::new("node-a").unwrap();
        let grace = Duration::from_secs(5);
        let own = to_registry(wire_live("node-a"), &local, grace).unwrap();
        assert_eq!(to_wire(&own), wire_live("node-a"));
        let foreign = to_registry(wire_live("node-b"), &local, grace).unwrap();
        let RegState::Live(live) = foreign.state else {
            panic!("not live")
        };
        assert_eq!(live.lease_remaining, Duration::from_secs(13));
    }

    #[test]
    fn invalid_remote_entries_are_refused() {
        let local = NodeName::new("node-a").unwrap();
        let mut bad = wire_live("node-b");
        bad.key.service = "Not Valid!".into();
        assert!(to_registry(bad, &local, Duration::ZERO).is_err());
        let mut bad = wire_live("node-b");
        if let EntryState::Live(live) = &mut bad.state {
            live.ttl_ms = 0;
        }
        assert!(to_registry(bad, &local, Duration::ZERO).is_err());
    }
}
