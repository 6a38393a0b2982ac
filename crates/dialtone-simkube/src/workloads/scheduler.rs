//! The scheduler: binds each pending pod to the ready node that fits its requests on
//! allocatable and is left least full (in the least crowded domain of its spread
//! constraints), honouring `nodeSelector`, required node affinity, taints, required pod
//! anti-affinity and topology spread constraints ([`super::topology`]), and reports
//! Unschedulable with upstream's message when none does.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::topology::{self, Bound};
use super::{is_terminated, pod_key};
use crate::cluster::{ClusterApi, now};
use crate::events::EventType;
use crate::quantity;

#[derive(Clone, Copy, Default, Debug)]
struct Resources {
    millicores: u64,
    memory_bytes: u64,
    pods: u64,
}

fn requests_of(pod: &Value) -> Resources {
    let mut total = Resources {
        pods: 1,
        ..Default::default()
    };
    for container in pod["spec"]["containers"].as_array().into_iter().flatten() {
        let requests = &container["resources"]["requests"];
        let get = |name: &str| {
            requests[name]
                .as_str()
                .and_then(quantity::parse)
                .unwrap_or(0.0)
        };
        total.millicores += (get("cpu") * 1000.0).round() as u64;
        total.memory_bytes += get("memory").round() as u64;
    }
    total
}

/// Whether any container asks for CPU or memory: `Burstable` rather than `BestEffort`.
pub(super) fn requests_anything(pod: &Value) -> bool {
    let r = requests_of(pod);
    r.millicores + r.memory_bytes > 0
}

fn allocatable_of(node: &Value) -> Resources {
    let a = &node["status"]["allocatable"];
    let get = |name: &str| a[name].as_str().and_then(quantity::parse).unwrap_or(0.0);
    Resources {
        millicores: (get("cpu") * 1000.0).round() as u64,
        memory_bytes: get("memory").round() as u64,
        pods: get("pods") as u64,
    }
}

/// Whether `pod` tolerates `taint` (`PreferNoSchedule` never keeps a pod off).
pub(super) fn tolerates(pod: &Value, taint: &Value) -> bool {
    let effect = taint["effect"].as_str().unwrap_or("");
    if effect == "PreferNoSchedule" {
        return true;
    }
    pod["spec"]["tolerations"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|t| {
            let key_matches = match t["key"].as_str() {
                None | Some("") => t["operator"] == "Exists",
                Some(k) => k == taint["key"].as_str().unwrap_or(""),
            };
            let value_matches = t["operator"] == "Exists"
                || t["value"].as_str().unwrap_or("") == taint["value"].as_str().unwrap_or("");
            let effect_matches = t["effect"]
                .as_str()
                .is_none_or(|e| e.is_empty() || e == effect);
            key_matches && value_matches && effect_matches
        })
}

/// The first taint of `node` that `pod` does not tolerate.
pub(super) fn untolerated_taint<'a>(pod: &Value, node: &'a Value) -> Option<&'a Value> {
    node["spec"]["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| !tolerates(pod, t))
}

/// One `NodeSelectorRequirement` against a label (or field) lookup.
fn requirement_holds(requirement: &Value, value_of: impl Fn(&str) -> Option<String>) -> bool {
    let key = requirement["key"].as_str().unwrap_or("");
    let values: Vec<&str> = requirement["values"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let value = value_of(key);
    let number = |v: &Option<String>| v.as_deref().and_then(|v| v.parse::<i64>().ok());
    let bound = values.first().and_then(|v| v.parse::<i64>().ok());
    match requirement["operator"].as_str().unwrap_or("") {
        "In" => value.is_some_and(|v| values.contains(&v.as_str())),
        "NotIn" => value.is_none_or(|v| !values.contains(&v.as_str())),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => number(&value).zip(bound).is_some_and(|(v, b)| v > b),
        "Lt" => number(&value).zip(bound).is_some_and(|(v, b)| v < b),
        _ => false,
    }
}

/// Whether `node` is one `pod` may run on by its `nodeSelector` and required node affinity
/// (the terms are ORed; within a term, label and field requirements are ANDed).
pub(super) fn matches_placement(pod: &Value, node: &Value) -> bool {
    let labels = &node["metadata"]["labels"];
    let by_selector = pod["spec"]["nodeSelector"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| labels[k] == *v);
    let terms = pod["spec"]["affinity"]["nodeAffinity"]
        ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        .as_array();
    let by_affinity = terms.is_none_or(|terms| {
        terms.iter().any(|term| {
            let label = |k: &str| labels[k].as_str().map(str::to_string);
            let field = |k: &str| {
                (k == "metadata.name")
                    .then(|| node["metadata"]["name"].as_str().map(str::to_string))
                    .flatten()
            };
            let expressions = term["matchExpressions"].as_array();
            let fields = term["matchFields"].as_array();
            // An empty term selects nothing, as upstream has it.
            (expressions.is_some_and(|e| !e.is_empty()) || fields.is_some_and(|f| !f.is_empty()))
                && expressions
                    .into_iter()
                    .flatten()
                    .all(|r| requirement_holds(r, label))
                && fields
                    .into_iter()
                    .flatten()
                    .all(|r| requirement_holds(r, field))
        })
    });
    by_selector && by_affinity
}

/// Binds every pending pod that fits somewhere; the rest are marked Unschedulable with the
/// count of nodes per reason.
pub(super) fn schedule(cluster: &ClusterApi) {
    let pods = cluster.objects.list("pods", None).0;
    let mut pending: Vec<&Arc<Value>> = pods
        .iter()
        .filter(|p| {
            p["spec"]["nodeName"].as_str().unwrap_or("").is_empty()
                && !is_terminated(p)
                && p["metadata"]["deletionTimestamp"].is_null()
        })
        .collect();
    if pending.is_empty() {
        return;
    }
    let (nodes, _) = cluster.objects.list("nodes", None);
    let namespaces = if pending.iter().any(|p| topology::has_rules(p)) {
        cluster.objects.list("namespaces", None).0
    } else {
        Vec::new()
    };
    let mut bound = Bound::new(Vec::new(), &nodes, &namespaces);
    let mut used: BTreeMap<String, Resources> = BTreeMap::new();
    for pod in pods.iter().filter(|p| !is_terminated(p)) {
        if let Some(node) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
            bound.bind(pod, node.to_string());
            let r = requests_of(pod);
            let u = used.entry(node.to_string()).or_default();
            u.millicores += r.millicores;
            u.memory_bytes += r.memory_bytes;
            u.pods += r.pods;
        }
    }
    pending.sort_by_key(|p| {
        (
            p["metadata"]["creationTimestamp"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            p["metadata"]["name"].as_str().unwrap_or("").to_string(),
        )
    });
    for pod in pending {
        let wanted = requests_of(pod);
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        let mut best: Option<((u32, f64), &Arc<Value>)> = None;
        // Spread domains are the nodes the pod's placement allows, tainted ones too.
        let spreads = if topology::has_rules(pod) {
            let eligible: Vec<&Value> = nodes
                .iter()
                .map(|n| &**n)
                .filter(|n| matches_placement(pod, n))
                .collect();
            bound.spreads(pod, &eligible)
        } else {
            Vec::new()
        };
        for node in &nodes {
            let name = node["metadata"]["name"].as_str().unwrap_or("");
            let reason = if !super::condition_holds(node, "Ready") {
                Some("node(s) were not ready".to_string())
            } else if node["spec"]["unschedulable"] == true {
                Some("node(s) were unschedulable".to_string())
            } else if let Some(taint) = untolerated_taint(pod, node) {
                Some(format!(
                    "node(s) had untolerated taint {{{}: {}}}",
                    taint["key"].as_str().unwrap_or(""),
                    taint["value"].as_str().unwrap_or("")
                ))
            } else if !matches_placement(pod, node) {
                Some("node(s) didn't match Pod's node affinity/selector".to_string())
            } else {
                let capacity = allocatable_of(node);
                let u = used.get(name).copied().unwrap_or_default();
                if u.pods + 1 > capacity.pods {
                    Some("Too many pods".to_string())
                } else if u.millicores + wanted.millicores > capacity.millicores {
                    Some("Insufficient cpu".to_string())
                } else if u.memory_bytes + wanted.memory_bytes > capacity.memory_bytes {
                    Some("Insufficient memory".to_string())
                } else if let Some(reason) = topology::has_rules(pod)
                    .then(|| bound.refuses(pod, node, &spreads))
                    .flatten()
                {
                    Some(reason.to_string())
                } else {
                    let score = ((u.millicores + wanted.millicores) as f64
                        / capacity.millicores.max(1) as f64)
                        .max(
                            (u.memory_bytes + wanted.memory_bytes) as f64
                                / capacity.memory_bytes.max(1) as f64,
                        );
                    let score = (bound.crowding(node, &spreads), score);
                    if best.is_none_or(|(s, _)| score < s) {
                        best = Some((score, node));
                    }
                    None
                }
            };
            if let Some(reason) = reason {
                *reasons.entry(reason).or_default() += 1;
            }
        }
        let ns = pod["metadata"]["namespace"].as_str().unwrap_or("");
        let pod_name = pod["metadata"]["name"].as_str().unwrap_or("");
        let mut next = (**pod).clone();
        match best {
            Some((_, node)) => {
                let node_name = node["metadata"]["name"].as_str().unwrap_or("").to_string();
                bound.bind(pod, node_name.clone());
                let u = used.entry(node_name.clone()).or_default();
                u.millicores += wanted.millicores;
                u.memory_bytes += wanted.memory_bytes;
                u.pods += 1;
                next["spec"]["nodeName"] = json!(node_name);
                crate::events::record(
                    cluster,
                    pod,
                    EventType::Normal,
                    "Scheduled",
                    &format!("Successfully assigned {ns}/{pod_name} to {node_name}"),
                    "default-scheduler",
                );
                next["status"] = json!({
                    "phase": "Pending",
                    "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": now()}],
                    "qosClass": pod["status"]["qosClass"],
                });
            }
            None => {
                let detail = reasons
                    .iter()
                    .map(|(reason, count)| format!("{count} {reason}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let message = format!(
                    "0/{} nodes are available: {detail}. preemption: 0/{} nodes are available: {} Preemption is not helpful for scheduling.",
                    nodes.len(),
                    nodes.len(),
                    nodes.len()
                );
                let existing = pod["status"]["conditions"][0]["message"].as_str();
                if existing == Some(message.as_str()) {
                    continue;
                }
                crate::events::record(
                    cluster,
                    pod,
                    EventType::Warning,
                    "FailedScheduling",
                    &message,
                    "default-scheduler",
                );
                next["status"] = json!({
                    "phase": "Pending",
                    "conditions": [{
                        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                        "message": message, "lastTransitionTime": now(),
                    }],
                    "qosClass": pod["status"]["qosClass"],
                });
            }
        }
        let _ = cluster.objects.update(&pod_key(pod), next);
    }
}
