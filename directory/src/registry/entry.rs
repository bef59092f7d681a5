//! What nodes replicate: [`Entry`] (key, version, live state or tombstone). The records
//! clients see and the watch events come from the API crate ([`Record`], [`ChangeKind`]).

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::version::Version;
use super::{
    Address, ChangeKind, Fingerprint, InstanceId, Meta, NodeName, Record, Registration,
    ServiceName, Subscriptions, Tags, Ttl,
};

/// Why an entry is a tombstone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TombstoneReason {
    /// A client deleted the instance.
    Deregistered,
    /// The lease ran out.
    Expired,
}

/// The replicated fields of a live entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveState {
    /// What was registered.
    pub address: Address,
    /// Labels.
    pub tags: Tags,
    /// String pairs.
    pub meta: Meta,
    /// Lease length.
    pub ttl: Ttl,
    /// Pinned certificate key hash.
    pub fingerprint: Option<Fingerprint>,
    /// Topic subscriptions.
    pub subscriptions: Subscriptions,
    /// Node that last accepted a register or heartbeat.
    pub owner: NodeName,
    /// When the registration was made (the writer's wall clock; informational only).
    pub registered_at: SystemTime,
    /// Lease time left when the entry was exported. Relative on purpose: the receiver sets
    /// its own deadline at `now + lease_remaining`, never comparing wall clocks across nodes.
    pub lease_remaining: Duration,
}

impl LiveState {
    fn registration(&self) -> Registration {
        Registration {
            address: self.address.clone(),
            tags: self.tags.clone(),
            meta: self.meta.clone(),
            ttl: self.ttl,
            fingerprint: self.fingerprint,
            subscriptions: self.subscriptions.clone(),
        }
    }

    pub(crate) fn same_content_as(&self, record: &Record) -> bool {
        record.same_content(&self.registration())
    }
}

/// The state of one replicated entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryState {
    /// The instance is registered.
    Live(LiveState),
    /// The instance was removed; kept (invisible) for the tombstone retention so the removal
    /// wins over older copies still travelling between nodes.
    Tombstone {
        /// Why it was removed.
        reason: TombstoneReason,
    },
}

/// One registry entry as exchanged between directory nodes: key, version and state.
/// Replicas keep the entry with the highest [`Version`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Service part of the key.
    pub service: ServiceName,
    /// Instance part of the key.
    pub instance: InstanceId,
    /// Version of this write.
    pub version: Version,
    /// Live record or tombstone.
    pub state: EntryState,
}

impl Entry {
    /// Whether this entry is a live record.
    pub fn is_live(&self) -> bool {
        matches!(self.state, EntryState::Live(_))
    }

    /// A tombstone entry for `service/instance`.
    pub(crate) fn tombstone(
        service: &ServiceName,
        instance: &InstanceId,
        version: Version,
        reason: TombstoneReason,
    ) -> Self {
        Self {
            service: service.clone(),
            instance: instance.clone(),
            version,
            state: EntryState::Tombstone { reason },
        }
    }

    /// The replication form of a live record with `lease_remaining` left.
    pub(crate) fn live(record: &Record, version: Version, lease_remaining: Duration) -> Self {
        Self {
            service: record.service.clone(),
            instance: record.instance.clone(),
            version,
            state: EntryState::Live(LiveState {
                address: record.address.clone(),
                tags: record.tags.clone(),
                meta: record.meta.clone(),
                ttl: record.ttl,
                fingerprint: record.fingerprint,
                subscriptions: record.subscriptions.clone(),
                owner: record.owner.clone(),
                registered_at: record.registered_at,
                lease_remaining,
            }),
        }
    }
}

impl From<TombstoneReason> for ChangeKind {
    fn from(r: TombstoneReason) -> Self {
        match r {
            TombstoneReason::Deregistered => Self::Deregistered,
            TombstoneReason::Expired => Self::Expired,
        }
    }
}
