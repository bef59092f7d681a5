//! Cluster gossip: SWIM membership (foca) plus replication of registry entries.
//!
//! # Layout
//! - [`proto`]: the protocol without its I/O — the sans-IO [`GossipCore`], its replica,
//!   wire formats, identity, knobs and (for tests and the `sim` feature) the simulator.
//! - [`key`]: the cluster key; [`crypto`]: the AEAD envelope with replay protection (the
//!   per-sender session ids come from the thread RNG here, never inside the core).
//! - [`keyring`]: the keys a node seals with (primary) and opens with (any), reloadable,
//!   for rotating the cluster key without downtime.
//! - [`handle`]: [`Gossip`], the public handle (start, member list, shutdown; it spawns
//!   the seed resolver); [`settings`]: what it is started with ([`GossipSettings`], [`Security`]), its
//!   start errors and its traffic counters.
//! - `driver`: the loop, the one tokio task that owns the core and moves its bytes (UDP)
//!   and time; `command`: what the handle, the seed resolver and the streams ask of it;
//!   `stream`: the TCP anti-entropy sessions; `handshake`: the bounded table of connections
//!   not yet authenticated. Imports run one way (handle → driver →
//!   stream → command/settings).
//! - `seeds`: the seed resolver, looking every `--join` name up again each round.
//! - [`contact`]: [`ClusterContact`], when this node last heard from another member and
//!   whether it sees itself isolated (recorded by the driver, reported on every lookup).
//! - [`convert`]: the registry adapter, between the registry's validated [`crate::registry::Entry`]
//!   and the wire's [`WireEntry`].

mod command;
pub mod contact;
pub mod convert;
pub mod crypto;
mod driver;
pub mod handle;
mod handshake;
pub mod key;
pub mod keyring;
pub mod proto;
mod seeds;
pub mod settings;
mod stream;

pub use self::contact::ClusterContact;
pub use self::crypto::{DropReason, Opener, Sealer};
pub use self::handle::Gossip;
pub use self::key::{ClusterKey, ClusterKeyError};
pub use self::keyring::{KeyId, Keyring, KeyringError, Keys};
pub use self::proto::{
    CoreStats, DatagramError, EntryKey, GossipConfig, GossipConfigError, GossipCore, GossipEvent,
    LiveRecord, MAX_PLAINTEXT, MemberState, MemberView, NodeIdentity, SyncMsg, Transmit, WireEntry,
    WireState,
};
pub use self::settings::{
    DEFAULT_GOSSIP_ADDR, GossipCounters, GossipSettings, GossipStartError, Security,
};
pub use self::stream::{HANDSHAKE_TIMEOUT, MAX_FIRST_FRAME, MAX_HANDSHAKES};
