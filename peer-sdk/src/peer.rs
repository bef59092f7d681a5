//! The running [`Peer`]: its identity accessors and the send side of the API (send, request,
//! broadcast, enqueue with a [`Pending`] outcome, per-service windows, shutdown).

use crate::config::PeerConfig;
use crate::discovery::{Discovery, Registration};
use crate::error::{BroadcastError, SendError};
use crate::input::Input;
use crate::proto::frame::MAX_KEY_LEN;
use crate::proto::{DeadLetterReason, InstanceInfo, Outcome, SendRequest, message_cost};
use crate::quota::Quota;
use crate::received::{DeadLetterQueue, DeadLetters, Incoming, Message};
use crate::tls::Fingerprint;
use bytes::Bytes;
use dashmap::DashMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

mod publish;
pub use publish::{GroupOutcome, PublishOptions, PublishOutcome};

/// State shared by every clone of a [`Peer`]; built by [`PeerBuilder::start`].
pub(crate) struct Inner {
    pub(crate) cfg: PeerConfig,
    pub(crate) instance: String,
    pub(crate) local_addr: SocketAddr,
    pub(crate) fingerprint: Fingerprint,
    pub(crate) inputs: mpsc::UnboundedSender<Input>,
    pub(crate) incoming: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Message>>>,
    pub(crate) dead_letters: Arc<DeadLetterQueue>,
    /// Durable peers: the store quota (which bounds accepted messages instead of the window).
    pub(crate) quota: Option<Arc<Quota>>,
    pub(crate) windows: DashMap<String, Arc<Semaphore>>,
    pub(crate) discovery: Option<(Arc<Discovery>, Registration)>,
    pub(crate) cancel: CancellationToken,
    pub(crate) driver: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// A running peer: registered, listening, sending and receiving. Cheap to clone.
#[derive(Clone)]
pub struct Peer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("service", &self.inner.cfg.service)
            .field("instance", &self.inner.instance)
            .field("addr", &self.inner.local_addr)
            .finish()
    }
}

/// Options of one message.
#[derive(Debug, Clone, Default)]
pub struct SendOptions {
    /// Ordering key: same key to the same service is delivered in send order.
    pub key: Option<Bytes>,
    /// Deadline from now; default the configured one. It may be hours or days: while it
    /// lasts, a service with no instance is not an error; the message waits for one.
    pub deadline: Option<Duration>,
    /// Time to wait for an ack or a progress signal before the next attempt; default
    /// [`crate::DeliveryConfig::ack_timeout`].
    pub ack_timeout: Option<Duration>,
    /// Attempts after which the message is dead-lettered even before its deadline;
    /// default [`crate::DeliveryConfig::max_attempts`].
    pub max_attempts: Option<NonZeroU32>,
    /// Fail at once with [`SendError::NoResponders`] when the directory (or the static
    /// configuration) says the service has no instance, instead of waiting for one.
    pub no_responders: bool,
}

impl SendOptions {
    /// Options with an ordering key.
    pub fn ordered(key: impl Into<Bytes>) -> Self {
        Self {
            key: Some(key.into()),
            ..Self::default()
        }
    }

    /// Sets the deadline.
    pub fn deadline(mut self, d: Duration) -> Self {
        self.deadline = Some(d);
        self
    }

    /// Sets the ack timeout of every attempt.
    pub fn ack_timeout(mut self, d: Duration) -> Self {
        self.ack_timeout = Some(d);
        self
    }

    /// Sets the maximum number of attempts.
    pub fn max_attempts(mut self, n: NonZeroU32) -> Self {
        self.max_attempts = Some(n);
        self
    }

    /// Fails at once when the service has no instance ("no responders").
    pub fn no_responders(mut self) -> Self {
        self.no_responders = true;
        self
    }
}

/// Outcome of a broadcast for one instance.
#[derive(Debug)]
pub struct BroadcastOutcome {
    /// Instance name.
    pub instance: String,
    /// Address.
    pub addr: SocketAddr,
    /// Acked, or why not.
    pub result: Result<(), SendError>,
}

impl Peer {
    pub(crate) fn from_inner(inner: Inner) -> Self {
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Bound QUIC address.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Fingerprint of this peer's certificate (published in the directory).
    pub fn fingerprint(&self) -> Fingerprint {
        self.inner.fingerprint
    }

    /// Service name.
    pub fn service(&self) -> &str {
        &self.inner.cfg.service
    }

    /// Instance name.
    pub fn instance(&self) -> &str {
        &self.inner.instance
    }

    /// This peer as an [`InstanceInfo`] (for static wiring).
    pub fn info(&self) -> InstanceInfo {
        InstanceInfo::new(
            &self.inner.cfg.service,
            &self.inner.instance,
            self.inner.local_addr,
            Some(self.inner.fingerprint.0),
        )
    }

    /// Whether the last directory request got an answer (`true` without a directory).
    pub fn directory_available(&self) -> bool {
        self.inner
            .discovery
            .as_ref()
            .is_none_or(|d| d.0.is_available())
    }

    /// Received messages. Several `Incoming`s share one queue (work distribution).
    pub fn incoming(&self) -> Incoming {
        Incoming::new(self.inner.incoming.clone())
    }

    /// Dead letters (the same ones `send` returns as errors), held in memory up to
    /// `dead_letter_capacity` until read; all handles take from one queue. With a store they
    /// are also kept on disk ([`crate::Store::dead_letters`]).
    pub fn dead_letters(&self) -> DeadLetters {
        DeadLetters::new(self.inner.dead_letters.clone())
    }

    /// Sends `payload` to one instance of `service`; resolves when a handler acked it.
    pub async fn send(&self, service: &str, payload: impl Into<Bytes>) -> Result<(), SendError> {
        self.send_with(service, payload, SendOptions::default())
            .await
    }

    /// Sends with an ordering key and/or a deadline.
    pub async fn send_with(
        &self,
        service: &str,
        payload: impl Into<Bytes>,
        opts: SendOptions,
    ) -> Result<(), SendError> {
        self.submit(service, None, payload.into(), opts, false)
            .await
            .map(drop)
    }

    /// Sends a request and waits for the reply. Errors are those of `send`.
    pub async fn request(
        &self,
        service: &str,
        payload: impl Into<Bytes>,
    ) -> Result<Bytes, SendError> {
        self.request_with(service, payload, SendOptions::default())
            .await
    }

    /// Request with an ordering key and/or a deadline.
    pub async fn request_with(
        &self,
        service: &str,
        payload: impl Into<Bytes>,
        opts: SendOptions,
    ) -> Result<Bytes, SendError> {
        self.submit(service, None, payload.into(), opts, true).await
    }

    /// Sends `payload` to every instance of `service`; one outcome per instance.
    pub async fn broadcast(
        &self,
        service: &str,
        payload: impl Into<Bytes>,
    ) -> Result<Vec<BroadcastOutcome>, BroadcastError> {
        let payload = payload.into();
        if let Some((size, max)) = self.oversized(&payload) {
            return Err(BroadcastError::PayloadTooLarge { size, max });
        }
        let instances = self
            .instances(service)
            .await
            .map_err(|_| BroadcastError::ShutDown)?;
        if instances.is_empty() {
            return Err(BroadcastError::NoInstances(service.to_owned()));
        }
        let sends = instances.iter().map(|inst| {
            let payload = payload.clone();
            async move {
                let target = Some(inst.clone());
                let result = self
                    .submit(service, target, payload, SendOptions::default(), false)
                    .await
                    .map(drop);
                BroadcastOutcome {
                    instance: inst.instance.clone(),
                    addr: inst.addr,
                    result,
                }
            }
        });
        Ok(futures_util::future::join_all(sends).await)
    }

    /// Current instances of `service`: the directory view (fetched if not cached) or the
    /// static ones.
    pub async fn instances(&self, service: &str) -> Result<Vec<Arc<InstanceInfo>>, SendError> {
        if let Some((d, _)) = &self.inner.discovery
            && let Ok(list) = d.resolve(service).await
        {
            d.watch(service.to_owned(), self.inner.inputs.clone());
            return Ok(list);
        }
        let (done, rx) = oneshot::channel();
        let query = Input::KnownInstances {
            service: service.to_owned(),
            done,
        };
        self.inner
            .inputs
            .send(query)
            .map_err(|_| SendError::ShutDown)?;
        rx.await.map_err(|_| SendError::ShutDown)
    }

    /// Messages to `service` accepted and not yet resolved (never more than the window).
    /// Peers without a store only (a durable peer is bounded by its store quota: see
    /// [`crate::Store::usage`]); 0 with a store.
    pub fn in_flight(&self, service: &str) -> usize {
        self.inner
            .windows
            .get(service)
            .map_or(0, |w| self.inner.cfg.window - w.available_permits())
    }

    /// Durable peers: bytes ([`crate::proto::message_cost`] each) of accepted messages not
    /// yet resolved, including those resumed from the store at start. 0 means every message
    /// this peer holds has been acked or dead-lettered. Always 0 without a store.
    pub fn unresolved_bytes(&self) -> u64 {
        self.inner.quota.as_ref().map_or(0, |q| q.used())
    }

    fn window(&self, service: &str) -> Arc<Semaphore> {
        if let Some(w) = self.inner.windows.get(service) {
            return w.clone();
        }
        let window = self.inner.cfg.window;
        self.inner
            .windows
            .entry(service.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(window)))
            .clone()
    }

    async fn submit(
        &self,
        service: &str,
        target: Option<Arc<InstanceInfo>>,
        payload: Bytes,
        opts: SendOptions,
        request: bool,
    ) -> Result<Bytes, SendError> {
        self.enqueue_inner(service, target, payload, opts, request)
            .await?
            .await
    }

    /// `(size, max)` when `payload` exceeds the configured maximum payload.
    fn oversized(&self, payload: &Bytes) -> Option<(usize, usize)> {
        let max = self.inner.cfg.max_payload;
        (payload.len() > max).then_some((payload.len(), max))
    }

    /// Queues a message as soon as the window has room and returns without waiting for the
    /// ack: await the returned [`Pending`] for the outcome. Messages enqueued one after the
    /// other with the same key are delivered in that order (pipelining ordered sends).
    pub async fn enqueue(
        &self,
        service: &str,
        payload: impl Into<Bytes>,
        opts: SendOptions,
    ) -> Result<Pending, SendError> {
        self.enqueue_inner(service, None, payload.into(), opts, false)
            .await
    }

    /// Like [`Peer::enqueue`] for a request; the [`Pending`] resolves to the reply.
    pub async fn enqueue_request(
        &self,
        service: &str,
        payload: impl Into<Bytes>,
        opts: SendOptions,
    ) -> Result<Pending, SendError> {
        self.enqueue_inner(service, None, payload.into(), opts, true)
            .await
    }

    async fn enqueue_inner(
        &self,
        service: &str,
        target: Option<Arc<InstanceInfo>>,
        payload: Bytes,
        opts: SendOptions,
        request: bool,
    ) -> Result<Pending, SendError> {
        let (pending, persisted) = self
            .hand_over(service, target, payload, opts, request)
            .await?;
        accepted(persisted).await?;
        Ok(pending)
    }

    /// Enqueues many one-way messages to `service` and returns once every one is accepted
    /// (with a store: durable; the whole batch costs one group commit instead of one per
    /// message when enqueued from one task). Payloads and keys are checked before anything
    /// is enqueued; a failure after that (shutdown, a full quota with [`WhenFull::Fail`])
    /// is returned, and the messages before it may have been accepted.
    ///
    /// [`WhenFull::Fail`]: crate::WhenFull::Fail
    pub async fn enqueue_batch<I, P>(
        &self,
        service: &str,
        messages: I,
    ) -> Result<Vec<Pending>, SendError>
    where
        I: IntoIterator<Item = (P, SendOptions)>,
        P: Into<Bytes>,
    {
        let messages: Vec<(Bytes, SendOptions)> =
            messages.into_iter().map(|(p, o)| (p.into(), o)).collect();
        for (payload, opts) in &messages {
            self.check(payload, opts)?;
        }
        let mut handed = Vec::with_capacity(messages.len());
        for (payload, opts) in messages {
            handed.push(self.hand_over(service, None, payload, opts, false).await?);
        }
        let mut out = Vec::with_capacity(handed.len());
        for (pending, persisted) in handed {
            accepted(persisted).await?;
            out.push(pending);
        }
        Ok(out)
    }

    /// Rejects an oversized payload or ordering key; nothing is sent.
    fn check(&self, payload: &Bytes, opts: &SendOptions) -> Result<(), SendError> {
        if let Some((size, max)) = self.oversized(payload) {
            return Err(SendError::PayloadTooLarge { size, max });
        }
        match &opts.key {
            Some(k) if k.len() > MAX_KEY_LEN => Err(SendError::KeyTooLong(k.len())),
            _ => Ok(()),
        }
    }

    /// Room for the message: a slot of the window, or (durable peers) its cost in the quota.
    async fn room(
        &self,
        service: &str,
        cost: u64,
    ) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, SendError> {
        match &self.inner.quota {
            Some(quota) => quota.take(cost).await.map(|()| None),
            None => self
                .window(service)
                .acquire_owned()
                .await
                .map(Some)
                .map_err(|_| SendError::ShutDown),
        }
    }

    /// Checks the message, takes room for it and hands it to the driver. Returns its
    /// [`Pending`] and, for a durable peer, the signal of its acceptance.
    async fn hand_over(
        &self,
        service: &str,
        target: Option<Arc<InstanceInfo>>,
        payload: Bytes,
        opts: SendOptions,
        request: bool,
    ) -> Result<(Pending, Option<oneshot::Receiver<()>>), SendError> {
        self.check(&payload, &opts)?;
        let key_len = opts.key.as_ref().map_or(0, Bytes::len);
        let cost = message_cost(service.len(), key_len, payload.len());
        let permit = self.room(service, cost).await?;
        let deadline = tokio::time::Instant::now().into_std()
            + opts.deadline.unwrap_or(self.inner.cfg.delivery.deadline);
        let req = SendRequest {
            service: service.to_owned(),
            target,
            key: opts.key,
            payload,
            request,
            deadline,
            ack_timeout: opts.ack_timeout,
            max_attempts: opts.max_attempts,
            no_responders: opts.no_responders,
        };
        let (done, rx) = oneshot::channel();
        let (accepted, persisted) = match self.inner.quota {
            Some(_) => {
                let (tx, rx) = oneshot::channel();
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let input = Input::Send {
            req,
            done,
            permit,
            accepted,
        };
        if self.inner.inputs.send(input).is_err() {
            if let Some(q) = &self.inner.quota {
                q.give_back(cost);
            }
            return Err(SendError::ShutDown);
        }
        Ok((Pending { rx }, persisted))
    }

    /// Deregisters, stops accepting sends, waits (up to the drain timeout) for in-flight
    /// messages and deliveries to settle, dead-letters what is left, closes connections.
    pub async fn shutdown(&self) {
        if let Some((d, reg)) = &self.inner.discovery {
            if let Err(e) = d.deregister(reg).await {
                tracing::warn!("deregistration failed: {e}");
            }
            d.stop().await;
        }
        let (done, rx) = oneshot::channel();
        if self.inner.inputs.send(Input::Shutdown { done }).is_ok() {
            let _ = rx.await;
        }
        let driver = self.inner.driver.lock().take();
        if let Some(driver) = driver {
            let _ = driver.await;
        }
        self.inner.cancel.cancel();
    }
}

/// Waits for a durable peer to report that a handed-over message is persisted (acceptance is
/// reported only then); immediate without a store.
async fn accepted(persisted: Option<oneshot::Receiver<()>>) -> Result<(), SendError> {
    match persisted {
        Some(rx) => rx.await.map_err(|_| SendError::ShutDown),
        None => Ok(()),
    }
}

/// An enqueued message; resolves to the reply (requests) or an empty payload (acked
/// one-way messages), or the error. The window slot is freed when the outcome is known,
/// whether or not this is awaited.
#[derive(Debug)]
#[must_use = "the message is sent anyway; await this to learn its outcome"]
pub struct Pending {
    rx: oneshot::Receiver<Outcome>,
}

impl std::future::Future for Pending {
    type Output = Result<Bytes, SendError>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.rx).poll(cx).map(|r| match r {
            Ok(outcome) => reply_of(outcome),
            Err(_) => Err(SendError::ShutDown),
        })
    }
}

/// What the sender sees of a resolved message: the reply (empty for an acked one-way
/// message, or when a handler acked a request) or the dead letter as an error.
fn reply_of(outcome: Outcome) -> Result<Bytes, SendError> {
    match outcome {
        Outcome::Acked => Ok(Bytes::new()),
        Outcome::Replied(b) => Ok(b),
        Outcome::DeadLettered(dl) if dl.reason == DeadLetterReason::NoResponders => {
            Err(SendError::NoResponders(dl.service))
        }
        Outcome::DeadLettered(dl) => Err(SendError::DeadLettered(dl)),
    }
}
