//! The HTTP listener: our own accept loop over hyper, so that limits hold on both plain
//! and TLS connections.
//!
//! - **Connection cap** ([`HttpLimits::max_connections`]): a connection takes a permit
//!   before it is accepted; at the cap, new connections wait in the kernel's backlog.
//! - **Header-read timeout** ([`HttpLimits::header_read_timeout`]): a connection that has
//!   not delivered a full request head within it (including the TLS handshake, and an idle
//!   keep-alive connection waiting for its next request) is closed. This is what frees the
//!   slots of slowloris connections.
//! - **Accept errors** (out of descriptors, ...) back off from 5 ms to 1 s instead of
//!   spinning, and are logged.
//! - **Shutdown**: when cancelled, stop accepting, let each connection finish its
//!   in-flight request (up to the grace period), then drop it.
//!
//! The request timeout is HTTP semantics and lives with the router (`http::limits`).
//! Why not `axum::serve` or `axum-server`: neither sets hyper's header-read timeout nor caps
//! connections; tokio-rustls + hyper-util is what both use inside, with these two added.

mod tls;

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use tls::{TlsAcceptor, TlsError, TlsFiles};

/// Default header-read timeout: a legitimate client sends a request head in well under a
/// second; 10 s tolerates slow mobile links while a slowloris connection holds its slot
/// for at most 10 s.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default request timeout of ordinary requests (blocking queries and watch streams have
/// their own caps): every such request is in-memory work answered in milliseconds, so 30 s
/// only ends requests whose body trickles in.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default cap on open HTTP connections: above the 10,000 slow connections a node must
/// survive while still answering `/v1/health`, at ~20 KiB each (~320 MB at the cap). Each
/// needs a file descriptor: the node raises its soft limit to the hard one at start.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16_384;

/// Limits of the HTTP listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    /// Longest time to deliver a request head (and, with TLS, to finish the handshake).
    /// Default [`DEFAULT_HEADER_READ_TIMEOUT`].
    pub header_read_timeout: Duration,
    /// Longest time to answer an ordinary request (not blocking queries and watch
    /// streams); 503 `request_timeout` after it. Default [`DEFAULT_REQUEST_TIMEOUT`].
    pub request_timeout: Duration,
    /// Most connections open at once. Default [`DEFAULT_MAX_CONNECTIONS`].
    pub max_connections: NonZeroUsize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_connections: NonZeroUsize::new(DEFAULT_MAX_CONNECTIONS)
                .unwrap_or(NonZeroUsize::MIN),
        }
    }
}

/// Backoff after a failed `accept` (out of file descriptors, say): 5 ms doubling to 1 s,
/// reset by a success. Shared by every accept loop of the node (HTTP, DNS over TCP).
pub(crate) struct AcceptBackoff(Duration);

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(5);
    const MAX: Duration = Duration::from_secs(1);

    /// How long to wait now; the next wait doubles.
    pub(crate) fn next(&mut self) -> Duration {
        let wait = self.0;
        self.0 = (self.0 * 2).min(Self::MAX);
        wait
    }

    /// After a success: the next failure waits the shortest time again.
    pub(crate) fn reset(&mut self) {
        self.0 = Self::FIRST;
    }
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        Self(Self::FIRST)
    }
}

/// One HTTP listener: plain or TLS, with its limits.
pub struct HttpListener {
    /// The bound socket.
    pub listener: TcpListener,
    /// TLS, if the API is served over HTTPS.
    pub tls: Option<Arc<TlsAcceptor>>,
    /// The limits.
    pub limits: HttpLimits,
    /// How long in-flight requests may finish after `cancel` fires.
    pub grace: Duration,
}

impl HttpListener {
    /// Serves `app` until `cancel` fires, then waits for connections (each bounded by the
    /// grace period).
    pub async fn serve(self, app: Router, cancel: CancellationToken) {
        let permits = Arc::new(Semaphore::new(self.limits.max_connections.get()));
        let connections = TaskTracker::new();
        let mut backoff = AcceptBackoff::default();
        loop {
            let permit = tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break, // never closed
                },
            };
            let stream = tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                accepted = self.listener.accept() => accepted,
            };
            match stream {
                Ok((stream, _peer)) => {
                    backoff.reset();
                    let connection = Connection {
                        tls: self.tls.clone(),
                        limits: self.limits.clone(),
                        grace: self.grace,
                        cancel: cancel.clone(),
                        _permit: permit,
                    };
                    connections.spawn(connection.run(stream, app.clone()));
                }
                Err(e) => {
                    let wait = backoff.next();
                    tracing::warn!(error = %e, ?wait, "accept failed; backing off");
                    metrics::counter!("directory_http_accept_errors_total").increment(1);
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
}

/// One accepted connection and what it needs to serve itself.
struct Connection {
    tls: Option<Arc<TlsAcceptor>>,
    limits: HttpLimits,
    grace: Duration,
    cancel: CancellationToken,
    /// Held while the connection lives: its slot under the connection cap.
    _permit: OwnedSemaphorePermit,
}

impl Connection {
    async fn run(self, stream: TcpStream, app: Router) {
        let _ = stream.set_nodelay(true);
        let Some(tls) = self.tls.clone() else {
            return self.serve_http(stream, app).await;
        };
        let handshake = tokio::time::timeout(
            self.limits.header_read_timeout,
            tls.acceptor().accept(stream),
        );
        let stream = tokio::select! {
            () = self.cancel.cancelled() => return,
            done = handshake => match done {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "TLS handshake failed");
                    metrics::counter!("directory_http_tls_handshake_failures_total").increment(1);
                    return;
                }
                Err(_) => return, // handshake slower than the header-read timeout
            },
        };
        self.serve_http(stream, app).await;
    }

    /// HTTP/1.1 on `io` until the client closes, a limit ends it, or shutdown.
    async fn serve_http<I>(self, io: I, app: Router)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let service = TowerToHyperService::new(app);
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_read_timeout);
        let connection = builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(connection);
        tokio::select! {
            _ = connection.as_mut() => return,
            () = self.cancel.cancelled() => connection.as_mut().graceful_shutdown(),
        }
        let _ = tokio::time::timeout(self.grace, connection).await;
    }
}

/// Raises the soft limit of open files to the hard limit, so the connection cap is
/// reachable; warns when even the hard limit is below what the cap needs.
pub fn raise_fd_limit(max_connections: usize) {
    // Room for the gossip sockets, the log, and connections being closed.
    const RESERVE: u64 = 256;
    let wanted = max_connections as u64 + RESERVE;
    #[cfg(unix)]
    match rlimit::increase_nofile_limit(wanted) {
        Ok(limit) if limit < wanted => tracing::warn!(
            limit,
            max_connections,
            "the open-files limit is below --max-connections plus a reserve; raise it \
             (ulimit -n, systemd LimitNOFILE) or lower --max-connections"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read or raise the open-files limit"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_backoff_doubles_to_a_cap_and_resets() {
        let mut b = AcceptBackoff(AcceptBackoff::FIRST);
        let waits: Vec<_> = (0..10).map(|_| b.next()).collect();
        assert_eq!(waits[0], Duration::from_millis(5));
        assert_eq!(waits[1], Duration::from_millis(10));
        assert_eq!(waits[9], Duration::from_secs(1));
        b.reset();
        assert_eq!(b.next(), Duration::from_millis(5));
    }
}
