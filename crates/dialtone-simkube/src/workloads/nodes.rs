//! The node controller: one Node per instance of the cluster, capacity from the instance
//! type, Ready following the instance's health.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::cluster::{ClusterApi, key, now, stamp_new};
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
                "kubeletVersion": crate::git_version(version),
                "kubeProxyVersion": crate::git_version(version),
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
