//! Cluster gossip: SWIM membership (foca) plus replication of registry entries.
//!
//! # Layout
//! - [`proto`]: the protocol without its I/O — the sans-IO [`GossipCore`], its replica,
//!   wire formats, identity, knobs and (for tests and the `sim` feature) the simulator.
//! - [`crypto`]: the cluster key and the AEAD envelope with replay protection (the
//!   per-sender session ids come from the thread RNG here, never inside the core).
//! - [`driver`] and `stream`: the tokio task owning the core, UDP datagrams and the TCP
//!   anti-entropy sessions.
//! - [`convert`]: the registry adapter, between the registry's validated [`crate::registry::Entry`]
//!   and the wire's [`WireEntry`].

pub mod convert;
pub mod crypto;
pub mod driver;
pub mod proto;
mod stream;

pub use self::crypto::{ClusterKey, ClusterKeyError, DropReason, Opener, Sealer};
pub use self::driver::{
    DEFAULT_GOSSIP_ADDR, Gossip, GossipCounters, GossipSettings, GossipStartError, Security,
};
pub use self::proto::{
    CoreStats, DatagramError, EntryKey, GossipConfig, GossipConfigError, GossipCore, GossipEvent,
    LiveRecord, MAX_PLAINTEXT, MemberState, MemberView, NodeIdentity, SyncMsg, Transmit, WireEntry,
    WireState,
};
