//! The sans-IO delivery core: frames, outbox, retries, dedup, ordering, dead letters.
//!
//! [`Core`] holds no sockets, reads no clock and draws no thread RNG. How to drive it:
//!
//! * **Inputs** (`handle_*`, each takes `now`): [`Core::handle_send`] for a new outgoing
//!   message, [`Core::handle_frame`] for every decoded frame of a link,
//!   [`Core::handle_link_up`]/[`Core::handle_link_down`] when a stream opens or dies,
//!   [`Core::handle_unreachable`] when dialing an instance failed,
//!   [`Core::handle_instances`] with the current instances of a service,
//!   [`Core::handle_app_outcome`] when the application acked/nacked/replied a delivery,
//!   [`Core::handle_app_progress`] when it signals that it is still working on one,
//!   [`Core::handle_lookup_failed`] when the directory could not be asked,
//!   and [`Core::handle_timeout`] when the clock passed [`Core::poll_timeout`].
//! * **Durable peers** (`DeliveryConfig::durable`) also have [`Core::handle_restore`] at
//!   start, [`Core::handle_persisted`] when store writes are committed, and
//!   [`Core::handle_loaded`]/[`Core::handle_lookup`] with the answers of store reads.
//! * **Outputs**, drained after every input, in this order: [`Core::poll_store`] (store
//!   writes and reads, to execute in order), [`Core::poll_transmit`]
//!   (frames to send: to an instance, dialing it if needed, or back on a link),
//!   then [`Core::poll_event`] (deliveries, outcomes, acceptances, discovery requests),
//!   [`Core::take_freed`] (quota released), then [`Core::poll_timeout`] (the earliest
//!   deadline to wake up at).
//!
//! Durability rules (durable peers): a message is written ([`StoreOp::Put`]) when it is
//! accepted and its [`Event::Accepted`] waits for that write; it is deleted
//! ([`StoreOp::Resolve`]) when acked, replied or dead-lettered; a failed attempt that is
//! retried records its attempt count ([`StoreOp::Attempted`]). At most `memory_window`
//! messages per service are held in memory; the rest stay on disk and are loaded in id
//! order as room frees. A receiver writes [`StoreOp::Complete`] before the ack or reply of a
//! handled delivery goes out, and looks a retry up ([`StoreOp::Lookup`]) when its id is at or
//! below what it had handled before its memory was lost.
//!
//! Guarantees the core implements: every message ends in exactly one [`Outcome`]
//! (acked, replied or dead-lettered); a receiver hands a (sender session, id) to the
//! application at most once within its dedup window; messages with the same ordering key
//! to the same service are released one at a time, in send order, so they are delivered
//! in order across retries and failover.

mod backoff;
mod balance;
mod cause;
#[cfg(test)]
mod durable_tests;
pub mod frame;
pub mod hash;
mod inbox;
mod outbox;
mod persist;
#[cfg(test)]
mod redelivery_tests;
#[cfg(test)]
mod tests;
mod timers;

pub use balance::{Balancer, Candidate, LeastInFlight, RoundRobin};
pub use cause::{Cause, DeadLetterReason};
pub use frame::{Decoder, ErrorCode, Frame, NackAction, ProtocolError};
pub use persist::{LoadedMessage, MESSAGE_OVERHEAD, StoreOp, message_cost};

use crate::config::DeliveryConfig;
use bytes::Bytes;
use rand::SeedableRng;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};
use timers::{TimerKey, Timers};

/// One reachable instance of a service, as discovery reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceInfo {
    /// Service name.
    pub service: String,
    /// Instance name, unique within the service.
    pub instance: String,
    /// QUIC address.
    pub addr: SocketAddr,
    /// Pinned SHA-256 of the certificate's SubjectPublicKeyInfo, 32 bytes.
    pub fingerprint: Option<[u8; 32]>,
}

/// Hashes the address only (cheap; equal instances have equal addresses).
impl std::hash::Hash for InstanceInfo {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.addr.hash(state);
    }
}

impl InstanceInfo {
    /// Builds an instance description.
    pub fn new(
        service: &str,
        instance: &str,
        addr: SocketAddr,
        fingerprint: Option<[u8; 32]>,
    ) -> Self {
        Self {
            service: service.to_owned(),
            instance: instance.to_owned(),
            addr,
            fingerprint,
        }
    }
}

/// Identifies one stream (a link) between this peer and another, chosen by the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkId(pub u64);

/// Which way a link points.
#[derive(Debug, Clone)]
pub enum LinkKind {
    /// We dialed this instance: we send messages, it sends acks.
    Outbound(Arc<InstanceInfo>),
    /// A peer dialed us: it sends hello and messages, we send acks.
    Inbound,
}

/// A message the application wants delivered.
#[derive(Debug, Clone)]
pub struct SendRequest {
    /// Destination service.
    pub service: String,
    /// Only this instance (broadcast); `None` lets the balancer choose.
    pub target: Option<Arc<InstanceInfo>>,
    /// Ordering key: same key, same service: delivered in send order.
    pub key: Option<Bytes>,
    /// Payload.
    pub payload: Bytes,
    /// Expect a reply.
    pub request: bool,
    /// Absolute deadline; past it the message is dead-lettered.
    pub deadline: Instant,
    /// Time to wait for an ack (or a progress signal) before the next attempt; `None`
    /// uses [`DeliveryConfig::ack_timeout`].
    pub ack_timeout: Option<Duration>,
    /// Attempts after which the message is dead-lettered even before its deadline; `None`
    /// uses [`DeliveryConfig::max_attempts`].
    pub max_attempts: Option<NonZeroU32>,
    /// Dead-letter it at once with [`DeadLetterReason::NoResponders`] when the service is
    /// known to have no instance, instead of waiting for one until the deadline.
    pub no_responders: bool,
}

/// A message that will not be delivered, with why and how hard we tried.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Message id.
    pub id: u64,
    /// Destination service.
    pub service: String,
    /// Ordering key.
    pub key: Option<Bytes>,
    /// Payload.
    pub payload: Bytes,
    /// Why.
    pub reason: DeadLetterReason,
    /// Attempts made (frames sent).
    pub attempts: u32,
    /// Instance of the last attempt.
    pub last_instance: Option<String>,
}

/// Final result of a sent message.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A handler acked it.
    Acked,
    /// A handler replied (requests).
    Replied(Bytes),
    /// Given up; see the dead letter.
    DeadLettered(Box<DeadLetter>),
}

/// Identifies a delivery to the application (to ack or nack it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeliveryToken {
    /// Sender session.
    pub session: u64,
    /// Message id.
    pub id: u64,
}

/// A message handed to the application.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Handle for the outcome.
    pub token: DeliveryToken,
    /// Sender's service.
    pub from_service: Arc<str>,
    /// Sender's instance.
    pub from_instance: Arc<str>,
    /// Attempt number of the frame that got delivered.
    pub attempt: u32,
    /// A reply is expected.
    pub request: bool,
    /// Ordering key.
    pub key: Option<Bytes>,
    /// The topic of a published message; `None` for a direct send.
    pub topic: Option<Arc<str>>,
    /// Payload.
    pub payload: Bytes,
}

/// What the application decided about a delivery.
#[derive(Debug, Clone)]
pub enum AppOutcome {
    /// Processed.
    Ack,
    /// Processed, with a response.
    Reply(Bytes),
    /// Not processed.
    Nack(NackAction, String),
}

/// A frame to send.
#[derive(Debug)]
pub enum Transmit {
    /// To this instance over our outbound link (dial first if there is none).
    ToInstance(Arc<InstanceInfo>, Frame),
    /// Back on this link (acks, replies, nacks).
    ToLink(LinkId, Frame),
}

/// Something the driver must tell the application or act upon.
#[derive(Debug)]
pub enum Event {
    /// Hand to the application.
    Deliver(Delivery),
    /// A message reached its final outcome.
    Outcome(u64, Outcome),
    /// The core needs the instances of this service (start discovery for it).
    NeedInstances(String),
    /// Durable peers only: message `id` is persisted; its acceptance may be reported.
    Accepted(u64),
}

/// Shared output queues and timers, passed to the outbox and inbox.
struct Io {
    timers: Timers,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    rng: rand::rngs::StdRng,
    persist: persist::Persist,
}

/// The delivery state machine of one peer (both sender and receiver roles).
pub struct Core {
    cfg: DeliveryConfig,
    io: Io,
    outbox: outbox::Outbox,
    inbox: inbox::Inbox,
    links: hash::FastMap<LinkId, LinkKind>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("outgoing", &self.outbox.len())
            .field("links", &self.links.len())
            .finish()
    }
}

impl Core {
    /// A core using `balancer` to choose instances.
    pub fn new(cfg: DeliveryConfig, balancer: Box<dyn Balancer>) -> Self {
        let seed = cfg.rng_seed.unwrap_or_else(rand::random);
        let io = Io {
            timers: Timers::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            rng: rand::rngs::StdRng::seed_from_u64(seed),
            persist: persist::Persist::new(cfg.durable),
        };
        Self {
            outbox: outbox::Outbox::new(&cfg, balancer),
            inbox: inbox::Inbox::new(&cfg),
            cfg,
            io,
            links: hash::FastMap::default(),
        }
    }

    /// Accepts a message; returns its id. Its [`Outcome`] will be reported exactly once.
    pub fn handle_send(&mut self, now: Instant, req: SendRequest) -> u64 {
        self.outbox.send(now, req, &mut self.io)
    }

    /// Registers a new link.
    pub fn handle_link_up(&mut self, link: LinkId, kind: LinkKind) {
        self.links.insert(link, kind);
    }

    /// A link closed or failed. Messages in flight on an outbound link are retried.
    pub fn handle_link_down(&mut self, now: Instant, link: LinkId, reason: &str) {
        match self.links.remove(&link) {
            Some(LinkKind::Outbound(inst)) => {
                let cause = Cause::Unreachable {
                    instance: inst.instance.clone(),
                    detail: reason.to_owned(),
                };
                self.outbox.unreachable(now, &inst, cause, &mut self.io)
            }
            Some(LinkKind::Inbound) => self.inbox.link_down(link),
            None => {}
        }
    }

    /// Dialing `instance` failed (refused, timeout: [`Cause::Unreachable`], retried
    /// elsewhere; wrong certificate: [`Cause::IdentityMismatch`], dead-lettered at once).
    pub fn handle_unreachable(&mut self, now: Instant, instance: &Arc<InstanceInfo>, cause: Cause) {
        self.outbox.unreachable(now, instance, cause, &mut self.io);
    }

    /// Looking `service` up failed; messages waiting for its instances remember `cause`
    /// as their last error (they keep waiting until their deadline).
    pub fn handle_lookup_failed(&mut self, service: &str, cause: Cause) {
        self.outbox.lookup_failed(service, cause);
    }

    /// The current instances of `service` (replaces the previous list).
    pub fn handle_instances(
        &mut self,
        now: Instant,
        service: &str,
        instances: Vec<Arc<InstanceInfo>>,
    ) {
        self.outbox.instances(now, service, instances, &mut self.io);
    }

    /// A decoded frame arrived on `link`. An error means the link must be closed with its code.
    pub fn handle_frame(
        &mut self,
        now: Instant,
        link: LinkId,
        frame: Frame,
    ) -> Result<(), ProtocolError> {
        match self.links.get(&link) {
            Some(LinkKind::Outbound(inst)) => {
                let inst = inst.clone();
                self.outbox.frame(now, &inst, frame, &mut self.io)
            }
            Some(LinkKind::Inbound) => self.inbox.frame(now, link, frame, &mut self.io),
            None => Ok(()),
        }
    }

    /// The application settled a delivery.
    pub fn handle_app_outcome(&mut self, now: Instant, token: DeliveryToken, outcome: AppOutcome) {
        self.inbox.app_outcome(now, token, outcome, &mut self.io);
    }

    /// The application is still handling a delivery: tells its sender, which extends the
    /// ack deadline of that attempt (receivers of protocol version 1 are not told).
    pub fn handle_app_progress(&mut self, token: DeliveryToken) {
        self.inbox.app_progress(token, &mut self.io);
    }

    /// Dead-letters every unresolved outgoing message with [`DeadLetterReason::ShuttingDown`].
    pub fn handle_shutdown(&mut self, now: Instant) {
        self.outbox.abandon_all(now, &mut self.io);
    }

    /// Processes every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(key) = self.io.timers.pop_expired(now) {
            match key {
                TimerKey::Message(id) => self.outbox.timer(now, id, &mut self.io),
                TimerKey::Sweep => self.inbox.sweep(now, &mut self.io),
            }
        }
    }

    /// Durable peers, at start: the store's next message id, the services with messages in
    /// its outbox (loaded page by page, in id order) and the highest handled id per sender
    /// session (retries up to it are looked up in the store before delivery).
    pub fn handle_restore(
        &mut self,
        next_id: u64,
        services: Vec<String>,
        floors: impl IntoIterator<Item = (u64, u64)>,
    ) {
        self.outbox.restore(next_id, services, &mut self.io);
        self.inbox.restore_floors(floors);
    }

    /// Every store write up to number `seq` (counting [`StoreOp`] writes from 1 in poll
    /// order) is durable: releases the acceptances (and first sends), acks and replies that
    /// waited for it.
    pub fn handle_persisted(&mut self, now: Instant, seq: u64) {
        for gated in self.io.persist.committed(seq) {
            match gated {
                persist::Gated::Accepted(id) => {
                    self.outbox.persisted(now, id, &mut self.io);
                    self.io.events.push_back(Event::Accepted(id));
                }
                persist::Gated::Ack(link, id) => self.inbox.ack_now(link, id),
                persist::Gated::Transmit(t) => self.io.transmits.push_back(t),
            }
        }
    }

    /// The answer to [`StoreOp::Load`]: messages of `service` in id order; `exhausted`
    /// when the store had no more than these.
    pub fn handle_loaded(
        &mut self,
        now: Instant,
        service: &str,
        messages: Vec<LoadedMessage>,
        exhausted: bool,
    ) {
        self.outbox
            .loaded(now, service, messages, exhausted, &mut self.io);
    }

    /// The answer to [`StoreOp::Lookup`]: `Some(reply)` when (`session`, `id`) was handled
    /// (`reply` is `None` for a one-way message), `None` when it was not.
    pub fn handle_lookup(
        &mut self,
        now: Instant,
        session: u64,
        id: u64,
        found: Option<Option<Bytes>>,
    ) {
        self.inbox.lookup(now, session, id, found, &mut self.io);
    }

    /// Next store operation to execute (durable peers), in order.
    pub fn poll_store(&mut self) -> Option<StoreOp> {
        self.io.persist.poll()
    }

    /// Quota bytes ([`message_cost`]) of the messages resolved since the last call.
    pub fn take_freed(&mut self) -> u64 {
        std::mem::take(&mut self.io.persist.freed)
    }

    /// Outputs held until a store write is durable.
    pub fn waiting_for_store(&self) -> usize {
        self.io.persist.waiting()
    }

    /// Next frame to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if let Some(t) = self.io.transmits.pop_front() {
            return Some(t);
        }
        self.inbox.flush_acks(&mut self.io);
        self.io.transmits.pop_front()
    }

    /// Next event for the application or the driver.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.io.events.pop_front()
    }

    /// Earliest deadline at which [`Core::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.io.timers.next()
    }

    /// Outgoing messages not yet resolved.
    pub fn outgoing(&self) -> usize {
        self.outbox.len()
    }

    /// Messages awaiting an ack from `instance`.
    pub fn in_flight_to(&self, instance: &Arc<InstanceInfo>) -> usize {
        self.outbox.in_flight_to(instance)
    }

    /// Deliveries handed to the application and not yet settled.
    pub fn pending_deliveries(&self) -> usize {
        self.inbox.pending()
    }

    /// Known instances of `service` (as last reported).
    pub fn instances(&self, service: &str) -> Vec<Arc<InstanceInfo>> {
        self.outbox.instances_of(service)
    }

    /// The configuration.
    pub fn config(&self) -> &DeliveryConfig {
        &self.cfg
    }
}
