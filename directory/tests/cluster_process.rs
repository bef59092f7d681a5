//! Three real `directory` processes on loopback: replication, SIGKILL detection, restart
//! catch-up, a SIGTERM leave listed as `left`, and the `members` / `keygen` subcommands.

use std::time::Duration;

use directory_api::{Address, Client, InstanceFilter, Registration, ServiceName, Ttl};
use serde_json::Value;
use tokio::process::Command;
use tokio::time::Instant;

mod process_support;
use process_support::{BIN, NodeProcess as Node, ONE_SHOT_LIMIT, get_json, member_state};

fn client() -> reqwest::Client {
    directory::cli::http_client(Duration::from_secs(10)).expect("client builds")
}

/// Starts a node and waits for its "gossip started" and "listening" log lines.
async fn spawn(name: &str, gossip_addr: &str, key: &str, join: Option<&str>) -> Node {
    process_support::spawn_node(name, gossip_addr, key, join)
        .await
        .expect("directory starts and logs its addresses")
}

/// The `/v1/cluster/members` row of `name` as seen by `node`.
async fn member_row(node: &Node, name: &str) -> Value {
    let members = get(node, "/v1/cluster/members").await;
    members["members"]
        .as_array()
        .and_then(|rows| rows.iter().find(|m| m["name"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("{name} not listed by {}: {members}", node.name))
}

/// Every field docs/design.md promises for a member, as `seen_by` lists the `nodes`.
async fn assert_members_fields(seen_by: &Node, nodes: &[&Node]) {
    let members = get(seen_by, "/v1/cluster/members").await;
    assert_eq!(members["node"], seen_by.name.as_str(), "{members}");
    for node in nodes {
        let row = member_row(seen_by, &node.name).await;
        assert_eq!(row["address"], node.gossip.as_str(), "{row}");
        assert_eq!(row["state"], "alive", "{row}");
        assert!(row["incarnation"].is_u64(), "{row}");
        assert!(row["generation"].as_u64().is_some_and(|g| g > 0), "{row}");
        let changed = row["last_change"].as_str().unwrap_or_default();
        assert!(
            changed.len() >= 20 && changed.ends_with('Z') && changed.contains('T'),
            "last_change is RFC 3339 UTC: {row}"
        );
        assert_eq!(row["local"], node.name == seen_by.name, "{row}");
    }
}

/// A one-shot subcommand's output; fails the test if it runs past [`ONE_SHOT_LIMIT`].
async fn output(cmd: &mut Command) -> std::process::Output {
    process_support::output_within(cmd, ONE_SHOT_LIMIT)
        .await
        .expect("the subcommand exits in time")
}

/// Starts node-2 again on the gossip address it had. The port was freed by the kill, so
/// another process may hold it for a moment: retried for up to 5 s, then the test fails.
async fn respawn_on(gossip: &str, key: &str, join: &str) -> Node {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match process_support::spawn_node("node-2", gossip, key, Some(join)).await {
            Ok(node) => return node,
            Err(err) if Instant::now() < deadline => {
                eprintln!("restart on {gossip} failed, retrying: {err:#}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(err) => panic!("node-2 cannot start again on {gossip}: {err:#}"),
        }
    }
}

async fn get(node: &Node, path: &str) -> Value {
    get_json(&client(), &format!("{}{path}", node.http)).await
}

async fn eventually<F: AsyncFnMut() -> bool>(what: &str, limit: Duration, mut cond: F) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out after {limit:?} waiting for: {what}");
}

async fn all_alive(node: &Node, names: &[&str]) -> bool {
    let members = get(node, "/v1/cluster/members").await;
    names
        .iter()
        .all(|n| member_state(&members, n).as_deref() == Some("alive"))
}

fn api(node: &Node) -> Client {
    Client::new(&node.http).expect("client builds")
}

fn orders() -> ServiceName {
    ServiceName::new("orders").unwrap()
}

async fn register(node: &Node, instance: &str) {
    let mut registration = Registration::new(Address::new("127.0.0.1:7000").unwrap());
    registration.ttl = Ttl::parse("1h").unwrap();
    let instance = instance.parse().unwrap();
    api(node)
        .register(&orders(), &instance, &registration)
        .await
        .expect("registered");
}

async fn has_instance(node: &Node, instance: &str) -> bool {
    let view = api(node)
        .lookup(&orders(), &InstanceFilter::default())
        .await
        .expect("lookup answers");
    view.instances
        .iter()
        .any(|r| r.instance.as_str() == instance)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_replicate_catch_up_a_killed_node_and_list_a_terminated_one_as_left() {
    let keygen = output(Command::new(BIN).arg("keygen")).await;
    assert!(keygen.status.success());
    let key = String::from_utf8(keygen.stdout).unwrap().trim().to_owned();
    assert!(
        key.parse::<directory::gossip::ClusterKey>().is_ok(),
        "{key}"
    );

    let n1 = spawn("node-1", "127.0.0.1:0", &key, None).await;
    let n2 = spawn("node-2", "127.0.0.1:0", &key, Some(&n1.gossip)).await;
    let n3 = spawn("node-3", "127.0.0.1:0", &key, Some(&n1.gossip)).await;
    let names = ["node-1", "node-2", "node-3"];
    for n in [&n1, &n2, &n3] {
        eventually("three alive members", Duration::from_secs(20), async || {
            all_alive(n, &names).await
        })
        .await;
    }

    register(&n1, "orders-1").await;
    for n in [&n2, &n3] {
        eventually(
            "lookup on another node",
            Duration::from_secs(10),
            async || has_instance(n, "orders-1").await,
        )
        .await;
    }

    let generation_before = member_row(&n1, "node-2").await["generation"].as_u64();
    assert_members_fields(&n1, &[&n1, &n2, &n3]).await;

    // SIGKILL node 2: the others declare it dead.
    let n2_gossip = n2.gossip.clone();
    let mut n2 = n2;
    n2.child.kill().await.unwrap();
    for n in [&n1, &n3] {
        eventually(
            "node-2 reported dead",
            Duration::from_secs(15),
            async || {
                member_state(&get(n, "/v1/cluster/members").await, "node-2").as_deref()
                    == Some("dead")
            },
        )
        .await;
    }
    register(&n3, "orders-2").await;

    // Restarted on the same gossip address, it rejoins at once and catches up.
    let n2 = respawn_on(&n2_gossip, &key, &n1.gossip).await;
    for n in [&n1, &n2, &n3] {
        eventually("node-2 alive again", Duration::from_secs(20), async || {
            all_alive(n, &names).await
        })
        .await;
    }
    let generation_after = member_row(&n1, "node-2").await["generation"].as_u64();
    assert!(
        generation_after > generation_before,
        "a restart gets a higher generation: {generation_before:?} -> {generation_after:?}"
    );
    for instance in ["orders-1", "orders-2"] {
        eventually(
            "restarted node caught up",
            Duration::from_secs(20),
            async || has_instance(&n2, instance).await,
        )
        .await;
    }

    let out = output(Command::new(BIN).args([
        "members",
        "--addr",
        n1.http.trim_start_matches("http://"),
    ]))
    .await;
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{table}");
    for expected in [
        "NODE",
        "STATE",
        "node-1 (local)",
        "node-2",
        "node-3",
        "alive",
    ] {
        assert!(table.contains(expected), "{expected} missing in\n{table}");
    }

    // SIGTERM: node 3 leaves gracefully, exits 0, and the others list it as left, not dead.
    let mut n3 = n3;
    let pid = n3.child.id().expect("node-3 still running").to_string();
    let kill = output(Command::new("kill").args(["-TERM", &pid])).await;
    assert!(kill.status.success());
    let exit = tokio::time::timeout(Duration::from_secs(20), n3.child.wait())
        .await
        .expect("node-3 exits after SIGTERM")
        .unwrap();
    assert!(exit.success(), "graceful exit, got {exit:?}");
    for n in [&n1, &n2] {
        eventually(
            "node-3 listed as left",
            Duration::from_secs(15),
            async || {
                member_state(&get(n, "/v1/cluster/members").await, "node-3").as_deref()
                    == Some("left")
            },
        )
        .await;
    }
}

#[tokio::test]
async fn join_without_a_cluster_key_is_refused_with_a_clear_message() {
    let out = output(
        Command::new(BIN)
            .args([
                "serve",
                "--http-addr",
                "127.0.0.1:0",
                "--join",
                "127.0.0.1:9",
            ])
            .env_remove("DIRECTORY_CLUSTER_KEY"),
    )
    .await;
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("--cluster-key") && err.contains("--insecure-no-cluster-key"),
        "{err}"
    );
    let out = output(Command::new(BIN).args([
        "serve",
        "--http-addr",
        "127.0.0.1:0",
        "--cluster-key",
        "not-a-key",
    ]))
    .await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("--cluster-key")
    );
}

#[tokio::test]
async fn a_join_that_is_not_host_port_is_refused() {
    let out = output(
        Command::new(BIN)
            .args([
                "serve",
                "--http-addr",
                "127.0.0.1:0",
                "--insecure-no-cluster-key",
            ])
            .args(["--gossip-addr", "127.0.0.1:0", "--join", "no-port-here"]),
    )
    .await;
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("--join") && err.contains("host:port"), "{err}");
}
