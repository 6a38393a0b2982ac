//! The conformance suite that every [`Store`] backend must pass, so that the embedded store
//! and etcd are interchangeable. Each case panics with a message naming what broke.
//! Cases use their own key prefixes, so they can share one store; compaction runs last.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::StreamExt;

use crate::{EventKind, KeyRange, Store, StoreError, Txn, TxnOutcome};

fn key(prefix: &str, name: impl std::fmt::Display) -> Vec<u8> {
    format!("{prefix}/{name}").into_bytes()
}

async fn commit(store: &dyn Store, txn: Txn) -> i64 {
    match store.txn(txn).await.expect("txn failed") {
        TxnOutcome::Committed { revision } => revision,
        TxnOutcome::Conflict => panic!("unexpected conflict"),
    }
}

type Case = fn(Arc<dyn Store>) -> futures::future::BoxFuture<'static, ()>;

/// Runs every case against `store`, which may hold other keys but must not be used by
/// anything else meanwhile.
pub async fn run_all(store: Arc<dyn Store>) {
    let cases: [(&str, Case); 11] = [
        ("revisions_and_versions", |s| {
            Box::pin(revisions_and_versions(s))
        }),
        ("compare_and_swap", |s| Box::pin(compare_and_swap(s))),
        ("range_order_and_limit", |s| {
            Box::pin(range_order_and_limit(s))
        }),
        ("read_at_revision", |s| Box::pin(read_at_revision(s))),
        ("atomic_multi_op_txn", |s| Box::pin(atomic_multi_op_txn(s))),
        ("transaction_shapes", |s| Box::pin(transaction_shapes(s))),
        ("concurrent_increments", |s| {
            Box::pin(concurrent_increments(s))
        }),
        ("watch_every_event_once_in_order", |s| {
            Box::pin(watch_every_event_once_in_order(s))
        }),
        ("leases", |s| Box::pin(leases(s))),
        ("compaction", |s| Box::pin(compaction(s))),
        ("compaction_keeps_every_later_revision", |s| {
            Box::pin(compaction_keeps_every_later_revision(s))
        }),
    ];
    for (name, case) in cases {
        eprintln!("conformance[{}]: {name}", store.backend());
        case(store.clone()).await;
    }
}

/// Each commit adds one revision; versions count a key's writes since its creation.
pub async fn revisions_and_versions(store: Arc<dyn Store>) {
    let store = store.as_ref();
    let k = key("/c/rev", "a");
    let r1 = commit(store, Txn::default().put(k.clone(), "1")).await;
    let r2 = commit(store, Txn::default().put(k.clone(), "2")).await;
    assert_eq!(r2, r1 + 1, "each committed txn adds exactly one revision");
    let kv = store.get(&k).await.unwrap().expect("key exists");
    assert_eq!(kv.value, b"2");
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version),
        (r1, r2, 2)
    );
    assert_eq!(store.revision().await.unwrap(), r2);
    // Deleting a missing key changes nothing, not even the revision.
    let r3 = commit(store, Txn::default().delete(key("/c/rev", "missing"))).await;
    assert_eq!(r3, r2);
    let r4 = commit(store, Txn::default().delete(k.clone())).await;
    assert_eq!(r4, r2 + 1);
    assert!(store.get(&k).await.unwrap().is_none());
    // Re-created: a new create revision, version from 1 again.
    let r5 = commit(store, Txn::default().put(k.clone(), "3")).await;
    let kv = store.get(&k).await.unwrap().unwrap();
    assert_eq!((kv.create_revision, kv.version), (r5, 1));
}

/// A transaction applies only while each key was last changed at the revision it names
/// (0: absent), and a failed one changes nothing.
pub async fn compare_and_swap(store: Arc<dyn Store>) {
    let store = store.as_ref();
    let k = key("/c/cas", "a");
    let created = commit(
        store,
        Txn::default().when(k.clone(), 0).put(k.clone(), "v1"),
    )
    .await;
    assert_eq!(
        store
            .txn(Txn::default().when(k.clone(), 0).put(k.clone(), "again"))
            .await
            .unwrap(),
        TxnOutcome::Conflict,
        "create-if-absent must fail when the key exists"
    );
    assert_eq!(
        store
            .txn(
                Txn::default()
                    .when(k.clone(), created - 1)
                    .put(k.clone(), "stale")
            )
            .await
            .unwrap(),
        TxnOutcome::Conflict
    );
    assert_eq!(
        store.get(&k).await.unwrap().unwrap().value,
        b"v1",
        "a failed txn changes nothing"
    );
    let updated = commit(
        store,
        Txn::default().when(k.clone(), created).put(k.clone(), "v2"),
    )
    .await;
    assert!(updated > created);
    commit(
        store,
        Txn::default().when(k.clone(), updated).delete(k.clone()),
    )
    .await;
    assert!(store.get(&k).await.unwrap().is_none());
}

/// Ranges read in key order, stop at their end and at their limit, and say so.
pub async fn range_order_and_limit(store: Arc<dyn Store>) {
    let store = store.as_ref();
    for name in ["c", "a", "b", "d"] {
        commit(store, Txn::default().put(key("/c/range", name), name)).await;
    }
    commit(store, Txn::default().put(b"/c/rangez".to_vec(), "outside")).await;
    let all = store
        .range(&KeyRange::prefix(b"/c/range/".to_vec()), None, 0)
        .await
        .unwrap();
    let names: Vec<_> = all
        .kvs
        .iter()
        .map(|kv| String::from_utf8(kv.value.clone()).unwrap())
        .collect();
    assert_eq!(
        names,
        ["a", "b", "c", "d"],
        "keys come in order, and only inside the range"
    );
    assert!(!all.more);
    let page = store
        .range(&KeyRange::prefix(b"/c/range/".to_vec()), None, 2)
        .await
        .unwrap();
    assert_eq!(page.kvs.len(), 2);
    assert!(page.more, "a cut-off range says there is more");
    let rest = store
        .range(
            &KeyRange::prefix(b"/c/range/".to_vec()).starting_at(key("/c/range", "c")),
            Some(page.revision),
            0,
        )
        .await
        .unwrap();
    assert_eq!(rest.kvs.len(), 2);
    assert_eq!(rest.revision, page.revision);
}

/// A read at a revision sees the keys as they were then.
pub async fn read_at_revision(store: Arc<dyn Store>) {
    let store = store.as_ref();
    let (a, b) = (key("/c/at", "a"), key("/c/at", "b"));
    let r1 = commit(store, Txn::default().put(a.clone(), "a1")).await;
    let r2 = commit(store, Txn::default().put(b.clone(), "b1")).await;
    let r3 = commit(store, Txn::default().put(a.clone(), "a2")).await;
    let r4 = commit(store, Txn::default().delete(b.clone())).await;
    let prefix = KeyRange::prefix(b"/c/at/".to_vec());
    let at = |r| {
        let prefix = prefix.clone();
        async move {
            store
                .range(&prefix, Some(r), 0)
                .await
                .unwrap()
                .kvs
                .into_iter()
                .map(|kv| String::from_utf8(kv.value).unwrap())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(at(r1).await, ["a1"]);
    assert_eq!(at(r2).await, ["a1", "b1"]);
    assert_eq!(at(r3).await, ["a2", "b1"]);
    assert_eq!(at(r4).await, ["a2"]);
    assert_eq!(at(0).await, ["a2"], "revision 0 is a read at the head");
    let head = store.range(&prefix, Some(0), 0).await.unwrap().revision;
    assert_eq!(head, r4, "a read at revision 0 reports the head's revision");
    let limited = store.range(&prefix, Some(r3), 1).await.unwrap();
    assert_eq!((limited.kvs.len(), limited.more), (1, true));
    let future = store.range(&prefix, Some(r4 + 1000), 0).await;
    assert!(
        matches!(future, Err(StoreError::FutureRevision { .. })),
        "{future:?}"
    );
}

/// A transaction's operations share one revision and reach watchers together.
pub async fn atomic_multi_op_txn(store: Arc<dyn Store>) {
    let store = store.as_ref();
    let start = store.revision().await.unwrap() + 1;
    let mut watch = store
        .watch(KeyRange::prefix(b"/c/multi/".to_vec()), start)
        .await
        .unwrap();
    let revision = commit(
        store,
        Txn::default()
            .put(key("/c/multi", "x"), "1")
            .put(key("/c/multi", "y"), "2")
            .put(key("/c/multi", "z"), "3"),
    )
    .await;
    assert_eq!(revision, start, "one txn is one revision");
    for name in ["x", "y", "z"] {
        let event = next_event(&mut watch).await;
        assert_eq!(event.kv.key, key("/c/multi", name));
        assert_eq!(event.revision(), revision);
    }
    // A failed compare applies none of the ops.
    let outcome = store
        .txn(
            Txn::default()
                .when(key("/c/multi", "x"), 0)
                .put(key("/c/multi", "w"), "no")
                .delete(key("/c/multi", "y")),
        )
        .await
        .unwrap();
    assert_eq!(outcome, TxnOutcome::Conflict);
    assert!(store.get(&key("/c/multi", "w")).await.unwrap().is_none());
    assert!(store.get(&key("/c/multi", "y")).await.unwrap().is_some());
}

/// A leased key lives while its lease is kept alive; when the lease expires, or is revoked,
/// the key is deleted and watchers see the deletion. A write with an ended lease fails and
/// changes nothing, and a plain write of a leased key frees it from the lease.
pub async fn leases(store: Arc<dyn Store>) {
    use std::time::Duration;
    let store = store.as_ref();
    let ttl = Duration::from_secs(2);
    let (kept, revoked, freed) = (
        key("/c/lease", "kept"),
        key("/c/lease", "revoked"),
        key("/c/lease", "freed"),
    );
    let lease = store.grant_lease(ttl).await.expect("grant");
    let other = store.grant_lease(ttl).await.expect("grant");
    let start = commit(
        store,
        Txn::default()
            .put_leased(kept.clone(), "1", lease)
            .put_leased(freed.clone(), "1", lease)
            .put_leased(revoked.clone(), "1", other),
    )
    .await;
    commit(store, Txn::default().put(freed.clone(), "2")).await;
    let mut watch = store
        .watch(KeyRange::prefix(b"/c/lease/".to_vec()), start + 2)
        .await
        .unwrap();

    store.revoke_lease(other).await.expect("revoke");
    let event = next_event(&mut watch).await;
    assert_eq!(
        (event.kind, event.kv.key.clone()),
        (EventKind::Delete, revoked.clone()),
        "a revoked lease's key goes"
    );
    let answer = store.keep_alive(other).await;
    assert!(
        matches!(answer, Err(StoreError::LeaseNotFound(_))),
        "keep-alive of a revoked lease: {answer:?}"
    );

    // Kept alive for twice its time to live, the key stays.
    for _ in 0..8 {
        tokio::time::sleep(ttl / 2).await;
        store
            .keep_alive(lease)
            .await
            .expect("keep-alive of a live lease");
    }
    assert!(
        store.get(&kept).await.unwrap().is_some(),
        "a kept lease's key stays"
    );

    // Left alone, it expires: its key goes, the freed key stays.
    let event = tokio::time::timeout(ttl * 5, watch.next())
        .await
        .expect("the lease never expired")
        .expect("watch ended")
        .expect("watch failed");
    assert_eq!(
        (event.kind, event.kv.key.clone()),
        (EventKind::Delete, kept.clone())
    );
    assert!(
        store.get(&freed).await.unwrap().is_some(),
        "a key written without the lease stays"
    );
    let answer = store.keep_alive(lease).await;
    assert!(
        matches!(answer, Err(StoreError::LeaseNotFound(_))),
        "keep-alive of an expired lease: {answer:?}"
    );
    let refused = store
        .txn(
            Txn::default()
                .put(key("/c/lease", "late"), "1")
                .put_leased(kept.clone(), "2", lease),
        )
        .await;
    assert!(
        matches!(refused, Err(StoreError::LeaseNotFound(_))),
        "{refused:?}"
    );
    assert!(
        store.get(&key("/c/lease", "late")).await.unwrap().is_none(),
        "a refused txn changed something"
    );
}

/// How long a case waits for a watch event before it calls the event lost.
const WATCH_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// The next event of a watch; a lost one fails the case instead of hanging it.
async fn next_event(watch: &mut crate::WatchStream) -> crate::Event {
    tokio::time::timeout(WATCH_PATIENCE, watch.next())
        .await
        .expect("watch stalled: an event was lost")
        .expect("watch ended")
        .expect("watch failed")
}

/// Transactions of one to five operations, puts and deletes mixed (deletes of present and
/// of absent keys), each against a model: the watch shows exactly each transaction's
/// changes at its revision (a delete with the value it removed, a delete of nothing with
/// no event), and ranges at the latest and at every earlier revision show the model's state.
pub async fn transaction_shapes(store: Arc<dyn Store>) {
    let store = store.as_ref();
    let prefix = KeyRange::prefix(b"/c/shapes/".to_vec());
    let start = store.revision().await.unwrap() + 1;
    let mut watch = store.watch(prefix.clone(), start).await.unwrap();
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut snapshots = Vec::new();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for round in 0..40u64 {
        let ops = 1 + (round % 5) as usize;
        let mut keys: Vec<u64> = (0..8).collect();
        let mut txn = Txn::default();
        let mut expected: Vec<(EventKind, Vec<u8>, Vec<u8>)> = Vec::new();
        let mut after = model.clone();
        for i in 0..ops {
            let k = key("/c/shapes", keys.remove(next(keys.len() as u64) as usize));
            // The first op puts, so every transaction changes something.
            if i == 0 || next(2) == 0 {
                let value = format!("{round}-{i}").into_bytes();
                txn = txn.put(k.clone(), value.clone());
                after.insert(k.clone(), value.clone());
                expected.push((EventKind::Put, k, value));
            } else {
                txn = txn.delete(k.clone());
                if let Some(previous) = after.remove(&k) {
                    expected.push((EventKind::Delete, k, previous));
                }
            }
        }
        let revision = commit(store, txn).await;
        model = after;
        let mut seen = Vec::new();
        for _ in 0..expected.len() {
            let event = next_event(&mut watch).await;
            assert_eq!(
                event.revision(),
                revision,
                "round {round}: an event of another txn"
            );
            let value = match event.kind {
                EventKind::Put => event.kv.value.clone(),
                EventKind::Delete => event.prev.expect("a delete carries what it removed").value,
            };
            seen.push((event.kind, event.kv.key, value));
        }
        seen.sort_by(|a, b| a.1.cmp(&b.1));
        expected.sort_by(|a, b| a.1.cmp(&b.1));
        assert_eq!(
            seen, expected,
            "round {round}: the watch shows the txn's changes"
        );
        snapshots.push((revision, model.clone()));
    }
    // Nothing more: a delete of an absent key made no event.
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(200), watch.next())
            .await
            .is_err(),
        "an event no transaction made"
    );
    for (revision, state) in snapshots {
        let read = store.range(&prefix, Some(revision), 0).await.unwrap();
        let found: BTreeMap<Vec<u8>, Vec<u8>> =
            read.kvs.into_iter().map(|kv| (kv.key, kv.value)).collect();
        assert_eq!(found, state, "the range at revision {revision}");
    }
}

/// Read–compare–write loops from concurrent tasks lose no increment.
pub async fn concurrent_increments(store: Arc<dyn Store>) {
    let k = key("/c/counter", "n");
    commit(store.as_ref(), Txn::default().put(k.clone(), "0")).await;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            let k = k.clone();
            tokio::spawn(async move {
                for _ in 0..10 {
                    loop {
                        let kv = store.get(&k).await.unwrap().unwrap();
                        let n: u64 = String::from_utf8(kv.value).unwrap().parse().unwrap();
                        let txn = Txn::default()
                            .when(k.clone(), kv.mod_revision)
                            .put(k.clone(), (n + 1).to_string());
                        if store.txn(txn).await.unwrap() != TxnOutcome::Conflict {
                            break;
                        }
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let n = store.get(&k).await.unwrap().unwrap().value;
    assert_eq!(n, b"80", "compare-and-swap loses no increment");
}

/// A watcher sees every change in its range after its start exactly once, in order.
pub async fn watch_every_event_once_in_order(store: Arc<dyn Store>) {
    let prefix = KeyRange::prefix(b"/c/watch/".to_vec());
    let start = store.revision().await.unwrap() + 1;
    let early = store.watch(prefix.clone(), start).await.unwrap();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..50 {
                    let k = key("/c/watch", format!("{w}-{i}"));
                    store.txn(Txn::default().put(k.clone(), "v")).await.unwrap();
                    if i % 5 == 0 {
                        store.txn(Txn::default().delete(k)).await.unwrap();
                    }
                }
            })
        })
        .collect();
    // Noise outside the watched range must not show up.
    store
        .txn(Txn::default().put(b"/c/watchers".to_vec(), "x"))
        .await
        .unwrap();
    for w in writers {
        w.await.unwrap();
    }
    let expected = 4 * 50 + 4 * 10;
    let collect = |mut stream: crate::WatchStream| async move {
        let mut events = Vec::new();
        while events.len() < expected {
            let next =
                tokio::time::timeout(std::time::Duration::from_secs(10), stream.next()).await;
            let event = next
                .expect("watch stalled")
                .expect("watch ended")
                .expect("watch failed");
            events.push(event);
        }
        events
    };
    let early_events = collect(early).await;
    // A watcher that starts after the writes and resumes from the same revision sees the same.
    let late_events = collect(store.watch(prefix.clone(), start).await.unwrap()).await;
    assert_eq!(
        early_events, late_events,
        "a resumed watch replays the same history"
    );
    let mut last = 0;
    let mut seen = BTreeSet::new();
    let mut puts_per_key: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
    for event in &early_events {
        assert!(
            event.revision() > last,
            "events come in strictly increasing revision order"
        );
        last = event.revision();
        assert!(seen.insert(event.revision()), "no event twice");
        if event.kind == EventKind::Put {
            *puts_per_key.entry(event.kv.key.clone()).or_default() += 1;
        } else {
            assert!(
                event.prev.is_some(),
                "a delete carries the value it removed"
            );
        }
    }
    assert_eq!(puts_per_key.len(), 200);
    assert!(puts_per_key.values().all(|n| *n == 1));
    // Resuming from the middle sees exactly the suffix.
    let middle = early_events[100].revision();
    let suffix = collect_n(store.watch(prefix, middle).await.unwrap(), expected - 100).await;
    assert_eq!(suffix, early_events[100..]);
}

async fn collect_n(mut stream: crate::WatchStream, n: usize) -> Vec<crate::Event> {
    let mut events = Vec::new();
    while events.len() < n {
        let next = tokio::time::timeout(std::time::Duration::from_secs(10), stream.next()).await;
        events.push(
            next.expect("watch stalled")
                .expect("watch ended")
                .expect("watch failed"),
        );
    }
    events
}

/// Compaction refuses reads and watches from before it; the compacted revision itself and
/// every later one stay readable.
pub async fn compaction(store: Arc<dyn Store>) {
    let store = store.as_ref();
    let k = key("/c/compact", "a");
    let old = commit(store, Txn::default().put(k.clone(), "old")).await;
    let gone = key("/c/compact", "gone");
    commit(store, Txn::default().put(gone.clone(), "x")).await;
    commit(store, Txn::default().delete(gone.clone())).await;
    let new = commit(store, Txn::default().put(k.clone(), "new")).await;
    store.compact(new).await.unwrap();
    let read_old = store.range(&KeyRange::key(k.clone()), Some(old), 0).await;
    assert!(
        matches!(read_old, Err(StoreError::Compacted { .. })),
        "{read_old:?}"
    );
    let watch_old = match store.watch(KeyRange::key(k.clone()), old).await {
        Err(e) => Err(e),
        Ok(mut stream) => tokio::time::timeout(WATCH_PATIENCE, stream.next())
            .await
            .expect("watch stalled")
            .expect("a compacted watch reports why it ends"),
    };
    assert!(
        matches!(watch_old, Err(StoreError::Compacted { .. })),
        "{watch_old:?}"
    );
    assert_eq!(store.get(&k).await.unwrap().unwrap().value, b"new");
    assert!(store.get(&gone).await.unwrap().is_none());
    let at_compacted = store
        .range(&KeyRange::prefix(b"/c/compact/".to_vec()), Some(new), 0)
        .await
        .unwrap();
    assert_eq!(
        at_compacted.kvs.len(),
        1,
        "the compacted revision itself stays readable"
    );
    let later = commit(store, Txn::default().put(k.clone(), "newer")).await;
    let mut watch = store.watch(KeyRange::key(k.clone()), new).await.unwrap();
    assert_eq!(next_event(&mut watch).await.revision(), new);
    assert_eq!(next_event(&mut watch).await.revision(), later);
}

/// After a compaction to revision `c` (older than the head), a read at every revision from
/// `c` on sees exactly what it saw before: a history of puts and deletes over a few keys,
/// compared with a model of each revision. Compacting past the head, or again at or below
/// `c`, is refused.
pub async fn compaction_keeps_every_later_revision(store: Arc<dyn Store>) {
    let store = store.as_ref();
    let prefix = "/c/history";
    let range = KeyRange::prefix(format!("{prefix}/").into_bytes());
    type Contents = BTreeMap<Vec<u8>, Vec<u8>>;
    let mut model = Contents::new();
    // What a read at each revision must see.
    let mut seen: Vec<(i64, Contents)> = Vec::new();
    // A fixed walk: each key is put, overwritten and deleted at different times.
    for step in 0..40u32 {
        let k = key(prefix, step % 3);
        let txn = if step % 5 == 4 {
            model.remove(&k);
            Txn::default().delete(k)
        } else {
            let value = format!("v{step}").into_bytes();
            model.insert(k.clone(), value.clone());
            Txn::default().put(k, value)
        };
        let revision = commit(store, txn).await;
        seen.push((revision, model.clone()));
    }
    let (compact_at, _) = seen[seen.len() / 2];
    let head = seen.last().unwrap().0;
    store.compact(compact_at).await.unwrap();
    for (revision, expected) in seen.iter().filter(|(r, _)| *r >= compact_at) {
        let read = store.range(&range, Some(*revision), 0).await.unwrap();
        let got: Contents = read.kvs.into_iter().map(|kv| (kv.key, kv.value)).collect();
        assert_eq!(
            &got, expected,
            "at revision {revision}, compacted to {compact_at}"
        );
    }
    let future = store.compact(head + 1).await;
    assert!(
        matches!(future, Err(StoreError::FutureRevision { .. })),
        "{future:?}"
    );
    let again = store.compact(compact_at).await;
    assert!(
        matches!(again, Err(StoreError::Compacted { .. })),
        "{again:?}"
    );
}
