//! The API crate's typed client against a real node on port 0, and against things that are
//! not directory nodes (refused ports, silent listeners, HTML pages, TLS with unknown CAs).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::start;
use directory_api::{
    Address, ChangeKind, Client, ClientError, ErrorCode, InstanceFilter, InstanceId, Registration,
    ServiceName, Tags, Ttl, WatchEvent,
};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(10);

fn names(service: &str, instance: &str) -> (ServiceName, InstanceId) {
    (
        ServiceName::new(service).unwrap(),
        InstanceId::new(instance).unwrap(),
    )
}

fn registration(address: &str) -> Registration {
    let mut reg = Registration::new(Address::new(address).unwrap());
    reg.tags = Tags::new(vec!["v2".into()]).unwrap();
    reg.ttl = Ttl::parse("10s").unwrap();
    reg
}

fn node_url(server: &directory::Server) -> String {
    format!("http://{}", server.http_addr())
}

/// A port nothing listens on (bound, then released).
async fn refused_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// Answers one connection with `response` and hands back the request it read.
async fn one_shot_server(response: &'static str) -> (String, tokio::task::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let request = read_head(&mut socket).await;
        socket.write_all(response.as_bytes()).await.unwrap();
        socket.shutdown().await.ok();
        request
    });
    (url, task)
}

async fn read_head(socket: &mut (impl AsyncReadExt + Unpin)) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = socket.read(&mut chunk).await.unwrap();
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test]
async fn register_lookup_heartbeat_and_deregister_through_the_client() {
    let server = start().await;
    let client = Client::new(&node_url(&server)).unwrap();
    let (service, instance) = names("orders", "orders-1");
    let record = client
        .register(&service, &instance, &registration("127.0.0.1:7000"))
        .await
        .unwrap();
    assert_eq!(record.address.as_str(), "127.0.0.1:7000");
    assert_eq!(record.ttl.to_string(), "10s");

    let view = client
        .lookup(&service, &InstanceFilter::default().tag("v2"))
        .await
        .unwrap();
    assert_eq!(view.instances.len(), 1);
    assert_eq!(view.instances[0].instance, instance);
    let none = client
        .lookup(&service, &InstanceFilter::default().tag("v3"))
        .await
        .unwrap();
    assert!(none.instances.is_empty());

    let renewed = client.heartbeat(&service, &instance).await.unwrap();
    assert!(renewed.lease_expires_at >= record.lease_expires_at);
    assert_eq!(client.instance(&service, &instance).await.unwrap(), renewed);
    let services = client.services().await.unwrap();
    assert_eq!(services.services[0].service, service);
    assert_eq!(services.services[0].instances, 1);
    assert_eq!(client.health().await.unwrap().status, "ok");
    assert_eq!(client.members().await.unwrap().members.len(), 1);

    client.deregister(&service, &instance).await.unwrap();
    let err = client.heartbeat(&service, &instance).await.unwrap_err();
    assert_eq!(err.code(), Some(&ErrorCode::InstanceNotFound), "{err}");
    assert_eq!(err.status(), Some(404));
    server.shutdown().await;
}

#[tokio::test]
async fn a_blocking_lookup_returns_when_the_service_changes() {
    let server = start().await;
    let client = Client::new(&node_url(&server)).unwrap();
    let (service, instance) = names("orders", "orders-1");
    let before = client
        .lookup(&service, &InstanceFilter::default())
        .await
        .unwrap();
    let waiting = {
        let (client, service) = (client.clone(), service.clone());
        tokio::spawn(async move {
            let filter = InstanceFilter::default();
            client
                .lookup_after(&service, &filter, before.index, Duration::from_secs(30))
                .await
        })
    };
    client
        .register(&service, &instance, &registration("127.0.0.1:7000"))
        .await
        .unwrap();
    let after = timeout(LIMIT, waiting).await.unwrap().unwrap().unwrap();
    assert!(after.index > before.index);
    assert_eq!(after.instances.len(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn the_watch_stream_yields_typed_change_events() {
    let server = start().await;
    let client = Client::new(&node_url(&server)).unwrap();
    let (service, instance) = names("orders", "orders-1");
    let mut events = client.watch(Some(&service)).await.unwrap();
    let (other, _) = names("billing", "x");
    client
        .register(&other, &instance, &registration("127.0.0.1:1"))
        .await
        .unwrap();
    client
        .register(&service, &instance, &registration("127.0.0.1:7000"))
        .await
        .unwrap();
    client.deregister(&service, &instance).await.unwrap();
    let mut kinds = Vec::new();
    while kinds.len() < 2 {
        match timeout(LIMIT, events.next()).await.unwrap() {
            Some(Ok(WatchEvent::Change(change))) => {
                assert_eq!(change.service, service, "the filter holds");
                kinds.push(change.kind);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(kinds, [ChangeKind::Registered, ChangeKind::Deregistered]);
    server.shutdown().await;
}

#[tokio::test]
async fn calls_fail_over_to_the_next_url_and_a_lone_dead_url_is_refused() {
    let server = start().await;
    let dead = refused_url().await;
    let client = Client::builder([dead.clone(), node_url(&server)])
        .build()
        .unwrap();
    assert_eq!(client.health().await.unwrap().status, "ok");
    let alone = Client::new(&dead).unwrap();
    let err = alone.health().await.unwrap_err();
    assert!(matches!(err, ClientError::Refused { .. }), "{err:?}");
    assert!(err.is_unavailable());
    server.shutdown().await;
}

#[tokio::test]
async fn a_silent_node_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hold = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        tokio::time::sleep(LIMIT).await;
        drop(socket);
    });
    let client = Client::builder([url])
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = client.health().await.unwrap_err();
    assert!(matches!(err, ClientError::Timeout { .. }), "{err:?}");
    hold.abort();
}

#[tokio::test]
async fn an_html_page_is_not_a_directory_and_its_body_is_not_printed_whole() {
    const PAGE: &str = "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 2000\r\nconnection: close\r\n\r\n";
    let body = format!("<html>{}</html>", "x".repeat(2000 - 13));
    let response: &'static str = Box::leak(format!("{PAGE}{body}").into_boxed_str());
    let (url, _task) = one_shot_server(response).await;
    let err = Client::new(&url).unwrap().health().await.unwrap_err();
    assert!(matches!(err, ClientError::NotADirectory { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("text/html") && text.len() < 300, "{text}");
}

#[tokio::test]
async fn the_bearer_token_is_sent_with_each_request() {
    const HEALTH: &str = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 44\r\nconnection: close\r\n\r\n{\"status\":\"ok\",\"node\":\"n\",\"version\":\"0.1.0\"}";
    let (url, task) = one_shot_server(HEALTH).await;
    let client = Client::builder([url])
        .bearer_token("t0ken")
        .build()
        .unwrap();
    assert_eq!(client.health().await.unwrap().node, "n");
    let request = task.await.unwrap().to_ascii_lowercase();
    assert!(request.contains("authorization: bearer t0ken"), "{request}");
}

/// An HTTPS server with a fresh self-signed certificate for `localhost` that answers
/// every request with a health body; yields its URL and the certificate's PEM.
async fn tls_server() -> (String, String) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let pem = cert.cert.pem();
    let key = rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                read_head(&mut tls).await;
                let body = r#"{"status":"ok","node":"tls","version":"0.1.0"}"#;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                tls.write_all(format!("{head}{body}").as_bytes()).await.ok();
                tls.shutdown().await.ok();
            });
        }
    });
    (format!("https://localhost:{port}"), pem)
}

#[tokio::test]
async fn https_needs_the_ca_and_an_unknown_one_is_a_tls_error() {
    let (url, pem) = tls_server().await;
    let untrusted = Client::builder([url.clone()])
        .system_roots(false)
        .build()
        .unwrap();
    let err = untrusted.health().await.unwrap_err();
    assert!(matches!(err, ClientError::Tls { .. }), "{err:?}");
    let trusted = Client::builder([url]).ca_pem(pem).build().unwrap();
    assert_eq!(trusted.health().await.unwrap().node, "tls");
}

#[path = "../../directory-api/examples/client.rs"]
#[allow(dead_code)]
mod client_example;

#[tokio::test]
async fn the_client_example_runs_against_a_node() {
    let server = start().await;
    let lines = client_example::run(vec![node_url(&server)]).await.unwrap();
    assert_eq!(
        lines[0],
        "registered example-orders/orders-1 at 127.0.0.1:7000 (index 1)"
    );
    assert_eq!(lines[1], "found orders-1 at 127.0.0.1:7000");
    assert_eq!(
        lines[3..],
        [
            "watched: registered example-orders/orders-1",
            "watched: deregistered example-orders/orders-1"
        ]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn the_bearer_token_opens_a_node_with_acls() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acl.json");
    let mut file = directory::acl::AclFile::default();
    let (_, secret) = file.create_token("orders-writer", vec!["write:orders".parse().unwrap()]);
    file.save(&path).unwrap();
    let server = common::start_with(|c| c.acl_file = Some(path)).await;
    let (service, instance) = names("orders", "orders-1");
    let anonymous = Client::new(&node_url(&server)).unwrap();
    let err = anonymous
        .register(&service, &instance, &registration("127.0.0.1:7000"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&ErrorCode::Unauthorized), "{err}");
    let writer = Client::builder([node_url(&server)])
        .bearer_token(secret)
        .build()
        .unwrap();
    writer
        .register(&service, &instance, &registration("127.0.0.1:7000"))
        .await
        .unwrap();
    let (other, _) = names("billing", "x");
    let err = writer
        .lookup(&other, &InstanceFilter::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&ErrorCode::Forbidden), "{err}");
    server.shutdown().await;
}

/// A loopback TCP proxy to `target` whose open connections can be cut at once (a network
/// blip between a watcher and its node).
struct Proxy {
    url: String,
    conns: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(target: std::net::SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let conns: Arc<std::sync::Mutex<Vec<_>>> = Arc::default();
        let tasks = conns.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let pipe = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tasks.lock().unwrap().push(pipe);
            }
        });
        Self { url, conns, accept }
    }

    /// Drops every open connection (new ones are still accepted).
    fn cut(&self) {
        self.conns.lock().unwrap().drain(..).for_each(|t| t.abort());
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

async fn next_change(events: &mut directory_api::WatchStream) -> directory_api::ChangeEvent {
    match timeout(LIMIT, events.next()).await.unwrap() {
        Some(Ok(WatchEvent::Change(change))) => change,
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn a_watch_resumes_with_last_event_id_after_the_connection_drops() {
    let server = start().await;
    let proxy = Proxy::start(server.http_addr()).await;
    let watcher = Client::new(&proxy.url).unwrap();
    let direct = Client::new(&node_url(&server)).unwrap();
    let (service, a) = names("orders", "orders-a");
    let (_, b) = names("orders", "orders-b");
    let mut events = watcher.watch(Some(&service)).await.unwrap();
    direct
        .register(&service, &a, &registration("127.0.0.1:1"))
        .await
        .unwrap();
    let first = next_change(&mut events).await;
    assert_eq!((first.kind, &first.instance), (ChangeKind::Registered, &a));

    proxy.cut();
    direct
        .register(&service, &b, &registration("127.0.0.1:2"))
        .await
        .unwrap();
    direct.deregister(&service, &a).await.unwrap();
    let gap = [
        next_change(&mut events).await,
        next_change(&mut events).await,
    ];
    let seen: Vec<_> = gap.iter().map(|c| (c.kind, c.instance.clone())).collect();
    assert_eq!(
        seen,
        [(ChangeKind::Registered, b), (ChangeKind::Deregistered, a)],
        "exactly the changes made while disconnected, once each"
    );
    assert!(gap[0].index > first.index && gap[1].index > gap[0].index);
    server.shutdown().await;
}
