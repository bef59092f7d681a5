//! [`Staleness`]: how fresh a node's answer is. Every lookup answer carries it, in the JSON
//! body and as the [`LAST_CONTACT_HEADER`] and [`ISOLATED_HEADER`] headers; a lookup with
//! `?max_stale=2s` is refused (503 `too_stale`) rather than answered from an older view.

use serde::{Deserialize, Serialize};

/// Response header: milliseconds since the answering node last heard from its cluster.
pub const LAST_CONTACT_HEADER: &str = "x-directory-last-contact";
/// Response header: `true` when the answering node knows no live member besides itself.
pub const ISOLATED_HEADER: &str = "x-directory-isolated";

/// How fresh the answering node's view of the cluster is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Staleness {
    /// Milliseconds since this node last heard from another cluster member (an
    /// authenticated gossip datagram or anti-entropy session). Always 0 on a node running
    /// without a cluster; on a clustered node that never reached anyone, its uptime.
    pub last_contact_ms: u64,
    /// Whether the node currently knows no live member besides itself. Always false on a
    /// node running without a cluster.
    pub isolated: bool,
}
