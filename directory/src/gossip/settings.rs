//! What the gossip handle is started with and reports: [`GossipSettings`] (with
//! [`Security`]), [`GossipStartError`] and the traffic [`GossipCounters`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use super::crypto::DropReason;
use super::key::ClusterKey;
use super::keyring::{Keyring, KeyringError, Keys};
use super::proto::{GossipConfig, GossipConfigError};

/// Whether gossip is encrypted, and with which keys.
#[derive(Clone, Debug)]
pub enum Security {
    /// Every packet and frame sealed with this one cluster key (`--cluster-key`).
    Key(ClusterKey),
    /// Sealed with the primary key of this keyring file, opened with any of its keys
    /// (`--cluster-keyring`; format in [`super::keyring`]); [`super::Gossip::reload_keyring`]
    /// (SIGHUP) reads it again, which is how the key is rotated without downtime.
    KeyringFile(PathBuf),
    /// Plaintext, only when explicitly allowed (`--insecure-no-cluster-key`).
    Insecure,
}

impl Security {
    /// The keyring this security setting starts with (`None`: plaintext); reads the file.
    pub(super) fn keyring(&self) -> Result<Option<(Keyring, Keys)>, KeyringError> {
        match self {
            Self::Key(k) => {
                let keys = Keys::single(k.clone());
                Ok(Some((Keyring::new(&keys), keys)))
            }
            Self::KeyringFile(path) => Keyring::load(path).map(Some),
            Self::Insecure => Ok(None),
        }
    }
}

/// Everything needed to start the gossip layer of one node.
#[derive(Clone, Debug)]
pub struct GossipSettings {
    /// UDP and TCP address to bind (`--gossip-addr`).
    pub bind: SocketAddr,
    /// Address other members use to reach us (`--advertise-addr`); defaults to the bound
    /// address, and is required when binding to an unspecified IP.
    pub advertise: Option<SocketAddr>,
    /// Seeds as `host:port` (`--join`, repeatable); names may resolve to several addresses.
    pub join: Vec<String>,
    /// Encryption.
    pub security: Security,
    /// Protocol knobs. The tombstone retention and the lease grace are the registry's
    /// ([`crate::registry::ReplicationRules`]); the core uses the registry's value.
    pub gossip: GossipConfig,
}

/// Default gossip address (UDP and TCP): loopback, like the HTTP default, so a node started
/// by hand is not exposed until someone decides it should be.
pub const DEFAULT_GOSSIP_ADDR: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    7701,
));

impl GossipSettings {
    /// Defaults: bind [`DEFAULT_GOSSIP_ADDR`], advertise it, no seeds, LAN preset.
    pub fn new(security: Security) -> Self {
        Self {
            bind: DEFAULT_GOSSIP_ADDR,
            advertise: None,
            join: Vec::new(),
            security,
            gossip: GossipConfig::lan(),
        }
    }

    /// For tests: `127.0.0.1:0` and the test preset (fast anti-entropy and join retries).
    pub fn for_test(security: Security) -> Self {
        Self {
            bind: SocketAddr::V4(std::net::SocketAddrV4::new(
                std::net::Ipv4Addr::LOCALHOST,
                0,
            )),
            gossip: GossipConfig::for_test(),
            ..Self::new(security)
        }
    }
}

/// Why the gossip layer did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GossipStartError {
    /// The UDP or TCP socket could not be bound (address in use, permission). Nothing runs.
    #[error("cannot bind the gossip address {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Bound to an unspecified IP (0.0.0.0 or ::) without an advertise address: peers would
    /// not know where to reach us. Set `--advertise-addr`.
    #[error("gossip bound to {0}; set --advertise-addr to an address peers can reach")]
    NeedAdvertise(SocketAddr),
    /// The gossip settings are inconsistent.
    #[error(transparent)]
    Config(#[from] GossipConfigError),
    /// The keyring file (`--cluster-keyring`) is missing or invalid. Nothing runs.
    #[error(transparent)]
    Keyring(#[from] KeyringError),
}

/// Counters of dropped and handled traffic (also exported to `/metrics`).
#[derive(Debug, Default)]
pub struct GossipCounters {
    /// Datagrams received (before any check).
    pub datagrams_received: AtomicU64,
    /// Datagrams and frames dropped, any reason.
    pub dropped: AtomicU64,
    /// Of those, dropped for failing authentication (wrong key, tampering).
    pub unauthenticated: AtomicU64,
    /// Of those, replays.
    pub replayed: AtomicU64,
    /// Remote entries refused because they did not validate.
    pub invalid_entries: AtomicU64,
    /// Remote entries refused because their version's clock was more than
    /// `--max-clock-drift` ahead of ours.
    pub clock_ahead_rejected: AtomicU64,
    /// Anti-entropy sessions completed (either side).
    pub syncs_completed: AtomicU64,
    /// Of those, sessions another node opened to this one (served by the listener).
    pub syncs_served: AtomicU64,
    /// Entries the gossip replica holds (tombstones included), as of the driver's last
    /// step: never more than the local store accepted.
    pub replica_entries: AtomicU64,
}

impl GossipCounters {
    pub(super) fn count_drop(&self, reason: DropReason) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        match reason {
            DropReason::Unauthenticated => self.unauthenticated.fetch_add(1, Ordering::Relaxed),
            DropReason::Replayed => self.replayed.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
        metrics::counter!("directory_gossip_dropped_packets_total", "reason" => reason.label())
            .increment(1);
    }
}
