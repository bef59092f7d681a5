//! Every knob of the SDK, with its default as a named constant and the reason beside it.

use std::time::Duration;

/// Default time to wait for an ack before retrying: long enough for a slow handler, short
/// enough that a silently dead instance is abandoned quickly. Lost connections are noticed
/// sooner (keep-alive) and retried at once.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(5);
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
    pub ack_timeout: Duration,
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
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            ack_timeout: DEFAULT_ACK_TIMEOUT,
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
