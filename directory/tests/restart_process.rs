//! Three real `directory` processes with `--data-dir`, all killed at once and started
//! again: while one node was cut off (SIGSTOP) and deletes were still in flight. No live
//! registration may be lost and no deleted one may come back.

use std::collections::BTreeSet;
use std::time::Duration;

use directory_api::{Address, Client, InstanceFilter, Registration, ServiceName, Ttl};
use tokio::process::Command;
use tokio::time::Instant;

mod process_support;
use process_support::{
    BIN, NodeProcess as Node, ONE_SHOT_LIMIT, get_json, member_state, send_signal,
};

const NAMES: [&str; 3] = ["node-1", "node-2", "node-3"];

/// Starts `name` with its data directory, retrying for up to 5 s while the gossip port a
/// killed process held is not yet free.
async fn start(name: &str, gossip: &str, key: &str, join: Option<&str>, dir: &str) -> Node {
    let deadline = Instant::now() + Duration::from_secs(5);
    let extra = ["--data-dir", dir];
    loop {
        match process_support::spawn_node_with(name, gossip, key, join, &extra).await {
            Ok(node) => return node,
            Err(err) if Instant::now() < deadline => {
                eprintln!("{name} on {gossip} failed to start, retrying: {err:#}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(err) => panic!("{name} cannot start on {gossip}: {err:#}"),
        }
    }
}

async fn eventually<F: AsyncFnMut() -> bool>(what: &str, limit: Duration, mut cond: F) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out after {limit:?} waiting for: {what}");
}

async fn all_alive(node: &Node) -> bool {
    let client = directory::cli::http_client(Duration::from_secs(5)).expect("client builds");
    let members = get_json(&client, &format!("{}/v1/cluster/members", node.http)).await;
    NAMES
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
    api(node)
        .register(&orders(), &instance.parse().unwrap(), &registration)
        .await
        .expect("registered");
}

async fn deregister(node: &Node, instance: &str) {
    api(node)
        .deregister(&orders(), &instance.parse().unwrap())
        .await
        .expect("deregistered");
}

/// The instances `node` lists (empty if it does not answer).
async fn listed(node: &Node) -> BTreeSet<String> {
    match api(node)
        .lookup(&orders(), &InstanceFilter::default())
        .await
    {
        Ok(view) => view
            .instances
            .iter()
            .map(|r| r.instance.to_string())
            .collect(),
        Err(_) => BTreeSet::new(),
    }
}

async fn every_node_lists(nodes: &[Node], expected: &BTreeSet<String>) -> bool {
    for node in nodes {
        if &listed(node).await != expected {
            return false;
        }
    }
    true
}

fn names(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_cluster_restart_with_data_dirs_loses_no_registration_and_revives_no_deletion() {
    let keygen = process_support::output_within(Command::new(BIN).arg("keygen"), ONE_SHOT_LIMIT)
        .await
        .expect("keygen runs");
    let key = String::from_utf8(keygen.stdout).unwrap().trim().to_owned();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let dir = |i: usize| dirs[i].path().to_str().unwrap().to_owned();

    let first = start(NAMES[0], "127.0.0.1:0", &key, None, &dir(0)).await;
    let seed = first.gossip.clone();
    let mut nodes = vec![first];
    for (i, name) in NAMES.iter().enumerate().skip(1) {
        nodes.push(start(name, "127.0.0.1:0", &key, Some(&seed), &dir(i)).await);
    }
    for node in &nodes {
        eventually("three alive members", Duration::from_secs(20), async || {
            all_alive(node).await
        })
        .await;
    }

    // Registrations owned by every node, known everywhere.
    let (keep, del) = (names("keep", 6), names("del", 6));
    for (i, instance) in keep.iter().chain(&del).enumerate() {
        register(&nodes[i % 3], instance).await;
    }
    let everything: BTreeSet<String> = keep.iter().chain(&del).cloned().collect();
    eventually(
        "every registration everywhere",
        Duration::from_secs(20),
        async || every_node_lists(&nodes, &everything).await,
    )
    .await;

    // node-3 is cut off (stopped): it keeps the old records and misses what follows.
    send_signal(&nodes[2].child, "STOP").await.expect("SIGSTOP");
    for (i, instance) in del.iter().enumerate() {
        deregister(&nodes[i % 2], instance).await;
    }
    let late = names("late", 2);
    for (i, instance) in late.iter().enumerate() {
        register(&nodes[i % 2], instance).await;
    }
    // ...and every node is killed at once, with the last writes still travelling.
    for node in &mut nodes {
        node.child.start_kill().expect("SIGKILL");
    }
    let gossip: Vec<String> = nodes.iter().map(|n| n.gossip.clone()).collect();
    for node in &mut nodes {
        let _ = tokio::time::timeout(ONE_SHOT_LIMIT, node.child.wait()).await;
    }
    drop(nodes);

    let mut nodes = Vec::new();
    for (i, name) in NAMES.iter().enumerate() {
        let join = gossip[(i + 1) % 3].clone();
        nodes.push(start(name, &gossip[i], &key, Some(&join), &dir(i)).await);
    }
    let expected: BTreeSet<String> = keep.iter().chain(&late).cloned().collect();
    eventually(
        "every node lists exactly the live registrations",
        Duration::from_secs(40),
        async || every_node_lists(&nodes, &expected).await,
    )
    .await;
    // And it stays so across more anti-entropy rounds (5 s each): nothing comes back.
    let until = Instant::now() + Duration::from_secs(11);
    while Instant::now() < until {
        for node in &nodes {
            assert_eq!(listed(node).await, expected, "{} diverged", node.name);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
