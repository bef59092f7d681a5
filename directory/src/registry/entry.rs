//! What the registry stores and hands out: user-visible [`Record`]s, replication [`Entry`]s
//! and watch [`ChangeEvent`]s.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::version::Version;
use super::{Address, Fingerprint, InstanceId, Meta, NodeName, ServiceName, Tags, Ttl};

/// What a client asks to register (everything but the key and the server-assigned fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// Where the instance can be reached.
    pub address: Address,
    /// Free-form labels, filterable with `?tag=`.
    pub tags: Tags,
    /// Free-form string pairs, filterable with `?meta=key:value`.
    pub meta: Meta,
    /// Lease length: the instance disappears unless renewed within it.
    pub ttl: Ttl,
    /// SHA-256 of the instance's certificate SubjectPublicKeyInfo, for pinned peer identity.
    pub fingerprint: Option<Fingerprint>,
}

impl Registration {
    /// A registration with no tags, no meta, the default TTL and no fingerprint.
    pub fn new(address: Address) -> Self {
        Self {
            address,
            tags: Tags::default(),
            meta: Meta::default(),
            ttl: Ttl::default(),
            fingerprint: None,
        }
    }
}

/// One live instance as clients see it (the JSON record of the HTTP API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// Service the instance belongs to.
    #[schema(value_type = String, example = "orders")]
    pub service: ServiceName,
    /// Instance id, unique within the service.
    #[schema(value_type = String, example = "orders-1")]
    pub instance: InstanceId,
    /// `host:port` where the instance listens.
    #[schema(value_type = String, example = "127.0.0.1:7000")]
    pub address: Address,
    /// Labels.
    #[schema(value_type = Vec<String>, example = json!(["v2"]))]
    pub tags: Tags,
    /// String pairs.
    #[schema(value_type = HashMap<String, String>, example = json!({"zone": "a"}))]
    pub meta: Meta,
    /// Lease length (humantime, e.g. `10s`).
    #[schema(value_type = String, example = "10s")]
    pub ttl: Ttl,
    /// SHA-256 of the instance certificate's SubjectPublicKeyInfo DER (64 lowercase hex), if
    /// the instance registered one.
    #[schema(value_type = Option<String>)]
    pub fingerprint: Option<Fingerprint>,
    /// Directory node that last accepted a register or heartbeat for this instance.
    #[schema(value_type = String, example = "directory-1")]
    pub owner: NodeName,
    /// Change index of the last user-visible change to this record.
    pub index: u64,
    /// When the current registration was made (RFC 3339 UTC; kept across heartbeats and updates).
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub registered_at: SystemTime,
    /// When the lease runs out unless renewed (RFC 3339 UTC, this node's wall clock).
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub lease_expires_at: SystemTime,
}

impl Record {
    /// Whether the user-visible content equals `reg` (renewals do not count as changes).
    pub(crate) fn same_content(&self, reg: &Registration) -> bool {
        self.address == reg.address
            && self.tags == reg.tags
            && self.meta == reg.meta
            && self.ttl == reg.ttl
            && self.fingerprint == reg.fingerprint
    }

    /// The registration this record was made from.
    pub fn registration(&self) -> Registration {
        Registration {
            address: self.address.clone(),
            tags: self.tags.clone(),
            meta: self.meta.clone(),
            ttl: self.ttl,
            fingerprint: self.fingerprint,
        }
    }
}

/// RFC 3339 UTC timestamps with millisecond precision.
mod rfc3339 {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_millis(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_rfc3339_weak(&s).map_err(D::Error::custom)
    }
}

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
                owner: record.owner.clone(),
                registered_at: record.registered_at,
                lease_remaining,
            }),
        }
    }
}

/// Kind of a user-visible change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// An instance appeared.
    Registered,
    /// A live instance changed address, tags, meta, ttl or fingerprint.
    Updated,
    /// An instance's lease ran out.
    Expired,
    /// An instance was deleted.
    Deregistered,
}

impl ChangeKind {
    /// The snake_case name (also the SSE event name).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Registered => "registered",
            Self::Updated => "updated",
            Self::Expired => "expired",
            Self::Deregistered => "deregistered",
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

/// A user-visible change, as delivered to watchers. Lease renewals are not changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChangeEvent {
    /// What happened.
    #[serde(rename = "type")]
    pub kind: ChangeKind,
    /// Service of the instance.
    #[schema(value_type = String)]
    pub service: ServiceName,
    /// The instance.
    #[schema(value_type = String)]
    pub instance: InstanceId,
    /// Change index of this change.
    pub index: u64,
    /// The new record for `registered`/`updated`; `null` for removals.
    #[schema(value_type = Option<Record>)]
    pub record: Option<Arc<Record>>,
}
