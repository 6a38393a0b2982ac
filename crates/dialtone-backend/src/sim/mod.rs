//! The built-in `sim` backend: the simulated cloud, its clusters' Kubernetes APIs (served by
//! this process on one port) and the operator API at `/v1/sim`; or, with `--sim-url`, the
//! same served by a `dialtone sim serve` that several servers share ([`service`],
//! [`remote`]).

pub mod operator;
pub mod remote;
pub mod service;
pub mod wire;

pub use dialtone_simkube::egress::parse_cidrs as parse_webhook_cidrs;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use dialtone_controllers::LifecycleOptions;
use dialtone_controllers::Supervisor;
use dialtone_kube::Authenticator;
use dialtone_server::backend::{Backend, BackendContext, BuildBackend};
use dialtone_sim::Sim;
use dialtone_simkube::SimKube;
use dialtone_simkube::egress::{Egress, TrustedUrls};

/// What `dialtone server --provider sim` (or `dialtone sim serve`) is given.
pub struct SimBackendOptions {
    /// Where the sim keeps its cloud (`sim.redb`) and its clusters (`clusters/`).
    pub data_dir: PathBuf,
    /// The cloud's latencies relative to a real cloud's: 1 realistic, 0 instant.
    pub time_scale: f64,
    /// How long, at most, describe may miss a resource just created.
    pub describe_lag: Duration,
    /// How long a peering request waits for its accepter before it expires.
    pub peering_expiry: Duration,
    /// Where the clusters serve the Kubernetes API.
    pub kube_listen: SocketAddr,
    /// Private or special ranges clusters' webhooks may call (see `dialtone_simkube::egress`).
    pub webhook_allowed_cidrs: Vec<ipnet::IpNet>,
}

/// The sim backend, built when the server is ready for it.
pub fn backend(options: SimBackendOptions) -> BuildBackend {
    Box::new(move |context| Box::pin(build(options, context)))
}

async fn build(options: SimBackendOptions, context: BackendContext) -> anyhow::Result<Backend> {
    let lifecycle = LifecycleOptions::for_time_scale(options.time_scale);
    let (sim, kube) = open(
        options,
        context.authenticator,
        context.server_addr,
        TrustedUrls::new([context.guard_url]),
        &context.tasks,
    )
    .await?;
    Ok(Backend {
        provider: sim.clone(),
        clusters: kube,
        lifecycle,
        operator_routes: Some(operator::routes(sim)),
    })
}

/// The sim cloud and its clusters, as one process runs them (a server its own, or a sim
/// service for several servers): the cloud opened from the data directory, its clusters
/// served on `--kube-listen`, and the tasks that move both on under `tasks`. `own` is the
/// listener clusters' webhooks must never call, `trusted` the control plane's endpoints
/// they may.
pub(crate) async fn open(
    options: SimBackendOptions,
    authenticator: Arc<dyn Authenticator>,
    own: SocketAddr,
    trusted: TrustedUrls,
    tasks: &Arc<Supervisor>,
) -> anyhow::Result<(Arc<Sim>, Arc<SimKube>)> {
    let sim = Arc::new(
        Sim::open(
            &options.data_dir.join("sim.redb"),
            dialtone_sim::SimOptions {
                time_scale: options.time_scale,
                describe_lag: options.describe_lag,
                peering_expiry: options.peering_expiry,
                ..Default::default()
            },
        )
        .context("cannot open the sim cloud")?,
    );
    let listener = Arc::new(
        tokio::net::TcpListener::bind(options.kube_listen)
            .await
            .with_context(|| {
                format!("cannot listen on {} for cluster APIs", options.kube_listen)
            })?,
    );
    let kube = SimKube::new(
        sim.clone(),
        options.data_dir.join("clusters"),
        &listener,
        authenticator,
        Egress {
            allowed: options.webhook_allowed_cidrs,
            own: vec![own],
            trusted,
        },
    )?;
    tasks.spawn("cluster-apis", {
        let kube = kube.clone();
        move |_| kube.clone().accept_loop(listener.clone())
    });
    // The sim's event feed: what becomes available, listed or gone with time.
    tasks.spawn("sim-clock", {
        let sim = sim.clone();
        move |_| sim.clone().run_clock()
    });
    tasks.spawn("cluster-nodes", {
        let kube = kube.clone();
        move |_| kube.clone().sync_loop()
    });
    Ok((sim, kube))
}
