//! Several servers over one etcd cluster: every one serves the API, one leads the
//! controllers, addresses are allocated once across all of them, a leader killed with
//! `kill -9` is replaced within its lease, and one stopped gracefully at once.

mod common;

use std::time::{Duration, Instant};

use common::{Api, start_with};
use dialtone_testkit::{DevServer, EtcdCluster};
use serde_json::{Value, json};

const PROJECT: &str = "/v1/orgs/demo/folders/eng/projects/web";
const LEASE_SECONDS: u64 = 3;

/// The `leader` line of the server's `/readyz?verbose`.
async fn leader_line(api: &Api) -> String {
    let (status, _, body) = api.get_text("/readyz?verbose").await;
    assert_eq!(status, 200, "{body}");
    body.lines()
        .find(|l| l.starts_with("[+]leader "))
        .unwrap_or_else(|| panic!("no leader line in {body}"))
        .to_string()
}

/// Which of `apis` leads, once exactly one says so and the others name it.
async fn the_leader(apis: &[(usize, &Api)], patience: Duration) -> usize {
    let started = Instant::now();
    loop {
        let mut lines = Vec::new();
        for (index, api) in apis {
            lines.push((*index, leader_line(api).await));
        }
        let leading: Vec<usize> = lines
            .iter()
            .filter(|(_, l)| l.starts_with("[+]leader this server"))
            .map(|(i, _)| *i)
            .collect();
        if let [leader] = leading[..] {
            let named = format!("[+]leader server-{leader} ");
            if lines
                .iter()
                .all(|(i, l)| *i == leader || l.starts_with(&named))
            {
                return leader;
            }
        }
        assert!(
            started.elapsed() < patience,
            "no single leader after {patience:?}: {lines:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn ready(api: &Api, path: &str) -> Value {
    let started = Instant::now();
    loop {
        let (status, cluster) = api.get(path).await;
        if status == 200 && cluster["status"]["phase"] == "Ready" {
            return cluster;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "{path} never became Ready: {status} {cluster:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn cluster(name: &str, cluster_type: &str) -> Value {
    json!({"metadata": {"name": name}, "spec": {"type": cluster_type, "region": "us-east-1"}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_servers_on_one_etcd_elect_one_leader_and_hand_over_when_it_is_killed() {
    let etcd = EtcdCluster::start(3).expect("etcd");
    let store = etcd.url();
    let lease = LEASE_SECONDS.to_string();
    let mut servers: Vec<DevServer> = (0..3)
        .map(|i| {
            start_with(&[
                "--store",
                &store,
                "--sim-time-scale",
                "0",
                "--server-id",
                &format!("server-{i}"),
                "--leader-lease-seconds",
                &lease,
            ])
        })
        .collect();
    let apis: Vec<Api> = servers.iter().map(Api::admin).collect();
    let all: Vec<(usize, &Api)> = apis.iter().enumerate().collect();
    let leader = the_leader(&all, Duration::from_secs(20)).await;

    // Clusters created through every server at once: each production cluster has a VPC
    // of its own, and no two servers hand out one range.
    let api = &apis[(leader + 1) % 3];
    api.create("/v1/orgs/demo/folders", "eng", json!({})).await;
    api.create("/v1/orgs/demo/folders/eng/projects", "web", json!({}))
        .await;
    let creates = (0..9).map(|i| {
        let api = apis[i % 3].clone();
        async move {
            let name = format!("p{i}");
            let (status, body) = api
                .post(&format!("{PROJECT}/clusters"), cluster(&name, "production"))
                .await;
            assert_eq!(status, 201, "{name} through server {}: {body}", i % 3);
        }
    });
    futures::future::join_all(creates).await;
    let mut ranges = Vec::new();
    for i in 0..9 {
        let ready = ready(api, &format!("{PROJECT}/clusters/p{i}")).await;
        ranges.push(ready["status"]["plan"]["network"]["vpcCidr"].clone());
    }
    let mut distinct = ranges.clone();
    distinct.sort_by_key(|r| r.to_string());
    distinct.dedup();
    assert_eq!(distinct.len(), 9, "one range handed out twice: {ranges:?}");

    // Only the leader's controllers write: a Ready cluster's status stays put.
    let path = format!("{PROJECT}/clusters/p0");
    let version = |c: &Value| c["metadata"]["resourceVersion"].clone();
    let before = version(&api.get(&path).await.1);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = version(&api.get(&path).await.1);
    assert_eq!(
        before, after,
        "a Ready cluster was rewritten with three servers up"
    );

    // The leader dies: another takes over within its lease.
    servers[leader].kill9();
    let killed = Instant::now();
    let survivors: Vec<(usize, &Api)> = all.iter().copied().filter(|(i, _)| *i != leader).collect();
    let successor = the_leader(&survivors, Duration::from_secs(20)).await;
    let handover = killed.elapsed();
    eprintln!("handover from server-{leader} to server-{successor} took {handover:?}");
    assert!(
        handover < Duration::from_secs(LEASE_SECONDS + 5),
        "handover took {handover:?} with a {LEASE_SECONDS} s lease"
    );

    // The new leader's controllers act on what any survivor is asked.
    let follower = &apis[survivors.iter().find(|(i, _)| *i != successor).unwrap().0];
    let (status, body) = follower
        .post(
            &format!("{PROJECT}/clusters"),
            cluster("after", "developer"),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    ready(follower, &format!("{PROJECT}/clusters/after")).await;

    // A leader stopped gracefully (SIGTERM) resigns: the last server leads at once, not
    // when the lease would have expired.
    let pid = servers[successor].pid().expect("the new leader runs");
    let stopped = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let last: Vec<(usize, &Api)> = survivors
        .iter()
        .copied()
        .filter(|(i, _)| *i != successor)
        .collect();
    the_leader(&last, Duration::from_secs(20)).await;
    let resigned = stopped.elapsed();
    eprintln!("handover after a graceful stop took {resigned:?}");
    assert!(
        resigned < Duration::from_secs(LEASE_SECONDS) / 2,
        "a resigning leader was replaced only after {resigned:?}"
    );
}
