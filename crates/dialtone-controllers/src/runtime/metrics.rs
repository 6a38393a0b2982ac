//! What the controllers did, for operators: per controller, passes and failures, how long
//! passes take, the queue's depth, and the last success and failure. The server writes the
//! series into `/metrics` and the statuses into `/readyz?verbose`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::queue::Depth;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabels {
    controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    controller: String,
    /// `ready`, `running` or `waiting`.
    state: String,
}

fn pass_histogram() -> Histogram {
    // 100 µs to about 52 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 20))
}

/// A controller's state, for `/readyz?verbose`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ControllerStatus {
    pub name: &'static str,
    pub passes: u64,
    pub failures: u64,
    pub depth: Depth,
    pub last_success: Option<Timestamp>,
    /// When, which key, and why.
    pub last_failure: Option<(Timestamp, String, String)>,
}

/// The series every controller writes into, one label value per controller.
#[derive(Clone)]
pub struct ControllerMetrics {
    passes: Family<ControllerLabels, Counter>,
    failures: Family<ControllerLabels, Counter>,
    seconds: Family<ControllerLabels, Histogram, fn() -> Histogram>,
    depth: Family<QueueLabels, Gauge>,
    controllers: Arc<Mutex<BTreeMap<&'static str, Arc<ControllerStats>>>>,
}

impl Default for ControllerMetrics {
    fn default() -> Self {
        ControllerMetrics {
            passes: Family::default(),
            failures: Family::default(),
            seconds: Family::new_with_constructor(pass_histogram),
            depth: Family::default(),
            controllers: Arc::default(),
        }
    }
}

impl ControllerMetrics {
    /// Adds the series to a registry.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "controller_passes",
            "Reconcile passes by controller, failed ones included",
            self.passes.clone(),
        );
        registry.register(
            "controller_failures",
            "Reconcile passes that failed (an error or a panic), by controller",
            self.failures.clone(),
        );
        registry.register(
            "controller_pass_duration_seconds",
            "How long a reconcile pass took, by controller",
            self.seconds.clone(),
        );
        registry.register(
            "controller_queue_depth",
            "Keys in a controller's queue: ready, running, or waiting for a time",
            self.depth.clone(),
        );
    }

    /// The stats of the controller called `name`, made on first use.
    pub fn controller(&self, name: &'static str) -> Arc<ControllerStats> {
        self.lock()
            .entry(name)
            .or_insert_with(|| {
                let labels = ControllerLabels {
                    controller: name.to_string(),
                };
                Arc::new(ControllerStats {
                    name,
                    passes: self.passes.get_or_create(&labels).clone(),
                    failures: self.failures.get_or_create(&labels).clone(),
                    seconds: self.seconds.get_or_create(&labels).clone(),
                    depth: self.depth.clone(),
                    state: Mutex::default(),
                })
            })
            .clone()
    }

    /// Brings the queue depths up to date (before a scrape) and returns every status.
    pub fn statuses(&self) -> Vec<ControllerStatus> {
        self.lock().values().map(|stats| stats.status()).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, Arc<ControllerStats>>> {
        self.controllers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Default)]
struct State {
    last_success: Option<Timestamp>,
    last_failure: Option<(Timestamp, String, String)>,
    depth: Option<Box<dyn Fn() -> Depth + Send + Sync>>,
}

/// One controller's share of [`ControllerMetrics`].
pub struct ControllerStats {
    pub name: &'static str,
    passes: Counter,
    failures: Counter,
    seconds: Histogram,
    depth: Family<QueueLabels, Gauge>,
    state: Mutex<State>,
}

impl ControllerStats {
    pub(super) fn watch_queue(&self, depth: impl Fn() -> Depth + Send + Sync + 'static) {
        self.lock().depth = Some(Box::new(depth));
    }

    pub(super) fn succeeded(&self, took: Duration) {
        self.passes.inc();
        self.seconds.observe(took.as_secs_f64());
        self.lock().last_success = Some(Timestamp::now());
    }

    pub(super) fn failed(&self, took: Duration, key: &str, why: String) {
        self.passes.inc();
        self.failures.inc();
        self.seconds.observe(took.as_secs_f64());
        self.lock().last_failure = Some((Timestamp::now(), key.to_string(), why));
    }

    fn status(&self) -> ControllerStatus {
        let state = self.lock();
        let depth = state
            .depth
            .as_ref()
            .map(|depth| depth())
            .unwrap_or_default();
        for (name, value) in [
            ("ready", depth.ready),
            ("running", depth.running),
            ("waiting", depth.waiting),
        ] {
            self.depth
                .get_or_create(&QueueLabels {
                    controller: self.name.to_string(),
                    state: name.to_string(),
                })
                .set(value as i64);
        }
        ControllerStatus {
            name: self.name,
            passes: self.passes.get(),
            failures: self.failures.get(),
            depth,
            last_success: state.last_success,
            last_failure: state.last_failure.clone(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}
