//! Unit tests of [`GossipCore`](super::GossipCore): one core or two, driven by hand.

use super::*;
use crate::gossip::proto::wire::test_live_entry;

fn core(port: u16) -> GossipCore {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    // Generation 0: no test entry predates it, so the owner-generation rule stays out
    // of these tests (the simulator covers it).
    let identity = NodeIdentity::new(addr, format!("n{port}"), 0);
    let rules = ReplicationRules::default();
    let wall = crate::registry::unix_millis(std::time::SystemTime::now());
    GossipCore::new(
        identity,
        GossipConfig::for_test(),
        rules,
        Instant::now(),
        wall,
    )
    .unwrap()
}

fn entry(instance: &str, hlc: u64) -> WireEntry {
    test_live_entry(instance, hlc, 60_000)
}

/// Runs a push-pull session from `a` to `b` the way the driver would.
fn sync(a: &mut GossipCore, b: &mut GossipCore, now: Instant) -> usize {
    let mut msg = SyncMsg::Digest {
        buckets: a.replica().digest(),
    };
    let mut frames = 1;
    let mut at_b = true;
    loop {
        let reply = if at_b {
            b.handle_sync(now, msg)
        } else {
            a.handle_sync(now, msg)
        };
        let Some(reply) = reply else { return frames };
        frames += 1;
        msg = reply;
        at_b = !at_b;
    }
}

#[test]
fn push_pull_exchanges_only_what_differs_and_applies_it() {
    let now = Instant::now();
    let (mut a, mut b) = (core(1), core(2));
    for i in 0..20 {
        a.handle_local_write(now, entry(&format!("shared-{i}"), 1));
        b.handle_local_write(now, entry(&format!("shared-{i}"), 1));
    }
    assert_eq!(
        sync(&mut a, &mut b, now),
        1,
        "in sync: the digest is all that travels"
    );
    a.handle_local_write(now, entry("only-a", 1));
    b.handle_local_write(now, entry("only-b", 1));
    b.handle_local_write(now, entry("shared-3", 2));
    assert_eq!(sync(&mut a, &mut b, now), 4);
    let applied_a: Vec<_> = std::iter::from_fn(|| a.poll_apply())
        .map(|e| e.key.instance)
        .collect();
    let applied_b: Vec<_> = std::iter::from_fn(|| b.poll_apply())
        .map(|e| e.key.instance)
        .collect();
    assert_eq!(applied_b, vec!["only-a"]);
    let mut applied_a = applied_a;
    applied_a.sort();
    assert_eq!(applied_a, vec!["only-b", "shared-3"]);
    assert!(
        a.replica()
            .differing_buckets(&b.replica().digest())
            .is_empty()
    );
}

#[test]
fn malformed_datagrams_are_counted_and_change_nothing() {
    let now = Instant::now();
    let mut a = core(1);
    for bad in [
        &b""[..],
        b"\x01",
        b"\x09abc",
        &[1u8, 200, 200, 200, 200, 200][..],
    ] {
        assert_eq!(a.handle_datagram(now, bad), Err(DatagramError::Malformed));
    }
    assert_eq!(a.stats().malformed, 4);
    assert!(a.replica().is_empty());
    assert_eq!(a.poll_apply(), None);
}

#[test]
fn piggybacked_entries_are_applied_once_and_stale_ones_ignored() {
    let now = Instant::now();
    let mut a = core(1);
    let datagram = Datagram {
        entries: vec![entry("x", 5)],
        ..Datagram::default()
    };
    let bytes = encode_datagram(&datagram, MAX_PLAINTEXT).unwrap();
    a.handle_datagram(now, &bytes).unwrap();
    a.handle_datagram(now, &bytes).unwrap();
    let stale = Datagram {
        entries: vec![entry("x", 4)],
        ..Datagram::default()
    };
    a.handle_datagram(now, &encode_datagram(&stale, MAX_PLAINTEXT).unwrap())
        .unwrap();
    assert_eq!(a.poll_apply().map(|e| e.version.hlc), Some(5));
    assert_eq!(a.poll_apply(), None);
    assert_eq!(a.stats().entries_applied, 1);
}

#[test]
fn entries_from_a_clock_beyond_the_drift_are_refused_and_counted() {
    let now = Instant::now();
    let mut a = core(1);
    let wall = a.wall_millis(now);
    let drift = u64::try_from(a.rules.max_clock_drift.as_millis()).unwrap();
    let at = |ms: u64| ms << 16; // the HLC keeps wall milliseconds above 16 bits
    let datagram = Datagram {
        entries: vec![
            entry("far", at(wall + drift + 1_000)),
            entry("near", at(wall + drift - 1_000)),
        ],
        ..Datagram::default()
    };
    a.handle_datagram(now, &encode_datagram(&datagram, MAX_PLAINTEXT).unwrap())
        .unwrap();
    assert_eq!(a.stats().from_the_future, 1);
    let applied: Vec<_> = std::iter::from_fn(|| a.poll_apply())
        .map(|e| e.key.instance)
        .collect();
    assert_eq!(applied, vec!["near"]);
    assert_eq!(a.replica().len(), 1, "the refused entry is not held");
    // Time moves on: once within the drift, the same version is accepted.
    let later = now + Duration::from_secs(2);
    a.handle_wall_clock(later, wall + 2_000);
    a.handle_datagram(later, &encode_datagram(&datagram, MAX_PLAINTEXT).unwrap())
        .unwrap();
    assert_eq!(a.replica().len(), 2);
    // Anti-entropy goes through the same rule.
    let push = SyncMsg::Push {
        entries: vec![entry("far-sync", at(wall + 10 * drift))],
        want: Vec::new(),
    };
    a.handle_sync(later, push);
    assert_eq!(a.stats().from_the_future, 2);
}

/// Delivers every datagram either core has to send to the other, until both are quiet.
fn exchange(a: &mut GossipCore, b: &mut GossipCore, now: Instant) {
    for _ in 0..50 {
        let quiet = !deliver(a, b, now) & !deliver(b, a, now);
        if quiet {
            return;
        }
    }
}

/// Hands every datagram `from` has to send to `to`; whether there was any.
fn deliver(from: &mut GossipCore, to: &mut GossipCore, now: Instant) -> bool {
    let mut any = false;
    while let Some(t) = from.poll_transmit() {
        if let Transmit::Datagram { payload, .. } = t {
            any = true;
            let _ = to.handle_datagram(now, &payload);
        }
    }
    any
}

#[test]
fn a_leaving_node_does_not_report_itself_isolated() {
    let (mut a, mut b) = (core(1), core(2));
    let now = Instant::now();
    a.set_seeds(vec![([127, 0, 0, 1], 2).into()]);
    a.handle_timeout(now);
    exchange(&mut a, &mut b, now);
    assert_eq!((a.active_members(), b.active_members()), (1, 1), "joined");
    while a.poll_event().is_some() {}
    while b.poll_event().is_some() {}

    a.leave(now);
    let events: Vec<_> = std::iter::from_fn(|| a.poll_event()).collect();
    assert!(
        !events.iter().any(|e| matches!(e, GossipEvent::Isolated)),
        "{events:?}"
    );
    exchange(&mut a, &mut b, now);
    let events: Vec<_> = std::iter::from_fn(|| b.poll_event()).collect();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, GossipEvent::MemberLeft(_))),
        "the other side sees it leave: {events:?}"
    );
    assert!(
        events.iter().any(|e| matches!(e, GossipEvent::Alone)),
        "and is now alone: {events:?}"
    );
    assert!(
        !events.iter().any(|e| matches!(e, GossipEvent::Isolated)),
        "alone by design, not isolated by a fault: {events:?}"
    );
}

#[test]
fn a_node_whose_last_peer_fails_reports_itself_isolated() {
    let (mut a, mut b) = (core(1), core(2));
    let mut now = Instant::now();
    a.set_seeds(vec![([127, 0, 0, 1], 2).into()]);
    a.handle_timeout(now);
    exchange(&mut a, &mut b, now);
    while a.poll_event().is_some() {}
    // b goes silent: a's probes go unanswered until it declares b down.
    let mut events = Vec::new();
    for _ in 0..10_000 {
        let Some(next) = a.poll_timeout() else { break };
        now = now.max(next);
        a.handle_timeout(now);
        while a.poll_transmit().is_some() {}
        events.extend(std::iter::from_fn(|| a.poll_event()));
        if events.iter().any(|e| matches!(e, GossipEvent::Isolated)) {
            break;
        }
    }
    assert!(
        events
            .iter()
            .any(|e| matches!(e, GossipEvent::MemberDown(_))),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| matches!(e, GossipEvent::Isolated)),
        "{events:?}"
    );
    assert!(!events.iter().any(|e| matches!(e, GossipEvent::Alone)));
}

#[test]
fn a_lonely_node_announces_to_its_seeds_until_someone_answers() {
    let mut a = core(1);
    let t0 = Instant::now();
    a.set_seeds(vec![([127, 0, 0, 1], 2).into(), ([127, 0, 0, 1], 1).into()]);
    a.handle_timeout(t0);
    let sent: Vec<SocketAddr> = std::iter::from_fn(|| a.poll_transmit())
        .filter_map(|t| match t {
            Transmit::Datagram { to, .. } => Some(to),
            Transmit::Sync { .. } => None,
        })
        .collect();
    assert_eq!(
        sent,
        vec![SocketAddr::from(([127, 0, 0, 1], 2))],
        "never to itself"
    );
    let retry = a.poll_timeout().unwrap();
    assert!(retry <= t0 + GossipConfig::for_test().join_retry_interval);
    a.handle_timeout(t0 + GossipConfig::for_test().join_retry_interval);
    let resent = std::iter::from_fn(|| a.poll_transmit())
        .filter(|t| matches!(t, Transmit::Datagram { .. }))
        .count();
    assert_eq!(resent, 1, "still alone: it retries");
}

#[test]
fn a_node_joined_by_another_still_announces_to_a_seed_it_has_not_met() {
    // b seeds a, but c joins b before b's first announce: b must still reach a, or the
    // cluster stays split in two groups for good.
    let (mut a, mut b, mut c) = (core(1), core(2), core(3));
    let t0 = Instant::now();
    c.set_seeds(vec![([127, 0, 0, 1], 2).into()]);
    c.handle_timeout(t0);
    exchange(&mut c, &mut b, t0);
    assert_eq!(b.active_members(), 1, "c joined b");
    b.set_seeds(vec![([127, 0, 0, 1], 1).into()]);
    let retry = t0 + GossipConfig::for_test().join_retry_interval;
    b.handle_timeout(retry);
    let to_a = std::iter::from_fn(|| b.poll_transmit())
        .filter_map(|t| match t {
            Transmit::Datagram { to, payload } => Some((to, payload)),
            Transmit::Sync { .. } => None,
        })
        .filter(|(to, _)| *to == SocketAddr::from(([127, 0, 0, 1], 1)))
        .collect::<Vec<_>>();
    assert!(!to_a.is_empty(), "b announced itself to its seed a");
    for (_, payload) in to_a {
        let _ = a.handle_datagram(retry, &payload);
    }
    exchange(&mut a, &mut b, retry);
    assert!(a.active_members() >= 1, "a learned of b");
    assert_eq!(b.active_members(), 2, "b knows a and c");
}
