//! Peer SDK: register in the directory, find peers, exchange acknowledged messages over QUIC.
#![deny(missing_docs)]

pub mod config;
pub mod proto;

pub use config::DeliveryConfig;
