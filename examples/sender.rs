//! The sending half of the two-process example (see `receiver`): looks the service up in a
//! running directory and sends requests to it directly, printing each outcome and latency.
//!
//! ```text
//! cargo run --example sender -- --service echo --count 10
//! cargo run --example sender -- --service echo --count 0 --interval 100ms   # until Ctrl-C
//! ```
//!
//! With ACLs and TLS on the directory: `--token SECRET --ca ca.pem --directory
//! https://node1:7700` (or `DIRECTORY_TOKEN` and `DIRECTORY_CA`, as for the `directory` CLI).

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use clap::Parser;
use peer_sdk::Peer;
use support::DirectoryAccess;
use support::Latencies;

/// Command-line options.
#[derive(Debug, Parser)]
struct Options {
    /// The directory: URLs, token and CA.
    #[command(flatten)]
    access: DirectoryAccess,
    /// Service to send to.
    #[arg(long, env = "PEER_SERVICE", default_value = "echo")]
    service: String,
    /// QUIC listen address: use `0.0.0.0:0` to reach peers on other hosts (a socket bound to
    /// loopback can only send to loopback).
    #[arg(long, env = "PEER_LISTEN", default_value = "127.0.0.1:0")]
    listen: String,
    /// Requests to send; 0 sends until interrupted.
    #[arg(long, env = "PEER_COUNT", default_value_t = 10)]
    count: u64,
    /// Pause between requests.
    #[arg(long, env = "PEER_INTERVAL", default_value = "0s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Print a progress line every this many requests.
    #[arg(long, default_value_t = 1)]
    every: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    support::init_logging("warn");
    let opts = Options::parse();
    let peer = opts
        .access
        .apply(Peer::builder("sender"))?
        .listen(opts.listen.clone())
        .start()
        .await
        .context("starting the peer")?;
    let mut latencies = Latencies::default();
    let (mut acked, mut failed) = (0u64, 0u64);
    let mut seq = 0u64;
    while opts.count == 0 || seq < opts.count {
        seq += 1;
        let start = Instant::now();
        let outcome = tokio::select! {
            _ = directory::shutdown_signal() => break,
            r = peer.request(&opts.service, format!("message {seq}")) => r,
        };
        match outcome {
            Ok(reply) => {
                acked += 1;
                latencies.record(start.elapsed());
                if seq.is_multiple_of(opts.every) {
                    println!(
                        "seq={seq} acked={acked} failed={failed} reply={:?} rtt={:?}",
                        String::from_utf8_lossy(&reply),
                        start.elapsed()
                    );
                }
            }
            Err(e) => {
                failed += 1;
                println!("seq={seq} acked={acked} failed={failed} error={e}");
            }
        }
        if !opts.interval.is_zero() {
            tokio::time::sleep(opts.interval).await;
        }
    }
    println!(
        "sent {seq} · acked {acked} · failed {failed} · {}",
        latencies.summary()
    );
    peer.shutdown().await;
    ensure!(failed == 0, "{failed} requests failed");
    Ok(())
}
