//! Spawning real `directory` processes on loopback. Shared by `tests/cluster_process.rs` and
//! the `cluster_processes` and `load` benches (which include this file with `#[path]`).
#![allow(dead_code)] // each target uses a different subset

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// The `directory` binary cargo built for this target.
pub const BIN: &str = env!("CARGO_BIN_EXE_directory");

/// How long a node may take to log its listening addresses.
const STARTUP_LIMIT: Duration = Duration::from_secs(20);

/// A running cluster node: the process (killed on drop) and the addresses it logged.
pub struct NodeProcess {
    /// The `--node-name` it was started with.
    pub name: String,
    /// The process.
    pub child: Child,
    /// Base URL of its HTTP API (`http://host:port`).
    pub http: String,
    /// Its gossip address (`host:port`).
    pub gossip: String,
}

/// How long a one-shot subcommand (`keygen`, `members`, a refused `serve`) may run.
pub const ONE_SHOT_LIMIT: Duration = Duration::from_secs(30);

/// Runs `cmd` to completion within `limit`, killing it if it runs longer: a regression that
/// made `serve` accept bad arguments fails the test instead of hanging the run.
pub async fn output_within(cmd: &mut Command, limit: Duration) -> Result<std::process::Output> {
    let run = cmd.kill_on_drop(true).output();
    tokio::time::timeout(limit, run)
        .await
        .with_context(|| format!("{cmd:?} still running after {limit:?}"))?
        .context("spawn")
}

/// `directory serve` on `127.0.0.1:0` with JSON logs and `extra` arguments appended; no
/// inherited `DIRECTORY_HTTP_ADDR` / `DIRECTORY_JOIN` can change what the caller asked for.
pub fn serve_command(extra: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "serve",
        "--http-addr",
        "127.0.0.1:0",
        "--log-format",
        "json",
    ])
    .args(extra)
    .env_remove("DIRECTORY_HTTP_ADDR")
    .env_remove("DIRECTORY_JOIN");
    cmd
}

/// Spawns `cmd` (stdout piped, killed on drop) and reads its JSON log lines until each of
/// `fields` (keys of a line's `fields` object) has been logged, within `limit`. Returns the
/// child and the values in the order of `fields`; stdout keeps being drained afterwards.
pub async fn spawn_logging(
    mut cmd: Command,
    fields: &[&str],
    limit: Duration,
) -> Result<(Child, Vec<String>)> {
    let mut child = cmd.stdout(Stdio::piped()).kill_on_drop(true).spawn()?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let mut values: Vec<Option<String>> = vec![None; fields.len()];
    let deadline = Instant::now() + limit;
    while values.iter().any(Option::is_none) {
        let line = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .with_context(|| format!("no {fields:?} logged within {limit:?}"))??
            .context("the process exited before logging its addresses")?;
        let Ok(log) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        for (field, value) in fields.iter().zip(&mut values) {
            if let Some(v) = log["fields"][field].as_str() {
                *value = Some(v.to_owned());
            }
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, values.into_iter().flatten().collect()))
}

/// Starts a cluster node named `name` gossiping on `gossip_addr` with the cluster key `key`
/// (passed through the environment, as an operator would), optionally joining `join`, and
/// waits for it to log its HTTP and gossip addresses.
pub async fn spawn_node(
    name: &str,
    gossip_addr: &str,
    key: &str,
    join: Option<&str>,
) -> Result<NodeProcess> {
    spawn_node_with(name, gossip_addr, key, join, &[]).await
}

/// [`spawn_node`] with `extra` arguments for `serve` (e.g. `--data-dir DIR`).
pub async fn spawn_node_with(
    name: &str,
    gossip_addr: &str,
    key: &str,
    join: Option<&str>,
    extra: &[&str],
) -> Result<NodeProcess> {
    let mut cmd = serve_command(&[
        "--log-filter",
        "warn,directory=info",
        "--node-name",
        name,
        "--gossip-addr",
        gossip_addr,
    ]);
    cmd.args(extra)
        .env("DIRECTORY_CLUSTER_KEY", key)
        .stderr(Stdio::null());
    if let Some(seed) = join {
        cmd.args(["--join", seed]);
    }
    let (child, addrs) = spawn_logging(cmd, &["http_addr", "gossip_addr"], STARTUP_LIMIT).await?;
    let [http, gossip] = <[String; 2]>::try_from(addrs)
        .map_err(|_| anyhow::anyhow!("spawn_logging returns one value per field"))?;
    Ok(NodeProcess {
        name: name.to_owned(),
        child,
        http: format!("http://{http}"),
        gossip,
    })
}

/// GET `url` as JSON; `Null` if the node is down or the body is not JSON.
pub async fn get_json(client: &reqwest::Client, url: &str) -> Value {
    match client.get(url).send().await {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

/// The state (`alive`, `suspect`, ...) of member `name` in a `/v1/cluster/members` body.
pub fn member_state(members: &Value, name: &str) -> Option<String> {
    members["members"]
        .as_array()?
        .iter()
        .find(|m| m["name"] == name)?["state"]
        .as_str()
        .map(str::to_owned)
}

/// The log lines a process printed so far (shared with the task draining its stdout).
pub type LogLines = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// Like [`spawn_logging`] but keeps every stdout line (the ones read before the fields were
/// found too) for the test to search, e.g. for audit lines.
pub async fn spawn_capturing(
    mut cmd: Command,
    fields: &[&str],
    limit: Duration,
) -> Result<(Child, Vec<String>, LogLines)> {
    let mut child = cmd.stdout(Stdio::piped()).kill_on_drop(true).spawn()?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let log = LogLines::default();
    let (found_tx, mut found_rx) = tokio::sync::mpsc::unbounded_channel();
    let sink = log.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = found_tx.send(line.clone());
            sink.lock().map(|mut l| l.push(line)).ok();
        }
    });
    let mut values: Vec<Option<String>> = vec![None; fields.len()];
    let deadline = Instant::now() + limit;
    while values.iter().any(Option::is_none) {
        let line = tokio::time::timeout_at(deadline, found_rx.recv())
            .await
            .with_context(|| format!("no {fields:?} logged within {limit:?}"))?
            .context("the process exited before logging its addresses")?;
        let Ok(log) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        for (field, value) in fields.iter().zip(&mut values) {
            if let Some(v) = log["fields"][field].as_str() {
                *value = Some(v.to_owned());
            }
        }
    }
    Ok((child, values.into_iter().flatten().collect(), log))
}

/// Waits up to `limit` for a log line containing every one of `needles`; returns it.
pub async fn wait_for_log(log: &LogLines, needles: &[&str], limit: Duration) -> Result<String> {
    let deadline = Instant::now() + limit;
    loop {
        let found = log
            .lock()
            .map_err(|_| anyhow::anyhow!("log lock poisoned"))?
            .iter()
            .find(|l| needles.iter().all(|n| l.contains(n)))
            .cloned();
        if let Some(line) = found {
            return Ok(line);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no log line with {needles:?} within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends `signal` (e.g. `HUP`) to the process, through `kill(1)`.
pub async fn send_signal(child: &Child, signal: &str) -> Result<()> {
    let pid = child.id().context("the process has exited")?;
    let status = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .await?;
    anyhow::ensure!(status.success(), "kill -{signal} {pid} failed");
    Ok(())
}
