//! The `peer` tool's logs on a pipe carry no colour escape codes.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

#[tokio::test]
async fn peer_logs_to_a_pipe_without_escape_codes() {
    // Nothing listens on a port we hold bound without listening: the directory is refused,
    // which the tool logs at WARN before it gives up.
    let held = tokio::net::TcpSocket::new_v4().unwrap();
    held.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let directory = format!("http://{}", held.local_addr().unwrap());
    let mut child = Command::new(env!("CARGO_BIN_EXE_peer"))
        .args([
            "send",
            "orders",
            "--deadline",
            "1s",
            "--directory",
            &directory,
        ])
        .env("RUST_LOG", "info")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"hello\n").await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("peer gives up in time")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("WARN"), "a log line was written: {stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "escape codes on a pipe: {stderr}"
    );
}
