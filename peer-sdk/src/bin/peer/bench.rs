//! `peer bench SERVICE|--loopback`: acked send latency (enqueue to ack) and throughput, with
//! a progress bar and an HDR histogram summary.

use crate::args::BenchArgs;
use crate::common;
use anyhow::Context;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use peer_sdk::{Peer, SendOptions};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The service the in-process receiver of `--loopback` registers as.
const LOOPBACK_SERVICE: &str = "bench-sink";

/// Runs the benchmark and prints its summary.
pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let window = args.window.max(1);
    let (sender, receiver, service) = match &args.service {
        Some(service) => {
            let sender = common::start_peer(common::SENDER_SERVICE, &args.peer, window).await?;
            (sender, None, service.clone())
        }
        None => {
            let (sender, receiver) = loopback_pair(window).await?;
            (sender, Some(receiver), LOOPBACK_SERVICE.to_owned())
        }
    };
    let result = measure(&sender, &service, &args).await;
    sender.shutdown().await;
    if let Some(r) = receiver {
        r.shutdown().await;
    }
    let (latencies, elapsed) = result?;
    crate::json::print_line(&summary(&latencies, elapsed, args.size))?;
    Ok(ExitCode::SUCCESS)
}

/// A receiver that acks everything and a sender that knows it statically.
async fn loopback_pair(window: usize) -> anyhow::Result<(Peer, Peer)> {
    let receiver = Peer::builder(LOOPBACK_SERVICE)
        .start()
        .await
        .context("starting the loopback receiver")?;
    let mut inbox = receiver.incoming();
    tokio::spawn(async move {
        while let Some(m) = inbox.next().await {
            m.ack();
        }
    });
    let sender = Peer::builder(common::SENDER_SERVICE)
        .static_instance(receiver.info())
        .configure(|c| c.window = window)
        .start()
        .await
        .context("starting the loopback sender")?;
    Ok((sender, receiver))
}

/// Sends `count` payloads of `size` bytes with `window` in flight; returns the latencies (µs)
/// and the wall time.
async fn measure(
    peer: &Peer,
    service: &str,
    args: &BenchArgs,
) -> anyhow::Result<(Histogram<u64>, Duration)> {
    // Bounds are constants within hdrhistogram's documented range.
    let mut latencies = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let bar = ProgressBar::new(args.count);
    bar.set_style(ProgressStyle::with_template(
        "{bar:40} {pos}/{len} {per_sec} eta {eta}",
    )?);
    let payload = Bytes::from(vec![b'x'; args.size]);
    let mut pending = FuturesUnordered::new();
    let started = Instant::now();
    for _ in 0..args.count {
        while pending.len() >= args.window.max(1) {
            settle_one(&mut pending, &mut latencies, &bar).await?;
        }
        let sent_at = Instant::now();
        let p = peer
            .enqueue(service, payload.clone(), SendOptions::default())
            .await?;
        pending.push(async move { (p.await, sent_at) });
    }
    while !pending.is_empty() {
        settle_one(&mut pending, &mut latencies, &bar).await?;
    }
    bar.finish_and_clear();
    Ok((latencies, started.elapsed()))
}

/// Waits for one outcome and records its latency; a failed message fails the benchmark.
async fn settle_one<F>(
    pending: &mut FuturesUnordered<F>,
    latencies: &mut Histogram<u64>,
    bar: &ProgressBar,
) -> anyhow::Result<()>
where
    F: std::future::Future<Output = (Result<Bytes, peer_sdk::SendError>, Instant)>,
{
    if let Some((outcome, sent_at)) = pending.next().await {
        outcome.context("a benchmark message failed")?;
        let micros = u64::try_from(sent_at.elapsed().as_micros()).unwrap_or(u64::MAX);
        latencies.saturating_record(micros.max(1));
        bar.inc(1);
    }
    Ok(())
}

/// `N messages of B bytes in T: R msg/s, M MB/s; latency p50 .. p90 .. p99 .. p99.9 .. max ..`
fn summary(h: &Histogram<u64>, elapsed: Duration, size: usize) -> String {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let rate = h.len() as f64 / secs;
    let q = |q: f64| Duration::from_micros(h.value_at_quantile(q));
    format!(
        "{} messages of {size} B in {:.2}s: {rate:.0} msg/s, {:.1} MB/s; acked latency p50 {:?} · p90 {:?} · p99 {:?} · p99.9 {:?} · max {:?}",
        h.len(),
        secs,
        rate * size as f64 / 1e6,
        q(0.5),
        q(0.9),
        q(0.99),
        q(0.999),
        Duration::from_micros(h.max()),
    )
}
