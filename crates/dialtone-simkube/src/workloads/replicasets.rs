//! The replica set controller: keeps `spec.replicas` pods of the set's template, deleting
//! the least useful first (unscheduled, then not ready, then the newest), and reports how
//! many are ready and available.

use super::*;

pub(super) fn sync(cluster: &ClusterApi) {
    let sets = cluster.objects.list("replicasets", None).0;
    if sets.is_empty() {
        return;
    }
    let pods = cluster.objects.list("pods", None).0;
    for set in &sets {
        let owned = active(&owned_by(&pods, set));
        let wanted = set["spec"]["replicas"].as_i64().unwrap_or(1).max(0) as usize;
        let name = name_of(set);
        let hash = set["metadata"]["labels"]["pod-template-hash"]
            .as_str()
            .unwrap_or("");
        for _ in owned.len()..wanted {
            let pod_name = format!("{name}-{}", crate::cluster::random_suffix());
            let pod = pod_from_template(
                set,
                &set["spec"]["template"],
                &pod_name,
                &[("pod-template-hash", hash)],
            );
            create_pod(cluster, set, pod);
        }
        if owned.len() > wanted {
            let mut doomed = owned.clone();
            doomed.sort_by_key(|p| {
                (
                    !p["spec"]["nodeName"].as_str().unwrap_or("").is_empty(),
                    is_ready(p),
                    std::cmp::Reverse(
                        p["metadata"]["creationTimestamp"]
                            .as_str()
                            .unwrap_or("")
                            .to_string(),
                    ),
                )
            });
            for pod in &doomed[..owned.len() - wanted] {
                delete_pod(cluster, set, pod);
            }
        }
        let ready = owned.iter().filter(|p| is_ready(p)).count();
        let mut status = json!({
            "replicas": owned.len(),
            "fullyLabeledReplicas": owned.len(),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "observedGeneration": set["metadata"]["generation"],
        });
        if let Some(fields) = status.as_object_mut() {
            // Upstream leaves zero counts out, all but `replicas`.
            fields.retain(|k, v| k == "replicas" || v.as_i64() != Some(0));
        }
        write_status(cluster, "replicasets", set, status);
    }
}
