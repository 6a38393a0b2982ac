//! The embedded backend: redb in the data directory.
//!
//! Layout: `latest` holds each live key's current record (fast reads at the head);
//! `history` holds every version of every key by `(key, revision)`, with tombstones, for reads
//! at older revisions; `log` holds the events of each revision for watchers; `meta` holds the
//! head and compacted revisions. All four change in one redb transaction.
//!
//! One writer thread applies transactions. It takes every request that is waiting, applies
//! them in one redb write transaction (each at its own revision), commits once with fsync,
//! and only then answers them: group commit, so concurrent writers share the cost of one
//! fsync and no write is acknowledged before it is durable.
//!
//! Watchers read a cursor over the log: the recent revisions from an in-memory window, older
//! ones from disk. A watcher can therefore never skip or repeat an event.
//!
//! Leases live in memory, since only this process can hold the file open; `leased` records
//! which lease each leased key lives by. The writer thread ends expired leases (deleting
//! their keys as one transaction), and on opening it deletes every key a lease of an
//! earlier process held, as etcd does when such a lease expires.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock, mpsc};
use std::time::{Duration, Instant};

use redb::{Database, ReadableDatabase, ReadableTable, Table, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};

use crate::{
    Event, EventKind, KeyRange, KeyValue, LeaseId, Op, RangeResult, Result, Revision, Store,
    StoreError, Txn, TxnOutcome, WatchStream,
};

const LATEST: TableDefinition<&[u8], &[u8]> = TableDefinition::new("latest");
const HISTORY: TableDefinition<(&[u8], i64), &[u8]> = TableDefinition::new("history");
const LOG: TableDefinition<i64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, i64> = TableDefinition::new("meta");
const LEASED: TableDefinition<&[u8], i64> = TableDefinition::new("leased");
const HEAD: &str = "revision";
const COMPACTED: &str = "compacted";

/// How many revisions of events watchers can read from memory.
const RECENT_REVISIONS: usize = 16_384;
/// How many queued transactions one commit may carry.
const MAX_GROUP: usize = 1024;
/// How often the writer looks for expired leases when no write wakes it.
const LEASE_CHECK: Duration = Duration::from_millis(100);

/// A key's state at one revision, as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Record {
    create_revision: Revision,
    mod_revision: Revision,
    version: i64,
    value: Vec<u8>,
}

impl Record {
    fn into_kv(self, key: Vec<u8>) -> KeyValue {
        KeyValue {
            key,
            value: self.value,
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
        }
    }
}

enum WriteRequest {
    Txn(Txn, oneshot::Sender<Result<TxnOutcome>>),
    Compact(Revision, oneshot::Sender<Result<()>>),
    Revoke(LeaseId, oneshot::Sender<()>),
}

/// A live lease: how long it lasts after a keep-alive, and when it ends without one.
struct Lease {
    ttl: Duration,
    deadline: Instant,
}

struct Shared {
    db: Database,
    leases: Mutex<HashMap<LeaseId, Lease>>,
    next_lease: AtomicI64,
    /// Contiguous revisions, oldest first.
    recent: RwLock<VecDeque<(Revision, Arc<[Event]>)>>,
    head: watch::Sender<Revision>,
    compacted: AtomicI64,
}

/// The store in one redb file (see the module documentation).
pub struct EmbeddedStore {
    shared: Arc<Shared>,
    writer: mpsc::Sender<WriteRequest>,
}

fn internal(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(e.to_string())
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    postcard::to_allocvec(value).map_err(internal)
}

fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Internal(format!("corrupt record: {e}")))
}

impl Shared {
    /// The events of revisions `next` onwards, at most `max` revisions of them.
    fn events_from(&self, next: Revision, max: usize) -> Result<Vec<(Revision, Arc<[Event]>)>> {
        let compacted = self.compacted.load(Ordering::Acquire);
        if next < compacted {
            return Err(StoreError::Compacted {
                requested: next,
                compacted,
            });
        }
        {
            let recent = self.recent.read().expect("lock poisoned");
            if let Some((first, _)) = recent.front()
                && *first <= next
            {
                let skip = (next - first) as usize;
                return Ok(recent.iter().skip(skip).take(max).cloned().collect());
            }
        }
        let rtx = self.db.begin_read().map_err(internal)?;
        let log = rtx.open_table(LOG).map_err(internal)?;
        let mut out = Vec::new();
        for entry in log.range(next..).map_err(internal)?.take(max) {
            let (rev, events) = entry.map_err(internal)?;
            let events: Vec<Event> = decode(events.value())?;
            out.push((rev.value(), Arc::from(events)));
        }
        Ok(out)
    }
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `path`, a file. Only one process can hold it open.
    pub fn open(path: &Path) -> Result<Self> {
        let db = Database::create(path)
            .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
        let wtx = db.begin_write().map_err(internal)?;
        let (head, compacted) = {
            wtx.open_table(LATEST).map_err(internal)?;
            wtx.open_table(HISTORY).map_err(internal)?;
            wtx.open_table(LOG).map_err(internal)?;
            wtx.open_table(LEASED).map_err(internal)?;
            let meta = wtx.open_table(META).map_err(internal)?;
            let read = |k| meta.get(k).map(|v| v.map_or(0, |v| v.value()));
            (
                read(HEAD).map_err(internal)?,
                read(COMPACTED).map_err(internal)?,
            )
        };
        wtx.commit().map_err(internal)?;
        // Ids that no earlier process's lease had, so a stale id never names a new lease.
        let first_lease = jiff::Timestamp::now().as_nanosecond() as i64 & i64::MAX;
        let shared = Arc::new(Shared {
            db,
            leases: Mutex::default(),
            next_lease: AtomicI64::new(first_lease.max(1)),
            recent: RwLock::new(VecDeque::new()),
            head: watch::Sender::new(head),
            compacted: AtomicI64::new(compacted),
        });
        let (writer, requests) = mpsc::channel();
        let for_writer = shared.clone();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || write_loop(for_writer, requests, head))
            .map_err(internal)?;
        Ok(EmbeddedStore { shared, writer })
    }

    fn range_sync(
        &self,
        range: &KeyRange,
        at: Option<Revision>,
        limit: usize,
    ) -> Result<RangeResult> {
        let rtx = self.shared.db.begin_read().map_err(internal)?;
        let meta = rtx.open_table(META).map_err(internal)?;
        let read = |k| {
            meta.get(k)
                .map(|v| v.map_or(0, |v| v.value()))
                .map_err(internal)
        };
        let (head, compacted) = (read(HEAD)?, read(COMPACTED)?);
        let at = at.filter(|r| *r > 0).unwrap_or(head);
        if at > head {
            return Err(StoreError::FutureRevision {
                requested: at,
                current: head,
            });
        }
        if at < compacted {
            return Err(StoreError::Compacted {
                requested: at,
                compacted,
            });
        }
        let limit = if limit == 0 { usize::MAX } else { limit };
        let mut kvs = Vec::new();
        let mut more = false;
        if at == head {
            let latest = rtx.open_table(LATEST).map_err(internal)?;
            let iter = match &range.end {
                Some(end) => latest.range(range.start.as_slice()..end.as_slice()),
                None => latest.range(range.start.as_slice()..),
            }
            .map_err(internal)?;
            for entry in iter {
                let (k, v) = entry.map_err(internal)?;
                if kvs.len() == limit {
                    more = true;
                    break;
                }
                kvs.push(decode::<Record>(v.value())?.into_kv(k.value().to_vec()));
            }
        } else {
            let history = rtx.open_table(HISTORY).map_err(internal)?;
            let start = (range.start.as_slice(), i64::MIN);
            let iter = match &range.end {
                Some(end) => history.range(start..(end.as_slice(), i64::MIN)),
                None => history.range(start..),
            }
            .map_err(internal)?;
            // Entries come by key, then revision: the last one at or before `at` wins.
            let mut current: Option<(Vec<u8>, Option<Record>)> = None;
            for entry in iter {
                let (k, v) = entry.map_err(internal)?;
                let (key, revision) = k.value();
                if current.as_ref().is_some_and(|(ck, _)| ck.as_slice() != key)
                    && let Some((ck, Some(record))) = current.take()
                {
                    if kvs.len() == limit {
                        more = true;
                        break;
                    }
                    kvs.push(record.into_kv(ck));
                }
                if revision <= at {
                    current = Some((key.to_vec(), decode::<Option<Record>>(v.value())?));
                } else if current.is_none() {
                    current = Some((key.to_vec(), None));
                }
            }
            if !more && let Some((ck, Some(record))) = current {
                if kvs.len() == limit {
                    more = true;
                } else {
                    kvs.push(record.into_kv(ck));
                }
            }
        }
        Ok(RangeResult {
            kvs,
            more,
            revision: at,
        })
    }

    async fn send(&self, request: WriteRequest) -> Result<()> {
        self.writer
            .send(request)
            .map_err(|_| StoreError::Unavailable("the store writer has stopped".into()))
    }
}

fn closed(_: oneshot::error::RecvError) -> StoreError {
    StoreError::Unavailable("the store writer has stopped".into())
}

#[async_trait::async_trait]
impl Store for EmbeddedStore {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    async fn range(
        &self,
        range: &KeyRange,
        at: Option<Revision>,
        limit: usize,
    ) -> Result<RangeResult> {
        // redb reads hit its page cache and are short; they run on the caller's thread.
        self.range_sync(range, at, limit)
    }

    async fn txn(&self, txn: Txn) -> Result<TxnOutcome> {
        let (reply, outcome) = oneshot::channel();
        self.send(WriteRequest::Txn(txn, reply)).await?;
        outcome.await.map_err(closed)?
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let (reply, outcome) = oneshot::channel();
        self.send(WriteRequest::Compact(revision, reply)).await?;
        outcome.await.map_err(closed)?
    }

    async fn revision(&self) -> Result<Revision> {
        Ok(*self.shared.head.borrow())
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId> {
        let id = self.shared.next_lease.fetch_add(1, Ordering::Relaxed);
        let deadline = Instant::now() + ttl;
        self.shared
            .lock_leases()
            .insert(id, Lease { ttl, deadline });
        Ok(id)
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<()> {
        let now = Instant::now();
        match self.shared.lock_leases().get_mut(&lease) {
            Some(held) if held.deadline > now => {
                held.deadline = now + held.ttl;
                Ok(())
            }
            _ => Err(StoreError::LeaseNotFound(lease)),
        }
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<()> {
        let (reply, done) = oneshot::channel();
        self.send(WriteRequest::Revoke(lease, reply)).await?;
        done.await.map_err(closed)
    }

    async fn watch(&self, range: KeyRange, from: Revision) -> Result<WatchStream> {
        let compacted = self.shared.compacted.load(Ordering::Acquire);
        if from < compacted {
            return Err(StoreError::Compacted {
                requested: from,
                compacted,
            });
        }
        let mut head = self.shared.head.subscribe();
        // Watchers hold the shared state only, so they never keep the writer thread alive.
        let shared = self.shared.clone();
        Ok(Box::pin(async_stream::stream! {
            let mut next = from.max(1);
            loop {
                let latest = *head.borrow_and_update();
                while next <= latest {
                    let batch = match shared.events_from(next, 256) {
                        Ok(batch) => batch,
                        Err(e) => { yield Err(e); return; }
                    };
                    if batch.is_empty() {
                        break;
                    }
                    for (revision, events) in batch {
                        for event in events.iter().filter(|e| range.contains(&e.kv.key)) {
                            yield Ok(event.clone());
                        }
                        next = revision + 1;
                    }
                }
                if head.changed().await.is_err() {
                    return;
                }
            }
        }))
    }
}

impl Shared {
    fn lock_leases(&self) -> std::sync::MutexGuard<'_, HashMap<LeaseId, Lease>> {
        self.leases.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `lease` is live now.
    fn lease_live(&self, lease: LeaseId) -> bool {
        let now = Instant::now();
        self.lock_leases()
            .get(&lease)
            .is_some_and(|held| held.deadline > now)
    }

    /// The leases whose time is up, forgotten.
    fn take_expired(&self) -> BTreeSet<LeaseId> {
        let now = Instant::now();
        let mut leases = self.lock_leases();
        let expired: BTreeSet<LeaseId> = leases
            .iter()
            .filter(|(_, held)| held.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        leases.retain(|id, _| !expired.contains(id));
        expired
    }
}

fn write_loop(shared: Arc<Shared>, requests: mpsc::Receiver<WriteRequest>, mut head: Revision) {
    // Every key still leased was held by an earlier process, whose leases are gone.
    head = end_leases(&shared, None, head);
    loop {
        let first = match requests.recv_timeout(LEASE_CHECK) {
            Ok(request) => Some(request),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let mut txns = Vec::new();
        let mut compactions = Vec::new();
        let mut revocations = Vec::new();
        let mut push = |request| match request {
            WriteRequest::Txn(txn, reply) => txns.push((txn, reply)),
            WriteRequest::Compact(revision, reply) => compactions.push((revision, reply)),
            WriteRequest::Revoke(lease, reply) => revocations.push((lease, reply)),
        };
        if let Some(first) = first {
            push(first);
            for _ in 1..MAX_GROUP {
                match requests.try_recv() {
                    Ok(request) => push(request),
                    Err(_) => break,
                }
            }
        }
        if !txns.is_empty() {
            head = commit_group(&shared, txns, head);
        }
        for (revision, reply) in compactions {
            let _ = reply.send(compact(&shared, revision, head));
        }
        let mut ended = shared.take_expired();
        {
            let mut leases = shared.lock_leases();
            for (lease, _) in &revocations {
                leases.remove(lease);
                ended.insert(*lease);
            }
        }
        if !ended.is_empty() {
            head = end_leases(&shared, Some(&ended), head);
        }
        for (_, reply) in revocations {
            let _ = reply.send(());
        }
    }
}

/// Deletes, as one transaction, every key leased by one of `leases` (every leased key if
/// `None`). Returns the new head.
fn end_leases(shared: &Shared, leases: Option<&BTreeSet<LeaseId>>, head: Revision) -> Revision {
    let keys = (|| -> Result<Vec<Vec<u8>>> {
        let rtx = shared.db.begin_read().map_err(internal)?;
        let leased = rtx.open_table(LEASED).map_err(internal)?;
        let mut keys = Vec::new();
        for entry in leased.iter().map_err(internal)? {
            let (key, lease) = entry.map_err(internal)?;
            if leases.is_none_or(|ended| ended.contains(&lease.value())) {
                keys.push(key.value().to_vec());
            }
        }
        Ok(keys)
    })();
    match keys {
        Ok(keys) if keys.is_empty() => head,
        Ok(keys) => {
            let txn = keys
                .into_iter()
                .fold(Txn::default(), |txn, key| txn.delete(key));
            let (reply, _) = oneshot::channel();
            commit_group(shared, vec![(txn, reply)], head)
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot read the leased keys");
            head
        }
    }
}

type Tables<'t> = (
    Table<'t, &'static [u8], &'static [u8]>,
    Table<'t, (&'static [u8], i64), &'static [u8]>,
    Table<'t, &'static [u8], i64>,
);

/// What became of one transaction of a group.
enum Applied {
    Committed(Revision, Vec<Event>),
    Conflict,
    NoLease(LeaseId),
}

/// Applies a group of transactions in one durable commit and answers each. Returns the new head.
fn commit_group(
    shared: &Shared,
    txns: Vec<(Txn, oneshot::Sender<Result<TxnOutcome>>)>,
    head: Revision,
) -> Revision {
    let applied = (|| -> Result<(Vec<Applied>, Revision)> {
        let wtx = shared.db.begin_write().map_err(internal)?;
        let mut revision = head;
        let mut outcomes = Vec::with_capacity(txns.len());
        {
            let mut tables: Tables = (
                wtx.open_table(LATEST).map_err(internal)?,
                wtx.open_table(HISTORY).map_err(internal)?,
                wtx.open_table(LEASED).map_err(internal)?,
            );
            let mut log = wtx.open_table(LOG).map_err(internal)?;
            for (txn, _) in &txns {
                if !compares_hold(&tables.0, txn)? {
                    outcomes.push(Applied::Conflict);
                    continue;
                }
                let ended = txn.ops.iter().find_map(|op| match op {
                    Op::Put {
                        lease: Some(lease), ..
                    } if !shared.lease_live(*lease) => Some(*lease),
                    _ => None,
                });
                if let Some(lease) = ended {
                    outcomes.push(Applied::NoLease(lease));
                    continue;
                }
                let events = apply_ops(&mut tables, txn, revision + 1)?;
                if !events.is_empty() {
                    revision += 1;
                    log.insert(revision, encode(&events)?.as_slice())
                        .map_err(internal)?;
                }
                outcomes.push(Applied::Committed(revision, events));
            }
            wtx.open_table(META)
                .map_err(internal)?
                .insert(HEAD, revision)
                .map_err(internal)?;
        }
        wtx.commit().map_err(internal)?;
        Ok((outcomes, revision))
    })();
    match applied {
        Err(e) => {
            tracing::error!(error = %e, "store commit failed");
            for (_, reply) in txns {
                let _ = reply.send(Err(e.clone()));
            }
            head
        }
        Ok((outcomes, new_head)) => {
            {
                let mut recent = shared.recent.write().expect("lock poisoned");
                for outcome in &outcomes {
                    if let Applied::Committed(revision, events) = outcome
                        && !events.is_empty()
                    {
                        recent.push_back((*revision, Arc::from(events.clone())));
                    }
                }
                while recent.len() > RECENT_REVISIONS {
                    recent.pop_front();
                }
            }
            shared.head.send_replace(new_head);
            for ((_, reply), outcome) in txns.into_iter().zip(outcomes) {
                let _ = reply.send(match outcome {
                    Applied::Committed(revision, _) => Ok(TxnOutcome::Committed { revision }),
                    Applied::Conflict => Ok(TxnOutcome::Conflict),
                    Applied::NoLease(lease) => Err(StoreError::LeaseNotFound(lease)),
                });
            }
            new_head
        }
    }
}

fn compares_hold(latest: &Table<&'static [u8], &'static [u8]>, txn: &Txn) -> Result<bool> {
    for compare in &txn.compares {
        let current = match latest.get(compare.key.as_slice()).map_err(internal)? {
            Some(v) => decode::<Record>(v.value())?.mod_revision,
            None => 0,
        };
        if current != compare.mod_revision {
            return Ok(false);
        }
    }
    Ok(true)
}

fn apply_ops(tables: &mut Tables, txn: &Txn, revision: Revision) -> Result<Vec<Event>> {
    let (latest, history, leased) = tables;
    let mut events = Vec::new();
    for op in &txn.ops {
        let key = op.key();
        let prev = latest
            .get(key)
            .map_err(internal)?
            .map(|v| decode::<Record>(v.value()))
            .transpose()?;
        let prev_kv = prev.clone().map(|p| p.into_kv(key.to_vec()));
        match op {
            Op::Put { value, lease, .. } => {
                match lease {
                    Some(lease) => leased.insert(key, *lease).map(drop),
                    None => leased.remove(key).map(drop),
                }
                .map_err(internal)?;
                let record = Record {
                    create_revision: prev.as_ref().map_or(revision, |p| p.create_revision),
                    mod_revision: revision,
                    version: prev.as_ref().map_or(1, |p| p.version + 1),
                    value: value.clone(),
                };
                let bytes = encode(&record)?;
                latest.insert(key, bytes.as_slice()).map_err(internal)?;
                history
                    .insert((key, revision), encode(&Some(&record))?.as_slice())
                    .map_err(internal)?;
                events.push(Event {
                    kind: EventKind::Put,
                    kv: record.into_kv(key.to_vec()),
                    prev: prev_kv,
                });
            }
            Op::Delete { .. } => {
                if prev.is_none() {
                    continue;
                }
                leased.remove(key).map_err(internal)?;
                latest.remove(key).map_err(internal)?;
                history
                    .insert((key, revision), encode(&None::<Record>)?.as_slice())
                    .map_err(internal)?;
                let kv = KeyValue {
                    key: key.to_vec(),
                    value: Vec::new(),
                    create_revision: 0,
                    mod_revision: revision,
                    version: 0,
                };
                events.push(Event {
                    kind: EventKind::Delete,
                    kv,
                    prev: prev_kv,
                });
            }
        }
    }
    Ok(events)
}

/// Drops every version and event that no read at or after `revision` can see.
fn compact(shared: &Shared, revision: Revision, head: Revision) -> Result<()> {
    let compacted = shared.compacted.load(Ordering::Acquire);
    if revision > head {
        return Err(StoreError::FutureRevision {
            requested: revision,
            current: head,
        });
    }
    if revision <= compacted {
        return Err(StoreError::Compacted {
            requested: revision,
            compacted,
        });
    }
    let wtx = shared.db.begin_write().map_err(internal)?;
    {
        let mut log = wtx.open_table(LOG).map_err(internal)?;
        let old: Vec<i64> = log
            .range(..revision)
            .map_err(internal)?
            .map(|e| e.map(|(k, _)| k.value()))
            .collect::<Result<_, _>>()
            .map_err(internal)?;
        for rev in old {
            log.remove(rev).map_err(internal)?;
        }
        let mut history = wtx.open_table(HISTORY).map_err(internal)?;
        // Per key, among versions at or before `revision`, only the newest stays readable,
        // and not even that if it is a tombstone.
        let mut doomed: Vec<(Vec<u8>, i64)> = Vec::new();
        let mut kept: Option<(Vec<u8>, i64, bool)> = None;
        for entry in history.iter().map_err(internal)? {
            let (k, v) = entry.map_err(internal)?;
            let (key, rev) = k.value();
            if rev > revision {
                continue;
            }
            let tombstone = decode::<Option<Record>>(v.value())?.is_none();
            // The previous entry goes if this one supersedes it, or if it was its key's last
            // and a tombstone.
            if let Some((kk, kr, kt)) = kept.take()
                && (kk.as_slice() == key || kt)
            {
                doomed.push((kk, kr));
            }
            kept = Some((key.to_vec(), rev, tombstone));
        }
        if let Some((kk, kr, true)) = kept {
            doomed.push((kk, kr));
        }
        for (key, rev) in doomed {
            history.remove((key.as_slice(), rev)).map_err(internal)?;
        }
        wtx.open_table(META)
            .map_err(internal)?
            .insert(COMPACTED, revision)
            .map_err(internal)?;
    }
    wtx.commit().map_err(internal)?;
    shared.compacted.store(revision, Ordering::Release);
    shared
        .recent
        .write()
        .expect("lock poisoned")
        .retain(|(r, _)| *r >= revision);
    Ok(())
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    /// More revisions than the in-memory buffer of recent events holds, written by writers
    /// in parallel (so commits are grouped): the buffer stays bounded, a watch from the
    /// first revision reads the older ones from the log, and the head is readable.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_recent_buffer_stays_bounded_and_a_far_behind_watch_sees_everything() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(&dir.path().join("s.redb")).unwrap());
        let first = store.revision().await.unwrap() + 1;
        let writers: Vec<_> = (0..8)
            .map(|w| {
                let store = store.clone();
                tokio::spawn(async move {
                    for i in 0..(RECENT_REVISIONS / 8 + 100) {
                        store
                            .txn(Txn::default().put(format!("/w/{w}/{i}"), "v"))
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.await.unwrap();
        }
        let held = store.shared.recent.read().unwrap().len();
        assert!(held <= RECENT_REVISIONS, "{held} recent revisions held");

        let head = store.revision().await.unwrap();
        let at_head = store.range(&KeyRange::prefix("/w/"), Some(head), 1).await;
        assert!(at_head.is_ok(), "{at_head:?}");

        let mut watch = store.watch(KeyRange::prefix("/w/"), first).await.unwrap();
        for expected in first..first + 10 {
            let event = tokio::time::timeout(std::time::Duration::from_secs(10), watch.next())
                .await
                .expect("a watch from far behind stalled")
                .unwrap()
                .unwrap();
            assert_eq!(event.kv.mod_revision, expected);
        }
    }

    /// A leased key outlives no process: reopened, the store has deleted it (its lease ended
    /// with the process that held it), and kept the key written without a lease.
    #[tokio::test]
    async fn keys_leased_by_an_earlier_process_are_gone_when_it_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        {
            let store = EmbeddedStore::open(&path).unwrap();
            let lease = store.grant_lease(Duration::from_secs(60)).await.unwrap();
            let txn = Txn::default()
                .put_leased("/leader", "me", lease)
                .put("/plain", "v");
            store.txn(txn).await.unwrap();
        }
        // The writer thread lets go of the file once its handle is dropped.
        let store = loop {
            match EmbeddedStore::open(&path) {
                Ok(store) => break store,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let mut watch = store.watch(KeyRange::prefix("/"), 1).await.unwrap();
        let mut deleted = None;
        while deleted.is_none() {
            let event = tokio::time::timeout(Duration::from_secs(5), watch.next())
                .await
                .expect("the leased key was never deleted")
                .unwrap()
                .unwrap();
            if event.kind == EventKind::Delete {
                deleted = Some(event.kv.key);
            }
        }
        assert_eq!(deleted.as_deref(), Some(&b"/leader"[..]));
        assert!(store.get(b"/leader").await.unwrap().is_none());
        assert!(store.get(b"/plain").await.unwrap().is_some());
    }
}
