//! Store-and-forward on real QUIC (in-process peers): a durable sender restarted with its
//! store delivers everything once and in key order; a durable receiver restarted with its
//! store answers retries from its records; quota and corrupt store behaviours; waiting for
//! and failing fast on a service without instances.

mod common;

use bytes::Bytes;
use common::proxy::{Faults, Proxy};
use common::{serve, wait_for};
use parking_lot::Mutex;
use peer_sdk::{
    Identity, InstanceInfo, Message, Peer, SendError, SendOptions, StartError, Store, StoreConfig,
    StoreError, WhenFull,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

const NO_FAULTS: Faults = Faults {
    drop: 0.0,
    duplicate: 0.0,
    max_delay: Duration::from_micros(1),
};
/// Where a proxy sends datagrams while "the receiver is down" (discard port: nothing answers).
const NOWHERE: &str = "127.0.0.1:9";

/// A receiver's pinned identity behind a proxy: the sender's static view of it survives
/// receiver restarts.
fn static_view(proxy: &Proxy, identity: &Identity, service: &str) -> InstanceInfo {
    InstanceInfo::new(service, "r", proxy.addr, Some(identity.fingerprint().0))
}

async fn durable_sender(dir: &std::path::Path, view: &InstanceInfo, window: usize) -> Peer {
    Peer::builder_for_test("source")
        .store(dir)
        .static_instance(view.clone())
        .configure(|c| c.window = window)
        .start()
        .await
        .expect("durable sender starts")
}

type Log = Arc<Mutex<Vec<(u64, Option<Bytes>, Bytes)>>>;

/// Records (id, key, payload) of every handled message, then acks it.
fn record_all(peer: &Peer) -> Log {
    let log: Log = Arc::default();
    let l = log.clone();
    serve(peer, move |m: Message| {
        l.lock()
            .push((m.id(), m.key().cloned(), m.payload().clone()));
        m.ack();
    });
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_sender_delivers_every_accepted_message_once_in_key_order() {
    const N: u64 = 300;
    let dir = tempfile::tempdir().unwrap();
    let identity = Identity::generate().unwrap();
    let proxy = Proxy::start(NOWHERE.parse().unwrap(), NO_FAULTS, 1).await;
    let view = static_view(&proxy, &identity, "sink");
    // The receiver is down: every message is accepted (persisted) and waits. A window of
    // 32 keeps most of them on disk only.
    let first = durable_sender(dir.path(), &view, 32).await;
    let long = SendOptions::default().deadline(Duration::from_secs(3600));
    let mut pending = Vec::new();
    for i in 0..N {
        let opts = SendOptions {
            key: Some(Bytes::from(format!("k{}", i % 3))),
            ..long.clone()
        };
        pending.push(first.enqueue("sink", format!("{i}"), opts).await.unwrap());
    }
    first.shutdown().await;
    for p in pending {
        assert!(matches!(p.await, Err(SendError::ShutDown)));
    }
    assert_eq!(
        Store::open(dir.path()).unwrap().usage().unwrap().messages,
        N
    );

    let receiver = Peer::builder_for_test("sink")
        .identity(identity)
        .start()
        .await
        .unwrap();
    let log = record_all(&receiver);
    proxy.set_target(receiver.local_addr());
    let second = durable_sender(dir.path(), &view, 32).await;
    let all = wait_for(Duration::from_secs(30), || async {
        log.lock().len() as u64 >= N
    })
    .await;
    assert!(all, "delivered {} of {N}", log.lock().len());
    second.shutdown().await;

    let log = log.lock().clone();
    assert_eq!(log.len() as u64, N, "no message reached the handler twice");
    let mut by_key: HashMap<Bytes, Vec<u64>> = HashMap::new();
    for (id, key, payload) in &log {
        // Ids are the original ones: the first store hands out 1, 2, 3... in send order.
        assert_eq!(payload, &Bytes::from(format!("{}", id - 1)));
        by_key.entry(key.clone().unwrap()).or_default().push(*id);
    }
    for (key, ids) in by_key {
        assert!(ids.is_sorted(), "key {key:?} out of order: {ids:?}");
    }
    assert_eq!(
        Store::open(dir.path()).unwrap().usage().unwrap().messages,
        0
    );
    receiver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_receiver_answers_retries_from_its_records_without_the_handler() {
    const N: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(NOWHERE.parse().unwrap(), NO_FAULTS, 2).await;
    let first = Peer::builder_for_test("sink")
        .store(dir.path())
        .start()
        .await
        .unwrap();
    proxy.set_target(first.local_addr());
    let view = InstanceInfo::new("sink", "r", proxy.addr, Some(first.fingerprint().0));
    // The handler holds every message until all arrived, then the network starts losing
    // everything and only then are they acked: the handler ran, the acks are lost.
    let held: Arc<Mutex<Vec<Message>>> = Arc::default();
    let h = held.clone();
    serve(&first, move |m| h.lock().push(m));
    let sender = Peer::builder_for_test("source")
        .static_instance(view)
        .start()
        .await
        .unwrap();
    let sends = tokio::spawn({
        let sender = sender.clone();
        async move {
            let mut pending = Vec::new();
            for i in 0..N {
                let opts = SendOptions::default().deadline(Duration::from_secs(60));
                let p = sender.enqueue_request("sink", format!("{i}"), opts).await;
                pending.push(p.unwrap());
            }
            let mut replies = Vec::new();
            for p in pending {
                replies.push(p.await);
            }
            replies
        }
    });
    assert!(wait_for(Duration::from_secs(10), || async { held.lock().len() == N }).await);
    proxy.set_faults(Faults {
        drop: 1.0,
        ..NO_FAULTS
    });
    for m in held.lock().drain(..) {
        let reply = format!("handled {}", std::str::from_utf8(m.payload()).unwrap());
        m.reply(reply);
    }
    first.shutdown().await;

    let second = Peer::builder_for_test("sink")
        .store(dir.path())
        .start()
        .await
        .unwrap();
    assert_eq!(
        second.fingerprint(),
        first.fingerprint(),
        "the identity persists"
    );
    assert_eq!(
        second.instance(),
        first.instance(),
        "the instance name persists"
    );
    let rerun = record_all(&second);
    proxy.set_target(second.local_addr());
    proxy.set_faults(NO_FAULTS);
    let replies = tokio::time::timeout(Duration::from_secs(30), sends)
        .await
        .expect("the retries are answered")
        .unwrap();
    for (i, r) in replies.into_iter().enumerate() {
        assert_eq!(
            r.unwrap(),
            Bytes::from(format!("handled {i}")),
            "the recorded reply"
        );
    }
    assert!(rerun.lock().is_empty(), "handled again: {:?}", rerun.lock());
    sender.shutdown().await;
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_quota_fails_or_waits_as_configured_and_loses_nothing() {
    let identity = Identity::generate().unwrap();
    let proxy = Proxy::start(NOWHERE.parse().unwrap(), NO_FAULTS, 3).await;
    let view = static_view(&proxy, &identity, "sink");
    // Room for exactly three of these messages.
    let cost = peer_sdk::proto::message_cost("sink".len(), 0, 1);
    let quota = |dir: &std::path::Path, when_full| {
        let mut sc = StoreConfig::new(dir);
        sc.quota_bytes = 3 * cost;
        sc.when_full = when_full;
        sc
    };
    let failing_dir = tempfile::tempdir().unwrap();
    let failing = Peer::builder_for_test("source")
        .store_config(quota(failing_dir.path(), WhenFull::Fail))
        .static_instance(view.clone())
        .start()
        .await
        .unwrap();
    let opts = SendOptions::default().deadline(Duration::from_secs(3600));
    let mut accepted = Vec::new();
    for i in 0..3 {
        accepted.push(
            failing
                .enqueue("sink", format!("{i}"), opts.clone())
                .await
                .unwrap(),
        );
    }
    let err = failing
        .enqueue("sink", "3", opts.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::StoreFull { .. }), "{err:?}");
    failing.shutdown().await;
    drop(accepted);
    let usage = Store::open(failing_dir.path()).unwrap().usage().unwrap();
    assert_eq!((usage.messages, usage.bytes), (3, 3 * cost));

    let waiting_dir = tempfile::tempdir().unwrap();
    let waiting = Peer::builder_for_test("source")
        .store_config(quota(waiting_dir.path(), WhenFull::Wait))
        .static_instance(view)
        .start()
        .await
        .unwrap();
    let mut pending = Vec::new();
    for i in 0..3 {
        pending.push(
            waiting
                .enqueue("sink", format!("{i}"), opts.clone())
                .await
                .unwrap(),
        );
    }
    let fourth = tokio::spawn({
        let waiting = waiting.clone();
        let opts = opts.clone();
        async move { waiting.send_with("sink", "3", opts).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!fourth.is_finished(), "the fourth send waits for room");
    let receiver = Peer::builder_for_test("sink")
        .identity(identity)
        .start()
        .await
        .unwrap();
    let log = record_all(&receiver);
    proxy.set_target(receiver.local_addr());
    for p in pending {
        p.await.unwrap();
    }
    tokio::time::timeout(Duration::from_secs(20), fourth)
        .await
        .expect("room freed")
        .unwrap()
        .unwrap();
    assert_eq!(log.lock().len(), 4);
    waiting.shutdown().await;
    receiver.shutdown().await;
}

#[tokio::test]
async fn a_corrupt_or_foreign_store_fails_start_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(peer_sdk::store::FILE_NAME), b"not a store").unwrap();
    let err = Peer::builder_for_test("source")
        .store(dir.path())
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(err, StartError::Store(StoreError::Foreign { .. })),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_store_serves_one_peer_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let first = Peer::builder_for_test("a")
        .store(dir.path())
        .start()
        .await
        .unwrap();
    let err = Peer::builder_for_test("a")
        .store(dir.path())
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(err, StartError::Store(StoreError::Locked(_))),
        "{err:?}"
    );
    first.shutdown().await;
    Peer::builder_for_test("a")
        .store(dir.path())
        .start()
        .await
        .unwrap()
        .shutdown()
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_to_a_service_without_instances_waits_for_one_or_fails_fast_when_asked() {
    let directory = directory::Server::start(directory::Config::for_test())
        .await
        .unwrap();
    let urls = vec![format!("http://{}", directory.http_addr())];
    let sender = Peer::builder_for_test("source")
        .directory(urls.clone())
        .start()
        .await
        .unwrap();
    let err = sender
        .send_with("late", "x", SendOptions::default().no_responders())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SendError::NoResponders(s) if s == "late"),
        "{err:?}"
    );

    let waiting = tokio::spawn({
        let sender = sender.clone();
        async move {
            let opts = SendOptions::default().deadline(Duration::from_secs(60));
            sender.send_with("late", "hello", opts).await
        }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!waiting.is_finished(), "no instance yet: the message waits");
    let receiver = Peer::builder_for_test("late")
        .directory(urls)
        .start()
        .await
        .unwrap();
    let log = record_all(&receiver);
    tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("delivered once an instance registered")
        .unwrap()
        .unwrap();
    assert_eq!(log.lock().len(), 1);
    sender.shutdown().await;
    receiver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_checked_whole_then_accepted_and_delivered_in_key_order() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Peer::builder_for_test("sink").start().await.unwrap();
    let log = record_all(&receiver);
    let sender = Peer::builder_for_test("source")
        .store(dir.path())
        .static_instance(receiver.info())
        .configure(|c| c.max_payload = 64)
        .start()
        .await
        .unwrap();
    let ordered = || SendOptions::ordered("k");
    let bad = vec![
        (Bytes::from_static(b"fine"), ordered()),
        (Bytes::from(vec![0u8; 65]), ordered()),
    ];
    let err = sender.enqueue_batch("sink", bad).await.unwrap_err();
    assert!(matches!(err, SendError::PayloadTooLarge { .. }), "{err:?}");
    let batch = (0..50).map(|i| (Bytes::from(format!("{i}")), ordered()));
    let pending = sender.enqueue_batch("sink", batch).await.unwrap();
    for p in pending {
        p.await.unwrap();
    }
    let payloads: Vec<Bytes> = log.lock().iter().map(|(_, _, p)| p.clone()).collect();
    let expected: Vec<Bytes> = (0..50).map(|i| Bytes::from(format!("{i}"))).collect();
    assert_eq!(
        payloads, expected,
        "the rejected batch sent nothing; the other in order"
    );
    sender.shutdown().await;
    receiver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_is_kept_in_the_store_and_replayed_with_its_original_id() {
    let dir = tempfile::tempdir().unwrap();
    let identity = Identity::generate().unwrap();
    let proxy = Proxy::start(NOWHERE.parse().unwrap(), NO_FAULTS, 4).await;
    let view = static_view(&proxy, &identity, "sink");
    let refusing = Peer::builder_for_test("sink")
        .identity(identity.clone())
        .start()
        .await
        .unwrap();
    serve(&refusing, |m| {
        m.nack(peer_sdk::Nack::DeadLetter("not today".into()))
    });
    proxy.set_target(refusing.local_addr());
    let sender = durable_sender(dir.path(), &view, 8).await;
    let mut letters = sender.dead_letters();
    let err = sender
        .send_with("sink", "keep me", SendOptions::ordered("k"))
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::DeadLettered(_)), "{err:?}");
    let live = letters.next().await.unwrap();
    sender.shutdown().await;
    refusing.shutdown().await;

    let store = Store::open(dir.path()).unwrap();
    let stored: Vec<_> = store.dead_letters().unwrap().map(Result::unwrap).collect();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].message.id, live.id);
    assert_eq!(stored[0].message.payload, Bytes::from_static(b"keep me"));
    assert_eq!(stored[0].message.key, Some(Bytes::from_static(b"k")));
    assert!(matches!(
        &stored[0].reason,
        peer_sdk::DeadLetterReason::Rejected { reason } if reason == "not today"
    ));
    assert!(store.replay_dead_letters(Duration::from_secs(60)).unwrap() == 1);
    assert_eq!(store.dead_letters().unwrap().count(), 0);
    drop(store);

    let accepting = Peer::builder_for_test("sink")
        .identity(identity)
        .start()
        .await
        .unwrap();
    let log = record_all(&accepting);
    proxy.set_target(accepting.local_addr());
    let sender = durable_sender(dir.path(), &view, 8).await;
    assert!(wait_for(Duration::from_secs(20), || async { !log.lock().is_empty() }).await);
    let (id, key, payload) = log.lock()[0].clone();
    assert_eq!(
        (id, key, payload),
        (
            live.id,
            Some(Bytes::from_static(b"k")),
            Bytes::from_static(b"keep me")
        )
    );
    sender.shutdown().await;
    accepting.shutdown().await;
}
