//! A controller: a [`Reconciler`] run by workers over a [`WorkQueue`], as kube-runtime's
//! `Controller::run(reconcile, error_policy)`. The reconciler says when to look at a key
//! again ([`Next`]); a failure is retried after the error policy's wait, which by default
//! backs off exponentially per key and is forgotten on the key's next success. A reconcile
//! that panics is a failure of that key, not of the controller. Every pass is counted and
//! timed in the controller's [`ControllerStats`].

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;

use super::backoff::Backoff;
use super::metrics::ControllerStats;
use super::queue::{Key, WorkQueue};

/// When to look at a key again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Nothing to do until it changes (it is gone, or its spec cannot be acted on).
    Done,
    After(Duration),
}

/// A failed pass is retried from 100 ms up to 5 min apart by default.
pub const ERROR_BACKOFF: Backoff = Backoff {
    base: Duration::from_millis(100),
    cap: Duration::from_secs(300),
};

pub trait Reconciler: Send + Sync + 'static {
    type Key: Key;
    type Error: std::fmt::Display + Send;

    /// Moves `key` one pass toward what it should be. Level-triggered: told nothing about
    /// why it runs.
    fn reconcile(&self, key: &Self::Key) -> impl Future<Output = Result<Next, Self::Error>> + Send;

    /// How long to wait before trying `key` again after its `failures`-th failure in a row.
    fn error_policy(&self, _key: &Self::Key, _error: &Self::Error, failures: u32) -> Duration {
        ERROR_BACKOFF.delay(failures)
    }
}

pub struct Controller<R: Reconciler> {
    reconciler: Arc<R>,
    queue: WorkQueue<R::Key>,
    workers: usize,
    /// Failures in a row, by key.
    failures: Mutex<HashMap<R::Key, u32>>,
    stats: Arc<ControllerStats>,
}

impl<R: Reconciler> Controller<R> {
    pub fn new(reconciler: Arc<R>, workers: usize, stats: Arc<ControllerStats>) -> Arc<Self> {
        let controller = Arc::new(Controller {
            reconciler,
            queue: WorkQueue::default(),
            workers: workers.max(1),
            failures: Mutex::default(),
            stats,
        });
        let queue = controller.queue.clone();
        controller.stats.watch_queue(move || queue.depth());
        controller
    }

    /// The queue that the controller's triggers (informer handlers, resyncs) fill.
    pub fn queue(&self) -> &WorkQueue<R::Key> {
        &self.queue
    }

    /// Runs the workers for as long as it runs: a supervised task.
    pub async fn run(self: Arc<Self>) {
        futures::future::join_all((0..self.workers).map(|_| self.clone().work())).await;
    }

    /// Queues every key `keys` gives at once, then every `every` spread over the period: a
    /// safety net for changes no trigger saw, at a steady cost. Run as a leader-only task,
    /// its start is a new term's look at everything.
    pub async fn resync<F, Fut>(self: Arc<Self>, every: Duration, keys: F)
    where
        F: Fn() -> Fut + Send,
        Fut: Future<Output = Vec<R::Key>> + Send,
    {
        for key in keys().await {
            self.queue.add(key);
        }
        loop {
            tokio::time::sleep(every).await;
            let keys = keys().await;
            self.queue.add_spread(keys.into_iter(), every);
        }
    }

    async fn work(self: Arc<Self>) {
        loop {
            let key = self.queue.next().await;
            // A worker dropped mid-pass (its server's term ended) puts the key back.
            let held = Held {
                queue: &self.queue,
                key: Some(key.clone()),
            };
            let started = Instant::now();
            let outcome = AssertUnwindSafe(self.reconciler.reconcile(&key))
                .catch_unwind()
                .await;
            let elapsed = started.elapsed();
            let outcome = match outcome {
                Ok(Ok(next)) => Ok(next),
                Ok(Err(e)) => Err((e.to_string(), Some(e))),
                Err(panic) => Err((format!("it panicked: {}", panic_message(&*panic)), None)),
            };
            match outcome {
                Ok(next) => {
                    self.lock_failures().remove(&key);
                    self.stats.succeeded(elapsed);
                    if let Next::After(delay) = next {
                        self.queue.add_after(key.clone(), delay);
                    }
                }
                Err((message, error)) => {
                    let failures = {
                        let mut failures = self.lock_failures();
                        let count = failures.entry(key.clone()).or_default();
                        *count += 1;
                        *count
                    };
                    let delay = match &error {
                        Some(e) => self.reconciler.error_policy(&key, e, failures),
                        None => ERROR_BACKOFF.delay(failures),
                    };
                    tracing::warn!(
                        controller = self.stats.name,
                        key = %key,
                        failures,
                        "pass failed, retrying in {delay:?}: {message}"
                    );
                    self.stats.failed(elapsed, &key.to_string(), message);
                    self.queue.add_after(key.clone(), delay);
                }
            }
            held.release();
        }
    }

    fn lock_failures(&self) -> std::sync::MutexGuard<'_, HashMap<R::Key, u32>> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A key a worker has taken from the queue: done when released, queued again if the
/// worker is dropped before that.
struct Held<'q, K: Key> {
    queue: &'q WorkQueue<K>,
    key: Option<K>,
}

impl<K: Key> Held<'_, K> {
    fn release(mut self) {
        if let Some(key) = self.key.take() {
            self.queue.done(&key);
        }
    }
}

impl<K: Key> Drop for Held<'_, K> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.queue.add(key.clone());
            self.queue.done(&key);
        }
    }
}

/// What a panic said, when it said it with a string.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::metrics::ControllerMetrics;

    /// Fails its first `failures` passes of every key (the third by panicking), then
    /// succeeds; records when each pass ran.
    struct Flaky {
        failures: u32,
        passes: Mutex<Vec<(String, tokio::time::Instant)>>,
    }

    impl Reconciler for Flaky {
        type Key = String;
        type Error = String;

        async fn reconcile(&self, key: &String) -> Result<Next, String> {
            let pass = {
                let mut passes = self.passes.lock().unwrap();
                passes.push((key.clone(), tokio::time::Instant::now()));
                passes.iter().filter(|(k, _)| k == key).count() as u32
            };
            match pass {
                3 if pass <= self.failures => panic!("pass {pass} of {key} panics"),
                n if n <= self.failures => Err(format!("pass {n} of {key} fails")),
                _ => Ok(Next::Done),
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_per_key_and_show_in_the_metrics() {
        let metrics = ControllerMetrics::default();
        let mut registry = prometheus_client::registry::Registry::default();
        metrics.register(&mut registry);
        let flaky = Arc::new(Flaky {
            failures: 5,
            passes: Mutex::default(),
        });
        let controller = Controller::new(flaky.clone(), 2, metrics.controller("flaky"));
        controller.queue().add("a".to_string());
        let running = tokio::spawn(controller.clone().run());
        // Long enough for every retry (the fifth waits at most 1.6 s).
        tokio::time::sleep(Duration::from_secs(10)).await;

        let times: Vec<_> = flaky
            .passes
            .lock()
            .unwrap()
            .iter()
            .map(|(_, at)| *at)
            .collect();
        assert_eq!(
            times.len(),
            6,
            "five failures, then a success, then nothing"
        );
        let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
        for (n, gap) in gaps.iter().enumerate() {
            let ceiling = ERROR_BACKOFF.ceiling(n as u32 + 1);
            assert!(
                *gap >= ceiling / 2 && *gap <= ceiling,
                "retry {} waited {gap:?}, not within half of {ceiling:?}",
                n + 1
            );
        }
        assert!(gaps[4] > gaps[0] * 4, "the waits grow: {gaps:?}");

        let status = &metrics.statuses()[0];
        assert_eq!((status.passes, status.failures), (6, 5));
        let (_, key, why) = status.last_failure.clone().expect("a failure");
        assert_eq!((key.as_str(), why.as_str()), ("a", "pass 5 of a fails"));
        assert!(status.last_success.is_some());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("controller_failures_total{controller=\"flaky\"} 5"),
            "{text}"
        );
        assert!(
            text.contains("controller_passes_total{controller=\"flaky\"} 6"),
            "{text}"
        );

        // The panic was a failure of that pass: the workers went on, and so does another key.
        controller.queue().add("b".to_string());
        tokio::time::sleep(Duration::from_secs(10)).await;
        let b = flaky
            .passes
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k == "b")
            .count();
        assert_eq!(b, 6);
        assert!(!running.is_finished());
    }

    /// Blocks its first pass of every key for good; counts passes.
    struct Stuck {
        passes: Mutex<HashMap<String, u32>>,
    }

    impl Reconciler for Stuck {
        type Key = String;
        type Error = String;

        async fn reconcile(&self, key: &String) -> Result<Next, String> {
            let pass = {
                let mut passes = self.passes.lock().unwrap();
                let count = passes.entry(key.clone()).or_default();
                *count += 1;
                *count
            };
            if pass == 1 {
                std::future::pending::<()>().await;
            }
            Ok(Next::Done)
        }
    }

    /// Workers dropped mid-pass (a term that ended) leave the key queued, so the next
    /// term's workers take it up again.
    #[tokio::test]
    async fn a_key_whose_worker_is_dropped_mid_pass_is_queued_again() {
        let stuck = Arc::new(Stuck {
            passes: Mutex::default(),
        });
        let metrics = ControllerMetrics::default();
        let controller = Controller::new(stuck.clone(), 1, metrics.controller("stuck"));
        controller.queue().add("a".to_string());
        let passes = || stuck.passes.lock().unwrap().get("a").copied().unwrap_or(0);
        let first = tokio::spawn(controller.clone().run());
        while passes() < 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        first.abort();
        let _ = first.await;
        let depth = controller.queue().depth();
        assert_eq!((depth.ready, depth.running), (1, 0), "{depth:?}");
        let second = tokio::spawn(controller.clone().run());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while passes() < 2 {
            assert!(tokio::time::Instant::now() < deadline, "the key was lost");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        second.abort();
    }
}
