//! The rules of replicated entries, in one place: which version wins, when a lease is over
//! on a node that does not own it, and when a tombstone may be forgotten.
//!
//! A node keeps every entry twice: the registry (what clients read, with the store's
//! timers) and the gossip replica (what gates re-application and re-dissemination). Both
//! decide with the functions below and nowhere else, so they cannot drift apart. Nothing
//! here reads a clock or touches a store: ages and leases come in as arguments.
//!
//! - **Which version wins** — [`supersedes`]: a strictly higher [`Version`] (hybrid logical
//!   clock, then writer id) replaces the one held; an equal or lower one changes nothing.
//!   Every node therefore ends with the same winner whatever the arrival order.
//! - **When a lease is over on a node that does not own it** — [`ReplicationRules::held_lease`]:
//!   the owner (the node that last accepted a register or heartbeat) expires a record when
//!   its lease runs out; every other node holds it `lease_grace` longer, so the owner's
//!   tombstone normally arrives first. A copy that arrives with no lease left is refused
//!   ([`live_copy_accepted`]): it could only spread dead state.
//! - **When a tombstone may be forgotten** — [`ReplicationRules::tombstone_forgettable`]: once
//!   its age (which travels with it) reaches `tombstone_retention`; a tombstone that old is
//!   refused on arrival too.
//! - **When a remote clock is too far ahead** — [`ReplicationRules::version_from_the_future`]:
//!   a remote version whose wall-clock part is more than `max_clock_drift` ahead of the local
//!   wall clock is refused (and counted) before it can win anything or move the local
//!   hybrid logical clock: otherwise one node with a clock set a year ahead would make every
//!   later write on every node lose to its entries for a year.
//!
//! - **When an owner came back without its record** — [`orphaned_by_restart`]: a node
//!   that restarted (a newer generation, known to everyone through the SWIM identity) and
//!   is handed a live copy it owns, written in an earlier generation, while it holds no
//!   live copy of that key, lost the record (it ran without `--data-dir`, or the record
//!   was never durable). Its clients heartbeat the owner, which now answers 404, so the copy
//!   would otherwise live out its whole lease (up to an hour) on every other node. The
//!   owner buries it at once with a tombstone one tick above it ([`burial_version`]);
//!   any newer write (the client registering again anywhere) still wins.
//!
//! Invariant, checked by [`ReplicationRules::validate`]: `tombstone_retention` exceeds the
//! longest lease ([`MAX_TTL`]) plus `lease_grace`. Any live copy older than a deletion has
//! then run out (grace included) everywhere before the tombstone that buries it is
//! forgotten, so a removed instance can never come back.

use std::ops::Add;
use std::time::Duration;

use super::MAX_TTL;
use super::version::Version;

/// Default grace: a non-owner keeps a record this long past its lease. Long enough for the
/// owner's `expired` tombstone to reach every node first (gossip takes milliseconds, an
/// anti-entropy round 5 s at most), short enough that a dead owner's instances vanish soon.
pub const DEFAULT_LEASE_GRACE: Duration = Duration::from_secs(5);
/// Default tombstone retention: the longest lease (1 h) plus the grace, rounded up to
/// 65 minutes. The price is memory for removed keys (about 100 bytes each) for that long.
pub const DEFAULT_TOMBSTONE_RETENTION: Duration = Duration::from_secs(65 * 60);
/// Default largest clock lead accepted from another node: 1 minute. NTP keeps servers
/// within milliseconds and a resumed VM or a slow NTP step within seconds, so honest nodes
/// stay far below it; a lead it allows can pin the local clock ahead by at most this much.
pub const DEFAULT_MAX_CLOCK_DRIFT: Duration = Duration::from_secs(60);
/// Smallest `max_clock_drift` accepted: below a second, ordinary skew between healthy
/// nodes would refuse their writes.
pub const MIN_MAX_CLOCK_DRIFT: Duration = Duration::from_secs(1);

/// The knobs of the replication rules. One value serves the registry and the gossip
/// replica of a node (it lives in [`super::RegistryConfig`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicationRules {
    /// How long a tombstone (a deregistration or expiry) is kept after it was written, on
    /// every node: its age travels with it. Must exceed [`MAX_TTL`] + `lease_grace`.
    /// Default [`DEFAULT_TOMBSTONE_RETENTION`].
    pub tombstone_retention: Duration,
    /// How long a node that does not own a record keeps it past its lease.
    /// Default [`DEFAULT_LEASE_GRACE`].
    pub lease_grace: Duration,
    /// How far ahead of the local wall clock a remote version may be; further ahead it is
    /// refused. At least [`MIN_MAX_CLOCK_DRIFT`]. Default [`DEFAULT_MAX_CLOCK_DRIFT`].
    pub max_clock_drift: Duration,
}

impl Default for ReplicationRules {
    fn default() -> Self {
        Self {
            tombstone_retention: DEFAULT_TOMBSTONE_RETENTION,
            lease_grace: DEFAULT_LEASE_GRACE,
            max_clock_drift: DEFAULT_MAX_CLOCK_DRIFT,
        }
    }
}

/// Replication settings that would let removed instances come back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RulesError {
    /// `tombstone_retention` does not exceed the longest lease plus `lease_grace`: a live
    /// copy older than a deletion could outlive its tombstone. Remedy: raise
    /// `--tombstone-retention` above `minimum`. Nothing was started.
    #[error(
        "tombstone retention {retention:?} must exceed the longest lease plus the lease grace ({minimum:?})"
    )]
    RetentionTooShort {
        /// The configured retention.
        retention: Duration,
        /// The longest lease plus the grace; the retention must be longer.
        minimum: Duration,
    },
    /// `max_clock_drift` is below [`MIN_MAX_CLOCK_DRIFT`]: ordinary skew would refuse
    /// healthy nodes' writes. Remedy: raise `--max-clock-drift`. Nothing was started.
    #[error("max clock drift {0:?} must be at least {MIN_MAX_CLOCK_DRIFT:?}")]
    ClockDriftTooSmall(Duration),
}

impl ReplicationRules {
    /// Checks the invariant of the module docs.
    pub fn validate(&self) -> Result<(), RulesError> {
        if self.max_clock_drift < MIN_MAX_CLOCK_DRIFT {
            return Err(RulesError::ClockDriftTooSmall(self.max_clock_drift));
        }
        let minimum = MAX_TTL.saturating_add(self.lease_grace);
        if self.tombstone_retention > minimum {
            Ok(())
        } else {
            Err(RulesError::RetentionTooShort {
                retention: self.tombstone_retention,
                minimum,
            })
        }
    }

    /// How long from now this node treats a live copy with `lease_remaining` as live:
    /// the lease itself on its owner, the lease plus the grace anywhere else.
    pub fn held_lease(&self, lease_remaining: Duration, owned_here: bool) -> Duration {
        if owned_here {
            lease_remaining
        } else {
            lease_remaining.saturating_add(self.lease_grace)
        }
    }

    /// Whether a tombstone of this age may be forgotten (and, arriving, is refused).
    pub fn tombstone_forgettable(&self, age: Duration) -> bool {
        age >= self.tombstone_retention
    }

    /// When a tombstone written at `written` may be forgotten (the deadline form of
    /// [`Self::tombstone_forgettable`], for timer queues; any clock's instant type).
    pub fn forget_tombstone_at<T: Add<Duration, Output = T>>(&self, written: T) -> T {
        written + self.tombstone_retention
    }
}

impl ReplicationRules {
    /// Whether a remote version is more than `max_clock_drift` ahead of `local_wall_millis`
    /// (the local wall clock, Unix milliseconds): such a version is refused.
    pub fn version_from_the_future(&self, incoming: Version, local_wall_millis: u64) -> bool {
        let drift = u64::try_from(self.max_clock_drift.as_millis()).unwrap_or(u64::MAX);
        incoming.wall_millis() > local_wall_millis.saturating_add(drift)
    }
}

/// Whether `incoming` replaces `held` (last writer wins; `None`: nothing held yet).
pub fn supersedes(incoming: Version, held: Option<Version>) -> bool {
    held.is_none_or(|held| incoming > held)
}

/// The owner-generation rule (module docs): whether a live copy arriving at the node that
/// owns it is an orphan of that node's previous life. `written_ms` is the copy's version
/// time ([`Version::wall_millis`]), `started_ms` the wall-clock milliseconds at which this
/// node's current generation started (its first SWIM generation); `holds_live` whether this
/// node holds any live copy of the key. A copy written in the current generation is never
/// an orphan: the hybrid clock does not run behind the wall clock at start.
pub fn orphaned_by_restart(
    owned_here: bool,
    written_ms: u64,
    started_ms: u64,
    holds_live: bool,
) -> bool {
    owned_here && written_ms < started_ms && !holds_live
}

/// The version of the tombstone that buries an orphan (see [`orphaned_by_restart`]):
/// just above it, written by `node`, so that it replaces exactly that copy and loses to any
/// later write.
pub fn burial_version(orphan: Version, node: u64) -> Version {
    Version {
        hlc: orphan.hlc.saturating_add(1),
        node,
    }
}

/// Whether a live copy that arrives with `lease_remaining` left is worth holding.
pub fn live_copy_accepted(lease_remaining: Duration) -> bool {
    !lease_remaining.is_zero()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(hlc: u64, node: u64) -> Version {
        Version { hlc, node }
    }

    #[test]
    fn the_higher_version_wins_and_ties_change_nothing() {
        assert!(supersedes(v(1, 1), None));
        assert!(supersedes(v(2, 1), Some(v(1, 9))));
        assert!(
            supersedes(v(2, 2), Some(v(2, 1))),
            "same clock: node id decides"
        );
        assert!(!supersedes(v(2, 1), Some(v(2, 1))));
        assert!(!supersedes(v(1, 9), Some(v(2, 1))));
    }

    #[test]
    fn versions_beyond_the_drift_ahead_of_local_time_are_from_the_future() {
        let rules = ReplicationRules::default();
        let local = 1_000_000;
        let at = |ms: u64| v((ms << crate::registry::version::LOGICAL_BITS) | 7, 1);
        assert!(!rules.version_from_the_future(at(local), local));
        assert!(
            !rules.version_from_the_future(at(local + 60_000), local),
            "exactly the drift"
        );
        assert!(rules.version_from_the_future(at(local + 60_001), local));
        assert!(
            !rules.version_from_the_future(at(0), local),
            "the past is fine"
        );
        assert!(!rules.version_from_the_future(at(u64::MAX >> 16), u64::MAX));
    }

    #[test]
    fn only_an_owner_that_restarted_without_the_record_buries_it() {
        let started = 10_000;
        assert!(orphaned_by_restart(true, 9_999, started, false));
        assert!(
            !orphaned_by_restart(false, 9_999, started, false),
            "not ours"
        );
        assert!(
            !orphaned_by_restart(true, 10_000, started, false),
            "this life"
        );
        assert!(!orphaned_by_restart(true, 9_999, started, true), "restored");
        let orphan = v(7 << 16, 3);
        let burial = burial_version(orphan, 9);
        assert!(supersedes(burial, Some(orphan)));
        assert!(
            !supersedes(burial, Some(v((7 << 16) + 1, 10))),
            "a later write wins"
        );
    }

    #[test]
    fn only_non_owners_add_the_grace() {
        let rules = ReplicationRules::default();
        let lease = Duration::from_secs(8);
        assert_eq!(rules.held_lease(lease, true), lease);
        assert_eq!(rules.held_lease(lease, false), Duration::from_secs(13));
        assert!(!live_copy_accepted(Duration::ZERO));
        assert!(live_copy_accepted(Duration::from_millis(1)));
    }

    #[test]
    fn tombstones_are_forgotten_at_exactly_the_retention() {
        let rules = ReplicationRules::default();
        let retention = rules.tombstone_retention;
        assert!(!rules.tombstone_forgettable(retention - Duration::from_millis(1)));
        assert!(rules.tombstone_forgettable(retention));
        assert_eq!(
            rules.forget_tombstone_at(Duration::from_secs(1)),
            retention + Duration::from_secs(1)
        );
    }

    #[test]
    fn retention_must_outlast_the_longest_lease_and_the_grace() {
        assert_eq!(ReplicationRules::default().validate(), Ok(()));
        let rules = ReplicationRules {
            tombstone_retention: MAX_TTL + DEFAULT_LEASE_GRACE,
            ..ReplicationRules::default()
        };
        assert!(matches!(
            rules.validate(),
            Err(RulesError::RetentionTooShort { minimum, .. }) if minimum == MAX_TTL + DEFAULT_LEASE_GRACE
        ));
        let ten_minutes = ReplicationRules {
            tombstone_retention: Duration::from_secs(600),
            ..ReplicationRules::default()
        };
        assert!(ten_minutes.validate().is_err());
        let no_drift = ReplicationRules {
            max_clock_drift: Duration::from_millis(999),
            ..ReplicationRules::default()
        };
        assert_eq!(
            no_drift.validate(),
            Err(RulesError::ClockDriftTooSmall(Duration::from_millis(999)))
        );
    }

    #[test]
    fn the_smallest_clock_drift_and_retention_allowed_are_accepted() {
        let smallest_drift = ReplicationRules {
            max_clock_drift: MIN_MAX_CLOCK_DRIFT,
            ..ReplicationRules::default()
        };
        assert_eq!(smallest_drift.validate(), Ok(()));
        let shortest_retention = ReplicationRules {
            tombstone_retention: MAX_TTL + DEFAULT_LEASE_GRACE + Duration::from_millis(1),
            ..ReplicationRules::default()
        };
        assert_eq!(shortest_retention.validate(), Ok(()));
    }
}
