//! `fleet`: creates a fleet of developer clusters against the real `dialtone` binary with the
//! sim cloud in fast mode, and prints clusters per second to Ready, the control plane's CPU
//! time per cluster and its memory per cluster (read from /proc for the server process
//! alone; every Ready cluster is also serving its Kubernetes API from that process, unless
//! `--sim-process` runs the sim in a process of its own, whose figures are then printed
//! apart), and the steady state once every cluster is Ready. A fleet a tenth the
//! size runs first on a fresh server, so that the ratio of CPU per cluster between the two
//! shows whether the control plane's cost per cluster grows with the fleet.
//!
//! `cargo build --release -p dialtone && cargo run --release -p dialtone-bench --bin fleet`

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use dialtone_bench::{DialtoneApi, rss_bytes};
use dialtone_testkit::{DevServer, SimService};
use futures::StreamExt;
use serde_json::json;

#[derive(Parser)]
#[command(about = "Provision a fleet of Smart Clusters in the fast sim and time it")]
struct Args {
    #[arg(long, default_value_t = 1000)]
    clusters: usize,
    /// Workers per cluster.
    #[arg(long, default_value_t = 3)]
    workers: u32,
    /// Projects the clusters are spread over (each project shares one developer VPC).
    #[arg(long, default_value_t = 20)]
    projects: usize,
    /// Concurrent create requests.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// The dialtone binary (default: target/release/dialtone).
    #[arg(long)]
    binary: Option<PathBuf>,
    /// How often the server's meters look for clusters, in milliseconds (the server's
    /// default, a minute, is longer than a run: the pod meter would watch no cluster).
    #[arg(long, default_value_t = 1000)]
    metering_interval_ms: u64,
    /// How often the server looks at each Ready cluster anyway (`--cluster-resync-seconds`;
    /// its default at real speed is 600); the steady state is measured over one such period.
    #[arg(long, default_value_t = 60)]
    resync_seconds: u64,
    /// Run the sim cloud, and with it every cluster's Kubernetes API, as `dialtone sim
    /// serve` in a process of its own, as a real cloud is. With both ends of each cluster's
    /// connection in one process, the server holds two file descriptors per cluster.
    #[arg(long)]
    sim_process: bool,
}

/// User plus system CPU seconds of a process so far.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("a /proc stat line")?
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    Ok(ticks / 100.0)
}

/// What one fleet run measured.
struct Figures {
    clusters: usize,
    created_in: Duration,
    ready_in: Duration,
    cpu_seconds: f64,
    resources: usize,
    /// Growth of the server's resident memory from before the first create to all Ready.
    memory_bytes: f64,
    /// CPU seconds per second once every cluster is Ready, over one resync period.
    steady_cpu_per_second: f64,
    /// The lifecycle's passes over the steady window.
    steady_passes: f64,
    resync_seconds: u64,
    /// The sim service's CPU seconds to Ready, memory growth and steady CPU per second,
    /// when it runs in a process of its own.
    sim: Option<(f64, f64, f64)>,
}

impl Figures {
    fn cpu_ms_per_cluster(&self) -> f64 {
        self.cpu_seconds * 1000.0 / self.clusters as f64
    }

    fn print(&self) {
        let n = self.clusters as f64;
        println!("  {} clusters", self.clusters);
        println!(
            "    all created (API)        {:>8.1} s   {:>8.1} clusters/s",
            self.created_in.as_secs_f64(),
            n / self.created_in.as_secs_f64()
        );
        println!(
            "    all Ready                {:>8.1} s   {:>8.1} clusters/s",
            self.ready_in.as_secs_f64(),
            n / self.ready_in.as_secs_f64()
        );
        println!(
            "    control-plane CPU        {:>8.1} s   {:>8.1} ms per cluster",
            self.cpu_seconds,
            self.cpu_ms_per_cluster()
        );
        println!(
            "    cloud resources          {:>8}     {:>8.1} per cluster",
            self.resources,
            self.resources as f64 / n
        );
        println!(
            "    server memory growth     {:>8.1} MiB {:>8.0} KiB per cluster (store, sim, hosted Kubernetes API)",
            self.memory_bytes / 1048576.0,
            self.memory_bytes / 1024.0 / n
        );
        println!(
            "    steady state             {:>8.2} % of a core, {:.1} µs of CPU per cluster per second \
             (each Ready cluster followed and looked at every {} s)",
            self.steady_cpu_per_second * 100.0,
            self.steady_cpu_per_second * 1e6 / n,
            self.resync_seconds,
        );
        println!(
            "    lifecycle passes         {:>8.0} in the steady state, {:.2} per cluster",
            self.steady_passes,
            self.steady_passes / n
        );
        if let Some((cpu, memory, steady)) = self.sim {
            println!(
                "    sim process              {:>8.1} s of CPU to Ready ({:.1} ms per cluster), {:.0} KiB per cluster, \
                 steady state {:.2} % of a core",
                cpu,
                cpu * 1000.0 / n,
                memory / 1024.0 / n,
                steady * 100.0
            );
        }
    }
}

/// The value of one series in the server's `/metrics` (0 while it has none).
async fn metric(api: &DialtoneApi, series: &str) -> anyhow::Result<f64> {
    let metrics = api.text("/metrics").await?;
    let value = metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '));
    Ok(value.map_or(Ok(0.0), str::parse)?)
}

/// How many clusters the server counts Ready in `/metrics`.
async fn ready_clusters(api: &DialtoneApi) -> anyhow::Result<usize> {
    Ok(metric(api, "dialtone_clusters{phase=\"Ready\"}").await? as usize)
}

/// The lifecycle controller's passes so far.
async fn lifecycle_passes(api: &DialtoneApi) -> anyhow::Result<f64> {
    metric(
        api,
        "dialtone_controller_passes_total{controller=\"cluster-lifecycle\"}",
    )
    .await
}

/// Starts a fresh server, creates `clusters` developer clusters and waits until all are Ready.
async fn run_fleet(
    binary: &std::path::Path,
    args: &Args,
    clusters: usize,
) -> anyhow::Result<Figures> {
    let interval = args.metering_interval_ms.to_string();
    let resync = args.resync_seconds.to_string();
    let mut server_args = vec![
        "--metering-interval-ms".to_string(),
        interval,
        "--cluster-resync-seconds".to_string(),
        resync,
    ];
    let sim = match args.sim_process {
        true => Some(SimService::start(binary, &["--sim-time-scale", "0"])?),
        false => None,
    };
    match &sim {
        Some(sim) => server_args.extend(sim.server_args()),
        None => server_args.extend(["--sim-time-scale".to_string(), "0".to_string()]),
    }
    let server_args: Vec<&str> = server_args.iter().map(String::as_str).collect();
    let server = DevServer::start(binary, &server_args)?;
    let pid = server.pid().context("the server runs")?;
    let sim_pid = sim.as_ref().map(SimService::pid);
    let api = Arc::new(DialtoneApi::admin(&server)?);
    let post = reqwest::Method::POST;
    // An account's default quotas (5,000 load balancers) hold half of 10,000 clusters;
    // raised, as a platform team raises its cloud account's.
    api.call(
        reqwest::Method::PUT,
        "/v1/sim/regions/us-east-1/quotas",
        Some(json!({"vcpus": 100 * clusters + 10_000, "vpcs": 1_000, "loadBalancers": clusters + 100})),
    )
    .await?;
    api.call(
        post.clone(),
        "/v1/orgs/demo/folders",
        Some(json!({"metadata": {"name": "fleet"}})),
    )
    .await?;
    for p in 0..args.projects {
        api.call(
            post.clone(),
            "/v1/orgs/demo/folders/fleet/projects",
            Some(json!({"metadata": {"name": format!("p{p}")}})),
        )
        .await?;
    }
    let cpu_before = cpu_seconds(pid)?;
    let rss_before = rss_bytes(pid)?;
    let sim_before = match sim_pid {
        Some(sim) => Some((cpu_seconds(sim)?, rss_bytes(sim)?)),
        None => None,
    };
    let start = Instant::now();
    let creates = futures::stream::iter(0..clusters)
        .map(|i| {
            let api = api.clone();
            let project = i % args.projects;
            let workers = args.workers;
            async move {
                api.call(
                    reqwest::Method::POST,
                    &format!("/v1/orgs/demo/folders/fleet/projects/p{project}/clusters"),
                    Some(json!({
                        "metadata": {"name": format!("c{i}")},
                        "spec": {"type": "developer", "region": "us-east-1", "minNodes": workers, "maxNodes": workers.max(10)},
                    })),
                )
                .await
            }
        })
        .buffer_unordered(args.concurrency)
        .collect::<Vec<_>>()
        .await;
    for created in creates {
        created?;
    }
    let created_in = start.elapsed();
    let mut ready = 0;
    while ready < clusters {
        tokio::time::sleep(Duration::from_millis(250)).await;
        // The server's own count, from its informer: listing 10,000 clusters four times a
        // second would cost the server more than the fleet does.
        ready = ready_clusters(&api).await?;
        eprint!("\r  {ready}/{clusters} Ready");
        if start.elapsed() > Duration::from_secs(1800) {
            bail!("only {ready} of {clusters} clusters Ready after 30 minutes");
        }
    }
    eprint!("\r{:30}\r", "");
    let ready_in = start.elapsed();
    let cpu_ready = cpu_seconds(pid)?;
    let sim_ready = match sim_pid {
        Some(sim) => Some(cpu_seconds(sim)?),
        None => None,
    };
    let window = Duration::from_secs(args.resync_seconds);
    let passes_ready = lifecycle_passes(&api).await?;
    tokio::time::sleep(window).await;
    let steady_passes = lifecycle_passes(&api).await? - passes_ready;
    // After the steady window, so that every Ready cluster's API is hosted.
    let memory_bytes = rss_bytes(pid)? - rss_before;
    let steady_cpu_per_second = (cpu_seconds(pid)? - cpu_ready) / window.as_secs_f64();
    let sim_figures = match (sim_pid, sim_before, sim_ready) {
        (Some(sim), Some((cpu_before, rss_before)), Some(cpu_ready)) => Some((
            cpu_ready - cpu_before,
            rss_bytes(sim)? - rss_before,
            (cpu_seconds(sim)? - cpu_ready) / window.as_secs_f64(),
        )),
        _ => None,
    };
    let resources = api
        .call(reqwest::Method::GET, "/v1/sim/resources", None)
        .await?["items"]
        .as_array()
        .map_or(0, Vec::len);
    Ok(Figures {
        clusters,
        created_in,
        ready_in,
        cpu_seconds: cpu_ready - cpu_before,
        resources,
        memory_bytes,
        steady_cpu_per_second,
        steady_passes,
        resync_seconds: args.resync_seconds,
        sim: sim_figures,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    let binary = dialtone_testkit::release_binary(args.binary.clone())?;
    println!(
        "fleet: developer clusters × {} workers over {} projects, sim in fast mode, {} cores",
        args.workers,
        args.projects,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let small = run_fleet(&binary, &args, (args.clusters / 10).max(args.projects)).await?;
    small.print();
    let full = run_fleet(&binary, &args, args.clusters).await?;
    full.print();
    println!(
        "  CPU per cluster to Ready, {} vs {} clusters: {:.2}× (1.00×: independent of the fleet; above it, \
         the health checks of clusters already Ready while the rest provision)",
        full.clusters,
        small.clusters,
        full.cpu_ms_per_cluster() / small.cpu_ms_per_cluster()
    );
    println!(
        "  memory per cluster, {} vs {} clusters: {:.2}×; steady state per cluster: {:.2}×",
        full.clusters,
        small.clusters,
        (full.memory_bytes / full.clusters as f64) / (small.memory_bytes / small.clusters as f64),
        (full.steady_cpu_per_second / full.clusters as f64)
            / (small.steady_cpu_per_second / small.clusters as f64)
    );
    Ok(())
}
