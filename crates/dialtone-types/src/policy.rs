//! API shapes of access policies: a node's policy, the explanation of a decision and the
//! preview of a policy change.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The role bindings set on one node of the tree (org, folder, project, cluster or
/// namespace). A node's effective policy is the union of its own and its ancestors'.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccessPolicy {
    /// The roles granted on the node, each to its subjects.
    #[serde(default)]
    pub bindings: Vec<PolicyBinding>,
    /// Opaque; changes whenever the policy does. Send back the one read to set a policy
    /// only if nobody changed it since (409 otherwise); leave empty to overwrite.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub etag: String,
}

/// One role granted to subjects: `user:<identity>` or `group:<group>`.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyBinding {
    /// A role of the catalogue, for example `cluster.view`.
    pub role: String,
    /// Who is granted it: `user:<identity>` or `group:<group>`.
    pub subjects: Vec<String>,
}

/// A binding that grants something, and where it sits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GrantingBinding {
    /// The node the binding is set on, as `org/folder/project/…`.
    pub node: String,
    /// The role it grants.
    pub role: String,
    /// The subject it names that the identity is, or is a member of.
    pub subject: String,
}

/// Whether an identity may do something on a node, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    /// Whether the request would be allowed.
    pub allowed: bool,
    /// The identity asked about.
    pub identity: String,
    /// The verb asked about (`get`, `create`, …).
    pub verb: String,
    /// The resource asked about (`clusters`, or a Kubernetes resource such as `pods`).
    pub resource: String,
    /// The node asked about, as `org/folder/project/…`.
    pub node: String,
    /// `dialtone` for the resources of the tree, `kubernetes` for a cluster's.
    pub api: String,
    /// The bindings that grant it, nearest first, on the nodes whose policy the caller may
    /// read; empty when denied.
    pub granted_by: Vec<GrantingBinding>,
    /// The groups the identity is in, which bindings may name; shown to the identity
    /// itself and to those who may read the org's groups.
    pub groups: Vec<String>,
}

/// A proposed policy for one node, to preview.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WhatIfRequest {
    /// The node, as `org/folder/project/…`.
    pub node: String,
    /// The policy the node would have.
    pub policy: AccessPolicy,
}

/// What a proposed policy would change in each cluster it reaches; nothing is applied.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WhatIf {
    /// One entry per cluster whose RBAC would change.
    pub clusters: Vec<ClusterRbacChanges>,
}

/// The RBAC objects of one cluster that would be created, replaced or deleted, as
/// `Kind/name` or `Kind/namespace/name`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRbacChanges {
    /// The cluster, as `org/folder/project/cluster`.
    pub cluster: String,
    /// Objects that would be created.
    pub add: Vec<String>,
    /// Objects that would be updated or replaced.
    pub change: Vec<String>,
    /// Objects that would be deleted.
    pub remove: Vec<String>,
}
