//! SDK benchmarks against a raw quinn baseline measured in the same run.
//!
//! Run: `cargo bench -p peer-sdk --bench sdk` (release profile). Set `SDK_BENCH_QUICK=1`
//! for a shorter run. Prints one line per figure; docs/benchmarks.md records them.

use bytes::Bytes;
use hdrhistogram::Histogram;
use peer_sdk::{Identity, Peer, SendOptions};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn quick() -> bool {
    std::env::var_os("SDK_BENCH_QUICK").is_some()
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).unwrap()
}

fn us(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

async fn peer(service: &str, statics: &[peer_sdk::InstanceInfo], window: usize) -> Peer {
    let mut b = Peer::builder(service).configure(|c| c.window = window);
    for s in statics {
        b = b.static_instance(s.clone());
    }
    b.start().await.unwrap()
}

fn serve_ack(p: &Peer) {
    let mut inbox = p.incoming();
    tokio::spawn(async move {
        while let Some(m) = inbox.next().await {
            m.ack();
        }
    });
}

/// Raw quinn: one long-lived bidirectional stream, fixed-size messages, 8-byte acks.
struct Raw {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    _client: quinn::Endpoint,
    _server: quinn::Endpoint,
}

async fn raw_pair(msg_size: usize) -> Raw {
    let server_id = Identity::generate().unwrap();
    let client_id = Identity::generate().unwrap();
    let server_tls = peer_sdk::tls::server_config(&server_id).unwrap();
    let client_tls = peer_sdk::tls::client_config(&client_id).unwrap();
    let server_cfg = quinn::ServerConfig::with_crypto(Arc::new(
        quinn::crypto::rustls::QuicServerConfig::try_from(server_tls).unwrap(),
    ));
    let server = quinn::Endpoint::server(server_cfg, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = server.local_addr().unwrap();
    let s2 = server.clone();
    tokio::spawn(async move {
        let conn = s2.accept().await.unwrap().await.unwrap();
        let (mut send, mut recv) = conn.accept_bi().await.unwrap();
        let mut buf = vec![0u8; msg_size * 64];
        let mut pending = 0usize;
        loop {
            let n = match recv.read(&mut buf).await {
                Ok(Some(n)) => n,
                _ => return,
            };
            pending += n;
            let acks = pending / msg_size;
            pending %= msg_size;
            if acks > 0 && send.write_all(&vec![1u8; 8 * acks]).await.is_err() {
                return;
            }
        }
    });
    let mut client = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    client.set_default_client_config(quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(client_tls).unwrap(),
    )));
    let conn = client
        .connect(addr, &server_id.fingerprint().server_name())
        .unwrap()
        .await
        .unwrap();
    let (send, recv) = conn.open_bi().await.unwrap();
    Raw {
        send,
        recv,
        _client: client,
        _server: server,
    }
}

async fn raw_latency(iters: usize) -> Histogram<u64> {
    let mut raw = raw_pair(64).await;
    let msg = [7u8; 64];
    let mut ack = [0u8; 8];
    let mut h = hist();
    for i in 0..iters + 1000 {
        let t = Instant::now();
        raw.send.write_all(&msg).await.unwrap();
        raw.recv.read_exact(&mut ack).await.unwrap();
        if i >= 1000 {
            h.saturating_record(t.elapsed().as_nanos() as u64);
        }
    }
    h
}

async fn raw_throughput(total: usize, window: usize) -> f64 {
    let raw = raw_pair(100).await;
    let Raw {
        mut send,
        mut recv,
        _client,
        _server,
    } = raw;
    let inflight = Arc::new(tokio::sync::Semaphore::new(window));
    let sem = inflight.clone();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut bytes = 0usize;
        while bytes < total * 8 {
            let n = recv.read(&mut buf).await.unwrap().unwrap();
            let before = bytes / 8;
            bytes += n;
            sem.add_permits(bytes / 8 - before);
        }
    });
    let msg = Bytes::from(vec![3u8; 100]);
    let t = Instant::now();
    let mut sent = 0;
    while sent < total {
        let permit = inflight.acquire().await.unwrap();
        let n = inflight.available_permits() + 1;
        permit.forget();
        let batch = n.min(total - sent);
        if batch > 1 {
            inflight
                .acquire_many(batch as u32 - 1)
                .await
                .unwrap()
                .forget();
        }
        let mut chunks: Vec<Bytes> = (0..batch).map(|_| msg.clone()).collect();
        send.write_all_chunks(&mut chunks).await.unwrap();
        sent += batch;
    }
    reader.await.unwrap();
    total as f64 / t.elapsed().as_secs_f64()
}

async fn sdk_latency(iters: usize) -> Histogram<u64> {
    let b = peer("bench-rx", &[], 256).await;
    serve_ack(&b);
    let a = peer("bench-tx", &[b.info()], 256).await;
    let payload = Bytes::from(vec![7u8; 64]);
    let mut h = hist();
    for i in 0..iters + 1000 {
        let t = Instant::now();
        a.send("bench-rx", payload.clone()).await.unwrap();
        if i >= 1000 {
            h.saturating_record(t.elapsed().as_nanos() as u64);
        }
    }
    a.shutdown().await;
    b.shutdown().await;
    h
}

/// Keeps up to `window` messages in flight from one task: enqueue, and once the window is
/// full await the oldest (how an application pipelines sends).
async fn pipeline(
    a: &Peer,
    service: &str,
    total: usize,
    window: usize,
    mut probe: impl FnMut(&Peer),
) {
    let payload = Bytes::from(vec![3u8; 100]);
    let mut pending = std::collections::VecDeque::with_capacity(window);
    for _ in 0..total {
        if pending.len() >= window {
            let p: peer_sdk::Pending = pending.pop_front().unwrap();
            p.await.unwrap();
        }
        pending.push_back(
            a.enqueue(service, payload.clone(), SendOptions::default())
                .await
                .unwrap(),
        );
        probe(a);
    }
    for p in pending {
        p.await.unwrap();
    }
}

async fn sdk_throughput(total: usize, window: usize) -> f64 {
    let b = peer("bench-rx", &[], window).await;
    serve_ack(&b);
    let a = peer("bench-tx", &[b.info()], window).await;
    a.send("bench-rx", &b"warm-up"[..]).await.unwrap();
    let t = Instant::now();
    pipeline(&a, "bench-rx", total, window, |_| {}).await;
    let rate = total as f64 / t.elapsed().as_secs_f64();
    a.shutdown().await;
    b.shutdown().await;
    rate
}

async fn first_message(count: usize) -> Histogram<u64> {
    let mut receivers = Vec::new();
    for i in 0..count {
        let r = peer(&format!("fresh-{i}"), &[], 64).await;
        serve_ack(&r);
        receivers.push(r);
    }
    let infos: Vec<_> = receivers.iter().map(|r| r.info()).collect();
    let a = peer("first", &infos, 64).await;
    let mut h = hist();
    for i in 0..count {
        let t = Instant::now();
        a.send(&format!("fresh-{i}"), &b"hello"[..]).await.unwrap();
        h.saturating_record(t.elapsed().as_nanos() as u64);
    }
    a.shutdown().await;
    for r in receivers {
        r.shutdown().await;
    }
    h
}

fn rss_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// 1,000,000 messages through a receiver that handles in slow batches; the sender never
/// holds more than the window.
async fn slow_receiver(total: usize, window: usize) -> (usize, u64, u64, f64) {
    let b = peer("slow-rx", &[], window).await;
    let mut inbox = b.incoming();
    tokio::spawn(async move {
        let mut n = 0u64;
        while let Some(m) = inbox.next().await {
            n += 1;
            if n.is_multiple_of(1000) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            m.ack();
        }
    });
    let a = peer("fast-tx", &[b.info()], window).await;
    let rss_before = rss_kib("VmRSS:");
    let mut max_in_flight = 0;
    let mut peak_rss = rss_before;
    let mut n = 0usize;
    let t = Instant::now();
    // The application keeps 4x the window of un-awaited futures; the SDK holds at most the
    // window in flight, and `enqueue` waits for room.
    pipeline(&a, "slow-rx", total, window * 4, |a| {
        max_in_flight = max_in_flight.max(a.in_flight("slow-rx"));
        n += 1;
        if n.is_multiple_of(50_000) {
            peak_rss = peak_rss.max(rss_kib("VmRSS:"));
        }
    })
    .await;
    let rate = total as f64 / t.elapsed().as_secs_f64();
    a.shutdown().await;
    b.shutdown().await;
    (max_in_flight, rss_before, peak_rss, rate)
}

fn main() {
    for flavour in ["current_thread", "multi_thread(2)"] {
        let rt = if flavour == "current_thread" {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
        } else {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap()
        };
        let only = std::env::var("SDK_BENCH_PROFILE").unwrap_or_default();
        if !only.is_empty() && !flavour.starts_with(only.as_str()) {
            continue;
        }
        println!("== tokio runtime: {flavour}");
        rt.block_on(run());
    }
}

async fn run() {
    if std::env::var_os("SDK_BENCH_PROFILE").is_some() {
        let sdk = sdk_throughput(1_000_000, 256).await;
        println!("profile run: sdk {sdk:.0}/s");
        return;
    }
    {
        let (lat_iters, tput_total) = if quick() {
            (5_000, 100_000)
        } else {
            (50_000, 1_000_000)
        };
        let raw = raw_latency(lat_iters).await;
        let sdk = sdk_latency(lat_iters).await;
        println!(
            "latency 64B sequential: raw quinn p50 {:.1} us p99 {:.1} us | sdk send+ack p50 {:.1} us p99 {:.1} us | p50 ratio {:.2}x",
            us(&raw, 0.5),
            us(&raw, 0.99),
            us(&sdk, 0.5),
            us(&sdk, 0.99),
            us(&sdk, 0.5) / us(&raw, 0.5)
        );
        for window in [64, 256, 1024] {
            let raw = raw_throughput(tput_total, window).await;
            let sdk = sdk_throughput(tput_total, window).await;
            println!(
                "throughput 100B acked, window {window}: raw quinn {raw:.0}/s | sdk {sdk:.0}/s | ratio {:.2}",
                sdk / raw
            );
        }
        let first = first_message(if quick() { 20 } else { 100 }).await;
        println!(
            "first message to a never-contacted peer (handshake incl.): p50 {:.0} us p99 {:.0} us max {:.0} us",
            us(&first, 0.5),
            us(&first, 0.99),
            us(&first, 1.0)
        );
        let total = if quick() { 200_000 } else { 1_000_000 };
        let (max_out, before, peak, rate) = slow_receiver(total, 256).await;
        println!(
            "slow receiver, {total} msgs, window 256: max in flight {max_out}, RSS before {} MiB peak {} MiB, {rate:.0}/s",
            before / 1024,
            peak / 1024
        );
    }
}
