//! The resource metrics API (`metrics.k8s.io/v1beta1`) as metrics-server serves it to
//! `kubectl top` and autoscalers, computed on every read. A sim container runs nothing, so
//! its usage is simulated: what its pod's `sim.dialtone.dev/cpu-usage` and
//! `sim.dialtone.dev/memory-usage` annotations say each container uses, or else half of
//! what the container requests, at least 1m of CPU and 8Mi of memory. A node uses what its
//! running pods use plus its system reserve (capacity less allocatable), which the kubelet
//! and system daemons it is kept for use.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::cluster::{ClusterApi, now};
use crate::quantity;

/// Each container's CPU usage (`250m`), for every container of the annotated pod.
pub const CPU_USAGE: &str = "sim.dialtone.dev/cpu-usage";
/// Each container's memory usage (`128Mi`).
pub const MEMORY_USAGE: &str = "sim.dialtone.dev/memory-usage";
/// The share of its requests a container uses unless annotated.
const SHARE_OF_REQUESTS: f64 = 0.5;
const MIN_MILLICORES: f64 = 1.0;
const MIN_MEMORY_BYTES: f64 = 8.0 * 1024.0 * 1024.0;
/// metrics-server's scrape window.
const WINDOW: &str = "20s";

/// (millicores, bytes).
type Usage = (f64, f64);

fn parse(value: &Value) -> Option<f64> {
    value.as_str().and_then(quantity::parse)
}

/// What a container uses: (millicores, bytes).
pub(crate) fn container_usage(pod: &Value, container: &Value) -> Usage {
    let annotations = &pod["metadata"]["annotations"];
    let requests = &container["resources"]["requests"];
    let cpu = parse(&annotations[CPU_USAGE])
        .map(|cores| cores * 1000.0)
        .unwrap_or_else(|| {
            (parse(&requests["cpu"]).unwrap_or(0.0) * 1000.0 * SHARE_OF_REQUESTS)
                .max(MIN_MILLICORES)
        });
    let memory = parse(&annotations[MEMORY_USAGE]).unwrap_or_else(|| {
        (parse(&requests["memory"]).unwrap_or(0.0) * SHARE_OF_REQUESTS).max(MIN_MEMORY_BYTES)
    });
    (cpu, memory)
}

fn usage_json((millicores, bytes): Usage) -> Value {
    json!({
        "cpu": format!("{}m", millicores.round() as u64),
        "memory": format!("{}Ki", (bytes / 1024.0).round() as u64),
    })
}

/// Pods metrics-server reports: those whose containers run.
fn running(pods: &[Arc<Value>]) -> impl Iterator<Item = &Arc<Value>> {
    pods.iter().filter(|p| p["status"]["phase"] == "Running")
}

/// The PodMetrics of the running pods in `namespace` (every namespace when `None`).
pub fn pods(cluster: &ClusterApi, namespace: Option<&str>) -> Vec<Arc<Value>> {
    let pods = cluster.objects.list("pods", namespace).0;
    let at = now();
    running(&pods)
        .map(|pod| {
            let containers: Vec<Value> = pod["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| json!({"name": c["name"], "usage": usage_json(container_usage(pod, c))}))
                .collect();
            Arc::new(json!({
                "kind": "PodMetrics", "apiVersion": "metrics.k8s.io/v1beta1",
                "metadata": {
                    "name": pod["metadata"]["name"], "namespace": pod["metadata"]["namespace"],
                    "labels": pod["metadata"]["labels"], "creationTimestamp": at,
                },
                "timestamp": at, "window": WINDOW, "containers": containers,
            }))
        })
        .collect()
}

/// The NodeMetrics of every node that reports (a Ready node).
pub fn nodes(cluster: &ClusterApi) -> Vec<Arc<Value>> {
    let pods = cluster.objects.list("pods", None).0;
    let at = now();
    cluster
        .objects
        .list("nodes", None)
        .0
        .iter()
        .filter(|node| crate::workloads::condition_holds(node, "Ready"))
        .map(|node| {
            let name = &node["metadata"]["name"];
            let status = &node["status"];
            let reserved = |resource: &str, scale: f64| {
                (parse(&status["capacity"][resource]).unwrap_or(0.0)
                    - parse(&status["allocatable"][resource]).unwrap_or(0.0))
                .max(0.0)
                    * scale
            };
            let mut usage = (reserved("cpu", 1000.0), reserved("memory", 1.0));
            for pod in running(&pods).filter(|p| p["spec"]["nodeName"] == *name) {
                for container in pod["spec"]["containers"].as_array().into_iter().flatten() {
                    let (cpu, memory) = container_usage(pod, container);
                    usage.0 += cpu;
                    usage.1 += memory;
                }
            }
            Arc::new(json!({
                "kind": "NodeMetrics", "apiVersion": "metrics.k8s.io/v1beta1",
                "metadata": {"name": name, "labels": node["metadata"]["labels"], "creationTimestamp": at},
                "timestamp": at, "window": WINDOW, "usage": usage_json(usage),
            }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_container_uses_its_annotation_or_half_its_requests_and_never_nothing() {
        let container =
            json!({"name": "c", "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}}});
        let plain = json!({"metadata": {}});
        assert_eq!(
            container_usage(&plain, &container),
            (250.0, 128.0 * 1024.0 * 1024.0)
        );
        let annotated =
            json!({"metadata": {"annotations": {CPU_USAGE: "1.5", MEMORY_USAGE: "1Gi"}}});
        assert_eq!(
            container_usage(&annotated, &container),
            (1500.0, 1024.0 * 1024.0 * 1024.0)
        );
        let idle = json!({"name": "c"});
        assert_eq!(
            container_usage(&plain, &idle),
            (MIN_MILLICORES, MIN_MEMORY_BYTES)
        );
    }
}
