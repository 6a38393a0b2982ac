//! Several servers over one etcd cluster and one shared sim cloud (`dialtone sim serve`):
//! every one serves the API, one leads the controllers, addresses are allocated once across
//! all of them, a leader killed with `kill -9` is replaced within its lease (and its work
//! finished, with nothing in the cloud made twice or left behind), and one stopped
//! gracefully is replaced at once.

mod common;

use std::time::{Duration, Instant};

use common::{Api, start_with};
use dialtone_testkit::{DevServer, EtcdCluster, SimService};
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

/// Polls the cluster at `path` until it is Ready, failing after 90 s with its state and
/// `logs`.
async fn ready_or(api: &Api, path: &str, logs: impl Fn() -> String) -> Value {
    let started = Instant::now();
    loop {
        let (status, cluster) = api.get(path).await;
        if status == 200 && cluster["status"]["phase"] == "Ready" {
            return cluster;
        }
        if started.elapsed() > Duration::from_secs(90) {
            let (_, _, readyz) = api.get_text("/readyz?verbose").await;
            panic!(
                "{path} never became Ready: {status} {cluster:#}\n{readyz}\n{}",
                logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every server's log and the sim service's, for a failure's message.
fn logs(servers: &[DevServer], sim: &SimService) -> String {
    let mut text = String::new();
    for (i, server) in servers.iter().enumerate() {
        text.push_str(&format!("--- server-{i}:\n{}\n", server.log()));
    }
    let port = std::net::TcpStream::connect(sim.url().trim_start_matches("https://"));
    text.push_str(&format!(
        "--- the sim service (its port: {port:?}):\n{}",
        sim.log()
    ));
    text
}

fn cluster(name: &str, cluster_type: &str) -> Value {
    json!({"metadata": {"name": name}, "spec": {"type": cluster_type, "region": "us-east-1"}})
}

/// A 3-member etcd cluster, a sim service, and three servers over both.
fn region() -> (EtcdCluster, SimService, Vec<DevServer>) {
    let etcd = EtcdCluster::start(3).expect("etcd");
    let sim = SimService::start(
        env!("CARGO_BIN_EXE_dialtone").as_ref(),
        &["--sim-time-scale", "0"],
    )
    .expect("the sim service starts");
    let store = etcd.url();
    let lease = LEASE_SECONDS.to_string();
    let servers = (0..3)
        .map(|i| {
            let id = format!("server-{i}");
            let mut args = vec![
                "--store",
                &store,
                "--server-id",
                &id,
                "--leader-lease-seconds",
                &lease,
            ];
            let shared = sim.server_args();
            args.extend(shared.iter().map(String::as_str));
            start_with(&args)
        })
        .collect();
    (etcd, sim, servers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_servers_on_one_etcd_elect_one_leader_and_hand_over_when_it_is_killed() {
    let (_etcd, sim, mut servers) = region();
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
        let ready = ready_or(api, &format!("{PROJECT}/clusters/p{i}"), || {
            logs(&servers, &sim)
        })
        .await;
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
    ready_or(follower, &format!("{PROJECT}/clusters/after"), || {
        logs(&servers, &sim)
    })
    .await;

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

/// Every resource in the shared cloud, as a platform admin reads it through a server.
async fn cloud(api: &Api) -> Vec<Value> {
    let (status, list) = api.get("/v1/sim/resources").await;
    assert_eq!(status, 200, "{list}");
    list["items"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_clusters_become_ready_when_the_leader_dies_mid_creation_with_nothing_made_twice() {
    let (_etcd, sim, mut servers) = region();
    let apis: Vec<Api> = servers.iter().map(Api::admin).collect();
    let all: Vec<(usize, &Api)> = apis.iter().enumerate().collect();
    let leader = the_leader(&all, Duration::from_secs(20)).await;
    let projects: Vec<String> = (0..5)
        .map(|p| format!("/v1/orgs/demo/folders/eng/projects/p{p}"))
        .collect();
    apis[0]
        .create("/v1/orgs/demo/folders", "eng", json!({}))
        .await;
    for p in 0..5 {
        apis[0]
            .create(
                "/v1/orgs/demo/folders/eng/projects",
                &format!("p{p}"),
                json!({}),
            )
            .await;
    }
    let create = |api: Api, n: usize| {
        let project = projects[n % 5].clone();
        async move {
            let (status, body) = api
                .post(
                    &format!("{project}/clusters"),
                    cluster(&format!("c{n}"), "developer"),
                )
                .await;
            assert_eq!(status, 201, "c{n}: {body}");
        }
    };
    // Half through every server, then the leader dies while they are being provisioned,
    // and the other half goes through the survivors.
    futures::future::join_all((0..25).map(|n| create(apis[n % 3].clone(), n))).await;
    servers[leader].kill9();
    let killed = Instant::now();
    let survivors: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    futures::future::join_all((25..50).map(|n| create(apis[survivors[n % 2]].clone(), n))).await;
    let api = &apis[survivors[0]];
    let others: Vec<(usize, &Api)> = survivors.iter().map(|i| (*i, &apis[*i])).collect();
    let successor = the_leader(&others, Duration::from_secs(20)).await;
    eprintln!(
        "server-{successor} leads {:?} after server-{leader} was killed",
        killed.elapsed()
    );
    let mut uids = std::collections::BTreeMap::new();
    let mut ranges = std::collections::BTreeMap::new();
    for n in 0..50 {
        let path = format!("{}/clusters/c{n}", projects[n % 5]);
        let ready = ready_or(api, &path, || logs(&servers, &sim)).await;
        uids.insert(
            ready["metadata"]["uid"].as_str().unwrap().to_string(),
            ready.clone(),
        );
        ranges
            .entry(n % 5)
            .or_insert_with(std::collections::BTreeSet::new)
            .insert(ready["status"]["plan"]["network"]["vpcCidr"].to_string());
    }
    eprintln!(
        "all 50 clusters Ready {:?} after the kill",
        killed.elapsed()
    );

    // Each project's clusters share one range, and no two projects got the same.
    assert!(ranges.values().all(|r| r.len() == 1), "{ranges:?}");
    let distinct: std::collections::BTreeSet<_> = ranges.values().flatten().collect();
    assert_eq!(distinct.len(), 5, "one range handed out twice: {ranges:?}");

    // In the cloud: every live instance belongs to one of the clusters, each node slot
    // has exactly one, and each cluster has as many as its status says it runs.
    let resources = cloud(api).await;
    let mut slots = std::collections::BTreeMap::<(String, String), usize>::new();
    for resource in &resources {
        let live = !matches!(resource["state"].as_str(), Some("terminated" | "deleting"));
        if resource["spec"]["kind"] != "instance" || !live {
            continue;
        }
        let tags = &resource["tags"];
        let cluster = tags["dialtone.dev/cluster"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            uids.contains_key(&cluster),
            "an instance of no cluster: {resource:#}"
        );
        let part = tags["dialtone.dev/part"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        *slots.entry((cluster, part)).or_default() += 1;
    }
    let doubled: Vec<_> = slots.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        doubled.is_empty(),
        "node slots with two live instances: {doubled:?}"
    );
    for (uid, cluster) in &uids {
        let nodes = cluster["status"]["nodes"].as_array().map_or(0, Vec::len);
        let running = slots.keys().filter(|(c, _)| c == uid).count();
        assert_eq!(
            running, nodes,
            "{} runs {running} instances for {nodes} nodes",
            cluster["metadata"]["name"]
        );
    }
    // Load balancers: one API endpoint per cluster.
    let balancers = resources
        .iter()
        .filter(|r| r["spec"]["kind"] == "loadBalancer" && r["state"] != "deleting")
        .count();
    assert_eq!(balancers, 50, "API load balancers");
    // Networks: one shared VPC per project.
    let vpcs = resources
        .iter()
        .filter(|r| r["spec"]["kind"] == "vpc" && r["state"] != "deleting")
        .count();
    assert_eq!(vpcs, 5, "VPCs");
}
