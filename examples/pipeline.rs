//! The pipeline A → B → C → D: four services talking directly, each doing a small step and
//! forwarding. Midway, the C instance is killed (no deregistration, no drain) and a new one
//! starts; nothing is lost. Prints throughput, end-to-end latency percentiles and retries.
//!
//! ```text
//! cargo run --release --example pipeline -- --messages 50000
//! ```
//!
//! Each stage acks its input only after the next stage acked the forwarded message, so an
//! ack at A means the message reached D. A stage that dies loses only unacked work, which the
//! previous stage retries on the new instance; D drops the few messages that arrive twice
//! that way (at-least-once across a crash, deduplicated by sequence number at the sink).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use clap::Parser;
use peer_sdk::{Message, Nack, Peer, SendOptions};
use support::Latencies;
use tokio::sync::Mutex;
use tokio::task::{JoinHandle, JoinSet};

/// What to run.
#[derive(Debug, Clone, Parser)]
pub struct Options {
    /// Messages A sends.
    #[arg(long, default_value_t = 20_000)]
    pub messages: u64,
    /// Messages in flight per stage.
    #[arg(long, default_value_t = 256)]
    pub in_flight: usize,
    /// Kill and restart C once D has seen this fraction of the messages (0 = never).
    #[arg(long, default_value_t = 0.5)]
    pub kill_at: f64,
}

/// What happened.
#[derive(Debug)]
pub struct Report {
    /// Messages A got acked (each one reached D).
    pub acked: u64,
    /// Distinct messages D processed, each with the right result.
    pub delivered: u64,
    /// Messages D saw again after the crash of C and dropped.
    pub duplicates: u64,
    /// Deliveries on any stage that were a retry (attempt > 1).
    pub retried: u64,
    /// Messages that ended as dead letters or errors (must be 0).
    pub lost: u64,
    /// Whether C was killed and restarted.
    pub c_restarted: bool,
    /// End-to-end latency, A's send to D's processing.
    pub latency: Latencies,
    /// Wall time.
    pub elapsed: Duration,
}

/// A message on its way: sequence number, A's send time and the value each stage works on.
struct Payload {
    seq: u64,
    sent_nanos: u64,
    value: u64,
}

impl Payload {
    const LEN: usize = 24;

    fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(Self::LEN);
        b.put_u64(self.seq);
        b.put_u64(self.sent_nanos);
        b.put_u64(self.value);
        b.freeze()
    }

    fn decode(mut b: &[u8]) -> Option<Self> {
        (b.len() == Self::LEN).then(|| Self {
            seq: b.get_u64(),
            sent_nanos: b.get_u64(),
            value: b.get_u64(),
        })
    }
}

/// State shared by the stages of one run.
struct Shared {
    epoch: Instant,
    retried: AtomicU64,
    sink: Mutex<Sink>,
}

#[derive(Default)]
struct Sink {
    seen: HashSet<u64>,
    duplicates: u64,
    wrong: u64,
    latency: Latencies,
}

/// Runs the pipeline against a fresh single-node directory.
pub async fn run(opts: Options) -> anyhow::Result<Report> {
    let node = support::start_directory().await?;
    let url = support::url_of(&node);
    let shared = Arc::new(Shared {
        epoch: Instant::now(),
        retried: AtomicU64::new(0),
        sink: Mutex::new(Sink::default()),
    });

    let d = start_stage(&url, "stage-d", opts.in_flight).await?;
    let d_task = spawn_sink(&d, shared.clone());
    let c = start_stage(&url, "stage-c", opts.in_flight).await?;
    let mut c_task = spawn_forwarder(c, "stage-d", |v| v + 1, shared.clone());
    let b = start_stage(&url, "stage-b", opts.in_flight).await?;
    let b_task = spawn_forwarder(b.clone(), "stage-c", |v| v * 2, shared.clone());
    let a = start_stage(&url, "stage-a", opts.in_flight).await?;

    let start = Instant::now();
    let source = tokio::spawn(source(a.clone(), opts.messages, shared.clone()));
    let kill_after = (opts.messages as f64 * opts.kill_at) as usize;
    let c_restarted = opts.kill_at > 0.0 && wait_for_sink(&shared, kill_after, &source).await;
    if c_restarted {
        // A crash: the stage's task and every clone of its peer go away at once.
        c_task.abort();
        let _ = c_task.await;
        let c = start_stage(&url, "stage-c", opts.in_flight).await?;
        c_task = spawn_forwarder(c, "stage-d", |v| v + 1, shared.clone());
    }
    let (acked, lost) = source.await.context("source task")??;
    let elapsed = start.elapsed();

    for task in [b_task, c_task, d_task] {
        task.abort();
    }
    a.shutdown().await;
    b.shutdown().await;
    node.shutdown().await;
    let sink = std::mem::take(&mut *shared.sink.lock().await);
    ensure!(
        sink.wrong == 0,
        "{} messages carried a wrong result",
        sink.wrong
    );
    Ok(Report {
        acked,
        delivered: sink.seen.len() as u64,
        duplicates: sink.duplicates,
        retried: shared.retried.load(Ordering::Relaxed),
        lost,
        c_restarted,
        latency: sink.latency,
        elapsed,
    })
}

async fn start_stage(url: &str, service: &str, in_flight: usize) -> anyhow::Result<Peer> {
    Ok(Peer::builder(service)
        .directory([url.to_owned()])
        .instance(format!("{service}-1"))
        .configure(|c| c.window = in_flight)
        .start()
        .await?)
}

/// A: sends `n` messages with the window in flight; returns (acked, lost).
async fn source(a: Peer, n: u64, shared: Arc<Shared>) -> anyhow::Result<(u64, u64)> {
    let mut pending = JoinSet::new();
    for seq in 0..n {
        let sent_nanos = shared.epoch.elapsed().as_nanos() as u64;
        let payload = Payload {
            seq,
            sent_nanos,
            value: seq,
        }
        .encode();
        let ack = a
            .enqueue("stage-b", payload, SendOptions::default())
            .await?;
        pending.spawn(ack);
    }
    let (mut acked, mut lost) = (0, 0);
    while let Some(outcome) = pending.join_next().await {
        match outcome? {
            Ok(_) => acked += 1,
            Err(e) => {
                tracing::warn!("message lost: {e}");
                lost += 1;
            }
        }
    }
    Ok((acked, lost))
}

/// B and C: apply `step` and forward to `next`; ack the input once `next` acked.
fn spawn_forwarder(
    peer: Peer,
    next: &'static str,
    step: fn(u64) -> u64,
    shared: Arc<Shared>,
) -> JoinHandle<()> {
    let mut inbox = peer.incoming();
    tokio::spawn(async move {
        // Owns every in-flight forward (and with them every clone of `peer`): aborting this
        // task drops them all, which is how the example kills a stage.
        let mut forwards = JoinSet::new();
        while let Some(msg) = inbox.next().await {
            note_retry(&msg, &shared);
            let peer = peer.clone();
            forwards.spawn(forward(peer, next, step, msg));
            while forwards.try_join_next().is_some() {}
        }
    })
}

async fn forward(peer: Peer, next: &str, step: fn(u64) -> u64, msg: Message) {
    let Some(mut p) = Payload::decode(msg.payload()) else {
        return msg.nack(Nack::DeadLetter("malformed payload".into()));
    };
    p.value = step(p.value);
    match peer.send(next, p.encode()).await {
        Ok(()) => msg.ack(),
        Err(e) => msg.nack(Nack::Retry(e.to_string())),
    }
}

/// D: checks the result, drops duplicates, records the end-to-end latency.
fn spawn_sink(peer: &Peer, shared: Arc<Shared>) -> JoinHandle<()> {
    let mut inbox = peer.incoming();
    tokio::spawn(async move {
        while let Some(msg) = inbox.next().await {
            note_retry(&msg, &shared);
            let Some(p) = Payload::decode(msg.payload()) else {
                msg.nack(Nack::DeadLetter("malformed payload".into()));
                continue;
            };
            let now = shared.epoch.elapsed();
            let mut sink = shared.sink.lock().await;
            if !sink.seen.insert(p.seq) {
                sink.duplicates += 1;
            } else if p.value != p.seq * 2 + 1 {
                sink.wrong += 1;
            } else {
                let latency = now.saturating_sub(Duration::from_nanos(p.sent_nanos));
                sink.latency.record(latency);
            }
            drop(sink);
            msg.ack();
        }
    })
}

fn note_retry(msg: &Message, shared: &Shared) {
    if msg.attempt() > 1 {
        shared.retried.fetch_add(1, Ordering::Relaxed);
    }
}

/// Waits until D has seen `count` messages; false if the source ended first.
async fn wait_for_sink<T>(shared: &Shared, count: usize, source: &JoinHandle<T>) -> bool {
    loop {
        if shared.sink.lock().await.seen.len() >= count {
            return true;
        }
        if source.is_finished() {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    support::init_logging("warn");
    let opts = Options::parse();
    println!(
        "pipeline: {} messages A → B → C → D, {} in flight per stage",
        opts.messages, opts.in_flight
    );
    let r = run(opts).await?;
    if r.c_restarted {
        println!("C was killed mid-run and restarted");
    }
    println!(
        "acked at A {} · processed at D {} · lost {} · retried deliveries {} · duplicates dropped at D {}",
        r.acked, r.delivered, r.lost, r.retried, r.duplicates
    );
    println!(
        "throughput {:.0} msgs/s end to end · latency {}",
        r.acked as f64 / r.elapsed.as_secs_f64(),
        r.latency.summary()
    );
    ensure!(r.lost == 0, "messages were lost");
    Ok(())
}
