//! The stream transport of anti-entropy: TCP connections carrying `u32`-length-delimited
//! frames, each a sealed [`SyncMsg`]. Each session alternates frames with the peer through
//! the driver loop's core (a [`Command::Sync`] per frame) until one side has nothing more
//! to say.

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
use super::keyring::Keyring;
use super::proto::wire::{MAX_FRAME, SyncMsg, decode_sync, encode_sync};
use super::settings::GossipCounters;

/// How long an anti-entropy connection may take to open.
const SYNC_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long an anti-entropy peer may take to send its next frame.
const SYNC_FRAME_TIMEOUT: Duration = Duration::from_secs(5);
/// Most frames in one anti-entropy session (the exchange needs four).
const SYNC_MAX_ROUNDS: usize = 8;
/// Most anti-entropy sessions served at once; more connections wait.
const SYNC_MAX_CONCURRENT: usize = 16;

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

/// Alternates frames with the peer through the core until one side has nothing to say.
async fn converse(
    session: &mut Session,
    commands: &mpsc::Sender<Command>,
    counters: &GossipCounters,
) -> Result<(), SyncError> {
    for _ in 0..SYNC_MAX_ROUNDS {
        let Some(msg) = session.recv(counters).await? else {
            return Ok(());
        };
        match ask_core(commands, msg).await? {
            Some(reply) => session.send(&reply).await?,
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
        converse(&mut session, &commands, &counters).await?;
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

pub(super) async fn serve_sync(
    listener: TcpListener,
    keys: Option<Keyring>,
    commands: mpsc::Sender<Command>,
    counters: Arc<GossipCounters>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let permits = Arc::new(Semaphore::new(SYNC_MAX_CONCURRENT));
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, peer)) = accepted else {
            continue;
        };
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let (keys, commands, counters) = (keys.clone(), commands.clone(), counters.clone());
        tracker.spawn(async move {
            let mut session = Session::new(stream, &keys);
            match converse(&mut session, &commands, &counters).await {
                Ok(()) => {
                    counters.syncs_completed.fetch_add(1, Ordering::Relaxed);
                }
                Err(err) => tracing::debug!(%err, %peer, "anti-entropy session failed"),
            }
            drop(permit);
        });
    }
}
