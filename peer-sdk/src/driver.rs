//! The one tokio task that owns the delivery [`Core`] and the link table.
//!
//! Inputs arrive on one channel ([`Input`]): application sends and settlements, decoded
//! frames and link events from the link tasks, instance lists from discovery. After each
//! batch of inputs (or a timer) the driver drains the core's outputs in a fixed order:
//! transmits (encoded and batched per link, dialing instances that have no link), then
//! events (deliveries to the application, outcomes to waiting senders, discovery requests).

use crate::input::{Input, LinkTx, NeedInstances};
use crate::link::{self, LinkCtx};
use crate::proto::hash::FastMap as HashMap;
use crate::proto::{Cause, Core, Event, Frame, InstanceInfo, LinkId, LinkKind, Outcome, Transmit};
use crate::quota::Quota;
use crate::received::{DeadLetterQueue, Message};
use crate::store::{Committer, StoreReport};
use bytes::{Bytes, BytesMut};
use quinn::VarInt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

const INPUT_BATCH: usize = 512;
const WRITER_FLUSH_GRACE: Duration = Duration::from_millis(300);
const WAIT_IDLE_LIMIT: Duration = Duration::from_secs(1);

enum Outbound {
    Dialing(BytesMut),
    Up(LinkId),
}

/// Static parts of the driver.
pub(crate) struct DriverParts {
    pub(crate) core: Core,
    pub(crate) endpoint: quinn::Endpoint,
    pub(crate) client: quinn::ClientConfig,
    pub(crate) ctx: LinkCtx,
    pub(crate) deliveries: mpsc::UnboundedSender<Message>,
    pub(crate) dead_letters: Arc<DeadLetterQueue>,
    /// Durable peers: the committer executing the core's store operations, and the quota.
    pub(crate) store: Option<(Committer, Arc<Quota>)>,
    pub(crate) hello: Bytes,
    pub(crate) connect_timeout: Duration,
    pub(crate) drain_timeout: Duration,
    pub(crate) on_need: NeedInstances,
}

/// A sender waiting for its message's acceptance (durable peers) and outcome.
struct Waiter {
    accepted: Option<oneshot::Sender<()>>,
    done: oneshot::Sender<Outcome>,
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// The driver task's state: the core and parts, the link table, dials in progress, and
/// senders waiting for their outcome.
pub(crate) struct Driver {
    p: DriverParts,
    links: HashMap<LinkId, LinkTx>,
    outbound: HashMap<Arc<InstanceInfo>, Outbound>,
    outbound_links: HashMap<LinkId, Arc<InstanceInfo>>,
    waiting: HashMap<u64, Waiter>,
    /// Size of `waiting` after the last pruning of abandoned waiters.
    waiting_pruned: usize,
    draining: Option<Instant>,
    shutdown_waiters: Vec<oneshot::Sender<()>>,
    out_bufs: HashMap<LinkId, BytesMut>,
    departed: Vec<Arc<InstanceInfo>>,
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

impl Driver {
    pub(crate) fn new(p: DriverParts) -> Self {
        Self {
            p,
            links: HashMap::default(),
            outbound: HashMap::default(),
            outbound_links: HashMap::default(),
            waiting: HashMap::default(),
            waiting_pruned: 0,
            draining: None,
            shutdown_waiters: Vec::new(),
            out_bufs: HashMap::default(),
            departed: Vec::new(),
        }
    }

    /// Runs until shutdown completes or the peer is dropped.
    pub(crate) async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Input>) {
        let mut batch = Vec::with_capacity(INPUT_BATCH);
        let cancel = self.p.ctx.cancel.clone();
        // One cancellation future and one timer for the whole loop: re-creating them on
        // every iteration registers a waiter and a timer entry per input batch.
        let cancelled = cancel.cancelled();
        tokio::pin!(cancelled);
        let sleep = tokio::time::sleep(Duration::from_secs(3600));
        tokio::pin!(sleep);
        let mut armed: Option<Instant> = None;
        // Outputs of the start-up inputs (a durable peer's first outbox loads).
        self.drain_outputs();
        loop {
            let wake = self.next_wake();
            if wake != armed {
                if let Some(at) = wake {
                    sleep.as_mut().reset(at.into());
                }
                armed = wake;
            }
            tokio::select! {
                biased;
                _ = &mut cancelled => break,
                n = rx.recv_many(&mut batch, INPUT_BATCH) => {
                    if n == 0 {
                        break;
                    }
                    let now = now();
                    for input in batch.drain(..) {
                        self.handle(now, input);
                    }
                }
                _ = &mut sleep, if armed.is_some() => {
                    armed = None;
                    self.p.core.handle_timeout(now());
                }
            }
            self.drain_outputs();
            if !self.departed.is_empty() {
                self.close_idle_departed();
            }
            if self.draining.is_some() && self.drained(now()) {
                break;
            }
        }
        self.finish().await;
    }

    /// The earliest of the core's next timer and the drain deadline.
    fn next_wake(&self) -> Option<Instant> {
        match (self.p.core.poll_timeout(), self.draining) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn drained(&self, now: Instant) -> bool {
        let Some(deadline) = self.draining else {
            return false;
        };
        now >= deadline || (self.p.core.outgoing() == 0 && self.p.core.pending_deliveries() == 0)
    }

    fn handle(&mut self, now: Instant, input: Input) {
        match input {
            Input::Send {
                req,
                done,
                permit,
                accepted,
            } => {
                if self.draining.is_none() {
                    let id = self.p.core.handle_send(now, req);
                    let waiter = Waiter {
                        accepted,
                        done,
                        _permit: permit,
                    };
                    self.waiting.insert(id, waiter);
                    self.prune_waiters();
                }
            }
            Input::Store(report) => self.store_report(now, report),
            Input::Settle { token, outcome } => self.p.core.handle_app_outcome(now, token, outcome),
            Input::Progress { token } => self.p.core.handle_app_progress(token),
            Input::LookupFailed { service, cause } => {
                self.p.core.handle_lookup_failed(&service, cause)
            }
            Input::Frames { link, frames } => self.frames(now, link, frames),
            Input::LinkUp { link, kind, tx } => {
                self.p.core.handle_link_up(link, kind);
                self.links.insert(link, tx);
            }
            Input::LinkDown { link, reason } => self.link_down(now, link, &reason),
            Input::Dialed { inst, result } => self.dialed(now, inst, result),
            Input::Instances { service, list } => {
                self.note_departed(&service, &list);
                self.p.core.handle_instances(now, &service, list);
            }
            Input::KnownInstances { service, done } => {
                let _ = done.send(self.p.core.instances(&service));
            }
            Input::Shutdown { done } => {
                self.shutdown_waiters.push(done);
                self.draining.get_or_insert(now + self.p.drain_timeout);
            }
        }
    }

    /// Drops waiters whose [`crate::Pending`] was dropped after acceptance: a durable peer
    /// may hold far more accepted messages (on disk) than the window, and a fire-and-forget
    /// sender must not cost memory per message. Amortised: runs when the table doubled.
    fn prune_waiters(&mut self) {
        if self.waiting.len() < 2 * self.waiting_pruned.max(1024) {
            return;
        }
        self.waiting
            .retain(|_, w| w.accepted.is_some() || !w.done.is_closed());
        self.waiting_pruned = self.waiting.len();
    }

    fn store_report(&mut self, now: Instant, report: StoreReport) {
        match report {
            StoreReport::Persisted(seq) => self.p.core.handle_persisted(now, seq),
            StoreReport::Loaded {
                service,
                messages,
                exhausted,
            } => self
                .p
                .core
                .handle_loaded(now, &service, messages, exhausted),
            StoreReport::LookedUp { session, id, found } => {
                self.p.core.handle_lookup(now, session, id, found)
            }
            StoreReport::Failed(e) => {
                // A peer that cannot persist cannot keep its promises: stop. What was
                // persisted resumes at the next start.
                tracing::error!("stopping the peer: its store failed: {e}");
                self.p.ctx.cancel.cancel();
            }
        }
    }

    fn frames(&mut self, now: Instant, link: LinkId, frames: Vec<Frame>) {
        for frame in frames {
            if let Err(e) = self.p.core.handle_frame(now, link, frame) {
                tracing::warn!(?link, "closing link after protocol error: {e}");
                if let Some(l) = self.links.get(&link) {
                    link::close_on_error(&l.conn, &e);
                }
                self.link_down(now, link, &e.to_string());
                return;
            }
        }
    }

    fn link_down(&mut self, now: Instant, link: LinkId, reason: &str) {
        self.links.remove(&link);
        if let Some(inst) = self.outbound_links.remove(&link) {
            tracing::debug!(instance = %inst.instance, "outbound link down: {reason}");
            if matches!(self.outbound.get(&inst), Some(Outbound::Up(l)) if *l == link) {
                self.outbound.remove(&inst);
            }
        }
        self.p.core.handle_link_down(now, link, reason);
    }

    /// Remembers our connections to instances of `service` that left the directory: they
    /// are closed once nothing is in flight to them (keep-alive would otherwise hold them
    /// open forever), so a gracefully leaving instance can still ack what it is handling.
    fn note_departed(&mut self, service: &str, list: &[Arc<InstanceInfo>]) {
        self.departed
            .retain(|inst| inst.service != service || !list.contains(inst));
        for inst in self.outbound_links.values() {
            if inst.service == service && !list.contains(inst) && !self.departed.contains(inst) {
                self.departed.push(inst.clone());
            }
        }
    }

    fn close_idle_departed(&mut self) {
        let (core, outbound, links) = (&self.p.core, &self.outbound, &self.links);
        self.departed.retain(|inst| {
            if core.in_flight_to(inst) > 0 {
                return true;
            }
            if let Some(Outbound::Up(link)) = outbound.get(inst)
                && let Some(l) = links.get(link)
            {
                tracing::debug!(instance = %inst.instance, "closing connection to a departed instance");
                l.conn.close(VarInt::from(0u32), b"instance left the directory");
            }
            false
        });
    }

    fn dialed(
        &mut self,
        now: Instant,
        inst: Arc<InstanceInfo>,
        result: Result<(LinkId, LinkTx), Cause>,
    ) {
        let queued = match self.outbound.remove(&inst) {
            Some(Outbound::Dialing(buf)) => buf,
            _ => BytesMut::new(),
        };
        match result {
            Ok((link, tx)) => {
                if !queued.is_empty() {
                    let _ = tx.tx.send(queued.freeze());
                }
                self.outbound.insert(inst.clone(), Outbound::Up(link));
                self.outbound_links.insert(link, inst.clone());
                self.p.core.handle_link_up(link, LinkKind::Outbound(inst));
                self.links.insert(link, tx);
            }
            Err(cause) => {
                tracing::warn!(instance = %inst.instance, addr = %inst.addr, "cannot reach instance: {cause}");
                metrics::counter!(crate::metrics::DIAL_FAILURES_TOTAL, "cause" => cause.code())
                    .increment(1);
                self.p.core.handle_unreachable(now, &inst, cause);
            }
        }
    }

    fn transmit(&mut self, t: Transmit) {
        let (link, frame) = match t {
            Transmit::ToLink(link, frame) => (link, frame),
            Transmit::ToInstance(inst, frame) => match self.outbound.get_mut(&inst) {
                Some(Outbound::Up(link)) => (*link, frame),
                Some(Outbound::Dialing(buf)) => return frame.encode(buf),
                None => {
                    let mut buf = BytesMut::new();
                    frame.encode(&mut buf);
                    self.outbound.insert(inst.clone(), Outbound::Dialing(buf));
                    let p = &self.p;
                    link::spawn_dial(
                        &p.ctx,
                        p.endpoint.clone(),
                        p.client.clone(),
                        inst,
                        p.hello.clone(),
                        p.connect_timeout,
                    );
                    return;
                }
            },
        };
        if self.links.contains_key(&link) {
            frame.encode(self.out_bufs.entry(link).or_default());
        }
    }

    fn drain_outputs(&mut self) {
        if let Some((committer, _)) = &self.p.store {
            while let Some(op) = self.p.core.poll_store() {
                committer.submit(op);
            }
        }
        while let Some(t) = self.p.core.poll_transmit() {
            self.transmit(t);
        }
        for (link, buf) in self.out_bufs.drain() {
            if let Some(l) = self.links.get(&link) {
                let _ = l.tx.send(buf.freeze());
            }
        }
        while let Some(event) = self.p.core.poll_event() {
            match event {
                Event::Deliver(d) => {
                    let _ = self
                        .p
                        .deliveries
                        .send(Message::new(d, self.p.ctx.inputs.clone()));
                }
                Event::Outcome(id, outcome) => self.outcome(id, outcome),
                Event::Accepted(id) => {
                    if let Some(accepted) =
                        self.waiting.get_mut(&id).and_then(|w| w.accepted.take())
                    {
                        let _ = accepted.send(());
                    }
                }
                Event::NeedInstances(service) => (self.p.on_need)(service),
            }
        }
        if let Some((_, quota)) = &self.p.store {
            quota.give_back(self.p.core.take_freed());
        }
    }

    fn outcome(&mut self, id: u64, outcome: Outcome) {
        if let Outcome::DeadLettered(dl) = &outcome {
            metrics::counter!(crate::metrics::DEAD_LETTERS_TOTAL).increment(1);
            self.p.dead_letters.push((**dl).clone());
        }
        if let Some(w) = self.waiting.remove(&id) {
            if let Some(accepted) = w.accepted {
                let _ = accepted.send(());
            }
            let _ = w.done.send(outcome);
        }
    }

    async fn finish(mut self) {
        self.p.core.handle_shutdown(now());
        self.drain_outputs();
        self.p.dead_letters.close();
        if let Some((committer, quota)) = self.p.store.take() {
            quota.close();
            // Commits what was submitted (the last records and deletions) before the store
            // is released.
            let _ = tokio::task::spawn_blocking(move || committer.stop()).await;
        }
        self.links.clear();
        self.outbound.clear();
        self.p.ctx.cancel.cancel();
        self.p.ctx.writers.close();
        let _ = tokio::time::timeout(WRITER_FLUSH_GRACE, self.p.ctx.writers.wait()).await;
        self.p.endpoint.close(VarInt::from(0u32), b"shutdown");
        let _ = tokio::time::timeout(WAIT_IDLE_LIMIT, self.p.endpoint.wait_idle()).await;
        self.p.ctx.tracker.close();
        for done in self.shutdown_waiters.drain(..) {
            let _ = done.send(());
        }
    }
}
