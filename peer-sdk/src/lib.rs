//! Peer SDK: register in the directory, find peers, exchange acknowledged messages directly
//! over QUIC — no broker on the data path.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use peer_sdk::Peer;
//! let peer = Peer::builder("billing")
//!     .directory(["http://127.0.0.1:7700"])
//!     .listen("127.0.0.1:0")
//!     .tags(["v2"])
//!     .meta("zone", "a")
//!     .start()
//!     .await?;
//! let mut inbox = peer.incoming();
//! tokio::spawn(async move {
//!     while let Some(msg) = inbox.next().await {
//!         msg.ack();
//!     }
//! });
//! peer.send("orders", &b"payload"[..]).await?;
//! let reply = peer.request("orders", &b"question"[..]).await?;
//! # let _ = reply;
//! peer.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Store and forward
//! Without a store everything is in memory: a message is retried until its deadline, and a
//! crash of the sender loses what it had not resolved. With [`PeerBuilder::store`] the peer
//! keeps a crash-safe store (see [`store`]):
//! - acceptance (`send`, `enqueue`, `request`, `broadcast`) is reported only once the message
//!   is committed (group commit), and it is deleted only when acked, replied or dead-lettered;
//! - after a crash or restart with the same store, every unresolved message resumes with its
//!   original id, payload, ordering key and deadline, and per-key order holds; the key pair,
//!   instance name and session persist, so receivers deduplicate the retries;
//! - memory holds at most the window per service (and a page cache of
//!   [`StoreConfig::cache_bytes`]); the store quota ([`StoreConfig::quota_bytes`]) bounds
//!   accepted messages, and `send` waits or fails ([`WhenFull`]) when it is full;
//! - a receiver commits a record of each handled message (and a request's reply) before its
//!   ack or reply goes out, keeps it for [`StoreConfig::completed_retention`], and answers a
//!   retry from it after a restart without running the handler;
//! - dead letters are kept on disk ([`Store::dead_letters`], replay, purge).
//!
//! The remaining window: a handler that finished in a process killed before its record was
//! committed runs again on the sender's retry (its ack had not been sent).
//!
//! # Layout
//! - [`config`]: every knob with its default ([`PeerConfig`], [`DeliveryConfig`]).
//! - [`error`]: one error enum per operation.
//! - [`proto`]: the sans-IO delivery core (frames and codec, outbox with retries and
//!   backoff, dedup windows, ordering keys, dead letters, one timer table).
//! - [`tls`]: identity (key pair, self-signed certificate), fingerprints (the API crate's
//!   [`Fingerprint`]), pinning verifiers.
//! - `link`: per-stream I/O tasks (dial, accept, reader, writer).
//! - `driver`: the single task that owns the core and the link table.
//! - `input`: what the driver is told (`Input`, on its one channel) by the
//!   application, the link tasks, the store's committer and discovery.
//! - `discovery`: the peer's directory policies (lease renewal, re-registration after a 404,
//!   cached blocking lookups) over [`directory_api::Client`], which does the HTTP and the
//!   failover. The API crate is re-exported as [`directory_api`]: to look services up
//!   without starting a peer, use its `Client` directly.
//! - `builder`: [`PeerBuilder`] and start-up (validation, QUIC endpoint, registration,
//!   spawning the driver and link tasks).
//! - `peer`: the running [`Peer`] and its send side (send, request, broadcast, enqueue
//!   with a [`Pending`] outcome, [`SendOptions`], windows, shutdown); `peer::publish`:
//!   [`Peer::publish`], one copy per subscribed consumer group ([`PublishOutcome`]).
//! - `topic`: publish/subscribe destinations of the delivery core (a consumer group's
//!   subscribers of a topic, addressed like a service).
//! - `received`: the receive side ([`Incoming`], [`Message`] with its [`Progress`] signal,
//!   [`Nack`], [`DeadLetters`]).
//! - [`store`]: the durable store ([`Store`]): outbox, dead letters, receiver records,
//!   identity; its group committer executes the core's [`proto::StoreOp`]s.
//! - `quota`: the store quota that bounds what a durable peer accepts.
//! - [`metrics`]: the metrics the SDK records, with their HELP text ([`describe_metrics`]).
//!
//! The package also builds the `peer` command-line tool (`src/bin/peer`, feature `cli`, on
//! by default: turn default features off to build the library without clap, anyhow,
//! indicatif and hdrhistogram).
#![deny(missing_docs)]

mod builder;
#[cfg(feature = "cli")]
pub mod cli;
pub mod config;
mod discovery;
mod driver;
pub mod error;
mod input;
mod link;
pub mod metrics;
mod peer;
pub mod proto;
mod quota;
mod received;
pub mod store;
pub mod tls;
mod topic;

pub use self::metrics::describe_metrics;
pub use builder::PeerBuilder;
pub use config::{DeliveryConfig, PeerConfig, StoreConfig, WhenFull};
/// The directory's API types and its Rust client: look services up without starting a peer.
pub use directory_api;
pub use error::{
    BroadcastError, DiscoveryError, IdentityError, PublishError, SendError, StartError,
};
pub use peer::{
    BroadcastOutcome, GroupOutcome, Peer, Pending, PublishOptions, PublishOutcome, SendOptions,
};
pub use proto::{Cause, DeadLetter, DeadLetterReason, InstanceInfo};
pub use received::{DeadLetters, Incoming, Message, Nack, Progress};
pub use store::{Store, StoreError};
pub use tls::{CertificatePin, Fingerprint, Identity};
