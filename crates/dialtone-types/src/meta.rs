//! Object metadata and status, after the Kubernetes API conventions.

use std::collections::BTreeMap;

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The `apiVersion` of every Dialtone object.
pub const API_VERSION: &str = "dialtone.dev/v1";

/// Metadata common to every object. Fields marked server-managed are set by the server
/// and ignored on create.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// A DNS-1123 label, unique among the object's siblings of the same kind.
    pub name: String,
    /// Server-managed: unique over time; a re-created object gets a new uid.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    /// Server-managed: the path of the parent node, for example `orgs/acme/folders/eng`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub parent: String,
    /// Server-managed: the store revision of the last change. Send it back on update for
    /// optimistic concurrency.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub resource_version: String,
    /// Server-managed: incremented on every change of the spec.
    #[serde(default)]
    pub generation: i64,
    /// Keys and values to select objects by (`-l key=value`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Keys and values for tools and people; never selected by.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Server-managed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<Timestamp>,
    /// Server-managed: set when deletion was asked for and finalizers remain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<Timestamp>,
    /// The object is removed once this list is empty after deletion was asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
    /// Server-managed: the region whose control plane owns the object.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub home_region: String,
}

/// The status every object carries; kinds with more to report embed it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStatus {
    /// The generation of the spec that the status describes.
    #[serde(default)]
    pub observed_generation: i64,
    /// What the control plane observes, each with a reason to act on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Whether a condition holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConditionStatus {
    /// It holds.
    True,
    /// It does not hold.
    False,
    /// The control plane cannot tell yet.
    Unknown,
}

/// One observation about an object, as in Kubernetes' `metav1.Condition`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// CamelCase, for example `Ready`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Whether it holds.
    pub status: ConditionStatus,
    /// CamelCase, machine-readable.
    pub reason: String,
    /// For people: what happened and what to do about it.
    #[serde(default)]
    pub message: String,
    /// When `status` last changed.
    pub last_transition_time: Timestamp,
}

impl Condition {
    /// Sets the condition `type_` among `conditions`, adding it if missing; its transition
    /// time moves only when its status changes.
    pub fn set(
        conditions: &mut Vec<Condition>,
        type_: &str,
        status: ConditionStatus,
        reason: &str,
        message: String,
        now: Timestamp,
    ) {
        match conditions.iter_mut().find(|c| c.type_ == type_) {
            Some(c) => {
                if c.status != status {
                    c.last_transition_time = now;
                }
                c.status = status;
                c.reason = reason.to_string();
                c.message = message;
            }
            None => conditions.push(Condition {
                type_: type_.to_string(),
                status,
                reason: reason.to_string(),
                message,
                last_transition_time: now,
            }),
        }
    }
}

/// An object with spec `S` and status `T`: the envelope shared by every resource. Kinds
/// with nothing more to report than conditions use [`ObjectStatus`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Object<S: Default, T: Default = ObjectStatus> {
    /// `dialtone.dev/v1`.
    #[serde(default)]
    pub api_version: String,
    /// The kind, `Cluster`, `Folder`, …
    #[serde(default)]
    pub kind: String,
    /// Name, uid, version and the rest every object has.
    pub metadata: ObjectMeta,
    /// What the user asks for.
    #[serde(default)]
    pub spec: S,
    /// What the control plane reports.
    #[serde(default)]
    pub status: T,
}

/// The schema of [`Object`], field for field; only its name differs (see below).
#[derive(JsonSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct ObjectSchema<S: Default, T: Default> {
    /// `dialtone.dev/v1`.
    #[serde(default)]
    api_version: String,
    /// The kind, `Cluster`, `Folder`, …
    #[serde(default)]
    kind: String,
    /// Name, uid, version and the rest every object has.
    metadata: ObjectMeta,
    /// What the user asks for.
    #[serde(default)]
    spec: S,
    /// What the control plane reports.
    #[serde(default)]
    status: T,
}

/// An object is named after its kind in the OpenAPI document (`Cluster`, with its spec
/// `ClusterSpec` and status `ClusterStatus`), as Kubernetes names its schemas.
impl<S: Default + JsonSchema, T: Default + JsonSchema> JsonSchema for Object<S, T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        let spec = S::schema_name();
        match spec.strip_suffix("Spec") {
            Some(kind) => kind.to_string().into(),
            None => format!("{spec}Object").into(),
        }
    }

    fn schema_id() -> std::borrow::Cow<'static, str> {
        format!("dialtone::Object<{}, {}>", S::schema_id(), T::schema_id()).into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        ObjectSchema::<S, T>::json_schema(generator)
    }
}

impl<S: crate::Kind> Object<S, S::Status> {
    /// A new object with the given name and spec, ready to be sent to the API.
    pub fn new(name: impl Into<String>, spec: S) -> Self {
        Object {
            api_version: API_VERSION.to_string(),
            kind: S::INFO.kind.to_string(),
            metadata: ObjectMeta {
                name: name.into(),
                ..Default::default()
            },
            spec,
            status: Default::default(),
        }
    }
}

/// Metadata of a list: the revision it was read at, and where the next page starts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListMeta {
    /// The store revision the list was read at; watch from it to follow what changes next.
    pub resource_version: String,
    /// Pass as `continue` to get the next page; absent on the last page.
    #[serde(default, rename = "continue", skip_serializing_if = "Option::is_none")]
    pub continue_token: Option<String>,
}

/// One page of a list.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "{T}List")]
pub struct List<T> {
    /// `dialtone.dev/v1`.
    pub api_version: String,
    /// `FolderList`, `AuditRecordList`, …
    pub kind: String,
    /// The revision and the next page.
    pub metadata: ListMeta,
    /// The page's objects.
    pub items: Vec<T>,
}

impl<T> List<T> {
    /// A list of kind `{item_kind}List`.
    pub fn new(item_kind: &str, metadata: ListMeta, items: Vec<T>) -> Self {
        List {
            api_version: API_VERSION.to_string(),
            kind: format!("{item_kind}List"),
            metadata,
            items,
        }
    }
}

/// What a watch event says happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum WatchEventType {
    /// The object was created (or entered the watched set).
    Added,
    /// The object changed.
    Modified,
    /// The object was removed; `object` is its last state.
    Deleted,
    /// The watch ends; `object` is a `Status` (410 Gone when it fell behind a compaction).
    Error,
}

/// One line of a watch stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WatchEvent<T> {
    /// What happened.
    #[serde(rename = "type")]
    pub type_: WatchEventType,
    /// The object as it is after the change.
    pub object: T,
}
