//! A work queue of object paths, as in client-go: a path is queued at most once, is handed to
//! one worker at a time, and a path queued again while a worker has it runs again afterwards.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dialtone_types::ResourcePath;
use tokio::sync::Notify;

#[derive(Default)]
struct Inner {
    ready: VecDeque<ResourcePath>,
    queued: HashSet<ResourcePath>,
    running: HashSet<ResourcePath>,
    /// Queued while running: goes back to `ready` when its worker is done.
    again: HashSet<ResourcePath>,
}

#[derive(Clone, Default)]
pub struct WorkQueue {
    inner: Arc<Mutex<Inner>>,
    wake: Arc<Notify>,
}

impl WorkQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn add(&self, path: ResourcePath) {
        let mut inner = self.lock();
        if inner.running.contains(&path) {
            inner.again.insert(path);
        } else if inner.queued.insert(path.clone()) {
            inner.ready.push_back(path);
            self.wake.notify_one();
        }
    }

    pub fn add_after(&self, path: ResourcePath, delay: Duration) {
        let queue = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.add(path);
        });
    }

    /// The next path to work on; call [`WorkQueue::done`] when finished with it.
    pub async fn next(&self) -> ResourcePath {
        loop {
            let notified = self.wake.notified();
            {
                let mut inner = self.lock();
                if let Some(path) = inner.ready.pop_front() {
                    inner.queued.remove(&path);
                    inner.running.insert(path.clone());
                    if !inner.ready.is_empty() {
                        self.wake.notify_one();
                    }
                    return path;
                }
            }
            notified.await;
        }
    }

    pub fn done(&self, path: &ResourcePath) {
        let again = {
            let mut inner = self.lock();
            inner.running.remove(path);
            inner.again.remove(path)
        };
        if again {
            self.add(path.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_path_runs_once_at_a_time_and_again_if_requeued() {
        let queue = WorkQueue::default();
        let a = ResourcePath::org("a");
        queue.add(a.clone());
        queue.add(a.clone());
        assert_eq!(queue.next().await, a);
        queue.add(a.clone());
        let pending = tokio::time::timeout(Duration::from_millis(50), queue.next()).await;
        assert!(pending.is_err(), "not handed out while running");
        queue.done(&a);
        assert_eq!(queue.next().await, a, "queued again while running");
    }
}
