//! Dissemination promises of the gossip core, observed on the wire: two `GossipCore`s driven
//! by hand on a virtual clock (no loss, 1 ms latency), every datagram decoded and recorded.
//!
//! - each entry version is piggybacked `retransmit_mult * ceil(log10(members + 2))` times,
//!   no more, and a newer version of the same key re-arms that budget (docs/design.md,
//!   "Dissemination");
//! - an entry too large for a datagram never rides one (and never holds the queue or a SWIM
//!   message hostage): anti-entropy alone replicates it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use directory::gossip::proto::wire::{decode_datagram, entry_size};
use directory::gossip::proto::{
    EntryKey, GossipConfig, GossipCore, LiveRecord, MAX_PLAINTEXT, NodeIdentity, SyncMsg, Transmit,
    WireEntry, WireState,
};
use directory::registry::{ReplicationRules, Version};

/// One datagram as the wire saw it.
struct Sent {
    from: usize,
    entries: Vec<WireEntry>,
    len: usize,
}

/// Two cores with a perfect 1 ms network between them; anti-entropy sessions run to the end
/// at the instant they are opened.
struct Pair {
    cores: Vec<GossipCore>,
    now: Instant,
    in_flight: Vec<(Instant, usize, Vec<u8>)>,
    datagrams: Vec<Sent>,
    /// Entries carried by anti-entropy `Push` frames, by sender.
    synced: Vec<(usize, WireEntry)>,
}

const LATENCY: Duration = Duration::from_millis(1);
/// The wall clock (Unix ms) the cores start with: after every version these tests write,
/// which are small numbers, so no entry is refused as ahead of local time.
const WALL_MS: u64 = 1_000_000;

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1 + i as u8], 7701))
}

impl Pair {
    fn new(config: &GossipConfig) -> Self {
        let now = Instant::now();
        let cores = (0..2)
            .map(|i| {
                let mut config = config.clone();
                config.rng_seed = 7 + i as u64;
                let identity = NodeIdentity::new(addr(i), format!("node-{i}"), 1);
                GossipCore::new(identity, config, ReplicationRules::default(), now, WALL_MS)
                    .unwrap()
            })
            .collect();
        let mut pair = Self {
            cores,
            now,
            in_flight: Vec::new(),
            datagrams: Vec::new(),
            synced: Vec::new(),
        };
        pair.cores[1].set_seeds(vec![addr(0)]);
        pair.drain(1);
        let joined = pair.run_until(Duration::from_secs(5), |p| {
            p.cores.iter().all(|c| c.active_members() == 1)
        });
        assert!(joined, "the two cores never saw each other");
        pair
    }

    fn index_of(&self, to: SocketAddr) -> Option<usize> {
        self.cores.iter().position(|c| c.identity().addr == to)
    }

    fn drain(&mut self, i: usize) {
        let mut syncs = Vec::new();
        while let Some(t) = self.cores[i].poll_transmit() {
            match t {
                Transmit::Datagram { to, payload } => {
                    let decoded = decode_datagram(&payload, MAX_PLAINTEXT).expect("decodes");
                    self.datagrams.push(Sent {
                        from: i,
                        entries: decoded.entries,
                        len: payload.len(),
                    });
                    if let Some(to) = self.index_of(to) {
                        self.in_flight.push((self.now + LATENCY, to, payload));
                    }
                }
                Transmit::Sync { to, msg } => syncs.push((to, msg)),
            }
        }
        while self.cores[i].poll_apply().is_some() {}
        while self.cores[i].poll_event().is_some() {}
        for (to, msg) in syncs {
            if let Some(to) = self.index_of(to) {
                self.sync_session(i, to, msg);
            }
        }
    }

    /// Runs one anti-entropy session between `opener` and `other` to its end.
    fn sync_session(&mut self, opener: usize, other: usize, first: SyncMsg) {
        let (mut from, mut to, mut msg) = (opener, other, Some(first));
        while let Some(m) = msg {
            if let SyncMsg::Push { entries, .. } = &m {
                self.synced
                    .extend(entries.iter().map(|e| (from, e.clone())));
            }
            msg = self.cores[to].handle_sync(self.now, m);
            (from, to) = (to, from);
        }
        self.drain(opener);
        self.drain(other);
    }

    /// Advances to the next timer or delivery and handles it; false when nothing is due.
    fn step(&mut self) -> bool {
        let next_timer = self.cores.iter().filter_map(GossipCore::poll_timeout).min();
        let next_delivery = self.in_flight.iter().map(|(at, _, _)| *at).min();
        let Some(next) = [next_timer, next_delivery].into_iter().flatten().min() else {
            return false;
        };
        self.now = self.now.max(next);
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.in_flight)
            .into_iter()
            .partition(|(at, _, _)| *at <= self.now);
        self.in_flight = later;
        for (_, to, payload) in due {
            let _ = self.cores[to].handle_datagram(self.now, &payload);
            self.drain(to);
        }
        for i in 0..self.cores.len() {
            if self.cores[i].poll_timeout().is_some_and(|t| t <= self.now) {
                self.cores[i].handle_timeout(self.now);
                self.drain(i);
            }
        }
        true
    }

    /// Steps until `done` holds or `limit` of virtual time has passed; whether it held.
    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Self) -> bool) -> bool {
        let end = self.now + limit;
        while self.now < end {
            if done(self) {
                return true;
            }
            if !self.step() {
                break;
            }
        }
        done(self)
    }

    fn run_for(&mut self, duration: Duration) {
        self.run_until(duration, |_| false);
    }

    /// Writes `entry` on node `i`, as its registry would.
    fn write(&mut self, i: usize, entry: WireEntry) {
        self.cores[i].handle_local_write(self.now, entry);
        self.drain(i);
    }

    /// How many datagrams from `from` carried `key` at `version`.
    fn sends_of(&self, from: usize, key: &EntryKey, version: Version) -> usize {
        self.datagrams
            .iter()
            .filter(|d| d.from == from)
            .filter(|d| {
                d.entries
                    .iter()
                    .any(|e| &e.key == key && e.version == version)
            })
            .count()
    }
}

fn live(key: &EntryKey, hlc: u64, tags: Vec<String>) -> WireEntry {
    WireEntry {
        key: key.clone(),
        version: Version {
            hlc: hlc << 16,
            node: 1,
        },
        state: WireState::Live(LiveRecord {
            address: "10.9.0.1:7000".into(),
            tags,
            meta: Vec::new(),
            ttl_ms: 60_000,
            fingerprint: None,
            owner: "node-0".into(),
            registered_at_ms: 0,
            lease_remaining_ms: 60_000,
            subscriptions: Vec::new(),
        }),
    }
}

/// `retransmit_mult * ceil(log10(members + 2))` with one other member: 8 * 1.
fn budget(config: &GossipConfig) -> usize {
    config.retransmit_mult as usize
}

#[test]
fn each_version_is_piggybacked_exactly_its_retransmit_budget() {
    let config = GossipConfig::for_test();
    let mut pair = Pair::new(&config);
    let key = EntryKey::new("orders", "orders-1");
    let v1 = live(&key, 1_000_000, vec!["v1".into()]);
    let version = v1.version;
    pair.write(0, v1);
    pair.run_for(Duration::from_secs(3));
    assert_eq!(
        pair.sends_of(0, &key, version),
        budget(&config),
        "the writer's transmissions of one version"
    );
    assert_eq!(
        pair.cores[0].pending_broadcasts(),
        0,
        "budget spent, queue empty"
    );
    assert!(
        pair.cores[1].replica().current(pair.now, &key).is_some(),
        "the other node has it"
    );
}

#[test]
fn a_newer_version_of_the_same_key_re_arms_the_budget() {
    let config = GossipConfig::for_test();
    let mut pair = Pair::new(&config);
    let key = EntryKey::new("orders", "orders-1");
    let v1 = live(&key, 1_000_000, vec!["v1".into()]);
    let first = v1.version;
    pair.write(0, v1);
    let partly = pair.run_until(Duration::from_secs(3), |p| p.sends_of(0, &key, first) >= 3);
    assert!(partly, "the first version was never sent three times");
    let spent = pair.sends_of(0, &key, first);
    assert!(
        spent < budget(&config),
        "spent {spent}: no budget left to re-arm"
    );

    let v2 = live(&key, 1_000_001, vec!["v2".into()]);
    let second = v2.version;
    pair.write(0, v2);
    pair.run_for(Duration::from_secs(3));
    assert_eq!(
        pair.sends_of(0, &key, second),
        budget(&config),
        "the newer version got a full budget, not the {} sends left of the older one",
        budget(&config) - spent
    );
    assert_eq!(
        pair.sends_of(0, &key, first),
        spent,
        "the older version is no longer sent"
    );
    assert_eq!(pair.cores[0].pending_broadcasts(), 0);
}

#[test]
fn an_entry_too_large_for_a_datagram_is_replicated_by_anti_entropy_only() {
    let config = GossipConfig::for_test();
    let mut pair = Pair::new(&config);
    let key = EntryKey::new("big", "big-1");
    // Two 1 KiB tags: valid for the registry, larger than any datagram.
    let big = live(&key, 1_000_000, vec!["x".repeat(1024), "y".repeat(1024)]);
    assert!(
        entry_size(&big) > MAX_PLAINTEXT,
        "the entry must not fit a datagram"
    );
    let version = big.version;
    let small_key = EntryKey::new("small", "small-1");
    let small = live(&small_key, 1_000_000, vec!["v1".into()]);
    let small_version = small.version;
    let synced_before = pair.synced.len();
    pair.write(0, big);
    pair.write(0, small);

    let arrived = pair.run_until(Duration::from_secs(5), |p| {
        p.cores[1]
            .replica()
            .current(p.now, &key)
            .is_some_and(|e| e.version == version)
    });
    assert!(arrived, "the large entry never reached the other node");
    assert!(
        pair.datagrams
            .iter()
            .all(|d| d.entries.iter().all(|e| e.key != key)),
        "a datagram carried the large entry"
    );
    assert!(
        pair.synced[synced_before..]
            .iter()
            .any(|(from, e)| *from == 0 && e.key == key && e.version == version),
        "the large entry did not travel in an anti-entropy push"
    );
    assert!(pair.datagrams.iter().all(|d| d.len <= MAX_PLAINTEXT));
    assert_eq!(
        pair.sends_of(0, &small_key, small_version),
        budget(&config),
        "the small entry written beside it was gossiped as usual"
    );
    assert_eq!(
        pair.cores[0].pending_broadcasts(),
        0,
        "the large entry was left in the broadcast queue"
    );
    assert!(
        pair.cores.iter().all(|c| c.active_members() == 1),
        "membership held"
    );
}
