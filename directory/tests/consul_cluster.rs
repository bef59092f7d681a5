//! The Consul API across a real in-process cluster: a registration through the Consul API on
//! one node is visible through the Consul and native APIs on another.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use directory::gossip::{ClusterKey, GossipSettings, Security};
use directory::{Config, Server};
use serde_json::{Value, json};

async fn node(name: &str, key: &ClusterKey, join: Option<SocketAddr>) -> Server {
    let mut config = Config::for_test();
    config.registry.node = name.parse().unwrap();
    let mut cluster = GossipSettings::for_test(Security::Key(key.clone()));
    cluster.join = join.iter().map(ToString::to_string).collect();
    config.cluster = Some(cluster);
    Server::start(config).await.expect("node starts")
}

async fn get(server: &Server, path: &str) -> (Value, reqwest::header::HeaderMap) {
    let response = common::client()
        .get(common::url(server, path))
        .send()
        .await
        .unwrap();
    let headers = response.headers().clone();
    (response.json().await.unwrap(), headers)
}

#[tokio::test]
async fn a_consul_registration_on_one_node_is_seen_through_both_apis_on_another() {
    let key = ClusterKey::generate();
    let first = node("node-1", &key, None).await;
    let third = node("node-3", &key, first.gossip_addr()).await;
    let body = json!({"Name": "orders", "ID": "orders-1", "Address": "10.1.1.1", "Port": 7000,
                      "Check": {"TTL": "30s", "Status": "passing"}});
    let response = common::client()
        .put(common::url(&first, "/v1/agent/service/register"))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let seen = common::wait_until(Duration::from_secs(15), || async {
        get(&third, "/v1/health/service/orders?passing")
            .await
            .0
            .as_array()
            .is_some_and(|a| a.len() == 1)
    })
    .await;
    assert!(seen, "the registration never reached node-3");
    let (health, headers) = get(&third, "/v1/health/service/orders?passing").await;
    assert_eq!(
        health[0]["Node"]["Node"], "node-1",
        "the owner is the node that took it"
    );
    assert_eq!(health[0]["Checks"][0]["Status"], "passing");
    assert_eq!(headers["x-consul-knownleader"], "true");
    let (native, _) = get(&third, "/v1/services/orders").await;
    assert_eq!(native["instances"][0]["address"], "10.1.1.1:7000");
    let (nodes, _) = get(&third, "/v1/catalog/nodes").await;
    let mut names: Vec<_> = nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["Node"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["node-1", "node-3"]);
    third.shutdown().await;
    first.shutdown().await;
}
