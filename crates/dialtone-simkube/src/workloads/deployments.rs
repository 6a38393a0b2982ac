//! The deployment controller, as upstream's: a deployment owns one replica set per pod
//! template it has had, named by the template's hash and numbered by the
//! `deployment.kubernetes.io/revision` annotation that `kubectl rollout history|undo` read.
//! A rolling update scales the new set up by at most `maxSurge` above the wanted replicas
//! and the old ones down while at most `maxUnavailable` are missing; `Recreate` empties the
//! old sets first. Old sets beyond `revisionHistoryLimit` are deleted once empty.

use std::sync::Arc;

use jiff::Timestamp;
use serde_json::{Value, json};

use super::*;

const REVISION: &str = "deployment.kubernetes.io/revision";
const HASH_LABEL: &str = "pod-template-hash";

pub(super) fn sync(cluster: &ClusterApi) {
    let deployments = cluster.objects.list("deployments", None).0;
    if deployments.is_empty() {
        return;
    }
    let sets = cluster.objects.list("replicasets", None).0;
    for deployment in &deployments {
        sync_one(cluster, deployment, &sets);
    }
}

fn revision(object: &Value) -> i64 {
    object["metadata"]["annotations"][REVISION]
        .as_str()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn wanted(object: &Value) -> i64 {
    object["spec"]["replicas"].as_i64().unwrap_or(1)
}

fn available(set: &Value) -> i64 {
    set["status"]["availableReplicas"].as_i64().unwrap_or(0)
}

fn sync_one(cluster: &ClusterApi, deployment: &Value, sets: &[Arc<Value>]) {
    let owned: Vec<&Arc<Value>> = owned_by(sets, deployment);
    let hash = template_hash(&deployment["spec"]["template"]);
    let newest = owned.iter().map(|s| revision(s)).max().unwrap_or(0);
    let current = owned
        .iter()
        .find(|s| s["metadata"]["labels"][HASH_LABEL] == hash.as_str())
        .map(|s| (***s).clone());
    let paused = deployment["spec"]["paused"] == true;
    let new_set = match current {
        // Rolled back to an older template: its set becomes the newest revision again.
        Some(mut set) if revision(&set) < newest && !paused => {
            set["metadata"]["annotations"][REVISION] = json!((newest + 1).to_string());
            Some(update(cluster, set))
        }
        Some(set) => Some(set),
        None if paused => None,
        None => Some(create_set(cluster, deployment, &hash, newest + 1)),
    };
    let old: Vec<Value> = owned
        .iter()
        .filter(|s| s["metadata"]["labels"][HASH_LABEL] != hash.as_str())
        .map(|s| (***s).clone())
        .collect();
    let mut deployment = deployment.clone();
    if let Some(new_set) = &new_set
        && !paused
    {
        let revision = new_set["metadata"]["annotations"][REVISION].clone();
        if deployment["metadata"]["annotations"][REVISION] != revision {
            deployment["metadata"]["annotations"][REVISION] = revision;
            deployment = update(cluster, deployment);
        }
        let deployment = &deployment;
        let mut new_set = new_set.clone();
        let mut old = old.clone();
        if deployment["spec"]["strategy"]["type"] == "Recreate" {
            recreate(cluster, deployment, &mut new_set, &mut old);
        } else {
            roll(cluster, deployment, &mut new_set, &mut old);
        }
        prune_history(cluster, deployment, &old);
    }
    write_status(
        cluster,
        "deployments",
        &deployment,
        status(&deployment, new_set.as_ref(), &old),
    );
}

/// Stores `object`, a deployment or replica set; what is stored now (the object as it was
/// given when someone else changed it first, which the next pass sees).
fn update(cluster: &ClusterApi, object: Value) -> Value {
    let plural = if object["kind"] == "Deployment" {
        "deployments"
    } else {
        "replicasets"
    };
    match cluster.objects.update(
        &key(plural, namespace_of(&object), name_of(&object)),
        object.clone(),
    ) {
        Ok(stored) => (*stored).clone(),
        Err(_) => object,
    }
}

fn create_set(cluster: &ClusterApi, deployment: &Value, hash: &str, revision: i64) -> Value {
    let ns = namespace_of(deployment);
    let name = format!("{}-{hash}", name_of(deployment));
    let mut template = deployment["spec"]["template"].clone();
    template["metadata"]["labels"][HASH_LABEL] = json!(hash);
    let mut selector = deployment["spec"]["selector"].clone();
    selector["matchLabels"][HASH_LABEL] = json!(hash);
    // The deployment's own annotations travel with the set (kubectl's change-cause among
    // them), as upstream copies them.
    let mut annotations = deployment["metadata"]["annotations"].clone();
    if !annotations.is_object() {
        annotations = json!({});
    }
    annotations
        .as_object_mut()
        .map(|a| a.remove("kubectl.kubernetes.io/last-applied-configuration"));
    annotations[REVISION] = json!(revision.to_string());
    annotations["deployment.kubernetes.io/desired-replicas"] =
        json!(wanted(deployment).to_string());
    let set = json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {
            "name": name, "namespace": ns,
            "labels": template["metadata"]["labels"],
            "annotations": annotations,
            "ownerReferences": controller_ref(deployment),
        },
        "spec": {"replicas": 0, "selector": selector, "template": template},
    });
    let set = stamp_new(set, by_plural("replicasets"), ns);
    match cluster
        .objects
        .create(key("replicasets", ns, &name), set.clone())
    {
        Ok(stored) => (*stored).clone(),
        Err(_) => set,
    }
}

/// Sets the replica set's replicas, with upstream's event on the deployment.
fn scale(cluster: &ClusterApi, deployment: &Value, set: &mut Value, replicas: i64) {
    let from = wanted(set);
    if from == replicas {
        return;
    }
    let mut next = set.clone();
    next["spec"]["replicas"] = json!(replicas);
    next["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] =
        json!(wanted(deployment).to_string());
    *set = update(cluster, next);
    let direction = if replicas > from { "up" } else { "down" };
    crate::events::record(
        cluster,
        deployment,
        EventType::Normal,
        "ScalingReplicaSet",
        &format!(
            "Scaled {direction} replica set {} from {from} to {replicas}",
            name_of(set)
        ),
        "deployment-controller",
    );
}

fn recreate(cluster: &ClusterApi, deployment: &Value, new_set: &mut Value, old: &mut [Value]) {
    for set in old.iter_mut() {
        scale(cluster, deployment, set, 0);
    }
    let old_running: i64 = old
        .iter()
        .map(|s| s["status"]["replicas"].as_i64().unwrap_or(0))
        .sum();
    if old_running == 0 {
        scale(cluster, deployment, new_set, wanted(deployment));
    }
}

/// Upstream's rolling update: the new set grows within the surge, then old sets shrink
/// while enough pods stay available, unhealthy old pods first.
fn roll(cluster: &ClusterApi, deployment: &Value, new_set: &mut Value, old: &mut [Value]) {
    let replicas = wanted(deployment);
    let strategy = &deployment["spec"]["strategy"]["rollingUpdate"];
    let surge = scaled(&strategy["maxSurge"], replicas, true);
    let mut unavailable = scaled(&strategy["maxUnavailable"], replicas, false);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    let old_total: i64 = old.iter().map(wanted).sum();
    let new_wanted = wanted(new_set);
    if new_wanted > replicas {
        scale(cluster, deployment, new_set, replicas);
    } else if new_wanted < replicas {
        let room = (replicas + surge - old_total - new_wanted).max(0);
        let target = (new_wanted + room).min(replicas);
        scale(cluster, deployment, new_set, target);
    }
    if old_total == 0 {
        return;
    }
    let new_wanted = wanted(new_set).min(replicas);
    let min_available = replicas - unavailable;
    let new_unavailable = (new_wanted - available(new_set)).max(0);
    let mut budget = old_total + new_wanted - min_available - new_unavailable;
    old.sort_by_key(revision);
    // Old pods that are not available go first: removing them costs no availability.
    for set in old.iter_mut() {
        let unhealthy = (wanted(set) - available(set)).max(0);
        let cut = unhealthy.min(budget.max(0));
        if cut > 0 {
            let to = wanted(set) - cut;
            scale(cluster, deployment, set, to);
            budget -= cut;
        }
    }
    let all_available: i64 = old.iter().map(available).sum::<i64>() + available(new_set);
    let mut removable = (all_available - min_available).max(0);
    for set in old.iter_mut() {
        if removable == 0 {
            break;
        }
        let cut = wanted(set).min(removable);
        if cut > 0 {
            scale(cluster, deployment, set, wanted(set) - cut);
            removable -= cut;
        }
    }
}

/// Deletes the oldest empty sets beyond `revisionHistoryLimit`.
fn prune_history(cluster: &ClusterApi, deployment: &Value, old: &[Value]) {
    let limit = deployment["spec"]["revisionHistoryLimit"]
        .as_i64()
        .unwrap_or(10)
        .max(0) as usize;
    let mut empty: Vec<&Value> = old
        .iter()
        .filter(|s| wanted(s) == 0 && s["status"]["replicas"].as_i64().unwrap_or(0) == 0)
        .collect();
    if empty.len() <= limit {
        return;
    }
    empty.sort_by_key(|s| revision(s));
    for set in &empty[..empty.len() - limit] {
        let _ = cluster
            .objects
            .delete(&key("replicasets", namespace_of(set), name_of(set)));
    }
}

/// The deployment's status, summed from its replica sets' as upstream sums it.
fn status(deployment: &Value, new_set: Option<&Value>, old: &[Value]) -> Value {
    let replicas = wanted(deployment);
    let all: Vec<&Value> = new_set.into_iter().chain(old).collect();
    let sum = |field: &str| -> i64 {
        all.iter()
            .map(|s| s["status"][field].as_i64().unwrap_or(0))
            .sum()
    };
    let (total, ready, available_now) = (
        sum("replicas"),
        sum("readyReplicas"),
        sum("availableReplicas"),
    );
    let updated = new_set.map_or(0, |s| s["status"]["replicas"].as_i64().unwrap_or(0));
    let spec_total: i64 = all.iter().map(|s| wanted(s)).sum();
    let strategy = &deployment["spec"]["strategy"]["rollingUpdate"];
    let min_available = if deployment["spec"]["strategy"]["type"] == "Recreate" {
        replicas
    } else {
        replicas - scaled(&strategy["maxUnavailable"], replicas, false)
    };
    let previous = &deployment["status"]["conditions"];
    let is_available = available_now >= min_available;
    let available_condition = if is_available {
        condition(
            previous,
            "Available",
            true,
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
        )
    } else {
        condition(
            previous,
            "Available",
            false,
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
        )
    };
    let complete = updated == replicas && available_now >= replicas && total == replicas;
    let set_name = new_set.map_or("", name_of);
    let progressing = progressing(
        deployment,
        complete,
        set_name,
        (total, updated, ready, available_now),
    );
    let mut status = json!({
        "observedGeneration": deployment["metadata"]["generation"],
        "replicas": total,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": available_now,
        "unavailableReplicas": (spec_total.max(replicas) - available_now).max(0),
        "conditions": [available_condition, progressing],
    });
    // Upstream leaves zero counts out.
    if let Some(fields) = status.as_object_mut() {
        fields.retain(|_, v| v.as_i64() != Some(0));
    }
    status
}

/// `Progressing`: the rollout finished, is moving, or has not moved for
/// `progressDeadlineSeconds` (which `kubectl rollout status` reports as a failure).
fn progressing(
    deployment: &Value,
    complete: bool,
    set: &str,
    counts: (i64, i64, i64, i64),
) -> Value {
    let previous = deployment["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Progressing")
        .cloned();
    let counts_now = json!([counts.0, counts.1, counts.2, counts.3]);
    let counts_before = json!([
        deployment["status"]["replicas"].as_i64().unwrap_or(0),
        deployment["status"]["updatedReplicas"]
            .as_i64()
            .unwrap_or(0),
        deployment["status"]["readyReplicas"].as_i64().unwrap_or(0),
        deployment["status"]["availableReplicas"]
            .as_i64()
            .unwrap_or(0),
    ]);
    let at = now();
    let (status, reason, message) = if complete {
        (
            "True",
            "NewReplicaSetAvailable",
            format!("ReplicaSet \"{set}\" has successfully progressed."),
        )
    } else {
        let last_progress = previous
            .as_ref()
            .filter(|_| counts_now == counts_before)
            .and_then(|c| timestamp(&c["lastUpdateTime"]));
        let deadline = deployment["spec"]["progressDeadlineSeconds"]
            .as_i64()
            .unwrap_or(600);
        let stalled =
            last_progress.is_some_and(|t| Timestamp::now().as_second() - t.as_second() > deadline);
        let was_stalled = previous
            .as_ref()
            .is_some_and(|c| c["reason"] == "ProgressDeadlineExceeded");
        if stalled || (was_stalled && counts_now == counts_before) {
            (
                "False",
                "ProgressDeadlineExceeded",
                format!("ReplicaSet \"{set}\" has timed out progressing."),
            )
        } else {
            (
                "True",
                "ReplicaSetUpdated",
                format!("ReplicaSet \"{set}\" is progressing."),
            )
        }
    };
    match previous {
        // Unchanged and no progress to note: the condition stays as it was.
        Some(p)
            if p["status"] == status && p["reason"] == reason && counts_now == counts_before =>
        {
            p
        }
        Some(p) if p["status"] == status => json!({
            "type": "Progressing", "status": status, "reason": reason, "message": message,
            "lastTransitionTime": p["lastTransitionTime"], "lastUpdateTime": at,
        }),
        _ => json!({
            "type": "Progressing", "status": status, "reason": reason, "message": message,
            "lastTransitionTime": at, "lastUpdateTime": at,
        }),
    }
}
