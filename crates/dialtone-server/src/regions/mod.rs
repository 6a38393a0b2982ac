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

mod forward;
mod peers;

pub use forward::{forward_writes, refuse_misdirected};
pub use peers::{PeerRegion, listener_config, peer_region, peer_routes, pull};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use axum::extract::{Extension, State};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use dialtone_store::replication::{Applied, Digest, Replication};
use dialtone_store::{Revision, Store, StoreError};
use dialtone_types::{ApiError, List, ListMeta, Reason, ResourcePath};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::App;
use crate::auth::{Principal, Verb, enforce_platform};
use crate::error::{HttpResult, with_causes};
use crate::tls::{ServingCertificate, TlsFiles};

/// The header that says how stale this region's copy of each peer's objects is.
pub const LAG_HEADER: &str = "dialtone-replication-lag";
/// The header a forwarded write's answer carries: the region that made it.
pub const SERVED_BY_HEADER: &str = "dialtone-served-by-region";

/// How often a change stream says how far it has seen.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long a forwarded request may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a peer has to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// `--peer`, `--region-listen` and the region certificates.
#[derive(Clone, Debug)]
pub struct RegionsOptions {
    /// Each other region's name and the URL of its region listener.
    pub peers: BTreeMap<String, String>,
    /// Where this region's listener for its peers listens.
    pub listen: SocketAddr,
    /// The certificate a region presents to its peers (as server and as client), its key,
    /// and the CA that signed every region's.
    pub tls: TlsFiles,
}

/// The peers of this region, and how far it has replicated each. Without peers (a single
/// region) every object is homed here and nothing is forwarded.
pub struct Regions {
    region: String,
    peers: BTreeMap<String, Peer>,
    /// What each peer's stream last confirmed, as the store holds it (refreshed every
    /// heartbeat, on every server of the region).
    seen: RwLock<BTreeMap<String, Applied>>,
    /// The region certificate, with peers.
    certificate: Option<Arc<ServingCertificate>>,
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

impl Regions {
    /// A region alone: nothing is forwarded or replicated.
    pub fn alone(region: &str) -> Arc<Regions> {
        Arc::new(Regions {
            region: region.to_string(),
            peers: BTreeMap::new(),
            seen: RwLock::default(),
            certificate: None,
        })
    }

    /// This region and its peers, reached with the region certificate.
    pub fn new(region: &str, options: &RegionsOptions) -> anyhow::Result<Arc<Regions>> {
        let certificate = ServingCertificate::load(&options.tls)
            .context("cannot load the region certificate (--region-cert, --region-key)")?;
        let tls = rustls::ClientConfig::builder()
            .with_root_certificates(peers::roots(&options.tls)?)
            .with_client_cert_resolver(certificate.clone());
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
            certificate: Some(certificate),
        }))
    }

    /// The region certificate, served to peers and presented to them, read again from its
    /// files twice a day (the operator renews it with `dialtone regions certificates`).
    pub fn certificate(&self) -> Option<&Arc<ServingCertificate>> {
        self.certificate.as_ref()
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
                Err(e) => Some(with_causes(&e)),
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
                    .map_err(|e| with_causes(&e))?;
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
    enforce_platform(&app, &principal, Verb::Get, "region digests")?;
    let store = app.registry.store().clone();
    Ok(axum::Json(app.regions.convergence(store).await?).into_response())
}

/// Refuses to delete a node with clusters under it homed in another region: this region
/// cannot delete them (only their home does), and a cascade that waited for them would wait
/// for ever. The caller deletes them first, each through any region.
pub fn check_cascade(app: &App, path: &ResourcePath) -> HttpResult<()> {
    // A region alone holds no cluster of another.
    if app.regions.peers.is_empty() {
        return Ok(());
    }
    let elsewhere: Vec<String> = app
        .clusters
        .snapshot()
        .into_iter()
        .filter(|(cluster, object)| {
            cluster.is_below(path) && !app.registry.homed_here(&object.metadata)
        })
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
