//! Exponential backoff with jitter drawn from the core's seeded RNG.

use rand::RngExt;
use std::time::Duration;

/// Backoff parameters (see [`crate::DeliveryConfig`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    pub(crate) initial: Duration,
    pub(crate) max: Duration,
}

impl Backoff {
    /// Delay before retry number `attempt` (1-based count of attempts already made):
    /// `initial * 2^(attempt-1)`, capped at `max`, then a uniformly random value in
    /// `[delay/2, delay]` ("equal jitter") so synchronized senders spread out.
    pub(crate) fn delay(&self, attempt: u32, rng: &mut impl rand::Rng) -> Duration {
        let exp = attempt.saturating_sub(1).min(20);
        let base = self.initial.saturating_mul(1u32 << exp).min(self.max);
        let nanos = u64::try_from(base.as_nanos()).unwrap_or(u64::MAX);
        let half = nanos / 2;
        Duration::from_nanos(half + rng.random_range(0..=half))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn delays_grow_exponentially_within_jitter_and_cap() {
        let b = Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(100),
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for attempt in 1..12 {
            let full = Duration::from_millis(10 * (1 << (attempt - 1).min(20)))
                .min(Duration::from_millis(100));
            let d = b.delay(attempt, &mut rng);
            assert!(
                d >= full / 2 && d <= full,
                "attempt {attempt}: {d:?} vs {full:?}"
            );
        }
    }
}
