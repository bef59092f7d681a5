//! I/O tasks of one link (a long-lived QUIC bidirectional stream): dialing, accepting,
//! the writer (batched writes) and the reader (frame decoding). They talk to the driver
//! only through [`Input`] messages.

use crate::input::{Input, LinkTx, SenderCheck};
use crate::proto::{Cause, Decoder, ErrorCode, Frame, InstanceInfo, LinkId, LinkKind};
use crate::tls::{CertificatePin, Fingerprint};
use bytes::{Bytes, BytesMut};
use quinn::{Connection, RecvStream, SendStream, VarInt};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const READ_CHUNK: usize = 64 * 1024;
const WRITE_BATCH: usize = 256;

/// Everything the link tasks need, cloned into each.
#[derive(Clone)]
pub(crate) struct LinkCtx {
    pub(crate) inputs: mpsc::UnboundedSender<Input>,
    pub(crate) tracker: TaskTracker,
    /// Writer tasks only, so shutdown can let them flush before closing the endpoint.
    pub(crate) writers: TaskTracker,
    pub(crate) cancel: CancellationToken,
    pub(crate) link_ids: Arc<AtomicU64>,
    pub(crate) max_frame: u32,
    /// Time an inbound stream has to send its hello before the connection is closed.
    pub(crate) hello_timeout: Duration,
    pub(crate) sender_check: Option<SenderCheck>,
}

impl LinkCtx {
    pub(crate) fn next_link(&self) -> LinkId {
        LinkId(self.link_ids.fetch_add(1, Ordering::Relaxed))
    }
}

fn spawn_writer(ctx: &LinkCtx, mut send: SendStream, mut rx: mpsc::UnboundedReceiver<Bytes>) {
    ctx.writers.spawn(async move {
        let mut bufs = Vec::with_capacity(WRITE_BATCH);
        while rx.recv_many(&mut bufs, WRITE_BATCH).await > 0 {
            if let Err(e) = send.write_all_chunks(&mut bufs).await {
                tracing::debug!("link write failed: {e}");
                return;
            }
            bufs.clear();
        }
        // Closing the connection discards stream data the peer has not acknowledged, such as
        // the last acks of a draining receiver: wait until the peer has it all (the driver
        // bounds this wait before it closes the endpoint).
        if send.finish().is_ok() {
            let _ = send.stopped().await;
        }
    });
}

fn spawn_reader(
    ctx: &LinkCtx,
    link: LinkId,
    conn: Connection,
    mut recv: RecvStream,
    mut buf: BytesMut,
) {
    let ctx2 = ctx.clone();
    ctx.tracker.spawn(async move {
        let reason = read_loop(&ctx2, link, &conn, &mut recv, &mut buf).await;
        let _ = ctx2.inputs.send(Input::LinkDown { link, reason });
    });
}

async fn read_loop(
    ctx: &LinkCtx,
    link: LinkId,
    conn: &Connection,
    recv: &mut RecvStream,
    buf: &mut BytesMut,
) -> String {
    let decoder = Decoder::new(ctx.max_frame);
    loop {
        let mut frames = Vec::new();
        let failure = loop {
            match decoder.decode(buf) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break None,
                Err(e) => break Some(e),
            }
        };
        if !frames.is_empty() && ctx.inputs.send(Input::Frames { link, frames }).is_err() {
            return "driver stopped".into();
        }
        if let Some(e) = failure {
            close_on_error(conn, &e);
            return format!("protocol error: {e}");
        }
        match recv.read_chunk(READ_CHUNK, true).await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk.bytes),
            Ok(None) => return "stream finished".into(),
            Err(e) => return read_failure(&e),
        }
    }
}

/// Why reading a link failed; a close by the peer names its code (docs/protocol.md), which
/// quinn's `ReadError` display leaves out.
fn read_failure(e: &quinn::ReadError) -> String {
    match e {
        quinn::ReadError::ConnectionLost(quinn::ConnectionError::ApplicationClosed(close)) => {
            let code = close.error_code.into_inner();
            let name = u16::try_from(code)
                .ok()
                .and_then(ErrorCode::from_u16)
                .map_or_else(|| "unknown code".to_owned(), |c| format!("{c:?}"));
            let reason = String::from_utf8_lossy(&close.reason);
            format!("closed by the peer with code {code} ({name}): {reason}")
        }
        // quinn's display of a lost connection leaves out why (e.g. our client certificate
        // refused by the peer, which surfaces only here, on the first read).
        quinn::ReadError::ConnectionLost(lost) => format!("read failed: connection lost: {lost}"),
        other => format!("read failed: {other}"),
    }
}

/// Dials `inst`, opens the stream, sends `hello`, and starts the link tasks.
/// Reports `Input::Dialed` either way.
pub(crate) fn spawn_dial(
    ctx: &LinkCtx,
    endpoint: quinn::Endpoint,
    client: quinn::ClientConfig,
    inst: Arc<InstanceInfo>,
    hello: Bytes,
    connect_timeout: Duration,
) {
    let ctx = ctx.clone();
    ctx.tracker.clone().spawn(async move {
        let link = ctx.next_link();
        let result = tokio::select! {
            _ = ctx.cancel.cancelled() => Err(DialError::Other("shutting down".to_owned())),
            r = tokio::time::timeout(connect_timeout, dial(&endpoint, client, &inst, hello)) => {
                r.unwrap_or_else(|_| Err(DialError::Other(format!("handshake timed out after {connect_timeout:?}"))))
            }
        };
        let result = result.map_err(|e| e.into_cause(&inst.instance));
        report_dial(&ctx, link, inst, result);
    });
}

/// Tells the driver how dialing `inst` went and, on success, starts the link's writer and
/// reader tasks.
fn report_dial(
    ctx: &LinkCtx,
    link: LinkId,
    inst: Arc<InstanceInfo>,
    result: Result<(Connection, SendStream, RecvStream), Cause>,
) {
    match result {
        Ok((conn, send, recv)) => {
            let (tx, rx) = mpsc::unbounded_channel();
            spawn_writer(ctx, send, rx);
            let up = Input::Dialed {
                inst,
                result: Ok((
                    link,
                    LinkTx {
                        tx,
                        conn: conn.clone(),
                    },
                )),
            };
            if ctx.inputs.send(up).is_ok() {
                spawn_reader(ctx, link, conn, recv, BytesMut::new());
            }
        }
        Err(reason) => {
            let _ = ctx.inputs.send(Input::Dialed {
                inst,
                result: Err(reason),
            });
        }
    }
}

/// Why dialing failed: the instance's identity (never retried) or anything else.
enum DialError {
    Identity(String),
    Other(String),
}

impl DialError {
    fn into_cause(self, instance: &str) -> Cause {
        let instance = instance.to_owned();
        match self {
            Self::Identity(detail) => Cause::IdentityMismatch { instance, detail },
            Self::Other(detail) => Cause::Unreachable { instance, detail },
        }
    }

    /// A handshake that we aborted with a TLS alert (QUIC CRYPTO_ERROR, codes 0x100-0x1ff)
    /// means our pinning verifier refused the certificate the instance presented: nothing
    /// else in the handshake is checked on this side.
    fn of_handshake(e: quinn::ConnectionError) -> Self {
        match &e {
            quinn::ConnectionError::TransportError(t)
                if (0x100..0x200).contains(&u64::from(t.code)) =>
            {
                Self::Identity(format!("handshake: {e}"))
            }
            _ => Self::Other(format!("handshake: {e}")),
        }
    }
}

async fn dial(
    endpoint: &quinn::Endpoint,
    client: quinn::ClientConfig,
    inst: &InstanceInfo,
    hello: Bytes,
) -> Result<(Connection, SendStream, RecvStream), DialError> {
    let fp = inst.fingerprint.ok_or_else(|| {
        DialError::Identity(
            "instance publishes no certificate fingerprint; refusing to dial unpinned".into(),
        )
    })?;
    let name = Fingerprint(fp).server_name();
    let connecting = endpoint
        .connect_with(client, inst.addr, &name)
        .map_err(|e| DialError::Other(format!("connect: {e}")))?;
    let conn = connecting.await.map_err(DialError::of_handshake)?;
    let (mut send, recv) = conn
        .open_bi()
        .await
        .map_err(|e| DialError::Other(format!("open stream: {e}")))?;
    send.write_all(&hello)
        .await
        .map_err(|e| DialError::Other(format!("hello: {e}")))?;
    Ok((conn, send, recv))
}

/// Accepts connections until cancelled; every accepted stream becomes an inbound link.
pub(crate) fn spawn_accept_loop(ctx: &LinkCtx, endpoint: quinn::Endpoint) {
    let ctx = ctx.clone();
    ctx.tracker.clone().spawn(async move {
        loop {
            let incoming = tokio::select! {
                _ = ctx.cancel.cancelled() => return,
                i = endpoint.accept() => match i { Some(i) => i, None => return },
            };
            let ctx = ctx.clone();
            ctx.tracker.clone().spawn(async move {
                match incoming.await {
                    Ok(conn) => serve_connection(ctx, conn).await,
                    Err(e) => tracing::debug!("inbound handshake failed: {e}"),
                }
            });
        }
    });
}

fn client_fingerprint(conn: &Connection) -> Option<Fingerprint> {
    let identity = conn.peer_identity()?;
    let certs = identity
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    Fingerprint::of_certificate(certs.first()?).ok()
}

async fn serve_connection(ctx: LinkCtx, conn: Connection) {
    let Some(fp) = client_fingerprint(&conn) else {
        return close_with(
            &conn,
            ErrorCode::UnauthorizedSender,
            b"no client certificate",
        );
    };
    loop {
        let (send, recv) = tokio::select! {
            _ = ctx.cancel.cancelled() => return,
            s = conn.accept_bi() => match s { Ok(s) => s, Err(_) => return },
        };
        let ctx = ctx.clone();
        let conn = conn.clone();
        ctx.tracker
            .clone()
            .spawn(async move { serve_stream(ctx, conn, fp, send, recv).await });
    }
}

/// First frame of an inbound stream; `None` if the stream ended first.
async fn read_hello(
    ctx: &LinkCtx,
    recv: &mut RecvStream,
    buf: &mut BytesMut,
) -> Result<Option<Frame>, crate::proto::ProtocolError> {
    let decoder = Decoder::new(ctx.max_frame);
    loop {
        if let Some(frame) = decoder.decode(buf)? {
            return Ok(Some(frame));
        }
        match recv.read_chunk(READ_CHUNK, true).await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk.bytes),
            _ => return Ok(None),
        }
    }
}

/// Reads the hello, applies the sender check, then hands the stream to the driver.
async fn serve_stream(
    ctx: LinkCtx,
    conn: Connection,
    fp: Fingerprint,
    send: SendStream,
    mut recv: RecvStream,
) {
    let mut buf = BytesMut::new();
    let Some(hello) = accept_hello(&ctx, &conn, fp, &mut recv, &mut buf).await else {
        return;
    };
    let link = ctx.next_link();
    let (tx, rx) = mpsc::unbounded_channel();
    spawn_writer(&ctx, send, rx);
    let up = Input::LinkUp {
        link,
        kind: LinkKind::Inbound,
        tx: LinkTx {
            tx,
            conn: conn.clone(),
        },
    };
    if ctx.inputs.send(up).is_err()
        || ctx
            .inputs
            .send(Input::Frames {
                link,
                frames: vec![hello],
            })
            .is_err()
    {
        return;
    }
    spawn_reader(&ctx, link, conn, recv, buf);
}

/// Reads the stream's hello (within the hello timeout) and applies the sender check.
/// Returns the hello, or `None` after closing the connection with the reason.
async fn accept_hello(
    ctx: &LinkCtx,
    conn: &Connection,
    fp: Fingerprint,
    recv: &mut RecvStream,
    buf: &mut BytesMut,
) -> Option<Frame> {
    let hello = match tokio::time::timeout(ctx.hello_timeout, read_hello(ctx, recv, buf)).await {
        Ok(Ok(Some(frame))) => frame,
        Ok(Ok(None)) => return None,
        Ok(Err(e)) => {
            close_on_error(conn, &e);
            return None;
        }
        Err(_) => {
            close_with(conn, ErrorCode::UnexpectedFrame, b"no hello in time");
            return None;
        }
    };
    let Frame::Hello {
        service, instance, ..
    } = &hello
    else {
        close_with(
            conn,
            ErrorCode::UnexpectedFrame,
            b"first frame must be hello",
        );
        return None;
    };
    if let Some(check) = &ctx.sender_check
        && !check(service.clone(), instance.clone(), fp).await
    {
        tracing::warn!(%service, %instance, %fp, "refusing sender: certificate does not match a registered instance");
        close_with(
            conn,
            ErrorCode::UnauthorizedSender,
            b"sender not registered",
        );
        return None;
    }
    Some(hello)
}

/// Closes `conn` with a protocol error code and a short reason for the other side.
fn close_with(conn: &Connection, code: ErrorCode, reason: &[u8]) {
    conn.close(VarInt::from(code.to_u16()), reason);
}

/// Closes `conn` after a protocol error, telling the other side its code and detail.
pub(crate) fn close_on_error(conn: &Connection, e: &crate::proto::ProtocolError) {
    close_with(conn, e.code, e.detail.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closed_with(code: u32, reason: &'static str) -> String {
        let close = quinn::ApplicationClose {
            error_code: VarInt::from_u32(code),
            reason: Bytes::from_static(reason.as_bytes()),
        };
        read_failure(&quinn::ReadError::ConnectionLost(
            quinn::ConnectionError::ApplicationClosed(close),
        ))
    }

    #[test]
    fn a_close_by_the_peer_names_known_and_unknown_codes() {
        assert_eq!(
            closed_with(6, "sender not registered"),
            "closed by the peer with code 6 (UnauthorizedSender): sender not registered"
        );
        assert_eq!(
            closed_with(7, "bye"),
            "closed by the peer with code 7 (ShuttingDown): bye"
        );
        assert_eq!(
            closed_with(42, "?"),
            "closed by the peer with code 42 (unknown code): ?"
        );
        assert_eq!(
            closed_with(70_000, ""),
            "closed by the peer with code 70000 (unknown code): "
        );
    }
}
