//! Promises of docs/protocol.md checked on the sans-IO delivery core and the frame codec
//! directly (no sockets, no clock): wire limits, a second HELLO, the reply cache bound, the
//! newest stream getting a duplicate's ack, the overload reason and unhealthiness expiring.

use bytes::{Bytes, BytesMut};
use peer_sdk::DeliveryConfig;
use peer_sdk::proto::frame::{MAX_ACK_IDS, MAX_KEY_LEN};
use peer_sdk::proto::{
    AppOutcome, Core, Decoder, Delivery, ErrorCode, Event, Frame, InstanceInfo, LeastInFlight,
    LinkId, LinkKind, NackAction, SendRequest, Transmit,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SESSION: u64 = 99;

fn hello(session: u64) -> Frame {
    Frame::Hello {
        version: 1,
        session,
        service: "src".into(),
        instance: "src-1".into(),
    }
}

/// A receiver core whose inbound links `links` have each said hello for [`SESSION`].
fn receiver(cfg: DeliveryConfig, links: &[u64]) -> (Core, Instant) {
    let t0 = Instant::now();
    let mut r = Core::new(cfg, Box::new(LeastInFlight::default()));
    for &l in links {
        r.handle_link_up(LinkId(l), LinkKind::Inbound);
        r.handle_frame(t0, LinkId(l), hello(SESSION)).unwrap();
    }
    (r, t0)
}

fn message(id: u64, request: bool, key: Option<Bytes>) -> Frame {
    Frame::Message {
        id,
        attempt: 1,
        request,
        key,
        topic: None,
        payload: Bytes::from_static(b"p"),
    }
}

fn deliveries(c: &mut Core) -> Vec<Delivery> {
    std::iter::from_fn(|| c.poll_event())
        .filter_map(|e| match e {
            Event::Deliver(d) => Some(d),
            _ => None,
        })
        .collect()
}

fn transmits(c: &mut Core) -> Vec<Transmit> {
    std::iter::from_fn(|| c.poll_transmit()).collect()
}

fn decode(frame_bytes: &[u8]) -> Result<Option<Frame>, ErrorCode> {
    let mut buf = BytesMut::from(frame_bytes);
    Decoder::new(peer_sdk::proto::frame::DEFAULT_MAX_FRAME_SIZE)
        .decode(&mut buf)
        .map_err(|e| e.code)
}

/// A frame with `body` (type byte included) behind its u32 length prefix.
fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

#[test]
fn ack_count_must_be_between_one_and_4096() {
    assert_eq!(MAX_ACK_IDS, 4096);
    let ack = |count: usize| {
        let mut body = vec![0x03];
        body.extend_from_slice(&(count as u16).to_be_bytes());
        for id in 0..count as u64 {
            body.extend_from_slice(&id.to_be_bytes());
        }
        framed(&body)
    };
    let full = decode(&ack(MAX_ACK_IDS)).unwrap();
    assert!(matches!(full, Some(Frame::Ack { ref ids }) if ids.len() == MAX_ACK_IDS));
    assert_eq!(
        decode(&ack(MAX_ACK_IDS + 1)),
        Err(ErrorCode::MalformedFrame)
    );
    assert_eq!(decode(&ack(0)), Err(ErrorCode::MalformedFrame));
}

#[test]
fn ordering_keys_longer_than_1024_bytes_are_malformed() {
    assert_eq!(MAX_KEY_LEN, 1024);
    let with_key = |len: usize| message(1, false, Some(Bytes::from(vec![b'k'; len]))).to_bytes();
    let fits = decode(&with_key(MAX_KEY_LEN)).unwrap();
    assert!(
        matches!(fits, Some(Frame::Message { key: Some(ref k), .. }) if k.len() == MAX_KEY_LEN)
    );
    assert_eq!(
        decode(&with_key(MAX_KEY_LEN + 1)),
        Err(ErrorCode::MalformedFrame)
    );
}

#[test]
fn a_second_hello_on_a_link_is_an_unexpected_frame() {
    let (mut r, t0) = receiver(DeliveryConfig::for_test(), &[7]);
    let err = r.handle_frame(t0, LinkId(7), hello(SESSION)).unwrap_err();
    assert_eq!(err.code, ErrorCode::UnexpectedFrame);
    let err = r
        .handle_frame(t0, LinkId(7), hello(SESSION + 1))
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::UnexpectedFrame);
}

/// Replies are cached for the last `reply_cache` requests only; an older duplicate gets a
/// final NACK instead of running the handler again (it is still in the dedup window).
#[test]
fn the_reply_cache_keeps_only_the_newest_replies() {
    let cfg = DeliveryConfig {
        reply_cache: 2,
        ..DeliveryConfig::for_test()
    };
    let (mut r, t0) = receiver(cfg, &[7]);
    for id in 1..=3 {
        r.handle_frame(t0, LinkId(7), message(id, true, None))
            .unwrap();
        let d = deliveries(&mut r);
        let reply = AppOutcome::Reply(Bytes::from(format!("answer-{id}")));
        r.handle_app_outcome(t0, d[0].token, reply);
    }
    transmits(&mut r);
    for id in 1..=3 {
        r.handle_frame(t0, LinkId(7), message(id, true, None))
            .unwrap();
    }
    assert!(deliveries(&mut r).is_empty(), "no handler runs twice");
    let answers = transmits(&mut r);
    assert!(
        matches!(
            &answers[0],
            Transmit::ToLink(
                _,
                Frame::Nack {
                    id: 1,
                    action: NackAction::DeadLetter,
                    ..
                }
            )
        ),
        "{answers:?}"
    );
    for (t, id) in answers[1..].iter().zip(2u64..) {
        let expected = format!("answer-{id}");
        assert!(
            matches!(t, Transmit::ToLink(_, Frame::Reply { id: i, payload }) if *i == id && payload == expected.as_bytes()),
            "{answers:?}"
        );
    }
}

/// A duplicate arriving on a newer stream while the first copy is still being handled is
/// not delivered again, and the ack goes to the newest stream.
#[test]
fn a_duplicates_ack_goes_to_the_newest_stream() {
    let (mut r, t0) = receiver(DeliveryConfig::for_test(), &[7, 8]);
    r.handle_frame(t0, LinkId(7), message(1, false, None))
        .unwrap();
    let d = deliveries(&mut r);
    // The delivery names its sender as the HELLO introduced it.
    assert_eq!(
        (&*d[0].from_service, &*d[0].from_instance),
        ("src", "src-1")
    );
    r.handle_frame(t0, LinkId(8), message(1, false, None))
        .unwrap();
    assert!(deliveries(&mut r).is_empty());
    r.handle_app_outcome(t0, d[0].token, AppOutcome::Ack);
    r.handle_timeout(t0 + Duration::from_secs(1));
    let ts = transmits(&mut r);
    assert!(
        matches!(&ts[..], [Transmit::ToLink(LinkId(8), Frame::Ack { ids })] if ids == &vec![1]),
        "{ts:?}"
    );
}

#[test]
fn an_overloaded_receiver_says_so_in_its_nack() {
    let cfg = DeliveryConfig {
        max_pending_deliveries: 1,
        ..DeliveryConfig::for_test()
    };
    let (mut r, t0) = receiver(cfg, &[7]);
    r.handle_frame(t0, LinkId(7), message(1, false, None))
        .unwrap();
    r.handle_frame(t0, LinkId(7), message(2, false, None))
        .unwrap();
    let ts = transmits(&mut r);
    assert!(
        matches!(&ts[..], [Transmit::ToLink(_, Frame::Nack { id: 2, action: NackAction::Retry, reason })] if reason == "receiver overloaded"),
        "{ts:?}"
    );
}

fn instance(name: &str, port: u16) -> Arc<InstanceInfo> {
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    Arc::new(InstanceInfo::new("svc", name, addr, None))
}

fn send(c: &mut Core, now: Instant) -> Option<String> {
    let req = SendRequest {
        service: "svc".into(),
        target: None,
        key: None,
        payload: Bytes::from_static(b"x"),
        request: false,
        deadline: now + Duration::from_secs(60),
        no_responders: false,
        ack_timeout: None,
        max_attempts: None,
    };
    c.handle_send(now, req);
    transmits(c).into_iter().find_map(|t| match t {
        Transmit::ToInstance(inst, Frame::Message { .. }) => Some(inst.instance.clone()),
        _ => None,
    })
}

/// An unreachable instance is avoided for `unhealthy_for`, then chosen again.
#[test]
fn unhealthiness_expires_after_unhealthy_for() {
    let cfg = DeliveryConfig {
        unhealthy_for: Duration::from_secs(2),
        ..DeliveryConfig::for_test()
    };
    let t0 = Instant::now();
    let mut c = Core::new(cfg, Box::new(LeastInFlight::default()));
    let (a, b) = (instance("a", 9001), instance("b", 9002));
    c.handle_link_up(LinkId(1), LinkKind::Outbound(a.clone()));
    c.handle_link_up(LinkId(2), LinkKind::Outbound(b.clone()));
    c.handle_instances(t0, "svc", vec![a.clone(), b.clone()]);
    let refused = peer_sdk::proto::Cause::Unreachable {
        instance: "a".into(),
        detail: "refused".into(),
    };
    c.handle_unreachable(t0, &a, refused);
    // Messages stay in flight (never acked), so least-in-flight would pick `a` if allowed.
    let before = t0 + Duration::from_millis(1900);
    assert_eq!(send(&mut c, t0).as_deref(), Some("b"));
    assert_eq!(send(&mut c, before).as_deref(), Some("b"), "still avoided");
    let after = t0 + Duration::from_millis(2100);
    assert_eq!(
        send(&mut c, after).as_deref(),
        Some("a"),
        "avoided for good"
    );
}

/// The defaults docs/protocol.md states, pinned to the numbers written there.
#[test]
fn delivery_defaults_are_the_documented_ones() {
    let d = DeliveryConfig::default();
    assert_eq!(d.ack_timeout, Duration::from_secs(5));
    assert_eq!(d.deadline, Duration::from_secs(30));
    assert_eq!(d.backoff_initial, Duration::from_millis(20));
    assert_eq!(d.backoff_max, Duration::from_secs(2));
    assert_eq!(d.unhealthy_for, Duration::from_secs(2));
    assert_eq!(d.dedup_window, 16_384);
    assert_eq!(d.reply_cache, 1_024);
    assert_eq!(peer_sdk::config::DEFAULT_WINDOW, 256);
    assert_eq!(
        peer_sdk::proto::frame::DEFAULT_MAX_FRAME_SIZE,
        1024 * 1024 + 1024
    );
}
