//! The DNS interface on real sockets, asked by hickory-resolver (a client no one here
//! wrote) and by raw packets: A, AAAA, SRV, NXDOMAIN, truncation with TCP fallback, and
//! garbage that must not stop the node.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use directory::dns::DnsConfig;
use directory::gossip::{ClusterKey, GossipSettings, Security};
use directory::registry::{Address, InstanceId, Now, Registration, ServiceName, Tags};
use directory::{Config, Server};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ProtocolConfig, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::op::{Message, Query, ResponseCode};
use hickory_resolver::proto::rr::{Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::Instant;

const STEP: Duration = Duration::from_secs(5);

async fn start_dns_node() -> (Server, SocketAddr) {
    let server = common::start_with(|c| {
        c.dns = Some(DnsConfig::new("127.0.0.1:0".parse().unwrap()));
    })
    .await;
    let addr = server.dns_addr().expect("DNS is on");
    (server, addr)
}

fn register(server: &Server, service: &str, instance: &str, address: &str, tags: &[&str]) {
    let mut registration = Registration::new(Address::new(address).unwrap());
    registration.tags = Tags::new(tags.iter().map(|t| t.to_string()).collect()).unwrap();
    server
        .registry()
        .register(
            &ServiceName::new(service).unwrap(),
            &InstanceId::new(instance).unwrap(),
            registration,
            Now::current(),
        )
        .unwrap();
}

/// A resolver that asks only `addr`, without caching, over the given protocols in order.
fn resolver(addr: SocketAddr, protocols: &[ProtocolConfig], edns0: bool) -> TokioResolver {
    let connections = protocols
        .iter()
        .map(|p| {
            let mut c = ConnectionConfig::new(p.clone());
            c.port = addr.port();
            c
        })
        .collect();
    let mut server = NameServerConfig::udp_and_tcp(addr.ip());
    server.connections = connections;
    let config = ResolverConfig::from_name_servers(vec![server]);
    let mut opts = ResolverOpts::default();
    opts.cache_size = 0;
    opts.timeout = Duration::from_secs(2);
    opts.attempts = 2;
    opts.edns0 = edns0;
    TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
        .with_options(opts)
        .build()
        .unwrap()
}

fn udp_then_tcp(addr: SocketAddr) -> TokioResolver {
    resolver(addr, &[ProtocolConfig::Udp, ProtocolConfig::Tcp], false)
}

async fn answers(resolver: &TokioResolver, name: &str, rtype: RecordType) -> Vec<String> {
    let lookup = tokio::time::timeout(STEP, resolver.lookup(name, rtype))
        .await
        .expect("the node answers in time")
        .unwrap_or_else(|e| panic!("{name} {rtype}: {e}"));
    let mut rdata: Vec<String> = lookup
        .answers()
        .iter()
        .filter(|r| r.record_type() == rtype)
        .map(|r| r.data.to_string())
        .collect();
    rdata.sort();
    rdata
}

/// One query over raw UDP without EDNS (a 512-byte limit); the decoded reply.
async fn raw_udp_query(addr: SocketAddr, name: &str, rtype: RecordType) -> Message {
    let mut query = Message::query();
    query.add_query(Query::query(name.parse::<Name>().unwrap(), rtype));
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket
        .send_to(&query.to_vec().unwrap(), addr)
        .await
        .unwrap();
    let mut buf = vec![0; 65_535];
    let (n, _) = tokio::time::timeout(STEP, socket.recv_from(&mut buf))
        .await
        .expect("a reply over UDP")
        .unwrap();
    Message::from_vec(&buf[..n]).unwrap()
}

#[tokio::test]
async fn a_aaaa_and_srv_answer_live_instances_and_unknown_services_are_nxdomain() {
    let (server, addr) = start_dns_node().await;
    register(&server, "web", "w1", "10.1.0.1:80", &["v2"]);
    register(&server, "web", "w2", "[2001:db8::2]:8080", &[]);
    let resolver = udp_then_tcp(addr);
    let a = answers(&resolver, "web.service.directory.", RecordType::A).await;
    assert_eq!(a, ["10.1.0.1"]);
    let aaaa = answers(&resolver, "web.service.directory.", RecordType::AAAA).await;
    assert_eq!(aaaa, ["2001:db8::2"]);
    let srv = answers(&resolver, "_web._tcp.service.directory.", RecordType::SRV).await;
    assert_eq!(
        srv,
        [
            "1 1 80 0a010001.addr.directory.",
            "1 1 8080 20010db8000000000000000000000002.addr.directory.",
        ]
    );
    let tagged = answers(&resolver, "v2.web.service.directory.", RecordType::SRV).await;
    assert_eq!(tagged, ["1 1 80 0a010001.addr.directory."]);
    let target = answers(&resolver, "0a010001.addr.directory.", RecordType::A).await;
    assert_eq!(target, ["10.1.0.1"]);

    let missing = resolver
        .lookup("nope.service.directory.", RecordType::A)
        .await
        .unwrap_err();
    assert!(missing.is_nx_domain(), "{missing}");
    let reply = raw_udp_query(addr, "web.service.directory.", RecordType::A).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.metadata.authoritative);
    assert_eq!(reply.answers[0].ttl, 5);
    server.shutdown().await;
}

#[tokio::test]
async fn a_large_answer_is_truncated_over_udp_and_complete_over_tcp() {
    let (server, addr) = start_dns_node().await;
    for i in 0..200 {
        let address = format!("[2001:db8::{i:x}]:{}", 9000 + i);
        register(&server, "big", &format!("big-{i}"), &address, &[]);
    }
    let reply = raw_udp_query(addr, "big.service.directory.", RecordType::SRV).await;
    assert!(
        reply.metadata.truncation,
        "a 512-byte UDP answer is marked truncated"
    );
    assert!(reply.answers.len() < 200);
    let tcp_only = resolver(addr, &[ProtocolConfig::Tcp], true);
    let srv = answers(&tcp_only, "big.service.directory.", RecordType::SRV).await;
    assert_eq!(srv.len(), 200);
    let fallback = answers(
        &udp_then_tcp(addr),
        "big.service.directory.",
        RecordType::SRV,
    )
    .await;
    assert_eq!(fallback.len(), 200, "the resolver retried over TCP");
    server.shutdown().await;
}

#[tokio::test]
async fn garbage_packets_get_no_crash_and_the_node_keeps_answering() {
    let (server, addr) = start_dns_node().await;
    register(&server, "web", "w1", "10.1.0.1:80", &[]);
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut header_only = vec![0x12, 0x34, 0x01, 0x00, 0x00, 0x05];
    header_only.extend([0; 6]);
    let garbage: Vec<Vec<u8>> = vec![
        vec![],
        vec![0xff; 5],
        vec![0xff; 12],
        header_only,
        (0..=255u8).cycle().take(1500).collect(),
        vec![0; 512],
    ];
    for packet in &garbage {
        socket.send_to(packet, addr).await.unwrap();
    }
    for packet in &garbage {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let len = u16::try_from(packet.len()).unwrap();
        let _ = tcp.write_all(&len.to_be_bytes()).await;
        let _ = tcp.write_all(packet).await;
        let _ = tcp.shutdown().await;
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(STEP, tcp.read_to_end(&mut sink)).await;
    }
    let mut lying = TcpStream::connect(addr).await.unwrap();
    lying.write_all(&[0xff, 0xff, 1, 2, 3]).await.unwrap();
    drop(lying);
    let udp = udp_then_tcp(addr);
    let a = answers(&udp, "web.service.directory.", RecordType::A).await;
    assert_eq!(a, ["10.1.0.1"]);
    let tcp_only = resolver(addr, &[ProtocolConfig::Tcp], true);
    let a = answers(&tcp_only, "web.service.directory.", RecordType::A).await;
    assert_eq!(a, ["10.1.0.1"]);
    server.shutdown().await;
}

/// A cluster node with DNS on a free port, joining `seed`.
async fn cluster_node(name: &str, key: &ClusterKey, seed: Option<SocketAddr>) -> Server {
    let mut config = Config::for_test();
    config.registry.node = name.parse().unwrap();
    let mut cluster = GossipSettings::for_test(Security::Key(key.clone()));
    cluster.join = seed.iter().map(ToString::to_string).collect();
    config.cluster = Some(cluster);
    config.dns = Some(DnsConfig::new("127.0.0.1:0".parse().unwrap()));
    Server::start(config).await.expect("node starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consul_api_registration_on_node_1_resolves_through_dns_on_node_3() {
    let key = ClusterKey::generate();
    let first = cluster_node("node-1", &key, None).await;
    let seed = first.gossip_addr();
    let _second = cluster_node("node-2", &key, seed).await;
    let third = cluster_node("node-3", &key, seed).await;
    let body = serde_json::json!({
        "Name": "payments", "ID": "payments-1", "Address": "10.7.0.1", "Port": 8443,
        "Tags": ["primary"], "Check": {"TTL": "30s", "Status": "passing"}
    });
    let response = common::client()
        .put(common::url(&first, "/v1/agent/service/register"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());

    let resolver = udp_then_tcp(third.dns_addr().unwrap());
    let name = "_payments._tcp.service.directory.";
    let deadline = Instant::now() + Duration::from_secs(15);
    let srv = loop {
        match resolver.lookup(name, RecordType::SRV).await {
            Ok(found) => break found,
            Err(e) if e.is_nx_domain() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("node 3 never resolved {name}: {e}"),
        }
    };
    let rdata: Vec<String> = srv.answers().iter().map(|r| r.data.to_string()).collect();
    assert_eq!(rdata, ["1 1 8443 0a070001.addr.directory."]);
    let tagged = answers(
        &resolver,
        "primary.payments.service.directory.",
        RecordType::A,
    )
    .await;
    assert_eq!(tagged, ["10.7.0.1"]);
    first.shutdown().await;
    third.shutdown().await;
}

/// One A query over an open TCP connection; the reply, or `None` if none came within `wait`.
async fn tcp_query(stream: &mut TcpStream, name: &str, wait: Duration) -> Option<Message> {
    let mut query = Message::query();
    query.add_query(Query::query(name.parse::<Name>().unwrap(), RecordType::A));
    let bytes = query.to_vec().unwrap();
    let len = u16::try_from(bytes.len()).unwrap();
    stream.write_all(&len.to_be_bytes()).await.ok()?;
    stream.write_all(&bytes).await.ok()?;
    tokio::time::timeout(wait, async {
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await.ok()?;
        let mut reply = vec![0; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut reply).await.ok()?;
        Message::from_vec(&reply).ok()
    })
    .await
    .ok()
    .flatten()
}

#[tokio::test]
async fn tcp_connections_are_capped_and_idle_ones_are_closed() {
    let server = common::start_with(|c| {
        let mut dns = DnsConfig::new("127.0.0.1:0".parse().unwrap());
        dns.max_tcp_connections = std::num::NonZeroUsize::new(2).unwrap();
        c.dns = Some(dns);
    })
    .await;
    let addr = server.dns_addr().unwrap();
    register(&server, "web", "w1", "10.1.0.1:80", &[]);
    let name = "web.service.directory.";

    // Two connections take both slots; each answers queries, many in turn.
    let mut first = TcpStream::connect(addr).await.unwrap();
    let mut second = TcpStream::connect(addr).await.unwrap();
    for _ in 0..3 {
        assert!(tcp_query(&mut first, name, STEP).await.is_some());
    }
    assert!(tcp_query(&mut second, name, STEP).await.is_some());

    // A third waits in the backlog: no answer while the slots are held, UDP still answers.
    let mut third = TcpStream::connect(addr).await.unwrap();
    assert!(
        tcp_query(&mut third, name, Duration::from_millis(500))
            .await
            .is_none(),
        "a connection over the cap was served"
    );
    let udp = raw_udp_query(addr, name, RecordType::A).await;
    assert_eq!(udp.answers.len(), 1);

    // A slot frees: the waiting connection is accepted and its query answered.
    drop(first);
    let mut len = [0u8; 2];
    let reply = tokio::time::timeout(STEP, third.read_exact(&mut len)).await;
    assert!(matches!(reply, Ok(Ok(_))), "the queued query got no answer");

    // An idle connection is closed by the node after the idle timeout.
    let started = Instant::now();
    let mut sink = Vec::new();
    let closed = tokio::time::timeout(
        directory::dns::DNS_TCP_IDLE_TIMEOUT + STEP,
        second.read_to_end(&mut sink),
    )
    .await;
    assert!(matches!(closed, Ok(Ok(0))), "idle connection not closed");
    assert!(started.elapsed() < directory::dns::DNS_TCP_IDLE_TIMEOUT + STEP);
    server.shutdown().await;
}
