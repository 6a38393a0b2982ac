//! The kubelet of every sim node. A sim node pulls no images and runs no processes: the
//! containers of a pod bound to it start at once, the pod gets an address from the cluster's
//! pod range, and a container runs until the simulated run time its pod names, then exits
//! with the code its pod names. What happens next follows the pod's `restartPolicy` as
//! upstream's kubelet has it: the pod Succeeds or Fails, or the container restarts after a
//! back-off (10 s, doubling, at most 5 minutes), counted in `restartCount`.

use std::collections::HashSet;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use super::{is_terminated, pod_key};
use crate::cluster::{ClusterApi, now, timestamp};
use crate::events::EventType;

/// How long each container of the pod runs before it exits (`90s`, `2m`); a pod that names
/// none runs until deleted, unless it is meant to finish (`restartPolicy` `Never` or
/// `OnFailure`, as a Job's pods are): those run [`FINITE_RUN`].
pub const RUN_FOR: &str = "sim.dialtone.dev/run-for";
/// The code the pod's containers exit with; `0` unless named.
pub const EXIT_CODE: &str = "sim.dialtone.dev/exit-code";
/// How long a pod that is meant to finish runs when it names no run time.
const FINITE_RUN: SignedDuration = SignedDuration::from_secs(5);
const FIRST_BACK_OFF: i64 = 10;
const MAX_BACK_OFF: i64 = 300;

/// The range pods' addresses come from in a cluster whose control plane's user data is not
/// known: flannel's default, which kubeadm guides use.
const DEFAULT_POD_CIDR: &str = "10.244.0.0/16";

/// One pass over every pod bound to a node.
pub(super) fn run(cluster: &ClusterApi) {
    let pods = cluster.objects.list("pods", None).0;
    let mut addresses: Option<Addresses> = None;
    let now = Timestamp::now();
    for pod in &pods {
        if pod["spec"]["nodeName"].as_str().unwrap_or("").is_empty()
            || is_terminated(pod)
            || !pod["metadata"]["deletionTimestamp"].is_null()
        {
            continue;
        }
        let next = if pod["status"]["startTime"].is_null() {
            let addresses = addresses.get_or_insert_with(|| Addresses::new(cluster, &pods));
            Some(start(cluster, pod, addresses))
        } else {
            run_for(pod).and_then(|run_for| advance(cluster, pod, run_for, now))
        };
        if let Some(next) = next {
            let _ = cluster.objects.update(&pod_key(pod), next);
        }
    }
}

/// The pod range's free addresses, each given once.
struct Addresses {
    used: HashSet<String>,
    next: Box<dyn Iterator<Item = std::net::Ipv4Addr>>,
}

impl Addresses {
    fn new(cluster: &ClusterApi, pods: &[Arc<Value>]) -> Self {
        let range: ipnet::Ipv4Net = cluster.network().map_or_else(
            || DEFAULT_POD_CIDR.parse().expect("a valid range"),
            |n| n.pod_cidr,
        );
        Addresses {
            used: pods
                .iter()
                .filter_map(|p| p["status"]["podIP"].as_str().map(str::to_string))
                .collect(),
            next: Box::new(range.hosts().skip(1)),
        }
    }

    fn take(&mut self) -> String {
        let used = &self.used;
        let ip = self
            .next
            .by_ref()
            .map(|ip| ip.to_string())
            .find(|ip| !used.contains(ip))
            .unwrap_or_default();
        self.used.insert(ip.clone());
        ip
    }
}

fn annotation<'a>(pod: &'a Value, name: &str) -> Option<&'a str> {
    pod["metadata"]["annotations"][name].as_str()
}

fn restart_policy(pod: &Value) -> &str {
    pod["spec"]["restartPolicy"].as_str().unwrap_or("Always")
}

/// How long the pod's containers run, if they ever end by themselves.
fn run_for(pod: &Value) -> Option<SignedDuration> {
    match annotation(pod, RUN_FOR) {
        Some(text) => parse_duration(text),
        None if restart_policy(pod) != "Always" => Some(FINITE_RUN),
        None => None,
    }
}

/// `90s`, `2m`, `1h30m`, as Go's `time.ParseDuration` reads them; `None` for anything else.
pub fn parse_duration(text: &str) -> Option<SignedDuration> {
    let mut total = 0i64;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let number: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let millis = match &rest[..unit] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return None,
        };
        total = total.checked_add(number.checked_mul(millis)?)?;
        rest = &rest[unit..];
    }
    Some(SignedDuration::from_millis(total))
}

fn exit_code(pod: &Value) -> i64 {
    annotation(pod, EXIT_CODE)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn containers(pod: &Value) -> impl Iterator<Item = &Value> {
    pod["spec"]["containers"].as_array().into_iter().flatten()
}

fn running(container: &Value, started: &str, restarts: i64, last: Option<&Value>) -> Value {
    let mut status = json!({
        "name": container["name"], "image": container["image"], "imageID": "",
        "containerID": format!("containerd://{}", uuid::Uuid::new_v4().simple()),
        "ready": true, "started": true, "restartCount": restarts,
        "state": {"running": {"startedAt": started}},
    });
    if let Some(last) = last {
        status["lastState"] = last.clone();
    }
    status
}

fn conditions(pod: &Value, ready: bool, at: &str, reason: Option<&str>) -> Value {
    let previous = |t: &str| {
        pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == t)
            .cloned()
    };
    let condition = |t: &str, holds: bool| {
        let status = if holds { "True" } else { "False" };
        match previous(t).filter(|c| c["status"] == status) {
            Some(same) => same,
            None => {
                let mut c = json!({"type": t, "status": status, "lastTransitionTime": at});
                if let Some(reason) = reason.filter(|_| !holds) {
                    c["reason"] = json!(reason);
                }
                c
            }
        }
    };
    json!([
        condition("PodScheduled", true),
        condition("Initialized", true),
        condition("ContainersReady", ready),
        condition("Ready", ready),
    ])
}

fn start(cluster: &ClusterApi, pod: &Arc<Value>, addresses: &mut Addresses) -> Value {
    let node_name = pod["spec"]["nodeName"].as_str().unwrap_or("");
    let node = cluster
        .objects
        .get(&crate::cluster::key("nodes", "", node_name));
    let host_ip = node.map_or(Value::Null, |n| {
        n["status"]["addresses"][0]["address"].clone()
    });
    let started = now();
    let pod_ip = addresses.take();
    for container in containers(pod) {
        crate::events::record(
            cluster,
            pod,
            EventType::Normal,
            "Started",
            &format!(
                "Started container {}",
                container["name"].as_str().unwrap_or("")
            ),
            "kubelet",
        );
    }
    let mut next = (**pod).clone();
    next["status"] = json!({
        "phase": "Running",
        "conditions": conditions(pod, true, &started, None),
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": started,
        "containerStatuses": containers(pod).map(|c| running(c, &started, 0, None)).collect::<Vec<_>>(),
        "qosClass": if super::scheduler::requests_anything(pod) { "Burstable" } else { "BestEffort" },
    });
    next
}

/// The back-off before restart `n` (the first restart is `n == 1`).
fn back_off(restarts: i64) -> SignedDuration {
    let seconds = FIRST_BACK_OFF
        .saturating_mul(1i64 << (restarts - 1).clamp(0, 16))
        .min(MAX_BACK_OFF);
    SignedDuration::from_secs(seconds)
}

/// Ends the containers whose run time is over and restarts those whose back-off is; the
/// pod's next status, or `None` when nothing changed.
fn advance(
    cluster: &ClusterApi,
    pod: &Arc<Value>,
    run_for: SignedDuration,
    now: Timestamp,
) -> Option<Value> {
    let code = exit_code(pod);
    let restarts_on_exit = match restart_policy(pod) {
        "Never" => false,
        "OnFailure" => code != 0,
        _ => true,
    };
    let at = jiff::Timestamp::now().to_string();
    let mut changed = false;
    let mut statuses: Vec<Value> = Vec::new();
    let pod_name = pod["metadata"]["name"].as_str().unwrap_or("");
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("");
    let uid = pod["metadata"]["uid"].as_str().unwrap_or("");
    for status in pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let name = status["name"].as_str().unwrap_or("");
        let restarts = status["restartCount"].as_i64().unwrap_or(0);
        if let Some(started) = timestamp(&status["state"]["running"]["startedAt"]) {
            if now < started + run_for {
                statuses.push(status.clone());
                continue;
            }
            changed = true;
            let terminated = json!({"terminated": {
                "exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" },
                "startedAt": status["state"]["running"]["startedAt"], "finishedAt": at,
                "containerID": status["containerID"],
            }});
            let mut next = status.clone();
            next["ready"] = json!(false);
            next["started"] = json!(false);
            if restarts_on_exit {
                let wait = back_off(restarts + 1);
                next["restartCount"] = json!(restarts + 1);
                next["lastState"] = terminated;
                next["state"] = json!({"waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": format!("back-off {}s restarting failed container={name} pod={pod_name}_{ns}({uid})", wait.as_secs()),
                }});
                crate::events::record(
                    cluster,
                    pod,
                    EventType::Warning,
                    "BackOff",
                    &format!(
                        "Back-off restarting failed container {name} in pod {pod_name}_{ns}({uid})"
                    ),
                    "kubelet",
                );
            } else {
                next["state"] = terminated;
            }
            statuses.push(next);
        } else if status["state"]["waiting"]["reason"] == "CrashLoopBackOff" {
            let finished = timestamp(&status["lastState"]["terminated"]["finishedAt"])?;
            if now < finished + back_off(restarts) {
                statuses.push(status.clone());
                continue;
            }
            changed = true;
            let container = containers(pod).find(|c| c["name"] == name)?;
            statuses.push(running(
                container,
                &at,
                restarts,
                Some(&status["lastState"]),
            ));
        } else {
            statuses.push(status.clone());
        }
    }
    if !changed {
        return None;
    }
    let mut next = (**pod).clone();
    let all_ended = statuses.iter().all(|s| !s["state"]["terminated"].is_null());
    let ready = statuses.iter().all(|s| s["ready"] == true);
    if all_ended {
        let failed = statuses
            .iter()
            .any(|s| s["state"]["terminated"]["exitCode"] != 0);
        next["status"]["phase"] = json!(if failed { "Failed" } else { "Succeeded" });
        next["status"]["conditions"] = conditions(pod, false, &at, Some("PodCompleted"));
    } else {
        next["status"]["conditions"] = conditions(pod, ready, &at, Some("ContainersNotReady"));
    }
    next["status"]["containerStatuses"] = json!(statuses);
    Some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_go_reads_them() {
        assert_eq!(parse_duration("90s"), Some(SignedDuration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Some(SignedDuration::from_mins(90)));
        assert_eq!(
            parse_duration("250ms"),
            Some(SignedDuration::from_millis(250))
        );
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration(""), None);
    }

    #[test]
    fn back_off_doubles_from_ten_seconds_to_five_minutes() {
        let seconds: Vec<i64> = (1..=7).map(|n| back_off(n).as_secs()).collect();
        assert_eq!(seconds, [10, 20, 40, 80, 160, 300, 300]);
    }
}
