//! Sim clusters answer the Kubernetes API: the real binary, a cluster in the fast sim,
//! credentials from `dialtone cluster credentials`, and `/usr/bin/kubectl`.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Api, start_with};
use serde_json::{Value, json};

fn kubectl(kubeconfig: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("/usr/bin/kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .expect("kubectl runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn ok(kubeconfig: &Path, args: &[&str]) -> String {
    let (success, text) = kubectl(kubeconfig, args);
    assert!(success, "kubectl {args:?} failed: {text}");
    text
}

/// Pod phases, counted, once `done` holds (within 30 s).
fn phases_when(kubeconfig: &Path, done: impl Fn(usize, usize) -> bool) -> (usize, usize) {
    let start = Instant::now();
    loop {
        let pods: Value =
            serde_json::from_str(&ok(kubeconfig, &["get", "pods", "-o", "json"])).unwrap();
        let items = pods["items"].as_array().unwrap();
        let running = items
            .iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .count();
        let pending = items
            .iter()
            .filter(|p| p["status"]["phase"] == "Pending")
            .count();
        if done(running, pending) {
            return (running, pending);
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "pods: {running} running, {pending} pending"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test]
async fn kubectl_deploys_scales_and_checks_access_on_a_sim_cluster() {
    let server = start_with(&["--sim-time-scale", "0"]);
    let api = Api::admin(&server);
    api.create("/v1/orgs/demo/folders", "eng", json!({})).await;
    api.create("/v1/orgs/demo/folders/eng/projects", "web", json!({}))
        .await;
    let out = server.cli(&[
        "cluster",
        "create",
        "dev-1",
        "--folder",
        "eng",
        "--project",
        "web",
        "--type",
        "developer",
        "--region",
        "us-east-1",
        "--min-nodes",
        "2",
        "--wait",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("config");
    let kubeconfig_arg = kubeconfig.to_str().unwrap();
    // The API comes up with the load balancer; the credential waits for it.
    let start = Instant::now();
    loop {
        let out = server.cli(&[
            "cluster",
            "credentials",
            "dev-1",
            "--folder",
            "eng",
            "--project",
            "web",
            "--kubeconfig",
            kubeconfig_arg,
        ]);
        if out.status.success() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // One node per instance: a tainted control plane and two workers.
    let start = Instant::now();
    let nodes = loop {
        let nodes: Value =
            serde_json::from_str(&ok(&kubeconfig, &["get", "nodes", "-o", "json"])).unwrap();
        if nodes["items"].as_array().unwrap().len() == 3 {
            break nodes;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{nodes:#}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let control_planes: Vec<&Value> = nodes["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["metadata"]["labels"]["node-role.kubernetes.io/control-plane"].is_string())
        .collect();
    assert_eq!(control_planes.len(), 1);
    assert_eq!(
        control_planes[0]["spec"]["taints"][0]["effect"],
        "NoSchedule"
    );
    assert!(ok(&kubeconfig, &["get", "nodes"]).contains("Ready"));

    // 20 replicas of 500m: the two workers (1930m allocatable each) hold three each.
    ok(
        &kubeconfig,
        &[
            "create",
            "deployment",
            "web",
            "--image=nginx",
            "--replicas=20",
        ],
    );
    ok(
        &kubeconfig,
        &[
            "set",
            "resources",
            "deployment",
            "web",
            "--requests=cpu=500m,memory=256Mi",
        ],
    );
    let (running, pending) = phases_when(&kubeconfig, |r, p| r + p == 20 && r == 6);
    assert_eq!((running, pending), (6, 14));
    let pods = ok(&kubeconfig, &["get", "pods"]);
    assert!(
        pods.contains("Running") && pods.contains("Pending"),
        "{pods}"
    );
    let pods: Value =
        serde_json::from_str(&ok(&kubeconfig, &["get", "pods", "-o", "json"])).unwrap();
    let unplaced = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["status"]["phase"] == "Pending")
        .unwrap();
    assert_eq!(
        unplaced["status"]["conditions"][0]["reason"],
        "Unschedulable"
    );

    ok(&kubeconfig, &["scale", "deployment", "web", "--replicas=4"]);
    phases_when(&kubeconfig, |r, p| r == 4 && p == 0);

    // The credential's holder is a member of the org, admin of its clusters; others are not.
    assert_eq!(
        ok(&kubeconfig, &["auth", "can-i", "delete", "pods"]).trim(),
        "yes"
    );
    let (allowed, answer) = kubectl(
        &kubeconfig,
        &["auth", "can-i", "delete", "pods", "--as", "alice"],
    );
    assert!(!allowed && answer.trim() == "no", "{answer}");

    // Bad input is refused as upstream refuses it, and changes nothing.
    let (created, error) = kubectl(&kubeconfig, &["create", "namespace", "Not_A_Name"]);
    assert!(!created && error.contains("is invalid"), "{error}");
    let (found, error) = kubectl(&kubeconfig, &["get", "deployment", "nope"]);
    assert!(!found && error.contains("not found"), "{error}");

    ok(&kubeconfig, &["delete", "deployment", "web"]);
    phases_when(&kubeconfig, |r, p| r + p == 0);
}
