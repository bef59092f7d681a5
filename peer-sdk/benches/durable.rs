//! Durable (store on both sides) against in-memory delivery and against NATS JetStream
//! with file storage, measured in the same run: acked 100-byte messages at a window of 256,
//! and sequential send+ack latency.
//!
//! The JetStream baseline needs `nats-server` on the `PATH` (Debian: `apt-get install
//! nats-server`); without it that column is skipped.
//!
//! Run: `cargo bench -p peer-sdk --bench durable` (release profile). `DURABLE_BENCH_QUICK=1`
//! for a shorter run. The store directories are temporary directories (`TMPDIR`), so the
//! fsync cost is that of the disk behind them.

use bytes::Bytes;
use hdrhistogram::Histogram;
use peer_sdk::{Peer, SendOptions};
use std::collections::VecDeque;
use std::time::Instant;

// In a subdirectory so that Cargo does not take it for a benchmark of its own.
#[path = "durable/jetstream.rs"]
mod jetstream;

const WINDOW: usize = 256;
const RUNS: usize = 3;

fn quick() -> bool {
    std::env::var_os("DURABLE_BENCH_QUICK").is_some()
}

struct Pair {
    tx: Peer,
    rx: Peer,
    _dirs: Vec<tempfile::TempDir>,
}

async fn pair(durable: bool) -> Pair {
    let mut dirs = Vec::new();
    let mut builder = |service: &str| {
        let b = Peer::builder(service).configure(|c| c.window = WINDOW);
        if durable {
            let dir = tempfile::tempdir().unwrap();
            let b = b.store(dir.path());
            dirs.push(dir);
            b
        } else {
            b
        }
    };
    let rx = builder("bench-rx").start().await.unwrap();
    let tx = builder("bench-tx")
        .static_instance(rx.info())
        .start()
        .await
        .unwrap();
    let mut inbox = rx.incoming();
    tokio::spawn(async move {
        while let Some(m) = inbox.next().await {
            m.ack();
        }
    });
    tx.send("bench-rx", &b"warm-up"[..]).await.unwrap();
    Pair {
        tx,
        rx,
        _dirs: dirs,
    }
}

/// Keeps up to `WINDOW` messages unresolved: when the window is full, waits for its oldest
/// quarter, then enqueues the room in one batch (one acceptance wait per batch).
async fn throughput(p: &Pair, total: usize) -> f64 {
    let payload = Bytes::from(vec![3u8; 100]);
    let mut pending = VecDeque::with_capacity(WINDOW);
    let mut sent = 0;
    let t = Instant::now();
    while sent < total {
        if pending.len() >= WINDOW {
            for _ in 0..WINDOW / 4 {
                let oldest: peer_sdk::Pending = pending.pop_front().unwrap();
                oldest.await.unwrap();
            }
            continue;
        }
        let room = (WINDOW - pending.len()).min(total - sent);
        let batch = (0..room).map(|_| (payload.clone(), SendOptions::default()));
        pending.extend(p.tx.enqueue_batch("bench-rx", batch).await.unwrap());
        sent += room;
    }
    for p in pending {
        p.await.unwrap();
    }
    total as f64 / t.elapsed().as_secs_f64()
}

async fn latency(p: &Pair, iters: usize) -> Histogram<u64> {
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
    let payload = Bytes::from(vec![7u8; 100]);
    for _ in 0..iters {
        let t = Instant::now();
        p.tx.send("bench-rx", payload.clone()).await.unwrap();
        h.saturating_record(t.elapsed().as_nanos() as u64);
    }
    h
}

fn us(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

async fn run() {
    let (total, iters) = if quick() {
        (50_000, 1_000)
    } else {
        (300_000, 5_000)
    };
    let nats = jetstream::Server::start();
    for run in 1..=RUNS {
        let mem = pair(false).await;
        let durable = pair(true).await;
        let m = throughput(&mem, total).await;
        let d = throughput(&durable, total).await;
        if let Some(nats) = &nats {
            let j = nats.throughput(&format!("bench{run}"), WINDOW, total).await;
            println!(
                "run {run}: acked 100B, window {WINDOW}: JetStream (file) {j:.0}/s | durable {d:.0}/s | ratio durable/JetStream {:.2}",
                d / j
            );
        }
        let ml = latency(&mem, iters).await;
        let dl = latency(&durable, iters).await;
        println!(
            "run {run}: acked 100B, window {WINDOW}: in-memory {m:.0}/s | durable {d:.0}/s | ratio {:.2} || send+ack p50: in-memory {:.0} us | durable {:.0} us (+{:.0} us) p99 {:.0} / {:.0} us",
            d / m,
            us(&ml, 0.5),
            us(&dl, 0.5),
            us(&dl, 0.5) - us(&ml, 0.5),
            us(&ml, 0.99),
            us(&dl, 0.99),
        );
        for p in [mem, durable] {
            p.tx.shutdown().await;
            p.rx.shutdown().await;
        }
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}
