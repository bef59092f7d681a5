//! The gossip TCP listener under a flood of idle connections: anti-entropy into the node
//! keeps working while 1,000 connections without a key are held against it (each one
//! reopened as soon as the node closes it).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use directory::gossip::{ClusterKey, GossipSettings, Security};
use directory::{Config, Server};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

const IDLE_CONNECTIONS: usize = 1000;

async fn node(name: &str, key: &ClusterKey, join: Option<SocketAddr>) -> Server {
    let mut config = Config::for_test();
    config.registry.node = name.parse().unwrap();
    let mut cluster = GossipSettings::for_test(Security::Key(key.clone()));
    cluster.join = join.iter().map(ToString::to_string).collect();
    config.cluster = Some(cluster);
    Server::start(config).await.expect("node starts")
}

/// Holds one idle connection to `target` until `stop`, reconnecting whenever the node
/// closes it. Counts every connection opened.
async fn hold_idle(target: SocketAddr, opened: Arc<AtomicU64>, stop: Arc<AtomicBool>) {
    let mut buf = [0u8; 64];
    while !stop.load(Ordering::Relaxed) {
        let Ok(Ok(mut stream)) =
            tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(target)).await
        else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        opened.fetch_add(1, Ordering::Relaxed);
        // Never send a byte; wait for the node to close, or for the end of the test.
        while !stop.load(Ordering::Relaxed) {
            let read = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf));
            if let Ok(Ok(0) | Err(_)) = read.await {
                break;
            }
        }
    }
}

async fn wait_until<F: FnMut() -> bool>(what: &str, limit: Duration, mut cond: F) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anti_entropy_keeps_syncing_while_a_thousand_idle_connections_are_held() {
    let key = ClusterKey::generate();
    let target = node("target", &key, None).await;
    let target_addr = target.gossip_addr().unwrap();
    let peer = node("peer", &key, Some(target_addr)).await;
    let served = &target.gossip().unwrap().counters().syncs_served;
    wait_until(
        "a first anti-entropy session",
        Duration::from_secs(10),
        || served.load(Ordering::Relaxed) >= 1,
    )
    .await;

    let opened = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let holders: Vec<_> = (0..IDLE_CONNECTIONS)
        .map(|_| tokio::spawn(hold_idle(target_addr, opened.clone(), stop.clone())))
        .collect();
    // Connections count once the kernel completed them, accepted or still in the backlog.
    let deadline = Instant::now() + Duration::from_secs(10);
    while opened.load(Ordering::Relaxed) < IDLE_CONNECTIONS as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The peer starts a session every ~0.5 s (test preset): several must get through
    // while the flood is on (without admission control, none did for minutes).
    let before = served.load(Ordering::Relaxed);
    wait_until(
        "syncs served under the flood",
        Duration::from_secs(10),
        || served.load(Ordering::Relaxed) >= before + 5,
    )
    .await;
    let opened = opened.load(Ordering::Relaxed);
    assert!(
        opened >= IDLE_CONNECTIONS as u64,
        "only {opened} connections opened"
    );
    stop.store(true, Ordering::Relaxed);
    for h in holders {
        h.await.unwrap();
    }
    peer.shutdown().await;
    target.shutdown().await;
}

/// Reads until the node closes the connection; returns how long that took.
async fn closed_after(stream: &mut TcpStream) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        while !matches!(stream.read(&mut buf).await, Ok(0) | Err(_)) {}
    });
    read.await.expect("the node closes the connection");
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_at_the_handshake_timeout_and_large_first_frames_at_once() {
    use directory::gossip::{HANDSHAKE_TIMEOUT, MAX_FIRST_FRAME};
    use tokio::io::AsyncWriteExt;
    let key = ClusterKey::generate();
    let target = node("target", &key, None).await;
    let addr = target.gossip_addr().unwrap();

    let mut idle = TcpStream::connect(addr).await.unwrap();
    let waited = closed_after(&mut idle).await;
    assert!(
        waited >= HANDSHAKE_TIMEOUT - Duration::from_millis(100)
            && waited < HANDSHAKE_TIMEOUT + Duration::from_secs(2),
        "idle connection closed after {waited:?}"
    );

    let mut large = TcpStream::connect(addr).await.unwrap();
    let prefix = u32::try_from(MAX_FIRST_FRAME + 1).unwrap().to_be_bytes();
    large.write_all(&prefix).await.unwrap();
    let waited = closed_after(&mut large).await;
    assert!(waited < Duration::from_secs(1), "closed after {waited:?}");
    target.shutdown().await;
}
