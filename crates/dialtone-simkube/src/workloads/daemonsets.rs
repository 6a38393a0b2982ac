//! The daemon set controller: one pod on every node that the template's node selector,
//! affinity and tolerations allow, pinned to its node by required node affinity on the
//! node's name as upstream pins it (the scheduler still checks that it fits). Daemon pods
//! tolerate what upstream adds for them: a node that is not ready, unreachable, under
//! pressure or cordoned. A rolling update replaces at most `maxUnavailable` pods at a time.

use super::scheduler::{matches_placement, untolerated_taint};
use super::*;

const REVISION_LABEL: &str = "controller-revision-hash";

/// The tolerations upstream's daemon set controller adds to every daemon pod.
fn daemon_tolerations() -> Vec<Value> {
    let mut tolerations: Vec<Value> = ["not-ready", "unreachable"]
        .iter()
        .map(|t| json!({"key": format!("node.kubernetes.io/{t}"), "operator": "Exists", "effect": "NoExecute"}))
        .collect();
    for t in [
        "disk-pressure",
        "memory-pressure",
        "pid-pressure",
        "unschedulable",
    ] {
        tolerations.push(json!({"key": format!("node.kubernetes.io/{t}"), "operator": "Exists", "effect": "NoSchedule"}));
    }
    tolerations
}

pub(super) fn sync(cluster: &ClusterApi) {
    let sets = cluster.objects.list("daemonsets", None).0;
    if sets.is_empty() {
        return;
    }
    let pods = cluster.objects.list("pods", None).0;
    let (nodes, _) = cluster.objects.list("nodes", None);
    for set in &sets {
        sync_one(cluster, set, &pods, &nodes);
    }
}

/// The template as a pod on `node` would be: with the daemon tolerations and pinned there.
fn template_for(set: &Value, node: &str) -> Value {
    let mut template = set["spec"]["template"].clone();
    let spec = &mut template["spec"];
    let mut tolerations = spec["tolerations"].as_array().cloned().unwrap_or_default();
    tolerations.extend(daemon_tolerations());
    spec["tolerations"] = json!(tolerations);
    spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] = json!({
        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}],
    });
    template
}

fn sync_one(cluster: &ClusterApi, set: &Value, pods: &[Arc<Value>], nodes: &[Arc<Value>]) {
    let revision = template_hash(&set["spec"]["template"]);
    let owned = active(&owned_by(pods, set));
    let in_use: Vec<String> = owned
        .iter()
        .filter_map(|p| p["metadata"]["labels"][REVISION_LABEL].as_str())
        .map(|hash| format!("{}-{hash}", name_of(set)))
        .collect();
    let in_use: Vec<&str> = in_use.iter().map(String::as_str).collect();
    revisions::record(cluster, set, &revision, &in_use);
    let node_of = |p: &Value| -> String {
        // Pinned by affinity before it is bound.
        p["spec"]["nodeName"]
            .as_str()
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .or_else(|| {
                p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
                    ["nodeSelectorTerms"][0]["matchFields"][0]["values"][0]
                    .as_str()
                    .map(str::to_string)
            })
            .unwrap_or_default()
    };
    let eligible: Vec<&str> = nodes
        .iter()
        .filter(|node| {
            let probe = json!({"spec": template_for(set, name_of(node))["spec"]});
            matches_placement(&probe, node) && untolerated_taint(&probe, node).is_none()
        })
        .map(|n| name_of(n))
        .collect();
    for node in &eligible {
        if !owned.iter().any(|p| node_of(p) == *node) {
            let name = format!("{}-{}", name_of(set), crate::cluster::random_suffix());
            let generation = set["metadata"]["generation"]
                .as_i64()
                .unwrap_or(1)
                .to_string();
            let pod = pod_from_template(
                set,
                &template_for(set, node),
                &name,
                &[
                    (REVISION_LABEL, &revision),
                    ("pod-template-generation", &generation),
                ],
            );
            create_pod(cluster, set, pod);
        }
    }
    // A pod on a node it may no longer run on goes.
    for pod in owned
        .iter()
        .filter(|p| !eligible.contains(&node_of(p).as_str()))
    {
        delete_pod(cluster, set, pod);
    }
    let on_eligible: Vec<&&Arc<Value>> = owned
        .iter()
        .filter(|p| eligible.contains(&node_of(p).as_str()))
        .collect();
    let is_current = |p: &Value| p["metadata"]["labels"][REVISION_LABEL] == revision.as_str();
    if set["spec"]["updateStrategy"]["type"] != "OnDelete" {
        let budget = scaled(
            &set["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"],
            eligible.len() as i64,
            false,
        )
        .max(1);
        let ready = on_eligible.iter().filter(|p| is_ready(p)).count() as i64;
        let unavailable = eligible.len() as i64 - ready;
        // Outdated pods that are not ready cost nothing to replace; ready ones, the budget.
        let mut outdated: Vec<&&&Arc<Value>> =
            on_eligible.iter().filter(|p| !is_current(p)).collect();
        outdated.sort_by_key(|p| is_ready(p));
        let free = outdated.iter().take_while(|p| !is_ready(p)).count();
        let room = free + (budget - unavailable).max(0) as usize;
        for pod in outdated.into_iter().take(room) {
            delete_pod(cluster, set, pod);
        }
    }
    let scheduled = on_eligible
        .iter()
        .filter(|p| !p["spec"]["nodeName"].as_str().unwrap_or("").is_empty())
        .count();
    let ready = on_eligible.iter().filter(|p| is_ready(p)).count();
    let updated = on_eligible.iter().filter(|p| is_current(p)).count();
    let mut status = json!({
        "observedGeneration": set["metadata"]["generation"],
        "desiredNumberScheduled": eligible.len(),
        "currentNumberScheduled": scheduled,
        "numberMisscheduled": owned.len() - on_eligible.len(),
        "numberReady": ready,
        "numberAvailable": ready,
        "numberUnavailable": eligible.len().saturating_sub(ready),
        "updatedNumberScheduled": updated,
    });
    if let Some(fields) = status.as_object_mut() {
        fields.retain(|k, v| {
            !matches!(
                k.as_str(),
                "numberAvailable" | "numberUnavailable" | "updatedNumberScheduled"
            ) || v.as_i64() != Some(0)
        });
    }
    write_status(cluster, "daemonsets", set, status);
}
