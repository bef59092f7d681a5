//! The directory: a leaderless service directory with TTL leases, blocking queries and watch.
//!
//! # Layout
//! - [`gossip`]: cluster membership (SWIM via foca) and replication of registrations.

pub mod gossip;
