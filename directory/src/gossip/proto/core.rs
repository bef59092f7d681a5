//! The sans-IO gossip core: foca's SWIM membership plus our replication of entries.
//!
//! # How to drive it
//! One owner (the tokio driver task, or the simulator) calls the inputs with the current
//! time and then drains the outputs, in this order, after *every* input:
//!
//! * inputs: [`GossipCore::handle_datagram`] (a decrypted UDP payload),
//!   [`GossipCore::handle_local_write`] (an entry written by the local registry),
//!   [`GossipCore::handle_sync`] (an anti-entropy frame; returns the reply to send on the
//!   same stream, if any), [`GossipCore::handle_timeout`] (when [`GossipCore::poll_timeout`]
//!   is reached), [`GossipCore::set_seeds`] and [`GossipCore::leave`];
//! * outputs: [`GossipCore::poll_transmit`] (datagrams to seal and send, and anti-entropy
//!   sessions to open), [`GossipCore::poll_apply`] (remote entries to merge into the local
//!   store), [`GossipCore::poll_event`] (membership events), then
//!   [`GossipCore::poll_timeout`] (the next deadline).
//!
//! No clock, socket or thread RNG is touched inside: time is an argument and randomness
//! comes from a seeded RNG, so a seeded simulation replays exactly.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use foca::{AccumulatingRuntime, Foca, NoCustomBroadcast, OwnedNotification, PostcardCodec, Timer};
use rand::rngs::SmallRng;
use rand::seq::IndexedRandom;
use rand::{RngExt as _, SeedableRng};

use super::config::{GossipConfig, GossipConfigError};
use super::events::{CoreStats, DatagramError, GossipEvent, MemberState, MemberView, Transmit};
use super::identity::NodeIdentity;
use super::queue::BroadcastQueue;
use super::replica::Replica;
use super::wire::{
    Datagram, EntryKey, MAX_DATAGRAM, MAX_FRAME, SyncMsg, WireEntry, WireState, decode_datagram,
    encode_datagram, entry_size,
};
use crate::gossip::crypto::SEALED_OVERHEAD;
use crate::registry::{
    NodeName, ReplicationRules, TombstoneReason, burial_version, orphaned_by_restart, supersedes,
};
use crate::timers::TimerTable;

/// Largest plaintext datagram: [`MAX_DATAGRAM`] minus the encryption envelope.
pub const MAX_PLAINTEXT: usize = MAX_DATAGRAM - SEALED_OVERHEAD;
/// Most bytes of the ACL hash field (postcard): option tag, an IPv6 socket address (20)
/// and 8 bytes of hash, rounded up.
const ACL_HASH_SIZE: usize = 32;
/// Datagram bytes besides foca's message and the entries (version, lengths, option tag).
const DATAGRAM_FRAMING: usize = 1 + 3 + 3 + 1;
/// Entry bytes one anti-entropy frame may carry (room left for framing and envelope).
const SYNC_ENTRY_BUDGET: usize = MAX_FRAME - 64 * 1024;
/// How often collected tombstones and long-expired leases are swept.
const COLLECT_INTERVAL: Duration = Duration::from_secs(1);
/// Dead members a lonely node re-announces itself to per join attempt.
const DEAD_ANNOUNCES_PER_JOIN: usize = 3;

type Swim = Foca<NodeIdentity, PostcardCodec, SmallRng, NoCustomBroadcast>;

#[derive(Debug)]
enum TimerKind {
    Swim(Timer<NodeIdentity>),
    Gossip,
    AntiEntropy,
    Collect,
    Join,
}

#[derive(Debug, Clone)]
struct Tracked {
    left: bool,
    last_change: Instant,
}

/// The gossip state machine of one node. See the module docs for how to drive it.
pub struct GossipCore {
    config: GossipConfig,
    identity: NodeIdentity,
    started: Instant,
    /// The generation this node started with (wall-clock milliseconds at start in a real
    /// node); kept when foca renews the identity, for the owner-generation rule.
    started_generation: u64,
    /// The id this node writes versions with ([`crate::registry::NodeName::id`]).
    node_id: u64,
    swim: Swim,
    runtime: AccumulatingRuntime<NodeIdentity>,
    rng: SmallRng,
    replica: Replica,
    queue: BroadcastQueue,
    timers: TimerTable<Instant, TimerKind>,
    transmits: VecDeque<Transmit>,
    applies: VecDeque<WireEntry>,
    events: VecDeque<GossipEvent>,
    tracked: BTreeMap<SocketAddr, Tracked>,
    seeds: Vec<SocketAddr>,
    eager: bool,
    left: bool,
    stats: CoreStats,
    /// This node's ACL file hash (sent with every datagram) and the members' by address.
    acl_hash: Option<[u8; 8]>,
    member_acl_hashes: BTreeMap<SocketAddr, [u8; 8]>,
    /// The wall clock (Unix ms) at a monotonic instant, for the clock-drift rule: the wall
    /// time at `now` is `.1 + (now - .0)`. Re-anchored by [`Self::handle_wall_clock`].
    wall: (Instant, u64),
    rules: ReplicationRules,
}

impl GossipCore {
    /// A node with `identity` starting at `now`, when the wall clock reads `wall_millis`
    /// (Unix ms), keeping entries by `rules` (the same value its registry uses). It joins
    /// once seeds are given.
    pub fn new(
        identity: NodeIdentity,
        config: GossipConfig,
        rules: ReplicationRules,
        now: Instant,
        wall_millis: u64,
    ) -> Result<Self, GossipConfigError> {
        config.validate()?;
        rules.validate()?;
        let mut rng = SmallRng::seed_from_u64(config.rng_seed);
        let swim_rng = SmallRng::seed_from_u64(rng.random());
        let swim = Foca::new(identity.clone(), config.foca(), swim_rng, PostcardCodec);
        let (started_generation, node_id) = (identity.generation, node_id(&identity.name));
        let mut core = Self {
            replica: Replica::new(rules),
            identity,
            started: now,
            started_generation,
            node_id,
            swim,
            runtime: AccumulatingRuntime::new(),
            rng,
            queue: BroadcastQueue::default(),
            timers: TimerTable::default(),
            transmits: VecDeque::new(),
            applies: VecDeque::new(),
            events: VecDeque::new(),
            tracked: BTreeMap::new(),
            seeds: Vec::new(),
            eager: false,
            left: false,
            stats: CoreStats::default(),
            acl_hash: None,
            member_acl_hashes: BTreeMap::new(),
            wall: (now, wall_millis),
            rules,
            config,
        };
        core.timers
            .schedule(now + core.config.gossip_interval, TimerKind::Gossip);
        let first_sync = core.jittered(core.config.anti_entropy_interval);
        core.timers
            .schedule(now + first_sync, TimerKind::AntiEntropy);
        core.timers
            .schedule(now + COLLECT_INTERVAL, TimerKind::Collect);
        core.timers.schedule(now, TimerKind::Join);
        Ok(core)
    }

    /// This node's current identity (changes if it had to rejoin).
    pub fn identity(&self) -> &NodeIdentity {
        &self.identity
    }

    /// The entries this node replicates.
    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// Activity counters.
    pub fn stats(&self) -> &CoreStats {
        &self.stats
    }

    /// Number of live (alive or suspect) members besides this node.
    pub fn active_members(&self) -> usize {
        self.swim.num_members()
    }

    /// Entries still waiting to be piggybacked.
    pub fn pending_broadcasts(&self) -> usize {
        self.queue.len()
    }

    /// Replaces the seed list (resolved addresses). Each `join_retry_interval` the node
    /// announces itself to every seed that is not one of its live members.
    pub fn set_seeds(&mut self, seeds: Vec<SocketAddr>) {
        self.seeds = seeds;
        self.seeds.retain(|s| *s != self.identity.addr);
    }

    /// Input: the wall clock reads `wall_millis` (Unix ms) at `now`. Optional: the core
    /// otherwise advances the reading given to [`Self::new`] by monotonic time; a driver
    /// calls it now and then so wall-clock corrections (NTP steps) are followed.
    pub fn handle_wall_clock(&mut self, now: Instant, wall_millis: u64) {
        self.wall = (now, wall_millis);
    }

    fn wall_millis(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.wall.0).as_millis();
        self.wall
            .1
            .saturating_add(u64::try_from(elapsed).unwrap_or(u64::MAX))
    }

    /// Input: an entry written locally (register, heartbeat, deregister, expiry).
    pub fn handle_local_write(&mut self, now: Instant, entry: WireEntry) {
        let key = entry.key.clone();
        if self.replica.offer(now, entry) {
            self.queue.push(key, self.max_transmissions());
            self.eager = true;
            self.flush_eager(now);
        }
    }

    /// Input: the local store refused the entry for `key` that [`Self::poll_apply`] gave
    /// (it is full). The replica stops holding it, so this node's gossip memory stays
    /// within what its store accepts; anti-entropy offers it again later.
    pub fn handle_refused(&mut self, key: &EntryKey) {
        self.replica.forget(key);
    }

    /// Input: one decrypted datagram from `from`. Malformed payloads are dropped and
    /// counted; nothing else changes.
    pub fn handle_datagram(&mut self, now: Instant, payload: &[u8]) -> Result<(), DatagramError> {
        self.stats.datagrams_received += 1;
        let Ok(datagram) = decode_datagram(payload, MAX_PLAINTEXT) else {
            self.stats.malformed += 1;
            return Err(DatagramError::Malformed);
        };
        if let Some((addr, hash)) = datagram.acl_hash {
            self.member_acl_hashes.insert(addr, hash);
        }
        if let Some(leaving) = datagram.leaving {
            self.mark_left(now, &leaving);
        }
        for entry in datagram.entries {
            self.accept_remote(now, entry, true);
        }
        let mut result = Ok(());
        if !datagram.swim.is_empty() {
            if let Err(err) = self.swim.handle_data(&datagram.swim, &mut self.runtime) {
                tracing::trace!(%err, "swim message rejected");
                self.stats.swim_errors += 1;
                result = Err(DatagramError::Swim);
            }
            self.drain_swim(now);
        }
        self.flush_eager(now);
        result
    }

    /// Input: one anti-entropy frame; returns the reply to send on the same stream.
    pub fn handle_sync(&mut self, now: Instant, msg: SyncMsg) -> Option<SyncMsg> {
        let reply = match msg {
            SyncMsg::Digest { buckets } => {
                let diff = self.replica.differing_buckets(&buckets);
                (!diff.is_empty()).then(|| SyncMsg::Keys {
                    versions: self.replica.versions_in(&diff),
                    buckets: diff,
                })
            }
            SyncMsg::Keys { buckets, versions } => {
                let (push, want) = self.replica.compare(&buckets, &versions);
                let entries = self.entries_for(now, &push);
                (!entries.is_empty() || !want.is_empty()).then_some(SyncMsg::Push { entries, want })
            }
            SyncMsg::Push { entries, want } => {
                for entry in entries {
                    self.accept_remote(now, entry, false);
                }
                (!want.is_empty()).then(|| SyncMsg::Push {
                    entries: self.entries_for(now, &want),
                    want: Vec::new(),
                })
            }
        };
        self.flush_eager(now);
        reply
    }

    /// Input: the deadline from [`Self::poll_timeout`] was reached.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((_, kind)) = self.timers.pop_due(now) {
            match kind {
                TimerKind::Swim(timer) => {
                    if let Err(err) = self.swim.handle_timer(timer, &mut self.runtime) {
                        tracing::debug!(%err, "swim timer error");
                        self.stats.swim_errors += 1;
                    }
                    self.drain_swim(now);
                }
                TimerKind::Gossip => {
                    if !self.queue.is_empty() {
                        self.gossip_round(now);
                    }
                    self.timers
                        .schedule(now + self.config.gossip_interval, TimerKind::Gossip);
                }
                TimerKind::AntiEntropy => {
                    self.start_sync();
                    let next = self.jittered(self.config.anti_entropy_interval);
                    self.timers.schedule(now + next, TimerKind::AntiEntropy);
                }
                TimerKind::Collect => {
                    self.replica.collect_garbage(now);
                    self.timers
                        .schedule(now + COLLECT_INTERVAL, TimerKind::Collect);
                }
                TimerKind::Join => {
                    self.try_join(now);
                    let next = self.config.join_retry_interval;
                    self.timers.schedule(now + next, TimerKind::Join);
                }
            }
        }
    }

    /// Input: leave the cluster gracefully (announce it, then stop answering).
    pub fn leave(&mut self, now: Instant) {
        if self.left {
            return;
        }
        let me = self.identity.clone();
        let mut notified = Vec::new();
        if let Err(err) = self.swim.leave_cluster(&mut self.runtime) {
            tracing::debug!(%err, "leave_cluster failed");
        }
        // foca's own "down" gossip carries the departure notice, so its receivers see
        // "left" before "down"; every other member gets the notice directly.
        while let Some((to, bytes)) = self.runtime.to_send() {
            notified.push(to.addr);
            self.send_datagram(now, to.addr, bytes.to_vec(), Some(me.clone()));
        }
        let others: Vec<SocketAddr> = self
            .swim
            .iter_members()
            .map(|m| m.id().addr)
            .filter(|a| !notified.contains(a))
            .collect();
        for addr in others {
            self.send_datagram(now, addr, Vec::new(), Some(me.clone()));
        }
        // Left before foca's notifications are drained: its "no members left" is then our own
        // departure, not isolation worth retrying seeds for.
        self.left = true;
        self.drain_swim(now);
        self.timers
            .cancel(|k| matches!(k, TimerKind::Join | TimerKind::AntiEntropy));
    }

    /// Output: the next thing to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Output: the next remote entry to merge into the local store (lease as of now).
    pub fn poll_apply(&mut self) -> Option<WireEntry> {
        self.applies.pop_front()
    }

    /// Output: the next membership event.
    pub fn poll_event(&mut self) -> Option<GossipEvent> {
        self.events.pop_front()
    }

    /// Input: the short hash of the ACL file this node enforces (`None`: no ACL file);
    /// sent with every datagram from now on.
    pub fn set_acl_hash(&mut self, hash: Option<[u8; 8]>) {
        self.acl_hash = hash;
    }

    /// Output: when [`Self::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Every known member, this node first.
    pub fn members(&self, now: Instant) -> Vec<MemberView> {
        let mut out = vec![MemberView {
            identity: self.identity.clone(),
            state: if self.left {
                MemberState::Left
            } else {
                MemberState::Alive
            },
            incarnation: 0,
            since: now.saturating_duration_since(self.started),
            is_local: true,
            acl_hash: self.acl_hash,
        }];
        for member in self.swim.iter_membership_state() {
            let tracked = self.tracked.get(&member.id().addr);
            let state = match member.state() {
                foca::State::Alive => MemberState::Alive,
                foca::State::Suspect => MemberState::Suspect,
                foca::State::Down if tracked.is_some_and(|t| t.left) => MemberState::Left,
                foca::State::Down => MemberState::Dead,
            };
            let since = tracked.map_or(Duration::ZERO, |t| {
                now.saturating_duration_since(t.last_change)
            });
            out.push(MemberView {
                identity: member.id().clone(),
                state,
                incarnation: member.incarnation(),
                since,
                is_local: false,
                acl_hash: self.member_acl_hashes.get(&member.id().addr).copied(),
            });
        }
        out
    }

    fn max_transmissions(&self) -> u32 {
        let n = self.swim.num_members() as f64 + 2.0;
        // log10 of a small positive count: finite, between 0 and ~10.
        let log = n.log10().ceil().max(1.0) as u32;
        self.config.retransmit_mult.saturating_mul(log)
    }

    fn jittered(&mut self, base: Duration) -> Duration {
        base.mul_f64(self.rng.random_range(0.5..1.5))
    }

    fn accept_remote(&mut self, now: Instant, entry: WireEntry, gossip: bool) {
        if self
            .rules
            .version_from_the_future(entry.version, self.wall_millis(now))
        {
            self.stats.from_the_future += 1;
            return;
        }
        let key = entry.key.clone();
        let entry = self.bury_if_orphaned(entry);
        if !self.replica.offer(now, entry) {
            return;
        }
        if let Some(current) = self.replica.current(now, &key) {
            self.applies.push_back(current);
        }
        self.stats.entries_applied += 1;
        self.queue.push(key, self.max_transmissions());
        self.eager |= gossip;
    }

    /// The owner-generation rule ([`orphaned_by_restart`]): a newer live copy of a record
    /// this node owned in an earlier generation, while it holds no live copy, is replaced
    /// by its burial tombstone (which is then held, applied and spread like the copy).
    fn bury_if_orphaned(&mut self, entry: WireEntry) -> WireEntry {
        let WireState::Live(live) = &entry.state else {
            return entry;
        };
        let holds_live = self.replica.is_live(&entry.key);
        let orphan = orphaned_by_restart(
            live.owner == self.identity.name,
            entry.version.wall_millis(),
            self.started_generation,
            holds_live,
        );
        if !orphan || !supersedes(entry.version, self.replica.version(&entry.key)) {
            return entry;
        }
        self.stats.orphans_buried += 1;
        WireEntry {
            version: burial_version(entry.version, self.node_id),
            state: WireState::Tombstone {
                reason: TombstoneReason::Expired,
                age_ms: 0,
            },
            key: entry.key,
        }
    }

    fn entries_for(&self, now: Instant, keys: &[EntryKey]) -> Vec<WireEntry> {
        let mut used = 0;
        let mut out = Vec::new();
        for key in keys {
            let Some(entry) = self.replica.current(now, key) else {
                continue;
            };
            used += entry_size(&entry);
            if used > SYNC_ENTRY_BUDGET {
                break;
            }
            out.push(entry);
        }
        out
    }

    fn flush_eager(&mut self, now: Instant) {
        if std::mem::take(&mut self.eager) && !self.left {
            self.gossip_round(now);
        }
    }

    fn random_members(&mut self, count: usize) -> Vec<SocketAddr> {
        let all: Vec<SocketAddr> = self.swim.iter_members().map(|m| m.id().addr).collect();
        all.sample(&mut self.rng, count).copied().collect()
    }

    fn gossip_round(&mut self, now: Instant) {
        for to in self.random_members(self.config.gossip_fanout) {
            if self.queue.is_empty() {
                break;
            }
            self.send_datagram(now, to, Vec::new(), None);
        }
    }

    fn send_datagram(
        &mut self,
        now: Instant,
        to: SocketAddr,
        swim: Vec<u8>,
        leaving: Option<NodeIdentity>,
    ) {
        let leaving_size = leaving.as_ref().map_or(0, |id| {
            postcard::experimental::serialized_size(id).unwrap_or(MAX_PLAINTEXT)
        });
        let max_budget = MAX_PLAINTEXT - DATAGRAM_FRAMING;
        let acl_hash = self.acl_hash.map(|hash| (self.identity.addr, hash));
        let acl_size = acl_hash.map_or(0, |_| ACL_HASH_SIZE);
        let budget = max_budget.saturating_sub(swim.len() + leaving_size + acl_size);
        let entries = self.queue.fill(&self.replica, now, budget, max_budget);
        if swim.is_empty() && entries.is_empty() && leaving.is_none() {
            return;
        }
        let datagram = Datagram {
            swim,
            entries,
            leaving,
            acl_hash,
        };
        match encode_datagram(&datagram, MAX_PLAINTEXT) {
            Ok(payload) => {
                self.stats.datagrams_sent += 1;
                self.stats.bytes_sent += payload.len() as u64;
                self.transmits.push_back(Transmit::Datagram { to, payload });
            }
            Err(err) => tracing::warn!(%err, "gossip datagram not sent"),
        }
    }

    fn drain_swim(&mut self, now: Instant) {
        while let Some((to, bytes)) = self.runtime.to_send() {
            if self.is_spurious_turn_undead(&to, &bytes) {
                continue;
            }
            self.send_datagram(now, to.addr, bytes.to_vec(), None);
        }
        while let Some((after, timer)) = self.runtime.to_schedule() {
            self.timers.schedule(now + after, TimerKind::Swim(timer));
        }
        while let Some(notification) = self.runtime.to_notify() {
            self.handle_notification(now, notification);
        }
    }

    /// foca 2.0.0 sends `TurnUndead` when a suspicion timer fires even if the suspect
    /// refuted in time (its `apply_existing_if` returns `Some` for a failed condition). The
    /// refuting member would then needlessly rejoin under a new identity and, racing with
    /// that rename, be declared dead. We only let `TurnUndead` out for members we really
    /// hold as down.
    fn is_spurious_turn_undead(&self, to: &NodeIdentity, bytes: &[u8]) -> bool {
        let Ok((header, _)) = postcard::take_from_bytes::<foca::Header<NodeIdentity>>(bytes) else {
            return false;
        };
        if header.message != foca::Message::TurnUndead {
            return false;
        }
        self.swim.iter_members().any(|m| m.id() == to)
    }

    fn handle_notification(&mut self, now: Instant, notification: OwnedNotification<NodeIdentity>) {
        match notification {
            OwnedNotification::MemberUp(id) => {
                self.tracked.insert(
                    id.addr,
                    Tracked {
                        left: false,
                        last_change: now,
                    },
                );
                self.events.push_back(GossipEvent::MemberUp(id));
            }
            OwnedNotification::MemberDown(id) => {
                let tracked = self.tracked.entry(id.addr).or_insert(Tracked {
                    left: false,
                    last_change: now,
                });
                tracked.last_change = now;
                let event = if tracked.left {
                    GossipEvent::MemberLeft(id)
                } else {
                    GossipEvent::MemberDown(id)
                };
                self.events.push_back(event);
            }
            OwnedNotification::Rename(_, new) => {
                self.tracked.insert(
                    new.addr,
                    Tracked {
                        left: false,
                        last_change: now,
                    },
                );
            }
            OwnedNotification::Active => {
                self.events.push_back(GossipEvent::Joined);
                self.start_sync();
            }
            OwnedNotification::Idle if !self.left && self.last_departure_was_graceful() => {
                self.events.push_back(GossipEvent::Alone);
            }
            OwnedNotification::Idle | OwnedNotification::Defunct if !self.left => {
                self.events.push_back(GossipEvent::Isolated);
            }
            OwnedNotification::Idle | OwnedNotification::Defunct => {}
            OwnedNotification::Rejoin(id) => {
                self.identity = id.clone();
                self.events.push_back(GossipEvent::Rejoined(id));
            }
        }
    }

    /// Whether the member that departed last left gracefully (so being alone is no fault).
    fn last_departure_was_graceful(&self) -> bool {
        self.tracked
            .values()
            .max_by_key(|t| t.last_change)
            .is_some_and(|t| t.left)
    }

    fn mark_left(&mut self, now: Instant, leaving: &NodeIdentity) {
        let already_down = self
            .swim
            .iter_membership_state()
            .any(|m| m.id() == leaving && m.state() == foca::State::Down);
        let tracked = self.tracked.entry(leaving.addr).or_insert(Tracked {
            left: false,
            last_change: now,
        });
        if !tracked.left && already_down {
            // The "down" gossip overtook the notice: correct the verdict.
            self.events
                .push_back(GossipEvent::MemberLeft(leaving.clone()));
        }
        tracked.left = true;
        tracked.last_change = now;
    }

    fn start_sync(&mut self) {
        if self.left {
            return;
        }
        if let Some(to) = self.random_members(1).pop() {
            self.stats.syncs_started += 1;
            let msg = SyncMsg::Digest {
                buckets: self.replica.digest(),
            };
            self.transmits.push_back(Transmit::Sync { to, msg });
        }
    }

    /// Announces this node to every seed that is not one of its live members, so that
    /// groups which formed apart (another node joined us before we reached our seeds, or a
    /// partition healed with members on both sides) find each other; an isolated node also
    /// tries a few members it saw die.
    fn try_join(&mut self, now: Instant) {
        if self.left {
            return;
        }
        let live: Vec<SocketAddr> = self.swim.iter_members().map(|m| m.id().addr).collect();
        let mut targets: Vec<SocketAddr> = self
            .seeds
            .iter()
            .copied()
            .filter(|seed| !live.contains(seed))
            .collect();
        if live.is_empty() {
            let dead: Vec<SocketAddr> = self
                .swim
                .iter_membership_state()
                .map(|m| m.id().addr)
                .filter(|a| !targets.contains(a))
                .collect();
            targets.extend(dead.sample(&mut self.rng, DEAD_ANNOUNCES_PER_JOIN).copied());
        }
        for addr in targets {
            if let Err(err) = self
                .swim
                .announce(NodeIdentity::seed(addr), &mut self.runtime)
            {
                tracing::debug!(%err, "announce failed");
            }
        }
        self.drain_swim(now);
    }
}

/// The version id of node `name` (the registry's [`NodeName::id`]); 0 for a name that is
/// not a valid node name (the registry refuses such nodes, so only hand-built tests).
fn node_id(name: &str) -> u64 {
    NodeName::new(name).map_or(0, |n| n.id())
}

#[cfg(test)]
mod tests;
