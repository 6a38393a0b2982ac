//! Every background task of the server runs under one supervisor, as omicron's background
//! tasks do: registered by name, restarted with backoff when it ends or panics, and its
//! state (running, restarts, last failure) readable for `/readyz?verbose` and `/metrics`.
//! A task that dies no longer stops for good while the API keeps serving. A task spawned
//! with [`Supervisor::spawn_leading`] runs only while this server leads: it is dropped when
//! a term ends and built again when the next one begins.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;

use super::backoff::Backoff;
use super::controller::panic_message;
use super::leader::Leadership;
use super::metrics::ControllerMetrics;

/// What a task is doing, for operators.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskStatus {
    pub name: &'static str,
    pub running: bool,
    /// Runs only while this server leads ([`Supervisor::spawn_leading`]).
    pub leading_only: bool,
    /// Waiting to lead: a task that runs only on the leader, on a server that does not.
    pub standby: bool,
    /// How many times it ended or panicked and was started again.
    pub restarts: u32,
    /// Why it last stopped, and when.
    pub last_failure: Option<(Timestamp, String)>,
}

type TaskFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

pub struct Supervisor {
    tasks: Mutex<BTreeMap<&'static str, TaskStatus>>,
    leadership: Leadership,
    /// Tasks told to panic on their first run, to show that supervision works
    /// (`dialtone server --fault-panic-task`).
    panic_once: Mutex<Vec<String>>,
    /// What the controllers among the tasks did.
    controllers: ControllerMetrics,
}

impl Default for Supervisor {
    fn default() -> Self {
        Supervisor {
            tasks: Mutex::default(),
            leadership: Leadership::always(),
            panic_once: Mutex::default(),
            controllers: ControllerMetrics::default(),
        }
    }
}

impl Supervisor {
    /// A supervisor whose tasks named in `panic_once` panic on their first run, and whose
    /// leader-only tasks run while `leadership` says this server leads.
    pub fn new(panic_once: Vec<String>, leadership: Leadership) -> Arc<Self> {
        Arc::new(Supervisor {
            panic_once: Mutex::new(panic_once),
            leadership,
            ..Default::default()
        })
    }

    /// A supervisor of the only process, whose tasks named in `panic_once` panic on their
    /// first run.
    pub fn with_injected_panics(panic_once: Vec<String>) -> Arc<Self> {
        Self::new(panic_once, Leadership::always())
    }

    /// Whether this server leads, and who does if not.
    pub fn leadership(&self) -> &Leadership {
        &self.leadership
    }

    /// Like [`Supervisor::spawn`], but the task runs only while this server leads: it is
    /// built at the start of each term and dropped at its end, so what it was doing stops
    /// there (a controller's key being reconciled goes back to its queue).
    pub fn spawn_leading<F, Fut>(self: &Arc<Self>, name: &'static str, make: F)
    where
        F: Fn(u32) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let leadership = self.leadership.clone();
        let make = Arc::new(make);
        self.spawn_task(name, true, move |run| {
            let (leadership, make) = (leadership.clone(), make.clone());
            async move {
                loop {
                    let term = leadership.leading().await;
                    tokio::select! {
                        () = make(run) => return,
                        () = leadership.ended(&term) => {
                            tracing::info!(task = name, "stopped: this server's term ended");
                        }
                    }
                }
            }
        });
    }

    /// Runs the task `make` builds until the process ends. `make` is given the run's
    /// number (0 first), so that a restarted task can rebuild what a dead one left.
    pub fn spawn<F, Fut>(self: &Arc<Self>, name: &'static str, make: F)
    where
        F: Fn(u32) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.spawn_task(name, false, make);
    }

    fn spawn_task<F, Fut>(self: &Arc<Self>, name: &'static str, leading_only: bool, make: F)
    where
        F: Fn(u32) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.lock().insert(
            name,
            TaskStatus {
                name,
                running: true,
                leading_only,
                standby: false,
                restarts: 0,
                last_failure: None,
            },
        );
        let supervisor = self.clone();
        let backoff = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(30),
        };
        tokio::spawn(async move {
            for run in 0u32.. {
                let injected = supervisor.take_injected(name);
                let task: TaskFuture = Box::pin(make(run));
                let outcome = tokio::spawn(async move {
                    if injected {
                        panic!("injected panic in background task {name}");
                    }
                    task.await
                })
                .await;
                let why = match outcome {
                    Ok(()) => "it ended".to_string(),
                    Err(e) if e.is_panic() => {
                        format!("it panicked: {}", panic_message(&*e.into_panic()))
                    }
                    Err(e) => format!("it was cancelled: {e}"),
                };
                let restarts = {
                    let mut tasks = supervisor.lock();
                    let status = tasks.get_mut(name).expect("registered");
                    status.running = false;
                    status.restarts += 1;
                    status.last_failure = Some((Timestamp::now(), why.clone()));
                    status.restarts
                };
                let delay = backoff.delay(restarts);
                tracing::error!(
                    task = name,
                    restarts,
                    "background task stopped: {why}; restarting in {delay:?}"
                );
                tokio::time::sleep(delay).await;
                supervisor.lock().get_mut(name).expect("registered").running = true;
            }
        });
    }

    /// The controllers' passes, failures and queues.
    pub fn controllers(&self) -> &ControllerMetrics {
        &self.controllers
    }

    /// Every task's status, by name.
    pub fn statuses(&self) -> Vec<TaskStatus> {
        let following = self.leadership.term().is_none();
        self.lock()
            .values()
            .cloned()
            .map(|mut status| {
                status.standby = following && status.leading_only;
                status
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, TaskStatus>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take_injected(&self, name: &str) -> bool {
        let mut names = self.panic_once.lock().unwrap_or_else(|e| e.into_inner());
        let before = names.len();
        names.retain(|n| n != name);
        names.len() != before
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn a_task_that_panics_or_ends_is_started_again_and_reported() {
        let supervisor = Supervisor::with_injected_panics(vec!["flaky".into()]);
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        supervisor.spawn("flaky", move |run| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move {
                if run < 2 {
                    return; // ends: restarted too
                }
                std::future::pending::<()>().await
            }
        });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while runs.load(Ordering::SeqCst) < 3 {
            assert!(tokio::time::Instant::now() < deadline, "never restarted");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let status = &supervisor.statuses()[0];
        // Run 0 panicked (injected) before its body ran, run 1 ended, run 2 runs on.
        assert_eq!(status.restarts, 2, "{status:?}");
        assert!(status.running, "{status:?}");
        assert!(
            status.last_failure.as_ref().unwrap().1.contains("ended"),
            "{status:?}"
        );
    }

    /// Sets `flag` while it lives.
    struct Alive(Arc<std::sync::atomic::AtomicBool>);
    impl Drop for Alive {
        fn drop(&mut self) {
            self.0.store(false, Ordering::SeqCst);
        }
    }

    async fn wait_for(what: &str, done: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what} never happened"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_leading_task_runs_only_while_its_server_leads() {
        use super::super::leader::{Holder, Role, Term};
        use std::sync::atomic::AtomicBool;
        let term = || {
            Role::Leading(Arc::new(Term {
                holder: Holder {
                    identity: "here".into(),
                    since: Timestamp::now(),
                },
                fence: None,
            }))
        };
        let (role, leadership) = Leadership::by_hand(Role::Following(None));
        let supervisor = Supervisor::new(Vec::new(), leadership);
        let (runs, live) = (
            Arc::new(AtomicU32::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        supervisor.spawn_leading("leader-only", {
            let (runs, live) = (runs.clone(), live.clone());
            move |_| {
                runs.fetch_add(1, Ordering::SeqCst);
                let live = live.clone();
                async move {
                    live.store(true, Ordering::SeqCst);
                    let _alive = Alive(live);
                    std::future::pending::<()>().await
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 0, "it ran on a follower");
        assert!(supervisor.statuses()[0].standby);

        role.send_replace(term());
        wait_for("the first term's run", || live.load(Ordering::SeqCst)).await;
        assert!(!supervisor.statuses()[0].standby);

        role.send_replace(Role::Following(None));
        wait_for("the task dropped at the term's end", || {
            !live.load(Ordering::SeqCst)
        })
        .await;
        role.send_replace(term());
        wait_for("the next term's run", || live.load(Ordering::SeqCst)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        let status = &supervisor.statuses()[0];
        assert_eq!(status.restarts, 0, "a term's end is no failure: {status:?}");
    }
}
