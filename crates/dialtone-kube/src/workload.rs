//! What right-sizing reads of a cluster, and the disruptions it makes, through the API:
//! nodes with their allocatable, labels, taints and whether Dialtone is draining them, pods
//! with their requests, the rules of where they may run and whether the scheduler found no
//! node for them, disruption budgets; marking
//! a node for disruption (cordon and taint, as Karpenter does) and evicting a pod through
//! `pods/eviction`, so that every PodDisruptionBudget holds.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodAffinityTerm, Taint, Toleration,
    TopologySpreadConstraint,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::{Api, EvictParams, ListParams, Patch, PatchParams};

use crate::{KubeError, quantity};

/// The taint on a node Dialtone is draining: nothing new lands there.
pub const DISRUPTED_TAINT: &str = "dialtone.dev/disrupted";

#[derive(Clone, Debug, PartialEq)]
pub struct NodeView {
    pub name: String,
    /// The cloud's instance id, the last segment of the node's providerID.
    pub instance_id: String,
    pub ready: bool,
    pub control_plane: bool,
    /// Carries [`DISRUPTED_TAINT`]: Dialtone is draining it.
    pub disrupted: bool,
    pub millicores: u64,
    pub memory_mib: u64,
    pub pods: u32,
    pub created: Option<Timestamp>,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PodView {
    pub namespace: String,
    pub name: String,
    pub node: Option<String>,
    /// The scheduler tried and found no node.
    pub unschedulable: bool,
    pub millicores: u64,
    pub memory_mib: u64,
    pub node_selector: BTreeMap<String, String>,
    /// Required node affinity: the node must match one of these terms.
    pub node_affinity: Vec<NodeSelectorTerm>,
    pub tolerations: Vec<Toleration>,
    /// Required pod anti-affinity.
    pub anti_affinity: Vec<PodAffinityTerm>,
    /// Topology spread constraints that keep it pending (`DoNotSchedule`).
    pub spread: Vec<TopologySpreadConstraint>,
    pub labels: BTreeMap<String, String>,
    /// The kind of its controller (`Deployment`, `ReplicaSet`, `DaemonSet`, …), if any.
    pub controller: Option<String>,
    /// Succeeded or Failed: it holds no resources.
    pub finished: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct BudgetView {
    pub namespace: String,
    pub name: String,
    pub selector: Option<LabelSelector>,
    pub disruptions_allowed: i32,
}

impl BudgetView {
    /// Whether the budget covers the pod, by upstream's label-selector rules.
    pub fn covers(&self, pod: &PodView) -> bool {
        pod.namespace == self.namespace
            && self
                .selector
                .as_ref()
                .is_some_and(|s| selects(s, &pod.labels))
    }
}

/// Whether a label selector selects `labels`, by upstream's rules.
pub fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_value = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let by_expression = selector.match_expressions.iter().flatten().all(|e| {
        let value = labels.get(&e.key);
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    by_value && by_expression
}

/// Whether a node selector requirement holds for a node whose label `key` is `value`.
pub fn requirement_holds(requirement: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = requirement.values.as_deref().unwrap_or_default();
    let number = |v: &str| v.parse::<i64>().ok();
    let bound = values.first().and_then(|v| number(v));
    match requirement.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|w| w == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|w| w == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => value
            .and_then(number)
            .zip(bound)
            .is_some_and(|(v, b)| v > b),
        "Lt" => value
            .and_then(number)
            .zip(bound)
            .is_some_and(|(v, b)| v < b),
        _ => false,
    }
}

impl PodView {
    /// Whether a node with `labels` (and `name`, for `matchFields`) is one the pod's
    /// nodeSelector and required node affinity allow: the terms are ORed, a term's
    /// requirements ANDed, and an empty term selects nothing, as upstream has it.
    pub fn allows_node(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        let by_selector = self
            .node_selector
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v));
        let by_affinity = self.node_affinity.is_empty()
            || self.node_affinity.iter().any(|term| {
                let expressions = term.match_expressions.as_deref().unwrap_or_default();
                let fields = term.match_fields.as_deref().unwrap_or_default();
                !(expressions.is_empty() && fields.is_empty())
                    && expressions
                        .iter()
                        .all(|r| requirement_holds(r, labels.get(&r.key).map(String::as_str)))
                    && fields
                        .iter()
                        .all(|r| requirement_holds(r, (r.key == "metadata.name").then_some(name)))
            });
        by_selector && by_affinity
    }

    /// Whether the pod tolerates every taint that keeps pods off (`PreferNoSchedule` does
    /// not).
    pub fn tolerates(&self, taints: &[Taint]) -> bool {
        taints
            .iter()
            .filter(|t| t.effect != "PreferNoSchedule")
            .all(|taint| {
                self.tolerations.iter().any(|t| {
                    let exists = t.operator.as_deref() == Some("Exists");
                    let key = match t.key.as_deref() {
                        None | Some("") => exists,
                        Some(k) => k == taint.key,
                    };
                    let value = exists
                        || t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("");
                    let effect = t
                        .effect
                        .as_deref()
                        .is_none_or(|e| e.is_empty() || e == taint.effect);
                    key && value && effect
                })
            })
    }
}

/// A cluster's nodes, pods and disruption budgets, as right-sizing reads them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Workload {
    pub nodes: Vec<NodeView>,
    pub pods: Vec<PodView>,
    pub budgets: Vec<BudgetView>,
}

fn name_of(meta: &ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

fn amount(
    values: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
    key: &str,
) -> f64 {
    values
        .and_then(|v| v.get(key))
        .and_then(|q| quantity::parse(&q.0))
        .unwrap_or(0.0)
}

fn node_view(node: Node) -> NodeView {
    let status = node.status.unwrap_or_default();
    let spec = node.spec.unwrap_or_default();
    let allocatable = status.allocatable.as_ref();
    NodeView {
        ready: status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True"),
        control_plane: node
            .metadata
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key("node-role.kubernetes.io/control-plane")),
        disrupted: spec
            .taints
            .iter()
            .flatten()
            .any(|t| t.key == DISRUPTED_TAINT),
        millicores: (amount(allocatable, "cpu") * 1000.0).round() as u64,
        memory_mib: (amount(allocatable, "memory") / 1024.0 / 1024.0) as u64,
        pods: amount(allocatable, "pods") as u32,
        created: node.metadata.creation_timestamp.as_ref().map(|t| t.0),
        taints: spec.taints.clone().unwrap_or_default(),
        labels: node.metadata.labels.clone().unwrap_or_default(),
        instance_id: spec
            .provider_id
            .as_deref()
            .and_then(|id| id.rsplit('/').next())
            .unwrap_or_default()
            .to_string(),
        name: name_of(&node.metadata),
    }
}

fn pod_view(pod: Pod) -> PodView {
    let (millicores, memory_mib) = crate::usage::pod_requests(&pod);
    let spec = pod.spec.unwrap_or_default();
    let status = pod.status.unwrap_or_default();
    PodView {
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        name: name_of(&pod.metadata),
        node: spec.node_name.filter(|n| !n.is_empty()),
        unschedulable: status.conditions.iter().flatten().any(|c| {
            c.type_ == "PodScheduled"
                && c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
        }),
        millicores,
        memory_mib,
        node_selector: spec.node_selector.unwrap_or_default(),
        node_affinity: spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .map(|s| s.node_selector_terms.clone())
            .unwrap_or_default(),
        tolerations: spec.tolerations.unwrap_or_default(),
        anti_affinity: spec
            .affinity
            .and_then(|a| a.pod_anti_affinity)
            .and_then(|a| a.required_during_scheduling_ignored_during_execution)
            .unwrap_or_default(),
        spread: spec
            .topology_spread_constraints
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c.when_unsatisfiable == "DoNotSchedule")
            .collect(),
        labels: pod.metadata.labels.unwrap_or_default(),
        controller: pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .map(|o| o.kind.clone()),
        finished: matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")),
    }
}

/// The cluster's nodes: what a health check reads of the cluster's API.
pub async fn nodes(client: &kube::Client) -> Result<Vec<NodeView>, KubeError> {
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    Ok(nodes.items.into_iter().map(node_view).collect())
}

/// Reads what right-sizing decides on, beside the `nodes` just read.
pub async fn observe(client: &kube::Client, nodes: Vec<NodeView>) -> Result<Workload, KubeError> {
    let all = ListParams::default();
    let pods = Api::<Pod>::all(client.clone()).list(&all).await?;
    let budgets = Api::<PodDisruptionBudget>::all(client.clone())
        .list(&all)
        .await?;
    Ok(Workload {
        nodes,
        pods: pods
            .items
            .into_iter()
            .map(pod_view)
            .filter(|p| !p.finished)
            .collect(),
        budgets: budgets
            .items
            .into_iter()
            .map(|b| BudgetView {
                namespace: b.metadata.namespace.clone().unwrap_or_default(),
                name: name_of(&b.metadata),
                selector: b.spec.and_then(|s| s.selector),
                disruptions_allowed: b.status.map_or(0, |s| s.disruptions_allowed),
            })
            .collect(),
    })
}

/// Cordons the node and taints it [`DISRUPTED_TAINT`], keeping the taints it has.
pub async fn mark_disrupted(client: &kube::Client, node: &str) -> Result<(), KubeError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let current = nodes.get(node).await?;
    let mut taints = current.spec.and_then(|s| s.taints).unwrap_or_default();
    if !taints.iter().any(|t| t.key == DISRUPTED_TAINT) {
        taints.push(k8s_openapi::api::core::v1::Taint {
            key: DISRUPTED_TAINT.into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        });
    }
    let patch = serde_json::json!({"spec": {"unschedulable": true, "taints": taints}});
    nodes
        .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// What an eviction came to.
#[derive(Clone, Debug, PartialEq)]
pub enum Evicted {
    Yes,
    /// A disruption budget refused it for now (429), with upstream's message.
    Refused(String),
}

/// Evicts the pod through `pods/eviction`; one already gone counts as evicted.
pub async fn evict(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<Evicted, KubeError> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    match pods.evict(name, &EvictParams::default()).await {
        Ok(_) => Ok(Evicted::Yes),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(Evicted::Yes),
        Err(kube::Error::Api(status)) if status.code == 429 => Ok(Evicted::Refused(status.message)),
        Err(e) => Err(e.into()),
    }
}

/// Whether a node was made before `now - age`.
pub fn older_than(node: &NodeView, now: Timestamp, age: std::time::Duration) -> bool {
    let age = jiff::SignedDuration::try_from(age).unwrap_or(jiff::SignedDuration::MAX);
    node.created
        .is_none_or(|created| now.duration_since(created) >= age)
}
