//! `peer send SERVICE`: pipelined sends of generated payloads or stdin lines, one JSON line
//! per dead letter on stdout, a summary on stderr, exit 1 if anything was dead-lettered.

use crate::args::SendArgs;
use crate::common::{self, EXIT_DEAD_LETTERED};
use crate::json::{self, DeadLetterLine};
use anyhow::Context;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use peer_sdk::{Peer, Pending, SendError, SendOptions};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader, Lines, Stdin};
use tokio::sync::mpsc;

/// Where payloads come from.
pub(crate) enum Source {
    /// `{"seq":N,"key":"kM"}` for N in `next..=last`.
    Generated { next: u64, last: u64 },
    /// One payload per line.
    Stdin {
        lines: Lines<BufReader<Stdin>>,
        seq: u64,
    },
}

impl Source {
    pub(crate) fn new(count: Option<u64>, first: u64) -> Self {
        match count {
            Some(count) => Self::Generated {
                next: first,
                last: (first + count).saturating_sub(1),
            },
            None => Self::Stdin {
                lines: BufReader::new(tokio::io::stdin()).lines(),
                seq: 0,
            },
        }
    }

    /// The next `(seq, payload)`; `None` when done.
    pub(crate) async fn next(&mut self, keys: u64) -> anyhow::Result<Option<(u64, Bytes)>> {
        match self {
            Self::Generated { next, last } => {
                if *next > *last {
                    return Ok(None);
                }
                let seq = *next;
                *next += 1;
                Ok(Some((seq, generated_payload(seq, keys))))
            }
            Self::Stdin { lines, seq } => {
                let Some(line) = lines.next_line().await.context("reading stdin")? else {
                    return Ok(None);
                };
                *seq += 1;
                Ok(Some((*seq, Bytes::from(line))))
            }
        }
    }
}

/// The ordering key of message `seq`: `k{seq % keys}`, none when `keys` is 0.
pub(crate) fn key_of(seq: u64, keys: u64) -> Option<String> {
    (keys > 0).then(|| format!("k{}", seq % keys))
}

/// `{"seq":N,"key":"kM"}`, or `{"seq":N}` without keys.
fn generated_payload(seq: u64, keys: u64) -> Bytes {
    // Keys are `k` and digits: nothing to escape.
    Bytes::from(match key_of(seq, keys) {
        Some(key) => format!(r#"{{"seq":{seq},"key":"{key}"}}"#),
        None => format!(r#"{{"seq":{seq}}}"#),
    })
}

/// How the messages sent in this run ended (dead letters are counted from the peer's
/// dead-letter stream instead, which also carries those of resumed messages).
#[derive(Debug, Default)]
struct Tally {
    acked: u64,
    /// Dead letters among this run's sends (printed by `print_dead_letters`).
    dead_lettered: u64,
    failed: u64,
    /// Messages resumed from the store at start.
    resumed: u64,
}

impl Tally {
    fn record(&mut self, outcome: Result<Bytes, SendError>) {
        match outcome {
            Ok(_) => self.acked += 1,
            // Both are also dead letters, printed from the peer's dead-letter stream.
            Err(SendError::DeadLettered(_) | SendError::NoResponders(_)) => self.dead_lettered += 1,
            Err(e) => {
                self.failed += 1;
                eprintln!("send failed: {e}");
            }
        }
    }
}

/// Prints every dead letter of `peer` as a JSON line until the peer stops; returns how many
/// there were (including any the bounded queue had to drop).
fn print_dead_letters(peer: &Peer) -> tokio::task::JoinHandle<u64> {
    let mut letters = peer.dead_letters();
    tokio::spawn(async move {
        let mut n = 0;
        while let Some(dl) = letters.next().await {
            n += 1;
            // A closed stdout must not stop the counting (the exit code still tells).
            let _ = json::print_line(&json::line(&DeadLetterLine::new(&dl)));
        }
        n + letters.dropped()
    })
}

/// Waits until a durable peer holds nothing unresolved (at once without a store), or a
/// signal comes; returns whether everything was resolved.
async fn wait_resolved(peer: &Peer) -> bool {
    let signal = common::shutdown_signal();
    tokio::pin!(signal);
    while peer.unresolved_bytes() > 0 {
        tokio::select! {
            _ = &mut signal => return false,
            _ = tokio::time::sleep(RESOLVED_POLL) => {}
        }
    }
    true
}

/// How often `wait_resolved` looks at the store quota.
const RESOLVED_POLL: Duration = Duration::from_millis(50);

/// Messages in the outbox of the store in `dir` (0 when there is no store yet).
fn stored_messages(dir: &std::path::Path) -> anyhow::Result<u64> {
    if !dir.join(peer_sdk::store::FILE_NAME).exists() {
        return Ok(0);
    }
    let store = peer_sdk::Store::open(dir).context("opening the store")?;
    Ok(store.usage().context("reading the store")?.messages)
}

/// Starts a sending peer; with a store, says how many stored messages it resumes.
async fn start_sender(peer: &crate::args::PeerArgs, window: usize) -> anyhow::Result<(Peer, u64)> {
    let mut resumed = 0;
    if let Some(dir) = &peer.store {
        resumed = stored_messages(dir)?;
        if resumed > 0 {
            eprintln!("resuming {resumed} message(s) from {}", dir.display());
        }
    }
    Ok((
        common::start_peer(common::SENDER_SERVICE, peer, window).await?,
        resumed,
    ))
}

/// After the last send: waits for everything to resolve, stops the peer, prints the
/// summary; exit 1 if anything was dead-lettered or not resolved.
async fn finish(
    peer: Peer,
    letters: tokio::task::JoinHandle<u64>,
    what: String,
    tally: Tally,
    started: Instant,
) -> anyhow::Result<ExitCode> {
    let resolved = wait_resolved(&peer).await;
    let left = peer.unresolved_bytes();
    peer.shutdown().await;
    let dead = letters.await.context("the dead-letter printer failed")?;
    let secs = started.elapsed().as_secs_f64();
    let resumed_dead = dead.saturating_sub(tally.dead_lettered);
    let acked = match resolved {
        true => tally.acked + tally.resumed.saturating_sub(resumed_dead),
        false => tally.acked,
    };
    eprintln!(
        "{what}: {acked} acked, {} dead-lettered in {secs:.2}s ({:.0} msg/s)",
        dead + tally.failed,
        acked as f64 / secs.max(1e-9)
    );
    if !resolved {
        eprintln!("stopped with {left} bytes of messages unresolved; they stay in the store");
    }
    if dead + tally.failed > 0 || !resolved {
        return Ok(ExitCode::from(EXIT_DEAD_LETTERED));
    }
    Ok(ExitCode::SUCCESS)
}

/// `peer outbox replay`: starts a durable peer on the store, which resumes its outbox, and
/// waits until every message is acked or dead-lettered.
pub async fn resume_outbox(peer_args: &crate::args::PeerArgs) -> anyhow::Result<ExitCode> {
    let (peer, resumed) = start_sender(peer_args, DEFAULT_WINDOW).await?;
    let letters = print_dead_letters(&peer);
    let what = format!("resumed {resumed}");
    let tally = Tally {
        resumed,
        ..Tally::default()
    };
    finish(peer, letters, what, tally, Instant::now()).await
}

/// The window of `peer outbox replay` (resumed messages are bounded by the store).
const DEFAULT_WINDOW: usize = 256;

/// Awaits every pending message handed over on `rx`, in whatever order they resolve.
async fn collect(mut rx: mpsc::Receiver<Pending>) -> Tally {
    let mut pending = FuturesUnordered::new();
    let mut tally = Tally::default();
    loop {
        tokio::select! {
            Some(p) = rx.recv() => pending.push(p),
            Some(outcome) = pending.next(), if !pending.is_empty() => tally.record(outcome),
            else => return tally,
        }
    }
}

/// Most lanes of acceptance (see [`produce`]).
const MAX_LANES: u64 = 64;

/// The lane of message `seq`: its key's lane (so one key is always accepted in order), or
/// spread over [`MAX_LANES`] without keys.
fn lane_of(seq: u64, keys: u64) -> usize {
    let lanes = if keys > 0 {
        keys.min(MAX_LANES)
    } else {
        MAX_LANES
    };
    let spread = if keys > 0 { seq % keys } else { seq };
    usize::try_from(spread % lanes).unwrap_or(0)
}

/// One lane: accepts its messages one after the other and hands their outcomes on.
fn spawn_lane(
    peer: &Peer,
    service: &str,
    outcomes: mpsc::Sender<Pending>,
) -> (
    mpsc::Sender<(Bytes, SendOptions)>,
    tokio::task::JoinHandle<anyhow::Result<u64>>,
) {
    let (tx, mut rx) = mpsc::channel::<(Bytes, SendOptions)>(LANE_QUEUE);
    let (peer, service) = (peer.clone(), service.to_owned());
    let task = tokio::spawn(async move {
        let mut sent = 0;
        while let Some((payload, opts)) = rx.recv().await {
            let pending = peer.enqueue(&service, payload, opts).await?;
            sent += 1;
            if outcomes.send(pending).await.is_err() {
                break;
            }
        }
        Ok(sent)
    });
    (tx, task)
}

/// Messages queued per lane ahead of acceptance.
const LANE_QUEUE: usize = 16;

/// Sends every payload of the source (paced by `--rate`) until it ends or a signal comes.
///
/// A durable peer reports acceptance only once a message is on disk, so one sequential
/// sender would pay one fsync per message. Messages are therefore accepted in lanes that
/// run concurrently (one group commit covers a message of each lane); a key always uses the
/// same lane, so messages of one key are still accepted, and delivered, in send order.
async fn produce(
    peer: &Peer,
    args: &SendArgs,
    outcomes: mpsc::Sender<Pending>,
) -> anyhow::Result<u64> {
    let mut source = Source::new(args.count, args.first_seq);
    let mut pace = (args.rate > 0.0).then(|| {
        let mut i = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        i
    });
    let base = common::send_options(&args.delivery);
    let mut lanes: Vec<_> = Vec::new();
    let signal = common::shutdown_signal();
    tokio::pin!(signal);
    let mut failure = None;
    loop {
        let next = tokio::select! {
            _ = &mut signal => break,
            n = source.next(args.keys) => n,
        };
        let (seq, payload) = match next {
            Ok(Some(item)) => item,
            Ok(None) => break,
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        if let Some(pace) = &mut pace {
            pace.tick().await;
        }
        let lane = lane_of(seq, args.keys);
        while lanes.len() <= lane {
            lanes.push(spawn_lane(peer, &args.service, outcomes.clone()));
        }
        let opts = SendOptions {
            key: key_of(seq, args.keys).map(Bytes::from),
            ..base.clone()
        };
        if lanes[lane].0.send((payload, opts)).await.is_err() {
            break;
        }
    }
    let mut sent = 0;
    for (tx, task) in lanes {
        drop(tx);
        match task.await.context("a sending lane failed")? {
            Ok(n) => sent += n,
            Err(e) => failure = failure.or(Some(e)),
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(sent),
    }
}

/// Resumes the store (if any), sends, waits for every outcome, prints the summary.
pub async fn run(args: SendArgs) -> anyhow::Result<ExitCode> {
    let (peer, resumed) = start_sender(&args.peer, args.window.max(1)).await?;
    let letters = print_dead_letters(&peer);
    let started = Instant::now();
    let (tx, rx) = mpsc::channel(args.window.max(1));
    let collector = tokio::spawn(collect(rx));
    let sent = produce(&peer, &args, tx).await;
    if let Ok(n) = &sent {
        // With a store, accepted means on disk: a crash from here on loses nothing.
        eprintln!("accepted {n} message(s); waiting for their outcomes");
    }
    let mut tally = collector.await.context("the outcome collector failed")?;
    tally.resumed = resumed;
    let sent = match sent {
        Ok(n) => n,
        Err(e) => {
            peer.shutdown().await;
            return Err(e);
        }
    };
    let what = match resumed {
        0 => format!("sent {sent} to {}", args.service),
        n => format!("resumed {n}, sent {sent} to {}", args.service),
    };
    finish(peer, letters, what, tally, started).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_payloads_carry_their_sequence_and_key() {
        assert_eq!(generated_payload(11, 8), r#"{"seq":11,"key":"k3"}"#);
        assert_eq!(generated_payload(4, 0), r#"{"seq":4}"#);
        assert_eq!(key_of(11, 8).as_deref(), Some("k3"));
        assert_eq!(key_of(11, 0), None);
    }

    #[test]
    fn a_key_always_uses_the_same_lane() {
        for keys in [1, 8, 100, 130] {
            for seq in 1..1000 {
                assert_eq!(lane_of(seq, keys), lane_of(seq + keys, keys), "keys {keys}");
                assert!((lane_of(seq, keys) as u64) < MAX_LANES);
            }
        }
        assert_ne!(lane_of(1, 0), lane_of(2, 0));
    }
}
