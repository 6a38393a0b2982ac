//! Sim clusters answer the Kubernetes API: the real binary, a cluster in the fast sim,
//! credentials from `dialtone cluster credentials`, and `/usr/bin/kubectl`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Api, THREE_MINORS, cli_ok, credentials, exclusion, start_with_versions};
use dialtone_testkit::DevServer;
use serde_json::{Value, json};

fn kubectl(kubeconfig: &Path, args: &[&str]) -> (bool, String) {
    run(Command::new("/usr/bin/kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig))
}

/// Runs a command to its end: whether it succeeded, and what it printed.
fn run(command: &mut Command) -> (bool, String) {
    let out = command.output().expect("the command runs");
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

/// Pod phases, counted: (running, pending).
fn phases(kubeconfig: &Path) -> (usize, usize) {
    let pods: Value =
        serde_json::from_str(&ok(kubeconfig, &["get", "pods", "-o", "json"])).unwrap();
    let items = pods["items"].as_array().unwrap();
    let count = |phase: &str| {
        items
            .iter()
            .filter(|p| p["status"]["phase"] == phase)
            .count()
    };
    (count("Running"), count("Pending"))
}

/// Pod phases, counted, once `done` holds (within 30 s).
fn phases_when(kubeconfig: &Path, done: impl Fn(usize, usize) -> bool) -> (usize, usize) {
    phases_when_within(kubeconfig, Duration::from_secs(30), done)
}

fn phases_when_within(
    kubeconfig: &Path,
    limit: Duration,
    done: impl Fn(usize, usize) -> bool,
) -> (usize, usize) {
    let start = Instant::now();
    loop {
        let (running, pending) = phases(kubeconfig);
        if done(running, pending) {
            return (running, pending);
        }
        assert!(
            start.elapsed() < limit,
            "pods: {running} running, {pending} pending"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A developer cluster of `min_nodes` to `max_nodes` workers in a fresh dev server, and a
/// kubeconfig for it written by `dialtone cluster credentials`.
async fn sim_cluster(min_nodes: u32, max_nodes: u32) -> (DevServer, tempfile::TempDir, PathBuf) {
    sim_cluster_with(min_nodes, max_nodes, &[]).await
}

/// `sim_cluster` with more `cluster create` flags.
async fn sim_cluster_with(
    min_nodes: u32,
    max_nodes: u32,
    flags: &[&str],
) -> (DevServer, tempfile::TempDir, PathBuf) {
    sim_cluster_on(&[], min_nodes, max_nodes, flags).await
}

/// `sim_cluster_with` on a server started with more flags.
async fn sim_cluster_on(
    server_flags: &[&str],
    min_nodes: u32,
    max_nodes: u32,
    flags: &[&str],
) -> (DevServer, tempfile::TempDir, PathBuf) {
    let mut server_args = vec!["--sim-time-scale", "0"];
    server_args.extend_from_slice(server_flags);
    let dir = tempfile::tempdir().unwrap();
    let (server, _) = start_with_versions(dir.path(), THREE_MINORS, &server_args);
    let api = Api::admin(&server);
    api.create("/v1/orgs/demo/folders", "eng", json!({})).await;
    api.create("/v1/orgs/demo/folders/eng/projects", "web", json!({}))
        .await;
    let (min_nodes, max_nodes) = (min_nodes.to_string(), max_nodes.to_string());
    let mut args = vec![
        "cluster",
        "create",
        "dev-1",
        "--folder",
        "eng",
        "--project",
        "web",
        "--region",
        "us-east-1",
        "--min-nodes",
        &min_nodes,
        "--max-nodes",
        &max_nodes,
        "--wait",
    ];
    if !flags.contains(&"--type") {
        args.extend(["--type", "developer"]);
    }
    args.extend_from_slice(flags);
    let out = server.cli(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kubeconfig = dir.path().join("config");
    // A Ready cluster's API answers, so its credentials can be written at once.
    credentials(&server, "dev-1", &kubeconfig);
    (server, dir, kubeconfig)
}

#[tokio::test]
async fn kubectl_deploys_scales_and_checks_access_on_a_sim_cluster() {
    let (_server, dir, kubeconfig) = sim_cluster(2, 2).await;

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

    // 20 replicas of 500m: the two workers (1930m allocatable each) hold three each, and
    // maxNodes leaves right-sizing no room to add more.
    apply_web(&kubeconfig, dir.path(), 20, "500m", "256Mi");
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

/// A namespace, a deployment and the RBAC that lets bob read its pods.
fn shop_manifest(replicas: u32, reader_verbs: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  namespace: shop
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: api}}
  template:
    metadata:
      labels: {{app: api}}
    spec:
      containers:
      - name: api
        image: nginx
        resources:
          requests: {{cpu: 100m, memory: 64Mi}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: pod-reader
  namespace: shop
rules:
- apiGroups: [""]
  resources: [pods]
  verbs: [{reader_verbs}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: bob-reads-pods
  namespace: shop
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: pod-reader
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: User
  name: bob
"#
    )
}

fn apply(kubeconfig: &Path, dir: &Path, manifest: &str) -> String {
    let file = dir.join("manifest.yaml");
    std::fs::write(&file, manifest).unwrap();
    ok(kubeconfig, &["apply", "-f", file.to_str().unwrap()])
}

fn can_i(kubeconfig: &Path, args: &[&str]) -> bool {
    let (_, answer) = kubectl(kubeconfig, &[&["auth", "can-i"], args].concat());
    match answer.trim() {
        "yes" => true,
        "no" => false,
        other => panic!("kubectl auth can-i {args:?}: {other}"),
    }
}

/// Lines a running `kubectl … -w` printed, read until `done` holds (within 20 s).
fn watch_until(
    lines: &std::sync::mpsc::Receiver<String>,
    seen: &mut Vec<String>,
    done: impl Fn(&[String]) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done(seen) {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("the watch printed only:\n{}", seen.join("\n")),
        }
    }
}

#[tokio::test]
async fn kubectl_applies_watches_and_meets_webhooks() {
    // The operator allows webhooks on this host's loopback, where the test's webhook runs.
    let (server, dir, kubeconfig) =
        sim_cluster_on(&["--webhook-allowed-cidrs", "127.0.0.1/32"], 2, 2, &[]).await;

    // The bootstrap admin's org.admin is cast into the cluster's RBAC, marked as Dialtone's.
    let binding = ok(
        &kubeconfig,
        &[
            "get",
            "clusterrolebinding",
            "dialtone:org.admin@demo",
            "-o",
            "json",
        ],
    );
    let binding: Value = serde_json::from_str(&binding).unwrap();
    assert_eq!(
        binding["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "dialtone"
    );
    assert_eq!(binding["roleRef"]["name"], "cluster-admin");

    // A watch sees pods come and go.
    let mut watch = Command::new("/usr/bin/kubectl")
        .args(["get", "pods", "-n", "shop", "-w", "--output-watch-events"])
        .env("KUBECONFIG", &kubeconfig)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (sender, lines) = std::sync::mpsc::channel();
    let stdout = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if sender.send(line).is_err() {
                return;
            }
        }
    });

    // Applied, applied again (nothing changes), then changed.
    let out = apply(&kubeconfig, dir.path(), &shop_manifest(2, "get, list"));
    for object in [
        "namespace/shop created",
        "deployment.apps/api created",
        "role.rbac.authorization.k8s.io/pod-reader created",
        "rolebinding.rbac.authorization.k8s.io/bob-reads-pods created",
    ] {
        assert!(out.contains(object), "{out}");
    }
    let mut seen = Vec::new();
    watch_until(&lines, &mut seen, |seen| {
        seen.iter()
            .filter(|l| l.starts_with("ADDED") && l.contains("api-"))
            .count()
            >= 2
    });
    let out = apply(&kubeconfig, dir.path(), &shop_manifest(2, "get, list"));
    assert_eq!(out.matches("unchanged").count(), 4, "{out}");
    let deployment_field = |path: &str| {
        ok(
            &kubeconfig,
            &[
                "get",
                "deployment",
                "api",
                "-n",
                "shop",
                "-o",
                &format!("jsonpath={{{path}}}"),
            ],
        )
    };
    let rv_before = deployment_field(".metadata.resourceVersion");
    let out = apply(
        &kubeconfig,
        dir.path(),
        &shop_manifest(3, "get, list, watch"),
    );
    assert!(out.contains("deployment.apps/api configured"), "{out}");
    assert!(
        out.contains("role.rbac.authorization.k8s.io/pod-reader configured"),
        "{out}"
    );
    assert!(out.contains("namespace/shop unchanged"), "{out}");
    assert_eq!(deployment_field(".spec.replicas"), "3");
    watch_until(&lines, &mut seen, |seen| {
        seen.iter()
            .filter(|l| l.starts_with("ADDED") && l.contains("api-"))
            .count()
            >= 3
    });

    // can-i agrees with the RBAC just applied.
    assert!(can_i(
        &kubeconfig,
        &["watch", "pods", "-n", "shop", "--as", "bob"]
    ));
    assert!(can_i(
        &kubeconfig,
        &["get", "pods/web", "-n", "shop", "--as", "bob"]
    ));
    assert!(!can_i(
        &kubeconfig,
        &["delete", "pods", "-n", "shop", "--as", "bob"]
    ));
    assert!(!can_i(
        &kubeconfig,
        &["get", "pods", "-n", "default", "--as", "bob"]
    ));
    assert!(!can_i(
        &kubeconfig,
        &["get", "secrets", "-n", "shop", "--as", "bob"]
    ));
    // Bob himself, impersonated, sees the pods and is refused the rest.
    let pods = ok(&kubeconfig, &["get", "pods", "-n", "shop", "--as", "bob"]);
    assert!(pods.contains("api-"), "{pods}");
    let (allowed, error) = kubectl(
        &kubeconfig,
        &["get", "secrets", "-n", "shop", "--as", "bob"],
    );
    assert!(!allowed && error.contains("forbidden"), "{error}");

    // Bad input: upstream-shaped errors, nothing half-applied.
    let stale =
        format!(r#"{{"metadata":{{"resourceVersion":"{rv_before}"}},"spec":{{"replicas":9}}}}"#);
    for (patch_type, patch, expected) in [
        ("merge", stale.as_str(), "the object has been modified"),
        (
            "json",
            r#"[{"op":"replace","path":"/spec/nothing/here","value":1}]"#,
            "the patch does not apply",
        ),
        (
            "merge",
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"api","image":"nginx","resources":{"requests":{"cpu":"lots"}}}]}}}}"#,
            "quantities must match",
        ),
    ] {
        let (patched, error) = kubectl(
            &kubeconfig,
            &[
                "patch",
                "deployment",
                "api",
                "-n",
                "shop",
                &format!("--type={patch_type}"),
                "-p",
                patch,
            ],
        );
        assert!(!patched && error.contains(expected), "{patch}: {error}");
    }
    let (applied, error) = kubectl(&kubeconfig, &["apply", "-f", "-"]);
    assert!(!applied, "{error}");
    let unknown = dir.path().join("unknown.yaml");
    std::fs::write(
        &unknown,
        "apiVersion: example.com/v1\nkind: Gadget\nmetadata:\n  name: g\n",
    )
    .unwrap();
    // Without server-side schemas for kinds it does not serve, kubectl is told to skip its own
    // validation; the server then refuses the kind and the version it does not know.
    let (applied, error) = kubectl(
        &kubeconfig,
        &["apply", "--validate=false", "-f", unknown.to_str().unwrap()],
    );
    assert!(
        !applied && error.contains(r#"no matches for kind "Gadget" in version "example.com/v1""#),
        "{error}"
    );
    let (found, error) = kubectl(&kubeconfig, &["get", "--raw", "/apis/apps/v2/deployments"]);
    assert!(!found && error.contains("NotFound"), "{error}");

    // A typo in a manifest: kubectl asks for strict field validation, and the server refuses
    // the field by name; under `--validate=warn` it is dropped with a warning, as upstream.
    let typo = dir.path().join("typo.yaml");
    std::fs::write(
        &typo,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: typo\n  namespace: shop\nspec:\n  replicaz: 2\n  selector:\n    matchLabels: {app: typo}\n  template:\n    metadata:\n      labels: {app: typo}\n    spec:\n      containers:\n      - name: typo\n        image: nginx\n        imagee: nginx\n",
    )
    .unwrap();
    let (applied, error) = kubectl(&kubeconfig, &["apply", "-f", typo.to_str().unwrap()]);
    assert!(
        !applied
            && error.contains(r#"unknown field "spec.replicaz""#)
            && error.contains(r#"unknown field "spec.template.spec.containers[0].imagee""#),
        "{error}"
    );
    let (found, _) = kubectl(&kubeconfig, &["get", "deployment", "typo", "-n", "shop"]);
    assert!(!found, "nothing of a refused manifest is stored");
    let warned = ok(
        &kubeconfig,
        &["apply", "--validate=warn", "-f", typo.to_str().unwrap()],
    );
    assert!(
        warned.contains(r#"Warning: unknown field "spec.replicaz""#),
        "{warned}"
    );
    let stored: Value = serde_json::from_str(&ok(
        &kubeconfig,
        &["get", "deployment", "typo", "-n", "shop", "-o", "json"],
    ))
    .unwrap();
    let spec = stored["spec"].to_string();
    assert!(
        !spec.contains("replicaz") && !spec.contains("imagee"),
        "{spec}"
    );
    // kubectl patch asks for no field validation: the server's default warns, as upstream's.
    let patched = ok(
        &kubeconfig,
        &[
            "patch",
            "deployment",
            "typo",
            "-n",
            "shop",
            "--type=merge",
            "-p",
            r#"{"spec":{"replicaz":3}}"#,
        ],
    );
    assert!(
        patched.contains("(no change)")
            && patched.contains(r#"Warning: unknown field "spec.replicaz""#),
        "{patched}"
    );
    ok(&kubeconfig, &["delete", "deployment", "typo", "-n", "shop"]);

    // Valid JSON of the wrong shape is a 400 naming what is wrong, never a dropped
    // connection; the connection and the server carry on.
    for (body, expected) in [
        ("[]", "expected an object, got an array"),
        (r#"{"metadata":"x"}"#, "metadata"),
        (r#"{"data":{"k":5}}"#, "data"),
        ("5", "expected an object"),
    ] {
        let file = dir.path().join("body.json");
        std::fs::write(&file, body).unwrap();
        let (created, error) = kubectl(
            &kubeconfig,
            &[
                "create",
                "--raw",
                "/api/v1/namespaces/shop/configmaps",
                "-f",
                file.to_str().unwrap(),
            ],
        );
        assert!(
            !created && error.contains("BadRequest") && error.contains(expected),
            "{body}: {error}"
        );
    }
    let deployment: Value = serde_json::from_str(&ok(
        &kubeconfig,
        &["get", "deployment", "api", "-n", "shop", "-o", "json"],
    ))
    .unwrap();
    assert_eq!(deployment["spec"]["replicas"], 3);
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"],
        "100m"
    );

    // Secrets keep their data base64-encoded, as upstream stores it, whether sent as
    // protobuf bytes (`create secret`) or as stringData.
    ok(
        &kubeconfig,
        &[
            "create",
            "secret",
            "generic",
            "db",
            "-n",
            "shop",
            "--from-literal=password=s3cret",
        ],
    );
    let password = ok(
        &kubeconfig,
        &[
            "get",
            "secret",
            "db",
            "-n",
            "shop",
            "-o",
            "jsonpath={.data.password}",
        ],
    );
    assert_eq!(password, "czNjcmV0");
    let secret = dir.path().join("secret.yaml");
    std::fs::write(&secret, "apiVersion: v1\nkind: Secret\nmetadata:\n  name: api-key\n  namespace: shop\nstringData:\n  key: s3cret\n").unwrap();
    ok(&kubeconfig, &["apply", "-f", secret.to_str().unwrap()]);
    let key = ok(
        &kubeconfig,
        &[
            "get",
            "secret",
            "api-key",
            "-n",
            "shop",
            "-o",
            "jsonpath={.data.key}",
        ],
    );
    assert_eq!(key, "czNjcmV0");

    // A validating webhook denies what it should; when it is down, failurePolicy decides.
    let webhook = dialtone_testkit::AdmissionWebhook::start(|request| {
        match request["object"]["data"].get("forbidden") {
            Some(_) => Err("configmaps may not carry the key \"forbidden\"".into()),
            None => Ok(()),
        }
    })
    .unwrap();
    let registration = |policy: &str| {
        format!(
            r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: configmap-guard
webhooks:
- name: configmaps.guard.example.com
  admissionReviewVersions: [v1]
  sideEffects: None
  failurePolicy: {policy}
  timeoutSeconds: 2
  clientConfig:
    url: {}
    caBundle: {}
  rules:
  - operations: [CREATE, UPDATE]
    apiGroups: [""]
    apiVersions: [v1]
    resources: [configmaps]
"#,
            webhook.url(),
            webhook.ca_bundle()
        )
    };
    apply(&kubeconfig, dir.path(), &registration("Fail"));
    ok(
        &kubeconfig,
        &[
            "create",
            "configmap",
            "fine",
            "-n",
            "shop",
            "--from-literal=a=b",
        ],
    );
    let (created, error) = kubectl(
        &kubeconfig,
        &[
            "create",
            "configmap",
            "bad",
            "-n",
            "shop",
            "--from-literal=forbidden=x",
        ],
    );
    assert!(
        !created
            && error
                .contains("admission webhook \"configmaps.guard.example.com\" denied the request")
            && error.contains("may not carry the key"),
        "{error}"
    );
    let (found, _) = kubectl(&kubeconfig, &["get", "configmap", "bad", "-n", "shop"]);
    assert!(!found, "a denied configmap was stored");
    // Even so, never at the control plane's own listeners, nor over plain HTTP.
    let control_plane = format!("{}/v1/orgs", server.endpoint());
    let plain = webhook.url().replacen("https://", "http://", 1);
    for (url, why) in [
        (control_plane.as_str(), "own listener"),
        (plain.as_str(), "https"),
    ] {
        let hook = registration("Fail").replace(&webhook.url(), url);
        apply(&kubeconfig, dir.path(), &hook);
        let (created, error) = kubectl(
            &kubeconfig,
            &[
                "create",
                "configmap",
                "refused",
                "-n",
                "shop",
                "--from-literal=a=b",
            ],
        );
        assert!(!created && error.contains(why), "{url}: {error}");
    }
    apply(&kubeconfig, dir.path(), &registration("Fail"));
    let registration_ignore = registration("Ignore");
    drop(webhook);
    let create_while_down = [
        "create",
        "configmap",
        "while-down",
        "-n",
        "shop",
        "--from-literal=a=b",
    ];
    let (created, error) = kubectl(&kubeconfig, &create_while_down);
    assert!(
        !created && error.contains("failed calling webhook"),
        "failurePolicy Fail with the webhook down: {error}"
    );
    apply(&kubeconfig, dir.path(), &registration_ignore);
    ok(&kubeconfig, &create_while_down);

    // Deleting the namespace takes its pods with it, and the watch sees them go.
    ok(&kubeconfig, &["delete", "namespace", "shop"]);
    watch_until(&lines, &mut seen, |seen| {
        seen.iter()
            .filter(|l| l.starts_with("DELETED") && l.contains("api-"))
            .count()
            >= 3
    });
    let _ = watch.kill();
    let _ = watch.wait();
    let _ = watch.wait();
}

/// The cluster's right-sizing status, read through the Dialtone API.
async fn sizing_of(api: &Api) -> Value {
    let (_, cluster) = api
        .get("/v1/orgs/demo/folders/eng/projects/web/clusters/dev-1")
        .await;
    cluster["status"].clone()
}

fn workers(status: &Value) -> Vec<String> {
    status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["role"] == "worker")
        .map(|n| format!("{} {}", n["name"], n["instanceType"]))
        .collect()
}

/// Applies a `web` deployment in `default`: `replicas` pods requesting `cpu` and `memory`.
fn apply_web(kubeconfig: &Path, dir: &Path, replicas: u32, cpu: &str, memory: &str) {
    apply_json(
        kubeconfig,
        dir,
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{
                        "name": "web", "image": "nginx",
                        "resources": {"requests": {"cpu": cpu, "memory": memory}},
                    }]},
                },
            },
        }),
    );
}

/// Applies a PodDisruptionBudget keeping `min_available` of the `web` pods up.
fn apply_web_budget(kubeconfig: &Path, dir: &Path, min_available: u32) {
    apply_json(
        kubeconfig,
        dir,
        json!({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"minAvailable": min_available, "selector": {"matchLabels": {"app": "web"}}},
        }),
    );
}

/// `kubectl apply -f` of one object, written to a file in `dir`.
fn apply_json(kubeconfig: &Path, dir: &Path, object: Value) {
    let file = dir.join(format!(
        "{}-{}.json",
        object["kind"].as_str().unwrap(),
        object["metadata"]["name"].as_str().unwrap()
    ));
    std::fs::write(&file, object.to_string()).unwrap();
    ok(kubeconfig, &["apply", "-f", file.to_str().unwrap()]);
}

#[tokio::test]
async fn clusters_grow_for_their_pods_and_shrink_when_they_go() {
    let (server, dir, kubeconfig) = sim_cluster(1, 30).await;
    let api = Api::admin(&server);
    let start_cost = sizing_of(&api).await["sizing"]["usdPerHour"]
        .as_f64()
        .unwrap();

    // 200 pods of 250m and 512 MiB: far more than the one worker holds.
    apply_web(&kubeconfig, dir.path(), 200, "250m", "512Mi");
    phases_when_within(&kubeconfig, Duration::from_secs(90), |r, p| {
        r == 200 && p == 0
    });
    let grown = sizing_of(&api).await;
    let decisions = grown["sizing"]["decisions"].as_array().unwrap();
    let scale_up = decisions
        .iter()
        .find(|d| d["action"] == "ScaleUp")
        .expect("a scale-up decision");
    let (cost, bound) = (
        scale_up["usdPerHour"].as_f64().unwrap(),
        scale_up["lowerBoundUsdPerHour"].as_f64().unwrap(),
    );
    assert!(bound > 0.0 && cost >= bound - 1e-9, "{scale_up:#}");
    assert!(
        scale_up["added"].as_array().unwrap().len() > 1,
        "{scale_up:#}"
    );
    let peak_cost = grown["sizing"]["usdPerHour"].as_f64().unwrap();
    assert!(peak_cost > start_cost);
    let describe = server.cli(&[
        "cluster",
        "describe",
        "dev-1",
        "--folder",
        "eng",
        "--project",
        "web",
    ]);
    let text = String::from_utf8_lossy(&describe.stdout);
    assert!(
        text.contains("Right-sizing:")
            && text.contains("ScaleUp")
            && text.contains("lower bound")
            && text.contains("balanced consolidation"),
        "{text}"
    );
    // Operators see the decisions, and how close scale-ups came to the bound, in /metrics.
    let (_, _, metrics) = api.get_text("/metrics").await;
    let value = |series: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {series} in:\n{metrics}"))
    };
    assert!(value(r#"dialtone_sizing_decisions_total{action="ScaleUp"}"#) >= 1.0);
    assert!(value("dialtone_sizing_scale_up_cost_ratio_count") >= 1.0);
    assert!(
        value("dialtone_sizing_scale_up_cost_ratio_sum")
            >= value("dialtone_sizing_scale_up_cost_ratio_count") - 1e-9,
        "a plan never costs less than its lower bound"
    );

    // A budget keeps 19 of the pods up while the cluster shrinks to fit 20.
    apply_web_budget(&kubeconfig, dir.path(), 19);
    ok(
        &kubeconfig,
        &["scale", "deployment", "web", "--replicas=20"],
    );
    let started = Instant::now();
    let mut fewest_running = usize::MAX;
    let shrunk = loop {
        let status = sizing_of(&api).await;
        let (running, pending) = phases(&kubeconfig);
        if started.elapsed() > Duration::from_secs(3) {
            fewest_running = fewest_running.min(running);
        }
        let cost = status["sizing"]["usdPerHour"].as_f64().unwrap();
        let draining = ok(&kubeconfig, &["get", "nodes"]).contains("SchedulingDisabled");
        if running == 20 && pending == 0 && cost < peak_cost / 2.0 && !draining {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{running} running, {pending} pending, ${cost}/h: {:?}\n{:#}",
            workers(&status),
            status["events"]
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(
        fewest_running >= 19,
        "the budget held: {fewest_running} running at worst"
    );
    let actions: Vec<&str> = shrunk["sizing"]["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["action"].as_str())
        .collect();
    assert!(
        actions.iter().any(|a| *a == "Delete" || *a == "Replace"),
        "{actions:?}"
    );
    let events = shrunk["events"].to_string();
    assert!(!events.contains("PodsUnplaceable"), "{events}");

    // Steady: once consolidation has taken the last of the room back (it removes a node at
    // a time, so it may still be at it when the cost first halves), the same pods for a
    // while, and right-sizing leaves the cluster alone.
    let decisions = |status: &Value| status["sizing"]["decisions"].to_string();
    let mut last = decisions(&shrunk);
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < Duration::from_secs(3) {
        assert!(
            started.elapsed() < Duration::from_secs(150),
            "right-sizing never settles: {last}"
        );
        std::thread::sleep(Duration::from_millis(300));
        let now = decisions(&sizing_of(&api).await);
        if now != last {
            (last, quiet_since) = (now, Instant::now());
        }
    }
    let settled = workers(&sizing_of(&api).await);
    std::thread::sleep(Duration::from_secs(8));
    let later = sizing_of(&api).await;
    assert_eq!(workers(&later), settled, "no worker came or went");
    assert_eq!(decisions(&later), last, "no decision was made");
    assert_eq!(phases(&kubeconfig), (20, 0));
}

/// The cost model on a live cluster: pods that name no architecture get amd64 nodes of
/// types that sustain their requests (no burstable type counted at its full vCPUs), and a
/// DaemonSet applied with kubectl comes out of every node the next plan adds.
#[tokio::test]
async fn scale_ups_follow_the_cost_model_and_the_daemon_sets_kubectl_adds() {
    let (server, dir, kubeconfig) = sim_cluster(1, 30).await;
    let api = Api::admin(&server);
    apply_json(
        &kubeconfig,
        dir.path(),
        json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": "kube-system"},
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "template": {
                    "metadata": {"labels": {"app": "agent"}},
                    "spec": {"containers": [{
                        "name": "agent", "image": "agent",
                        "resources": {"requests": {"cpu": "600m", "memory": "1Gi"}},
                    }]},
                },
            },
        }),
    );
    ok(
        &kubeconfig,
        &[
            "rollout",
            "status",
            "daemonset/agent",
            "-n",
            "kube-system",
            "--timeout=30s",
        ],
    );
    apply_web(&kubeconfig, dir.path(), 40, "250m", "512Mi");
    phases_when_within(&kubeconfig, Duration::from_secs(90), |r, p| {
        r == 40 && p == 0
    });
    let status = sizing_of(&api).await;
    let scale_up = status["sizing"]["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["action"] == "ScaleUp")
        .unwrap_or_else(|| panic!("a scale-up: {:#}", status["sizing"]))
        .clone();
    let message = scale_up["message"].as_str().unwrap();
    let overhead: u64 = message
        .split("daemon sets' ")
        .nth(1)
        .and_then(|rest| rest.split('m').next())
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("no daemon sets in: {message}"));
    assert!(overhead >= 600, "{message}");
    // Every node the plan added has room for its daemon sets and at least one web pod.
    let catalog = dialtone_cloud::InstanceCatalog::builtin();
    for added in scale_up["added"].as_array().unwrap() {
        let name = added["instanceType"].as_str().unwrap();
        let (millicores, _, _) = catalog.get(name).unwrap().sustained_allocatable(false);
        assert!(millicores >= overhead + 250, "{name}: {message}");
    }
    // No worker is arm64 or burstable: the spec allows neither.
    for worker in workers(&status) {
        let name = worker.rsplit(' ').next().unwrap().trim_matches('"');
        let instance_type = catalog.get(name).unwrap();
        assert!(
            instance_type.archs == [dialtone_cloud::Arch::X86_64] && !instance_type.burstable,
            "{worker}: {:?}",
            workers(&status)
        );
    }
    let archs = ok(&kubeconfig, &["get", "nodes", "-L", "kubernetes.io/arch"]);
    assert!(!archs.contains("arm64"), "{archs}");
}

/// A deployment of `replicas` pods of 100m and 128 MiB labelled `app: name`, whose pods keep
/// apart by hostname; `spec` is merged into the pod spec.
fn apart(name: &str, replicas: u32, spec: Value) -> Value {
    // Hardened as the restricted Pod Security level asks, which production clusters enforce.
    let mut pod = json!({
        "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
            "name": name, "image": "nginx",
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
            "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
        }],
        "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
            "topologyKey": "kubernetes.io/hostname",
            "labelSelector": {"matchLabels": {"app": name}},
        }]}},
    });
    pod.as_object_mut()
        .unwrap()
        .extend(spec.as_object().unwrap().clone());
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": pod},
        },
    })
}

/// Per running pod of `app`, its node's name and zone, from a pod list and a node list
/// that agree (consolidation may replace a node between two reads: read again).
fn nodes_and_zones_of(kubeconfig: &Path, app: &str) -> Vec<(String, String)> {
    let selector = format!("app={app}");
    let started = Instant::now();
    loop {
        let pods: Value = serde_json::from_str(&ok(
            kubeconfig,
            &["get", "pods", "-l", &selector, "-o", "json"],
        ))
        .unwrap();
        let nodes: Value =
            serde_json::from_str(&ok(kubeconfig, &["get", "nodes", "-o", "json"])).unwrap();
        let zone_of = |name: &str| {
            nodes["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|n| n["metadata"]["name"] == name)
                .and_then(|n| n["metadata"]["labels"]["topology.kubernetes.io/zone"].as_str())
                .map(str::to_string)
        };
        let placed: Option<Vec<(String, String)>> = pods["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .map(|p| {
                let node = p["spec"]["nodeName"].as_str().unwrap().to_string();
                let zone = zone_of(&node)?;
                Some((node, zone))
            })
            .collect();
        match placed {
            Some(placed) => return placed,
            None => assert!(
                started.elapsed() < Duration::from_secs(30),
                "pods run on nodes the node list lacks: {pods:#}"
            ),
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Scheduling rules on a live three-zone cluster: right-sizing adds the nodes a deployment
/// whose pods keep apart by host and spread evenly over the zones needs, and the scheduler
/// then places every pod by both rules; pods no node may take within maxNodes, or whose
/// zone the cluster lacks, are reported with the reason while the rest run.
#[tokio::test]
async fn pods_that_keep_apart_and_spread_over_zones_get_the_nodes_they_need() {
    let (server, dir, kubeconfig) = sim_cluster_with(3, 10, &["--type", "production"]).await;
    let api = Api::admin(&server);
    let spread_zones = json!({"topologySpreadConstraints": [{
        "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
        "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": {"app": "spread"}},
    }]});
    apply_json(&kubeconfig, dir.path(), apart("spread", 9, spread_zones));
    phases_when_within(&kubeconfig, Duration::from_secs(90), |r, p| {
        r == 9 && p == 0
    });
    let placed = nodes_and_zones_of(&kubeconfig, "spread");
    let nodes: std::collections::BTreeSet<&String> = placed.iter().map(|(n, _)| n).collect();
    assert_eq!(nodes.len(), 9, "one pod a node: {placed:?}");
    let mut per_zone: BTreeMap<&String, usize> = BTreeMap::new();
    for (_, zone) in &placed {
        *per_zone.entry(zone).or_default() += 1;
    }
    assert_eq!(
        per_zone.values().copied().collect::<Vec<_>>(),
        [3, 3, 3],
        "{placed:?}"
    );
    let status = sizing_of(&api).await;
    assert!(workers(&status).len() <= 10, "{:?}", workers(&status));

    // Twelve pods no two of which share a node: the nine nodes and the one maxNodes leaves
    // run ten, the other two wait, reported; so does a pod whose zone the cluster lacks.
    apply_json(&kubeconfig, dir.path(), apart("crowd", 12, json!({})));
    apply_json(
        &kubeconfig,
        dir.path(),
        apart(
            "elsewhere",
            1,
            json!({"nodeSelector": {"topology.kubernetes.io/zone": "us-east-1f"}}),
        ),
    );
    let started = Instant::now();
    let events = loop {
        let status = sizing_of(&api).await;
        let events = status["events"].to_string();
        if events.contains("PodsUnplaceable")
            && events.contains("elsewhere")
            && events.contains("crowd")
        {
            break events;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{:#}",
            status["events"]
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(events.contains("maxNodes"), "{events}");
    assert!(events.contains("match no new worker"), "{events}");
    phases_when_within(&kubeconfig, Duration::from_secs(60), |r, p| {
        r == 9 + 10 && p == 2 + 1
    });
    // The cluster says it cannot be sized to its pods.
    let started = Instant::now();
    loop {
        let status = sizing_of(&api).await;
        let efficient = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "SizeEfficient")
            .cloned()
            .unwrap_or_default();
        if efficient["reason"] == "PodsWaiting" {
            assert_eq!(efficient["status"], "False", "{efficient}");
            assert!(
                efficient["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("3 pod(s) wait"),
                "{efficient}"
            );
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{efficient}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let crowd = nodes_and_zones_of(&kubeconfig, "crowd");
    let nodes: std::collections::BTreeSet<&String> = crowd.iter().map(|(n, _)| n).collect();
    assert_eq!(nodes.len(), 10, "{crowd:?}");
    let status = sizing_of(&api).await;
    assert_eq!(workers(&status).len(), 10, "{:?}", workers(&status));
}

#[tokio::test]
async fn an_upgrade_replaces_every_node_and_moves_workers_to_the_best_families() {
    // Created on 1.33 with only c6i allowed; c7i allowed later changes nothing until the
    // upgrade. Automatic upgrades hold, so that the upgrade is the one asked for.
    let hold = exclusion("hold");
    let (server, dir, kubeconfig) = sim_cluster_with(
        2,
        6,
        &[
            "--kubernetes-version",
            "1.33",
            "--allow-family",
            "c6i",
            "--maintenance-exclusion",
            &hold,
        ],
    )
    .await;
    let api = Api::admin(&server);
    let update = |args: &[&str]| {
        let mut all = vec![
            "cluster",
            "update",
            "dev-1",
            "--folder",
            "eng",
            "--project",
            "web",
        ];
        all.extend_from_slice(args);
        let out = server.cli(&all);
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let families = |status: &Value| status["plan"]["workers"]["families"].clone();
    assert_eq!(families(&sizing_of(&api).await), json!(["c6i"]));
    let (done, out) = update(&["--allow-family", "c6i", "--allow-family", "c7i"]);
    assert!(done, "{out}");
    // Skipping a minor, or going back, is refused and changes nothing.
    for version in ["1.32", "1.35"] {
        let (done, out) = update(&["--kubernetes-version", version]);
        assert!(!done && out.contains("spec.kubernetesVersion"), "{out}");
    }

    // Ten pods, at most one of them down at a time.
    apply_web(&kubeconfig, dir.path(), 10, "100m", "256Mi");
    apply_web_budget(&kubeconfig, dir.path(), 9);
    phases_when(&kubeconfig, |r, p| r == 10 && p == 0);
    let before = sizing_of(&api).await;
    assert_eq!(families(&before), json!(["c6i"]), "kept until the upgrade");
    assert!(
        workers(&before).iter().all(|w| w.contains("c6i.")),
        "{:?}",
        workers(&before)
    );

    let (done, out) = update(&["--kubernetes-version", "1.34"]);
    assert!(done, "{out}");
    let started = Instant::now();
    let mut fewest_running = usize::MAX;
    let upgraded = loop {
        let status = sizing_of(&api).await;
        let (running, _) = phases(&kubeconfig);
        fewest_running = fewest_running.min(running);
        let nodes = status["nodes"].as_array().unwrap();
        let all_new = nodes
            .iter()
            .all(|n| n["kubernetesVersion"] == "1.34.1" && n["state"] == "running");
        let kubelets = ok(&kubeconfig, &["get", "nodes"]);
        if all_new
            && status["phase"] == "Ready"
            && !kubelets.contains("v1.33")
            && !kubelets.contains("SchedulingDisabled")
            && running == 10
        {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{running} running; nodes {nodes:#?}\n{kubelets}\n{:#}",
            status["events"]
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(
        fewest_running >= 9,
        "the budget held: {fewest_running} running at worst"
    );
    assert_eq!(families(&upgraded), json!(["c7i"]));
    assert!(
        workers(&upgraded).iter().all(|w| w.contains("c7i.")),
        "workers moved to c7i: {:?}",
        workers(&upgraded)
    );
    let server_version = ok(&kubeconfig, &["version", "-o", "json"]);
    assert!(server_version.contains("v1.34"), "{server_version}");
    let events = upgraded["events"].to_string();
    assert!(
        events.contains("Upgrading") && events.contains("Upgrade"),
        "{events}"
    );
}

/// A kubeconfig for `identity`'s credentials to a cluster, as `dialtone cluster
/// credentials` writes one, from the API's answer.
async fn kubeconfig_for(as_identity: &Api, cluster: &str, file: &Path) {
    let (status, credentials) = as_identity
        .post(&format!("/v1/{cluster}/credentials"), json!({}))
        .await;
    assert_eq!(status, 201, "{credentials}");
    let field = |name: &str| credentials[name].as_str().unwrap().to_string();
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(field("certificateAuthority"));
    let config = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    tls-server-name: {}\n    certificate-authority-data: {ca}\nusers:\n- name: u\n  user:\n    token: {}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\n",
        field("server"),
        field("tlsServerName"),
        field("token"),
    );
    std::fs::write(file, config).unwrap();
}

/// Runs `kubectl` until it succeeds or fails as `want` says (within 20 s); its output.
fn kubectl_until(kubeconfig: &Path, args: &[&str], want: bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (success, text) = kubectl(kubeconfig, args);
        if success == want {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "kubectl {args:?} still {}: {text}",
            if success { "succeeds" } else { "fails" }
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test]
async fn a_folder_policy_reaches_every_cluster_below_and_guards_its_rbac() {
    let (server, dir, admin_kubeconfig) = sim_cluster(1, 1).await;
    let admin = Api::admin(&server);
    // A second project with a cluster, and alice, who is in the group `devs`.
    admin
        .create("/v1/orgs/demo/folders/eng/projects", "api", json!({}))
        .await;
    admin
        .create("/v1/orgs/demo/identities", "alice", json!({}))
        .await;
    let (status, group) = admin
        .post(
            "/v1/orgs/demo/groups",
            json!({"metadata": {"name": "devs"}, "spec": {"members": ["alice"]}}),
        )
        .await;
    assert_eq!(status, 201, "{group}");
    let (_, token) = admin
        .post("/v1/orgs/demo/identities/alice/tokens", json!({}))
        .await;
    let alice = admin.with_token(token["token"].as_str().unwrap());
    let dev_1 = "orgs/demo/folders/eng/projects/web/clusters/dev-1";
    let (status, _) = alice
        .post(&format!("/v1/{dev_1}/credentials"), json!({}))
        .await;
    assert_eq!(
        status, 404,
        "without a binding, alice cannot even see the cluster"
    );

    // cluster.view on the folder, for the group.
    cli_ok(
        &server,
        &[
            "policy",
            "add",
            "demo/eng",
            "--role",
            "cluster.view",
            "--subject",
            "group:devs",
        ],
    );
    let alice_dev_1 = dir.path().join("alice-dev-1");
    kubeconfig_for(&alice, dev_1, &alice_dev_1).await;
    ok(&admin_kubeconfig, &["create", "namespace", "shop"]);
    ok(
        &admin_kubeconfig,
        &["run", "web", "--image", "nginx", "-n", "shop"],
    );
    let pods = kubectl_until(&alice_dev_1, &["get", "pods", "-n", "shop"], true);
    assert!(pods.contains("web"), "{pods}");
    let (deleted, denial) = kubectl(&alice_dev_1, &["delete", "pod", "web", "-n", "shop"]);
    assert!(
        !deleted && denial.contains("forbidden"),
        "view is not edit: {denial}"
    );

    // A cluster created afterwards under the folder is reached too.
    cli_ok(
        &server,
        &[
            "cluster",
            "create",
            "dev-2",
            "--folder",
            "eng",
            "--project",
            "api",
            "--type",
            "developer",
            "--region",
            "us-east-1",
            "--min-nodes",
            "1",
            "--max-nodes",
            "1",
            "--wait",
        ],
    );
    let alice_dev_2 = dir.path().join("alice-dev-2");
    kubeconfig_for(
        &alice,
        "orgs/demo/folders/eng/projects/api/clusters/dev-2",
        &alice_dev_2,
    )
    .await;
    // Ready means the policy is in: no waiting.
    ok(&alice_dev_2, &["get", "pods", "-A"]);
    // Endpoints carry random names, not a counter every tenant's clusters share.
    let mut names = Vec::new();
    for cluster in [dev_1, "orgs/demo/folders/eng/projects/api/clusters/dev-2"] {
        let (_, object) = admin.get(&format!("/v1/{cluster}")).await;
        let endpoint = object["status"]["endpoint"].as_str().unwrap().to_string();
        let host = endpoint
            .split("://")
            .last()
            .unwrap()
            .split('.')
            .next()
            .unwrap();
        let id = host.strip_prefix("lb-").unwrap_or_default();
        assert!(
            id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{endpoint}"
        );
        names.push(u64::from_str_radix(id, 16).unwrap());
    }
    assert!(names[0].abs_diff(names[1]) > 1_000, "{names:?}");
    let explain = cli_ok(
        &server,
        &[
            "policy",
            "explain",
            "--as",
            "alice",
            "--verb",
            "get",
            "--resource",
            "pods",
            "--on",
            "demo/eng/api/dev-2",
        ],
    );
    assert!(
        explain.contains("ALLOWED")
            && explain.contains("demo/eng")
            && explain.contains("group:devs"),
        "{explain}"
    );

    // A namespace of the tree, with its own binding: a managed RoleBinding.
    cli_ok(
        &server,
        &["namespace", "create", "demo/eng/web/dev-1/payments"],
    );
    cli_ok(
        &server,
        &[
            "policy",
            "add",
            "demo/eng/web/dev-1/payments",
            "--role",
            "namespace.edit",
            "--subject",
            "user:alice",
        ],
    );
    let binding = "dialtone:namespace.edit@demo:eng:web:dev-1:payments";
    kubectl_until(
        &admin_kubeconfig,
        &["get", "rolebinding", binding, "-n", "payments"],
        true,
    );
    kubectl_until(
        &alice_dev_1,
        &["run", "api", "--image", "nginx", "-n", "payments"],
        true,
    );

    // Even a cluster admin cannot change what Dialtone manages in place.
    let (edited, denial) = kubectl(
        &admin_kubeconfig,
        &[
            "label",
            "rolebinding",
            binding,
            "-n",
            "payments",
            "owner=me",
            "--overwrite",
        ],
    );
    assert!(!edited, "{denial}");
    assert!(
        denial.contains("managed by Dialtone") && denial.contains("demo/eng/web/dev-1/payments"),
        "the denial names Dialtone and the node to change: {denial}"
    );
    let (unlabelled, denial) = kubectl(
        &admin_kubeconfig,
        &[
            "label",
            "rolebinding",
            binding,
            "-n",
            "payments",
            "app.kubernetes.io/managed-by-",
        ],
    );
    assert!(
        !unlabelled && denial.contains("managed by Dialtone"),
        "removing the label is a change too: {denial}"
    );
    let (deleted, denial) = kubectl(
        &admin_kubeconfig,
        &[
            "delete",
            "clusterrolebinding",
            "dialtone:cluster.view@demo:eng",
        ],
    );
    assert!(
        !deleted && denial.contains("managed by Dialtone"),
        "{denial}"
    );

    // A name Dialtone will use is Dialtone's: nobody else may take it ahead of a grant...
    let future = "dialtone:namespace.view@demo:eng:web:dev-1:payments";
    let squatter = dir.path().join("squatter.yaml");
    std::fs::write(
        &squatter,
        format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: {future}\n  namespace: payments\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: admin\nsubjects:\n- apiGroup: rbac.authorization.k8s.io\n  kind: User\n  name: mallory\n"
        ),
    )
    .unwrap();
    let squat = ["create", "-f", squatter.to_str().unwrap()];
    let (created, denial) = kubectl(&admin_kubeconfig, &squat);
    assert!(
        !created && denial.contains("managed by Dialtone"),
        "{denial}"
    );
    // ...and one that got in while the guard was away is replaced when the grant comes.
    let squatted = (0..5).any(|_| {
        kubectl(
            &admin_kubeconfig,
            &[
                "delete",
                "validatingwebhookconfiguration",
                "dialtone-rbac-guard",
            ],
        );
        kubectl(&admin_kubeconfig, &squat).0
    });
    assert!(squatted, "the squatter got in with the guard removed");
    cli_ok(
        &server,
        &[
            "policy",
            "add",
            "demo/eng/web/dev-1/payments",
            "--role",
            "namespace.view",
            "--subject",
            "group:devs",
        ],
    );
    let subjects = [
        "get",
        "rolebinding",
        future,
        "-n",
        "payments",
        "-o",
        "jsonpath={.subjects[*].name}",
    ];
    let replaced = dialtone_testkit::wait_until(Duration::from_secs(30), || {
        kubectl(&admin_kubeconfig, &subjects).1.trim() == "alice"
    });
    assert!(replaced, "{}", kubectl(&admin_kubeconfig, &subjects).1);
    kubectl_until(
        &admin_kubeconfig,
        &[
            "get",
            "validatingwebhookconfiguration",
            "dialtone-rbac-guard",
        ],
        true,
    );
    let (_, cluster) = admin.get(&format!("/v1/{dev_1}")).await;
    assert!(
        cluster["status"]["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["reason"] == "RbacObjectReplaced"
                && e["message"].as_str().unwrap().contains(future)),
        "{}",
        cluster["status"]["events"]
    );
    let projected = cluster["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "AccessProjected")
        .cloned();
    assert_eq!(projected.unwrap()["status"], "True", "{cluster}");

    // Taking the binding back revokes access within seconds.
    cli_ok(
        &server,
        &[
            "policy",
            "remove",
            "demo/eng",
            "--role",
            "cluster.view",
            "--subject",
            "group:devs",
        ],
    );
    let denial = kubectl_until(&alice_dev_2, &["get", "pods", "-A"], false);
    assert!(denial.contains("forbidden"), "{denial}");
    kubectl_until(&alice_dev_1, &["get", "pods", "-n", "shop"], false);
    // The namespace binding on payments stays.
    ok(&alice_dev_1, &["get", "pods", "-n", "payments"]);

    // Deleting alice revokes her cluster credential, and a new alice (to whom the bindings
    // naming `user:alice` apply again) does not revive it.
    let (status, body) = admin.delete("/v1/orgs/demo/identities/alice").await;
    assert_eq!(status, 200, "{body}");
    let denial = kubectl_until(&alice_dev_1, &["get", "pods", "-n", "payments"], false);
    assert!(denial.contains("Unauthorized"), "{denial}");
    admin
        .create("/v1/orgs/demo/identities", "alice", json!({}))
        .await;
    let (allowed, denial) = kubectl(&alice_dev_1, &["get", "pods", "-n", "payments"]);
    assert!(
        !allowed && denial.contains("Unauthorized"),
        "the old alice's credential: {denial}"
    );
}

#[tokio::test]
async fn webhooks_never_reach_into_the_control_plane_s_network() {
    let (_server, dir, kubeconfig) = sim_cluster(1, 1).await;
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let webhook = dialtone_testkit::AdmissionWebhook::start({
        let calls = calls.clone();
        move |_| {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        }
    })
    .unwrap();
    let registration = |url: &str, policy: &str| {
        format!(
            r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: probe
webhooks:
- name: probe.example.com
  admissionReviewVersions: [v1]
  sideEffects: None
  failurePolicy: {policy}
  timeoutSeconds: 2
  clientConfig:
    url: {url}
    caBundle: {}
  rules:
  - operations: [CREATE]
    apiGroups: [""]
    apiVersions: [v1]
    resources: [configmaps]
"#,
            webhook.ca_bundle()
        )
    };
    // Loopback (where the webhook really listens), a private address and the cloud
    // metadata address: refused without a connection, as an unreachable webhook fails.
    for (url, why) in [
        (webhook.url(), "loopback"),
        ("https://10.1.2.3/validate".to_string(), "private"),
        ("https://169.254.169.254/latest".to_string(), "link-local"),
    ] {
        apply(&kubeconfig, dir.path(), &registration(&url, "Fail"));
        let (created, error) = kubectl(
            &kubeconfig,
            &["create", "configmap", "probe", "--from-literal=a=b"],
        );
        assert!(
            !created && error.contains("failed calling webhook") && error.contains(why),
            "{url}: {error}"
        );
    }
    // With failurePolicy Ignore the request goes through; the webhook is still never called.
    apply(
        &kubeconfig,
        dir.path(),
        &registration(&webhook.url(), "Ignore"),
    );
    ok(
        &kubeconfig,
        &["create", "configmap", "probe", "--from-literal=a=b"],
    );
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 0);
}

/// The ids of the org's tokens.
async fn token_ids(api: &Api) -> Vec<String> {
    let (status, tokens) = api.get("/v1/orgs/demo/tokens").await;
    assert_eq!(status, 200, "{tokens}");
    tokens["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect()
}

/// Runs a command with its own credential cache.
fn with_cache(
    program: &str,
    cache: &Path,
    kubeconfig: &Path,
    server: &DevServer,
    args: &[&str],
) -> (bool, String) {
    run(Command::new(program)
        .args(args)
        .env("XDG_CACHE_HOME", cache)
        .env("KUBECONFIG", kubeconfig)
        .env("DIALTONE_CONFIG", server.config_path()))
}

#[tokio::test]
async fn kubeconfigs_renew_expiring_credentials_through_the_exec_plugin() {
    let (server, dir, _) = sim_cluster(1, 1).await;
    let api = Api::admin(&server);
    let cache = dir.path().join("cache");
    let kubeconfig = dir.path().join("exec");
    let dialtone = |args: &[&str]| {
        with_cache(
            env!("CARGO_BIN_EXE_dialtone"),
            &cache,
            &kubeconfig,
            &server,
            args,
        )
    };
    let kubectl =
        |args: &[&str]| with_cache("/usr/bin/kubectl", &cache, &kubeconfig, &server, args);
    let before = token_ids(&api).await;
    // Credentials of the shortest lifetime the API gives, a minute, so that the test sees
    // one expire.
    let (written, out) = dialtone(&[
        "cluster",
        "credentials",
        "demo/eng/web/dev-1",
        "--ttl",
        "60s",
    ]);
    assert!(written, "{out}");
    let file = std::fs::read_to_string(&kubeconfig).unwrap();
    assert!(
        file.contains("client.authentication.k8s.io/v1") && !file.contains("token:"),
        "no credential in the file, only the plugin:\n{file}"
    );
    for args in [&["get", "nodes"][..], &["get", "namespaces"]] {
        let (done, out) = kubectl(args);
        assert!(done, "{out}");
    }
    let minted = |ids: Vec<String>| -> Vec<String> {
        ids.into_iter().filter(|id| !before.contains(id)).collect()
    };
    assert_eq!(
        minted(token_ids(&api).await).len(),
        1,
        "kubectl commands share a cached credential"
    );
    let (_, first) = dialtone(&["cluster", "token", "demo/eng/web/dev-1", "--ttl", "60s"]);
    let first: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(first["kind"], "ExecCredential");
    let first_token = first["status"]["token"].as_str().unwrap().to_string();

    // A minute on, that credential has expired and kubectl goes on working with the one
    // the plugin minted once three quarters of its life had passed.
    std::thread::sleep(Duration::from_secs(61));
    let (done, out) = kubectl(&["get", "nodes"]);
    assert!(done, "{out}");
    assert_eq!(
        minted(token_ids(&api).await).len(),
        2,
        "one more credential, minted on expiry"
    );
    let (done, out) = kubectl(&["get", "nodes", "--token", &first_token]);
    assert!(
        !done && out.contains("Unauthorized"),
        "the first credential expired: {out}"
    );

    // Revoking the CLI's own token stops new credentials: once the cached one is due,
    // the plugin fails and says why, and so does kubectl.
    let cli_token_id = server.admin_token().split('_').nth(1).unwrap().to_string();
    let (status, body) = api
        .delete(&format!("/v1/orgs/demo/tokens/{cli_token_id}"))
        .await;
    assert_eq!(status, 200, "{body}");
    std::fs::remove_dir_all(&cache).unwrap();
    let (done, out) = dialtone(&["cluster", "token", "demo/eng/web/dev-1"]);
    assert!(!done && out.contains("Unauthorized"), "{out}");
    let (done, out) = kubectl(&["get", "nodes"]);
    assert!(!done && out.contains("dialtone"), "{out}");
}

#[tokio::test]
async fn a_sim_cluster_loses_no_acknowledged_write_to_kill_9() {
    let (mut server, _dir, kubeconfig) = sim_cluster(1, 1).await;
    // Writers create config maps with kubectl until the server dies under them; each
    // remembers the ones kubectl reported created, with their resourceVersions.
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let kubeconfig = kubeconfig.clone();
            std::thread::spawn(move || {
                let mut acknowledged = Vec::new();
                for i in 0.. {
                    let name = format!("cm-{w}-{i}");
                    let (created, out) = kubectl(
                        &kubeconfig,
                        &[
                            "create",
                            "configmap",
                            &name,
                            "--from-literal=k=v",
                            "-o",
                            "jsonpath={.metadata.resourceVersion}",
                        ],
                    );
                    if !created {
                        return (acknowledged, out);
                    }
                    acknowledged.push((name, out.trim().parse::<u64>().unwrap()));
                }
                unreachable!()
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(2500));
    server.kill9();
    let mut acknowledged = Vec::new();
    for writer in writers {
        let (written, _) = writer.join().unwrap();
        acknowledged.extend(written);
    }
    assert!(
        acknowledged.len() >= 10,
        "the writers got going: {}",
        acknowledged.len()
    );
    let newest = acknowledged.iter().map(|(_, rv)| *rv).max().unwrap();

    server.start_again().unwrap();
    // The cluster's API comes back at the same address, with the same CA and credentials.
    let listed = kubectl_until(
        &kubeconfig,
        &["get", "--raw", "/api/v1/namespaces/default/configmaps"],
        true,
    );
    let listed: Value = serde_json::from_str(&listed).unwrap();
    let stored: std::collections::HashMap<String, u64> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|cm| {
            (
                cm["metadata"]["name"].as_str().unwrap().to_string(),
                cm["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap(),
            )
        })
        .collect();
    let lost: Vec<_> = acknowledged
        .iter()
        .filter(|(name, rv)| stored.get(name) != Some(rv))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost: {lost:?}",
        lost.len(),
        acknowledged.len()
    );
    println!(
        "{} acknowledged writes, all there after kill -9",
        acknowledged.len()
    );

    // Versions go on upward, and a watch from the list's version sees what follows.
    let list_version = listed["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let mut watch = Command::new("/usr/bin/kubectl")
        .args([
            "get",
            "--raw",
            &format!(
                "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={list_version}"
            ),
        ])
        .env("KUBECONFIG", &kubeconfig)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = watch.stdout.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines_tx.send(line);
        }
    });
    let after = ok(
        &kubeconfig,
        &[
            "create",
            "configmap",
            "after",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ],
    );
    assert!(
        after.trim().parse::<u64>().unwrap() > newest,
        "{after} after {newest}"
    );
    let mut seen = Vec::new();
    watch_until(&lines, &mut seen, |seen| {
        seen.iter().any(|l| l.contains(r#""name":"after""#))
    });
    assert!(
        seen.iter().all(|l| !l.contains(r#""name":"cm-"#)),
        "the watch resumed after the list, not before: {seen:?}"
    );
    let _ = watch.kill();
    let _ = watch.wait();
}

/// The addresses of a Service's EndpointSlice, once it holds `count` of them.
fn endpoints_when(kubeconfig: &Path, service: &str, count: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let slices: Value = serde_json::from_str(&ok(
            kubeconfig,
            &[
                "get",
                "endpointslices",
                "-l",
                &format!("kubernetes.io/service-name={service}"),
                "-o",
                "json",
            ],
        ))
        .unwrap();
        let addresses: Vec<String> = slices["items"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
            .filter(|e| e["conditions"]["ready"] == true)
            .filter_map(|e| e["addresses"][0].as_str().map(str::to_string))
            .collect();
        if addresses.len() == count {
            return addresses;
        }
        assert!(
            Instant::now() < deadline,
            "{service} has {} ready endpoints, not {count}: {slices:#}",
            addresses.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test]
async fn services_get_addresses_from_the_plan_and_endpoints_that_follow_their_pods() {
    let (server, _dir, kubeconfig) = sim_cluster(2, 2).await;
    let api = Api::admin(&server);
    let (_, cluster) = api
        .get("/v1/orgs/demo/folders/eng/projects/web/clusters/dev-1")
        .await;
    let network = &cluster["status"]["plan"]["network"];
    let service_cidr: ipnet::Ipv4Net = network["serviceCidr"].as_str().unwrap().parse().unwrap();
    let pod_cidr: ipnet::Ipv4Net = network["podCidr"].as_str().unwrap().parse().unwrap();

    // What every kubeadm cluster holds, at the plan's addresses.
    let info = ok(&kubeconfig, &["cluster-info"]);
    assert!(
        info.contains("Kubernetes control plane is running at") && info.contains("CoreDNS"),
        "{info}"
    );
    let ip_of = |namespace: &str, name: &str| -> std::net::Ipv4Addr {
        ok(
            &kubeconfig,
            &[
                "get",
                "service",
                name,
                "-n",
                namespace,
                "-o",
                "jsonpath={.spec.clusterIP}",
            ],
        )
        .trim()
        .parse()
        .unwrap()
    };
    let first = u32::from(service_cidr.network());
    assert_eq!(u32::from(ip_of("default", "kubernetes")), first + 1);
    assert_eq!(u32::from(ip_of("kube-system", "kube-dns")), first + 10);

    // A deployment exposed: an address from the range, endpoints at its pods' addresses.
    ok(
        &kubeconfig,
        &[
            "create",
            "deployment",
            "web",
            "--image=nginx",
            "--replicas=3",
        ],
    );
    ok(
        &kubeconfig,
        &[
            "expose",
            "deployment",
            "web",
            "--port=80",
            "--target-port=8080",
        ],
    );
    assert!(service_cidr.contains(&ip_of("default", "web")));
    let addresses = endpoints_when(&kubeconfig, "web", 3);
    for address in &addresses {
        let address: std::net::Ipv4Addr = address.parse().unwrap();
        assert!(
            pod_cidr.contains(&address),
            "{address} is not in {pod_cidr}"
        );
    }
    let described = ok(&kubeconfig, &["describe", "service", "web"]);
    assert!(described.contains(":8080"), "{described}");
    ok(&kubeconfig, &["scale", "deployment", "web", "--replicas=1"]);
    endpoints_when(&kubeconfig, "web", 1);

    // Node ports: chosen from the range, or asked for once.
    ok(
        &kubeconfig,
        &["create", "service", "nodeport", "np", "--tcp=81:8080"],
    );
    let node_port: u16 = ok(
        &kubeconfig,
        &[
            "get",
            "service",
            "np",
            "-o",
            "jsonpath={.spec.ports[0].nodePort}",
        ],
    )
    .trim()
    .parse()
    .unwrap();
    assert!((30000..=32767).contains(&node_port), "{node_port}");
    let (taken, error) = kubectl(
        &kubeconfig,
        &[
            "create",
            "service",
            "nodeport",
            "np2",
            "--tcp=82:8080",
            &format!("--node-port={node_port}"),
        ],
    );
    assert!(
        !taken && error.contains("provided port is already allocated"),
        "{error}"
    );
    let (outside, error) = kubectl(
        &kubeconfig,
        &[
            "create",
            "service",
            "nodeport",
            "np3",
            "--tcp=83:8080",
            "--node-port=80",
        ],
    );
    assert!(!outside && error.contains("30000-32767"), "{error}");
    let (refused, error) = kubectl(
        &kubeconfig,
        &[
            "create",
            "service",
            "clusterip",
            "far",
            "--tcp=80:80",
            "--clusterip=192.0.2.1",
        ],
    );
    assert!(
        !refused && error.contains(&format!("The range of valid IPs is {service_cidr}")),
        "{error}"
    );
    let listed = ok(&kubeconfig, &["get", "services"]);
    assert!(
        !listed.contains("np2") && !listed.contains("far"),
        "nothing half-made: {listed}"
    );

    // A Service applied twice keeps its address; its slice goes with it.
    let before = ip_of("default", "web");
    ok(&kubeconfig, &["label", "service", "web", "tier=front"]);
    assert_eq!(ip_of("default", "web"), before);
    ok(&kubeconfig, &["delete", "service", "web"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = ok(
            &kubeconfig,
            &[
                "get",
                "endpointslices",
                "-l",
                "kubernetes.io/service-name=web",
                "-o",
                "name",
            ],
        );
        if left.trim().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slice outlived its Service: {left}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test]
async fn finalizers_hold_an_object_until_the_last_one_goes() {
    let (_server, dir, kubeconfig) = sim_cluster(1, 1).await;
    let manifest = dir.path().join("held.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  finalizers: [example.com/cleanup]\ndata: {a: b}\n",
    )
    .unwrap();
    ok(&kubeconfig, &["apply", "-f", manifest.to_str().unwrap()]);
    ok(
        &kubeconfig,
        &["delete", "configmap", "held", "--wait=false"],
    );
    let marked = ok(
        &kubeconfig,
        &[
            "get",
            "configmap",
            "held",
            "-o",
            "jsonpath={.metadata.deletionTimestamp}",
        ],
    );
    assert!(
        !marked.trim().is_empty(),
        "held, and marked as being deleted"
    );
    let (added, error) = kubectl(
        &kubeconfig,
        &[
            "patch",
            "configmap",
            "held",
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":["example.com/cleanup","example.com/more"]}}"#,
        ],
    );
    assert!(
        !added && error.contains("no new finalizers can be added"),
        "{error}"
    );
    ok(
        &kubeconfig,
        &[
            "patch",
            "configmap",
            "held",
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":[]}}"#,
        ],
    );
    kubectl_until(&kubeconfig, &["get", "configmap", "held"], false);
}

#[tokio::test]
async fn events_say_why_a_pod_is_pending_and_where_the_others_went() {
    let (_server, dir, kubeconfig) = sim_cluster(1, 1).await;
    ok(
        &kubeconfig,
        &[
            "create",
            "deployment",
            "web",
            "--image=nginx",
            "--replicas=2",
        ],
    );
    // More CPU than any instance type has: no node will ever take it.
    ok(
        &kubeconfig,
        &[
            "run",
            "huge",
            "--image=nginx",
            r#"--overrides={"spec":{"containers":[{"name":"huge","image":"nginx","resources":{"requests":{"cpu":"500"}}}]}}"#,
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let events = loop {
        let events = ok(&kubeconfig, &["get", "events"]);
        if events.contains("FailedScheduling") && events.matches("Scheduled ").count() >= 2 {
            break events;
        }
        assert!(Instant::now() < deadline, "{events}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        events.contains("pod/huge") && events.contains("Insufficient cpu"),
        "{events}"
    );
    assert!(
        events.contains("ScalingReplicaSet") && events.contains("Scaled up replica set web-"),
        "{events}"
    );
    let described = ok(&kubeconfig, &["describe", "pod", "huge"]);
    let section = described.split("Events:").nth(1).unwrap_or("");
    assert!(
        section.contains("FailedScheduling") && section.contains("default-scheduler"),
        "describe shows why it is Pending: {described}"
    );
    // Only the pod's own events: none of the deployment's pods'.
    assert!(!section.contains("Successfully assigned"), "{section}");
    let (refused, error) = kubectl(
        &kubeconfig,
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.color=red",
        ],
    );
    assert!(
        !refused && error.contains("field label not supported"),
        "{error}"
    );
    let listed = ok(&kubeconfig, &["events", "--for", "pod/huge"]);
    assert!(listed.contains("FailedScheduling"), "{listed}");

    // The same events read as events.k8s.io/v1, selected by its field names.
    let newer: Value = serde_json::from_str(&ok(
        &kubeconfig,
        &[
            "get",
            "events.v1.events.k8s.io",
            "--field-selector",
            "regarding.name=huge",
            "-o",
            "json",
        ],
    ))
    .unwrap();
    let items = newer["items"].as_array().unwrap();
    assert!(!items.is_empty());
    for event in items {
        assert_eq!(event["apiVersion"], "events.k8s.io/v1");
        assert_eq!(event["regarding"]["name"], "huge", "{event:#}");
        assert!(
            event["note"].is_string() && event.get("message").is_none(),
            "{event:#}"
        );
    }
    // Watched too: each event of the stream in the newer form.
    let watched = ok(
        &kubeconfig,
        &[
            "get",
            "--raw",
            "/apis/events.k8s.io/v1/namespaces/default/events?watch=1&timeoutSeconds=1&fieldSelector=regarding.name%3Dhuge",
        ],
    );
    let lines: Vec<Value> = watched
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!lines.is_empty());
    for line in &lines {
        assert_eq!(line["type"], "ADDED");
        assert_eq!(line["object"]["apiVersion"], "events.k8s.io/v1", "{line:#}");
        assert_eq!(line["object"]["regarding"]["name"], "huge", "{line:#}");
    }
    // One written in the newer form reads in the older, and a malformed one is refused.
    apply_json(
        &kubeconfig,
        dir.path(),
        json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "huge.tested", "namespace": "default"},
            "eventTime": "2026-12-06T12:00:00.000000Z",
            "reportingController": "example.com/tester", "reportingInstance": "tester-1",
            "action": "Test", "reason": "Tested", "type": "Normal",
            "regarding": {"kind": "Pod", "namespace": "default", "name": "huge"},
            "note": "written as events.k8s.io/v1",
        }),
    );
    let older = ok(
        &kubeconfig,
        &[
            "get",
            "events",
            "--field-selector",
            "reason=Tested",
            "-o",
            "jsonpath={.items[0].message} {.items[0].involvedObject.name}",
        ],
    );
    assert_eq!(older.trim(), "written as events.k8s.io/v1 huge");
    let file = dir.path().join("no-time.json");
    std::fs::write(
        &file,
        json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "no-time", "namespace": "default"},
            "reportingController": "example.com/tester",
        })
        .to_string(),
    )
    .unwrap();
    let (created, error) = kubectl(&kubeconfig, &["create", "-f", file.to_str().unwrap()]);
    assert!(!created && error.contains("eventTime"), "{error}");
}

#[tokio::test]
async fn logs_are_simulated_and_exec_says_why_it_cannot_run() {
    let (_server, _dir, kubeconfig) = sim_cluster(1, 1).await;
    ok(
        &kubeconfig,
        &["create", "deployment", "web", "--image=nginx"],
    );
    let log = kubectl_until(&kubeconfig, &["logs", "deployment/web"], true);
    assert!(
        log.contains("started from nginx") && log.contains("simulated"),
        "{log}"
    );
    let stamped = ok(
        &kubeconfig,
        &["logs", "deployment/web", "--timestamps", "--tail=1"],
    );
    let line = stamped.lines().last().unwrap_or("");
    assert!(
        line.split(' ')
            .next()
            .unwrap_or("")
            .parse::<jiff::Timestamp>()
            .is_ok(),
        "a timestamp first: {stamped}"
    );
    let (ran, error) = kubectl(&kubeconfig, &["exec", "deployment/web", "--", "ls"]);
    assert!(
        !ran && error.contains("run no containers"),
        "exec fails saying why: {error}"
    );
    let (ran, error) = kubectl(
        &kubeconfig,
        &["logs", "deployment/web", "--container", "sidecar"],
    );
    assert!(!ran && error.contains("sidecar"), "{error}");
}

/// The images of the `web` pods that are not being deleted.
fn web_images(kubeconfig: &Path) -> Vec<String> {
    let pods: Value = serde_json::from_str(&ok(
        kubeconfig,
        &["get", "pods", "-l", "app=web", "-o", "json"],
    ))
    .unwrap();
    pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            p["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn deployments_roll_out_through_replica_sets_and_roll_back() {
    // A c6i worker: consolidation has nothing smaller to move the pods to mid-rollout.
    let (_server, _dir, kubeconfig) = sim_cluster_with(1, 1, &["--allow-family", "c6i"]).await;
    ok(
        &kubeconfig,
        &[
            "create",
            "deployment",
            "web",
            "--image=nginx:1.27",
            "--replicas=3",
        ],
    );
    let status = ok(
        &kubeconfig,
        &["rollout", "status", "deployment/web", "--timeout=30s"],
    );
    assert!(status.contains("successfully rolled out"), "{status}");
    ok(
        &kubeconfig,
        &["set", "image", "deployment/web", "nginx=nginx:1.28"],
    );
    let status = ok(
        &kubeconfig,
        &["rollout", "status", "deployment/web", "--timeout=30s"],
    );
    assert!(status.contains("successfully rolled out"), "{status}");
    assert_eq!(web_images(&kubeconfig), vec!["nginx:1.28"; 3]);

    // One replica set per template: the new one holds the pods, the old one none.
    let sets: Value = serde_json::from_str(&ok(
        &kubeconfig,
        &["get", "rs", "-l", "app=web", "-o", "json"],
    ))
    .unwrap();
    let mut sets: Vec<(String, i64)> = sets["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["spec"]["template"]["spec"]["containers"][0]["image"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                s["status"]["replicas"].as_i64().unwrap(),
            )
        })
        .collect();
    sets.sort();
    assert_eq!(
        sets,
        [("nginx:1.27".to_string(), 0), ("nginx:1.28".to_string(), 3)]
    );
    let history = ok(&kubeconfig, &["rollout", "history", "deployment/web"]);
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(revisions, ["1", "2"], "{history}");

    let undone = ok(&kubeconfig, &["rollout", "undo", "deployment/web"]);
    assert!(undone.contains("rolled back"), "{undone}");
    let status = ok(
        &kubeconfig,
        &["rollout", "status", "deployment/web", "--timeout=30s"],
    );
    assert!(status.contains("successfully rolled out"), "{status}");
    assert_eq!(web_images(&kubeconfig), vec!["nginx:1.27"; 3]);
    // The first revision came back as the third, with no new replica set.
    let history = ok(&kubeconfig, &["rollout", "history", "deployment/web"]);
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(revisions, ["2", "3"], "{history}");
    let template = ok(
        &kubeconfig,
        &["rollout", "history", "deployment/web", "--revision=3"],
    );
    assert!(template.contains("nginx:1.27"), "{template}");

    // A rollout that cannot finish says so before its deadline, and stops at the surge.
    ok(
        &kubeconfig,
        &[
            "patch",
            "deployment/web",
            "--type=merge",
            "-p",
            r#"{"spec":{"progressDeadlineSeconds":2,"template":{"spec":{"containers":[{"name":"nginx","image":"nginx:1.29","resources":{"requests":{"cpu":"500"}}}]}}}}"#,
        ],
    );
    let (finished, status) = kubectl(
        &kubeconfig,
        &["rollout", "status", "deployment/web", "--timeout=30s"],
    );
    assert!(
        !finished && status.contains("exceeded its progress deadline"),
        "{status}"
    );
    let (running, pending) = phases(&kubeconfig);
    assert_eq!(
        (running, pending),
        (3, 1),
        "old pods stay while the new cannot start"
    );
}

#[tokio::test]
async fn stateful_sets_daemon_sets_jobs_and_cron_jobs_run_as_upstream_runs_them() {
    let (_server, dir, kubeconfig) = sim_cluster_with(2, 2, &["--allow-family", "c6i"]).await;
    let dir = dir.path();
    let template = |app: &str, annotations: Value, restart: &str| {
        json!({
            "metadata": {"labels": {"app": app}, "annotations": annotations},
            "spec": {"restartPolicy": restart, "containers": [{"name": app, "image": "busybox"}]},
        })
    };
    apply_json(
        &kubeconfig,
        dir,
        json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db", "namespace": "default"},
            "spec": {
                "replicas": 3, "serviceName": "db",
                "selector": {"matchLabels": {"app": "db"}},
                "template": template("db", json!({}), "Always"),
            },
        }),
    );
    let status = ok(
        &kubeconfig,
        &["rollout", "status", "statefulset/db", "--timeout=30s"],
    );
    assert!(status.contains("roll out complete"), "{status}");
    let pods: Value = serde_json::from_str(&ok(
        &kubeconfig,
        &["get", "pods", "-l", "app=db", "-o", "json"],
    ))
    .unwrap();
    let mut started: Vec<(String, String, String)> = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["status"]["startTime"].as_str().unwrap().to_string(),
                p["metadata"]["name"].as_str().unwrap().to_string(),
                p["spec"]["hostname"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    started.sort();
    let names: Vec<&str> = started.iter().map(|(_, n, _)| n.as_str()).collect();
    assert_eq!(names, ["db-0", "db-1", "db-2"], "ordinals start in order");
    assert!(started.iter().all(|(_, n, h)| n == h));

    // A new image rolls the set to a second revision; undo takes the first back, as the
    // third.
    let revisions = || {
        let history = ok(&kubeconfig, &["rollout", "history", "statefulset/db"]);
        history
            .lines()
            .filter_map(|l| l.split_whitespace().next()?.parse::<u32>().ok())
            .collect::<Vec<_>>()
    };
    assert_eq!(revisions(), [1]);
    ok(
        &kubeconfig,
        &["set", "image", "statefulset/db", "db=busybox:1.37"],
    );
    ok(
        &kubeconfig,
        &["rollout", "status", "statefulset/db", "--timeout=60s"],
    );
    assert_eq!(revisions(), [1, 2]);
    ok(&kubeconfig, &["rollout", "undo", "statefulset/db"]);
    ok(
        &kubeconfig,
        &["rollout", "status", "statefulset/db", "--timeout=60s"],
    );
    let image = ok(
        &kubeconfig,
        &[
            "get",
            "statefulset",
            "db",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ],
    );
    assert_eq!(image, "busybox");
    assert_eq!(revisions(), [2, 3]);
    let table = ok(&kubeconfig, &["get", "controllerrevisions"]);
    assert!(table.contains("statefulset.apps/db"), "{table}");

    // A daemon set: one pod on each worker, none on the tainted control plane.
    apply_json(
        &kubeconfig,
        dir,
        json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": "default"},
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "template": template("agent", json!({}), "Always"),
            },
        }),
    );
    let status = ok(
        &kubeconfig,
        &["rollout", "status", "daemonset/agent", "--timeout=30s"],
    );
    assert!(status.contains("successfully rolled out"), "{status}");
    let wide = ok(
        &kubeconfig,
        &["get", "pods", "-l", "app=agent", "-o", "wide"],
    );
    let nodes: std::collections::BTreeSet<&str> = wide
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(6))
        .collect();
    let workers = ok(
        &kubeconfig,
        &[
            "get",
            "nodes",
            "-l",
            "!node-role.kubernetes.io/control-plane",
            "-o",
            "name",
        ],
    );
    let workers: std::collections::BTreeSet<&str> = workers
        .lines()
        .map(|n| n.trim_start_matches("node/"))
        .collect();
    assert_eq!(nodes, workers, "{wide}");
    let history = ok(&kubeconfig, &["rollout", "history", "daemonset/agent"]);
    assert!(
        history.lines().any(|l| l.trim_start().starts_with('1')),
        "{history}"
    );

    // A job whose pod runs a second, and one whose pod fails past its back-off limit.
    apply_json(
        &kubeconfig,
        dir,
        json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "once", "namespace": "default"},
            "spec": {"template": template("once", json!({"sim.dialtone.dev/run-for": "1s"}), "Never")},
        }),
    );
    apply_json(
        &kubeconfig,
        dir,
        json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "broken", "namespace": "default"},
            "spec": {
                "backoffLimit": 1,
                "template": template("broken", json!({"sim.dialtone.dev/run-for": "1s", "sim.dialtone.dev/exit-code": "2"}), "Never"),
            },
        }),
    );
    ok(
        &kubeconfig,
        &[
            "wait",
            "--for=condition=complete",
            "job/once",
            "--timeout=30s",
        ],
    );
    let jobs = ok(&kubeconfig, &["get", "job", "once"]);
    assert!(jobs.contains("Complete") && jobs.contains("1/1"), "{jobs}");
    ok(
        &kubeconfig,
        &[
            "wait",
            "--for=condition=failed",
            "job/broken",
            "--timeout=30s",
        ],
    );
    let failed = ok(&kubeconfig, &["get", "pods", "-l", "app=broken"]);
    assert_eq!(failed.matches("Error").count(), 2, "two tries: {failed}");
    let reason = ok(
        &kubeconfig,
        &[
            "get",
            "job",
            "broken",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Failed\")].reason}",
        ],
    );
    assert_eq!(reason.trim(), "BackoffLimitExceeded");

    // A cron job, run by hand as `kubectl create job --from` does it.
    ok(
        &kubeconfig,
        &[
            "create",
            "cronjob",
            "tick",
            "--image=busybox",
            "--schedule=*/5 * * * *",
            "--restart=OnFailure",
        ],
    );
    let cron = ok(&kubeconfig, &["get", "cronjob", "tick"]);
    assert!(cron.contains("*/5 * * * *"), "{cron}");
    ok(
        &kubeconfig,
        &["create", "job", "tick-now", "--from=cronjob/tick"],
    );
    ok(
        &kubeconfig,
        &[
            "wait",
            "--for=condition=complete",
            "job/tick-now",
            "--timeout=30s",
        ],
    );
    let owner = ok(
        &kubeconfig,
        &[
            "get",
            "job",
            "tick-now",
            "-o",
            "jsonpath={.metadata.ownerReferences[0].name}",
        ],
    );
    assert_eq!(owner.trim(), "tick");
    // Deleting the cron job takes the job it owns with it.
    ok(&kubeconfig, &["delete", "cronjob", "tick"]);
    kubectl_until(&kubeconfig, &["get", "job", "tick-now"], false);

    // Bad input: upstream's errors, nothing stored.
    let (created, error) = kubectl(
        &kubeconfig,
        &[
            "create",
            "cronjob",
            "bad",
            "--image=busybox",
            "--schedule=61 * * * *",
        ],
    );
    assert!(
        !created && error.contains("spec.schedule") && error.contains("above maximum"),
        "{error}"
    );
    let file = dir.join("always.json");
    std::fs::write(
        &file,
        json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "always", "namespace": "default"},
            "spec": {"template": template("always", json!({}), "Always")},
        })
        .to_string(),
    )
    .unwrap();
    let (created, error) = kubectl(&kubeconfig, &["apply", "-f", file.to_str().unwrap()]);
    assert!(
        !created && error.contains(r#"Unsupported value: "Always""#),
        "{error}"
    );
    let (found, _) = kubectl(&kubeconfig, &["get", "job", "always"]);
    assert!(!found);

    // Horizontal pod autoscalers are stored and printed.
    apply_json(
        &kubeconfig,
        dir,
        json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "db", "namespace": "default"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db"},
                "minReplicas": 2, "maxReplicas": 5,
                "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}],
            },
        }),
    );
    let hpa = ok(&kubeconfig, &["get", "hpa", "db"]);
    assert!(
        hpa.contains("StatefulSet/db") && hpa.contains("cpu: <unknown>/80%"),
        "{hpa}"
    );
}

#[tokio::test]
async fn a_container_that_keeps_exiting_backs_off_and_counts_its_restarts() {
    let (_server, dir, kubeconfig) = sim_cluster(1, 1).await;
    apply_json(
        &kubeconfig,
        dir.path(),
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "crash", "namespace": "default"},
            "spec": {
                "selector": {"matchLabels": {"app": "crash"}},
                "template": {
                    "metadata": {"labels": {"app": "crash"}, "annotations": {
                        "sim.dialtone.dev/run-for": "1s", "sim.dialtone.dev/exit-code": "1",
                    }},
                    "spec": {"containers": [{"name": "crash", "image": "busybox"}]},
                },
            },
        }),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let pods = loop {
        let pods = ok(&kubeconfig, &["get", "pods", "-l", "app=crash"]);
        if pods.contains("CrashLoopBackOff") {
            break pods;
        }
        assert!(Instant::now() < deadline, "{pods}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(pods.contains("0/1") && pods.contains(" 1 ("), "{pods}");
    let described = ok(&kubeconfig, &["describe", "pods", "-l", "app=crash"]);
    assert!(
        described.contains("Back-off restarting failed container crash")
            && described.contains("Exit Code:    1"),
        "{described}"
    );
}

#[tokio::test]
async fn a_worker_replaced_at_max_nodes_gives_way_to_its_replacement_for_good() {
    let (server, _dir, kubeconfig) = sim_cluster(1, 1).await;
    ok(
        &kubeconfig,
        &["create", "deployment", "web", "--image=nginx"],
    );
    let cluster = || -> Value {
        let out = server.cli(&[
            "cluster",
            "get",
            "dev-1",
            "--folder",
            "eng",
            "--project",
            "web",
            "-o",
            "json",
        ]);
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let workers = |cluster: &Value| -> Vec<(String, String)> {
        cluster["status"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["role"] == "worker")
            .map(|n| {
                (
                    n["name"].as_str().unwrap().to_string(),
                    n["instanceType"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    // The planned worker is larger than one idle pod needs: consolidation replaces it,
    // surging past maxNodes until the old one is drained.
    let deadline = Instant::now() + Duration::from_secs(30);
    let replacement = loop {
        let now = cluster();
        let replaced = now["status"]["sizing"]["decisions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|d| d["action"] == "Replace")
            .map(|d| d["added"][0]["name"].as_str().unwrap().to_string());
        if let Some(name) = replaced {
            break name;
        }
        assert!(Instant::now() < deadline, "{now:#}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let settled = loop {
        let now = cluster();
        let workers = workers(&now);
        if workers.len() == 1 && workers[0].0 == replacement {
            break now;
        }
        assert!(Instant::now() < deadline, "{workers:?}: {now:#}");
        std::thread::sleep(Duration::from_millis(200));
    };
    std::thread::sleep(Duration::from_secs(3));
    let later = cluster();
    assert_eq!(workers(&later), workers(&settled), "the replacement stays");
    assert_eq!(
        later["status"]["sizing"]["decisions"], settled["status"]["sizing"]["decisions"],
        "and nothing is decided again"
    );
}

#[tokio::test]
async fn top_shows_simulated_usage_of_nodes_and_pods() {
    // One c6i.large worker: nothing cheaper to consolidate to, so the pods stay where they
    // are between the two reads.
    let (_server, dir, kubeconfig) = sim_cluster_with(1, 1, &["--allow-family", "c6i"]).await;
    apply_web(&kubeconfig, dir.path(), 2, "500m", "256Mi");
    phases_when(&kubeconfig, |r, _| r == 2);
    // Half of what each container requests, unless its pod says otherwise.
    let pods = ok(&kubeconfig, &["top", "pods", "-l", "app=web"]);
    let rows: Vec<Vec<&str>> = pods
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 2, "{pods}");
    assert!(
        rows.iter().all(|r| r[1] == "250m" && r[2] == "128Mi"),
        "{pods}"
    );
    let nodes = ok(&kubeconfig, &["top", "nodes"]);
    // The worker is the node the pods run on.
    let wide = ok(&kubeconfig, &["get", "pods", "-l", "app=web", "-o", "wide"]);
    let worker = nodes
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|r| wide.contains(r[0]))
        .unwrap_or_else(|| panic!("{nodes}"));
    let millicores: u32 = worker[1].trim_end_matches('m').parse().unwrap();
    // Its two pods' 500m and the system reserve.
    assert!(millicores > 500, "{nodes}");
    assert!(worker[2].ends_with('%'), "{nodes}");
    // Metrics are read, never written.
    let (refused, error) = kubectl(
        &kubeconfig,
        &["delete", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes/none"],
    );
    assert!(
        !refused && error.contains("does not allow this method"),
        "{error}"
    );
}

#[tokio::test]
async fn upstream_manifests_nobody_here_wrote_apply_cleanly() {
    let (_server, _dir, kubeconfig) = sim_cluster(1, 1).await;
    let manifests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/kube-state-metrics");
    let manifests = manifests.to_str().unwrap();
    let applied = ok(&kubeconfig, &["apply", "-k", manifests]);
    for object in [
        "serviceaccount/kube-state-metrics created",
        "clusterrole.rbac.authorization.k8s.io/kube-state-metrics created",
        "clusterrolebinding.rbac.authorization.k8s.io/kube-state-metrics created",
        "service/kube-state-metrics created",
        "deployment.apps/kube-state-metrics created",
    ] {
        assert!(applied.contains(object), "{applied}");
    }
    let status = ok(
        &kubeconfig,
        &[
            "rollout",
            "status",
            "-n",
            "kube-system",
            "deployment/kube-state-metrics",
            "--timeout=30s",
        ],
    );
    assert!(status.contains("successfully rolled out"), "{status}");
    // Applied again, nothing changes.
    let again = ok(&kubeconfig, &["apply", "-k", manifests]);
    assert_eq!(again.matches("unchanged").count(), 5, "{again}");
    // Its headless Service follows the pod, and its service account may list what it reads.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let endpoints = ok(
            &kubeconfig,
            &[
                "get",
                "endpointslices",
                "-n",
                "kube-system",
                "-l",
                "kubernetes.io/service-name=kube-state-metrics",
                "-o",
                "jsonpath={.items[*].endpoints[?(@.conditions.ready==true)].addresses[0]}",
            ],
        );
        if endpoints.split_whitespace().count() == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "{endpoints}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(can_i(
        &kubeconfig,
        &[
            "list",
            "pods",
            "--all-namespaces",
            "--as",
            "system:serviceaccount:kube-system:kube-state-metrics",
        ]
    ));
}

#[tokio::test]
async fn explain_reads_upstream_schemas_from_the_cluster() {
    let (_server, _dir, kubeconfig) = sim_cluster(1, 1).await;
    let replicas = ok(&kubeconfig, &["explain", "deployment.spec.replicas"]);
    assert!(
        replicas.contains("GROUP:      apps")
            && replicas.contains("FIELD: replicas <integer>")
            && replicas.contains("Number of desired pods"),
        "{replicas}"
    );
    let containers = ok(&kubeconfig, &["explain", "pods.spec.containers"]);
    assert!(
        containers.contains("image\t<string>")
            && containers.contains("resources\t<ResourceRequirements>"),
        "{containers}"
    );
    // kubectl reads discovery in one aggregated document, and its categories.
    let discovery = ok(&kubeconfig, &["api-resources", "-v=8"]);
    assert!(
        discovery.contains("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList")
            && discovery.contains("deployments"),
        "{discovery}"
    );
    let all = ok(&kubeconfig, &["get", "all", "-A"]);
    assert!(
        all.contains("service/kubernetes") && all.contains("service/kube-dns"),
        "{all}"
    );
    // The same from /openapi/v2, which kubectl reads as protobuf.
    let v2 = ok(
        &kubeconfig,
        &[
            "explain",
            "deployment.spec.replicas",
            "--output=plaintext-openapiv2",
        ],
    );
    assert!(
        v2.contains("FIELD:    replicas <integer>") && v2.contains("Number of desired pods"),
        "{v2}"
    );
    let schedule = ok(&kubeconfig, &["explain", "cronjobs.spec.schedule"]);
    assert!(schedule.contains("Cron format"), "{schedule}");
    let (found, error) = kubectl(&kubeconfig, &["explain", "deployment.spec.nonsense"]);
    assert!(
        !found && error.contains("field \"nonsense\" does not exist"),
        "{error}"
    );
}

#[tokio::test]
async fn an_autoscaler_scales_a_deployment_by_its_simulated_usage() {
    // One c6i.large worker: nothing cheaper to consolidate to, so the pods the autoscaler
    // adds always have room.
    let (_server, dir, kubeconfig) = sim_cluster_with(1, 1, &["--allow-family", "c6i"]).await;
    let web = |usage: &str| {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}, "annotations": {"sim.dialtone.dev/cpu-usage": usage}},
                    "spec": {"containers": [{"name": "web", "image": "nginx",
                        "resources": {"requests": {"cpu": "100m"}}}]},
                },
            },
        })
    };
    apply_json(&kubeconfig, dir.path(), web("80m"));
    apply_json(
        &kubeconfig,
        dir.path(),
        json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 1, "maxReplicas": 5,
                "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 40}}}],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}},
            },
        }),
    );
    let replicas_when = |want: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let replicas = ok(
                &kubeconfig,
                &[
                    "get",
                    "deployment",
                    "web",
                    "-o",
                    "jsonpath={.spec.replicas}",
                ],
            );
            if replicas.trim() == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{replicas}: {}",
                ok(&kubeconfig, &["describe", "hpa", "web"])
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    // Every pod at 80 % of its request against a goal of 40 %: doubled, then held at the most.
    replicas_when("5");
    let hpa = ok(&kubeconfig, &["get", "hpa", "web"]);
    assert!(hpa.contains("cpu: 80%/40%"), "{hpa}");
    let described = ok(&kubeconfig, &["describe", "hpa", "web"]);
    assert!(
        described.contains(
            "New size: 4; reason: cpu resource utilization (percentage of request) above target"
        ) && described.contains("TooManyReplicas"),
        "{described}"
    );
    // Usage drops to 10 %: down to the fewest.
    apply_json(&kubeconfig, dir.path(), web("10m"));
    replicas_when("1");
    let described = ok(&kubeconfig, &["describe", "hpa", "web"]);
    assert!(
        described.contains("All metrics below target"),
        "{described}"
    );

    // autoscaling/v1, which `kubectl autoscale` writes, is the same object with a CPU target
    // only; a change through it keeps what it cannot say.
    ok(
        &kubeconfig,
        &["create", "deployment", "api", "--image=nginx"],
    );
    let made = ok(
        &kubeconfig,
        &[
            "autoscale",
            "deployment",
            "api",
            "--min=2",
            "--max=4",
            "--cpu-percent=50",
        ],
    );
    assert!(made.contains("autoscaled"), "{made}");
    let stored: Value =
        serde_json::from_str(&ok(&kubeconfig, &["get", "hpa", "api", "-o", "json"])).unwrap();
    assert_eq!(stored["apiVersion"], "autoscaling/v2");
    assert_eq!(
        stored["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
        50
    );
    ok(
        &kubeconfig,
        &[
            "patch",
            "horizontalpodautoscalers.v1.autoscaling",
            "web",
            "--type=merge",
            "-p",
            r#"{"spec":{"maxReplicas":6}}"#,
        ],
    );
    let v1 = ok(
        &kubeconfig,
        &[
            "get",
            "horizontalpodautoscalers.v1.autoscaling",
            "web",
            "-o",
            "jsonpath={.apiVersion} {.spec.maxReplicas} {.spec.targetCPUUtilizationPercentage}",
        ],
    );
    assert_eq!(v1.trim(), "autoscaling/v1 6 40");
    let kept = ok(
        &kubeconfig,
        &[
            "get",
            "hpa",
            "web",
            "-o",
            "jsonpath={.spec.behavior.scaleDown.stabilizationWindowSeconds}",
        ],
    );
    assert_eq!(kept.trim(), "0", "behavior survives a v1 update");
}

const WIDGET_DEFINITION: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wg]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}, scale: {specReplicasPath: .spec.size, statusReplicasPath: .status.replicas}}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    - {name: Color, type: string, jsonPath: .spec.color}
    - {name: Ready, type: string, jsonPath: '.status.conditions[?(@.type=="Ready")].status'}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {type: integer, minimum: 1, maximum: 10, description: How many parts the widget has.}
              color: {type: string, enum: [red, blue], default: red}
          status:
            type: object
            properties:
              conditions:
                type: array
                items:
                  type: object
                  properties:
                    type: {type: string}
                    status: {type: string}
  - name: v1beta1
    served: true
    storage: false
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"#;

#[tokio::test]
async fn custom_resources_are_defined_validated_served_and_deleted_with_their_definition() {
    let (_server, dir, kubeconfig) = sim_cluster(1, 1).await;

    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    // Before its definition, a kind is unknown, as upstream says.
    let early = file(
        "early.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: early}\nspec: {size: 1}\n",
    );
    let (created, error) = kubectl(&kubeconfig, &["apply", "-f", &early]);
    assert!(
        !created && error.contains("no matches for kind \"Widget\" in version \"example.com/v1\""),
        "{error}"
    );
    let definition = file("crd.yaml", WIDGET_DEFINITION);
    ok(&kubeconfig, &["apply", "-f", &definition]);

    ok(
        &kubeconfig,
        &[
            "wait",
            "--for=condition=Established",
            "crd/widgets.example.com",
            "--timeout=30s",
        ],
    );
    let widget = |name: &str, spec: &str| {
        format!(
            "apiVersion: example.com/v1\nkind: Widget\nmetadata: {{name: {name}}}\nspec: {spec}\n"
        )
    };
    let small = file("small.yaml", &widget("small", "{size: 3}"));
    ok(&kubeconfig, &["apply", "-f", &small]);
    // Defaults come from the schema; printer columns from the definition.
    let table = ok(&kubeconfig, &["get", "wg"]);
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row, ["small", "3", "red"], "{table}");
    ok(
        &kubeconfig,
        &[
            "patch",
            "widget",
            "small",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"conditions":[{"type":"Ready","status":"True"}]}}"#,
        ],
    );
    let table = ok(&kubeconfig, &["get", "widgets"]);
    assert!(table.lines().nth(1).unwrap().ends_with("True"), "{table}");
    // The status subresource keeps a spec write from changing status, and the reverse.
    ok(
        &kubeconfig,
        &[
            "patch",
            "widget",
            "small",
            "--type=merge",
            "-p",
            r#"{"spec":{"size":4},"status":null}"#,
        ],
    );
    let object: Value =
        serde_json::from_str(&ok(&kubeconfig, &["get", "widget", "small", "-o", "json"])).unwrap();
    assert_eq!(object["spec"]["size"], 4);
    assert_eq!(object["status"]["conditions"][0]["status"], "True");
    assert_eq!(object["metadata"]["generation"], 2);
    // Its scale subresource writes the path its definition names.
    ok(&kubeconfig, &["scale", "widget", "small", "--replicas=6"]);
    let size = ok(
        &kubeconfig,
        &["get", "widget", "small", "-o", "jsonpath={.spec.size}"],
    );
    assert_eq!(size, "6");
    // Served in every version; stored in one.
    let other_version = ok(
        &kubeconfig,
        &[
            "get",
            "widgets.v1beta1.example.com",
            "small",
            "-o",
            "jsonpath={.apiVersion}",
        ],
    );
    assert_eq!(other_version, "example.com/v1beta1");

    // Objects that fail the schema are refused, whole, with upstream's words.
    for (spec, refusal) in [
        (
            "{size: big}",
            "spec.size in body must be of type integer: \"string\"",
        ),
        (
            "{size: 11}",
            "spec.size in body should be less than or equal to 10",
        ),
        (
            "{size: 2, color: green}",
            "Unsupported value: \"green\": supported values: \"red\", \"blue\"",
        ),
        ("{color: red}", "spec.size: Required value"),
        ("{size: 2, shape: round}", "unknown field \"spec.shape\""),
    ] {
        let bad = file("bad.yaml", &widget("bad", spec));
        let (created, error) = kubectl(&kubeconfig, &["apply", "-f", &bad]);
        assert!(!created && error.contains(refusal), "{spec}: {error}");
    }
    let names = ok(&kubeconfig, &["get", "widgets", "-o", "name"]);
    assert_eq!(names.trim(), "widget.example.com/small");

    let explained = ok(&kubeconfig, &["explain", "widgets.spec.size"]);
    assert!(
        explained.contains("FIELD: size <integer>")
            && explained.contains("How many parts the widget has."),
        "{explained}"
    );
    let explained = ok(
        &kubeconfig,
        &[
            "explain",
            "widgets.spec.size",
            "--output=plaintext-openapiv2",
        ],
    );
    assert!(
        explained.contains("How many parts the widget has."),
        "{explained}"
    );

    // A definition without a structural schema is refused.
    let loose = WIDGET_DEFINITION
        .replace("widgets", "gadgets")
        .replace("Widget", "Gadget")
        .replace("widget", "gadget")
        .replace("[wg]", "[gd]")
        .replace(
            "          spec:\n            type: object\n",
            "          spec:\n",
        );
    let loose = file("loose.yaml", &loose);
    let (created, error) = kubectl(&kubeconfig, &["apply", "-f", &loose]);
    assert!(
        !created && error.contains("properties[spec].type: Required value: must not be empty for specified object fields"),
        "{error}"
    );

    // Its objects go with the definition.
    ok(&kubeconfig, &["delete", "-f", &definition]);
    kubectl_until(&kubeconfig, &["get", "widgets"], false);
    // kubectl's cached discovery may still name the resource; the server does not.
    let (_, error) = kubectl(&kubeconfig, &["get", "widgets"]);
    assert!(
        error.contains("the server doesn't have a resource type \"widgets\"")
            || error.contains("the server could not find the requested resource"),
        "{error}"
    );
    ok(&kubeconfig, &["apply", "-f", &definition]);
    ok(
        &kubeconfig,
        &[
            "wait",
            "--for=condition=Established",
            "crd/widgets.example.com",
            "--timeout=30s",
        ],
    );
    let names = ok(&kubeconfig, &["get", "widgets", "-A", "-o", "name"]);
    assert!(names.trim().is_empty(), "{names}");
}

#[tokio::test]
async fn server_side_apply_is_idempotent_tracks_managers_and_refuses_conflicts() {
    let (_server, dir, kubeconfig) = sim_cluster(1, 1).await;
    let manifests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/kube-state-metrics");
    let manifests = manifests.to_str().unwrap();
    let applied = ok(&kubeconfig, &["apply", "--server-side", "-k", manifests]);
    assert_eq!(
        applied.matches("serverside-applied").count(),
        5,
        "{applied}"
    );
    // Applied again, nothing changes: not the role (which no controller writes), not the
    // deployment's generation.
    let version = |object: &str, path: &str| {
        ok(
            &kubeconfig,
            &[
                "get",
                "-n",
                "kube-system",
                object,
                "-o",
                &format!("jsonpath={path}"),
            ],
        )
    };
    let role = version(
        "clusterrole/kube-state-metrics",
        "{.metadata.resourceVersion}",
    );
    ok(&kubeconfig, &["apply", "--server-side", "-k", manifests]);
    assert_eq!(
        version(
            "clusterrole/kube-state-metrics",
            "{.metadata.resourceVersion}"
        ),
        role
    );
    let generation = || version("deployment/kube-state-metrics", "{.metadata.generation}");
    assert_eq!(generation(), "1");
    let deployment: Value = serde_json::from_str(&ok(
        &kubeconfig,
        &[
            "get",
            "-n",
            "kube-system",
            "deployment/kube-state-metrics",
            "--show-managed-fields",
            "-o",
            "json",
        ],
    ))
    .unwrap();
    let managers = &deployment["metadata"]["managedFields"];
    assert_eq!(managers[0]["manager"], "kubectl", "{managers}");
    assert_eq!(managers[0]["operation"], "Apply", "{managers}");
    assert!(
        managers[0]["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]
            ["k:{\"name\":\"kube-state-metrics\"}"]["f:image"]
            .is_object(),
        "{managers}"
    );

    // Another manager may not change what kubectl set, unless it forces the change.
    let scale = dir.path().join("scale.yaml");
    std::fs::write(
        &scale,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: kube-state-metrics, namespace: kube-system}\nspec: {replicas: 3}\n",
    )
    .unwrap();
    let scale = scale.to_str().unwrap();
    let (applied, error) = kubectl(
        &kubeconfig,
        &[
            "apply",
            "--server-side",
            "--field-manager=autoscaler",
            "-f",
            scale,
        ],
    );
    assert!(
        !applied
            && error.contains(
                "Apply failed with 1 conflict: conflict with \"kubectl\": .spec.replicas"
            ),
        "{error}"
    );
    assert_eq!(generation(), "1", "a refused apply changes nothing");
    ok(
        &kubeconfig,
        &[
            "apply",
            "--server-side",
            "--field-manager=autoscaler",
            "--force-conflicts",
            "-f",
            scale,
        ],
    );
    let replicas = || {
        ok(
            &kubeconfig,
            &[
                "get",
                "-n",
                "kube-system",
                "deployment/kube-state-metrics",
                "-o",
                "jsonpath={.spec.replicas}",
            ],
        )
    };
    assert_eq!(replicas(), "3");
    // Now the manifest's own replicas conflict with the manager that took them over.
    let (applied, error) = kubectl(&kubeconfig, &["apply", "--server-side", "-k", manifests]);
    assert!(
        !applied && error.contains("conflict with \"autoscaler\": .spec.replicas"),
        "{error}"
    );

    // A field its manager stops naming goes.
    let settings = |data: &str| {
        let path = dir.path().join("settings.yaml");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: settings}}\ndata: {data}\n"
            ),
        )
        .unwrap();
        ok(
            &kubeconfig,
            &["apply", "--server-side", "-f", path.to_str().unwrap()],
        );
        ok(
            &kubeconfig,
            &["get", "configmap", "settings", "-o", "jsonpath={.data}"],
        )
    };
    assert_eq!(settings("{a: '1', b: '2'}"), r#"{"a":"1","b":"2"}"#);
    assert_eq!(settings("{a: '1'}"), r#"{"a":"1"}"#);
}

/// The sim's Service load balancers, by the uid of the Service each serves.
async fn service_balancers(api: &Api) -> Vec<Value> {
    let (status, list) = api.get("/v1/sim/resources").await;
    assert_eq!(status, 200, "{list}");
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["spec"]["kind"] == "serviceLoadBalancer")
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_load_balancer_service_gets_the_cloud_s_load_balancer_and_takes_it_away() {
    let (server, _dir, kubeconfig) = sim_cluster(1, 1).await;
    let api = Api::admin(&server);
    ok(
        &kubeconfig,
        &[
            "create",
            "deployment",
            "web",
            "--image=nginx",
            "--port=8080",
        ],
    );
    ok(
        &kubeconfig,
        &[
            "expose",
            "deployment",
            "web",
            "--port=80",
            "--target-port=8080",
            "--type=LoadBalancer",
        ],
    );
    let hostname = || {
        ok(
            &kubeconfig,
            &[
                "get",
                "service",
                "web",
                "-o",
                "jsonpath={.status.loadBalancer.ingress[0].hostname}",
            ],
        )
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while hostname().is_empty() {
        assert!(
            Instant::now() < deadline,
            "no address: {}",
            ok(&kubeconfig, &["describe", "service", "web"])
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let address = hostname();
    let table = ok(&kubeconfig, &["get", "service", "web"]);
    assert!(table.contains(&address), "{table}");
    let described = ok(&kubeconfig, &["describe", "service", "web"]);
    assert!(
        described.contains("EnsuringLoadBalancer") && described.contains("EnsuredLoadBalancer"),
        "{described}"
    );
    let service: Value =
        serde_json::from_str(&ok(&kubeconfig, &["get", "service", "web", "-o", "json"])).unwrap();
    let node_port = service["spec"]["ports"][0]["nodePort"].as_u64().unwrap();
    assert_eq!(
        service["metadata"]["finalizers"],
        json!(["service.kubernetes.io/load-balancer-cleanup"])
    );

    // The cloud holds a load balancer at that address, forwarding port 80 to the node port
    // on the worker, and the nodes let the node port in.
    let balancers = service_balancers(&api).await;
    assert_eq!(balancers.len(), 1, "{balancers:?}");
    let balancer = &balancers[0];
    assert_eq!(balancer["address"], address.as_str());
    assert_eq!(
        balancer["tags"]["dialtone.dev/service"],
        service["metadata"]["uid"]
    );
    assert_eq!(
        balancer["spec"]["listeners"],
        json!([{"port": 80, "nodePort": node_port}])
    );
    assert_eq!(balancer["spec"]["targets"].as_array().unwrap().len(), 1);
    let open = |api: &Api| {
        let api = api.clone();
        async move {
            let (_, list) = api.get("/v1/sim/resources").await;
            list["items"].as_array().unwrap().iter().any(|r| {
                r["spec"]["kind"] == "securityGroup"
                    && r["spec"]["ingress"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|rule| rule["port"] == node_port && rule["source"] == "0.0.0.0/0")
            })
        }
    };
    assert!(open(&api).await, "the node port is open on the nodes");

    // TLS terminates at the load balancer with the certificate the annotation names.
    let certificate = "arn:aws:acm:us-east-1:123456789012:certificate/web";
    ok(
        &kubeconfig,
        &[
            "annotate",
            "service",
            "web",
            &format!("service.beta.kubernetes.io/aws-load-balancer-ssl-cert={certificate}"),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let balancers = service_balancers(&api).await;
        if balancers[0]["spec"]["listeners"][0]["certificate"] == certificate {
            break;
        }
        assert!(Instant::now() < deadline, "{balancers:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // A TLS port that is not the Service's is said on the Service, and changes nothing.
    ok(
        &kubeconfig,
        &[
            "annotate",
            "service",
            "web",
            "service.beta.kubernetes.io/aws-load-balancer-ssl-ports=https",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let described = ok(&kubeconfig, &["describe", "service", "web"]);
        if described.contains("LoadBalancerInvalid")
            && described.contains("names `https`, which is not a port of the Service")
        {
            break;
        }
        assert!(Instant::now() < deadline, "{described}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(
        service_balancers(&api).await[0]["spec"]["listeners"][0]["certificate"],
        certificate
    );

    // Deleting the Service waits for its load balancer to go, then nothing is left.
    ok(&kubeconfig, &["delete", "service", "web", "--timeout=60s"]);
    let (_, error) = kubectl(&kubeconfig, &["get", "service", "web"]);
    assert!(error.contains("not found"), "{error}");
    let left: Vec<Value> = service_balancers(&api)
        .await
        .into_iter()
        .filter(|b| b["state"] != "deleting")
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while open(&api).await {
        assert!(Instant::now() < deadline, "the node port stays open");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
