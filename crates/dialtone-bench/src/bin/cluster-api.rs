//! `cluster-api`: how fast one sim cluster's Kubernetes API answers, and whether hosting many
//! clusters in the same server slows it. Against the real `dialtone` binary (fast sim), a
//! kube-rs client holding a `dialtone cluster credentials` token measures requests per
//! second for typical calls on one cluster while the server hosts that cluster alone, then
//! again once it hosts `--clusters` of them, and prints the two side by side with their ratio,
//! with the server's memory per hosted idle cluster.
//! Then the drift guard's webhook alone: the latency of each review, as a cluster's API
//! server sends them.
//!
//! `cargo build --release -p dialtone && cargo run --release -p dialtone-bench --bin cluster-api`

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use dialtone_bench::{DialtoneApi, rss_bytes};
use dialtone_kube::{Connection, Credential, Endpoint};
use dialtone_testkit::DevServer;
use futures::StreamExt;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;

#[derive(Parser)]
#[command(about = "Requests per second on one sim cluster's Kubernetes API")]
struct Args {
    /// Clusters hosted in the second round.
    #[arg(long, default_value_t = 100)]
    clusters: usize,
    /// Concurrent requests.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// How long each call is measured for.
    #[arg(long, default_value_t = 3)]
    seconds: u64,
    /// The dialtone binary (default: target/release/dialtone).
    #[arg(long)]
    binary: Option<PathBuf>,
}

async fn create_cluster(dialtone: &DialtoneApi, name: &str) -> anyhow::Result<()> {
    dialtone
        .call(
            reqwest::Method::POST,
            "/v1/orgs/demo/folders/bench/projects/api/clusters",
            Some(json!({"metadata": {"name": name},
                   "spec": {"type": "developer", "region": "us-east-1", "minNodes": 3}})),
        )
        .await
        .map(|_| ())
}

async fn wait_ready(dialtone: &DialtoneApi, count: usize) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let list = dialtone
            .call(
                reqwest::Method::GET,
                "/v1/orgs/demo/folders/bench/projects/api/clusters",
                None,
            )
            .await?;
        let ready = list["items"].as_array().map_or(0, |items| {
            items
                .iter()
                .filter(|c| c["status"]["phase"] == "Ready")
                .count()
        });
        if ready >= count {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(600) {
            bail!("only {ready} of {count} clusters Ready after 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Calls `call` from `concurrency` tasks for `window`; requests per second.
async fn rate<F, Fut>(concurrency: usize, window: Duration, call: F) -> anyhow::Result<f64>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<u64>> + Send,
{
    let call = Arc::new(call);
    let start = Instant::now();
    let tasks = (0..concurrency as u64).map(|task| {
        let call = call.clone();
        tokio::spawn(async move {
            let mut requests = 0;
            let mut i = 0;
            while start.elapsed() < window {
                requests += call(task * 1_000_000 + i).await?;
                i += 1;
            }
            anyhow::Ok(requests)
        })
    });
    let mut total = 0;
    for task in futures::future::join_all(tasks).await {
        total += task??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

const NAMESPACE: &str = "bench";
const CONFIGMAPS: usize = 100;
const WEBHOOK_REVIEWS: usize = 10_000;

/// The calls measured, by name, in order.
async fn measure(client: &kube::Client, args: &Args) -> anyhow::Result<Vec<(&'static str, f64)>> {
    let window = Duration::from_secs(args.seconds);
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    let mut figures = Vec::new();

    let api = configmaps.clone();
    let get = rate(args.concurrency, window, move |i| {
        let api = api.clone();
        async move {
            api.get(&format!("cm-{}", i % CONFIGMAPS as u64)).await?;
            Ok(1)
        }
    })
    .await?;
    figures.push(("get a configmap", get));

    let api = configmaps.clone();
    let list = rate(args.concurrency, window, move |_| {
        let api = api.clone();
        async move {
            let list = api.list(&ListParams::default()).await?;
            anyhow::ensure!(list.items.len() >= CONFIGMAPS, "the list is short");
            Ok(1)
        }
    })
    .await?;
    figures.push(("list 100 configmaps", list));

    let api = configmaps.clone();
    let writes = rate(args.concurrency, window, move |i| {
        let api = api.clone();
        async move {
            let name = format!("w-{i}");
            api.create(&PostParams::default(), &configmap(&name))
                .await?;
            api.delete(&name, &DeleteParams::default()).await?;
            Ok(2)
        }
    })
    .await?;
    figures.push(("create or delete a configmap", writes));

    // Every write of an RBAC object goes through the drift guard's webhook first.
    let roles: Api<Role> = Api::namespaced(client.clone(), NAMESPACE);
    let role_writes = rate(args.concurrency, window, move |i| {
        let api = roles.clone();
        async move {
            let name = format!("r-{i}");
            api.create(&PostParams::default(), &role(&name)).await?;
            api.delete(&name, &DeleteParams::default()).await?;
            Ok(2)
        }
    })
    .await?;
    figures.push(("create or delete a role", role_writes));

    let reviews: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let review = rate(args.concurrency, window, move |_| {
        let reviews = reviews.clone();
        async move {
            let asked = SelfSubjectAccessReview {
                spec: SelfSubjectAccessReviewSpec {
                    resource_attributes: Some(ResourceAttributes {
                        verb: Some("delete".into()),
                        resource: Some("pods".into()),
                        namespace: Some(NAMESPACE.into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ..Default::default()
            };
            reviews.create(&PostParams::default(), &asked).await?;
            Ok(1)
        }
    })
    .await?;
    figures.push(("access review (can-i)", review));
    Ok(figures)
}

fn role(name: &str) -> Role {
    Role {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["configmaps".into()]),
            verbs: vec!["get".into()],
            ..Default::default()
        }]),
    }
}

/// An AdmissionReview as a cluster's API server sends the drift guard: someone other than
/// Dialtone changing a RoleBinding, one of Dialtone's (refused) when `managed`.
fn admission_review(i: usize, managed: bool) -> serde_json::Value {
    let name = match managed {
        true => format!("dialtone:org.view:{i}"),
        false => format!("team-binding-{i}"),
    };
    let labels = match managed {
        true => json!({"app.kubernetes.io/managed-by": "dialtone"}),
        false => json!({}),
    };
    let object = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "labels": labels,
            "annotations": {"dialtone.dev/granted-on": "demo/bench", "dialtone.dev/role": "org.view"},
        },
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "User", "name": "alice@example.com"}],
    });
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": format!("review-{i}"),
            "kind": {"group": "rbac.authorization.k8s.io", "version": "v1", "kind": "RoleBinding"},
            "resource": {"group": "rbac.authorization.k8s.io", "version": "v1", "resource": "rolebindings"},
            "name": name,
            "namespace": NAMESPACE,
            "operation": "UPDATE",
            "userInfo": {"username": "alice@example.com", "groups": ["system:authenticated"]},
            "object": object,
            "oldObject": object,
        },
    })
}

/// The drift guard's webhook as a cluster's API server calls it: `count` reviews one after
/// the other over one kept-alive HTTPS connection, half of them refused. Each latency is
/// from sending the review to reading the whole answer.
async fn webhook_latencies(dialtone: &DialtoneApi, count: usize) -> anyhow::Result<Vec<Duration>> {
    let url = dialtone.url("/v1/admission/rbac-guard");
    let mut latencies = Vec::with_capacity(count);
    for i in 0..count {
        let body = serde_json::to_vec(&admission_review(i, i % 2 == 0))?;
        let start = Instant::now();
        let response = dialtone
            .http()
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        let answer: serde_json::Value = response.json().await?;
        latencies.push(start.elapsed());
        anyhow::ensure!(
            answer["response"]["allowed"] == (i % 2 != 0),
            "review {i} answered {answer}"
        );
    }
    latencies.sort_unstable();
    Ok(latencies)
}

fn configmap(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        data: Some([("key".to_string(), "value".to_string())].into()),
        ..Default::default()
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    let binary = dialtone_testkit::release_binary(args.binary.clone())?;
    let server = DevServer::start(&binary, &["--sim-time-scale", "0"])?;
    let dialtone = Arc::new(DialtoneApi::admin(&server)?);
    let post = reqwest::Method::POST;
    dialtone
        .call(
            post.clone(),
            "/v1/orgs/demo/folders",
            Some(json!({"metadata": {"name": "bench"}})),
        )
        .await?;
    dialtone
        .call(
            post.clone(),
            "/v1/orgs/demo/folders/bench/projects",
            Some(json!({"metadata": {"name": "api"}})),
        )
        .await?;
    create_cluster(&dialtone, "c0").await?;
    wait_ready(&dialtone, 1).await?;
    let credentials = dialtone
        .call(
            post,
            "/v1/orgs/demo/folders/bench/projects/api/clusters/c0/credentials",
            Some(json!({})),
        )
        .await?;
    let text = |field: &str| {
        credentials[field]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("credentials without {field}"))
    };
    let client = dialtone_kube::build(&Connection {
        endpoint: Endpoint {
            server: text("server")?,
            tls_server_name: text("tlsServerName")?,
            ca_pem: text("certificateAuthority")?,
        },
        credential: Credential::BearerToken(text("token")?),
    })?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(NAMESPACE.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    namespaces
        .create(&PostParams::default(), &namespace)
        .await?;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    for i in 0..CONFIGMAPS {
        configmaps
            .create(&PostParams::default(), &configmap(&format!("cm-{i}")))
            .await?;
    }

    println!(
        "cluster-api: one developer cluster's Kubernetes API, kube-rs client with a cluster token, \
         {} concurrent requests, {} s per call, {} cores",
        args.concurrency,
        args.seconds,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let alone = measure(&client, &args).await?;

    let pid = server.pid().context("the server runs")?;
    let rss_alone = rss_bytes(pid)?;
    eprintln!("hosting {} clusters…", args.clusters);
    futures::stream::iter(1..args.clusters)
        .map(|i| {
            let dialtone = dialtone.clone();
            async move { create_cluster(&dialtone, &format!("c{i}")).await }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<()>>>()?;
    wait_ready(&dialtone, args.clusters).await?;
    // Idle: Ready, nothing deployed; a few seconds for the last health checks to settle.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let per_cluster = (rss_bytes(pid)? - rss_alone) / (args.clusters - 1).max(1) as f64;
    let crowded = measure(&client, &args).await?;

    println!(
        "  {:<30} {:>14} {:>18} {:>8}",
        "call",
        "1 cluster",
        format!("{} clusters", args.clusters),
        "ratio"
    );
    for ((name, one), (_, many)) in alone.iter().zip(&crowded) {
        println!(
            "  {name:<30} {one:>10.0} /s {many:>14.0} /s {:>7.2}×",
            many / one
        );
    }

    println!(
        "  server memory per hosted idle cluster: {:.0} KiB (resident growth from 1 to {} clusters)",
        per_cluster / 1024.0,
        args.clusters
    );

    // Warm the connection, then measure.
    webhook_latencies(&dialtone, 200).await?;
    let latencies = webhook_latencies(&dialtone, WEBHOOK_REVIEWS).await?;
    let at = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "drift guard webhook, {WEBHOOK_REVIEWS} reviews one at a time over HTTPS (half refused), \
         hosting {} clusters: p50 {:.0} µs, p99 {:.0} µs, p99.9 {:.0} µs, max {:.0} µs",
        args.clusters,
        micros(at(0.5)),
        micros(at(0.99)),
        micros(at(0.999)),
        micros(latencies[latencies.len() - 1]),
    );
    Ok(())
}
