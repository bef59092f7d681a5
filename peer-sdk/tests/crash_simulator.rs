//! Deterministic crash-and-recover simulation of the durable delivery core: one sender and
//! one receiver, both with a simulated store (writes become durable only when a simulated
//! group commit runs), a lossy, duplicating, reordering network, and crashes of either side
//! at random steps (everything not committed is lost; the core restarts from its store).
//! A failing run prints its seed.
//!
//! Checked: every message whose acceptance was reported is handled; nothing that was never
//! durable reaches a handler; a handler runs twice only for a receiver crash that came after
//! the handler finished and before its record was committed (the named window); per key,
//! first handlings follow send order; the sender's store ends empty.

use bytes::Bytes;
use peer_sdk::DeliveryConfig;
use peer_sdk::proto::{
    AppOutcome, Core, Delivery, Event, Frame, InstanceInfo, LeastInFlight, LinkId, LinkKind,
    LoadedMessage, SendRequest, StoreOp, Transmit,
};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SESSION: u64 = 77;
const KEYS: u64 = 4;

/// What a store holds on disk.
#[derive(Default)]
struct Disk {
    outbox: BTreeMap<(String, u64), SendRequest>,
    attempts: HashMap<(String, u64), u32>,
    completed: HashMap<(u64, u64), Option<Bytes>>,
    floors: HashMap<u64, u64>,
    next_id: u64,
}

/// One side: its core, the store operations it polled that are not committed yet, and its
/// disk.
struct Node {
    core: Core,
    incarnation: u32,
    pending: Vec<StoreOp>,
    committed: u64,
    disk: Disk,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    Sender,
    Receiver,
}

enum Item {
    Frame {
        to: Side,
        epoch: u64,
        frame: Frame,
    },
    Settle {
        incarnation: u32,
        delivery: Delivery,
    },
}

fn cfg(seed: u64) -> DeliveryConfig {
    DeliveryConfig {
        rng_seed: Some(seed),
        ack_timeout: Duration::from_millis(50),
        deadline: Duration::from_secs(3600),
        durable: true,
        memory_window: 8,
        ..DeliveryConfig::for_test()
    }
}

fn payload_seq(p: &Bytes) -> u64 {
    std::str::from_utf8(p).unwrap()[1..].parse().unwrap()
}

struct Sim {
    seed: u64,
    rng: StdRng,
    now: Instant,
    inst: Arc<InstanceInfo>,
    sender: Node,
    receiver: Node,
    /// Connection epoch: a new one after either side restarts.
    epoch: u64,
    queue: BTreeMap<(Instant, u64), Item>,
    seq: u64,
    /// Sender: id -> payload of sends whose acceptance was not reported yet (this incarnation).
    unconfirmed: HashMap<u64, Bytes>,
    /// Payloads whose acceptance was reported.
    accepted: HashSet<Bytes>,
    /// Payloads whose store write was committed.
    durable: HashSet<Bytes>,
    handled: HashMap<Bytes, u32>,
    first_order: HashMap<Bytes, Vec<u64>>,
    /// Re-runs allowed by the named window: receiver crashes between a handler finishing
    /// and its record being committed.
    window: HashMap<Bytes, u32>,
    /// Payload of every delivery handed to the receiver's handler, by (session, id).
    payload_of: HashMap<u64, Bytes>,
}

impl Sim {
    fn new(seed: u64) -> Self {
        let t0 = Instant::now();
        let inst = Arc::new(InstanceInfo::new(
            "svc",
            "r1",
            "127.0.0.1:9001".parse().unwrap(),
            None,
        ));
        let node = |seed| Node {
            core: Core::new(cfg(seed), Box::new(LeastInFlight::default())),
            incarnation: 0,
            pending: Vec::new(),
            committed: 0,
            disk: Disk {
                next_id: 1,
                ..Disk::default()
            },
        };
        let mut sim = Self {
            seed,
            rng: StdRng::seed_from_u64(seed),
            now: t0,
            inst,
            sender: node(seed),
            receiver: node(seed + 1),
            epoch: 0,
            queue: BTreeMap::new(),
            seq: 0,
            unconfirmed: HashMap::new(),
            accepted: HashSet::new(),
            durable: HashSet::new(),
            handled: HashMap::new(),
            first_order: HashMap::new(),
            window: HashMap::new(),
            payload_of: HashMap::new(),
        };
        sim.connect();
        sim.sender
            .core
            .handle_instances(t0, "svc", vec![sim.inst.clone()]);
        sim
    }

    /// Opens a new connection epoch between the two current incarnations.
    fn connect(&mut self) {
        let old = LinkId(self.epoch);
        self.epoch += 1;
        let link = LinkId(self.epoch);
        let now = self.now;
        self.sender.core.handle_link_down(now, old, "restart");
        self.receiver.core.handle_link_down(now, old, "restart");
        self.sender
            .core
            .handle_link_up(link, LinkKind::Outbound(self.inst.clone()));
        self.receiver.core.handle_link_up(link, LinkKind::Inbound);
        let hello = Frame::Hello {
            version: 1,
            session: SESSION,
            service: "src".into(),
            instance: "src-0".into(),
        };
        self.receiver.core.handle_frame(now, link, hello).unwrap();
    }

    fn node(&mut self, side: Side) -> &mut Node {
        match side {
            Side::Sender => &mut self.sender,
            Side::Receiver => &mut self.receiver,
        }
    }

    fn schedule(&mut self, delay: Duration, item: Item) {
        self.seq += 1;
        self.queue.insert((self.now + delay, self.seq), item);
    }

    fn net(&mut self, to: Side, frame: Frame) {
        if self.rng.random_bool(0.05) {
            return;
        }
        let copies = if self.rng.random_bool(0.03) { 2 } else { 1 };
        for _ in 0..copies {
            let delay = Duration::from_micros(self.rng.random_range(1..=2_000));
            let epoch = self.epoch;
            let frame = frame.clone();
            self.schedule(delay, Item::Frame { to, epoch, frame });
        }
    }

    fn drain(&mut self, side: Side) {
        let node = self.node(side);
        while let Some(op) = node.core.poll_store() {
            node.pending.push(op);
        }
        while let Some(t) = self.node(side).core.poll_transmit() {
            let (to, frame) = match t {
                Transmit::ToInstance(_, frame) => (Side::Receiver, frame),
                Transmit::ToLink(link, frame) if link == LinkId(self.epoch) => {
                    (Side::Sender, frame)
                }
                Transmit::ToLink(..) => continue,
            };
            self.net(to, frame);
        }
        while let Some(e) = self.node(side).core.poll_event() {
            match e {
                Event::Deliver(d) => {
                    let delay = Duration::from_micros(self.rng.random_range(0..=300));
                    let incarnation = self.receiver.incarnation;
                    self.payload_of.insert(d.token.id, d.payload.clone());
                    self.schedule(
                        delay,
                        Item::Settle {
                            incarnation,
                            delivery: d,
                        },
                    );
                }
                Event::Accepted(id) => {
                    let p = self.unconfirmed.remove(&id).expect("accepted a known send");
                    assert!(
                        self.durable.contains(&p),
                        "seed {}: accepted before durable",
                        self.seed
                    );
                    self.accepted.insert(p);
                }
                Event::Outcome(..) | Event::NeedInstances(_) => {}
            }
        }
        self.node(side).core.take_freed();
    }

    /// Group commit of every pending store operation of `side`, then the answers to reads.
    fn commit(&mut self, side: Side) {
        let now = self.now;
        let ops = std::mem::take(&mut self.node(side).pending);
        let mut answers = Vec::new();
        for op in ops {
            match op {
                StoreOp::Put { id, req } => {
                    self.durable.insert(req.payload.clone());
                    let disk = &mut self.node(side).disk;
                    disk.next_id = disk.next_id.max(id + 1);
                    disk.outbox.insert((req.service.clone(), id), req);
                    self.node(side).committed += 1;
                }
                StoreOp::Attempted {
                    service,
                    id,
                    attempts,
                } => {
                    let disk = &mut self.node(side).disk;
                    if disk.outbox.contains_key(&(service.clone(), id)) {
                        disk.attempts.insert((service, id), attempts);
                    }
                    self.node(side).committed += 1;
                }
                StoreOp::Resolve { service, id, .. } => {
                    self.node(side).disk.attempts.remove(&(service.clone(), id));
                    self.node(side).disk.outbox.remove(&(service, id));
                    self.node(side).committed += 1;
                }
                StoreOp::Complete { session, id, reply } => {
                    let disk = &mut self.node(side).disk;
                    disk.completed.insert((session, id), reply);
                    let floor = disk.floors.entry(session).or_default();
                    *floor = (*floor).max(id);
                    self.node(side).committed += 1;
                }
                read => answers.push(read),
            }
        }
        let committed = self.node(side).committed;
        self.node(side).core.handle_persisted(now, committed);
        for read in answers {
            self.answer(side, read);
        }
        self.drain(side);
    }

    fn answer(&mut self, side: Side, read: StoreOp) {
        let now = self.now;
        let node = self.node(side);
        match read {
            StoreOp::Load {
                service,
                after,
                max,
            } => {
                let from = (service.clone(), after + 1);
                let to = (service.clone(), u64::MAX);
                let page: Vec<LoadedMessage> = node
                    .disk
                    .outbox
                    .range(from..=to)
                    .take(max)
                    .map(|(k, r)| LoadedMessage {
                        id: k.1,
                        req: r.clone(),
                        attempts: node.disk.attempts.get(k).copied().unwrap_or(0),
                    })
                    .collect();
                let exhausted = page.len() < max;
                node.core.handle_loaded(now, &service, page, exhausted);
            }
            StoreOp::Lookup { session, id } => {
                let found = node.disk.completed.get(&(session, id)).cloned();
                node.core.handle_lookup(now, session, id, found);
            }
            _ => {}
        }
    }

    fn crash(&mut self, side: Side) {
        let now = self.now;
        if side == Side::Receiver {
            // Handlers that finished but whose record was not committed: the named window.
            for op in &self.receiver.pending {
                if let StoreOp::Complete { id, .. } = op
                    && let Some(p) = self.payload_of.get(id)
                {
                    *self.window.entry(p.clone()).or_default() += 1;
                }
            }
        } else {
            self.unconfirmed.clear();
        }
        let seed = self.rng.random();
        let node = self.node(side);
        node.pending.clear();
        node.committed = 0;
        node.incarnation += 1;
        node.core = Core::new(cfg(seed), Box::new(LeastInFlight::default()));
        let services: Vec<String> = {
            let mut s: Vec<String> = node.disk.outbox.keys().map(|(s, _)| s.clone()).collect();
            s.dedup();
            s
        };
        let floors: Vec<(u64, u64)> = node.disk.floors.iter().map(|(k, v)| (*k, *v)).collect();
        let next_id = node.disk.next_id;
        node.core.handle_restore(next_id, services, floors);
        self.connect();
        self.sender
            .core
            .handle_instances(now, "svc", vec![self.inst.clone()]);
        self.drain(Side::Sender);
        self.drain(Side::Receiver);
    }

    fn settle(&mut self, incarnation: u32, d: Delivery) {
        if incarnation != self.receiver.incarnation {
            return; // the handler died with its process
        }
        let n = self.handled.entry(d.payload.clone()).or_default();
        *n += 1;
        if *n == 1 {
            let key = d.key.clone().expect("every message has a key");
            self.first_order
                .entry(key)
                .or_default()
                .push(payload_seq(&d.payload));
        }
        let now = self.now;
        self.receiver
            .core
            .handle_app_outcome(now, d.token, AppOutcome::Ack);
    }

    fn step(&mut self) -> bool {
        let next_item = self.queue.keys().next().map(|k| k.0);
        let timers = [
            self.sender.core.poll_timeout(),
            self.receiver.core.poll_timeout(),
        ];
        let next_timer = timers.into_iter().flatten().min();
        let Some(at) = [next_item, next_timer].into_iter().flatten().min() else {
            return false;
        };
        self.now = self.now.max(at);
        if next_item == Some(at) {
            let (_, item) = self.queue.pop_first().expect("an item is due");
            match item {
                Item::Frame { to, epoch, frame } if epoch == self.epoch => {
                    let now = self.now;
                    let _ = self.node(to).core.handle_frame(now, LinkId(epoch), frame);
                }
                Item::Frame { .. } => {}
                Item::Settle {
                    incarnation,
                    delivery,
                } => self.settle(incarnation, delivery),
            }
        } else {
            self.sender.core.handle_timeout(at);
            self.receiver.core.handle_timeout(at);
        }
        self.drain(Side::Sender);
        self.drain(Side::Receiver);
        true
    }

    fn send(&mut self, n: u64) {
        let payload = Bytes::from(format!("m{n}"));
        let req = SendRequest {
            service: "svc".into(),
            target: None,
            key: Some(Bytes::from(format!("k{}", n % KEYS))),
            payload: payload.clone(),
            request: false,
            deadline: self.now + Duration::from_secs(3600),
            no_responders: false,
            ack_timeout: None,
            max_attempts: None,
        };
        let id = self.sender.core.handle_send(self.now, req);
        self.unconfirmed.insert(id, payload);
        self.drain(Side::Sender);
    }

    /// One tick of the world: maybe a crash, maybe a group commit on each side, one step.
    fn tick(&mut self, crashes: bool) {
        if crashes && self.rng.random_bool(0.004) {
            let side = if self.rng.random_bool(0.5) {
                Side::Sender
            } else {
                Side::Receiver
            };
            self.crash(side);
        }
        for side in [Side::Sender, Side::Receiver] {
            if self.rng.random_bool(0.3) {
                self.commit(side);
            }
        }
        if !self.step() {
            // Nothing scheduled: only a commit can make progress.
            self.commit(Side::Sender);
            self.commit(Side::Receiver);
        }
    }

    fn quiet(&self) -> bool {
        self.sender.disk.outbox.is_empty()
            && self.sender.pending.is_empty()
            && self.receiver.pending.is_empty()
            && self.unconfirmed.is_empty()
            && self.sender.core.outgoing() == 0
            && self.receiver.core.waiting_for_store() == 0
    }
}

fn run(seed: u64, messages: u64) -> Sim {
    let mut sim = Sim::new(seed);
    for n in 0..messages {
        sim.send(n);
        for _ in 0..4 {
            sim.tick(true);
        }
    }
    for _ in 0..2_000 {
        sim.tick(true);
    }
    let mut steps = 0;
    while !sim.quiet() {
        sim.tick(false);
        steps += 1;
        assert!(steps < 2_000_000, "seed {seed}: did not settle");
    }
    sim
}

fn check(sim: &Sim) {
    let seed = sim.seed;
    for p in &sim.accepted {
        assert!(
            sim.handled.contains_key(p),
            "seed {seed}: accepted {p:?} was never handled"
        );
    }
    for (p, n) in &sim.handled {
        assert!(
            sim.durable.contains(p),
            "seed {seed}: {p:?} handled but never durable"
        );
        let allowed = 1 + sim.window.get(p).copied().unwrap_or(0);
        assert!(
            *n <= allowed,
            "seed {seed}: {p:?} handled {n} times, {allowed} allowed"
        );
    }
    for (key, order) in &sim.first_order {
        assert!(
            order.is_sorted(),
            "seed {seed}: key {key:?} out of order: {order:?}"
        );
    }
}

#[test]
fn crashes_at_any_step_lose_no_accepted_message_and_rerun_only_in_the_named_window() {
    let mut crashes_seen = 0;
    for seed in 0..12 {
        let sim = run(seed, 300);
        check(&sim);
        crashes_seen += sim.sender.incarnation + sim.receiver.incarnation;
        assert!(!sim.accepted.is_empty(), "seed {seed}: nothing accepted");
    }
    assert!(
        crashes_seen >= 12,
        "the scenario must actually crash: {crashes_seen}"
    );
}
