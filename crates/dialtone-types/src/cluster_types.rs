//! API shape of the Smart Cluster types and their decision tables.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One decision of a cluster type: what it is for this type, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DecisionInfo {
    /// `area.name`, e.g. `controlPlane.nodes`.
    pub key: String,
    /// The value, or how it is computed for each cluster.
    pub value: String,
    /// What is built or checked from it, if anything: `None` marks an advisory decision,
    /// recorded in every plan and shown, but not yet read by anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforces: Option<String>,
    /// Why, in one line.
    pub reason: String,
}

/// A Smart Cluster type: a named bundle of decisions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ClusterTypeInfo {
    /// `developer` or `production`.
    pub name: String,
    /// What the type is for, in a sentence.
    pub description: String,
    /// Every decision of the table, with this type's value.
    pub decisions: Vec<DecisionInfo>,
    /// How many decisions something built or checked follows from.
    pub enforced: usize,
    /// How many are only recorded and shown.
    pub advisory: usize,
}

/// A Kubernetes minor of the version catalogue, and what each release channel offers of it
/// on the day it is asked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesVersionInfo {
    /// `1.35`.
    pub minor: String,
    /// The day upstream published it.
    pub released: jiff::civil::Date,
    /// The first day it is no longer supported.
    pub end_of_support: jiff::civil::Date,
    /// Days from today to its end of support; negative once past.
    pub days_to_end_of_support: i64,
    /// The patch release each channel offers today, by channel; a channel that does not
    /// offer the minor (yet, or any more) is absent.
    pub channels: std::collections::BTreeMap<crate::cluster::ReleaseChannel, String>,
    /// The channels whose new clusters get this minor when they name none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub default_for: Vec<crate::cluster::ReleaseChannel>,
    /// Every patch release, oldest first.
    pub patches: Vec<String>,
}
