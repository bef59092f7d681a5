//! Sender side: outgoing messages, instance choice, retries, ordering keys, dead letters.

use super::backoff::Backoff;
use super::hash::FastMap as HashMap;
use super::persist::Gated;
use super::timers::TimerKey;
use super::{
    Balancer, Candidate, Cause, DeadLetter, DeadLetterReason, ErrorCode, Event, Frame,
    InstanceInfo, Io, LoadedMessage, NackAction, Outcome, ProtocolError, SendRequest, StoreOp,
    Transmit, message_cost,
};
use crate::config::DeliveryConfig;
use bytes::Bytes;
use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug)]
enum State {
    /// Durable peers: waiting for its store write; it goes on the wire only once durable
    /// (an id the store has not recorded could be handed out again after a crash).
    Unpersisted,
    /// Waiting behind an earlier message with the same ordering key.
    Blocked,
    /// Waiting for the service to have instances.
    Parked,
    /// Sent to this instance, waiting for its ack.
    InFlight(Arc<InstanceInfo>),
    /// Waiting for the retry delay.
    Backoff,
}

/// One unresolved message (192 bytes). Boxed in [`Outbox::msgs`] because the sender holds
/// one per pending message (issues 9 and 13 budget 256 bytes per pending message, all
/// bookkeeping included): the map's spare capacity then costs a 16-byte entry per slot
/// instead of a whole record, so its doubling no longer swings the figure. The last error
/// is shared with the service's lookup failure, not copied into every parked message.
#[derive(Debug)]
struct Outgoing {
    req: SendRequest,
    attempts: u32,
    state: State,
    timer: Option<Instant>,
    last_instance: Option<Arc<InstanceInfo>>,
    last_error: Option<Arc<Cause>>,
}

#[derive(Debug, Default)]
struct ServiceState {
    instances: Vec<Arc<InstanceInfo>>,
    parked: VecDeque<u64>,
    requested: bool,
    /// Why the service has no usable instance list (empty list, directory down), if known;
    /// shared with the messages parked for it.
    lookup_error: Option<Arc<Cause>>,
    /// An instance list was received (an empty one means "no instances").
    known: bool,
    /// Messages of this service held in memory.
    resident: usize,
    /// Durable peers: the store holds messages of this service not in memory, all with
    /// ids above `cursor`.
    backlog: bool,
    /// Highest id of this service that was held in memory.
    cursor: u64,
    /// A `Load` is outstanding.
    loading: bool,
    /// A message spilled to the store while the `Load` was outstanding.
    spilled_during_load: bool,
}

/// Every message this peer sent and has not resolved yet, the instances known per
/// service, and which of them are in flight or avoided as unhealthy.
pub(crate) struct Outbox {
    next_id: u64,
    msgs: HashMap<u64, Box<Outgoing>>,
    services: HashMap<String, ServiceState>,
    keys: HashMap<(String, Bytes), VecDeque<u64>>,
    in_flight: HashMap<Arc<InstanceInfo>, usize>,
    unhealthy: HashMap<Arc<InstanceInfo>, Instant>,
    balancer: Box<dyn Balancer>,
    ack_timeout: Duration,
    max_attempts: Option<NonZeroU32>,
    unhealthy_for: Duration,
    backoff: Backoff,
    memory_window: usize,
}

impl Outbox {
    pub(crate) fn new(cfg: &DeliveryConfig, balancer: Box<dyn Balancer>) -> Self {
        Self {
            next_id: 1,
            msgs: HashMap::default(),
            services: HashMap::default(),
            keys: HashMap::default(),
            in_flight: HashMap::default(),
            unhealthy: HashMap::default(),
            balancer,
            ack_timeout: cfg.ack_timeout,
            max_attempts: cfg.max_attempts,
            unhealthy_for: cfg.unhealthy_for,
            backoff: Backoff {
                initial: cfg.backoff_initial,
                max: cfg.backoff_max,
            },
            memory_window: cfg.memory_window.max(2),
        }
    }

    /// Messages not yet resolved.
    pub(crate) fn len(&self) -> usize {
        self.msgs.len()
    }

    /// Messages currently in flight to `inst` (the balancer's load figure).
    pub(crate) fn in_flight_to(&self, inst: &Arc<InstanceInfo>) -> usize {
        self.in_flight.get(inst).copied().unwrap_or(0)
    }

    /// The last known instance list of `service` (empty if none was received).
    pub(crate) fn instances_of(&self, service: &str) -> Vec<Arc<InstanceInfo>> {
        self.services
            .get(service)
            .map(|s| s.instances.clone())
            .unwrap_or_default()
    }

    /// Accepts a message and dispatches it (or queues it behind its ordering key, or parks
    /// it until instances are known); returns its id. A durable peer writes it first and
    /// keeps it on disk only when the service already has `memory_window` in memory.
    pub(crate) fn send(&mut self, now: Instant, req: SendRequest, io: &mut Io) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        if io.persist.durable {
            let seq = io.persist.write(StoreOp::Put {
                id,
                req: req.clone(),
            });
            io.persist.after(seq, Gated::Accepted(id));
            if self.spill(&req.service) {
                return id;
            }
        }
        let durable = io.persist.durable;
        self.admit(now, id, req, 0, !durable, io);
        id
    }

    /// Durable peers: message `id` is persisted. It goes out unless an earlier message with
    /// its key is unresolved (or it is on disk only: it goes out when loaded).
    pub(crate) fn persisted(&mut self, now: Instant, id: u64, io: &mut Io) {
        let Some(msg) = self.msgs.get_mut(&id) else {
            return;
        };
        if !matches!(msg.state, State::Unpersisted) {
            return;
        }
        msg.state = State::Blocked;
        let head = match &msg.req.key {
            Some(key) => {
                self.keys
                    .get(&(msg.req.service.clone(), key.clone()))
                    .and_then(|q| q.front())
                    == Some(&id)
            }
            None => true,
        };
        if head {
            self.dispatch(now, id, io);
        }
    }

    /// Durable peers: whether a new message of `service` stays on disk only (the service has
    /// a backlog on disk, or a full memory window). Marks the backlog.
    fn spill(&mut self, service: &str) -> bool {
        let window = self.memory_window;
        let state = self.service_mut(service);
        if !state.backlog && state.resident < window {
            return false;
        }
        state.backlog = true;
        state.spilled_during_load |= state.loading;
        true
    }

    fn service_mut(&mut self, service: &str) -> &mut ServiceState {
        if !self.services.contains_key(service) {
            self.services
                .insert(service.to_owned(), ServiceState::default());
        }
        // Inserted just above when missing.
        self.services
            .get_mut(service)
            .expect("service state exists")
    }

    /// Durable peers at start: ids continue from `next_id`; the outbox of each service is
    /// loaded page by page.
    pub(crate) fn restore(&mut self, next_id: u64, services: Vec<String>, io: &mut Io) {
        self.next_id = self.next_id.max(next_id);
        for service in services {
            self.service_mut(&service).backlog = true;
            self.maybe_load(&service, io);
        }
    }

    /// Asks the store for the next page of `service` when its memory is at most half full.
    fn maybe_load(&mut self, service: &str, io: &mut Io) {
        let window = self.memory_window;
        let Some(state) = self.services.get_mut(service) else {
            return;
        };
        if !state.backlog || state.loading || state.resident > window / 2 {
            return;
        }
        state.loading = true;
        state.spilled_during_load = false;
        io.persist.read(StoreOp::Load {
            service: service.to_owned(),
            after: state.cursor,
            max: window - state.resident,
        });
    }

    /// A page of `service`'s messages from the store, in id order.
    pub(crate) fn loaded(
        &mut self,
        now: Instant,
        service: &str,
        messages: Vec<LoadedMessage>,
        exhausted: bool,
        io: &mut Io,
    ) {
        let cursor = self.service_mut(service).cursor;
        for m in messages {
            if m.id > cursor && !self.msgs.contains_key(&m.id) {
                self.admit(now, m.id, m.req, m.attempts, true, io);
            }
        }
        let state = self.service_mut(service);
        state.loading = false;
        if exhausted && !state.spilled_during_load {
            state.backlog = false;
        }
        self.maybe_load(service, io);
    }

    /// Holds message `id` in memory and dispatches it (or queues it behind its ordering
    /// key, or waits for its store write when not `persisted`); dead-letters it at once
    /// when its deadline has passed (loaded late). `attempts` were made before (resumed).
    fn admit(
        &mut self,
        now: Instant,
        id: u64,
        req: SendRequest,
        attempts: u32,
        persisted: bool,
        io: &mut Io,
    ) {
        let state = self.service_mut(&req.service);
        state.resident += 1;
        state.cursor = state.cursor.max(id);
        let blocked = match &req.key {
            Some(key) => {
                let queue = self
                    .keys
                    .entry((req.service.clone(), key.clone()))
                    .or_default();
                queue.push_back(id);
                queue.len() > 1
            }
            None => false,
        };
        let deadline = req.deadline;
        let msg = Outgoing {
            req,
            attempts,
            state: if persisted {
                State::Blocked
            } else {
                State::Unpersisted
            },
            timer: None,
            last_instance: None,
            last_error: None,
        };
        self.msgs.insert(id, Box::new(msg));
        if now >= deadline {
            let last_error = None;
            self.dead_letter(
                now,
                id,
                DeadLetterReason::DeadlineExceeded { last_error },
                io,
            );
        } else if blocked || !persisted {
            self.set_timer(id, deadline, io);
        } else {
            self.dispatch(now, id, io);
        }
    }

    fn set_timer(&mut self, id: u64, at: Instant, io: &mut Io) {
        if let Some(msg) = self.msgs.get_mut(&id) {
            io.timers.set(TimerKey::Message(id), msg.timer, at);
            msg.timer = Some(at);
        }
    }

    fn is_healthy(&self, now: Instant, inst: &Arc<InstanceInfo>) -> bool {
        self.unhealthy.get(inst).is_none_or(|until| *until <= now)
    }

    fn choose(&mut self, now: Instant, id: u64) -> Option<Arc<InstanceInfo>> {
        let msg = self.msgs.get(&id)?;
        if let Some(target) = &msg.req.target {
            return Some(target.clone());
        }
        let instances = &self.services.get(&msg.req.service)?.instances;
        if instances.is_empty() {
            return None;
        }
        if let [only] = instances.as_slice() {
            return Some(only.clone());
        }
        let candidates: Vec<Candidate<'_>> = instances
            .iter()
            .map(|inst| Candidate {
                instance: inst,
                in_flight: self.in_flight.get(inst).copied().unwrap_or(0),
                healthy: self.is_healthy(now, inst),
                previous: msg.last_instance.as_ref() == Some(inst),
            })
            .collect();
        let pick = self.balancer.pick(&candidates)?;
        candidates.get(pick).map(|c| c.instance.clone())
    }

    fn dispatch(&mut self, now: Instant, id: u64, io: &mut Io) {
        let Some(inst) = self.choose(now, id) else {
            self.park(now, id, io);
            return;
        };
        let default_timeout = self.ack_timeout;
        let Some(msg) = self.msgs.get_mut(&id) else {
            return;
        };
        let ack_timeout = msg.req.ack_timeout.unwrap_or(default_timeout);
        msg.attempts += 1;
        msg.state = State::InFlight(inst.clone());
        msg.last_instance = Some(inst.clone());
        let frame = Frame::Message {
            id,
            attempt: msg.attempts,
            request: msg.req.request,
            key: msg.req.key.clone(),
            topic: crate::topic::topic_of(&msg.req.service).map(str::to_owned),
            payload: msg.req.payload.clone(),
        };
        let at = (now + ack_timeout).min(msg.req.deadline);
        *self.in_flight.entry(inst.clone()).or_default() += 1;
        io.transmits.push_back(Transmit::ToInstance(inst, frame));
        self.set_timer(id, at, io);
    }

    fn park(&mut self, now: Instant, id: u64, io: &mut Io) {
        let Some(msg) = self.msgs.get_mut(&id) else {
            return;
        };
        let known_empty = self
            .services
            .get(&msg.req.service)
            .is_some_and(|s| s.known && s.instances.is_empty());
        if msg.req.no_responders && known_empty && msg.req.target.is_none() {
            self.dead_letter(now, id, DeadLetterReason::NoResponders, io);
            return;
        }
        msg.state = State::Parked;
        let deadline = msg.req.deadline;
        let service = self.services.entry(msg.req.service.clone()).or_default();
        if let Some(cause) = &service.lookup_error {
            msg.last_error = Some(cause.clone());
        }
        service.parked.push_back(id);
        if !service.requested {
            service.requested = true;
            io.events
                .push_back(Event::NeedInstances(msg.req.service.clone()));
        }
        self.set_timer(id, deadline, io);
    }

    fn leave_in_flight(&mut self, id: u64) {
        let Some(msg) = self.msgs.get_mut(&id) else {
            return;
        };
        if let State::InFlight(inst) = std::mem::replace(&mut msg.state, State::Backoff)
            && let Some(n) = self.in_flight.get_mut(&inst)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.in_flight.remove(&inst);
            }
        }
    }

    /// The current attempt of `id` failed with `cause`: retry after a backoff, or
    /// dead-letter it when its attempts are used up.
    fn schedule_retry(&mut self, now: Instant, id: u64, cause: Cause, io: &mut Io) {
        self.leave_in_flight(id);
        let max_attempts = self.max_attempts;
        let Some(msg) = self.msgs.get_mut(&id) else {
            return;
        };
        let limit = msg.req.max_attempts.or(max_attempts);
        if limit.is_some_and(|max| msg.attempts >= max.get()) {
            let reason = DeadLetterReason::AttemptsExhausted { last_error: cause };
            self.dead_letter(now, id, reason, io);
            return;
        }
        msg.last_error = Some(Arc::new(cause));
        msg.state = State::Backoff;
        let at = (now + self.backoff.delay(msg.attempts, &mut io.rng)).min(msg.req.deadline);
        if io.persist.durable {
            io.persist.write(StoreOp::Attempted {
                service: msg.req.service.clone(),
                id,
                attempts: msg.attempts,
            });
        }
        self.set_timer(id, at, io);
    }

    /// The timer of message `id` fired: dead-letter it past its deadline, retry it after an
    /// ack timeout, or dispatch it after its backoff.
    pub(crate) fn timer(&mut self, now: Instant, id: u64, io: &mut Io) {
        let Some(msg) = self.msgs.get_mut(&id) else {
            return;
        };
        msg.timer = None;
        if now >= msg.req.deadline {
            let last_error = msg.last_error.as_deref().cloned();
            self.dead_letter(
                now,
                id,
                DeadLetterReason::DeadlineExceeded { last_error },
                io,
            );
            return;
        }
        match &msg.state {
            State::InFlight(inst) => {
                // An instance that stops answering is avoided for a while, like one that
                // refused the connection; a slow handler that does not signal progress
                // costs one retry elsewhere.
                let inst = inst.clone();
                let after = msg.req.ack_timeout.unwrap_or(self.ack_timeout);
                self.unhealthy
                    .insert(inst.clone(), now + self.unhealthy_for);
                let cause = Cause::AckTimeout {
                    instance: inst.instance.clone(),
                    after,
                };
                self.schedule_retry(now, id, cause, io);
            }
            State::Backoff => self.dispatch(now, id, io),
            State::Unpersisted | State::Blocked | State::Parked => {
                let deadline = msg.req.deadline;
                self.set_timer(id, deadline, io);
            }
        }
    }

    /// `inst` could not be reached: avoid it for a while and retry its in-flight messages,
    /// or dead-letter them at once when it failed to prove its identity.
    pub(crate) fn unreachable(
        &mut self,
        now: Instant,
        inst: &Arc<InstanceInfo>,
        cause: Cause,
        io: &mut Io,
    ) {
        self.unhealthy
            .insert(inst.clone(), now + self.unhealthy_for);
        self.unhealthy.retain(|_, until| *until > now);
        let affected: Vec<u64> = self
            .msgs
            .iter()
            .filter(|(_, m)| matches!(&m.state, State::InFlight(i) if i == inst))
            .map(|(id, _)| *id)
            .collect();
        for id in affected {
            match &cause {
                Cause::IdentityMismatch { instance, detail } => {
                    let reason = DeadLetterReason::IdentityMismatch {
                        instance: instance.clone(),
                        detail: detail.clone(),
                    };
                    self.dead_letter(now, id, reason, io);
                }
                _ => self.schedule_retry(now, id, cause.clone(), io),
            }
        }
    }

    /// Looking `service` up failed: its waiting messages remember why.
    pub(crate) fn lookup_failed(&mut self, service: &str, cause: Cause) {
        let cause = Arc::new(cause);
        let state = self.services.entry(service.to_owned()).or_default();
        if !state.instances.is_empty() {
            return;
        }
        state.lookup_error = Some(cause.clone());
        for id in &state.parked {
            if let Some(msg) = self.msgs.get_mut(id) {
                msg.last_error = Some(cause.clone());
            }
        }
    }

    /// A new instance list for `service`; dispatches the messages parked waiting for one.
    pub(crate) fn instances(
        &mut self,
        now: Instant,
        service: &str,
        list: Vec<Arc<InstanceInfo>>,
        io: &mut Io,
    ) {
        let state = self.service_mut(service);
        state.requested = true;
        state.known = true;
        state.instances = list;
        let empty = state.instances.is_empty();
        state.lookup_error = empty.then(|| Arc::new(Cause::NoInstances));
        let no_instances = state.lookup_error.clone();
        let parked: Vec<u64> = if empty {
            state.parked.iter().copied().collect()
        } else {
            state.parked.drain(..).collect()
        };
        for id in parked {
            let Some(msg) = self.msgs.get(&id) else {
                continue;
            };
            if !matches!(msg.state, State::Parked) {
                continue;
            }
            let fail_fast = msg.req.no_responders && msg.req.target.is_none();
            if !empty {
                self.dispatch(now, id, io);
            } else if !fail_fast {
                if let Some(msg) = self.msgs.get_mut(&id) {
                    msg.last_error = no_instances.clone();
                }
            } else {
                self.dead_letter(now, id, DeadLetterReason::NoResponders, io);
            }
        }
        if empty && let Some(state) = self.services.get_mut(service) {
            state.parked.retain(|id| self.msgs.contains_key(id));
        }
    }

    /// A sender-side frame (ack, reply, nack, progress) from the link to `inst`.
    pub(crate) fn frame(
        &mut self,
        now: Instant,
        inst: &Arc<InstanceInfo>,
        frame: Frame,
        io: &mut Io,
    ) -> Result<(), ProtocolError> {
        match frame {
            Frame::Ack { ids } => {
                for id in ids {
                    let request = self.msgs.get(&id).is_some_and(|m| m.req.request);
                    let outcome = if request {
                        Outcome::Replied(Bytes::new())
                    } else {
                        Outcome::Acked
                    };
                    self.complete(now, id, outcome, io);
                }
            }
            Frame::Reply { id, payload } => {
                let request = self.msgs.get(&id).is_some_and(|m| m.req.request);
                self.complete(
                    now,
                    id,
                    if request {
                        Outcome::Replied(payload)
                    } else {
                        Outcome::Acked
                    },
                    io,
                );
            }
            Frame::Nack {
                id,
                action: NackAction::Retry,
                reason,
            } => {
                if self.msgs.contains_key(&id) {
                    let cause = Cause::Nacked {
                        instance: inst.instance.clone(),
                        reason,
                    };
                    self.schedule_retry(now, id, cause, io);
                }
            }
            Frame::Nack {
                id,
                action: NackAction::DeadLetter,
                reason,
            } => {
                self.dead_letter(now, id, DeadLetterReason::Rejected { reason }, io);
            }
            Frame::Progress { id } => self.progress(now, inst, id, io),
            Frame::Close { .. } => {}
            Frame::Hello { .. } | Frame::Message { .. } => {
                return Err(ProtocolError::new(
                    ErrorCode::UnexpectedFrame,
                    "hello/message on an ack link",
                ));
            }
        }
        Ok(())
    }

    /// `inst` is still handling `id`: restart the attempt's ack timeout (never past the
    /// deadline). Progress from an instance the message is no longer in flight to is stale.
    fn progress(&mut self, now: Instant, inst: &Arc<InstanceInfo>, id: u64, io: &mut Io) {
        let default_timeout = self.ack_timeout;
        let Some(msg) = self.msgs.get(&id) else {
            return;
        };
        if !matches!(&msg.state, State::InFlight(i) if i == inst) {
            return;
        }
        let at = (now + msg.req.ack_timeout.unwrap_or(default_timeout)).min(msg.req.deadline);
        self.set_timer(id, at, io);
    }

    /// Forgets message `id` (resolved): its timer, its in-flight slot and its memory slot;
    /// a durable peer deletes it from the store (keeping `dead`) and frees its quota.
    fn remove(&mut self, id: u64, dead: Option<&DeadLetter>, io: &mut Io) -> Option<Box<Outgoing>> {
        self.leave_in_flight(id);
        let msg = self.msgs.remove(&id)?;
        io.timers.cancel(TimerKey::Message(id), msg.timer);
        let service = &msg.req.service;
        if let Some(state) = self.services.get_mut(service) {
            state.resident = state.resident.saturating_sub(1);
        }
        if io.persist.durable {
            io.persist.write(StoreOp::Resolve {
                service: service.clone(),
                id,
                dead: dead.map(|d| Box::new(d.clone())),
            });
            let key_len = msg.req.key.as_ref().map_or(0, Bytes::len);
            io.persist.freed += message_cost(service.len(), key_len, msg.req.payload.len());
            self.maybe_load(&msg.req.service, io);
        }
        Some(msg)
    }

    fn complete(&mut self, now: Instant, id: u64, outcome: Outcome, io: &mut Io) {
        let Some(msg) = self.remove(id, None, io) else {
            return;
        };
        io.events.push_back(Event::Outcome(id, outcome));
        self.release_key(now, &msg, id, io);
    }

    fn dead_letter(&mut self, now: Instant, id: u64, reason: DeadLetterReason, io: &mut Io) {
        let Some(msg) = self.msgs.get(&id) else {
            return;
        };
        let letter = DeadLetter {
            id,
            service: msg.req.service.clone(),
            key: msg.req.key.clone(),
            payload: msg.req.payload.clone(),
            reason,
            attempts: msg.attempts,
            last_instance: msg.last_instance.as_ref().map(|i| i.instance.clone()),
        };
        let Some(msg) = self.remove(id, Some(&letter), io) else {
            return;
        };
        io.events
            .push_back(Event::Outcome(id, Outcome::DeadLettered(Box::new(letter))));
        self.release_key(now, &msg, id, io);
    }

    /// Removes `id` from its key queue; if it was the head, releases the next message.
    fn release_key(&mut self, now: Instant, msg: &Outgoing, id: u64, io: &mut Io) {
        let Some(key) = &msg.req.key else { return };
        let map_key = (msg.req.service.clone(), key.clone());
        let Some(queue) = self.keys.get_mut(&map_key) else {
            return;
        };
        let was_head = queue.front() == Some(&id);
        queue.retain(|x| *x != id);
        let next = queue.front().copied();
        if queue.is_empty() {
            self.keys.remove(&map_key);
        }
        let ready = |id| {
            self.msgs
                .get(&id)
                .is_some_and(|m| !matches!(m.state, State::Unpersisted))
        };
        if let (true, Some(next)) = (was_head, next)
            && ready(next)
        {
            self.dispatch(now, next, io);
        }
    }

    /// Shutdown: dead-letters every unresolved message (peers without a store).
    /// A durable peer keeps every unresolved message in the store for its next start and
    /// reports no outcome (its waiters learn that the peer shut down).
    pub(crate) fn abandon_all(&mut self, now: Instant, io: &mut Io) {
        self.keys.clear();
        if io.persist.durable {
            for (id, msg) in self.msgs.drain() {
                io.timers.cancel(TimerKey::Message(id), msg.timer);
            }
            self.in_flight.clear();
            self.services.clear();
            return;
        }
        let ids: Vec<u64> = self.msgs.keys().copied().collect();
        for id in ids {
            self.dead_letter(now, id, DeadLetterReason::ShuttingDown, io);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The per-message record stays within its share of the 256-byte budget per pending
    /// message (docs/benchmarks.md, "Sender memory per pending message").
    #[test]
    fn an_outgoing_record_fits_in_192_bytes() {
        assert!(
            std::mem::size_of::<Outgoing>() <= 192,
            "{} bytes",
            std::mem::size_of::<Outgoing>()
        );
    }
}
