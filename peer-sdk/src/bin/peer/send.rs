//! `peer send SERVICE`: pipelined sends of generated payloads or stdin lines, one JSON line
//! per dead letter on stdout, a summary on stderr, exit 1 if anything was dead-lettered.

use crate::args::SendArgs;
use crate::common::{self, EXIT_DEAD_LETTERED};
use crate::json::{self, DeadLetterLine};
use anyhow::Context;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use peer_sdk::{Pending, SendError, SendOptions};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader, Lines, Stdin};
use tokio::sync::mpsc;

/// Where payloads come from.
enum Source {
    /// `{"seq":N,"key":"kM"}` for N in `next..=count`.
    Generated { next: u64, count: u64 },
    /// One payload per line.
    Stdin {
        lines: Lines<BufReader<Stdin>>,
        seq: u64,
    },
}

impl Source {
    fn new(count: Option<u64>) -> Self {
        match count {
            Some(count) => Self::Generated { next: 1, count },
            None => Self::Stdin {
                lines: BufReader::new(tokio::io::stdin()).lines(),
                seq: 0,
            },
        }
    }

    /// The next `(seq, payload)`; `None` when done.
    async fn next(&mut self, keys: u64) -> anyhow::Result<Option<(u64, Bytes)>> {
        match self {
            Self::Generated { next, count } => {
                if *next > *count {
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
fn key_of(seq: u64, keys: u64) -> Option<String> {
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

/// How the sent messages ended.
#[derive(Debug, Default)]
struct Tally {
    acked: u64,
    dead_lettered: u64,
    failed: u64,
}

impl Tally {
    fn record(&mut self, outcome: Result<Bytes, SendError>) {
        match outcome {
            Ok(_) => self.acked += 1,
            Err(SendError::DeadLettered(dl)) => {
                self.dead_lettered += 1;
                println!("{}", json::line(&DeadLetterLine::new(&dl)));
            }
            Err(e) => {
                self.failed += 1;
                eprintln!("send failed: {e}");
            }
        }
    }
}

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

/// Sends every payload of the source (paced by `--rate`) until it ends or a signal comes.
async fn produce(
    peer: &peer_sdk::Peer,
    args: &SendArgs,
    tx: mpsc::Sender<Pending>,
) -> anyhow::Result<u64> {
    let mut source = Source::new(args.count);
    let mut pace = (args.rate > 0.0).then(|| {
        let mut i = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        i
    });
    let base = common::send_options(&args.delivery);
    let mut sent = 0;
    let signal = common::shutdown_signal();
    tokio::pin!(signal);
    loop {
        let next = tokio::select! {
            _ = &mut signal => break,
            n = source.next(args.keys) => n?,
        };
        let Some((seq, payload)) = next else { break };
        if let Some(pace) = &mut pace {
            pace.tick().await;
        }
        let opts = SendOptions {
            key: key_of(seq, args.keys).map(Bytes::from),
            ..base.clone()
        };
        let pending = peer.enqueue(&args.service, payload, opts).await?;
        sent += 1;
        if tx.send(pending).await.is_err() {
            break;
        }
    }
    Ok(sent)
}

/// Sends, waits for every outcome, prints the summary.
pub async fn run(args: SendArgs) -> anyhow::Result<ExitCode> {
    let peer = common::start_peer(common::SENDER_SERVICE, &args.peer, args.window.max(1)).await?;
    let started = Instant::now();
    let (tx, rx) = mpsc::channel(args.window.max(1));
    let collector = tokio::spawn(collect(rx));
    let sent = produce(&peer, &args, tx).await;
    let tally = collector.await.context("the outcome collector failed")?;
    peer.shutdown().await;
    let sent = sent?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "sent {sent} to {}: {} acked, {} dead-lettered in {secs:.2}s ({:.0} msg/s)",
        args.service,
        tally.acked,
        tally.dead_lettered + tally.failed,
        tally.acked as f64 / secs.max(1e-9)
    );
    if tally.dead_lettered + tally.failed > 0 {
        return Ok(ExitCode::from(EXIT_DEAD_LETTERED));
    }
    Ok(ExitCode::SUCCESS)
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
}
