//! DNS over TCP (RFC 1035 §4.2.2, RFC 7766): our own accept loop, so that the number of
//! open connections is capped (hickory-server's TCP loop accepts without a bound, and every
//! connection holds a file descriptor the HTTP API and gossip also need).
//!
//! - **Cap**: a connection is accepted only with a free slot
//!   ([`DnsConfig::max_tcp_connections`](super::DnsConfig)); at the cap, new ones wait in
//!   the kernel's backlog, as on the HTTP listener.
//! - **Idle**: a connection that does not complete a query within
//!   [`DNS_TCP_IDLE_TIMEOUT`](super::DNS_TCP_IDLE_TIMEOUT) is closed, partial bytes or not.
//! - **Framing**: two-byte length, then the message. Queries on one connection are answered
//!   in order, one at a time. A message too short for a header closes the connection; one
//!   with a readable header that does not parse gets FORMERR, as over UDP.
//! - **Accept errors** back off (5 ms doubling to 1 s) instead of spinning.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::net::NetError;
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{Header, ResponseCode};
use hickory_server::proto::rr::Record;
use hickory_server::proto::serialize::binary::{BinDecodable, BinDecoder, BinEncoder};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder, Queries};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::server::DnsHandler;
use crate::listener::AcceptBackoff;

/// Bytes of a DNS header: shorter messages are not DNS and get no answer.
const HEADER_LEN: usize = 12;

/// Serves DNS over TCP on `listener` until `cancel` fires, with at most `max_connections`
/// open at once; each closes after `idle` without a complete query.
pub(super) async fn serve(
    listener: TcpListener,
    handler: Arc<DnsHandler>,
    max_connections: usize,
    idle: Duration,
    cancel: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(max_connections));
    let connections = TaskTracker::new();
    let mut backoff = AcceptBackoff::default();
    loop {
        let slot = tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break, // never closed
            },
        };
        let accepted = tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff.reset();
                let handler = handler.clone();
                let cancel = cancel.clone();
                connections.spawn(async move {
                    let open = metrics::gauge!("directory_dns_tcp_connections");
                    open.increment(1.0);
                    tokio::select! {
                        () = cancel.cancelled() => {}
                        () = connection(stream, peer, &handler, idle) => {}
                    }
                    open.decrement(1.0);
                    drop(slot);
                });
            }
            Err(error) => {
                let wait = backoff.next();
                tracing::warn!(%error, ?wait, "DNS TCP accept failed; backing off");
                metrics::counter!("directory_dns_tcp_accept_errors_total").increment(1);
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
    connections.close();
    connections.wait().await;
}

/// Answers the queries of one connection, in order, until it closes, errs or idles.
async fn connection(mut stream: TcpStream, peer: SocketAddr, handler: &DnsHandler, idle: Duration) {
    loop {
        let message = match tokio::time::timeout(idle, read_message(&mut stream)).await {
            Ok(Ok(Some(message))) => message,
            // Closed by the client, a read error, or idle too long: nothing more to answer.
            Ok(Ok(None) | Err(_)) | Err(_) => return,
        };
        let Some(response) = respond(message, peer, handler).await else {
            return;
        };
        if write_message(&mut stream, &response).await.is_err() {
            return;
        }
    }
}

/// One length-prefixed message; `None` when the client closed the connection cleanly.
async fn read_message(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 2];
    match stream.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut message = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut message).await?;
    Ok(Some(message))
}

async fn write_message(stream: &mut TcpStream, message: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(message.len()).map_err(|_| std::io::ErrorKind::InvalidData)?;
    let mut framed = Vec::with_capacity(2 + message.len());
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(message);
    stream.write_all(&framed).await
}

/// The encoded response to `message`, or `None` if it gets none (shorter than a header).
async fn respond(message: Vec<u8>, peer: SocketAddr, handler: &DnsHandler) -> Option<Vec<u8>> {
    if message.len() < HEADER_LEN {
        return None;
    }
    let header = Header::read(&mut BinDecoder::new(&message)).ok()?;
    let encoded = Encoded::default();
    match Request::from_bytes(message, peer, Protocol::Tcp) {
        Ok(request) => {
            handler
                .handle_request::<_, TokioTime>(&request, encoded.clone())
                .await;
        }
        Err(error) => {
            tracing::debug!(%error, %peer, "malformed DNS query over TCP");
            metrics::counter!("directory_dns_queries_total", "rcode" => "formerr").increment(1);
            // No question is echoed: the message did not parse past its header.
            let Ok(queries) = Queries::read(&mut BinDecoder::new(&[]), 0) else {
                return None;
            };
            let response = MessageResponseBuilder::new(&queries, None)
                .error_msg(&header.metadata, ResponseCode::FormErr);
            let _ = encoded.clone().send_response(response).await;
        }
    }
    encoded.take()
}

/// A response handler that keeps the encoded response (TCP carries up to 64 KiB).
#[derive(Clone, Default)]
struct Encoded(Arc<Mutex<Option<Vec<u8>>>>);

impl Encoded {
    fn take(&self) -> Option<Vec<u8>> {
        self.0.lock().take()
    }
}

#[async_trait::async_trait]
impl ResponseHandler for Encoded {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(u16::MAX);
        let info = response.destructive_emit(&mut encoder)?;
        *self.0.lock() = Some(bytes);
        Ok(info)
    }
}
