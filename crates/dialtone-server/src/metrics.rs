//! Prometheus metrics: request counts and latencies by route, store latencies by operation,
//! open watches. The store is measured by wrapping it, so no backend knows about metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use dialtone_store::{
    KeyRange, LeaseId, RangeResult, Revision, Store, Txn, TxnOutcome, WatchStream,
};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use dialtone_controllers::runtime::{Informer, Notice};
use dialtone_store::registry::RawObject;
use dialtone_types::{ClusterCondition, Phase};

use crate::App;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    backend: String,
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    task: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RegionLabels {
    region: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    /// `ScaleUp`, `Delete`, `Replace` or `Upgrade`.
    action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OrgLabels {
    org: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterLabels {
    org: String,
    /// `folder/project/cluster`, or `(others)` beyond the costliest of the org.
    cluster: String,
}

/// How many of an org's clusters get a burn-rate series of their own; the rest are summed
/// in one, so that the series stay bounded however many clusters an org runs.
pub const BURN_CLUSTERS_PER_ORG: usize = 20;

type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

fn latency_histogram() -> Histogram {
    // 50 µs to about 1.6 s.
    Histogram::new(exponential_buckets(0.00005, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<RouteLabels, Histogram, fn() -> Histogram>,
    store_seconds: Family<StoreLabels, Histogram, fn() -> Histogram>,
    watches: Gauge<i64, std::sync::atomic::AtomicI64>,
    task_running: Family<TaskLabels, Gauge>,
    task_restarts: Family<TaskLabels, Counter>,
    leader: Gauge,
    replication_lag: Family<RegionLabels, FloatGauge>,
    clusters: Family<PhaseLabels, Gauge>,
    time_to_ready: Histogram,
    sizing_decisions: Family<ActionLabels, Counter>,
    scale_up_cost_ratio: Histogram,
    org_burn: Family<OrgLabels, FloatGauge>,
    cluster_burn: Family<ClusterLabels, FloatGauge>,
}

impl Metrics {
    /// The server's series, and the controllers' from `controllers`.
    pub fn new(controllers: &dialtone_controllers::runtime::metrics::ControllerMetrics) -> Self {
        let mut registry = Registry::with_prefix("dialtone");
        controllers.register(&mut registry);
        let requests = Family::<RequestLabels, Counter>::default();
        let request_seconds =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        let store_seconds =
            Family::<StoreLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        let watches = Gauge::default();
        registry.register(
            "http_requests",
            "HTTP requests by method, route and status code",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            request_seconds.clone(),
        );
        registry.register(
            "store_operation_duration_seconds",
            "Store operation latency",
            store_seconds.clone(),
        );
        registry.register("watches", "Open watch streams", watches.clone());
        let task_running = Family::<TaskLabels, Gauge>::default();
        registry.register(
            "task_running",
            "Whether a background task runs (1) or waits to be restarted (0)",
            task_running.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "Whether this server leads its region's controllers (1) or stands by (0)",
            leader.clone(),
        );
        let replication_lag = Family::<RegionLabels, FloatGauge>::default();
        registry.register(
            "replication_lag_seconds",
            "Since this region last knew it held all of a peer region's objects: how stale its copy is",
            replication_lag.clone(),
        );
        let task_restarts = Family::<TaskLabels, Counter>::default();
        registry.register(
            "task_restarts",
            "Times a background task ended or panicked and was started again",
            task_restarts.clone(),
        );
        let clusters = Family::<PhaseLabels, Gauge>::default();
        registry.register(
            "clusters",
            "Clusters by phase (`none` before the lifecycle's first pass)",
            clusters.clone(),
        );
        // 1 s to about 4.5 h.
        let time_to_ready = Histogram::new(exponential_buckets(1.0, 2.0, 15));
        registry.register(
            "cluster_time_to_ready_seconds",
            "From a cluster's creation to its first Ready, as this server saw it happen",
            time_to_ready.clone(),
        );
        let sizing_decisions = Family::<ActionLabels, Counter>::default();
        registry.register(
            "sizing_decisions",
            "Right-sizing decisions by action, as this server saw them made",
            sizing_decisions.clone(),
        );
        // 1.0 to about 3.0, in steps of 1.08×.
        let scale_up_cost_ratio = Histogram::new(exponential_buckets(1.0, 1.08, 15));
        registry.register(
            "sizing_scale_up_cost_ratio",
            "A scale-up's cost per hour over the proven lower bound for the same pods",
            scale_up_cost_ratio.clone(),
        );
        let org_burn = Family::<OrgLabels, FloatGauge>::default();
        registry.register(
            "org_burn_rate_usd_per_hour",
            "What each org's running nodes cost per hour, at its rates, as of the meter's last pass",
            org_burn.clone(),
        );
        let cluster_burn = Family::<ClusterLabels, FloatGauge>::default();
        registry.register(
            "cluster_burn_rate_usd_per_hour",
            "The same for each org's 20 costliest clusters, the others summed as cluster=\"(others)\"",
            cluster_burn.clone(),
        );
        Metrics {
            org_burn,
            cluster_burn,
            registry,
            clusters,
            time_to_ready,
            sizing_decisions,
            scale_up_cost_ratio,
            requests,
            request_seconds,
            store_seconds,
            watches,
            task_running,
            task_restarts,
            leader,
            replication_lag,
        }
    }
}

/// Decrements the open-watch gauge when the watch ends.
pub struct WatchGuard(Gauge<i64, std::sync::atomic::AtomicI64>);

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// What `/metrics` is written in: OpenMetrics text, as prometheus-client writes it.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

impl Metrics {
    /// Sets the leader gauge before a scrape.
    pub fn record_leadership(&self, leadership: &dialtone_controllers::runtime::Leadership) {
        self.leader.set(i64::from(leadership.term().is_some()));
    }

    /// Sets each peer region's replication lag before a scrape (none for a peer never
    /// replicated).
    pub fn record_replication(&self, lags: &[(String, f64)]) {
        for (region, lag) in lags {
            self.replication_lag
                .get_or_create(&RegionLabels {
                    region: region.clone(),
                })
                .set(*lag);
        }
    }

    /// Brings the background tasks' series up to date, before a scrape.
    pub fn record_tasks(&self, tasks: &[dialtone_controllers::TaskStatus]) {
        for task in tasks {
            let labels = TaskLabels {
                task: task.name.to_string(),
            };
            self.task_running
                .get_or_create(&labels)
                .set(i64::from(task.running));
            let restarts = self.task_restarts.get_or_create(&labels);
            restarts.inc_by(u64::from(task.restarts).saturating_sub(restarts.get()));
        }
    }

    /// Sets the burn rates from the meter's last pass, before a scrape: series of orgs
    /// and clusters no longer running go.
    pub fn record_burn(&self, burning: &[dialtone_controllers::metering::Burn]) {
        let mut by_org: std::collections::BTreeMap<&str, Vec<(&str, i64)>> = Default::default();
        for burn in burning {
            by_org
                .entry(&burn.org)
                .or_default()
                .push((&burn.cluster, burn.micros_per_hour));
        }
        self.org_burn.clear();
        self.cluster_burn.clear();
        let usd = |micros: i64| micros as f64 / 1e6;
        for (org, mut clusters) in by_org {
            clusters.sort_by_key(|(name, micros)| (std::cmp::Reverse(*micros), *name));
            let total: i64 = clusters.iter().map(|(_, m)| m).sum();
            self.org_burn
                .get_or_create(&OrgLabels { org: org.into() })
                .set(usd(total));
            let others: i64 = clusters
                .iter()
                .skip(BURN_CLUSTERS_PER_ORG)
                .map(|(_, m)| m)
                .sum();
            let named = clusters
                .iter()
                .take(BURN_CLUSTERS_PER_ORG)
                .map(|(n, m)| (*n, *m));
            let rest = (clusters.len() > BURN_CLUSTERS_PER_ORG).then_some(("(others)", others));
            for (cluster, micros) in named.chain(rest) {
                self.cluster_burn
                    .get_or_create(&ClusterLabels {
                        org: org.into(),
                        cluster: cluster.into(),
                    })
                    .set(usd(micros));
            }
        }
    }

    /// Counts the clusters by phase, from the informer's cache, before a scrape.
    pub fn record_clusters(&self, clusters: &Informer) {
        let mut counts: std::collections::HashMap<&str, i64> =
            Phase::ALL.iter().map(|p| (p.as_str(), 0)).collect();
        let objects = clusters.snapshot();
        for (_, cluster) in &objects {
            let phase = cluster.status["phase"].as_str().unwrap_or("none");
            *counts.entry(phase).or_default() += 1;
        }
        for (phase, count) in counts {
            self.clusters
                .get_or_create(&PhaseLabels {
                    phase: phase.to_string(),
                })
                .set(count);
        }
    }

    /// Follows the clusters' changes through the informer: times each cluster from its
    /// creation to the end of its provisioning (its first Ready), and counts right-sizing's
    /// decisions as they appear in its status.
    pub fn follow_clusters(self: &Arc<Self>, clusters: &Informer) {
        let metrics = self.clone();
        clusters.subscribe(move |notice| {
            let Notice::Applied {
                old: Some(old),
                new,
                ..
            } = notice
            else {
                return;
            };
            let provisioning = |raw: &RawObject| {
                raw.status["conditions"]
                    .as_array()
                    .is_some_and(|conditions| {
                        conditions.iter().any(|c| {
                            c["type"] == ClusterCondition::Provisioning.as_str()
                                && c["status"] == "True"
                        })
                    })
            };
            metrics.count_new_decisions(old, new);
            if provisioning(old)
                && !provisioning(new)
                && new.status["phase"] == Phase::Ready.as_str()
                && let Some(created) = new.metadata.creation_timestamp
            {
                let took = jiff::Timestamp::now().duration_since(created);
                metrics.time_to_ready.observe(took.as_secs_f64().max(0.0));
            }
        });
    }

    /// Counts the right-sizing decisions `new` holds that `old` did not (decisions are
    /// appended with their time), and how close each scale-up came to its lower bound.
    fn count_new_decisions(&self, old: &RawObject, new: &RawObject) {
        let decisions = |raw: &RawObject| raw.status["sizing"]["decisions"].as_array().cloned();
        let Some(decisions_now) = decisions(new) else {
            return;
        };
        let last_before = decisions(old)
            .and_then(|d| {
                d.last()
                    .map(|d| d["time"].as_str().unwrap_or("").to_string())
            })
            .and_then(|t| t.parse::<jiff::Timestamp>().ok());
        for decision in &decisions_now {
            let time = decision["time"]
                .as_str()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok());
            if time.is_none() || time <= last_before {
                continue;
            }
            let action = decision["action"].as_str().unwrap_or("unknown").to_string();
            self.sizing_decisions
                .get_or_create(&ActionLabels { action })
                .inc();
            if let (Some(cost), Some(bound)) = (
                decision["usdPerHour"].as_f64(),
                decision["lowerBoundUsdPerHour"].as_f64(),
            ) && bound > 0.0
            {
                self.scale_up_cost_ratio.observe(cost / bound);
            }
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    pub fn watch_started(&self) -> WatchGuard {
        self.watches.inc();
        WatchGuard(self.watches.clone())
    }

    fn observe_store(&self, backend: &str, operation: &str, started: Instant) {
        self.store_seconds
            .get_or_create(&StoreLabels {
                backend: backend.into(),
                operation: operation.into(),
            })
            .observe(started.elapsed().as_secs_f64());
    }
}

/// Middleware: counts and times every request by its route pattern (never the raw path, so
/// that label values stay few).
pub async fn record_requests(State(app): State<App>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let response = next.run(request).await;
    let code = response.status().as_u16();
    app.metrics
        .requests
        .get_or_create(&RequestLabels {
            method: method.clone(),
            route: route.clone(),
            code,
        })
        .inc();
    app.metrics
        .request_seconds
        .get_or_create(&RouteLabels { method, route })
        .observe(started.elapsed().as_secs_f64());
    response
}

/// A store that records the latency of every operation of the store it wraps.
pub struct MeteredStore {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl MeteredStore {
    pub fn new(inner: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        MeteredStore { inner, metrics }
    }
}

#[async_trait::async_trait]
impl Store for MeteredStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn range(
        &self,
        range: &KeyRange,
        at: Option<Revision>,
        limit: usize,
    ) -> dialtone_store::Result<RangeResult> {
        let started = Instant::now();
        let result = self.inner.range(range, at, limit).await;
        self.metrics.observe_store(self.backend(), "range", started);
        result
    }

    async fn txn(&self, txn: Txn) -> dialtone_store::Result<TxnOutcome> {
        let started = Instant::now();
        let result = self.inner.txn(txn).await;
        self.metrics.observe_store(self.backend(), "txn", started);
        result
    }

    async fn watch(&self, range: KeyRange, from: Revision) -> dialtone_store::Result<WatchStream> {
        self.inner.watch(range, from).await
    }

    async fn compact(&self, revision: Revision) -> dialtone_store::Result<()> {
        let started = Instant::now();
        let result = self.inner.compact(revision).await;
        self.metrics
            .observe_store(self.backend(), "compact", started);
        result
    }

    async fn revision(&self) -> dialtone_store::Result<Revision> {
        self.inner.revision().await
    }

    async fn grant_lease(&self, ttl: Duration) -> dialtone_store::Result<LeaseId> {
        self.inner.grant_lease(ttl).await
    }

    async fn keep_alive(&self, lease: LeaseId) -> dialtone_store::Result<()> {
        self.inner.keep_alive(lease).await
    }

    async fn revoke_lease(&self, lease: LeaseId) -> dialtone_store::Result<()> {
        self.inner.revoke_lease(lease).await
    }
}
