//! Delivery under network faults (UDP fault-injection proxy) and a receiver killed
//! mid-stream and restarted.

mod common;

use bytes::Bytes;
use common::proxy::{Faults, Proxy};
use common::{serve, wait_for};
use parking_lot::Mutex;
use peer_sdk::{InstanceInfo, Peer, SendOptions};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const MESSAGES: u32 = 10_000;
const KEYS: u32 = 8;

/// Payload: "<seq>" ; even seqs carry the ordering key "k<seq % KEYS>".
fn key_of(i: u32) -> Option<String> {
    i.is_multiple_of(2).then(|| format!("k{}", (i / 2) % KEYS))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_percent_loss_with_reordering_and_duplicates_delivers_everything_once_and_in_key_order()
{
    let directory = directory::Server::start(directory::Config::for_test())
        .await
        .unwrap();
    let urls = vec![format!("http://{}", directory.http_addr())];
    // The receiver publishes the proxy's address: everything the sender finds through the
    // directory goes through the faults.
    let faults = Faults {
        drop: 0.10,
        duplicate: 0.05,
        max_delay: Duration::from_millis(2),
    };
    let proxy = Proxy::start("127.0.0.1:9".parse().unwrap(), faults, 42).await;
    let receiver = Peer::builder_for_test("sink")
        .directory(urls.clone())
        .advertise(proxy.addr)
        .start()
        .await
        .unwrap();
    proxy.set_target(receiver.local_addr());
    let handled: Arc<Mutex<HashMap<u32, u32>>> = Arc::default();
    let order: Arc<Mutex<HashMap<String, Vec<u32>>>> = Arc::default();
    let (h, o) = (handled.clone(), order.clone());
    serve(&receiver, move |m| {
        let i: u32 = std::str::from_utf8(m.payload()).unwrap().parse().unwrap();
        *h.lock().entry(i).or_default() += 1;
        if let Some(k) = m.key() {
            o.lock()
                .entry(String::from_utf8(k.to_vec()).unwrap())
                .or_default()
                .push(i);
        }
        m.ack();
    });
    let sender = Peer::builder_for_test("source")
        .directory(urls)
        .configure(|c| {
            c.delivery.deadline = Duration::from_secs(120);
            c.idle_timeout = Duration::from_secs(5);
        })
        .start()
        .await
        .unwrap();
    let mut pending = Vec::with_capacity(MESSAGES as usize);
    for i in 0..MESSAGES {
        let opts = SendOptions {
            key: key_of(i).map(Bytes::from),
            ..SendOptions::default()
        };
        pending.push(sender.enqueue("sink", i.to_string(), opts).await.unwrap());
    }
    for (i, p) in pending.into_iter().enumerate() {
        p.await.unwrap_or_else(|e| panic!("message {i}: {e}"));
    }
    let handled = handled.lock().clone();
    assert_eq!(
        handled.len(),
        MESSAGES as usize,
        "every message reached the handler"
    );
    assert!(handled.values().all(|n| *n == 1), "exactly once");
    for (key, seq) in order.lock().iter() {
        let mut sorted = seq.clone();
        sorted.sort_unstable();
        assert_eq!(seq, &sorted, "key {key} out of order");
    }
    let dropped = proxy.stats.dropped.load(Ordering::Relaxed);
    assert!(
        dropped > 100,
        "the proxy really dropped datagrams ({dropped})"
    );
    sender.shutdown().await;
    receiver.shutdown().await;
    directory.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_killed_mid_stream_and_restarted_gets_every_unacked_message() {
    let identity = peer_sdk::Identity::generate().unwrap();
    let start_receiver = || {
        Peer::builder_for_test("sink")
            .instance("sink-1")
            .identity(identity.clone())
            .start()
    };
    let first = start_receiver().await.unwrap();
    // The sender knows the receiver by a proxy's address, which outlives both lives of the
    // receiver: the restarted one binds a fresh port and the proxy is pointed at it, so no
    // freed port has to be bound again.
    let clean = Faults {
        drop: 0.0,
        duplicate: 0.0,
        max_delay: Duration::ZERO,
    };
    let proxy = Proxy::start(first.local_addr(), clean, 11).await;
    let behind_proxy = InstanceInfo {
        addr: proxy.addr,
        ..first.info()
    };
    let handled_by: Arc<Mutex<HashMap<u32, Vec<u8>>>> = Arc::default();
    let count = Arc::new(AtomicUsize::new(0));
    let record = |life: u8| {
        let (h, c) = (handled_by.clone(), count.clone());
        move |m: peer_sdk::Message| {
            let i: u32 = std::str::from_utf8(m.payload()).unwrap().parse().unwrap();
            h.lock().entry(i).or_default().push(life);
            c.fetch_add(1, Ordering::SeqCst);
            m.ack();
        }
    };
    let first_handler = serve(&first, record(1));
    let sender = Peer::builder_for_test("source")
        .static_instance(behind_proxy)
        .configure(|c| c.delivery.deadline = Duration::from_secs(60))
        .start()
        .await
        .unwrap();
    let total = 3_000u32;
    let s = sender.clone();
    let producer = tokio::spawn(async move {
        let mut pending = Vec::new();
        for i in 0..total {
            pending.push((
                i,
                s.enqueue("sink", i.to_string(), SendOptions::default())
                    .await
                    .unwrap(),
            ));
        }
        let mut acked = Vec::new();
        for (i, p) in pending {
            p.await.unwrap_or_else(|e| panic!("message {i}: {e}"));
            acked.push(i);
        }
        acked
    });
    assert!(
        wait_for(Duration::from_secs(20), || async {
            count.load(Ordering::SeqCst) >= 500
        })
        .await
    );
    // Kill: stop handling, drop the peer without a graceful shutdown.
    first_handler.abort();
    drop(first);
    let restarted = start_receiver().await.unwrap();
    proxy.set_target(restarted.local_addr());
    serve(&restarted, record(2));
    let acked = tokio::time::timeout(Duration::from_secs(60), producer)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(acked.len(), total as usize);
    let handled_by = handled_by.lock().clone();
    for i in 0..total {
        assert!(
            handled_by.contains_key(&i),
            "acked message {i} was never handled"
        );
    }
    assert!(
        handled_by.values().any(|lives| lives.contains(&2)),
        "the restarted receiver took over"
    );
    sender.shutdown().await;
    restarted.shutdown().await;
}

/// Waits until the proxy has seen no datagram in either direction for `quiet`, within `limit`.
async fn proxy_goes_quiet(proxy: &Proxy, quiet: Duration, limit: Duration) -> bool {
    let total = || {
        proxy.stats.forwarded.load(Ordering::Relaxed) + proxy.stats.dropped.load(Ordering::Relaxed)
    };
    let deadline = tokio::time::Instant::now() + limit;
    let (mut last, mut since) = (total(), tokio::time::Instant::now());
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = total();
        if now != last {
            (last, since) = (now, tokio::time::Instant::now());
        } else if since.elapsed() >= quiet {
            return true;
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silently_dead_instance_is_detected_by_keep_alive_and_traffic_moves_to_another() {
    // Which receiver handled each message.
    let handled_by: Arc<Mutex<Vec<&'static str>>> = Arc::default();
    let mut receivers = Vec::new();
    for name in ["r-a", "r-b"] {
        let r = Peer::builder_for_test("pool")
            .instance(name)
            .start()
            .await
            .unwrap();
        let h = handled_by.clone();
        serve(&r, move |m| {
            h.lock().push(name);
            m.ack();
        });
        receivers.push(r);
    }
    let clean = Faults {
        drop: 0.0,
        duplicate: 0.0,
        max_delay: Duration::ZERO,
    };
    let proxy = Proxy::start(receivers[0].local_addr(), clean, 7).await;
    let behind_proxy = InstanceInfo {
        addr: proxy.addr,
        ..receivers[0].info()
    };
    let sender = Peer::builder_for_test("client")
        .static_instance(behind_proxy)
        .static_instance(receivers[1].info())
        .start()
        .await
        .unwrap();
    for _ in 0..20 {
        sender.send("pool", &b"warm"[..]).await.unwrap();
    }
    assert!(
        handled_by.lock().contains(&"r-a"),
        "r-a (behind the proxy) took part before it went silent: {:?}",
        handled_by.lock()
    );
    // Idle but healthy, the connection to r-a lives on keep-alives (every 200 ms, in both
    // directions), well past the 1 s idle timeout.
    let forwarded_at_idle = proxy.stats.forwarded.load(Ordering::Relaxed);
    assert!(
        wait_for(Duration::from_secs(5), || async {
            proxy.stats.forwarded.load(Ordering::Relaxed) >= forwarded_at_idle + 16
        })
        .await,
        "no keep-alives on an idle connection"
    );
    // r-a goes silent: no close, no reset, every datagram lost.
    proxy.set_faults(Faults { drop: 1.0, ..clean });
    let dropped_at_silence = proxy.stats.dropped.load(Ordering::Relaxed);
    // With no application traffic, keep-alives (every 200 ms) keep probing the silent path...
    assert!(
        wait_for(Duration::from_secs(3), || async {
            proxy.stats.dropped.load(Ordering::Relaxed) >= dropped_at_silence + 3
        })
        .await,
        "no keep-alive reached the silent instance"
    );
    // ...until the idle timeout (1 s without an answer) closes the connection: then nothing
    // crosses the proxy any more.
    assert!(
        proxy_goes_quiet(&proxy, Duration::from_millis(800), Duration::from_secs(10)).await,
        "the connection to the silent instance was never given up"
    );
    // Detected before any message needed it: every send goes to r-b at once.
    handled_by.lock().clear();
    let mut slowest = Duration::ZERO;
    for _ in 0..50 {
        let started = tokio::time::Instant::now();
        sender.send("pool", &b"after"[..]).await.unwrap();
        slowest = slowest.max(started.elapsed());
    }
    let after = handled_by.lock().clone();
    assert_eq!(after.len(), 50, "{after:?}");
    assert!(after.iter().all(|r| *r == "r-b"), "{after:?}");
    assert!(slowest < Duration::from_secs(4), "{slowest:?}");
    sender.shutdown().await;
    for r in receivers {
        r.shutdown().await;
    }
}
