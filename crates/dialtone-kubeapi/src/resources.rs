//! The part of the Kubernetes API that sim clusters serve: every resource with its group,
//! version, kind, scope and verbs, for discovery, routing and validation. Objects are checked
//! by decoding them into the upstream types of `k8s-openapi`, so a field of the wrong type or
//! a malformed quantity is refused as upstream refuses it (see `decode`).

use std::borrow::Cow;
use std::sync::{Arc, LazyLock};

use schemars::{Schema, SchemaGenerator};
use serde_json::Value;

/// A name that is either written here or read from a CustomResourceDefinition.
pub type Name = Cow<'static, str>;

/// One resource as discovery lists it: built in, or defined by a cluster's
/// CustomResourceDefinition.
#[derive(Debug, Clone)]
pub struct ResourceType {
    /// The API group; empty for the core group.
    pub group: Name,
    /// The group's version served, `v1`.
    pub version: Name,
    /// The kind of its objects, `Deployment`.
    pub kind: Name,
    /// The path segment of its collection, `deployments`.
    pub plural: Name,
    /// The name kubectl accepts for one, `deployment`.
    pub singular: Name,
    /// Whether its objects live in namespaces.
    pub namespaced: bool,
    /// The verbs it serves.
    pub verbs: &'static [&'static str],
    /// The abbreviations kubectl accepts, `deploy`.
    pub short_names: Vec<Name>,
    /// Its subresources, `status`, `scale`, …
    pub subresources: &'static [&'static str],
    /// Decodes the object into its upstream type and writes it back.
    pub decode: fn(&Value) -> Result<Typed, Undecodable>,
    /// Adds its upstream OpenAPI schema (and those it refers to) to the generator's
    /// definitions; what refers to it.
    pub schema: fn(&mut SchemaGenerator) -> Schema,
    /// What its CustomResourceDefinition says of this version; `None` for a built-in.
    pub custom: Option<Arc<CustomVersion>>,
}

/// What a CustomResourceDefinition says of one version it serves.
#[derive(Debug)]
pub struct CustomVersion {
    /// The version's `openAPIV3Schema`, structural.
    pub schema: Value,
    /// `additionalPrinterColumns`: name, type, JSONPath, priority.
    pub columns: Vec<PrinterColumn>,
    /// The version objects are stored in; others are served by changing `apiVersion`.
    pub storage_version: String,
    /// The `scale` subresource's paths, if it has one.
    pub scale: Option<ScalePaths>,
    /// The groupings kubectl can ask for by name (`all`).
    pub categories: Vec<String>,
}

/// A column `kubectl get` shows for a custom resource.
#[derive(Debug, Clone)]
pub struct PrinterColumn {
    /// The column's heading.
    pub name: String,
    /// `string`, `integer`, `number`, `boolean` or `date`.
    pub kind: String,
    /// What `kubectl explain`-style readers show for it.
    pub description: String,
    /// A simple JSONPath into the object, `.spec.replicas`.
    pub json_path: String,
    /// 0 for the default view; more for `-o wide`.
    pub priority: i64,
}

/// Where a custom resource keeps what its `scale` subresource reads and writes.
#[derive(Debug, Clone)]
pub struct ScalePaths {
    /// `.spec.replicas`: the desired count.
    pub spec_replicas: String,
    /// `.status.replicas`: the current count.
    pub status_replicas: String,
    /// Where the selector string an autoscaler reads is kept, if anywhere.
    pub label_selector: Option<String>,
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

    /// The `apiVersion` its objects are stored with: a custom resource's storage version,
    /// whichever version they were written through.
    pub fn stored_api_version(&self) -> String {
        match &self.custom {
            Some(custom) => format!("{}/{}", self.group, custom.storage_version),
            None => self.api_version(),
        }
    }

    /// Whether a change of its spec counts as a new generation, which its controller
    /// reports having observed in `status.observedGeneration`.
    pub fn has_generation(&self) -> bool {
        self.custom.is_some()
            || matches!(
                self.group.as_ref(),
                "apps" | "batch" | "autoscaling" | "policy"
            )
    }

    /// Whether the resource is the metrics API's, computed on every read, never stored.
    pub fn is_metrics(&self) -> bool {
        self.group == "metrics.k8s.io"
    }

    /// The name its objects are kept under: a built-in's plural, a custom resource's
    /// `plural.group` (which no built-in's can be: they have no dots).
    pub fn stored_name(&self) -> Name {
        match self.custom {
            None => self.plural.clone(),
            Some(_) => Cow::Owned(format!("{}.{}", self.plural, self.group)),
        }
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
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;

/// Every resource sim clusters serve.
pub static RESOURCES: LazyLock<Vec<Arc<ResourceType>>> = LazyLock::new(|| {
    [
        ResourceType {
            group: Cow::Borrowed(""),
            version: Cow::Borrowed("v1"),
            kind: Cow::Borrowed("Namespace"),
            plural: Cow::Borrowed("namespaces"),
            singular: Cow::Borrowed("namespace"),
            namespaced: false,
            verbs: &[
                "create", "delete", "get", "list", "patch", "update", "watch",
            ],
            short_names: names(&["ns"]),
            subresources: &["status"],
            decode: decode::<core::Namespace>,
            schema: schema::<core::Namespace>,
            custom: None,
        },
        ResourceType {
            group: Cow::Borrowed(""),
            version: Cow::Borrowed("v1"),
            kind: Cow::Borrowed("Node"),
            plural: Cow::Borrowed("nodes"),
            singular: Cow::Borrowed("node"),
            namespaced: false,
            verbs: &["get", "list", "patch", "update", "watch"],
            short_names: names(&["no"]),
            subresources: &["status"],
            decode: decode::<core::Node>,
            schema: schema::<core::Node>,
            custom: None,
        },
        ResourceType {
            group: Cow::Borrowed(""),
            version: Cow::Borrowed("v1"),
            kind: Cow::Borrowed("Pod"),
            plural: Cow::Borrowed("pods"),
            singular: Cow::Borrowed("pod"),
            namespaced: true,
            verbs: CRUD,
            short_names: names(&["po"]),
            subresources: &["status", "eviction", "log", "exec", "attach"],
            decode: decode::<core::Pod>,
            schema: schema::<core::Pod>,
            custom: None,
        },
        ResourceType {
            group: Cow::Borrowed(""),
            version: Cow::Borrowed("v1"),
            kind: Cow::Borrowed("Event"),
            plural: Cow::Borrowed("events"),
            singular: Cow::Borrowed("event"),
            namespaced: true,
            verbs: CRUD,
            short_names: names(&["ev"]),
            subresources: &[],
            decode: decode::<core::Event>,
            schema: schema::<core::Event>,
            custom: None,
        },
        // The same events in their newer form, stored once (see `dialtone-simkube`'s
        // `conversion`).
        ResourceType {
            group: Cow::Borrowed("events.k8s.io"),
            version: Cow::Borrowed("v1"),
            kind: Cow::Borrowed("Event"),
            plural: Cow::Borrowed("events"),
            singular: Cow::Borrowed("event"),
            namespaced: true,
            verbs: CRUD,
            short_names: names(&[]),
            subresources: &[],
            decode: decode::<events::Event>,
            schema: schema::<events::Event>,
            custom: None,
        },
        ResourceType {
            group: Cow::Borrowed(""),
            version: Cow::Borrowed("v1"),
            kind: Cow::Borrowed("Service"),
            plural: Cow::Borrowed("services"),
            singular: Cow::Borrowed("service"),
            namespaced: true,
            verbs: CRUD,
            short_names: names(&["svc"]),
            subresources: &["status"],
            decode: decode::<core::Service>,
            schema: schema::<core::Service>,
            custom: None,
        },
        ResourceType {
            group: Cow::Borrowed("discovery.k8s.io"),
            version: Cow::Borrowed("v1"),
            kind: Cow::Borrowed("EndpointSlice"),
            plural: Cow::Borrowed("endpointslices"),
            singular: Cow::Borrowed("endpointslice"),
            namespaced: true,
            verbs: CRUD,
            short_names: names(&[]),
            subresources: &[],
            decode: decode::<discovery::EndpointSlice>,
            schema: schema::<discovery::EndpointSlice>,
            custom: None,
        },
        ResourceType {
            group: Cow::Borrowed(""),
            version: Cow::Borrowed("v1"),
            kind: Cow::Borrowed("ConfigMap"),
            plural: Cow::Borrowed("configmaps"),
            singular: Cow::Borrowed("configmap"),
            namespaced: true,
            verbs: CRUD,
            short_names: names(&["cm"]),
            subresources: &[],
            decode: decode::<core::ConfigMap>,
            schema: schema::<core::ConfigMap>,
            custom: None,
        },
        ResourceType {
            group: Cow::Borrowed(""),
            version: Cow::Borrowed("v1"),
            kind: Cow::Borrowed("Secret"),
            plural: Cow::Borrowed("secrets"),
            singular: Cow::Borrowed("secret"),
            namespaced: true,
            verbs: CRUD,
            short_names: names(&[]),
            subresources: &[],
            decode: decode::<core::Secret>,
            schema: schema::<core::Secret>,
            custom: None,
        },
        ResourceType {
            group: Cow::Borrowed(""),
            version: Cow::Borrowed("v1"),
            kind: Cow::Borrowed("ServiceAccount"),
            plural: Cow::Borrowed("serviceaccounts"),
            singular: Cow::Borrowed("serviceaccount"),
            namespaced: true,
            verbs: CRUD,
            short_names: names(&["sa"]),
            subresources: &[],
            decode: decode::<core::ServiceAccount>,
            schema: schema::<core::ServiceAccount>,
            custom: None,
        },
        ResourceType {
            group: Cow::Borrowed("apps"),
            version: Cow::Borrowed("v1"),
            kind: Cow::Borrowed("Deployment"),
            plural: Cow::Borrowed("deployments"),
            singular: Cow::Borrowed("deployment"),
            namespaced: true,
            verbs: CRUD,
            short_names: names(&["deploy"]),
            subresources: &["status", "scale"],
            decode: decode::<apps::Deployment>,
            schema: schema::<apps::Deployment>,
            custom: None,
        },
        ResourceType {
            group: Cow::Borrowed("apps"),
            version: Cow::Borrowed("v1"),
            kind: Cow::Borrowed("ReplicaSet"),
            plural: Cow::Borrowed("replicasets"),
            singular: Cow::Borrowed("replicaset"),
            namespaced: true,
            verbs: CRUD,
            short_names: names(&["rs"]),
            subresources: &["status", "scale"],
            decode: decode::<apps::ReplicaSet>,
            schema: schema::<apps::ReplicaSet>,
            custom: None,
        },
        ResourceType {
            group: Cow::Borrowed("apps"),
            version: Cow::Borrowed("v1"),
            kind: Cow::Borrowed("ControllerRevision"),
            plural: Cow::Borrowed("controllerrevisions"),
            singular: Cow::Borrowed("controllerrevision"),
            namespaced: true,
            verbs: CRUD,
            short_names: names(&[]),
            subresources: &[],
            decode: decode::<apps::ControllerRevision>,
            schema: schema::<apps::ControllerRevision>,
            custom: None,
        },
        ResourceType {
            group: Cow::Borrowed("apps"),
            version: Cow::Borrowed("v1"),
            kind: Cow::Borrowed("StatefulSet"),
            plural: Cow::Borrowed("statefulsets"),
            singular: Cow::Borrowed("statefulset"),
            namespaced: true,
            verbs: CRUD,
            short_names: names(&["sts"]),
            subresources: &["status", "scale"],
            decode: decode::<apps::StatefulSet>,
            schema: schema::<apps::StatefulSet>,
            custom: None,
        },
        ResourceType {
            group: Cow::Borrowed("apps"),
            version: Cow::Borrowed("v1"),
            kind: Cow::Borrowed("DaemonSet"),
            plural: Cow::Borrowed("daemonsets"),
            singular: Cow::Borrowed("daemonset"),
            namespaced: true,
            verbs: CRUD,
            short_names: names(&["ds"]),
            subresources: &["status"],
            decode: decode::<apps::DaemonSet>,
            schema: schema::<apps::DaemonSet>,
            custom: None,
        },
        ResourceType {
            group: Cow::Borrowed("batch"),
            version: Cow::Borrowed("v1"),
            kind: Cow::Borrowed("Job"),
            plural: Cow::Borrowed("jobs"),
            singular: Cow::Borrowed("job"),
            namespaced: true,
            verbs: CRUD,
            short_names: names(&[]),
            subresources: &["status"],
            decode: decode::<batch::Job>,
            schema: schema::<batch::Job>,
            custom: None,
        },
        ResourceType {
            group: Cow::Borrowed("batch"),
            version: Cow::Borrowed("v1"),
            kind: Cow::Borrowed("CronJob"),
            plural: Cow::Borrowed("cronjobs"),
            singular: Cow::Borrowed("cronjob"),
            namespaced: true,
            verbs: CRUD,
            short_names: names(&["cj"]),
            subresources: &["status"],
            decode: decode::<batch::CronJob>,
            schema: schema::<batch::CronJob>,
            custom: None,
        },
        ResourceType {
            group: Cow::Borrowed("autoscaling"),
            version: Cow::Borrowed("v2"),
            kind: Cow::Borrowed("HorizontalPodAutoscaler"),
            plural: Cow::Borrowed("horizontalpodautoscalers"),
            singular: Cow::Borrowed("horizontalpodautoscaler"),
            namespaced: true,
            verbs: CRUD,
            short_names: names(&["hpa"]),
            subresources: &["status"],
            decode: decode::<autoscaling::HorizontalPodAutoscaler>,
            schema: schema::<autoscaling::HorizontalPodAutoscaler>,
            custom: None,
        },
        // The same autoscalers with only a CPU target, stored as v2 (see `dialtone-simkube`'s
        // `conversion`); `kubectl autoscale` writes this version.
        ResourceType {
            group: Cow::Borrowed("autoscaling"),
            version: Cow::Borrowed("v1"),
            kind: Cow::Borrowed("HorizontalPodAutoscaler"),
            plural: Cow::Borrowed("horizontalpodautoscalers"),
            singular: Cow::Borrowed("horizontalpodautoscaler"),
            namespaced: true,
            verbs: CRUD,
            short_names: names(&[]),
            subresources: &["status"],
            decode: decode::<autoscaling_v1::HorizontalPodAutoscaler>,
            schema: schema::<autoscaling_v1::HorizontalPodAutoscaler>,
            custom: None,
        },
        ResourceType {
            group: Cow::Borrowed("policy"),
            version: Cow::Borrowed("v1"),
            kind: Cow::Borrowed("PodDisruptionBudget"),
            plural: Cow::Borrowed("poddisruptionbudgets"),
            singular: Cow::Borrowed("poddisruptionbudget"),
            namespaced: true,
            verbs: CRUD,
            short_names: names(&["pdb"]),
            subresources: &["status"],
            decode: decode::<policy::PodDisruptionBudget>,
            schema: schema::<policy::PodDisruptionBudget>,
            custom: None,
        },
        // The resource metrics API, as metrics-server serves it: computed on every read, never
        // stored (see `dialtone-simkube`'s `metrics`).
        ResourceType {
            group: Cow::Borrowed("metrics.k8s.io"),
            version: Cow::Borrowed("v1beta1"),
            kind: Cow::Borrowed("NodeMetrics"),
            plural: Cow::Borrowed("nodes"),
            singular: Cow::Borrowed(""),
            namespaced: false,
            verbs: &["get", "list"],
            short_names: names(&[]),
            subresources: &[],
            decode: read_only,
            schema: no_schema,
            custom: None,
        },
        ResourceType {
            group: Cow::Borrowed("metrics.k8s.io"),
            version: Cow::Borrowed("v1beta1"),
            kind: Cow::Borrowed("PodMetrics"),
            plural: Cow::Borrowed("pods"),
            singular: Cow::Borrowed(""),
            namespaced: true,
            verbs: &["get", "list"],
            short_names: names(&[]),
            subresources: &[],
            decode: read_only,
            schema: no_schema,
            custom: None,
        },
        ResourceType {
            group: Cow::Borrowed("rbac.authorization.k8s.io"),
            version: Cow::Borrowed("v1"),
            kind: Cow::Borrowed("Role"),
            plural: Cow::Borrowed("roles"),
            singular: Cow::Borrowed("role"),
            namespaced: true,
            verbs: CRUD,
            short_names: names(&[]),
            subresources: &[],
            decode: decode::<rbac::Role>,
            schema: schema::<rbac::Role>,
            custom: None,
        },
        ResourceType {
            group: Cow::Borrowed("rbac.authorization.k8s.io"),
            version: Cow::Borrowed("v1"),
            kind: Cow::Borrowed("ClusterRole"),
            plural: Cow::Borrowed("clusterroles"),
            singular: Cow::Borrowed("clusterrole"),
            namespaced: false,
            verbs: CRUD,
            short_names: names(&[]),
            subresources: &[],
            decode: decode::<rbac::ClusterRole>,
            schema: schema::<rbac::ClusterRole>,
            custom: None,
        },
        ResourceType {
            group: Cow::Borrowed("rbac.authorization.k8s.io"),
            version: Cow::Borrowed("v1"),
            kind: Cow::Borrowed("RoleBinding"),
            plural: Cow::Borrowed("rolebindings"),
            singular: Cow::Borrowed("rolebinding"),
            namespaced: true,
            verbs: CRUD,
            short_names: names(&[]),
            subresources: &[],
            decode: decode::<rbac::RoleBinding>,
            schema: schema::<rbac::RoleBinding>,
            custom: None,
        },
        ResourceType {
            group: Cow::Borrowed("rbac.authorization.k8s.io"),
            version: Cow::Borrowed("v1"),
            kind: Cow::Borrowed("ClusterRoleBinding"),
            plural: Cow::Borrowed("clusterrolebindings"),
            singular: Cow::Borrowed("clusterrolebinding"),
            namespaced: false,
            verbs: CRUD,
            short_names: names(&[]),
            subresources: &[],
            decode: decode::<rbac::ClusterRoleBinding>,
            schema: schema::<rbac::ClusterRoleBinding>,
            custom: None,
        },
        ResourceType {
            group: Cow::Borrowed("authorization.k8s.io"),
            version: Cow::Borrowed("v1"),
            kind: Cow::Borrowed("SelfSubjectAccessReview"),
            plural: Cow::Borrowed("selfsubjectaccessreviews"),
            singular: Cow::Borrowed("selfsubjectaccessreview"),
            namespaced: false,
            verbs: &["create"],
            short_names: names(&[]),
            subresources: &[],
            decode: decode::<authz::SelfSubjectAccessReview>,
            schema: schema::<authz::SelfSubjectAccessReview>,
            custom: None,
        },
        ResourceType {
            group: Cow::Borrowed("authorization.k8s.io"),
            version: Cow::Borrowed("v1"),
            kind: Cow::Borrowed("SubjectAccessReview"),
            plural: Cow::Borrowed("subjectaccessreviews"),
            singular: Cow::Borrowed("subjectaccessreview"),
            namespaced: false,
            verbs: &["create"],
            short_names: names(&[]),
            subresources: &[],
            decode: decode::<authz::SubjectAccessReview>,
            schema: schema::<authz::SubjectAccessReview>,
            custom: None,
        },
        ResourceType {
            group: Cow::Borrowed("admissionregistration.k8s.io"),
            version: Cow::Borrowed("v1"),
            kind: Cow::Borrowed("ValidatingWebhookConfiguration"),
            plural: Cow::Borrowed("validatingwebhookconfigurations"),
            singular: Cow::Borrowed("validatingwebhookconfiguration"),
            namespaced: false,
            verbs: CRUD,
            short_names: names(&[]),
            subresources: &[],
            decode: decode::<admission::ValidatingWebhookConfiguration>,
            schema: schema::<admission::ValidatingWebhookConfiguration>,
            custom: None,
        },
        ResourceType {
            group: Cow::Borrowed("apiextensions.k8s.io"),
            version: Cow::Borrowed("v1"),
            kind: Cow::Borrowed("CustomResourceDefinition"),
            plural: Cow::Borrowed("customresourcedefinitions"),
            singular: Cow::Borrowed("customresourcedefinition"),
            namespaced: false,
            verbs: CRUD,
            short_names: names(&["crd", "crds"]),
            subresources: &["status"],
            decode: decode::<apiextensions::CustomResourceDefinition>,
            schema: schema::<apiextensions::CustomResourceDefinition>,
            custom: None,
        },
    ]
    .into_iter()
    .map(Arc::new)
    .collect()
});

fn schema<T: schemars::JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

/// Metrics have no upstream type here (they are read, never written, so no client needs
/// their schema to write one); custom resources' schemas come from their definitions.
pub fn no_schema(_: &mut SchemaGenerator) -> Schema {
    Schema::default()
}

/// Metrics are never written: a body for one is refused whole.
fn read_only(_: &Value) -> Result<Typed, Undecodable> {
    Err(Undecodable::Invalid {
        field: String::new(),
        message: "metrics are read-only".into(),
    })
}

fn names(names: &[&'static str]) -> Vec<Name> {
    names.iter().map(|n| Cow::Borrowed(*n)).collect()
}

/// The built-in resource `plural` of `group/version`, if served.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Arc<ResourceType>> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The stored resource `plural` (its core form, for events); panics for one that is not
/// served, a programming error.
pub fn by_plural(plural: &str) -> &'static Arc<ResourceType> {
    RESOURCES
        .iter()
        .find(|r| r.plural == plural && !r.is_metrics())
        .expect("a served resource")
}

/// Every group with the versions it serves, the preferred (stored) one first; core first.
pub fn groups<'a>(
    resources: impl IntoIterator<Item = &'a ResourceType>,
) -> Vec<(&'a str, Vec<&'a str>)> {
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for r in resources {
        match groups.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) if !versions.contains(&r.version.as_ref()) => {
                versions.push(&r.version)
            }
            Some(_) => {}
            None => groups.push((&r.group, vec![&r.version])),
        }
    }
    groups
}
