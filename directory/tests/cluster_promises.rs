//! Cluster promises of docs/design.md and the README, on in-process nodes over loopback:
//!
//! - a node refuses to start when the tombstone retention does not exceed the longest lease
//!   plus the lease grace (`validate()`, at start and in the gossip core);
//! - normal-case expiry: the owner expires the lease and every node reports that one
//!   `expired` event, within the grace, without expiring the copy itself;
//! - `--advertise-addr`: members list the advertised address, and peers dial it;
//! - each gossip metric has HELP text and moves when its event happens.
//!
//! Metrics are process-wide, so every test that runs a cluster holds [`CLUSTER`].

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use directory::gossip::proto::{GossipConfig, GossipConfigError, GossipCore, NodeIdentity};
use directory::gossip::{ClusterKey, GossipSettings, MemberState, Security};
use directory::registry::{
    Address, ChangeKind, DEFAULT_LEASE_GRACE, InstanceId, MAX_TTL, Registration, Registry,
    ReplicationRules, RulesError, ServiceName, Ttl,
};
use directory::{Config, Server, StartError};
use serde_json::Value;
use tokio::time::Instant;

use common::{client, url};

static CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn config(name: &str, key: &ClusterKey, join: &[SocketAddr]) -> Config {
    let mut config = Config::for_test();
    config.registry.node = name.parse().unwrap();
    let mut cluster = GossipSettings::for_test(Security::Key(key.clone()));
    cluster.join = join.iter().map(ToString::to_string).collect();
    config.cluster = Some(cluster);
    config
}

async fn alive_members(server: &Server) -> usize {
    server
        .gossip()
        .unwrap()
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

async fn metrics_text(server: &Server) -> String {
    let response = client().get(url(server, "/metrics")).send().await.unwrap();
    response.text().await.unwrap()
}

/// The value of one series (`name` or `name{labels}`), 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

fn has_help(text: &str, name: &str) -> bool {
    text.lines().any(|line| {
        line.strip_prefix("# HELP ")
            .and_then(|rest| rest.strip_prefix(name))
            .is_some_and(|help| help.starts_with(' ') && help.trim().len() > 10)
    })
}

fn key(service: &str, instance: &str) -> (ServiceName, InstanceId) {
    (service.parse().unwrap(), instance.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_refuses_a_tombstone_retention_not_above_the_longest_lease_plus_grace() {
    let at_minimum = ReplicationRules {
        tombstone_retention: MAX_TTL + DEFAULT_LEASE_GRACE,
        ..ReplicationRules::default()
    };
    let long_grace = ReplicationRules {
        lease_grace: Duration::from_secs(6 * 60),
        ..ReplicationRules::default()
    };
    for rules in [at_minimum, long_grace] {
        let mut config = Config::for_test();
        config.registry.replication = rules;
        match Server::start(config).await {
            Err(StartError::Config(RulesError::RetentionTooShort { minimum, retention })) => {
                assert_eq!(minimum, MAX_TTL + rules.lease_grace);
                assert_eq!(retention, rules.tombstone_retention);
            }
            Err(other) => panic!("refused for another reason: {other}"),
            Ok(server) => {
                server.shutdown().await;
                panic!("a node started with {rules:?}");
            }
        }
        let identity = NodeIdentity::new("127.0.0.1:7701".parse().unwrap(), "n", 1);
        let core = GossipCore::new(
            identity,
            GossipConfig::for_test(),
            rules,
            std::time::Instant::now(),
            1_000_000, // wall clock (Unix ms): any reading will do here
        );
        assert!(
            matches!(core, Err(GossipConfigError::Rules(_))),
            "the gossip core accepted {rules:?}"
        );
    }
    let mut config = Config::for_test();
    config.registry.replication.tombstone_retention =
        MAX_TTL + DEFAULT_LEASE_GRACE + Duration::from_millis(1);
    let server = Server::start(config)
        .await
        .expect("one millisecond more is enough");
    server.shutdown().await;
}

/// The owner expires the lease; its tombstone reaches the others well inside their grace, so
/// every node reports one `expired` event for it and no node expires its own copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normal_case_expiry_reaches_every_node_as_the_owners_one_expired_event() {
    const LEASE: Duration = Duration::from_secs(1);
    const GRACE: Duration = Duration::from_secs(4);
    let _cluster = CLUSTER.lock().await;
    let cluster_key = ClusterKey::generate();
    let start = async |name: &str, join: &[SocketAddr]| {
        let mut config = config(name, &cluster_key, join);
        config.registry.replication.lease_grace = GRACE;
        Server::start(config).await.unwrap()
    };
    let first = start("node-1", &[]).await;
    let seed = first.gossip_addr().unwrap();
    let nodes = vec![
        first,
        start("node-2", &[seed]).await,
        start("node-3", &[seed]).await,
    ];
    for n in &nodes {
        eventually("three alive members", async || alive_members(n).await == 3).await;
    }
    let mut watches: Vec<_> = nodes.iter().map(|n| n.registry().subscribe()).collect();
    let expirations_before = sample(
        &metrics_text(&nodes[0]).await,
        "directory_expirations_total",
    );

    let (svc, inst) = key("short", "short-1");
    let mut registration = Registration::new(Address::new("127.0.0.1:7000").unwrap());
    registration.ttl = Ttl::from_duration(LEASE).unwrap();
    let registered = Instant::now();
    nodes[0]
        .registry()
        .register(&svc, &inst, registration, Instant::now())
        .unwrap();

    for (i, watch) in watches.iter_mut().enumerate() {
        let mut kinds = Vec::new();
        while kinds.last() != Some(&ChangeKind::Expired) {
            let event = tokio::time::timeout(Duration::from_secs(15), watch.recv())
                .await
                .unwrap_or_else(|_| panic!("node {i}: no expiry within 15 s: {kinds:?}"))
                .unwrap();
            if event.service == svc && event.instance == inst {
                kinds.push(event.kind);
            }
        }
        let at = registered.elapsed();
        assert_eq!(
            kinds,
            [ChangeKind::Registered, ChangeKind::Expired],
            "node {i}"
        );
        assert!(
            at < LEASE + GRACE / 2,
            "node {i} reported the expiry {at:?} after registering: its own expiry after the \
             grace, not the owner's tombstone"
        );
    }
    // Every lease timer (the non-owners' fire at lease + grace) has run once only the
    // tombstones' collection timers, an hour away, are left.
    for n in &nodes {
        eventually("the lease timers ran", async || {
            n.registry()
                .next_deadline()
                .is_none_or(|d| d > Instant::now() + Duration::from_secs(60))
        })
        .await;
    }
    let expirations = sample(
        &metrics_text(&nodes[0]).await,
        "directory_expirations_total",
    );
    assert_eq!(
        expirations - expirations_before,
        1.0,
        "only the owner expires the lease; the others apply its tombstone"
    );
    for (i, watch) in watches.iter_mut().enumerate() {
        assert!(
            matches!(
                watch.try_recv(),
                Err(tokio::sync::broadcast::error::TryRecvError::Empty)
            ),
            "node {i} reported another change after the expiry"
        );
    }
    for n in nodes {
        n.shutdown().await;
    }
}

/// A UDP and TCP relay on one loopback port, standing in for an address that only the
/// advertised name reaches. Counts the datagrams it relays.
struct Relay {
    relayed: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Relay {
    async fn bind() -> (tokio::net::UdpSocket, tokio::net::TcpListener) {
        for _ in 0..8 {
            let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let addr = udp.local_addr().unwrap();
            if let Ok(tcp) = tokio::net::TcpListener::bind(addr).await {
                return (udp, tcp);
            }
        }
        panic!("no loopback port free for both UDP and TCP");
    }

    fn start(udp: tokio::net::UdpSocket, tcp: tokio::net::TcpListener, to: SocketAddr) -> Self {
        let relayed = Arc::new(AtomicU64::new(0));
        let count = relayed.clone();
        let datagrams = tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok((len, _)) = udp.recv_from(&mut buf).await {
                count.fetch_add(1, Ordering::Relaxed);
                let _ = udp.send_to(&buf[..len], to).await;
            }
        });
        let streams = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = tcp.accept().await {
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Self {
            relayed,
            tasks: vec![datagrams, streams],
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.tasks.iter().for_each(tokio::task::JoinHandle::abort);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_show_the_advertised_address_and_peers_dial_it() {
    let _cluster = CLUSTER.lock().await;
    let cluster_key = ClusterKey::generate();
    let (udp, tcp) = Relay::bind().await;
    let advertised = udp.local_addr().unwrap();
    let mut advertising = config("advertising", &cluster_key, &[]);
    advertising.cluster.as_mut().unwrap().advertise = Some(advertised);
    let a = Server::start(advertising).await.unwrap();
    assert_eq!(a.gossip().unwrap().advertise_addr(), advertised);
    let relay = Relay::start(udp, tcp, a.gossip_addr().unwrap());
    // Seeds name the advertised address (the bound one is not what others reach); a third
    // node knows only the second, so it learns `a`'s address from gossip alone.
    let b = Server::start(config("other", &cluster_key, &[advertised]))
        .await
        .unwrap();
    let c = Server::start(config("third", &cluster_key, &[b.gossip_addr().unwrap()]))
        .await
        .unwrap();
    for n in [&a, &b, &c] {
        eventually("three alive members", async || alive_members(n).await == 3).await;
    }
    let members = c.gossip().unwrap().members().await;
    let row = members
        .iter()
        .find(|m| m.identity.name == "advertising")
        .expect("listed");
    assert_eq!(row.identity.addr, advertised, "{members:?}");
    let body: Value = client()
        .get(url(&c, "/v1/cluster/members"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listed = body["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "advertising")
        .cloned();
    assert_eq!(
        listed.map(|m| m["address"].clone()),
        Some(Value::String(advertised.to_string())),
        "{body}"
    );

    // Probes and replication to `a` go through the advertised address.
    let relayed_before = relay.relayed.load(Ordering::Relaxed);
    let (svc, inst) = key("orders", "orders-1");
    let registration = Registration::new(Address::new("127.0.0.1:7000").unwrap());
    c.registry()
        .register(&svc, &inst, registration, Instant::now())
        .unwrap();
    eventually("replicated through the advertised address", async || {
        a.registry().instance(&svc, &inst).is_some()
    })
    .await;
    eventually("peers keep dialing the advertised address", async || {
        relay.relayed.load(Ordering::Relaxed) >= relayed_before + 5
    })
    .await;
    assert_eq!(alive_members(&c).await, 3);
    drop(relay);
    for n in [c, b, a] {
        n.shutdown().await;
    }
}

/// A node on a runtime of its own, so that it can die without a word: shutting that runtime
/// down drops its tasks and sockets without the graceful leave.
struct Detached {
    registry: Registry,
    stop: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Detached {
    async fn start(config: Config) -> Self {
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (stop, stop_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let server = runtime.block_on(Server::start(config)).unwrap();
            let _ = ready_tx.send(server.registry().clone());
            let _ = stop_rx.recv_timeout(Duration::from_secs(60));
            runtime.shutdown_background();
            drop(server);
        });
        let registry = ready_rx.await.unwrap();
        Self {
            registry,
            stop,
            thread,
        }
    }

    async fn crash(self) {
        let _ = self.stop.send(());
        tokio::task::spawn_blocking(move || self.thread.join().unwrap())
            .await
            .unwrap();
    }
}

const GOSSIP_METRICS: [&str; 9] = [
    "directory_gossip_datagrams_sent_total",
    "directory_gossip_bytes_sent_total",
    "directory_gossip_datagrams_received_total",
    "directory_gossip_bytes_received_total",
    "directory_gossip_entries_applied_total",
    "directory_gossip_members_alive",
    "directory_gossip_members_failed_total",
    "directory_gossip_dropped_packets_total",
    "directory_gossip_syncs_total",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_gossip_metric_has_help_and_moves_when_its_event_happens() {
    let _cluster = CLUSTER.lock().await;
    let cluster_key = ClusterKey::generate();
    let a = Server::start(config("node-1", &cluster_key, &[]))
        .await
        .unwrap();
    let b = Detached::start(config("node-2", &cluster_key, &[a.gossip_addr().unwrap()])).await;
    eventually("two alive members", async || alive_members(&a).await == 2).await;
    let before = metrics_text(&a).await;
    assert_eq!(sample(&before, "directory_gossip_members_alive"), 2.0);

    // A registration: datagrams and bytes go out, the other node applies one entry.
    let (svc, inst) = key("orders", "orders-1");
    let registration = Registration::new(Address::new("127.0.0.1:7000").unwrap());
    a.registry()
        .register(&svc, &inst, registration, Instant::now())
        .unwrap();
    eventually("replicated", async || {
        b.registry.instance(&svc, &inst).is_some()
    })
    .await;
    let after = metrics_text(&a).await;
    let delta = |series: &str| sample(&after, series) - sample(&before, series);
    assert_eq!(delta("directory_gossip_entries_applied_total"), 1.0);
    let datagrams = delta("directory_gossip_datagrams_sent_total");
    assert!(datagrams >= 1.0, "no datagram counted");
    assert!(
        delta("directory_gossip_bytes_sent_total") >= datagrams * 40.0,
        "bytes sent not counted with their envelope"
    );

    // Node 2's answers (acks, its own broadcasts) arrive: counted with their envelope.
    eventually("datagrams received counted", async || {
        let now = metrics_text(&a).await;
        sample(&now, "directory_gossip_datagrams_received_total")
            > sample(&before, "directory_gossip_datagrams_received_total")
    })
    .await;
    let now = metrics_text(&a).await;
    let received = sample(&now, "directory_gossip_datagrams_received_total");
    assert!(
        sample(&now, "directory_gossip_bytes_received_total") >= received * 40.0,
        "bytes received not counted with their envelope"
    );

    // Anti-entropy sessions succeed.
    let ok = "directory_gossip_syncs_total{result=\"ok\"}";
    eventually("a completed sync counted", async || {
        sample(&metrics_text(&a).await, ok) > sample(&before, ok)
    })
    .await;

    // A garbage datagram is dropped, with its reason.
    let garbage = "directory_gossip_dropped_packets_total{reason=\"garbage\"}";
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket
        .send_to(b"GET / HTTP/1.1\r\n\r\n", a.gossip_addr().unwrap())
        .await
        .unwrap();
    eventually("the garbage datagram counted", async || {
        sample(&metrics_text(&a).await, garbage) > sample(&before, garbage)
    })
    .await;

    // The other node dies silently: declared dead, syncs with it fail, one member left.
    let (failed, sync_failed) = (
        "directory_gossip_members_failed_total",
        "directory_gossip_syncs_total{result=\"failed\"}",
    );
    let before_crash = metrics_text(&a).await;
    b.crash().await;
    eventually("the dead member counted", async || {
        let now = metrics_text(&a).await;
        sample(&now, failed) > sample(&before_crash, failed)
            && sample(&now, sync_failed) > sample(&before_crash, sync_failed)
            && sample(&now, "directory_gossip_members_alive") == 1.0
    })
    .await;

    let text = metrics_text(&a).await;
    for name in GOSSIP_METRICS {
        assert!(has_help(&text, name), "no HELP text for {name}");
    }
    a.shutdown().await;
}
