//! What the driver task is told, and by whom: [`Input`] on its one channel (application
//! sends and settlements, link events and decoded frames, store reports, discovery's
//! instance lists), plus the callbacks it is built with. A module of its own so the link
//! tasks and the receive side can speak to the driver without importing it.

use crate::proto::{
    AppOutcome, Cause, DeliveryToken, Frame, InstanceInfo, LinkId, LinkKind, Outcome, SendRequest,
};
use crate::store::StoreReport;
use crate::tls::Fingerprint;
use bytes::Bytes;
use quinn::Connection;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Decides whether a sender (service, instance, client certificate) may deliver to us.
pub(crate) type SenderCheck = Arc<
    dyn Fn(String, String, Fingerprint) -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync,
>;

/// Called with a service name when the core needs its instances.
pub(crate) type NeedInstances = Box<dyn FnMut(String) + Send>;

/// The driver's handle on one link: where to write, and its connection.
pub(crate) struct LinkTx {
    pub(crate) tx: mpsc::UnboundedSender<Bytes>,
    pub(crate) conn: Connection,
}

/// Everything that can happen to the driver.
pub(crate) enum Input {
    /// `permit` is the window slot (peers without a store), released when the outcome is
    /// known; `accepted` (durable peers) is told when the message is persisted.
    Send {
        req: SendRequest,
        done: oneshot::Sender<Outcome>,
        permit: Option<tokio::sync::OwnedSemaphorePermit>,
        accepted: Option<oneshot::Sender<()>>,
    },
    /// The committer reports on store operations.
    Store(StoreReport),
    Settle {
        token: DeliveryToken,
        outcome: AppOutcome,
    },
    /// The handler is still working on this delivery.
    Progress {
        token: DeliveryToken,
    },
    Frames {
        link: LinkId,
        frames: Vec<Frame>,
    },
    LinkUp {
        link: LinkId,
        kind: LinkKind,
        tx: LinkTx,
    },
    LinkDown {
        link: LinkId,
        reason: String,
    },
    Dialed {
        inst: Arc<InstanceInfo>,
        result: Result<(LinkId, LinkTx), Cause>,
    },
    Instances {
        service: String,
        list: Vec<Arc<InstanceInfo>>,
    },
    /// A lookup of `service` failed (the directory did not answer).
    LookupFailed {
        service: String,
        cause: Cause,
    },
    KnownInstances {
        service: String,
        done: oneshot::Sender<Vec<Arc<InstanceInfo>>>,
    },
    Shutdown {
        done: oneshot::Sender<()>,
    },
}
