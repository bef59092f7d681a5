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
//! # Layout
//! - [`config`]: every knob with its default ([`PeerConfig`], [`DeliveryConfig`]).
//! - [`error`]: one error enum per operation.
//! - [`proto`]: the sans-IO delivery core (frames and codec, outbox with retries and
//!   backoff, dedup windows, ordering keys, dead letters, one timer table).
//! - [`tls`]: identity (key pair, self-signed certificate), fingerprints, pinning verifiers.
//! - `link`: per-stream I/O tasks (dial, accept, reader, writer).
//! - `driver`: the single task that owns the core and the link table.
//! - `discovery`: directory client (register, lease, failover, cached blocking lookups).
//! - `endpoint`: the public async API ([`Peer`], [`PeerBuilder`], [`Message`]).
#![deny(missing_docs)]

pub mod config;
mod discovery;
mod driver;
mod endpoint;
pub mod error;
mod link;
pub mod proto;
pub mod tls;

pub use config::{DeliveryConfig, PeerConfig};
pub use endpoint::{
    BroadcastOutcome, DeadLetters, Incoming, Message, Nack, Peer, PeerBuilder, Pending, SendOptions,
};
pub use error::{BroadcastError, DiscoveryError, IdentityError, SendError, StartError};
pub use proto::{DeadLetter, DeadLetterReason, InstanceInfo};
pub use tls::{Fingerprint, Identity};
