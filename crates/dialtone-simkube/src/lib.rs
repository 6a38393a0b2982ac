//! The Kubernetes API of sim clusters. The sim cloud's instances are the clusters' nodes;
//! this crate makes each cluster whose API load balancer and control plane are up answer the
//! Kubernetes API over HTTPS, as a cluster of a real cloud would.
//!
//! One listener serves every cluster: the TLS server name the client sends (the address of
//! the cluster's load balancer, which kubeconfigs name in `tls-server-name`) picks the
//! cluster, and the handshake presents that cluster's own certificate, signed by the
//! cluster's own CA. Clients prove who they are with a client certificate signed by that CA
//! (Dialtone's own calls, through [`dialtone_kube`]) or a bearer token, which the embedding
//! server checks through [`Authenticator`], as a webhook token authenticator would.

mod apply;
pub mod audit;
pub mod cluster;
pub mod custom;
mod disruption;
pub mod egress;
pub mod events;
mod logs;
mod metrics;
mod openapi;
mod openapi_v2;
mod patch;
mod pki;
pub mod pod_security;
mod proto;
pub use dialtone_kube::quantity;
pub mod selectors;
mod services;
pub mod status;
pub mod store;
mod table;
pub mod webhooks;
pub mod workloads;

pub use dialtone_kubeapi::{decode, defaults, rbac, resources};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::http::{Request, Response};
use dialtone_cloud::tags::{ROLE_CONTROL_PLANE, TAG_CLUSTER, TAG_PART, TAG_ROLE};
use dialtone_cloud::{Arch, CloudResource, Provider, ResourceSpec, ResourceState};
use dialtone_sim::Sim;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

pub use cluster::ClusterApi;
pub use rbac::UserInfo;
pub use workloads::NodeFacts;

pub use dialtone_kube::Authenticator;

pub use dialtone_kube::Endpoint;

struct Hosted {
    api: Arc<ClusterApi>,
    tls: Arc<rustls::ServerConfig>,
    endpoint: Endpoint,
    /// Dialtone's own client certificate for the cluster.
    control_plane: dialtone_kube::Credential,
    controllers: tokio::task::JoinHandle<()>,
}

impl Drop for Hosted {
    fn drop(&mut self) {
        self.controllers.abort();
    }
}

/// A cluster's objects kept in the sim's own state file, beside its instances.
struct SimJournal {
    sim: Arc<Sim>,
    uid: String,
}

impl store::Journal for SimJournal {
    fn record(&self, changes: Vec<(String, Option<Vec<u8>>)>) -> store::Durable {
        self.sim.record_cluster_objects(&self.uid, changes)
    }
}

pub struct SimKube {
    sim: Arc<Sim>,
    dir: PathBuf,
    addr: SocketAddr,
    authenticator: Arc<dyn Authenticator>,
    caller: webhooks::Caller,
    /// Cluster uid → what serves it.
    clusters: RwLock<HashMap<String, Arc<Hosted>>>,
    /// Clusters whose resources the sim's feed says changed since their last sync.
    changed: std::sync::Mutex<std::collections::HashSet<String>>,
    changed_notify: tokio::sync::Notify,
}

/// How often every cluster is brought in line with the sim, in case a change was missed
/// (the sim's feed tells of each change as it happens).
const FULL_SYNC: Duration = Duration::from_secs(30);

/// `ip-10-0-16-5.us-east-1.compute.internal`, as EC2 names nodes.
fn node_name(address: &str, region: &str) -> String {
    format!("ip-{}.{region}.compute.internal", address.replace('.', "-"))
}

/// Whether an instance runs its cluster's control plane, as its role tag says. Instances
/// launched before the role tag existed say it only in their part's name (`cp-0`).
fn is_control_plane(tags: &dialtone_cloud::Tags) -> bool {
    match tags.get(TAG_ROLE) {
        Some(role) => role == ROLE_CONTROL_PLANE,
        None => tags.get(TAG_PART).is_some_and(|p| p.starts_with("cp-")),
    }
}

impl SimKube {
    /// The clusters of `sim`, to be served on `listener` by [`SimKube::accept_loop`] and
    /// kept in line with the sim by [`SimKube::sync_loop`] (the embedding server runs both
    /// under its supervisor); each cluster's CA is kept under `dir`.
    pub fn new(
        sim: Arc<Sim>,
        dir: PathBuf,
        listener: &TcpListener,
        authenticator: Arc<dyn Authenticator>,
        mut egress: egress::Egress,
    ) -> std::io::Result<Arc<SimKube>> {
        let addr = listener.local_addr()?;
        egress.own.push(addr);
        let kube = Arc::new(SimKube {
            sim,
            dir,
            addr,
            authenticator,
            caller: webhooks::Caller::new(egress),
            clusters: RwLock::default(),
            changed: Default::default(),
            changed_notify: Default::default(),
        });
        let this = Arc::downgrade(&kube);
        kube.sim.subscribe(Box::new(move |change| {
            if let (Some(this), Some(uid)) = (this.upgrade(), change.tags.get(TAG_CLUSTER)) {
                this.changed.lock().expect("lock").insert(uid.clone());
                this.changed_notify.notify_one();
            }
        }));
        Ok(kube)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the cluster answers, once its API is up.
    pub fn endpoint(&self, cluster_uid: &str) -> Option<Endpoint> {
        self.hosted(cluster_uid).map(|h| h.endpoint.clone())
    }

    /// The cluster's API, for the embedding server's own checks.
    pub fn cluster(&self, cluster_uid: &str) -> Option<Arc<ClusterApi>> {
        self.hosted(cluster_uid).map(|h| h.api.clone())
    }

    fn hosted(&self, uid: &str) -> Option<Arc<Hosted>> {
        self.clusters.read().expect("lock").get(uid).cloned()
    }

    fn by_server_name(&self, name: &str) -> Option<Arc<Hosted>> {
        self.clusters
            .read()
            .expect("lock")
            .values()
            .find(|h| h.endpoint.tls_server_name == name)
            .cloned()
    }

    /// Hosts, drops and updates clusters as the sim's resources change, forever: each
    /// cluster the sim's feed names as it changes, and every cluster now and then.
    pub async fn sync_loop(self: Arc<Self>) {
        let mut full = tokio::time::interval(FULL_SYNC);
        full.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = full.tick() => {
                    self.changed.lock().expect("lock").clear();
                    self.sync();
                }
                () = self.changed_notify.notified() => {
                    let changed = std::mem::take(&mut *self.changed.lock().expect("lock"));
                    for uid in changed {
                        self.sync_one(&uid);
                    }
                }
            }
        }
    }

    /// Brings one cluster in line with its resources in the sim.
    fn sync_one(&self, uid: &str) {
        let resources = self.sim.tagged(TAG_CLUSTER, uid);
        if resources.is_empty() {
            self.clusters.write().expect("lock").remove(uid);
            if let Err(e) = self.sim.forget_cluster_objects(uid) {
                tracing::warn!(cluster = %uid, error = %e, "cannot forget a gone cluster's objects");
            }
        } else if !self.sync_cluster(uid, &resources) {
            self.clusters.write().expect("lock").remove(uid);
        }
    }

    /// Hosts the clusters whose API is up, drops those whose API is gone, and brings every
    /// hosted cluster's nodes in line with its instances.
    pub fn sync(&self) {
        let mut by_cluster: HashMap<String, Vec<CloudResource>> = HashMap::new();
        for resource in self.sim.resources() {
            if let Some(uid) = resource.tags.get(TAG_CLUSTER) {
                by_cluster.entry(uid.clone()).or_default().push(resource);
            }
        }
        let mut live = Vec::new();
        for (uid, resources) in &by_cluster {
            if self.sync_cluster(uid, resources) {
                live.push(uid.clone());
            }
        }
        self.clusters
            .write()
            .expect("lock")
            .retain(|uid, _| live.contains(uid));
        // A cluster is gone once the cloud holds nothing of it: so are its objects. (One
        // whose API is only down, its control plane being replaced, keeps them.)
        for uid in self.sim.clusters_with_objects() {
            if !by_cluster.contains_key(&uid)
                && let Err(e) = self.sim.forget_cluster_objects(&uid)
            {
                tracing::warn!(cluster = %uid, error = %e, "cannot forget a gone cluster's objects");
            }
        }
    }

    /// Hosts the cluster if its API is up and brings its nodes in line with its instances;
    /// whether its API is up.
    fn sync_cluster(&self, uid: &str, resources: &[CloudResource]) -> bool {
        let api_up = resources.iter().any(|r| {
            matches!(r.spec, ResourceSpec::LoadBalancer { .. })
                && r.state == ResourceState::Available
        });
        let control_plane: Vec<&CloudResource> = resources
            .iter()
            .filter(|r| is_control_plane(&r.tags) && r.state == ResourceState::Available)
            .collect();
        if !api_up || control_plane.is_empty() {
            return false;
        }
        // Upstream's skew policy: the cluster is as old as its oldest API server.
        let version = control_plane
            .iter()
            .map(|r| version_of(r))
            .min_by_key(|v| release_order(v))
            .unwrap_or_default();
        let hosted = match self.hosted(uid) {
            Some(hosted) => hosted,
            None => match self.host(uid, resources, &version) {
                Ok(hosted) => hosted,
                Err(e) => {
                    tracing::warn!(cluster = %uid, error = %e, "cannot serve the cluster's API");
                    // Up, but not served: kept, to be tried again.
                    return true;
                }
            },
        };
        hosted.api.set_version(&version);
        // The API server's ranges, Pod Security default and audit policy are its node's user
        // data, read once it runs.
        if hosted.api.network().is_none()
            && let Some(bootstrap) = control_plane.iter().find_map(|r| self.sim.user_data(&r.id))
        {
            hosted.api.set_network(cluster::ClusterNetwork {
                service_cidr: bootstrap.service_cidr,
                pod_cidr: bootstrap.pod_cidr,
            });
            hosted.api.set_pod_security(bootstrap.pod_security);
            hosted.api.set_audit(audit::AuditLog::open(
                self.dir.join(uid).join("audit"),
                dialtone_cloud::bootstrap::audit_policy(bootstrap.audit),
                bootstrap.audit_log_retention_days,
            ));
        }
        if let Some(network) = hosted.api.network() {
            let api_servers: Vec<String> =
                control_plane.iter().map(|r| r.address.clone()).collect();
            services::ensure_cluster_services(&hosted.api, network, &api_servers);
        }
        let facts = self.node_facts(resources);
        workloads::sync_nodes(&hosted.api, &facts);
        hosted.api.wake.notify_one();
        true
    }

    fn node_facts(&self, resources: &[CloudResource]) -> Vec<NodeFacts> {
        let catalog = self.sim.catalog();
        resources
            .iter()
            .filter_map(|r| {
                let ResourceSpec::Instance {
                    instance_type,
                    zone,
                    ..
                } = &r.spec
                else {
                    return None;
                };
                let healthy = match &r.state {
                    ResourceState::Available => true,
                    ResourceState::Impaired { .. } => false,
                    // Not booted yet, or gone: no node.
                    _ => return None,
                };
                let facts = catalog.get(instance_type)?;
                Some(NodeFacts {
                    version: version_of(r),
                    name: node_name(&r.address, &r.region),
                    instance_id: r.id.clone(),
                    control_plane: is_control_plane(&r.tags),
                    region: r.region.clone(),
                    zone: zone.clone(),
                    instance_type: instance_type.clone(),
                    arch: facts
                        .archs
                        .first()
                        .unwrap_or(&Arch::X86_64)
                        .label()
                        .to_string(),
                    vcpus: facts.vcpus,
                    memory_mib: facts.memory_mib,
                    max_pods: facts.max_pods,
                    address: r.address.clone(),
                    healthy,
                })
            })
            .collect()
    }

    fn host(
        &self,
        uid: &str,
        resources: &[CloudResource],
        version: &str,
    ) -> Result<Arc<Hosted>, String> {
        let lb = resources
            .iter()
            .find(|r| matches!(r.spec, ResourceSpec::LoadBalancer { .. }))
            .expect("checked above");
        let pki = pki::ClusterPki::load_or_create(&self.dir.join(uid), &lb.address)?;
        let (cert_pem, key_pem) =
            pki.client_certificate(dialtone_kube::CONTROL_PLANE_USER, &["system:masters"])?;
        let journal = Arc::new(SimJournal {
            sim: self.sim.clone(),
            uid: uid.to_string(),
        });
        let stored = self.sim.cluster_objects(uid).map_err(|e| e.to_string())?;
        let api = Arc::new(ClusterApi::open(uid, version, journal, stored)?);
        let controllers = tokio::spawn({
            let api = api.clone();
            async move {
                // Passes repeat at once while they change something (a rollout settles in
                // one wake-up), but at most this many in a row before waiting a tick.
                const SETTLING_PASSES: u32 = 64;
                let mut settling = 0;
                let mut expired_at = tokio::time::Instant::now();
                loop {
                    if settling == 0 || settling >= SETTLING_PASSES {
                        settling = 0;
                        tokio::select! {
                            _ = api.wake.notified() => {}
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    } else {
                        tokio::task::yield_now().await;
                    }
                    if expired_at.elapsed() >= events::EXPIRY_PERIOD {
                        events::expire(&api);
                        expired_at = tokio::time::Instant::now();
                    }
                    // A pass that panics is logged and the next one runs a second later:
                    // the cluster's controllers never stop for good.
                    let pass = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        workloads::reconcile(&api)
                    }));
                    match pass {
                        Ok(true) => settling += 1,
                        Ok(false) => settling = 0,
                        Err(_) => {
                            settling = 0;
                            tracing::error!(cluster = %api.uid, "a workload controller pass panicked");
                        }
                    }
                }
            }
        });
        let hosted = Arc::new(Hosted {
            api,
            tls: Arc::new(pki.server_config()?),
            endpoint: Endpoint {
                server: format!("https://{}", self.addr),
                tls_server_name: lb.address.clone(),
                ca_pem: pki.ca_pem.clone(),
            },
            control_plane: dialtone_kube::Credential::ClientCertificate { cert_pem, key_pem },
            controllers,
        });
        self.clusters
            .write()
            .expect("lock")
            .insert(uid.to_string(), hosted.clone());
        Ok(hosted)
    }

    /// Serves every hosted cluster's API on `listener`, forever.
    pub async fn accept_loop(self: Arc<Self>, listener: Arc<TcpListener>) {
        loop {
            let (tcp, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: wait for some to close.
                    tracing::warn!(error = %e, "cluster API accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let host = self.clone();
            tokio::spawn(async move {
                let handshake = async {
                    let acceptor = tokio_rustls::LazyConfigAcceptor::new(
                        rustls::server::Acceptor::default(),
                        tcp,
                    );
                    let start = acceptor.await.ok()?;
                    let server_name = start.client_hello().server_name().unwrap_or("").to_string();
                    // An unknown name gets no certificate: the handshake fails, as with a
                    // load balancer that does not exist. Names are random, so this tells a
                    // scanner nothing.
                    let hosted = host.by_server_name(&server_name)?;
                    let tls = start.into_stream(hosted.tls.clone()).await.ok()?;
                    Some((hosted, tls))
                };
                let Ok(Some((hosted, tls))) =
                    tokio::time::timeout(dialtone_https::SLOW_CLIENT_LIMIT, handshake).await
                else {
                    return;
                };
                // The handshake verified any certificate against the cluster's CA.
                let certificate_user = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .and_then(|leaf| pki::certificate_user(leaf));
                let service = hyper::service::service_fn(move |request| {
                    let (host, hosted, user) =
                        (host.clone(), hosted.clone(), certificate_user.clone());
                    async move {
                        Ok::<_, std::convert::Infallible>(host.serve(&hosted, user, request).await)
                    }
                });
                let _ = dialtone_https::http_server()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    }

    async fn serve(
        &self,
        hosted: &Hosted,
        certificate_user: Option<UserInfo>,
        request: Request<hyper::body::Incoming>,
    ) -> Response<axum::body::Body> {
        let (parts, body) = request.into_parts();
        let token = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let user = match (certificate_user, token) {
            (Some(user), _) => user,
            (None, Some(token)) => match self
                .authenticator
                .authenticate(&hosted.api.uid, token)
                .await
            {
                Some(user) => user,
                None => {
                    return axum::response::IntoResponse::into_response(
                        status::KubeError::unauthorized(),
                    );
                }
            },
            (None, None) => UserInfo {
                name: "system:anonymous".into(),
                groups: vec!["system:unauthenticated".into()],
            },
        };
        let body = http_body_util::Limited::new(body, 3 * 1024 * 1024).collect();
        let body = match tokio::time::timeout(dialtone_https::SLOW_CLIENT_LIMIT, body).await {
            Ok(Ok(collected)) => collected.to_bytes(),
            Err(_) => {
                return axum::response::IntoResponse::into_response(status::KubeError::new(
                    http::StatusCode::REQUEST_TIMEOUT,
                    "Timeout",
                    format!(
                        "the request body did not arrive within {} s",
                        dialtone_https::SLOW_CLIENT_LIMIT.as_secs()
                    ),
                ));
            }
            Ok(Err(_)) => {
                return axum::response::IntoResponse::into_response(status::KubeError::new(
                    http::StatusCode::PAYLOAD_TOO_LARGE,
                    "RequestEntityTooLarge",
                    "the request body is larger than 3 MiB",
                ));
            }
        };
        hosted
            .api
            .handle(
                user,
                parts.method,
                parts.uri.path(),
                parts.uri.query(),
                &parts.headers,
                body,
                &self.caller,
            )
            .await
    }
}

impl dialtone_kube::ClusterAccess for SimKube {
    fn connection(&self, cluster_uid: &str) -> Option<dialtone_kube::Connection> {
        let hosted = self.hosted(cluster_uid)?;
        Some(dialtone_kube::Connection {
            endpoint: hosted.endpoint.clone(),
            credential: hosted.control_plane.clone(),
        })
    }
}

/// The Kubernetes version an instance's image carries (the newest for an image that says
/// none).
fn version_of(instance: &CloudResource) -> String {
    instance.spec.node_version().unwrap_or("1.34").to_string()
}

/// A release's place in upstream's order: `1.35` (a node image that names its minor only)
/// before `1.35.0`.
fn release_order(version: &str) -> (u32, i64) {
    let mut parts = version.split('.').skip(1);
    let minor = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    let patch = parts.next().and_then(|p| p.parse().ok()).unwrap_or(-1);
    (minor, patch)
}

/// The `v1.35.2` form the API and the kubelet report a release in; a minor alone reads as
/// its first patch.
pub(crate) fn git_version(version: &str) -> String {
    match version.split('.').count() {
        2 => format!("v{version}.0"),
        _ => format!("v{version}"),
    }
}
