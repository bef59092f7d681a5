//! The data directory with a real registry: what is written comes back, bad files are
//! typed errors.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::*;
use crate::registry::{
    Address, Filter, InstanceId, Now, Registration, Registry, RegistryConfig, ServiceName, Ttl,
};

fn svc(s: &str) -> ServiceName {
    s.parse().unwrap()
}

fn inst(s: &str) -> InstanceId {
    s.parse().unwrap()
}

fn reg(port: u16) -> Registration {
    Registration {
        ttl: Ttl::from_duration(Duration::from_secs(60)).unwrap(),
        ..Registration::new(Address::new(&format!("10.0.0.1:{port}")).unwrap())
    }
}

/// A registry persisted in `dir`, restored from what is there.
fn open(dir: &Path) -> (Registry, Writer) {
    let data = DataDir::open(dir).unwrap();
    let loaded = data.load(SystemTime::now()).unwrap();
    let (journal, writer) = data.start_writer().unwrap();
    let registry = Registry::with_hooks(RegistryConfig::for_test(), None, Some(journal));
    registry.restore(loaded.entries, loaded.index, loaded.clock, Now::current());
    (registry, writer)
}

fn close(registry: Registry, writer: Writer) {
    registry.close_journal();
    writer.stop();
}

fn live_instances(r: &Registry, service: &str) -> Vec<String> {
    r.lookup(&svc(service), &Filter::default())
        .instances
        .iter()
        .map(|rec| rec.instance.to_string())
        .collect()
}

#[tokio::test]
async fn registrations_and_deletions_survive_a_restart_with_index_and_clock() {
    let dir = tempfile::tempdir().unwrap();
    let (r, writer) = open(dir.path());
    let now = Instant::now();
    for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
        r.register(&svc("s"), &inst(name), reg(80 + i as u16), now)
            .unwrap();
    }
    r.deregister(&svc("s"), &inst("b"), now);
    r.flushed().await.unwrap();
    let (index, held) = (r.index(), r.held_versions());
    close(r, writer);

    let (r, writer) = open(dir.path());
    assert_eq!(live_instances(&r, "s"), vec!["a", "c"]);
    assert_eq!(r.held_versions().len(), 3, "the tombstone came back too");
    assert_eq!(
        r.held_versions()
            .iter()
            .map(|(s, i, v, l)| (s.clone(), i.clone(), *v, *l))
            .collect::<Vec<_>>(),
        held
    );
    assert!(r.index() >= index, "the change index never goes back");
    let next = r
        .register(&svc("s"), &inst("b"), reg(99), Instant::now())
        .unwrap();
    assert!(next.index > index);
    let tomb_version = held.iter().find(|h| h.1 == "b").unwrap().2;
    let new_version = r.held_versions().iter().find(|h| h.1 == "b").unwrap().2;
    assert!(
        new_version > tomb_version,
        "the clock continues past what was stored"
    );
    close(r, writer);
}

#[test]
fn a_foreign_redb_file_and_garbage_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        let other: TableDefinition<'_, u64, u64> = TableDefinition::new("other");
        txn.open_table(other).unwrap().insert(1, 2).unwrap();
        txn.commit().unwrap();
    }
    let err = DataDir::open(dir.path()).unwrap_err();
    assert!(matches!(err, PersistError::Foreign { .. }), "{err}");
    assert!(
        err.to_string().contains("not a directory registry"),
        "{err}"
    );

    std::fs::write(&path, b"this is not a database at all, just some bytes").unwrap();
    let err = DataDir::open(dir.path()).unwrap_err();
    assert!(
        matches!(err, PersistError::Foreign { .. } | PersistError::Corrupt(_)),
        "{err}"
    );
}

#[test]
fn a_damaged_entry_is_a_corruption_error_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::open(dir.path()).unwrap();
    let txn = data.db.begin_write().unwrap();
    txn.open_table(ENTRIES)
        .unwrap()
        .insert(("s", "i"), &b"\x07garbage"[..])
        .unwrap();
    txn.commit().unwrap();
    let err = data.load(SystemTime::now()).unwrap_err();
    assert!(
        matches!(err, PersistError::Corrupt(ref m) if m.contains("s/i")),
        "{err}"
    );
}

#[test]
fn a_data_directory_in_use_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let _first = DataDir::open(dir.path()).unwrap();
    let err = DataDir::open(dir.path()).unwrap_err();
    assert!(matches!(err, PersistError::Locked(_)), "{err}");
}

#[tokio::test]
async fn leases_count_the_downtime_and_old_tombstones_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (r, writer) = open(dir.path());
    let now = Instant::now();
    r.register(&svc("s"), &inst("a"), reg(80), now).unwrap();
    r.register(&svc("s"), &inst("gone"), reg(81), now).unwrap();
    r.deregister(&svc("s"), &inst("gone"), now);
    r.flushed().await.unwrap();
    close(r, writer);

    let data = DataDir::open(dir.path()).unwrap();
    let later = SystemTime::now() + Duration::from_secs(30);
    let loaded = data.load(later).unwrap();
    let lease = loaded
        .entries
        .iter()
        .find_map(|e| match &e.entry.state {
            crate::registry::EntryState::Live(l) => Some(l.lease_remaining),
            crate::registry::EntryState::Tombstone { .. } => None,
        })
        .unwrap();
    assert!(lease <= Duration::from_secs(30), "{lease:?}");
    let much_later = SystemTime::now() + Duration::from_secs(3 * 3600);
    let loaded = data.load(much_later).unwrap();
    let r = Registry::new(RegistryConfig::for_test());
    let stats = r.restore(loaded.entries, loaded.index, loaded.clock, Now::current());
    assert_eq!((stats.live, stats.tombstones, stats.skipped), (1, 0, 1));
    let expired = r.reap(Instant::now());
    assert_eq!(
        expired.expired, 1,
        "a lease that ran out while down expires at once"
    );
}
