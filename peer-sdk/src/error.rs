//! Typed errors, one enum per operation.

use crate::proto::DeadLetter;
use std::net::SocketAddr;

/// Creating or loading a peer identity failed. Nothing was changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// Key generation failed (should not happen with the ring provider).
    #[error("cannot generate a key pair: {0}")]
    Generate(String),
    /// The certificate is not valid X.509 DER/PEM. Remedy: pass the right file.
    #[error("invalid certificate: {0}")]
    BadCertificate(String),
    /// The private key is not valid PKCS#8/SEC1/PKCS#1 DER/PEM, or does not match the certificate.
    #[error("invalid private key: {0}")]
    BadKey(String),
    /// A fingerprint is not 64 lowercase hex characters.
    #[error("invalid fingerprint {0:?}: expected 64 lowercase hex characters")]
    BadFingerprint(String),
    /// A key or certificate file could not be read.
    #[error("cannot read {0}: {1}")]
    Read(String, String),
    /// rustls rejected the configuration.
    #[error("TLS configuration error: {0}")]
    Tls(String),
}

/// `Peer::start` failed. Nothing is left running: the socket is closed and nothing was
/// registered (or it was deregistered again).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A builder value is invalid (names, URLs, sizes). Remedy: fix the value.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The identity could not be created or loaded.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The QUIC socket could not be bound. Remedy: another address or port 0.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// Requested address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// No directory accepted the registration. Remedy: check the directory URLs.
    #[error("registration failed: {0}")]
    Register(#[from] DiscoveryError),
    /// The store could not be opened (locked by another peer, foreign or corrupt file,
    /// other format version); nothing was started.
    #[error("cannot open the store: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// `publish` did not start: nothing was sent to any group. (A group whose copy failed is
/// reported in [`crate::PublishOutcome`] instead.)
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The topic is not dot-separated tokens `[a-z0-9_-]{1,63}` of at most 255 bytes.
    #[error(transparent)]
    InvalidTopic(directory_api::ValidationError),
    /// No group subscribes to the topic and the publish asked to fail at once
    /// ([`crate::PublishOptions::no_subscribers`]). Remedy: start a subscriber, or publish
    /// without the option (a publish with no subscriber then delivers nothing).
    #[error("no group subscribes to topic {0:?}")]
    NoSubscribers(String),
    /// The peer has no directory: subscriptions live there. Remedy: configure one.
    #[error("publishing needs a directory: none is configured")]
    NoDirectory,
    /// The directory could not say who subscribes (unreachable, or it refused: a token
    /// needs a `publish:` rule for the topic).
    #[error("cannot look up the subscribers: {0}")]
    Directory(DiscoveryError),
}

/// `send` or `request` did not succeed. The message is not retried any further.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// Given up: deadline passed, nacked to dead letter, or shutdown. The dead letter (also
    /// published on `Peer::dead_letters`) carries the reason and the attempts.
    ///
    /// Match on `.reason` ([`crate::DeadLetterReason`]) to tell what happened: no
    /// instances or directory unreachable (as the last error of a passed deadline),
    /// identity mismatch (not retried), rejected by the handler, attempts used up.
    #[error("message dead-lettered: {} after {} attempt(s)", .0.reason, .0.attempts)]
    DeadLettered(Box<DeadLetter>),
    /// The peer is shut down; nothing was sent.
    #[error("the peer is shut down")]
    ShutDown,
    /// The payload exceeds the maximum payload size; nothing was sent.
    #[error("payload of {size} bytes exceeds the maximum of {max}")]
    PayloadTooLarge {
        /// Payload size.
        size: usize,
        /// Configured maximum.
        max: usize,
    },
    /// The ordering key exceeds 1024 bytes; nothing was sent.
    #[error("ordering key of {0} bytes exceeds 1024")]
    KeyTooLong(usize),
    /// The service has no registered instance and the message asked to fail at once
    /// ([`crate::SendOptions::no_responders`]); it is not retried (also a dead letter with
    /// [`crate::DeadLetterReason::NoResponders`]). Remedy: start the service or wait for it.
    #[error("service {0:?} has no registered instance (no responders)")]
    NoResponders(String),
    /// The store quota is full and the peer is configured to fail rather than wait
    /// ([`crate::config::WhenFull::Fail`]); nothing was stored. Remedy: retry later, raise
    /// the quota, or purge what cannot be delivered.
    #[error("store quota full: {needed} bytes needed, {quota} bytes quota")]
    StoreFull {
        /// Cost of this message.
        needed: u64,
        /// Configured quota.
        quota: u64,
    },
}

/// `broadcast` could not start. Per-instance failures are reported in its result instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BroadcastError {
    /// The service has no known instance (after a lookup).
    #[error("service {0:?} has no instances")]
    NoInstances(String),
    /// The peer is shut down.
    #[error("the peer is shut down")]
    ShutDown,
    /// The payload exceeds the maximum payload size.
    #[error("payload of {size} bytes exceeds the maximum of {max}")]
    PayloadTooLarge {
        /// Payload size.
        size: usize,
        /// Configured maximum.
        max: usize,
    },
}

/// A directory request failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// No directory URL was configured.
    #[error("no directory configured")]
    NoDirectory,
    /// Every directory URL failed; `last` is the last failure.
    #[error("no directory answered: {last}")]
    Unavailable {
        /// Last error seen.
        last: String,
    },
    /// A directory answered with an error.
    #[error("directory {url} answered {status}: {code}: {message}")]
    Rejected {
        /// Directory URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// Error code from the body.
        code: String,
        /// Error message from the body.
        message: String,
    },
    /// The HTTP client could not be created.
    #[error("HTTP client error: {0}")]
    Client(String),
}
