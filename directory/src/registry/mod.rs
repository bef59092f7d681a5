//! The registry: validated records, leases, tombstones, change index, watch events and
//! last-writer-wins merging of entries from other nodes.
//!
//! Layout:
//! - the validated values ([`ServiceName`], [`InstanceId`], [`NodeName`], [`Address`],
//!   [`Ttl`], [`Tags`], [`Meta`], [`Fingerprint`], [`ValidationError`]), what clients see
//!   ([`Record`], [`Registration`]) and what watchers get ([`ChangeEvent`]) live in the API
//!   crate, `directory_api`, and are re-exported here;
//! - `version` — [`Version`] and the hybrid logical clock [`Hlc`];
//! - `clock` — [`Now`], the monotonic and wall-clock time every write is given (the
//!   registry reads no clock itself);
//! - `rules` — the replication rules, I/O-free and shared with the gossip replica: which
//!   version wins ([`supersedes`]), when a non-owner's lease is over and when a tombstone
//!   may be forgotten ([`ReplicationRules`], whose two knobs live in [`RegistryConfig`]);
//! - `entry` — [`Entry`] (what nodes replicate);
//! - `check` — a record's TTL health check ([`CheckStatus`], [`status_at`]), kept in
//!   reserved meta keys (set through the Consul-compatible API, read by it and by DNS);
//! - `store` — the concurrent [`Registry`] (dashmap of per-service state; one timer queue
//!   for lease expiry and tombstone collection), split by concern into writes, lookups,
//!   timers, replication and waits;
//! - `config`, `error` — [`RegistryConfig`] and typed errors.
//!
//! Replication contract: every local write (register, heartbeat, deregister, expiry) gets a
//! fresh [`Version`] and is sent to the hook given to [`Registry::with_replication`];
//! [`Registry::merge_remote`] applies a remote [`Entry`] if [`supersedes`] says it wins.
//! Anti-entropy reads the gossip replica, not the registry.

mod check;
mod clock;
mod config;
mod entry;
mod error;
mod rules;
mod store;
mod version;

pub use check::{CHECK_TTL_META, CheckStatus, STATUS_META, has_check, set_status, status_at};
pub use clock::Now;
pub use config::{
    DEFAULT_EVENT_BUFFER, DEFAULT_MAX_INSTANCES, DEFAULT_MAX_REGISTRY_BYTES, DEFAULT_NODE_NAME,
    RegistryConfig,
};
pub use directory_api::{
    Address, ChangeEvent, ChangeKind, DEFAULT_TTL, Fingerprint, InstanceId, MAX_META_KEYS,
    MAX_TAGS, MAX_TTL, MAX_VALUE_LEN, MIN_TTL, Meta, NodeName, Record, Registration, ServiceName,
    Subscription, Subscriptions, Tags, Topic, TopicPattern, Ttl, ValidationError,
};
pub use entry::{Entry, EntryState, LiveState, TombstoneReason};
pub use error::{HeartbeatError, RegisterError};
pub use rules::{
    DEFAULT_LEASE_GRACE, DEFAULT_MAX_CLOCK_DRIFT, DEFAULT_TOMBSTONE_RETENTION, ReplicationRules,
    RulesError, burial_version, live_copy_accepted, orphaned_by_restart, supersedes,
};
pub(crate) use store::count_from_the_future;
pub use store::{
    Durable, Filter, Journal, JournalEntry, JournalOp, MergeOutcome, NotDurable, ReapStats,
    Refusals, Registry, Replay, RestoreStats, Restored, SLOT_OVERHEAD_BYTES, ServiceSummary,
    ServiceView, Usage,
};
pub(crate) use version::unix_millis;
pub use version::{Hlc, Version};

#[cfg(test)]
mod tests;
