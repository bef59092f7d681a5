//! Real processes for the end-to-end tests of the `peer` tool: the `directory` binary and
//! the `peer` binary, each killed on drop, every wait bounded.
#![allow(dead_code)] // each test target uses a different subset

use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// The `peer` binary cargo built for this test target.
pub const PEER: &str = env!("CARGO_BIN_EXE_peer");

/// How long a process may take to say it is ready.
const STARTUP_LIMIT: Duration = Duration::from_secs(30);

/// The `directory` binary beside `peer` in the same target directory; built with cargo if
/// this test run did not build it (only `cargo test -p peer-sdk` skips it).
pub fn directory_bin() -> Result<PathBuf> {
    let peer = Path::new(PEER);
    let dir = peer.parent().context("the peer binary has a directory")?;
    let bin = dir.join(format!("directory{}", std::env::consts::EXE_SUFFIX));
    if bin.exists() {
        return Ok(bin);
    }
    let mut cargo = std::process::Command::new(env!("CARGO"));
    cargo.args(["build", "-p", "directory", "--bin", "directory"]);
    if dir.ends_with("release") {
        cargo.arg("--release");
    }
    let status = cargo
        .status()
        .context("running cargo build for the directory")?;
    if !status.success() || !bin.exists() {
        bail!("could not build the directory binary ({status})");
    }
    Ok(bin)
}

/// A running `directory serve` on an ephemeral loopback port.
pub struct Directory {
    _child: Child,
    /// Its base URL.
    pub url: String,
}

impl Directory {
    /// Starts one node and waits for it to log its HTTP address.
    pub async fn start() -> Result<Self> {
        Self::start_with(&[]).await
    }

    /// Starts one node with `extra` flags of `directory serve`.
    pub async fn start_with(extra: &[&str]) -> Result<Self> {
        let mut cmd = Command::new(directory_bin()?);
        cmd.args([
            "serve",
            "--http-addr",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ])
        .args(extra)
        .env_remove("DIRECTORY_HTTP_ADDR")
        .env_remove("DIRECTORY_JOIN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
        let mut child = cmd.spawn()?;
        let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
        let deadline = Instant::now() + STARTUP_LIMIT;
        let addr = loop {
            let line = tokio::time::timeout_at(deadline, lines.next_line())
                .await
                .context("the directory logged no address in time")??
                .context("the directory exited at start")?;
            let log: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            if let Some(a) = log["fields"]["http_addr"].as_str() {
                break a.to_owned();
            }
        };
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            _child: child,
            url: format!("http://{addr}"),
        })
    }
}

/// `peer ARGS` against `directory`, with no inherited `PEER_*` settings.
pub fn peer_command(directory: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(PEER);
    cmd.args(args)
        .env("PEER_DIRECTORY", directory)
        .env("RUST_LOG", "warn")
        .env_remove("PEER_LISTEN")
        .env_remove("PEER_INSTANCE")
        .env_remove("PEER_STORE")
        .env_remove("DIRECTORY_TOKEN")
        .env_remove("DIRECTORY_CA")
        .kill_on_drop(true);
    cmd
}

/// What a finished `peer` command printed.
#[derive(Debug)]
pub struct Finished {
    /// Exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Finished {
    /// Standard output parsed as JSON lines.
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

/// Runs `peer ARGS` to completion within `limit` (killed past it), feeding `stdin`.
pub async fn run_peer(
    directory: &str,
    args: &[&str],
    stdin: Option<&str>,
    limit: Duration,
) -> Result<Finished> {
    let mut cmd = peer_command(directory, args);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    let mut input = child.stdin.take().context("stdin")?;
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).await?;
    }
    drop(input);
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .with_context(|| format!("peer {args:?} did not finish within {limit:?}"))??;
    Ok(Finished {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// A `peer listen` process (killed on drop) that has registered.
pub struct Listener {
    /// The process.
    pub child: Child,
    /// Its instance name.
    pub instance: String,
}

impl Listener {
    /// Starts `peer listen SERVICE --log LOG EXTRA...` and waits for its "listening:" line.
    pub async fn start(directory: &str, service: &str, log: &Path, extra: &[&str]) -> Result<Self> {
        let log = log.to_string_lossy().into_owned();
        let mut args = vec!["listen", service, "--log", &log];
        args.extend_from_slice(extra);
        Self::spawn(directory, &args).await
    }

    /// Starts `peer subscribe PATTERN --log LOG EXTRA...` and waits for its "listening:" line.
    pub async fn subscribe(
        directory: &str,
        pattern: &str,
        log: &Path,
        extra: &[&str],
    ) -> Result<Self> {
        let log = log.to_string_lossy().into_owned();
        let mut args = vec!["subscribe", pattern, "--log", &log];
        args.extend_from_slice(extra);
        Self::spawn(directory, &args).await
    }

    async fn spawn(directory: &str, args: &[&str]) -> Result<Self> {
        let mut cmd = peer_command(directory, args);
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn()?;
        let mut lines = BufReader::new(child.stderr.take().context("stderr")?).lines();
        let deadline = Instant::now() + STARTUP_LIMIT;
        let instance = loop {
            let line = tokio::time::timeout_at(deadline, lines.next_line())
                .await
                .context("peer listen did not start in time")??
                .context("peer listen exited at start")?;
            if let Some(rest) = line.strip_prefix("listening: ") {
                let instance = rest
                    .split(' ')
                    .find_map(|kv| kv.strip_prefix("instance="))
                    .context("the listening line names the instance")?;
                break instance.to_owned();
            }
        };
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self { child, instance })
    }

    /// SIGKILL, and wait (bounded) until the process is gone.
    pub async fn kill(mut self) -> Result<()> {
        kill_now(&mut self.child).await
    }

    /// SIGTERM (graceful: deregisters), and wait (bounded) for the exit.
    pub async fn stop(mut self) -> Result<()> {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        match tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await {
            Ok(status) => status.map(drop).map_err(Into::into),
            Err(_) => kill_now(&mut self.child).await,
        }
    }
}

/// SIGKILLs `child` and waits (bounded) until it is gone.
pub async fn kill_now(child: &mut Child) -> Result<()> {
    child.start_kill()?;
    tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .context("a killed process did not exit")??;
    Ok(())
}

/// Every JSON line of a delivery log (a missing file is an empty log).
pub fn read_log(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// `(seq, key)` of a delivery line whose payload is a generated `{"seq":N,"key":"kM"}`.
pub fn seq_and_key(line: &Value) -> Option<(u64, String)> {
    let payload: Value = serde_json::from_str(line["payload"].as_str()?).ok()?;
    Some((
        payload["seq"].as_u64()?,
        payload["key"].as_str()?.to_owned(),
    ))
}

/// Checks that, per key, the first deliveries of each seq come in increasing seq order and
/// that the line's ordering key is the payload's key. Returns the seqs per key.
pub fn check_key_order(lines: &[Value]) -> Result<BTreeMap<String, Vec<u64>>> {
    let mut per_key: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut seen = std::collections::HashSet::new();
    for line in lines {
        let (seq, key) = seq_and_key(line).context("a generated payload")?;
        if line["key"].as_str() != Some(key.as_str()) {
            bail!("seq {seq}: ordering key {} is not {key}", line["key"]);
        }
        if !seen.insert(seq) {
            continue;
        }
        let order = per_key.entry(key.clone()).or_default();
        if let Some(last) = order.last()
            && *last > seq
        {
            bail!("key {key}: seq {seq} delivered after {last}");
        }
        order.push(seq);
    }
    Ok(per_key)
}

/// How many times each seq reached a handler.
pub fn runs_per_seq(lines: &[Value]) -> BTreeMap<u64, usize> {
    let mut runs = BTreeMap::new();
    for line in lines {
        if let Some((seq, _)) = seq_and_key(line) {
            *runs.entry(seq).or_default() += 1;
        }
    }
    runs
}

/// Polls `cond` every 50 ms until it holds or `limit` passes.
pub async fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cond()
}
