//! Cluster gossip: SWIM membership (foca) plus replication of registry entries.
//!
//! # Layout
//! - [`identity`]: the member identity (address, name, per-start generation).
//! - [`config`]: every knob with its default and presets.
//! - [`wire`]: versioned, size-limited postcard formats (entries, datagrams, sync frames).
//! - [`crypto`]: the cluster key and the AEAD envelope with replay protection.
//! - [`replica`]: last-writer-wins entry view, tombstone ages, relative leases, digests.
//! - `queue`, `timers`: the piggyback backlog and the deadline table.
//! - [`core`]: the sans-IO state machine that ties them together (how to drive it is
//!   documented there).
//! - [`driver`] and `stream`: the tokio task owning the core, UDP datagrams and the TCP
//!   anti-entropy sessions; `events`: what the core hands to its driver.
//! - [`sim`]: a deterministic, seeded simulator of many cores (loss, delay, crashes,
//!   partitions) used by tests and benchmarks.

pub mod config;
pub mod convert;
pub mod core;
pub mod crypto;
pub mod driver;
mod events;
pub mod identity;
mod queue;
pub mod replica;
pub mod sim;
mod stream;
mod timers;
pub mod wire;

pub use self::config::{GossipConfig, GossipConfigError};
pub use self::core::{
    CoreStats, DatagramError, GossipCore, GossipEvent, MAX_PLAINTEXT, MemberState, MemberView,
    Transmit,
};
pub use self::crypto::{ClusterKey, ClusterKeyError, DropReason, Opener, Sealer};
pub use self::driver::{
    DEFAULT_GOSSIP_ADDR, Gossip, GossipCounters, GossipSettings, GossipStartError, Security,
};
pub use self::identity::NodeIdentity;
pub use self::wire::{EntryKey, LiveRecord, SyncMsg, WireEntry, WireState};
