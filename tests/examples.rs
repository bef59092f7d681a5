//! The examples, run as shipped (their `run` functions, with smaller workloads).

#[path = "../examples/pipeline.rs"]
#[allow(dead_code)]
mod pipeline;
#[path = "../examples/quickstart.rs"]
#[allow(dead_code)]
mod quickstart;
#[path = "../examples/workers.rs"]
#[allow(dead_code)]
mod workers;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_survives_a_killed_stage_without_losing_messages() {
    let report = pipeline::run(pipeline::Options {
        messages: 3_000,
        in_flight: 128,
        kill_at: 0.4,
    })
    .await
    .expect("pipeline runs");
    assert!(report.c_restarted, "C was killed and restarted: {report:?}");
    assert_eq!(report.lost, 0, "{report:?}");
    assert_eq!(report.acked, 3_000, "{report:?}");
    assert_eq!(
        report.delivered, 3_000,
        "every message reached D: {report:?}"
    );
    assert_eq!(report.latency.len(), 3_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_share_the_load_and_a_leaving_worker_loses_nothing() {
    let report = workers::run(workers::Options {
        jobs: 3_000,
        workers: 3,
        in_flight: 128,
    })
    .await
    .expect("workers run");
    assert_eq!(report.lost, 0, "{report:?}");
    assert_eq!(report.acked, 3_000, "{report:?}");
    assert_eq!(
        report.doubled, 0,
        "a graceful leave hands nothing twice: {report:?}"
    );
    assert_eq!(report.per_worker.iter().sum::<u64>(), 3_000, "{report:?}");
    assert!(
        report.per_worker.iter().all(|&n| n > 0),
        "every worker got work: {report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_forms_a_cluster_and_peers_talk_both_ways() {
    let report = quickstart::run(2).await.expect("quickstart runs");
    assert_eq!(report.alive_per_node, vec![3, 3, 3], "{report:?}");
    assert_eq!(report.replies, (2, 2), "{report:?}");
    assert_eq!(
        report.seen_on_node2,
        (1, 1),
        "node 2 got both registrations by gossip: {report:?}"
    );
}

/// The two-process example as its doc comment runs it: `receiver` and `sender` are the
/// example binaries (built here if `cargo test` did not build them), against one directory.
mod two_processes {
    use std::path::PathBuf;
    use std::process::Stdio;
    use std::time::Duration;

    use anyhow::{Context, ensure};
    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::process::{Child, Command};

    /// Longest a build of the two examples may take (a cold build on a loaded machine).
    const BUILD_LIMIT: Duration = Duration::from_secs(900);
    /// Longest any example process may run in this test.
    const RUN_LIMIT: Duration = Duration::from_secs(60);

    /// Builds (or finds up to date) the `receiver` and `sender` examples; their directory.
    async fn examples_dir() -> anyhow::Result<PathBuf> {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let mut build = Command::new(cargo);
        // Without the variables cargo sets for this test process: build scripts that watch
        // them (ring watches CARGO_PKG_NAME) would otherwise rebuild on every alternation
        // between `cargo test` and this build.
        for (key, _) in std::env::vars_os() {
            if key.to_str().is_some_and(set_by_cargo_for_tests) {
                build.env_remove(key);
            }
        }
        build
            .args(["build", "--example", "receiver", "--example", "sender"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(Stdio::null())
            .kill_on_drop(true);
        let status = tokio::time::timeout(BUILD_LIMIT, build.status())
            .await
            .context("building the examples took too long")??;
        ensure!(status.success(), "building the examples failed: {status}");
        // This test runs from <target>/<profile>/deps; the examples sit beside it.
        let exe = std::env::current_exe()?;
        let profile = exe
            .parent()
            .and_then(|deps| deps.parent())
            .context("test binary outside a target directory")?;
        Ok(profile.join("examples"))
    }

    fn set_by_cargo_for_tests(key: &str) -> bool {
        [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
        ]
        .iter()
        .any(|prefix| key.starts_with(prefix))
            || matches!(
                key,
                "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
                    | "CARGO_RUSTC_CURRENT_DIR"
                    | "OUT_DIR"
            )
    }

    fn example(dir: &std::path::Path, name: &str, args: &[&str]) -> Command {
        let mut command = Command::new(dir.join(name));
        command
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        command
    }

    /// Reads `child`'s stdout lines until one contains `needle`; every line read so far.
    async fn read_until(
        lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
        needle: &str,
    ) -> anyhow::Result<Vec<String>> {
        let mut seen = Vec::new();
        let found = tokio::time::timeout(RUN_LIMIT, async {
            while let Some(line) = lines.next_line().await? {
                let hit = line.contains(needle);
                seen.push(line);
                if hit {
                    return anyhow::Ok(true);
                }
            }
            anyhow::Ok(false)
        })
        .await;
        ensure!(
            matches!(found, Ok(Ok(true))),
            "no line with {needle:?} in {seen:?}"
        );
        Ok(seen)
    }

    async fn terminate(child: &mut Child) -> anyhow::Result<std::process::ExitStatus> {
        let pid = child.id().context("receiver already reaped")?.to_string();
        let kill = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()?;
        ensure!(kill.success(), "kill -TERM {pid} failed");
        Ok(tokio::time::timeout(RUN_LIMIT, child.wait()).await??)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn receiver_and_sender_processes_exchange_requests_through_a_directory() {
        let dir = examples_dir().await.expect("the examples build");
        let directory = support::start_directory().await.unwrap();
        let url = support::url_of(&directory);
        let service: directory::registry::ServiceName = "echo-ex".parse().unwrap();
        let instance: directory::registry::InstanceId = "echo-ex-1".parse().unwrap();

        let mut receiver = example(
            &dir,
            "receiver",
            &[
                "--directory",
                &url,
                "--service",
                "echo-ex",
                "--instance",
                "echo-ex-1",
                "--verbose",
            ],
        )
        .spawn()
        .expect("receiver starts");
        let mut lines = BufReader::new(receiver.stdout.take().unwrap()).lines();
        read_until(&mut lines, "receiver echo-ex-1 of `echo-ex` listening on")
            .await
            .unwrap();
        assert!(
            directory.registry().instance(&service, &instance).is_some(),
            "the receiver registered before saying it listens"
        );

        let sender = example(
            &dir,
            "sender",
            &["--directory", &url, "--service", "echo-ex", "--count", "5"],
        );
        let output = tokio::time::timeout(RUN_LIMIT, {
            let mut sender = sender;
            sender.output()
        })
        .await
        .expect("the sender finished in time")
        .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "sender failed: {stdout}");
        assert!(
            stdout.contains("seq=5 acked=5 failed=0 reply=\"echo: message 5\""),
            "{stdout}"
        );
        assert!(stdout.contains("sent 5 · acked 5 · failed 0"), "{stdout}");

        let handled = read_until(&mut lines, "handled=5 from=sender/")
            .await
            .unwrap();
        assert!(
            handled.iter().any(|l| l.contains("attempt=1")),
            "{handled:?}"
        );
        let status = terminate(&mut receiver).await.unwrap();
        assert!(status.success(), "receiver exited with {status} on SIGTERM");
        read_until(&mut lines, "shutting down after 5 messages")
            .await
            .unwrap();
        assert!(
            directory.registry().instance(&service, &instance).is_none(),
            "the receiver deregistered on SIGTERM"
        );
        directory.shutdown().await;
    }
}
