//! The registry: validated records, leases, tombstones, change index, watch events and
//! last-writer-wins merging of entries from other nodes.
//!
//! Layout:
//! - `names` — the validated name newtypes ([`ServiceName`], [`InstanceId`], [`NodeName`]) and
//!   [`ValidationError`], shared by every validated type;
//! - `address` — [`Address`] (`host:port`);
//! - `ttl` — [`Ttl`], the lease length, and its bounds;
//! - `labels` — [`Tags`] and [`Meta`];
//! - `fingerprint` — [`Fingerprint`] (pinned peer identity);
//! - `version` — [`Version`] and the hybrid logical clock [`Hlc`];
//! - `rules` — the replication rules, I/O-free and shared with the gossip replica: which
//!   version wins ([`supersedes`]), when a non-owner's lease is over and when a tombstone
//!   may be forgotten ([`ReplicationRules`], whose two knobs live in [`RegistryConfig`]);
//! - `entry` — [`Record`] (what clients see), [`Entry`] (what nodes replicate),
//!   [`ChangeEvent`] (what watchers get);
//! - `store` — the concurrent [`Registry`] (dashmap of per-service state; one timer queue
//!   for lease expiry and tombstone collection), split by concern into writes, lookups,
//!   timers, replication and waits;
//! - `config`, `error` — [`RegistryConfig`] and typed errors.
//!
//! Replication contract: every local write (register, heartbeat, deregister, expiry) gets a
//! fresh [`Version`] and is sent to the hook given to [`Registry::with_replication`];
//! [`Registry::merge_remote`] applies a remote [`Entry`] if [`supersedes`] says it wins.
//! Anti-entropy reads the gossip replica, not the registry.

mod address;
mod config;
mod entry;
mod error;
mod fingerprint;
mod labels;
mod names;
mod rules;
mod store;
mod ttl;
mod version;

pub use address::Address;
pub use config::{DEFAULT_EVENT_BUFFER, DEFAULT_MAX_INSTANCES, DEFAULT_NODE_NAME, RegistryConfig};
pub use entry::{
    ChangeEvent, ChangeKind, Entry, EntryState, LiveState, Record, Registration, TombstoneReason,
};
pub use error::{HeartbeatError, RegisterError};
pub use fingerprint::Fingerprint;
pub use labels::{MAX_META_KEYS, MAX_TAGS, MAX_VALUE_LEN, Meta, Tags};
pub use names::{InstanceId, NodeName, ServiceName, ValidationError};
pub use rules::{
    DEFAULT_LEASE_GRACE, DEFAULT_TOMBSTONE_RETENTION, ReplicationRules, RulesError,
    live_copy_accepted, supersedes,
};
pub use store::{Filter, MergeOutcome, ReapStats, Registry, ServiceSummary, ServiceView};
pub use ttl::{DEFAULT_TTL, MAX_TTL, MIN_TTL, Ttl};
pub use version::{Hlc, Version};

#[cfg(test)]
mod tests;
