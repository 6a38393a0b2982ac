//! Replication between regions, at the level of keys: which keys a region owns, the changes
//! to them as batches (one per revision, in revision order), a snapshot to start from, the
//! idempotent apply of a peer's batches, and digests that show whether two regions hold the
//! same state.
//!
//! What is replicated: objects (`/o/`), their access policies (`/p/o/`), tokens
//! (`/tokens/`), orgs' billing settings (`/billing/`), and usage records and day totals
//! (`/usage/records/`, `/usage/days/`), so that every region reports and invoices all of
//! an org's clusters. An object's owner is its `metadata.homeRegion`; a policy's is its
//! node's; a token's and billing settings' their org's; usage's the region of the cluster
//! it was metered in (`owner.region`), whose meter wrote it. Audit records, the meters'
//! own state, children markers, leases and allocation guards stay in the region that
//! wrote them. Every region keeps, at `/replicas/{region}`, the last revision of that
//! region's store it applied, in the transaction that applied it, so a puller resumes
//! exactly where it stopped.

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
const BILLING: &str = "/billing/";
const USAGE: [&str; 2] = ["/usage/records/", "/usage/days/"];
const ORGS: &str = "/o/orgs/";

/// The most operations one transaction carries (etcd allows 128).
const TXN_OPS: usize = 100;

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

/// What replication reads of a stored object: its uid and home region.
#[derive(Deserialize)]
struct StoredMeta {
    #[serde(default)]
    uid: String,
    #[serde(rename = "homeRegion", default)]
    home_region: String,
}

/// The metadata a stored object's value records.
fn object_meta(value: &[u8]) -> Option<StoredMeta> {
    #[derive(Deserialize)]
    struct Stored {
        metadata: StoredMeta,
    }
    serde_json::from_slice::<Stored>(value)
        .ok()
        .map(|s| s.metadata)
}

/// The home region an object's stored value records.
fn object_home(value: &[u8]) -> Option<String> {
    object_meta(value).map(|m| m.home_region)
}

/// What an event's key held: its new value, or for a delete its last.
fn event_value(event: &Event) -> Option<&[u8]> {
    match event.kind {
        EventKind::Put => Some(event.kv.value.as_slice()),
        EventKind::Delete => event.prev.as_ref().map(|p| p.value.as_slice()),
    }
}

/// What decides the home of a replicated key.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Owner {
    /// The home of this object (a `/o/` key): itself, a policy's node, a token's org.
    Object(String),
    /// The org with this uid (billing settings).
    OrgUid(String),
    /// This region, named by the value (usage, by the region it was metered in).
    Region(String),
}

/// Usage records and day totals name whose they are.
#[derive(Deserialize)]
struct Metered {
    owner: MeteredOwner,
}

#[derive(Deserialize)]
struct MeteredOwner {
    org: String,
    region: String,
}

/// What decides `key`'s home, from its key and value; `None` for keys that are not
/// replicated.
fn owner_of(key: &str, value: Option<&[u8]>) -> Option<Owner> {
    if key.starts_with(OBJECTS) {
        Some(Owner::Object(key.to_string()))
    } else if let Some(object) = key.strip_prefix("/p") {
        object
            .starts_with(OBJECTS)
            .then(|| Owner::Object(object.to_string()))
    } else if key.starts_with(TOKENS) {
        let token: StoredToken = serde_json::from_slice(value?).ok()?;
        let org = dialtone_types::ResourcePath::org(&token.info.org);
        Some(Owner::Object(object_key(&org)))
    } else if let Some(uid) = key.strip_prefix(BILLING) {
        Some(Owner::OrgUid(uid.to_string()))
    } else if USAGE.iter().any(|p| key.starts_with(p)) {
        let metered: Metered = serde_json::from_slice(value?).ok()?;
        Some(Owner::Region(metered.owner.region))
    } else {
        None
    }
}

/// The org a replicated key belongs to, for digests; `orgs` names orgs by uid.
fn org_of(key: &str, value: &[u8], orgs: &HashMap<String, String>) -> Option<String> {
    if key.starts_with(TOKENS) {
        return serde_json::from_slice::<StoredToken>(value)
            .ok()
            .map(|t| t.info.org);
    }
    if let Some(uid) = key.strip_prefix(BILLING) {
        return orgs.get(uid).cloned();
    }
    if USAGE.iter().any(|p| key.starts_with(p)) {
        return serde_json::from_slice::<Metered>(value)
            .ok()
            .map(|m| m.owner.org);
    }
    let object = key.strip_prefix("/p").unwrap_or(key);
    path_of_key(object.as_bytes()).map(|path| path.org_name().to_string())
}

/// A scanned key, its value, and the region that owns it (if this store can tell).
type Homed = (String, Vec<u8>, Option<String>);

/// Homes learned from objects' values: by object key, and orgs' by uid with their names.
#[derive(Default)]
struct Known {
    objects: HashMap<String, String>,
    orgs: HashMap<String, (String, String)>,
}

impl Known {
    /// Learns from `key`'s value, if it is an object.
    fn learn(&mut self, key: &str, value: Option<&[u8]>) {
        let Some(value) = value.filter(|_| key.starts_with(OBJECTS)) else {
            return;
        };
        let Some(meta) = object_meta(value) else {
            return;
        };
        if let Some(name) = key.strip_prefix(ORGS) {
            let home = meta.home_region.clone();
            self.orgs.insert(meta.uid, (name.to_string(), home));
        }
        self.objects.insert(key.to_string(), meta.home_region);
    }

    /// The home of `owner`, from what was learned only.
    fn home(&self, owner: &Owner) -> Option<String> {
        match owner {
            Owner::Region(region) => Some(region.clone()),
            Owner::Object(object) => self.objects.get(object).cloned(),
            Owner::OrgUid(uid) => self.orgs.get(uid).map(|(_, home)| home.clone()),
        }
    }

    /// Org names by uid.
    fn org_names(&self) -> HashMap<String, String> {
        self.orgs
            .iter()
            .map(|(uid, (name, _))| (uid.clone(), name.clone()))
            .collect()
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

    /// The region `owner` names: from `known` (what this revision's changes or a scan
    /// said), else from the store.
    async fn home_of(&self, owner: &Owner, known: &Known) -> Result<Option<String>, StoreError> {
        if let Some(home) = known.home(owner) {
            return Ok(Some(home));
        }
        match owner {
            Owner::Region(region) => Ok(Some(region.clone())),
            Owner::Object(object) => Ok(self
                .store
                .get(object.as_bytes())
                .await?
                .and_then(|kv| object_home(&kv.value))),
            // Billing settings change seldom: the orgs are read to find theirs.
            Owner::OrgUid(uid) => Ok(self
                .store
                .range(&KeyRange::prefix(ORGS), None, 0)
                .await?
                .kvs
                .iter()
                .filter_map(|kv| object_meta(&kv.value))
                .find(|meta| &meta.uid == uid)
                .map(|meta| meta.home_region)),
        }
    }

    /// The changes of one revision this region owns.
    async fn owned(&self, events: Vec<Event>) -> Result<Vec<Change>, StoreError> {
        // Objects first: a policy or token changed in the same transaction as its node is
        // owned by the node's home even if the node went.
        let mut known = Known::default();
        for event in &events {
            known.learn(&String::from_utf8_lossy(&event.kv.key), event_value(event));
        }
        let mut changes = Vec::new();
        for event in events {
            let key = String::from_utf8_lossy(&event.kv.key).into_owned();
            let Some(owner) = owner_of(&key, event_value(&event)) else {
                continue;
            };
            if self.home_of(&owner, &known).await?.as_deref() != Some(&self.region) {
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
    /// the revision changed no owned key, so that the reader knows how far it has seen).
    /// Fails with `Compacted` when `from` is older than the store keeps: the puller then
    /// starts again from a [`Replication::snapshot`].
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
        for prefix in [OBJECTS, POLICIES, TOKENS, BILLING, USAGE[0], USAGE[1]] {
            let kvs = self
                .store
                .range_all(&KeyRange::prefix(prefix), Some(revision))
                .await?;
            out.extend(
                kvs.into_iter()
                    .map(|kv| (String::from_utf8_lossy(&kv.key).into_owned(), kv.value)),
            );
        }
        Ok((revision, out))
    }

    /// Each scanned key with the region that owns it, as this store knows it, and the
    /// orgs' names by uid.
    fn owners(keys: Vec<(String, Vec<u8>)>) -> (Vec<Homed>, HashMap<String, String>) {
        let mut known = Known::default();
        for (key, value) in &keys {
            known.learn(key, Some(value));
        }
        let owned = keys
            .into_iter()
            .map(|(key, value)| {
                let home = owner_of(&key, Some(&value)).and_then(|o| known.home(&o));
                (key, value, home)
            })
            .collect();
        (owned, known.org_names())
    }

    /// Every key this region owns, at one revision.
    pub async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let (revision, keys) = self.scan().await?;
        let mut changes = Vec::new();
        for (key, value, home) in Self::owners(keys).0 {
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
        let Some(owner) = owner_of(key, value.as_deref()) else {
            return Ok(false);
        };
        Ok(self.home_of(&owner, &Known::default()).await?.as_deref() == Some(&self.region))
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
        for (key, value, home) in Self::owners(keys).0 {
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
        let (owned, orgs) = Self::owners(keys);
        for (key, value, home) in owned {
            let (Some(home), Some(org)) = (home, org_of(&key, &value, &orgs)) else {
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
