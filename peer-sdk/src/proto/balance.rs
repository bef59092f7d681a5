//! Choosing which instance of a service gets the next attempt.

use super::InstanceInfo;
use std::sync::Arc;

/// One instance a [`Balancer`] may choose.
#[derive(Debug)]
pub struct Candidate<'a> {
    /// The instance.
    pub instance: &'a Arc<InstanceInfo>,
    /// Messages currently awaiting an ack from it.
    pub in_flight: usize,
    /// False while it is marked unreachable.
    pub healthy: bool,
    /// True if the previous attempt of this message went to it.
    pub previous: bool,
}

/// Picks an instance for a message. Implement it to plug in your own policy.
pub trait Balancer: Send + std::fmt::Debug {
    /// Index into `candidates` of the chosen instance, or `None` to wait for others.
    /// `candidates` is never empty.
    fn pick(&mut self, candidates: &[Candidate<'_>]) -> Option<usize>;
}

fn preference(c: &Candidate<'_>) -> u8 {
    match (c.healthy, c.previous) {
        (true, false) => 0,
        (true, true) => 1,
        (false, false) => 2,
        (false, true) => 3,
    }
}

/// Least messages in flight among healthy instances not tried last; ties go round-robin.
#[derive(Debug, Default)]
pub struct LeastInFlight {
    cursor: usize,
}

impl Balancer for LeastInFlight {
    fn pick(&mut self, candidates: &[Candidate<'_>]) -> Option<usize> {
        let n = candidates.len();
        self.cursor = self.cursor.wrapping_add(1);
        (0..n)
            .map(|i| (i + self.cursor) % n)
            .min_by_key(|&i| (preference(&candidates[i]), candidates[i].in_flight))
    }
}

/// Plain round-robin over healthy instances (unhealthy ones only when nothing else is left).
#[derive(Debug, Default)]
pub struct RoundRobin {
    cursor: usize,
}

impl Balancer for RoundRobin {
    fn pick(&mut self, candidates: &[Candidate<'_>]) -> Option<usize> {
        let n = candidates.len();
        self.cursor = self.cursor.wrapping_add(1);
        (0..n)
            .map(|i| (i + self.cursor) % n)
            .min_by_key(|&i| preference(&candidates[i]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(name: &str) -> Arc<InstanceInfo> {
        Arc::new(InstanceInfo::new(
            "svc",
            name,
            "127.0.0.1:1".parse().unwrap(),
            None,
        ))
    }

    #[test]
    fn least_in_flight_prefers_idle_healthy_instance_not_tried_last() {
        let (a, b, c) = (inst("a"), inst("b"), inst("c"));
        let cands = [
            Candidate {
                instance: &a,
                in_flight: 0,
                healthy: true,
                previous: true,
            },
            Candidate {
                instance: &b,
                in_flight: 5,
                healthy: true,
                previous: false,
            },
            Candidate {
                instance: &c,
                in_flight: 0,
                healthy: false,
                previous: false,
            },
        ];
        assert_eq!(LeastInFlight::default().pick(&cands), Some(1));
    }

    #[test]
    fn round_robin_cycles_over_healthy_instances() {
        let (a, b) = (inst("a"), inst("b"));
        let cands = [
            Candidate {
                instance: &a,
                in_flight: 0,
                healthy: true,
                previous: false,
            },
            Candidate {
                instance: &b,
                in_flight: 0,
                healthy: true,
                previous: false,
            },
        ];
        let mut rr = RoundRobin::default();
        let picks: Vec<_> = (0..4).map(|_| rr.pick(&cands).unwrap()).collect();
        assert_eq!(picks, vec![1, 0, 1, 0]);
    }
}
