//! The stream transport of anti-entropy: TCP connections carrying `u32`-length-delimited
//! frames, each a sealed [`SyncMsg`]. Each session alternates frames with the peer through
//! the driver loop's core (a [`Command::Sync`] per frame) until one side has nothing more
//! to say.
//!
//! The listener admits connections in two stages. Until its first frame authenticates, a
//! connection holds a slot of a small table ([`super::handshake`]; a full table evicts its
//! oldest entry), may send at most [`MAX_FIRST_FRAME`] bytes, and is closed after
//! [`HANDSHAKE_TIMEOUT`]; only then does it wait for one of the [`SYNC_MAX_CONCURRENT`]
//! session permits. The accept loop itself never waits, and backs off after accept errors
//! (e.g. out of file descriptors) instead of spinning.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::timeout;
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::command::Command;
use super::crypto::{DropReason, Opener, Sealer};
use super::handshake::{HandshakeSlot, Handshakes};
use super::keyring::Keyring;
use super::proto::wire::{MAX_FRAME, SyncMsg, decode_sync, encode_sync};
use super::settings::GossipCounters;

/// How long an anti-entropy connection may take to open.
const SYNC_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long an anti-entropy peer may take to send its next frame.
const SYNC_FRAME_TIMEOUT: Duration = Duration::from_secs(5);
/// Most frames in one anti-entropy session (the exchange needs four).
const SYNC_MAX_ROUNDS: usize = 8;
/// Most anti-entropy sessions served at once; more authenticated connections wait.
const SYNC_MAX_CONCURRENT: usize = 16;
/// How long a new connection may take to deliver its first authenticated frame. A peer
/// sends its digest right after connecting, so it needs one round trip (milliseconds on a
/// LAN, well under a second across regions); an idle connection is closed after this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
/// Most connections waiting for their first authenticated frame at once; a new connection
/// evicts the oldest beyond it. 64 covers every peer of a large cluster syncing at the same
/// moment (each node starts one session per anti-entropy interval).
pub const MAX_HANDSHAKES: usize = 64;
/// Largest first frame, refused by its length prefix before anything is buffered: the
/// opening frame is always a digest (64 buckets: under 700 bytes sealed), so unauthenticated
/// connections hold at most `MAX_HANDSHAKES` × 4 KiB.
pub const MAX_FIRST_FRAME: usize = 4 * 1024;
/// First and longest pause after a failed `accept` (doubling in between).
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(5), Duration::from_secs(1));

type FramedStream = Framed<TcpStream, LengthDelimitedCodec>;

fn framed(stream: TcpStream) -> FramedStream {
    let codec = LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME)
        .new_codec();
    Framed::new(stream, codec)
}

/// Failure of one anti-entropy session (logged, never fatal).
#[derive(Debug, thiserror::Error)]
enum SyncError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("peer too slow")]
    Timeout,
    #[error("frame dropped: {0}")]
    Dropped(DropReason),
    #[error("driver stopped")]
    Stopped,
    #[error("no authenticated frame within the handshake timeout")]
    HandshakeTimeout,
    #[error("evicted by a newer unauthenticated connection")]
    Evicted,
}

struct Session {
    framed: FramedStream,
    sealer: Sealer,
    opener: Opener,
}

impl Session {
    fn new(stream: TcpStream, keys: &Option<Keyring>) -> Self {
        Self {
            framed: framed(stream),
            sealer: Sealer::new(keys.clone()),
            opener: Opener::new(keys.clone()),
        }
    }

    async fn send(&mut self, msg: &SyncMsg) -> Result<(), SyncError> {
        let plain = encode_sync(msg, MAX_FRAME - 64)
            .map_err(|_| SyncError::Dropped(DropReason::Oversized))?;
        let frame = Bytes::from(self.sealer.seal(&plain));
        self.framed.send(frame).await?;
        Ok(())
    }

    /// The next message, or `None` when the peer closed the stream.
    async fn recv(&mut self, counters: &GossipCounters) -> Result<Option<SyncMsg>, SyncError> {
        let frame = match timeout(SYNC_FRAME_TIMEOUT, self.framed.next()).await {
            Err(_) => return Err(SyncError::Timeout),
            Ok(None) => return Ok(None),
            Ok(Some(Ok(frame))) => frame,
            // The codec refuses a length prefix above `MAX_FRAME` before buffering the body.
            Ok(Some(Err(err))) if err.kind() == std::io::ErrorKind::InvalidData => {
                counters.count_drop(DropReason::Oversized);
                return Err(SyncError::Dropped(DropReason::Oversized));
            }
            Ok(Some(Err(err))) => return Err(err.into()),
        };
        let plain = self.opener.open(&frame, MAX_FRAME).map_err(|reason| {
            counters.count_drop(reason);
            SyncError::Dropped(reason)
        })?;
        decode_sync(&plain, MAX_FRAME).map(Some).map_err(|_| {
            counters.count_drop(DropReason::Malformed);
            SyncError::Dropped(DropReason::Malformed)
        })
    }
}

async fn ask_core(
    commands: &mpsc::Sender<Command>,
    msg: SyncMsg,
) -> Result<Option<SyncMsg>, SyncError> {
    let (tx, rx) = oneshot::channel();
    commands
        .send(Command::Sync(msg, tx))
        .await
        .map_err(|_| SyncError::Stopped)?;
    rx.await.map_err(|_| SyncError::Stopped)
}

/// Hands `first` to the core, then alternates frames with the peer through it until one
/// side has nothing more to say.
async fn converse(
    session: &mut Session,
    first: SyncMsg,
    commands: &mpsc::Sender<Command>,
    counters: &GossipCounters,
) -> Result<(), SyncError> {
    let mut next = first;
    for _ in 0..SYNC_MAX_ROUNDS {
        match ask_core(commands, next).await? {
            Some(reply) => session.send(&reply).await?,
            None => return Ok(()),
        }
        match session.recv(counters).await? {
            Some(msg) => next = msg,
            None => return Ok(()),
        }
    }
    Ok(())
}

pub(super) async fn initiate_sync(
    to: SocketAddr,
    digest: SyncMsg,
    keys: Option<Keyring>,
    commands: mpsc::Sender<Command>,
    counters: Arc<GossipCounters>,
) {
    let result = async {
        let stream = timeout(SYNC_CONNECT_TIMEOUT, TcpStream::connect(to))
            .await
            .map_err(|_| SyncError::Timeout)??;
        let mut session = Session::new(stream, &keys);
        session.send(&digest).await?;
        if let Some(reply) = session.recv(&counters).await? {
            converse(&mut session, reply, &commands, &counters).await?;
        }
        let _ = SinkExt::<Bytes>::close(&mut session.framed).await;
        Ok::<_, SyncError>(())
    }
    .await;
    match result {
        Ok(()) => {
            counters.syncs_completed.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("directory_gossip_syncs_total", "result" => "ok").increment(1);
        }
        Err(err) => {
            metrics::counter!("directory_gossip_syncs_total", "result" => "failed").increment(1);
            tracing::debug!(%err, %to, "anti-entropy session failed");
        }
    }
}

/// What every served connection needs.
#[derive(Clone)]
struct Served {
    keys: Option<Keyring>,
    commands: mpsc::Sender<Command>,
    counters: Arc<GossipCounters>,
    sessions: Arc<Semaphore>,
}

pub(super) async fn serve_sync(
    listener: TcpListener,
    keys: Option<Keyring>,
    commands: mpsc::Sender<Command>,
    counters: Arc<GossipCounters>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let served = Served {
        keys,
        commands,
        counters,
        sessions: Arc::new(Semaphore::new(SYNC_MAX_CONCURRENT)),
    };
    let handshakes = Handshakes::new(MAX_HANDSHAKES);
    let mut backoff = ACCEPT_BACKOFF.0;
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!(%err, ?backoff, "gossip accept failed; backing off");
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF.1);
                continue;
            }
        };
        backoff = ACCEPT_BACKOFF.0;
        let (slot, evicted) = handshakes.enter();
        if evicted {
            count_closed("evicted");
        }
        tracker.spawn(serve_connection(stream, peer, slot, served.clone()));
    }
}

/// One accepted connection: authenticate its first frame, then run the session.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    slot: HandshakeSlot,
    served: Served,
) {
    let mut session = Session::new(stream, &served.keys);
    session
        .framed
        .codec_mut()
        .set_max_frame_length(MAX_FIRST_FRAME);
    let first = match first_frame(&mut session, slot, &served.counters).await {
        Ok(first) => first,
        Err(err) => {
            tracing::debug!(%err, %peer, "anti-entropy connection closed before authenticating");
            return;
        }
    };
    session.framed.codec_mut().set_max_frame_length(MAX_FRAME);
    let Ok(_permit) = served.sessions.acquire_owned().await else {
        return;
    };
    let counters = &served.counters;
    match converse(&mut session, first, &served.commands, counters).await {
        Ok(()) => {
            counters.syncs_completed.fetch_add(1, Ordering::Relaxed);
            counters.syncs_served.fetch_add(1, Ordering::Relaxed);
        }
        Err(err) => tracing::debug!(%err, %peer, "anti-entropy session failed"),
    }
}

/// The connection's first frame, authenticated, within [`HANDSHAKE_TIMEOUT`] and while
/// its handshake slot is not taken by a newer connection. The slot is freed on return.
async fn first_frame(
    session: &mut Session,
    slot: HandshakeSlot,
    counters: &GossipCounters,
) -> Result<SyncMsg, SyncError> {
    let received = tokio::select! {
        () = slot.evicted() => return Err(SyncError::Evicted),
        received = timeout(HANDSHAKE_TIMEOUT, session.recv(counters)) => received,
    };
    let Ok(received) = received else {
        count_closed("timeout");
        return Err(SyncError::HandshakeTimeout);
    };
    received?.ok_or(SyncError::Io(std::io::ErrorKind::UnexpectedEof.into()))
}

fn count_closed(reason: &'static str) {
    metrics::counter!("directory_gossip_unauthenticated_connections_closed_total", "reason" => reason)
        .increment(1);
}
