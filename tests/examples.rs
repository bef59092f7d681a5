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
            // Only what a test passes: not a token or CA from the environment of `cargo test`.
            .env_remove("DIRECTORY_TOKEN")
            .env_remove("DIRECTORY_CA")
            .env_remove("PEER_DIRECTORY")
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

    /// How the example processes reach the directory: the flags given to the receiver and
    /// the environment given to the sender (so both spellings are exercised).
    struct Access<'a> {
        url: String,
        receiver_flags: Vec<&'a str>,
        sender_env: Vec<(&'a str, &'a str)>,
    }

    /// Runs the receiver, then a sender of 5 requests, then SIGTERMs the receiver; checks
    /// every request was answered and the receiver registered and deregistered.
    async fn exchange(directory: &directory::Server, access: Access<'_>) -> anyhow::Result<()> {
        let dir = examples_dir().await?;
        let service: directory::registry::ServiceName = "echo-ex".parse()?;
        let instance: directory::registry::InstanceId = "echo-ex-1".parse()?;
        let mut args = vec![
            "--directory",
            &access.url,
            "--service",
            "echo-ex",
            "--instance",
            "echo-ex-1",
            "--verbose",
        ];
        args.extend(&access.receiver_flags);
        let mut receiver = example(&dir, "receiver", &args).spawn()?;
        let mut lines = BufReader::new(receiver.stdout.take().context("stdout")?).lines();
        read_until(&mut lines, "receiver echo-ex-1 of `echo-ex` listening on").await?;
        ensure!(
            directory.registry().instance(&service, &instance).is_some(),
            "the receiver registered before saying it listens"
        );

        let output = run_sender(&dir, &access.url, &access.sender_env).await?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        ensure!(output.status.success(), "sender failed: {stdout}");
        ensure!(
            stdout.contains("seq=5 acked=5 failed=0 reply=\"echo: message 5\""),
            "{stdout}"
        );
        ensure!(stdout.contains("sent 5 · acked 5 · failed 0"), "{stdout}");

        let handled = read_until(&mut lines, "handled=5 from=sender/").await?;
        ensure!(
            handled.iter().any(|l| l.contains("attempt=1")),
            "{handled:?}"
        );
        let status = terminate(&mut receiver).await?;
        ensure!(status.success(), "receiver exited with {status} on SIGTERM");
        read_until(&mut lines, "shutting down after 5 messages").await?;
        ensure!(
            directory.registry().instance(&service, &instance).is_none(),
            "the receiver deregistered on SIGTERM"
        );
        Ok(())
    }

    /// The sender example sending 5 requests to `echo-ex`, to its end.
    async fn run_sender(
        dir: &std::path::Path,
        url: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<std::process::Output> {
        let mut sender = example(
            dir,
            "sender",
            &["--directory", url, "--service", "echo-ex", "--count", "5"],
        );
        sender.envs(env.iter().copied());
        tokio::time::timeout(RUN_LIMIT, sender.output())
            .await
            .context("the sender did not finish in time")?
            .map_err(Into::into)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn receiver_and_sender_processes_exchange_requests_through_a_directory() {
        let directory = support::start_directory().await.unwrap();
        let access = Access {
            url: support::url_of(&directory),
            receiver_flags: vec![],
            sender_env: vec![],
        };
        exchange(&directory, access).await.unwrap();
        directory.shutdown().await;
    }

    /// A directory with ACLs and HTTPS, as deploy/ runs it: an ACL file with one token per
    /// example service, and a certificate for `localhost` signed by a CA of the test.
    struct Secured {
        node: directory::Server,
        files: PathBuf,
        echo_token: String,
        sender_token: String,
    }

    impl Secured {
        /// Starts the node; its files go to a directory named after `test` (tests run in
        /// parallel in one process).
        async fn start(test: &str) -> anyhow::Result<Self> {
            let files =
                std::env::temp_dir().join(format!("examples-{test}-{}", std::process::id()));
            std::fs::create_dir_all(&files)?;
            let mut acl = directory::acl::AclFile::default();
            let (_, echo_token) =
                acl.create_token("echo", vec!["write:echo-ex".parse()?, "read:*".parse()?]);
            let (_, sender_token) =
                acl.create_token("sender", vec!["write:sender".parse()?, "read:*".parse()?]);
            acl.save(&files.join("acl.json"))?;
            write_certificates(&files)?;
            let config = directory::Config {
                http_addr: "127.0.0.1:0".parse()?,
                acl_file: Some(files.join("acl.json")),
                tls: Some(directory::listener::TlsFiles {
                    cert: files.join("node.pem"),
                    key: files.join("node.key"),
                    client_ca: None,
                }),
                ..directory::Config::default()
            };
            let node = directory::Server::start(config).await?;
            Ok(Self {
                node,
                files,
                echo_token,
                sender_token,
            })
        }

        fn url(&self) -> String {
            format!("https://localhost:{}", self.node.http_addr().port())
        }

        fn ca(&self) -> String {
            self.files.join("ca.pem").display().to_string()
        }

        async fn stop(self) {
            self.node.shutdown().await;
            let _ = std::fs::remove_dir_all(&self.files);
        }
    }

    /// `ca.pem`, and `node.pem`/`node.key` for `localhost` signed by it, into `dir`.
    fn write_certificates(dir: &std::path::Path) -> anyhow::Result<()> {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        let key = KeyPair::generate()?;
        let leaf = CertificateParams::new(vec!["localhost".to_owned()])?.signed_by(&key, &ca)?;
        std::fs::write(dir.join("ca.pem"), ca.pem())?;
        std::fs::write(dir.join("node.pem"), leaf.pem())?;
        std::fs::write(dir.join("node.key"), key.serialize_pem())?;
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn examples_with_their_tokens_and_the_ca_exchange_requests_through_a_secured_directory() {
        let secured = Secured::start("secured-exchange").await.unwrap();
        let ca = secured.ca();
        let access = Access {
            url: secured.url(),
            receiver_flags: vec!["--token", &secured.echo_token, "--ca", &ca],
            sender_env: vec![
                ("DIRECTORY_TOKEN", &secured.sender_token),
                ("DIRECTORY_CA", &ca),
            ],
        };
        exchange(&secured.node, access).await.unwrap();
        secured.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn examples_without_a_token_or_the_ca_are_refused_by_a_secured_directory() {
        let secured = Secured::start("secured-refusals").await.unwrap();
        let dir = examples_dir().await.unwrap();
        let (url, ca) = (secured.url(), secured.ca());
        let no_token = run_sender(&dir, &url, &[("DIRECTORY_CA", &ca)])
            .await
            .unwrap();
        let no_ca = run_sender(&dir, &url, &[("DIRECTORY_TOKEN", &secured.sender_token)])
            .await
            .unwrap();
        let cases = [
            ("no token", no_token, "answered 401"),
            ("no CA", no_ca, "invalid peer certificate"),
        ];
        for (what, output, cause) in cases {
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                !output.status.success(),
                "{what}: the sender started: {stderr}"
            );
            assert!(stderr.contains(cause), "{what}: {stderr}");
        }
        let (_, listed) = secured.node.registry().services();
        assert!(listed.is_empty(), "nothing registered: {listed:?}");
        secured.stop().await;
    }
}
