//! The revisioned key-value store under every Dialtone object, with etcd's semantics: one
//! global revision that every committed change increments; get and range at a revision;
//! transactions guarded by compare-and-swap on a key's mod revision; watch from a revision
//! with ordered, gap-free, exactly-once events; compaction of old revisions.
//!
//! Two backends implement [`Store`]: [`embedded::EmbeddedStore`] (redb in a data directory,
//! the default) and [`etcd::EtcdStore`] (an etcd v3 cluster). [`conformance`] is the one
//! suite both must pass. Above the key-value layer, [`registry`] stores typed objects: it is
//! the only code that encodes objects for storage.
//!
//! This crate knows nothing of HTTP, authentication or controllers.

#![warn(missing_docs)]

use std::pin::Pin;

use futures::Stream;
use serde::{Deserialize, Serialize};

pub mod conformance;
pub mod embedded;
pub mod etcd;
pub mod records;
pub mod registry;
pub mod replication;

pub use embedded::EmbeddedStore;
pub use etcd::EtcdStore;

/// A store revision. Revisions start at 1 and grow by one per committed change.
pub type Revision = i64;

/// A lease, as etcd grants one: keys written with it are deleted when it expires or is
/// revoked. Leader election holds its key with one.
pub type LeaseId = i64;

/// A key with its value and revisions, as etcd reports one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    /// The key.
    pub key: Vec<u8>,
    /// Its value.
    pub value: Vec<u8>,
    /// The revision that created the key (since its last deletion).
    pub create_revision: Revision,
    /// The revision of the last change to the key.
    pub mod_revision: Revision,
    /// How many times the key was written since it was created.
    pub version: i64,
}

/// What a change did to its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// The key was written (created or replaced).
    Put,
    /// The key was deleted.
    Delete,
}

/// One change, as a watcher sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Put or delete.
    pub kind: EventKind,
    /// For a delete: the key, an empty value, and the revision of the delete as mod revision.
    pub kv: KeyValue,
    /// The key as it was before this change, if it existed.
    pub prev: Option<KeyValue>,
}

impl Event {
    /// The revision of the change.
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// The keys from `start` (inclusive) to `end` (exclusive; `None` means to the end).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRange {
    /// The first key.
    pub start: Vec<u8>,
    /// The key after the last; `None` for every key from `start` on.
    pub end: Option<Vec<u8>>,
}

impl KeyRange {
    /// Exactly one key.
    pub fn key(key: impl Into<Vec<u8>>) -> Self {
        let start = key.into();
        let mut end = start.clone();
        end.push(0);
        KeyRange {
            start,
            end: Some(end),
        }
    }

    /// Every key that starts with `prefix`.
    pub fn prefix(prefix: impl Into<Vec<u8>>) -> Self {
        let start = prefix.into();
        KeyRange {
            end: prefix_end(&start),
            start,
        }
    }

    /// The same range, starting at `start` instead (for pagination).
    pub fn starting_at(&self, start: Vec<u8>) -> Self {
        KeyRange {
            start,
            end: self.end.clone(),
        }
    }

    /// Whether `key` is in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && self.end.as_deref().is_none_or(|end| key < end)
    }
}

/// The smallest key greater than every key with this prefix, as etcd computes it.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The result of a range read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeResult {
    /// The keys read, in key order.
    pub kvs: Vec<KeyValue>,
    /// Whether the limit cut off more keys.
    pub more: bool,
    /// The revision the read saw.
    pub revision: Revision,
}

/// A guard of a transaction: the key's mod revision must equal `mod_revision`
/// (0 means the key must not exist).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compare {
    /// The key compared.
    pub key: Vec<u8>,
    /// The revision it must have been last changed at; 0 if it must not exist.
    pub mod_revision: Revision,
}

/// A change a transaction makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Write `value` to `key`.
    Put {
        /// The key written.
        key: Vec<u8>,
        /// Its new value.
        value: Vec<u8>,
        /// The lease the key lives by, if any: it is deleted when the lease ends.
        lease: Option<LeaseId>,
    },
    /// Delete `key` (nothing, if it is absent).
    Delete {
        /// The key deleted.
        key: Vec<u8>,
    },
}

impl Op {
    /// The key it changes.
    pub fn key(&self) -> &[u8] {
        match self {
            Op::Put { key, .. } | Op::Delete { key } => key,
        }
    }
}

/// If every compare holds, apply every op atomically at one new revision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Txn {
    /// Every one must hold.
    pub compares: Vec<Compare>,
    /// Applied in order, at one revision.
    pub ops: Vec<Op>,
}

impl Txn {
    /// Adds a compare: `key` last changed at `mod_revision` (0: absent).
    pub fn when(mut self, key: impl Into<Vec<u8>>, mod_revision: Revision) -> Self {
        self.compares.push(Compare {
            key: key.into(),
            mod_revision,
        });
        self
    }
    /// Adds a write of `value` to `key`.
    pub fn put(mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        self.ops.push(Op::Put {
            key: key.into(),
            value: value.into(),
            lease: None,
        });
        self
    }
    /// Adds a write of `value` to `key`, which lives only as long as `lease`.
    pub fn put_leased(
        mut self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
        lease: LeaseId,
    ) -> Self {
        self.ops.push(Op::Put {
            key: key.into(),
            value: value.into(),
            lease: Some(lease),
        });
        self
    }
    /// Adds a deletion of `key`.
    pub fn delete(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.ops.push(Op::Delete { key: key.into() });
        self
    }
}

/// What became of a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnOutcome {
    /// Applied; `revision` is the store revision after it (unchanged if it changed nothing).
    Committed {
        /// The store's revision after it.
        revision: Revision,
    },
    /// A compare failed; nothing was applied.
    Conflict,
}

/// Why a store call failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    /// The revision asked for is older than the oldest the store keeps.
    #[error("revision {requested} has been compacted; the oldest readable revision is {compacted}")]
    Compacted {
        /// The revision asked for.
        requested: Revision,
        /// The oldest revision kept.
        compacted: Revision,
    },
    /// The revision asked for is newer than the store's.
    #[error("revision {requested} is in the future; the store is at revision {current}")]
    FutureRevision {
        /// The revision asked for.
        requested: Revision,
        /// The store's revision.
        current: Revision,
    },
    /// No member answered; the call may be retried.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// The lease has expired or was revoked (or never existed).
    #[error("lease {0:x} is not found: it expired or was revoked")]
    LeaseNotFound(LeaseId),
    /// This server's leadership ended, so the write it guarded was not made.
    #[error("not the leader: {0}")]
    NotLeader(String),
    /// The store failed in a way a retry does not mend.
    #[error("the store failed: {0}")]
    Internal(String),
}

/// A store call's result.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// How many keys [`Store::range_all`] reads at a time.
pub const RANGE_PAGE: usize = 1_000;

/// Events in revision order, each exactly once; ends with an error if the watcher fell
/// behind a compaction.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<Event>> + Send>>;

/// The store every backend implements; see the crate documentation for its semantics.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// `embedded` or `etcd`.
    fn backend(&self) -> &'static str;

    /// The keys in `range` at revision `at` (the latest if `None` or 0, as in etcd), in key order, at most
    /// `limit` of them (0 means no limit).
    async fn range(
        &self,
        range: &KeyRange,
        at: Option<Revision>,
        limit: usize,
    ) -> Result<RangeResult>;

    /// Applies `txn` if its compares hold. Returns only once the change is durable.
    async fn txn(&self, txn: Txn) -> Result<TxnOutcome>;

    /// Every change to keys in `range` from revision `from` on (inclusive).
    async fn watch(&self, range: KeyRange, from: Revision) -> Result<WatchStream>;

    /// Forgets history before `revision`: reads and watches before it fail with `Compacted`.
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// Grants a lease that ends `ttl` after its last keep-alive (the store may round the
    /// time up to its minimum, as etcd does). Both backends have leases; a wrapper that
    /// does not pass them on has none.
    async fn grant_lease(&self, _ttl: std::time::Duration) -> Result<LeaseId> {
        Err(StoreError::Internal(format!(
            "the {} store has no leases",
            self.backend()
        )))
    }

    /// Restarts the lease's time; `LeaseNotFound` once it has ended.
    async fn keep_alive(&self, lease: LeaseId) -> Result<()> {
        Err(StoreError::LeaseNotFound(lease))
    }

    /// Ends the lease now, deleting its keys.
    async fn revoke_lease(&self, _lease: LeaseId) -> Result<()> {
        Ok(())
    }

    /// The latest revision.
    async fn revision(&self) -> Result<Revision> {
        Ok(self
            .range(&KeyRange::key(b"\0".to_vec()), None, 1)
            .await?
            .revision)
    }

    /// Every key in `range`, read [`RANGE_PAGE`] keys at a time, each page at revision
    /// `at` (with `None`, at the latest as each page is read).
    async fn range_all(&self, range: &KeyRange, at: Option<Revision>) -> Result<Vec<KeyValue>> {
        let mut found = Vec::new();
        let mut next = range.clone();
        loop {
            let page = self.range(&next, at, RANGE_PAGE).await?;
            let more = page.more;
            found.extend(page.kvs);
            match found.last().filter(|_| more) {
                Some(last) => {
                    let mut after = last.key.clone();
                    after.push(0);
                    next = range.starting_at(after);
                }
                None => return Ok(found),
            }
        }
    }

    /// One key at the latest revision.
    async fn get(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        Ok(self
            .range(&KeyRange::key(key.to_vec()), None, 1)
            .await?
            .kvs
            .pop())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let p = KeyRange::prefix(b"/o/".to_vec());
        assert!(p.contains(b"/o/a"));
        assert!(!p.contains(b"/p"));
        assert_eq!(p.end.as_deref(), Some(&b"/o0"[..]));
        assert_eq!(prefix_end(&[0x61, 0xff]), Some(vec![0x62]));
        assert_eq!(prefix_end(&[0xff]), None);
        let k = KeyRange::key(b"a".to_vec());
        assert!(k.contains(b"a") && !k.contains(b"a\0") && !k.contains(b"ab"));
    }
    #[tokio::test]
    async fn range_all_reads_every_key_over_several_pages() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("store.redb")).unwrap();
        let count = RANGE_PAGE * 2 + 1;
        for chunk in (0..count).collect::<Vec<_>>().chunks(100) {
            let mut txn = Txn::default();
            for i in chunk {
                txn = txn.put(format!("/r/{i:05}"), i.to_string());
            }
            store.txn(txn).await.unwrap();
        }
        store
            .txn(Txn::default().put("/s", "outside"))
            .await
            .unwrap();
        let all = store
            .range_all(&KeyRange::prefix("/r/"), None)
            .await
            .unwrap();
        assert_eq!(all.len(), count);
        assert!(
            all.windows(2).all(|w| w[0].key < w[1].key),
            "in key order, once each"
        );
        let before = store.revision().await.unwrap();
        store.txn(Txn::default().delete("/r/00000")).await.unwrap();
        let then = store
            .range_all(&KeyRange::prefix("/r/"), Some(before))
            .await
            .unwrap();
        assert_eq!(then.len(), count, "as of the revision asked for");
    }
}
