//! A work queue of keys, as client-go's: a key is queued at most once, is handed to one
//! worker at a time, and a key queued again while a worker has it runs again afterwards.
//! A key may also wait for a time (`add_after`); a key waiting twice keeps the earlier
//! time. Waiting keys cost one map entry each, not a task, so a fleet of 10,000 clusters
//! each due for a health check is 10,000 entries.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// What a queue's key must be.
pub trait Key: Clone + Eq + Hash + std::fmt::Display + Send + Sync + 'static {}
impl<T: Clone + Eq + Hash + std::fmt::Display + Send + Sync + 'static> Key for T {}

struct Inner<K> {
    ready: VecDeque<K>,
    queued: HashSet<K>,
    running: HashSet<K>,
    /// Queued while running: goes back to `ready` when its worker is done.
    again: HashSet<K>,
    /// Keys waiting for a time, by (due, sequence), and each waiting key's entry.
    timers: BTreeMap<(Instant, u64), K>,
    due: HashMap<K, (Instant, u64)>,
    sequence: u64,
}

impl<K> Default for Inner<K> {
    fn default() -> Self {
        Inner {
            ready: VecDeque::new(),
            queued: HashSet::new(),
            running: HashSet::new(),
            again: HashSet::new(),
            timers: BTreeMap::new(),
            due: HashMap::new(),
            sequence: 0,
        }
    }
}

impl<K: Key> Inner<K> {
    /// Queues `key`; whether a worker should be woken.
    fn add(&mut self, key: K) -> bool {
        if self.running.contains(&key) {
            self.again.insert(key);
            false
        } else if self.queued.insert(key.clone()) {
            self.ready.push_back(key);
            true
        } else {
            false
        }
    }

    /// Moves every key whose time has come to `ready`.
    fn release_due(&mut self, now: Instant) {
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let key = entry.remove();
            self.due.remove(&key);
            self.add(key);
        }
    }
}

/// How many keys a queue holds, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Depth {
    /// Queued and not yet handed to a worker.
    pub ready: usize,
    /// Being worked on.
    pub running: usize,
    /// Waiting for a time.
    pub waiting: usize,
}

pub struct WorkQueue<K> {
    inner: Arc<Mutex<Inner<K>>>,
    wake: Arc<Notify>,
}

impl<K> Clone for WorkQueue<K> {
    fn clone(&self) -> Self {
        WorkQueue {
            inner: self.inner.clone(),
            wake: self.wake.clone(),
        }
    }
}

impl<K> Default for WorkQueue<K> {
    fn default() -> Self {
        WorkQueue {
            inner: Arc::default(),
            wake: Arc::default(),
        }
    }
}

impl<K: Key> WorkQueue<K> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<K>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn add(&self, key: K) {
        if self.lock().add(key) {
            self.wake.notify_one();
        }
    }

    /// Queues `key` once `delay` has passed, or sooner if it was already waiting for an
    /// earlier time.
    pub fn add_after(&self, key: K, delay: Duration) {
        if delay.is_zero() {
            return self.add(key);
        }
        let at = Instant::now() + delay;
        let mut inner = self.lock();
        if let Some(&(due, sequence)) = inner.due.get(&key) {
            if due <= at {
                return;
            }
            inner.timers.remove(&(due, sequence));
        }
        inner.sequence += 1;
        let entry = (at, inner.sequence);
        inner.timers.insert(entry, key.clone());
        inner.due.insert(key, entry);
        drop(inner);
        // A worker asleep until a later time must look again.
        self.wake.notify_one();
    }

    /// Queues `keys` spread evenly over `over`, so that a periodic resync of thousands of
    /// keys is a steady trickle, not a burst.
    pub fn add_spread(&self, keys: impl ExactSizeIterator<Item = K>, over: Duration) {
        let step = over / (keys.len().max(1) as u32);
        for (i, key) in keys.enumerate() {
            self.add_after(key, step * i as u32);
        }
    }

    /// The next key to work on; call [`WorkQueue::done`] when finished with it.
    pub async fn next(&self) -> K {
        loop {
            let notified = self.wake.notified();
            let sleep_until = {
                let mut inner = self.lock();
                inner.release_due(Instant::now());
                if let Some(key) = inner.ready.pop_front() {
                    inner.queued.remove(&key);
                    inner.running.insert(key.clone());
                    if !inner.ready.is_empty() || !inner.timers.is_empty() {
                        // Another worker takes the rest, or watches the next timer.
                        self.wake.notify_one();
                    }
                    return key;
                }
                inner.timers.first_key_value().map(|((at, _), _)| *at)
            };
            match sleep_until {
                Some(at) => {
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    pub fn done(&self, key: &K) {
        let again = {
            let mut inner = self.lock();
            inner.running.remove(key);
            inner.again.remove(key)
        };
        if again {
            self.add(key.clone());
        }
    }

    pub fn depth(&self) -> Depth {
        let inner = self.lock();
        Depth {
            ready: inner.ready.len(),
            running: inner.running.len(),
            waiting: inner.timers.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_runs_once_at_a_time_and_again_if_requeued() {
        let queue = WorkQueue::default();
        queue.add("a");
        queue.add("a");
        assert_eq!(queue.next().await, "a");
        queue.add("a");
        let pending = tokio::time::timeout(Duration::from_millis(50), queue.next()).await;
        assert!(pending.is_err(), "not handed out while running");
        queue.done(&"a");
        assert_eq!(queue.next().await, "a", "queued again while running");
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_key_keeps_its_earliest_time() {
        let queue = WorkQueue::default();
        queue.add_after("late", Duration::from_secs(30));
        queue.add_after("early", Duration::from_secs(20));
        queue.add_after("early", Duration::from_secs(10));
        queue.add_after("early", Duration::from_secs(40));
        assert_eq!(queue.depth().waiting, 2, "one timer per key");
        let started = Instant::now();
        assert_eq!(queue.next().await, "early");
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        assert_eq!(queue.next().await, "late");
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        assert_eq!(
            queue.depth(),
            Depth {
                ready: 0,
                running: 2,
                waiting: 0
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_spread_resync_trickles() {
        let queue = WorkQueue::default();
        queue.add_spread(["a", "b", "c", "d"].into_iter(), Duration::from_secs(40));
        let started = Instant::now();
        let mut at = Vec::new();
        for _ in 0..4 {
            queue.next().await;
            at.push(started.elapsed().as_secs());
        }
        assert_eq!(at, [0, 10, 20, 30]);
    }
}
