//! A cluster of in-process nodes on real loopback sockets: replication through gossip,
//! ownership moves, encryption and bad packets.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use directory::gossip::proto::wire::{Datagram, MAX_DATAGRAM, encode_datagram};
use directory::gossip::{ClusterKey, GossipSettings, MemberState, Sealer, Security};
use directory::registry::{
    Address, InstanceId, Registration, ServiceName, Subscription, Subscriptions,
};
use directory::{Config, Server};
use serde_json::Value;
use tokio::time::Instant;

use common::{client, spawn_get_json, url};

async fn node(name: &str, key: &ClusterKey, join: &[SocketAddr]) -> Server {
    let mut config = Config::for_test();
    config.registry.node = name.parse().unwrap();
    let mut cluster = GossipSettings::for_test(Security::Key(key.clone()));
    cluster.join = join.iter().map(ToString::to_string).collect();
    config.cluster = Some(cluster);
    Server::start(config).await.expect("node starts")
}

async fn alive_members(server: &Server) -> usize {
    let Some(gossip) = server.gossip() else {
        return 0;
    };
    gossip
        .members()
        .await
        .iter()
        .filter(|m| m.state == MemberState::Alive)
        .count()
}

/// Polls `cond` every 20 ms for up to 15 s.
async fn eventually<F: AsyncFnMut() -> bool>(what: &str, mut cond: F) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for: {what}");
}

async fn three_nodes(key: &ClusterKey) -> Vec<Server> {
    let first = node("node-1", key, &[]).await;
    let seed = first.gossip_addr().unwrap();
    let second = node("node-2", key, &[seed]).await;
    let third = node("node-3", key, &[seed]).await;
    let nodes = vec![first, second, third];
    for n in &nodes {
        eventually("three alive members", async || alive_members(n).await == 3).await;
    }
    nodes
}

async fn get(server: &Server, path: &str) -> (u16, Value, Option<String>) {
    let response = client().get(url(server, path)).send().await.unwrap();
    let status = response.status().as_u16();
    let index = response
        .headers()
        .get("x-directory-index")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, response.json().await.unwrap_or(Value::Null), index)
}

fn key(service: &str, instance: &str) -> (ServiceName, InstanceId) {
    (service.parse().unwrap(), instance.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_heartbeats_and_deletions_replicate_to_every_node() {
    let cluster_key = ClusterKey::generate();
    let nodes = three_nodes(&cluster_key).await;
    let (svc, inst) = key("orders", "orders-1");

    // A blocking query on node 3 wakes up for a registration that arrives by gossip.
    let (_, _, index) = get(&nodes[2], "/v1/services/orders").await;
    let index = index.unwrap();
    let waiting = {
        let u = url(
            &nodes[2],
            &format!("/v1/services/orders?index={index}&wait=10s"),
        );
        spawn_get_json(u)
    };
    let registration = Registration::new(Address::new("127.0.0.1:7000").unwrap());
    nodes[0]
        .registry()
        .register(&svc, &inst, registration, Instant::now())
        .unwrap();
    let woke = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(woke["instances"][0]["instance"], "orders-1");
    assert_eq!(woke["instances"][0]["owner"], "node-1");
    for n in &nodes[1..] {
        eventually("registration replicated", async || {
            n.registry().instance(&svc, &inst).is_some()
        })
        .await;
    }

    // A heartbeat through node 2 makes node 2 the owner everywhere.
    nodes[1]
        .registry()
        .heartbeat(&svc, &inst, Instant::now())
        .unwrap();
    for n in &nodes {
        eventually("ownership moved to node-2", async || {
            n.registry()
                .instance(&svc, &inst)
                .is_some_and(|r| r.owner.as_str() == "node-2")
        })
        .await;
    }

    // A deregistration on node 3 removes it everywhere.
    assert!(nodes[2].registry().deregister(&svc, &inst, Instant::now()));
    for n in &nodes {
        eventually("deregistration replicated", async || {
            n.registry().instance(&svc, &inst).is_none()
        })
        .await;
    }

    // The members route lists all three as alive; a graceful leave shows as "left".
    let (status, body, _) = get(&nodes[0], "/v1/cluster/members").await;
    assert_eq!(status, 200);
    let members = body["members"].as_array().unwrap();
    assert_eq!(members.len(), 3, "{body}");
    assert!(members.iter().all(|m| m["state"] == "alive"), "{body}");
    assert_eq!(members[0]["local"], true);
    let mut nodes = nodes;
    let third = nodes.pop().unwrap();
    third.shutdown().await;
    eventually("node-3 listed as left", async || {
        let (_, body, _) = get(&nodes[0], "/v1/cluster/members").await;
        body["members"].as_array().is_some_and(|ms| {
            ms.iter()
                .any(|m| m["name"] == "node-3" && m["state"] == "left")
        })
    })
    .await;
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_key_can_neither_join_nor_inject() {
    let cluster_key = ClusterKey::generate();
    let first = node("node-1", &cluster_key, &[]).await;
    let intruder = node(
        "intruder",
        &ClusterKey::generate(),
        &[first.gossip_addr().unwrap()],
    )
    .await;
    let (svc, inst) = key("evil", "evil-1");
    let registration = Registration::new(Address::new("127.0.0.1:6666").unwrap());
    intruder
        .registry()
        .register(&svc, &inst, registration, Instant::now())
        .unwrap();
    let counters = first.gossip().unwrap().counters();
    eventually("intruder packets rejected", async || {
        counters.unauthenticated.load(Ordering::Relaxed) >= 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(alive_members(&first).await, 1);
    assert_eq!(alive_members(&intruder).await, 1);
    assert!(first.registry().instance(&svc, &inst).is_none());
    intruder.shutdown().await;
    first.shutdown().await;
}

/// Held by the tests that read drop reasons from `/metrics`: the recorder is process-wide, so
/// two of them running at once would see each other's drops.
static DROP_METRICS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `directory_gossip_dropped_packets_total` by `reason` label, from the node's `/metrics`. The
/// recorder is process-wide, so callers compare two readings under [`DROP_METRICS`].
async fn drops_by_reason(server: &Server) -> std::collections::BTreeMap<String, u64> {
    let metrics = client()
        .get(url(server, "/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metrics
        .lines()
        .filter(|l| l.starts_with("directory_gossip_dropped_packets_total{"))
        .filter_map(|line| {
            let reason = line.split("reason=\"").nth(1)?.split('"').next()?;
            let value = line.rsplit(' ').next()?.parse::<f64>().ok()?;
            Some((reason.to_owned(), value as u64))
        })
        .collect()
}

/// Sends `bytes` on a fresh anti-entropy connection to `server` and waits for the node to
/// close it.
async fn anti_entropy_stream_closed_after(server: &Server, bytes: &[u8]) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(server.gossip_addr().unwrap())
        .await
        .unwrap();
    // The node may close as soon as it has read enough to judge the frame.
    let _ = stream.write_all(bytes).await;
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the node kept the connection open");
}

/// A u32 length prefix and `body`, as the anti-entropy stream frames it.
fn stream_frame(body: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_oversized_and_unauthenticated_anti_entropy_frames_are_dropped_and_counted() {
    let cluster_key = ClusterKey::generate();
    let _metrics = DROP_METRICS.lock().await;
    let server = node("node-1", &cluster_key, &[]).await;
    let before = drops_by_reason(&server).await;
    let dropped = &server.gossip().unwrap().counters().dropped;
    let mut stranger = Sealer::new(Some(ClusterKey::generate().into()));
    let foreign = stranger.seal(b"\x01anything");
    let oversized_prefix = u32::try_from(directory::gossip::proto::wire::MAX_FRAME + 1)
        .unwrap()
        .to_be_bytes();
    for (bytes, reason) in [
        (stream_frame(b"GET / HTTP/1.1\r\n\r\n"), "garbage"),
        (oversized_prefix.to_vec(), "oversized"),
        (stream_frame(&foreign), "unauthenticated"),
    ] {
        let dropped_before = dropped.load(Ordering::Relaxed);
        anti_entropy_stream_closed_after(&server, &bytes).await;
        assert_eq!(
            dropped.load(Ordering::Relaxed),
            dropped_before + 1,
            "{reason} frame not counted as dropped"
        );
        let after = drops_by_reason(&server).await;
        let delta =
            after.get(reason).copied().unwrap_or(0) - before.get(reason).copied().unwrap_or(0);
        assert!(delta >= 1, "no {reason} drop counted: {after:?}");
    }
    let (status, _, _) = get(&server, "/v1/health").await;
    assert_eq!(status, 200);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_truncated_oversized_and_replayed_packets_are_dropped_and_counted() {
    let _metrics = DROP_METRICS.lock().await;
    let cluster_key = ClusterKey::generate();
    let server = node("node-1", &cluster_key, &[]).await;
    let target = server.gossip_addr().unwrap();
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut sealer = Sealer::new(Some(cluster_key.clone().into()));
    let valid = sealer.seal(&encode_datagram(&Datagram::default(), MAX_DATAGRAM).unwrap());
    let sealed_garbage = sealer.seal(b"\x01not postcard at all");
    let before = drops_by_reason(&server).await;
    // Each packet with the one reason it must be dropped for (`None`: accepted).
    let packets = [
        (b"GET / HTTP/1.1\r\n\r\n".to_vec(), Some("garbage")),
        (vec![0xE1, 1, 2, 3], Some("truncated")),
        (vec![0xE1; 1500], Some("oversized")),
        (valid[..valid.len() - 1].to_vec(), Some("unauthenticated")),
        (valid.clone(), None),
        (valid.clone(), Some("replayed")),
        (sealed_garbage, Some("malformed")),
    ];
    for (packet, _) in &packets {
        socket.send_to(packet, target).await.unwrap();
    }
    let counters = server.gossip().unwrap().counters();
    eventually("six drops", async || {
        counters.dropped.load(Ordering::Relaxed) >= 6
    })
    .await;
    assert_eq!(counters.dropped.load(Ordering::Relaxed), 6);
    assert_eq!(counters.replayed.load(Ordering::Relaxed), 1);
    assert_eq!(counters.unauthenticated.load(Ordering::Relaxed), 1);
    let after = drops_by_reason(&server).await;
    for reason in packets.iter().filter_map(|(_, r)| *r) {
        let delta =
            after.get(reason).copied().unwrap_or(0) - before.get(reason).copied().unwrap_or(0);
        assert!(
            delta >= 1,
            "no drop counted as {reason}: before {before:?}, after {after:?}"
        );
    }
    let (status, _, _) = get(&server, "/v1/health").await;
    assert_eq!(status, 200);
    server.shutdown().await;
}

/// Starts a node that keeps retrying `localhost:{port}`, where nothing answers yet, then the
/// seed on that port. The port is reserved and freed first, so another process may take it
/// in between: then the seed cannot bind, and the whole attempt is retried on a new port.
async fn early_node_then_seed_on_a_freed_port(cluster_key: &ClusterKey) -> (Server, Server) {
    for attempt in 1..=3 {
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut config = Config::for_test();
        config.registry.node = "early".parse().unwrap();
        let mut cluster = GossipSettings::for_test(Security::Key(cluster_key.clone()));
        cluster.join = vec![format!("localhost:{port}")];
        config.cluster = Some(cluster);
        let early = Server::start(config).await.unwrap();
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(alive_members(&early).await, 1);

        let mut config = Config::for_test();
        config.registry.node = "seed".parse().unwrap();
        let mut cluster = GossipSettings::for_test(Security::Key(cluster_key.clone()));
        cluster.bind = SocketAddr::from(([127, 0, 0, 1], port));
        config.cluster = Some(cluster);
        match Server::start(config).await {
            Ok(seed) => return (early, seed),
            Err(err) => eprintln!("attempt {attempt}: port {port} was taken meanwhile: {err}"),
        }
        early.shutdown().await;
    }
    panic!("the freed port was taken on three attempts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_before_its_seed_keeps_retrying_and_joins_by_dns_name() {
    let cluster_key = ClusterKey::generate();
    let (early, seed) = early_node_then_seed_on_a_freed_port(&cluster_key).await;
    for n in [&early, &seed] {
        eventually("the early node joined its late seed", async || {
            alive_members(n).await == 2
        })
        .await;
    }
    early.shutdown().await;
    seed.shutdown().await;
}

/// A non-owner keeps a dead owner's instance for its lease plus `lease_grace`, and no longer:
/// the instance is looked at inside the grace window (lease over, grace running) and after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_of_a_dead_owner_stay_until_their_lease_and_grace_run_out() {
    const LEASE: Duration = Duration::from_secs(2);
    const GRACE: Duration = Duration::from_secs(4);
    let cluster_key = ClusterKey::generate();
    let start = async |name: &str, join: &[SocketAddr]| {
        let mut config = Config::for_test();
        config.registry.node = name.parse().unwrap();
        let mut cluster = GossipSettings::for_test(Security::Key(cluster_key.clone()));
        cluster.join = join.iter().map(ToString::to_string).collect();
        config.registry.replication.lease_grace = GRACE;
        config.cluster = Some(cluster);
        Server::start(config).await.unwrap()
    };
    let owner = start("owner", &[]).await;
    let other = start("other", &[owner.gossip_addr().unwrap()]).await;
    eventually("two members", async || alive_members(&other).await == 2).await;
    let (svc, inst) = key("short", "s-1");
    let mut registration = Registration::new(Address::new("127.0.0.1:7000").unwrap());
    registration.ttl = directory::registry::Ttl::from_duration(LEASE).unwrap();
    let before = Instant::now();
    owner
        .registry()
        .register(&svc, &inst, registration, Instant::now())
        .unwrap();
    eventually("replicated", async || {
        other.registry().instance(&svc, &inst).is_some()
    })
    .await;
    owner.shutdown().await;
    // Inside the grace window: the lease is over by 600 ms, the grace has 3.4 s to run.
    tokio::time::sleep_until(before + LEASE + Duration::from_millis(600)).await;
    let present = other.registry().instance(&svc, &inst).is_some();
    assert!(
        before.elapsed() < LEASE + GRACE,
        "the test thread stalled past the grace window; rerun"
    );
    assert!(present, "dropped when its lease ran out, without the grace");
    eventually("expired after lease + grace", async || {
        other.registry().instance(&svc, &inst).is_none()
    })
    .await;
    assert!(
        before.elapsed() >= LEASE + GRACE - Duration::from_millis(100),
        "expired {:?} after registering, before lease + grace",
        before.elapsed()
    );
    other.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_nodes_cluster_only_with_each_other() {
    let start = async |name: &str, security: Security, join: Option<SocketAddr>| {
        let mut config = Config::for_test();
        config.registry.node = name.parse().unwrap();
        let mut cluster = GossipSettings::for_test(security);
        cluster.join = join.iter().map(ToString::to_string).collect();
        config.cluster = Some(cluster);
        Server::start(config).await.unwrap()
    };
    let a = start("plain-a", Security::Insecure, None).await;
    let seed = a.gossip_addr();
    let b = start("plain-b", Security::Insecure, seed).await;
    let keyed = start("keyed", Security::Key(ClusterKey::generate()), seed).await;
    eventually("insecure nodes joined", async || {
        alive_members(&a).await == 2
    })
    .await;
    let counters = a.gossip().unwrap().counters();
    eventually("keyed packets refused", async || {
        counters.dropped.load(Ordering::Relaxed) >= 1
    })
    .await;
    assert_eq!(alive_members(&keyed).await, 1);
    for n in [keyed, b, a] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_node_refuses_replicated_entries_and_says_so_in_its_health() {
    let cluster_key = ClusterKey::generate();
    let first = node("node-1", &cluster_key, &[]).await;
    let mut config = Config::for_test();
    config.registry.node = "node-2".parse().unwrap();
    config.registry.max_instances = 2;
    let mut cluster = GossipSettings::for_test(Security::Key(cluster_key.clone()));
    cluster.join = vec![first.gossip_addr().unwrap().to_string()];
    config.cluster = Some(cluster);
    let small = Server::start(config).await.expect("node starts");
    eventually("two alive members", async || {
        alive_members(&small).await == 2
    })
    .await;

    for i in 0..4 {
        let (svc, inst) = key("orders", &format!("orders-{i}"));
        let registration = Registration::new(Address::new("127.0.0.1:7000").unwrap());
        first
            .registry()
            .register(&svc, &inst, registration, Instant::now())
            .unwrap();
    }
    eventually("two entries refused", async || {
        small.registry().refusals().total >= 2
    })
    .await;
    assert_eq!(
        small.registry().len(),
        2,
        "max_instances holds for replicas"
    );
    assert_eq!(first.registry().len(), 4);
    // The gossip replica lets go of what the store refused: its memory is bounded by the
    // store's limits too (anti-entropy keeps offering the rest, and keeps being refused).
    let replica = |n: &Server| {
        n.gossip()
            .unwrap()
            .counters()
            .replica_entries
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    eventually("the sender's replica holds all four", async || {
        replica(&first) == 4
    })
    .await;
    let sync_served = |n: &Server| {
        n.gossip()
            .unwrap()
            .counters()
            .syncs_completed
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let syncs = sync_served(&small);
    eventually("an anti-entropy round after the refusals", async || {
        sync_served(&small) > syncs + 1
    })
    .await;
    assert_eq!(
        replica(&small),
        2,
        "the full node's replica holds only what it took"
    );
    assert_eq!(small.registry().len(), 2);
    let (status, health, _) = get(&small, "/v1/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(health["registry"]["refused_replicated_entries"].as_u64() >= Some(2));
    let (_, health, _) = get(&first, "/v1/health").await;
    assert_eq!(health["status"], "ok", "{health}");
    small.shutdown().await;
    first.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_replicate_wake_blocked_topic_queries_and_expire_with_the_lease() {
    let cluster_key = ClusterKey::generate();
    let first = node("node-1", &cluster_key, &[]).await;
    let second = node("node-2", &cluster_key, &[first.gossip_addr().unwrap()]).await;
    for n in [&first, &second] {
        eventually("two alive members", async || alive_members(n).await == 2).await;
    }
    let path = "/v1/topics/orders.eu.created/subscribers";
    let (status, body, index) = get(&second, path).await;
    assert_eq!(
        (status, body["groups"].as_array().map(Vec::len)),
        (200, Some(0))
    );
    let waiting = spawn_get_json(url(
        &second,
        &format!("{path}?index={}&wait=10s", index.unwrap()),
    ));

    let (svc, inst) = key("billing", "billing-1");
    let mut registration = Registration::new(Address::new("127.0.0.1:7000").unwrap());
    registration.ttl = "1s".parse().unwrap();
    let subscription = Subscription::parse("orders.*.created:invoicing").unwrap();
    registration.subscriptions = Subscriptions::new(vec![subscription]).unwrap();
    first
        .registry()
        .register(&svc, &inst, registration, Instant::now())
        .unwrap();
    let woke = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(woke["groups"][0]["group"], "invoicing", "{woke}");
    assert_eq!(woke["groups"][0]["instances"][0]["instance"], "billing-1");
    let (_, topics, _) = get(&second, "/v1/topics").await;
    assert_eq!(
        topics["patterns"][0]["pattern"], "orders.*.created",
        "{topics}"
    );

    // Nobody renews the lease: the subscription goes with the instance on both nodes.
    let topic = "orders.eu.created".parse().unwrap();
    for n in [&first, &second] {
        eventually("subscription expired", async || {
            n.registry().topic_subscribers(&topic).groups.is_empty()
        })
        .await;
        assert!(n.registry().topics().patterns.is_empty());
    }
    second.shutdown().await;
    first.shutdown().await;
}
