//! Typed objects over the key-value store: the semantics of create, get, list, update,
//! delete and watch that the API exposes, and the only place objects are encoded for storage.
//!
//! Keys: `/o/{plural}/{names from the org down}` for objects (so the objects of one kind
//! under one parent share a prefix), `/m/{path}` for each node's children marker, `/p/o/…`
//! for each node's access policy; [`crate::records`] keeps tokens and audit records.
//!
//! The children marker closes a race: creating a child rewrites its parent's marker, and
//! deleting the parent compares the marker's revision, so a child can never be created under
//! a parent that is being removed, and the tree never holds an orphan.

use std::sync::Arc;

use dialtone_types::auth::RetiredOrg;
use dialtone_types::policy::PolicyBinding;
use dialtone_types::validation::{FieldReason, decode_strict, validate_meta};
use dialtone_types::{
    API_VERSION, FieldErrors, Kind, KindInfo, LabelSelector, Object, ObjectMeta, ResourcePath,
};
use futures::StreamExt;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::records::{audit_committed, decode_record, encode_record, pending_audit, retired_key};
use crate::{Compare, EventKind, KeyRange, KeyValue, Revision, Store, StoreError, Txn, TxnOutcome};

/// The finalizer that holds a node whose children are still being deleted.
pub const CHILDREN_FINALIZER: &str = "dialtone.dev/children";

/// An object whose spec this layer does not interpret.
pub type RawObject = Object<serde_json::Value, serde_json::Value>;

/// Why an object call failed, in the API's terms.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// No such object.
    #[error("{0} not found")]
    NotFound(String),
    /// An object of that name exists.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The object changed since it was read, or is being deleted.
    #[error("{0}")]
    Conflict(String),
    /// The object's fields are refused.
    #[error("{0}")]
    Invalid(FieldErrors),
    /// A list resumed from a revision that is no longer kept.
    #[error("{0}")]
    Gone(String),
    /// The request cannot be read (a malformed body, a foreign continue token).
    #[error("{0}")]
    BadRequest(String),
    /// The guard of a guarded create moved: another writer decided from the same state
    /// first. Read again and decide again.
    #[error("{0} changed meanwhile; retry")]
    GuardMoved(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An object call's result.
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// Whether a write carries the request's pending audit record.
#[derive(Clone, Copy)]
enum Audited {
    Yes,
    No,
}

/// What a delete did.
#[derive(Debug)]
pub enum Deletion {
    /// The object is gone.
    Deleted,
    /// Finalizers (or children) remain; the object now carries a deletion timestamp.
    Pending(Box<RawObject>),
}

/// Options of a list call.
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    /// Only objects whose labels match.
    pub selector: LabelSelector,
    /// 0: everything.
    pub limit: usize,
    /// Where the previous page ended.
    pub resume: Option<Position>,
}

/// Where a paginated list goes on: the key just after the last item its caller was shown,
/// and the revision all its pages are read at (none: the latest). The API hands it out
/// only sealed in a continue token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// The revision every page is read at.
    pub revision: Option<Revision>,
    /// The first key of the next page.
    pub start: Vec<u8>,
}

/// One page of objects.
#[derive(Debug)]
pub struct Page<T> {
    /// The page's objects, in key order.
    pub items: Vec<T>,
    /// The revision the page was read at.
    pub revision: Revision,
    /// Set when more may follow.
    pub next: Option<Position>,
}

/// What a change did to an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// It was created.
    Added,
    /// It changed.
    Modified,
    /// It was removed.
    Deleted,
}

/// A change to an object, as a watcher sees it.
#[derive(Debug)]
pub struct Change {
    /// Added, modified or deleted.
    pub kind: ChangeKind,
    /// Where the object is, from its key.
    pub path: ResourcePath,
    /// The object after the change; for a deletion, as it was, at the deletion's revision.
    pub object: RawObject,
    /// The change's store revision.
    pub revision: Revision,
}

/// What access control reads of the store: the tree's nodes, identities, groups with their
/// members, and each node's policy.
#[derive(Clone, Debug, PartialEq)]
pub enum AccessRecord {
    /// An object of any kind but a group: only that it exists matters.
    Object(ResourcePath),
    /// A group, whose members access control reads.
    Group {
        /// The group's path.
        path: ResourcePath,
        /// Its members' names.
        members: Vec<String>,
    },
    /// A node's policy.
    Policy {
        /// The node it is set on.
        node: ResourcePath,
        /// Its bindings.
        bindings: Vec<PolicyBinding>,
    },
}

/// A change of an [`AccessRecord`]: put (created or changed) or removed.
#[derive(Clone, Debug, PartialEq)]
pub enum AccessChange {
    /// Created or changed.
    Put(AccessRecord),
    /// Removed.
    Removed(AccessRecord),
}

/// The object layer. Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    store: Arc<dyn Store>,
    region: String,
    /// Whether other regions replicate into this store: only then is an object homed
    /// elsewhere someone else's.
    replicated: bool,
    clock: fn() -> Timestamp,
}

/// The store key of the object at `path`: `/o/{plural}/{names}`.
pub fn object_key(path: &ResourcePath) -> String {
    format!(
        "/o/{}/{}",
        path.kind().plural,
        path.names().collect::<Vec<_>>().join("/")
    )
}

fn marker_key(path: &ResourcePath) -> String {
    format!("/m/{path}")
}

/// Where a node's access policy is kept: beside its object, removed in the same
/// transaction as the node, so a node re-created under the same name starts with none.
fn policy_key(path: &ResourcePath) -> String {
    format!("/p{}", object_key(path))
}

/// Objects (`/o/`) and policies (`/p/`): everything access control reads, as one range so
/// that one watch sees it in revision order.
fn access_range() -> KeyRange {
    KeyRange {
        start: b"/o/".to_vec(),
        end: Some(b"/p0".to_vec()),
    }
}

/// The prefix of every object of `kind` under `parent`.
pub fn collection_prefix(kind: &'static KindInfo, parent: Option<&ResourcePath>) -> String {
    match parent {
        None => format!("/o/{}/", kind.plural),
        Some(p) => format!(
            "/o/{}/{}/",
            kind.plural,
            p.names().collect::<Vec<_>>().join("/")
        ),
    }
}

/// The path of the object stored under `key`.
pub fn path_of_key(key: &[u8]) -> Option<ResourcePath> {
    let key = std::str::from_utf8(key).ok()?.strip_prefix("/o/")?;
    let mut parts = key.split('/');
    let kind = KindInfo::by_plural(parts.next()?)?;
    let names: Vec<String> = parts.map(String::from).collect();
    ResourcePath::from_names(kind, &names).ok()
}

/// A stored object, straight from its bytes (controllers read objects on every pass), as
/// kind `K`'s type or as a `RawObject`.
fn decode_stored<S, T>(kv: &KeyValue) -> Result<Object<S, T>>
where
    S: Default + serde::de::DeserializeOwned,
    T: Default + serde::de::DeserializeOwned,
{
    let mut object: Object<S, T> = serde_json::from_slice(&kv.value).map_err(|e| {
        StoreError::Internal(format!(
            "corrupt object at {}: {e}",
            String::from_utf8_lossy(&kv.key)
        ))
    })?;
    object.metadata.resource_version = kv.mod_revision.to_string();
    Ok(object)
}

fn decode_typed<K: Kind>(kv: &KeyValue) -> Result<Object<K, K::Status>> {
    decode_stored(kv)
}

fn decode_raw(kv: &KeyValue) -> Result<RawObject> {
    decode_stored(kv)
}

fn encode_raw(object: &RawObject) -> Result<Vec<u8>> {
    let mut stored = object.clone();
    // The store's mod revision is the resource version; storing it would be stale at once.
    stored.metadata.resource_version.clear();
    serde_json::to_vec(&stored).map_err(|e| StoreError::Internal(e.to_string()).into())
}

/// Converts between the raw and the typed form of an object.
pub fn to_raw<K: Kind>(object: &Object<K, K::Status>) -> Result<RawObject> {
    let value = serde_json::to_value(object).map_err(|e| StoreError::Internal(e.to_string()))?;
    serde_json::from_value(value).map_err(|e| StoreError::Internal(e.to_string()).into())
}

/// Converts between the raw and the typed form of an object.
pub fn from_raw<K: Kind>(object: RawObject) -> Result<Object<K, K::Status>> {
    let value = serde_json::to_value(object).map_err(|e| StoreError::Internal(e.to_string()))?;
    serde_json::from_value(value)
        .map_err(|e| StoreError::Internal(format!("stored object does not decode: {e}")).into())
}

fn parse_resource_version(rv: &str) -> Result<Option<Revision>> {
    if rv.is_empty() {
        return Ok(None);
    }
    rv.parse::<Revision>().map(Some).map_err(|_| {
        let mut errors = FieldErrors::default();
        errors.push(
            "metadata.resourceVersion",
            FieldReason::FieldValueInvalid,
            format!("`{rv}` is not a resource version"),
        );
        RegistryError::Invalid(errors)
    })
}

/// Every bad field of the client-settable parts of an object.
pub fn validate<K: Kind>(object: &Object<K, K::Status>) -> FieldErrors {
    let mut errors = FieldErrors::default();
    validate_meta(&object.metadata, &mut errors);
    object.spec.validate(&mut errors);
    errors
}

fn policy_etag(revision: Revision, node: &RawObject) -> String {
    format!("{revision}-{}", node.metadata.uid)
}

/// The access record of the key `at.key` holding `value`'s value; `None` for keys that are
/// none (no path).
fn access_record(at: &KeyValue, value: &KeyValue) -> Result<Option<AccessRecord>> {
    let key = at.key.as_slice();
    if let Some(object_key) = key.strip_prefix(b"/p") {
        let Some(node) = path_of_key(object_key) else {
            return Ok(None);
        };
        let bindings = if value.value.is_empty() {
            Vec::new()
        } else {
            decode_record(value)?
        };
        return Ok(Some(AccessRecord::Policy { node, bindings }));
    }
    let Some(path) = path_of_key(key) else {
        return Ok(None);
    };
    if std::ptr::eq(path.kind(), &dialtone_types::kinds::GROUP) {
        let group: Object<dialtone_types::Group> =
            serde_json::from_slice(&value.value).map_err(|e| {
                StoreError::Internal(format!("stored group {path} does not decode: {e}"))
            })?;
        return Ok(Some(AccessRecord::Group {
            path,
            members: group.spec.members,
        }));
    }
    Ok(Some(AccessRecord::Object(path)))
}

fn conflict_stale(path: &ResourcePath) -> RegistryError {
    RegistryError::Conflict(format!(
        "{path} was changed since you read it (stale resourceVersion); get it again and retry"
    ))
}

impl Registry {
    /// The object layer over `store`, stamping new objects with `region` as their home and
    /// reading the time from `clock`.
    pub fn new(store: Arc<dyn Store>, region: impl Into<String>, clock: fn() -> Timestamp) -> Self {
        Registry {
            store,
            region: region.into(),
            replicated: false,
            clock,
        }
    }

    /// The same, for a region whose store also holds other regions' objects.
    pub fn replicated(self) -> Self {
        Registry {
            replicated: true,
            ..self
        }
    }

    /// The store underneath.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The region new objects are homed in.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// Whether an object is homed in this registry's region: only there do controllers act
    /// on it (elsewhere it is a replica, see `replication`). A region alone owns every
    /// object in its store, whatever region it was made under.
    pub fn homed_here(&self, metadata: &ObjectMeta) -> bool {
        !self.replicated || metadata.home_region == self.region
    }

    async fn get_kv(&self, path: &ResourcePath) -> Result<(KeyValue, RawObject)> {
        let kv = self
            .store
            .get(object_key(path).as_bytes())
            .await?
            .ok_or_else(|| RegistryError::NotFound(path.to_string()))?;
        let object = decode_raw(&kv)?;
        Ok((kv, object))
    }

    /// The object, if it is still at `resource_version` (any version when that is empty).
    async fn get_expecting(
        &self,
        path: &ResourcePath,
        resource_version: &str,
    ) -> Result<(KeyValue, RawObject)> {
        let expected = parse_resource_version(resource_version)?;
        let (kv, current) = self.get_kv(path).await?;
        if expected.is_some_and(|rv| rv != kv.mod_revision) {
            return Err(conflict_stale(path));
        }
        Ok((kv, current))
    }

    /// The object at `path`, uninterpreted.
    pub async fn get_raw(&self, path: &ResourcePath) -> Result<RawObject> {
        Ok(self.get_kv(path).await?.1)
    }

    /// The object at `path`, as kind `K`.
    pub async fn get<K: Kind>(&self, path: &ResourcePath) -> Result<Object<K, K::Status>> {
        let kv = self
            .store
            .get(object_key(path).as_bytes())
            .await?
            .ok_or_else(|| RegistryError::NotFound(path.to_string()))?;
        decode_typed(&kv)
    }

    /// Every object of `K` anywhere below `ancestor`, unpaginated: for checks over a subtree.
    pub async fn list_under<K: Kind>(
        &self,
        ancestor: &ResourcePath,
    ) -> Result<Vec<Object<K, K::Status>>> {
        let range = KeyRange::prefix(collection_prefix(K::INFO, Some(ancestor)));
        let all = self.store.range(&range, None, 0).await?;
        all.kvs.iter().map(decode_typed).collect()
    }

    /// Whether an object is at `path`.
    pub async fn exists(&self, path: &ResourcePath) -> Result<bool> {
        Ok(self.store.get(object_key(path).as_bytes()).await?.is_some())
    }

    /// Decodes a request body for kind `K`, naming every unknown or bad field.
    pub fn decode_body<K: Kind>(body: &[u8]) -> Result<Object<K, K::Status>> {
        let object: Object<K, K::Status> = decode_strict(body).map_err(|errors| {
            match errors.0.iter().find(|e| e.field == "body") {
                // Not JSON of this shape at all: a bad request, not a bad field.
                Some(malformed) => RegistryError::BadRequest(malformed.message.clone()),
                None => RegistryError::Invalid(errors),
            }
        })?;
        let mut errors = FieldErrors::default();
        if !object.kind.is_empty() && object.kind != K::INFO.kind {
            errors.push(
                "kind",
                FieldReason::FieldValueInvalid,
                format!("expected `{}`, got `{}`", K::INFO.kind, object.kind),
            );
        }
        if !object.api_version.is_empty() && object.api_version != API_VERSION {
            errors.push(
                "apiVersion",
                FieldReason::FieldValueInvalid,
                format!("expected `{API_VERSION}`, got `{}`", object.api_version),
            );
        }
        errors.into_result().map_err(RegistryError::Invalid)?;
        Ok(object)
    }

    /// The guard of the org's allocations of one kind as it is now (a cluster's address
    /// range, a connection's peer range and slot): the key a create that allocates
    /// compares and moves (`create_guarded`), so that no two servers hand out one range.
    pub async fn allocation_guard(&self, org: &str, kind: &KindInfo) -> Result<Compare> {
        let key = format!("/allocations/{org}/{}", kind.plural).into_bytes();
        let mod_revision = self.store.get(&key).await?.map_or(0, |kv| kv.mod_revision);
        Ok(Compare { key, mod_revision })
    }

    /// Creates `object` under `parent`. The server sets every server-managed field.
    pub async fn create<K: Kind>(
        &self,
        parent: Option<&ResourcePath>,
        object: Object<K, K::Status>,
    ) -> Result<Object<K, K::Status>> {
        self.create_guarded(parent, object, None).await
    }

    /// Creates `object` only if `guard`'s key still has the mod revision it was read at, and
    /// writes the key again: writers on any server that read a guard, decide from what it
    /// covers (an org's address allocations) and create, never both decide from the same
    /// state. `GuardMoved` when another writer moved it first.
    pub async fn create_guarded<K: Kind>(
        &self,
        parent: Option<&ResourcePath>,
        object: Object<K, K::Status>,
        guard: Option<Compare>,
    ) -> Result<Object<K, K::Status>> {
        validate(&object)
            .into_result()
            .map_err(RegistryError::Invalid)?;
        let path = match parent {
            None => ResourcePath::org(&object.metadata.name),
            Some(p) => p.child(K::INFO, &object.metadata.name),
        };
        let now = (self.clock)();
        let mut stored = Object {
            api_version: API_VERSION.to_string(),
            kind: K::INFO.kind.to_string(),
            metadata: ObjectMeta {
                name: object.metadata.name.clone(),
                uid: uuid::Uuid::new_v4().to_string(),
                parent: parent.map(|p| p.to_string()).unwrap_or_default(),
                resource_version: String::new(),
                generation: 1,
                labels: object.metadata.labels,
                annotations: object.metadata.annotations,
                creation_timestamp: Some(now),
                deletion_timestamp: None,
                finalizers: object.metadata.finalizers,
                home_region: self.region.clone(),
            },
            spec: object.spec,
            // Callers that admit the object may have said something about it already.
            status: object.status,
        };
        let value = encode_raw(&to_raw(&stored)?)?;
        let key = object_key(&path);
        loop {
            let mut txn = Txn::default()
                .when(key.clone(), 0)
                .put(key.clone(), value.clone());
            if let Some(guard) = &guard {
                txn = txn
                    .when(guard.key.clone(), guard.mod_revision)
                    .put(guard.key.clone(), path.to_string());
            }
            let audit = pending_audit(201, (self.clock)());
            if let Some((_, audit_key, record)) = &audit {
                txn = txn.put(audit_key.clone(), record.clone());
            }
            if let Some(parent) = parent {
                let (parent_kv, parent_object) =
                    self.get_kv(parent).await.map_err(|e| match e {
                        RegistryError::NotFound(p) => {
                            RegistryError::NotFound(format!("parent {p}"))
                        }
                        other => other,
                    })?;
                if parent_object.metadata.deletion_timestamp.is_some() {
                    return Err(RegistryError::Conflict(format!(
                        "{parent} is being deleted; nothing can be created in it"
                    )));
                }
                txn = txn
                    .when(object_key(parent), parent_kv.mod_revision)
                    .put(marker_key(parent), Vec::new());
            }
            match self.store.txn(txn).await? {
                TxnOutcome::Committed { revision } => {
                    audit_committed(audit.map(|(pending, ..)| pending), 201);
                    stored.metadata.resource_version = revision.to_string();
                    return Ok(stored);
                }
                TxnOutcome::Conflict => {
                    if self.exists(&path).await? {
                        return Err(RegistryError::AlreadyExists(path.to_string()));
                    }
                    if let Some(guard) = &guard {
                        let now = self.store.get(&guard.key).await?;
                        if now.map_or(0, |kv| kv.mod_revision) != guard.mod_revision {
                            return Err(RegistryError::GuardMoved(
                                String::from_utf8_lossy(&guard.key).into_owned(),
                            ));
                        }
                    }
                    // The parent changed under us: look at it again.
                }
            }
        }
    }

    /// Replaces labels, annotations, finalizers and spec. `resourceVersion`, when given, must
    /// be current. Removing the last finalizer of an object being deleted removes it.
    pub async fn update<K: Kind>(
        &self,
        path: &ResourcePath,
        object: Object<K, K::Status>,
    ) -> Result<Option<Object<K, K::Status>>> {
        let mut errors = validate(&object);
        if object.metadata.name != path.name() {
            errors.push(
                "metadata.name",
                FieldReason::FieldValueImmutable,
                format!("the name is `{}` and cannot change", path.name()),
            );
        }
        errors.into_result().map_err(RegistryError::Invalid)?;
        let (kv, current) = self
            .get_expecting(path, &object.metadata.resource_version)
            .await?;
        let mut updated: Object<K, K::Status> = from_raw(current.clone())?;
        if current.metadata.deletion_timestamp.is_some()
            && let Some(added) = object
                .metadata
                .finalizers
                .iter()
                .find(|f| !current.metadata.finalizers.contains(f))
        {
            let mut errors = FieldErrors::default();
            errors.push(
                "metadata.finalizers",
                FieldReason::FieldValueForbidden,
                format!("cannot add `{added}` while {path} is being deleted"),
            );
            return Err(RegistryError::Invalid(errors));
        }
        if updated.spec != object.spec {
            updated.metadata.generation += 1;
        }
        updated.spec = object.spec;
        updated.metadata.labels = object.metadata.labels;
        updated.metadata.annotations = object.metadata.annotations;
        updated.metadata.finalizers = object.metadata.finalizers;
        let raw = to_raw(&updated)?;
        if raw.metadata.deletion_timestamp.is_some() && raw.metadata.finalizers.is_empty() {
            self.remove(path, kv.mod_revision).await?;
            return Ok(None);
        }
        self.write(path, kv.mod_revision, &raw, Audited::Yes)
            .await
            .map(|o| from_raw(o).map(Some))?
    }

    /// Replaces the status only.
    pub async fn update_status<K: Kind>(
        &self,
        path: &ResourcePath,
        object: Object<K, K::Status>,
    ) -> Result<Object<K, K::Status>> {
        let (kv, current) = self
            .get_expecting(path, &object.metadata.resource_version)
            .await?;
        let mut raw = current;
        raw.status = serde_json::to_value(&object.status)
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        from_raw(
            self.write(path, kv.mod_revision, &raw, Audited::Yes)
                .await?,
        )
    }

    /// Writes `raw` over the object at `revision`; an audited write carries the request's
    /// pending audit record (a deletion's writes do not: its answer comes at its end).
    async fn write(
        &self,
        path: &ResourcePath,
        revision: Revision,
        raw: &RawObject,
        audited: Audited,
    ) -> Result<RawObject> {
        let key = object_key(path);
        let mut txn = Txn::default()
            .when(key.clone(), revision)
            .put(key, encode_raw(raw)?);
        // An update is answered 200 when it commits.
        let audit = match audited {
            Audited::Yes => pending_audit(200, (self.clock)()),
            Audited::No => None,
        };
        if let Some((_, audit_key, record)) = &audit {
            txn = txn.put(audit_key.clone(), record.clone());
        }
        match self.store.txn(txn).await? {
            TxnOutcome::Committed { revision } => {
                audit_committed(audit.map(|(pending, ..)| pending), 200);
                let mut written = raw.clone();
                written.metadata.resource_version = revision.to_string();
                Ok(written)
            }
            TxnOutcome::Conflict => Err(conflict_stale(path)),
        }
    }

    /// Removes the object for good, if it has no children and is at `revision`. An org
    /// leaves a retirement record, under which its audit log and tokens are kept.
    async fn remove(&self, path: &ResourcePath, revision: Revision) -> Result<()> {
        let marker = self.store.get(marker_key(path).as_bytes()).await?;
        if self.first_child(path).await?.is_some() {
            return Err(RegistryError::Conflict(format!(
                "{path} still has children"
            )));
        }
        let key = object_key(path);
        let mut txn = Txn::default()
            .when(key.clone(), revision)
            .when(marker_key(path), marker.map_or(0, |m| m.mod_revision))
            .delete(key)
            .delete(marker_key(path))
            .delete(policy_key(path));
        if std::ptr::eq(path.kind(), &dialtone_types::kinds::ORG) {
            // Gone already (the deletion controller finished it first) is a stale read: the
            // caller reads again and finds its work done.
            let org = match self.get_kv(path).await {
                Ok((_, org)) => org,
                Err(RegistryError::NotFound(_)) => return Err(conflict_stale(path)),
                Err(e) => return Err(e),
            };
            let retired = RetiredOrg {
                uid: org.metadata.uid.clone(),
                name: path.name().to_string(),
                deleted_at: (self.clock)(),
            };
            txn = txn.put(retired_key(&retired.uid), encode_record(&retired)?);
        }
        match self.store.txn(txn).await? {
            TxnOutcome::Committed { .. } => Ok(()),
            TxnOutcome::Conflict => Err(conflict_stale(path)),
        }
    }

    async fn first_child(&self, path: &ResourcePath) -> Result<Option<ResourcePath>> {
        for kind in path.kind().children() {
            let range = KeyRange::prefix(collection_prefix(kind, Some(path)));
            if let Some(kv) = self.store.range(&range, None, 1).await?.kvs.first() {
                return Ok(path_of_key(&kv.key));
            }
        }
        Ok(None)
    }

    /// The node's children, each with its uid.
    async fn children(&self, path: &ResourcePath) -> Result<Vec<(ResourcePath, String)>> {
        let mut children = Vec::new();
        for kind in path.kind().children() {
            let range = KeyRange::prefix(collection_prefix(kind, Some(path)));
            for kv in self.store.range(&range, None, 0).await?.kvs {
                if let Some(child) = path_of_key(&kv.key) {
                    children.push((child, decode_raw(&kv)?.metadata.uid));
                }
            }
        }
        Ok(children)
    }

    /// Deletes the object. Without `cascade`, a node with children is refused. With it, the
    /// whole subtree goes; nodes held by finalizers stay, marked as being deleted, until
    /// their finalizers are removed, and their ancestors wait for them.
    pub async fn delete(&self, path: &ResourcePath, cascade: bool) -> Result<Deletion> {
        self.delete_checked(path, cascade, None).await
    }

    /// `delete`, of the object with uid `uid` only: NotFound when the name now holds
    /// another, so that a deletion driven from a stale read never removes an object
    /// re-created under the same name.
    pub async fn delete_uid(&self, path: &ResourcePath, uid: &str) -> Result<Deletion> {
        self.delete_checked(path, true, Some(uid)).await
    }

    async fn delete_checked(
        &self,
        path: &ResourcePath,
        cascade: bool,
        uid: Option<&str>,
    ) -> Result<Deletion> {
        // Once this call has seen the object, it deletes that object only, and finds its
        // work done if another (the deletion controller, say) removed it meanwhile.
        let mut target: Option<String> = uid.map(str::to_string);
        let mut started = false;
        loop {
            let (kv, mut object) = match self.get_kv(path).await {
                Ok(found) => found,
                Err(RegistryError::NotFound(_)) if started => return Ok(Deletion::Deleted),
                Err(e) => return Err(e),
            };
            match &target {
                Some(uid) if *uid != object.metadata.uid => {
                    return match started {
                        true => Ok(Deletion::Deleted),
                        false => Err(RegistryError::NotFound(path.to_string())),
                    };
                }
                Some(_) => {}
                None => target = Some(object.metadata.uid.clone()),
            }
            started = true;
            let has_children = self.first_child(path).await?.is_some();
            if has_children && !cascade {
                return Err(RegistryError::Conflict(format!(
                    "{path} has children; delete them first or delete with cascade"
                )));
            }
            if !has_children && object.metadata.finalizers.is_empty() {
                match self.remove(path, kv.mod_revision).await {
                    Ok(()) => return Ok(Deletion::Deleted),
                    Err(RegistryError::Conflict(_)) => continue,
                    Err(e) => return Err(e),
                }
            }
            let mut changed = false;
            if object.metadata.deletion_timestamp.is_none() {
                object.metadata.deletion_timestamp = Some((self.clock)());
                object.metadata.generation += 1;
                changed = true;
            }
            if has_children
                && !object
                    .metadata
                    .finalizers
                    .iter()
                    .any(|f| f == CHILDREN_FINALIZER)
            {
                object
                    .metadata
                    .finalizers
                    .push(CHILDREN_FINALIZER.to_string());
                changed = true;
            }
            if changed {
                match self
                    .write(path, kv.mod_revision, &object, Audited::No)
                    .await
                {
                    Ok(_) => {}
                    Err(RegistryError::Conflict(_)) => continue,
                    Err(e) => return Err(e),
                }
            }
            if has_children {
                for (child, child_uid) in self.children(path).await? {
                    match Box::pin(self.delete_checked(&child, true, Some(&child_uid))).await {
                        Ok(_) | Err(RegistryError::NotFound(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            return self.finish_deletion(path).await;
        }
    }

    /// Completes the deletion of a node marked as being deleted once its children are gone:
    /// drops the children finalizer, and the node itself if no other finalizer holds it.
    pub async fn finish_deletion(&self, path: &ResourcePath) -> Result<Deletion> {
        loop {
            let (kv, mut object) = match self.get_kv(path).await {
                Ok(found) => found,
                Err(RegistryError::NotFound(_)) => return Ok(Deletion::Deleted),
                Err(e) => return Err(e),
            };
            if object.metadata.deletion_timestamp.is_none()
                || self.first_child(path).await?.is_some()
            {
                return Ok(Deletion::Pending(Box::new(object)));
            }
            let before = object.metadata.finalizers.len();
            object
                .metadata
                .finalizers
                .retain(|f| f != CHILDREN_FINALIZER);
            let outcome = if object.metadata.finalizers.is_empty() {
                self.remove(path, kv.mod_revision)
                    .await
                    .map(|()| Deletion::Deleted)
            } else if object.metadata.finalizers.len() != before {
                self.write(path, kv.mod_revision, &object, Audited::No)
                    .await
                    .map(|o| Deletion::Pending(Box::new(o)))
            } else {
                return Ok(Deletion::Pending(Box::new(object)));
            };
            match outcome {
                Err(RegistryError::Conflict(_)) => continue,
                other => return other,
            }
        }
    }

    /// Every object of any kind that is marked as being deleted, and the revision read.
    pub async fn deleting(&self) -> Result<(Vec<ResourcePath>, Revision)> {
        let all = self.store.range(&KeyRange::prefix("/o/"), None, 0).await?;
        let mut paths = Vec::new();
        for kv in &all.kvs {
            if decode_raw(kv)?.metadata.deletion_timestamp.is_some() {
                paths.extend(path_of_key(&kv.key));
            }
        }
        Ok((paths, all.revision))
    }

    /// One page of the objects of `kind` under `parent` (every org when `parent` is `None`),
    /// keeping those that match the selector and that `visible` lets through. All pages of
    /// one listing are read at the revision of the first.
    pub async fn list_raw(
        &self,
        kind: &'static KindInfo,
        parent: Option<&ResourcePath>,
        options: &ListOptions,
        visible: &(dyn Fn(&ResourcePath) -> bool + Send + Sync),
    ) -> Result<Page<RawObject>> {
        let range = KeyRange::prefix(collection_prefix(kind, parent));
        let (mut revision, mut start) = match &options.resume {
            None => (None, range.start.clone()),
            Some(position) if range.contains(&position.start) => {
                (position.revision, position.start.clone())
            }
            Some(_) => {
                return Err(RegistryError::BadRequest(
                    "the continue token belongs to another list".into(),
                ));
            }
        };
        let limit = if options.limit == 0 {
            usize::MAX
        } else {
            options.limit
        };
        let chunk = options.limit.clamp(1, 500).max(64);
        let (mut items, mut last_shown) = (Vec::new(), Vec::new());
        loop {
            let result = match self
                .store
                .range(&range.starting_at(start.clone()), revision, chunk)
                .await
            {
                Err(StoreError::Compacted { .. }) => {
                    return Err(RegistryError::Gone(
                        "the list has changed too much since the first page; list again from the start".into(),
                    ));
                }
                other => other?,
            };
            revision = Some(result.revision);
            let count = result.kvs.len();
            for (i, kv) in result.kvs.iter().enumerate() {
                if items.len() == limit {
                    // Resume just after the last item shown, never at a key the caller
                    // may not see.
                    let mut after_last = last_shown;
                    after_last.push(0);
                    return Ok(Page {
                        items,
                        revision: result.revision,
                        next: Some(Position {
                            revision: Some(result.revision),
                            start: after_last,
                        }),
                    });
                }
                let object = decode_raw(kv)?;
                let path = path_of_key(&kv.key);
                if options.selector.matches(&object.metadata.labels)
                    && path.is_some_and(|p| visible(&p))
                {
                    items.push(object);
                    last_shown = kv.key.clone();
                }
                if i + 1 == count {
                    let mut next = kv.key.clone();
                    next.push(0);
                    start = next;
                }
            }
            if !result.more {
                return Ok(Page {
                    items,
                    revision: result.revision,
                    next: None,
                });
            }
        }
    }

    /// Changes to the objects of `kind` under `parent` after revision `after`.
    pub async fn watch(
        &self,
        kind: &'static KindInfo,
        parent: Option<&ResourcePath>,
        after: Revision,
    ) -> Result<impl futures::Stream<Item = Result<Change>> + Send + use<>> {
        let range = KeyRange::prefix(collection_prefix(kind, parent));
        let stream = self.store.watch(range, after + 1).await?;
        Ok(stream.map(|event| {
            let event = event?;
            let path = path_of_key(&event.kv.key).ok_or_else(|| {
                StoreError::Internal(format!(
                    "no object path in key {}",
                    String::from_utf8_lossy(&event.kv.key)
                ))
            })?;
            let (kind, object) = match event.kind {
                EventKind::Put => {
                    let kind = if event.prev.is_none() {
                        ChangeKind::Added
                    } else {
                        ChangeKind::Modified
                    };
                    (kind, decode_raw(&event.kv)?)
                }
                EventKind::Delete => {
                    let prev = event.prev.as_ref().ok_or_else(|| {
                        StoreError::Internal("a delete event without the deleted value".into())
                    })?;
                    let mut object = decode_raw(prev)?;
                    object.metadata.resource_version = event.kv.mod_revision.to_string();
                    (ChangeKind::Deleted, object)
                }
            };
            Ok(Change {
                kind,
                path,
                object,
                revision: event.revision(),
            })
        }))
    }

    // Access policies.

    /// A node's policy and its etag. The etag names the node's uid too, so that it never
    /// matches the policy of a node re-created under the same name.
    pub async fn get_policy(&self, node: &ResourcePath) -> Result<(Vec<PolicyBinding>, String)> {
        let (_, object) = self.get_kv(node).await?;
        let stored = self.store.get(policy_key(node).as_bytes()).await?;
        let bindings = match &stored {
            Some(kv) => decode_record(kv)?,
            None => Vec::new(),
        };
        let etag = policy_etag(stored.map_or(0, |kv| kv.mod_revision), &object);
        Ok((bindings, etag))
    }

    /// Replaces a node's policy if its etag is still `etag` (any, when empty); returns the
    /// new etag. The caller has checked the bindings.
    pub async fn set_policy(
        &self,
        node: &ResourcePath,
        bindings: &[PolicyBinding],
        etag: &str,
    ) -> Result<String> {
        let value =
            serde_json::to_vec(bindings).map_err(|e| StoreError::Internal(e.to_string()))?;
        loop {
            let (kv, object) = self.get_kv(node).await?;
            if object.metadata.deletion_timestamp.is_some() {
                return Err(RegistryError::Conflict(format!(
                    "{node} is being deleted; its policy cannot change"
                )));
            }
            let key = policy_key(node);
            let stored = self.store.get(key.as_bytes()).await?;
            let revision = stored.map_or(0, |kv| kv.mod_revision);
            if !etag.is_empty() && etag != policy_etag(revision, &object) {
                return Err(RegistryError::Conflict(format!(
                    "the policy of {node} changed since it was read (stale etag); get it again and retry"
                )));
            }
            let txn = Txn::default()
                .when(object_key(node), kv.mod_revision)
                .when(key.clone(), revision)
                .put(key, value.clone());
            match self.store.txn(txn).await? {
                TxnOutcome::Committed { revision } => return Ok(policy_etag(revision, &object)),
                // The node's status or the policy moved: look again (the etag decides).
                TxnOutcome::Conflict => continue,
            }
        }
    }

    /// Every access record at one revision, parents before children.
    pub async fn access_records(&self) -> Result<(Vec<AccessRecord>, Revision)> {
        let all = self.store.range(&access_range(), None, 0).await?;
        let mut records = Vec::with_capacity(all.kvs.len());
        for kv in &all.kvs {
            records.extend(access_record(kv, kv)?);
        }
        records.sort_by_key(|r| match r {
            AccessRecord::Object(p) | AccessRecord::Group { path: p, .. } => (0, p.kind().depth()),
            AccessRecord::Policy { .. } => (1, 0),
        });
        Ok((records, all.revision))
    }

    /// Every change after revision `after`, each with its revision and what it changed of the
    /// access records: `None` for a change that alters nothing access control reads (a
    /// cluster's status, a token, an audit record). Every key is watched, not just the access
    /// records, so that a follower's revision reaches any write's, whatever it wrote.
    pub async fn watch_access(
        &self,
        after: Revision,
    ) -> Result<impl futures::Stream<Item = Result<(Revision, Option<AccessChange>)>> + Send + use<>>
    {
        let stream = self.store.watch(KeyRange::prefix(b"/"), after + 1).await?;
        let access = access_range();
        Ok(stream.map(move |event| {
            let event = event?;
            let revision = event.kv.mod_revision;
            if !access.contains(&event.kv.key) {
                return Ok((revision, None));
            }
            let is_object = event.kv.key.starts_with(b"/o/");
            let change = match (event.kind, &event.prev) {
                (EventKind::Delete, Some(prev)) => {
                    access_record(&event.kv, prev)?.map(AccessChange::Removed)
                }
                (EventKind::Delete, None) => None,
                // Only a group's members change what access control knows of an object.
                (EventKind::Put, Some(_))
                    if is_object && !event.kv.key.starts_with(b"/o/groups/") =>
                {
                    None
                }
                (EventKind::Put, _) => access_record(&event.kv, &event.kv)?.map(AccessChange::Put),
            };
            Ok((revision, change))
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use dialtone_types::{Folder, Object, Org, ResourcePath};

    use super::*;
    use crate::EmbeddedStore;

    /// The API's cascade and the deletion controller both finish an org's deletion once its
    /// children are gone; the one that comes second finds the work done, not a 404.
    #[tokio::test]
    async fn an_org_removed_by_another_is_a_stale_read_not_a_missing_org() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(&dir.path().join("s.redb")).unwrap());
        let registry = Registry::new(store, "us-east-1", Timestamp::now);
        let acme = ResourcePath::org("acme");
        registry
            .create(None, Object::new("acme", Org::default()))
            .await
            .unwrap();
        let (kv, _) = registry.get_kv(&acme).await.unwrap();
        registry.remove(&acme, kv.mod_revision).await.unwrap();
        let second = registry.remove(&acme, kv.mod_revision).await;
        assert!(
            matches!(second, Err(RegistryError::Conflict(_))),
            "{second:?}"
        );
        assert!(matches!(
            registry.finish_deletion(&acme).await,
            Ok(Deletion::Deleted)
        ));
    }

    #[tokio::test]
    async fn a_deletion_from_a_stale_read_spares_an_object_re_created_under_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(&dir.path().join("s.redb")).unwrap());
        let registry = Registry::new(store, "us-east-1", Timestamp::now);
        let acme = ResourcePath::org("acme");
        let old = registry
            .create(None, Object::new("acme", Org::default()))
            .await
            .unwrap();
        registry
            .create(Some(&acme), Object::new("f", Folder::default()))
            .await
            .unwrap();
        registry.delete(&acme, true).await.unwrap();
        let new = registry
            .create(None, Object::new("acme", Org::default()))
            .await
            .unwrap();
        let stale = registry.delete_uid(&acme, &old.metadata.uid).await;
        assert!(
            matches!(stale, Err(RegistryError::NotFound(_))),
            "{stale:?}"
        );
        assert_eq!(
            registry.get_raw(&acme).await.unwrap().metadata.uid,
            new.metadata.uid
        );
        assert!(matches!(
            registry.delete_uid(&acme, &new.metadata.uid).await,
            Ok(Deletion::Deleted)
        ));
    }
}
