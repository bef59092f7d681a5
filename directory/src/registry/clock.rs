//! [`Now`]: the time a registry operation happens at, given by the caller. The registry never
//! reads a clock itself, so tests (and the simulator) decide what time it is.

use std::time::SystemTime;

use tokio::time::Instant;

/// The time of one registry operation: a monotonic reading for lease deadlines and timers,
/// and the wall clock for versions (the hybrid logical clock) and the timestamps clients see
/// (`registered_at`, `lease_expires_at`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Monotonic time: deadlines are `instant + lease`.
    pub instant: Instant,
    /// Wall-clock time: never compared across nodes except through versions.
    pub wall: SystemTime,
}

impl Now {
    /// Both clocks read now (what the HTTP handlers and the reaper task pass).
    pub fn current() -> Self {
        Self {
            instant: Instant::now(),
            wall: SystemTime::now(),
        }
    }
}

/// A caller that only cares about the monotonic time passes an `Instant`: it is paired with
/// the wall clock read at the call, on the caller's side of the registry.
impl From<Instant> for Now {
    fn from(instant: Instant) -> Self {
        Self {
            instant,
            wall: SystemTime::now(),
        }
    }
}
