//! Unit tests of the delivery core, driven by hand with a virtual clock.

use super::*;
use std::time::Duration;

pub(super) fn inst(name: &str) -> Arc<InstanceInfo> {
    Arc::new(InstanceInfo::new(
        "svc",
        name,
        "127.0.0.1:9".parse().unwrap(),
        None,
    ))
}

pub(super) fn core() -> Core {
    Core::new(
        DeliveryConfig::for_test(),
        Box::new(LeastInFlight::default()),
    )
}

pub(super) fn req(t0: Instant, key: Option<&'static str>) -> SendRequest {
    SendRequest {
        service: "svc".into(),
        target: None,
        key: key.map(|k| Bytes::from_static(k.as_bytes())),
        payload: Bytes::from_static(b"hi"),
        request: false,
        deadline: t0 + Duration::from_secs(10),
        ack_timeout: None,
        max_attempts: None,
        no_responders: false,
    }
}

pub(super) fn transmits(c: &mut Core) -> Vec<Transmit> {
    std::iter::from_fn(|| c.poll_transmit()).collect()
}

pub(super) fn events(c: &mut Core) -> Vec<Event> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

pub(super) fn sent_ids(ts: &[Transmit]) -> Vec<(String, u64, u32)> {
    ts.iter()
        .filter_map(|t| match t {
            Transmit::ToInstance(i, Frame::Message { id, attempt, .. }) => {
                Some((i.instance.clone(), *id, *attempt))
            }
            _ => None,
        })
        .collect()
}

pub(super) fn outcomes(evs: Vec<Event>) -> Vec<(u64, Outcome)> {
    evs.into_iter()
        .filter_map(|e| match e {
            Event::Outcome(id, o) => Some((id, o)),
            _ => None,
        })
        .collect()
}

pub(super) fn sender_with(instances: &[&Arc<InstanceInfo>], t0: Instant) -> Core {
    let mut c = core();
    c.handle_instances(t0, "svc", instances.iter().map(|i| (*i).clone()).collect());
    for (n, i) in instances.iter().enumerate() {
        c.handle_link_up(LinkId(n as u64), LinkKind::Outbound((*i).clone()));
    }
    c
}

#[test]
fn acked_message_completes_once() {
    let t0 = Instant::now();
    let a = inst("a");
    let mut c = sender_with(&[&a], t0);
    let id = c.handle_send(t0, req(t0, None));
    assert_eq!(sent_ids(&transmits(&mut c)), vec![("a".into(), id, 1)]);
    c.handle_frame(t0, LinkId(0), Frame::Ack { ids: vec![id, id] })
        .unwrap();
    let outs = outcomes(events(&mut c));
    assert_eq!(outs.len(), 1);
    assert!(matches!(outs[0], (i, Outcome::Acked) if i == id));
    assert_eq!(c.outgoing(), 0);
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn unknown_service_asks_for_instances_and_sends_when_they_arrive() {
    let t0 = Instant::now();
    let mut c = core();
    let id = c.handle_send(t0, req(t0, None));
    assert!(transmits(&mut c).is_empty());
    assert!(matches!(&events(&mut c)[..], [Event::NeedInstances(s)] if s == "svc"));
    c.handle_instances(t0, "svc", vec![inst("a")]);
    assert_eq!(sent_ids(&transmits(&mut c)), vec![("a".into(), id, 1)]);
}

#[test]
fn ack_timeout_retries_on_another_instance_with_next_attempt_number() {
    let t0 = Instant::now();
    let (a, b) = (inst("a"), inst("b"));
    let mut c = sender_with(&[&a, &b], t0);
    let id = c.handle_send(t0, req(t0, None));
    let first = sent_ids(&transmits(&mut c))[0].0.clone();
    let t1 = c.poll_timeout().unwrap();
    assert_eq!(t1, t0 + DeliveryConfig::for_test().ack_timeout);
    c.handle_timeout(t1);
    let t2 = c.poll_timeout().unwrap();
    c.handle_timeout(t2);
    let retry = sent_ids(&transmits(&mut c));
    assert_eq!(retry.len(), 1);
    assert_ne!(retry[0].0, first);
    assert_eq!((retry[0].1, retry[0].2), (id, 2));
}

#[test]
fn deadline_dead_letters_with_reason_and_attempts() {
    let t0 = Instant::now();
    let a = inst("a");
    let mut c = sender_with(&[&a], t0);
    let mut r = req(t0, None);
    r.deadline = t0 + Duration::from_secs(2);
    let id = c.handle_send(t0, r);
    let mut now = t0;
    for _ in 0..100 {
        let Some(t) = c.poll_timeout() else { break };
        now = t;
        c.handle_timeout(now);
    }
    assert_eq!(now, t0 + Duration::from_secs(2));
    let outs = outcomes(events(&mut c));
    let [(oid, Outcome::DeadLettered(dl))] = &outs[..] else {
        panic!("{outs:?}")
    };
    assert_eq!(*oid, id);
    assert!(dl.attempts >= 2, "{dl:?}");
    assert!(
        matches!(&dl.reason, DeadLetterReason::DeadlineExceeded { last_error: Some(Cause::AckTimeout { instance, .. }) } if instance == "a")
    );
}

#[test]
fn nack_to_dead_letter_is_final_and_nack_retry_retries() {
    let t0 = Instant::now();
    let a = inst("a");
    let mut c = sender_with(&[&a], t0);
    let id1 = c.handle_send(t0, req(t0, None));
    let id2 = c.handle_send(t0, req(t0, None));
    transmits(&mut c);
    c.handle_frame(
        t0,
        LinkId(0),
        Frame::Nack {
            id: id1,
            action: NackAction::DeadLetter,
            reason: "bad".into(),
        },
    )
    .unwrap();
    c.handle_frame(
        t0,
        LinkId(0),
        Frame::Nack {
            id: id2,
            action: NackAction::Retry,
            reason: "busy".into(),
        },
    )
    .unwrap();
    let outs = outcomes(events(&mut c));
    assert!(
        matches!(&outs[..], [(i, Outcome::DeadLettered(d))] if *i == id1 && d.reason == DeadLetterReason::Rejected { reason: "bad".into() })
    );
    let t = c.poll_timeout().unwrap();
    c.handle_timeout(t);
    assert_eq!(sent_ids(&transmits(&mut c)), vec![("a".into(), id2, 2)]);
}

#[test]
fn same_key_is_released_one_at_a_time_in_send_order() {
    let t0 = Instant::now();
    let a = inst("a");
    let mut c = sender_with(&[&a], t0);
    let k1 = c.handle_send(t0, req(t0, Some("k")));
    let k2 = c.handle_send(t0, req(t0, Some("k")));
    let other = c.handle_send(t0, req(t0, Some("other")));
    let ids: Vec<u64> = sent_ids(&transmits(&mut c))
        .into_iter()
        .map(|s| s.1)
        .collect();
    assert_eq!(ids, vec![k1, other]);
    c.handle_frame(t0, LinkId(0), Frame::Ack { ids: vec![k1] })
        .unwrap();
    let ids: Vec<u64> = sent_ids(&transmits(&mut c))
        .into_iter()
        .map(|s| s.1)
        .collect();
    assert_eq!(ids, vec![k2]);
}

#[test]
fn unreachable_instance_is_avoided_and_in_flight_messages_move() {
    let t0 = Instant::now();
    let (a, b) = (inst("a"), inst("b"));
    let mut c = sender_with(&[&a, &b], t0);
    let id = c.handle_send(t0, req(t0, None));
    let first = sent_ids(&transmits(&mut c))[0].0.clone();
    let (bad, good) = if first == "a" { (&a, "b") } else { (&b, "a") };
    let refused = Cause::Unreachable {
        instance: bad.instance.clone(),
        detail: "refused".into(),
    };
    c.handle_unreachable(t0, bad, refused);
    let t = c.poll_timeout().unwrap();
    assert!(t < t0 + Duration::from_millis(50));
    c.handle_timeout(t);
    assert_eq!(sent_ids(&transmits(&mut c)), vec![(good.into(), id, 2)]);
    let id2 = c.handle_send(t, req(t0, None));
    assert_eq!(sent_ids(&transmits(&mut c)), vec![(good.into(), id2, 1)]);
}

#[test]
fn shutdown_dead_letters_everything_pending() {
    let t0 = Instant::now();
    let a = inst("a");
    let mut c = sender_with(&[&a], t0);
    c.handle_send(t0, req(t0, Some("k")));
    c.handle_send(t0, req(t0, Some("k")));
    c.handle_shutdown(t0);
    let outs = outcomes(events(&mut c));
    assert_eq!(outs.len(), 2);
    assert!(outs.iter().all(
        |(_, o)| matches!(o, Outcome::DeadLettered(d) if d.reason == DeadLetterReason::ShuttingDown)
    ));
    assert!(transmits(&mut c).len() <= 1);
    assert_eq!(c.outgoing(), 0);
}

/// Session id of the sender in the receiver tests.
pub(super) const SESSION: u64 = 42;

/// A receiver with the test config whose inbound link 7 has said hello.
fn receiver() -> (Core, Instant) {
    receiver_with(DeliveryConfig::for_test())
}

/// A receiver with `cfg` whose inbound link 7 has said hello (session [`SESSION`]).
pub(super) fn receiver_with(cfg: DeliveryConfig) -> (Core, Instant) {
    let t0 = Instant::now();
    let mut r = Core::new(cfg, Box::new(LeastInFlight::default()));
    r.handle_link_up(LinkId(7), LinkKind::Inbound);
    let hello = Frame::Hello {
        version: 1,
        session: SESSION,
        service: "src".into(),
        instance: "src-1".into(),
    };
    r.handle_frame(t0, LinkId(7), hello).unwrap();
    (r, t0)
}

pub(super) fn msg(id: u64, request: bool) -> Frame {
    Frame::Message {
        id,
        attempt: 1,
        request,
        key: None,
        topic: None,
        payload: Bytes::from_static(b"p"),
    }
}

pub(super) fn deliveries(evs: Vec<Event>) -> Vec<Delivery> {
    evs.into_iter()
        .filter_map(|e| match e {
            Event::Deliver(d) => Some(d),
            _ => None,
        })
        .collect()
}

#[test]
fn duplicate_messages_reach_the_application_once_and_are_re_acked() {
    let (mut r, t0) = receiver();
    r.handle_frame(t0, LinkId(7), msg(1, false)).unwrap();
    r.handle_frame(t0, LinkId(7), msg(1, false)).unwrap();
    let ds = deliveries(events(&mut r));
    assert_eq!(ds.len(), 1);
    assert_eq!(&*ds[0].from_instance, "src-1");
    assert_eq!(r.pending_deliveries(), 1);
    r.handle_app_outcome(t0, ds[0].token, AppOutcome::Ack);
    r.handle_frame(t0, LinkId(7), msg(2, false)).unwrap();
    let d2 = deliveries(events(&mut r));
    r.handle_app_outcome(t0, d2[0].token, AppOutcome::Ack);
    let ts = transmits(&mut r);
    assert!(
        matches!(&ts[..], [Transmit::ToLink(LinkId(7), Frame::Ack { ids })] if ids == &vec![1, 2]),
        "{ts:?}"
    );
    r.handle_frame(t0, LinkId(7), msg(1, false)).unwrap();
    assert!(deliveries(events(&mut r)).is_empty());
    assert!(
        matches!(&transmits(&mut r)[..], [Transmit::ToLink(_, Frame::Ack { ids })] if ids == &vec![1])
    );
}

#[test]
fn retried_request_gets_the_cached_reply() {
    let (mut r, t0) = receiver();
    r.handle_frame(t0, LinkId(7), msg(5, true)).unwrap();
    let d = deliveries(events(&mut r));
    r.handle_app_outcome(
        t0,
        d[0].token,
        AppOutcome::Reply(Bytes::from_static(b"answer")),
    );
    r.handle_frame(t0, LinkId(7), msg(5, true)).unwrap();
    let ts = transmits(&mut r);
    assert_eq!(ts.len(), 2);
    for t in ts {
        assert!(
            matches!(t, Transmit::ToLink(_, Frame::Reply { id: 5, ref payload }) if payload == "answer")
        );
    }
}

#[test]
fn nacked_delivery_is_redelivered_on_retry() {
    let (mut r, t0) = receiver();
    r.handle_frame(t0, LinkId(7), msg(3, false)).unwrap();
    let d = deliveries(events(&mut r));
    r.handle_app_outcome(
        t0,
        d[0].token,
        AppOutcome::Nack(NackAction::Retry, "later".into()),
    );
    assert!(matches!(
        &transmits(&mut r)[..],
        [Transmit::ToLink(_, Frame::Nack { id: 3, .. })]
    ));
    r.handle_frame(t0, LinkId(7), msg(3, false)).unwrap();
    assert_eq!(deliveries(events(&mut r)).len(), 1);
}

#[test]
fn message_before_hello_and_acks_on_inbound_links_are_protocol_errors() {
    let t0 = Instant::now();
    let mut r = core();
    r.handle_link_up(LinkId(1), LinkKind::Inbound);
    assert_eq!(
        r.handle_frame(t0, LinkId(1), msg(1, false))
            .unwrap_err()
            .code,
        ErrorCode::UnexpectedFrame
    );
    assert_eq!(
        r.handle_frame(t0, LinkId(1), Frame::Ack { ids: vec![1] })
            .unwrap_err()
            .code,
        ErrorCode::UnexpectedFrame
    );
    r.handle_link_up(LinkId(2), LinkKind::Outbound(inst("a")));
    assert_eq!(
        r.handle_frame(t0, LinkId(2), msg(1, false))
            .unwrap_err()
            .code,
        ErrorCode::UnexpectedFrame
    );
}

#[test]
fn receiver_sheds_load_beyond_max_pending_deliveries() {
    let cfg = DeliveryConfig {
        max_pending_deliveries: 1,
        ..DeliveryConfig::for_test()
    };
    let (mut r, t0) = receiver_with(cfg);
    r.handle_frame(t0, LinkId(7), msg(1, false)).unwrap();
    r.handle_frame(t0, LinkId(7), msg(2, false)).unwrap();
    assert_eq!(deliveries(events(&mut r)).len(), 1);
    let ts = transmits(&mut r);
    assert!(matches!(
        &ts[..],
        [Transmit::ToLink(
            _,
            Frame::Nack {
                id: 2,
                action: NackAction::Retry,
                ..
            }
        )]
    ));
}

#[test]
fn dedup_window_is_bounded_and_idle_senders_are_swept() {
    let cfg = DeliveryConfig {
        dedup_window: 4,
        sender_idle: Duration::from_secs(4),
        ..DeliveryConfig::for_test()
    };
    let (mut r, t0) = receiver_with(cfg);
    for id in 1..=10 {
        r.handle_frame(t0, LinkId(7), msg(id, false)).unwrap();
        let d = deliveries(events(&mut r));
        r.handle_app_outcome(t0, d[0].token, AppOutcome::Ack);
    }
    let sender = r.inbox.senders.get(&SESSION).unwrap();
    assert_eq!(sender.completed.len(), 4);
    r.handle_link_down(t0, LinkId(7), "closed");
    let later = t0 + Duration::from_secs(10);
    r.handle_timeout(later);
    assert!(r.inbox.senders.is_empty());
}
