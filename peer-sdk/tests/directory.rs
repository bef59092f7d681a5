//! Peers through a real directory server (`directory::Server` on loopback).

mod common;

use bytes::Bytes;
use common::{serve, wait_for};
use directory::registry::{InstanceId, Record, ServiceName};
use parking_lot::Mutex;
use peer_sdk::{DeadLetterReason, Nack, Peer, SendError, SendOptions};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

async fn directory() -> directory::Server {
    directory::Server::start(directory::Config::for_test())
        .await
        .expect("directory starts")
}

fn url(d: &directory::Server) -> String {
    format!("http://{}", d.http_addr())
}

async fn peer_via(urls: &[String], service: &str) -> Peer {
    Peer::builder_for_test(service)
        .directory(urls.to_vec())
        .start()
        .await
        .expect("peer starts")
}

fn record(d: &directory::Server, service: &str, instance: &str) -> Option<Arc<Record>> {
    let s = ServiceName::new(service).unwrap();
    let i = InstanceId::new(instance).unwrap();
    d.registry().instance(&s, &i)
}

#[tokio::test]
async fn registration_publishes_address_fingerprint_tags_and_meta() {
    let d = directory().await;
    let p = Peer::builder_for_test("billing")
        .directory([url(&d)])
        .tags(["v2"])
        .meta("zone", "a")
        .start()
        .await
        .unwrap();
    let r = record(&d, "billing", p.instance()).expect("registered");
    assert_eq!(r.address.as_str(), p.local_addr().to_string());
    assert_eq!(
        r.fingerprint,
        Some(p.fingerprint()),
        "one Fingerprint type on both sides"
    );
    assert_eq!(r.tags.to_vec(), ["v2"]);
    assert_eq!(r.meta.iter().collect::<Vec<_>>(), [("zone", "a")]);
    p.shutdown().await;
    assert!(
        record(&d, "billing", p.instance()).is_none(),
        "shutdown deregisters"
    );
    d.shutdown().await;
}

#[tokio::test]
async fn two_and_three_peers_send_request_broadcast_and_keep_key_order() {
    let d = directory().await;
    let urls = vec![url(&d)];
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut receivers = Vec::new();
    for _ in 0..2 {
        let r = peer_via(&urls, "orders").await;
        let s = seen.clone();
        let me = r.instance().to_owned();
        serve(&r, move |m| {
            s.lock()
                .push((me.clone(), m.key().cloned(), m.payload().clone()));
            if m.is_request() {
                let reply = [b"from ".as_slice(), me.as_bytes()].concat();
                m.reply(reply);
            } else {
                m.ack();
            }
        });
        receivers.push(r);
    }
    let a = peer_via(&urls, "billing").await;
    a.send("orders", &b"one"[..]).await.unwrap();
    let reply = a.request("orders", &b"who?"[..]).await.unwrap();
    assert!(reply.starts_with(b"from orders-"), "{reply:?}");
    let outcomes = a.broadcast("orders", &b"all"[..]).await.unwrap();
    assert_eq!(outcomes.len(), 2);
    assert!(outcomes.iter().all(|o| o.result.is_ok()));
    let mut pending = Vec::new();
    for i in 0..100u32 {
        pending.push(
            a.enqueue("orders", i.to_string(), SendOptions::ordered("k"))
                .await
                .unwrap(),
        );
    }
    for p in pending {
        p.await.unwrap();
    }
    let seen = seen.lock().clone();
    let ordered: Vec<u32> = seen
        .iter()
        .filter(|(_, k, _)| k.is_some())
        .map(|(_, _, p)| std::str::from_utf8(p).unwrap().parse().unwrap())
        .collect();
    assert_eq!(ordered, (0..100).collect::<Vec<_>>());
    let all = seen
        .iter()
        .filter(|(_, _, p)| p == &Bytes::from_static(b"all"))
        .count();
    assert_eq!(all, 2, "broadcast reached both instances");
    a.shutdown().await;
    for r in receivers {
        r.shutdown().await;
    }
    d.shutdown().await;
}

#[tokio::test]
async fn nack_and_deadline_dead_letters_through_the_directory() {
    let d = directory().await;
    let urls = vec![url(&d)];
    let strict = peer_via(&urls, "strict").await;
    serve(&strict, |m| m.nack(Nack::DeadLetter("invalid".into())));
    let silent = peer_via(&urls, "silent").await;
    let held = Arc::new(Mutex::new(Vec::new()));
    let h = held.clone();
    serve(&silent, move |m| h.lock().push(m));
    let a = peer_via(&urls, "client").await;
    let mut dead = a.dead_letters();
    let e = a.send("strict", &b"x"[..]).await.unwrap_err();
    assert!(
        matches!(&e, SendError::DeadLettered(d) if matches!(d.reason, DeadLetterReason::Rejected { .. }))
    );
    let opts = SendOptions::default().deadline(Duration::from_millis(600));
    let e = a.send_with("silent", &b"y"[..], opts).await.unwrap_err();
    assert!(
        matches!(&e, SendError::DeadLettered(d) if matches!(d.reason, DeadLetterReason::DeadlineExceeded { .. }))
    );
    assert_eq!(dead.next().await.unwrap().service, "strict");
    assert_eq!(dead.next().await.unwrap().service, "silent");
    for p in [&a, &strict, &silent] {
        p.shutdown().await;
    }
    d.shutdown().await;
}

#[tokio::test]
async fn unknown_service_is_found_once_it_registers() {
    let d = directory().await;
    let urls = vec![url(&d)];
    let a = peer_via(&urls, "early").await;
    let a2 = a.clone();
    let send = tokio::spawn(async move { a2.send("late", &b"hi"[..]).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let late = peer_via(&urls, "late").await;
    let got = Arc::new(AtomicUsize::new(0));
    let g = got.clone();
    serve(&late, move |m| {
        g.fetch_add(1, Ordering::SeqCst);
        m.ack();
    });
    send.await.unwrap().unwrap();
    assert_eq!(got.load(Ordering::SeqCst), 1);
    // A second instance appears: the blocking query brings it into the view.
    let late2 = peer_via(&urls, "late").await;
    serve(&late2, |m| m.ack());
    assert!(
        wait_for(Duration::from_secs(5), || async {
            a.instances("late").await.unwrap().len() == 2
        })
        .await
    );
    let outcomes = a.broadcast("late", &b"both"[..]).await.unwrap();
    assert_eq!(outcomes.iter().filter(|o| o.result.is_ok()).count(), 2);
    for p in [&a, &late, &late2] {
        p.shutdown().await;
    }
    d.shutdown().await;
}

#[tokio::test]
async fn lost_registration_is_restored_by_the_lease_task() {
    let d = directory().await;
    let p = peer_via(&[url(&d)], "phoenix").await;
    let s = ServiceName::new("phoenix").unwrap();
    let i = InstanceId::new(p.instance()).unwrap();
    assert!(d.registry().deregister(&s, &i, tokio::time::Instant::now()));
    assert!(record(&d, "phoenix", p.instance()).is_none());
    // The next heartbeat gets 404 and re-registers (TTL 2 s: heartbeat every ~667 ms).
    assert!(
        wait_for(Duration::from_secs(5), || async {
            record(&d, "phoenix", p.instance()).is_some()
        })
        .await
    );
    p.shutdown().await;
    d.shutdown().await;
}

#[tokio::test]
async fn fails_over_to_the_next_directory_url() {
    let d = directory().await;
    let dead = {
        let gone = directory().await;
        let u = url(&gone);
        gone.shutdown().await;
        u
    };
    let urls = vec![dead, url(&d)];
    let b = peer_via(&urls, "svc-b").await;
    serve(&b, |m| m.ack());
    let a = peer_via(&urls, "svc-a").await;
    a.send("svc-b", &b"x"[..]).await.unwrap();
    assert!(record(&d, "svc-a", a.instance()).is_some());
    a.shutdown().await;
    b.shutdown().await;
    d.shutdown().await;
}

#[tokio::test]
async fn directory_outage_does_not_stop_peers_that_know_each_other() {
    let d = directory().await;
    let urls = vec![url(&d)];
    let b = peer_via(&urls, "steady").await;
    serve(&b, |m| m.ack());
    let a = peer_via(&urls, "caller").await;
    a.send("steady", &b"before"[..]).await.unwrap();
    d.shutdown().await;
    for _ in 0..20 {
        a.send("steady", &b"during"[..]).await.unwrap();
    }
    assert!(
        wait_for(Duration::from_secs(5), || async {
            !a.directory_available()
        })
        .await
    );
    a.send("steady", &b"still"[..]).await.unwrap();
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn receiver_verifying_senders_refuses_an_unregistered_sender() {
    let d = directory().await;
    let urls = vec![url(&d)];
    let guarded = Peer::builder_for_test("guarded")
        .directory(urls.clone())
        .configure(|c| c.verify_senders = true)
        .start()
        .await
        .unwrap();
    let got = Arc::new(AtomicUsize::new(0));
    let g = got.clone();
    serve(&guarded, move |m| {
        g.fetch_add(1, Ordering::SeqCst);
        m.ack();
    });
    let member = peer_via(&urls, "member").await;
    member.send("guarded", &b"ok"[..]).await.unwrap();
    // Same claimed name, but not registered with this certificate: refused.
    let outsider = Peer::builder_for_test("member")
        .instance(member.instance())
        .static_instance(guarded.info())
        .start()
        .await
        .unwrap();
    let opts = SendOptions::default().deadline(Duration::from_secs(3));
    let e = outsider
        .send_with("guarded", &b"sneaky"[..], opts)
        .await
        .unwrap_err();
    // The receiver closed the connection with UNAUTHORIZED_SENDER (6), not another error.
    let SendError::DeadLettered(dl) = &e else {
        panic!("{e:?}")
    };
    let last_error = match &dl.reason {
        DeadLetterReason::DeadlineExceeded { last_error } => last_error.clone(),
        other => panic!("{other:?}"),
    };
    assert!(
        matches!(&last_error, Some(peer_sdk::Cause::Unreachable { detail, .. })
            if detail.contains("code 6 (UnauthorizedSender)")),
        "{dl:?}"
    );
    assert_eq!(got.load(Ordering::SeqCst), 1);
    for p in [&outsider, &member, &guarded] {
        p.shutdown().await;
    }
    d.shutdown().await;
}

#[tokio::test]
async fn instance_removed_from_the_directory_stops_receiving() {
    let d = directory().await;
    let urls = vec![url(&d)];
    let counts: Arc<Mutex<std::collections::HashMap<String, usize>>> = Arc::default();
    let mut receivers = Vec::new();
    for ttl in [60, 2] {
        // The first one (removed below) renews only every 20 s, so its lease task does not
        // re-register it during the test.
        let r = Peer::builder_for_test("rotating")
            .directory(urls.clone())
            .configure(|c| c.ttl = Duration::from_secs(ttl))
            .start()
            .await
            .unwrap();
        let (c, me) = (counts.clone(), r.instance().to_owned());
        serve(&r, move |m| {
            *c.lock().entry(me.clone()).or_default() += 1;
            m.ack();
        });
        receivers.push(r);
    }
    let a = peer_via(&urls, "client").await;
    for _ in 0..10 {
        a.send("rotating", &b"x"[..]).await.unwrap();
    }
    let leaving = receivers[0].instance().to_owned();
    let s = ServiceName::new("rotating").unwrap();
    assert!(d.registry().deregister(
        &s,
        &InstanceId::new(&leaving).unwrap(),
        tokio::time::Instant::now()
    ));
    assert!(
        wait_for(Duration::from_secs(5), || async {
            a.instances("rotating").await.unwrap().len() == 1
        })
        .await
    );
    counts.lock().clear();
    for _ in 0..20 {
        a.send("rotating", &b"y"[..]).await.unwrap();
    }
    assert_eq!(counts.lock().get(&leaving), None, "{:?}", counts.lock());
    a.shutdown().await;
    for r in receivers {
        r.shutdown().await;
    }
    d.shutdown().await;
}

#[tokio::test]
async fn a_lookup_without_any_directory_answering_names_that_cause_at_the_deadline() {
    let d = directory().await;
    let a = peer_via(&[url(&d)], "caller").await;
    d.shutdown().await;
    let opts = SendOptions::default().deadline(Duration::from_secs(2));
    let e = a.send_with("unknown", &b"x"[..], opts).await.unwrap_err();
    let SendError::DeadLettered(dl) = &e else {
        panic!("{e:?}")
    };
    assert!(
        matches!(
            &dl.reason,
            DeadLetterReason::DeadlineExceeded {
                last_error: Some(peer_sdk::Cause::DirectoryUnreachable { .. })
            }
        ),
        "{dl:?}"
    );
    assert_eq!(dl.attempts, 0);
    a.shutdown().await;
}

#[tokio::test]
async fn a_service_nobody_registered_names_no_instances_at_the_deadline() {
    let d = directory().await;
    let a = peer_via(&[url(&d)], "caller").await;
    let opts = SendOptions::default().deadline(Duration::from_secs(1));
    let e = a.send_with("unknown", &b"x"[..], opts).await.unwrap_err();
    let SendError::DeadLettered(dl) = &e else {
        panic!("{e:?}")
    };
    assert_eq!(
        dl.reason,
        DeadLetterReason::DeadlineExceeded {
            last_error: Some(peer_sdk::Cause::NoInstances)
        }
    );
    a.shutdown().await;
    d.shutdown().await;
}
