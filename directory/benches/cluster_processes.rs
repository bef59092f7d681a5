//! End-to-end cluster benchmark with real `directory` processes on loopback, measured
//! through the HTTP API: time for a registration on one node to be visible on all others
//! (blocking queries on every other node), and time for all survivors to report a
//! SIGKILLed node dead (`/v1/cluster/members`, polled every 20 ms).
//!
//! Run: `cargo bench -p directory --bench cluster_processes` (optionally `-- 10` nodes).

use std::time::Duration;

use anyhow::{Result, bail};
use hdrhistogram::Histogram;
use serde_json::Value;
use tokio::time::Instant;

#[path = "../tests/process_support/mod.rs"]
mod process_support;
use process_support::{
    NodeProcess as Node, get_json, member_state as state_of, spawn_node as spawn,
};

async fn members(client: &reqwest::Client, node: &Node) -> Value {
    get_json(client, &format!("{}/v1/cluster/members", node.http)).await
}

async fn wait_all_alive(client: &reqwest::Client, nodes: &[Node]) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    for n in nodes {
        loop {
            let m = members(client, n).await;
            if nodes
                .iter()
                .all(|o| state_of(&m, &o.name).as_deref() == Some("alive"))
            {
                break;
            }
            if Instant::now() > deadline {
                bail!("cluster did not form");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

/// Blocks on `node` until `instance` shows up; returns when it did.
async fn wait_for(
    client: reqwest::Client,
    http: String,
    instance: String,
    index: u64,
) -> Result<Instant> {
    let mut index = index;
    loop {
        let url = format!("{http}/v1/services/bench?index={index}&wait=30s");
        let response = client.get(url).send().await?;
        let arrived = Instant::now();
        let next: u64 = response
            .headers()
            .get("x-directory-index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(index);
        let body: Value = response.json().await?;
        if body["instances"]
            .as_array()
            .is_some_and(|l| l.iter().any(|r| r["instance"] == instance.as_str()))
        {
            return Ok(arrived);
        }
        index = next;
    }
}

async fn index_of(client: &reqwest::Client, node: &Node) -> Result<u64> {
    let r = client
        .get(format!("{}/v1/services/bench", node.http))
        .send()
        .await?;
    Ok(r.headers()
        .get("x-directory-index")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

#[tokio::main]
async fn main() -> Result<()> {
    let n: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    let client = directory::cli::http_client(Duration::from_secs(60))?;
    let key = directory::gossip::ClusterKey::generate().to_base64();
    let mut nodes = vec![spawn("node-0", "127.0.0.1:0", &key, None).await?];
    let seed = nodes[0].gossip.clone();
    for i in 1..n {
        nodes.push(spawn(&format!("node-{i}"), "127.0.0.1:0", &key, Some(&seed)).await?);
    }
    wait_all_alive(&client, &nodes).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut propagation = Histogram::<u64>::new(3)?;
    let bench_service: directory_api::ServiceName = "bench".parse()?;
    let mut registration =
        directory_api::Registration::new(directory_api::Address::new("127.0.0.1:7000")?);
    registration.ttl = directory_api::Ttl::parse("1h")?;
    for w in 0..50 {
        let writer = w % n;
        let instance = format!("i-{w}");
        let mut waiters = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            if i != writer {
                let index = index_of(&client, node).await?;
                waiters.push(tokio::spawn(wait_for(
                    client.clone(),
                    node.http.clone(),
                    instance.clone(),
                    index,
                )));
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let writer_api = directory_api::Client::new(&nodes[writer].http)?;
        let instance_id: directory_api::InstanceId = instance.parse()?;
        let start = Instant::now();
        writer_api
            .register(&bench_service, &instance_id, &registration)
            .await?;
        let mut last = start;
        for w in waiters {
            last = last.max(w.await??);
        }
        propagation.record(u64::try_from((last - start).as_micros()).unwrap_or(u64::MAX))?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut detection = Histogram::<u64>::new(3)?;
    for round in 0..5 {
        let victim = 1 + (round * 3) % (n - 1);
        let gossip = nodes[victim].gossip.clone();
        let name = nodes[victim].name.clone();
        nodes[victim].child.kill().await?;
        let start = Instant::now();
        let mut pending: Vec<usize> = (0..n).filter(|&i| i != victim).collect();
        while !pending.is_empty() {
            let mut still = Vec::new();
            for &i in &pending {
                if state_of(&members(&client, &nodes[i]).await, &name).as_deref() != Some("dead") {
                    still.push(i);
                }
            }
            pending = still;
            if start.elapsed() > Duration::from_secs(60) {
                bail!("{name} not detected dead by all");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        detection.record(u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX))?;
        nodes[victim] = spawn(&name, &gossip, &key, Some(&seed)).await?;
        wait_all_alive(&client, &nodes).await?;
    }
    println!("{n} real processes on loopback, defaults, through the HTTP API:");
    println!(
        "  registration visible on all other nodes: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (50 writes)",
        propagation.value_at_quantile(0.5) as f64 / 1000.0,
        propagation.value_at_quantile(0.99) as f64 / 1000.0,
        propagation.max() as f64 / 1000.0
    );
    println!(
        "  SIGKILLed node reported dead by all: p50 {} ms, p99 {} ms ({} kills)",
        detection.value_at_quantile(0.5),
        detection.value_at_quantile(0.99),
        detection.len()
    );
    Ok(())
}
