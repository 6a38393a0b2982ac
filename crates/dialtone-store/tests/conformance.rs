//! The conformance suite on both backends, and the durability of acknowledged writes when an
//! etcd member dies mid-stream.

use std::sync::Arc;
use std::time::Duration;

use dialtone_store::{EmbeddedStore, EtcdStore, Store, StoreError, Txn, TxnOutcome, conformance};
use dialtone_testkit::EtcdCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("store.redb")).unwrap();
    // The name that metrics and the server's version label it with.
    assert_eq!(store.backend(), "embedded");
    conformance::run_all(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_store_keeps_everything_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let revision = {
        let store = EmbeddedStore::open(&path).unwrap();
        for i in 0..20 {
            store
                .txn(Txn::default().put(format!("/k/{i}"), "v"))
                .await
                .unwrap();
        }
        store.revision().await.unwrap()
    };
    // The writer thread lets go of the file once the store is dropped.
    let store = loop {
        match EmbeddedStore::open(&path) {
            Ok(s) => break s,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    assert_eq!(store.revision().await.unwrap(), revision);
    let all = store
        .range(&dialtone_store::KeyRange::prefix("/k/"), None, 0)
        .await
        .unwrap();
    assert_eq!(all.kvs.len(), 20);
    let next = match store.txn(Txn::default().put("/k/next", "v")).await.unwrap() {
        TxnOutcome::Committed { revision } => revision,
        TxnOutcome::Conflict => unreachable!(),
    };
    assert_eq!(next, revision + 1, "revisions continue where they stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_store_conforms() {
    let cluster = EtcdCluster::start(3).expect("etcd cluster");
    let store = EtcdStore::connect(&cluster.endpoints()).await.unwrap();
    assert_eq!(store.backend(), "etcd");
    conformance::run_all(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_member_death_loses_no_acknowledged_write() {
    let mut cluster = EtcdCluster::start(3).expect("etcd cluster");
    let store = EtcdStore::connect(&cluster.endpoints()).await.unwrap();
    let mut acknowledged = Vec::new();
    let mut failed = 0;
    let mut acknowledged_after_kill = 0;
    for i in 0..600 {
        if i == 200 {
            cluster.kill(0);
        }
        let key = format!("/durable/{i:04}");
        match store
            .txn(
                Txn::default()
                    .when(key.clone(), 0)
                    .put(key.clone(), i.to_string()),
            )
            .await
        {
            Ok(TxnOutcome::Committed { .. }) => {
                acknowledged.push(key);
                if i >= 200 {
                    acknowledged_after_kill += 1;
                }
            }
            Ok(TxnOutcome::Conflict) => panic!("{key} conflicted although nothing else writes it"),
            Err(_) => failed += 1,
        }
    }
    assert!(
        acknowledged_after_kill >= 350,
        "the cluster keeps taking writes with one member dead ({acknowledged_after_kill} of 400 acknowledged, {failed} failed)"
    );
    for key in &acknowledged {
        assert!(
            store.get(key.as_bytes()).await.unwrap().is_some(),
            "acknowledged write {key} was lost"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_requests_give_up_when_no_member_answers() {
    let mut cluster = EtcdCluster::start(1).expect("etcd cluster");
    let store = EtcdStore::connect(&cluster.endpoints()).await.unwrap();
    store.txn(Txn::default().put("/k", "v")).await.unwrap();
    cluster.kill(0);
    // Each request is retried with growing waits, then its error is returned: never a hang.
    let give_up = Duration::from_secs(60);
    let read = tokio::time::timeout(give_up, store.get(b"/k"))
        .await
        .expect("a read gives up");
    assert!(matches!(read, Err(StoreError::Unavailable(_))), "{read:?}");
    let write = tokio::time::timeout(give_up, store.txn(Txn::default().put("/k", "w")))
        .await
        .expect("a write gives up");
    assert!(
        matches!(write, Err(StoreError::Unavailable(_))),
        "{write:?}"
    );
}
