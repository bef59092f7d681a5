//! The gossip protocol without its I/O: every file here is a plain state machine or data
//! format. Nothing reads a clock, opens a socket or draws from the thread RNG; time is an
//! argument and randomness a seeded RNG, so a seeded simulation replays exactly.
//!
//! # Layout
//! - [`identity`]: the member identity (address, name, per-start generation).
//! - [`config`]: every knob with its default and presets.
//! - [`wire`]: versioned, size-limited postcard formats (entries, datagrams, sync frames).
//! - [`replica`]: the replicated entries with relative leases and tombstone ages, and the
//!   anti-entropy digests (the rules it applies are `registry::rules`).
//! - `queue`: the piggyback backlog (deadlines go in the crate's one
//!   [`TimerTable`](crate::timers::TimerTable)).
//! - `events`: what the core hands to its driver (transmits, membership events, stats).
//! - [`core`]: the state machine that ties them together (how to drive it is documented
//!   there).
//! - `sim` (tests and the `sim` feature only): a deterministic, seeded simulator of many
//!   cores (loss, delay, crashes, partitions) used by tests and benchmarks.

pub mod config;
pub mod core;
mod events;
pub mod identity;
mod queue;
pub mod replica;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
pub mod wire;

pub use self::config::{GossipConfig, GossipConfigError};
pub use self::core::{GossipCore, MAX_PLAINTEXT};
pub use self::events::{CoreStats, DatagramError, GossipEvent, MemberState, MemberView, Transmit};
pub use self::identity::NodeIdentity;
pub use self::wire::{EntryKey, LiveRecord, SyncMsg, WireEntry, WireState};
