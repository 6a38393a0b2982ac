//! What runs inside a sim cluster besides its API: the node controller (one Node per
//! instance of the cluster, capacity from the instance type, Ready following the
//! instance's health), the deployment controller (keeps each deployment's replicas, rolls
//! pods to a new template), pod garbage collection, and the scheduler (fits requests on
//! allocatable, honours nodeSelector and taints, reports Unschedulable as upstream does).
//! Containers start at once when scheduled: a sim node runs no images.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::{Value, json};
use sha2::Digest;

use crate::cluster::{ClusterApi, key, now, stamp_new};
use crate::events::EventType;
use crate::quantity;
use crate::resources::by_plural;

/// What the cloud says about one instance of the cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeFacts {
    pub name: String,
    pub instance_id: String,
    pub control_plane: bool,
    pub region: String,
    pub zone: String,
    pub instance_type: String,
    pub arch: String,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub max_pods: u32,
    pub address: String,
    /// The Kubernetes version of the node's image, `1.34`.
    pub version: String,
    /// `None` while the instance is impaired: the node stops reporting.
    pub healthy: bool,
}

fn node_object(facts: &NodeFacts, existing: Option<&Value>) -> Value {
    let version = &facts.version;
    // The system reserve is documented with its formula in dialtone-cloud.
    let (allocatable_cpu, allocatable_memory, _) =
        dialtone_cloud::reserve::allocatable(facts.vcpus, facts.memory_mib, facts.max_pods);
    let mut labels = json!({
        "kubernetes.io/hostname": facts.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": facts.arch,
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": facts.arch,
        "node.kubernetes.io/instance-type": facts.instance_type,
        "topology.kubernetes.io/region": facts.region,
        "topology.kubernetes.io/zone": facts.zone,
        "dialtone.dev/instance-id": facts.instance_id,
    });
    let mut taints = Vec::new();
    if facts.control_plane {
        labels["node-role.kubernetes.io/control-plane"] = json!("");
        taints
            .push(json!({"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}));
    }
    // A condition keeps its transition time while its status holds.
    let status = if facts.healthy { "True" } else { "Unknown" };
    let previous = existing.and_then(|n| {
        n["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready").cloned())
    });
    let transition = previous
        .filter(|c| c["status"] == status)
        .map(|c| c["lastTransitionTime"].clone())
        .unwrap_or_else(|| json!(now()));
    let (reason, message) = if facts.healthy {
        ("KubeletReady", "kubelet is posting ready status")
    } else {
        ("NodeStatusUnknown", "Kubelet stopped posting node status.")
    };
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": facts.name,
            "labels": labels,
            "uid": existing.map_or(Value::Null, |n| n["metadata"]["uid"].clone()),
            "creationTimestamp": existing.map_or(Value::Null, |n| n["metadata"]["creationTimestamp"].clone()),
        },
        "spec": {
            "providerID": format!("sim:///{}/{}", facts.zone, facts.instance_id),
            "taints": taints,
            "unschedulable": existing.and_then(|n| n["spec"]["unschedulable"].as_bool()).unwrap_or(false),
        },
        "status": {
            "capacity": {
                "cpu": facts.vcpus.to_string(),
                "memory": format!("{}Mi", facts.memory_mib),
                "pods": facts.max_pods.to_string(),
            },
            "allocatable": {
                "cpu": format!("{allocatable_cpu}m"),
                "memory": format!("{allocatable_memory}Mi"),
                "pods": facts.max_pods.to_string(),
            },
            "conditions": [{
                "type": "Ready", "status": status, "reason": reason, "message": message,
                "lastTransitionTime": transition, "lastHeartbeatTime": transition,
            }],
            "addresses": [
                {"type": "InternalIP", "address": facts.address},
                {"type": "Hostname", "address": facts.name},
            ],
            "nodeInfo": {
                "kubeletVersion": format!("v{version}.0"),
                "kubeProxyVersion": format!("v{version}.0"),
                "containerRuntimeVersion": "containerd://2.0.0",
                "osImage": dialtone_cloud::node_image(version),
                "operatingSystem": "linux",
                "architecture": facts.arch,
                "kernelVersion": "6.12.0",
                "machineID": facts.instance_id,
                "systemUUID": facts.instance_id,
                "bootID": facts.instance_id,
            },
        },
    })
}

/// Brings the Node objects in line with the cluster's instances.
pub fn sync_nodes(cluster: &ClusterApi, facts: &[NodeFacts]) {
    let nodes = by_plural("nodes");
    let (existing, _) = cluster.objects.list("nodes", None);
    let wanted: HashMap<&str, &NodeFacts> = facts.iter().map(|f| (f.name.as_str(), f)).collect();
    for node in &existing {
        let name = node["metadata"]["name"].as_str().unwrap_or("");
        if !wanted.contains_key(name) {
            let _ = cluster.objects.delete(&key("nodes", "", name));
        }
    }
    for facts in facts {
        let current = existing
            .iter()
            .find(|n| n["metadata"]["name"] == facts.name.as_str());
        match current {
            None => {
                let object = stamp_new(node_object(facts, None), nodes, "");
                let _ = cluster
                    .objects
                    .create(key("nodes", "", &facts.name), object);
            }
            Some(current) => {
                let mut object = node_object(facts, Some(current));
                object["metadata"]["resourceVersion"] =
                    current["metadata"]["resourceVersion"].clone();
                // Labels and taints users add stay.
                if let Some(extra) = current["metadata"]["labels"].as_object() {
                    for (k, v) in extra {
                        if object["metadata"]["labels"].get(k).is_none() {
                            object["metadata"]["labels"][k] = v.clone();
                        }
                    }
                }
                for taint in current["spec"]["taints"].as_array().into_iter().flatten() {
                    let taints = object["spec"]["taints"]
                        .as_array_mut()
                        .expect("node_object sets taints");
                    if !taints.iter().any(|t| t["key"] == taint["key"]) {
                        taints.push(taint.clone());
                    }
                }
                if object != **current {
                    let _ = cluster
                        .objects
                        .update(&key("nodes", "", &facts.name), object);
                }
            }
        }
    }
}

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

fn allocatable_of(node: &Value) -> Resources {
    let a = &node["status"]["allocatable"];
    let get = |name: &str| a[name].as_str().and_then(quantity::parse).unwrap_or(0.0);
    Resources {
        millicores: (get("cpu") * 1000.0).round() as u64,
        memory_bytes: get("memory").round() as u64,
        pods: get("pods") as u64,
    }
}

fn is_ready(node: &Value) -> bool {
    node["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn tolerates(pod: &Value, taint: &Value) -> bool {
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

fn template_hash(template: &Value) -> String {
    let digest = sha2::Sha256::digest(serde_json::to_vec(template).unwrap_or_default());
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

pub(crate) fn owner_uid(pod: &Value) -> Option<&str> {
    pod["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|o| o["controller"] == true)?["uid"]
        .as_str()
}

fn pod_terminated(pod: &Value) -> bool {
    matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    )
}

/// The range pods' addresses come from in a cluster whose control plane's user data is not
/// known: flannel's default, which kubeadm guides use.
const DEFAULT_POD_CIDR: &str = "10.244.0.0/16";

/// One pass of the controllers that run in the cluster.
pub fn reconcile(cluster: &Arc<ClusterApi>) {
    collect_garbage(cluster);
    for deployment in cluster.objects.list("deployments", None).0 {
        sync_deployment(cluster, &deployment);
    }
    schedule(cluster);
    crate::services::sync_endpoint_slices(cluster);
    crate::disruption::sync_budgets(cluster);
    for deployment in cluster.objects.list("deployments", None).0 {
        update_deployment_status(cluster, &deployment);
    }
}

fn collect_garbage(cluster: &ClusterApi) {
    crate::events::expire(cluster);
    let (nodes, _) = cluster.objects.list("nodes", None);
    let node_names: Vec<&str> = nodes
        .iter()
        .filter_map(|n| n["metadata"]["name"].as_str())
        .collect();
    let deployment_uids: Vec<String> = cluster
        .objects
        .list("deployments", None)
        .0
        .iter()
        .filter_map(|d| d["metadata"]["uid"].as_str().map(str::to_string))
        .collect();
    for pod in cluster.objects.list("pods", None).0 {
        let node_gone = pod["spec"]["nodeName"]
            .as_str()
            .is_some_and(|n| !n.is_empty() && !node_names.contains(&n));
        let owner_gone =
            owner_uid(&pod).is_some_and(|uid| !deployment_uids.iter().any(|d| d == uid));
        if node_gone || owner_gone {
            let ns = pod["metadata"]["namespace"].as_str().unwrap_or("");
            let name = pod["metadata"]["name"].as_str().unwrap_or("");
            let _ = cluster.objects.delete(&key("pods", ns, name));
        }
    }
}

fn owned_pods(cluster: &ClusterApi, deployment: &Value) -> Vec<Arc<Value>> {
    let ns = deployment["metadata"]["namespace"].as_str().unwrap_or("");
    let uid = deployment["metadata"]["uid"].as_str();
    cluster
        .objects
        .list("pods", Some(ns))
        .0
        .into_iter()
        .filter(|p| owner_uid(p) == uid && !pod_terminated(p))
        .collect()
}

fn sync_deployment(cluster: &ClusterApi, deployment: &Value) {
    let ns = deployment["metadata"]["namespace"].as_str().unwrap_or("");
    let name = deployment["metadata"]["name"].as_str().unwrap_or("");
    let replicas = deployment["spec"]["replicas"].as_u64().unwrap_or(1) as usize;
    let template = &deployment["spec"]["template"];
    let hash = template_hash(template);
    let pods = owned_pods(cluster, deployment);
    let (current, old): (Vec<_>, Vec<_>) = pods
        .into_iter()
        .partition(|p| p["metadata"]["labels"]["pod-template-hash"] == hash.as_str());
    for pod in &old {
        let _ = cluster.objects.delete(&key(
            "pods",
            ns,
            pod["metadata"]["name"].as_str().unwrap_or(""),
        ));
    }
    if current.len() > replicas {
        // Pending pods go first, then the newest.
        let mut doomed = current.clone();
        doomed.sort_by_key(|p| {
            (
                p["spec"]["nodeName"].is_string(),
                std::cmp::Reverse(
                    p["metadata"]["creationTimestamp"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                ),
            )
        });
        for pod in doomed.iter().take(current.len() - replicas) {
            let _ = cluster.objects.delete(&key(
                "pods",
                ns,
                pod["metadata"]["name"].as_str().unwrap_or(""),
            ));
        }
        crate::events::record(
            cluster,
            deployment,
            EventType::Normal,
            "ScalingReplicaSet",
            &format!(
                "Scaled down replica set {name}-{hash} from {} to {replicas}",
                current.len()
            ),
            "deployment-controller",
        );
    }
    if current.len() < replicas {
        crate::events::record(
            cluster,
            deployment,
            EventType::Normal,
            "ScalingReplicaSet",
            &format!(
                "Scaled up replica set {name}-{hash} from {} to {replicas}",
                current.len()
            ),
            "deployment-controller",
        );
    }
    let pods = by_plural("pods");
    for _ in current.len()..replicas {
        let mut metadata = template["metadata"].clone();
        if !metadata.is_object() {
            metadata = json!({});
        }
        metadata["labels"]["pod-template-hash"] = json!(hash);
        let pod_name = format!("{name}-{hash}-{}", crate::cluster::random_suffix());
        metadata["name"] = json!(pod_name);
        metadata["namespace"] = json!(ns);
        metadata["ownerReferences"] = json!([{
            "apiVersion": "apps/v1", "kind": "Deployment", "name": name,
            "uid": deployment["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true,
        }]);
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": metadata,
            "spec": template["spec"],
            "status": {"phase": "Pending"},
        });
        let _ = cluster
            .objects
            .create(key("pods", ns, &pod_name), stamp_new(pod, pods, ns));
    }
}

fn update_deployment_status(cluster: &ClusterApi, deployment: &Value) {
    let ns = deployment["metadata"]["namespace"].as_str().unwrap_or("");
    let name = deployment["metadata"]["name"].as_str().unwrap_or("");
    let hash = template_hash(&deployment["spec"]["template"]);
    let pods = owned_pods(cluster, deployment);
    let ready = pods
        .iter()
        .filter(|p| p["status"]["phase"] == "Running")
        .count();
    let updated = pods
        .iter()
        .filter(|p| p["metadata"]["labels"]["pod-template-hash"] == hash.as_str())
        .count();
    let replicas = deployment["spec"]["replicas"].as_u64().unwrap_or(1) as usize;
    let available = ready >= replicas;
    let mut status = json!({
        "observedGeneration": deployment["metadata"]["generation"],
        "replicas": pods.len(),
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": ready,
        "unavailableReplicas": replicas.saturating_sub(ready),
        "conditions": [{
            "type": "Available",
            "status": if available { "True" } else { "False" },
            "reason": if available { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" },
            "message": if available { "Deployment has minimum availability." } else { "Deployment does not have minimum availability." },
        }],
    });
    if ready == 0 {
        status.as_object_mut().map(|s| s.remove("readyReplicas"));
    }
    if deployment["status"] != status {
        let mut next = deployment.clone();
        next["status"] = status;
        let _ = cluster.objects.update(&key("deployments", ns, name), next);
    }
}

fn schedule(cluster: &ClusterApi) {
    let (nodes, _) = cluster.objects.list("nodes", None);
    let pods = cluster.objects.list("pods", None).0;
    let mut used: BTreeMap<String, Resources> = BTreeMap::new();
    for pod in pods.iter().filter(|p| !pod_terminated(p)) {
        if let Some(node) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
            let r = requests_of(pod);
            let u = used.entry(node.to_string()).or_default();
            u.millicores += r.millicores;
            u.memory_bytes += r.memory_bytes;
            u.pods += r.pods;
        }
    }
    let mut pending: Vec<&Arc<Value>> = pods
        .iter()
        .filter(|p| p["spec"]["nodeName"].as_str().unwrap_or("").is_empty() && !pod_terminated(p))
        .collect();
    pending.sort_by_key(|p| {
        (
            p["metadata"]["creationTimestamp"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            p["metadata"]["name"].as_str().unwrap_or("").to_string(),
        )
    });
    // Pods' addresses come from the range the control plane was booted with, each once.
    let pod_cidr = cluster.network().map_or_else(
        || DEFAULT_POD_CIDR.parse().expect("a valid range"),
        |n| n.pod_cidr,
    );
    let mut used_ips: std::collections::HashSet<String> = pods
        .iter()
        .filter_map(|p| p["status"]["podIP"].as_str().map(str::to_string))
        .collect();
    let mut next_ip = pod_cidr.hosts().skip(1);
    for pod in pending {
        let wanted = requests_of(pod);
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        let mut best: Option<(f64, &Arc<Value>)> = None;
        for node in &nodes {
            let name = node["metadata"]["name"].as_str().unwrap_or("");
            let reason = if !is_ready(node) {
                Some("node(s) were not ready".to_string())
            } else if node["spec"]["unschedulable"] == true {
                Some("node(s) were unschedulable".to_string())
            } else if let Some(taint) = node["spec"]["taints"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|t| !tolerates(pod, t))
            {
                Some(format!(
                    "node(s) had untolerated taint {{{}: {}}}",
                    taint["key"].as_str().unwrap_or(""),
                    taint["value"].as_str().unwrap_or("")
                ))
            } else if !pod["spec"]["nodeSelector"]
                .as_object()
                .into_iter()
                .flatten()
                .all(|(k, v)| node["metadata"]["labels"][k] == *v)
            {
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
                } else {
                    let score = ((u.millicores + wanted.millicores) as f64
                        / capacity.millicores.max(1) as f64)
                        .max(
                            (u.memory_bytes + wanted.memory_bytes) as f64
                                / capacity.memory_bytes.max(1) as f64,
                        );
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
                let u = used.entry(node_name.clone()).or_default();
                u.millicores += wanted.millicores;
                u.memory_bytes += wanted.memory_bytes;
                u.pods += 1;
                let pod_ip = next_ip
                    .by_ref()
                    .map(|ip| ip.to_string())
                    .find(|ip| !used_ips.contains(ip))
                    .unwrap_or_default();
                used_ips.insert(pod_ip.clone());
                let host_ip = node["status"]["addresses"][0]["address"].clone();
                let started = now();
                next["spec"]["nodeName"] = json!(node_name);
                crate::events::record(
                    cluster,
                    pod,
                    EventType::Normal,
                    "Scheduled",
                    &format!("Successfully assigned {ns}/{pod_name} to {node_name}"),
                    "default-scheduler",
                );
                let containers: Vec<Value> = pod["spec"]["containers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| {
                        json!({
                            "name": c["name"], "image": c["image"], "imageID": "", "ready": true,
                            "started": true, "restartCount": 0,
                            "state": {"running": {"startedAt": started}},
                        })
                    })
                    .collect();
                let condition =
                    |t: &str| json!({"type": t, "status": "True", "lastTransitionTime": started});
                next["status"] = json!({
                    "phase": "Running",
                    "conditions": [condition("PodScheduled"), condition("Initialized"), condition("ContainersReady"), condition("Ready")],
                    "hostIP": host_ip,
                    "podIP": pod_ip,
                    "startTime": started,
                    "containerStatuses": containers,
                    "qosClass": if wanted.millicores + wanted.memory_bytes > 0 { "Burstable" } else { "BestEffort" },
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
        let _ = cluster.objects.update(&key("pods", ns, pod_name), next);
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
