//! The directory: a leaderless service directory with TTL leases, blocking queries and watch.
//!
//! # Layout
//! - [`registry`] — the in-memory store: validated records, leases, tombstones, change
//!   index, watch events, last-writer-wins merge for replication.
//! - [`gossip`] — cluster membership (SWIM via foca) and replication of registrations:
//!   sans-IO core, wire codec, encryption envelope, simulator.

pub mod gossip;
pub mod registry;
