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
use dialtone_server::backend::{Backend, BackendContext, BuildBackend};
use dialtone_sim::Sim;
use dialtone_simkube::SimKube;
use dialtone_simkube::egress::Egress;

/// What `dialtone server --provider sim` is given.
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
        context.authenticator,
        Egress {
            allowed: options.webhook_allowed_cidrs,
            own: vec![context.server_addr],
            trusted: dialtone_simkube::egress::TrustedUrls::new([context.guard_url]),
        },
    )?;
    context.tasks.spawn("cluster-apis", {
        let kube = kube.clone();
        move |_| kube.clone().accept_loop(listener.clone())
    });
    // The sim's event feed: what becomes available, listed or gone with time.
    context.tasks.spawn("sim-clock", {
        let sim = sim.clone();
        move |_| sim.clone().run_clock()
    });
    context.tasks.spawn("cluster-nodes", {
        let kube = kube.clone();
        move |_| kube.clone().sync_loop()
    });
    Ok(Backend {
        provider: sim.clone(),
        clusters: kube,
        lifecycle: LifecycleOptions::for_time_scale(options.time_scale),
        operator_routes: Some(operator::routes(sim)),
    })
}
