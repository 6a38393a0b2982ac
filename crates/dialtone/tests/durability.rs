//! Acknowledged writes survive `kill -9` of the dev server, and a server on etcd keeps
//! serving when an etcd member dies.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Api, start_with};
use dialtone_testkit::EtcdCluster;
use serde_json::json;

/// Writers create folders until stopped; returns the names the server acknowledged.
async fn write_until(api: &Api, prefix: &str, stop_after: Duration, writers: usize) -> Vec<String> {
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let deadline = tokio::time::Instant::now() + stop_after;
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let api = api.clone();
            let acknowledged = acknowledged.clone();
            let prefix = prefix.to_string();
            tokio::spawn(async move {
                let mut i = 0;
                while tokio::time::Instant::now() < deadline {
                    let name = format!("{prefix}{w}-{i}");
                    i += 1;
                    let body = serde_json::to_vec(&json!({"metadata": {"name": name}})).unwrap();
                    let result = tokio::time::timeout(
                        Duration::from_secs(5),
                        api.send(
                            "POST",
                            "/v1/orgs/demo/folders",
                            Some(body),
                            Some(format!("Bearer {}", api.token)),
                        ),
                    )
                    .await;
                    if let Ok((201, _)) = result {
                        acknowledged.lock().unwrap().push(name);
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
    Arc::try_unwrap(acknowledged).unwrap().into_inner().unwrap()
}

/// Sends writes, kills the server with SIGKILL while they are in flight, restarts it and
/// checks every acknowledged write is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_mid_stream_loses_no_acknowledged_write() {
    let mut server = start_with(&[]);
    let api = Api::admin(&server);
    let writes = {
        let api = api.clone();
        tokio::spawn(async move { write_until(&api, "w", Duration::from_millis(2500), 8).await })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill9();
    let acknowledged = writes.await.unwrap();
    assert!(
        acknowledged.len() > 20,
        "the writers got going before the kill ({} writes)",
        acknowledged.len()
    );
    server.start_again().unwrap();
    let api = Api::admin(&server);
    let stored = api.names("/v1/orgs/demo/folders").await;
    let missing: Vec<_> = acknowledged
        .iter()
        .filter(|n| !stored.contains(n))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged writes lost after kill -9: {missing:?}",
        missing.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_on_etcd_survives_a_member_dying() {
    let mut cluster = EtcdCluster::start(3).expect("etcd");
    let store = cluster.url();
    let server = start_with(&["--store", &store]);
    let api = Api::admin(&server);
    assert_eq!(api.get("/v1/whoami").await.0, 200);
    let (_, mut watch) = api.watch("/v1/orgs/demo/folders?watch=true").await;
    let before = write_until(&api, "before", Duration::from_millis(800), 2).await;
    cluster.kill(1);
    // If the dead member led, the others elect a new leader first (about a second, more on
    // a loaded machine), and a client connected to it moves to another member.
    let mut after = Vec::new();
    for round in 0..5 {
        after.extend(write_until(&api, &format!("after{round}-"), Duration::from_secs(3), 2).await);
        if after.len() >= 10 {
            break;
        }
    }
    assert!(
        after.len() >= 10,
        "writes go on with one member dead ({} acknowledged in 15 s)",
        after.len()
    );
    let stored = api.names("/v1/orgs/demo/folders").await;
    for name in before.iter().chain(&after) {
        assert!(stored.contains(name), "acknowledged write {name} lost");
    }
    // The watch opened before saw the writes in order, each once.
    let mut seen = Vec::new();
    while seen.len() < before.len() {
        let e = common::next_event(&mut watch).await;
        seen.push(
            e["object"]["metadata"]["name"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "no event twice");
}
