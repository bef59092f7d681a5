//! What the handle, the seed resolver and the anti-entropy sessions ask of the driver
//! loop: one channel of [`Command`]s, so the loop stays the only owner of the core.

use std::net::SocketAddr;

use tokio::sync::oneshot;

use super::proto::{MemberView, SyncMsg};

/// One request to the driver loop.
pub(super) enum Command {
    /// The member list, this node first.
    Members(oneshot::Sender<Vec<MemberView>>),
    /// A freshly resolved seed list.
    Seeds(Vec<SocketAddr>),
    /// The short hash of the ACL file this node enforces, told to the cluster.
    AclHash(Option<[u8; 8]>),
    /// One anti-entropy frame; the reply (if any) goes back on the same stream.
    Sync(SyncMsg, oneshot::Sender<Option<SyncMsg>>),
}
