//! The horizontal pod autoscaler controller, as upstream's computes: for each resource metric,
//! the target's running pods' usage (the metrics API's simulated usage) over their requests,
//! and `ceil(replicas × utilization ÷ target)` replicas, nothing changed within a 10 %
//! tolerance; the highest of the metrics, within `minReplicas` and `maxReplicas`. A scale up
//! is made at once; a scale down only once the last scale is older than the scale-down
//! stabilization window (`behavior.scaleDown.stabilizationWindowSeconds`, 5 minutes by
//! default), which stands in for upstream's highest recommendation within the window.

use jiff::Timestamp;

use super::*;
use crate::quantity;
use crate::selectors::label_selector_matches;

const TOLERANCE: f64 = 0.1;
const SCALE_DOWN_WINDOW_SECONDS: i64 = 300;

pub(super) fn sync(cluster: &ClusterApi) {
    let autoscalers = cluster.objects.list("horizontalpodautoscalers", None).0;
    if autoscalers.is_empty() {
        return;
    }
    let pods = cluster.objects.list("pods", None).0;
    for autoscaler in &autoscalers {
        sync_one(cluster, autoscaler, &pods);
    }
}

/// What one metric says: its status entry, the replicas it asks for, and how upstream names
/// it in events.
struct Reading {
    current: Value,
    replicas: i64,
    described: String,
}

/// The replicas a resource metric asks for, or why it cannot say.
fn read(metric: &Value, replicas: i64, pods: &[&Arc<Value>]) -> Result<Reading, String> {
    let resource = &metric["resource"];
    let name = resource["name"].as_str().unwrap_or("");
    if metric["type"] != "Resource" || !matches!(name, "cpu" | "memory") {
        return Err(format!(
            "the sim serves only cpu and memory resource metrics, not {}",
            metric["type"]
        ));
    }
    if pods.is_empty() {
        return Err(format!("no running pods to read {name} from"));
    }
    let (mut usage, mut requests) = (0.0, 0.0);
    for pod in pods {
        for container in pod["spec"]["containers"].as_array().into_iter().flatten() {
            let request = container["resources"]["requests"][name]
                .as_str()
                .and_then(quantity::parse);
            let (cpu, memory) = crate::metrics::container_usage(pod, container);
            let (used, scale) = if name == "cpu" {
                (cpu, 1000.0)
            } else {
                (memory, 1.0)
            };
            match request {
                Some(request) => requests += request * scale,
                None if resource["target"]["type"] == "Utilization" => {
                    return Err(format!(
                        "missing request for {name} in container {} of Pod {}",
                        container["name"].as_str().unwrap_or(""),
                        name_of(pod)
                    ));
                }
                None => {}
            }
            usage += used;
        }
    }
    let count = pods.len() as f64;
    let target = &resource["target"];
    let (ratio, current) = match target["type"].as_str() {
        Some("Utilization") => {
            let goal = target["averageUtilization"].as_f64().unwrap_or(80.0);
            let utilization = (100.0 * usage / requests).round();
            (
                utilization / goal,
                json!({"averageUtilization": utilization as i64, "averageValue": quantity_of(name, usage / count)}),
            )
        }
        _ => {
            let goal = target["averageValue"]
                .as_str()
                .and_then(quantity::parse)
                .map(|v: f64| if name == "cpu" { v * 1000.0 } else { v })
                .unwrap_or(1.0_f64)
                .max(f64::MIN_POSITIVE);
            let average = usage / count;
            (
                average / goal,
                json!({"averageValue": quantity_of(name, average)}),
            )
        }
    };
    let replicas = if (ratio - 1.0).abs() <= TOLERANCE {
        replicas
    } else {
        (replicas as f64 * ratio).ceil() as i64
    };
    let described = if target["type"] == "Utilization" {
        format!("{name} resource utilization (percentage of request)")
    } else {
        format!("{name} resource")
    };
    Ok(Reading {
        current: json!({"type": "Resource", "resource": {"name": name, "current": current}}),
        replicas,
        described,
    })
}

fn quantity_of(resource: &str, amount: f64) -> String {
    if resource == "cpu" {
        format!("{}m", amount.round() as i64)
    } else {
        format!("{}Ki", (amount / 1024.0).round() as i64)
    }
}

fn sync_one(cluster: &ClusterApi, autoscaler: &Value, pods: &[Arc<Value>]) {
    let spec = &autoscaler["spec"];
    let target_ref = &spec["scaleTargetRef"];
    let ns = namespace_of(autoscaler);
    let previous = &autoscaler["status"]["conditions"];
    let plural = match target_ref["kind"].as_str() {
        Some("Deployment") => Some("deployments"),
        Some("StatefulSet") => Some("statefulsets"),
        Some("ReplicaSet") => Some("replicasets"),
        _ => None,
    };
    let target = plural.and_then(|plural| {
        cluster
            .objects
            .get(&key(plural, ns, target_ref["name"].as_str().unwrap_or("")))
            .map(|t| (plural, t))
    });
    let Some((plural, target)) = target else {
        let message = format!(
            "the HPA controller was unable to get the target's current scale: {} \"{}\" not found",
            target_ref["kind"].as_str().unwrap_or(""),
            target_ref["name"].as_str().unwrap_or("")
        );
        let status = json!({
            "currentReplicas": autoscaler["status"]["currentReplicas"].as_i64().unwrap_or(0),
            "desiredReplicas": autoscaler["status"]["desiredReplicas"].as_i64().unwrap_or(0),
            "conditions": [condition(previous, "AbleToScale", false, "FailedGetScale", &message)],
        });
        write_status(cluster, "horizontalpodautoscalers", autoscaler, status);
        return;
    };
    let current = target["spec"]["replicas"].as_i64().unwrap_or(1);
    let selected: Vec<&Arc<Value>> = pods
        .iter()
        .filter(|p| {
            namespace_of(p) == ns
                && p["status"]["phase"] == "Running"
                && p["metadata"]["deletionTimestamp"].is_null()
                && label_selector_matches(&target["spec"]["selector"], &p["metadata"]["labels"])
        })
        .collect();
    let readings: Vec<Result<Reading, String>> = spec["metrics"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| read(m, current, &selected))
        .collect();
    let min = spec["minReplicas"].as_i64().unwrap_or(1);
    let max = spec["maxReplicas"].as_i64().unwrap_or(min);
    let failure = readings.iter().find_map(|r| r.as_ref().err().cloned());
    let recommended = readings
        .iter()
        .filter_map(|r| r.as_ref().ok().map(|r| r.replicas))
        .max();
    let mut desired = recommended.unwrap_or(current).clamp(min, max);
    let now = Timestamp::now();
    let last_scale = timestamp(&autoscaler["status"]["lastScaleTime"]);
    let window = spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"]
        .as_i64()
        .unwrap_or(SCALE_DOWN_WINDOW_SECONDS);
    let stabilizing =
        desired < current && last_scale.is_some_and(|t| now.as_second() - t.as_second() < window);
    if stabilizing {
        desired = current;
    }
    let mut status = json!({
        "observedGeneration": autoscaler["metadata"]["generation"],
        "currentReplicas": current,
        "desiredReplicas": desired,
        "currentMetrics": readings.iter().filter_map(|r| r.as_ref().ok().map(|r| r.current.clone())).collect::<Vec<_>>(),
    });
    status["lastScaleTime"] = autoscaler["status"]["lastScaleTime"].clone();
    if desired != current && failure.is_none() {
        let mut next = (*target).clone();
        next["spec"]["replicas"] = json!(desired);
        if cluster
            .objects
            .update(&key(plural, ns, name_of(&target)), next)
            .is_ok()
        {
            let reason = if desired > current {
                let deciding = readings
                    .iter()
                    .filter_map(|r| r.as_ref().ok())
                    .max_by_key(|r| r.replicas)
                    .map_or(String::new(), |r| r.described.clone());
                format!("{deciding} above target")
            } else {
                "All metrics below target".to_string()
            };
            crate::events::record(
                cluster,
                autoscaler,
                EventType::Normal,
                "SuccessfulRescale",
                &format!("New size: {desired}; reason: {reason}"),
                "horizontal-pod-autoscaler",
            );
            status["lastScaleTime"] = json!(now.to_string());
        }
    }
    let limited = recommended.is_some_and(|r| r > max || r < min);
    let conditions = vec![
        if stabilizing {
            condition(
                previous,
                "AbleToScale",
                true,
                "ScaleDownStabilized",
                "recent recommendations were higher than current one, applying the highest recent recommendation",
            )
        } else {
            condition(
                previous,
                "AbleToScale",
                true,
                "ReadyForNewScale",
                "recommended size matches current size",
            )
        },
        match &failure {
            Some(message) => condition(
                previous,
                "ScalingActive",
                false,
                "FailedGetResourceMetric",
                message,
            ),
            None => condition(
                previous,
                "ScalingActive",
                true,
                "ValidMetricFound",
                "the HPA was able to successfully calculate a replica count from resource metrics",
            ),
        },
        if limited {
            let (reason, message) = if recommended.unwrap_or(0) > max {
                (
                    "TooManyReplicas",
                    "the desired replica count is more than the maximum replica count",
                )
            } else {
                (
                    "TooFewReplicas",
                    "the desired replica count is less than the minimum replica count",
                )
            };
            condition(previous, "ScalingLimited", true, reason, message)
        } else {
            condition(
                previous,
                "ScalingLimited",
                false,
                "DesiredWithinRange",
                "the desired count is within the acceptable range",
            )
        },
    ];
    status["conditions"] = json!(conditions);
    if status["lastScaleTime"].is_null() {
        status.as_object_mut().map(|s| s.remove("lastScaleTime"));
    }
    write_status(cluster, "horizontalpodautoscalers", autoscaler, status);
}

/// The CPU utilization target among `metrics`, which is all `autoscaling/v1` can say.
fn cpu_target(metrics: &Value) -> Option<&Value> {
    metrics.as_array()?.iter().find(|m| {
        m["type"] == "Resource"
            && m["resource"]["name"] == "cpu"
            && m["resource"]["target"]["type"] == "Utilization"
    })
}

/// A stored (`autoscaling/v2`) autoscaler as `autoscaling/v1` shows it.
pub fn to_v1(v2: &Value) -> Value {
    let spec = &v2["spec"];
    let status = &v2["status"];
    let mut v1 = json!({
        "apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
        "metadata": v2["metadata"],
        "spec": {
            "scaleTargetRef": spec["scaleTargetRef"],
            "minReplicas": spec["minReplicas"],
            "maxReplicas": spec["maxReplicas"],
        },
        "status": {
            "currentReplicas": status["currentReplicas"].as_i64().unwrap_or(0),
            "desiredReplicas": status["desiredReplicas"].as_i64().unwrap_or(0),
        },
    });
    if let Some(target) = cpu_target(&spec["metrics"]) {
        v1["spec"]["targetCPUUtilizationPercentage"] =
            target["resource"]["target"]["averageUtilization"].clone();
    }
    for field in ["observedGeneration", "lastScaleTime"] {
        if !status[field].is_null() {
            v1["status"][field] = status[field].clone();
        }
    }
    if let Some(current) = status["currentMetrics"].as_array().and_then(|m| {
        m.iter()
            .find(|m| m["resource"]["name"] == "cpu")
            .and_then(|m| m["resource"]["current"]["averageUtilization"].as_i64())
    }) {
        v1["status"]["currentCPUUtilizationPercentage"] = json!(current);
    }
    v1
}

/// An `autoscaling/v1` autoscaler as it is stored (`autoscaling/v2`). Over `current`, what v1
/// cannot say (other metrics, `behavior`, the status) is kept: a v1 client's update changes
/// only what it can see.
pub fn to_v2(v1: &Value, current: Option<&Value>) -> Value {
    let mut v2 = current.cloned().unwrap_or_else(|| json!({"spec": {}}));
    v2["apiVersion"] = json!("autoscaling/v2");
    v2["kind"] = json!("HorizontalPodAutoscaler");
    v2["metadata"] = v1["metadata"].clone();
    let spec = &v1["spec"];
    for field in ["scaleTargetRef", "minReplicas", "maxReplicas"] {
        v2["spec"][field] = spec[field].clone();
    }
    let mut metrics: Vec<Value> = v2["spec"]["metrics"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| cpu_target(&json!([m])).is_none())
        .collect();
    if let Some(percent) = spec["targetCPUUtilizationPercentage"].as_i64() {
        metrics.insert(
            0,
            json!({"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": percent}}}),
        );
    }
    v2["spec"]["metrics"] = json!(metrics);
    if current.is_none() {
        v2.as_object_mut().map(|o| o.remove("status"));
    }
    v2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_shows_the_cpu_target_and_writes_back_without_losing_the_rest() {
        let stored = json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 1, "maxReplicas": 5,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "1Gi"}}},
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 40}}},
                ],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}},
            },
            "status": {"currentReplicas": 2, "desiredReplicas": 2, "currentMetrics": [
                {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 35}}},
            ]},
        });
        let v1 = to_v1(&stored);
        assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 40);
        assert_eq!(v1["status"]["currentCPUUtilizationPercentage"], 35);
        let mut changed = v1.clone();
        changed["spec"]["targetCPUUtilizationPercentage"] = json!(60);
        let back = to_v2(&changed, Some(&stored));
        assert_eq!(back["spec"]["behavior"], stored["spec"]["behavior"]);
        assert_eq!(back["status"], stored["status"]);
        let metrics = back["spec"]["metrics"].as_array().unwrap();
        assert_eq!(metrics.len(), 2);
        assert_eq!(
            cpu_target(&back["spec"]["metrics"]).unwrap()["resource"]["target"]["averageUtilization"],
            60
        );
        assert!(metrics.iter().any(|m| m["resource"]["name"] == "memory"));
    }
}
