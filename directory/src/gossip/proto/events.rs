//! What the gossip core hands to its driver: transmits, membership events, the member
//! list and counters.

use std::net::SocketAddr;
use std::time::Duration;

use super::identity::NodeIdentity;
use super::wire::SyncMsg;

/// Something the driver must send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transmit {
    /// Seal and send one UDP datagram.
    Datagram {
        /// Destination gossip address.
        to: SocketAddr,
        /// Plaintext payload (at most [`MAX_PLAINTEXT`](crate::gossip::MAX_PLAINTEXT) bytes).
        payload: Vec<u8>,
    },
    /// Open an anti-entropy stream to `to` and send `msg` first; feed every reply frame to
    /// [`GossipCore::handle_sync`](crate::gossip::GossipCore::handle_sync) and send back what it returns until it returns `None`.
    Sync {
        /// Destination gossip address (same port, stream transport).
        to: SocketAddr,
        /// The opening message (a digest).
        msg: SyncMsg,
    },
}

/// A membership change seen by this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GossipEvent {
    /// A member became reachable (joined, or came back with a new identity).
    MemberUp(NodeIdentity),
    /// A member was declared dead.
    MemberDown(NodeIdentity),
    /// A member left gracefully.
    MemberLeft(NodeIdentity),
    /// This node is now part of a cluster (at least one other member knows it).
    Joined,
    /// Every other member is dead or gone; the node keeps retrying its seeds.
    Isolated,
    /// The cluster declared this node dead; it rejoined under a new identity.
    Rejoined(NodeIdentity),
}

/// A member's state as listed by `/v1/cluster/members`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    /// Answering probes.
    Alive,
    /// Failed a probe; may still refute.
    Suspect,
    /// Declared dead.
    Dead,
    /// Left gracefully.
    Left,
}

/// One row of the member list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    /// The member's identity (name, address, generation).
    pub identity: NodeIdentity,
    /// Its state.
    pub state: MemberState,
    /// SWIM incarnation (raised by the member to refute suspicion).
    pub incarnation: u16,
    /// How long ago its state last changed, as seen here.
    pub since: Duration,
    /// Whether this row is the local node.
    pub is_local: bool,
    /// Short hash of the ACL file the member enforces, once it has said (see
    /// [`super::GossipCore::set_acl_hash`]).
    pub acl_hash: Option<[u8; 8]>,
}

/// Counters of the core's activity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CoreStats {
    /// Datagrams handed to the driver.
    pub datagrams_sent: u64,
    /// Plaintext bytes of those datagrams.
    pub bytes_sent: u64,
    /// Datagrams handled.
    pub datagrams_received: u64,
    /// Datagrams dropped because they did not decode.
    pub malformed: u64,
    /// Errors reported by foca (bad or unexpected SWIM messages).
    pub swim_errors: u64,
    /// Remote entries applied (newer than ours).
    pub entries_applied: u64,
    /// Anti-entropy sessions started.
    pub syncs_started: u64,
    /// Live copies of this node's records from an earlier generation, buried under the
    /// owner-generation rule (`registry::orphaned_by_restart`).
    pub orphans_buried: u64,
    /// Remote entries refused because their version's clock was more than the rules'
    /// `max_clock_drift` ahead of the local wall clock.
    pub from_the_future: u64,
}

/// Why a datagram was not (fully) handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DatagramError {
    /// The payload did not decode (bad version, shape or size). Nothing changed.
    #[error("malformed gossip datagram")]
    Malformed,
    /// Foca refused the SWIM message (stale, from ourselves, or malformed); piggybacked
    /// entries were still considered.
    #[error("swim message rejected")]
    Swim,
}
