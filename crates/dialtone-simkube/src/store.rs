//! One cluster's objects, keyed by resource, namespace and name and versioned by one counter
//! per cluster (the `resourceVersion`), with a bounded log of changes so that a watch can
//! start from any recent version, as etcd lets kube-apiserver do.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::broadcast;

/// How many changes a watch can resume from.
const LOG_CAPACITY: usize = 10_000;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub resource: &'static str,
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
    log: VecDeque<Arc<Change>>,
}

/// Changes from some revision on.
pub type Subscription = broadcast::Receiver<Arc<Change>>;

pub struct Objects {
    inner: Mutex<Inner>,
    changes: broadcast::Sender<Arc<Change>>,
}

impl Default for Objects {
    fn default() -> Self {
        Objects {
            inner: Mutex::new(Inner {
                objects: BTreeMap::new(),
                revision: 1,
                log: VecDeque::new(),
            }),
            changes: broadcast::channel(4096).0,
        }
    }
}

fn resource_version(object: &Value) -> Option<u64> {
    object["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|rv| rv.parse().ok())
}

impl Objects {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn revision(&self) -> u64 {
        self.lock().revision
    }

    pub fn get(&self, key: &ObjectKey) -> Option<Arc<Value>> {
        self.lock().objects.get(key).cloned()
    }

    /// The objects of a resource, in one namespace or all, and the revision they were read at.
    pub fn list(&self, resource: &'static str, namespace: Option<&str>) -> (Vec<Arc<Value>>, u64) {
        let inner = self.lock();
        let start = ObjectKey {
            resource,
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
        inner: &mut Inner,
        kind: EventType,
        key: ObjectKey,
        object: Arc<Value>,
    ) -> Arc<Change> {
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
            Self::commit(&mut inner, EventType::Added, key, object)
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
            Self::commit(&mut inner, EventType::Modified, key.clone(), object)
        };
        let _ = self.changes.send(change.clone());
        Ok(change.object.clone())
    }

    pub fn delete(&self, key: &ObjectKey) -> Result<Arc<Value>, StoreError> {
        let change = {
            let mut inner = self.lock();
            let removed = inner.objects.remove(key).ok_or(StoreError::NotFound)?;
            let mut last = (*removed).clone();
            Self::stamp(&mut inner, &mut last);
            Self::commit(&mut inner, EventType::Deleted, key.clone(), Arc::new(last))
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
            resource: "pods",
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
}
