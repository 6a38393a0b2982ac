//! `dialtone-bench`: for each store backend, measures the API (create, get, list, watch
//! fan-out) and, in the same run and on the same store, the raw store doing the same work,
//! and prints the ratio. The API runs in-process, over TLS, with authentication and audit:
//! everything a real request pays for.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use dialtone_server::{ServerOptions, StoreLocation};
use dialtone_store::{KeyRange, Store, Txn};
use dialtone_testkit::EtcdCluster;
use futures::StreamExt;

#[derive(Parser)]
#[command(about = "API throughput and latency next to the raw store's, per backend")]
struct Args {
    /// Objects created (and gets made) per backend.
    #[arg(long, default_value_t = 2000)]
    ops: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Watchers for the fan-out.
    #[arg(long, default_value_t = 1000)]
    watchers: usize,
    /// Changes each watcher must receive.
    #[arg(long, default_value_t = 50)]
    events: usize,
    /// `embedded`, `etcd` or `both`.
    #[arg(long, default_value = "both")]
    backend: String,
}

/// Throughput and latency of one measured phase.
struct Measure {
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn summarize(count: usize, elapsed: Duration, mut latencies: Vec<Duration>) -> Measure {
    latencies.sort();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    Measure {
        per_second: count as f64 / elapsed.as_secs_f64(),
        p50_ms: at(0.50),
        p99_ms: at(0.99),
    }
}

/// Runs `total` calls of `op(i)` from `concurrency` tasks and measures them.
async fn run<F, Fut>(total: usize, concurrency: usize, op: F) -> anyhow::Result<Measure>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let op = Arc::new(op);
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|t| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                for i in (t..total).step_by(concurrency) {
                    let begun = Instant::now();
                    op(i).await?;
                    latencies.push(begun.elapsed());
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(total);
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok(summarize(total, started.elapsed(), latencies))
}

fn folder_json(name: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "dialtone.dev/v1", "kind": "Folder",
        "metadata": {"name": name, "uid": "7b0c4c52-9a5f-4a3e-9a43-3cbd2b5f0f6e", "parent": "orgs/bench", "generation": 1,
                      "labels": {"team": "bench"}, "creationTimestamp": "2026-01-01T00:00:00Z", "homeRegion": "local"},
        "spec": {"displayName": "A folder of the benchmark"}, "status": {"observedGeneration": 0}
    }))
    .expect("serializable")
}

struct Results {
    create: Measure,
    get: Measure,
    list: Measure,
    fanout: Measure,
}

async fn bench_raw(store: Arc<dyn Store>, args: &Args) -> anyhow::Result<Results> {
    let s = store.clone();
    let create = run(args.ops, args.concurrency, move |i| {
        let s = s.clone();
        async move {
            let key = format!("/bench/raw/{i:06}");
            s.txn(
                Txn::default()
                    .when(key.clone(), 0)
                    .put(key, folder_json(&format!("f{i}"))),
            )
            .await?;
            Ok(())
        }
    })
    .await?;
    let s = store.clone();
    let get = run(args.ops, args.concurrency, move |i| {
        let s = s.clone();
        async move {
            s.get(format!("/bench/raw/{:06}", (i * 7919) % 1000).as_bytes())
                .await?
                .context("missing")?;
            Ok(())
        }
    })
    .await?;
    let s = store.clone();
    let list = run(args.ops / 10, args.concurrency, move |_| {
        let s = s.clone();
        async move {
            let page = s.range(&KeyRange::prefix("/bench/raw/"), None, 100).await?;
            // The API decodes what it reads; so does the raw side, for a fair comparison.
            for kv in &page.kvs {
                let _: serde_json::Value = serde_json::from_slice(&kv.value)?;
            }
            Ok(())
        }
    })
    .await?;
    let mut streams = Vec::new();
    let from = store.revision().await? + 1;
    for _ in 0..args.watchers {
        streams.push(
            store
                .watch(KeyRange::prefix("/bench/fanout/"), from)
                .await?,
        );
    }
    let fanout = fan_out(
        args,
        streams
            .into_iter()
            .map(|s| {
                s.map(|e| e.map(|_| ()).map_err(anyhow::Error::from))
                    .boxed()
            })
            .collect(),
        {
            let store = store.clone();
            move |i| {
                let store = store.clone();
                async move {
                    let key = format!("/bench/fanout/{i}");
                    store.txn(Txn::default().put(key, folder_json("x"))).await?;
                    Ok(())
                }
            }
        },
    )
    .await?;
    Ok(Results {
        create,
        get,
        list,
        fanout,
    })
}

/// Makes `args.events` writes one after the other; measures how long every watcher takes to
/// receive each one, and the events delivered per second over all watchers.
async fn fan_out<W, Fut>(
    args: &Args,
    streams: Vec<futures::stream::BoxStream<'static, anyhow::Result<()>>>,
    write: W,
) -> anyhow::Result<Measure>
where
    W: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let events = args.events;
    let written: Arc<std::sync::Mutex<Vec<Instant>>> = Arc::default();
    let receivers: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            let written = written.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(events);
                for i in 0..events {
                    stream.next().await.context("watch ended")??;
                    let sent = written
                        .lock()
                        .unwrap()
                        .get(i)
                        .copied()
                        .unwrap_or_else(Instant::now);
                    latencies.push(sent.elapsed());
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let started = Instant::now();
    for i in 0..events {
        written.lock().unwrap().push(Instant::now());
        write(i).await?;
    }
    let mut latencies = Vec::new();
    for receiver in receivers {
        latencies.extend(tokio::time::timeout(Duration::from_secs(120), receiver).await???);
    }
    Ok(summarize(latencies.len(), started.elapsed(), latencies))
}

async fn bench_api(location: StoreLocation, args: &Args) -> anyhow::Result<Results> {
    let data_dir = tempfile::tempdir()?;
    let running = dialtone_server::start(ServerOptions {
        listen: "127.0.0.1:0".parse()?,
        store: location,
        data_dir: data_dir.path().to_path_buf(),
        region: "local".into(),
        tls: None,
        tls_names: vec![],
        bootstrap_org: "bench".into(),
        bootstrap_identity: "admin".into(),
        mint_admin_token: true,
        compaction_interval: Duration::from_secs(3600),
        backend: dialtone_backend::sim::backend(dialtone_backend::sim::SimBackendOptions {
            data_dir: data_dir.path().to_path_buf(),
            time_scale: 0.0,
            describe_lag: Duration::ZERO,
            peering_expiry: Duration::from_secs(7 * 24 * 3600),
            kube_listen: "127.0.0.1:0".parse()?,
            webhook_allowed_cidrs: Vec::new(),
        }),
        fault_panic_tasks: Vec::new(),
        kubernetes_versions: None,
        metering: Default::default(),
        leadership: Default::default(),
        regions: None,
        cluster_resync: None,
    })
    .await?;
    let token = running.admin_token.clone().context("no admin token")?.token;
    let base = format!("https://{}", running.addr);
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&running.ca_cert)?)?;
    let client = |ca: reqwest::Certificate| reqwest::Client::builder().tls_certs_only([ca]).build();
    let http = client(ca.clone())?;
    let request = {
        let (http, base, token) = (http.clone(), base.clone(), token.clone());
        move |method: reqwest::Method, path: String, body: Option<Vec<u8>>| {
            let mut r = http
                .request(method, format!("{base}{path}"))
                .bearer_auth(&token);
            if let Some(body) = body {
                r = r.header("content-type", "application/json").body(body);
            }
            async move {
                let response = r.send().await?;
                anyhow::ensure!(response.status().is_success(), "HTTP {}", response.status());
                response.bytes().await?;
                Ok(())
            }
        }
    };
    let r = request.clone();
    let create = run(args.ops, args.concurrency, move |i| {
        let body = serde_json::to_vec(&serde_json::json!({"metadata": {"name": format!("f{i:06}"), "labels": {"team": "bench"}}, "spec": {"displayName": "A folder of the benchmark"}})).expect("json");
        r(reqwest::Method::POST, "/v1/orgs/bench/folders".into(), Some(body))
    })
    .await?;
    let r = request.clone();
    let get = run(args.ops, args.concurrency, move |i| {
        r(
            reqwest::Method::GET,
            format!("/v1/orgs/bench/folders/f{:06}", (i * 7919) % 1000),
            None,
        )
    })
    .await?;
    let r = request.clone();
    let list = run(args.ops / 10, args.concurrency, move |_| {
        r(
            reqwest::Method::GET,
            "/v1/orgs/bench/folders?limit=100".into(),
            None,
        )
    })
    .await?;
    // The watchers watch the projects of one folder.
    let fanout_folder = r#"{"metadata":{"name":"fanout"}}"#.as_bytes().to_vec();
    request(
        reqwest::Method::POST,
        "/v1/orgs/bench/folders".into(),
        Some(fanout_folder),
    )
    .await?;
    let revision = {
        let response = http
            .get(format!("{base}/v1/orgs/bench/folders/fanout/projects"))
            .bearer_auth(&token)
            .send()
            .await?;
        let list: serde_json::Value = response.json().await?;
        list["metadata"]["resourceVersion"]
            .as_str()
            .context("no resourceVersion")?
            .to_string()
    };
    let mut streams = Vec::new();
    // HTTP/2 multiplexes watches; 100 per connection stays under the server's stream limit.
    let clients: Vec<reqwest::Client> = (0..args.watchers.div_ceil(100))
        .map(|_| client(ca.clone()))
        .collect::<Result<_, _>>()?;
    for w in 0..args.watchers {
        let response = clients[w / 100]
            .get(format!(
                "{base}/v1/orgs/bench/folders/fanout/projects?watch=true&resourceVersion={revision}"
            ))
            .bearer_auth(&token)
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "watch: HTTP {}",
            response.status()
        );
        let bytes = response.bytes_stream();
        // One event per line.
        let lines =
            futures::stream::unfold((bytes, 0usize), |(mut bytes, mut pending)| async move {
                loop {
                    if pending > 0 {
                        return Some((Ok(()), (bytes, pending - 1)));
                    }
                    match bytes.next().await? {
                        Ok(chunk) => pending += chunk.iter().filter(|b| **b == b'\n').count(),
                        Err(e) => return Some((Err(anyhow::Error::from(e)), (bytes, 0))),
                    }
                }
            });
        streams.push(lines.boxed());
    }
    let r = request.clone();
    let fanout = fan_out(args, streams, move |i| {
        r(
            reqwest::Method::POST,
            "/v1/orgs/bench/folders/fanout/projects".into(),
            Some(format!(r#"{{"metadata":{{"name":"p{i}"}}}}"#).into_bytes()),
        )
    })
    .await?;
    Ok(Results {
        create,
        get,
        list,
        fanout,
    })
}

fn print(backend: &str, raw: &Results, api: &Results, args: &Args) {
    let rows = [
        (
            format!("create (c={})", args.concurrency),
            &raw.create,
            &api.create,
        ),
        (format!("get (c={})", args.concurrency), &raw.get, &api.get),
        ("list 100 objects".to_string(), &raw.list, &api.list),
        (
            format!("watch fan-out {}x{} (events/s)", args.watchers, args.events),
            &raw.fanout,
            &api.fanout,
        ),
    ];
    for (name, raw, api) in rows {
        println!(
            "{backend:<9} {name:<34} {:>10.0} {:>10.0} {:>8.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
            raw.per_second,
            api.per_second,
            api.per_second / raw.per_second,
            raw.p50_ms,
            raw.p99_ms,
            api.p50_ms,
            api.p99_ms
        );
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    println!(
        "{:<9} {:<34} {:>10} {:>10} {:>8} {:>9} {:>9} {:>9} {:>9}",
        "backend",
        "operation",
        "store/s",
        "API/s",
        "API/store",
        "store p50",
        "store p99",
        "API p50",
        "API p99"
    );
    println!(
        "{:<44} (latencies in ms; watch latency is from the write to each watcher's receipt)",
        ""
    );
    if matches!(args.backend.as_str(), "embedded" | "both") {
        let dir = tempfile::tempdir()?;
        let raw_store: Arc<dyn Store> = Arc::new(dialtone_store::EmbeddedStore::open(
            &dir.path().join("raw.redb"),
        )?);
        let raw = bench_raw(raw_store, &args).await?;
        drop(dir);
        let api_dir = tempfile::tempdir()?;
        let api = bench_api(
            StoreLocation::Embedded(api_dir.path().join("store.redb")),
            &args,
        )
        .await?;
        print("embedded", &raw, &api, &args);
    }
    if matches!(args.backend.as_str(), "etcd" | "both") {
        let cluster = EtcdCluster::start(3)?;
        let raw_store: Arc<dyn Store> =
            Arc::new(dialtone_store::EtcdStore::connect(&cluster.endpoints()).await?);
        let raw = bench_raw(raw_store, &args).await?;
        let api = bench_api(StoreLocation::Etcd(cluster.endpoints()), &args).await?;
        print("etcd", &raw, &api, &args);
    }
    Ok(())
}
