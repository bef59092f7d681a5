//! One producer, several worker instances of one service, load-balanced; one worker leaves
//! mid-run. Prints how many jobs each worker handled and proves none was lost or doubled.
//!
//! ```text
//! cargo run --example workers -- --jobs 20000 --workers 3
//! ```

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use bytes::Bytes;
use clap::Parser;
use peer_sdk::{Peer, SendOptions};
use tokio::sync::Mutex;
use tokio::task::JoinSet;

/// What to run.
#[derive(Debug, Clone, Parser)]
pub struct Options {
    /// Jobs the producer sends.
    #[arg(long, default_value_t = 20_000)]
    pub jobs: u64,
    /// Worker instances (at least 2: one of them leaves mid-run).
    #[arg(long, default_value_t = 3)]
    pub workers: usize,
    /// Jobs in flight at once.
    #[arg(long, default_value_t = 256)]
    pub in_flight: usize,
}

/// What happened.
#[derive(Debug)]
pub struct Report {
    /// Jobs handled by each worker, in start order; the first one left mid-run.
    pub per_worker: Vec<u64>,
    /// Jobs acknowledged to the producer.
    pub acked: u64,
    /// Jobs that ended as dead letters (must be 0).
    pub lost: u64,
    /// Jobs a worker saw twice (must be 0: the SDK dedupes retries).
    pub doubled: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
}

/// Counters one worker shares with the run.
#[derive(Default)]
struct Tally {
    handled: AtomicU64,
}

/// Runs the scenario against a fresh single-node directory.
pub async fn run(opts: Options) -> anyhow::Result<Report> {
    ensure!(opts.workers >= 2, "--workers must be at least 2");
    let node = support::start_directory().await?;
    let url = support::url_of(&node);
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let doubled = Arc::new(AtomicU64::new(0));

    let mut workers = Vec::new();
    for i in 0..opts.workers {
        let tally = Arc::new(Tally::default());
        let peer = Peer::builder("jobs")
            .directory([url.clone()])
            .instance(format!("worker-{i}"))
            .start()
            .await?;
        spawn_worker(&peer, tally.clone(), seen.clone(), doubled.clone());
        workers.push((peer, tally));
    }
    let producer = Peer::builder("producer")
        .directory([url.clone()])
        .configure(|c| c.window = opts.in_flight)
        .start()
        .await?;

    let start = Instant::now();
    let (acked, lost) = produce(&producer, &workers[0].0, opts.jobs).await?;
    let elapsed = start.elapsed();

    producer.shutdown().await;
    let mut per_worker = Vec::new();
    for (peer, tally) in workers {
        peer.shutdown().await;
        per_worker.push(tally.handled.load(Ordering::Relaxed));
    }
    node.shutdown().await;
    Ok(Report {
        per_worker,
        acked,
        lost,
        doubled: doubled.load(Ordering::Relaxed),
        elapsed,
    })
}

/// Handles jobs: records the job id, counts it, acks it.
fn spawn_worker(
    peer: &Peer,
    tally: Arc<Tally>,
    seen: Arc<Mutex<HashSet<u64>>>,
    doubled: Arc<AtomicU64>,
) {
    let mut inbox = peer.incoming();
    tokio::spawn(async move {
        while let Some(msg) = inbox.next().await {
            let job = job_id(msg.payload());
            if !seen.lock().await.insert(job) {
                doubled.fetch_add(1, Ordering::Relaxed);
            }
            tally.handled.fetch_add(1, Ordering::Relaxed);
            msg.ack();
        }
    });
}

/// Sends `jobs` jobs with a window in flight; the `leaver` shuts down halfway.
/// Returns (acked, dead-lettered).
async fn produce(producer: &Peer, leaver: &Peer, jobs: u64) -> anyhow::Result<(u64, u64)> {
    let mut pending = JoinSet::new();
    for job in 0..jobs {
        if job == jobs / 2 {
            let leaver = leaver.clone();
            pending.spawn(async move {
                leaver.shutdown().await;
                Ok(())
            });
        }
        let ack = producer
            .enqueue(
                "jobs",
                Bytes::from(job.to_be_bytes().to_vec()),
                SendOptions::default(),
            )
            .await
            .context("enqueue")?;
        pending.spawn(async move { ack.await.map(drop) });
    }
    let (mut acked, mut lost) = (0, 0);
    while let Some(joined) = pending.join_next().await {
        match joined? {
            Ok(()) => acked += 1,
            Err(e) => {
                tracing::warn!("job failed: {e}");
                lost += 1;
            }
        }
    }
    // The leaver's shutdown task counted as one success: not a job.
    Ok((acked - 1, lost))
}

fn job_id(payload: &Bytes) -> u64 {
    let mut id = [0u8; 8];
    let n = payload.len().min(8);
    id[..n].copy_from_slice(&payload[..n]);
    u64::from_be_bytes(id)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    support::init_logging("warn");
    let opts = Options::parse();
    println!(
        "workers: {} jobs to service `jobs` with {} workers; worker-0 leaves halfway",
        opts.jobs, opts.workers
    );
    let report = run(opts).await?;
    for (i, n) in report.per_worker.iter().enumerate() {
        let note = if i == 0 { " (left mid-run)" } else { "" };
        println!("  worker-{i}: {n} jobs{note}");
    }
    println!(
        "acked {} · lost {} · handled twice {} · {:.0} jobs/s",
        report.acked,
        report.lost,
        report.doubled,
        report.acked as f64 / report.elapsed.as_secs_f64()
    );
    ensure!(
        report.lost == 0 && report.doubled == 0,
        "jobs were lost or doubled"
    );
    Ok(())
}
