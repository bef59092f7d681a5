//! End to end with real processes: the `directory` binary and the `peer` tool (listen, send,
//! request, outbox, dead-letters), including SIGKILLed senders and receivers.

mod process;

use anyhow::{Context, Result};
use process::{Directory, Listener, check_key_order, read_log, run_peer, runs_per_seq};
use std::time::Duration;

/// Bound of one short `peer` command.
const SHORT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn listen_and_send_deliver_every_message_once_in_key_order() -> Result<()> {
    let dir = Directory::start().await?;
    let tmp = tempfile::tempdir()?;
    let log = tmp.path().join("orders.jsonl");
    let listener = Listener::start(&dir.url, "orders", &log, &[]).await?;
    let args = ["send", "orders", "--count", "400", "--keys", "8"];
    let out = run_peer(&dir.url, &args, None, SHORT).await?;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr
            .contains("sent 400 to orders: 400 acked, 0 dead-lettered"),
        "{out:?}"
    );
    let lines = read_log(&log);
    let runs = runs_per_seq(&lines);
    assert_eq!(runs.len(), 400);
    assert!(runs.values().all(|n| *n == 1), "a message ran twice");
    let per_key = check_key_order(&lines)?;
    assert_eq!(per_key.len(), 8);
    assert!(
        lines
            .iter()
            .all(|l| l["receiver"] == listener.instance.as_str())
    );
    assert!(lines.iter().all(|l| l["attempt"] == 1 && l["id"].is_u64()));
    listener.stop().await
}

#[tokio::test]
async fn publish_reaches_each_subscribe_group_once_in_key_order_with_its_topic() -> Result<()> {
    let dir = Directory::start().await?;
    let tmp = tempfile::tempdir()?;
    let (billing_log, audit_log) = (tmp.path().join("b.jsonl"), tmp.path().join("a.jsonl"));
    let billing = Listener::subscribe(&dir.url, "orders.*", &billing_log, &["--as", "billing"]);
    let billing = billing.await?;
    let audit = ["--group", "audit", "--as", "audit-eu"];
    let audit = Listener::subscribe(&dir.url, "orders.>", &audit_log, &audit).await?;
    let topic = "orders.created".parse()?;
    let client = peer_sdk::directory_api::Client::new(&dir.url)?;
    for _ in 0..200 {
        if client.topic_subscribers(&topic).await?.groups.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let args = ["publish", "orders.created", "--count", "20", "--keys", "4"];
    let out = run_peer(&dir.url, &args, None, SHORT).await?;
    assert_eq!(out.code, Some(0), "{out:?}");
    let summary = "published 20 on orders.created to groups [audit, billing]: 40 copies acked";
    assert!(out.stderr.contains(summary), "{out:?}");
    let args = ["publish", "nobody.here", "--count", "1", "--no-subscribers"];
    let out = run_peer(&dir.url, &args, None, SHORT).await?;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("no group subscribes to"), "{out:?}");
    for log in [&billing_log, &audit_log] {
        let lines = read_log(log);
        assert_eq!(runs_per_seq(&lines).len(), 20, "{lines:?}");
        assert_eq!(lines.len(), 20, "a message ran twice: {lines:?}");
        assert_eq!(check_key_order(&lines)?.len(), 4);
        assert!(
            lines.iter().all(|l| l["topic"] == "orders.created"),
            "{lines:?}"
        );
    }
    billing.stop().await?;
    audit.stop().await
}

#[tokio::test]
async fn stdin_lines_are_sent_and_binary_safe_text_is_logged_as_text() -> Result<()> {
    let dir = Directory::start().await?;
    let tmp = tempfile::tempdir()?;
    let log = tmp.path().join("lines.jsonl");
    let listener = Listener::start(&dir.url, "lines", &log, &[]).await?;
    let args = ["send", "lines", "--keys", "0"];
    let out = run_peer(&dir.url, &args, Some("first\nsecond\n"), SHORT).await?;
    assert_eq!(out.code, Some(0), "{out:?}");
    let mut payloads: Vec<String> = read_log(&log)
        .iter()
        .map(|l| l["payload"].as_str().unwrap_or_default().to_owned())
        .collect();
    payloads.sort();
    assert_eq!(payloads, ["first", "second"]);
    listener.stop().await
}

#[tokio::test]
async fn request_prints_the_reply() -> Result<()> {
    let dir = Directory::start().await?;
    let tmp = tempfile::tempdir()?;
    let listener = Listener::start(&dir.url, "echo", &tmp.path().join("echo.jsonl"), &[]).await?;
    let out = run_peer(&dir.url, &["request", "echo", "ping 1"], None, SHORT).await?;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, "ping 1\n");
    listener.stop().await
}

#[tokio::test]
async fn a_token_lets_the_tool_through_a_directory_with_acls() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let acl = tmp.path().join("acl.json");
    let created = std::process::Command::new(process::directory_bin()?)
        .args(["acl", "token", "create", "--acl-file"])
        .arg(&acl)
        .args([
            "--name",
            "tool",
            "--rule",
            "write:echo",
            "--rule",
            "write:peer-cli",
        ])
        .args(["--rule", "read:*"])
        .output()?;
    let stdout = String::from_utf8(created.stdout)?;
    let secret = stdout
        .lines()
        .find_map(|l| l.strip_prefix("secret:"))
        .map(str::trim)
        .context("acl token create printed a secret")?
        .to_owned();
    let dir = Directory::start_with(&["--acl-file", acl.to_str().context("utf-8 path")?]).await?;

    // Without the token the tool cannot even register: it says why and sends nothing.
    let out = run_peer(&dir.url, &["request", "echo", "ping"], None, SHORT).await?;
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr.contains("401") || out.stderr.contains("unauthorized"),
        "{out:?}"
    );

    let log = tmp.path().join("echo.jsonl");
    let listener = Listener::start(&dir.url, "echo", &log, &["--token", &secret]).await?;
    let out = run_peer(
        &dir.url,
        &["request", "echo", "ping", "--token", &secret],
        None,
        SHORT,
    )
    .await?;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, "ping\n");
    listener.stop().await
}

/// Two listeners whose handler takes 1.5 s (three times the sender's 500 ms ack timeout),
/// with `extra` flags; returns how many times a handler started on the one message.
async fn slow_handler_runs(extra: &[&str]) -> Result<usize> {
    let dir = Directory::start().await?;
    let tmp = tempfile::tempdir()?;
    let logs = [tmp.path().join("a.jsonl"), tmp.path().join("b.jsonl")];
    let mut flags = vec!["--handle-time", "1500ms"];
    flags.extend_from_slice(extra);
    let a = Listener::start(&dir.url, "slow", &logs[0], &flags).await?;
    let b = Listener::start(&dir.url, "slow", &logs[1], &flags).await?;
    let args = [
        "send",
        "slow",
        "--count",
        "1",
        "--ack-timeout",
        "500ms",
        "--deadline",
        "30s",
    ];
    let out = run_peer(&dir.url, &args, None, SHORT).await?;
    assert_eq!(out.code, Some(0), "{out:?}");
    let runs = read_log(&logs[0]).len() + read_log(&logs[1]).len();
    a.stop().await?;
    b.stop().await?;
    Ok(runs)
}

#[tokio::test]
async fn handler_taking_three_ack_timeouts_and_signalling_progress_runs_exactly_once() -> Result<()>
{
    assert_eq!(slow_handler_runs(&["--progress-every", "150ms"]).await?, 1);
    // The control: without progress signals the same handler also runs on the other
    // instance, so the assertion above can fail.
    assert!(slow_handler_runs(&[]).await? >= 2);
    Ok(())
}

#[tokio::test]
async fn errors_through_the_cli_say_what_happened() -> Result<()> {
    let dir = Directory::start().await?;
    // No such service, fail fast: a distinct reason at once.
    let args = [
        "send",
        "nobody",
        "--count",
        "1",
        "--no-responders",
        "--deadline",
        "30s",
    ];
    let started = std::time::Instant::now();
    let out = run_peer(&dir.url, &args, None, SHORT).await?;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    let letters = out.json_lines();
    assert_eq!(letters.len(), 1, "{out:?}");
    assert_eq!(letters[0]["reason"], "no_responders");
    assert_eq!(letters[0]["destination"], "nobody");
    // Without fail-fast, the deadline passes and names the last cause: no instances.
    let args = ["send", "nobody", "--count", "1", "--deadline", "1s"];
    let out = run_peer(&dir.url, &args, None, SHORT).await?;
    assert_eq!(out.code, Some(1), "{out:?}");
    let letters = out.json_lines();
    assert_eq!(letters[0]["reason"], "deadline_exceeded", "{out:?}");
    assert_eq!(letters[0]["cause"], "no_instances", "{out:?}");
    // A request fails the same way, on stderr, with exit 1.
    let args = ["request", "nobody", "hi", "--no-responders"];
    let out = run_peer(&dir.url, &args, None, SHORT).await?;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains(r#""reason":"no_responders""#),
        "{out:?}"
    );
    // A directory that does not answer: the peer cannot start, and says so.
    let out = run_peer("http://127.0.0.1:1", &["request", "x", "hi"], None, SHORT).await?;
    assert_eq!(out.code, Some(3), "{out:?}");
    assert!(out.stderr.contains("no directory answered"), "{out:?}");
    Ok(())
}

#[tokio::test]
async fn dead_letters_are_listed_replayed_and_purged_through_the_cli() -> Result<()> {
    let dir = Directory::start().await?;
    let tmp = tempfile::tempdir()?;
    let store = tmp.path().join("sender");
    let store_arg = store.to_string_lossy().into_owned();
    let send = [
        "send",
        "later",
        "--count",
        "3",
        "--keys",
        "2",
        "--deadline",
        "1s",
        "--store",
        &store_arg,
    ];
    let out = run_peer(&dir.url, &send, None, SHORT).await?;
    assert_eq!(out.code, Some(1), "{out:?}");
    let list = ["dead-letters", "list", "--store", &store_arg];
    let listed = run_peer(&dir.url, &list, None, SHORT).await?.json_lines();
    assert_eq!(listed.len(), 3, "{listed:?}");
    for letter in &listed {
        assert_eq!(letter["destination"], "later");
        assert_eq!(letter["reason"], "deadline_exceeded");
        assert_eq!(letter["cause"], "no_instances");
        assert!(letter["deadline"].is_string() && letter["attempts"] == 0);
        assert!(
            letter["payload"]
                .as_str()
                .is_some_and(|p| p.starts_with(r#"{"seq":"#))
        );
    }
    // Replay: back to the outbox with a new deadline, delivered by the next start.
    let replay = ["dead-letters", "replay", "--store", &store_arg];
    assert_eq!(
        run_peer(&dir.url, &replay, None, SHORT).await?.code,
        Some(0)
    );
    assert!(
        run_peer(&dir.url, &list, None, SHORT)
            .await?
            .json_lines()
            .is_empty()
    );
    let outbox = ["outbox", "list", "--store", &store_arg];
    assert_eq!(
        run_peer(&dir.url, &outbox, None, SHORT)
            .await?
            .json_lines()
            .len(),
        3
    );
    let log = tmp.path().join("later.jsonl");
    let listener = Listener::start(&dir.url, "later", &log, &[]).await?;
    let resume = ["outbox", "replay", "--store", &store_arg];
    let out = run_peer(&dir.url, &resume, None, SHORT).await?;
    assert_eq!(out.code, Some(0), "{out:?}");
    let ids: Vec<u64> = read_log(&log)
        .iter()
        .filter_map(|l| l["id"].as_u64())
        .collect();
    let mut listed_ids: Vec<u64> = listed.iter().filter_map(|l| l["id"].as_u64()).collect();
    listed_ids.sort_unstable();
    let mut delivered = ids.clone();
    delivered.sort_unstable();
    assert_eq!(delivered, listed_ids, "replayed with their original ids");
    assert!(
        run_peer(&dir.url, &outbox, None, SHORT)
            .await?
            .json_lines()
            .is_empty()
    );
    listener.stop().await?;
    // Purge.
    let out = run_peer(&dir.url, &send, None, SHORT).await?;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert_eq!(
        run_peer(&dir.url, &list, None, SHORT)
            .await?
            .json_lines()
            .len(),
        3
    );
    let purge = ["dead-letters", "purge", "--store", &store_arg];
    assert_eq!(run_peer(&dir.url, &purge, None, SHORT).await?.code, Some(0));
    assert!(
        run_peer(&dir.url, &list, None, SHORT)
            .await?
            .json_lines()
            .is_empty()
    );
    Ok(())
}

#[tokio::test]
async fn a_store_that_is_not_one_is_a_clear_error() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().to_string_lossy().into_owned();
    let out = run_peer(
        "http://127.0.0.1:1",
        &["outbox", "list", "--store", &dir],
        None,
        SHORT,
    )
    .await?;
    assert_eq!(out.code, Some(3), "{out:?}");
    assert!(out.stderr.contains("holds no peer store"), "{out:?}");
    std::fs::write(
        tmp.path().join(peer_sdk::store::FILE_NAME),
        b"not a database",
    )?;
    let out = run_peer(
        "http://127.0.0.1:1",
        &["outbox", "list", "--store", &dir],
        None,
        SHORT,
    )
    .await?;
    assert_eq!(out.code, Some(3), "{out:?}");
    assert!(
        out.stderr.starts_with("error: opening the store"),
        "{out:?}"
    );
    Ok(())
}

#[tokio::test]
async fn outbox_list_prints_attempts_and_the_per_message_options_of_a_killed_sender() -> Result<()>
{
    let dir = Directory::start().await?;
    let tmp = tempfile::tempdir()?;
    let logs = [tmp.path().join("a.jsonl"), tmp.path().join("b.jsonl")];
    // Two receivers that never ack in time: attempt 1 times out on one, attempt 2 goes to
    // the other.
    let slow = ["--handle-time", "120s"];
    let a = Listener::start(&dir.url, "slow", &logs[0], &slow).await?;
    let b = Listener::start(&dir.url, "slow", &logs[1], &slow).await?;
    let store = tmp.path().join("sender").to_string_lossy().into_owned();
    let args = [
        "send",
        "slow",
        "--count",
        "1",
        "--ack-timeout",
        "300ms",
        "--max-attempts",
        "50",
        "--deadline",
        "1h",
        "--store",
        &store,
    ];
    let mut sender = process::peer_command(&dir.url, &args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let retried = process::wait_until(Duration::from_secs(30), || {
        logs.iter()
            .flat_map(|l| read_log(l))
            .any(|l| l["attempt"].as_u64() >= Some(2))
    })
    .await;
    assert!(retried, "attempt 2 never reached a receiver");
    process::kill_now(&mut sender).await?;
    let list = ["outbox", "list", "--store", &store];
    let listed = run_peer(&dir.url, &list, None, SHORT).await?.json_lines();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let m = &listed[0];
    assert!(m["attempts"].as_u64() >= Some(1), "{m}");
    assert_eq!(m["ack_timeout_ms"], 300, "{m}");
    assert_eq!(m["max_attempts"], 50, "{m}");
    assert_eq!(m["destination"], "slow", "{m}");
    a.kill().await?;
    b.kill().await
}
