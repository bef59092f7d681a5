//! The directory's HTTP API in Rust: its request and response types, the validated names
//! they are made of, and [`Client`], the typed async client.
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
//! - `topics` — [`Topic`], [`TopicPattern`] (NATS-style wildcards), [`Subscription`] and
//!   [`Subscriptions`] (what an instance subscribes to, for publish/subscribe), and the
//!   bodies of the topic reads ([`TopicSubscribers`], [`TopicsResponse`]);
//! - `fingerprint` — [`Fingerprint`] (SHA-256 of a certificate's public key, for pinning);
//! - `record` — [`Registration`] (what a client registers) and [`Record`] (what it reads);
//! - `events` — [`ChangeEvent`], [`ChangeKind`] and [`WatchEvent`] (the watch stream);
//! - `bodies` — the other request and response bodies ([`RegisterBody`],
//!   [`ServiceResponse`], [`ServicesResponse`], [`MembersResponse`], [`Health`]);
//! - `prometheus` — [`TargetGroup`], the Prometheus HTTP service discovery format;
//! - `error` — [`ErrorBody`], the one error shape, and its stable [`ErrorCode`]s;
//! - `client` — [`Client`] and [`ClientBuilder`] (failover across node URLs, bearer token,
//!   CA certificates, timeouts), [`ClientError`], [`WatchStream`].
//!
//! Every type with a JSON shape also derives `utoipa::ToSchema`; the server's OpenAPI
//! document is generated from them.
//!
//! # The client
//!
//! [`Client`] speaks to one directory cluster. Give it every node's URL: each call goes to
//! the node that answered last and fails over to the others on a transport error or a 5xx.
//! Errors say what went wrong in terms a user can act on: [`ClientError::Refused`] (nothing
//! listens there), [`ClientError::Timeout`], [`ClientError::Tls`] (for instance an unknown
//! certificate authority: add it with [`ClientBuilder::ca_pem`]),
//! [`ClientError::NotADirectory`] (something else answered) and [`ClientError::Api`] with
//! the directory's [`ErrorCode`].
//!
//! ```no_run
//! use directory_api::{Address, Client, InstanceFilter, Registration, WatchEvent};
//! use futures_util::StreamExt;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::builder(["http://10.0.0.1:7700", "http://10.0.0.2:7700"])
//!     .bearer_token("s3cret")
//!     .build()?;
//! let service = "orders".parse()?;
//! let instance = "orders-1".parse()?;
//! let registration = Registration::new(Address::new("10.0.0.7:7000")?);
//! client.register(&service, &instance, &registration).await?;
//!
//! let view = client.lookup(&service, &InstanceFilter::default()).await?;
//! println!("{} instance(s) at index {}", view.instances.len(), view.index);
//!
//! let mut changes = client.watch(Some(&service)).await?;
//! while let Some(event) = changes.next().await {
//!     if let WatchEvent::Change(change) = event? {
//!         println!("{} {}", change.kind.as_str(), change.instance);
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! `examples/client.rs` is a runnable walk-through (`cargo run -p directory-api --example
//! client`).

#![deny(missing_docs)]

mod address;
mod bodies;
mod client;
mod error;
mod events;
mod fingerprint;
mod labels;
mod names;
mod newtype;
mod prometheus;
mod record;
mod staleness;
mod topics;
mod ttl;

pub use address::Address;
pub use bodies::{
    Health, INDEX_HEADER, MemberRow, MembersResponse, RegisterBody, RegistryHealth, ServiceCount,
    ServiceResponse, ServicesResponse,
};
pub use client::{
    Client, ClientBuilder, ClientError, DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT, InstanceFilter,
    RECONNECT_ATTEMPTS, WatchStream,
};
pub use error::{ErrorBody, ErrorCode, ErrorDetail};
pub use events::{ChangeEvent, ChangeKind, LAGGED_EVENT, Lagged, RESET_EVENT, Reset, WatchEvent};
pub use fingerprint::Fingerprint;
pub use labels::{MAX_META_KEY_LEN, MAX_META_KEYS, MAX_TAGS, MAX_VALUE_LEN, Meta, Tags};
pub use names::{InstanceId, MAX_NAME_LEN, NodeName, ServiceName, ValidationError};
pub use prometheus::{SD_LABEL_PREFIX, TargetGroup};
pub use record::{Record, Registration};
pub use staleness::{ISOLATED_HEADER, LAST_CONTACT_HEADER, Staleness};
pub use topics::{
    GroupCount, GroupSubscribers, MAX_SUBSCRIPTIONS, MAX_TOKEN_LEN, MAX_TOPIC_LEN, PatternSummary,
    Subscription, Subscriptions, Topic, TopicPattern, TopicSubscribers, TopicsResponse,
};
pub use ttl::{DEFAULT_TTL, MAX_TTL, MIN_TTL, Ttl};
