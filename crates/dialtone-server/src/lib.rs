//! The Dialtone API server: an HTTPS REST API whose routes, handlers and OpenAPI document are
//! derived from the kinds of the resource tree; bearer-token authentication; one
//! authorization hook ([`auth::Authorizer`]); the audit log; watch streams; Prometheus
//! metrics. It also starts the controllers.
//!
//! It reaches the store only through [`dialtone_store::registry::Registry`], never encodes
//! objects itself, and holds no state of its own beyond caches it can rebuild.

pub mod access;
pub mod account;
pub mod admission;
pub mod audit;
pub mod auth;
pub mod backend;
pub mod cluster_types;
pub mod error;
pub mod kube_access;
pub mod metrics;
pub mod networks;
pub mod openapi;
pub mod paging;
pub mod regions;
pub mod resources;
pub mod tls;
pub mod token_cache;
pub mod usage;
pub mod versions;
pub mod watch_cache;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Router};
use dialtone_cloud::Provider;
use dialtone_controllers::runtime::{Election, FencedStore, Informer, Role};
use dialtone_controllers::{Lifecycle, LifecycleOptions, Supervisor};
use dialtone_store::registry::{ListOptions, Registry, RegistryError};
use dialtone_store::{EmbeddedStore, EtcdStore, Store};
use dialtone_types::auth::NewToken;
use dialtone_types::kinds::{CLUSTER, ORG};
use dialtone_types::{
    ApiError, Cluster, Connection, Folder, Group, Identity, Namespace, Object, Org, Project,
    Reason, ResourcePath,
};
use jiff::Timestamp;

use crate::admission::Admission;
use crate::auth::{Authorizer, Principal, Verb, enforce_platform};
use crate::backend::{BackendContext, BuildBackend};
use crate::error::HttpResult;
use crate::metrics::{MeteredStore, Metrics};
use crate::networks::NetworkIndex;

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct App {
    pub registry: Registry,
    pub authorizer: Arc<dyn Authorizer>,
    /// Every org's tree, groups and policies, as the authorizer reads them.
    pub access: Arc<dialtone_controllers::access::AccessIndex>,
    pub metrics: Arc<Metrics>,
    pub clock: fn() -> Timestamp,
    /// The cloud clusters are provisioned in.
    pub provider: Arc<dyn Provider>,
    /// Every cluster's network, for planning new ones (see `admission`).
    pub networks: Arc<NetworkIndex>,
    /// How Dialtone reaches each cluster's Kubernetes API (the endpoint users are given).
    pub clusters_access: Arc<dyn dialtone_kube::ClusterAccess>,
    /// The meter: its period and rates, for usage reports.
    pub meter: Arc<dialtone_controllers::metering::Meter>,
    /// The background tasks, for `/readyz?verbose` and `/metrics`.
    pub tasks: Arc<Supervisor>,
    /// Every cluster as last seen, shared with the controllers.
    pub clusters: Arc<Informer>,
    /// Tokens verified before, so that authenticating reads no store.
    pub tokens: Arc<token_cache::VerifiedTokens>,
    /// Seals and opens lists' continue tokens.
    pub continue_tokens: Arc<paging::ContinueTokens>,
    /// Every kind's latest changes, shared by the API's watchers.
    pub watches: Arc<watch_cache::WatchCache>,
    /// The Kubernetes releases clusters can run.
    pub versions: Arc<dialtone_planner::versions::Versions>,
    /// This region's peers: where writes to their objects go.
    pub regions: Arc<regions::Regions>,
}

/// The API of one kind: its routes and its part of the OpenAPI document.
struct KindApi {
    routes: fn() -> Router<App>,
    describe: fn(&mut openapi::Document),
}

impl KindApi {
    const fn of<K: Admission>() -> Self {
        KindApi {
            routes: resources::routes::<K>,
            describe: openapi::Document::describe_kind::<K>,
        }
    }
}

/// Every kind served by the API. Adding a kind to the tree means adding it here.
const KIND_APIS: [KindApi; 8] = [
    KindApi::of::<Org>(),
    KindApi::of::<Folder>(),
    KindApi::of::<Project>(),
    KindApi::of::<Cluster>(),
    KindApi::of::<Namespace>(),
    KindApi::of::<Connection>(),
    KindApi::of::<Identity>(),
    KindApi::of::<Group>(),
];

/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

pub fn openapi_document() -> serde_json::Value {
    let mut document = openapi::Document::new();
    for kind in &KIND_APIS {
        (kind.describe)(&mut document);
    }
    document.finish()
}

async fn serve_openapi() -> Response {
    static DOCUMENT: OnceLock<Vec<u8>> = OnceLock::new();
    let body = DOCUMENT
        .get_or_init(|| serde_json::to_vec_pretty(&openapi_document()).expect("serializable"));
    error::json_response(StatusCode::OK, body.clone())
}

async fn serve_metrics(
    State(app): State<App>,
    Extension(principal): Extension<Principal>,
) -> HttpResult<Response> {
    enforce_platform(&app, &principal, Verb::Get, "metrics")?;
    app.metrics.record_tasks(&app.tasks.statuses());
    app.metrics.record_leadership(app.tasks.leadership());
    app.metrics.record_replication(&app.regions.lags());
    // Reading the statuses brings the controllers' queue depths up to date.
    app.tasks.controllers().statuses();
    app.metrics.record_clusters(&app.clusters);
    // Only the leader's meter runs: a former leader's last figures are no longer current.
    let burning = match app.tasks.leadership().term() {
        Some(_) => app.meter.burn_rates(),
        None => Vec::new(),
    };
    app.metrics.record_burn(&burning);
    Ok((
        [(axum::http::header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        app.metrics.encode(),
    )
        .into_response())
}

/// `GET /version`: what is serving, for clients and operators (needs no token, as
/// Kubernetes' `/version`).
async fn version(State(app): State<App>) -> Response {
    resources::to_json(
        StatusCode::OK,
        &serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "apiVersion": dialtone_types::API_VERSION,
            "region": app.registry.region(),
            "store": app.registry.store().backend(),
            "provider": app.provider.name(),
        }),
    )
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready while the store answers. `?verbose` lists each check as the Kubernetes API server
/// does (`[+]name ok`), the background tasks among them: a task waiting to be restarted is
/// reported, with why it stopped, but does not make the server unready, since the API
/// still serves. So are the controllers: their passes, failures and queues.
async fn readyz(
    State(app): State<App>,
    axum::extract::Query(query): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    let store = app.registry.store().revision().await;
    let ready = store.is_ok();
    let mut lines = vec![match &store {
        Ok(_) => "[+]store ok".to_string(),
        Err(e) => format!("[-]store failed: {e}"),
    }];
    lines.push(match app.tasks.leadership().role() {
        Role::Leading(term) => format!(
            "[+]leader this server ({}, since {})",
            term.holder.identity, term.holder.since
        ),
        Role::Following(Some(leader)) => format!(
            "[+]leader {} (since {}); this server stands by",
            leader.identity, leader.since
        ),
        Role::Following(None) => "[+]leader none yet; this server is campaigning".to_string(),
    });
    for task in app.tasks.statuses() {
        let restarts = match &task.last_failure {
            Some((at, why)) => format!(" ({} restarts; last at {at}: {why})", task.restarts),
            None => String::new(),
        };
        let state = match (task.running, task.standby) {
            (true, false) => "ok",
            (true, true) => "standby",
            (false, _) => "restarting",
        };
        let sign = if task.running { '+' } else { '-' };
        lines.push(format!("[{sign}]task {} {state}{restarts}", task.name));
    }
    for controller in app.tasks.controllers().statuses() {
        let depth = controller.depth;
        let mut line = format!(
            "[+]controller {} ok ({} passes, {} failed; queue: {} ready, {} running, {} waiting",
            controller.name,
            controller.passes,
            controller.failures,
            depth.ready,
            depth.running,
            depth.waiting
        );
        if let Some((at, key, why)) = &controller.last_failure {
            line.push_str(&format!("; last failure at {at} on {key}: {why}"));
        }
        line.push(')');
        lines.push(line);
    }
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = if query.contains_key("verbose") {
        let verdict = if ready { "passed" } else { "failed" };
        format!("{}\nreadyz check {verdict}\n", lines.join("\n"))
    } else if ready {
        "ok\n".to_string()
    } else {
        format!("{}\n", lines[0])
    };
    (code, body).into_response()
}

async fn no_such_path() -> HttpResult<Response> {
    Err(ApiError::new(Reason::NotFound, "no such path; see /openapi.json").into())
}

/// Which listener a router serves.
pub enum Listener {
    /// The API, for users: writes homed in another region are forwarded there.
    Public,
    /// The region listener, for peers: their replication routes, and the writes they
    /// forward, made here only if this is the object's home.
    Peers(Router<App>),
}

/// The whole HTTP API, with the backend's operator routes if it has any.
pub fn router(app: App, operator_routes: Option<Router>, listener: Listener) -> Router {
    let mut api = Router::new();
    if let Some(routes) = operator_routes {
        api = api.merge(
            Router::new()
                .nest_service(&format!("/v1/{}", app.provider.name()), routes)
                .layer(from_fn_with_state(
                    app.clone(),
                    backend::require_platform_admin,
                )),
        );
    }
    for kind in &KIND_APIS {
        api = api.merge((kind.routes)());
    }
    let api = api
        .merge(access::policy_routes::<Org>())
        .merge(access::policy_routes::<Folder>())
        .merge(access::policy_routes::<Project>())
        .merge(access::policy_routes::<Cluster>())
        .merge(access::policy_routes::<Namespace>())
        .route("/v1/orgs/{org}/explain", get(access::explain))
        .route("/v1/orgs/{org}/whatif", post(access::what_if))
        .route(
            "/v1/orgs/{org}/identities/{identity}/tokens",
            post(account::create_token),
        )
        .route("/v1/orgs/{org}/tokens", get(account::list_tokens))
        .route("/v1/orgs/{org}/tokens/{id}", delete(account::revoke_token))
        .route("/v1/orgs/{org}/audit", get(audit::list_audit))
        .route("/v1/orgs/{org}/usage", get(usage::usage))
        .route(
            "/v1/orgs/{org}/billing",
            get(usage::get_billing).put(usage::put_billing),
        )
        .route("/v1/orgs/{org}/invoices/{month}", get(usage::invoice))
        .route("/v1/retiredorgs", get(audit::list_retired_orgs))
        .route(
            "/v1/retiredorgs/{uid}/audit",
            get(audit::list_retired_audit),
        )
        .route(
            "/v1/retiredorgs/{uid}/tokens",
            get(audit::list_retired_tokens),
        )
        .route("/v1/whoami", get(account::whoami))
        .route("/v1/regions", get(regions::list_regions))
        .route("/v1/regions/digests", get(regions::region_digests))
        .route(
            &format!(
                "{}/credentials",
                resources::route_paths(&dialtone_types::kinds::CLUSTER).1
            ),
            post(kube_access::create_credentials),
        )
        .route("/v1/clustertypes", get(cluster_types::list_cluster_types))
        .route("/v1/versions", get(versions::list_versions))
        .route(
            "/v1/clustertypes/{type}",
            get(cluster_types::get_cluster_type),
        )
        .route("/openapi.json", get(serve_openapi))
        .route("/metrics", get(serve_metrics))
        .fallback(no_such_path)
        .layer(from_fn_with_state(app.clone(), access::read_your_writes))
        .layer(from_fn_with_state(app.clone(), audit::record_mutations))
        .layer(from_fn_with_state(
            app.clone(),
            auth::require_authentication,
        ));
    // Outside authentication and audit: the home region does both for a forwarded write.
    let (api, peer_routes) = match listener {
        Listener::Public => (
            api.layer(from_fn_with_state(app.clone(), regions::forward_writes)),
            Router::new(),
        ),
        Listener::Peers(routes) => (
            api.layer(from_fn_with_state(app.clone(), regions::refuse_misdirected)),
            routes,
        ),
    };
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/version", get(version))
        .route("/v1/admission/rbac-guard", post(access::rbac_guard))
        .route(
            "/v1/authentication/clusters/{uid}/tokenreviews",
            post(kube_access::token_review),
        )
        .merge(api)
        .merge(peer_routes)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(from_fn_with_state(app.clone(), metrics::record_requests))
        .layer(from_fn(error::normalize_errors))
        .with_state(app)
}

/// Where the server keeps its state.
#[derive(Clone, Debug)]
pub enum StoreLocation {
    /// The embedded store, in this file.
    Embedded(PathBuf),
    /// An etcd cluster at these `host:port` endpoints.
    Etcd(Vec<String>),
}

impl StoreLocation {
    /// `embedded` (in `data_dir`) or `etcd://host:port,host:port`.
    pub fn parse(spec: &str, data_dir: &std::path::Path) -> anyhow::Result<Self> {
        if spec == "embedded" {
            return Ok(StoreLocation::Embedded(data_dir.join("store.redb")));
        }
        EtcdStore::parse_url(spec)
            .map(StoreLocation::Etcd)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "--store must be `embedded` or `etcd://host:port[,host:port…]`, not `{spec}`"
                )
            })
    }

    pub async fn open(&self) -> anyhow::Result<Arc<dyn Store>> {
        Ok(match self {
            StoreLocation::Embedded(path) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("cannot create {}", dir.display()))?;
                }
                Arc::new(EmbeddedStore::open(path)?)
            }
            StoreLocation::Etcd(endpoints) => Arc::new(EtcdStore::connect(endpoints).await?),
        })
    }
}

pub struct ServerOptions {
    pub listen: SocketAddr,
    pub store: StoreLocation,
    pub data_dir: PathBuf,
    /// The region this control plane owns; recorded on every object it creates.
    pub region: String,
    /// Certificate files; generated under `data_dir/tls` when absent.
    pub tls: Option<tls::TlsFiles>,
    /// More names for the generated server certificate.
    pub tls_names: Vec<String>,
    /// On an empty store: the org and the platform-admin identity to create.
    pub bootstrap_org: String,
    pub bootstrap_identity: String,
    /// Mint a fresh admin token on every start (dev mode), not only on the first.
    pub mint_admin_token: bool,
    /// How often old store revisions are compacted away.
    pub compaction_interval: Duration,
    /// The cloud (`--provider`), built once the server listens.
    pub backend: BuildBackend,
    /// Background tasks to make panic once, to show they are restarted (tests only).
    pub fault_panic_tasks: Vec<String>,
    /// The operator's version catalogue, read again when it changes; the built-in one
    /// otherwise.
    pub kubernetes_versions: Option<PathBuf>,
    /// How usage is metered.
    pub metering: MeteringOptions,
    /// How this server takes part in leader election.
    pub leadership: LeadershipOptions,
    /// The other regions, if this control plane has several.
    pub regions: Option<regions::RegionsOptions>,
    /// How often a settled cluster whose changes the cloud's feed and its own watches tell
    /// of is looked at anyway (`--cluster-resync-seconds`); the cloud's default otherwise.
    pub cluster_resync: Option<Duration>,
}

/// How a server takes part in its region's leader election (`--server-id`,
/// `--leader-lease-seconds`).
#[derive(Clone, Debug)]
pub struct LeadershipOptions {
    /// How this server names itself to the others; host, listen address and process id
    /// when `None`.
    pub identity: Option<String>,
    /// How long a dead leader keeps its leadership: the longest handover.
    pub lease: Duration,
}

impl Default for LeadershipOptions {
    fn default() -> Self {
        LeadershipOptions {
            identity: None,
            lease: Duration::from_secs(5),
        }
    }
}

impl LeadershipOptions {
    fn identity(&self, listen: SocketAddr) -> String {
        self.identity.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "localhost".into());
            format!("{host} {listen} pid {}", std::process::id())
        })
    }
}

/// How usage is metered (`--metering-period`, `--metering-interval`).
#[derive(Clone, Copy, Debug)]
pub struct MeteringOptions {
    /// Seconds per usage record; fixed for a store once its first record is cut.
    pub period_seconds: i64,
    /// How often the meter reads the provider's instance lifetimes.
    pub interval: Duration,
}

impl Default for MeteringOptions {
    fn default() -> Self {
        MeteringOptions {
            period_seconds: dialtone_controllers::metering::DEFAULT_PERIOD_SECONDS,
            interval: Duration::from_secs(60),
        }
    }
}

pub struct RunningServer {
    pub addr: SocketAddr,
    pub ca_cert: PathBuf,
    pub store_backend: &'static str,
    /// Set when the server minted a token for the bootstrap admin.
    pub admin_token: Option<NewToken>,
    task: tokio::task::JoinHandle<()>,
    election: Arc<Election>,
}

impl RunningServer {
    /// Serves until the process ends.
    pub async fn wait(&mut self) {
        let _ = (&mut self.task).await;
    }

    /// Before a graceful stop: gives up the leadership, if this server holds it, so that
    /// another server takes over at once rather than when the lease expires.
    pub async fn resign(&self) {
        self.election.resign().await;
    }
}

/// The address clusters call Dialtone at: the listening one, with a wildcard made loopback
/// (the sim's clusters run in this process).
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip().is_unspecified() {
        true => SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port()),
        false => addr,
    }
}

fn now() -> Timestamp {
    Timestamp::now()
}

/// Creates the bootstrap org and platform admin if the store holds no org yet; returns a
/// token for the admin when one is due.
async fn bootstrap(
    registry: &Registry,
    options: &ServerOptions,
) -> anyhow::Result<Option<NewToken>> {
    let bound = registry.bind_records_to_uids().await?;
    if bound > 0 {
        tracing::info!(records = bound, "filed tokens and audit records by uid");
    }
    let everyone = |_: &ResourcePath| true;
    let orgs = registry
        .list_raw(
            &ORG,
            None,
            &ListOptions {
                limit: 1,
                ..Default::default()
            },
            &everyone,
        )
        .await?;
    let first_start = orgs.items.is_empty();
    if first_start {
        let org = Object::new(
            &options.bootstrap_org,
            Org {
                display_name: "Bootstrap org".into(),
                ..Default::default()
            },
        );
        match registry.create(None, org).await {
            Ok(_) | Err(RegistryError::AlreadyExists(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let admin = Object::new(
            &options.bootstrap_identity,
            Identity {
                display_name: "Platform admin".into(),
                platform_admin: true,
            },
        );
        match registry
            .create(Some(&ResourcePath::org(&options.bootstrap_org)), admin)
            .await
        {
            Ok(_) | Err(RegistryError::AlreadyExists(_)) => {}
            Err(e) => return Err(e.into()),
        }
        // The first admin administers the first org, inside its clusters too.
        let org = ResourcePath::org(&options.bootstrap_org);
        let owner = dialtone_types::policy::PolicyBinding {
            role: "org.admin".into(),
            subjects: vec![format!("user:{}", options.bootstrap_identity)],
        };
        registry.set_policy(&org, &[owner], "").await?;
    }
    if !(first_start || options.mint_admin_token) {
        return Ok(None);
    }
    let admin = ResourcePath::org(&options.bootstrap_org).child(
        &dialtone_types::kinds::IDENTITY,
        &options.bootstrap_identity,
    );
    let token = auth::mint_token(registry, &admin, "bootstrap admin", None, None, now())
        .await
        .map_err(|e| anyhow::anyhow!("cannot mint the admin token: {}", e.0))?;
    Ok(Some(token))
}

/// Opens the store, bootstraps it, binds the listener and starts serving and the controllers.
pub async fn start(options: ServerOptions) -> anyhow::Result<RunningServer> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let raw_store = options.store.open().await?;
    // Every server serves the API; the controllers run on the one that wins the election.
    let (election, leadership) = Election::new(
        raw_store.clone(),
        "controllers",
        options.leadership.identity(options.listen),
        options.leadership.lease,
    );
    let tasks = Supervisor::new(options.fault_panic_tasks.clone(), leadership.clone());
    tasks.spawn("leader-election", {
        let election = election.clone();
        move |_| election.clone().run()
    });
    let metrics = Arc::new(Metrics::new(tasks.controllers()));
    let store: Arc<dyn Store> = Arc::new(MeteredStore::new(raw_store, metrics.clone()));
    let replicated = |registry: Registry| match options.regions {
        Some(_) => registry.replicated(),
        None => registry,
    };
    let registry = replicated(Registry::new(store.clone(), &options.region, now));
    // What the leader's controllers write through: refused once its term has ended.
    let fenced: Arc<dyn Store> = Arc::new(FencedStore::new(store.clone(), leadership));
    let leader_registry = replicated(Registry::new(fenced.clone(), &options.region, now));
    let admin_token = bootstrap(&registry, &options).await?;
    let regions = match &options.regions {
        Some(peers) => regions::Regions::new(&options.region, peers)?,
        None => regions::Regions::alone(&options.region),
    };
    let tls_files = match &options.tls {
        Some(files) => files.clone(),
        None => tls::ensure_certificates(&options.data_dir.join("tls"), &options.tls_names)?,
    };
    let serving = tls::ServingCertificate::load(&tls_files)?;
    let tls_config = tls::server_config(serving.clone());
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("cannot listen on {}", options.listen))?;
    let addr = listener.local_addr()?;
    // One informer of clusters, shared by admission's network index and the lifecycle.
    let clusters = Informer::load(&registry, &CLUSTER).await?;
    let networks = NetworkIndex::follow(&clusters);
    let tokens = Arc::new(token_cache::VerifiedTokens::default());
    tasks.spawn("verified-tokens", {
        let (tokens, registry) = (tokens.clone(), registry.clone());
        move |_| tokens.clone().follow(registry.clone())
    });
    metrics.follow_clusters(&clusters);
    let guard = dialtone_kube::access::GuardEndpoint {
        url: format!("https://{}/v1/admission/rbac-guard", reachable(addr)),
        ca_pem: std::fs::read_to_string(&tls_files.ca_cert)
            .with_context(|| format!("cannot read {}", tls_files.ca_cert.display()))?,
    };
    let build_backend = options.backend;
    let backend = build_backend(BackendContext {
        authenticator: Arc::new(kube_access::TokenAuthenticator {
            registry: registry.clone(),
            tokens: tokens.clone(),
            clock: now,
        }),
        tasks: tasks.clone(),
        server_addr: addr,
        guard_url: guard.url.clone(),
        server_url: format!("https://{}", reachable(addr)),
        server_ca_pem: guard.ca_pem.clone(),
    })
    .await?;
    let provider = backend.provider.clone();
    // One client per cluster, shared by the controllers that call into clusters.
    let kube = Arc::new(dialtone_kube::Clients::new(backend.clusters.clone()));
    let access = dialtone_controllers::access::AccessIndex::load(&registry).await?;
    tasks.spawn("access-index", {
        let (access, registry) = (access.clone(), registry.clone());
        move |run| access.clone().follow(registry.clone(), run)
    });
    let catalogue = match &options.kubernetes_versions {
        Some(path) => versions::read(path)?,
        None => dialtone_planner::versions::Catalogue::built_in().clone(),
    };
    let kubernetes_versions = Arc::new(dialtone_planner::versions::Versions::new(catalogue));
    if let Some(path) = options.kubernetes_versions.clone() {
        tasks.spawn("version-catalogue", {
            let versions = kubernetes_versions.clone();
            move |_| versions::follow(versions.clone(), path.clone())
        });
    }
    let watches = watch_cache::WatchCache::new();
    watches.follow(registry.clone(), &tasks);
    let meter = Arc::new(dialtone_controllers::metering::Meter::new(
        leader_registry.clone(),
        provider.clone(),
        now,
        options.metering.period_seconds,
        options.metering.interval,
    ));
    meter
        .claim_period(store.as_ref())
        .await
        .map_err(anyhow::Error::msg)?;
    let app = App {
        meter: meter.clone(),
        registry: registry.clone(),
        authorizer: Arc::new(access::PolicyAuthorizer {
            index: access.clone(),
        }),
        access: access.clone(),
        metrics,
        clock: now,
        provider: provider.clone(),
        networks,
        clusters_access: backend.clusters.clone(),
        tasks: tasks.clone(),
        clusters: clusters.clone(),
        tokens,
        continue_tokens: Arc::new(paging::ContinueTokens::load(&registry).await?),
        watches,
        versions: kubernetes_versions.clone(),
        regions: regions.clone(),
    };
    let lifecycle = Lifecycle::new(
        leader_registry.clone(),
        provider.clone(),
        LifecycleOptions {
            resync: options.cluster_resync.unwrap_or(backend.lifecycle.resync),
            ..backend.lifecycle
        },
        now,
    )
    .with_kube(kube.clone())
    .with_versions(kubernetes_versions);
    let pod_meter = Arc::new(dialtone_controllers::metering::pods::PodMeter {
        registry: leader_registry.clone(),
        clients: kube.clone(),
        clusters: clusters.clone(),
        clock: now,
        every: options.metering.interval,
    });
    let projection = Arc::new(dialtone_controllers::Projection {
        registry: leader_registry.clone(),
        index: access,
        clients: kube,
        guard: guard.clone(),
        clock: now,
    });
    // Every change of policy wakes the clusters it reaches, and the drift guard refuses
    // changes to what the projection owns: the resync only catches what slipped past both
    // (a guard that was down), every ten minutes as Flux's default interval.
    dialtone_controllers::spawn_projection_controller(&tasks, projection, Duration::from_secs(600));
    dialtone_controllers::spawn_cluster_controller(
        &tasks,
        &clusters,
        Arc::new(lifecycle),
        16,
        // Each pass asks for its next (a health check, or a followed cluster's resync):
        // this resync only catches a wake that was lost.
        Duration::from_secs(1800),
    );
    let connections = Informer::load(&registry, &dialtone_types::connection::CONNECTION).await?;
    dialtone_controllers::spawn_connection_controller(
        &tasks,
        &connections,
        Arc::new(dialtone_controllers::Connections {
            registry: leader_registry.clone(),
            provider: provider.clone(),
            clock: now,
            poll: Duration::from_secs(30),
        }),
        Duration::from_secs(600),
    );
    // Started once every handler is subscribed, so that none misses a change.
    tasks.spawn("cluster-informer", move |run| clusters.clone().follow(run));
    tasks.spawn("connection-informer", move |run| {
        connections.clone().follow(run)
    });
    tasks.spawn_leading("record-sweeper", {
        let registry = leader_registry.clone();
        move |_| {
            dialtone_controllers::run_record_sweeper(
                registry.clone(),
                Duration::from_secs(600),
                now,
            )
        }
    });
    tasks.spawn_leading("meter", {
        let meter = meter.clone();
        move |_| meter.clone().run()
    });
    tasks.spawn_leading("pod-meter", move |_| pod_meter.clone().run());
    dialtone_controllers::spawn_deletion_controller(
        &tasks,
        leader_registry,
        Duration::from_secs(300),
    );
    let compaction_interval = options.compaction_interval;
    tasks.spawn_leading("compactor", {
        let store = fenced.clone();
        move |_| dialtone_controllers::run_compactor(store.clone(), compaction_interval)
    });
    let generated_in = options
        .tls
        .is_none()
        .then(|| (options.data_dir.join("tls"), options.tls_names.clone()));
    tasks.spawn("certificate-renewal", move |_| {
        tls::keep_renewed(serving.clone(), generated_in.clone())
    });
    if let Some(options) = &options.regions {
        tasks.spawn("replication-progress", {
            let (regions, store) = (regions.clone(), store.clone());
            move |_| regions.clone().follow_progress(store.clone())
        });
        for peer in options.peers.keys() {
            // Named once per peer, for the life of the process.
            let name: &'static str = Box::leak(format!("replication-from-{peer}").into_boxed_str());
            tasks.spawn_leading(name, {
                let (regions, store, peer) = (regions.clone(), fenced.clone(), peer.clone());
                move |_| regions::pull(regions.clone(), peer.clone(), store.clone())
            });
        }
        let certificate = regions
            .certificate()
            .context("a region with peers has a certificate")?
            .clone();
        tasks.spawn("region-certificate-reload", {
            let certificate = certificate.clone();
            move |_| tls::keep_renewed(certificate.clone(), None)
        });
        let peers = tokio::net::TcpListener::bind(options.listen)
            .await
            .with_context(|| format!("cannot listen for peers on {}", options.listen))?;
        let routes = regions::peer_routes(store.clone(), regions.clone());
        tokio::spawn(tls::serve_with(
            peers,
            regions::listener_config(&options.tls, certificate.clone())?,
            router(app.clone(), None, Listener::Peers(routes)),
            |connection, router| match regions::peer_region(connection) {
                Some(peer) => router.layer(axum::Extension(peer)),
                None => router,
            },
        ));
    }
    let task = tokio::spawn(tls::serve(
        listener,
        tls_config,
        router(app, backend.operator_routes, Listener::Public),
    ));
    Ok(RunningServer {
        addr,
        ca_cert: tls_files.ca_cert,
        store_backend: store.backend(),
        admin_token,
        task,
        election,
    })
}
