//! The `directory` binary as a real process.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{client, start};
use directory::Server;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_directory");

/// How long a subcommand may run: a `serve` that wrongly accepted bad arguments is killed
/// and fails its test instead of hanging the run.
const RUN_LIMIT: Duration = Duration::from_secs(30);

/// Runs a client subcommand to completion: (exit success, stdout, stderr).
async fn run(args: &[&str]) -> (bool, String, String) {
    let child = Command::new(BIN)
        .args(args)
        .env_remove("DIRECTORY_ADDR")
        .env_remove("DIRECTORY_HTTP_ADDR")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(RUN_LIMIT, child)
        .await
        .unwrap_or_else(|_| panic!("`directory {args:?}` still running after {RUN_LIMIT:?}"))
        .unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (out.status.success(), text(out.stdout), text(out.stderr))
}

/// Starts `directory <args>` and returns it with the first stdout line.
async fn spawn_node(args: &[&str], envs: &[(&str, &str)]) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .envs(envs.iter().copied())
        .env_remove("DIRECTORY_HTTP_ADDR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("first log line in time")
        .unwrap()
        .expect("a first log line");
    // Keep draining so the node never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, first)
}

fn address_in(line: &str) -> String {
    let start = line.find("127.0.0.1:").expect("address in the first line");
    line[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect()
}

/// `GET /v1/health` of the node at `addr` (`host:port`).
async fn health_of(addr: &str) -> Value {
    client()
        .get(format!("http://{addr}/v1/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Runs a client subcommand against the node at `addr` (appends `--addr addr`).
async fn run_at(addr: &str, args: &[&str]) -> (bool, String, String) {
    run(&[args, &["--addr", addr]].concat()).await
}

/// Starts an in-process node; returns it with its `host:port`.
async fn start_node() -> (Server, String) {
    let server = start().await;
    let addr = server.http_addr().to_string();
    (server, addr)
}

async fn sigterm_and_wait(mut child: Child) {
    let pid = child.id().unwrap().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(exit.success(), "graceful exit, got {exit:?}");
}

#[tokio::test]
async fn serve_on_port_zero_prints_the_bound_address_first_and_stops_on_sigterm() {
    let (child, first) = spawn_node(&["serve", "--http-addr", "127.0.0.1:0"], &[]).await;
    let addr = address_in(&first);
    assert!(!addr.ends_with(":0"), "{first}");
    assert!(
        !first.contains('\u{1b}'),
        "no escape codes on a pipe: {first}"
    );
    let health = health_of(&addr).await;
    assert_eq!(health["status"], "ok");
    sigterm_and_wait(child).await;
}

#[tokio::test]
async fn plain_directory_serves_with_env_configuration_and_json_logs() {
    let envs = [
        ("DIRECTORY_HTTP_ADDR", "127.0.0.1:0"),
        ("DIRECTORY_NODE_NAME", "env-node"),
    ];
    let (child, first) = spawn_node(&["--log-format", "json"], &envs).await;
    let line: Value =
        serde_json::from_str(&first).unwrap_or_else(|e| panic!("not JSON ({e}): {first}"));
    let addr = line["fields"]["http_addr"].as_str().unwrap().to_owned();
    assert_eq!(line["fields"]["node"], "env-node");
    let health = health_of(&addr).await;
    assert_eq!(health["node"], "env-node");
    sigterm_and_wait(child).await;
}

#[tokio::test]
async fn client_subcommands_register_list_look_up_and_deregister() {
    let (server, addr) = start_node().await;
    let (ok, out, err) = run_at(
        &addr,
        &[
            "register",
            "orders",
            "orders-1",
            "--address",
            "127.0.0.1:7000",
            "--tag",
            "v2",
            "--meta",
            "zone=a",
            "--ttl",
            "1m",
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert!(
        out.contains("registered orders/orders-1 at 127.0.0.1:7000"),
        "{out}"
    );
    assert_eq!(server.registry().len(), 1);

    let (ok, out, _) = run_at(&addr, &["services"]).await;
    assert!(ok);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["SERVICE", "INSTANCES"]
    );
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["orders", "1"]
    );

    let (ok, out, _) = run_at(&addr, &["lookup", "orders"]).await;
    assert!(ok);
    assert!(out.starts_with("INSTANCE"), "{out}");
    assert!(
        out.contains("orders-1") && out.contains("127.0.0.1:7000") && out.contains("zone=a"),
        "{out}"
    );
    let (ok, out, _) = run_at(&addr, &["lookup", "orders", "--tag", "nope"]).await;
    assert!(ok);
    assert_eq!(out.lines().count(), 1, "only the header: {out}");

    let (ok, out, _) = run_at(
        &format!("http://{addr}"),
        &["lookup", "orders", "--json", "--meta", "zone=a"],
    )
    .await;
    assert!(ok);
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["instances"][0]["tags"][0], "v2");
    let (ok, out, _) = run_at(&addr, &["services", "--json"]).await;
    assert!(ok);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["services"][0]["instances"],
        1
    );

    let (ok, out, _) = run_at(&addr, &["deregister", "orders", "orders-1"]).await;
    assert!(ok);
    assert_eq!(out.trim(), "deregistered orders/orders-1");
    assert!(server.registry().is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn client_errors_are_clear_and_exit_non_zero() {
    let (server, addr) = start_node().await;
    let (ok, _, err) = run_at(
        &addr,
        &["register", "orders", "o-1", "--address", "no-port"],
    )
    .await;
    assert!(!ok);
    assert!(err.contains("invalid_address"), "{err}");
    let (ok, _, err) = run_at(
        &addr,
        &[
            "register",
            "orders",
            "o-1",
            "--address",
            "h:1",
            "--meta",
            "novalue",
        ],
    )
    .await;
    assert!(!ok);
    assert!(err.contains("key=value"), "{err}");
    assert!(server.registry().is_empty());
    // Nothing listens on a port we hold bound but never listen on: connections are refused,
    // and no other process can take the port meanwhile.
    let held = tokio::net::TcpSocket::new_v4().unwrap();
    held.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let free = held.local_addr().unwrap().to_string();
    let (ok, _, err) = run_at(&free, &["services"]).await;
    assert!(!ok);
    assert!(err.contains("cannot reach the directory node"), "{err}");
    let (ok, _, err) = run_at(&free, &["health"]).await;
    assert!(!ok, "health fails when nothing answers");
    assert!(err.contains("cannot reach the directory node"), "{err}");
    server.shutdown().await;
}

#[tokio::test]
async fn health_subcommand_succeeds_against_a_live_node() {
    let (server, addr) = start_node().await;
    let (ok, out, err) = run_at(&addr, &["health"]).await;
    assert!(ok, "{err}");
    assert!(out.starts_with("ok on node "), "{out}");
    server.shutdown().await;
}

#[tokio::test]
async fn help_documents_every_knob_with_its_env_var_and_default() {
    let (ok, out, _) = run(&["serve", "--help"]).await;
    assert!(ok);
    for (flag, env, default) in [
        ("--http-addr", "DIRECTORY_HTTP_ADDR", "127.0.0.1:7700"),
        (
            "--node-name",
            "DIRECTORY_NODE_NAME",
            directory::cli::host_node_name().as_str(),
        ),
        ("--max-instances", "DIRECTORY_MAX_INSTANCES", "1000000"),
        (
            "--tombstone-retention",
            "DIRECTORY_TOMBSTONE_RETENTION",
            "65m",
        ),
        ("--max-wait", "DIRECTORY_MAX_WAIT", "5m"),
        ("--body-limit", "DIRECTORY_BODY_LIMIT", "65536"),
        ("--log-format", "DIRECTORY_LOG_FORMAT", "human"),
    ] {
        assert!(
            out.contains(flag) && out.contains(env),
            "{flag} / {env} missing:\n{out}"
        );
        assert!(
            out.contains(&format!("default: {default}")),
            "default of {flag} missing:\n{out}"
        );
    }
    let (ok, _, err) = run(&["serve", "--http-addr", "not-an-address"]).await;
    assert!(!ok);
    assert!(err.contains("--http-addr"), "{err}");
}

#[tokio::test]
async fn a_busy_port_is_a_clear_start_error() {
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (ok, _, err) = run(&["serve", "--http-addr", &addr]).await;
    assert!(!ok);
    assert!(
        err.contains("cannot listen for HTTP on") && err.contains(&addr),
        "{err}"
    );
    assert_eq!(err.matches("in use").count(), 1, "the cause once: {err}");
}

#[tokio::test]
async fn a_tombstone_retention_within_the_longest_lease_is_a_clear_start_error() {
    let args = [
        "serve",
        "--http-addr",
        "127.0.0.1:0",
        "--tombstone-retention",
        "10m",
    ];
    // Bounded: a node that wrongly starts is killed when the timeout drops it.
    let output = Command::new(BIN).args(args).kill_on_drop(true).output();
    let out = tokio::time::timeout(Duration::from_secs(20), output)
        .await
        .expect("the node must refuse to start, not run")
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(!out.status.success());
    assert!(
        err.contains("tombstone retention") && err.contains("must exceed"),
        "{err}"
    );
}
