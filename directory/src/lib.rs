//! The directory: a leaderless service directory with TTL leases, blocking queries and watch.
//!
//! Services register `host:port` endpoints under a TTL lease; anyone can look them up,
//! filter them and watch them over HTTP. Start a node with [`Server::start`].
//!
//! # Layout
//! - [`acl`] — access control: tokens with rules from an ACL file, reloadable.
//! - `directory_api` (a crate of its own) — the HTTP API's request and response types and
//!   the validated names; re-exported through [`registry`] and [`http`].
//! - [`registry`] — the in-memory store: validated records, leases, tombstones, change
//!   index, watch events, last-writer-wins merge for replication, and `registry::rules`,
//!   the one home of the replication rules (which version wins, lease grace, tombstone
//!   retention) that the store and the gossip replica both call.
//! - [`gossip`] — cluster membership (SWIM via foca) and replication of registrations:
//!   `gossip::proto` is the protocol without I/O (core, replica, wire codec, simulator
//!   behind the `sim` feature); beside it the encryption envelope, the registry adapter and
//!   the tokio driver with its transports.
//! - [`dns`] — the DNS interface (A, AAAA, SRV over UDP and TCP): the answer as a pure
//!   function of the registry, and hickory-server listeners around it.
//! - [`persist`] — the data directory (`--data-dir`): the registry in redb, written by a
//!   group committer from the registry's journal and restored at start.
//! - [`http`] — the axum router and handlers (one error type, OpenAPI document).
//! - `config` — [`Config`], every knob with its default.
//! - [`listener`] — the HTTP accept loop: connection cap, header-read timeout, TLS
//!   (rustls, reloadable), accept-error backoff.
//! - `server` — [`Server`]: start, bound addresses, graceful shutdown.
//! - `metrics` — the Prometheus recorder behind `GET /metrics`.
//! - `timers` — `TimerTable`, the one deadline table of the registry's leases and
//!   tombstones and of the gossip core.
//! - [`cli`] — the `directory` command line (server and client subcommands).

pub mod acl;
pub mod cli;
mod config;
pub mod dns;
pub mod gossip;
pub mod http;
pub mod listener;
mod metrics;
pub mod persist;
pub mod registry;
mod server;
mod timers;

pub use config::{
    Config, DEFAULT_BODY_LIMIT, DEFAULT_HTTP_ADDR, DEFAULT_LOOKUP_CACHE_BYTES, DEFAULT_MAX_WAIT,
    DEFAULT_SHUTDOWN_GRACE, DEFAULT_SSE_KEEP_ALIVE, DEFAULT_WAIT,
};
pub use metrics::prometheus_handle;
pub use server::{Server, StartError, shutdown_signal};
