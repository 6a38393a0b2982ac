//! Regions: a control plane per region, each over its own store, that serve one API.
//!
//! Every object has a home region (`metadata.homeRegion`): a cluster and everything under it
//! the region named by its `spec.region`; every other object its org's home, the region the
//! org was created in. Only the home region writes an object. Any region answers any
//! request: reads from its own replica, writes by forwarding them to the home region
//! ([`forward_writes`]), which authenticates and authorizes them itself.
//!
//! Regions reach each other on a listener of their own (`--region-listen`), over TLS with
//! certificates both ways, signed by one region CA (`dialtone regions certificates`); a
//! peer is known by its certificate's common name. Each region pulls every peer's changes
//! ([`pull`], on its leader) as a stream of batches in the peer's revision order and applies
//! them with `dialtone_store::replication`, recording how far it got in the same
//! transaction, so it resumes where it stopped; a peer whose history no longer reaches that
//! far sends a snapshot instead. A heartbeat every second says how far the stream has
//! seen; the time of the last one is how stale this region's copy of the peer's objects is
//! (the `Dialtone-Replication-Lag` header, `dialtone regions status`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, Query, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use dialtone_controllers::backoff::Backoff;
use dialtone_store::replication::{Applied, Batch, Digest, Replication, Snapshot};
use dialtone_store::{Revision, Store, StoreError};
use dialtone_types::kinds::CLUSTER;
use dialtone_types::{ApiError, List, ListMeta, Reason, ResourcePath};
use futures::StreamExt;
use jiff::Timestamp;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

use crate::App;
use crate::auth::{Principal, Target, Verb, enforce};
use crate::error::HttpResult;

/// The header that says how stale this region's copy of each peer's objects is.
pub const LAG_HEADER: &str = "dialtone-replication-lag";
/// The header a forwarded write's answer carries: the region that made it.
pub const SERVED_BY_HEADER: &str = "dialtone-served-by-region";

/// Headers of one connection, not of the request: never passed on.
const HOP_BY_HOP: [&str; 9] = [
    "host",
    "content-length",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// How often a change stream says how far it has seen.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long a forwarded request may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a peer has to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Retries of a broken stream, from a second up to half a minute.
const RECONNECT: Backoff = Backoff {
    base: Duration::from_secs(1),
    cap: Duration::from_secs(30),
};

/// The certificate a region presents to its peers, its key, and the CA that signed every
/// region's.
#[derive(Clone, Debug)]
pub struct RegionTlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `--peer`, `--region-listen` and the region certificates.
#[derive(Clone, Debug)]
pub struct RegionsOptions {
    /// Each other region's name and the URL of its region listener.
    pub peers: BTreeMap<String, String>,
    /// Where this region's listener for its peers listens.
    pub listen: SocketAddr,
    pub tls: RegionTlsFiles,
}

/// The peers of this region, and how far it has replicated each. Without peers (a single
/// region) every object is homed here and nothing is forwarded.
pub struct Regions {
    region: String,
    peers: BTreeMap<String, Peer>,
    /// What each peer's stream last confirmed, as the store holds it (refreshed every
    /// heartbeat, on every server of the region).
    seen: RwLock<BTreeMap<String, Applied>>,
}

struct Peer {
    url: String,
    http: reqwest::Client,
}

/// One region, as `GET /v1/regions` shows it.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegionStatus {
    pub name: String,
    /// Its region listener (empty for this region).
    pub url: String,
    /// Whether it is the region that answered.
    pub this: bool,
    /// Whether it answered just now (always, for this region).
    pub reachable: bool,
    /// The last time its change stream confirmed that this region held all of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caught_up_at: Option<Timestamp>,
    /// Seconds since then: how stale this region's copy of its objects may be.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<f64>,
    /// How far into its store's history this region has applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied_revision: Option<Revision>,
    /// Why it could not be reached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /v1/regions/digests`: what every region holds of every home's keys, per org.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Convergence {
    /// Each reachable region's digests.
    pub regions: BTreeMap<String, Vec<Digest>>,
    /// Regions that could not be asked, with why.
    pub unreachable: BTreeMap<String, String>,
    /// Whether every region asked holds the same of every (home, org).
    pub converged: bool,
    /// The (home, org) pairs on which they differ.
    pub differing: Vec<String>,
}

/// One line of a change stream.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
enum Line {
    /// Changes of one revision.
    Batch(Batch),
    /// The stream has sent everything owned up to this revision.
    Heartbeat { revision: Revision },
}

/// The common name of the first certificate in `pem`.
fn common_name(der: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    cert.subject()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()
        .map(String::from)
}

/// The region CA's roots.
fn roots(files: &RegionTlsFiles) -> anyhow::Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&files.ca)
        .with_context(|| format!("cannot read --region-ca {}", files.ca.display()))?
    {
        roots.add(cert?)?;
    }
    Ok(roots)
}

fn identity(
    files: &RegionTlsFiles,
) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .with_context(|| format!("cannot read --region-cert {}", files.cert.display()))?
        .collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("cannot read --region-key {}", files.key.display()))?;
    Ok((certs, key))
}

/// The region listener's TLS: its certificate, and only clients with one from the region CA.
pub fn listener_config(files: &RegionTlsFiles) -> anyhow::Result<rustls::ServerConfig> {
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots(files)?))
        .build()
        .context("cannot verify peers with --region-ca")?;
    let (certs, key) = identity(files)?;
    let mut config = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .context("--region-cert and --region-key do not go together")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The region a client certificate names: the peer a request on the region listener is from.
#[derive(Clone, Debug)]
pub struct PeerRegion(pub String);

/// What the region listener knows of a connection: its client's region.
pub fn peer_region(connection: &rustls::ServerConnection) -> Option<PeerRegion> {
    connection
        .peer_certificates()?
        .first()
        .and_then(common_name)
        .map(PeerRegion)
}

impl Regions {
    /// A region alone: nothing is forwarded or replicated.
    pub fn alone(region: &str) -> Arc<Regions> {
        Arc::new(Regions {
            region: region.to_string(),
            peers: BTreeMap::new(),
            seen: RwLock::default(),
        })
    }

    /// This region and its peers, reached with the region certificate.
    pub fn new(region: &str, options: &RegionsOptions) -> anyhow::Result<Arc<Regions>> {
        let (certs, key) = identity(&options.tls)?;
        let tls = rustls::ClientConfig::builder()
            .with_root_certificates(roots(&options.tls)?)
            .with_client_auth_cert(certs, key)
            .context("--region-cert and --region-key do not go together")?;
        let mut peers = BTreeMap::new();
        for (name, url) in &options.peers {
            anyhow::ensure!(
                name != region,
                "--peer {name}=…: that is this region (--region {region})"
            );
            anyhow::ensure!(
                url.starts_with("https://"),
                "--peer {name}={url}: the URL must start with https://"
            );
            let http = reqwest::Client::builder()
                .use_preconfigured_tls(tls.clone())
                .connect_timeout(CONNECT_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .build()?;
            let url = url.trim_end_matches('/').to_string();
            peers.insert(name.clone(), Peer { url, http });
        }
        Ok(Arc::new(Regions {
            region: region.to_string(),
            peers,
            seen: RwLock::default(),
        }))
    }

    /// This region's name.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The names of every region, this one among them.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.peers.keys().cloned().collect();
        names.push(self.region.clone());
        names.sort();
        names
    }

    /// Where this region starts looking for a free range in an org's pool: its place among
    /// the regions in name order.
    pub fn pool_share(&self) -> dialtone_planner::PoolShare {
        let names = self.names();
        dialtone_planner::PoolShare {
            index: names.iter().position(|n| n == &self.region).unwrap_or(0),
            regions: names.len(),
        }
    }

    /// The region a cluster in cloud region `cloud_region` is homed in: the Dialtone region
    /// of that name; with no peers, this one, whatever the cloud region.
    pub fn home_of_cluster(&self, cloud_region: &str) -> Result<String, ApiError> {
        if self.peers.is_empty() || self.region == cloud_region {
            return Ok(self.region.clone());
        }
        if self.peers.contains_key(cloud_region) {
            return Ok(cloud_region.to_string());
        }
        Err(ApiError::new(
            Reason::Invalid,
            format!(
                "spec.region: no region of this control plane serves {cloud_region:?}; valid values: {}",
                self.names().join(", ")
            ),
        ))
    }

    fn lag_of(&self, applied: &Applied) -> f64 {
        let since = Timestamp::now().duration_since(applied.at);
        since.as_secs_f64().max(0.0)
    }

    /// Each peer's lag in seconds, for those replicated at least once.
    pub fn lags(&self) -> Vec<(String, f64)> {
        let seen = self.seen.read().unwrap_or_else(|e| e.into_inner());
        seen.iter()
            .map(|(name, applied)| (name.clone(), self.lag_of(applied)))
            .collect()
    }

    /// The header value that says how stale each peer's objects are here.
    fn lag_header(&self) -> Option<HeaderValue> {
        if self.peers.is_empty() {
            return None;
        }
        let seen = self.seen.read().unwrap_or_else(|e| e.into_inner());
        let parts: Vec<String> = self
            .peers
            .keys()
            .map(|name| match seen.get(name) {
                Some(applied) => format!("{name}={:.1}s", self.lag_of(applied)),
                None => format!("{name}=never"),
            })
            .collect();
        HeaderValue::from_str(&parts.join(", ")).ok()
    }

    /// A supervised task on every server: reads how far each peer was replicated, once a
    /// heartbeat.
    pub async fn follow_progress(self: Arc<Self>, store: Arc<dyn Store>) {
        let replication = Replication::new(store, &self.region);
        loop {
            for name in self.peers.keys() {
                match replication.applied(name).await {
                    Ok(Some(applied)) => {
                        let mut seen = self.seen.write().unwrap_or_else(|e| e.into_inner());
                        seen.insert(name.clone(), applied);
                    }
                    Ok(None) => {}
                    Err(e) => tracing::debug!(error = %e, "cannot read replication progress"),
                }
            }
            tokio::time::sleep(HEARTBEAT).await;
        }
    }

    /// Each region, as this one sees it now.
    pub async fn statuses(&self) -> Vec<RegionStatus> {
        let mut out = vec![RegionStatus {
            name: self.region.clone(),
            url: String::new(),
            this: true,
            reachable: true,
            caught_up_at: None,
            lag_seconds: None,
            applied_revision: None,
            error: None,
        }];
        let probes = self.peers.iter().map(|(name, peer)| async move {
            let answer = peer
                .http
                .get(format!("{}/v1/replication/ping", peer.url))
                .timeout(CONNECT_TIMEOUT)
                .send()
                .await;
            let error = match answer {
                Ok(r) if r.status().is_success() => None,
                Ok(r) => Some(format!("it answered {}", r.status())),
                Err(e) => Some(reqwest_error(&e)),
            };
            (name.clone(), peer.url.clone(), error)
        });
        let probed = futures::future::join_all(probes).await;
        let seen = self.seen.read().unwrap_or_else(|e| e.into_inner()).clone();
        for (name, url, error) in probed {
            let applied = seen.get(&name);
            out.push(RegionStatus {
                this: false,
                reachable: error.is_none(),
                caught_up_at: applied.map(|a| a.at),
                lag_seconds: applied.map(|a| self.lag_of(a)),
                applied_revision: applied.map(|a| a.revision),
                error,
                name,
                url,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Every region's digests, compared.
    pub async fn convergence(&self, store: Arc<dyn Store>) -> Result<Convergence, StoreError> {
        let mut regions = BTreeMap::new();
        regions.insert(
            self.region.clone(),
            Replication::new(store, &self.region).digests().await?,
        );
        let mut unreachable = BTreeMap::new();
        for (name, peer) in &self.peers {
            let answer = async {
                let response = peer
                    .http
                    .get(format!("{}/v1/replication/digests", peer.url))
                    .timeout(FORWARD_TIMEOUT)
                    .send()
                    .await
                    .map_err(|e| reqwest_error(&e))?;
                if !response.status().is_success() {
                    return Err(format!("it answered {}", response.status()));
                }
                response
                    .json::<Vec<Digest>>()
                    .await
                    .map_err(|e| e.to_string())
            };
            match answer.await {
                Ok(digests) => {
                    regions.insert(name.clone(), digests);
                }
                Err(e) => {
                    unreachable.insert(name.clone(), e);
                }
            }
        }
        let mut by_pair: BTreeMap<(String, String), Vec<Option<&str>>> = BTreeMap::new();
        for digests in regions.values() {
            for d in digests {
                by_pair.entry((d.home.clone(), d.org.clone())).or_default();
            }
        }
        for ((home, org), seen) in by_pair.iter_mut() {
            for digests in regions.values() {
                seen.push(
                    digests
                        .iter()
                        .find(|d| &d.home == home && &d.org == org)
                        .map(|d| d.sha256.as_str()),
                );
            }
        }
        let differing: Vec<String> = by_pair
            .iter()
            .filter(|(_, seen)| seen.windows(2).any(|w| w[0] != w[1]))
            .map(|((home, org), _)| format!("{org} (homed in {home})"))
            .collect();
        Ok(Convergence {
            converged: differing.is_empty() && unreachable.is_empty(),
            differing,
            unreachable,
            regions,
        })
    }
}

fn reqwest_error(e: &reqwest::Error) -> String {
    use std::error::Error;
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        message = format!("{message}: {cause}");
        source = cause.source();
    }
    message
}

/// Pulls `peer`'s changes into this region's store for as long as this server leads:
/// resumes after what the store says was applied, starts from a snapshot when there is
/// nothing to resume or the peer's history no longer reaches that far, and reconnects with
/// backoff when the stream breaks.
pub async fn pull(regions: Arc<Regions>, peer_name: String, store: Arc<dyn Store>) {
    let Some(peer) = regions.peers.get(&peer_name) else {
        return;
    };
    let replication = Replication::new(store, &regions.region);
    let mut failures = 0;
    loop {
        match pull_once(&replication, peer, &peer_name).await {
            Ok(()) => failures = 0,
            Err(e) => {
                failures += 1;
                tracing::info!(peer = %peer_name, error = %e, "replication stream ended; reconnecting");
            }
        }
        tokio::time::sleep(RECONNECT.delay(failures)).await;
    }
}

async fn pull_once(replication: &Replication, peer: &Peer, name: &str) -> anyhow::Result<()> {
    let mut position = match replication.applied(name).await? {
        Some(applied) => applied.revision,
        None => restore(replication, peer, name).await?,
    };
    let mut response = peer
        .http
        .get(format!(
            "{}/v1/replication/changes?from={}",
            peer.url,
            position + 1
        ))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!(reqwest_error(&e)))?;
    if response.status() == StatusCode::GONE {
        restore(replication, peer, name).await?;
        return Ok(());
    }
    anyhow::ensure!(
        response.status().is_success(),
        "{name} answered {}",
        response.status()
    );
    let mut pending = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            match serde_json::from_slice::<Line>(&line)? {
                Line::Batch(batch) => {
                    replication.apply(name, &batch).await?;
                    position = batch.revision;
                }
                // Everything up to here is applied: worth recording once a heartbeat.
                Line::Heartbeat { revision } => {
                    position = position.max(revision);
                    replication.caught_up(name, position).await?;
                }
            }
        }
    }
    Ok(())
}

/// Replaces what this region holds of `name`'s objects with its snapshot.
async fn restore(replication: &Replication, peer: &Peer, name: &str) -> anyhow::Result<Revision> {
    let snapshot: Snapshot = peer
        .http
        .get(format!("{}/v1/replication/snapshot", peer.url))
        .timeout(FORWARD_TIMEOUT * 4)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!(reqwest_error(&e)))?
        .error_for_status()?
        .json()
        .await?;
    replication.restore(name, &snapshot).await?;
    tracing::info!(peer = %name, revision = snapshot.revision, keys = snapshot.changes.len(), "replicated a snapshot");
    Ok(snapshot.revision)
}

#[derive(Deserialize)]
struct From {
    from: Revision,
}

/// The routes only peers reach, on the region listener: only for a client whose region
/// certificate names a peer.
pub fn peer_routes<S: Clone + Send + Sync + 'static>(
    store: Arc<dyn Store>,
    regions: Arc<Regions>,
) -> Router<S> {
    let replication = Replication::new(store, &regions.region);
    Router::new()
        .route("/v1/replication/ping", get(|| async { "ok\n" }))
        .route("/v1/replication/changes", get(changes))
        .route("/v1/replication/snapshot", get(snapshot))
        .route("/v1/replication/digests", get(digests))
        .layer(axum::middleware::from_fn_with_state(regions, require_peer))
        .with_state(replication)
}

async fn require_peer(
    State(regions): State<Arc<Regions>>,
    peer: Option<Extension<PeerRegion>>,
    request: Request,
    next: Next,
) -> Response {
    match peer {
        Some(Extension(PeerRegion(name))) if regions.peers.contains_key(&name) => {
            next.run(request).await
        }
        _ => crate::error::HttpError(ApiError::new(
            Reason::Forbidden,
            format!(
                "only peer regions may replicate; this region's peers are {}",
                regions.peers.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        ))
        .into_response(),
    }
}

async fn changes(
    State(replication): State<Replication>,
    Query(From { from }): Query<From>,
) -> HttpResult<Response> {
    let batches = replication.changes(from.max(1)).await?;
    let mut seen = from - 1;
    let mut ticks = tokio::time::interval(HEARTBEAT);
    let lines = async_stream::stream! {
        let mut batches = std::pin::pin!(batches);
        loop {
            let line = tokio::select! {
                batch = batches.next() => match batch {
                    Some(Ok(batch)) => {
                        seen = batch.revision;
                        if batch.changes.is_empty() {
                            continue;
                        }
                        Line::Batch(batch)
                    }
                    Some(Err(e)) => {
                        tracing::info!(error = %e, "a replication stream failed");
                        break;
                    }
                    None => break,
                },
                _ = ticks.tick() => Line::Heartbeat { revision: seen },
            };
            let mut bytes = serde_json::to_vec(&line).expect("serializable");
            bytes.push(b'\n');
            yield Ok::<_, std::convert::Infallible>(bytes);
        }
    };
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response())
}

async fn snapshot(State(replication): State<Replication>) -> HttpResult<Response> {
    Ok(axum::Json(replication.snapshot().await?).into_response())
}

async fn digests(State(replication): State<Replication>) -> HttpResult<Response> {
    Ok(axum::Json(replication.digests().await?).into_response())
}

/// `GET /v1/regions`: every region, whether this one reaches it and how stale its copy is.
pub async fn list_regions(State(app): State<App>) -> HttpResult<Response> {
    let items = app.regions.statuses().await;
    Ok(axum::Json(List::new("Region", ListMeta::default(), items)).into_response())
}

/// `GET /v1/regions/digests`, for platform admins (digests name every org): whether every
/// region holds the same.
pub async fn region_digests(
    State(app): State<App>,
    Extension(principal): Extension<Principal>,
) -> HttpResult<Response> {
    enforce(
        app.authorizer
            .authorize(&principal, Verb::Get, Target::Platform),
        "region digests",
    )?;
    let store = app.registry.store().clone();
    Ok(axum::Json(app.regions.convergence(store).await?).into_response())
}

/// Refuses to delete a node with clusters under it homed in another region: this region
/// cannot delete them (only their home does), and a cascade that waited for them would wait
/// for ever. The caller deletes them first, each through any region.
pub fn check_cascade(app: &App, path: &ResourcePath) -> HttpResult<()> {
    let under = |cluster: &ResourcePath| {
        let mut at = cluster.parent();
        while let Some(p) = at {
            if &p == path {
                return true;
            }
            at = p.parent();
        }
        false
    };
    let elsewhere: Vec<String> = app
        .clusters
        .snapshot()
        .into_iter()
        .filter(|(cluster, object)| under(cluster) && !app.registry.homed_here(&object.metadata))
        .map(|(cluster, object)| format!("{cluster} (in {})", object.metadata.home_region))
        .collect();
    if elsewhere.is_empty() {
        return Ok(());
    }
    Err(ApiError::new(
        Reason::Conflict,
        format!(
            "{path} holds clusters homed in other regions, which only they can delete; delete them first: {}",
            elsewhere.join(", ")
        ),
    )
    .into())
}

/// Where a write belongs.
enum Home {
    Here,
    Peer(String),
}

/// The object a write under `/v1/` is about, and whether it creates a cluster.
fn written(path: &str) -> Option<(ResourcePath, bool)> {
    let rest = path.strip_prefix("/v1/")?;
    let parts: Vec<&str> = rest.split('/').collect();
    let mut pairs = 0;
    while pairs * 2 + 1 < parts.len()
        && dialtone_types::kinds::KindInfo::by_plural(parts[pairs * 2]).is_some()
    {
        pairs += 1;
    }
    if pairs == 0 {
        return None;
    }
    let node = ResourcePath::parse(&parts[..pairs * 2].join("/")).ok()?;
    let creates_cluster = parts.len() == pairs * 2 + 1 && parts[pairs * 2] == CLUSTER.plural;
    Some((node, creates_cluster))
}

impl Regions {
    /// The region that must make a write to `path` (with `body`, for a cluster's create).
    async fn home_of_write(
        &self,
        app: &App,
        method: &Method,
        path: &str,
        body: &[u8],
    ) -> Result<Home, ApiError> {
        let Some((node, creates_cluster)) = written(path) else {
            return Ok(Home::Here);
        };
        // Asking what a policy would allow changes nothing; a credential is a token, which
        // its org's home mints.
        if path.ends_with("/whatif") {
            return Ok(Home::Here);
        }
        let credential = path.ends_with("/credentials");
        let mut cluster = None;
        let mut at = (!credential).then(|| node.clone());
        while let Some(p) = at {
            if p.kind().plural == CLUSTER.plural {
                cluster = Some(p);
                break;
            }
            at = p.parent();
        }
        let org = ResourcePath::org(node.names().next().unwrap_or_default());
        let home = if creates_cluster && *method == Method::POST {
            let spec: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
            match spec["spec"]["region"].as_str() {
                Some(region) => Some(self.home_of_cluster(region)?),
                None => None,
            }
        } else {
            let owner = cluster.unwrap_or(org);
            match app.registry.get_raw(&owner).await {
                Ok(object) => Some(object.metadata.home_region),
                Err(_) => None,
            }
        };
        Ok(match home {
            Some(home) if home != self.region && self.peers.contains_key(&home) => Home::Peer(home),
            _ => Home::Here,
        })
    }

    /// Sends the request on to `home` and hands back its answer, or says why it cannot.
    async fn forward(
        &self,
        home: &str,
        parts: &axum::http::request::Parts,
        body: bytes::Bytes,
    ) -> Response {
        let peer = &self.peers[home];
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let mut request = peer
            .http
            .request(parts.method.clone(), format!("{}{path}", peer.url))
            .timeout(FORWARD_TIMEOUT)
            .body(body);
        for (name, value) in &parts.headers {
            if !HOP_BY_HOP.contains(&name.as_str()) {
                request = request.header(name, value);
            }
        }
        match request.send().await {
            Ok(answer) => {
                let mut response = Response::builder().status(answer.status());
                for (name, value) in answer.headers() {
                    if !HOP_BY_HOP.contains(&name.as_str()) {
                        response = response.header(name, value);
                    }
                }
                response = response.header(SERVED_BY_HEADER, home);
                match answer.bytes().await {
                    Ok(bytes) => response
                        .body(Body::from(bytes))
                        .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response()),
                    Err(e) => self.unanswered(home, &reqwest_error(&e)),
                }
            }
            Err(e) if e.is_connect() => self.unreachable(home, &reqwest_error(&e)),
            Err(e) => self.unanswered(home, &reqwest_error(&e)),
        }
    }

    /// 503 too, but saying that the write reached its home, which did not answer: it may
    /// have been made.
    fn unanswered(&self, home: &str, why: &str) -> Response {
        tracing::info!(region = %home, error = %why, "a forwarded write got no answer");
        crate::error::HttpError(ApiError::new(
            Reason::ServiceUnavailable,
            format!(
                "this object's home region {home} took the write but did not answer ({why}); it may have been made: read the object back before retrying"
            ),
        ))
        .into_response()
    }

    /// 503, naming the home region and when it was last heard from.
    fn unreachable(&self, home: &str, why: &str) -> Response {
        tracing::info!(region = %home, error = %why, "cannot forward a write");
        let seen = self.seen.read().unwrap_or_else(|e| e.into_inner());
        let last = match seen.get(home) {
            Some(applied) => format!(
                "last heard from at {} ({:.0} s ago)",
                applied.at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                self.lag_of(applied)
            ),
            None => "never heard from".to_string(),
        };
        crate::error::HttpError(ApiError::new(
            Reason::ServiceUnavailable,
            format!(
                "this object's home region {home} cannot be reached ({last}); its objects are read here from what was last replicated, and writes to them wait until {home} is back"
            ),
        ))
        .into_response()
    }
}

/// Middleware of the public API: a write to an object homed in another region goes there;
/// every answer says how stale each peer's objects are here.
pub async fn forward_writes(State(app): State<App>, request: Request, next: Next) -> Response {
    let regions = app.regions.clone();
    if regions.peers.is_empty() {
        return next.run(request).await;
    }
    let lag = regions.lag_header();
    let reads = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let mut response = if reads || !request.uri().path().starts_with("/v1/orgs") {
        next.run(request).await
    } else {
        let (parts, body) = request.into_parts();
        let body = match axum::body::to_bytes(body, crate::MAX_BODY_BYTES).await {
            Ok(body) => body,
            Err(_) => {
                return crate::error::HttpError(ApiError::new(
                    Reason::RequestEntityTooLarge,
                    format!("the body is larger than {} bytes", crate::MAX_BODY_BYTES),
                ))
                .into_response();
            }
        };
        match regions
            .home_of_write(&app, &parts.method, parts.uri.path(), &body)
            .await
        {
            Err(e) => return crate::error::HttpError(e).into_response(),
            Ok(Home::Peer(home)) => regions.forward(&home, &parts, body).await,
            Ok(Home::Here) => next.run(Request::from_parts(parts, Body::from(body))).await,
        }
    };
    if let Some(lag) = lag {
        response
            .headers_mut()
            .insert(HeaderName::from_static(LAG_HEADER), lag);
    }
    response
}

/// Middleware of the region listener: a forwarded write is made here only if this is its
/// home, so that two regions never both think the other is.
pub async fn refuse_misdirected(State(app): State<App>, request: Request, next: Next) -> Response {
    let reads = matches!(*request.method(), Method::GET | Method::HEAD);
    if reads || !request.uri().path().starts_with("/v1/orgs") {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, crate::MAX_BODY_BYTES).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    match app
        .regions
        .home_of_write(&app, &parts.method, parts.uri.path(), &body)
        .await
    {
        Ok(Home::Peer(home)) => crate::error::HttpError(ApiError::new(
            Reason::ServiceUnavailable,
            format!(
                "{} is not this object's home region ({home} is, as {} last heard); retry",
                app.regions.region, app.regions.region
            ),
        ))
        .into_response(),
        Err(e) => crate::error::HttpError(e).into_response(),
        Ok(Home::Here) => next.run(Request::from_parts(parts, Body::from(body))).await,
    }
}
