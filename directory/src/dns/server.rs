//! The DNS listeners: hickory-server's UDP loop and our capped TCP loop (`tcp`) around
//! [`DnsHandler`], which reads the registry and calls the pure [`answer`].
//!
//! hickory-server parses each packet (garbage gets FORMERR or, under 12 bytes, no reply),
//! and encodes each response within the asker's limit: 512 bytes over UDP without EDNS,
//! the EDNS payload size (capped at [`MAX_UDP_PAYLOAD`]) with it; what does not fit is cut
//! and marked truncated (TC), and resolvers retry over TCP, which carries up to 64 KiB.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use hickory_server::Server as HickoryServer;
use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

use super::answer::{Answer, ReadableCatalog, Zone, answer};
use super::config::{DNS_TCP_IDLE_TIMEOUT, DnsConfig};
use crate::acl::{Access, Acl};
use crate::registry::Registry;

/// Largest UDP response the node sends even when a resolver offers more (the DNS flag
/// day 2020 value: avoids IP fragmentation on common paths).
pub const MAX_UDP_PAYLOAD: u16 = 1232;
/// Tries to find a port free for both UDP and TCP when the configured port is 0.
const PORT_ZERO_TRIES: usize = 16;

/// Why the DNS listeners could not start. Nothing keeps listening after it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DnsStartError {
    /// The UDP or TCP socket could not be bound (in use, no permission: ports under 1024
    /// need privileges). Remedy: pick another `--dns-addr`, or port 0.
    #[error("cannot listen for DNS ({proto}) on {addr}: {source}")]
    Bind {
        /// `UDP` or `TCP`.
        proto: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Answers DNS requests from the registry, as anonymous requests may read it.
pub struct DnsHandler {
    registry: Registry,
    acl: Option<Arc<Acl>>,
    zone: Zone,
}

impl DnsHandler {
    /// A handler over `registry`; with an ACL, only services its anonymous rules may read
    /// are visible (DNS carries no token).
    pub fn new(config: &DnsConfig, registry: Registry, acl: Option<Arc<Acl>>) -> Self {
        let zone = Zone {
            domain: config.domain.name().clone(),
            ttl: config.ttl_secs(),
        };
        Self {
            registry,
            acl,
            zone,
        }
    }

    fn answer_for(&self, request: &Request) -> Answer {
        if request.metadata.op_code != OpCode::Query {
            return Answer::code(ResponseCode::NotImp);
        }
        let Ok(info) = request.request_info() else {
            // Not exactly one question.
            return Answer::code(ResponseCode::FormErr);
        };
        let access = self.access();
        let catalog = ReadableCatalog {
            registry: &self.registry,
            access: &access,
            now: SystemTime::now(),
        };
        let query = info.query;
        answer(query.name(), query.query_type(), &self.zone, &catalog)
    }

    fn access(&self) -> Access {
        match &self.acl {
            None => Access::open(),
            Some(acl) => acl
                .authenticate(None)
                .unwrap_or_else(|_| anonymous_nothing()),
        }
    }
}

/// Reads nothing: what a request gets if the anonymous rules cannot be had.
fn anonymous_nothing() -> Access {
    Access::anonymous(Arc::new(crate::acl::RuleSet::new(Vec::new())))
}

#[async_trait::async_trait]
impl RequestHandler for DnsHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let answer = self.answer_for(request);
        metrics::counter!("directory_dns_queries_total", "rcode" => rcode_label(answer.code))
            .increment(1);
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = answer.code != ResponseCode::Refused;
        metadata.response_code = answer.code;
        let edns = request.edns.as_ref().map(response_edns);
        let mut builder = MessageResponseBuilder::new(&request.queries, None);
        if let Some(edns) = &edns {
            builder.edns(edns);
        }
        let response = builder.build(
            metadata,
            answer.answers.iter(),
            answer.authority.iter(),
            std::iter::empty(),
            answer.additionals.iter(),
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(error) => {
                tracing::debug!(%error, "DNS response not sent");
                let counts = HeaderCounts::default();
                ResponseInfo::from(Header { metadata, counts })
            }
        }
    }
}

/// The EDNS of a response: the asker's payload size, within 512..=[`MAX_UDP_PAYLOAD`].
fn response_edns(request: &Edns) -> Edns {
    let mut edns = Edns::new();
    edns.set_max_payload(request.max_payload().clamp(512, MAX_UDP_PAYLOAD));
    edns
}

/// A static label per response code (metric labels never carry input).
fn rcode_label(code: ResponseCode) -> &'static str {
    match code {
        ResponseCode::NoError => "noerror",
        ResponseCode::NXDomain => "nxdomain",
        ResponseCode::Refused => "refused",
        ResponseCode::FormErr => "formerr",
        ResponseCode::NotImp => "notimp",
        _ => "other",
    }
}

/// Running DNS listeners (UDP and TCP on one address).
pub struct DnsServer {
    addr: SocketAddr,
    udp: HickoryServer<DnsHandler>,
    tcp: TcpListener,
    tcp_handler: Arc<DnsHandler>,
    max_tcp_connections: usize,
}

impl DnsServer {
    /// Binds UDP and TCP on `config.addr` (with port 0: one free port for both) and starts
    /// answering.
    pub async fn bind(
        config: &DnsConfig,
        registry: Registry,
        acl: Option<Arc<Acl>>,
    ) -> Result<Self, DnsStartError> {
        let (udp, tcp) = bind_pair(config.addr).await?;
        let addr = udp.local_addr().map_err(|source| DnsStartError::Bind {
            proto: "UDP",
            addr: config.addr,
            source,
        })?;
        let tcp_handler = Arc::new(DnsHandler::new(config, registry.clone(), acl.clone()));
        let mut server = HickoryServer::new(DnsHandler::new(config, registry, acl));
        server.register_socket(udp);
        Ok(Self {
            addr,
            udp: server,
            tcp,
            tcp_handler,
            max_tcp_connections: config.max_tcp_connections.get(),
        })
    }

    /// The bound address (the real port when configured with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `cancel` fires, then stops both listeners.
    pub async fn run(mut self, cancel: CancellationToken) {
        let tcp = super::tcp::serve(
            self.tcp,
            self.tcp_handler,
            self.max_tcp_connections,
            DNS_TCP_IDLE_TIMEOUT,
            cancel.clone(),
        );
        tokio::join!(tcp, cancel.cancelled());
        if let Err(error) = self.udp.shutdown_gracefully().await {
            tracing::debug!(%error, "DNS listener ended with an error");
        }
    }
}

/// A UDP socket and a TCP listener on the same address.
async fn bind_pair(addr: SocketAddr) -> Result<(UdpSocket, TcpListener), DnsStartError> {
    let tries = if addr.port() == 0 { PORT_ZERO_TRIES } else { 1 };
    let mut last = None;
    for _ in 0..tries {
        let udp = UdpSocket::bind(addr)
            .await
            .map_err(|source| bind_error("UDP", addr, source))?;
        let bound = udp
            .local_addr()
            .map_err(|source| bind_error("UDP", addr, source))?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(source) => last = Some(bind_error("TCP", bound, source)),
        }
    }
    Err(last.unwrap_or_else(|| bind_error("TCP", addr, std::io::ErrorKind::AddrInUse.into())))
}

fn bind_error(proto: &'static str, addr: SocketAddr, source: std::io::Error) -> DnsStartError {
    DnsStartError::Bind {
        proto,
        addr,
        source,
    }
}
