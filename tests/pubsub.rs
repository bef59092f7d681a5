//! Publish/subscribe through a real directory node and in-process peers: fan-out to every
//! subscribed group, competing consumers within a group, wildcards, failover within a
//! group, the no-subscribers error and the ACL on subscriptions.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use directory::acl::AclFile;
use peer_sdk::{Peer, PublishError, PublishOptions};
use support::{start_directory, url_of, wait_until};

/// What each subscriber handled: `(group, instance) -> payloads`.
type Seen = Arc<Mutex<BTreeMap<(String, String), Vec<String>>>>;

/// Starts a subscriber of `service` with `subscriptions` `(pattern, group)`; its handler
/// records every payload under `label` and acks it.
async fn subscriber(
    url: &str,
    service: &str,
    instance: &str,
    subscriptions: &[(&str, Option<&str>)],
    label: &str,
    seen: &Seen,
) -> Result<Peer> {
    let mut builder = Peer::builder_for_test(service)
        .directory([url.to_owned()])
        .instance(instance);
    for (pattern, group) in subscriptions {
        builder = match group {
            Some(g) => builder.subscribe_group(*pattern, *g),
            None => builder.subscribe(*pattern),
        };
    }
    let peer = builder.start().await?;
    let mut inbox = peer.incoming();
    let (seen, key) = (seen.clone(), (label.to_owned(), instance.to_owned()));
    tokio::spawn(async move {
        while let Some(msg) = inbox.next().await {
            // Recorded as `topic payload`: the handler sees the topic it was published on.
            let topic = msg.topic().unwrap_or("-");
            let ordering = msg.key().map(|k| String::from_utf8_lossy(k).into_owned());
            let ordering = ordering.map_or(String::new(), |k| format!(" key={k}"));
            let text = format!(
                "{topic} {}{ordering}",
                String::from_utf8_lossy(msg.payload())
            );
            seen.lock()
                .unwrap()
                .entry(key.clone())
                .or_default()
                .push(text);
            msg.ack();
        }
    });
    Ok(peer)
}

/// Waits until the directory lists `groups` groups subscribed to `topic`.
async fn wait_for_groups(node: &directory::Server, topic: &str, groups: usize) -> bool {
    let topic = topic.parse().unwrap();
    wait_until(Duration::from_secs(10), || async {
        node.registry().topic_subscribers(&topic).groups.len() == groups
    })
    .await
}

/// Payloads a group handled, across its instances, sorted.
fn handled_by(seen: &Seen, group: &str) -> Vec<String> {
    let mut all: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|((g, _), _)| g == group)
        .flat_map(|(_, list)| list.clone())
        .collect();
    all.sort();
    all
}

#[tokio::test]
async fn each_group_handles_every_message_once_and_its_instances_share_them() -> Result<()> {
    let node = start_directory().await?;
    let url = url_of(&node);
    let seen = Seen::default();
    // billing-1 has two overlapping patterns: it must still get one copy per message.
    let billing_subs = [("orders.*", None), ("orders.created", None)];
    let _b1 = subscriber(
        &url,
        "billing",
        "billing-1",
        &billing_subs,
        "billing",
        &seen,
    )
    .await?;
    let _b2 = subscriber(
        &url,
        "billing",
        "billing-2",
        &billing_subs[..1],
        "billing",
        &seen,
    )
    .await?;
    let audit = [("orders.>", Some("audit"))];
    let _a1 = subscriber(&url, "audit-eu", "audit-1", &audit, "audit", &seen).await?;
    let _a2 = subscriber(&url, "audit-us", "audit-2", &audit, "audit", &seen).await?;
    assert!(wait_for_groups(&node, "orders.created", 2).await);

    let publisher = Peer::builder_for_test("shop")
        .directory([url.clone()])
        .start()
        .await?;
    let mut expected = Vec::new();
    for i in 0..40 {
        let payload = format!("m{i:02}");
        let opts = PublishOptions::ordered(format!("k{}", i % 4));
        let outcome = publisher
            .publish_with("orders.created", payload.clone(), opts)
            .await?;
        let groups: Vec<&str> = outcome.groups.iter().map(|g| g.group.as_str()).collect();
        assert_eq!(groups, ["audit", "billing"]);
        assert!(outcome.all_acked(), "{outcome:?}");
        expected.push(format!("orders.created {payload} key=k{}", i % 4));
    }
    // orders.* does not match a three-token topic: only audit (orders.>) gets it.
    let outcome = publisher.publish("orders.eu.created", "eu").await?;
    let groups: Vec<&str> = outcome.groups.iter().map(|g| g.group.as_str()).collect();
    assert_eq!(groups, ["audit"]);

    assert_eq!(handled_by(&seen, "billing"), expected);
    let mut audit_expected = expected.clone();
    audit_expected.push("orders.eu.created eu".into());
    audit_expected.sort();
    assert_eq!(handled_by(&seen, "audit"), audit_expected);
    for ((group, instance), list) in seen.lock().unwrap().iter() {
        assert!(
            !list.is_empty(),
            "{group}/{instance} got no share of the load"
        );
    }
    publisher.shutdown().await;
    node.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_copy_fails_over_to_the_other_instance_of_its_group() -> Result<()> {
    let node = start_directory().await?;
    let url = url_of(&node);
    let seen = Seen::default();
    // jobs-1 takes messages and never settles them, like an instance that hung.
    let hung = Peer::builder_for_test("jobs")
        .directory([url.clone()])
        .instance("jobs-1")
        .subscribe("jobs.>")
        .start()
        .await?;
    let held = Arc::new(Mutex::new(Vec::new()));
    let mut inbox = hung.incoming();
    let holder = held.clone();
    tokio::spawn(async move {
        while let Some(msg) = inbox.next().await {
            holder.lock().unwrap().push(msg);
        }
    });
    let _ok = subscriber(&url, "jobs", "jobs-2", &[("jobs.>", None)], "jobs", &seen).await?;
    assert!(wait_for_groups(&node, "jobs.run", 1).await);
    assert!(
        wait_until(Duration::from_secs(10), || async {
            let topic = "jobs.run".parse().unwrap();
            let view = node.registry().topic_subscribers(&topic);
            view.groups[0].instances.len() == 2
        })
        .await
    );

    let publisher = Peer::builder_for_test("shop")
        .directory([url.clone()])
        .start()
        .await?;
    for i in 0..6 {
        let outcome = publisher.publish("jobs.run", format!("j{i}")).await?;
        assert!(outcome.all_acked(), "{outcome:?}");
    }
    assert!(
        !held.lock().unwrap().is_empty(),
        "the hung instance was never tried"
    );
    let expected: Vec<String> = (0..6).map(|i| format!("jobs.run j{i}")).collect();
    assert_eq!(handled_by(&seen, "jobs"), expected);
    publisher.shutdown().await;
    node.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn publishing_with_no_subscriber_fails_at_once_only_when_asked() -> Result<()> {
    let node = start_directory().await?;
    let publisher = Peer::builder_for_test("shop")
        .directory([url_of(&node)])
        .start()
        .await?;
    let outcome = publisher.publish("nobody.listens", "x").await?;
    assert!(outcome.groups.is_empty());
    let opts = PublishOptions::default().no_subscribers();
    let err = tokio::time::timeout(
        Duration::from_secs(2),
        publisher.publish_with("nobody.listens", "x", opts),
    )
    .await?
    .unwrap_err();
    assert!(matches!(err, PublishError::NoSubscribers(ref t) if t == "nobody.listens"));
    let bad = publisher.publish("Not A Topic", "x").await.unwrap_err();
    assert!(matches!(bad, PublishError::InvalidTopic(_)), "{bad:?}");
    publisher.shutdown().await;
    node.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_token_needs_a_subscribe_rule_for_the_pattern() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("pubsub-acl-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("acl.json");
    let mut file = AclFile::default();
    let (_, plain) = file.create_token("plain", vec!["write:billing".parse()?]);
    let rules = vec!["write:billing".parse()?, "subscribe:orders.*".parse()?];
    let (_, subscriber) = file.create_token("subscriber", rules);
    file.save(&path)?;
    let config = directory::Config {
        http_addr: "127.0.0.1:0".parse()?,
        acl_file: Some(path),
        ..directory::Config::default()
    };
    let node = directory::Server::start(config).await?;
    let url = url_of(&node);
    let start = |token: String, pattern: &'static str| {
        Peer::builder_for_test("billing")
            .directory([url.clone()])
            .directory_token(token)
            .subscribe(pattern)
            .start()
    };
    let refused = tokio::time::timeout(Duration::from_secs(20), start(plain, "orders.>")).await?;
    let err = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("forbidden"), "not refused: {err:?}");
    let wide = tokio::time::timeout(Duration::from_secs(20), start(subscriber.clone(), ">"));
    assert!(wide.await?.is_err(), "'>' reaches beyond orders.*");
    assert!(node.registry().is_empty(), "nothing was registered");
    let allowed = start(subscriber, "orders.>").await?;
    assert_eq!(node.registry().topics().patterns.len(), 1);
    allowed.shutdown().await;
    node.shutdown().await;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[tokio::test]
async fn a_group_whose_only_instance_crashed_gets_its_copies_later_and_holds_nobody_back()
-> Result<()> {
    let node = start_directory().await?;
    let url = url_of(&node);
    let seen = Seen::default();
    let _fast = subscriber(&url, "fast", "fast-1", &[("ticks", None)], "fast", &seen).await?;
    let crashed = subscriber(&url, "slow", "slow-1", &[("ticks", None)], "slow", &seen).await?;
    assert!(wait_for_groups(&node, "ticks", 2).await);
    let publisher = Peer::builder_for_test("clock")
        .directory([url.clone()])
        .start()
        .await?;
    // Dropped without shutdown: like a crash, its registration stays until its lease ends.
    drop(crashed);
    let publishes: Vec<_> = (0..5)
        .map(|i| {
            let publisher = publisher.clone();
            tokio::spawn(async move { publisher.publish("ticks", format!("t{i}")).await })
        })
        .collect();
    let fast_done = wait_until(Duration::from_secs(5), || async {
        handled_by(&seen, "fast").len() == 5
    });
    assert!(fast_done.await, "the healthy group was held back");
    assert!(handled_by(&seen, "slow").is_empty());
    // The crashed instance's lease runs out (well past the ack timeout): the group has no
    // instance left in the directory. Then it comes back with a new instance.
    assert!(
        wait_for_groups(&node, "ticks", 1).await,
        "the lease did not run out"
    );
    let _back = subscriber(&url, "slow", "slow-2", &[("ticks", None)], "slow", &seen).await?;
    for publish in publishes {
        let outcome = publish.await??;
        assert!(outcome.all_acked(), "{outcome:?}");
    }
    let expected: Vec<String> = (0..5).map(|i| format!("ticks t{i}")).collect();
    assert_eq!(handled_by(&seen, "slow"), expected);
    publisher.shutdown().await;
    node.shutdown().await;
    Ok(())
}
