//! The registry: validated records, leases, tombstones, change index, watch events and
//! last-writer-wins merging of entries from other nodes.
//!
//! Layout:
//! - the validated values ([`ServiceName`], [`InstanceId`], [`NodeName`], [`Address`],
//!   [`Ttl`], [`Tags`], [`Meta`], [`Fingerprint`], [`ValidationError`]), what clients see
//!   ([`Record`], [`Registration`]) and what watchers get ([`ChangeEvent`]) live in the API
//!   crate, `directory_api`, and are re-exported here;
//! - `version` — [`Version`] and the hybrid logical clock [`Hlc`];
//! - `entry` — [`Entry`] (what nodes replicate);
//! - `store` — the concurrent [`Registry`] (dashmap of per-service state; one timer queue
//!   for lease expiry and tombstone collection), split by concern into writes, lookups,
//!   timers, replication and waits;
//! - `config`, `error` — [`RegistryConfig`] and typed errors.
//!
//! Replication contract: every local write (register, heartbeat, deregister, expiry) gets a
//! fresh [`Version`] and is sent to the hook given to [`Registry::with_replication`];
//! [`Registry::merge_remote`] applies a remote [`Entry`] if its version is higher;
//! [`Registry::entries`] lists every entry including tombstones for anti-entropy.

mod config;
mod entry;
mod error;
mod store;
mod version;

pub use config::{
    DEFAULT_EVENT_BUFFER, DEFAULT_MAX_INSTANCES, DEFAULT_NODE_NAME, DEFAULT_TOMBSTONE_RETENTION,
    RegistryConfig,
};
pub use directory_api::{
    Address, ChangeEvent, ChangeKind, DEFAULT_TTL, Fingerprint, InstanceId, MAX_META_KEYS,
    MAX_TAGS, MAX_TTL, MAX_VALUE_LEN, MIN_TTL, Meta, NodeName, Record, Registration, ServiceName,
    Tags, Ttl, ValidationError,
};
pub use entry::{Entry, EntryState, LiveState, TombstoneReason};
pub use error::{HeartbeatError, RegisterError};
pub use store::{Filter, MergeOutcome, ReapStats, Registry, ServiceSummary, ServiceView};
pub use version::{Hlc, Version};

#[cfg(test)]
mod tests;
