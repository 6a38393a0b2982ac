//! The pod meter: follows every cluster's pods through its Kubernetes API and keeps each
//! pod's requests as a usage interval, from the second a kubelet started it to its end,
//! for the [`Meter`](super::Meter) to cut into records like a node's.
//!
//! Exactly once, as the node meter: a cluster's pod intervals change only in transactions
//! that also move the cluster's cursor (the resourceVersion its watch has applied,
//! `/usage/pods/{cluster uid}`) and hold only if the cursor is where the writer read it. A
//! restart resumes the watch from the cursor, so the changes it missed are replayed and
//! none is applied twice; a second server following the same cluster loses the race and
//! resumes from the winner's cursor. Replaying a change is harmless anyway: an interval
//! only ever gains an end.
//!
//! When the cluster's API no longer keeps the changes after the cursor (410 Gone, after an
//! API server restart or many changes), the meter lists the pods again: a pod it knew that
//! is gone by then ended at some point it cannot see, and is counted until the list, the
//! only bound it has.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use dialtone_kube::usage::{PodChange, PodUsage, WatchError, list_pods, pod_usage, watch_pods};
use dialtone_metering::{Interval, Owner, Size, Subject};
use dialtone_store::registry::{Registry, RegistryError};
use dialtone_store::{KeyRange, Revision, Store, Txn, TxnOutcome};
use dialtone_types::kinds::CLUSTER;
use dialtone_types::{Cluster, ResourcePath};
use futures::StreamExt;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{StoredInterval, interval_key, pod_intervals};
use crate::runtime::Informer;
use crate::runtime::backoff::Backoff;

const CURSORS: &str = "/usage/pods/";

/// How long one watch lasts before its cluster gives its turn to the next.
const WATCH_SECONDS: u32 = 60;

/// How many clusters' pods are watched at once. Each watch holds a connection (two file
/// descriptors, both ends being in this process for sim clusters); a fleet larger than
/// this is followed in turns, each cluster's watch resuming from its cursor, which the
/// cluster's API replays. Pods' ends come from their objects, so a change applied late
/// counts the same seconds.
const MAX_WATCHES: usize = 256;

/// How many intervals one transaction changes at most (etcd allows 128 operations).
const CHUNK: usize = 40;

/// Between failed watches of one cluster.
const RETRY: Backoff = Backoff {
    base: Duration::from_millis(500),
    cap: Duration::from_secs(60),
};

/// Where a cluster's pod watch has got to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Cursor {
    /// The cluster's resourceVersion after the last change applied.
    resource_version: String,
    /// The cluster's path, to tell when it is gone.
    cluster: String,
}

fn cursor_key(cluster_uid: &str) -> String {
    format!("{CURSORS}{cluster_uid}")
}

/// The pod meter.
pub struct PodMeter {
    pub registry: Registry,
    pub clients: Arc<dialtone_kube::Clients>,
    pub clusters: Arc<Informer>,
    pub clock: fn() -> Timestamp,
    /// How often it looks for clusters to follow (and for those gone).
    pub every: Duration,
}

/// What applying some pods' usage did.
enum Applied {
    /// No interval changed: nothing was written.
    Unchanged,
    /// Written, the cursor now at this revision.
    Wrote(Revision),
    /// Another writer moved the cursor first.
    Conflict,
}

impl PodMeter {
    /// Follows every cluster whose API is up, a task each, for as long as it is.
    pub async fn run(self: Arc<Self>) {
        let mut following = tokio::task::JoinSet::new();
        let mut tasks: HashMap<String, tokio::task::AbortHandle> = HashMap::new();
        let turns = Arc::new(tokio::sync::Semaphore::new(MAX_WATCHES));
        loop {
            while following.try_join_next().is_some() {}
            let mut wanted = HashSet::new();
            let clusters = self.clusters.snapshot();
            let known: HashSet<&str> = clusters
                .iter()
                .map(|(_, raw)| raw.metadata.uid.as_str())
                .collect();
            for (path, raw) in &clusters {
                let uid = raw.metadata.uid.clone();
                // A cluster homed in another region is metered there.
                if !self.registry.homed_here(&raw.metadata)
                    || self.clients.connection(&uid).is_none()
                {
                    continue;
                }
                wanted.insert(uid.clone());
                if tasks.get(&uid).is_some_and(|t| !t.is_finished()) {
                    continue;
                }
                let region = raw.spec["region"].as_str().unwrap_or_default().to_string();
                match self.owner(path, &uid, region).await {
                    Ok(Some(owner)) => {
                        let task = following.spawn(self.clone().follow(owner, turns.clone()));
                        tasks.insert(uid, task);
                    }
                    Ok(None) => {}
                    Err(e) => tracing::debug!(error = %e, "cannot tell whose pods these are"),
                }
            }
            tasks.retain(|uid, task| {
                let keep = wanted.contains(uid);
                if !keep {
                    task.abort();
                }
                keep
            });
            if let Err(e) = self.close_gone(&known).await {
                tracing::debug!(error = %e, "cannot close the pods of deleted clusters");
            }
            tokio::time::sleep(self.every).await;
        }
    }

    async fn owner(
        &self,
        path: &ResourcePath,
        uid: &str,
        region: String,
    ) -> Result<Option<Owner>, String> {
        let names: Vec<&str> = path.names().collect();
        let [org, folder, project, cluster] = names[..] else {
            return Ok(None);
        };
        let Some(org_uid) = self
            .registry
            .org_uid(org)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        Ok(Some(Owner {
            org_uid,
            org: org.to_string(),
            folder: folder.to_string(),
            project: project.to_string(),
            cluster: cluster.to_string(),
            cluster_uid: uid.to_string(),
            region,
        }))
    }

    /// Ends the pods of clusters that are gone: their API went with them, so they ended
    /// by the time the meter sees the cluster's object gone (within one `every`). A
    /// cluster the informer does not know (`known`) is looked up in the store before its
    /// pods are ended, as the informer may lag another server's create.
    async fn close_gone(&self, known: &HashSet<&str>) -> Result<(), String> {
        let store = self.registry.store().clone();
        let cursors = super::scan(&*store, &KeyRange::prefix(CURSORS), |kv| {
            let cursor: Cursor = serde_json::from_slice(&kv.value)
                .map_err(|e| format!("a corrupt pod cursor: {e}"))?;
            let uid = String::from_utf8_lossy(&kv.key[CURSORS.len()..]).to_string();
            Ok((uid, cursor, kv.mod_revision))
        })
        .await?;
        for (uid, cursor, mut revision) in cursors {
            if known.contains(uid.as_str()) {
                continue;
            }
            let Ok(path) = ResourcePath::parse(&cursor.cluster) else {
                continue;
            };
            let alive = match self.registry.get::<Cluster>(&path).await {
                Ok(object) => object.metadata.uid == uid,
                Err(RegistryError::NotFound(_)) => false,
                Err(e) => return Err(e.to_string()),
            };
            if alive {
                continue;
            }
            let now = (self.clock)();
            let open: Vec<Interval> = pod_intervals(&*store, &uid)
                .await?
                .into_iter()
                .map(|(stored, _)| stored.interval)
                .filter(|interval| interval.end.is_none())
                .collect();
            if let Some(first) = open.first() {
                let owner = first.owner.clone();
                let usages: Vec<PodUsage> = open
                    .into_iter()
                    .filter_map(|interval| ended(interval, now))
                    .collect();
                for chunk in usages.chunks(CHUNK) {
                    let version = &cursor.resource_version;
                    match apply(&*store, &owner, chunk.to_vec(), version, revision).await? {
                        Applied::Wrote(at) => revision = at,
                        Applied::Unchanged => {}
                        Applied::Conflict => return Ok(()),
                    }
                }
            }
            let key = cursor_key(&uid);
            store
                .txn(Txn::default().when(key.clone(), revision).delete(key))
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Follows one cluster's pods until its API is gone, a watch at a time, each in a turn
    /// of its own (first come, first served).
    async fn follow(self: Arc<Self>, owner: Owner, turns: Arc<tokio::sync::Semaphore>) {
        let mut failures = 0;
        while self.clients.connection(&owner.cluster_uid).is_some() {
            let Ok(turn) = turns.acquire().await else {
                return;
            };
            let watched = self.watch(&owner).await;
            drop(turn);
            match watched {
                Ok(()) => failures = 0,
                Err(e) => {
                    failures += 1;
                    tracing::debug!(cluster = %owner.cluster_path(), error = %e, failures, "cannot follow the cluster's pods");
                    tokio::time::sleep(RETRY.delay(failures)).await;
                }
            }
        }
    }

    /// One watch, from the cursor, until it ends; a list first when there is no cursor or
    /// the API has forgotten the changes after it.
    async fn watch(&self, owner: &Owner) -> Result<(), String> {
        let uid = &owner.cluster_uid;
        let client = self.clients.client(uid).map_err(|e| e.to_string())?;
        let store = self.registry.store().clone();
        let (cursor, revision) = read_cursor(&*store, uid).await?;
        let Some(version) = cursor else {
            return self.relist(&client, owner, revision).await;
        };
        let changes = match watch_pods(&client, &version, WATCH_SECONDS).await {
            Ok(changes) => changes,
            Err(WatchError::Expired) => return self.relist(&client, owner, revision).await,
            Err(e) => return Err(e.to_string()),
        };
        let clock = self.clock;
        let usages = changes.map(move |change| {
            change.map(|(change, version)| {
                let usage = match change {
                    PodChange::Applied(pod) => pod_usage(&pod, None),
                    PodChange::Deleted(pod) => pod_usage(&pod, Some(clock())),
                };
                (usage, version)
            })
        });
        match follow_changes(&*store, owner, usages, version.clone(), revision).await {
            Err(WatchError::Expired) => {
                let (_, revision) = read_cursor(&*store, uid).await?;
                self.relist(&client, owner, revision).await
            }
            Err(e) => Err(e.to_string()),
            Ok(_) => Ok(()),
        }
    }

    /// Lists the cluster's pods and applies what they say; a pod known to be running and
    /// not listed ended by now.
    async fn relist(
        &self,
        client: &dialtone_kube::Client,
        owner: &Owner,
        mut revision: Revision,
    ) -> Result<(), String> {
        let (pods, version) = list_pods(client).await.map_err(|e| e.to_string())?;
        let store = self.registry.store().clone();
        let now = (self.clock)();
        let mut usages: Vec<PodUsage> = pods.iter().map(|p| pod_usage(p, None)).collect();
        let listed: HashSet<String> = usages.iter().map(|u| u.uid.clone()).collect();
        for (stored, _) in pod_intervals(&*store, &owner.cluster_uid).await? {
            let interval = stored.interval;
            let gone =
                matches!(&interval.subject, Subject::Pod { uid, .. } if !listed.contains(uid));
            if gone && interval.end.is_none() {
                usages.extend(ended(interval, now));
            }
        }
        if usages.is_empty() {
            return write_cursor(&*store, owner, &version, revision).await;
        }
        let chunks: Vec<Vec<PodUsage>> = usages.chunks(CHUNK).map(<[_]>::to_vec).collect();
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.into_iter().enumerate() {
            // Only the last chunk moves the cursor on: a crash before it lists again.
            let at = if i == last {
                version.clone()
            } else {
                read_cursor(&*store, &owner.cluster_uid)
                    .await?
                    .0
                    .unwrap_or_default()
            };
            match apply(&*store, owner, chunk, &at, revision).await? {
                Applied::Wrote(now_at) => revision = now_at,
                Applied::Unchanged if i == last => {
                    write_cursor(&*store, owner, &version, revision).await?
                }
                Applied::Unchanged => {}
                Applied::Conflict => return Ok(()),
            }
        }
        Ok(())
    }
}

/// What `usage` measures.
fn subject_of(usage: &PodUsage) -> Subject {
    Subject::Pod {
        uid: usage.uid.clone(),
        namespace: usage.namespace.clone(),
        name: usage.name.clone(),
    }
}

/// The usage that ends the pod `interval` measures at `end`.
fn ended(interval: Interval, end: Timestamp) -> Option<PodUsage> {
    let Subject::Pod {
        uid,
        namespace,
        name,
    } = interval.subject
    else {
        return None;
    };
    Some(PodUsage {
        uid,
        namespace,
        name,
        millicpu: interval.size.millicpu,
        memory_mib: interval.size.memory_mib,
        started: Some(interval.start),
        ended: Some(end),
    })
}

/// The cursor at `version` of the cluster `owner` names.
fn cursor_at(owner: &Owner, version: &str) -> Cursor {
    let names = [&owner.org, &owner.folder, &owner.project, &owner.cluster].map(String::clone);
    Cursor {
        resource_version: version.to_string(),
        cluster: ResourcePath::from_names(&CLUSTER, &names)
            .map(|p| p.to_string())
            .unwrap_or_default(),
    }
}

/// How following a cluster's changes ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Followed {
    /// The changes ran out (the watch ended); the cursor is after the last.
    Ended,
    /// Another writer moved the cursor first: follow again from where it is.
    Overtaken,
}

/// Applies a cluster's pod `changes` (each with the resourceVersion it brought), which
/// follow `version`, where the cursor stood at `revision`: every change to an interval
/// moves the cursor with it, in one guarded transaction; changes that change no interval
/// move it once the changes end.
pub async fn follow_changes<S>(
    store: &dyn Store,
    owner: &Owner,
    changes: S,
    version: String,
    mut revision: Revision,
) -> Result<Followed, WatchError>
where
    S: futures::Stream<Item = Result<(PodUsage, String), WatchError>>,
{
    let failed = |e: String| WatchError::Kube(dialtone_kube::KubeError::Config(e));
    let mut changes = std::pin::pin!(changes);
    let mut seen = version.clone();
    while let Some(change) = changes.next().await {
        let (usage, at) = change?;
        match apply(store, owner, vec![usage], &at, revision)
            .await
            .map_err(failed)?
        {
            Applied::Unchanged => {}
            Applied::Wrote(now_at) => revision = now_at,
            Applied::Conflict => return Ok(Followed::Overtaken),
        }
        seen = at;
    }
    if seen != version {
        write_cursor(store, owner, &seen, revision)
            .await
            .map_err(failed)?;
    }
    Ok(Followed::Ended)
}

/// Where the cluster's pod watch has got to (`None`: nowhere yet), and the cursor's
/// revision (0 when there is none).
pub async fn read_cursor(
    store: &dyn Store,
    cluster_uid: &str,
) -> Result<(Option<String>, Revision), String> {
    let (cursor, revision) = stored_cursor(store, cluster_uid).await?;
    Ok((cursor.map(|c| c.resource_version), revision))
}

async fn stored_cursor(
    store: &dyn Store,
    cluster_uid: &str,
) -> Result<(Option<Cursor>, Revision), String> {
    match store
        .get(cursor_key(cluster_uid).as_bytes())
        .await
        .map_err(|e| e.to_string())?
    {
        Some(kv) => {
            let cursor = serde_json::from_slice(&kv.value)
                .map_err(|e| format!("a corrupt pod cursor: {e}"))?;
            Ok((Some(cursor), kv.mod_revision))
        }
        None => Ok((None, 0)),
    }
}

async fn write_cursor(
    store: &dyn Store,
    owner: &Owner,
    version: &str,
    revision: Revision,
) -> Result<(), String> {
    let txn = with_cursor(Txn::default(), owner, version, revision);
    store.txn(txn).await.map_err(|e| e.to_string())?;
    Ok(())
}

/// `txn` moving the cursor of `owner`'s cluster to `version`, if it is still at `revision`.
fn with_cursor(txn: Txn, owner: &Owner, version: &str, revision: Revision) -> Txn {
    let key = cursor_key(&owner.cluster_uid);
    let cursor = cursor_at(owner, version);
    txn.when(key.clone(), revision).put(
        key,
        serde_json::to_vec(&cursor).expect("a cursor serializes"),
    )
}

/// What `usage` changes of its pod's interval: a new interval, or an end; `None` when
/// nothing. A pod is metered from its start (a kubelet took it) and holds at least its
/// first second: the API's times are whole seconds, so one started and deleted within a
/// second would otherwise hold none.
fn changed(
    usage: &PodUsage,
    current: Option<&StoredInterval>,
    owner: &Owner,
) -> Option<StoredInterval> {
    // The end of the second the pod started in, not a second after a start with a
    // fraction: that would count a second it never began.
    let at_least_a_second = |start: Timestamp, end: Timestamp| {
        end.max(Timestamp::from_second(start.as_second() + 1).unwrap_or(end))
    };
    match current {
        Some(current) => {
            let end = usage.ended.filter(|_| current.interval.end.is_none())?;
            let mut next = current.clone();
            next.interval.end = Some(at_least_a_second(current.interval.start, end));
            Some(next)
        }
        None => {
            let start = usage.started?;
            if usage.millicpu == 0 && usage.memory_mib == 0 {
                return None;
            }
            Some(StoredInterval {
                interval: Interval {
                    owner: owner.clone(),
                    subject: subject_of(usage),
                    size: Size {
                        millicpu: usage.millicpu,
                        memory_mib: usage.memory_mib,
                    },
                    start,
                    end: usage.ended.map(|end| at_least_a_second(start, end)),
                },
                recorded_until: start.as_second(),
            })
        }
    }
}

/// Applies `usages` to their pods' intervals and moves the cursor to `version`, in one
/// transaction that holds only if the cursor is still at `revision`.
async fn apply(
    store: &dyn Store,
    owner: &Owner,
    usages: Vec<PodUsage>,
    version: &str,
    revision: Revision,
) -> Result<Applied, String> {
    let mut txn = Txn::default();
    let mut changes = 0;
    let mut touched = BTreeSet::new();
    for usage in usages {
        let key = interval_key(&owner.cluster_uid, &subject_of(&usage));
        if !touched.insert(key.clone()) {
            continue;
        }
        let (current, at) = match store.get(key.as_bytes()).await.map_err(|e| e.to_string())? {
            Some(kv) => (
                Some(
                    serde_json::from_slice::<StoredInterval>(&kv.value)
                        .map_err(|e| format!("a corrupt usage interval: {e}"))?,
                ),
                kv.mod_revision,
            ),
            None => (None, 0),
        };
        if let Some(next) = changed(&usage, current.as_ref(), owner) {
            txn = txn.when(key.clone(), at).put(
                key,
                serde_json::to_vec(&next).expect("an interval serializes"),
            );
            changes += 1;
        }
    }
    if changes == 0 {
        return Ok(Applied::Unchanged);
    }
    txn = with_cursor(txn, owner, version, revision);
    match store.txn(txn).await.map_err(|e| e.to_string())? {
        TxnOutcome::Committed { revision } => Ok(Applied::Wrote(revision)),
        TxnOutcome::Conflict => Ok(Applied::Conflict),
    }
}
