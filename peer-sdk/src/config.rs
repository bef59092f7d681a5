//! Every knob of the SDK, with its default as a named constant and the reason beside it.

use std::num::NonZeroU32;
use std::time::Duration;

/// Default time to wait for an ack before retrying: long enough for a slow handler, short
/// enough that a silently dead instance is abandoned quickly. Lost connections are noticed
/// sooner (keep-alive) and retried at once.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// Default maximum number of attempts: none, the deadline alone bounds the retries (a
/// maximum suits handlers that fail the same way every time; set it per message with
/// `SendOptions::max_attempts`).
pub const DEFAULT_MAX_ATTEMPTS: Option<NonZeroU32> = None;
/// Default per-message deadline; after it the message goes to the dead letters.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);
/// First retry delay; doubled on every further attempt.
pub const DEFAULT_BACKOFF_INITIAL: Duration = Duration::from_millis(20);
/// Cap of the retry delay.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// How long an instance that could not be reached is avoided when others exist.
pub const DEFAULT_UNHEALTHY_FOR: Duration = Duration::from_secs(2);
/// Messages accepted but not yet resolved per destination service. `send` waits when
/// the window is full: this bounds the memory the sender holds per destination.
pub const DEFAULT_WINDOW: usize = 256;
/// Completed message ids remembered per sender for deduplication.
pub const DEFAULT_DEDUP_WINDOW: usize = 16_384;
/// Replies remembered per sender so that a retried request gets the same reply.
pub const DEFAULT_REPLY_CACHE: usize = 1_024;
/// Senders whose dedup state is kept at once; the least recently seen idle one goes first.
pub const DEFAULT_MAX_SENDERS: usize = 4_096;
/// Idle time after which a sender's dedup state is dropped.
pub const DEFAULT_SENDER_IDLE: Duration = Duration::from_secs(600);
/// Deliveries handed to the application and not yet acked, across all senders; above it
/// new messages are nacked for retry (the receiver sheds load instead of growing).
pub const DEFAULT_MAX_PENDING_DELIVERIES: usize = 65_536;

/// Knobs of the sans-IO delivery core ([`crate::proto::Core`]).
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Time to wait for an ack before the next attempt. Default [`DEFAULT_ACK_TIMEOUT`].
    /// A handler that signals progress (`Message::in_progress`) restarts this wait, so a
    /// slow handler that keeps signalling is never retried on another instance. Shorter
    /// finds dead instances sooner; longer retries slow handlers less often.
    pub ack_timeout: Duration,
    /// Attempts after which a message is dead-lettered before its deadline. Default
    /// [`DEFAULT_MAX_ATTEMPTS`] (no limit).
    pub max_attempts: Option<NonZeroU32>,
    /// Default deadline of a message. Default [`DEFAULT_DEADLINE`].
    pub deadline: Duration,
    /// First retry delay. Default [`DEFAULT_BACKOFF_INITIAL`].
    pub backoff_initial: Duration,
    /// Maximum retry delay. Default [`DEFAULT_BACKOFF_MAX`].
    pub backoff_max: Duration,
    /// How long an unreachable instance is avoided. Default [`DEFAULT_UNHEALTHY_FOR`].
    pub unhealthy_for: Duration,
    /// Dedup ids per sender. Default [`DEFAULT_DEDUP_WINDOW`]. A retry older than this
    /// many completions may be delivered twice (at-least-once beyond the window).
    pub dedup_window: usize,
    /// Cached replies per sender. Default [`DEFAULT_REPLY_CACHE`].
    pub reply_cache: usize,
    /// Senders tracked. Default [`DEFAULT_MAX_SENDERS`].
    pub max_senders: usize,
    /// Idle time before a sender's state is dropped. Default [`DEFAULT_SENDER_IDLE`].
    pub sender_idle: Duration,
    /// Unacked deliveries the receiver holds. Default [`DEFAULT_MAX_PENDING_DELIVERIES`].
    pub max_pending_deliveries: usize,
    /// Seed of the RNG used for jitter (deterministic tests); `None` draws one at start.
    pub rng_seed: Option<u64>,
    /// Persist outgoing messages and receiver records through [`crate::proto::StoreOp`]s.
    /// Set by [`crate::PeerBuilder::store`]; default `false` (in memory).
    pub durable: bool,
    /// Durable peers: messages per destination service held in memory; the rest wait on
    /// disk. Default [`DEFAULT_WINDOW`] (the builder sets it to [`PeerConfig::window`]).
    pub memory_window: usize,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            ack_timeout: DEFAULT_ACK_TIMEOUT,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            deadline: DEFAULT_DEADLINE,
            backoff_initial: DEFAULT_BACKOFF_INITIAL,
            backoff_max: DEFAULT_BACKOFF_MAX,
            unhealthy_for: DEFAULT_UNHEALTHY_FOR,
            dedup_window: DEFAULT_DEDUP_WINDOW,
            reply_cache: DEFAULT_REPLY_CACHE,
            max_senders: DEFAULT_MAX_SENDERS,
            sender_idle: DEFAULT_SENDER_IDLE,
            max_pending_deliveries: DEFAULT_MAX_PENDING_DELIVERIES,
            rng_seed: None,
            durable: false,
            memory_window: DEFAULT_WINDOW,
        }
    }
}

impl DeliveryConfig {
    /// Short timeouts for tests.
    pub fn for_test() -> Self {
        Self {
            ack_timeout: Duration::from_millis(500),
            deadline: Duration::from_secs(10),
            backoff_initial: Duration::from_millis(5),
            backoff_max: Duration::from_millis(200),
            unhealthy_for: Duration::from_millis(300),
            rng_seed: Some(1),
            ..Self::default()
        }
    }
}

/// Default lease TTL registered in the directory; renewed every third of it.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);
/// Default `wait` of blocking lookups: how long the directory may hold a query open.
pub const DEFAULT_LOOKUP_WAIT: Duration = Duration::from_secs(30);
/// Default timeout of one directory HTTP request (on top of the blocking wait).
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// Default QUIC keep-alive: frequent enough that a dead peer is found within a few seconds.
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(1);
/// Default QUIC idle timeout: a connection silent this long is dead and is replaced.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time allowed for a QUIC handshake.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Default time `shutdown` waits for in-flight messages and deliveries to settle.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Default maximum payload: 1 MiB (the frame limit leaves room for headers).
pub const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;
/// Dead letters held in memory for `Peer::dead_letters` readers: enough for a reader that
/// falls behind by a burst; past it they are counted, not held.
pub const DEFAULT_DEAD_LETTER_CAPACITY: usize = 1024;

/// Default store quota: 1 GiB of accepted, unresolved messages (see
/// [`crate::proto::message_cost`]); about 6 million 100-byte messages, hours of a busy sender's
/// traffic while its receivers are down, yet bounded so a dead service cannot fill the disk.
pub const DEFAULT_STORE_QUOTA: u64 = 1024 * 1024 * 1024;
/// Default retention of a receiver's records of handled messages: 7 days, longer than any
/// sensible sender deadline, so a retry within its deadline never reaches a handler twice.
pub const DEFAULT_COMPLETED_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default page cache of the store: 16 MiB. The working set is the head of each service's
/// outbox and the newest receiver records, a few thousand pages at most; redb's own default
/// (1 GiB) let a sender's RSS grow with its backlog on disk.
pub const DEFAULT_STORE_CACHE_BYTES: usize = 16 * 1024 * 1024;

/// What `send` does when the store quota is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WhenFull {
    /// Wait until resolved messages free enough room (backpressure). The default.
    #[default]
    Wait,
    /// Fail at once with [`crate::SendError::StoreFull`]; nothing is stored.
    Fail,
}

/// The durable store of a peer ([`crate::PeerBuilder::store`]).
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Store directory (created if missing); the database is
    /// [`crate::store::FILE_NAME`] inside it.
    pub path: std::path::PathBuf,
    /// Most bytes of accepted, unresolved messages ([`crate::proto::message_cost`] each).
    /// Default [`DEFAULT_STORE_QUOTA`]. This, not the window, bounds what a durable peer
    /// accepts while its receivers are away.
    pub quota_bytes: u64,
    /// What `send` does when the quota is full. Default [`WhenFull::Wait`].
    pub when_full: WhenFull,
    /// How long a receiver remembers a handled message (to answer retries from the record).
    /// Default [`DEFAULT_COMPLETED_RETENTION`]; keep it above the longest sender deadline.
    pub completed_retention: Duration,
    /// Bytes of database pages the store keeps cached in memory (redb's page cache). Default
    /// [`DEFAULT_STORE_CACHE_BYTES`]. More saves reads when a long backlog is loaded back
    /// page by page; less bounds the process's memory tighter. The cache only grows to what
    /// is read or written, so a small store costs less.
    pub cache_bytes: usize,
}

impl StoreConfig {
    /// Defaults for a store in directory `path`.
    pub fn new(path: impl Into<std::path::PathBuf>) -> Self {
        Self {
            path: path.into(),
            quota_bytes: DEFAULT_STORE_QUOTA,
            when_full: WhenFull::Wait,
            completed_retention: DEFAULT_COMPLETED_RETENTION,
            cache_bytes: DEFAULT_STORE_CACHE_BYTES,
        }
    }
}

/// Knobs of a [`crate::Peer`]; set through [`crate::PeerBuilder`].
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// Service name (`[a-z0-9][a-z0-9._-]{0,62}`).
    pub service: String,
    /// Instance name; default `<service>-<random hex>`.
    pub instance: Option<String>,
    /// Directory base URLs, tried in order with failover. Empty: static instances only.
    pub directories: Vec<String>,
    /// QUIC listen address. Default `127.0.0.1:0`.
    pub listen: std::net::SocketAddr,
    /// Address published in the directory; default the bound address (an unspecified IP
    /// becomes 127.0.0.1).
    pub advertise: Option<std::net::SocketAddr>,
    /// Tags published in the directory.
    pub tags: Vec<String>,
    /// Metadata published in the directory.
    pub meta: std::collections::BTreeMap<String, String>,
    /// Topic subscriptions published in the directory, as `(pattern, group)`; `None`: the
    /// group is this peer's service. Default none; at most
    /// [`directory_api::MAX_SUBSCRIPTIONS`], validated at start.
    pub subscriptions: Vec<(String, Option<String>)>,
    /// Lease TTL. Default [`DEFAULT_TTL`]; the directory accepts 1 s to 1 h.
    pub ttl: Duration,
    /// Blocking lookup wait. Default [`DEFAULT_LOOKUP_WAIT`].
    pub lookup_wait: Duration,
    /// Timeout of one directory request. Default [`DEFAULT_HTTP_TIMEOUT`].
    pub http_timeout: Duration,
    /// In-flight window per destination service. Default [`DEFAULT_WINDOW`].
    pub window: usize,
    /// Maximum payload in bytes. Default [`DEFAULT_MAX_PAYLOAD`].
    pub max_payload: usize,
    /// QUIC keep-alive interval. Default [`DEFAULT_KEEP_ALIVE`].
    pub keep_alive: Duration,
    /// QUIC idle timeout. Default [`DEFAULT_IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
    /// Handshake timeout. Default [`DEFAULT_CONNECT_TIMEOUT`].
    pub connect_timeout: Duration,
    /// Shutdown drain time. Default [`DEFAULT_DRAIN_TIMEOUT`].
    pub drain_timeout: Duration,
    /// Dead letters held in memory for [`crate::Peer::dead_letters`] readers. Default
    /// [`DEFAULT_DEAD_LETTER_CAPACITY`]; past it new ones are counted in
    /// [`crate::DeadLetters::dropped`] and `peer_sdk_dead_letters_dropped_total` (a peer with
    /// a store still keeps them on disk).
    pub dead_letter_capacity: usize,
    /// Accept messages only from senders whose client certificate matches the fingerprint
    /// of the instance they claim to be in the directory. Default `false`.
    pub verify_senders: bool,
    /// Durable store; `None` (the default) keeps everything in memory.
    pub store: Option<StoreConfig>,
    /// Delivery core knobs.
    pub delivery: DeliveryConfig,
}

impl PeerConfig {
    /// Defaults for `service`.
    pub fn new(service: &str) -> Self {
        Self {
            service: service.to_owned(),
            instance: None,
            directories: Vec::new(),
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            advertise: None,
            tags: Vec::new(),
            meta: Default::default(),
            subscriptions: Vec::new(),
            ttl: DEFAULT_TTL,
            lookup_wait: DEFAULT_LOOKUP_WAIT,
            http_timeout: DEFAULT_HTTP_TIMEOUT,
            window: DEFAULT_WINDOW,
            max_payload: DEFAULT_MAX_PAYLOAD,
            keep_alive: DEFAULT_KEEP_ALIVE,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            dead_letter_capacity: DEFAULT_DEAD_LETTER_CAPACITY,
            verify_senders: false,
            store: None,
            delivery: DeliveryConfig::default(),
        }
    }

    /// Short intervals for tests: 2 s TTL, 1 s blocking waits, fast retries.
    pub fn for_test(service: &str) -> Self {
        Self {
            ttl: Duration::from_secs(2),
            lookup_wait: Duration::from_secs(1),
            http_timeout: Duration::from_secs(2),
            keep_alive: Duration::from_millis(200),
            idle_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(2),
            delivery: DeliveryConfig {
                rng_seed: None,
                ..DeliveryConfig::for_test()
            },
            ..Self::new(service)
        }
    }
}

/// Checks a service or instance name against the directory's rule `[a-z0-9][a-z0-9._-]{0,62}`
/// (the API crate's parser, so the two cannot drift).
pub fn valid_name(name: &str) -> bool {
    directory_api::ServiceName::new(name).is_ok()
}
