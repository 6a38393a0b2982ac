//! `dialtone sim serve`: the sim cloud as a service of its own, so that several Dialtone
//! servers share one simulated cloud as they would share AWS. Over TLS, and only to holders
//! of its token (`sim-token` in its data directory), it serves
//! - the cloud API (`/v1/cloud/regions/{region}/…`): each `Provider` call as one route, with
//!   the provider's own types as bodies and a `CloudError` as every error's body;
//! - its event feed (`GET /v1/cloud/changes`, one JSON `ResourceChange` per line, and an
//!   empty line every 10 s so that a reader can tell a quiet feed from a dead one);
//! - each hosted cluster's connection (`GET /v1/cloud/clusters/{uid}/connection`);
//! - the operator API (`/v1/sim/…`), which each server passes on for its platform admins;
//!
//! and on `--kube-listen` its clusters' Kubernetes APIs. The servers register themselves
//! (`PUT /v1/cloud/servers`): a cluster shown a bearer token asks them who holds it with a
//! TokenReview, as a cluster on a real cloud does, and may call their drift guards.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use dialtone_cloud::{Change, CloudError, CreateRequest, Filter, Provider, ResourceChange};
use dialtone_controllers::Supervisor;
use dialtone_kube::{Authenticator, UserInfo};
use dialtone_sim::Sim;
use dialtone_simkube::SimKube;
use dialtone_simkube::egress::TrustedUrls;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::broadcast;

use super::wire::{CloudInfo, ClusterConnection, ServerRegistration};

/// What `dialtone sim serve` is given.
pub struct SimServiceOptions {
    /// The cloud: where it lives (with the service's certificates and token beside it),
    /// how fast it is, where its clusters listen. Its webhook ranges should include the
    /// Dialtone servers' if their drift guards are at private addresses.
    pub cloud: super::SimBackendOptions,
    /// Where the cloud API listens.
    pub listen: SocketAddr,
    /// More names for the generated certificate.
    pub tls_names: Vec<String>,
}

/// A sim service that serves until its process ends.
pub struct RunningSimService {
    pub addr: SocketAddr,
    pub ca_cert: PathBuf,
    pub token_file: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl RunningSimService {
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// How many feed changes a slow reader may fall behind by before it misses some (its
/// server's clusters are then synced by the periodic resync instead).
const FEED_BACKLOG: usize = 16_384;
/// How often a quiet feed says it is alive.
const HEARTBEAT: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct Service {
    sim: Arc<Sim>,
    kube: Arc<SimKube>,
    feed: broadcast::Sender<ResourceChange>,
    servers: Arc<Reviewers>,
    info: CloudInfo,
}

pub async fn serve(options: SimServiceOptions) -> anyhow::Result<RunningSimService> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let data_dir = options.cloud.data_dir.clone();
    let info = CloudInfo {
        describe_lag_ms: options.cloud.describe_lag.as_millis() as u64,
        time_scale: options.cloud.time_scale,
    };
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let token_file = data_dir.join("sim-token");
    let token = ensure_token(&token_file)?;
    let tls_files =
        dialtone_server::tls::ensure_certificates(&data_dir.join("tls"), &options.tls_names)?;
    let serving = dialtone_server::tls::ServingCertificate::load(&tls_files)?;
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("cannot listen on {}", options.listen))?;
    let addr = listener.local_addr()?;
    let trusted = TrustedUrls::default();
    let servers = Arc::new(Reviewers {
        by_url: RwLock::default(),
        guards: trusted.clone(),
    });
    let tasks = Supervisor::with_injected_panics(Vec::new());
    let (sim, kube) = super::open(options.cloud, servers.clone(), addr, trusted, &tasks).await?;
    let (feed, _) = broadcast::channel(FEED_BACKLOG);
    sim.subscribe(Box::new({
        let feed = feed.clone();
        move |change| {
            let _ = feed.send(change.clone());
        }
    }));
    let service = Service {
        sim: sim.clone(),
        kube,
        feed,
        servers,
        info,
    };
    let router = Router::new()
        .route("/v1/cloud", get(cloud_info))
        .route("/v1/cloud/changes", get(changes))
        .route("/v1/cloud/servers", put(register))
        .route("/v1/cloud/clusters/{uid}/connection", get(connection))
        .route("/v1/cloud/regions/{region}/resources", post(create))
        .route("/v1/cloud/regions/{region}/describe", post(describe))
        .route("/v1/cloud/regions/{region}/resources/{id}", delete(remove))
        .route(
            "/v1/cloud/regions/{region}/resources/{id}/modify",
            post(modify),
        )
        .route("/v1/cloud/regions/{region}/lifetimes", get(lifetimes))
        .with_state(service)
        .nest_service("/v1/sim", super::operator::routes(sim))
        .fallback(|| async {
            cloud_error(CloudError::NotFound {
                id: "that path".into(),
            })
        })
        .layer(from_fn_with_state(Arc::new(token), require_token));
    let task = tokio::spawn(dialtone_server::tls::serve(
        listener,
        dialtone_server::tls::server_config(serving),
        router,
    ));
    Ok(RunningSimService {
        addr,
        ca_cert: tls_files.ca_cert,
        token_file,
        task,
    })
}

/// The service's token: read from `path`, or made (32 random bytes, hex) and written there
/// readable by its owner only.
fn ensure_token(path: &Path) -> anyhow::Result<String> {
    if let Ok(token) = std::fs::read_to_string(path) {
        return Ok(token.trim().to_string());
    }
    let bytes: [u8; 32] = rand::random();
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    std::io::Write::write_all(&mut file, token.as_bytes())?;
    Ok(token)
}

async fn require_token(State(token): State<Arc<String>>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Compared in constant time, so that the answer's timing says nothing of the token.
    let matches = presented.is_some_and(|p| {
        p.len() == token.len()
            && p.bytes()
                .zip(token.bytes())
                .fold(0, |d, (a, b)| d | (a ^ b))
                == 0
    });
    if matches {
        next.run(request).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            "the sim service needs its token (the sim-token file in its data directory)\n",
        )
            .into_response()
    }
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    let body = serde_json::to_vec(value).expect("encodes");
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A `CloudError` with the status a client can read it by.
fn cloud_error(e: CloudError) -> Response {
    let status = match &e {
        CloudError::Throttled => StatusCode::TOO_MANY_REQUESTS,
        CloudError::Timeout => StatusCode::GATEWAY_TIMEOUT,
        CloudError::NotFound { .. } => StatusCode::NOT_FOUND,
        CloudError::Invalid { .. } => StatusCode::BAD_REQUEST,
        CloudError::QuotaExceeded { .. }
        | CloudError::InsufficientCapacity { .. }
        | CloudError::DependencyViolation { .. }
        | CloudError::IdempotentParameterMismatch { .. } => StatusCode::CONFLICT,
        CloudError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
    };
    json(status, &e)
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, CloudError> {
    serde_json::from_slice(body).map_err(|e| CloudError::Invalid {
        message: format!("the body is not what this call takes: {e}"),
    })
}

fn answer<T: Serialize>(status: StatusCode, result: Result<T, CloudError>) -> Response {
    match result {
        Ok(value) => json(status, &value),
        Err(e) => cloud_error(e),
    }
}

async fn cloud_info(State(service): State<Service>) -> Response {
    json(StatusCode::OK, &service.info)
}

async fn create(
    State(service): State<Service>,
    UrlPath(region): UrlPath<String>,
    body: Bytes,
) -> Response {
    let request: CreateRequest = match decode(&body) {
        Ok(request) => request,
        Err(refused) => return cloud_error(refused),
    };
    answer(
        StatusCode::CREATED,
        service.sim.create(&region, request).await,
    )
}

async fn describe(
    State(service): State<Service>,
    UrlPath(region): UrlPath<String>,
    body: Bytes,
) -> Response {
    let filter: Filter = match decode(&body) {
        Ok(filter) => filter,
        Err(refused) => return cloud_error(refused),
    };
    answer(StatusCode::OK, service.sim.describe(&region, &filter).await)
}

async fn remove(
    State(service): State<Service>,
    UrlPath((region, id)): UrlPath<(String, String)>,
) -> Response {
    answer(StatusCode::OK, service.sim.delete(&region, &id).await)
}

async fn modify(
    State(service): State<Service>,
    UrlPath((region, id)): UrlPath<(String, String)>,
    body: Bytes,
) -> Response {
    let change: Change = match decode(&body) {
        Ok(change) => change,
        Err(refused) => return cloud_error(refused),
    };
    answer(
        StatusCode::OK,
        service.sim.modify(&region, &id, change).await,
    )
}

async fn lifetimes(
    State(service): State<Service>,
    UrlPath(region): UrlPath<String>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let since = match query
        .get("endedSince")
        .map(|s| s.parse::<jiff::Timestamp>())
    {
        Some(Ok(since)) => since,
        Some(Err(e)) => {
            return cloud_error(CloudError::Invalid {
                message: format!("endedSince must be an RFC 3339 time: {e}"),
            });
        }
        None => {
            return cloud_error(CloudError::Invalid {
                message: "endedSince is required".into(),
            });
        }
    };
    answer(StatusCode::OK, service.sim.lifetimes(&region, since).await)
}

async fn connection(State(service): State<Service>, UrlPath(uid): UrlPath<String>) -> Response {
    use dialtone_kube::ClusterAccess;
    match service.kube.connection(&uid) {
        Some(connection) => {
            let dialtone_kube::Credential::ClientCertificate { cert_pem, key_pem } =
                connection.credential
            else {
                unreachable!("sim clusters hand out client certificates");
            };
            json(
                StatusCode::OK,
                &ClusterConnection {
                    server: connection.endpoint.server,
                    tls_server_name: connection.endpoint.tls_server_name,
                    ca_pem: connection.endpoint.ca_pem,
                    client_cert_pem: cert_pem,
                    client_key_pem: key_pem,
                },
            )
        }
        None => cloud_error(CloudError::NotFound {
            id: format!("the Kubernetes API of cluster {uid}"),
        }),
    }
}

async fn changes(State(service): State<Service>) -> Response {
    let mut feed = service.feed.subscribe();
    let lines = async_stream::stream! {
        loop {
            match tokio::time::timeout(HEARTBEAT, feed.recv()).await {
                Ok(Ok(change)) => {
                    let mut line = serde_json::to_vec(&change).expect("encodes");
                    line.push(b'\n');
                    yield Ok::<_, std::io::Error>(Bytes::from(line));
                }
                // Behind by more than the backlog: those changes are lost to this reader,
                // whose periodic resync finds what they were.
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
                Ok(Err(broadcast::error::RecvError::Closed)) => return,
                Err(_) => yield Ok(Bytes::from_static(b"\n")),
            }
        }
    };
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response()
}

async fn register(State(service): State<Service>, body: Bytes) -> Response {
    let registration: ServerRegistration = match decode(&body) {
        Ok(registration) => registration,
        Err(refused) => return cloud_error(refused),
    };
    match service.servers.register(registration) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(message) => cloud_error(CloudError::Invalid { message }),
    }
}

/// The Dialtone servers that registered, asked in turn who holds a token a cluster is
/// shown, until one answers; their drift guards are trusted destinations.
struct Reviewers {
    by_url: RwLock<BTreeMap<String, reqwest::Client>>,
    guards: TrustedUrls,
}

impl Reviewers {
    fn register(&self, registration: ServerRegistration) -> Result<(), String> {
        for (field, url) in [
            ("url", &registration.url),
            ("guardUrl", &registration.guard_url),
        ] {
            if reqwest::Url::parse(url)
                .map(|u| u.scheme() != "https")
                .unwrap_or(true)
            {
                return Err(format!("{field} must be an https URL, not `{url}`"));
            }
        }
        let cas = reqwest::Certificate::from_pem_bundle(registration.ca_pem.as_bytes())
            .ok()
            .filter(|cas| !cas.is_empty())
            .ok_or("caPem holds no PEM certificate")?;
        let client = reqwest::Client::builder()
            .tls_certs_only(cas)
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| format!("cannot make a client for {}: {e}", registration.url))?;
        self.guards.add(registration.guard_url);
        self.by_url
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(registration.url, client);
        Ok(())
    }
}

#[async_trait::async_trait]
impl Authenticator for Reviewers {
    async fn authenticate(&self, cluster_uid: &str, token: &str) -> Option<UserInfo> {
        let servers: Vec<(String, reqwest::Client)> = self
            .by_url
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(url, client)| (url.clone(), client.clone()))
            .collect();
        let review = serde_json::json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token},
        });
        for (url, client) in servers {
            let answer = client
                .post(format!(
                    "{url}/v1/authentication/clusters/{cluster_uid}/tokenreviews"
                ))
                .json(&review)
                .send()
                .await;
            let status: serde_json::Value = match answer {
                Ok(response) if response.status().is_success() => {
                    match response.json::<serde_json::Value>().await {
                        Ok(review) => review["status"].clone(),
                        Err(_) => continue,
                    }
                }
                Ok(response) => {
                    tracing::warn!(server = %url, status = %response.status(), "token review refused");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(server = %url, "token review failed: {e}");
                    continue;
                }
            };
            if status["authenticated"] != true {
                return None;
            }
            let groups = status["user"]["groups"]
                .as_array()
                .map(|g| {
                    g.iter()
                        .filter_map(|g| g.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            return Some(UserInfo {
                name: status["user"]["username"].as_str()?.to_string(),
                groups,
            });
        }
        None
    }
}
