//! Receiver side: per-sender dedup windows, deliveries in progress, batched acks.

use super::frame::{MAX_ACK_IDS, PROGRESS_VERSION};
use super::hash::{FastMap as HashMap, FastSet as HashSet};
use super::persist::Gated;
use super::timers::TimerKey;
use super::{
    AppOutcome, Delivery, DeliveryToken, ErrorCode, Event, Frame, Io, LinkId, NackAction,
    ProtocolError, StoreOp, Transmit,
};
use crate::config::DeliveryConfig;
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

const MIN_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct InProgress {
    link: LinkId,
    request: bool,
}

/// Dedup state of one sender session.
#[derive(Debug)]
pub(super) struct Sender {
    /// Protocol version from its hello: PROGRESS frames go only to version 2 and later.
    version: u8,
    service: Arc<str>,
    instance: Arc<str>,
    pub(super) completed: HashSet<u64>,
    order: VecDeque<u64>,
    replies: HashMap<u64, Bytes>,
    reply_order: VecDeque<u64>,
    in_progress: HashMap<u64, InProgress>,
    links: usize,
    last_seen: Instant,
}

impl Sender {
    fn new(version: u8, service: String, instance: String, now: Instant) -> Self {
        Self {
            version,
            service: service.into(),
            instance: instance.into(),
            completed: HashSet::default(),
            order: VecDeque::new(),
            replies: HashMap::default(),
            reply_order: VecDeque::new(),
            in_progress: HashMap::default(),
            links: 0,
            last_seen: now,
        }
    }

    fn evictable(&self) -> bool {
        self.links == 0 && self.in_progress.is_empty()
    }

    /// Records a handled id (and the reply of a request); returns the highest id that fell
    /// out of the dedup window, if any.
    fn remember(
        &mut self,
        id: u64,
        reply: Option<Bytes>,
        window: usize,
        reply_cache: usize,
    ) -> Option<u64> {
        if self.completed.insert(id) {
            self.order.push_back(id);
        }
        let mut evicted = None;
        while self.order.len() > window {
            if let Some(old) = self.order.pop_front() {
                self.completed.remove(&old);
                evicted = evicted.max(Some(old));
            }
        }
        if let Some(reply) = reply {
            self.replies.insert(id, reply);
            self.reply_order.push_back(id);
            while self.reply_order.len() > reply_cache {
                if let Some(old) = self.reply_order.pop_front() {
                    self.replies.remove(&old);
                }
            }
        }
        evicted
    }
}

/// Every known sender session (dedup window, cached replies, deliveries in progress)
/// and the acks waiting to be sent per link.
pub(crate) struct Inbox {
    pub(super) senders: HashMap<u64, Sender>,
    link_sender: HashMap<LinkId, u64>,
    pending: usize,
    acks: HashMap<LinkId, Vec<u64>>,
    dirty: Vec<LinkId>,
    sweep_at: Option<Instant>,
    dedup_window: usize,
    reply_cache: usize,
    max_senders: usize,
    sender_idle: Duration,
    max_pending: usize,
    durable: bool,
    /// Durable receivers: per sender session, the highest handled id this memory may no
    /// longer hold (handled before a restart, or evicted); a message at or below it is
    /// looked up in the store before it may reach the handler.
    floors: HashMap<u64, u64>,
    /// Messages waiting for the answer of a store lookup, by (session, id).
    lookups: HashMap<(u64, u64), (LinkId, Delivery)>,
}

impl Inbox {
    pub(crate) fn new(cfg: &DeliveryConfig) -> Self {
        Self {
            senders: HashMap::default(),
            link_sender: HashMap::default(),
            pending: 0,
            acks: HashMap::default(),
            dirty: Vec::new(),
            sweep_at: None,
            dedup_window: cfg.dedup_window.max(1),
            reply_cache: cfg.reply_cache,
            max_senders: cfg.max_senders.max(1),
            sender_idle: cfg.sender_idle,
            max_pending: cfg.max_pending_deliveries.max(1),
            durable: cfg.durable,
            floors: HashMap::default(),
            lookups: HashMap::default(),
        }
    }

    /// Durable receivers at start: the highest handled id per sender session in the store.
    pub(crate) fn restore_floors(&mut self, floors: impl IntoIterator<Item = (u64, u64)>) {
        for (session, id) in floors {
            self.raise_floor(session, id);
        }
    }

    fn raise_floor(&mut self, session: u64, id: u64) {
        let floor = self.floors.entry(session).or_default();
        *floor = (*floor).max(id);
    }

    /// A durable write covering `id` is committed: its ack may go out.
    pub(crate) fn ack_now(&mut self, link: LinkId, id: u64) {
        queue_ack(&mut self.acks, &mut self.dirty, link, id);
    }

    /// Deliveries handed to the application and not yet settled.
    pub(crate) fn pending(&self) -> usize {
        self.pending
    }

    /// Drops a sender's dedup state; a durable receiver keeps its highest handled id as the
    /// floor below which retries are looked up in the store.
    fn forget_sender(&mut self, session: u64) {
        let Some(sender) = self.senders.remove(&session) else {
            return;
        };
        if self.durable
            && let Some(max) = sender.completed.iter().max()
        {
            self.raise_floor(session, *max);
        }
    }

    /// A receiver-side frame (hello, message) from a link.
    pub(crate) fn frame(
        &mut self,
        now: Instant,
        link: LinkId,
        frame: Frame,
        io: &mut Io,
    ) -> Result<(), ProtocolError> {
        match frame {
            Frame::Hello {
                version,
                session,
                service,
                instance,
            } => self.hello(now, link, version, session, (service, instance), io),
            Frame::Message {
                id,
                attempt,
                request,
                key,
                topic,
                payload,
            } => {
                let Some(&session) = self.link_sender.get(&link) else {
                    return Err(ProtocolError::new(
                        ErrorCode::UnexpectedFrame,
                        "message before hello",
                    ));
                };
                self.message(
                    now,
                    link,
                    session,
                    Delivery::incoming(session, id, attempt, request, key, topic, payload),
                    io,
                );
                Ok(())
            }
            Frame::Close { .. } => Ok(()),
            Frame::Ack { .. }
            | Frame::Nack { .. }
            | Frame::Reply { .. }
            | Frame::Progress { .. } => Err(ProtocolError::new(
                ErrorCode::UnexpectedFrame,
                "ack/nack/reply/progress on a message link",
            )),
        }
    }

    fn hello(
        &mut self,
        now: Instant,
        link: LinkId,
        version: u8,
        session: u64,
        (service, instance): (String, String),
        io: &mut Io,
    ) -> Result<(), ProtocolError> {
        if self.link_sender.contains_key(&link) {
            return Err(ProtocolError::new(
                ErrorCode::UnexpectedFrame,
                "second hello on a link",
            ));
        }
        self.link_sender.insert(link, session);
        let sender = self
            .senders
            .entry(session)
            .or_insert_with(|| Sender::new(version, service, instance, now));
        sender.version = version;
        sender.links += 1;
        sender.last_seen = now;
        self.evict_over_limit();
        if self.sweep_at.is_none() {
            let at = now + (self.sender_idle / 4).max(MIN_SWEEP_INTERVAL);
            io.timers.set(TimerKey::Sweep, None, at);
            self.sweep_at = Some(at);
        }
        Ok(())
    }

    fn evict_over_limit(&mut self) {
        while self.senders.len() > self.max_senders {
            let victim = self
                .senders
                .iter()
                .filter(|(_, s)| s.evictable())
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(k, _)| *k);
            match victim {
                Some(k) => self.forget_sender(k),
                None => break,
            };
        }
    }

    fn message(
        &mut self,
        now: Instant,
        link: LinkId,
        session: u64,
        delivery: Delivery,
        io: &mut Io,
    ) {
        let Some(sender) = self.senders.get_mut(&session) else {
            return;
        };
        sender.last_seen = now;
        let id = delivery.token.id;
        if sender.completed.contains(&id) {
            match repeat_answer(id, delivery.request, sender.replies.get(&id)) {
                Some(frame) => io.transmits.push_back(Transmit::ToLink(link, frame)),
                None => queue_ack(&mut self.acks, &mut self.dirty, link, id),
            }
            return;
        }
        if let Some(p) = sender.in_progress.get_mut(&id) {
            p.link = link;
            return;
        }
        if self.durable && self.floors.get(&session).is_some_and(|f| id <= *f) {
            match self.lookups.entry((session, id)) {
                std::collections::hash_map::Entry::Occupied(mut e) => e.get_mut().0 = link,
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert((link, delivery));
                    io.persist.read(StoreOp::Lookup { session, id });
                }
            }
            return;
        }
        self.deliver(link, session, delivery, io);
    }

    /// The store's answer for a message at or below its sender's floor: answer it from the
    /// record when it was handled, else hand it to the application.
    pub(crate) fn lookup(
        &mut self,
        now: Instant,
        session: u64,
        id: u64,
        found: Option<Option<Bytes>>,
        io: &mut Io,
    ) {
        let Some((link, delivery)) = self.lookups.remove(&(session, id)) else {
            return;
        };
        let Some(reply) = found else {
            if let Some(sender) = self.senders.get_mut(&session) {
                sender.last_seen = now;
            }
            self.deliver(link, session, delivery, io);
            return;
        };
        if let Some(sender) = self.senders.get_mut(&session) {
            sender.remember(id, reply.clone(), self.dedup_window, self.reply_cache);
        }
        match (delivery.request, reply) {
            (true, Some(payload)) => io
                .transmits
                .push_back(Transmit::ToLink(link, Frame::Reply { id, payload })),
            _ => queue_ack(&mut self.acks, &mut self.dirty, link, id),
        }
    }

    /// Hands a new message to the application (or nacks it when too many are pending).
    fn deliver(&mut self, link: LinkId, session: u64, delivery: Delivery, io: &mut Io) {
        let id = delivery.token.id;
        let Some(sender) = self.senders.get_mut(&session) else {
            return;
        };
        if self.pending >= self.max_pending {
            let frame = Frame::Nack {
                id,
                action: NackAction::Retry,
                reason: "receiver overloaded".into(),
            };
            io.transmits.push_back(Transmit::ToLink(link, frame));
            return;
        }
        sender.in_progress.insert(
            id,
            InProgress {
                link,
                request: delivery.request,
            },
        );
        self.pending += 1;
        let delivery = Delivery {
            from_service: sender.service.clone(),
            from_instance: sender.instance.clone(),
            ..delivery
        };
        io.events.push_back(Event::Deliver(delivery));
    }

    /// The application settled a delivery: ack, reply or nack it to the sender.
    pub(crate) fn app_outcome(
        &mut self,
        _now: Instant,
        token: DeliveryToken,
        outcome: AppOutcome,
        io: &mut Io,
    ) {
        let Some(sender) = self.senders.get_mut(&token.session) else {
            return;
        };
        let Some(p) = sender.in_progress.remove(&token.id) else {
            return;
        };
        self.pending -= 1;
        let id = token.id;
        let reply = match outcome {
            AppOutcome::Nack(action, reason) => {
                io.transmits
                    .push_back(Transmit::ToLink(p.link, Frame::Nack { id, action, reason }));
                return;
            }
            AppOutcome::Ack if !p.request => None,
            AppOutcome::Reply(b) if p.request => Some(b),
            AppOutcome::Ack | AppOutcome::Reply(_) => p.request.then(Bytes::new),
        };
        let evicted = sender.remember(id, reply.clone(), self.dedup_window, self.reply_cache);
        let answer = match &reply {
            None => Gated::Ack(p.link, id),
            Some(payload) => Gated::Transmit(Transmit::ToLink(
                p.link,
                Frame::Reply {
                    id,
                    payload: payload.clone(),
                },
            )),
        };
        if !self.durable {
            match answer {
                Gated::Ack(link, id) => queue_ack(&mut self.acks, &mut self.dirty, link, id),
                Gated::Transmit(t) => io.transmits.push_back(t),
                Gated::Accepted(_) => {}
            }
            return;
        }
        if let Some(evicted) = evicted {
            self.raise_floor(token.session, evicted);
        }
        let session = token.session;
        let seq = io.persist.write(StoreOp::Complete { session, id, reply });
        io.persist.after(seq, answer);
    }

    /// The application is still handling `token`: send PROGRESS on the link its latest
    /// copy arrived on, if the sender understands it.
    pub(crate) fn app_progress(&mut self, token: DeliveryToken, io: &mut Io) {
        let Some(sender) = self.senders.get(&token.session) else {
            return;
        };
        let Some(p) = sender.in_progress.get(&token.id) else {
            return;
        };
        if sender.version >= PROGRESS_VERSION {
            let frame = Frame::Progress { id: token.id };
            io.transmits.push_back(Transmit::ToLink(p.link, frame));
        }
    }

    /// `link` closed: drop its unsent acks and detach it from its sender.
    pub(crate) fn link_down(&mut self, link: LinkId) {
        self.acks.remove(&link);
        if let Some(session) = self.link_sender.remove(&link)
            && let Some(sender) = self.senders.get_mut(&session)
        {
            sender.links = sender.links.saturating_sub(1);
        }
    }

    /// Sweep timer: forgets senders with no link and nothing in progress that have been
    /// idle for `sender_idle`.
    pub(crate) fn sweep(&mut self, now: Instant, io: &mut Io) {
        let idle = self.sender_idle;
        let idle_senders: Vec<u64> = self
            .senders
            .iter()
            .filter(|(_, s)| s.evictable() && now.saturating_duration_since(s.last_seen) >= idle)
            .map(|(k, _)| *k)
            .collect();
        for session in idle_senders {
            self.forget_sender(session);
        }
        self.sweep_at = None;
        if !self.senders.is_empty() {
            let at = now + (idle / 4).max(MIN_SWEEP_INTERVAL);
            io.timers.set(TimerKey::Sweep, None, at);
            self.sweep_at = Some(at);
        }
    }

    /// Turns the acks queued since the last call into one `Ack` frame per link.
    pub(crate) fn flush_acks(&mut self, io: &mut Io) {
        for link in self.dirty.drain(..) {
            let Some(ids) = self.acks.remove(&link) else {
                continue;
            };
            for chunk in ids.chunks(MAX_ACK_IDS) {
                io.transmits.push_back(Transmit::ToLink(
                    link,
                    Frame::Ack {
                        ids: chunk.to_vec(),
                    },
                ));
            }
        }
    }
}

/// The answer to a message this receiver already handled: `None` for a one-way message
/// (ack it again), the cached reply for a request, or a dead-letter nack when that reply
/// is no longer cached.
fn repeat_answer(id: u64, request: bool, reply: Option<&Bytes>) -> Option<Frame> {
    match (request, reply) {
        (false, _) => None,
        (true, Some(reply)) => Some(Frame::Reply {
            id,
            payload: reply.clone(),
        }),
        (true, None) => Some(Frame::Nack {
            id,
            action: NackAction::DeadLetter,
            reason: "request already handled; its reply is no longer cached".into(),
        }),
    }
}

fn queue_ack(acks: &mut HashMap<LinkId, Vec<u64>>, dirty: &mut Vec<LinkId>, link: LinkId, id: u64) {
    let ids = acks.entry(link).or_default();
    if ids.is_empty() {
        dirty.push(link);
    }
    ids.push(id);
}

impl Delivery {
    fn incoming(
        session: u64,
        id: u64,
        attempt: u32,
        request: bool,
        key: Option<Bytes>,
        topic: Option<String>,
        payload: Bytes,
    ) -> Self {
        let empty: Arc<str> = Arc::from("");
        Self {
            token: DeliveryToken { session, id },
            from_service: empty.clone(),
            from_instance: empty,
            attempt,
            request,
            key,
            topic: topic.map(Arc::from),
            payload,
        }
    }
}
