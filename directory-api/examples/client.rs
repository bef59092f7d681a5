//! The directory's Rust client in a few calls: register an instance, look it up, watch it
//! change, renew its lease and deregister it.
//!
//! Start a node (`cargo run --bin directory`), then:
//! `cargo run -p directory-api --example client [URL ...]` (default `http://127.0.0.1:7700`;
//! several URLs fail over). Set `DIRECTORY_TOKEN` if the directory requires a token.

use std::time::Duration;

use directory_api::{
    Address, Client, InstanceFilter, InstanceId, Registration, ServiceName, Tags, Ttl, WatchEvent,
};
use futures_util::StreamExt;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut urls: Vec<String> = std::env::args().skip(1).collect();
    if urls.is_empty() {
        urls.push("http://127.0.0.1:7700".into());
    }
    for line in run(urls).await? {
        println!("{line}");
    }
    Ok(())
}

/// Runs the walk-through against the nodes at `urls` and returns what it saw, line by line.
pub async fn run(urls: Vec<String>) -> anyhow::Result<Vec<String>> {
    let mut builder = Client::builder(urls).timeout(Duration::from_secs(5));
    if let Ok(token) = std::env::var("DIRECTORY_TOKEN") {
        builder = builder.bearer_token(token);
    }
    let client = builder.build()?;
    let service: ServiceName = "example-orders".parse()?;
    let instance: InstanceId = "orders-1".parse()?;
    let mut lines = Vec::new();

    let mut changes = client.watch(Some(&service)).await?;

    let mut registration = Registration::new(Address::new("127.0.0.1:7000")?);
    registration.tags = Tags::new(vec!["v2".into()])?;
    registration.ttl = Ttl::parse("30s")?;
    let record = client.register(&service, &instance, &registration).await?;
    lines.push(format!(
        "registered {}/{} at {} (index {})",
        record.service, record.instance, record.address, record.index
    ));

    let view = client
        .lookup(&service, &InstanceFilter::default().tag("v2"))
        .await?;
    for r in &view.instances {
        lines.push(format!("found {} at {}", r.instance, r.address));
    }

    let renewed = client.heartbeat(&service, &instance).await?;
    lines.push(format!(
        "lease renewed until {}",
        humantime::format_rfc3339_seconds(renewed.lease_expires_at)
    ));
    client.deregister(&service, &instance).await?;

    for _ in 0..2 {
        let next = tokio::time::timeout(Duration::from_secs(5), changes.next()).await?;
        match next {
            Some(Ok(WatchEvent::Change(change))) => lines.push(format!(
                "watched: {} {}/{}",
                change.kind.as_str(),
                change.service,
                change.instance
            )),
            Some(Ok(other)) => lines.push(format!("watched: {other:?}")),
            Some(Err(e)) => return Err(e.into()),
            None => break,
        }
    }
    Ok(lines)
}
