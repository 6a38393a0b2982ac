//! The part of the Kubernetes API that sim clusters serve: every resource with its group,
//! version, kind, scope and verbs, for discovery, routing and validation. Objects are checked
//! by decoding them into the upstream types of `k8s-openapi`, so a field of the wrong type or
//! a malformed quantity is refused as upstream refuses it (see `decode`).

use schemars::{Schema, SchemaGenerator};
use serde_json::Value;

/// One resource as discovery lists it.
#[derive(Debug)]
pub struct ResourceType {
    /// The API group; empty for the core group.
    pub group: &'static str,
    /// The group's version served, `v1`.
    pub version: &'static str,
    /// The kind of its objects, `Deployment`.
    pub kind: &'static str,
    /// The path segment of its collection, `deployments`.
    pub plural: &'static str,
    /// The name kubectl accepts for one, `deployment`.
    pub singular: &'static str,
    /// Whether its objects live in namespaces.
    pub namespaced: bool,
    /// The verbs it serves.
    pub verbs: &'static [&'static str],
    /// The abbreviations kubectl accepts, `deploy`.
    pub short_names: &'static [&'static str],
    /// Its subresources, `status`, `scale`, …
    pub subresources: &'static [&'static str],
    /// Decodes the object into its upstream type and writes it back.
    pub decode: fn(&Value) -> Result<Typed, Undecodable>,
    /// Adds its upstream OpenAPI schema (and those it refers to) to the generator's
    /// definitions; what refers to it.
    pub schema: fn(&mut SchemaGenerator) -> Schema,
}

impl ResourceType {
    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Whether a change of its spec counts as a new generation, which its controller
    /// reports having observed in `status.observedGeneration`.
    pub fn has_generation(&self) -> bool {
        matches!(self.group, "apps" | "batch" | "autoscaling" | "policy")
    }

    /// Whether the resource is the metrics API's, computed on every read, never stored.
    pub fn is_metrics(&self) -> bool {
        self.group == "metrics.k8s.io"
    }

    /// Review resources are created and answered, never stored.
    pub fn is_review(&self) -> bool {
        self.group == "authorization.k8s.io"
    }
}

use crate::decode::{Typed, Undecodable, typed as decode};

/// Every verb of a stored resource.
pub const CRUD: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

use k8s_openapi::api::admissionregistration::v1 as admission;
use k8s_openapi::api::apps::v1 as apps;
use k8s_openapi::api::authorization::v1 as authz;
use k8s_openapi::api::autoscaling::v1 as autoscaling_v1;
use k8s_openapi::api::autoscaling::v2 as autoscaling;
use k8s_openapi::api::batch::v1 as batch;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::api::events::v1 as events;
use k8s_openapi::api::policy::v1 as policy;
use k8s_openapi::api::rbac::v1 as rbac;

/// Every resource sim clusters serve.
pub static RESOURCES: &[ResourceType] = &[
    ResourceType {
        group: "",
        version: "v1",
        kind: "Namespace",
        plural: "namespaces",
        singular: "namespace",
        namespaced: false,
        verbs: &[
            "create", "delete", "get", "list", "patch", "update", "watch",
        ],
        short_names: &["ns"],
        subresources: &["status"],
        decode: decode::<core::Namespace>,
        schema: schema::<core::Namespace>,
    },
    ResourceType {
        group: "",
        version: "v1",
        kind: "Node",
        plural: "nodes",
        singular: "node",
        namespaced: false,
        verbs: &["get", "list", "patch", "update", "watch"],
        short_names: &["no"],
        subresources: &["status"],
        decode: decode::<core::Node>,
        schema: schema::<core::Node>,
    },
    ResourceType {
        group: "",
        version: "v1",
        kind: "Pod",
        plural: "pods",
        singular: "pod",
        namespaced: true,
        verbs: CRUD,
        short_names: &["po"],
        subresources: &["status", "eviction", "log", "exec", "attach"],
        decode: decode::<core::Pod>,
        schema: schema::<core::Pod>,
    },
    ResourceType {
        group: "",
        version: "v1",
        kind: "Event",
        plural: "events",
        singular: "event",
        namespaced: true,
        verbs: CRUD,
        short_names: &["ev"],
        subresources: &[],
        decode: decode::<core::Event>,
        schema: schema::<core::Event>,
    },
    // The same events in their newer form, stored once (see `dialtone-simkube`'s
    // `conversion`).
    ResourceType {
        group: "events.k8s.io",
        version: "v1",
        kind: "Event",
        plural: "events",
        singular: "event",
        namespaced: true,
        verbs: CRUD,
        short_names: &[],
        subresources: &[],
        decode: decode::<events::Event>,
        schema: schema::<events::Event>,
    },
    ResourceType {
        group: "",
        version: "v1",
        kind: "Service",
        plural: "services",
        singular: "service",
        namespaced: true,
        verbs: CRUD,
        short_names: &["svc"],
        subresources: &["status"],
        decode: decode::<core::Service>,
        schema: schema::<core::Service>,
    },
    ResourceType {
        group: "discovery.k8s.io",
        version: "v1",
        kind: "EndpointSlice",
        plural: "endpointslices",
        singular: "endpointslice",
        namespaced: true,
        verbs: CRUD,
        short_names: &[],
        subresources: &[],
        decode: decode::<discovery::EndpointSlice>,
        schema: schema::<discovery::EndpointSlice>,
    },
    ResourceType {
        group: "",
        version: "v1",
        kind: "ConfigMap",
        plural: "configmaps",
        singular: "configmap",
        namespaced: true,
        verbs: CRUD,
        short_names: &["cm"],
        subresources: &[],
        decode: decode::<core::ConfigMap>,
        schema: schema::<core::ConfigMap>,
    },
    ResourceType {
        group: "",
        version: "v1",
        kind: "Secret",
        plural: "secrets",
        singular: "secret",
        namespaced: true,
        verbs: CRUD,
        short_names: &[],
        subresources: &[],
        decode: decode::<core::Secret>,
        schema: schema::<core::Secret>,
    },
    ResourceType {
        group: "",
        version: "v1",
        kind: "ServiceAccount",
        plural: "serviceaccounts",
        singular: "serviceaccount",
        namespaced: true,
        verbs: CRUD,
        short_names: &["sa"],
        subresources: &[],
        decode: decode::<core::ServiceAccount>,
        schema: schema::<core::ServiceAccount>,
    },
    ResourceType {
        group: "apps",
        version: "v1",
        kind: "Deployment",
        plural: "deployments",
        singular: "deployment",
        namespaced: true,
        verbs: CRUD,
        short_names: &["deploy"],
        subresources: &["status", "scale"],
        decode: decode::<apps::Deployment>,
        schema: schema::<apps::Deployment>,
    },
    ResourceType {
        group: "apps",
        version: "v1",
        kind: "ReplicaSet",
        plural: "replicasets",
        singular: "replicaset",
        namespaced: true,
        verbs: CRUD,
        short_names: &["rs"],
        subresources: &["status", "scale"],
        decode: decode::<apps::ReplicaSet>,
        schema: schema::<apps::ReplicaSet>,
    },
    ResourceType {
        group: "apps",
        version: "v1",
        kind: "StatefulSet",
        plural: "statefulsets",
        singular: "statefulset",
        namespaced: true,
        verbs: CRUD,
        short_names: &["sts"],
        subresources: &["status", "scale"],
        decode: decode::<apps::StatefulSet>,
        schema: schema::<apps::StatefulSet>,
    },
    ResourceType {
        group: "apps",
        version: "v1",
        kind: "DaemonSet",
        plural: "daemonsets",
        singular: "daemonset",
        namespaced: true,
        verbs: CRUD,
        short_names: &["ds"],
        subresources: &["status"],
        decode: decode::<apps::DaemonSet>,
        schema: schema::<apps::DaemonSet>,
    },
    ResourceType {
        group: "batch",
        version: "v1",
        kind: "Job",
        plural: "jobs",
        singular: "job",
        namespaced: true,
        verbs: CRUD,
        short_names: &[],
        subresources: &["status"],
        decode: decode::<batch::Job>,
        schema: schema::<batch::Job>,
    },
    ResourceType {
        group: "batch",
        version: "v1",
        kind: "CronJob",
        plural: "cronjobs",
        singular: "cronjob",
        namespaced: true,
        verbs: CRUD,
        short_names: &["cj"],
        subresources: &["status"],
        decode: decode::<batch::CronJob>,
        schema: schema::<batch::CronJob>,
    },
    ResourceType {
        group: "autoscaling",
        version: "v2",
        kind: "HorizontalPodAutoscaler",
        plural: "horizontalpodautoscalers",
        singular: "horizontalpodautoscaler",
        namespaced: true,
        verbs: CRUD,
        short_names: &["hpa"],
        subresources: &["status"],
        decode: decode::<autoscaling::HorizontalPodAutoscaler>,
        schema: schema::<autoscaling::HorizontalPodAutoscaler>,
    },
    // The same autoscalers with only a CPU target, stored as v2 (see `dialtone-simkube`'s
    // `conversion`); `kubectl autoscale` writes this version.
    ResourceType {
        group: "autoscaling",
        version: "v1",
        kind: "HorizontalPodAutoscaler",
        plural: "horizontalpodautoscalers",
        singular: "horizontalpodautoscaler",
        namespaced: true,
        verbs: CRUD,
        short_names: &[],
        subresources: &["status"],
        decode: decode::<autoscaling_v1::HorizontalPodAutoscaler>,
        schema: schema::<autoscaling_v1::HorizontalPodAutoscaler>,
    },
    ResourceType {
        group: "policy",
        version: "v1",
        kind: "PodDisruptionBudget",
        plural: "poddisruptionbudgets",
        singular: "poddisruptionbudget",
        namespaced: true,
        verbs: CRUD,
        short_names: &["pdb"],
        subresources: &["status"],
        decode: decode::<policy::PodDisruptionBudget>,
        schema: schema::<policy::PodDisruptionBudget>,
    },
    // The resource metrics API, as metrics-server serves it: computed on every read, never
    // stored (see `dialtone-simkube`'s `metrics`).
    ResourceType {
        group: "metrics.k8s.io",
        version: "v1beta1",
        kind: "NodeMetrics",
        plural: "nodes",
        singular: "",
        namespaced: false,
        verbs: &["get", "list"],
        short_names: &[],
        subresources: &[],
        decode: read_only,
        schema: no_schema,
    },
    ResourceType {
        group: "metrics.k8s.io",
        version: "v1beta1",
        kind: "PodMetrics",
        plural: "pods",
        singular: "",
        namespaced: true,
        verbs: &["get", "list"],
        short_names: &[],
        subresources: &[],
        decode: read_only,
        schema: no_schema,
    },
    ResourceType {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        kind: "Role",
        plural: "roles",
        singular: "role",
        namespaced: true,
        verbs: CRUD,
        short_names: &[],
        subresources: &[],
        decode: decode::<rbac::Role>,
        schema: schema::<rbac::Role>,
    },
    ResourceType {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        kind: "ClusterRole",
        plural: "clusterroles",
        singular: "clusterrole",
        namespaced: false,
        verbs: CRUD,
        short_names: &[],
        subresources: &[],
        decode: decode::<rbac::ClusterRole>,
        schema: schema::<rbac::ClusterRole>,
    },
    ResourceType {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        kind: "RoleBinding",
        plural: "rolebindings",
        singular: "rolebinding",
        namespaced: true,
        verbs: CRUD,
        short_names: &[],
        subresources: &[],
        decode: decode::<rbac::RoleBinding>,
        schema: schema::<rbac::RoleBinding>,
    },
    ResourceType {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        kind: "ClusterRoleBinding",
        plural: "clusterrolebindings",
        singular: "clusterrolebinding",
        namespaced: false,
        verbs: CRUD,
        short_names: &[],
        subresources: &[],
        decode: decode::<rbac::ClusterRoleBinding>,
        schema: schema::<rbac::ClusterRoleBinding>,
    },
    ResourceType {
        group: "authorization.k8s.io",
        version: "v1",
        kind: "SelfSubjectAccessReview",
        plural: "selfsubjectaccessreviews",
        singular: "selfsubjectaccessreview",
        namespaced: false,
        verbs: &["create"],
        short_names: &[],
        subresources: &[],
        decode: decode::<authz::SelfSubjectAccessReview>,
        schema: schema::<authz::SelfSubjectAccessReview>,
    },
    ResourceType {
        group: "authorization.k8s.io",
        version: "v1",
        kind: "SubjectAccessReview",
        plural: "subjectaccessreviews",
        singular: "subjectaccessreview",
        namespaced: false,
        verbs: &["create"],
        short_names: &[],
        subresources: &[],
        decode: decode::<authz::SubjectAccessReview>,
        schema: schema::<authz::SubjectAccessReview>,
    },
    ResourceType {
        group: "admissionregistration.k8s.io",
        version: "v1",
        kind: "ValidatingWebhookConfiguration",
        plural: "validatingwebhookconfigurations",
        singular: "validatingwebhookconfiguration",
        namespaced: false,
        verbs: CRUD,
        short_names: &[],
        subresources: &[],
        decode: decode::<admission::ValidatingWebhookConfiguration>,
        schema: schema::<admission::ValidatingWebhookConfiguration>,
    },
];

fn schema<T: schemars::JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

/// Metrics have no upstream type here; they are read, never written, so no client needs
/// their schema to write one.
fn no_schema(_: &mut SchemaGenerator) -> Schema {
    Schema::default()
}

/// Metrics are never written: a body for one is refused whole.
fn read_only(_: &Value) -> Result<Typed, Undecodable> {
    Err(Undecodable::Invalid {
        field: String::new(),
        message: "metrics are read-only".into(),
    })
}

/// The resource `plural` of `group/version`, if served.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The stored resource `plural` (its core form, for events); panics for one that is not
/// served, a programming error.
pub fn by_plural(plural: &str) -> &'static ResourceType {
    RESOURCES
        .iter()
        .find(|r| r.plural == plural && !r.is_metrics())
        .expect("a served resource")
}

/// Every group with the versions it serves, the preferred (stored) one first; core first.
pub fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for r in RESOURCES {
        match groups.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) if !versions.contains(&r.version) => versions.push(r.version),
            Some(_) => {}
            None => groups.push((r.group, vec![r.version])),
        }
    }
    groups
}
