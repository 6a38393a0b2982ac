//! Leader election on store leases, as etcd's election recipe has it: the leader is the
//! server whose key `/leaders/{name}` exists, written only where it was absent and held by a
//! lease the leader keeps alive. When the leader dies its lease expires and the store
//! deletes the key; the servers watching it campaign again and one wins.
//!
//! A term is the key's mod revision. A [`FencedStore`] adds "the key still has that
//! revision" to every transaction the leader's controllers make, so a deposed leader (a
//! paused process, a cut-off network) cannot write once another has taken over, whatever
//! its clock says. The leader also stops its controllers when it cannot renew the lease
//! in time, before the store could have let it expire.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

use dialtone_store::{
    Compare, EventKind, KeyRange, LeaseId, RangeResult, Revision, Store, StoreError, Txn,
    TxnOutcome, WatchStream,
};

use super::backoff::Backoff;

/// Who holds a leadership, as its key records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The server's identity (`--server-id`).
    pub identity: String,
    /// When it was elected.
    pub since: Timestamp,
}

/// One leader's term.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Term {
    pub holder: Holder,
    /// The compare every fenced write carries; `None` for a process that is the only one
    /// (tests, and stores no other process can open).
    pub fence: Option<Compare>,
}

/// What this server is, for one election.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// It leads: its controllers run.
    Leading(Arc<Term>),
    /// Another leads (`None` while no one does, or it cannot tell).
    Following(Option<Holder>),
}

/// A view of an election's outcome for this server, shared by everything that runs only
/// on the leader.
#[derive(Clone)]
pub struct Leadership {
    role: watch::Receiver<Role>,
}

impl Leadership {
    /// Leading for good, with no fence: for a process that is the only one.
    pub fn always() -> Self {
        let term = Term {
            holder: Holder {
                identity: "this process".into(),
                since: Timestamp::now(),
            },
            fence: None,
        };
        let (_, role) = watch::channel(Role::Leading(Arc::new(term)));
        Leadership { role }
    }

    /// A leadership that the test holding the sender moves by hand.
    #[cfg(test)]
    pub(crate) fn by_hand(role: Role) -> (watch::Sender<Role>, Self) {
        let (sender, role) = watch::channel(role);
        (sender, Leadership { role })
    }

    pub fn role(&self) -> Role {
        self.role.borrow().clone()
    }

    /// This server's term, while it leads.
    pub fn term(&self) -> Option<Arc<Term>> {
        match &*self.role.borrow() {
            Role::Leading(term) => Some(term.clone()),
            Role::Following(_) => None,
        }
    }

    /// Waits until this server leads; its term.
    pub async fn leading(&self) -> Arc<Term> {
        let mut role = self.role.clone();
        let term = match role.wait_for(|r| matches!(r, Role::Leading(_))).await {
            Ok(role) => match &*role {
                Role::Leading(term) => Some(term.clone()),
                Role::Following(_) => None,
            },
            Err(_) => None,
        };
        match term {
            Some(term) => term,
            // The election is gone for good: this server never leads again.
            None => std::future::pending().await,
        }
    }

    /// Waits until `term` ends on this server.
    pub async fn ended(&self, term: &Arc<Term>) {
        let mut role = self.role.clone();
        let ended = role
            .wait_for(|r| !matches!(r, Role::Leading(current) if Arc::ptr_eq(current, term)))
            .await
            .is_ok();
        if !ended {
            // The election is gone for good, leaving the term as it was.
            std::future::pending().await
        }
    }
}

/// Campaigns for one leadership, for as long as it runs (a supervised task).
pub struct Election {
    store: Arc<dyn Store>,
    key: Vec<u8>,
    identity: String,
    ttl: Duration,
    role: watch::Sender<Role>,
    /// Set by [`Election::resign`]: this server campaigns no more.
    resigned: AtomicBool,
}

impl Election {
    /// An election for `name` that this server (`identity`) enters with leases of `ttl`,
    /// and the view of it the server's leader-only tasks share.
    pub fn new(
        store: Arc<dyn Store>,
        name: &str,
        identity: String,
        ttl: Duration,
    ) -> (Arc<Self>, Leadership) {
        let (role, view) = watch::channel(Role::Following(None));
        let election = Arc::new(Election {
            store,
            key: format!("/leaders/{name}").into_bytes(),
            identity,
            ttl,
            role,
            resigned: AtomicBool::new(false),
        });
        (election, Leadership { role: view })
    }

    /// Campaigns, leads while it can, and campaigns again, for ever. Store failures are
    /// retried with backoff; meanwhile this server neither leads nor knows who does.
    pub async fn run(self: Arc<Self>) {
        let backoff = Backoff {
            base: Duration::from_millis(200),
            cap: Duration::from_secs(5),
        };
        let mut failures = 0;
        loop {
            if self.resigned.load(Ordering::SeqCst) {
                return std::future::pending().await;
            }
            match self.campaign().await {
                Ok(()) => failures = 0,
                Err(e) => {
                    self.role.send_replace(Role::Following(None));
                    failures += 1;
                    let wait = backoff.delay(failures);
                    tracing::warn!(election = %self.name(), "cannot campaign: {e}; again in {wait:?}");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Gives the leadership up at once and campaigns no more (a graceful shutdown), so the
    /// next leader need not wait for the lease to expire.
    pub async fn resign(&self) {
        self.resigned.store(true, Ordering::SeqCst);
        if let Role::Leading(term) = self.role.send_replace(Role::Following(None))
            && let Some(fence) = &term.fence
        {
            // Deleting the key only if it is still this term's, so a successor is safe.
            let txn = Txn::default()
                .when(fence.key.clone(), fence.mod_revision)
                .delete(fence.key.clone());
            if let Err(e) = self.store.txn(txn).await {
                tracing::warn!(election = %self.name(), "cannot resign: {e}");
            }
        }
    }

    fn name(&self) -> String {
        String::from_utf8_lossy(&self.key).into_owned()
    }

    /// One round: win and lead until the term ends, or follow until the leader's key goes.
    async fn campaign(&self) -> Result<(), StoreError> {
        let asked = Instant::now();
        let lease = self.store.grant_lease(self.ttl).await?;
        let holder = Holder {
            identity: self.identity.clone(),
            since: Timestamp::now(),
        };
        let record = serde_json::to_vec(&holder).expect("a holder encodes");
        let claim =
            Txn::default()
                .when(self.key.clone(), 0)
                .put_leased(self.key.clone(), record, lease);
        match self.store.txn(claim).await {
            Ok(TxnOutcome::Committed { revision }) => {
                let term = Arc::new(Term {
                    holder,
                    fence: Some(Compare {
                        key: self.key.clone(),
                        mod_revision: revision,
                    }),
                });
                tracing::info!(election = %self.name(), revision, "elected leader");
                self.role.send_replace(Role::Leading(term));
                let why = self.lead(lease, asked, revision).await;
                self.role.send_replace(Role::Following(None));
                tracing::warn!(election = %self.name(), "leadership ended: {why}");
                // If the lease still lives, ending it lets the next leader in at once.
                let _ = self.store.revoke_lease(lease).await;
                Ok(())
            }
            Ok(TxnOutcome::Conflict) => {
                let _ = self.store.revoke_lease(lease).await;
                self.follow().await
            }
            Err(e) => {
                let _ = self.store.revoke_lease(lease).await;
                Err(e)
            }
        }
    }

    /// Keeps the lease alive until it cannot be sure to hold it; why it stopped.
    async fn lead(&self, lease: LeaseId, asked: Instant, revision: Revision) -> String {
        let every = self.ttl / 3;
        // The store counts the lease's time from when it got the grant or keep-alive,
        // which is after it was sent: measured from the sending, the lease lasts at least
        // until `held_until`.
        let mut held_until = asked + self.ttl;
        let mut gone = match self
            .store
            .watch(KeyRange::key(self.key.clone()), revision + 1)
            .await
        {
            Ok(watch) => watch,
            Err(e) => return format!("cannot watch the leader's key: {e}"),
        };
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                watched = key_deleted(&mut gone) => match watched {
                    Watched::Deleted => return "the leader's key was deleted".into(),
                    // A watch may fail while the term goes on (a store member died): look
                    // at the key itself, then watch again; the keep-alive decides meanwhile.
                    Watched::Failed(e) => {
                        tracing::warn!(election = %self.name(), "{e}; watching again");
                        match self.store.range(&KeyRange::key(self.key.clone()), None, 1).await {
                            Ok(now) if now.kvs.first().is_none_or(|kv| kv.mod_revision != revision) => {
                                return "the leader's key was deleted".into();
                            }
                            Ok(now) => {
                                gone = self
                                    .store
                                    .watch(KeyRange::key(self.key.clone()), now.revision + 1)
                                    .await
                                    .unwrap_or_else(|_| Box::pin(futures::stream::pending()));
                            }
                            Err(_) => gone = Box::pin(futures::stream::pending()),
                        }
                    }
                },
            }
            if self.resigned.load(Ordering::SeqCst) {
                return "this server resigned".into();
            }
            let sent = Instant::now();
            match tokio::time::timeout(every, self.store.keep_alive(lease)).await {
                Ok(Ok(())) => held_until = sent + self.ttl,
                Ok(Err(StoreError::LeaseNotFound(_))) => return "the lease expired".into(),
                Ok(Err(e)) => {
                    tracing::warn!(election = %self.name(), "cannot renew the lease: {e}")
                }
                Err(_) => tracing::warn!(election = %self.name(), "renewing the lease timed out"),
            }
            // Stop a whole renewal period before the store may end the lease, so that no
            // controller acts past it.
            if Instant::now() + every >= held_until {
                return "the lease could not be renewed in time".into();
            }
        }
    }

    /// Follows the current leader until its key goes.
    async fn follow(&self) -> Result<(), StoreError> {
        let RangeResult { kvs, revision, .. } = self
            .store
            .range(&KeyRange::key(self.key.clone()), None, 1)
            .await?;
        let Some(kv) = kvs.into_iter().next() else {
            return Ok(()); // gone meanwhile: campaign again
        };
        let holder = serde_json::from_slice::<Holder>(&kv.value).ok();
        if let Some(holder) = &holder {
            tracing::info!(election = %self.name(), leader = %holder.identity, "following");
        }
        self.role.send_replace(Role::Following(holder));
        let mut watch = self
            .store
            .watch(KeyRange::key(self.key.clone()), revision + 1)
            .await?;
        // Deleted, or the watch failed: either way, campaign again (and follow again if
        // the leader is still there).
        key_deleted(&mut watch).await;
        Ok(())
    }
}

/// How a watch of the leader's key ended.
enum Watched {
    Deleted,
    Failed(String),
}

/// Waits until the watched key is deleted, or the watch fails.
async fn key_deleted(watch: &mut WatchStream) -> Watched {
    while let Some(event) = watch.next().await {
        match event {
            Ok(event) if event.kind == EventKind::Delete => return Watched::Deleted,
            Ok(_) => {}
            Err(e) => return Watched::Failed(format!("the watch of the leader's key failed: {e}")),
        }
    }
    Watched::Failed("the watch of the leader's key ended".into())
}

/// The store as the leader's controllers write to it: every transaction is fenced by the
/// current term, and refused with `NotLeader` when this server does not lead or its term
/// has ended in the store.
pub struct FencedStore {
    inner: Arc<dyn Store>,
    leadership: Leadership,
}

impl FencedStore {
    pub fn new(inner: Arc<dyn Store>, leadership: Leadership) -> Self {
        FencedStore { inner, leadership }
    }
}

#[async_trait::async_trait]
impl Store for FencedStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn range(
        &self,
        range: &KeyRange,
        at: Option<Revision>,
        limit: usize,
    ) -> dialtone_store::Result<RangeResult> {
        self.inner.range(range, at, limit).await
    }

    async fn txn(&self, mut txn: Txn) -> dialtone_store::Result<TxnOutcome> {
        let Some(term) = self.leadership.term() else {
            return Err(StoreError::NotLeader(
                "this server does not lead its region's controllers".into(),
            ));
        };
        let Some(fence) = &term.fence else {
            return self.inner.txn(txn).await;
        };
        txn.compares.push(fence.clone());
        let outcome = self.inner.txn(txn).await?;
        if outcome == TxnOutcome::Conflict {
            let current = self.inner.get(&fence.key).await?;
            if current.is_none_or(|kv| kv.mod_revision != fence.mod_revision) {
                return Err(StoreError::NotLeader(format!(
                    "the term of {} (since {}) has ended",
                    term.holder.identity, term.holder.since
                )));
            }
        }
        Ok(outcome)
    }

    async fn watch(&self, range: KeyRange, from: Revision) -> dialtone_store::Result<WatchStream> {
        self.inner.watch(range, from).await
    }

    async fn compact(&self, revision: Revision) -> dialtone_store::Result<()> {
        if self.leadership.term().is_none() {
            return Err(StoreError::NotLeader(
                "only the leader compacts the store".into(),
            ));
        }
        self.inner.compact(revision).await
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

#[cfg(test)]
mod tests {
    use super::*;
    use dialtone_store::EmbeddedStore;

    async fn wait_for(what: &str, mut done: impl FnMut() -> bool) -> Duration {
        let started = Instant::now();
        while !done() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{what} never happened"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        started.elapsed()
    }

    /// Two servers campaign over one store: one leads and writes, the other's writes are
    /// refused. The leader stops (as if paused, still believing it leads): within the
    /// lease's time the other leads, and the old leader's writes are refused by the fence.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_leads_and_a_deposed_leader_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(&dir.path().join("s.redb")).unwrap());
        let ttl = Duration::from_secs(1);
        let (a, a_view) = Election::new(store.clone(), "test", "a".into(), ttl);
        let (b, b_view) = Election::new(store.clone(), "test", "b".into(), ttl);
        let a_task = tokio::spawn(a.run());
        wait_for("a's election", || a_view.term().is_some()).await;
        let b_task = tokio::spawn(b.run());
        wait_for(
            "b following a",
            || matches!(b_view.role(), Role::Following(Some(ref h)) if h.identity == "a"),
        )
        .await;

        let (a_store, b_store) = (
            FencedStore::new(store.clone(), a_view.clone()),
            FencedStore::new(store.clone(), b_view.clone()),
        );
        let write = |value: &'static str| Txn::default().put("/x", value);
        assert!(matches!(
            a_store.txn(write("a1")).await,
            Ok(TxnOutcome::Committed { .. })
        ));
        assert!(matches!(
            b_store.txn(write("b1")).await,
            Err(StoreError::NotLeader(_))
        ));
        // Held for several lease times, the leadership stays.
        tokio::time::sleep(ttl * 3).await;
        assert!(a_view.term().is_some() && b_view.term().is_none());

        // `a` stops renewing, but its view still says it leads.
        a_task.abort();
        let handover = wait_for("b's election", || b_view.term().is_some()).await;
        assert!(handover <= ttl * 2, "handover took {handover:?}");
        assert!(a_view.term().is_some(), "a still believes it leads");
        let refused = a_store.txn(write("a2")).await;
        assert!(
            matches!(refused, Err(StoreError::NotLeader(_))),
            "{refused:?}"
        );
        assert!(matches!(
            b_store.txn(write("b2")).await,
            Ok(TxnOutcome::Committed { .. })
        ));
        let value = store.get(b"/x").await.unwrap().unwrap().value;
        assert_eq!(value, b"b2");
        b_task.abort();
    }

    /// A server that resigns hands over at once and never campaigns again, even when no
    /// one else is left.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_resigned_server_hands_over_at_once_and_campaigns_no_more() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(&dir.path().join("s.redb")).unwrap());
        let ttl = Duration::from_secs(2);
        let (a, a_view) = Election::new(store.clone(), "test", "a".into(), ttl);
        let (b, b_view) = Election::new(store.clone(), "test", "b".into(), ttl);
        let a_task = tokio::spawn(a.clone().run());
        wait_for("a's election", || a_view.term().is_some()).await;
        let b_task = tokio::spawn(b.run());
        a.resign().await;
        let handover = wait_for("b's election", || b_view.term().is_some()).await;
        assert!(
            handover < ttl / 2,
            "a resignation took {handover:?} to hand over"
        );
        b_task.abort();
        tokio::time::sleep(ttl * 3).await;
        assert!(
            a_view.term().is_none(),
            "a resigned server campaigned again"
        );
        a_task.abort();
    }
}
