//! Every knob of the gossip layer, with its default and the reason for it.

use std::num::{NonZeroU8, NonZeroUsize};
use std::time::Duration;

/// How often each node probes one random member (SWIM protocol period). Shorter detects
/// failures sooner at the cost of one ping/ack pair per period per node; 150 ms keeps the
/// detection of a crashed node by all members under 2.5 s p99 (simulated, 50-1,000 nodes).
pub const DEFAULT_PROBE_PERIOD: Duration = Duration::from_millis(150);
/// How long a direct probe waits for its ack before asking `indirect_probes` others. Must be
/// well above the network's p99 round trip (a LAN is well under 10 ms).
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_millis(75);
/// Members asked to probe indirectly when the direct probe fails (SWIM's k). 3 makes a
/// false suspicion at 10% loss about one probe in a hundred.
pub const DEFAULT_INDIRECT_PROBES: usize = 3;
/// How long a suspect has to refute before it is declared dead. Long enough for the
/// suspicion and its refutation to cross the cluster several times at `gossip_interval`.
pub const DEFAULT_SUSPICION_TIMEOUT: Duration = Duration::from_millis(1500);
/// How often a node pushes pending updates (membership and entries) to `gossip_fanout`
/// random members, on top of piggybacking them on probes.
pub const DEFAULT_GOSSIP_INTERVAL: Duration = Duration::from_millis(50);
/// Members each gossip round (and each eager push of a fresh entry) goes to.
pub const DEFAULT_GOSSIP_FANOUT: usize = 4;
/// Retransmission multiplier: each node sends each entry version about
/// `retransmit_mult * ceil(log10(members + 2))` times (memberlist's λ·log N). 8 leaves no
/// node unreached at 10% loss in our runs (6 missed one node in ~50 writes, repaired only
/// by anti-entropy seconds later).
pub const DEFAULT_RETRANSMIT_MULT: u32 = 8;
/// Times foca retransmits each membership update (enough for ~1,000 members).
pub const DEFAULT_MEMBERSHIP_RETRANSMITS: u8 = 12;
/// How often a node runs push-pull anti-entropy with one random member. Repairs what
/// gossip missed (loss, restarts, partitions); one digest of 512 bytes when in sync.
pub const DEFAULT_ANTI_ENTROPY_INTERVAL: Duration = Duration::from_secs(5);
/// How often a node with no live member re-announces itself to its seeds.
pub const DEFAULT_JOIN_RETRY_INTERVAL: Duration = Duration::from_secs(1);
/// How long dead and left members are remembered (and listed) before they are reaped.
pub const DEFAULT_REAP_AFTER: Duration = Duration::from_secs(15 * 60);
/// How often a node announces itself to members it believes dead, so partitions heal.
pub const DEFAULT_ANNOUNCE_TO_DEAD_INTERVAL: Duration = Duration::from_secs(3);
/// How often a node asks a random member for its member list (faster full discovery).
pub const DEFAULT_ANNOUNCE_INTERVAL: Duration = Duration::from_secs(10);
/// Share of a datagram foca's SWIM message may use; the rest carries entries.
pub const DEFAULT_SWIM_PACKET_BUDGET: usize = 1000;

/// Configuration of the gossip core. `Default` is the LAN preset. The tombstone retention and
/// the lease grace are not here: they are the replication rules' knobs, shared with the
/// registry ([`crate::registry::ReplicationRules`], in [`crate::registry::RegistryConfig`]).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct GossipConfig {
    /// See [`DEFAULT_PROBE_PERIOD`]. Must exceed `probe_timeout` (ideally twice it, to leave
    /// time for the indirect probes).
    pub probe_period: Duration,
    /// See [`DEFAULT_PROBE_TIMEOUT`].
    pub probe_timeout: Duration,
    /// See [`DEFAULT_INDIRECT_PROBES`]. At least 1.
    pub indirect_probes: usize,
    /// See [`DEFAULT_SUSPICION_TIMEOUT`].
    pub suspicion_timeout: Duration,
    /// See [`DEFAULT_GOSSIP_INTERVAL`].
    pub gossip_interval: Duration,
    /// See [`DEFAULT_GOSSIP_FANOUT`]. At least 1.
    pub gossip_fanout: usize,
    /// See [`DEFAULT_RETRANSMIT_MULT`]. At least 1.
    pub retransmit_mult: u32,
    /// See [`DEFAULT_MEMBERSHIP_RETRANSMITS`]. At least 1.
    pub membership_retransmits: u8,
    /// See [`DEFAULT_ANTI_ENTROPY_INTERVAL`].
    pub anti_entropy_interval: Duration,
    /// See [`DEFAULT_JOIN_RETRY_INTERVAL`].
    pub join_retry_interval: Duration,
    /// See [`DEFAULT_REAP_AFTER`].
    pub reap_after: Duration,
    /// See [`DEFAULT_ANNOUNCE_TO_DEAD_INTERVAL`].
    pub announce_to_dead_interval: Duration,
    /// See [`DEFAULT_ANNOUNCE_INTERVAL`].
    pub announce_interval: Duration,
    /// See [`DEFAULT_SWIM_PACKET_BUDGET`]. Between 256 and 1,200 bytes.
    pub swim_packet_budget: usize,
    /// Seed of the core's random choices (probe order, gossip targets). Set it for a
    /// reproducible simulation; the server seeds it from the OS.
    pub rng_seed: u64,
}

impl Default for GossipConfig {
    fn default() -> Self {
        Self::lan()
    }
}

/// A gossip configuration that cannot work.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum GossipConfigError {
    /// A knob is out of range; the message names it and the constraint.
    #[error("invalid gossip setting: {0}")]
    Invalid(&'static str),
    /// The replication rules handed to the core break their invariant.
    #[error(transparent)]
    Rules(#[from] crate::registry::RulesError),
}

impl GossipConfig {
    /// The LAN preset: the defaults above.
    pub fn lan() -> Self {
        Self {
            probe_period: DEFAULT_PROBE_PERIOD,
            probe_timeout: DEFAULT_PROBE_TIMEOUT,
            indirect_probes: DEFAULT_INDIRECT_PROBES,
            suspicion_timeout: DEFAULT_SUSPICION_TIMEOUT,
            gossip_interval: DEFAULT_GOSSIP_INTERVAL,
            gossip_fanout: DEFAULT_GOSSIP_FANOUT,
            retransmit_mult: DEFAULT_RETRANSMIT_MULT,
            membership_retransmits: DEFAULT_MEMBERSHIP_RETRANSMITS,
            anti_entropy_interval: DEFAULT_ANTI_ENTROPY_INTERVAL,
            join_retry_interval: DEFAULT_JOIN_RETRY_INTERVAL,
            reap_after: DEFAULT_REAP_AFTER,
            announce_to_dead_interval: DEFAULT_ANNOUNCE_TO_DEAD_INTERVAL,
            announce_interval: DEFAULT_ANNOUNCE_INTERVAL,
            swim_packet_budget: DEFAULT_SWIM_PACKET_BUDGET,
            rng_seed: 0,
        }
    }

    /// The WAN preset: the LAN preset with timings for round trips of hundreds of ms.
    pub fn wan() -> Self {
        Self {
            probe_period: Duration::from_secs(3),
            probe_timeout: Duration::from_secs(1),
            suspicion_timeout: Duration::from_secs(10),
            gossip_interval: Duration::from_millis(500),
            gossip_fanout: 4,
            anti_entropy_interval: Duration::from_secs(30),
            ..Self::lan()
        }
    }

    /// The LAN preset with a faster anti-entropy cycle, for tests.
    pub fn for_test() -> Self {
        Self {
            anti_entropy_interval: Duration::from_millis(500),
            join_retry_interval: Duration::from_millis(200),
            announce_to_dead_interval: Duration::from_millis(500),
            ..Self::lan()
        }
    }

    /// Checks every constraint documented on the fields.
    pub fn validate(&self) -> Result<(), GossipConfigError> {
        let checks: [(bool, &'static str); 8] = [
            (
                self.probe_timeout.is_zero() || self.probe_period <= self.probe_timeout,
                "probe_period must exceed probe_timeout, and probe_timeout must not be zero",
            ),
            (
                self.indirect_probes == 0,
                "indirect_probes must be at least 1",
            ),
            (
                self.suspicion_timeout.is_zero(),
                "suspicion_timeout must not be zero",
            ),
            (
                self.gossip_interval.is_zero(),
                "gossip_interval must not be zero",
            ),
            (self.gossip_fanout == 0, "gossip_fanout must be at least 1"),
            (
                self.retransmit_mult == 0 || self.membership_retransmits == 0,
                "retransmit_mult and membership_retransmits must be at least 1",
            ),
            (
                self.anti_entropy_interval.is_zero() || self.join_retry_interval.is_zero(),
                "anti_entropy_interval and join_retry_interval must not be zero",
            ),
            (
                !(256..=1200).contains(&self.swim_packet_budget),
                "swim_packet_budget must be between 256 and 1200 bytes",
            ),
        ];
        match checks.iter().find(|(bad, _)| *bad) {
            Some((_, msg)) => Err(GossipConfigError::Invalid(msg)),
            None => Ok(()),
        }
    }

    /// The foca configuration these settings imply. Call [`Self::validate`] first.
    pub(crate) fn foca(&self) -> foca::Config {
        let one = NonZeroUsize::MIN;
        let mut c = foca::Config::simple();
        c.probe_period = self.probe_period;
        c.probe_rtt = self.probe_timeout;
        c.num_indirect_probes = NonZeroUsize::new(self.indirect_probes).unwrap_or(one);
        c.max_transmissions = NonZeroU8::new(self.membership_retransmits).unwrap_or(NonZeroU8::MIN);
        c.suspect_to_down_after = self.suspicion_timeout;
        c.remove_down_after = Some(self.reap_after);
        c.max_packet_size = NonZeroUsize::new(self.swim_packet_budget).unwrap_or(one);
        c.notify_down_members = true;
        c.periodic_announce = Some(foca::PeriodicParams {
            frequency: self.announce_interval,
            num_members: one,
        });
        c.periodic_announce_to_down_members = Some(foca::PeriodicParams {
            frequency: self.announce_to_dead_interval,
            num_members: NonZeroUsize::new(2).unwrap_or(one),
        });
        c.periodic_gossip = Some(foca::PeriodicParams {
            frequency: self.gossip_interval,
            num_members: NonZeroUsize::new(self.gossip_fanout).unwrap_or(one),
        });
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid() {
        assert_eq!(GossipConfig::lan().validate(), Ok(()));
        assert_eq!(GossipConfig::wan().validate(), Ok(()));
        assert_eq!(GossipConfig::for_test().validate(), Ok(()));
    }

    #[test]
    fn bad_settings_are_rejected_with_the_knob_named() {
        let mut c = GossipConfig::lan();
        c.probe_timeout = c.probe_period;
        assert!(
            matches!(c.validate(), Err(GossipConfigError::Invalid(m)) if m.contains("probe_period"))
        );
        let mut c = GossipConfig::lan();
        c.swim_packet_budget = 1400;
        assert!(c.validate().is_err());
        let mut c = GossipConfig::lan();
        c.gossip_fanout = 0;
        assert!(c.validate().is_err());
    }
}
