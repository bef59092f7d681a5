//! Conversions between the registry's [`Entry`] and the wire's [`WireEntry`].
//!
//! Entries from the network are parsed back into the registry's validated newtypes: an
//! entry that does not validate is refused (and counted), never applied.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::registry::{
    Address, Entry, EntryState, Fingerprint, InstanceId, LiveState, Meta, NodeName,
    ReplicationRules, ServiceName, Subscription, Subscriptions, Tags, TopicPattern, Ttl,
    ValidationError,
};

use super::proto::wire::{EntryKey, LiveRecord, WireEntry, WireState};

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The wire form of a local registry write (tombstones are fresh: age 0).
pub fn to_wire(entry: &Entry) -> WireEntry {
    let state = match &entry.state {
        EntryState::Live(live) => WireState::Live(LiveRecord {
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
            subscriptions: live
                .subscriptions
                .iter()
                .map(|s| {
                    let group = s.group.as_ref().map_or("", ServiceName::as_str);
                    (s.pattern.as_str().to_owned(), group.to_owned())
                })
                .collect(),
        }),
        EntryState::Tombstone { reason } => WireState::Tombstone {
            reason: *reason,
            age_ms: 0,
        },
    };
    WireEntry {
        key: EntryKey::new(entry.service.as_str(), entry.instance.as_str()),
        version: entry.version,
        state,
    }
}

/// The registry form of a remote entry, its lease the time `local` holds it by the rules
/// ([`ReplicationRules::held_lease`]: a non-owner adds the grace). The tombstone's age is
/// dropped: the registry forgets a tombstone a retention after it arrived, never sooner
/// than the replica, which is what refuses stale copies.
pub fn to_registry(
    entry: WireEntry,
    local: &NodeName,
    rules: &ReplicationRules,
) -> Result<Entry, ValidationError> {
    let mut entry = from_wire(entry)?;
    if let EntryState::Live(live) = &mut entry.state {
        live.lease_remaining = rules.held_lease(live.lease_remaining, &live.owner == local);
    }
    Ok(entry)
}

/// The registry form of a wire entry, validated, its lease unchanged (the tombstone's age
/// is dropped).
pub fn from_wire(entry: WireEntry) -> Result<Entry, ValidationError> {
    let state = match entry.state {
        WireState::Live(live) => {
            let meta: BTreeMap<String, String> = live.meta.into_iter().collect();
            EntryState::Live(LiveState {
                address: Address::new(&live.address)?,
                tags: Tags::new(live.tags)?,
                meta: Meta::new(meta)?,
                ttl: Ttl::from_duration(Duration::from_millis(live.ttl_ms))?,
                fingerprint: live.fingerprint.map(Fingerprint::from_bytes),
                owner: NodeName::new(&live.owner)?,
                registered_at: UNIX_EPOCH
                    .checked_add(Duration::from_millis(live.registered_at_ms))
                    .unwrap_or(SystemTime::UNIX_EPOCH),
                lease_remaining: Duration::from_millis(live.lease_remaining_ms),
                subscriptions: subscriptions_from_wire(live.subscriptions)?,
            })
        }
        WireState::Tombstone { reason, .. } => EntryState::Tombstone { reason },
    };
    Ok(Entry {
        service: ServiceName::new(&entry.key.service)?,
        instance: InstanceId::new(&entry.key.instance)?,
        version: entry.version,
        state,
    })
}

/// Validated subscriptions from their wire pairs (an empty group is the service's).
fn subscriptions_from_wire(pairs: Vec<(String, String)>) -> Result<Subscriptions, ValidationError> {
    let list = pairs
        .into_iter()
        .map(|(pattern, group)| {
            Ok(Subscription {
                pattern: TopicPattern::new(&pattern)?,
                group: (!group.is_empty())
                    .then(|| ServiceName::new(&group))
                    .transpose()?,
            })
        })
        .collect::<Result<Vec<_>, ValidationError>>()?;
    Subscriptions::new(list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Version;

    fn rules() -> ReplicationRules {
        ReplicationRules {
            lease_grace: Duration::from_secs(5),
            ..ReplicationRules::default()
        }
    }

    fn wire_live(owner: &str) -> WireEntry {
        WireEntry {
            key: EntryKey::new("orders", "orders-1"),
            version: Version { hlc: 99, node: 3 },
            state: WireState::Live(LiveRecord {
                address: "127.0.0.1:7000".into(),
                tags: vec!["v2".into()],
                meta: vec![("zone".into(), "a".into())],
                ttl_ms: 10_000,
                fingerprint: Some([7; 32]),
                owner: owner.into(),
                registered_at_ms: 1_700_000_000_000,
                lease_remaining_ms: 8_000,
                subscriptions: Vec::new(),
            }),
        }
    }

    #[test]
    fn entries_round_trip_and_non_owned_leases_get_the_grace() {
        let local = NodeName::new("node-a").unwrap();
        let own = to_registry(wire_live("node-a"), &local, &rules()).unwrap();
        assert_eq!(to_wire(&own), wire_live("node-a"));
        let foreign = to_registry(wire_live("node-b"), &local, &rules()).unwrap();
        let EntryState::Live(live) = foreign.state else {
            panic!("not live")
        };
        assert_eq!(live.lease_remaining, Duration::from_secs(13));
    }

    #[test]
    fn invalid_remote_entries_are_refused() {
        let local = NodeName::new("node-a").unwrap();
        let mut bad = wire_live("node-b");
        bad.key.service = "Not Valid!".into();
        assert!(to_registry(bad, &local, &rules()).is_err());
        let mut bad = wire_live("node-b");
        if let WireState::Live(live) = &mut bad.state {
            live.ttl_ms = 0;
        }
        assert!(to_registry(bad, &local, &rules()).is_err());
    }
}
