//! Unit tests of the registry as a whole (store + leases + merge).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

use super::*;

fn svc(s: &str) -> ServiceName {
    ServiceName::new(s).unwrap()
}

fn inst(s: &str) -> InstanceId {
    InstanceId::new(s).unwrap()
}

fn reg(addr: &str, ttl_secs: u64) -> Registration {
    Registration {
        ttl: Ttl::from_duration(Duration::from_secs(ttl_secs)).unwrap(),
        ..Registration::new(Address::new(addr).unwrap())
    }
}

/// Registers `service/instance` at `addr` with a `ttl_secs` lease, expecting success.
fn put(
    r: &Registry,
    service: &str,
    instance: &str,
    addr: &str,
    ttl_secs: u64,
    now: Instant,
) -> Arc<Record> {
    r.register(&svc(service), &inst(instance), reg(addr, ttl_secs), now)
        .unwrap()
}

fn registry() -> Registry {
    Registry::new(RegistryConfig::for_test())
}

#[test]
fn a_reap_says_more_only_when_its_batch_left_due_timers() {
    let r = registry();
    let now = Instant::now();
    for i in 0..=super::store::REAP_BATCH {
        put(&r, "a", &format!("i{i}"), "h:1", 1, now);
    }
    let quiet = ReapStats {
        expired: 0,
        collected: 0,
        more: false,
    };
    assert_eq!(r.reap(now), quiet, "timers pending, none due");
    let due = now + Duration::from_secs(1);
    let first = r.reap(due);
    assert_eq!(
        (first.expired, first.more),
        (super::store::REAP_BATCH, true)
    );
    let second = r.reap(due);
    assert_eq!((second.expired, second.more), (1, false));
}

/// A registry with its replication hook: every local write comes out of the receiver.
fn replicated() -> (Registry, mpsc::UnboundedReceiver<Entry>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (
        Registry::with_replication(RegistryConfig::for_test(), tx),
        rx,
    )
}

/// The last local write sent to the replication hook.
fn last_write(rx: &mut mpsc::UnboundedReceiver<Entry>) -> Entry {
    std::iter::from_fn(|| rx.try_recv().ok())
        .last()
        .expect("a write was replicated")
}

/// Every live record, as clients can see them (to assert that nothing changed).
fn visible(r: &Registry) -> Vec<Arc<Record>> {
    let (_, services) = r.services();
    services
        .iter()
        .flat_map(|s| r.lookup(&s.service, &Filter::default()).instances)
        .collect()
}

fn drain(rx: &mut broadcast::Receiver<ChangeEvent>) -> Vec<(ChangeKind, String)> {
    std::iter::from_fn(|| rx.try_recv().ok())
        .map(|e| (e.kind, e.instance.to_string()))
        .collect()
}

#[test]
fn registered_instances_are_found_with_a_fresh_index() {
    let r = registry();
    let now = Instant::now();
    let rec = put(&r, "orders", "o-1", "10.0.0.1:7000", 10, now);
    assert_eq!(rec.index, 1);
    assert_eq!(rec.owner.as_str(), DEFAULT_NODE_NAME);
    let rec2 = put(&r, "orders", "o-2", "10.0.0.2:7000", 10, now);
    assert_eq!(rec2.index, 2);
    let view = r.lookup(&svc("orders"), &Filter::default());
    assert_eq!(view.index, 2);
    assert_eq!(view.instances.len(), 2);
    assert_eq!(view.instances[0].instance.as_str(), "o-1");
    assert_eq!(
        r.instance(&svc("orders"), &inst("o-2"))
            .unwrap()
            .address
            .as_str(),
        "10.0.0.2:7000"
    );
    assert_eq!(r.len(), 2);
    let (index, services) = r.services();
    assert_eq!(index, 2);
    assert_eq!(
        services,
        vec![ServiceSummary {
            service: svc("orders"),
            instances: 2
        }]
    );
}

#[test]
fn unknown_services_look_up_empty_with_index_zero() {
    let r = registry();
    let view = r.lookup(&svc("nope"), &Filter::default());
    assert_eq!((view.index, view.instances.len()), (0, 0));
    assert!(r.instance(&svc("nope"), &inst("x")).is_none());
}

#[test]
fn reregistering_identical_content_only_renews_the_lease() {
    let r = registry();
    let mut events = r.subscribe();
    let now = Instant::now();
    let first = put(&r, "a", "i", "h:1", 5, now);
    let again = put(&r, "a", "i", "h:1", 5, now + Duration::from_secs(3));
    assert_eq!(again.index, first.index);
    assert_eq!(again.registered_at, first.registered_at);
    assert_eq!(
        drain(&mut events),
        vec![(ChangeKind::Registered, "i".into())]
    );
    // The lease now runs from the second registration.
    assert_eq!(r.reap(now + Duration::from_secs(6)).expired, 0);
    assert_eq!(r.reap(now + Duration::from_secs(8)).expired, 1);
}

#[test]
fn changing_a_registration_bumps_the_index_and_emits_updated() {
    let r = registry();
    let mut events = r.subscribe();
    let now = Instant::now();
    let first = put(&r, "a", "i", "h:1", 5, now);
    let second = put(&r, "a", "i", "h:2", 5, now);
    assert!(second.index > first.index);
    assert_eq!(second.registered_at, first.registered_at);
    assert_eq!(r.len(), 1);
    assert_eq!(
        drain(&mut events),
        vec![
            (ChangeKind::Registered, "i".into()),
            (ChangeKind::Updated, "i".into())
        ]
    );
}

#[test]
fn heartbeats_renew_the_lease_without_waking_watchers() {
    let (r, mut writes) = replicated();
    let mut events = r.subscribe();
    let now = Instant::now();
    let first = put(&r, "a", "i", "h:1", 5, now);
    let v1 = last_write(&mut writes).version;
    let (index_before, revision_before) = r.service_revision(&svc("a"));
    let renewed = r
        .heartbeat(&svc("a"), &inst("i"), now + Duration::from_secs(4))
        .unwrap();
    let v2 = last_write(&mut writes).version;
    assert!(v2 > v1, "a heartbeat must replicate");
    assert_eq!(renewed.index, first.index);
    let (index_after, revision_after) = r.service_revision(&svc("a"));
    assert_eq!(index_after, index_before);
    assert!(
        revision_after > revision_before,
        "cached renderings must be invalidated"
    );
    assert_eq!(drain(&mut events).len(), 1);
    // The old deadline's timer is stale and does nothing.
    assert_eq!(r.reap(now + Duration::from_secs(6)).expired, 0);
    assert_eq!(r.reap(now + Duration::from_secs(9)).expired, 1);
}

#[test]
fn renewals_keep_one_timer_per_instance() {
    let r = registry();
    let now = Instant::now();
    assert_eq!(r.pending_timers(), 0);
    put(&r, "a", "i", "h:1", 10, now);
    for ms in 1..=1000 {
        let t = now + Duration::from_millis(ms);
        r.heartbeat(&svc("a"), &inst("i"), t).unwrap();
        r.register(&svc("a"), &inst("i"), reg(&format!("h:{ms}"), 10), t)
            .unwrap();
    }
    assert_eq!(r.pending_timers(), 1);
    // The armed timer fires at the first deadline and re-arms at the current one.
    assert_eq!(r.reap(now + Duration::from_secs(10)).expired, 0);
    assert_eq!(r.pending_timers(), 1);
    assert_eq!(r.reap(now + Duration::from_secs(11)).expired, 1);
    // A shorter lease arms an earlier timer; the later one becomes stale and is dropped.
    put(&r, "a", "j", "h:1", 60, now);
    put(&r, "a", "j", "h:1", 5, now);
    assert_eq!(r.reap(now + Duration::from_secs(5)).expired, 1);
    assert_eq!(r.reap(now + Duration::from_secs(61)).expired, 0);
}

#[test]
fn heartbeats_for_unknown_or_expired_instances_are_not_found() {
    let r = registry();
    let now = Instant::now();
    assert!(matches!(
        r.heartbeat(&svc("a"), &inst("i"), now),
        Err(HeartbeatError::NotFound { .. })
    ));
    put(&r, "a", "i", "h:1", 1, now);
    let mut events = r.subscribe();
    // Past the deadline but before the reaper ran: expired on the spot.
    let late = now + Duration::from_secs(2);
    assert!(r.heartbeat(&svc("a"), &inst("i"), late).is_err());
    assert!(r.lookup(&svc("a"), &Filter::default()).instances.is_empty());
    assert_eq!(drain(&mut events), vec![(ChangeKind::Expired, "i".into())]);
    assert!(r.heartbeat(&svc("a"), &inst("i"), late).is_err());
}

#[test]
fn leases_expire_by_the_reaper_and_watchers_see_it() {
    let (r, mut writes) = replicated();
    let now = Instant::now();
    put(&r, "a", "short", "h:1", 1, now);
    put(&r, "a", "long", "h:1", 60, now);
    let mut events = r.subscribe();
    assert_eq!(r.reap(now).expired, 0);
    let index_before = r.lookup(&svc("a"), &Filter::default()).index;
    let stats = r.reap(now + Duration::from_secs(1));
    assert_eq!(stats.expired, 1);
    let view = r.lookup(&svc("a"), &Filter::default());
    assert_eq!(view.instances.len(), 1);
    assert!(view.index > index_before);
    assert_eq!(
        drain(&mut events),
        vec![(ChangeKind::Expired, "short".into())]
    );
    assert_eq!(r.len(), 1);
    let tomb = last_write(&mut writes);
    assert_eq!(tomb.instance.as_str(), "short");
    assert_eq!(
        tomb.state,
        EntryState::Tombstone {
            reason: TombstoneReason::Expired
        }
    );
}

#[test]
fn deregistering_is_idempotent_and_tombstones_are_collected_after_retention() {
    let r = registry();
    let now = Instant::now();
    put(&r, "a", "i", "h:1", 60, now);
    let mut events = r.subscribe();
    assert!(r.deregister(&svc("a"), &inst("i"), now));
    assert!(!r.deregister(&svc("a"), &inst("i"), now));
    assert!(!r.deregister(&svc("zz"), &inst("i"), now));
    assert_eq!(
        drain(&mut events),
        vec![(ChangeKind::Deregistered, "i".into())]
    );
    assert!(r.lookup(&svc("a"), &Filter::default()).instances.is_empty());
    assert!(r.services().1.is_empty());
    let older = || remote_live("a", "i", 1, 1, 1, Duration::from_secs(9));
    assert_eq!(
        r.merge_remote(older(), now),
        MergeOutcome::Stale,
        "the tombstone stays for replication: older copies are refused"
    );
    let retention = RegistryConfig::for_test().replication.tombstone_retention;
    let stats = r.reap(now + retention);
    assert_eq!(stats.collected, 1);
    // The service's state went away with its last tombstone.
    assert_eq!(r.service_revision(&svc("a")), (0, 0));
    // The lease timer of the removed record is stale and harmless.
    assert_eq!(r.reap(now + Duration::from_secs(61)), ReapStats::default());
    // Forgotten: nothing is left to refuse an older copy.
    assert_eq!(r.merge_remote(older(), now), MergeOutcome::Applied);
}

#[test]
fn a_full_store_refuses_new_instances_and_changes_nothing() {
    let config = RegistryConfig {
        max_instances: 2,
        ..RegistryConfig::for_test()
    };
    let r = Registry::new(config);
    let now = Instant::now();
    put(&r, "a", "1", "h:1", 60, now);
    put(&r, "a", "2", "h:1", 60, now);
    let before = visible(&r);
    let index = r.index();
    let err = r
        .register(&svc("b"), &inst("3"), reg("h:1", 60), now)
        .unwrap_err();
    assert_eq!(err, RegisterError::CapacityFull { max: 2 });
    assert_eq!(visible(&r), before);
    assert_eq!(r.index(), index);
    assert_eq!(r.service_revision(&svc("b")), (0, 0));
    // Replacing an existing instance is still allowed, and a freed slot can be reused.
    put(&r, "a", "2", "h:2", 60, now);
    r.deregister(&svc("a"), &inst("1"), now);
    put(&r, "b", "3", "h:1", 60, now);
    assert_eq!(r.len(), 2);
}

#[test]
fn lookups_filter_by_all_tags_and_meta_pairs() {
    let r = registry();
    let now = Instant::now();
    let mut a = reg("h:1", 60);
    a.tags = Tags::new(vec!["v2".into(), "eu".into()]).unwrap();
    a.meta = Meta::new(BTreeMap::from([("zone".into(), "a".into())])).unwrap();
    let mut b = reg("h:2", 60);
    b.tags = Tags::new(vec!["v2".into()]).unwrap();
    b.meta = Meta::new(BTreeMap::from([("zone".into(), "b".into())])).unwrap();
    r.register(&svc("s"), &inst("a"), a, now).unwrap();
    r.register(&svc("s"), &inst("b"), b, now).unwrap();
    let ids = |f: Filter| -> Vec<String> {
        r.lookup(&svc("s"), &f)
            .instances
            .iter()
            .map(|x| x.instance.to_string())
            .collect()
    };
    assert_eq!(
        ids(Filter {
            tags: vec!["v2".into()],
            meta: vec![]
        }),
        ["a", "b"]
    );
    assert_eq!(
        ids(Filter {
            tags: vec!["v2".into(), "eu".into()],
            meta: vec![]
        }),
        ["a"]
    );
    assert_eq!(
        ids(Filter {
            tags: vec![],
            meta: vec![("zone".into(), "b".into())]
        }),
        ["b"]
    );
    assert!(
        ids(Filter {
            tags: vec!["eu".into()],
            meta: vec![("zone".into(), "b".into())]
        })
        .is_empty()
    );
}

#[tokio::test(start_paused = true)]
async fn blocking_waits_wake_on_change_and_time_out_without_one() {
    let r = registry();
    let s = svc("later");
    // Times out: nothing changes.
    let start = Instant::now();
    let index = r
        .wait_for_change(&s, 0, start + Duration::from_secs(5))
        .await;
    assert_eq!(index, 0);
    assert_eq!(Instant::now() - start, Duration::from_secs(5));
    // The waiter's state was collected when it left.
    assert_eq!(r.service_revision(&s), (0, 0));
    // Wakes when the (not yet existing) service gets an instance.
    let waiter = {
        let r = r.clone();
        let s = s.clone();
        tokio::spawn(async move {
            r.wait_for_change(&s, 0, Instant::now() + Duration::from_secs(300))
                .await
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rec = r
        .register(&s, &inst("i"), reg("h:1", 60), Instant::now())
        .unwrap();
    assert_eq!(waiter.await.unwrap(), rec.index);
    // An index already past returns at once.
    let before = Instant::now();
    assert_eq!(
        r.wait_for_change(&s, 0, before + Duration::from_secs(60))
            .await,
        rec.index
    );
    assert_eq!(Instant::now(), before);
}

#[tokio::test(start_paused = true)]
async fn the_reaper_task_expires_leases_on_time() {
    let r = registry();
    let cancel = tokio_util::sync::CancellationToken::new();
    let reaper = tokio::spawn({
        let r = r.clone();
        let cancel = cancel.clone();
        async move { r.run_reaper(cancel).await }
    });
    let mut events = r.subscribe();
    put(&r, "a", "i", "h:1", 2, Instant::now());
    let start = Instant::now();
    let event = events.recv().await.unwrap();
    assert_eq!(event.kind, ChangeKind::Registered);
    let event = events.recv().await.unwrap();
    assert_eq!(event.kind, ChangeKind::Expired);
    assert!(event.record.is_none());
    let waited = Instant::now() - start;
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_millis(2100),
        "{waited:?}"
    );
    cancel.cancel();
    reaper.await.unwrap();
}

#[test]
fn every_local_write_reaches_the_replication_hook() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let r = Registry::with_replication(RegistryConfig::for_test(), tx);
    let now = Instant::now();
    put(&r, "a", "i", "h:1", 1, now);
    r.heartbeat(&svc("a"), &inst("i"), now).unwrap();
    r.deregister(&svc("a"), &inst("i"), now);
    put(&r, "a", "j", "h:1", 1, now);
    r.reap(now + Duration::from_secs(1));
    let got: Vec<Entry> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
    let shape: Vec<(&str, bool)> = got
        .iter()
        .map(|e| (e.instance.as_str(), e.is_live()))
        .collect();
    assert_eq!(
        shape,
        [
            ("i", true),
            ("i", true),
            ("i", false),
            ("j", true),
            ("j", false)
        ]
    );
    assert!(got.windows(2).take(2).all(|w| w[0].version < w[1].version));
    assert_eq!(
        got[4].state,
        EntryState::Tombstone {
            reason: TombstoneReason::Expired
        }
    );
    // Merged remote writes are not echoed back.
    let mut remote = got[3].clone();
    remote.instance = inst("k");
    remote.version.hlc += 1 << 20; // 16 ms ahead: newer, within the clock drift
    assert_eq!(r.merge_remote(remote, now), MergeOutcome::Applied);
    assert!(rx.try_recv().is_err());
}

fn remote_live(
    service: &str,
    instance: &str,
    hlc: u64,
    node: u64,
    port: u16,
    lease: Duration,
) -> Entry {
    Entry {
        service: svc(service),
        instance: inst(instance),
        version: Version { hlc, node },
        state: EntryState::Live(LiveState {
            address: Address::new(&format!("10.1.1.1:{port}")).unwrap(),
            tags: Tags::default(),
            meta: Meta::default(),
            ttl: Ttl::from_duration(Duration::from_secs(10)).unwrap(),
            fingerprint: None,
            owner: NodeName::new("node-b").unwrap(),
            registered_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            lease_remaining: lease,
            subscriptions: Default::default(),
        }),
    }
}

#[test]
fn newer_remote_entries_win_and_notify_like_local_writes() {
    let r = registry();
    let mut events = r.subscribe();
    let now = Instant::now();
    let lease = Duration::from_secs(3);
    let e1 = remote_live("a", "i", 100, 7, 1, lease);
    assert_eq!(r.merge_remote(e1.clone(), now), MergeOutcome::Applied);
    let rec = r.instance(&svc("a"), &inst("i")).unwrap();
    assert_eq!(rec.owner.as_str(), "node-b");
    assert_eq!(rec.index, 1);
    let EntryState::Live(live) = &e1.state else {
        unreachable!("remote_live is live")
    };
    assert!(live.same_content_as(&rec));
    assert_eq!(rec.registered_at, live.registered_at);
    // Same or older versions change nothing.
    assert_eq!(r.merge_remote(e1.clone(), now), MergeOutcome::Stale);
    assert_eq!(
        r.merge_remote(remote_live("a", "i", 99, 9, 2, lease), now),
        MergeOutcome::Stale
    );
    // A renewal from the remote (same content) moves the lease but not the index.
    let renewal = remote_live("a", "i", 101, 7, 1, Duration::from_secs(10));
    assert_eq!(r.merge_remote(renewal, now), MergeOutcome::Applied);
    assert_eq!(r.instance(&svc("a"), &inst("i")).unwrap().index, 1);
    assert_eq!(r.reap(now + lease).expired, 0);
    // A newer content change is an update; a newer tombstone a removal.
    r.merge_remote(remote_live("a", "i", 102, 7, 9, lease), now);
    let tomb = Entry {
        version: Version { hlc: 103, node: 1 },
        state: EntryState::Tombstone {
            reason: TombstoneReason::Deregistered,
        },
        ..e1
    };
    assert_eq!(r.merge_remote(tomb, now), MergeOutcome::Applied);
    assert!(r.is_empty());
    assert_eq!(
        drain(&mut events),
        vec![
            (ChangeKind::Registered, "i".into()),
            (ChangeKind::Updated, "i".into()),
            (ChangeKind::Deregistered, "i".into())
        ]
    );
}

#[test]
fn remote_leases_expire_locally_after_their_remaining_time() {
    let r = registry();
    let now = Instant::now();
    r.merge_remote(remote_live("a", "i", 5, 1, 1, Duration::from_secs(2)), now);
    assert_eq!(r.reap(now + Duration::from_millis(1999)).expired, 0);
    assert_eq!(r.reap(now + Duration::from_secs(2)).expired, 1);
}

#[test]
fn local_writes_supersede_entries_from_nodes_with_clocks_ahead() {
    let (r, mut writes) = replicated();
    let now = Instant::now();
    // Ahead by 30 s: within the default drift (a lead beyond it is refused, see
    // `a_remote_version_beyond_the_clock_drift_is_refused_and_does_not_move_the_clock`).
    let far_future = super::unix_millis(SystemTime::now() + Duration::from_secs(30)) << 16;
    let remote = remote_live("a", "i", far_future, u64::MAX, 1, Duration::from_secs(9));
    assert_eq!(r.merge_remote(remote, now), MergeOutcome::Applied);
    r.heartbeat(&svc("a"), &inst("i"), now).unwrap();
    let e = last_write(&mut writes);
    assert!(e.version.hlc > far_future);
    r.deregister(&svc("a"), &inst("i"), now);
    let tomb = last_write(&mut writes);
    assert!(!tomb.is_live() && tomb.version > e.version);
}

/// Service, instance, version and liveness of one slot (see `Registry::held_versions`).
type HeldVersion = (String, String, Version, bool);

/// Entry content is a function of its version, as it is in a real cluster.
fn arb_entry() -> impl Strategy<Value = Entry> {
    (0..2usize, 0..3usize, 1..30u64, 0..3u64).prop_map(|(s, i, hlc, node)| {
        let service = ["s0", "s1"][s];
        let instance = ["i0", "i1", "i2"][i];
        if (hlc + node) % 3 != 0 {
            let port = u16::try_from(hlc * 10 + node + 1).unwrap();
            remote_live(service, instance, hlc, node, port, Duration::from_secs(hlc))
        } else {
            Entry {
                state: EntryState::Tombstone {
                    reason: TombstoneReason::Expired,
                },
                ..remote_live(service, instance, hlc, node, 1, Duration::ZERO)
            }
        }
    })
}

fn merged(entries: &[Entry], now: Instant) -> (Vec<HeldVersion>, Vec<(String, String, u16)>) {
    let r = registry();
    for e in entries {
        r.merge_remote(e.clone(), now);
    }
    let all = r.held_versions();
    let mut visible = Vec::new();
    for s in ["s0", "s1"] {
        for rec in r.lookup(&svc(s), &Filter::default()).instances {
            visible.push((s.to_string(), rec.instance.to_string(), rec.address.port()));
        }
    }
    (all, visible)
}

proptest! {
    #[test]
    fn lww_merge_is_commutative(entries in proptest::collection::vec(arb_entry(), 0..24), seed in any::<u64>()) {
        let now = Instant::now();
        let mut shuffled = entries.clone();
        // Deterministic shuffle from the seed (Fisher-Yates with an LCG).
        let mut state = seed | 1;
        for i in (1..shuffled.len()).rev() {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let j = usize::try_from(state >> 33).unwrap() % (i + 1);
            shuffled.swap(i, j);
        }
        prop_assert_eq!(merged(&entries, now), merged(&shuffled, now));
    }

    #[test]
    fn lww_merge_is_idempotent(entries in proptest::collection::vec(arb_entry(), 0..24)) {
        let now = Instant::now();
        let mut twice = entries.clone();
        twice.extend(entries.iter().cloned());
        prop_assert_eq!(merged(&entries, now), merged(&twice, now));
    }
}

#[test]
fn wall_time_comes_from_the_caller() {
    let (r, mut writes) = replicated();
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(4_000_000_000);
    let now = Now {
        instant: Instant::now(),
        wall,
    };
    let rec = r
        .register(&svc("a"), &inst("i"), reg("h:1", 10), now)
        .unwrap();
    assert_eq!(rec.registered_at, wall);
    assert_eq!(rec.lease_expires_at, wall + Duration::from_secs(10));
    let version = last_write(&mut writes).version;
    assert_eq!(version.wall_millis(), 4_000_000_000_000);
    let later = Now {
        instant: now.instant + Duration::from_secs(5),
        wall: wall + Duration::from_secs(5),
    };
    let renewed = r.heartbeat(&svc("a"), &inst("i"), later).unwrap();
    assert_eq!(renewed.lease_expires_at, wall + Duration::from_secs(15));
    r.merge_remote(remote_live("b", "j", 1, 1, 1, Duration::from_secs(3)), now);
    let merged = r.instance(&svc("b"), &inst("j")).unwrap();
    assert_eq!(merged.lease_expires_at, wall + Duration::from_secs(3));
}

#[test]
fn a_remote_version_beyond_the_clock_drift_is_refused_and_does_not_move_the_clock() {
    let (r, mut rx) = replicated();
    let now = Instant::now();
    let wall = SystemTime::now();
    let at = |ahead: Duration| {
        let ms = super::unix_millis(wall + ahead);
        ms << 16 // the HLC keeps wall milliseconds above 16 bits
    };
    let drift = RegistryConfig::for_test().replication.max_clock_drift;
    let lease = Duration::from_secs(9);
    let future = remote_live("a", "far", at(drift + Duration::from_secs(1)), 7, 1, lease);
    let now_at = Now { instant: now, wall };
    let near = remote_live("a", "near", at(drift - Duration::from_secs(1)), 7, 1, lease);
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let outcomes = metrics::with_local_recorder(&recorder, || {
        [r.merge_remote(future, now_at), r.merge_remote(near, now_at)]
    });
    assert_eq!(
        outcomes,
        [MergeOutcome::FromTheFuture, MergeOutcome::Applied]
    );
    assert!(
        handle
            .render()
            .lines()
            .any(|l| l == "directory_replication_clock_ahead_rejected_total 1"),
        "the refusal (and only it) is counted: {}",
        handle.render()
    );
    assert!(
        r.instance(&svc("a"), &inst("far")).is_none(),
        "nothing stored"
    );
    // A local write after the refusal is stamped near the local clock, not the remote's.
    put(&r, "a", "local", "h:1", 30, now);
    let written = last_write(&mut rx);
    assert!(
        written.version.wall_millis() < super::unix_millis(wall + drift),
        "the local clock was not pushed past the accepted lead"
    );
}

/// A registration with `n` meta values of `len` bytes each.
fn big_reg(addr: &str, n: usize, len: usize) -> Registration {
    let meta: BTreeMap<String, String> =
        (0..n).map(|i| (format!("k{i}"), "v".repeat(len))).collect();
    Registration {
        meta: Meta::new(meta).unwrap(),
        ..reg(addr, 60)
    }
}

fn budgeted(max_instances: usize, max_registry_bytes: usize) -> Registry {
    Registry::new(RegistryConfig {
        max_instances,
        max_registry_bytes,
        ..RegistryConfig::for_test()
    })
}

#[test]
fn registrations_past_the_byte_budget_are_refused_and_change_nothing() {
    let r = budgeted(1_000, 8 * 1024);
    let now = Instant::now();
    r.register(&svc("a"), &inst("1"), big_reg("h:1", 4, 1_000), now)
        .unwrap();
    let used = r.usage().bytes;
    assert!(used > 4_000 && used < 6_000, "estimate {used}");
    let (before, index) = (visible(&r), r.index());
    let err = r
        .register(&svc("b"), &inst("2"), big_reg("h:1", 4, 1_000), now)
        .unwrap_err();
    assert!(
        matches!(err, RegisterError::BytesFull { max_bytes: 8_192, used_bytes, .. } if used_bytes == used),
        "{err:?}"
    );
    assert!(err.to_string().contains("8192"), "{err}");
    assert_eq!(
        (visible(&r), r.index(), r.usage().bytes),
        (before, index, used)
    );
    assert_eq!(r.service_revision(&svc("b")), (0, 0));
    // Renewals and smaller replacements still fit; a deletion frees the room.
    r.heartbeat(&svc("a"), &inst("1"), now).unwrap();
    put(&r, "a", "1", "h:2", 60, now);
    put(&r, "b", "2", "h:1", 60, now);
    r.deregister(&svc("a"), &inst("1"), now);
    r.register(&svc("c"), &inst("3"), big_reg("h:1", 4, 1_000), now)
        .unwrap();
}

#[test]
fn replicated_entries_count_against_max_instances_and_are_refused_loudly() {
    let r = budgeted(2, usize::MAX);
    let now = Instant::now();
    let lease = Duration::from_secs(30);
    for (i, name) in ["x", "y"].into_iter().enumerate() {
        let e = remote_live("a", name, 10, 1, 1, lease);
        assert_eq!(r.merge_remote(e, now), MergeOutcome::Applied, "{i}");
    }
    let before = r.held_versions();
    assert_eq!(r.refusals().total, 0);
    let third = remote_live("b", "z", 10, 1, 1, lease);
    assert_eq!(r.merge_remote(third, now), MergeOutcome::Refused);
    assert_eq!(r.held_versions(), before, "a refused entry changes nothing");
    assert_eq!(r.len(), 2);
    assert_eq!(r.refusals().total, 1);
    assert_eq!(r.refusals().last, Some(now));
    // A local registration is refused the same way; a newer version of a held entry and a
    // tombstone still fit.
    assert!(matches!(
        r.register(&svc("c"), &inst("1"), reg("h:1", 60), now),
        Err(RegisterError::CapacityFull { max: 2 })
    ));
    let renewal = remote_live("a", "x", 11, 1, 1, lease);
    assert_eq!(r.merge_remote(renewal, now), MergeOutcome::Applied);
    let tomb = Entry::tombstone(
        &svc("a"),
        &inst("y"),
        Version { hlc: 11, node: 1 },
        TombstoneReason::Deregistered,
    );
    assert_eq!(r.merge_remote(tomb, now), MergeOutcome::Applied);
    let again = remote_live("b", "z", 10, 1, 1, lease);
    assert_eq!(r.merge_remote(again, now), MergeOutcome::Applied);
}

#[test]
fn replicated_entries_past_the_byte_budget_are_refused() {
    let r = budgeted(1_000, 4 * 1024);
    let now = Instant::now();
    let mut big = remote_live("a", "x", 10, 1, 1, Duration::from_secs(30));
    if let EntryState::Live(live) = &mut big.state {
        live.meta = big_reg("h:1", 8, 1_000).meta;
    }
    assert_eq!(r.merge_remote(big, now), MergeOutcome::Refused);
    assert!(r.held_versions().is_empty());
    assert_eq!(r.usage(), Usage::default());
    assert_eq!(r.refusals().total, 1);
}

#[test]
fn every_byte_charged_is_released_when_tombstones_are_collected() {
    let r = registry();
    let now = Instant::now();
    r.register(&svc("a"), &inst("1"), big_reg("h:1", 3, 100), now)
        .unwrap();
    let t = Entry::tombstone(
        &svc("b"),
        &inst("2"),
        Version { hlc: 1, node: 1 },
        TombstoneReason::Expired,
    );
    r.merge_remote(t, now);
    r.merge_remote(remote_live("c", "3", 5, 1, 1, Duration::from_secs(1)), now);
    assert_eq!(r.usage().instances, 2);
    r.deregister(&svc("a"), &inst("1"), now);
    let retention = r.config().replication.tombstone_retention;
    let later = now + retention + Duration::from_secs(60);
    r.reap(later);
    r.reap(later + retention);
    assert_eq!(r.usage(), Usage::default());
}
