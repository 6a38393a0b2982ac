//! What runs inside a sim cluster besides its API: the controllers upstream's
//! kube-controller-manager runs for the workload kinds (deployments through replica sets,
//! stateful sets and daemon sets with their revisions, jobs, cron jobs and horizontal pod
//! autoscalers), garbage collection by owner, the node controller, the scheduler and every
//! node's kubelet. Each is one function over the
//! cluster's objects; a pass runs them in order, and passes repeat while they change
//! something, so a rollout or an ordered start settles in one wake-up.

use std::sync::Arc;

use serde_json::{Map, Value, json};
use sha2::Digest;

use crate::cluster::{ClusterApi, key, now, stamp_new, timestamp};
use crate::events::EventType;
use crate::resources::by_plural;
use crate::store::ObjectKey;

pub mod autoscalers;
pub mod cronjobs;
mod daemonsets;
mod deployments;
pub mod jobs;
pub mod kubelet;
mod nodes;
mod replicasets;
mod revisions;
mod scheduler;
mod statefulsets;
mod topology;

pub use nodes::{NodeFacts, sync_nodes};

/// The kinds whose objects carry a pod template at `spec.template`.
pub(crate) const TEMPLATED_KINDS: &[&str] = &[
    "Deployment",
    "ReplicaSet",
    "StatefulSet",
    "DaemonSet",
    "Job",
];

/// The kinds that own pods or other workloads through a controller reference, with the
/// collections they are listed from.
const OWNER_KINDS: &[(&str, &str)] = &[
    ("Deployment", "deployments"),
    ("ReplicaSet", "replicasets"),
    ("StatefulSet", "statefulsets"),
    ("DaemonSet", "daemonsets"),
    ("Job", "jobs"),
    ("CronJob", "cronjobs"),
];

/// One pass of the controllers that run in the cluster; whether it changed anything.
pub fn reconcile(cluster: &Arc<ClusterApi>) -> bool {
    let before = cluster.objects.revision();
    crate::custom::establish(cluster);
    collect_garbage(cluster);
    autoscalers::sync(cluster);
    deployments::sync(cluster);
    replicasets::sync(cluster);
    statefulsets::sync(cluster);
    daemonsets::sync(cluster);
    cronjobs::sync(cluster);
    jobs::sync(cluster);
    scheduler::schedule(cluster);
    kubelet::run(cluster);
    crate::services::sync_endpoint_slices(cluster);
    crate::disruption::sync_budgets(cluster);
    cluster.objects.revision() != before
}

/// The uid of the object that controls `object`, from its controller reference.
pub(crate) fn owner_uid(object: &Value) -> Option<&str> {
    controller_of(object)?["uid"].as_str()
}

fn controller_of(object: &Value) -> Option<&Value> {
    object["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|o| o["controller"] == true)
}

/// A reference that makes `owner` the controller of the object that carries it.
fn controller_ref(owner: &Value) -> Value {
    json!([{
        "apiVersion": owner["apiVersion"], "kind": owner["kind"],
        "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
        "controller": true, "blockOwnerDeletion": true,
    }])
}

/// Whether the pod has ended: `Succeeded` or `Failed`.
pub(crate) fn is_terminated(pod: &Value) -> bool {
    matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    )
}

/// The condition `kind` of the object's status, if it holds (`status: "True"`).
pub(crate) fn holding<'a>(object: &'a Value, kind: &str) -> Option<&'a Value> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind && c["status"] == "True")
}

/// Whether the object's condition `kind` holds.
pub(crate) fn condition_holds(object: &Value, kind: &str) -> bool {
    holding(object, kind).is_some()
}

/// Whether the pod's `Ready` condition holds.
fn is_ready(pod: &Value) -> bool {
    condition_holds(pod, "Ready")
}

fn name_of(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or("")
}

fn namespace_of(object: &Value) -> &str {
    object["metadata"]["namespace"].as_str().unwrap_or("")
}

pub(super) fn pod_key(pod: &Value) -> ObjectKey {
    key("pods", namespace_of(pod), name_of(pod))
}

/// The objects of `items` that `owner` controls.
fn owned_by<'a>(items: &'a [Arc<Value>], owner: &Value) -> Vec<&'a Arc<Value>> {
    let uid = owner["metadata"]["uid"].as_str();
    items
        .iter()
        .filter(|o| namespace_of(o) == namespace_of(owner) && owner_uid(o) == uid)
        .collect()
}

/// The pods that still count for their controller: not ended, not being deleted.
fn active<'a>(pods: &[&'a Arc<Value>]) -> Vec<&'a Arc<Value>> {
    pods.iter()
        .filter(|p| !is_terminated(p) && p["metadata"]["deletionTimestamp"].is_null())
        .copied()
        .collect()
}

/// Without the fields Go's encoding drops or adds empty (`null`, `{}`, `[]`, `""`, `false`),
/// so that a template kubectl wrote back (`rollout undo`) compares equal to the one it came from.
fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), canonical(v)))
                .filter(|(_, v)| !is_empty(v))
                .collect::<Map<String, Value>>(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null | Value::Bool(false) => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

/// Ten characters that name a pod template, as `pod-template-hash` and
/// `controller-revision-hash` values do; the hash label itself is left out.
fn template_hash(template: &Value) -> String {
    let mut template = canonical(template);
    if let Some(labels) = template["metadata"]["labels"].as_object_mut() {
        labels.remove("pod-template-hash");
        labels.remove("controller-revision-hash");
    }
    let digest = sha2::Sha256::digest(serde_json::to_vec(&template).unwrap_or_default());
    digest[..5]
        .iter()
        .map(|b| format!("{:x}", b % 16))
        .collect::<String>()
        .chars()
        .chain(
            digest[5..10]
                .iter()
                .map(|b| char::from(b"bcdfghjklmnpqrstvwxz2456789"[*b as usize % 27])),
        )
        .collect()
}

/// A new pod from `owner`'s template, controlled by `owner`, with `labels` added.
fn pod_from_template(
    owner: &Value,
    template: &Value,
    name: &str,
    labels: &[(&str, &str)],
) -> (ObjectKey, Value) {
    let ns = namespace_of(owner);
    let mut metadata = template["metadata"].clone();
    if !metadata.is_object() {
        metadata = json!({});
    }
    for (k, v) in labels {
        metadata["labels"][*k] = json!(v);
    }
    metadata["name"] = json!(name);
    metadata["namespace"] = json!(ns);
    metadata["ownerReferences"] = controller_ref(owner);
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": metadata,
        "spec": template["spec"],
        "status": {"phase": "Pending"},
    });
    (key("pods", ns, name), stamp_new(pod, by_plural("pods"), ns))
}

/// Creates a pod and records it on its controller, as upstream's controllers do.
fn create_pod(cluster: &ClusterApi, owner: &Value, (key, pod): (ObjectKey, Value)) {
    let name = key.name.clone();
    if let Some(refusal) = cluster.pod_security_refusal(&key.namespace, &pod) {
        crate::events::record(
            cluster,
            owner,
            EventType::Warning,
            "FailedCreate",
            &format!("Error creating: {refusal}"),
            &controller_name(owner),
        );
        return;
    }
    if cluster.objects.create(key, pod).is_ok() {
        crate::events::record(
            cluster,
            owner,
            EventType::Normal,
            "SuccessfulCreate",
            &format!("Created pod: {name}"),
            &controller_name(owner),
        );
    }
}

fn delete_pod(cluster: &ClusterApi, owner: &Value, pod: &Value) {
    if cluster.objects.delete(&pod_key(pod)).is_ok() {
        crate::events::record(
            cluster,
            owner,
            EventType::Normal,
            "SuccessfulDelete",
            &format!("Deleted pod: {}", name_of(pod)),
            &controller_name(owner),
        );
    }
}

/// `replicaset-controller`, as upstream's controllers sign their events.
fn controller_name(owner: &Value) -> String {
    format!(
        "{}-controller",
        owner["kind"].as_str().unwrap_or("").to_lowercase()
    )
}

/// Writes `status` into `object` of `plural` unless it holds it already.
fn write_status(cluster: &ClusterApi, plural: &'static str, object: &Value, status: Value) {
    if object["status"] == status {
        return;
    }
    let mut next = object.clone();
    next["status"] = status;
    let _ = cluster
        .objects
        .update(&key(plural, namespace_of(object), name_of(object)), next);
}

/// A condition that keeps its transition time while its status holds.
fn condition(previous: &Value, kind: &str, holds: bool, reason: &str, message: &str) -> Value {
    let status = if holds { "True" } else { "False" };
    let old = previous
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == kind);
    let since = old
        .filter(|c| c["status"] == status)
        .map_or_else(|| json!(now()), |c| c["lastTransitionTime"].clone());
    json!({
        "type": kind, "status": status, "reason": reason, "message": message,
        "lastTransitionTime": since, "lastUpdateTime": since,
    })
}

/// An int-or-percent field (`maxSurge: 25%`) of `total`, rounded up or down.
fn scaled(value: &Value, total: i64, round_up: bool) -> i64 {
    match value {
        Value::Number(n) => n.as_i64().unwrap_or(0),
        Value::String(s) => match s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) {
            Some(percent) if round_up => (percent * total + 99) / 100,
            Some(percent) => percent * total / 100,
            None => s.parse().unwrap_or(0),
        },
        _ => 0,
    }
}

/// Deletes what lost its controller: pods, replica sets and jobs whose owner is gone, and
/// pods that were bound to a node that is gone. Pods of a deployment from before deployments
/// rolled out through replica sets go too; their replica set replaces them.
fn collect_garbage(cluster: &ClusterApi) {
    let mut owners: std::collections::HashSet<String> = std::collections::HashSet::new();
    for (_, plural) in OWNER_KINDS {
        for owner in cluster.objects.list(plural, None).0 {
            if let Some(uid) = owner["metadata"]["uid"].as_str() {
                owners.insert(uid.to_string());
            }
        }
    }
    let orphaned = |object: &Value| {
        controller_of(object).is_some_and(|owner| {
            let kind = owner["kind"].as_str().unwrap_or("");
            OWNER_KINDS.iter().any(|(k, _)| *k == kind)
                && !owners.contains(owner["uid"].as_str().unwrap_or(""))
        })
    };
    for plural in ["replicasets", "jobs", "controllerrevisions"] {
        for object in cluster.objects.list(plural, None).0 {
            if orphaned(&object) {
                let _ =
                    cluster
                        .objects
                        .delete(&key(plural, namespace_of(&object), name_of(&object)));
            }
        }
    }
    let pods = cluster.objects.list("pods", None).0;
    if pods.is_empty() {
        return;
    }
    let (nodes, _) = cluster.objects.list("nodes", None);
    let node_names: std::collections::HashSet<&str> = nodes.iter().map(|n| name_of(n)).collect();
    for pod in pods {
        let node_gone = pod["spec"]["nodeName"]
            .as_str()
            .is_some_and(|n| !n.is_empty() && !node_names.contains(n));
        let legacy = controller_of(&pod).is_some_and(|o| o["kind"] == "Deployment");
        if node_gone || legacy || orphaned(&pod) {
            let _ = cluster.objects.delete(&pod_key(&pod));
        }
    }
}

#[cfg(test)]
mod scheduling {
    use super::*;

    fn facts(name: &str, control_plane: bool) -> NodeFacts {
        NodeFacts {
            name: name.into(),
            instance_id: format!("i-{name}"),
            control_plane,
            region: "us-east-1".into(),
            zone: "us-east-1a".into(),
            instance_type: "t3.medium".into(),
            arch: "amd64".into(),
            vcpus: 2,
            memory_mib: 4096,
            max_pods: 17,
            address: "10.0.0.1".into(),
            version: "1.34".into(),
            healthy: true,
        }
    }

    #[test]
    fn pods_fit_on_allocatable_and_the_rest_are_unschedulable() {
        let cluster = Arc::new(ClusterApi::new("u", "1.34"));
        sync_nodes(&cluster, &[facts("cp", true), facts("w", false)]);
        let pods = by_plural("pods");
        for i in 0..5 {
            let pod = json!({"metadata": {"name": format!("p{i}")}, "spec": {"containers": [
                {"name": "c", "image": "nginx", "resources": {"requests": {"cpu": "500m"}}}]}});
            cluster
                .objects
                .create(
                    key("pods", "default", &format!("p{i}")),
                    stamp_new(pod, pods, "default"),
                )
                .unwrap();
        }
        reconcile(&cluster);
        reconcile(&cluster);
        let (pods, _) = cluster.objects.list("pods", Some("default"));
        let running = pods
            .iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .count();
        // 1930m allocatable on the one worker: three pods of 500m; the control plane is tainted.
        assert_eq!(running, 3, "{pods:#?}");
        let pending = pods
            .iter()
            .find(|p| p["status"]["phase"] == "Pending")
            .unwrap();
        assert_eq!(
            pending["status"]["conditions"][0]["reason"],
            "Unschedulable"
        );
        let message = pending["status"]["conditions"][0]["message"]
            .as_str()
            .unwrap();
        assert!(
            message.starts_with(
                "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint"
            ),
            "{message}"
        );
    }
}
