//! The directory's HTTP API in Rust: its request and response types, the validated names
//! they are made of, and (soon) a typed async client.
//!
//! The directory server, its command line, the peer SDK and the tests all use these types,
//! so the JSON on the wire has one definition. Every value a client can send is a newtype
//! that is parsed once ([`ServiceName`], [`Address`], [`Ttl`], ...): a value of the type is
//! valid by construction, and deserializing runs the same parser.
//!
//! # Layout
//! - `newtype` — `validated_string!`, the one way a validated type gets its string
//!   conversions and serde;
//! - `names` — [`ServiceName`], [`InstanceId`], [`NodeName`] and [`ValidationError`];
//! - `address` — [`Address`] (`host:port`);
//! - `ttl` — [`Ttl`], the lease length, and its bounds;
//! - `labels` — [`Tags`] and [`Meta`];
//! - `fingerprint` — [`Fingerprint`] (SHA-256 of a certificate's public key, for pinning);
//! - `record` — [`Registration`] (what a client registers) and [`Record`] (what it reads);
//! - `events` — [`ChangeEvent`], [`ChangeKind`] and [`WatchEvent`] (the watch stream);
//! - `bodies` — the other request and response bodies ([`RegisterBody`],
//!   [`ServiceResponse`], [`ServicesResponse`], [`MembersResponse`], [`Health`]);
//! - `error` — [`ErrorBody`], the one error shape, and its stable [`ErrorCode`]s.
//!
//! Every type with a JSON shape also derives `utoipa::ToSchema`; the server's OpenAPI
//! document is generated from them.

mod address;
mod bodies;
mod error;
mod events;
mod fingerprint;
mod labels;
mod names;
mod newtype;
mod record;
mod ttl;

pub use address::Address;
pub use bodies::{
    Health, INDEX_HEADER, MemberRow, MembersResponse, RegisterBody, ServiceCount, ServiceResponse,
    ServicesResponse,
};
pub use error::{ErrorBody, ErrorCode, ErrorDetail};
pub use events::{ChangeEvent, ChangeKind, LAGGED_EVENT, Lagged, WatchEvent};
pub use fingerprint::Fingerprint;
pub use labels::{MAX_META_KEY_LEN, MAX_META_KEYS, MAX_TAGS, MAX_VALUE_LEN, Meta, Tags};
pub use names::{InstanceId, MAX_NAME_LEN, NodeName, ServiceName, ValidationError};
pub use record::{Record, Registration};
pub use ttl::{DEFAULT_TTL, MAX_TTL, MIN_TTL, Ttl};
