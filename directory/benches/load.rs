//! Load benchmark of the directory over real HTTP, against a bare axum baseline measured in
//! the same run.
//!
//! Run: `cargo bench -p directory --bench load` (release build). Knobs (environment):
//! `BENCH_SECONDS` (measured seconds per workload and server, default 6), `BENCH_CLIENTS`
//! (default 64), `BENCH_PERSIST=1` (instead of the usual workloads: registration PUTs on a
//! directory with `--data-dir` against one without, in the same alternating rounds). Directory and baseline are measured in alternating 2-second rounds, so
//! background load on a shared machine affects both alike.
//!
//! Both servers run as separate processes (the release `directory` binary, and this
//! benchmark re-executed as the baseline server), so each has its own runtime and its RSS can
//! be read from `/proc/<pid>/status`. The load generator is 64 tasks, each with its own
//! keep-alive HTTP/1.1 connection speaking raw HTTP, so client overhead stays small.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::{get, put};
use hdrhistogram::Histogram;
use parking_lot::RwLock;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

#[path = "../tests/process_support/mod.rs"]
mod process_support;

const SERVICES: usize = 100;
const INSTANCES: usize = 10_000;
const RSS_INSTANCES: usize = 100_000;
const ROLE_ENV: &str = "DIRECTORY_BENCH_ROLE";

fn main() -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if std::env::var(ROLE_ENV).as_deref() == Ok("baseline") {
        return rt.block_on(baseline_server());
    }
    rt.block_on(bench())
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn bench() -> Result<()> {
    let seconds = Duration::from_secs(u64::try_from(env_usize("BENCH_SECONDS", 6))?);
    let clients = env_usize("BENCH_CLIENTS", 64);
    println!(
        "directory load benchmark: {clients} clients, {seconds:?} per phase, {INSTANCES} instances over {SERVICES} services"
    );

    if std::env::var("BENCH_PERSIST").as_deref() == Ok("1") {
        return persist_bench(clients, seconds).await;
    }
    let (mut directory, dir_addr) = spawn_directory(&[]).await?;
    let (mut baseline, base_addr) = spawn_baseline().await?;
    let dir_pid = directory.id().context("directory pid")?;
    let base_pid = baseline.id().context("baseline pid")?;

    // Fill both with the same 10,000 instances.
    let filled = fill(&dir_addr, clients, 0..INSTANCES).await?;
    fill_baseline(&dir_addr, &base_addr).await?;
    println!(
        "initial fill: {INSTANCES} registrations in {:.2}s",
        filled.as_secs_f64()
    );

    let lookups = Arc::new(
        (0..SERVICES)
            .map(|s| get_request(&format!("/v1/services/svc-{s:03}")))
            .collect(),
    );
    let instance_path =
        |i: usize| format!("/v1/services/svc-{:03}/instances/i-{i:06}", service_of(i));
    let one_lookups = Arc::new(
        (0..INSTANCES)
            .map(|i| get_request(&instance_path(i)))
            .collect(),
    );
    // Two address variants per instance, cycled: every PUT changes the record.
    let registrations = Arc::new(
        (0..2 * INSTANCES)
            .map(|j| put_request(j % INSTANCES, j / INSTANCES))
            .collect(),
    );

    let addrs = ((dir_addr.as_str(), dir_pid), (base_addr.as_str(), base_pid));
    let (dir_lookup, base_lookup) = compare(addrs, clients, seconds, &lookups).await?;
    let (dir_one, base_one) = compare(addrs, clients, seconds, &one_lookups).await?;
    let (dir_reg, base_reg) = compare(addrs, clients, seconds, &registrations).await?;

    let wrk = wrk_compare(&dir_addr, &base_addr).await?;

    let rss_10k = rss_kib(dir_pid)?;
    let fill_rest = fill(&dir_addr, clients, INSTANCES..RSS_INSTANCES).await?;
    let rss_100k = rss_kib(dir_pid)?;
    // Every service looked up once: the rendered-lookup cache now holds all of them.
    let mut conn = Conn::connect(&dir_addr).await?;
    for s in 0..SERVICES + 900 {
        conn.send(&get_request(&format!("/v1/services/svc-{s:03}")))
            .await?;
    }
    let rss_cached = rss_kib(dir_pid)?;
    let listed = count_instances(&dir_addr).await?;
    if listed != RSS_INSTANCES {
        bail!("expected {RSS_INSTANCES} live instances, the directory lists {listed}");
    }

    println!();
    println!(
        "| workload | directory req/s | baseline req/s | ratio | directory CPU µs/req | baseline CPU µs/req | directory p50 / p99 | baseline p50 / p99 |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |");
    row(
        "service lookup (100 instances, ~30 KB JSON)",
        &dir_lookup,
        &base_lookup,
    );
    row("instance lookup (one record)", &dir_one, &base_one);
    row("registration (PUT, content change)", &dir_reg, &base_reg);
    println!();
    println!(
        "directory RSS: {:.1} MiB at {INSTANCES} instances, {:.1} MiB at {RSS_INSTANCES} instances \
         (filled {} more in {:.2}s); {:.1} MiB once every service's lookup is cached",
        kib_to_mib(rss_10k),
        kib_to_mib(rss_100k),
        RSS_INSTANCES - INSTANCES,
        fill_rest.as_secs_f64(),
        kib_to_mib(rss_cached)
    );

    if let Some((d, b)) = wrk {
        println!(
            "wrk cross-check (1 thread, 64 connections, GET /v1/services/svc-007): directory {d:.0} req/s, \
             baseline {b:.0} req/s, ratio {:.2}",
            d / b
        );
    }

    directory.kill().await.ok();
    baseline.kill().await.ok();
    Ok(())
}

/// If `wrk` is installed, measures one service lookup URL on both servers with it (three
/// alternating 3-second runs each) as a cross-check of the in-repo load generator.
async fn wrk_compare(dir: &str, base: &str) -> Result<Option<(f64, f64)>> {
    let installed = Command::new("wrk")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
    if installed.is_err() {
        return Ok(None);
    }
    let (mut d, mut b) = (0.0, 0.0);
    for _ in 0..3 {
        b += wrk_rate(base).await?;
        d += wrk_rate(dir).await?;
    }
    Ok(Some((d / 3.0, b / 3.0)))
}

async fn wrk_rate(addr: &str) -> Result<f64> {
    let url = format!("http://{addr}/v1/services/svc-007");
    let out = Command::new("wrk")
        .args(["-t", "1", "-c", "64", "-d", "3s", &url])
        .output()
        .await?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("Requests/sec:"))
        .context("wrk output")?;
    Ok(line.trim_start_matches("Requests/sec:").trim().parse()?)
}

#[allow(clippy::cast_precision_loss)] // KiB counts are far below 2^52
fn kib_to_mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Result of one timed phase.
struct Phase {
    /// Requests completed in the measured windows.
    requests: u64,
    elapsed: Duration,
    latency: Histogram<u64>,
    /// Requests completed including warm-ups (for CPU per request).
    all_requests: u64,
    /// Server CPU time (user + system) over the whole rounds.
    cpu: Duration,
}

impl Phase {
    fn empty() -> Result<Self> {
        Ok(Self {
            requests: 0,
            elapsed: Duration::ZERO,
            latency: Histogram::new_with_bounds(1, 60_000_000, 3)?,
            all_requests: 0,
            cpu: Duration::ZERO,
        })
    }

    fn merge(&mut self, other: Phase) -> Result<()> {
        self.requests += other.requests;
        self.elapsed += other.elapsed;
        self.latency.add(other.latency)?;
        self.all_requests += other.all_requests;
        self.cpu += other.cpu;
        Ok(())
    }

    /// Server CPU microseconds per request: robust to other load on a shared machine.
    #[allow(clippy::cast_precision_loss)] // request counts are far below 2^52
    fn cpu_per_request(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.all_requests.max(1) as f64
    }

    #[allow(clippy::cast_precision_loss)] // request counts are far below 2^52
    fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    fn percentiles(&self) -> String {
        let us = |q| self.latency.value_at_quantile(q);
        format!("{} µs / {} µs", us(0.5), us(0.99))
    }
}

fn row(name: &str, dir: &Phase, base: &Phase) {
    println!(
        "| {name} | {:.0} | {:.0} | {:.2} | {:.1} | {:.1} | {} | {} |",
        dir.rate(),
        base.rate(),
        dir.rate() / base.rate(),
        dir.cpu_per_request(),
        base.cpu_per_request(),
        dir.percentiles(),
        base.percentiles()
    );
}

/// Length of one measured round.
const ROUND: Duration = Duration::from_secs(2);

/// A server under test: its address and process id.
type Target<'a> = (&'a str, u32);

/// Measures the directory and the baseline in alternating rounds totalling `total` each.
async fn compare(
    (dir, base): (Target<'_>, Target<'_>),
    clients: usize,
    total: Duration,
    requests: &Arc<Vec<Vec<u8>>>,
) -> Result<(Phase, Phase)> {
    let rounds = (total.as_millis() / ROUND.as_millis()).max(1);
    let (mut d, mut b) = (Phase::empty()?, Phase::empty()?);
    for r in 0..rounds {
        if r % 2 == 0 {
            b.merge(measured_round(base, clients, requests).await?)?;
            d.merge(measured_round(dir, clients, requests).await?)?;
        } else {
            d.merge(measured_round(dir, clients, requests).await?)?;
            b.merge(measured_round(base, clients, requests).await?)?;
        }
    }
    Ok((d, b))
}

async fn measured_round(
    (addr, pid): Target<'_>,
    clients: usize,
    requests: &Arc<Vec<Vec<u8>>>,
) -> Result<Phase> {
    let before = cpu_time(pid)?;
    let mut phase = run_phase(addr, clients, ROUND, requests).await?;
    phase.cpu = cpu_time(pid)?.saturating_sub(before);
    Ok(phase)
}

/// User + system CPU time of a process, from `/proc/<pid>/stat` (in USER_HZ = 100 ticks/s,
/// the value on every mainstream Linux).
fn cpu_time(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after_comm = stat.rsplit_once(')').context("stat format")?.1;
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime) are at 11 and 12 after the comm field.
    let ticks: u64 = fields.get(11).context("utime")?.parse::<u64>()?
        + fields.get(12).context("stime")?.parse::<u64>()?;
    Ok(Duration::from_millis(ticks * 10))
}

/// `clients` connections cycle through `requests` for `duration` (after a warm-up).
async fn run_phase(
    addr: &str,
    clients: usize,
    duration: Duration,
    requests: &Arc<Vec<Vec<u8>>>,
) -> Result<Phase> {
    let warmup = Duration::from_millis(300);
    let start = Instant::now();
    let measure_from = start + warmup;
    let stop = measure_from + duration;
    let mut tasks = Vec::with_capacity(clients);
    for c in 0..clients {
        let addr = addr.to_owned();
        let requests = requests.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::connect(&addr).await?;
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let mut n = 0u64;
            let mut all = 0u64;
            let mut i = c.wrapping_mul(7919);
            loop {
                let request = &requests[i % requests.len()];
                i = i.wrapping_add(clients);
                let sent = Instant::now();
                if sent >= stop {
                    break;
                }
                let status = conn.send(request).await?;
                if !(200..300).contains(&status) {
                    bail!("unexpected status {status}");
                }
                all += 1;
                if sent >= measure_from {
                    n += 1;
                    hist.record(u64::try_from(sent.elapsed().as_micros())?.max(1))?;
                }
            }
            anyhow::Ok((n, all, hist))
        }));
    }
    let mut total = 0;
    let mut all = 0;
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for t in tasks {
        let (n, a, h) = t.await??;
        total += n;
        all += a;
        latency.add(h)?;
    }
    Ok(Phase {
        requests: total,
        elapsed: duration,
        latency,
        all_requests: all,
        cpu: Duration::ZERO,
    })
}

/// Registers instances `range` with `clients` connections; returns the time taken.
async fn fill(addr: &str, clients: usize, range: std::ops::Range<usize>) -> Result<Duration> {
    let start = Instant::now();
    let keys: Arc<Vec<usize>> = Arc::new(range.collect());
    let mut tasks = Vec::new();
    for c in 0..clients {
        let addr = addr.to_owned();
        let keys = keys.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::connect(&addr).await?;
            for &k in keys.iter().skip(c).step_by(clients) {
                let status = conn.send(&put_request(k, 0)).await?;
                if status != 200 {
                    bail!("registration failed with {status}");
                }
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(start.elapsed())
}

/// Copies the directory's rendered service lookups into the baseline's map, so both serve
/// identical bytes.
async fn fill_baseline(dir: &str, base: &str) -> Result<()> {
    let mut from = Conn::connect(dir).await?;
    let mut to = Conn::connect(base).await?;
    for s in 0..SERVICES {
        from.send(&get_request(&format!("/v1/services/svc-{s:03}")))
            .await?;
        let body = from.body.clone();
        let head = format!(
            "PUT /load/svc-{s:03} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        let mut req = head.into_bytes();
        req.extend_from_slice(&body);
        to.send(&req).await?;
    }
    for i in 0..INSTANCES {
        let path = format!("/v1/services/svc-{:03}/instances/i-{i:06}", i % SERVICES);
        from.send(&get_request(&path)).await?;
        let body = from.body.clone();
        let head = format!(
            "PUT /load-one/svc-{:03}/i-{i:06} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
            i % SERVICES,
            body.len()
        );
        let mut req = head.into_bytes();
        req.extend_from_slice(&body);
        to.send(&req).await?;
    }
    Ok(())
}

async fn count_instances(addr: &str) -> Result<usize> {
    let mut conn = Conn::connect(addr).await?;
    conn.send(&get_request("/v1/services")).await?;
    let v: serde_json::Value = serde_json::from_slice(&conn.body)?;
    Ok(v["services"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|s| s["instances"].as_u64())
                .sum::<u64>()
        })
        .map_or(0, |n| usize::try_from(n).unwrap_or(0)))
}

/// Service of instance `k`: the first 10,000 spread over 100 services, the rest over 900 more
/// (about 100 instances per service throughout).
fn service_of(k: usize) -> usize {
    if k < INSTANCES {
        k % SERVICES
    } else {
        SERVICES + k % 900
    }
}

fn get_request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nhost: bench\r\n\r\n").into_bytes()
}

/// A registration of instance `k`; `variant` changes the address so repeated PUTs are updates.
fn put_request(k: usize, variant: usize) -> Vec<u8> {
    let body = format!(
        r#"{{"address":"10.{}.{}.{}:{}","tags":["v1","bench"],"meta":{{"zone":"z{}"}},"ttl":"1h"}}"#,
        (k >> 16) & 0xff,
        (k >> 8) & 0xff,
        k & 0xff,
        7000 + variant % 1000,
        k % 4
    );
    format!(
        "PUT /v1/services/svc-{:03}/instances/i-{k:06} HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        service_of(k),
        body.len()
    )
    .into_bytes()
}

/// One keep-alive HTTP/1.1 connection speaking just enough HTTP for the benchmark.
struct Conn {
    stream: BufReader<TcpStream>,
    line: Vec<u8>,
    body: Vec<u8>,
}

impl Conn {
    async fn connect(addr: &str) -> Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream: BufReader::with_capacity(64 * 1024, stream),
            line: Vec::with_capacity(256),
            body: Vec::with_capacity(64 * 1024),
        })
    }

    /// Sends a request and reads the whole response; returns the status.
    async fn send(&mut self, request: &[u8]) -> Result<u16> {
        self.stream.get_mut().write_all(request).await?;
        self.line.clear();
        self.stream.read_until(b'\n', &mut self.line).await?;
        let status: u16 =
            std::str::from_utf8(self.line.get(9..12).context("short status line")?)?.parse()?;
        let mut length = 0usize;
        loop {
            self.line.clear();
            if self.stream.read_until(b'\n', &mut self.line).await? == 0 {
                bail!("connection closed");
            }
            if self.line == b"\r\n" {
                break;
            }
            let header = std::str::from_utf8(&self.line)?;
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse()?;
            }
        }
        self.body.resize(length, 0);
        self.stream.read_exact(&mut self.body).await?;
        Ok(status)
    }
}

/// Registration PUTs (every one a content change) on a directory persisting to a data
/// directory (group commit, one fsync per batch) against an in-memory one.
async fn persist_bench(clients: usize, seconds: Duration) -> Result<()> {
    let data = tempfile::tempdir()?;
    let data_dir = data.path().to_str().context("data dir path")?;
    let (mut memory, memory_addr) = spawn_directory(&[]).await?;
    let (mut persisted, persisted_addr) = spawn_directory(&["--data-dir", data_dir]).await?;
    fill(&memory_addr, clients, 0..INSTANCES).await?;
    fill(&persisted_addr, clients, 0..INSTANCES).await?;
    let registrations = Arc::new(
        (0..2 * INSTANCES)
            .map(|j| put_request(j % INSTANCES, j / INSTANCES))
            .collect(),
    );
    let memory_pid = memory.id().context("pid")?;
    let persisted_pid = persisted.id().context("pid")?;
    let targets = (
        (persisted_addr.as_str(), persisted_pid),
        (memory_addr.as_str(), memory_pid),
    );
    let (with, without) = compare(targets, clients, seconds, &registrations).await?;
    println!(
        "| workload | --data-dir req/s | in-memory req/s | ratio | --data-dir CPU µs/req | in-memory CPU µs/req | --data-dir p50 / p99 | in-memory p50 / p99 |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |");
    row("registration (PUT, content change)", &with, &without);
    memory.kill().await.ok();
    persisted.kill().await.ok();
    Ok(())
}

async fn spawn_directory(extra: &[&str]) -> Result<(Child, String)> {
    let mut cmd = process_support::serve_command(&["--max-instances", "1000000"]);
    cmd.args(extra);
    cmd.stderr(Stdio::inherit());
    let (child, mut addrs) =
        process_support::spawn_logging(cmd, &["http_addr"], Duration::from_secs(30)).await?;
    Ok((child, addrs.pop().context("http_addr logged")?))
}

async fn spawn_baseline() -> Result<(Child, String)> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.env(ROLE_ENV, "baseline");
    let (child, first) = spawn_and_read_first_line(cmd).await?;
    let addr = first
        .strip_prefix("listening ")
        .context("baseline address")?
        .to_owned();
    Ok((child, addr))
}

async fn spawn_and_read_first_line(mut cmd: Command) -> Result<(Child, String)> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await??
        .context("no output")?;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, first))
}

fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("VmRSS")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("VmRSS value")?
        .parse()?)
}

/// The baseline: a bare axum server reading pre-rendered JSON from an in-memory map, and
/// storing PUT bodies (parsed as JSON) in one.
type Map = Arc<RwLock<HashMap<String, Bytes>>>;

async fn baseline_server() -> Result<()> {
    let map: Map = Arc::default();
    let app = Router::new()
        .route("/v1/services/{service}", get(base_lookup))
        .route(
            "/v1/services/{service}/instances/{instance}",
            get(base_one).put(base_put),
        )
        .route("/load/{service}", put(base_load))
        .route("/load-one/{service}/{instance}", put(base_load_one))
        .with_state(map);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening {}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

fn json(body: Option<Bytes>) -> axum::response::Response {
    match body {
        Some(b) => ([(CONTENT_TYPE, "application/json")], b).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn base_lookup(
    State(map): State<Map>,
    Path(service): Path<String>,
) -> axum::response::Response {
    json(map.read().get(&service).cloned())
}

async fn base_one(
    State(map): State<Map>,
    Path((s, i)): Path<(String, String)>,
) -> axum::response::Response {
    json(map.read().get(&format!("{s}/{i}")).cloned())
}

async fn base_put(
    State(map): State<Map>,
    Path((s, i)): Path<(String, String)>,
    body: Bytes,
) -> axum::response::Response {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let rendered = Bytes::from(value.to_string());
    map.write().insert(format!("{s}/{i}"), rendered.clone());
    json(Some(rendered))
}

async fn base_load(State(map): State<Map>, Path(service): Path<String>, body: Bytes) -> StatusCode {
    map.write().insert(service, body);
    StatusCode::OK
}

async fn base_load_one(
    State(map): State<Map>,
    Path((s, i)): Path<(String, String)>,
    body: Bytes,
) -> StatusCode {
    map.write().insert(format!("{s}/{i}"), body);
    StatusCode::OK
}
