//! What `GET /v1/watch` streams: one Server-Sent Event per [`ChangeEvent`], named after its
//! [`ChangeKind`] with the change index as its `id`; a [`LAGGED_EVENT`] when a slow reader
//! missed some, and a [`RESET_EVENT`] when a resumed watch (`Last-Event-ID`, `?index=`)
//! asked for changes older than the node's history.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{InstanceId, Record, ServiceName};

/// SSE event name sent when the watcher fell behind and missed events; it should
/// resynchronise with a lookup. Its data is [`Lagged`] (`{"missed": N}`).
pub const LAGGED_EVENT: &str = "lagged";

/// SSE event name sent first on a resumed watch whose resume point the node's history no
/// longer reaches (or an index from before a restart): the changes in between cannot be
/// replayed, so the client should re-read what it follows. Its data is [`Reset`]; its `id`
/// is the node's current index, and the stream continues with the changes after it.
pub const RESET_EVENT: &str = "reset";

/// Kind of a user-visible change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// An instance appeared.
    Registered,
    /// A live instance changed address, tags, meta, ttl or fingerprint.
    Updated,
    /// An instance's lease ran out.
    Expired,
    /// An instance was deleted.
    Deregistered,
}

impl ChangeKind {
    /// The snake_case name (also the SSE event name).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Registered => "registered",
            Self::Updated => "updated",
            Self::Expired => "expired",
            Self::Deregistered => "deregistered",
        }
    }
}

/// A user-visible change, as delivered to watchers. Lease renewals are not changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChangeEvent {
    /// What happened.
    #[serde(rename = "type")]
    pub kind: ChangeKind,
    /// Service of the instance.
    #[schema(value_type = String)]
    pub service: ServiceName,
    /// The instance.
    #[schema(value_type = String)]
    pub instance: InstanceId,
    /// Change index of this change.
    pub index: u64,
    /// The new record for `registered`/`updated`; `null` for removals.
    #[schema(value_type = Option<Record>)]
    pub record: Option<Arc<Record>>,
}

/// Data of a [`LAGGED_EVENT`]: how many events the watcher missed. Its `id` is `index`, and
/// the stream continues with the changes after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Lagged {
    /// Events dropped for this watcher.
    pub missed: u64,
    /// The node's change index when the gap was noticed: re-read the state (a lookup
    /// answers at this index or later); the stream goes on after it. 0 from servers older
    /// than this field.
    #[serde(default)]
    pub index: u64,
}

/// Data of a [`RESET_EVENT`]: the changes after the requested index are no longer known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Reset {
    /// The node's change index now: re-read the state (a lookup answers at this index or
    /// later); the stream goes on after it.
    pub index: u64,
    /// The index the watch asked to resume after.
    pub requested: u64,
}

/// One item of a watch stream.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WatchEvent {
    /// An instance was registered, updated, expired or deregistered.
    Change(ChangeEvent),
    /// The watcher fell behind and missed events: look the services up again.
    Lagged(Lagged),
    /// The resume point was older than the node's history: look the services up again.
    Reset(Reset),
}
