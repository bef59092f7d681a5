//! Real QUIC on loopback, instances wired statically (no directory).

mod common;

use bytes::Bytes;
use common::{peer, serve};
use parking_lot::Mutex;
use peer_sdk::{DeadLetterReason, Identity, InstanceInfo, Nack, SendError, SendOptions};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[tokio::test]
async fn send_completes_when_the_receiving_handler_acked() {
    let b = peer("orders", &[]).await;
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    serve(&b, move |m| {
        g.lock().push((
            m.payload().clone(),
            m.from_service().to_owned(),
            m.attempt(),
        ));
        m.ack();
    });
    let a = peer("billing", &[b.info()]).await;
    a.send("orders", &b"hello"[..]).await.unwrap();
    assert_eq!(
        got.lock().clone(),
        vec![(Bytes::from_static(b"hello"), "billing".to_owned(), 1)]
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn request_returns_the_handlers_reply() {
    let b = peer("echo", &[]).await;
    serve(&b, |m| {
        let mut out = b"re: ".to_vec();
        out.extend_from_slice(m.payload());
        m.reply(out);
    });
    let a = peer("client", &[b.info()]).await;
    for i in 0..20 {
        let reply = a.request("echo", format!("q{i}")).await.unwrap();
        assert_eq!(reply, Bytes::from(format!("re: q{i}")));
    }
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn broadcast_reports_an_outcome_per_instance() {
    let b1 = peer("cache", &[]).await;
    let b2 = peer("cache", &[]).await;
    let count = Arc::new(AtomicUsize::new(0));
    for b in [&b1, &b2] {
        let c = count.clone();
        serve(b, move |m| {
            c.fetch_add(1, Ordering::SeqCst);
            m.ack();
        });
    }
    // A third instance that refuses to ack (nacks to dead letter).
    let b3 = peer("cache", &[]).await;
    serve(&b3, |m| m.nack(Nack::DeadLetter("read-only".into())));
    let a = peer("admin", &[b1.info(), b2.info(), b3.info()]).await;
    let outcomes = a.broadcast("cache", &b"invalidate"[..]).await.unwrap();
    assert_eq!(outcomes.len(), 3);
    assert_eq!(count.load(Ordering::SeqCst), 2);
    for o in &outcomes {
        if o.instance == b3.instance() {
            assert!(
                matches!(&o.result, Err(SendError::DeadLettered(d)) if matches!(d.reason, DeadLetterReason::Rejected { .. }))
            );
        } else {
            assert!(o.result.is_ok(), "{o:?}");
        }
    }
    for p in [&a, &b1, &b2, &b3] {
        p.shutdown().await;
    }
}

#[tokio::test]
async fn ordered_channel_is_delivered_in_send_order_across_instances() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut receivers = Vec::new();
    for _ in 0..2 {
        let r = peer("ledger", &[]).await;
        let s = seen.clone();
        serve(&r, move |m| {
            let n: u32 = std::str::from_utf8(m.payload()).unwrap().parse().unwrap();
            s.lock().push((m.key().cloned(), n));
            m.ack();
        });
        receivers.push(r);
    }
    let a = peer(
        "writer",
        &receivers.iter().map(|r| r.info()).collect::<Vec<_>>(),
    )
    .await;
    let mut pending = Vec::new();
    for i in 0..200u32 {
        let key = if i % 2 == 0 { "even" } else { "odd" };
        pending.push(
            a.enqueue("ledger", i.to_string(), SendOptions::ordered(key))
                .await
                .unwrap(),
        );
    }
    for p in pending {
        p.await.unwrap();
    }
    let seen = seen.lock().clone();
    assert_eq!(seen.len(), 200);
    for key in ["even", "odd"] {
        let order: Vec<u32> = seen
            .iter()
            .filter(|(k, _)| k.as_deref() == Some(key.as_bytes()))
            .map(|(_, n)| *n)
            .collect();
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(order, sorted, "key {key}");
        assert_eq!(order.len(), 100);
    }
    a.shutdown().await;
    for r in receivers {
        r.shutdown().await;
    }
}

#[tokio::test]
async fn nack_to_dead_letter_fails_the_send_and_reaches_the_dead_letter_sink() {
    let b = peer("strict", &[]).await;
    serve(&b, |m| m.nack(Nack::DeadLetter("schema mismatch".into())));
    let a = peer("loose", &[b.info()]).await;
    let mut dead = a.dead_letters();
    let err = a.send("strict", &b"bad"[..]).await.unwrap_err();
    let SendError::DeadLettered(dl) = err else {
        panic!("{err:?}")
    };
    assert_eq!(
        dl.reason,
        DeadLetterReason::Rejected {
            reason: "schema mismatch".into()
        }
    );
    assert_eq!(dl.attempts, 1);
    let from_sink = dead.next().await.unwrap();
    assert_eq!(from_sink.id, dl.id);
    assert_eq!(from_sink.payload, Bytes::from_static(b"bad"));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn nack_retry_and_dropped_messages_are_redelivered() {
    let b = peer("flaky", &[]).await;
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let at = attempts.clone();
    serve(&b, move |m| {
        at.lock().push(m.attempt());
        match m.attempt() {
            1 => m.nack(Nack::Retry("not yet".into())),
            2 => drop(m),
            _ => m.ack(),
        }
    });
    let a = peer("steady", &[b.info()]).await;
    a.send("flaky", &b"x"[..]).await.unwrap();
    assert_eq!(attempts.lock().clone(), vec![1, 2, 3]);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn unacked_message_is_dead_lettered_at_its_deadline() {
    let b = peer("slow", &[]).await;
    let held = Arc::new(Mutex::new(Vec::new()));
    let h = held.clone();
    serve(&b, move |m| h.lock().push(m)); // never settled while the test runs
    let a = peer("impatient", &[b.info()]).await;
    let mut dead = a.dead_letters();
    let started = tokio::time::Instant::now();
    let err = a
        .send_with(
            "slow",
            &b"x"[..],
            SendOptions::default().deadline(Duration::from_millis(1500)),
        )
        .await;
    let elapsed = started.elapsed();
    let Err(SendError::DeadLettered(dl)) = err else {
        panic!("{err:?}")
    };
    assert!(
        matches!(dl.reason, DeadLetterReason::DeadlineExceeded { .. }),
        "{dl:?}"
    );
    // Never before its deadline; the upper bound only catches a deadline that is ignored
    // (the next thing that would end the send is the 10 s default), with room for a busy CI.
    assert!(
        elapsed >= Duration::from_millis(1490) && elapsed < Duration::from_secs(8),
        "{elapsed:?}"
    );
    assert!(
        dl.attempts >= 2,
        "ack timeout 500 ms must have retried at least once within 1.5 s: {dl:?}"
    );
    assert_eq!(dead.next().await.unwrap().id, dl.id);
    assert_eq!(
        held.lock().len(),
        1,
        "the retry was deduplicated by the receiver"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn peer_presenting_the_wrong_certificate_is_refused_at_once_without_retries() {
    let imposter = peer("vault", &[]).await;
    let got = Arc::new(AtomicUsize::new(0));
    let g = got.clone();
    serve(&imposter, move |m| {
        g.fetch_add(1, Ordering::SeqCst);
        m.ack();
    });
    // The directory says "vault" has another key; the process at that address cannot prove it.
    let published = Identity::generate().unwrap().fingerprint();
    let forged = InstanceInfo::new(
        "vault",
        imposter.instance(),
        imposter.local_addr(),
        Some(published.0),
    );
    let a = peer("client", &[forged]).await;
    let started = std::time::Instant::now();
    let err = a
        .send_with(
            "vault",
            &b"secret"[..],
            // Room for at least one refused handshake even on a loaded machine.
            SendOptions::default().deadline(Duration::from_secs(5)),
        )
        .await;
    let Err(SendError::DeadLettered(dl)) = err else {
        panic!("{err:?}")
    };
    // Not retried until the deadline: a wrong pin fails at the first handshake.
    let DeadLetterReason::IdentityMismatch { instance, detail } = &dl.reason else {
        panic!("{dl:?}")
    };
    assert_eq!(instance, imposter.instance());
    assert!(detail.contains("handshake"), "{detail}");
    assert_eq!(dl.attempts, 1, "{dl:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(got.load(Ordering::SeqCst), 0);
    a.shutdown().await;
    imposter.shutdown().await;
}

/// A UDP socket that never answers and records the destination connection id of every QUIC
/// long-header (handshake) packet: one id per connection attempt. It holds its port for the
/// whole test, so no other process can answer there.
async fn unanswering_instance() -> (InstanceInfo, Arc<Mutex<std::collections::HashSet<Vec<u8>>>>) {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let info = InstanceInfo::new(
        "api",
        "gone-1",
        socket.local_addr().unwrap(),
        Some(Identity::generate().unwrap().fingerprint().0),
    );
    let attempts: Arc<Mutex<std::collections::HashSet<Vec<u8>>>> = Arc::default();
    let seen = attempts.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok(n) = socket.recv(&mut buf).await {
            // Long header: flags(1) version(4) dcid_len(1) dcid(dcid_len).
            let packet = &buf[..n];
            if packet.len() > 6 && packet[0] & 0x80 != 0 {
                let len = usize::from(packet[5]);
                if let Some(dcid) = packet.get(6..6 + len) {
                    seen.lock().insert(dcid.to_vec());
                }
            }
        }
    });
    (info, attempts)
}

#[tokio::test]
async fn refused_instance_is_skipped_for_a_healthy_one() {
    let good = peer("api", &[]).await;
    let handled = Arc::new(AtomicUsize::new(0));
    let h = handled.clone();
    serve(&good, move |m| {
        h.fetch_add(1, Ordering::SeqCst);
        m.ack();
    });
    let (gone, attempts) = unanswering_instance().await;
    // Unhealthy long enough to cover the whole test: any second attempt is a failure to skip.
    let a = peer_sdk::Peer::builder_for_test("client")
        .static_instance(gone)
        .static_instance(good.info())
        .configure(|c| c.delivery.unhealthy_for = Duration::from_secs(60))
        .start()
        .await
        .unwrap();
    for _ in 0..10 {
        a.send("api", &b"x"[..]).await.unwrap();
    }
    assert_eq!(handled.load(Ordering::SeqCst), 10);
    let tried = attempts.lock().len();
    assert!(
        tried <= 1,
        "the unreachable instance was tried {tried} times, not skipped"
    );
    a.shutdown().await;
    good.shutdown().await;
}

#[tokio::test]
async fn oversized_payload_and_key_are_rejected_before_sending() {
    let a = peer("client", &[]).await;
    let big = vec![0u8; peer_sdk::config::DEFAULT_MAX_PAYLOAD + 1];
    assert!(matches!(
        a.send("x", big).await,
        Err(SendError::PayloadTooLarge { .. })
    ));
    let opts = SendOptions::ordered(vec![1u8; 2000]);
    assert!(matches!(
        a.send_with("x", &b""[..], opts).await,
        Err(SendError::KeyTooLong(2000))
    ));
    a.shutdown().await;
}

#[tokio::test]
async fn invalid_builder_values_are_refused_with_a_clear_error() {
    use peer_sdk::{Peer, StartError};
    let bad_name = Peer::builder_for_test("Bad Name").start().await;
    assert!(matches!(bad_name, Err(StartError::InvalidConfig(m)) if m.contains("service name")));
    let bad_listen = Peer::builder_for_test("ok").listen("nowhere").start().await;
    assert!(matches!(bad_listen, Err(StartError::InvalidConfig(_))));
    let bad_url = Peer::builder_for_test("ok")
        .directory(["ftp://x"])
        .start()
        .await;
    assert!(matches!(bad_url, Err(StartError::InvalidConfig(_))));
}

#[tokio::test]
async fn full_window_makes_enqueue_wait_until_a_message_resolves() {
    let b = peer("tiny", &[]).await;
    let held = Arc::new(Mutex::new(Vec::new()));
    let h = held.clone();
    serve(&b, move |m| h.lock().push(m));
    let a = peer_sdk::Peer::builder_for_test("producer")
        .static_instance(b.info())
        .configure(|c| c.window = 4)
        .start()
        .await
        .unwrap();
    let mut pending = Vec::new();
    for i in 0..4u8 {
        pending.push(
            a.enqueue("tiny", vec![i], SendOptions::default())
                .await
                .unwrap(),
        );
    }
    assert_eq!(a.in_flight("tiny"), 4);
    let fifth = a.enqueue("tiny", vec![4u8], SendOptions::default());
    tokio::pin!(fifth);
    assert!(
        tokio::time::timeout(Duration::from_millis(200), &mut fifth)
            .await
            .is_err(),
        "window full: waits"
    );
    assert!(common::wait_for(Duration::from_secs(2), || async { held.lock().len() == 4 }).await);
    let first = held.lock().remove(0);
    first.ack();
    let fifth = tokio::time::timeout(Duration::from_secs(2), fifth)
        .await
        .expect("room after one ack")
        .unwrap();
    assert_eq!(a.in_flight("tiny"), 4);
    pending.remove(0).await.unwrap();
    for m in held.lock().drain(..) {
        m.ack();
    }
    assert!(
        common::wait_for(Duration::from_secs(2), || async {
            for m in held.lock().drain(..) {
                m.ack();
            }
            a.in_flight("tiny") == 0
        })
        .await
    );
    fifth.await.unwrap();
    for p in pending {
        p.await.unwrap();
    }
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn identity_loaded_from_files_is_the_one_published() {
    let id = Identity::generate().unwrap();
    let (cert, key) = id.to_pem();
    let dir = tempfile::tempdir().unwrap();
    let (cp, kp) = (dir.path().join("peer.crt"), dir.path().join("peer.key"));
    std::fs::write(&cp, cert).unwrap();
    std::fs::write(&kp, key).unwrap();
    let loaded = Identity::load(&cp, &kp).unwrap();
    let p = peer_sdk::Peer::builder_for_test("keyed")
        .identity(loaded)
        .start()
        .await
        .unwrap();
    assert_eq!(p.fingerprint(), id.fingerprint());
    assert!(Identity::load(&dir.path().join("missing"), &kp).is_err());
    p.shutdown().await;
}

/// A raw QUIC client with a valid certificate: lets the tests send arbitrary bytes.
async fn raw_stream(
    target: &peer_sdk::Peer,
) -> (
    quinn::Endpoint,
    quinn::Connection,
    quinn::SendStream,
    quinn::RecvStream,
) {
    let id = Identity::generate().unwrap();
    let tls = peer_sdk::tls::client_config(&id).unwrap();
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap(),
    )));
    let conn = ep
        .connect(target.local_addr(), &target.fingerprint().server_name())
        .unwrap()
        .await
        .unwrap();
    let (send, recv) = conn.open_bi().await.unwrap();
    (ep, conn, send, recv)
}

#[tokio::test]
async fn garbage_silent_and_out_of_order_streams_are_closed_and_the_peer_keeps_serving() {
    let b = peer("sturdy", &[]).await;
    serve(&b, |m| m.ack());
    // Garbage: an oversized length prefix.
    let (_ep1, conn1, mut send1, _r1) = raw_stream(&b).await;
    send1
        .write_all(&[0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3])
        .await
        .unwrap();
    let e = tokio::time::timeout(Duration::from_secs(3), conn1.closed())
        .await
        .unwrap();
    assert!(
        e.to_string().contains("code 2") || format!("{e:?}").contains("error_code: 2"),
        "{e:?}"
    );
    // A message before any hello.
    let (_ep2, conn2, mut send2, _r2) = raw_stream(&b).await;
    let msg = peer_sdk::proto::Frame::Message {
        id: 1,
        attempt: 1,
        request: false,
        key: None,
        topic: None,
        payload: Bytes::new(),
    };
    send2.write_all(&msg.to_bytes()).await.unwrap();
    let e = tokio::time::timeout(Duration::from_secs(3), conn2.closed())
        .await
        .unwrap();
    assert!(format!("{e:?}").contains("error_code: 5"), "{e:?}");
    // Silence: a stream that never says hello is closed after the hello timeout (1 s in tests).
    let (_ep3, conn3, mut send3, _r3) = raw_stream(&b).await;
    send3.write_all(&[0, 0]).await.unwrap();
    let e = tokio::time::timeout(Duration::from_secs(3), conn3.closed())
        .await
        .unwrap();
    assert!(format!("{e:?}").contains("no hello"), "{e:?}");
    // The peer still works.
    let a = peer("normal", &[b.info()]).await;
    a.send("sturdy", &b"fine"[..]).await.unwrap();
    a.shutdown().await;
    b.shutdown().await;
}

/// Two instances run this handler: it takes `takes`, signalling progress every `every`
/// (if set), and counts how many times it started.
fn slow_handler(
    b: &peer_sdk::Peer,
    starts: &Arc<AtomicUsize>,
    takes: Duration,
    every: Option<Duration>,
) {
    let mut inbox = b.incoming();
    let starts = starts.clone();
    tokio::spawn(async move {
        while let Some(m) = inbox.next().await {
            starts.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let done = tokio::time::Instant::now() + takes;
                while let Some(every) = every.filter(|_| tokio::time::Instant::now() < done) {
                    tokio::time::sleep(every.min(done - tokio::time::Instant::now())).await;
                    m.in_progress();
                }
                tokio::time::sleep_until(done).await;
                m.ack();
            });
        }
    });
}

async fn slow_handler_starts(every: Option<Duration>) -> usize {
    let ack_timeout = Duration::from_millis(300);
    let starts = Arc::new(AtomicUsize::new(0));
    let (b1, b2) = (peer("slow", &[]).await, peer("slow", &[]).await);
    for b in [&b1, &b2] {
        slow_handler(b, &starts, ack_timeout * 3, every);
    }
    let a = peer("client", &[b1.info(), b2.info()]).await;
    let opts = SendOptions::default()
        .ack_timeout(ack_timeout)
        .deadline(Duration::from_secs(10));
    a.send_with("slow", &b"work"[..], opts).await.unwrap();
    let n = starts.load(Ordering::SeqCst);
    a.shutdown().await;
    b1.shutdown().await;
    b2.shutdown().await;
    n
}

#[tokio::test]
async fn handler_taking_three_ack_timeouts_and_signalling_progress_runs_exactly_once() {
    let every = Duration::from_millis(100);
    assert_eq!(slow_handler_starts(Some(every)).await, 1);
}

#[tokio::test]
async fn handler_taking_three_ack_timeouts_silently_runs_on_the_second_instance() {
    // The control: the same handler without progress signals is retried elsewhere.
    assert!(slow_handler_starts(None).await >= 2);
}

#[tokio::test]
async fn max_attempts_ends_a_nacked_message_with_the_handlers_last_reason() {
    let b = peer("flaky", &[]).await;
    serve(&b, |m| m.nack(Nack::Retry("busy".into())));
    let a = peer("client", &[b.info()]).await;
    let opts = SendOptions::default().max_attempts(std::num::NonZeroU32::new(2).unwrap());
    let err = a.send_with("flaky", &b"x"[..], opts).await;
    let Err(SendError::DeadLettered(dl)) = err else {
        panic!("{err:?}")
    };
    assert_eq!(dl.attempts, 2);
    assert!(
        matches!(&dl.reason, DeadLetterReason::AttemptsExhausted { last_error: peer_sdk::Cause::Nacked { reason, .. } } if reason == "busy"),
        "{dl:?}"
    );
    a.shutdown().await;
    b.shutdown().await;
}
