//! Shared helpers of the SDK integration tests.
#![allow(dead_code)]

pub mod proxy;

use peer_sdk::{InstanceInfo, Message, Peer};
use std::future::Future;
use std::time::Duration;

/// A test peer with static instances only.
pub async fn peer(service: &str, statics: &[InstanceInfo]) -> Peer {
    let mut b = Peer::builder_for_test(service);
    for s in statics {
        b = b.static_instance(s.clone());
    }
    b.start().await.expect("peer starts")
}

/// Runs `handler` for every message of `peer` in a background task.
pub fn serve<F>(peer: &Peer, handler: F) -> tokio::task::JoinHandle<()>
where
    F: Fn(Message) + Send + 'static,
{
    let mut inbox = peer.incoming();
    tokio::spawn(async move {
        while let Some(msg) = inbox.next().await {
            handler(msg);
        }
    })
}

/// Polls `cond` every 10 ms until it holds or `limit` passes.
pub async fn wait_for<F, Fut>(limit: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}
