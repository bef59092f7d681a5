//! The `directory` binary's client commands as a real process: watch, register
//! --keep-alive, heartbeat, -o table|json|yaml, completions, flag names and errors.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{start, wait_until};
use directory::Server;
use directory_api::{Address, Client, InstanceId, Registration, ServiceName};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_directory");

/// How long a command may run or a line may take to appear.
const LIMIT: Duration = Duration::from_secs(20);

fn command(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_remove("DIRECTORY_ADDR")
        .env_remove("DIRECTORY_OUTPUT")
        .env_remove("DIRECTORY_JSON")
        .kill_on_drop(true);
    command
}

/// Runs a command to completion: (exit success, stdout, stderr).
async fn run(args: &[&str]) -> (bool, String, String) {
    let out = tokio::time::timeout(LIMIT, command(args).output())
        .await
        .unwrap_or_else(|_| panic!("`directory {args:?}` still running after {LIMIT:?}"))
        .unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (out.status.success(), text(out.stdout), text(out.stderr))
}

/// A long-running command with its stdout and stderr read line by line.
struct Running {
    child: Child,
    stdout: Lines<BufReader<Box<dyn AsyncRead + Unpin + Send>>>,
    stderr: Lines<BufReader<Box<dyn AsyncRead + Unpin + Send>>>,
}

impl Running {
    fn spawn(args: &[&str]) -> Self {
        let mut child = command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let boxed = |r: Box<dyn AsyncRead + Unpin + Send>| BufReader::new(r).lines();
        let stdout = boxed(Box::new(child.stdout.take().unwrap()));
        let stderr = boxed(Box::new(child.stderr.take().unwrap()));
        Self {
            child,
            stdout,
            stderr,
        }
    }

    async fn stdout_line(&mut self) -> String {
        next_line(&mut self.stdout).await
    }

    async fn stderr_line(&mut self) -> String {
        next_line(&mut self.stderr).await
    }

    /// Sends SIGINT (Ctrl-C) and waits for a successful exit.
    async fn interrupt_and_wait(mut self) {
        let pid = self.child.id().unwrap().to_string();
        let kill = Command::new("kill").args(["-INT", &pid]).status().await;
        assert!(kill.unwrap().success());
        let exit = tokio::time::timeout(LIMIT, self.child.wait())
            .await
            .expect("exits after Ctrl-C")
            .unwrap();
        assert!(exit.success(), "a clean exit after Ctrl-C, got {exit:?}");
    }
}

async fn next_line(lines: &mut Lines<BufReader<Box<dyn AsyncRead + Unpin + Send>>>) -> String {
    tokio::time::timeout(LIMIT, lines.next_line())
        .await
        .expect("a line in time")
        .unwrap()
        .expect("a line before the end of the output")
}

async fn start_node() -> (Server, String, Client) {
    let server = start().await;
    let addr = server.http_addr().to_string();
    let client = Client::new(&addr).unwrap();
    (server, addr, client)
}

fn name(s: &str) -> ServiceName {
    ServiceName::new(s).unwrap()
}

fn id(s: &str) -> InstanceId {
    InstanceId::new(s).unwrap()
}

fn registration(address: &str) -> Registration {
    Registration::new(Address::new(address).unwrap())
}

#[tokio::test]
async fn watch_prints_each_change_as_it_happens_until_ctrl_c() {
    let (server, addr, client) = start_node().await;
    let mut json = Running::spawn(&["watch", "orders", "--node", &addr, "-o", "json"]);
    let mut table = Running::spawn(&["watch", "--node", &addr]);
    assert!(
        json.stderr_line()
            .await
            .starts_with("watching service orders")
    );
    assert!(
        table
            .stderr_line()
            .await
            .starts_with("watching every service")
    );

    let reg = registration("127.0.0.1:7000");
    client
        .register(&name("other"), &id("x-1"), &reg)
        .await
        .unwrap();
    client
        .register(&name("orders"), &id("o-1"), &reg)
        .await
        .unwrap();
    client
        .deregister(&name("orders"), &id("o-1"))
        .await
        .unwrap();

    let first: Value = serde_json::from_str(&json.stdout_line().await).unwrap();
    assert_eq!(first["type"], "registered");
    assert_eq!(
        first["instance"], "o-1",
        "only the watched service: {first}"
    );
    assert_eq!(first["record"]["address"], "127.0.0.1:7000");
    let second: Value = serde_json::from_str(&json.stdout_line().await).unwrap();
    assert_eq!(
        (&second["type"], &second["record"]),
        (&"deregistered".into(), &Value::Null)
    );

    let lines = [
        table.stdout_line().await,
        table.stdout_line().await,
        table.stdout_line().await,
    ];
    let words = |l: &str| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(
        words(&lines[0]),
        ["1", "registered", "other/x-1", "127.0.0.1:7000"]
    );
    assert_eq!(words(&lines[2]), ["3", "deregistered", "orders/o-1", "-"]);
    json.interrupt_and_wait().await;
    table.interrupt_and_wait().await;
    server.shutdown().await;
}

#[tokio::test]
async fn register_keep_alive_holds_the_lease_until_ctrl_c_then_deregisters() {
    let (server, addr, _) = start_node().await;
    let args = [
        "register",
        "orders",
        "o-1",
        "--address",
        "127.0.0.1:7000",
        "--ttl",
        "1s",
        "--keep-alive",
        "--node",
        &addr,
    ];
    let mut held = Running::spawn(&args);
    let line = held.stdout_line().await;
    assert!(
        line.starts_with("registered orders/o-1 at 127.0.0.1:7000 (ttl 1s"),
        "{line}"
    );
    assert!(held.stderr_line().await.contains("Ctrl-C"));
    // Three leases long: without heartbeats the instance would be gone after the first.
    let expired = wait_until(Duration::from_secs(3), || async {
        server.registry().is_empty()
    })
    .await;
    assert!(
        !expired,
        "the lease ran out although --keep-alive was holding it"
    );
    held.interrupt_and_wait().await;
    assert!(server.registry().is_empty(), "deregistered on Ctrl-C");
    server.shutdown().await;
}

#[tokio::test]
async fn heartbeat_prints_the_renewed_record_and_an_expired_lease_says_so() {
    let (server, addr, client) = start_node().await;
    let reg = registration("127.0.0.1:7000");
    client
        .register(&name("orders"), &id("o-1"), &reg)
        .await
        .unwrap();
    let (ok, out, err) = run(&["heartbeat", "orders", "o-1", "--node", &addr]).await;
    assert!(ok, "{err}");
    assert!(
        out.starts_with("renewed orders/o-1 at 127.0.0.1:7000 (ttl 30s"),
        "{out}"
    );
    let (ok, out, _) = run(&["heartbeat", "orders", "o-1", "--node", &addr, "-o", "json"]).await;
    assert!(ok);
    let record: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(record["instance"], "o-1");
    let (ok, _, err) = run(&["heartbeat", "orders", "gone", "--node", &addr]).await;
    assert!(!ok);
    assert!(err.contains("instance_not_found"), "{err}");
    server.shutdown().await;
}

#[tokio::test]
async fn every_read_command_prints_table_json_or_yaml() {
    let (server, addr, client) = start_node().await;
    let reg = registration("127.0.0.1:7000");
    client
        .register(&name("orders"), &id("o-1"), &reg)
        .await
        .unwrap();
    for command in [
        &["services"][..],
        &["lookup", "orders"],
        &["members"],
        &["health"],
    ] {
        let with = |format: &'static str| [command, &["--node", &addr, "-o", format]].concat();
        let (ok, json, err) = run(&with("json")).await;
        assert!(ok, "{command:?}: {err}");
        let json = without_clock(serde_json::from_str(&json).unwrap());
        let (ok, yaml, err) = run(&with("yaml")).await;
        assert!(ok, "{command:?}: {err}");
        assert!(
            serde_json::from_str::<Value>(&yaml).is_err(),
            "YAML, not JSON: {yaml}"
        );
        let yaml = without_clock(serde_norway::from_str(&yaml).unwrap());
        assert_eq!(json, yaml, "{command:?}: same content in both formats");
        let (ok, table, _) = run(&with("table")).await;
        assert!(ok);
        assert!(
            serde_json::from_str::<Value>(&table).is_err(),
            "a table: {table}"
        );
    }
    let (ok, _, err) = run(&["services", "--node", &addr, "-o", "xml"]).await;
    assert!(!ok);
    assert!(
        err.contains("table") && err.contains("yaml"),
        "lists the formats: {err}"
    );
    server.shutdown().await;
}

/// `value` without `members[].last_change`, which each call reads afresh.
fn without_clock(mut value: Value) -> Value {
    if let Some(members) = value["members"].as_array_mut() {
        members
            .iter_mut()
            .for_each(|m| m["last_change"] = Value::Null);
    }
    value
}

#[tokio::test]
async fn completions_are_printed_for_bash_zsh_and_fish() {
    for shell in ["bash", "zsh", "fish"] {
        let (ok, out, err) = run(&["completions", shell]).await;
        assert!(ok, "{shell}: {err}");
        for word in ["watch", "heartbeat", "keep-alive", "--node"] {
            assert!(out.contains(word), "{shell} completions lack {word}");
        }
    }
    let Ok(bash) = which("bash") else {
        println!("SKIPPED loading the bash completions: no bash");
        return;
    };
    let script = format!("source <({BIN} completions bash) && complete -p directory");
    let out = Command::new(bash)
        .args(["-c", &script])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(LIMIT, out).await.unwrap().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("directory"));
}

#[tokio::test]
async fn completions_into_a_closed_pipe_end_quietly() {
    // A reader that is already gone (as after `| head -1`): every write fails with EPIPE.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    // Spawned, not `output()`: tokio's `output()` would replace stdout with its own pipe.
    let child = command(&["completions", "bash"])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = tokio::time::timeout(LIMIT, child.wait_with_output());
    let out = out.await.unwrap().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.is_empty(), "{err}");
}

fn which(program: &str) -> Result<std::path::PathBuf, ()> {
    let path = std::env::var_os("PATH").ok_or(())?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .ok_or(())
}

#[tokio::test]
async fn the_node_and_the_instance_address_have_flags_that_cannot_be_confused() {
    let (ok, help, _) = run(&["register", "--help"]).await;
    assert!(ok);
    assert!(
        help.contains("--node <URL>") && help.contains("--address <HOST:PORT>"),
        "{help}"
    );
    assert!(
        !help.contains("--addr "),
        "the old name stays hidden: {help}"
    );
    let (server, addr, _) = start_node().await;
    let old = [
        "register",
        "orders",
        "o-1",
        "--address",
        "127.0.0.1:7000",
        "--addr",
        &addr,
    ];
    let (ok, _, err) = run(&old).await;
    assert!(ok, "--addr still works for older scripts: {err}");
    assert_eq!(server.registry().len(), 1);
    server.shutdown().await;
}

/// Serves `answer` to every connection after reading its request head.
async fn fake_server(answer: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = tokio::io::AsyncReadExt::read(&mut socket, &mut buf).await;
                if answer.is_empty() {
                    // Never answer: hold the connection until the client gives up.
                    let _ = tokio::io::AsyncReadExt::read(&mut socket, &mut buf).await;
                }
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    addr
}

/// An unrelated web server's answer: a whole HTML page.
fn html_page() -> String {
    let body = "<html>\n<head><title>Welcome</title></head>\n<body>an unrelated web server here</body></html>";
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn errors_name_the_cause_not_a_directory_tls_timeout_and_refused() {
    let page = fake_server(html_page()).await;
    let (ok, _, err) = run(&["services", "--node", &page]).await;
    assert!(!ok);
    assert!(
        err.contains("is not a directory node") && err.contains("text/html"),
        "{err}"
    );
    assert!(
        !err.contains("unrelated web server") && err.lines().count() == 1,
        "{err}"
    );

    let (server, addr, _) = start_node().await;
    let (ok, _, err) = run(&["services", "--node", &format!("https://{addr}")]).await;
    assert!(!ok);
    assert!(
        err.contains("TLS handshake") && err.contains("http://"),
        "{err}"
    );
    server.shutdown().await;

    let silent = fake_server(String::new()).await;
    let (ok, _, err) = run(&["services", "--node", &silent, "--timeout", "300ms"]).await;
    assert!(!ok);
    assert!(err.contains("did not answer in time"), "{err}");

    let held = tokio::net::TcpSocket::new_v4().unwrap();
    held.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let closed = held.local_addr().unwrap().to_string();
    let (ok, _, err) = run(&["services", "--node", &closed]).await;
    assert!(!ok);
    assert!(err.contains("connection refused"), "{err}");
}
