//! Three regions, each over its own store and its own simulated cloud, linked by TCP
//! proxies that the test can cut: the east is two servers over one etcd behind a proxy
//! that balances between them, the others one server over an embedded store. Objects are
//! written in their home region through any region's endpoint, replicated to every region,
//! and verifiably the same everywhere; the east's leader dies and its other server takes
//! over its replication; a region cut off keeps serving and repairing its own clusters,
//! refuses writes homed elsewhere with an error that names the home, and catches up once
//! the link heals.

mod common;

use std::time::{Duration, Instant};

use common::{Api, start_with};
use dialtone_testkit::{CutProxy, DevServer, EtcdCluster, free_port};
use serde_json::{Value, json};

const REGIONS: [&str; 3] = ["us-east-1", "us-west-2", "eu-west-1"];

struct Regions {
    /// Each server, with the index of its region.
    servers: Vec<(usize, DevServer)>,
    /// `links[i][j]`: how region i reaches region j.
    links: Vec<Vec<Option<CutProxy>>>,
    _etcd: EtcdCluster,
    _certs: tempfile::TempDir,
}

impl Regions {
    fn start() -> Regions {
        let certs = tempfile::tempdir().unwrap();
        let dir = certs.path().to_str().unwrap().to_string();
        let mut args = vec!["regions", "certificates", "--dir", &dir];
        for region in REGIONS {
            args.extend(["--region", region]);
        }
        let made = std::process::Command::new(env!("CARGO_BIN_EXE_dialtone"))
            .args(&args)
            .output()
            .unwrap();
        assert!(made.status.success(), "{made:?}");
        // The east's two servers, then one for each other region.
        let placement = [0, 0, 1, 2];
        let listens: Vec<u16> = placement.iter().map(|_| free_port()).collect();
        let links: Vec<Vec<Option<CutProxy>>> = (0..3)
            .map(|i| {
                (0..3)
                    .map(|j| {
                        let targets = placement
                            .iter()
                            .zip(&listens)
                            .filter(|(r, _)| **r == j)
                            .map(|(_, port)| ([127, 0, 0, 1], *port).into())
                            .collect();
                        (i != j).then(|| CutProxy::start_to(targets).unwrap())
                    })
                    .collect()
            })
            .collect();
        let etcd = EtcdCluster::start(1).unwrap();
        let servers = placement
            .iter()
            .enumerate()
            .map(|(k, &i)| {
                let region = REGIONS[i];
                let mut args: Vec<String> = [
                    "--sim-time-scale",
                    "0",
                    "--metering-period",
                    "2",
                    "--metering-interval-ms",
                    "200",
                    "--region",
                    region,
                    "--bootstrap-org",
                    &format!("home-{region}"),
                    "--region-listen",
                    &format!("127.0.0.1:{}", listens[k]),
                    "--region-ca",
                    &format!("{dir}/region-ca.pem"),
                    "--region-cert",
                    &format!("{dir}/{region}.pem"),
                    "--region-key",
                    &format!("{dir}/{region}-key.pem"),
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                for (j, link) in links[i].iter().enumerate() {
                    if let Some(link) = link {
                        args.push("--peer".into());
                        args.push(format!("{}=https://127.0.0.1:{}", REGIONS[j], link.port()));
                    }
                }
                if i == 0 {
                    args.extend(["--store".into(), etcd.url()]);
                    args.extend(["--leader-lease-seconds".into(), "3".into()]);
                    args.extend(["--server-id".into(), format!("east-{k}")]);
                }
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                (i, start_with(&args))
            })
            .collect();
        Regions {
            servers,
            links,
            _etcd: etcd,
            _certs: certs,
        }
    }

    /// Cuts every link into and out of region `i`.
    fn cut(&self, i: usize) {
        for j in 0..3 {
            for link in [&self.links[i][j], &self.links[j][i]].into_iter().flatten() {
                link.cut();
            }
        }
    }

    fn heal(&self, i: usize) {
        for j in 0..3 {
            for link in [&self.links[i][j], &self.links[j][i]].into_iter().flatten() {
                link.heal();
            }
        }
    }

    fn logs(&self) -> String {
        self.servers
            .iter()
            .map(|(r, s)| format!("--- {}:\n{}\n", REGIONS[*r], s.log()))
            .collect()
    }
}

/// Polls `path` through `api` until `done` holds, failing after `patience` with `logs`.
async fn until(
    api: &Api,
    path: &str,
    patience: Duration,
    done: impl Fn(u16, &Value) -> bool,
    logs: impl Fn() -> String,
) -> Value {
    let started = Instant::now();
    loop {
        let (status, body) = api.get(path).await;
        if done(status, &body) {
            return body;
        }
        if started.elapsed() > patience {
            panic!(
                "{path}: still {status} {body:#} after {patience:?}\n{}",
                logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until `path` answers 200 through `api`: what was written has reached its region.
async fn present(api: &Api, path: &str, logs: impl Fn() -> String) {
    until(api, path, Duration::from_secs(30), |s, _| s == 200, logs).await;
}

/// Waits until every region holds the same of every org, as region `api` compares them;
/// how long it took.
async fn converged(api: &Api, patience: Duration, logs: impl Fn() -> String) -> Duration {
    let started = Instant::now();
    until(
        api,
        "/v1/regions/digests",
        patience,
        |status, body| status == 200 && body["converged"] == true,
        logs,
    )
    .await;
    started.elapsed()
}

/// Which of `servers` leads, once one does.
async fn leader_of(servers: &[Api]) -> usize {
    let started = Instant::now();
    loop {
        for (i, api) in servers.iter().enumerate() {
            let (_, _, readyz) = api.get_text("/readyz?verbose").await;
            if readyz.contains("[+]leader this server") {
                return i;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn cluster(name: &str, cluster_type: &str, region: &str) -> Value {
    json!({"metadata": {"name": name}, "spec": {"type": cluster_type, "region": region}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn regions_replicate_forward_writes_and_keep_serving_when_cut_off() {
    let mut regions = Regions::start();
    let apis: Vec<Api> = regions.servers.iter().map(|(_, s)| Api::admin(s)).collect();
    let (west, eu) = (&apis[2], &apis[3]);
    let east_leader = leader_of(&apis[..2]).await;
    let east = &apis[east_leader];
    let logs = || regions.logs();

    // Each region's bootstrap org, homed there, reaches the others.
    let took = converged(east, Duration::from_secs(60), logs).await;
    println!("three bootstrap orgs converged in {took:?}");
    for api in [east, west, eu] {
        let (status, orgs) = api.get("/v1/orgs").await;
        assert_eq!(status, 200, "{orgs}");
        let homes: Vec<(String, String)> = orgs["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                (
                    o["metadata"]["name"].as_str().unwrap().to_string(),
                    o["metadata"]["homeRegion"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        for region in REGIONS {
            assert!(
                homes.contains(&(format!("home-{region}"), region.to_string())),
                "{homes:?}"
            );
        }
    }

    // A folder of the east's org, written through the EU: made in the east.
    let org = "/v1/orgs/home-us-east-1";
    let folder = eu.create(&format!("{org}/folders"), "eng", json!({})).await;
    assert_eq!(folder["metadata"]["homeRegion"], "us-east-1", "{folder}");
    east.create(&format!("{org}/folders/eng/projects"), "web", json!({}))
        .await;
    let project = format!("{org}/folders/eng/projects/web");

    // A cluster in each other region, created through the east: homed and built where it
    // runs, and seen Ready from everywhere.
    present(west, &project, logs).await;
    let (status, body) = east
        .post(
            &format!("{project}/clusters"),
            cluster("west-1", "developer", "us-west-2"),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["metadata"]["homeRegion"], "us-west-2", "{body}");
    let (status, body) = west
        .post(
            &format!("{project}/clusters"),
            cluster("eu-1", "developer", "eu-west-1"),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = east
        .post(
            &format!("{project}/clusters"),
            cluster("nowhere", "developer", "ap-south-1"),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("us-west-2"),
        "the error lists the regions: {body}"
    );
    for api in [east, west, eu] {
        for name in ["west-1", "eu-1"] {
            until(
                api,
                &format!("{project}/clusters/{name}"),
                Duration::from_secs(90),
                |s, c| s == 200 && c["status"]["phase"] == "Ready",
                logs,
            )
            .await;
        }
    }
    // Each cloud has only its own region's cluster.
    for (api, expected) in [(east, 0), (west, 1), (eu, 1)] {
        let (_, lbs) = api.get("/v1/sim/resources").await;
        let balancers = lbs["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["spec"]["kind"] == "loadBalancer")
            .count();
        assert_eq!(balancers, expected, "{lbs:#}");
    }
    let took = converged(east, Duration::from_secs(60), logs).await;
    println!("clusters converged in {took:?}");

    // Each cluster is metered where it runs, and its usage reported in every region.
    let tomorrow = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .tomorrow()
        .unwrap();
    let report = format!("{org}/usage?by=cluster&from=2026-01-01&to={tomorrow}");
    for api in [east, west, eu] {
        until(
            api,
            &report,
            Duration::from_secs(30),
            |s, r| {
                s == 200
                    && ["eng/web/west-1", "eng/web/eu-1"].iter().all(|cluster| {
                        r["rows"].as_array().into_iter().flatten().any(|row| {
                            row["group"] == *cluster
                                && row["recorded"]["cpuMilliSeconds"].as_i64() > Some(0)
                        })
                    })
            },
            logs,
        )
        .await;
    }

    // Only a cluster's home deletes it: a cascade from its org's home is refused, naming it.
    let (status, refused) = east.delete(&format!("{project}?cascade=true")).await;
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("west-1 (in us-west-2)"),
        "{refused}"
    );

    // A token minted in the east authenticates in the EU; revoked through the EU (in the
    // east), it stops authenticating there too, and stays revoked while the EU is cut off.
    east.create(&format!("{org}/identities"), "ci", json!({}))
        .await;
    let (status, minted) = east
        .post(
            &format!("{org}/identities/ci/tokens"),
            json!({"description": "ci"}),
        )
        .await;
    assert_eq!(status, 201, "{minted}");
    let ci = eu.with_token(minted["token"].as_str().unwrap());
    present(&ci, "/v1/whoami", logs).await;
    let id = minted["info"]["id"].as_str().unwrap();
    let (status, body) = eu.delete(&format!("{org}/tokens/{id}")).await;
    assert_eq!(status, 200, "{body}");
    until(
        &ci,
        "/v1/whoami",
        Duration::from_secs(30),
        |s, _| s == 401,
        logs,
    )
    .await;

    // The east's leader dies: its other server leads, pulls the others' changes and
    // takes the writes forwarded to the east.
    regions.servers[east_leader].1.kill9();
    let east = &apis[1 - east_leader];
    let logs = || regions.logs();
    let killed = Instant::now();
    assert_eq!(leader_of(&apis[1 - east_leader..][..1]).await, 0);
    println!(
        "the east's other server leads {:?} after the kill",
        killed.elapsed()
    );
    let west_org = "/v1/orgs/home-us-west-2";
    eu.create(&format!("{west_org}/folders"), "after-kill", json!({}))
        .await;
    west.create(&format!("{org}/folders"), "after-kill", json!({}))
        .await;
    present(east, &format!("{west_org}/folders/after-kill"), logs).await;
    present(eu, &format!("{org}/folders/after-kill"), logs).await;

    // The EU is cut off.
    regions.cut(2);
    let eu_cluster = format!("{project}/clusters/eu-1");
    // It keeps serving its own cluster.
    let mut served = 0;
    for _ in 0..200 {
        let (status, _) = eu.get(&eu_cluster).await;
        served += usize::from(status == 200);
    }
    assert!(served >= 200 * 999 / 1000, "{served} of 200 reads served");
    // It repairs a node killed during the cut.
    let (_, before) = eu.get(&eu_cluster).await;
    let victim = common::slots(&before, "worker")[0]["instanceId"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, killed) = eu
        .post(&format!("/v1/sim/instances/{victim}/kill"), json!({}))
        .await;
    assert_eq!(status, 200, "{killed}");
    // It refuses writes homed elsewhere, naming the home.
    let (status, refused) = eu
        .post(
            &format!("{org}/folders"),
            json!({"metadata": {"name": "cut"}}),
        )
        .await;
    assert_eq!(status, 503, "{refused}");
    let message = refused["message"].as_str().unwrap();
    assert!(
        message.contains("us-east-1") && message.contains("last heard"),
        "{message}"
    );
    let (status, _) = ci.get("/v1/whoami").await;
    assert_eq!(
        status, 401,
        "a revocation replicated before the cut holds during it"
    );
    // Both sides of the cut make production clusters, each with a network of its own: each
    // region allocates from its own share of the org's pool, so they do not collide
    // although neither sees the other's.
    let (status, body) = east
        .post(
            &format!("{project}/clusters"),
            cluster("east-prod", "production", "us-east-1"),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = eu
        .post(
            &format!("{project}/clusters"),
            cluster("eu-prod", "production", "eu-west-1"),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    // The east goes on writing its own objects.
    east.create(&format!("{org}/folders"), "during-cut", json!({}))
        .await;
    until(
        eu,
        &eu_cluster,
        Duration::from_secs(90),
        |s, c| {
            s == 200
                && c["status"]["phase"] == "Ready"
                && common::slots(c, "worker")[0]["instanceId"] != victim.as_str()
        },
        logs,
    )
    .await;
    let (status, _) = eu.get(&format!("{org}/folders/during-cut")).await;
    assert_eq!(status, 404, "nothing reaches a region cut off");

    // Healed: everything written anywhere is everywhere, and the digests match.
    regions.heal(2);
    let took = converged(eu, Duration::from_secs(60), logs).await;
    println!("converged {took:?} after healing");
    for api in [east, west, eu] {
        let (status, _) = api.get(&format!("{org}/folders/during-cut")).await;
        assert_eq!(status, 200);
        let (_, repaired) = api.get(&eu_cluster).await;
        assert_ne!(
            common::slots(&repaired, "worker")[0]["instanceId"],
            victim.as_str()
        );
    }
    let (_, clusters) = west.get(&format!("{project}/clusters")).await;
    let mut ranges: Vec<String> = clusters["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            c["status"]["plan"]["network"]["vpcCidr"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(ranges.len(), 4, "{clusters:#}");
    ranges.sort();
    ranges.dedup();
    assert_eq!(
        ranges.len(),
        4,
        "each cluster has a range of its own: {ranges:?}"
    );
    let status = common::cli_ok(&regions.servers[3].1, &["regions", "status"]);
    assert!(
        status.contains("eu-west-1 (this)")
            && status.contains("us-east-1")
            && status.contains("digests match in every region"),
        "{status}"
    );
    let (status, _, metrics) = eu.get_text("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("replication_lag_seconds{region=\"us-east-1\"}"),
        "{metrics}"
    );
    let (status, list) = eu.get("/v1/regions").await;
    assert_eq!(status, 200, "{list}");
    assert!(
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["reachable"] == true),
        "{list:#}"
    );
}
