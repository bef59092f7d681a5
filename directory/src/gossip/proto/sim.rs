//! A deterministic simulator of many [`GossipCore`]s on a virtual clock.
//!
//! Everything random (loss, latency, the cores' own choices) comes from one seed, so a run
//! replays exactly: tests print the seed when they fail, and `GOSSIP_SIM_SEED` (read by
//! the tests) reruns one. Datagrams are lost with probability `loss` and delayed uniformly
//! in `[min_latency, max_latency]` (which also reorders them); anti-entropy messages model a
//! stream: never lost, but cut by partitions and crashes. Nodes can crash (state lost),
//! restart empty under a new identity, and be split into partitions that later heal.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{RngExt as _, SeedableRng};

use super::config::GossipConfig;
use super::core::GossipCore;
use super::events::{GossipEvent, Transmit};
use super::identity::NodeIdentity;
use super::wire::{EntryKey, LiveRecord, SyncMsg, WireEntry, WireState};
use crate::gossip::crypto::SEALED_OVERHEAD;
use crate::registry::{ReplicationRules, TombstoneReason, Version, supersedes};

/// Parameters of a simulation.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Number of nodes.
    pub nodes: usize,
    /// The seed of everything random.
    pub seed: u64,
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// Minimum one-way latency.
    pub min_latency: Duration,
    /// Maximum one-way latency (uniform in between: reordering).
    pub max_latency: Duration,
    /// How many of the first nodes serve as seeds for everyone.
    pub seeds: usize,
    /// Gossip settings of every node (`rng_seed` is derived per node).
    pub gossip: GossipConfig,
    /// Replication rules of every node.
    pub rules: ReplicationRules,
}

impl SimConfig {
    /// `nodes` nodes on a LAN (0.2-2 ms one way), no loss, default gossip settings.
    pub fn new(nodes: usize, seed: u64) -> Self {
        Self {
            nodes,
            seed,
            loss: 0.0,
            min_latency: Duration::from_micros(200),
            max_latency: Duration::from_millis(2),
            seeds: 3,
            gossip: GossipConfig::lan(),
            rules: ReplicationRules::default(),
        }
    }
}

/// A membership event as observed by one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimEvent {
    /// Virtual time since the start.
    pub at: Duration,
    /// The observing node.
    pub node: usize,
    /// What it saw.
    pub event: GossipEvent,
}

/// One simulated node: its core (`None` while crashed) and the store it applies to.
pub struct SimNode {
    core: Option<GossipCore>,
    store: BTreeMap<EntryKey, WireEntry>,
    seen: HashMap<(EntryKey, Version), Instant>,
    generation: u64,
}

enum Delivery {
    Datagram {
        to: usize,
        payload: Vec<u8>,
    },
    Sync {
        from: usize,
        to: usize,
        msg: SyncMsg,
    },
}

/// The simulated cluster.
pub struct Sim {
    cfg: SimConfig,
    base: Instant,
    now: Instant,
    rng: SmallRng,
    nodes: Vec<SimNode>,
    by_addr: HashMap<SocketAddr, usize>,
    deliveries: BinaryHeap<Reverse<(Instant, u64)>>,
    pending: HashMap<u64, Delivery>,
    wakeups: BinaryHeap<Reverse<(Instant, usize)>>,
    seq: u64,
    groups: Option<Vec<u8>>,
    log: Vec<SimEvent>,
    hlc: u64,
    bytes_sent: Vec<u64>,
}

/// Unix milliseconds of the simulated wall clock at the start of a run.
const SIM_WALL_EPOCH_MS: u64 = 1_000_000;

fn live_state(i: usize, ttl: Duration) -> WireState {
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    WireState::Live(LiveRecord {
        address: format!("10.9.0.{}:7000", i % 250),
        tags: vec!["v1".into()],
        meta: vec![("zone".into(), "a".into())],
        ttl_ms,
        fingerprint: None,
        owner: format!("node-{i}"),
        registered_at_ms: 0,
        lease_remaining_ms: ttl_ms,
        subscriptions: Vec::new(),
    })
}

/// The gossip address of simulated node `i`.
pub fn sim_addr(i: usize) -> SocketAddr {
    let ip = Ipv4Addr::new(10, (i / 250) as u8, (i % 250) as u8 + 1, 1);
    SocketAddr::new(IpAddr::V4(ip), 7701)
}

impl Sim {
    /// Creates and starts every node; they join through the first `cfg.seeds` nodes.
    pub fn new(cfg: SimConfig) -> Self {
        let base = Instant::now();
        let mut sim = Self {
            rng: SmallRng::seed_from_u64(cfg.seed),
            base,
            now: base,
            nodes: Vec::new(),
            by_addr: HashMap::new(),
            deliveries: BinaryHeap::new(),
            pending: HashMap::new(),
            wakeups: BinaryHeap::new(),
            seq: 0,
            groups: None,
            log: Vec::new(),
            hlc: 0,
            bytes_sent: vec![0; cfg.nodes],
            cfg,
        };
        for i in 0..sim.cfg.nodes {
            sim.by_addr.insert(sim_addr(i), i);
            sim.nodes.push(SimNode {
                core: None,
                store: BTreeMap::new(),
                seen: HashMap::new(),
                generation: 0,
            });
            sim.start_node(i);
        }
        sim
    }

    /// The seed of this run.
    pub fn seed(&self) -> u64 {
        self.cfg.seed
    }

    /// Virtual time elapsed since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.base
    }

    /// The current virtual instant.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Number of nodes (running or crashed).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the simulation has no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Sets the datagram loss probability from now on.
    pub fn set_loss(&mut self, loss: f64) {
        self.cfg.loss = loss;
    }

    /// Whether node `i` is running.
    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].core.is_some()
    }

    /// The core of node `i`, if running.
    pub fn core(&self, i: usize) -> Option<&GossipCore> {
        self.nodes[i].core.as_ref()
    }

    /// The current identity of node `i`, if running.
    pub fn identity(&self, i: usize) -> Option<NodeIdentity> {
        self.core(i).map(|c| c.identity().clone())
    }

    /// What node `i`'s store holds for `key`.
    pub fn entry(&self, i: usize, key: &EntryKey) -> Option<&WireEntry> {
        self.nodes[i].store.get(key)
    }

    /// The store of node `i` as `(key, version)` pairs.
    pub fn store_versions(&self, i: usize) -> Vec<(EntryKey, Version)> {
        self.nodes[i]
            .store
            .iter()
            .map(|(k, e)| (k.clone(), e.version))
            .collect()
    }

    /// When node `i` first held `version` of `key`.
    pub fn seen_at(&self, i: usize, key: &EntryKey, version: Version) -> Option<Duration> {
        self.nodes[i]
            .seen
            .get(&(key.clone(), version))
            .map(|t| *t - self.base)
    }

    /// Every membership event so far.
    pub fn log(&self) -> &[SimEvent] {
        &self.log
    }

    /// Bytes each node has sent (datagrams with envelope, plus sync frames).
    pub fn bytes_sent(&self) -> &[u64] {
        &self.bytes_sent
    }

    /// Registers `service/instance` on node `i` with a lease of `ttl`.
    pub fn register(
        &mut self,
        i: usize,
        service: &str,
        instance: &str,
        ttl: Duration,
    ) -> (EntryKey, Version) {
        self.write(i, EntryKey::new(service, instance), live_state(i, ttl))
    }

    /// Like [`Self::register`], from a node whose wall clock runs `ahead` of the simulated
    /// time (the other nodes' clocks do not move).
    pub fn register_with_clock_ahead(
        &mut self,
        i: usize,
        service: &str,
        instance: &str,
        ttl: Duration,
        ahead: Duration,
    ) -> (EntryKey, Version) {
        let ms = self.wall_millis() + u64::try_from(ahead.as_millis()).unwrap_or(u64::MAX);
        let key = EntryKey::new(service, instance);
        self.write_version(i, key, live_state(i, ttl), ms << 16)
    }

    /// Deregisters `key` on node `i` (writes a tombstone).
    pub fn deregister(&mut self, i: usize, key: &EntryKey) -> (EntryKey, Version) {
        let state = WireState::Tombstone {
            reason: TombstoneReason::Deregistered,
            age_ms: 0,
        };
        self.write(i, key.clone(), state)
    }

    /// The simulated wall clock (Unix ms) every node reads, unless skewed.
    fn wall_millis(&self) -> u64 {
        u64::try_from(self.elapsed().as_millis()).unwrap_or(0) + SIM_WALL_EPOCH_MS
    }

    fn write(&mut self, i: usize, key: EntryKey, state: WireState) -> (EntryKey, Version) {
        self.hlc = (self.hlc + 1).max(self.wall_millis() << 16);
        self.write_version(i, key, state, self.hlc)
    }

    fn write_version(
        &mut self,
        i: usize,
        key: EntryKey,
        state: WireState,
        hlc: u64,
    ) -> (EntryKey, Version) {
        let version = Version {
            hlc,
            node: i as u64 + 1,
        };
        let entry = WireEntry {
            key: key.clone(),
            version,
            state,
        };
        let now = self.now;
        let node = &mut self.nodes[i];
        node.store.insert(key.clone(), entry.clone());
        node.seen.entry((key.clone(), version)).or_insert(now);
        if let Some(core) = node.core.as_mut() {
            core.handle_local_write(now, entry);
        }
        self.drain(i);
        (key, version)
    }

    /// Crashes node `i`: its state is lost and messages to it vanish.
    pub fn crash(&mut self, i: usize) {
        self.nodes[i].core = None;
        self.nodes[i].store.clear();
        self.nodes[i].seen.clear();
    }

    /// Node `i` leaves gracefully, then stops.
    pub fn leave(&mut self, i: usize) {
        let now = self.now;
        if let Some(core) = self.nodes[i].core.as_mut() {
            core.leave(now);
        }
        self.drain(i);
        self.nodes[i].core = None;
    }

    /// Restarts node `i` empty, with a new identity generation.
    pub fn restart(&mut self, i: usize) {
        self.crash(i);
        self.start_node(i);
    }

    /// Splits the network: nodes in different groups cannot exchange anything.
    pub fn partition(&mut self, group_of: impl Fn(usize) -> u8) {
        self.groups = Some((0..self.nodes.len()).map(group_of).collect());
    }

    /// Heals any partition.
    pub fn heal(&mut self) {
        self.groups = None;
    }

    /// Restarts node `i` under a new identity generation with what its store held, as a
    /// node with `--data-dir` does: every entry is handed to the new core as a local write
    /// (with its original version) before anything else reaches it.
    pub fn restart_keeping_state(&mut self, i: usize) {
        let store = std::mem::take(&mut self.nodes[i].store);
        self.crash(i);
        self.start_node(i);
        let now = self.now;
        for (key, entry) in store {
            self.nodes[i].store.insert(key, entry.clone());
            if let Some(core) = self.nodes[i].core.as_mut() {
                core.handle_local_write(now, entry);
            }
        }
        self.drain(i);
    }

    fn start_node(&mut self, i: usize) {
        // Like a real node's (wall-clock milliseconds at start), on the scale of the
        // simulated versions' clock (see `write`), and growing across restarts.
        let generation = self.wall_millis().max(self.nodes[i].generation + 1);
        self.nodes[i].generation = generation;
        let mut gossip = self.cfg.gossip.clone();
        gossip.rng_seed =
            self.cfg.seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ generation;
        let identity = NodeIdentity::new(sim_addr(i), format!("node-{i}"), generation);
        // The simulated wall clock is the one `write` stamps versions with.
        let wall = self.wall_millis();
        let Ok(mut core) = GossipCore::new(identity, gossip, self.cfg.rules, self.now, wall) else {
            panic!("invalid gossip configuration in simulation");
        };
        let seeds = (0..self.cfg.seeds.min(self.nodes.len()))
            .map(sim_addr)
            .collect();
        core.set_seeds(seeds);
        self.nodes[i].core = Some(core);
        self.drain(i);
    }

    fn connected(&self, a: usize, b: usize) -> bool {
        self.groups.as_ref().is_none_or(|g| g[a] == g[b])
    }

    fn schedule(&mut self, delivery: Delivery) {
        let span = self.cfg.max_latency.saturating_sub(self.cfg.min_latency);
        let jitter = span.mul_f64(self.rng.random_range(0.0..1.0));
        let at = self.now + self.cfg.min_latency + jitter;
        self.seq += 1;
        self.deliveries.push(Reverse((at, self.seq)));
        self.pending.insert(self.seq, delivery);
    }

    fn drain(&mut self, i: usize) {
        let now = self.now;
        let Some(core) = self.nodes[i].core.as_mut() else {
            return;
        };
        let mut transmits = Vec::new();
        while let Some(t) = core.poll_transmit() {
            transmits.push(t);
        }
        let mut applies = Vec::new();
        while let Some(e) = core.poll_apply() {
            applies.push(e);
        }
        let at = now - self.base;
        while let Some(event) = core.poll_event() {
            self.log.push(SimEvent { at, node: i, event });
        }
        if let Some(deadline) = core.poll_timeout() {
            self.wakeups.push(Reverse((deadline, i)));
        }
        let node = &mut self.nodes[i];
        for entry in applies {
            if supersedes(entry.version, node.store.get(&entry.key).map(|e| e.version)) {
                node.seen
                    .entry((entry.key.clone(), entry.version))
                    .or_insert(now);
                node.store.insert(entry.key.clone(), entry);
            }
        }
        for t in transmits {
            self.send(i, t);
        }
    }

    fn send(&mut self, from: usize, transmit: Transmit) {
        match transmit {
            Transmit::Datagram { to, payload } => {
                self.bytes_sent[from] += (payload.len() + SEALED_OVERHEAD) as u64;
                let Some(&to) = self.by_addr.get(&to) else {
                    return;
                };
                if self.rng.random_bool(self.cfg.loss.clamp(0.0, 1.0)) || !self.connected(from, to)
                {
                    return;
                }
                self.schedule(Delivery::Datagram { to, payload });
            }
            Transmit::Sync { to, msg } => {
                let Some(&to) = self.by_addr.get(&to) else {
                    return;
                };
                self.send_sync(from, to, msg);
            }
        }
    }

    fn send_sync(&mut self, from: usize, to: usize, msg: SyncMsg) {
        let size = postcard::experimental::serialized_size(&msg).unwrap_or(0);
        self.bytes_sent[from] += (size + SEALED_OVERHEAD + 4) as u64;
        if self.connected(from, to) {
            self.schedule(Delivery::Sync { from, to, msg });
        }
    }

    fn deliver(&mut self, delivery: Delivery) {
        let now = self.now;
        match delivery {
            Delivery::Datagram { to, payload } => {
                if let Some(core) = self.nodes[to].core.as_mut() {
                    let _ = core.handle_datagram(now, &payload);
                    self.drain(to);
                }
            }
            Delivery::Sync { from, to, msg } => {
                if !self.connected(from, to) {
                    return;
                }
                let Some(core) = self.nodes[to].core.as_mut() else {
                    return;
                };
                let reply = core.handle_sync(now, msg);
                self.drain(to);
                if let Some(reply) = reply
                    && self.nodes[from].core.is_some()
                {
                    self.send_sync(to, from, reply);
                }
            }
        }
    }

    /// Processes the next event; returns `false` when nothing is left before `limit`.
    fn step(&mut self, limit: Instant) -> bool {
        let next_delivery = self.deliveries.peek().map(|Reverse((t, _))| *t);
        let next_wakeup = self.wakeups.peek().map(|Reverse((t, _))| *t);
        let use_delivery = match (next_delivery, next_wakeup) {
            (Some(d), Some(w)) => d <= w,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return false,
        };
        if use_delivery {
            let Some(Reverse((at, seq))) = self.deliveries.peek().copied() else {
                return false;
            };
            if at > limit {
                return false;
            }
            self.deliveries.pop();
            self.now = self.now.max(at);
            if let Some(d) = self.pending.remove(&seq) {
                self.deliver(d);
            }
        } else {
            let Some(Reverse((at, i))) = self.wakeups.peek().copied() else {
                return false;
            };
            if at > limit {
                return false;
            }
            self.wakeups.pop();
            self.now = self.now.max(at);
            let now = self.now;
            let due = self.nodes[i]
                .core
                .as_ref()
                .and_then(|c| c.poll_timeout())
                .is_some_and(|d| d <= now);
            if due {
                if let Some(core) = self.nodes[i].core.as_mut() {
                    core.handle_timeout(now);
                }
                self.drain(i);
            }
        }
        true
    }

    /// Runs the simulation for `duration` of virtual time.
    pub fn run_for(&mut self, duration: Duration) {
        let limit = self.now + duration;
        while self.step(limit) {}
        self.now = limit;
    }

    /// Runs until `done` holds (checked every `check_every`) or `max` elapses; returns
    /// whether it held.
    pub fn run_until(
        &mut self,
        max: Duration,
        check_every: Duration,
        mut done: impl FnMut(&Sim) -> bool,
    ) -> bool {
        let end = self.now + max;
        while self.now < end {
            if done(self) {
                return true;
            }
            let step = check_every.min(end - self.now);
            self.run_for(step);
        }
        done(self)
    }

    /// Running nodes.
    pub fn running(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.is_running(i))
            .collect()
    }

    /// Whether every running node knows every other running node as alive.
    pub fn membership_converged(&self) -> bool {
        let running = self.running();
        running.iter().all(|&i| {
            self.core(i)
                .is_some_and(|c| c.active_members() + 1 >= running.len())
        })
    }

    /// Whether every running node's store holds a tombstone of `key` newer than `version`.
    pub fn everyone_buried(&self, key: &EntryKey, version: Version) -> bool {
        self.running().iter().all(|&i| {
            self.nodes[i]
                .store
                .get(key)
                .is_some_and(|e| e.version > version && e.is_tombstone())
        })
    }

    /// Whether every running node's store holds `version` (or newer) of `key`.
    pub fn everyone_has(&self, key: &EntryKey, version: Version) -> bool {
        self.running().iter().all(|&i| {
            self.nodes[i]
                .store
                .get(key)
                .is_some_and(|e| e.version >= version)
        })
    }
}
