//! The replication layer's view of every entry: tombstones with a shared relative age,
//! leases as relative deadlines, and the bucketed digest used by anti-entropy. Which entry
//! wins, when a lease is over and when a tombstone goes are decided by the registry's rules
//! module ([`crate::registry::ReplicationRules`]), as for the registry itself.

use std::collections::BTreeMap;
use std::hash::Hasher as _;
use std::time::{Duration, Instant};

use fnv::FnvHasher;

use super::wire::{DIGEST_BUCKETS, EntryKey, WireEntry, WireState};
use crate::registry::{ReplicationRules, Version, live_copy_accepted, supersedes};

#[derive(Debug, Clone)]
struct Held {
    entry: WireEntry,
    /// Live: when the lease was `lease_remaining_ms` long. Tombstone: when it was created
    /// (back-dated by the age it arrived with).
    stored_at: Instant,
}

impl Held {
    fn snapshot(&self, now: Instant) -> WireEntry {
        let mut entry = self.entry.clone();
        let elapsed = now.saturating_duration_since(self.stored_at);
        let elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        match &mut entry.state {
            WireState::Live(live) => {
                live.lease_remaining_ms = live.lease_remaining_ms.saturating_sub(elapsed_ms);
            }
            WireState::Tombstone { age_ms, .. } => *age_ms = age_ms.saturating_add(elapsed_ms),
        }
        entry
    }

    /// Whether the rules let this entry go at `now`: a live copy once its lease and the
    /// grace ran out, a tombstone once its age reached the retention.
    fn forgettable(&self, now: Instant, rules: &ReplicationRules) -> bool {
        let elapsed = now.saturating_duration_since(self.stored_at);
        match &self.entry.state {
            WireState::Live(live) => {
                elapsed >= rules.held_lease(Duration::from_millis(live.lease_remaining_ms), false)
            }
            WireState::Tombstone { .. } => rules.tombstone_forgettable(elapsed),
        }
    }
}

/// Every replicated entry this node knows, with local deadlines.
#[derive(Debug)]
pub struct Replica {
    entries: BTreeMap<EntryKey, Held>,
    buckets: [u64; DIGEST_BUCKETS],
    rules: ReplicationRules,
}

impl Replica {
    /// An empty replica. Tombstones are forgotten at the rules' retention after creation;
    /// live entries once their lease and the grace ran out (the replica owns no lease).
    pub fn new(rules: ReplicationRules) -> Self {
        Self {
            entries: BTreeMap::new(),
            buckets: [0; DIGEST_BUCKETS],
            rules,
        }
    }

    /// Number of entries held (tombstones included).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The version held for `key`.
    pub fn version(&self, key: &EntryKey) -> Option<Version> {
        self.entries.get(key).map(|h| h.entry.version)
    }

    /// Whether a live copy of `key` is held (whatever its lease).
    pub fn is_live(&self, key: &EntryKey) -> bool {
        self.entries
            .get(key)
            .is_some_and(|h| matches!(h.entry.state, WireState::Live(_)))
    }

    /// The entry for `key` as it should be sent now (lease and age adjusted).
    pub fn current(&self, now: Instant, key: &EntryKey) -> Option<WireEntry> {
        self.entries.get(key).map(|h| h.snapshot(now))
    }

    /// Offers an entry; returns whether it was newer and is now held. Tombstones older than
    /// the retention and live copies whose lease already ran out are refused: they could
    /// only resurrect or re-spread dead state.
    pub fn offer(&mut self, now: Instant, entry: WireEntry) -> bool {
        if !supersedes(entry.version, self.version(&entry.key)) {
            return false;
        }
        let stored_at = match &entry.state {
            WireState::Live(live) => {
                if !live_copy_accepted(Duration::from_millis(live.lease_remaining_ms)) {
                    return false;
                }
                now
            }
            WireState::Tombstone { age_ms, .. } => {
                let age = Duration::from_millis(*age_ms);
                if self.rules.tombstone_forgettable(age) {
                    return false;
                }
                now.checked_sub(age).unwrap_or(now)
            }
        };
        let mut entry = entry;
        if let WireState::Tombstone { age_ms, .. } = &mut entry.state {
            // The age is now carried by `stored_at`.
            *age_ms = 0;
        }
        let bucket = bucket_of(&entry.key);
        let new_hash = entry_hash(&entry.key, entry.version);
        if let Some(old) = self
            .entries
            .insert(entry.key.clone(), Held { entry, stored_at })
        {
            self.buckets[bucket] ^= entry_hash(&old.entry.key, old.entry.version);
        }
        self.buckets[bucket] ^= new_hash;
        true
    }

    /// Stops holding `key` (the local store refused its entry: full). Returns whether it
    /// was held. The digest no longer counts it, so anti-entropy offers it again later, and
    /// the store decides again then.
    pub fn forget(&mut self, key: &EntryKey) -> bool {
        let Some(old) = self.entries.remove(key) else {
            return false;
        };
        self.buckets[bucket_of(key)] ^= entry_hash(key, old.entry.version);
        true
    }

    /// Removes tombstones past their retention and live entries past lease + grace.
    /// Returns how many entries were removed.
    pub fn collect_garbage(&mut self, now: Instant) -> usize {
        let expired: Vec<EntryKey> = self
            .entries
            .iter()
            .filter(|(_, h)| h.forgettable(now, &self.rules))
            .map(|(k, _)| k.clone())
            .collect();
        for key in &expired {
            if let Some(old) = self.entries.remove(key) {
                self.buckets[bucket_of(key)] ^= entry_hash(key, old.entry.version);
            }
        }
        expired.len()
    }

    /// The digest: one hash per bucket.
    pub fn digest(&self) -> Vec<u64> {
        self.buckets.to_vec()
    }

    /// Indices of the buckets where `theirs` differs from ours (all, if the length is wrong).
    pub fn differing_buckets(&self, theirs: &[u64]) -> Vec<u16> {
        (0..DIGEST_BUCKETS)
            .filter(|&i| theirs.get(i) != Some(&self.buckets[i]) || theirs.len() != DIGEST_BUCKETS)
            .filter_map(|i| u16::try_from(i).ok())
            .collect()
    }

    /// Every `(key, version)` held in the given buckets.
    pub fn versions_in(&self, buckets: &[u16]) -> Vec<(EntryKey, Version)> {
        let mut wanted = [false; DIGEST_BUCKETS];
        for &b in buckets {
            if let Some(slot) = wanted.get_mut(usize::from(b)) {
                *slot = true;
            }
        }
        self.entries
            .iter()
            .filter(|(k, _)| wanted[bucket_of(k)])
            .map(|(k, h)| (k.clone(), h.entry.version))
            .collect()
    }

    /// Given the peer's versions in `buckets`, the keys we hold newer or that the peer lacks
    /// (to push) and the keys the peer holds newer or we lack (to want).
    pub fn compare(
        &self,
        buckets: &[u16],
        theirs: &[(EntryKey, Version)],
    ) -> (Vec<EntryKey>, Vec<EntryKey>) {
        let their_map: BTreeMap<&EntryKey, Version> = theirs.iter().map(|(k, v)| (k, *v)).collect();
        let push = self
            .versions_in(buckets)
            .into_iter()
            .filter(|(k, v)| supersedes(*v, their_map.get(k).copied()))
            .map(|(k, _)| k)
            .collect();
        let want = theirs
            .iter()
            .filter(|(k, v)| supersedes(*v, self.version(k)))
            .map(|(k, _)| k.clone())
            .collect();
        (push, want)
    }
}

/// FNV-1a over `parts`, each followed by a 0xff separator: the same on every node and every
/// build (never `RandomState`), since digests are compared across nodes.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hasher = FnvHasher::default();
    for part in parts {
        hasher.write(part);
        hasher.write_u8(0xff);
    }
    hasher.finish()
}

fn bucket_of(key: &EntryKey) -> usize {
    let hash = fnv1a(&[key.service.as_bytes(), key.instance.as_bytes()]);
    // DIGEST_BUCKETS is 64, so the remainder always fits usize.
    (hash % DIGEST_BUCKETS as u64) as usize
}

fn entry_hash(key: &EntryKey, version: Version) -> u64 {
    let mut h = fnv1a(&[
        key.service.as_bytes(),
        key.instance.as_bytes(),
        &version.hlc.to_le_bytes(),
        &version.node.to_le_bytes(),
    ]);
    // splitmix64 finalizer so XOR-combining is well mixed.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gossip::proto::wire::test_live_entry as live;
    use crate::registry::TombstoneReason;

    fn tomb(instance: &str, hlc: u64, age_ms: u64) -> WireEntry {
        WireEntry {
            key: EntryKey::new("svc", instance),
            version: Version { hlc, node: 1 },
            state: WireState::Tombstone {
                reason: TombstoneReason::Deregistered,
                age_ms,
            },
        }
    }

    fn replica() -> Replica {
        Replica::new(ReplicationRules {
            tombstone_retention: Duration::from_secs(60),
            lease_grace: Duration::from_secs(5),
            ..ReplicationRules::default()
        })
    }

    #[test]
    fn digest_hashes_are_the_same_on_every_build() {
        // Values of the hand-written FNV-1a this replaced: nodes of both builds agree.
        let key = EntryKey::new("orders", "orders-1");
        assert_eq!(fnv1a(&[b"orders", b"orders-1"]), 0xa21d_d1d5_d6dd_753f);
        assert_eq!(bucket_of(&key), 63);
        let version = Version {
            hlc: 7 << 16,
            node: 42,
        };
        assert_eq!(entry_hash(&key, version), 0xfb4e_e38d_398b_7c13);
    }

    #[test]
    fn newer_versions_win_and_stale_ones_change_nothing() {
        let now = Instant::now();
        let mut r = replica();
        assert!(r.offer(now, live("a", 5, 10_000)));
        assert!(!r.offer(now, live("a", 5, 10_000)));
        assert!(!r.offer(now, tomb("a", 4, 0)));
        assert!(r.offer(now, tomb("a", 6, 0)));
        assert!(!r.offer(now, live("a", 5, 10_000)));
        assert!(
            r.current(now, &EntryKey::new("svc", "a"))
                .unwrap()
                .is_tombstone()
        );
    }

    #[test]
    fn leases_and_tombstone_ages_are_relative() {
        let t0 = Instant::now();
        let mut r = replica();
        r.offer(t0, live("a", 1, 10_000));
        r.offer(t0, tomb("b", 1, 1_000));
        let later = t0 + Duration::from_secs(3);
        let a = r.current(later, &EntryKey::new("svc", "a")).unwrap();
        assert_eq!(a.lease_remaining(), Some(Duration::from_secs(7)));
        let b = r.current(later, &EntryKey::new("svc", "b")).unwrap();
        assert!(matches!(
            b.state,
            WireState::Tombstone { age_ms: 4_000, .. }
        ));
    }

    #[test]
    fn a_forgotten_entry_leaves_the_digest_as_if_never_offered() {
        let now = Instant::now();
        let mut replica = replica();
        replica.offer(now, live("a", 1, 30_000));
        let before = replica.digest();
        let refused = live("b", 2, 30_000);
        let key = refused.key.clone();
        assert!(replica.offer(now, refused));
        assert_ne!(replica.digest(), before);
        assert!(replica.forget(&key));
        assert_eq!(replica.digest(), before);
        assert_eq!(replica.len(), 1);
        assert!(!replica.forget(&key));
    }

    #[test]
    fn expired_copies_and_old_tombstones_are_refused() {
        let now = Instant::now() + Duration::from_secs(120);
        let mut r = replica();
        assert!(!r.offer(now, live("a", 1, 0)));
        assert!(!r.offer(now, tomb("b", 1, 60_000)));
        assert!(r.is_empty());
    }

    #[test]
    fn garbage_collection_drops_old_tombstones_and_long_expired_leases() {
        let t0 = Instant::now();
        let mut r = replica();
        r.offer(t0, live("a", 1, 1_000));
        r.offer(t0, tomb("b", 1, 0));
        r.offer(t0, live("c", 1, 600_000));
        assert_eq!(r.collect_garbage(t0 + Duration::from_secs(5)), 0);
        assert_eq!(r.collect_garbage(t0 + Duration::from_secs(6)), 1);
        assert_eq!(r.collect_garbage(t0 + Duration::from_secs(61)), 1);
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn digests_match_exactly_when_versions_match() {
        let now = Instant::now();
        let (mut a, mut b) = (replica(), replica());
        for i in 0..50 {
            a.offer(now, live(&format!("i{i}"), 1, 10_000));
            b.offer(now, live(&format!("i{i}"), 1, 5_000));
        }
        assert!(a.differing_buckets(&b.digest()).is_empty());
        b.offer(now, live("i7", 2, 10_000));
        b.offer(now, live("new", 1, 10_000));
        let diff = a.differing_buckets(&b.digest());
        assert!(!diff.is_empty() && diff.len() <= 2);
        let (push, want) = a.compare(&diff, &b.versions_in(&diff));
        assert!(push.is_empty());
        let mut want = want;
        want.sort();
        assert_eq!(
            want,
            vec![EntryKey::new("svc", "i7"), EntryKey::new("svc", "new")]
        );
        a.collect_garbage(now);
        assert_eq!(a.differing_buckets(&[1, 2]).len(), DIGEST_BUCKETS);
    }

    #[test]
    fn a_replaced_version_leaves_no_trace_in_the_digest() {
        let now = Instant::now();
        let (mut a, mut b) = (replica(), replica());
        a.offer(now, live("a", 1, 10_000));
        a.offer(now, live("a", 2, 10_000));
        a.offer(now, tomb("a", 3, 0));
        b.offer(now, tomb("a", 3, 0));
        assert_eq!(a.digest(), b.digest(), "only the held version counts");
    }

    #[test]
    fn a_replica_that_collected_entries_has_the_digest_of_one_that_never_held_them() {
        let t0 = Instant::now();
        let (mut a, mut b) = (replica(), replica());
        // 200 keys over 64 buckets: every bucket holds several, kept and collected alike.
        for i in 0..200 {
            let lease_ms = if i % 2 == 0 { 600_000 } else { 1_000 };
            a.offer(t0, live(&format!("i{i}"), 1, lease_ms));
            if i % 2 == 0 {
                b.offer(t0, live(&format!("i{i}"), 1, lease_ms));
            }
        }
        assert_eq!(a.collect_garbage(t0 + Duration::from_secs(6)), 100);
        assert_eq!(a.digest(), b.digest());
    }

    #[test]
    fn only_a_held_live_copy_is_live() {
        let now = Instant::now();
        let mut r = replica();
        r.offer(now, live("a", 1, 10_000));
        r.offer(now, tomb("b", 1, 0));
        assert!(r.is_live(&EntryKey::new("svc", "a")));
        assert!(!r.is_live(&EntryKey::new("svc", "b")), "a tombstone");
        assert!(!r.is_live(&EntryKey::new("svc", "c")), "nothing held");
    }
}
