//! Transport promises of docs/protocol.md ("Connections and streams"), checked from the
//! outside: raw rustls handshakes, a raw quinn client, and a raw quinn acceptor that speaks
//! just enough of the frame protocol to count connections and streams and to ack or hold
//! messages.
//!
//! - ALPN `peer-sdk/1` and TLS 1.3 only: a TLS 1.2 or wrong-ALPN client is refused;
//! - one connection and one stream per remote instance, whatever the number of messages;
//! - a rejected client certificate surfaces on the first read, not in `connect()`;
//! - in-flight messages move to another instance when theirs leaves the directory, and the
//!   connection to it is closed.

mod common;

use bytes::BytesMut;
use common::{peer, serve, wait_for};
use parking_lot::Mutex;
use peer_sdk::proto::Frame;
use peer_sdk::proto::frame::Decoder;
use peer_sdk::{Identity, InstanceInfo, Peer, SendOptions};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn key_of(identity: &Identity) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_slice(identity.to_pem().1.as_bytes()).unwrap()
}

/// Accepts any server certificate (the tests look at versions and ALPN, not at pins).
#[derive(Debug)]
struct AnyServer;

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Runs a TLS handshake in memory until one side fails; returns (client error, server error).
fn handshake(
    client: rustls::ClientConfig,
    server: rustls::ServerConfig,
) -> (Option<rustls::Error>, Option<rustls::Error>) {
    let name = ServerName::try_from("peer.test").unwrap();
    let mut c = rustls::ClientConnection::new(Arc::new(client), name).unwrap();
    let mut s = rustls::ServerConnection::new(Arc::new(server)).unwrap();
    for _ in 0..10 {
        let mut wire = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut wire).unwrap();
        }
        s.read_tls(&mut wire.as_slice()).unwrap();
        if let Err(e) = s.process_new_packets() {
            return (None, Some(e));
        }
        let mut wire = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut wire).unwrap();
        }
        c.read_tls(&mut wire.as_slice()).unwrap();
        if let Err(e) = c.process_new_packets() {
            return (Some(e), None);
        }
        if !c.is_handshaking() && !s.is_handshaking() {
            return (None, None);
        }
    }
    panic!("the handshake neither failed nor finished");
}

/// What a server says when the client's versions and its own do not meet (a later refusal,
/// e.g. of a TLS 1.2 handshake signature, is another error).
fn version_refused() -> rustls::Error {
    rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls12NotOfferedOrEnabled)
}

#[test]
fn tls_1_2_is_refused_in_both_directions() {
    let ours = Identity::generate().unwrap();
    let other = Identity::generate().unwrap();
    let tls12_client = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer))
        .with_client_auth_cert(vec![other.certificate().clone()], key_of(&other))
        .unwrap();
    let (_, server_error) = handshake(tls12_client, peer_sdk::tls::server_config(&ours).unwrap());
    assert!(
        server_error == Some(version_refused()),
        "our server did not refuse a TLS 1.2 client for its version: {server_error:?}"
    );

    let tls12_server = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![other.certificate().clone()], key_of(&other))
        .unwrap();
    let (_, server_error) = handshake(peer_sdk::tls::client_config(&ours).unwrap(), tls12_server);
    assert!(
        server_error == Some(version_refused()),
        "our client offered a version a TLS 1.2 server accepts: {server_error:?}"
    );
}

/// A raw QUIC client presenting a valid certificate and offering `alpn`.
fn raw_client(alpn: &[u8]) -> quinn::Endpoint {
    let id = Identity::generate().unwrap();
    let mut tls = peer_sdk::tls::client_config(&id).unwrap();
    tls.alpn_protocols = vec![alpn.to_vec()];
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap(),
    )));
    ep
}

#[tokio::test]
async fn a_client_offering_another_alpn_is_refused_and_the_peer_alpn_is_accepted() {
    let target = peer("alpn", &[]).await;
    let name = target.fingerprint().server_name();
    for alpn in [&b"h3"[..], b"peer-sdk/2"] {
        let ep = raw_client(alpn);
        let attempt = ep.connect(target.local_addr(), &name).unwrap();
        let result = tokio::time::timeout(Duration::from_secs(10), attempt)
            .await
            .expect("the handshake ended");
        let Err(err) = result else {
            panic!(
                "a client offering {:?} was accepted",
                String::from_utf8_lossy(alpn)
            );
        };
        // TLS alert 120, no_application_protocol, as QUIC CRYPTO_ERROR 0x178.
        assert!(
            format!("{err:?}").contains("Code::crypto(78)"),
            "refused for another reason: {err:?}"
        );
    }
    let ep = raw_client(peer_sdk::tls::ALPN);
    let conn = tokio::time::timeout(
        Duration::from_secs(10),
        ep.connect(target.local_addr(), &name).unwrap(),
    )
    .await
    .unwrap()
    .expect("the peer's own ALPN is accepted");
    assert_eq!(
        conn.handshake_data()
            .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
            .and_then(|d| d.protocol),
        Some(peer_sdk::tls::ALPN.to_vec())
    );
    conn.close(0u32.into(), b"done");
    target.shutdown().await;
}

/// What a [`FakeInstance`] does with the messages it reads.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Acks each one at once.
    Ack,
    /// Keeps them unanswered.
    Hold,
}

/// A raw quinn acceptor standing in for a remote instance.
struct FakeInstance {
    endpoint: quinn::Endpoint,
    identity: Identity,
    connections: Arc<AtomicUsize>,
    streams: Arc<AtomicUsize>,
    messages: Arc<Mutex<Vec<u64>>>,
    closes: Arc<Mutex<Vec<String>>>,
}

impl FakeInstance {
    fn start(mode: Mode, client_certs: Arc<dyn ClientCertVerifier>) -> Self {
        let identity = Identity::generate().unwrap();
        let mut tls = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_client_cert_verifier(client_certs)
            .with_single_cert(vec![identity.certificate().clone()], key_of(&identity))
            .unwrap();
        tls.alpn_protocols = vec![peer_sdk::tls::ALPN.to_vec()];
        let config = quinn::ServerConfig::with_crypto(Arc::new(
            quinn::crypto::rustls::QuicServerConfig::try_from(tls).unwrap(),
        ));
        let endpoint = quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap();
        let fake = Self {
            endpoint: endpoint.clone(),
            identity,
            connections: Arc::default(),
            streams: Arc::default(),
            messages: Arc::default(),
            closes: Arc::default(),
        };
        let (connections, streams, messages, closes) = (
            fake.connections.clone(),
            fake.streams.clone(),
            fake.messages.clone(),
            fake.closes.clone(),
        );
        tokio::spawn(async move {
            while let Some(incoming) = endpoint.accept().await {
                let Ok(conn) = incoming.await else { continue };
                connections.fetch_add(1, Ordering::SeqCst);
                let closes = closes.clone();
                let watched = conn.clone();
                tokio::spawn(async move {
                    let reason = watched.closed().await;
                    closes.lock().push(reason.to_string());
                });
                let (streams, messages) = (streams.clone(), messages.clone());
                tokio::spawn(async move {
                    while let Ok((send, recv)) = conn.accept_bi().await {
                        streams.fetch_add(1, Ordering::SeqCst);
                        tokio::spawn(answer(mode, send, recv, messages.clone()));
                    }
                });
            }
        });
        fake
    }

    fn info(&self, service: &str, instance: &str) -> InstanceInfo {
        InstanceInfo::new(
            service,
            instance,
            self.endpoint.local_addr().unwrap(),
            Some(self.identity.fingerprint().0),
        )
    }
}

impl Drop for FakeInstance {
    fn drop(&mut self) {
        self.endpoint.close(0u32.into(), b"test over");
    }
}

/// Reads frames off one stream; records every MESSAGE id and acks it in [`Mode::Ack`].
async fn answer(
    mode: Mode,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    messages: Arc<Mutex<Vec<u64>>>,
) {
    let decoder = Decoder::new(2 << 20);
    let mut buf = BytesMut::new();
    while let Ok(Some(chunk)) = recv.read_chunk(64 * 1024, true).await {
        buf.extend_from_slice(&chunk.bytes);
        while let Ok(Some(frame)) = decoder.decode(&mut buf) {
            if let Frame::Message { id, .. } = frame {
                messages.lock().push(id);
                if mode == Mode::Ack
                    && send
                        .write_all(&Frame::Ack { ids: vec![id] }.to_bytes())
                        .await
                        .is_err()
                {
                    return;
                }
            }
        }
    }
}

/// Requires a client certificate and proof of its key, like the peer (the default).
fn accepting() -> Arc<dyn ClientCertVerifier> {
    Arc::new(ClientCerts {
        refuse: false,
        seen: Arc::default(),
    })
}

/// The peer's own rule, or one that refuses every client certificate, counting them.
#[derive(Debug)]
struct ClientCerts {
    refuse: bool,
    seen: Arc<AtomicUsize>,
}

impl ClientCertVerifier for ClientCerts {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.seen.fetch_add(1, Ordering::SeqCst);
        if self.refuse {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        } else {
            Ok(ClientCertVerified::assertion())
        }
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2".into()))
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[tokio::test]
async fn every_message_to_an_instance_shares_one_connection_and_one_stream() {
    let fake = FakeInstance::start(Mode::Ack, accepting());
    let sender = peer("sender", &[fake.info("sink", "sink-1")]).await;
    // A burst while the first dial is still in progress, then more on the open link.
    let burst = (0..50).map(|i| sender.send("sink", format!("burst {i}").into_bytes()));
    for result in futures_util::future::join_all(burst).await {
        result.expect("acked");
    }
    for i in 0..20 {
        sender
            .send("sink", format!("later {i}").into_bytes())
            .await
            .expect("acked");
    }
    assert_eq!(fake.messages.lock().len(), 70, "each message sent once");
    assert_eq!(fake.connections.load(Ordering::SeqCst), 1, "connections");
    assert_eq!(fake.streams.load(Ordering::SeqCst), 1, "streams");
    sender.shutdown().await;
}

#[tokio::test]
async fn a_rejected_client_certificate_surfaces_on_the_first_read_and_fails_the_send() {
    let seen = Arc::new(AtomicUsize::new(0));
    let refusing = Arc::new(ClientCerts {
        refuse: true,
        seen: seen.clone(),
    });
    let fake = FakeInstance::start(Mode::Ack, refusing);
    let sender = peer("sender", &[fake.info("strict", "strict-1")]).await;
    let result = sender
        .send_with(
            "strict",
            &b"let me in"[..],
            SendOptions::default()
                .deadline(Duration::from_secs(3))
                .max_attempts(2.try_into().unwrap()),
        )
        .await;
    let Err(peer_sdk::SendError::DeadLettered(dl)) = result else {
        panic!("a send to an instance refusing our certificate ended with {result:?}");
    };
    assert!(
        seen.load(Ordering::SeqCst) >= 1,
        "no client certificate was checked"
    );
    assert!(
        dl.attempts >= 1,
        "connect() looked successful, so the message went out before the refusal: {dl:?}"
    );
    let cause = format!("{:?}", dl.reason);
    assert!(
        cause.contains("read failed") && cause.contains("certificate"),
        "the refusal did not surface as a read failure naming the certificate: {cause}"
    );
    assert!(
        fake.messages.lock().is_empty(),
        "nothing was read past the handshake"
    );
    sender.shutdown().await;
}

#[tokio::test]
async fn in_flight_messages_move_to_another_instance_when_theirs_leaves_the_directory() {
    use directory::registry::{Address, InstanceId, Registration, ServiceName};
    let d = directory::Server::start(directory::Config::for_test())
        .await
        .unwrap();
    let urls = vec![format!("http://{}", d.http_addr())];
    let leaving = FakeInstance::start(Mode::Hold, accepting());
    let (service, gone): (ServiceName, InstanceId) =
        ("work".parse().unwrap(), "leaving-1".parse().unwrap());
    let mut registration = Registration::new(
        Address::new(&leaving.endpoint.local_addr().unwrap().to_string()).unwrap(),
    );
    registration.fingerprint = Some(leaving.identity.fingerprint());
    d.registry()
        .register(&service, &gone, registration, tokio::time::Instant::now())
        .unwrap();

    let sender = Peer::builder_for_test("sender")
        .directory(urls.clone())
        .start()
        .await
        .unwrap();
    let options = SendOptions::default()
        .ack_timeout(Duration::from_millis(500))
        .deadline(Duration::from_secs(20));
    let pending = {
        let sender = sender.clone();
        tokio::spawn(async move { sender.send_with("work", &b"job"[..], options).await })
    };
    assert!(
        wait_for(Duration::from_secs(10), || async {
            !leaving.messages.lock().is_empty()
        })
        .await,
        "the message never reached the first instance"
    );

    let stays = Peer::builder_for_test("work")
        .directory(urls)
        .start()
        .await
        .unwrap();
    let handled = Arc::new(Mutex::new(Vec::new()));
    let h = handled.clone();
    serve(&stays, move |m| {
        h.lock().push((m.payload().clone(), m.attempt()));
        m.ack();
    });
    assert!(
        d.registry()
            .deregister(&service, &gone, tokio::time::Instant::now())
    );

    tokio::time::timeout(Duration::from_secs(15), pending)
        .await
        .expect("the send ended")
        .unwrap()
        .expect("the message was delivered by the instance that stayed");
    let handled = handled.lock().clone();
    assert_eq!(handled.len(), 1, "{handled:?}");
    assert!(handled[0].1 >= 2, "not a retry: {handled:?}");
    assert!(
        wait_for(Duration::from_secs(10), || async {
            leaving
                .closes
                .lock()
                .iter()
                .any(|c| c.contains("instance left the directory"))
        })
        .await,
        "the connection to the departed instance was not closed: {:?}",
        leaving.closes.lock()
    );
    sender.shutdown().await;
    stays.shutdown().await;
    d.shutdown().await;
}
