//! One cluster's objects, keyed by resource, namespace and name and versioned by one counter
//! per cluster (the `resourceVersion`), with a bounded log of changes so that a watch can
//! start from any recent version, as etcd lets kube-apiserver do.
//!
//! Every change is also queued to a [`Journal`] in revision order, and a request is answered
//! only once the journal holds its change ([`Objects::synced`]): what a client was told is
//! stored survives a crash, and the objects come back at the same resourceVersions, the
//! counter going on upward. The change log starts empty after a restart, so a watch from
//! an older version gets 410 Gone and lists again, as after an etcd compaction.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::resources::Name;
use tokio::sync::broadcast;

/// How many changes a watch can resume from.
const LOG_CAPACITY: usize = 10_000;

/// How many changes a live watcher may fall behind before its watch ends (and its client
/// watches again from the log). Each slot is paid for by every hosted cluster, idle or not.
const CHANNEL_CAPACITY: usize = 256;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// A built-in resource's plural, or a custom resource's `plural.group`.
    pub resource: Name,
    pub namespace: String,
    pub name: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn name(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

#[derive(Debug)]
pub struct Change {
    pub revision: u64,
    pub kind: EventType,
    pub key: ObjectKey,
    pub object: Arc<Value>,
}

#[derive(Debug, PartialEq)]
pub enum StoreError {
    NotFound,
    AlreadyExists,
    /// The object is not at the resourceVersion the writer read.
    Conflict,
    /// A watch asked for a version older than the log keeps.
    Expired,
}

struct Inner {
    objects: BTreeMap<ObjectKey, Arc<Value>>,
    revision: u64,
    /// Changes to roles and bindings so far, so that an index of them knows it is stale.
    rbac_changes: u64,
    /// Changes to CustomResourceDefinitions so far, likewise for what they serve.
    definition_changes: u64,
    log: VecDeque<Arc<Change>>,
}

/// Where a cluster's objects are kept durably.
pub trait Journal: Send + Sync {
    /// Queues changes by key (`None` deletes) after every change queued before; the
    /// receiver answers once they are durable.
    fn record(&self, changes: Vec<(String, Option<Vec<u8>>)>) -> Durable;
}

pub type Durable = tokio::sync::oneshot::Receiver<Result<(), String>>;

/// The resources the RBAC authorizer reads.
const RBAC_RESOURCES: [&str; 4] = [
    "clusterroles",
    "clusterrolebindings",
    "roles",
    "rolebindings",
];

/// The journal's key of the cluster's revision counter.
const REVISION_KEY: &str = "~revision";

fn journal_key(key: &ObjectKey) -> String {
    format!("{}/{}/{}", key.resource, key.namespace, key.name)
}

/// Changes from some revision on.
pub type Subscription = broadcast::Receiver<Arc<Change>>;

pub struct Objects {
    inner: Mutex<Inner>,
    changes: broadcast::Sender<Arc<Change>>,
    journal: Option<Arc<dyn Journal>>,
}

impl Default for Objects {
    fn default() -> Self {
        Objects {
            inner: Mutex::new(Inner {
                objects: BTreeMap::new(),
                revision: 1,
                rbac_changes: 0,
                definition_changes: 0,
                log: VecDeque::new(),
            }),
            changes: broadcast::channel(CHANNEL_CAPACITY).0,
            journal: None,
        }
    }
}

fn resource_version(object: &Value) -> Option<u64> {
    object["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|rv| rv.parse().ok())
}

impl Objects {
    /// Objects kept in `journal`, starting from what it holds (`stored`, as the journal's
    /// keys and values); `None` when it holds nothing for the cluster.
    pub fn restore(
        journal: Arc<dyn Journal>,
        stored: Vec<(String, Vec<u8>)>,
        resource_of: impl Fn(&str) -> Option<Name>,
    ) -> Result<(Self, bool), String> {
        let mut objects = Objects {
            journal: Some(journal),
            ..Objects::default()
        };
        let restored = !stored.is_empty();
        let inner = objects.inner.get_mut().unwrap_or_else(|e| e.into_inner());
        for (key, value) in stored {
            if key == REVISION_KEY {
                let bytes: [u8; 8] = value
                    .as_slice()
                    .try_into()
                    .map_err(|_| "a corrupt revision counter".to_string())?;
                inner.revision = inner.revision.max(u64::from_be_bytes(bytes));
                continue;
            }
            let mut parts = key.splitn(3, '/');
            let (Some(resource), Some(namespace), Some(name)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(format!("a corrupt object key `{key}`"));
            };
            let resource =
                resource_of(resource).ok_or_else(|| format!("an unknown resource in `{key}`"))?;
            let object: Value = serde_json::from_slice(&value)
                .map_err(|e| format!("a corrupt object at `{key}`: {e}"))?;
            if let Some(rv) = resource_version(&object) {
                inner.revision = inner.revision.max(rv);
            }
            inner.objects.insert(
                ObjectKey {
                    resource,
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                },
                Arc::new(object),
            );
        }
        Ok((objects, restored))
    }

    /// Waits until every change made so far is durable (at once without a journal).
    pub async fn synced(&self) -> Result<(), String> {
        match &self.journal {
            Some(journal) => journal
                .record(Vec::new())
                .await
                .map_err(|_| "the journal stopped".to_string())?,
            None => Ok(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn revision(&self) -> u64 {
        self.lock().revision
    }

    /// How many times a role or a binding changed: an index of them built at one count is
    /// current while the count stays.
    pub fn rbac_changes(&self) -> u64 {
        self.lock().rbac_changes
    }

    /// How many times a CustomResourceDefinition changed, as [`Objects::rbac_changes`].
    pub fn definition_changes(&self) -> u64 {
        self.lock().definition_changes
    }

    pub fn get(&self, key: &ObjectKey) -> Option<Arc<Value>> {
        self.lock().objects.get(key).cloned()
    }

    /// The objects of a resource, in one namespace or all, and the revision they were read at.
    pub fn list(&self, resource: &str, namespace: Option<&str>) -> (Vec<Arc<Value>>, u64) {
        let inner = self.lock();
        let start = ObjectKey {
            resource: Name::Owned(resource.to_string()),
            namespace: namespace.unwrap_or("").to_string(),
            name: String::new(),
        };
        let items = inner
            .objects
            .range(start..)
            .take_while(|(k, _)| {
                k.resource == resource && namespace.is_none_or(|ns| k.namespace == ns)
            })
            .map(|(_, v)| v.clone())
            .collect();
        (items, inner.revision)
    }

    fn commit(
        &self,
        inner: &mut Inner,
        kind: EventType,
        key: ObjectKey,
        object: Arc<Value>,
    ) -> Arc<Change> {
        if let Some(journal) = &self.journal {
            // Queued under the lock, so the journal sees changes in revision order.
            let value = match kind {
                EventType::Deleted => None,
                _ => Some(serde_json::to_vec(&*object).expect("JSON always serializes")),
            };
            drop(journal.record(vec![
                (journal_key(&key), value),
                (
                    REVISION_KEY.to_string(),
                    Some(inner.revision.to_be_bytes().to_vec()),
                ),
            ]));
        }
        if RBAC_RESOURCES.contains(&key.resource.as_ref()) {
            inner.rbac_changes += 1;
        }
        if key.resource == crate::custom::DEFINITIONS {
            inner.definition_changes += 1;
        }
        let change = Arc::new(Change {
            revision: inner.revision,
            kind,
            key,
            object,
        });
        if inner.log.len() == LOG_CAPACITY {
            inner.log.pop_front();
        }
        inner.log.push_back(change.clone());
        change
    }

    fn stamp(inner: &mut Inner, object: &mut Value) {
        inner.revision += 1;
        object["metadata"]["resourceVersion"] = Value::String(inner.revision.to_string());
    }

    pub fn create(&self, key: ObjectKey, mut object: Value) -> Result<Arc<Value>, StoreError> {
        let change = {
            let mut inner = self.lock();
            if inner.objects.contains_key(&key) {
                return Err(StoreError::AlreadyExists);
            }
            Self::stamp(&mut inner, &mut object);
            let object = Arc::new(object);
            inner.objects.insert(key.clone(), object.clone());
            self.commit(&mut inner, EventType::Added, key, object)
        };
        let _ = self.changes.send(change.clone());
        Ok(change.object.clone())
    }

    /// Replaces the object; when `object` carries a resourceVersion, only if it is current.
    pub fn update(&self, key: &ObjectKey, mut object: Value) -> Result<Arc<Value>, StoreError> {
        let change = {
            let mut inner = self.lock();
            let current = inner.objects.get(key).ok_or(StoreError::NotFound)?;
            if let Some(expected) = resource_version(&object)
                && Some(expected) != resource_version(current)
            {
                return Err(StoreError::Conflict);
            }
            if **current == object {
                return Ok(current.clone());
            }
            Self::stamp(&mut inner, &mut object);
            let object = Arc::new(object);
            inner.objects.insert(key.clone(), object.clone());
            self.commit(&mut inner, EventType::Modified, key.clone(), object)
        };
        let _ = self.changes.send(change.clone());
        Ok(change.object.clone())
    }

    pub fn delete(&self, key: &ObjectKey) -> Result<Arc<Value>, StoreError> {
        let change = {
            let mut inner = self.lock();
            let removed = inner.objects.remove(key).ok_or(StoreError::NotFound)?;
            let mut last = (*removed).clone();
            // A pod's last state says when it was deleted, as upstream's carries the
            // deletionTimestamp its graceful deletion set: whoever replays the change later
            // (metering) learns when the pod ended, not when it heard.
            if key.resource == "pods" && last["metadata"]["deletionTimestamp"].is_null() {
                last["metadata"]["deletionTimestamp"] = Value::String(
                    jiff::Timestamp::now()
                        .strftime("%Y-%m-%dT%H:%M:%SZ")
                        .to_string(),
                );
                last["metadata"]["deletionGracePeriodSeconds"] = Value::from(0);
            }
            Self::stamp(&mut inner, &mut last);
            self.commit(&mut inner, EventType::Deleted, key.clone(), Arc::new(last))
        };
        let _ = self.changes.send(change.clone());
        Ok(change.object.clone())
    }

    /// The logged changes after `revision` and a receiver for those that follow, taken
    /// together so that none falls between them.
    pub fn watch(&self, after: u64) -> Result<(Vec<Arc<Change>>, Subscription), StoreError> {
        let inner = self.lock();
        let receiver = self.changes.subscribe();
        let oldest_kept = inner.log.front().map_or(inner.revision, |c| c.revision);
        if after + 1 < oldest_kept && after < inner.revision {
            return Err(StoreError::Expired);
        }
        let backlog = inner
            .log
            .iter()
            .filter(|c| c.revision > after)
            .cloned()
            .collect();
        Ok((backlog, receiver))
    }

    /// A receiver of every change from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.changes.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(name: &str) -> ObjectKey {
        ObjectKey {
            resource: "pods".into(),
            namespace: "default".into(),
            name: name.into(),
        }
    }

    #[test]
    fn a_stale_resource_version_conflicts_and_changes_nothing() {
        let objects = Objects::default();
        let created = objects
            .create(key("a"), json!({"metadata": {"name": "a"}, "spec": 1}))
            .unwrap();
        let mut stale = (*created).clone();
        let mut fresh = (*created).clone();
        fresh["spec"] = json!(2);
        objects.update(&key("a"), fresh).unwrap();
        stale["spec"] = json!(3);
        assert_eq!(objects.update(&key("a"), stale), Err(StoreError::Conflict));
        assert_eq!(objects.get(&key("a")).unwrap()["spec"], json!(2));
    }

    #[test]
    fn a_watch_resumes_after_a_revision_and_sees_each_change_once() {
        let objects = Objects::default();
        objects.create(key("a"), json!({"metadata": {}})).unwrap();
        let after = objects.revision();
        objects.create(key("b"), json!({"metadata": {}})).unwrap();
        objects.delete(&key("a")).unwrap();
        let (backlog, _) = objects.watch(after).unwrap();
        let seen: Vec<_> = backlog
            .iter()
            .map(|c| (c.kind, c.key.name.as_str()))
            .collect();
        assert_eq!(seen, [(EventType::Added, "b"), (EventType::Deleted, "a")]);
    }

    #[test]
    fn a_deleted_pods_last_state_says_when_it_was_deleted() {
        let objects = Objects::default();
        objects.create(key("a"), json!({"metadata": {}})).unwrap();
        let after = objects.revision();
        let before = jiff::Timestamp::now().as_second();
        let last = objects.delete(&key("a")).unwrap();
        let at: jiff::Timestamp = last["metadata"]["deletionTimestamp"]
            .as_str()
            .expect("a deletion time")
            .parse()
            .unwrap();
        assert!((before..=before + 1).contains(&at.as_second()), "{at}");
        assert_eq!(last["metadata"]["deletionGracePeriodSeconds"], json!(0));
        let (backlog, _) = objects.watch(after).unwrap();
        assert_eq!(
            backlog.last().unwrap().object,
            last,
            "the change logged says so too"
        );
    }
}
