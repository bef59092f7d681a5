//! Unit tests of the durable core: writes before acceptance and before acks, paging of the
//! outbox through the memory window, store lookups below a sender's floor, no responders.

use super::tests::{
    deliveries, events, inst, msg, outcomes, receiver_with, req, sent_ids, transmits,
};
use super::*;
use std::time::Duration;

fn durable(window: usize) -> DeliveryConfig {
    DeliveryConfig {
        durable: true,
        memory_window: window,
        ..DeliveryConfig::for_test()
    }
}

fn durable_sender(window: usize, t0: Instant) -> (Core, Arc<InstanceInfo>) {
    let a = inst("a");
    let mut c = Core::new(durable(window), Box::new(LeastInFlight::default()));
    c.handle_instances(t0, "svc", vec![a.clone()]);
    c.handle_link_up(LinkId(0), LinkKind::Outbound(a.clone()));
    (c, a)
}

fn loaded(id: u64, req: SendRequest) -> LoadedMessage {
    LoadedMessage {
        id,
        req,
        attempts: 0,
    }
}

fn store_ops(c: &mut Core) -> Vec<StoreOp> {
    std::iter::from_fn(|| c.poll_store()).collect()
}

#[test]
fn a_durable_message_is_written_before_it_is_accepted_or_sent_and_deleted_when_acked() {
    let t0 = Instant::now();
    let (mut c, _) = durable_sender(8, t0);
    let id = c.handle_send(t0, req(t0, None));
    assert!(matches!(&store_ops(&mut c)[..], [StoreOp::Put { id: i, .. }] if *i == id));
    assert!(
        transmits(&mut c).is_empty(),
        "nothing on the wire before the write"
    );
    assert!(events(&mut c).is_empty(), "no acceptance before the write");
    c.handle_persisted(t0, 1);
    assert!(matches!(&events(&mut c)[..], [Event::Accepted(i)] if *i == id));
    assert_eq!(sent_ids(&transmits(&mut c)), vec![("a".into(), id, 1)]);
    c.handle_frame(t0, LinkId(0), Frame::Ack { ids: vec![id] })
        .unwrap();
    let ops = store_ops(&mut c);
    assert!(
        matches!(&ops[..], [StoreOp::Resolve { id: i, dead: None, .. }] if *i == id),
        "{ops:?}"
    );
    assert_eq!(c.take_freed(), message_cost(3, 0, 2));
    assert_eq!(c.take_freed(), 0);
}

#[test]
fn beyond_the_memory_window_messages_stay_on_disk_and_are_paged_in_id_order() {
    let t0 = Instant::now();
    let (mut c, _) = durable_sender(2, t0);
    let ids: Vec<u64> = (0..5)
        .map(|_| c.handle_send(t0, req(t0, Some("k"))))
        .collect();
    assert_eq!(store_ops(&mut c).len(), 5, "every message is written");
    c.handle_persisted(t0, 5);
    assert_eq!(c.outgoing(), 2, "only the window is held in memory");
    assert_eq!(sent_ids(&transmits(&mut c)), vec![("a".into(), ids[0], 1)]);
    c.handle_frame(t0, LinkId(0), Frame::Ack { ids: vec![ids[0]] })
        .unwrap();
    let ops = store_ops(&mut c);
    let load = ops.iter().find_map(|op| match op {
        StoreOp::Load { after, max, .. } => Some((*after, *max)),
        _ => None,
    });
    assert_eq!(load, Some((ids[1], 1)), "{ops:?}");
    // Message 2 goes out (its key's head resolved); the page brings message 3 behind it.
    assert_eq!(sent_ids(&transmits(&mut c)), vec![("a".into(), ids[1], 1)]);
    let page = vec![loaded(ids[2], req(t0, Some("k")))];
    c.handle_loaded(t0, "svc", page, false);
    assert_eq!(c.outgoing(), 2);
    assert!(
        transmits(&mut c).is_empty(),
        "message 3 waits behind message 2 of its key"
    );
    c.handle_frame(t0, LinkId(0), Frame::Ack { ids: vec![ids[1]] })
        .unwrap();
    assert_eq!(sent_ids(&transmits(&mut c)), vec![("a".into(), ids[2], 1)]);
}

#[test]
fn restored_ids_continue_from_the_store_and_a_backlog_loads_at_start() {
    let t0 = Instant::now();
    let (mut c, _) = durable_sender(4, t0);
    c.handle_restore(41, vec!["svc".into()], []);
    assert!(matches!(
        &store_ops(&mut c)[..],
        [StoreOp::Load {
            after: 0,
            max: 4,
            ..
        }]
    ));
    let id = c.handle_send(t0, req(t0, None));
    assert_eq!(id, 41);
    assert!(matches!(
        &store_ops(&mut c)[..],
        [StoreOp::Put { id: 41, .. }]
    ));
    // The backlog is on disk: a new message queues behind it there.
    c.handle_persisted(t0, 1);
    assert_eq!(c.outgoing(), 0);
    let older = vec![loaded(7, req(t0, None)), loaded(8, req(t0, None))];
    c.handle_loaded(t0, "svc", older, true);
    assert_eq!(
        sent_ids(&transmits(&mut c)),
        vec![("a".into(), 7, 1), ("a".into(), 8, 1)]
    );
    let ops = store_ops(&mut c);
    assert!(
        matches!(&ops[..], [StoreOp::Load { after: 8, .. }]),
        "spilled during the load, so load again: {ops:?}"
    );
}

#[test]
fn a_message_loaded_past_its_deadline_is_dead_lettered_and_recorded() {
    let t0 = Instant::now();
    let (mut c, _) = durable_sender(4, t0);
    c.handle_restore(10, vec!["svc".into()], []);
    store_ops(&mut c);
    let late = t0 + Duration::from_secs(11);
    c.handle_loaded(late, "svc", vec![loaded(3, req(t0, None))], true);
    assert!(transmits(&mut c).is_empty());
    let outs = outcomes(events(&mut c));
    assert!(
        matches!(&outs[..], [(3, Outcome::DeadLettered(_))]),
        "{outs:?}"
    );
    assert!(matches!(
        &store_ops(&mut c)[..],
        [StoreOp::Resolve {
            id: 3,
            dead: Some(_),
            ..
        }]
    ));
}

#[test]
fn no_responders_fails_at_once_on_a_known_empty_service_and_other_messages_wait() {
    let t0 = Instant::now();
    let mut c = Core::new(
        DeliveryConfig::for_test(),
        Box::new(LeastInFlight::default()),
    );
    let fast = SendRequest {
        no_responders: true,
        ..req(t0, None)
    };
    // Unknown yet: even a no-responders message waits for the first instance list.
    let early = c.handle_send(t0, fast.clone());
    let waiting = c.handle_send(t0, req(t0, None));
    assert!(outcomes(events(&mut c)).is_empty());
    c.handle_instances(t0, "svc", vec![]);
    let outs = outcomes(events(&mut c));
    assert!(
        matches!(&outs[..], [(i, Outcome::DeadLettered(d))] if *i == early && d.reason == DeadLetterReason::NoResponders),
        "{outs:?}"
    );
    let late = c.handle_send(t0, fast);
    let outs = outcomes(events(&mut c));
    assert!(matches!(&outs[..], [(i, Outcome::DeadLettered(_))] if *i == late));
    let a = inst("a");
    c.handle_link_up(LinkId(0), LinkKind::Outbound(a.clone()));
    c.handle_instances(t0, "svc", vec![a]);
    assert_eq!(sent_ids(&transmits(&mut c)), vec![("a".into(), waiting, 1)]);
}

#[test]
fn a_durable_receiver_acks_after_the_record_and_looks_up_retries_below_its_floor() {
    let (mut r, t0) = receiver_with(durable(8));
    r.handle_restore(1, vec![], [(super::tests::SESSION, 5)]);
    r.handle_frame(t0, LinkId(7), msg(9, false)).unwrap();
    let ds = deliveries(events(&mut r));
    assert_eq!(ds.len(), 1, "above the floor: delivered without a lookup");
    r.handle_app_outcome(t0, ds[0].token, AppOutcome::Ack);
    assert!(matches!(
        &store_ops(&mut r)[..],
        [StoreOp::Complete {
            id: 9,
            reply: None,
            ..
        }]
    ));
    assert!(
        transmits(&mut r).is_empty(),
        "no ack before the record is durable"
    );
    r.handle_persisted(t0, 1);
    assert!(
        matches!(&transmits(&mut r)[..], [Transmit::ToLink(_, Frame::Ack { ids })] if ids == &vec![9])
    );

    r.handle_frame(t0, LinkId(7), msg(3, false)).unwrap();
    r.handle_frame(t0, LinkId(7), msg(4, false)).unwrap();
    assert!(
        deliveries(events(&mut r)).is_empty(),
        "at or below the floor: looked up first"
    );
    let ops = store_ops(&mut r);
    assert!(
        matches!(
            &ops[..],
            [StoreOp::Lookup { id: 3, .. }, StoreOp::Lookup { id: 4, .. }]
        ),
        "{ops:?}"
    );
    r.handle_lookup(t0, super::tests::SESSION, 3, Some(None));
    assert!(
        deliveries(events(&mut r)).is_empty(),
        "handled before: answered from the record"
    );
    assert!(
        matches!(&transmits(&mut r)[..], [Transmit::ToLink(_, Frame::Ack { ids })] if ids == &vec![3])
    );
    r.handle_lookup(t0, super::tests::SESSION, 4, None);
    assert_eq!(
        deliveries(events(&mut r)).len(),
        1,
        "never handled: delivered"
    );
}

#[test]
fn a_retried_attempt_is_recorded_and_resumed_attempts_count_towards_the_maximum() {
    let t0 = Instant::now();
    let (mut c, _) = durable_sender(4, t0);
    let mut r = req(t0, None);
    r.max_attempts = std::num::NonZeroU32::new(3);
    r.ack_timeout = Some(Duration::from_millis(200));
    let id = c.handle_send(t0, r.clone());
    store_ops(&mut c);
    c.handle_persisted(t0, 1);
    assert_eq!(sent_ids(&transmits(&mut c)), vec![("a".into(), id, 1)]);
    // The message's own ack timeout (not the configured one) ends attempt 1.
    let t1 = t0 + Duration::from_millis(201);
    c.handle_timeout(t1);
    let ops = store_ops(&mut c);
    assert!(
        matches!(&ops[..], [StoreOp::Attempted { id: i, attempts: 1, .. }] if *i == id),
        "{ops:?}"
    );

    // After a restart, a message that had 2 failed attempts gets only its third.
    let (mut c, _) = durable_sender(4, t0);
    c.handle_restore(10, vec!["svc".into()], []);
    store_ops(&mut c);
    let resumed = LoadedMessage {
        id: 5,
        req: r,
        attempts: 2,
    };
    c.handle_loaded(t0, "svc", vec![resumed], true);
    assert_eq!(sent_ids(&transmits(&mut c)), vec![("a".into(), 5, 3)]);
    c.handle_timeout(t0 + Duration::from_millis(201));
    let outs = outcomes(events(&mut c));
    assert!(
        matches!(&outs[..], [(5, Outcome::DeadLettered(d))]
            if d.attempts == 3 && matches!(d.reason, DeadLetterReason::AttemptsExhausted { .. })),
        "{outs:?}"
    );
}

#[test]
fn a_retried_request_handled_before_a_restart_is_answered_with_its_stored_reply() {
    let (mut r, t0) = receiver_with(durable(8));
    r.handle_restore(1, vec![], [(super::tests::SESSION, 5)]);
    r.handle_frame(t0, LinkId(7), msg(3, true)).unwrap();
    assert!(
        matches!(&store_ops(&mut r)[..], [StoreOp::Lookup { id: 3, .. }]),
        "at or below the floor: looked up first"
    );
    r.handle_lookup(
        t0,
        super::tests::SESSION,
        3,
        Some(Some(Bytes::from_static(b"stored"))),
    );
    assert!(
        deliveries(events(&mut r)).is_empty(),
        "handled before the restart: not delivered again"
    );
    let reply = |ts: &[Transmit]| {
        matches!(ts, [Transmit::ToLink(LinkId(7), Frame::Reply { id: 3, payload })]
            if payload.as_ref() == b"stored")
    };
    let ts = transmits(&mut r);
    assert!(reply(&ts), "the stored reply, not an ack: {ts:?}");

    // The answer is remembered: the next copy is answered without another lookup.
    r.handle_frame(t0, LinkId(7), msg(3, true)).unwrap();
    assert!(store_ops(&mut r).is_empty(), "looked up twice");
    let ts = transmits(&mut r);
    assert!(reply(&ts), "the remembered reply: {ts:?}");
}
