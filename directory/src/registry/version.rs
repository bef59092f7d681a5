//! Record versions and the hybrid logical clock that produces them.
//!
//! Every write to a record (register, heartbeat, deregister, expiry) gets a fresh [`Version`].
//! Replicas keep the entry with the highest version (last writer wins). Versions come from a
//! hybrid logical clock ([`Hlc`]): close to wall-clock time so "last" means what people expect,
//! but never going backwards and always ahead of every version this node has seen, so a
//! local write always supersedes what it replaces even when clocks between nodes are skewed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Bits of an HLC value holding the logical counter (the low 16).
pub const LOGICAL_BITS: u32 = 16;

/// The version of one registry entry: totally ordered by `hlc`, then by `node`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
pub struct Version {
    /// Hybrid logical clock reading: 48-bit wall-clock milliseconds, 16-bit logical counter.
    pub hlc: u64,
    /// Id of the node that wrote this version ([`super::NodeName::id`]); breaks ties.
    pub node: u64,
}

impl Version {
    /// The wall-clock milliseconds part of the clock reading.
    pub fn wall_millis(&self) -> u64 {
        self.hlc >> LOGICAL_BITS
    }
}

/// A hybrid logical clock: 48-bit wall-clock milliseconds and a 16-bit logical counter packed
/// in one `u64`. Lock-free; safe to share between threads.
///
/// Inputs: [`Hlc::tick`] for a local event (takes the wall time as an argument, so tests can
/// drive it), [`Hlc::observe`] for a version received from another node.
#[derive(Debug, Default)]
pub struct Hlc {
    last: AtomicU64,
}

impl Hlc {
    /// A clock that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns a reading strictly greater than every reading returned or observed so far and
    /// at least `wall_millis << 16`. A stalled or backwards wall clock advances the counter;
    /// a counter overflow carries into the millisecond part (still monotonic).
    pub fn tick(&self, wall_millis: u64) -> u64 {
        let physical = pack(wall_millis);
        let update = |last: u64| Some(physical.max(last.saturating_add(1)));
        match self
            .last
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, update)
        {
            // `update` always returns Some, so this is the previous value.
            Ok(prev) | Err(prev) => physical.max(prev.saturating_add(1)),
        }
    }

    /// Moves the clock forward so the next [`Hlc::tick`] is greater than `remote`.
    pub fn observe(&self, remote: u64) {
        self.last.fetch_max(remote, Ordering::AcqRel);
    }

    /// The last reading returned or observed.
    pub fn last(&self) -> u64 {
        self.last.load(Ordering::Acquire)
    }
}

/// Packs wall-clock milliseconds into the clock's high 48 bits.
fn pack(wall_millis: u64) -> u64 {
    (wall_millis & ((1 << (64 - LOGICAL_BITS)) - 1)) << LOGICAL_BITS
}

/// Milliseconds since the Unix epoch of `t` (0 before the epoch).
pub fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_follow_wall_time_when_it_moves_forward() {
        let hlc = Hlc::new();
        let a = hlc.tick(1_000);
        let b = hlc.tick(2_000);
        assert_eq!(a >> LOGICAL_BITS, 1_000);
        assert_eq!(b >> LOGICAL_BITS, 2_000);
        assert_eq!(b & 0xffff, 0);
    }

    #[test]
    fn ticks_stay_monotonic_when_wall_time_stalls_or_goes_back() {
        let hlc = Hlc::new();
        let a = hlc.tick(5_000);
        let b = hlc.tick(5_000);
        let c = hlc.tick(4_000);
        assert!(a < b && b < c);
        assert_eq!(c >> LOGICAL_BITS, 5_000);
        assert_eq!(c & 0xffff, 2);
    }

    #[test]
    fn observed_remote_readings_push_the_next_tick_past_them() {
        let hlc = Hlc::new();
        let remote = pack(9_000) + 7;
        hlc.observe(remote);
        let next = hlc.tick(1_000);
        assert!(next > remote);
        hlc.observe(1); // an older reading changes nothing
        assert!(hlc.tick(1_000) > next);
    }

    #[test]
    fn versions_order_by_clock_then_node() {
        let a = Version { hlc: 1, node: 9 };
        let b = Version { hlc: 2, node: 1 };
        let c = Version { hlc: 2, node: 2 };
        assert!(a < b && b < c);
    }

    #[test]
    fn concurrent_ticks_are_unique() {
        let hlc = std::sync::Arc::new(Hlc::new());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let hlc = hlc.clone();
                std::thread::spawn(move || (0..1000).map(|_| hlc.tick(42)).collect::<Vec<_>>())
            })
            .collect();
        let mut all: Vec<u64> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 4000);
    }
}
