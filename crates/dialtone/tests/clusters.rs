//! Smart Clusters end to end, on the real binary with the `sim` cloud in fast mode.

mod common;

use std::time::{Duration, Instant};

use common::{Api, THREE_MINORS, slots, start_with, start_with_versions};
use serde_json::{Value, json};

const PROJECT: &str = "/v1/orgs/demo/folders/eng/projects/web";

async fn tree(api: &Api) {
    api.create("/v1/orgs/demo/folders", "eng", json!({})).await;
    api.create("/v1/orgs/demo/folders/eng/projects", "web", json!({}))
        .await;
}

fn cluster(name: &str, cluster_type: &str, region: &str) -> Value {
    json!({"metadata": {"name": name}, "spec": {"type": cluster_type, "region": region}})
}

async fn create(api: &Api, project: &str, body: Value) -> Value {
    let (status, created) = api.post(&format!("{project}/clusters"), body).await;
    assert_eq!(status, 201, "{created}");
    created
}

/// Polls the cluster until `done` holds, failing after 60 s with its last state.
async fn wait_for(api: &Api, path: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let (status, cluster) = api.get(path).await;
        if (status == 200 && done(&cluster)) || (status == 404 && what == "gone") {
            return cluster;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{path} never became {what}: {status} {cluster:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn ready(api: &Api, path: &str) -> Value {
    wait_for(api, path, "Ready", |c| c["status"]["phase"] == "Ready").await
}

async fn sim_resources(api: &Api, tag: Option<&str>) -> Vec<Value> {
    let path = match tag {
        Some(tag) => format!("/v1/sim/resources?tag={tag}"),
        None => "/v1/sim/resources".to_string(),
    };
    let (status, list) = api.get(&path).await;
    assert_eq!(status, 200, "{list}");
    list["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn developer_and_production_clusters_become_ready_and_leave_nothing_behind() {
    let server = start_with(&["--sim-time-scale", "0"]);
    let api = Api::admin(&server);
    tree(&api).await;
    create(&api, PROJECT, cluster("dev-a", "developer", "us-east-1")).await;
    create(&api, PROJECT, cluster("dev-b", "developer", "us-east-1")).await;
    create(&api, PROJECT, cluster("prod", "production", "us-east-1")).await;
    let dev_a = ready(&api, &format!("{PROJECT}/clusters/dev-a")).await;
    let dev_b = ready(&api, &format!("{PROJECT}/clusters/dev-b")).await;
    let prod = ready(&api, &format!("{PROJECT}/clusters/prod")).await;

    // Credentials and tokens answer at once: a write the access index does not follow (a
    // token) must not hold its answer until the index catches up (it did, for 5 s).
    for _ in 0..3 {
        let started = Instant::now();
        let (status, body) = api
            .post(&format!("{PROJECT}/clusters/dev-a/credentials"), json!({}))
            .await;
        let credentials = started.elapsed();
        assert_eq!(status, 201, "{body}");
        let started = Instant::now();
        let (status, body) = api
            .post("/v1/orgs/demo/identities/admin/tokens", json!({}))
            .await;
        let token = started.elapsed();
        assert_eq!(status, 201, "{body}");
        println!("credentials in {credentials:?}, a token in {token:?}");
        assert!(
            credentials < Duration::from_secs(1) && token < Duration::from_secs(1),
            "credentials in {credentials:?}, a token in {token:?}"
        );
    }

    // Production: three control-plane nodes in three zones, its own network.
    let cp = slots(&prod, "controlPlane");
    let mut zones: Vec<&str> = cp.iter().map(|n| n["zone"].as_str().unwrap()).collect();
    zones.dedup();
    assert_eq!(zones.len(), 3, "{cp:?}");
    assert!(cp.iter().all(|n| n["state"] == "running"));
    assert!(slots(&prod, "worker").len() >= 3);
    assert!(
        prod["status"]["endpoint"]
            .as_str()
            .unwrap()
            .starts_with("https://")
    );
    let network = |c: &Value| c["status"]["plan"]["network"].clone();
    assert_eq!(network(&prod)["sharedVpc"], false);

    // Developer: one control-plane node; the project's two share a VPC in the region.
    assert_eq!(slots(&dev_a, "controlPlane").len(), 1);
    assert_eq!(network(&dev_a)["vpcCidr"], network(&dev_b)["vpcCidr"]);
    assert_ne!(
        network(&prod)["vpcCidr"],
        network(&dev_a)["vpcCidr"],
        "production's /16 overlaps no other network of the org"
    );
    let vpcs: Vec<Value> = sim_resources(&api, None)
        .await
        .into_iter()
        .filter(|r| r["spec"]["kind"] == "vpc")
        .collect();
    assert_eq!(
        vpcs.len(),
        2,
        "one shared developer VPC and production's: {vpcs:#?}"
    );

    // An instance dies: the controller replaces it and the cluster is Ready again.
    let victim = slots(&prod, "worker")[0]["instanceId"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, killed) = api
        .post(&format!("/v1/sim/instances/{victim}/kill"), json!({}))
        .await;
    assert_eq!(status, 200, "{killed}");
    let repaired = wait_for(&api, &format!("{PROJECT}/clusters/prod"), "repaired", |c| {
        c["status"]["phase"] == "Ready" && slots(c, "worker")[0]["instanceId"] != victim.as_str()
    })
    .await;
    let reasons: Vec<&str> = repaired["status"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert!(reasons.contains(&"ReplacingNode"), "{reasons:?}");

    // Worker bounds change in place.
    let mut grown = dev_a.clone();
    grown["spec"]["minNodes"] = json!(3);
    let (status, body) = api.put(&format!("{PROJECT}/clusters/dev-a"), grown).await;
    assert_eq!(status, 200, "{body}");
    wait_for(
        &api,
        &format!("{PROJECT}/clusters/dev-a"),
        "3 workers",
        |c| c["status"]["phase"] == "Ready" && slots(c, "worker").len() == 3,
    )
    .await;

    // A production cluster is protected from deletion, and from a cascade above it, until
    // its protection is turned off; a refused delete changes nothing.
    let prod_path = format!("{PROJECT}/clusters/prod");
    let (_, prod) = api.get(&prod_path).await;
    assert_eq!(prod["spec"]["deletionProtection"], true, "{prod}");
    let (status, body) = api.delete(&prod_path).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("security.deletionProtection")
            && body["message"]
                .as_str()
                .unwrap()
                .contains("--deletion-protection=false"),
        "names the setting and how to turn it off: {body}"
    );
    let (status, body) = api.delete("/v1/orgs/demo/folders/eng?cascade=true").await;
    assert_eq!(
        status, 409,
        "a cascade stops at a protected cluster: {body}"
    );
    let (status, still) = api.get(&prod_path).await;
    assert_eq!(status, 200, "{still}");
    assert!(still["metadata"]["deletionTimestamp"].is_null(), "{still}");
    let (_, dev_b) = api.get(&format!("{PROJECT}/clusters/dev-b")).await;
    assert!(dev_b["metadata"]["deletionTimestamp"].is_null(), "{dev_b}");
    // The controller writes the status as it goes: read, change, write until it sticks.
    loop {
        let (_, mut unprotected) = api.get(&prod_path).await;
        unprotected["spec"]["deletionProtection"] = json!(false);
        match api.put(&prod_path, unprotected).await {
            (200, _) => break,
            (409, _) => continue,
            (status, body) => panic!("{status} {body}"),
        }
    }

    // Delete: nothing of any cluster remains in the cloud.
    for name in ["dev-a", "dev-b", "prod"] {
        let (status, body) = api.delete(&format!("{PROJECT}/clusters/{name}")).await;
        assert_eq!(status, 202, "held by its cloud resources: {body}");
    }
    for name in ["dev-a", "dev-b", "prod"] {
        wait_for(&api, &format!("{PROJECT}/clusters/{name}"), "gone", |_| {
            false
        })
        .await;
    }
    let left = sim_resources(&api, None).await;
    assert!(left.is_empty(), "left in the cloud: {left:#?}");
}

#[tokio::test]
async fn bad_cluster_requests_are_clear_4xx_and_provision_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _) = start_with_versions(dir.path(), THREE_MINORS, &["--sim-time-scale", "0"]);
    let api = Api::admin(&server);
    tree(&api).await;
    let clusters = format!("{PROJECT}/clusters");
    let message = |body: &Value| body.to_string();

    let (status, body) = api
        .post(&clusters, json!({"metadata": {"name": "x"}, "spec": {"type": "huge", "region": "mars-1", "kubernetesVersion": "1.20"}}))
        .await;
    assert_eq!(status, 422, "{body}");
    let text = message(&body);
    for expected in [
        "developer, production",
        "us-east-1, us-west-2, eu-west-1",
        "the regular channel offers 1.33, 1.34, 1.35",
    ] {
        assert!(
            text.contains(expected),
            "lists the valid values ({expected}): {text}"
        );
    }
    let (status, body) = api
        .post(&clusters, json!({"metadata": {"name": "x"}, "spec": {"type": "developer", "region": "us-east-1", "minNodes": 5, "maxNodes": 2}}))
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(message(&body).contains("below minNodes"), "{body}");

    let (status, body) = api
        .post(&clusters, json!({"metadata": {"name": "x"}, "spec": {"type": "developer", "region": "us-east-1", "consolidation": "always"}}))
        .await;
    assert!(status == 400 || status == 422, "{status} {body}");
    assert!(
        message(&body).contains("whenEmpty") && message(&body).contains("aggressive"),
        "lists the valid policies: {body}"
    );

    create(&api, PROJECT, cluster("dup", "developer", "us-west-2")).await;
    let (status, body) = api
        .post(&clusters, cluster("dup", "developer", "us-west-2"))
        .await;
    assert_eq!(status, 409, "{body}");
    let (_, mut existing) = api.get(&format!("{clusters}/dup")).await;
    existing["spec"]["type"] = json!("production");
    existing["spec"]["region"] = json!("eu-west-1");
    let (status, body) = api.put(&format!("{clusters}/dup"), existing).await;
    assert_eq!(status, 422, "{body}");
    assert!(message(&body).contains("cannot change in place"), "{body}");
    let (status, body) = api
        .put(
            &format!("{clusters}/dup/status"),
            json!({"metadata": {"name": "dup"}}),
        )
        .await;
    assert_eq!(
        status, 405,
        "only the control plane writes a cluster's status: {body}"
    );

    // An org whose address plan holds one /16 has room for one production cluster.
    let (status, body) = api
        .post(
            "/v1/orgs",
            json!({"metadata": {"name": "tiny"}, "spec": {"addressPlan": "10.42.0.0/16"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    api.create("/v1/orgs/tiny/folders", "f", json!({})).await;
    api.create("/v1/orgs/tiny/folders/f/projects", "p", json!({}))
        .await;
    let tiny = "/v1/orgs/tiny/folders/f/projects/p";
    let first = create(&api, tiny, cluster("one", "production", "eu-west-1")).await;
    assert_eq!(
        first["status"]["plan"]["network"]["vpcCidr"],
        "10.42.0.0/16"
    );
    let (status, body) = api
        .post(
            &format!("{tiny}/clusters"),
            cluster("two", "production", "eu-west-1"),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(message(&body).contains("no free /16"), "{body}");
    let (status, _) = api.get(&format!("{tiny}/clusters/two")).await;
    assert_eq!(status, 404, "a rejected cluster is not stored");
    let (status, body) = api
        .post(
            "/v1/orgs",
            json!({"metadata": {"name": "odd"}, "spec": {"addressPlan": "10.0.0.0/24"}}),
        )
        .await;
    assert_eq!(status, 422, "an address plan smaller than a /16: {body}");

    // Another tenant cannot see that clusters exist.
    let other = api.tenant("other").await;
    let (status, _) = other.get(&format!("{clusters}/dup")).await;
    assert_eq!(status, 404);
    let (status, _) = other.get("/v1/sim/resources").await;
    assert_eq!(status, 403, "the sim's own API is for platform admins");
    let (status, body) = api.get("/v1/sim/no-such-thing").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        body["kind"], "Status",
        "a path the sim does not serve: {body}"
    );

    // Nothing but the two accepted clusters was provisioned.
    let owners: std::collections::BTreeSet<String> = sim_resources(&api, None)
        .await
        .iter()
        .filter_map(|r| r["tags"]["dialtone.dev/owner"].as_str().map(String::from))
        .collect();
    let expected = [
        "orgs/demo/folders/eng/projects/web/clusters/dup",
        "orgs/demo/folders/eng/projects/web@us-west-2",
        "orgs/tiny/folders/f/projects/p/clusters/one",
    ];
    assert_eq!(owners, expected.map(String::from).into(), "{owners:?}");
}

#[tokio::test]
async fn provisioning_finishes_after_the_server_is_killed_midway() {
    // Cloud latencies at a twentieth of a real cloud's: the kill lands mid-provisioning. The
    // cloud is as eventually consistent as EC2: after the restart, describe may miss the
    // instances launched just before the kill.
    let mut server = start_with(&["--sim-time-scale", "0.05", "--sim-describe-lag-ms", "300"]);
    let api = Api::admin(&server);
    tree(&api).await;
    create(&api, PROJECT, cluster("prod", "production", "us-west-2")).await;
    wait_for(
        &api,
        &format!("{PROJECT}/clusters/prod"),
        "launching",
        |c| {
            c["status"]["nodes"]
                .as_array()
                .is_some_and(|n| !n.is_empty())
        },
    )
    .await;
    server.kill9();
    server.start_again().expect("the server starts again");
    let api = Api::admin(&server);
    let prod = ready(&api, &format!("{PROJECT}/clusters/prod")).await;
    let uid = prod["metadata"]["uid"].as_str().unwrap();
    let instances: Vec<Value> = sim_resources(&api, Some(&format!("dialtone.dev/cluster={uid}")))
        .await
        .into_iter()
        .filter(|r| r["spec"]["kind"] == "instance")
        .collect();
    assert_eq!(
        instances.len(),
        prod["status"]["nodes"].as_array().unwrap().len(),
        "one instance per planned node, none duplicated: {instances:#?}"
    );
}

/// How many launches the sim's faults have failed so far.
async fn fired(api: &Api) -> u64 {
    let (status, faults) = api.get("/v1/sim/faults").await;
    assert_eq!(status, 200, "{faults}");
    faults["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["fired"].as_u64().unwrap())
        .sum()
}

#[tokio::test]
async fn launches_that_keep_failing_back_off_then_fail_the_cluster_until_the_fault_clears() {
    let server = start_with(&["--sim-time-scale", "0"]);
    let api = Api::admin(&server);
    tree(&api).await;
    let (status, fault) = api
        .post(
            "/v1/sim/faults",
            json!({"kind": "boot-failure", "region": "us-east-1"}),
        )
        .await;
    assert_eq!(status, 201, "{fault}");

    // `--wait` reports each step with its time and exits non-zero once the cluster has
    // failed: the type's three launches in a row.
    let out = server.cli(&[
        "cluster",
        "create",
        "bf",
        "--folder",
        "eng",
        "--project",
        "web",
        "--type",
        "developer",
        "--region",
        "us-east-1",
        "--wait",
        "--timeout",
        "2m",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("has failed") && stderr.contains("times in a row"),
        "{stderr}"
    );
    assert!(
        stderr
            .lines()
            .any(|l| l.trim_start().chars().take(8).filter(|c| *c == ':').count() == 2),
        "every step is stamped with its time: {stderr}"
    );
    let path = format!("{PROJECT}/clusters/bf");
    let (_, failed) = api.get(&path).await;
    assert_eq!(failed["status"]["phase"], "Failed", "{failed:#}");
    let ready = failed["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
        .clone();
    assert_eq!(ready["reason"], "LaunchFailed", "{ready}");
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .contains("--exclude-family"),
        "says what to do: {ready}"
    );
    let events: Vec<&str> = failed["status"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert!(
        events.contains(&"LaunchFailed") && events.contains(&"Failed"),
        "{events:?}"
    );

    // Backing off: in the fast sim retries start 50 ms apart and double up to a second, so
    // a few seconds see a handful of launches, not one per 20 ms poll.
    let before = fired(&api).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = fired(&api).await - before;
    println!("launches in 3 s while failing: {during}");
    assert!((1..=12).contains(&during), "{during} launches in 3 s");

    // The fault clears: the next retry launches, and the cluster becomes Ready.
    let id = fault["id"].as_str().unwrap();
    let (status, body) = api.delete(&format!("/v1/sim/faults/{id}")).await;
    assert_eq!(status, 200, "{body}");
    let recovered = wait_for(&api, &path, "Ready", |c| c["status"]["phase"] == "Ready").await;
    assert!(
        recovered["status"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n.get("launchBackoff").is_none()),
        "{recovered:#}"
    );
}

#[tokio::test]
async fn background_tasks_that_panic_are_restarted_and_reported() {
    let server = start_with(&[
        "--sim-time-scale",
        "0",
        "--fault-panic-task",
        "cluster-lifecycle",
        "--fault-panic-task",
        "access-index",
    ]);
    let api = Api::admin(&server);
    // The lifecycle controller and the access index each died once at start; a cluster is
    // still provisioned and made Ready, so both run again.
    tree(&api).await;
    create(&api, PROJECT, cluster("dev", "developer", "us-east-1")).await;
    ready(&api, &format!("{PROJECT}/clusters/dev")).await;

    let (status, _, readyz) = api.get_text("/readyz?verbose").await;
    assert_eq!(status, 200, "{readyz}");
    for task in ["cluster-lifecycle", "access-index"] {
        let line = readyz
            .lines()
            .find(|l| l.starts_with(&format!("[+]task {task} ok")))
            .unwrap_or_else(|| panic!("{task} is not reported running:\n{readyz}"));
        assert!(
            line.contains("1 restarts") && line.contains("injected panic"),
            "{line}"
        );
    }
    assert!(readyz.contains("[+]task compactor ok\n"), "{readyz}");
    // The controllers report their passes and queues (a pass may have lost a race with
    // another writer of the cluster's status, so failures are not asserted).
    for controller in ["cluster-lifecycle", "rbac-projection", "deletion"] {
        let line = readyz
            .lines()
            .find(|l| l.starts_with(&format!("[+]controller {controller} ok (")))
            .unwrap_or_else(|| panic!("{controller} is not reported:\n{readyz}"));
        assert!(
            line.contains(" passes, ") && line.contains(" waiting"),
            "{line}"
        );
    }
    let (status, content_type, metrics) = api.get_text("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(
        metrics.contains(r#"dialtone_task_restarts_total{task="cluster-lifecycle"} 1"#)
            && metrics.contains(r#"dialtone_task_running{task="cluster-lifecycle"} 1"#)
            && metrics.contains(r#"dialtone_task_restarts_total{task="compactor"} 0"#),
        "{metrics}"
    );
    let passes = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(r#"dialtone_controller_passes_total{controller="cluster-lifecycle"} "#)
        })
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no lifecycle passes counted:\n{metrics}"));
    assert!(passes >= 2, "a cluster made Ready took {passes} passes");
    assert!(
        metrics.contains(r#"dialtone_clusters{phase="Ready"} 1"#)
            && metrics.contains(r#"dialtone_clusters{phase="Provisioning"} 0"#)
            && metrics.contains("dialtone_cluster_time_to_ready_seconds_count 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"dialtone_controller_failures_total{controller="cluster-lifecycle"} "#)
            && metrics.contains(
                r#"dialtone_controller_queue_depth{controller="cluster-lifecycle",state="waiting"}"#
            ),
        "{metrics}"
    );
    assert!(
        server.log().contains("background task stopped"),
        "{}",
        server.log()
    );
}

/// A quiet fleet writes nothing: once 50 clusters are Ready and settled, ten simulated
/// minutes pass without a change to any object of Dialtone's store (its revision stays)
/// or to a cluster's own API (its resourceVersion stays).
#[tokio::test]
async fn a_quiet_fleet_writes_nothing_for_ten_simulated_minutes() {
    // A hundredth of real time: ten simulated minutes are six seconds.
    // Metered in day-long periods, so that no period closes (and is recorded) while it is watched.
    let server = start_with(&["--sim-time-scale", "0.01", "--metering-period", "86400"]);
    let api = Api::admin(&server);
    tree(&api).await;
    const FLEET: usize = 50;
    for i in 0..FLEET {
        create(
            &api,
            PROJECT,
            cluster(&format!("c{i}"), "developer", "us-east-1"),
        )
        .await;
    }
    let list = format!("{PROJECT}/clusters");
    let start = Instant::now();
    loop {
        let (_, clusters) = api.get(&list).await;
        let ready = clusters["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["status"]["phase"] == "Ready" && c["status"]["health"] == "Healthy")
            .count();
        if ready == FLEET {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{ready} of {FLEET} Ready"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // What a cluster's API holds, as its list of every kind the sim serves says.
    common::credentials(&server, "c0", &server.data_dir().join("c0.kubeconfig"));
    let cluster_revision = || {
        let out = std::process::Command::new("/usr/bin/kubectl")
            .args(["get", "--raw", "/api/v1/nodes"])
            .env("KUBECONFIG", server.data_dir().join("c0.kubeconfig"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let nodes: Value = serde_json::from_slice(&out.stdout).unwrap();
        nodes["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let snapshot = || async {
        let (_, clusters) = api.get(&list).await;
        let versions: Vec<(String, String)> = clusters["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["metadata"]["name"].as_str().unwrap().to_string(),
                    c["metadata"]["resourceVersion"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                )
            })
            .collect();
        (clusters["metadata"]["resourceVersion"].clone(), versions)
    };
    // Settled: a simulated minute after the last Ready, then ten more.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (revision, versions) = snapshot().await;
    let inside = cluster_revision();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (revision_after, versions_after) = snapshot().await;
    let changed: Vec<_> = versions
        .iter()
        .zip(&versions_after)
        .filter(|(a, b)| a != b)
        .map(|(a, _)| a.0.clone())
        .collect();
    assert_eq!(changed, Vec::<String>::new(), "clusters rewritten");
    assert_eq!(revision, revision_after, "the store was written");
    assert_eq!(inside, cluster_revision(), "c0's API was written");
}

#[tokio::test]
async fn bad_versions_channels_windows_and_exclusions_are_clear_4xx_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (server, catalogue) =
        start_with_versions(dir.path(), THREE_MINORS, &["--sim-time-scale", "0"]);
    let api = Api::admin(&server);
    tree(&api).await;
    let clusters = format!("{PROJECT}/clusters");
    let in_days = |days: i64| format!("{}T00:00:00Z", common::day(days));
    let refused = [
        (
            json!({"kubernetesVersion": "1.40"}),
            "`1.40` is not in the version catalogue; the regular channel offers 1.33, 1.34, 1.35",
        ),
        (json!({"kubernetesVersion": "1.35.0"}), "name a minor"),
        (json!({"releaseChannel": "fast"}), "rapid"),
        (
            json!({"maintenance": {"window": {"day": "funday", "start": "02:00", "hours": 4}}}),
            "saturday",
        ),
        (
            json!({"maintenance": {"window": {"day": "sunday", "start": "02:00", "hours": 3}}}),
            "a window lasts 4 to 24 hours",
        ),
        (
            json!({"maintenance": {"window": {"day": "sunday", "start": "2am", "hours": 4}}}),
            "use HH:MM in UTC",
        ),
        (
            json!({"maintenance": {"exclusions": [{"start": in_days(1), "end": in_days(61)}]}}),
            "the regular channel allows exclusions of up to 30 days",
        ),
    ];
    for (fields, expected) in refused {
        let mut body = cluster("v", "developer", "us-east-1");
        for (key, value) in fields.as_object().unwrap() {
            body["spec"][key] = value.clone();
        }
        let (status, answer) = api.post(&clusters, body).await;
        assert!(status == 400 || status == 422, "{status} {answer}");
        assert!(
            answer.to_string().contains(expected),
            "{expected}: {answer}"
        );
        assert_eq!(
            api.get(&format!("{clusters}/v")).await.0,
            404,
            "nothing was made"
        );
    }

    let update = |version: &str| {
        server.cli(&[
            "cluster",
            "update",
            "v",
            "--folder",
            "eng",
            "--project",
            "web",
            "--kubernetes-version",
            version,
        ])
    };
    let mut body = cluster("v", "developer", "us-east-1");
    body["spec"]["kubernetesVersion"] = json!("1.33");
    // Held, so that no automatic upgrade starts: the upgrades are the ones asked for.
    body["spec"]["maintenance"] =
        json!({"exclusions": [{"start": in_days(-1), "end": in_days(10)}]});
    create(&api, PROJECT, body).await;
    wait_for(&api, &format!("{clusters}/v"), "Ready", |c| {
        c["status"]["phase"] == "Ready"
    })
    .await;
    for (version, expected) in [
        ("1.35", "upgrade one minor version at a time"),
        ("1.32", "downgrades are not supported"),
        ("1.33.1", "name a minor"),
    ] {
        let out = update(version);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(expected),
            "{version}: {stderr}"
        );
    }
    let version = |c: &Value| c["spec"]["kubernetesVersion"].clone();
    assert_eq!(version(&api.get(&format!("{clusters}/v")).await.1), "1.33");
    // One upgrade at a time.
    assert!(update("1.34").status.success());
    let out = update("1.35");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("wait for it to finish"),
        "{stderr}"
    );
    assert_eq!(version(&api.get(&format!("{clusters}/v")).await.1), "1.34");

    // The operator's catalogue is read again when it changes; once nothing in it is
    // supported, a cluster that names no version is refused, saying why.
    common::write_catalogue(&catalogue, &[("1.34", 500, -1, &[("1.34.0", 500)])]);
    let start = Instant::now();
    loop {
        let (status, list) = api.get("/v1/versions").await;
        assert_eq!(status, 200, "{list}");
        if list["items"].as_array().unwrap().len() == 1 {
            assert_eq!(list["items"][0]["channels"], json!({}), "{list}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "never read again: {list}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, answer) = api
        .post(&clusters, cluster("w", "developer", "us-east-1"))
        .await;
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer
            .to_string()
            .contains("the regular channel offers no supported minor today"),
        "{answer}"
    );
}
