//! Store-and-forward with real processes and SIGKILL: the `directory` binary, `peer listen`
//! and `peer send` with stores. Random kill points come from a seed printed at the start
//! (set `PEER_CLI_SEED` to replay one). The fast variants run by default; the long ones
//! (`--ignored`) use 100,000 messages and a 60 s receiver absence.

mod process;

use anyhow::{Context, Result, ensure};
use process::{
    Directory, Listener, check_key_order, kill_now, peer_command, read_log, run_peer, runs_per_seq,
};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Child;

const KEYS: &str = "8";
const LONG_DEADLINE: &str = "30m";

fn rng() -> StdRng {
    let seed = std::env::var("PEER_CLI_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("PEER_CLI_SEED={seed}");
    StdRng::seed_from_u64(seed)
}

/// `peer send SERVICE --store STORE --keys 8 --deadline 30m --count N --first-seq F` in
/// the background (`count` `None`: resume only).
fn spawn_sender(dir: &Directory, service: &str, store: &Path, count: Option<u64>) -> Result<Child> {
    spawn_sender_from(dir, service, store, count, 1)
}

fn spawn_sender_from(
    dir: &Directory,
    service: &str,
    store: &Path,
    count: Option<u64>,
    first: u64,
) -> Result<Child> {
    let store = store.to_string_lossy().into_owned();
    let count = count.map(|n| n.to_string());
    let mut args = vec![
        "send",
        service,
        "--store",
        &store,
        "--keys",
        KEYS,
        "--deadline",
        LONG_DEADLINE,
    ];
    let first = first.to_string();
    match &count {
        Some(n) => args.extend(["--count", n, "--first-seq", &first]),
        None => args.extend(["--count", "0"]),
    }
    let mut cmd = peer_command(&dir.url, &args);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Ok(cmd.spawn()?)
}

/// Waits (bounded) for a background `peer` to exit; returns its code.
async fn exit_code(child: &mut Child, limit: Duration) -> Result<Option<i32>> {
    let status = tokio::time::timeout(limit, child.wait())
        .await
        .with_context(|| format!("the process did not finish within {limit:?}"))??;
    Ok(status.code())
}

/// Seqs held in the outbox of a stopped peer's store.
async fn outbox_seqs(dir: &Directory, store: &Path) -> Result<BTreeSet<u64>> {
    let store = store.to_string_lossy().into_owned();
    let out = run_peer(
        &dir.url,
        &["outbox", "list", "--store", &store],
        None,
        Duration::from_secs(60),
    )
    .await?;
    ensure!(out.code == Some(0), "{out:?}");
    Ok(out
        .json_lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l["payload"].as_str()?).ok())
        .filter_map(|p| p["seq"].as_u64())
        .collect())
}

/// Every seq of `accepted` reached a handler exactly once and nothing else did, in order
/// per key; and within each sender run (`phases`: first seq and count generated), per key
/// the delivered seqs have no gap (`peer send` accepts the messages of one key one after
/// the other, so what a kill cuts off is a tail, never a middle).
fn check_exactly_once(
    lines: &[Value],
    accepted: &BTreeSet<u64>,
    phases: &[(u64, u64)],
) -> Result<()> {
    let runs = runs_per_seq(lines);
    let missing: Vec<u64> = accepted
        .iter()
        .copied()
        .filter(|s| !runs.contains_key(s))
        .collect();
    ensure!(
        missing.is_empty(),
        "{} lost, first {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    let twice: Vec<_> = runs.iter().filter(|(_, n)| **n > 1).collect();
    ensure!(
        twice.is_empty(),
        "{} ran twice: {:?}",
        twice.len(),
        &twice[..twice.len().min(10)]
    );
    let extra: Vec<u64> = runs
        .keys()
        .copied()
        .filter(|s| !accepted.contains(s))
        .collect();
    ensure!(extra.is_empty(), "delivered but never accepted: {extra:?}");
    let keys: u64 = KEYS.parse()?;
    for (key, seqs) in check_key_order(lines)? {
        for (first, count) in phases {
            let run: Vec<u64> = seqs
                .iter()
                .copied()
                .filter(|s| (*first..first + count).contains(s))
                .collect();
            let Some(start) = run.first() else { continue };
            ensure!(*start < first + keys, "key {key} starts at seq {start}");
            ensure!(
                run.windows(2).all(|w| w[1] == w[0] + keys),
                "key {key} has a gap"
            );
        }
    }
    Ok(())
}

/// `kills` runs of a sender on one store, each generating `count / kills` new messages
/// while resuming what the store holds, each SIGKILLed after a random time in
/// `kill_after_ms`; then a last run resumes and finishes.
async fn sender_killed_and_resumed(
    count: u64,
    kills: usize,
    kill_after_ms: std::ops::Range<u64>,
    limit: Duration,
) -> Result<()> {
    let mut rng = rng();
    let dir = Directory::start().await?;
    let tmp = tempfile::tempdir()?;
    let (log, store) = (tmp.path().join("sink.jsonl"), tmp.path().join("sender"));
    let receiver_store = tmp.path().join("receiver").to_string_lossy().into_owned();
    let listener = Listener::start(
        &dir.url,
        "sink",
        &log,
        &["--store", &receiver_store, "--handle-time", "2ms"],
    )
    .await?;
    let mut accepted = BTreeSet::new();
    // Every run resumes what the store holds and generates new messages, so every kill
    // lands mid-stream.
    let per_run = count / kills as u64;
    let phases: Vec<(u64, u64)> = (0..kills as u64)
        .map(|k| (k * per_run + 1, per_run))
        .collect();
    for (kill, (first, n)) in phases.iter().enumerate() {
        let mut sender = spawn_sender_from(&dir, "sink", &store, Some(*n), *first)?;
        let after = Duration::from_millis(rng.random_range(kill_after_ms.clone()));
        tokio::time::sleep(after).await;
        kill_now(&mut sender).await?;
        let held = outbox_seqs(&dir, &store).await?;
        accepted.extend(held.iter().copied());
        accepted.extend(runs_per_seq(&read_log(&log)).keys().copied());
        eprintln!(
            "kill {kill} after {after:?}: {} in the outbox, {} accepted",
            held.len(),
            accepted.len()
        );
    }
    let mut sender = spawn_sender(&dir, "sink", &store, None)?;
    ensure!(
        exit_code(&mut sender, limit).await? == Some(0),
        "the last sender failed"
    );
    ensure!(
        !accepted.is_empty(),
        "nothing was accepted before the first kill"
    );
    check_exactly_once(&read_log(&log), &accepted, &phases)?;
    ensure!(outbox_seqs(&dir, &store).await?.is_empty());
    listener.stop().await
}

#[tokio::test]
async fn sigkilled_sender_resumes_from_its_store_with_nothing_lost_or_repeated() -> Result<()> {
    let limit = Duration::from_secs(180);
    sender_killed_and_resumed(3_000, 5, 300..1500, limit).await
}

#[tokio::test]
#[ignore = "long: 100,000 messages on 8 keys"]
async fn sigkilled_sender_with_100k_messages_resumes_with_nothing_lost_or_repeated() -> Result<()> {
    // A sender accepts all 100,000 while nobody listens and is killed; then the receiver
    // starts and the sender is restarted and SIGKILLed 5 more times, 5 to 20 s into each
    // run, with tens of thousands of messages still unacked each time.
    let mut rng = rng();
    let count = 100_000;
    let dir = Directory::start().await?;
    let tmp = tempfile::tempdir()?;
    let (log, store) = (tmp.path().join("sink.jsonl"), tmp.path().join("sender"));
    accept_all(&dir, "sink", &store, count).await?;
    ensure!(outbox_seqs(&dir, &store).await?.len() as u64 == count);
    let receiver_store = tmp.path().join("receiver").to_string_lossy().into_owned();
    let flags = ["--store", receiver_store.as_str(), "--handle-time", "1ms"];
    let listener = Listener::start(&dir.url, "sink", &log, &flags).await?;
    for kill in 1..=5 {
        let mut sender = spawn_sender(&dir, "sink", &store, None)?;
        let after = Duration::from_millis(rng.random_range(5_000..20_000));
        tokio::time::sleep(after).await;
        kill_now(&mut sender).await?;
        let held = outbox_seqs(&dir, &store).await?.len();
        eprintln!("kill {kill} after {after:?}: {held} of {count} still in the outbox");
    }
    let mut sender = spawn_sender(&dir, "sink", &store, None)?;
    let code = exit_code(&mut sender, Duration::from_secs(1800)).await?;
    ensure!(code == Some(0), "the last sender ended with {code:?}");
    check_exactly_once(&read_log(&log), &(1..=count).collect(), &[(1, count)])?;
    listener.stop().await
}

/// Runs `peer send --count N` with a store until it says every message is accepted (on
/// disk), then SIGKILLs it.
async fn accept_all(dir: &Directory, service: &str, store: &Path, count: u64) -> Result<()> {
    use tokio::io::AsyncBufReadExt;
    let store = store.to_string_lossy().into_owned();
    let count_arg = count.to_string();
    let args = [
        "send",
        service,
        "--store",
        &store,
        "--keys",
        KEYS,
        "--deadline",
        LONG_DEADLINE,
        "--count",
        &count_arg,
    ];
    let mut cmd = peer_command(&dir.url, &args);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut sender = cmd.spawn()?;
    let stderr = sender.stderr.take().context("stderr")?;
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let accepted = format!("accepted {count} message(s)");
    let limit = Duration::from_secs(1200);
    tokio::time::timeout(limit, async {
        while let Some(line) = lines.next_line().await? {
            if line.starts_with(&accepted) {
                return Ok(());
            }
        }
        anyhow::bail!("the sender exited before accepting everything")
    })
    .await
    .context("the sender did not accept everything in time")??;
    kill_now(&mut sender).await
}

/// Where each seq ran: (incarnation, position in that incarnation's log).
fn runs_by_incarnation(logs: &[Vec<Value>]) -> BTreeMap<u64, Vec<(usize, usize)>> {
    let mut runs: BTreeMap<u64, Vec<(usize, usize)>> = BTreeMap::new();
    for (i, lines) in logs.iter().enumerate() {
        for (pos, line) in lines.iter().enumerate() {
            if let Some((seq, _)) = process::seq_and_key(line) {
                runs.entry(seq).or_default().push((i, pos));
            }
        }
    }
    runs
}

/// Whether `pos` is the last line of its key in `lines` (the only delivery of that key that
/// can be in progress, or acked but not yet recorded, when the process is killed: the
/// sender releases the next message of a key only after this one's ack).
fn last_of_its_key(lines: &[Value], pos: usize) -> bool {
    let key = &lines[pos]["key"];
    lines[pos + 1..].iter().all(|l| &l["key"] != key)
}

#[tokio::test]
async fn receiver_sigkilled_during_handling_reruns_only_unrecorded_deliveries() -> Result<()> {
    let mut rng = rng();
    let dir = Directory::start().await?;
    let tmp = tempfile::tempdir()?;
    let count = 1_500;
    let receiver_store = tmp.path().join("receiver").to_string_lossy().into_owned();
    let flags = ["--store", receiver_store.as_str(), "--handle-time", "5ms"];
    let mut sender = spawn_sender(&dir, "work", &tmp.path().join("sender"), Some(count))?;
    let log_of = |i: usize| tmp.path().join(format!("work-{i}.jsonl"));
    for i in 0..5 {
        let listener = Listener::start(&dir.url, "work", &log_of(i), &flags).await?;
        tokio::time::sleep(Duration::from_millis(rng.random_range(400..1200))).await;
        listener.kill().await?;
    }
    let last = Listener::start(&dir.url, "work", &log_of(5), &flags).await?;
    let code = exit_code(&mut sender, Duration::from_secs(180)).await?;
    ensure!(code == Some(0), "the sender ended with {code:?}");
    let logs: Vec<Vec<Value>> = (0..=5).map(|i| read_log(&log_of(i))).collect();
    let all: Vec<Value> = logs.iter().flatten().cloned().collect();
    let runs = runs_by_incarnation(&logs);
    ensure!(
        runs.len() as u64 == count,
        "{} of {count} delivered",
        runs.len()
    );
    let mut reruns = 0;
    for (seq, places) in &runs {
        let Some(((first, pos), later)) = places.split_first().map(|(f, l)| (*f, l)) else {
            continue;
        };
        if later.is_empty() {
            continue;
        }
        reruns += later.len();
        ensure!(later.len() == 1, "seq {seq} ran {} times", places.len());
        ensure!(
            first < 5 && later[0].0 > first && last_of_its_key(&logs[first], pos),
            "seq {seq} re-ran outside the window (runs {places:?})"
        );
    }
    eprintln!("re-runs in the named window: {reruns} over 5 kills");
    ensure!(
        reruns <= 5 * 8,
        "more re-runs than deliveries in progress at the kills"
    );
    check_key_order(&all)?;
    last.stop().await
}

/// The receiver is absent for `absence` while a durable sender accepts `count` messages;
/// then it starts and everything arrives, in order per key.
async fn receiver_absent(absence: Duration, count: u64) -> Result<()> {
    let dir = Directory::start().await?;
    let tmp = tempfile::tempdir()?;
    let log = tmp.path().join("late.jsonl");
    let mut sender = spawn_sender(&dir, "late", &tmp.path().join("sender"), Some(count))?;
    tokio::time::sleep(absence).await;
    ensure!(
        sender.try_wait()?.is_none(),
        "the sender gave up while the receiver was away"
    );
    let listener = Listener::start(&dir.url, "late", &log, &[]).await?;
    let code = exit_code(&mut sender, Duration::from_secs(120)).await?;
    ensure!(code == Some(0), "the sender ended with {code:?}");
    check_exactly_once(&read_log(&log), &(1..=count).collect(), &[(1, count)])?;
    listener.stop().await
}

/// The absence of the fast variant; `PEER_CLI_ABSENCE` (humantime) overrides it.
fn absence(default: Duration) -> Duration {
    std::env::var("PEER_CLI_ABSENCE")
        .ok()
        .and_then(|s| humantime::parse_duration(&s).ok())
        .unwrap_or(default)
}

#[tokio::test]
async fn receiver_absent_for_a_while_then_started_gets_everything_in_key_order() -> Result<()> {
    receiver_absent(absence(Duration::from_secs(4)), 500).await
}

#[tokio::test]
#[ignore = "long: the receiver is absent for 60 s, past the old 30 s default deadline"]
async fn receiver_absent_for_a_minute_then_started_gets_everything_in_key_order() -> Result<()> {
    receiver_absent(absence(Duration::from_secs(60)), 5_000).await
}
