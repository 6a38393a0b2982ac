//! Clusters kept as their type says: broken nodes repaired within the type's limits,
//! upgrades that keep etcd's quorum, drift in the cloud put back. The real binary, the sim's
//! failure injection (`dialtone sim kill|hang|recover`, changes made behind Dialtone's back)
//! and `/usr/bin/kubectl` watching the nodes.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    Api, THREE_MINORS, TestMinor, cli_ok, credentials, slots, start_with_versions, write_catalogue,
};
use dialtone_testkit::DevServer;
use serde_json::{Value, json};

const PROJECT: &str = "/v1/orgs/demo/folders/eng/projects/web";
/// Cloud latencies at 1/200 of a real cloud's: a developer cluster's nodes are replaced
/// after 3 s NotReady (`repair.unhealthyAfterSeconds` 600), production's after 1.5 s.
const FAST: &str = "0.005";

fn kubectl(kubeconfig: &Path, args: &[&str]) -> Value {
    let json = common::kubectl_ok(kubeconfig, &[args, &["-o", "json"]].concat());
    serde_json::from_str(&json).unwrap()
}

/// The cluster's nodes as kubectl lists them: (instance id, control plane, Ready).
fn nodes(kubeconfig: &Path) -> Vec<(String, bool, bool)> {
    let list = kubectl(kubeconfig, &["get", "nodes"]);
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let labels = &n["metadata"]["labels"];
            let ready = n["status"]["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            (
                labels["dialtone.dev/instance-id"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                labels["node-role.kubernetes.io/control-plane"].is_string(),
                ready,
            )
        })
        .collect()
}

/// A dev server at `time_scale`, a cluster `name` of `flags` made with the CLI and Ready,
/// and a kubeconfig for it; the server's version catalogue is `versions.json` beside it.
async fn cluster(
    time_scale: &str,
    name: &str,
    flags: &[&str],
) -> (DevServer, Api, tempfile::TempDir, PathBuf) {
    cluster_of(THREE_MINORS, time_scale, name, flags).await
}

/// `cluster` with a version catalogue of `minors`.
async fn cluster_of(
    minors: &[TestMinor<'_>],
    time_scale: &str,
    name: &str,
    flags: &[&str],
) -> (DevServer, Api, tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (server, _) = start_with_versions(dir.path(), minors, &["--sim-time-scale", time_scale]);
    let api = Api::admin(&server);
    api.create("/v1/orgs/demo/folders", "eng", json!({})).await;
    api.create("/v1/orgs/demo/folders/eng/projects", "web", json!({}))
        .await;
    let mut args = vec![
        "cluster",
        "create",
        name,
        "--folder",
        "eng",
        "--project",
        "web",
        "--region",
        "us-east-1",
        "--wait",
    ];
    args.extend_from_slice(flags);
    cli_ok(&server, &args);
    let kubeconfig = dir.path().join("config");
    credentials(&server, name, &kubeconfig);
    (server, api, dir, kubeconfig)
}

/// A developer cluster `six` of exactly six workers.
async fn six_workers() -> (DevServer, Api, tempfile::TempDir, PathBuf) {
    let flags = [
        "--type",
        "developer",
        "--min-nodes",
        "6",
        "--max-nodes",
        "6",
    ];
    cluster(FAST, "six", &flags).await
}

/// `dialtone sim kill|hang|recover INSTANCE`.
fn break_instance(server: &DevServer, operation: &str, instance: &str) {
    cli_ok(server, &["sim", operation, instance]);
}

/// The cluster's row in `dialtone cluster list`.
fn list_row(server: &DevServer, name: &str) -> Vec<String> {
    let text = cli_ok(
        server,
        &["cluster", "list", "--folder", "eng", "--project", "web"],
    );
    let header: Vec<&str> = text.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header[4..6], ["PHASE", "HEALTH"], "{text}");
    text.lines()
        .map(|line| {
            line.split_whitespace()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .find(|row| row[0] == name)
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// The sim's resources of `kind` tagged `tag` (`key=value`), as its operator API lists them.
async fn sim_resources(api: &Api, tag: &str, kind: &str) -> Vec<Value> {
    let (status, list) = api.get(&format!("/v1/sim/resources?tag={tag}")).await;
    assert_eq!(status, 200, "{list}");
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["spec"]["kind"] == kind)
        .cloned()
        .collect()
}

async fn get(api: &Api, name: &str) -> Value {
    let (status, cluster) = api.get(&format!("{PROJECT}/clusters/{name}")).await;
    assert_eq!(status, 200, "{cluster}");
    cluster
}

/// Polls the cluster until `done` holds, failing after `limit` with its last state.
async fn wait_for(
    api: &Api,
    name: &str,
    what: &str,
    limit: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        let cluster = get(api, name).await;
        if done(&cluster) {
            return cluster;
        }
        assert!(
            start.elapsed() < limit,
            "{name} never became {what}: {:#}",
            cluster["status"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn instance_ids(cluster: &Value, role: &str) -> Vec<String> {
    slots(cluster, role)
        .iter()
        .map(|n| n["instanceId"].as_str().unwrap_or("").to_string())
        .collect()
}

fn repairs(cluster: &Value) -> Vec<Value> {
    cluster["status"]["repairs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn condition(cluster: &Value, type_: &str) -> (String, String, String) {
    let c = cluster["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} condition: {:#}", cluster["status"]));
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    (text(&c["status"]), text(&c["reason"]), text(&c["message"]))
}

/// Every node Ready and no repair under way: the plan's nodes, each a Ready node.
fn settled(cluster: &Value, kubeconfig: &Path, nodes_planned: usize) -> bool {
    cluster["status"]["phase"] == "Ready" && {
        let seen = nodes(kubeconfig);
        seen.len() == nodes_planned && seen.iter().all(|(_, _, ready)| *ready)
    }
}

#[tokio::test]
async fn one_broken_worker_of_six_is_replaced_once_after_the_threshold_then_backs_off() {
    let (server, api, _dir, kubeconfig) = six_workers().await;
    let before = get(&api, "six").await;
    let workers = instance_ids(&before, "worker");
    assert_eq!(workers.len(), 6, "{:#}", before["status"]);
    let (status, ..) = condition(&before, "EveryNodeReady");
    assert_eq!(status, "True");
    // Six workers are the fewest it may have, and they run nothing: nothing cheaper.
    let sized = wait_for(&api, "six", "sized", Duration::from_secs(10), |c| {
        c["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "SizeEfficient")
    })
    .await;
    let (status, reason, _) = condition(&sized, "SizeEfficient");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "NothingCheaper")
    );
    let (status, ..) = condition(&sized, "SecurityCompliant");
    assert_eq!(status, "True");

    // A worker stops answering: its node turns NotReady, and it is replaced only once it
    // has been so for the threshold.
    let victim = workers[2].clone();
    let hung_at = jiff::Timestamp::now();
    break_instance(&server, "hang", &victim);
    let start = Instant::now();
    while nodes(&kubeconfig)
        .iter()
        .any(|(id, _, ready)| *id == victim && *ready)
    {
        assert!(start.elapsed() < Duration::from_secs(10), "never NotReady");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let broken = wait_for(&api, "six", "aware", Duration::from_secs(10), |c| {
        condition(c, "EveryNodeReady").0 == "False"
    })
    .await;
    let (_, reason, message) = condition(&broken, "EveryNodeReady");
    assert_eq!(reason, "NodesUnhealthy");
    assert!(message.contains("stopped answering"), "{message}");

    let repaired = wait_for(&api, "six", "repaired", Duration::from_secs(30), |c| {
        !repairs(c).is_empty() && settled(c, &kubeconfig, 7)
    })
    .await;
    let done = repairs(&repaired);
    assert_eq!(done.len(), 1, "exactly one repair: {done:#?}");
    assert_eq!(done[0]["instanceId"], victim.as_str());
    assert_eq!(done[0]["inARow"], 1);
    let decided: jiff::Timestamp = done[0]["time"].as_str().unwrap().parse().unwrap();
    let waited = decided.duration_since(hung_at).as_secs_f64();
    assert!(
        waited >= 2.9,
        "replaced after {waited:.1}s, before the 3 s threshold"
    );
    let after = instance_ids(&repaired, "worker");
    let changed: Vec<_> = workers.iter().zip(&after).filter(|(a, b)| a != b).collect();
    assert_eq!(changed.len(), 1, "{workers:?} → {after:?}");
    assert!(
        !nodes(&kubeconfig).iter().any(|(id, ..)| *id == victim),
        "the broken node is gone"
    );
    let (status, ..) = condition(&repaired, "EveryNodeReady");
    assert_eq!(status, "True");

    // Its replacement breaks right away: the next repair waits twice as long.
    let again = after[2].clone();
    let hung_at = jiff::Timestamp::now();
    break_instance(&server, "hang", &again);
    let twice = wait_for(
        &api,
        "six",
        "repaired again",
        Duration::from_secs(40),
        |c| repairs(c).len() == 2 && settled(c, &kubeconfig, 7),
    )
    .await;
    let second = &repairs(&twice)[1];
    assert_eq!(second["instanceId"], again.as_str());
    assert_eq!(second["inARow"], 2, "{second}");
    let decided: jiff::Timestamp = second["time"].as_str().unwrap().parse().unwrap();
    let waited = decided.duration_since(hung_at).as_secs_f64();
    assert!(
        waited >= 5.9,
        "the second repair waited {waited:.1}s, not 6 s"
    );
}

#[tokio::test]
async fn three_broken_workers_of_six_are_an_outage_repairs_wait_until_fewer_are() {
    let (server, api, _dir, kubeconfig) = six_workers().await;
    let before = get(&api, "six").await;
    let workers = instance_ids(&before, "worker");
    for victim in &workers[..3] {
        break_instance(&server, "hang", victim);
    }
    let held = wait_for(&api, "six", "held", Duration::from_secs(10), |c| {
        condition(c, "RemediationAllowed").0 == "False"
    })
    .await;
    let (_, reason, message) = condition(&held, "RemediationAllowed");
    assert_eq!(reason, "TooManyUnhealthy");
    assert!(
        message.contains("3 of 6 workers") && message.contains("40%"),
        "{message}"
    );
    // Twice the threshold later, still nothing was replaced.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let still = get(&api, "six").await;
    assert!(repairs(&still).is_empty(), "{:#?}", repairs(&still));
    assert_eq!(instance_ids(&still, "worker"), workers);
    assert_eq!(still["status"]["phase"], "Degraded");
    let ready_workers = nodes(&kubeconfig)
        .iter()
        .filter(|(_, cp, ready)| !cp && *ready)
        .count();
    assert_eq!(ready_workers, 3);
    assert_eq!(list_row(&server, "six")[4..6], ["Degraded", "Warning"]);

    // One answers again: two of six broken is within the limit, and both are repaired.
    break_instance(&server, "recover", &workers[0]);
    let repaired = wait_for(&api, "six", "repaired", Duration::from_secs(40), |c| {
        repairs(c).len() == 2 && settled(c, &kubeconfig, 7)
    })
    .await;
    let replaced: std::collections::BTreeSet<String> = repairs(&repaired)
        .iter()
        .map(|r| r["instanceId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(replaced, [workers[1].clone(), workers[2].clone()].into());
    assert_eq!(instance_ids(&repaired, "worker")[0], workers[0]);
    assert_eq!(list_row(&server, "six")[4..6], ["Ready", "Healthy"]);
    let (status, reason, _) = condition(&repaired, "RemediationAllowed");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "RepairsAllowed")
    );
}

#[tokio::test]
async fn a_control_plane_node_is_replaced_while_two_stay_healthy_and_a_second_waits_its_turn() {
    // Slower, so that a replacement takes long enough (1.5 s) to kill another node meanwhile.
    let (server, api, _dir, kubeconfig) = cluster("0.05", "prod", &["--type", "production"]).await;
    let before = get(&api, "prod").await;
    let control_plane = instance_ids(&before, "controlPlane");
    assert_eq!(control_plane.len(), 3);
    let (status, ..) = condition(&before, "ControlPlaneHealthy");
    assert_eq!(status, "True");

    break_instance(&server, "kill", &control_plane[1]);
    // The moment its repair is decided, a second control-plane node dies.
    let repairing = wait_for(&api, "prod", "repairing", Duration::from_secs(10), |c| {
        !repairs(c).is_empty()
    })
    .await;
    assert_eq!(repairs(&repairing)[0]["node"], "cp-1");
    let ready_cp = |nodes: &[(String, bool, bool)]| {
        nodes.iter().filter(|(_, cp, ready)| *cp && *ready).count()
    };
    assert!(
        ready_cp(&nodes(&kubeconfig)) >= 2,
        "{:?}",
        nodes(&kubeconfig)
    );
    break_instance(&server, "kill", &control_plane[2]);

    // cp-2 waits until cp-1's replacement is a Ready node: never two at once.
    let start = Instant::now();
    let mut held = false;
    let cluster = loop {
        let cluster = get(&api, "prod").await;
        let done = repairs(&cluster);
        let cp1_back = slots(&cluster, "controlPlane")[1]["state"] == "running";
        if done.len() == 1 {
            held |= cluster["status"]["events"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["reason"] == "RepairHeld");
        } else {
            assert!(
                cp1_back || done.len() < 2,
                "cp-2 replaced before cp-1 was back"
            );
        }
        if done.len() == 2 && settled(&cluster, &kubeconfig, 3 + slots(&cluster, "worker").len()) {
            break cluster;
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "{:#}",
            cluster["status"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(held, "cp-2's repair was held while cp-1's ran");
    let order: Vec<String> = repairs(&cluster)
        .iter()
        .map(|r| r["node"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(order, ["cp-1", "cp-2"]);
    let after = instance_ids(&cluster, "controlPlane");
    assert_eq!(after[0], control_plane[0], "cp-0 was never touched");
    assert!(after[1] != control_plane[1] && after[2] != control_plane[2]);
    assert_eq!(ready_cp(&nodes(&kubeconfig)), 3);
    let (status, ..) = condition(&cluster, "ControlPlaneHealthy");
    assert_eq!(status, "True");
}

/// Pods that the scheduler has found no node for: `PodScheduled` False, `Unschedulable`.
fn unplaceable(kubeconfig: &Path) -> Vec<String> {
    let pods = kubectl(kubeconfig, &["get", "pods", "-A"]);
    pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| {
                    c["type"] == "PodScheduled"
                        && c["status"] == "False"
                        && c["reason"] == "Unschedulable"
                })
        })
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_production_upgrade_keeps_two_control_plane_nodes_and_every_pod_placed() {
    let (server, api, _dir, kubeconfig) = cluster(
        "0.05",
        "prod",
        &["--type", "production", "--kubernetes-version", "1.33"],
    )
    .await;
    let run = |args: &[&str]| {
        let out = Command::new("/usr/bin/kubectl")
            .args(args)
            .env("KUBECONFIG", &kubeconfig)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // A production cluster enforces the restricted Pod Security level; nginx's plain pod
    // is not, so its owner relaxes the namespace to baseline first.
    run(&[
        "label",
        "namespace",
        "default",
        "pod-security.kubernetes.io/enforce=baseline",
        "--overwrite",
    ]);
    run(&[
        "create",
        "deployment",
        "web",
        "--image=nginx",
        "--replicas=6",
    ]);
    run(&[
        "create",
        "pdb",
        "web",
        "--selector=app=web",
        "--min-available=5",
    ]);
    let running = || {
        kubectl(&kubeconfig, &["get", "pods", "-l", "app=web"])["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .count()
    };
    let start = Instant::now();
    while running() < 6 {
        assert!(start.elapsed() < Duration::from_secs(20), "web never ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let update = [
        "cluster",
        "update",
        "prod",
        "--folder",
        "eng",
        "--project",
        "web",
    ];
    cli_ok(
        &server,
        &[&update[..], &["--kubernetes-version", "1.34"]].concat(),
    );
    let start = Instant::now();
    let (mut fewest_control_plane, mut samples) = (usize::MAX, 0);
    loop {
        let seen = nodes(&kubeconfig);
        let control_plane = seen.iter().filter(|(_, cp, ready)| *cp && *ready).count();
        fewest_control_plane = fewest_control_plane.min(control_plane);
        let stuck = unplaceable(&kubeconfig);
        assert!(
            stuck.is_empty(),
            "unplaceable during the upgrade: {stuck:?}"
        );
        samples += 1;
        let cluster = get(&api, "prod").await;
        let upgraded = cluster["status"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["kubernetesVersion"] == "1.34.1" && n["state"] == "running");
        if upgraded && settled(&cluster, &kubeconfig, seen.len()) && running() == 6 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{:#}",
            cluster["status"]["events"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("{samples} samples; at least {fewest_control_plane} control-plane nodes Ready");
    assert!(
        fewest_control_plane >= 2,
        "only {fewest_control_plane} control-plane nodes were Ready at one point"
    );
    let version = kubectl(&kubeconfig, &["version"]);
    assert_eq!(version["serverVersion"]["minor"], "34", "{version}");
}

#[tokio::test]
async fn security_group_rules_changed_behind_dialtones_back_are_put_back() {
    let (_server, api, _dir, _kubeconfig) = cluster(FAST, "dev", &["--type", "developer"]).await;
    let cluster = get(&api, "dev").await;
    let uid = cluster["metadata"]["uid"].as_str().unwrap();
    let api_source = cluster["status"]["plan"]["network"]["apiAllowedCidrs"][0]
        .as_str()
        .unwrap()
        .to_string();
    let group = || async {
        sim_resources(
            &api,
            &format!("dialtone.dev/cluster={uid}"),
            "securityGroup",
        )
        .await
        .pop()
        .expect("the cluster's security group")
    };
    let rules = |group: &Value| -> std::collections::BTreeSet<(u64, String)> {
        group["spec"]["ingress"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["port"].as_u64().unwrap(),
                    r["source"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let planned = rules(&group().await);
    assert!(planned.contains(&(6443, api_source.clone())), "{planned:?}");
    let id = group().await["id"].as_str().unwrap().to_string();
    let change = |body: Value| {
        let api = api.clone();
        let path = format!("/v1/sim/resources/{id}/changes");
        async move { api.post(&path, body).await }
    };

    // A change the sim does not know is refused, naming the ones it does, and changes nothing.
    let (status, body) = change(json!({"change": "openEverything"})).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("allowIngress, revokeIngress, removeRoute, removeTag"),
        "{body}"
    );
    assert_eq!(rules(&group().await), planned);

    // SSH opened to the internet, and the API's own rule revoked.
    let (status, body) =
        change(json!({"change": "allowIngress", "port": 22, "source": "0.0.0.0/0"})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) =
        change(json!({"change": "revokeIngress", "port": 6443, "source": api_source})).await;
    assert_eq!(status, 200, "{body}");
    let start = Instant::now();
    while rules(&group().await) != planned {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "never put back: {:?}, planned {planned:?}",
            rules(&group().await)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The pass that put the rules back records what it did once it has done it.
    let restored = loop {
        let restored = get(&api, "dev").await;
        let said: Vec<String> = restored["status"]["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["reason"] == "DriftRestored")
            .map(|e| e["message"].as_str().unwrap().to_string())
            .collect();
        let all = said.join("\n");
        if all.contains("tcp/22 from 0.0.0.0/0 was added outside Dialtone; revoked")
            && all.contains(&format!(
                "tcp/6443 from {api_source} was removed; allowed again"
            ))
        {
            break restored;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the restores were not recorded: {all}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (status, ..) = condition(&restored, "NetworkCompliant");
    assert_eq!(status, "True");
    // The certificate the API serves, read from a TLS handshake: kubeadm's one year; and
    // the plan's Pod Security level, which a dry-run privileged pod finds enforced.
    let (status, reason, message) = condition(&restored, "SecurityCompliant");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "AsPlanned"),
        "{message}"
    );
    assert!(
        message.ends_with("; Pod Security `baseline` enforced (a privileged pod is refused)"),
        "{message}"
    );
    let until: jiff::Timestamp = message
        .split("serving a certificate valid until ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("{message}"))
        .parse()
        .unwrap();
    let days = until.duration_since(jiff::Timestamp::now()).as_secs() / 86_400;
    assert!((363..=365).contains(&days), "{days} days: {message}");
}

#[tokio::test]
async fn subnet_tags_removed_behind_dialtones_back_are_put_back() {
    let (_server, api, _dir, _kubeconfig) = cluster(FAST, "prod", &["--type", "production"]).await;
    let path = "orgs/demo/folders/eng/projects/web/clusters/prod";
    let owned = format!("dialtone.dev/owner={path}");
    let subnets = || sim_resources(&api, &owned, "subnet");
    let before = subnets().await;
    assert_eq!(before.len(), 3, "a production cluster's three zones");
    let id = before[0]["id"].as_str().unwrap().to_string();
    let changes = format!("/v1/sim/resources/{id}/changes");
    let (status, body) = api.post(&changes, json!({"change": "removeTag"})).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("`key` is required"), "{body}");
    let (status, body) = api
        .post(
            &changes,
            json!({"change": "removeTag", "key": "dialtone.dev/owner"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let restored = wait_for(
        &api,
        "prod",
        "told of the tag",
        Duration::from_secs(20),
        |c| {
            has_event(
                c,
                "DriftRestored",
                &format!("subnet {id}: tag dialtone.dev/owner was removed"),
            )
        },
    )
    .await;
    assert_eq!(subnets().await.len(), 3, "the tag is back on {id}");
    let (status, ..) = condition(&restored, "NetworkCompliant");
    assert_eq!(status, "True");
}

/// The Kubernetes release every node of the cluster runs, if they agree, as kubectl sees
/// the kubelets.
fn kubelet_release(kubeconfig: &Path) -> Option<String> {
    let list = kubectl(kubeconfig, &["get", "nodes"]);
    let versions: std::collections::BTreeSet<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            n["status"]["nodeInfo"]["kubeletVersion"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    (versions.len() == 1).then(|| versions.into_iter().next().unwrap())
}

/// Waits until every node of `name` runs `release` on a Ready cluster, then until kubectl
/// sees every kubelet report it; the cluster as it was when its nodes had moved.
async fn on_release(
    api: &Api,
    name: &str,
    kubeconfig: &Path,
    release: &str,
    limit: Duration,
) -> Value {
    let cluster = wait_for(api, name, &format!("on {release}"), limit, |c| {
        c["status"]["phase"] == "Ready"
            && c["status"]["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .all(|n| n["kubernetesVersion"] == release && n["state"] == "running")
    })
    .await;
    let start = Instant::now();
    while kubelet_release(kubeconfig) != Some(format!("v{release}")) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "kubelets never all reported v{release}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cluster
}

fn has_event(cluster: &Value, reason: &str, containing: &str) -> bool {
    cluster["status"]["events"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| e["reason"] == reason && e["message"].as_str().unwrap_or("").contains(containing))
}

#[tokio::test]
async fn a_patch_release_reaches_a_regular_cluster_in_its_window_and_not_before() {
    // A four-hour window opening on the first whole minute at least 25 s from now: time
    // for the cluster to be built before it.
    let opens = {
        let soon = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(25)).as_second();
        jiff::Timestamp::from_second(soon + (60 - soon.rem_euclid(60)) % 60).unwrap()
    };
    let utc = opens.to_zoned(jiff::tz::TimeZone::UTC);
    let window = format!(
        "{},{},4h",
        format!("{:?}", utc.weekday()).to_lowercase(),
        utc.strftime("%H:%M")
    );
    let flags = [
        "--type",
        "developer",
        "--kubernetes-version",
        "1.35",
        "--release-channel",
        "regular",
        "--maintenance-window",
        &window,
    ];
    let (server, api, dir, kubeconfig) = cluster_of(THREE_MINORS, "0.05", "dev", &flags).await;
    let cluster = get(&api, "dev").await;
    assert_eq!(cluster["status"]["version"]["release"], "1.35.0");
    assert_eq!(condition(&cluster, "VersionSupported").1, "Current");
    assert_eq!(kubelet_release(&kubeconfig).as_deref(), Some("v1.35.0"));

    // Upstream publishes 1.35.1; ten days on, the regular channel offers it.
    let mut minors = THREE_MINORS.to_vec();
    minors[2] = ("1.35", 300, 450, &[("1.35.0", 300), ("1.35.1", 10)]);
    write_catalogue(&dir.path().join("versions.json"), &minors);
    let cluster = wait_for(
        &api,
        "dev",
        "told of 1.35.1",
        Duration::from_secs(30),
        |c| c["status"]["version"]["available"] == "1.35.1",
    )
    .await;
    assert!(
        jiff::Timestamp::now() < opens,
        "the cluster took too long to build for this test to see the time before its window"
    );
    let (status, reason, message) = condition(&cluster, "VersionSupported");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "PatchAvailable"),
        "{message}"
    );
    assert_eq!(
        cluster["status"]["version"]["nextWindow"]
            .as_str()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok()),
        Some(opens)
    );
    let described = cli_ok(
        &server,
        &[
            "cluster",
            "describe",
            "dev",
            "--folder",
            "eng",
            "--project",
            "web",
        ],
    );
    assert!(
        described.contains("1.35.1 waits for the window"),
        "{described}"
    );

    // Nothing moves before the window opens.
    while jiff::Timestamp::now() < opens - jiff::SignedDuration::from_secs(1) {
        let cluster = get(&api, "dev").await;
        assert_eq!(
            cluster["status"]["version"]["release"], "1.35.0",
            "moved before the window"
        );
        assert_eq!(kubelet_release(&kubeconfig).as_deref(), Some("v1.35.0"));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // In it, every node moves to 1.35.1.
    let cluster = on_release(&api, "dev", &kubeconfig, "1.35.1", Duration::from_secs(90)).await;
    assert!(jiff::Timestamp::now() >= opens);
    assert!(
        has_event(&cluster, "PatchUpgrade", "from 1.35.0 to 1.35.1"),
        "{:#}",
        cluster["status"]["events"]
    );
    assert_eq!(condition(&cluster, "VersionSupported").1, "Current");
}

#[tokio::test]
async fn a_version_past_its_end_of_support_is_upgraded_despite_an_exclusion() {
    let minors: &[TestMinor] = &[
        ("1.34", 400, 20, &[("1.34.0", 400), ("1.34.1", 300)]),
        ("1.35", 300, 450, &[("1.35.0", 300)]),
    ];
    let exclusion = common::exclusion("freeze");
    let flags = [
        "--type",
        "developer",
        "--kubernetes-version",
        "1.34",
        "--maintenance-exclusion",
        &exclusion,
    ];
    let (_server, api, dir, kubeconfig) = cluster_of(minors, "0.05", "old", &flags).await;
    let cluster = get(&api, "old").await;
    // Said in advance.
    let (status, reason, message) = condition(&cluster, "VersionSupported");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "EndOfSupportSoon"),
        "{message}"
    );
    assert!(message.contains(&common::day(20).to_string()), "{message}");
    assert_eq!(cluster["status"]["health"], "Warning");

    // Upstream's end of support passes: the any-time window moves it to 1.35 at once,
    // the exclusion notwithstanding.
    let past: &[TestMinor] = &[("1.34", 400, -1, minors[0].3), minors[1]];
    write_catalogue(&dir.path().join("versions.json"), past);
    let cluster = on_release(&api, "old", &kubeconfig, "1.35.0", Duration::from_secs(120)).await;
    assert_eq!(cluster["spec"]["kubernetesVersion"], "1.35");
    assert!(
        has_event(&cluster, "ForcedUpgrade", "despite the exclusion `freeze`"),
        "{:#}",
        cluster["status"]["events"]
    );
    assert_eq!(condition(&cluster, "VersionSupported").1, "Current");
}

#[tokio::test]
async fn a_developer_cluster_follows_the_next_minor_its_channel_offers() {
    let (_server, api, _dir, kubeconfig) = cluster(
        FAST,
        "dev",
        &["--type", "developer", "--kubernetes-version", "1.34"],
    )
    .await;
    // `upgrade.autoMinor` and an any-time window: on to 1.35 at once, and no further.
    let cluster = on_release(&api, "dev", &kubeconfig, "1.35.0", Duration::from_secs(60)).await;
    assert_eq!(cluster["spec"]["kubernetesVersion"], "1.35");
    assert!(
        has_event(&cluster, "MinorUpgrade", "moving from 1.34"),
        "{:#}",
        cluster["status"]["events"]
    );
}

#[tokio::test]
async fn a_managed_namespaces_pod_security_level_changed_in_the_cluster_is_put_back() {
    let (server, api, _dir, kubeconfig) = cluster(FAST, "dev", &["--type", "developer"]).await;
    cli_ok(
        &server,
        &["namespace", "create", "demo/eng/web/dev/payments"],
    );
    let level = || {
        let out = Command::new("/usr/bin/kubectl")
            .args(["get", "namespace", "payments", "-o", "json"])
            .env("KUBECONFIG", &kubeconfig)
            .output()
            .unwrap();
        out.status.success().then(|| {
            let namespace: Value = serde_json::from_slice(&out.stdout).unwrap();
            namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"].clone()
        })
    };
    let start = Instant::now();
    while level() != Some(json!("baseline")) {
        assert!(start.elapsed() < Duration::from_secs(20), "{:?}", level());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Baseline holds there: a privileged pod is refused, as upstream's admission words it.
    let privileged = || {
        Command::new("/usr/bin/kubectl")
            .args([
                "run",
                "root",
                "-n",
                "payments",
                "--image=busybox",
                "--overrides",
                r#"{"spec": {"containers": [{"name": "root", "image": "busybox", "securityContext": {"privileged": true}}]}}"#,
            ])
            .env("KUBECONFIG", &kubeconfig)
            .output()
            .unwrap()
    };
    let refused = privileged();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success()
            && stderr.contains("violates PodSecurity \"baseline:latest\": privileged (container \"root\" must not set securityContext.privileged=true)"),
        "{stderr}"
    );
    // Someone with access to the cluster lowers it.
    let out = Command::new("/usr/bin/kubectl")
        .args([
            "label",
            "namespace",
            "payments",
            "pod-security.kubernetes.io/enforce=privileged",
            "--overwrite",
        ])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cluster = wait_for(&api, "dev", "told of the namespace", Duration::from_secs(20), |c| {
        has_event(
            c,
            "DriftRestored",
            "namespace payments: pod-security.kubernetes.io/enforce was `privileged`; set to `baseline` again",
        )
    })
    .await;
    assert_eq!(
        level(),
        Some(json!("baseline")),
        "{:#}",
        cluster["status"]["events"]
    );
    assert!(!privileged().status.success(), "baseline holds again");
}

/// `kubectl` with `args`, its output when it succeeds, its error when it does not.
fn kubectl_text(kubeconfig: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("/usr/bin/kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .expect("kubectl runs");
    match out.status.success() {
        true => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

/// The events of the cluster's audit log, as `kubectl get --raw` reads them from `/logs/`.
fn audit_events(kubeconfig: &Path) -> Vec<Value> {
    let log = kubectl_text(
        kubeconfig,
        &["get", "--raw", "/logs/kubernetes/audit/audit.log"],
    )
    .unwrap();
    log.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// The audit policy in the cluster, as its ConfigMap holds it.
fn audit_policy(kubeconfig: &Path) -> String {
    let config_map = kubectl(
        kubeconfig,
        &["get", "configmap", "audit-policy", "-n", "kube-system"],
    );
    config_map["data"]["policy.yaml"]
        .as_str()
        .unwrap()
        .to_string()
}

/// An audit policy that logs nothing, in a ConfigMap labelled `labels`.
fn silent_policy(labels: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "audit-policy", "namespace": "kube-system", "labels": labels},
        "data": {"policy.yaml": "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n"},
    })
}

#[tokio::test]
async fn the_audit_log_records_writes_and_a_silenced_policy_is_put_back_or_reported() {
    let (server, api, dir, kubeconfig) = cluster(FAST, "dev", &["--type", "developer"]).await;
    // The control plane booted with the plan's policy and uploaded it.
    assert!(
        audit_policy(&kubeconfig).contains("level: Metadata"),
        "{}",
        audit_policy(&kubeconfig)
    );
    kubectl_text(
        &kubeconfig,
        &[
            "create",
            "configmap",
            "ledger",
            "--from-literal=owner=payments",
        ],
    )
    .unwrap();
    // Who created what, at Metadata: no body, as security.auditLogging says for developer.
    let events = audit_events(&kubeconfig);
    let created = events
        .iter()
        .find(|e| e["verb"] == "create" && e["objectRef"]["name"] == "ledger")
        .unwrap_or_else(|| panic!("no event for the create in {events:#?}"));
    assert_eq!(created["level"], "Metadata", "{created:#}");
    assert_eq!(created["objectRef"]["resource"], "configmaps");
    assert_eq!(created["objectRef"]["namespace"], "default");
    assert_eq!(created["responseStatus"]["code"], 201);
    assert!(created["requestObject"].is_null(), "{created:#}");
    assert!(
        created["user"]["username"]
            .as_str()
            .is_some_and(|u| !u.is_empty() && !u.starts_with("dialtone:")),
        "{created:#}"
    );
    // Health checks are not logged.
    kubectl_text(&kubeconfig, &["get", "--raw", "/healthz"]).unwrap();
    assert!(
        !audit_events(&kubeconfig)
            .iter()
            .any(|e| e["requestURI"] == "/healthz"),
        "the policy logs no health check"
    );

    // Someone with access to the cluster silences the log.
    let manifest = dir.path().join("silent.json");
    std::fs::write(&manifest, silent_policy(json!({})).to_string()).unwrap();
    kubectl_text(&kubeconfig, &["apply", "-f", manifest.to_str().unwrap()]).unwrap();
    wait_for(&api, "dev", "told of the policy", Duration::from_secs(20), |c| {
        has_event(
            c,
            "DriftRestored",
            "audit policy kube-system/audit-policy was `None for everything`; set to the plan's again (security.auditLogging: Metadata)",
        )
    })
    .await;
    assert!(audit_policy(&kubeconfig).contains("level: Metadata"));

    // A webhook that fails every update of a labelled policy keeps Dialtone from putting
    // it back: the cluster then says its log is not written.
    let webhook = dir.path().join("lock.json");
    std::fs::write(
        &webhook,
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "lock-audit-policy"},
            "webhooks": [{
                "name": "lock.audit.example.com",
                "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["UPDATE"], "resources": ["configmaps"]}],
                "objectSelector": {"matchLabels": {"locked": "true"}},
                "clientConfig": {"url": "https://127.0.0.1:9/"},
                "failurePolicy": "Fail",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
            }],
        })
        .to_string(),
    )
    .unwrap();
    kubectl_text(&kubeconfig, &["apply", "-f", webhook.to_str().unwrap()]).unwrap();
    std::fs::write(
        &manifest,
        silent_policy(json!({"locked": "true"})).to_string(),
    )
    .unwrap();
    let start = Instant::now();
    loop {
        // Dialtone may put a removed policy back between the delete and the create.
        let _ = kubectl_text(
            &kubeconfig,
            &["delete", "configmap", "audit-policy", "-n", "kube-system"],
        );
        if kubectl_text(&kubeconfig, &["create", "-f", manifest.to_str().unwrap()]).is_ok() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20));
    }
    let cluster = wait_for(&api, "dev", "not compliant", Duration::from_secs(60), |c| {
        condition(c, "SecurityCompliant").0 == "False"
    })
    .await;
    let (_, reason, message) = condition(&cluster, "SecurityCompliant");
    assert_eq!(reason, "ClusterNotCompliant");
    assert!(
        message.contains("the API server did not write request dialtone-audit-probe-")
            && message.contains("to its audit log"),
        "{message}"
    );
    assert_eq!(
        list_row(&server, "dev")[5],
        "Warning",
        "{:?}",
        list_row(&server, "dev")
    );
}
