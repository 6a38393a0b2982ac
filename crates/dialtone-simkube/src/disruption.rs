//! Voluntary disruptions as upstream handles them: the disruption controller keeps each
//! PodDisruptionBudget's status (expected, healthy and desired pods, disruptions allowed),
//! and the `pods/eviction` subresource deletes a pod only while its budget allows it,
//! spending one allowed disruption per eviction, or answers 429 as upstream does.

use serde_json::{Value, json};

use crate::cluster::{ClusterApi, key};
use crate::selectors::label_selector_matches;
use crate::status::{KubeError, KubeResult};
use axum::http::StatusCode;

fn is_healthy(pod: &Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_null()
        && pod["status"]["phase"] == "Running"
        && crate::workloads::condition_holds(pod, "Ready")
}

fn is_terminal(pod: &Value) -> bool {
    matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    )
}

/// An int-or-percent of `total`, rounded up as upstream rounds minAvailable and
/// maxUnavailable.
fn scaled(value: &Value, total: u64) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => {
            let percent: u64 = s.strip_suffix('%')?.parse().ok()?;
            Some((percent * total).div_ceil(100))
        }
        _ => None,
    }
}

/// `expected` is the pods the budget's workloads want, as upstream takes it from their
/// controllers' scale: a pod just evicted still counts until it is replaced.
fn budget_status(budget: &Value, pods: &[&Value], expected: u64) -> Value {
    let healthy = pods.iter().filter(|p| is_healthy(p)).count() as u64;
    let spec = &budget["spec"];
    let desired = if !spec["minAvailable"].is_null() {
        scaled(&spec["minAvailable"], expected).unwrap_or(expected)
    } else if !spec["maxUnavailable"].is_null() {
        expected.saturating_sub(scaled(&spec["maxUnavailable"], expected).unwrap_or(0))
    } else {
        // Neither set: upstream treats it as maxUnavailable 0.
        expected
    };
    let allowed = healthy.saturating_sub(desired);
    let condition = if allowed > 0 { "True" } else { "False" };
    let previous = &budget["status"]["conditions"][0];
    let since = match previous["lastTransitionTime"].as_str() {
        Some(time) if previous["status"] == condition => json!(time),
        _ => json!(crate::cluster::now()),
    };
    json!({
        "observedGeneration": budget["metadata"]["generation"],
        "expectedPods": expected,
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "disruptionsAllowed": allowed,
        "conditions": [{
            "type": "DisruptionAllowed",
            "status": condition,
            "reason": if allowed > 0 { "SufficientPods" } else { "InsufficientPods" },
            "message": "",
            "lastTransitionTime": since,
        }],
    })
}

fn covers(budget: &Value, pod: &Value) -> bool {
    budget["metadata"]["namespace"] == pod["metadata"]["namespace"]
        && budget["spec"]["selector"].is_object()
        && label_selector_matches(&budget["spec"]["selector"], &pod["metadata"]["labels"])
}

/// The disruption controller's pass: every budget's status from the pods it covers.
pub fn sync_budgets(cluster: &ClusterApi) {
    let budgets = cluster.objects.list("poddisruptionbudgets", None).0;
    if budgets.is_empty() {
        return;
    }
    let pods = cluster.objects.list("pods", None).0;
    // What the pods' controllers want, by the controller's uid.
    let scalable: Vec<std::sync::Arc<Value>> = ["replicasets", "statefulsets"]
        .iter()
        .flat_map(|plural| cluster.objects.list(plural, None).0)
        .collect();
    for budget in budgets {
        let covered: Vec<&Value> = pods
            .iter()
            .map(|p| &**p)
            .filter(|p| !is_terminal(p) && covers(&budget, p))
            .collect();
        let mut expected = 0;
        let mut owners: Vec<&str> = Vec::new();
        for pod in &covered {
            match crate::workloads::owner_uid(pod) {
                Some(uid) if owners.contains(&uid) => {}
                Some(uid) => {
                    owners.push(uid);
                    expected += scalable
                        .iter()
                        .find(|d| d["metadata"]["uid"] == uid)
                        .map_or(1, |d| d["spec"]["replicas"].as_u64().unwrap_or(1));
                }
                None => expected += 1,
            }
        }
        let status = budget_status(&budget, &covered, expected.max(covered.len() as u64));
        // The evicted pod is deleted by its eviction, so counting again from the pods
        // gives back no disruption that was spent.
        if budget["status"] == status {
            continue;
        }
        let mut next = (*budget).clone();
        next["status"] = status;
        let ns = budget["metadata"]["namespace"].as_str().unwrap_or("");
        let name = budget["metadata"]["name"].as_str().unwrap_or("");
        let _ = cluster
            .objects
            .update(&key("poddisruptionbudgets", ns, name), next);
    }
}

fn too_many_requests(message: String, cause: Option<String>) -> KubeError {
    let mut error = KubeError::new(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", message);
    if let Some(cause) = cause {
        error.details = Some(json!({"causes": [{"reason": "DisruptionBudget", "message": cause}]}));
    }
    error
}

/// `POST pods/{name}/eviction`: deletes the pod if no budget forbids it.
pub fn evict(cluster: &ClusterApi, namespace: &str, name: &str, body: &Value) -> KubeResult<Value> {
    // The kind may be left out, as the subresource says what it is.
    if let Some(kind) = body["kind"].as_str().filter(|k| *k != "Eviction") {
        return Err(KubeError::bad_request(format!(
            "the body of an eviction must be a policy/v1 Eviction, not a {kind}"
        )));
    }
    if body["metadata"]["name"].as_str().is_some_and(|n| n != name) {
        return Err(KubeError::bad_request(
            "name in URL does not match name in Eviction object",
        ));
    }
    let pod_key = key("pods", namespace, name);
    let pod = cluster
        .objects
        .get(&pod_key)
        .ok_or_else(|| KubeError::not_found("", "pods", name))?;
    // Pods that do not run need no budget to go, as upstream decides.
    let running =
        pod["status"]["phase"] == "Running" && pod["metadata"]["deletionTimestamp"].is_null();
    if running {
        let budgets: Vec<_> = cluster
            .objects
            .list("poddisruptionbudgets", Some(namespace))
            .0
            .into_iter()
            .filter(|b| covers(b, &pod))
            .collect();
        if budgets.len() > 1 {
            return Err(KubeError::internal(
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            ));
        }
        if let Some(budget) = budgets.first() {
            let status = &budget["status"];
            if status["observedGeneration"] != budget["metadata"]["generation"] {
                return Err(too_many_requests(
                    "Cannot evict pod as it would violate the pod's disruption budget.".into(),
                    Some(format!(
                        "The disruption budget {} is still being processed by the server.",
                        budget["metadata"]["name"].as_str().unwrap_or("")
                    )),
                ));
            }
            let allowed = status["disruptionsAllowed"].as_u64().unwrap_or(0);
            if allowed == 0 {
                return Err(too_many_requests(
                    "Cannot evict pod as it would violate the pod's disruption budget.".into(),
                    Some(format!(
                        "The disruption budget {} needs {} healthy pods and has {} currently",
                        budget["metadata"]["name"].as_str().unwrap_or(""),
                        status["desiredHealthy"].as_u64().unwrap_or(0),
                        status["currentHealthy"].as_u64().unwrap_or(0),
                    )),
                ));
            }
            // Spend the disruption first: a conflict means another eviction raced this one.
            let mut spent = (**budget).clone();
            spent["status"]["disruptionsAllowed"] = json!(allowed - 1);
            let budget_name = budget["metadata"]["name"].as_str().unwrap_or("");
            cluster
                .objects
                .update(&key("poddisruptionbudgets", namespace, budget_name), spent)
                .map_err(|_| {
                    too_many_requests(
                        "Cannot evict pod as it would violate the pod's disruption budget.".into(),
                        None,
                    )
                })?;
        }
    }
    cluster
        .objects
        .delete(&pod_key)
        .map_err(|_| KubeError::not_found("", "pods", name))?;
    Ok(
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods(healthy: usize, pending: usize) -> Vec<Value> {
        let ready =
            json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]});
        (0..healthy)
            .map(|_| json!({"status": ready}))
            .chain((0..pending).map(|_| json!({"status": {"phase": "Pending"}})))
            .collect()
    }

    #[test]
    fn budgets_count_as_upstream() {
        let all = pods(4, 1);
        let refs: Vec<&Value> = all.iter().collect();
        for (spec, desired, allowed) in [
            (json!({"minAvailable": 3}), 3, 1),
            (json!({"minAvailable": "50%"}), 3, 1),
            (json!({"maxUnavailable": 1}), 4, 0),
            (json!({"maxUnavailable": "40%"}), 3, 1),
            (json!({}), 5, 0),
        ] {
            let status = budget_status(
                &json!({"spec": spec, "metadata": {"generation": 1}}),
                &refs,
                5,
            );
            assert_eq!(status["expectedPods"], 5);
            assert_eq!(status["currentHealthy"], 4);
            assert_eq!(status["desiredHealthy"], desired, "{spec}");
            assert_eq!(status["disruptionsAllowed"], allowed, "{spec}");
        }
    }
}
