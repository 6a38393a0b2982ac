//! `dialtone server --sim-url`: the sim cloud of a `dialtone sim serve` service, shared by
//! every server that names it, as AWS is shared. [`RemoteSim`] is the `Provider` over the
//! service's cloud API, follows its event feed for the lifecycle's triggers, and hands out
//! its clusters' connections; the server's `/v1/sim/…` is passed on to the service.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use dialtone_cloud::{
    Change, ChangeHandler, CloudError, CloudResource, CloudResult, CreateRequest, Filter,
    InstanceCatalog, InstanceLifetime, Provider, REGIONS, Region, ResourceChange,
};
use dialtone_controllers::LifecycleOptions;
use dialtone_controllers::runtime::backoff::Backoff;
use dialtone_kube::{ClusterAccess, Connection};
use dialtone_server::backend::{Backend, BackendContext, BuildBackend};
use dialtone_server::error::with_causes;
use futures::StreamExt;
use jiff::Timestamp;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::wire::{CloudInfo, ClusterConnection, ServerRegistration};

/// What `dialtone server --sim-url` is given.
pub struct RemoteSimOptions {
    /// `https://host:port` of `dialtone sim serve`.
    pub url: String,
    /// The CA that signed the service's certificate (`tls/ca.pem` in its data directory).
    pub ca: PathBuf,
    /// The service's token (`sim-token` in its data directory).
    pub token_file: PathBuf,
}

/// The backend over a sim service, built when the server is ready for it.
pub fn backend(options: RemoteSimOptions) -> BuildBackend {
    Box::new(move |context| Box::pin(build(options, context)))
}

/// How long a cluster's connection is used before it is asked for again (the service
/// issues new certificates when it hosts a cluster again, after a restart).
const CONNECTION_FRESH: Duration = Duration::from_secs(60);
/// How soon a cluster the service does not host yet is asked about again.
const NOT_HOSTED_FRESH: Duration = Duration::from_secs(1);
/// A feed silent for this long is taken as dead (the service says something every 10 s).
const FEED_SILENCE: Duration = Duration::from_secs(30);
/// How often a server registers again, in case the service restarted and forgot it.
const REGISTER_EVERY: Duration = Duration::from_secs(30);

async fn build(options: RemoteSimOptions, context: BackendContext) -> anyhow::Result<Backend> {
    let remote = Arc::new(RemoteSim::connect(&options).await?);
    let registration = ServerRegistration {
        url: context.server_url.clone(),
        ca_pem: context.server_ca_pem.clone(),
        guard_url: context.guard_url.clone(),
    };
    remote
        .register(&registration)
        .await
        .with_context(|| format!("the sim service at {} refused this server", options.url))?;
    context.tasks.spawn("sim-registration", {
        let remote = remote.clone();
        move |_| {
            let (remote, registration) = (remote.clone(), registration.clone());
            async move {
                loop {
                    tokio::time::sleep(REGISTER_EVERY).await;
                    if let Err(e) = remote.register(&registration).await {
                        tracing::warn!("cannot register with the sim service: {e}");
                    }
                }
            }
        }
    });
    context.tasks.spawn("sim-changes", {
        let remote = remote.clone();
        move |_| remote.clone().follow_changes()
    });
    Ok(Backend {
        provider: remote.clone(),
        clusters: Arc::new(RemoteClusters(remote.clone())),
        lifecycle: LifecycleOptions::for_time_scale(remote.info.time_scale),
        operator_routes: Some(Router::new().fallback(pass_on).with_state(remote)),
    })
}

/// A cluster's connection as the service last gave it, and whether it is being asked for.
#[derive(Default)]
struct Known {
    connection: Option<Connection>,
    /// When the service last answered; `None` before its first answer.
    answered: Option<Instant>,
    asking: bool,
}

/// The sim cloud of a sim service.
pub struct RemoteSim {
    http: reqwest::Client,
    base: String,
    token: String,
    info: CloudInfo,
    handlers: RwLock<Vec<ChangeHandler>>,
    connections: Mutex<HashMap<String, Known>>,
}

fn unavailable(message: impl std::fmt::Display) -> CloudError {
    CloudError::Unavailable {
        message: message.to_string(),
    }
}

impl RemoteSim {
    /// Connects to the service and reads what it is.
    pub async fn connect(options: &RemoteSimOptions) -> anyhow::Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca_pem = std::fs::read(&options.ca)
            .with_context(|| format!("cannot read --sim-ca {}", options.ca.display()))?;
        let token = std::fs::read_to_string(&options.token_file).with_context(|| {
            format!(
                "cannot read --sim-token-file {}",
                options.token_file.display()
            )
        })?;
        let http = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&ca_pem)
                .context("--sim-ca is not a PEM certificate")?])
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        let mut remote = RemoteSim {
            http,
            base: options.url.trim_end_matches('/').to_string(),
            token: token.trim().to_string(),
            info: CloudInfo {
                describe_lag_ms: 0,
                time_scale: 1.0,
            },
            handlers: RwLock::default(),
            connections: Mutex::default(),
        };
        remote.info = remote
            .call(reqwest::Method::GET, "/v1/cloud", None::<&()>)
            .await
            .with_context(|| format!("the sim service at {} does not answer", options.url))?;
        Ok(remote)
    }

    async fn register(&self, registration: &ServerRegistration) -> CloudResult<()> {
        let response = self
            .request(reqwest::Method::PUT, "/v1/cloud/servers")
            .json(registration)
            .send()
            .await
            .map_err(unavailable)?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(read_error(response).await)
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    /// One call of the cloud API: the answer, or the service's `CloudError`.
    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> CloudResult<T> {
        let mut request = self.request(method, path).timeout(Duration::from_secs(30));
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| {
            if e.is_connect() {
                unavailable(format!("cannot reach the sim service: {}", with_causes(&e)))
            } else {
                // Sent, but its answer was lost: it may have been applied.
                CloudError::Timeout
            }
        })?;
        if !response.status().is_success() {
            return Err(read_error(response).await);
        }
        response
            .json()
            .await
            .map_err(|e| unavailable(format!("the sim service's answer is unreadable: {e}")))
    }

    /// Reads the feed and tells every subscriber of each change, for as long as it lasts;
    /// then reads it again, backing off while the service is away.
    async fn follow_changes(self: Arc<Self>) {
        let backoff = Backoff {
            base: Duration::from_millis(200),
            cap: Duration::from_secs(10),
        };
        let mut failures = 0;
        loop {
            match self.read_feed().await {
                Ok(()) => failures = 0,
                Err(e) => {
                    failures += 1;
                    tracing::warn!("the sim service's feed: {e}");
                }
            }
            tokio::time::sleep(backoff.delay(failures.max(1))).await;
        }
    }

    async fn read_feed(&self) -> Result<(), String> {
        let response = self
            .request(reqwest::Method::GET, "/v1/cloud/changes")
            .send()
            .await
            .map_err(|e| with_causes(&e))?;
        if !response.status().is_success() {
            return Err(read_error(response).await.to_string());
        }
        let mut body = response.bytes_stream();
        let mut pending = Vec::new();
        loop {
            let chunk = match tokio::time::timeout(FEED_SILENCE, body.next()).await {
                Err(_) => return Err(format!("silent for {FEED_SILENCE:?}")),
                Ok(None) => return Ok(()),
                Ok(Some(chunk)) => chunk.map_err(|e| with_causes(&e))?,
            };
            pending.extend_from_slice(&chunk);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                if line.len() <= 1 {
                    continue; // the heartbeat
                }
                match serde_json::from_slice::<ResourceChange>(&line) {
                    Ok(change) => {
                        for handler in self
                            .handlers
                            .read()
                            .unwrap_or_else(|e| e.into_inner())
                            .iter()
                        {
                            handler(&change);
                        }
                    }
                    Err(e) => tracing::warn!("an unreadable change in the sim's feed: {e}"),
                }
            }
        }
    }

    /// Asks the service for a cluster's connection and keeps the answer.
    async fn ask_connection(self: Arc<Self>, uid: String) {
        let asked: CloudResult<ClusterConnection> = self
            .call(
                reqwest::Method::GET,
                &format!("/v1/cloud/clusters/{uid}/connection"),
                None::<&()>,
            )
            .await;
        let answer = match asked {
            Ok(wire) => Some(Some(Connection::from(wire))),
            Err(CloudError::NotFound { .. }) => Some(None),
            Err(e) => {
                tracing::debug!(cluster = %uid, "cannot ask for the cluster's connection: {e}");
                None
            }
        };
        let mut connections = self.lock_connections();
        let known = connections.entry(uid).or_default();
        known.asking = false;
        if let Some(connection) = answer {
            known.connection = connection;
            known.answered = Some(Instant::now());
        }
    }

    fn lock_connections(&self) -> std::sync::MutexGuard<'_, HashMap<String, Known>> {
        self.connections.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The service's `CloudError`, or what went wrong if the answer is not one.
async fn read_error(response: reqwest::Response) -> CloudError {
    let status = response.status();
    let body = response.bytes().await.unwrap_or_default();
    serde_json::from_slice(&body).unwrap_or_else(|_| {
        unavailable(format!(
            "the sim service answered {status}: {}",
            String::from_utf8_lossy(&body).trim()
        ))
    })
}

#[async_trait::async_trait]
impl Provider for RemoteSim {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn regions(&self) -> &'static [Region] {
        REGIONS
    }

    fn catalog(&self) -> &InstanceCatalog {
        InstanceCatalog::builtin()
    }

    async fn create(&self, region: &str, request: CreateRequest) -> CloudResult<CloudResource> {
        let path = format!("/v1/cloud/regions/{region}/resources");
        self.call(reqwest::Method::POST, &path, Some(&request))
            .await
    }

    async fn describe(&self, region: &str, filter: &Filter) -> CloudResult<Vec<CloudResource>> {
        let path = format!("/v1/cloud/regions/{region}/describe");
        self.call(reqwest::Method::POST, &path, Some(filter)).await
    }

    async fn delete(&self, region: &str, id: &str) -> CloudResult<()> {
        let path = format!("/v1/cloud/regions/{region}/resources/{id}");
        self.call(reqwest::Method::DELETE, &path, None::<&()>).await
    }

    async fn modify(&self, region: &str, id: &str, change: Change) -> CloudResult<()> {
        let path = format!("/v1/cloud/regions/{region}/resources/{id}/modify");
        self.call(reqwest::Method::POST, &path, Some(&change)).await
    }

    async fn lifetimes(
        &self,
        region: &str,
        ended_since: Timestamp,
    ) -> CloudResult<Vec<InstanceLifetime>> {
        let path = format!("/v1/cloud/regions/{region}/lifetimes?endedSince={ended_since}");
        self.call(reqwest::Method::GET, &path, None::<&()>).await
    }

    fn consistency_window(&self) -> Duration {
        self.info.describe_lag()
    }

    fn subscribe(&self, handler: ChangeHandler) -> bool {
        self.handlers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(handler);
        true
    }
}

/// The connections of the service's clusters.
pub struct RemoteClusters(pub Arc<RemoteSim>);

impl ClusterAccess for RemoteClusters {
    /// What the service last said, asked again in the background once it is old; `None`
    /// until the first answer, which callers take as an API not up yet and try again.
    fn connection(&self, cluster_uid: &str) -> Option<Connection> {
        let remote = &self.0;
        let mut connections = remote.lock_connections();
        let known = connections.entry(cluster_uid.to_string()).or_default();
        let freshness = match known.connection {
            Some(_) => CONNECTION_FRESH,
            None => NOT_HOSTED_FRESH,
        };
        let stale = known.answered.is_none_or(|at| at.elapsed() >= freshness);
        if stale
            && !known.asking
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            known.asking = true;
            runtime.spawn(remote.clone().ask_connection(cluster_uid.to_string()));
        }
        known.connection.clone()
    }
}

/// `/v1/sim/…` on the server, passed on to the service as it came (the server has let only
/// platform admins this far).
async fn pass_on(State(remote): State<Arc<RemoteSim>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let body: Bytes = match axum::body::to_bytes(body, 1 << 20).await {
        Ok(body) => body,
        Err(_) => {
            return (StatusCode::PAYLOAD_TOO_LARGE, "the body is over 1 MiB\n").into_response();
        }
    };
    let mut forwarded = remote
        .request(parts.method, &format!("/v1/sim{path}"))
        .body(body);
    if let Some(content_type) = parts.headers.get(header::CONTENT_TYPE) {
        forwarded = forwarded.header(header::CONTENT_TYPE, content_type);
    }
    let response = match forwarded.send().await {
        Ok(response) => response,
        Err(e) => {
            return dialtone_server::error::HttpError::from(dialtone_types::ApiError::new(
                dialtone_types::Reason::ServiceUnavailable,
                format!("the sim service does not answer: {e}"),
            ))
            .into_response();
        }
    };
    let status = response.status();
    let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
    let body = response.bytes().await.unwrap_or_default();
    let mut answer = (status, Body::from(body)).into_response();
    if let Some(content_type) = content_type {
        answer
            .headers_mut()
            .insert(header::CONTENT_TYPE, content_type);
    }
    answer
}
