//! The stateful set controller: pods named by ordinal (`web-0`, `web-1`, …), each with its
//! stable hostname under the set's governing Service. Under `OrderedReady` (the default) a
//! pod starts only once every lower ordinal is Running and Ready, scaling down goes from the
//! highest ordinal one at a time, and a rolling update replaces pods from the highest
//! ordinal down to `partition`, one at a time; `Parallel` starts and stops them together.

use super::*;

const REVISION_LABEL: &str = "controller-revision-hash";

pub(super) fn sync(cluster: &ClusterApi) {
    let sets = cluster.objects.list("statefulsets", None).0;
    if sets.is_empty() {
        return;
    }
    let pods = cluster.objects.list("pods", None).0;
    for set in &sets {
        sync_one(cluster, set, &pods);
    }
}

fn ordinal_of(set_name: &str, pod: &Value) -> Option<usize> {
    name_of(pod)
        .strip_prefix(set_name)?
        .strip_prefix('-')?
        .parse()
        .ok()
}

fn sync_one(cluster: &ClusterApi, set: &Value, pods: &[Arc<Value>]) {
    let name = name_of(set);
    let spec = &set["spec"];
    let replicas = spec["replicas"].as_i64().unwrap_or(1).max(0) as usize;
    let ordered = spec["podManagementPolicy"] != "Parallel";
    let owned = active(&owned_by(pods, set));
    let in_use: Vec<&str> = owned
        .iter()
        .filter_map(|p| p["metadata"]["labels"][REVISION_LABEL].as_str())
        .collect();
    let revision = revisions::record(cluster, set, &template_hash(&spec["template"]), &in_use);
    let at = |i: usize| owned.iter().find(|p| ordinal_of(name, p) == Some(i));
    let healthy = |p: &Value| p["status"]["phase"] == "Running" && is_ready(p);

    // Create the missing ordinals, in order when ordered.
    for i in 0..replicas {
        match at(i) {
            Some(pod) if ordered && !healthy(pod) => break,
            Some(_) => {}
            None => {
                create(cluster, set, i, &revision);
                if ordered {
                    break;
                }
            }
        }
    }
    // Scale down from the highest ordinal.
    let mut extra: Vec<&&Arc<Value>> = owned
        .iter()
        .filter(|p| ordinal_of(name, p).is_none_or(|i| i >= replicas))
        .collect();
    extra.sort_by_key(|p| std::cmp::Reverse(ordinal_of(name, p)));
    let all_healthy = owned.iter().all(|p| healthy(p));
    for pod in extra {
        if ordered && !all_healthy {
            break;
        }
        delete_pod(cluster, set, pod);
        if ordered {
            break;
        }
    }
    // Roll: the highest outdated ordinal at or above the partition goes, once all are up.
    let rolling = spec["updateStrategy"]["type"] != "OnDelete";
    let partition = spec["updateStrategy"]["rollingUpdate"]["partition"]
        .as_u64()
        .unwrap_or(0) as usize;
    let complete = (0..replicas).all(|i| at(i).is_some_and(|p| healthy(p)));
    if rolling
        && complete
        && let Some(outdated) = (partition..replicas)
            .rev()
            .filter_map(at)
            .find(|p| p["metadata"]["labels"][REVISION_LABEL] != revision.as_str())
    {
        delete_pod(cluster, set, outdated);
    }

    let counted: Vec<&&Arc<Value>> = owned
        .iter()
        .filter(|p| ordinal_of(name, p).is_some_and(|i| i < replicas))
        .collect();
    let ready = counted.iter().filter(|p| healthy(p)).count();
    let updated = counted
        .iter()
        .filter(|p| p["metadata"]["labels"][REVISION_LABEL] == revision.as_str())
        .count();
    // The current revision becomes the update revision once every pod runs it.
    let current_revision = match set["status"]["currentRevision"].as_str() {
        Some(current) if !(updated == replicas && ready == replicas) => current.to_string(),
        _ => revision.clone(),
    };
    let current = counted
        .iter()
        .filter(|p| p["metadata"]["labels"][REVISION_LABEL] == current_revision.as_str())
        .count();
    let mut status = json!({
        "observedGeneration": set["metadata"]["generation"],
        "replicas": owned.len(),
        "readyReplicas": ready,
        "currentReplicas": current,
        "updatedReplicas": updated,
        "availableReplicas": ready,
        "currentRevision": current_revision,
        "updateRevision": revision,
        "collisionCount": 0,
    });
    if let Some(fields) = status.as_object_mut() {
        fields.retain(|k, v| {
            matches!(
                k.as_str(),
                "replicas" | "availableReplicas" | "collisionCount"
            ) || v.as_i64() != Some(0)
        });
    }
    write_status(cluster, "statefulsets", set, status);
}

fn create(cluster: &ClusterApi, set: &Value, ordinal: usize, revision: &str) {
    let name = format!("{}-{ordinal}", name_of(set));
    let index = ordinal.to_string();
    let (key, mut pod) = pod_from_template(
        set,
        &set["spec"]["template"],
        &name,
        &[
            (REVISION_LABEL, revision),
            ("statefulset.kubernetes.io/pod-name", &name),
            ("apps.kubernetes.io/pod-index", &index),
        ],
    );
    pod["spec"]["hostname"] = json!(name);
    if let Some(service) = set["spec"]["serviceName"]
        .as_str()
        .filter(|s| !s.is_empty())
    {
        pod["spec"]["subdomain"] = json!(service);
    }
    create_pod(cluster, set, (key, pod));
}
