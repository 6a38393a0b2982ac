//! Replication between regions, at the level of keys: which keys a region owns, the changes
//! to them as batches (one per revision, in revision order), a snapshot to start from, the
//! idempotent apply of a peer's batches, and digests that show whether two regions hold the
//! same state.
//!
//! What is replicated: objects (`/o/`), their access policies (`/p/o/`) and tokens
//! (`/tokens/`). An object's owner is its `metadata.homeRegion`; a policy's is its node's; a
//! token's is its org's. Audit records, usage, children markers, leases and allocation
//! guards stay in the region that wrote them. Every region keeps, at `/replicas/{region}`,
//! the last revision of that region's store it applied, in the transaction that applied it,
//! so a puller resumes exactly where it stopped.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::{FutureExt, Stream, StreamExt};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::records::StoredToken;
use crate::registry::{object_key, path_of_key};
use crate::{Event, EventKind, KeyRange, Revision, Store, StoreError, Txn};

/// The prefixes whose keys are replicated.
const OBJECTS: &str = "/o/";
const POLICIES: &str = "/p/o/";
const TOKENS: &str = "/tokens/";

/// The most operations one transaction carries (etcd allows 128).
const TXN_OPS: usize = 100;

/// Keys read per range while scanning.
const PAGE: usize = 1_000;

fn applied_key(source: &str) -> String {
    format!("/replicas/{source}")
}

/// One key's new value, or its deletion.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The key.
    pub key: String,
    /// The value (JSON text); `None` when the key was deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// The owned changes of one revision of the source's store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// The source's revision.
    pub revision: Revision,
    /// Its changes, in the order the store applied them.
    pub changes: Vec<Change>,
}

/// Every key a region owns, at one revision of its store.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Snapshot {
    /// The source's revision.
    pub revision: Revision,
    /// Every owned key with its value.
    pub changes: Vec<Change>,
}

/// What a region last applied of a peer's changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Applied {
    /// The peer's revision.
    pub revision: Revision,
    /// When it was applied.
    pub at: Timestamp,
}

/// What one region holds of one home region's keys in one org.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Digest {
    /// The region that owns the keys.
    pub home: String,
    /// The org they are in.
    pub org: String,
    /// How many keys.
    pub keys: usize,
    /// Hex SHA-256 over every key and value, in key order.
    pub sha256: String,
}

/// Replication of one region's store.
#[derive(Clone)]
pub struct Replication {
    store: Arc<dyn Store>,
    region: String,
}

/// The home region an object's stored value records.
fn object_home(value: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Meta {
        #[serde(rename = "homeRegion", default)]
        home_region: String,
    }
    #[derive(Deserialize)]
    struct Stored {
        metadata: Meta,
    }
    serde_json::from_slice::<Stored>(value)
        .ok()
        .map(|s| s.metadata.home_region)
}

/// The org a replicated key belongs to, for digests.
fn org_of(key: &str, value: &[u8]) -> Option<String> {
    if key.starts_with(TOKENS) {
        return serde_json::from_slice::<StoredToken>(value)
            .ok()
            .map(|t| t.info.org);
    }
    let object = key.strip_prefix("/p").unwrap_or(key);
    let path = path_of_key(object.as_bytes())?;
    path.names().next().map(String::from)
}

/// The object key whose home decides the owner of `key`: itself, a policy's node, a token's
/// org. `None` for keys that are not replicated.
fn owner_object(key: &str, value: Option<&[u8]>) -> Option<String> {
    if key.starts_with(OBJECTS) {
        Some(key.to_string())
    } else if let Some(object) = key.strip_prefix("/p") {
        object.starts_with(OBJECTS).then(|| object.to_string())
    } else if key.starts_with(TOKENS) {
        let token: StoredToken = serde_json::from_slice(value?).ok()?;
        let org = dialtone_types::ResourcePath::org(&token.info.org);
        Some(object_key(&org))
    } else {
        None
    }
}

fn text(value: &[u8]) -> Result<String, StoreError> {
    String::from_utf8(value.to_vec())
        .map_err(|_| StoreError::Internal("a replicated value is not UTF-8 text".into()))
}

impl Replication {
    /// Replication of `store`, the store of `region`.
    pub fn new(store: Arc<dyn Store>, region: impl Into<String>) -> Self {
        Replication {
            store,
            region: region.into(),
        }
    }

    /// The home of the object at `object` (a `/o/` key): from `known` (this revision's
    /// changes), else from the store.
    async fn home_of(
        &self,
        object: &str,
        known: &HashMap<String, String>,
    ) -> Result<Option<String>, StoreError> {
        if let Some(home) = known.get(object) {
            return Ok(Some(home.clone()));
        }
        Ok(self
            .store
            .get(object.as_bytes())
            .await?
            .and_then(|kv| object_home(&kv.value)))
    }

    /// The changes of one revision this region owns.
    async fn owned(&self, events: Vec<Event>) -> Result<Vec<Change>, StoreError> {
        // Objects first: a policy or token changed in the same transaction as its node is
        // owned by the node's home even if the node went.
        let mut known = HashMap::new();
        for event in &events {
            let key = String::from_utf8_lossy(&event.kv.key);
            if key.starts_with(OBJECTS) {
                let value = match event.kind {
                    EventKind::Put => Some(&event.kv.value),
                    EventKind::Delete => event.prev.as_ref().map(|p| &p.value),
                };
                if let Some(home) = value.and_then(|v| object_home(v)) {
                    known.insert(key.into_owned(), home);
                }
            }
        }
        let mut changes = Vec::new();
        for event in events {
            let key = String::from_utf8_lossy(&event.kv.key).into_owned();
            let value = match event.kind {
                EventKind::Put => Some(event.kv.value.as_slice()),
                EventKind::Delete => event.prev.as_ref().map(|p| p.value.as_slice()),
            };
            let Some(object) = owner_object(&key, value) else {
                continue;
            };
            if self.home_of(&object, &known).await?.as_deref() != Some(&self.region) {
                continue;
            }
            changes.push(Change {
                value: match event.kind {
                    EventKind::Put => Some(text(&event.kv.value)?),
                    EventKind::Delete => None,
                },
                key,
            });
        }
        Ok(changes)
    }

    /// This region's changes from revision `from` on, one batch per revision (empty when
    /// the revision changed no owned key, so that the reader knows how far it has seen). Fails with `Compacted` when `from` is older than the store keeps: the
    /// puller then starts again from a [`Replication::snapshot`].
    pub async fn changes(
        &self,
        from: Revision,
    ) -> Result<impl Stream<Item = Result<Batch, StoreError>> + Send + 'static, StoreError> {
        let mut events = self.store.watch(KeyRange::prefix("/"), from).await?;
        let this = self.clone();
        Ok(async_stream::try_stream! {
            let mut held: Option<Event> = None;
            loop {
                let first = match held.take() {
                    Some(event) => event,
                    None => match events.next().await {
                        Some(event) => event?,
                        None => break,
                    },
                };
                // The rest of the revision: a transaction's events arrive together.
                let revision = first.revision();
                let mut group = vec![first];
                while let Some(Some(event)) = events.next().now_or_never() {
                    let event = event?;
                    if event.revision() != revision {
                        held = Some(event);
                        break;
                    }
                    group.push(event);
                }
                yield Batch { revision, changes: this.owned(group).await? };
            }
        })
    }

    /// Every key in the replicated ranges at one revision, in key order.
    async fn scan(&self) -> Result<(Revision, Vec<(String, Vec<u8>)>), StoreError> {
        let revision = self.store.revision().await?;
        let mut out = Vec::new();
        for prefix in [OBJECTS, POLICIES, TOKENS] {
            let range = KeyRange::prefix(prefix);
            let mut start = range.start.clone();
            loop {
                let page = self
                    .store
                    .range(&range.starting_at(start.clone()), Some(revision), PAGE)
                    .await?;
                for kv in &page.kvs {
                    out.push((
                        String::from_utf8_lossy(&kv.key).into_owned(),
                        kv.value.clone(),
                    ));
                }
                match (page.more, page.kvs.last()) {
                    (true, Some(last)) => {
                        start = last.key.clone();
                        start.push(0);
                    }
                    _ => break,
                }
            }
        }
        Ok((revision, out))
    }

    /// Each scanned key with the region that owns it, as this store knows it.
    fn owners(keys: Vec<(String, Vec<u8>)>) -> Vec<(String, Vec<u8>, Option<String>)> {
        let homes: HashMap<String, String> = keys
            .iter()
            .filter(|(k, _)| k.starts_with(OBJECTS))
            .filter_map(|(k, v)| object_home(v).map(|h| (k.clone(), h)))
            .collect();
        keys.into_iter()
            .map(|(key, value)| {
                let home = owner_object(&key, Some(&value)).and_then(|o| homes.get(&o).cloned());
                (key, value, home)
            })
            .collect()
    }

    /// Every key this region owns, at one revision.
    pub async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let (revision, keys) = self.scan().await?;
        let mut changes = Vec::new();
        for (key, value, home) in Self::owners(keys) {
            if home.as_deref() == Some(&self.region) {
                changes.push(Change {
                    key,
                    value: Some(text(&value)?),
                });
            }
        }
        Ok(Snapshot { revision, changes })
    }

    /// What this region last applied of `source`'s changes.
    pub async fn applied(&self, source: &str) -> Result<Option<Applied>, StoreError> {
        Ok(self
            .store
            .get(applied_key(source).as_bytes())
            .await?
            .and_then(|kv| serde_json::from_slice(&kv.value).ok()))
    }

    /// Whether `key` as this store holds it is owned by this region: a peer never
    /// overwrites it.
    async fn own(&self, key: &str) -> Result<bool, StoreError> {
        let value = self.store.get(key.as_bytes()).await?.map(|kv| kv.value);
        let Some(object) = owner_object(key, value.as_deref()) else {
            return Ok(false);
        };
        Ok(self.home_of(&object, &HashMap::new()).await?.as_deref() == Some(&self.region))
    }

    /// Writes `changes` and then records `revision` of `source` as applied: in transactions
    /// of at most [`TXN_OPS`], the record in the last. Applying the same changes again
    /// changes nothing, so a batch cut off by a failure is simply applied again.
    async fn write(
        &self,
        source: &str,
        revision: Revision,
        changes: &[Change],
    ) -> Result<(), StoreError> {
        let mut txn = Txn::default();
        for change in changes {
            if self.own(&change.key).await? {
                tracing::warn!(key = %change.key, source, "a peer sent a change to a key this region owns; kept ours");
                continue;
            }
            txn = match &change.value {
                Some(value) => {
                    let mut txn = txn.put(change.key.clone(), value.clone().into_bytes());
                    // A child written here moves its parent's marker, as a create does, so
                    // that a delete of the parent racing it fails here too.
                    if let Some(parent) =
                        path_of_key(change.key.as_bytes()).and_then(|p| p.parent())
                    {
                        txn = txn.put(format!("/m/{parent}"), Vec::new());
                    }
                    txn
                }
                None => txn.delete(change.key.clone()),
            };
            if txn.ops.len() >= TXN_OPS {
                self.store.txn(std::mem::take(&mut txn)).await?;
            }
        }
        let applied = Applied {
            revision,
            at: Timestamp::now(),
        };
        let record = serde_json::to_vec(&applied).expect("serializable");
        self.store.txn(txn.put(applied_key(source), record)).await?;
        Ok(())
    }

    /// Records that everything `source` owned up to `revision` is applied, now: how stale
    /// this region's copy of its keys is.
    pub async fn caught_up(&self, source: &str, revision: Revision) -> Result<(), StoreError> {
        self.write(source, revision, &[]).await
    }

    /// Applies one batch of `source`'s changes.
    pub async fn apply(&self, source: &str, batch: &Batch) -> Result<(), StoreError> {
        self.write(source, batch.revision, &batch.changes).await
    }

    /// Replaces everything this region holds of `source`'s keys with `snapshot`: what it
    /// holds and the snapshot lacks was deleted there.
    pub async fn restore(&self, source: &str, snapshot: &Snapshot) -> Result<(), StoreError> {
        let (_, keys) = self.scan().await?;
        let wanted: BTreeMap<&str, &str> = snapshot
            .changes
            .iter()
            .filter_map(|c| c.value.as_deref().map(|v| (c.key.as_str(), v)))
            .collect();
        let mut changes: Vec<Change> = Vec::new();
        let mut held = BTreeMap::new();
        for (key, value, home) in Self::owners(keys) {
            if home.as_deref() == Some(source) && !wanted.contains_key(key.as_str()) {
                changes.push(Change { key, value: None });
            } else {
                held.insert(key, value);
            }
        }
        for (key, value) in wanted {
            if held.get(key).map(Vec::as_slice) != Some(value.as_bytes()) {
                changes.push(Change {
                    key: key.to_string(),
                    value: Some(value.to_string()),
                });
            }
        }
        // Objects before their policies and tokens, parents before children.
        changes.sort_by(|a, b| a.key.cmp(&b.key));
        self.write(source, snapshot.revision, &changes).await
    }

    /// What this store holds of each home region's keys, per org.
    pub async fn digests(&self) -> Result<Vec<Digest>, StoreError> {
        let (_, keys) = self.scan().await?;
        let mut hashes: BTreeMap<(String, String), (usize, Sha256)> = BTreeMap::new();
        for (key, value, home) in Self::owners(keys) {
            let (Some(home), Some(org)) = (home, org_of(&key, &value)) else {
                continue;
            };
            let (count, hash) = hashes.entry((home, org)).or_default();
            *count += 1;
            hash.update(key.as_bytes());
            hash.update([0]);
            hash.update(&value);
            hash.update([0]);
        }
        Ok(hashes
            .into_iter()
            .map(|((home, org), (keys, hash))| Digest {
                home,
                org,
                keys,
                sha256: hash.finalize().iter().map(|b| format!("{b:02x}")).collect(),
            })
            .collect())
    }
}
