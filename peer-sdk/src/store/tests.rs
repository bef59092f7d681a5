use super::*;
use crate::proto::{DeadLetter, SendRequest, StoreOp};
use std::sync::mpsc;
use std::time::Instant;

fn req(service: &str, key: Option<&'static str>, payload: &'static str) -> SendRequest {
    SendRequest {
        service: service.into(),
        target: None,
        key: key.map(|k| Bytes::from_static(k.as_bytes())),
        payload: Bytes::from_static(payload.as_bytes()),
        request: false,
        deadline: Instant::now() + Duration::from_secs(3600),
        no_responders: false,
        ack_timeout: None,
        max_attempts: None,
    }
}

/// Runs `ops` through a committer and returns its reports once it has stopped.
fn commit(store: &Store, ops: Vec<StoreOp>) -> Vec<StoreReport> {
    let (tx, rx) = mpsc::channel();
    let c = Committer::start(
        store,
        WallClock::now(Instant::now()),
        Duration::from_secs(60),
        move |r| {
            let _ = tx.send(r);
        },
    )
    .unwrap();
    for op in ops {
        c.submit(op);
    }
    c.stop();
    rx.try_iter().collect()
}

fn letter(id: u64, service: &str) -> DeadLetter {
    DeadLetter {
        id,
        service: service.into(),
        key: None,
        payload: Bytes::new(),
        reason: DeadLetterReason::Rejected {
            reason: "bad".into(),
        },
        attempts: 2,
        last_instance: Some("r1".into()),
    }
}

#[test]
fn put_messages_are_listed_in_id_order_per_service_and_resolved_ones_are_gone() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let ops = vec![
        StoreOp::Put {
            id: 1,
            req: req("b", Some("k"), "one"),
        },
        StoreOp::Put {
            id: 2,
            req: req("a", None, "two"),
        },
        StoreOp::Put {
            id: 3,
            req: req("b", Some("k"), "three"),
        },
        StoreOp::Resolve {
            service: "a".into(),
            id: 2,
            dead: None,
        },
        StoreOp::Resolve {
            service: "b".into(),
            id: 3,
            dead: Some(Box::new(letter(3, "b"))),
        },
    ];
    let reports = commit(&store, ops);
    assert!(
        matches!(reports.last(), Some(StoreReport::Persisted(5))),
        "{reports:?}"
    );
    let outbox: Vec<_> = store.outbox().unwrap().map(Result::unwrap).collect();
    assert_eq!(outbox.len(), 1);
    assert_eq!((outbox[0].id, outbox[0].service.as_str()), (1, "b"));
    assert_eq!(outbox[0].payload, Bytes::from_static(b"one"));
    assert_eq!(outbox[0].key, Some(Bytes::from_static(b"k")));
    let dead: Vec<_> = store.dead_letters().unwrap().map(Result::unwrap).collect();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].message.id, 3);
    assert_eq!(dead[0].message.payload, Bytes::from_static(b"three"));
    assert_eq!(dead[0].attempts, 2);
    let usage = store.usage().unwrap();
    assert_eq!(usage.messages, 1);
    assert_eq!(usage.dead_letters, 1);
    assert_eq!(usage.bytes, message_cost(1, 1, 3));
}

#[test]
fn replayed_dead_letters_return_to_the_outbox_with_their_id_and_purge_empties_tables() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut ops = Vec::new();
    for id in 1..=5 {
        ops.push(StoreOp::Put {
            id,
            req: req("svc", None, "p"),
        });
        ops.push(StoreOp::Resolve {
            service: "svc".into(),
            id,
            dead: Some(Box::new(letter(id, "svc"))),
        });
    }
    commit(&store, ops);
    assert!(
        store
            .replay_dead_letter(2, Duration::from_secs(60))
            .unwrap()
    );
    assert!(
        !store
            .replay_dead_letter(2, Duration::from_secs(60))
            .unwrap()
    );
    let ids: Vec<u64> = store.outbox().unwrap().map(|m| m.unwrap().id).collect();
    assert_eq!(ids, vec![2]);
    assert_eq!(
        store.replay_dead_letters(Duration::from_secs(60)).unwrap(),
        4
    );
    let ids: Vec<u64> = store.outbox().unwrap().map(|m| m.unwrap().id).collect();
    assert_eq!(ids, vec![1, 2, 3, 4, 5]);
    assert_eq!(store.usage().unwrap().bytes, 5 * message_cost(3, 0, 1));
    assert_eq!(store.purge_outbox().unwrap(), 5);
    assert_eq!(store.usage().unwrap(), Usage::default());
    commit(
        &store,
        vec![
            StoreOp::Put {
                id: 9,
                req: req("svc", None, "p"),
            },
            StoreOp::Resolve {
                service: "svc".into(),
                id: 9,
                dead: Some(Box::new(letter(9, "svc"))),
            },
        ],
    );
    assert_eq!(store.purge_dead_letters().unwrap(), 1);
    assert_eq!(store.dead_letters().unwrap().count(), 0);
}

#[test]
fn the_next_id_session_and_services_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let session = {
        let store = Store::open(dir.path()).unwrap();
        let state = store.start_peer(None, Some("inst-1".into())).unwrap();
        commit(
            &store,
            vec![
                StoreOp::Put {
                    id: 7,
                    req: req("x", None, "p"),
                },
                StoreOp::Put {
                    id: 8,
                    req: req("y", None, "p"),
                },
                StoreOp::Resolve {
                    service: "y".into(),
                    id: 8,
                    dead: None,
                },
                StoreOp::Complete {
                    session: 42,
                    id: 5,
                    reply: None,
                },
            ],
        );
        state.session
    };
    let store = Store::open(dir.path()).unwrap();
    let state = store.start_peer(None, None).unwrap();
    assert_eq!(state.session, session);
    assert_eq!(state.next_id, 9);
    assert_eq!(state.instance.as_deref(), Some("inst-1"));
    assert_eq!(state.services, vec!["x".to_owned()]);
    assert_eq!(state.floors, vec![(42, 5)]);
}

#[test]
fn loads_page_through_one_service_and_lookups_find_handled_messages() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut ops: Vec<StoreOp> = (1..=5)
        .map(|id| StoreOp::Put {
            id,
            req: req("s", None, "p"),
        })
        .collect();
    ops.push(StoreOp::Put {
        id: 6,
        req: req("t", None, "p"),
    });
    ops.push(StoreOp::Complete {
        session: 1,
        id: 3,
        reply: Some(Bytes::from_static(b"r")),
    });
    ops.push(StoreOp::Load {
        service: "s".into(),
        after: 1,
        max: 3,
    });
    ops.push(StoreOp::Load {
        service: "s".into(),
        after: 4,
        max: 3,
    });
    ops.push(StoreOp::Lookup { session: 1, id: 3 });
    ops.push(StoreOp::Lookup { session: 1, id: 4 });
    let reports = commit(&store, ops);
    let loads: Vec<(Vec<u64>, bool)> = reports
        .iter()
        .filter_map(|r| match r {
            StoreReport::Loaded {
                messages,
                exhausted,
                ..
            } => Some((messages.iter().map(|m| m.id).collect(), *exhausted)),
            _ => None,
        })
        .collect();
    assert_eq!(loads, vec![(vec![2, 3, 4], false), (vec![5], true)]);
    let lookups: Vec<_> = reports
        .iter()
        .filter_map(|r| match r {
            StoreReport::LookedUp { id, found, .. } => Some((*id, found.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        lookups,
        vec![(3, Some(Some(Bytes::from_static(b"r")))), (4, None)]
    );
}

#[test]
fn expired_receiver_records_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    commit(
        &store,
        vec![StoreOp::Complete {
            session: 1,
            id: 1,
            reply: None,
        }],
    );
    committer::expire_completed(store.database(), 0).unwrap();
    assert_eq!(
        commit(&store, vec![StoreOp::Lookup { session: 1, id: 1 }]).len(),
        1
    );
    committer::expire_completed(store.database(), u64::MAX).unwrap();
    let reports = commit(&store, vec![StoreOp::Lookup { session: 1, id: 1 }]);
    assert!(
        matches!(reports[..], [StoreReport::LookedUp { found: None, .. }]),
        "{reports:?}"
    );
}

#[test]
fn a_garbage_file_is_a_foreign_store_error_and_is_left_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = b"this is not a database, just some bytes that someone left here".repeat(100);
    std::fs::write(dir.path().join(FILE_NAME), &garbage).unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Foreign { .. }), "{err:?}");
    assert_eq!(std::fs::read(dir.path().join(FILE_NAME)).unwrap(), garbage);
}

#[test]
fn a_damaged_store_is_a_typed_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        let ops = (1..=200)
            .map(|id| StoreOp::Put {
                id,
                req: req("s", None, "payload payload"),
            })
            .collect();
        commit(&store, ops);
    }
    let path = dir.path().join(FILE_NAME);
    let mut bytes = std::fs::read(&path).unwrap();
    // Keep redb's magic header, overwrite everything after it.
    for b in bytes.iter_mut().skip(64) {
        *b = 0xA5;
    }
    std::fs::write(&path, &bytes).unwrap();
    let result = Store::open(dir.path()).and_then(|s| s.outbox()?.collect::<Result<Vec<_>, _>>());
    assert!(result.is_err(), "a damaged store opened: {result:?}");
}

#[test]
fn another_redb_database_and_another_format_version_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Database::create(dir.path().join(FILE_NAME)).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(TableDefinition::<u64, u64>::new("theirs"))
            .unwrap();
        txn.commit().unwrap();
    }
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Foreign { .. }), "{err:?}");

    let dir = tempfile::tempdir().unwrap();
    {
        let db = Database::create(dir.path().join(FILE_NAME)).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert(KEY_FORMAT, 99u32.to_be_bytes().as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let err = Store::open(dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::UnsupportedFormat {
                found: 99,
                supported: FORMAT_VERSION
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_store_in_use_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Store::open(dir.path()).unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Locked(_)), "{err:?}");
}

#[test]
fn per_message_options_and_retried_attempts_survive_in_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut own = req("svc", None, "own");
    own.ack_timeout = Some(Duration::from_millis(1500));
    own.max_attempts = std::num::NonZeroU32::new(4);
    let ops = vec![
        StoreOp::Put { id: 1, req: own },
        StoreOp::Put {
            id: 2,
            req: req("svc", None, "default"),
        },
        StoreOp::Attempted {
            service: "svc".into(),
            id: 1,
            attempts: 2,
        },
        // A message already resolved is not brought back by a late count.
        StoreOp::Attempted {
            service: "svc".into(),
            id: 9,
            attempts: 1,
        },
        StoreOp::Load {
            service: "svc".into(),
            after: 0,
            max: 10,
        },
    ];
    let reports = commit(&store, ops);
    assert!(matches!(reports.first(), Some(StoreReport::Persisted(4))));
    let Some(StoreReport::Loaded { messages, .. }) = reports.get(1) else {
        panic!("{reports:?}");
    };
    let first = &messages[0];
    assert_eq!((first.id, first.attempts), (1, 2));
    assert_eq!(first.req.ack_timeout, Some(Duration::from_millis(1500)));
    assert_eq!(first.req.max_attempts.map(|n| n.get()), Some(4));
    assert_eq!(
        (messages[1].attempts, messages[1].req.ack_timeout),
        (0, None)
    );
    let listed: Vec<_> = store.outbox().unwrap().map(Result::unwrap).collect();
    assert_eq!(
        listed.len(),
        2,
        "the count of a missing message adds nothing"
    );
    assert_eq!(listed[0].attempts, 2);
    assert_eq!(listed[0].ack_timeout, Some(Duration::from_millis(1500)));
    assert_eq!(listed[0].max_attempts.map(|n| n.get()), Some(4));
    assert_eq!(listed[1].max_attempts, None);
}

/// Writes a store of format 1 by hand: `n` outbox messages and one dead letter.
fn write_v1_store(dir: &Path, n: u64) {
    use records::{DeadRecordV1, MessageRecordV1, ReasonRecord};
    let v1 = |payload: &str| MessageRecordV1 {
        target: None,
        key: Some(b"k".to_vec()),
        payload: payload.as_bytes().to_vec(),
        request: false,
        no_responders: false,
        deadline_ms: u64::MAX / 2,
        accepted_ms: 1,
    };
    let db = Database::create(dir.join(FILE_NAME)).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut meta = txn.open_table(META).unwrap();
        meta.insert(KEY_FORMAT, 1u32.to_be_bytes().as_slice())
            .unwrap();
        let mut outbox = txn.open_table(OUTBOX).unwrap();
        for id in 1..=n {
            let rec = encode(&v1(&format!("m{id}")));
            outbox.insert(("svc", id), rec.as_slice()).unwrap();
        }
        let dead = DeadRecordV1 {
            service: "svc".into(),
            message: v1("gone"),
            reason: ReasonRecord::ShuttingDown,
            attempts: 3,
            last_instance: Some("r1".into()),
            at_ms: 5,
        };
        let mut table = txn.open_table(DEAD).unwrap();
        table.insert(1_000_000, encode(&dead).as_slice()).unwrap();
    }
    txn.commit().unwrap();
}

#[test]
fn a_format_1_store_is_migrated_at_open_and_keeps_every_record() {
    let dir = tempfile::tempdir().unwrap();
    // More than one migration chunk.
    let n = BULK_CHUNK as u64 + 10;
    write_v1_store(dir.path(), n);
    let store = Store::open(dir.path()).unwrap();
    let outbox: Vec<_> = store.outbox().unwrap().map(Result::unwrap).collect();
    assert_eq!(outbox.len() as u64, n);
    for (m, id) in outbox.iter().zip(1..) {
        assert_eq!(m.id, id);
        assert_eq!(m.payload, Bytes::from(format!("m{id}")));
        assert_eq!((m.attempts, m.ack_timeout, m.max_attempts), (0, None, None));
    }
    let dead: Vec<_> = store.dead_letters().unwrap().map(Result::unwrap).collect();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].message.payload, Bytes::from_static(b"gone"));
    assert_eq!(dead[0].attempts, 3);
    drop(store);
    // Migrated once: the file now says format 2 and opens as such.
    let store = Store::open(dir.path()).unwrap();
    let txn = store.db.begin_read().unwrap();
    let meta = txn.open_table(META).unwrap();
    let format = meta.get(KEY_FORMAT).unwrap().unwrap().value().to_vec();
    assert_eq!(format, FORMAT_VERSION.to_be_bytes());
}

#[test]
fn a_format_1_store_with_a_damaged_record_is_a_corrupt_error_and_stays_format_1() {
    let dir = tempfile::tempdir().unwrap();
    write_v1_store(dir.path(), 3);
    {
        let db = Database::create(dir.path().join(FILE_NAME)).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(OUTBOX)
            .unwrap()
            .insert(("svc", 2), [0xffu8, 0xff].as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    let db = Database::create(dir.path().join(FILE_NAME)).unwrap();
    let txn = db.begin_read().unwrap();
    let meta = txn.open_table(META).unwrap();
    let format = meta.get(KEY_FORMAT).unwrap().unwrap().value().to_vec();
    assert_eq!(
        format,
        1u32.to_be_bytes(),
        "a failed migration changes nothing"
    );
}

#[test]
fn floors_keep_the_highest_completed_id_per_session_across_batches() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let complete = |session, id| StoreOp::Complete {
        session,
        id,
        reply: None,
    };
    commit(&store, vec![complete(1, 9)]);
    commit(
        &store,
        vec![
            complete(1, 7),
            complete(2, 6),
            complete(1, 3),
            complete(2, 4),
        ],
    );
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    let mut floors = store.start_peer(None, None).unwrap().floors;
    floors.sort_unstable();
    assert_eq!(floors, vec![(1, 9), (2, 6)]);
}
