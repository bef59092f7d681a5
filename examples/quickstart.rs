//! The first thing to run: a 3-node directory cluster and two peers in one process.
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! The nodes gossip over loopback with a fresh cluster key. `billing` registers through
//! node 1 and `orders` through node 3; each finds the other through whichever node it asks,
//! then they talk directly over QUIC: requests both ways, each answered by the other's handler.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use directory::gossip::{ClusterKey, GossipSettings, MemberState, Security};
use directory::{Config, Server};
use peer_sdk::Peer;

/// What happened, for the test that runs this example.
#[derive(Debug)]
pub struct Report {
    /// Alive members each node saw once the cluster formed.
    pub alive_per_node: Vec<usize>,
    /// Replies `orders` got from `billing`, and `billing` from `orders`.
    pub replies: (usize, usize),
    /// Instances of `billing` and `orders` as node 2 (used by neither) lists them.
    pub seen_on_node2: (usize, usize),
}

/// Starts the cluster and the peers, exchanges `rounds` requests each way, stops it all.
pub async fn run(rounds: usize) -> anyhow::Result<Report> {
    let nodes = start_cluster(3).await?;
    let alive_per_node = wait_for_cluster(&nodes).await?;
    println!("cluster: 3 nodes, each sees {alive_per_node:?} alive members");

    let url = |i: usize| format!("http://{}", nodes[i].http_addr());
    let billing = Peer::builder("billing")
        .directory([url(0), url(1)])
        .start()
        .await?;
    let orders = Peer::builder("orders")
        .directory([url(2), url(1)])
        .start()
        .await?;
    println!(
        "peers: billing on {} (via node 1), orders on {} (via node 3)",
        billing.local_addr(),
        orders.local_addr()
    );
    let billing_answers = answer(&billing, "billing");
    let orders_answers = answer(&orders, "orders");

    let seen_on_node2 = wait_for_replication(&nodes[1]).await?;
    println!(
        "node 2 lists billing ×{} and orders ×{}",
        seen_on_node2.0, seen_on_node2.1
    );

    let mut replies = (0, 0);
    for i in 0..rounds {
        let start = Instant::now();
        let reply = orders.request("billing", format!("invoice #{i}?")).await?;
        println!(
            "orders → billing: {:?} in {:?}",
            String::from_utf8_lossy(&reply),
            start.elapsed()
        );
        replies.0 += 1;
        let start = Instant::now();
        let reply = billing
            .request("orders", format!("order #{i} paid"))
            .await?;
        println!(
            "billing → orders: {:?} in {:?}",
            String::from_utf8_lossy(&reply),
            start.elapsed()
        );
        replies.1 += 1;
    }

    billing.shutdown().await;
    orders.shutdown().await;
    billing_answers.abort();
    orders_answers.abort();
    for node in nodes {
        node.shutdown().await;
    }
    Ok(Report {
        alive_per_node,
        replies,
        seen_on_node2,
    })
}

/// `n` nodes on loopback ports chosen by the OS; every node after the first joins the first.
async fn start_cluster(n: usize) -> anyhow::Result<Vec<Server>> {
    let key = ClusterKey::generate();
    let mut nodes: Vec<Server> = Vec::new();
    for i in 1..=n {
        let mut gossip = GossipSettings::new(Security::Key(key.clone()));
        gossip.bind = "127.0.0.1:0".parse()?;
        if let Some(seed) = nodes.first().and_then(Server::gossip_addr) {
            gossip.join = vec![seed.to_string()];
        }
        let mut config = Config {
            http_addr: "127.0.0.1:0".parse()?,
            cluster: Some(gossip),
            ..Config::default()
        };
        config.registry.node = format!("node-{i}").parse()?;
        nodes.push(Server::start(config).await.context("starting a node")?);
    }
    Ok(nodes)
}

/// Waits until every node sees every node alive; returns the alive count per node.
async fn wait_for_cluster(nodes: &[Server]) -> anyhow::Result<Vec<usize>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut alive = Vec::new();
        for node in nodes {
            let gossip = node.gossip().context("node runs without gossip")?;
            let members = gossip.members().await;
            alive.push(
                members
                    .iter()
                    .filter(|m| m.state == MemberState::Alive)
                    .count(),
            );
        }
        if alive.iter().all(|&a| a == nodes.len()) {
            return Ok(alive);
        }
        ensure!(Instant::now() < deadline, "cluster did not form: {alive:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `node` lists both services (registered through the other nodes).
async fn wait_for_replication(node: &Server) -> anyhow::Result<(usize, usize)> {
    let count = |service: &str| {
        let service = service.parse().expect("valid service name");
        node.registry()
            .lookup(&service, &Default::default())
            .instances
            .len()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = (count("billing"), count("orders"));
        if seen.0 > 0 && seen.1 > 0 {
            return Ok(seen);
        }
        ensure!(
            Instant::now() < deadline,
            "registrations did not replicate: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Answers every request to `peer` with a short text.
fn answer(peer: &Peer, name: &'static str) -> tokio::task::JoinHandle<()> {
    let mut inbox = peer.incoming();
    tokio::spawn(async move {
        while let Some(msg) = inbox.next().await {
            let text = format!("{name} got {:?}", String::from_utf8_lossy(msg.payload()));
            msg.reply(text);
        }
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    support::init_logging("warn");
    let report = run(3).await?;
    println!(
        "done: {} + {} requests answered directly between the peers",
        report.replies.0, report.replies.1
    );
    Ok(())
}
