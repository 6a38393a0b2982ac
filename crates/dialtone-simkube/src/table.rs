//! Server-side printing: the `meta.k8s.io/v1` Table that `kubectl get` asks for, with the
//! columns upstream prints for each kind.

use std::sync::Arc;

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::resources::ResourceType;

/// Upstream's short age: `42s`, `5m`, `3h`, `2d`.
pub fn age(created: &Value) -> String {
    let Some(created) = crate::cluster::timestamp(created) else {
        return "<unknown>".into();
    };
    let seconds = (Timestamp::now().as_second() - created.as_second()).max(0);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 600 => format!("{}m{}s", s / 60, s % 60),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn column(name: &str, kind: &str, priority: u8) -> Value {
    json!({"name": name, "type": kind, "format": if name == "Name" { "name" } else { "" }, "description": "", "priority": priority})
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or("").to_string()
}

fn columns(r: &ResourceType) -> Vec<Value> {
    if let Some(custom) = &r.custom {
        let mut columns = vec![column("Name", "string", 0)];
        columns.extend(custom.columns.iter().map(|c| {
            json!({
                "name": c.name, "type": c.kind, "format": "",
                "description": c.description, "priority": c.priority,
            })
        }));
        return columns;
    }
    match r.plural.as_ref() {
        "pods" => vec![
            column("Name", "string", 0),
            column("Ready", "string", 0),
            column("Status", "string", 0),
            column("Restarts", "string", 0),
            column("Age", "string", 0),
            column("IP", "string", 1),
            column("Node", "string", 1),
        ],
        "nodes" => vec![
            column("Name", "string", 0),
            column("Status", "string", 0),
            column("Roles", "string", 0),
            column("Age", "string", 0),
            column("Version", "string", 0),
            column("Internal-IP", "string", 1),
            column("Instance-Type", "string", 1),
            column("Zone", "string", 1),
        ],
        "deployments" => vec![
            column("Name", "string", 0),
            column("Ready", "string", 0),
            column("Up-to-date", "integer", 0),
            column("Available", "integer", 0),
            column("Age", "string", 0),
        ],
        "controllerrevisions" => vec![
            column("Name", "string", 0),
            column("Controller", "string", 0),
            column("Revision", "integer", 0),
            column("Age", "string", 0),
        ],
        "replicasets" => vec![
            column("Name", "string", 0),
            column("Desired", "integer", 0),
            column("Current", "integer", 0),
            column("Ready", "integer", 0),
            column("Age", "string", 0),
            column("Containers", "string", 1),
            column("Images", "string", 1),
            column("Selector", "string", 1),
        ],
        "statefulsets" => vec![
            column("Name", "string", 0),
            column("Ready", "string", 0),
            column("Age", "string", 0),
            column("Containers", "string", 1),
            column("Images", "string", 1),
        ],
        "daemonsets" => vec![
            column("Name", "string", 0),
            column("Desired", "integer", 0),
            column("Current", "integer", 0),
            column("Ready", "integer", 0),
            column("Up-to-date", "integer", 0),
            column("Available", "integer", 0),
            column("Node Selector", "string", 0),
            column("Age", "string", 0),
        ],
        "jobs" => vec![
            column("Name", "string", 0),
            column("Status", "string", 0),
            column("Completions", "string", 0),
            column("Duration", "string", 0),
            column("Age", "string", 0),
        ],
        "cronjobs" => vec![
            column("Name", "string", 0),
            column("Schedule", "string", 0),
            column("Timezone", "string", 0),
            column("Suspend", "boolean", 0),
            column("Active", "integer", 0),
            column("Last Schedule", "string", 0),
            column("Age", "string", 0),
        ],
        "horizontalpodautoscalers" => vec![
            column("Name", "string", 0),
            column("Reference", "string", 0),
            column("Targets", "string", 0),
            column("MinPods", "string", 0),
            column("MaxPods", "string", 0),
            column("Replicas", "string", 0),
            column("Age", "string", 0),
        ],
        "namespaces" => vec![
            column("Name", "string", 0),
            column("Status", "string", 0),
            column("Age", "string", 0),
        ],
        "rolebindings" | "clusterrolebindings" => vec![
            column("Name", "string", 0),
            column("Role", "string", 0),
            column("Age", "string", 0),
        ],
        "poddisruptionbudgets" => vec![
            column("Name", "string", 0),
            column("Min Available", "string", 0),
            column("Max Unavailable", "string", 0),
            column("Allowed Disruptions", "integer", 0),
            column("Age", "string", 0),
        ],
        "configmaps" => vec![
            column("Name", "string", 0),
            column("Data", "integer", 0),
            column("Age", "string", 0),
        ],
        "secrets" => vec![
            column("Name", "string", 0),
            column("Type", "string", 0),
            column("Data", "integer", 0),
            column("Age", "string", 0),
        ],
        "events" => vec![
            column("Last Seen", "string", 0),
            column("Type", "string", 0),
            column("Reason", "string", 0),
            column("Object", "string", 0),
            column("Message", "string", 0),
        ],
        "services" => vec![
            column("Name", "string", 0),
            column("Type", "string", 0),
            column("Cluster-IP", "string", 0),
            column("External-IP", "string", 0),
            column("Port(s)", "string", 0),
            column("Age", "string", 0),
            column("Selector", "string", 1),
        ],
        "endpointslices" => vec![
            column("Name", "string", 0),
            column("AddressType", "string", 0),
            column("Ports", "string", 0),
            column("Endpoints", "string", 0),
            column("Age", "string", 0),
        ],
        _ => vec![column("Name", "string", 0), column("Age", "string", 0)],
    }
}

/// `a=b,c=d`, or `<none>`.
fn pairs(map: &Value) -> String {
    match map.as_object() {
        Some(m) if !m.is_empty() => m
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
            .collect::<Vec<_>>()
            .join(","),
        _ => "<none>".into(),
    }
}

/// What upstream prints as a Service's external IP.
fn external_ip(service: &Value) -> String {
    let spec = &service["spec"];
    let ingress: Vec<String> = service["status"]["loadBalancer"]["ingress"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["ip"].as_str().or(i["hostname"].as_str()))
        .map(str::to_string)
        .collect();
    match spec["type"].as_str().unwrap_or("") {
        "ExternalName" => text(&spec["externalName"]),
        "LoadBalancer" if ingress.is_empty() => "<pending>".into(),
        "LoadBalancer" => ingress.join(","),
        _ => "<none>".into(),
    }
}

fn count(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

/// The template's containers' `field`, comma-separated, as `-o wide` prints them.
fn template_list(o: &Value, field: &str) -> String {
    o["spec"]["template"]["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| text(&c[field]))
        .collect::<Vec<_>>()
        .join(",")
}

/// A pod's status as kubectl prints it: the phase, or what holds a container back.
fn pod_status(pod: &Value) -> String {
    if !pod["metadata"]["deletionTimestamp"].is_null() {
        return "Terminating".into();
    }
    let statuses = pod["status"]["containerStatuses"].as_array();
    let reason = statuses.into_iter().flatten().find_map(|c| {
        c["state"]["waiting"]["reason"]
            .as_str()
            .or(c["state"]["terminated"]["reason"].as_str())
    });
    match reason {
        Some(reason) => reason.to_string(),
        None => text(&pod["status"]["phase"]),
    }
}

/// How long ago a container last restarted, as `kubectl get pods` shows it: `3 (42s ago)`.
fn restarts(pod: &Value) -> String {
    let statuses: Vec<&Value> = pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let total: i64 = statuses
        .iter()
        .map(|c| c["restartCount"].as_i64().unwrap_or(0))
        .sum();
    let last = statuses
        .iter()
        .filter_map(|c| c["lastState"]["terminated"]["finishedAt"].as_str())
        .max();
    match last {
        Some(at) if total > 0 => format!("{total} ({} ago)", age(&json!(at))),
        _ => total.to_string(),
    }
}

fn job_cells(o: &Value, name: Value, age: Value) -> Vec<Value> {
    let holds = |kind: &str| crate::workloads::condition_holds(o, kind);
    let status = if holds("Complete") {
        "Complete"
    } else if holds("Failed") {
        "Failed"
    } else if holds("Suspended") {
        "Suspended"
    } else {
        "Running"
    };
    let completions = match o["spec"]["completions"].as_i64() {
        Some(c) => format!("{}/{c}", count(&o["status"]["succeeded"])),
        None => format!(
            "{}/1 of {}",
            count(&o["status"]["succeeded"]),
            count(&o["spec"]["parallelism"])
        ),
    };
    let time = |field: &str| crate::cluster::timestamp(&o["status"][field]);
    let duration = match (time("startTime"), time("completionTime")) {
        (Some(start), end) => {
            let end = end.unwrap_or_else(Timestamp::now);
            let seconds = (end.as_second() - start.as_second()).max(0);
            if seconds < 120 {
                format!("{seconds}s")
            } else {
                format!("{}m", seconds / 60)
            }
        }
        _ => String::new(),
    };
    vec![
        name,
        json!(status),
        json!(completions),
        json!(duration),
        age,
    ]
}

fn cells(r: &ResourceType, o: &Value) -> Vec<Value> {
    let name = json!(text(&o["metadata"]["name"]));
    let age = json!(age(&o["metadata"]["creationTimestamp"]));
    if let Some(custom) = &r.custom {
        let mut cells = vec![name];
        cells.extend(custom.columns.iter().map(|c| {
            let value = crate::custom::column_value(o, c);
            match c.kind.as_str() {
                "date" if !value.is_null() => json!(self::age(&value)),
                _ => value,
            }
        }));
        return cells;
    }
    match r.plural.as_ref() {
        "pods" => {
            let containers = o["spec"]["containers"].as_array().map_or(0, Vec::len);
            let ready = o["status"]["containerStatuses"]
                .as_array()
                .map_or(0, |s| s.iter().filter(|c| c["ready"] == true).count());
            vec![
                name,
                json!(format!("{ready}/{containers}")),
                json!(pod_status(o)),
                json!(restarts(o)),
                age,
                json!(o["status"]["podIP"].as_str().unwrap_or("<none>")),
                json!(o["spec"]["nodeName"].as_str().unwrap_or("<none>")),
            ]
        }
        "nodes" => {
            let ready = crate::workloads::condition_holds(o, "Ready");
            let mut status = if ready { "Ready" } else { "NotReady" }.to_string();
            if o["spec"]["unschedulable"] == true {
                status.push_str(",SchedulingDisabled");
            }
            let labels = &o["metadata"]["labels"];
            let roles: Vec<&str> = labels
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/"))
                .collect();
            let address = o["status"]["addresses"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["type"] == "InternalIP")
                .map(|a| text(&a["address"]))
                .unwrap_or_default();
            vec![
                name,
                json!(status),
                json!(if roles.is_empty() {
                    "<none>".to_string()
                } else {
                    roles.join(",")
                }),
                age,
                json!(text(&o["status"]["nodeInfo"]["kubeletVersion"])),
                json!(address),
                json!(text(&labels["node.kubernetes.io/instance-type"])),
                json!(text(&labels["topology.kubernetes.io/zone"])),
            ]
        }
        "deployments" => vec![
            name,
            json!(format!(
                "{}/{}",
                o["status"]["readyReplicas"].as_i64().unwrap_or(0),
                o["spec"]["replicas"].as_i64().unwrap_or(0)
            )),
            json!(o["status"]["updatedReplicas"].as_i64().unwrap_or(0)),
            json!(o["status"]["availableReplicas"].as_i64().unwrap_or(0)),
            age,
        ],
        "controllerrevisions" => {
            let owner = o["metadata"]["ownerReferences"]
                .as_array()
                .and_then(|owners| owners.iter().find(|r| r["controller"] == true))
                .map(|r| {
                    let group = text(&r["apiVersion"]);
                    let group = group.split_once('/').map_or("", |(g, _)| g);
                    format!(
                        "{}.{group}/{}",
                        text(&r["kind"]).to_lowercase(),
                        text(&r["name"])
                    )
                })
                .unwrap_or_else(|| "<none>".into());
            vec![name, json!(owner), json!(count(&o["revision"])), age]
        }
        "replicasets" => vec![
            name,
            json!(count(&o["spec"]["replicas"])),
            json!(count(&o["status"]["replicas"])),
            json!(count(&o["status"]["readyReplicas"])),
            age,
            json!(template_list(o, "name")),
            json!(template_list(o, "image")),
            json!(pairs(&o["spec"]["selector"]["matchLabels"])),
        ],
        "statefulsets" => vec![
            name,
            json!(format!(
                "{}/{}",
                count(&o["status"]["readyReplicas"]),
                count(&o["spec"]["replicas"])
            )),
            age,
            json!(template_list(o, "name")),
            json!(template_list(o, "image")),
        ],
        "daemonsets" => {
            let status = &o["status"];
            vec![
                name,
                json!(count(&status["desiredNumberScheduled"])),
                json!(count(&status["currentNumberScheduled"])),
                json!(count(&status["numberReady"])),
                json!(count(&status["updatedNumberScheduled"])),
                json!(count(&status["numberAvailable"])),
                json!(pairs(&o["spec"]["template"]["spec"]["nodeSelector"])),
                age,
            ]
        }
        "jobs" => job_cells(o, name, age),
        "cronjobs" => vec![
            name,
            json!(text(&o["spec"]["schedule"])),
            json!(o["spec"]["timeZone"].as_str().unwrap_or("<none>")),
            json!(o["spec"]["suspend"] == true),
            json!(o["status"]["active"].as_array().map_or(0, Vec::len)),
            json!(match &o["status"]["lastScheduleTime"] {
                Value::Null => "<none>".to_string(),
                t => self::age(t),
            }),
            age,
        ],
        "horizontalpodautoscalers" => {
            let target = &o["spec"]["scaleTargetRef"];
            let targets: Vec<String> = o["spec"]["metrics"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| {
                    let resource = &m["resource"];
                    let name = text(&resource["name"]);
                    let current = o["status"]["currentMetrics"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|c| c["resource"]["name"] == resource["name"])
                        .map(|c| &c["resource"]["current"]);
                    let target = &resource["target"];
                    match target["averageUtilization"].as_i64() {
                        Some(goal) => {
                            let now = current
                                .and_then(|c| c["averageUtilization"].as_i64())
                                .map_or("<unknown>".to_string(), |u| format!("{u}%"));
                            Some(format!("{name}: {now}/{goal}%"))
                        }
                        None => target["averageValue"].as_str().map(|goal| {
                            let now = current
                                .and_then(|c| c["averageValue"].as_str())
                                .unwrap_or("<unknown>");
                            format!("{name}: {now}/{goal}")
                        }),
                    }
                })
                .collect();
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    text(&target["kind"]),
                    text(&target["name"])
                )),
                json!(if targets.is_empty() {
                    "<none>".to_string()
                } else {
                    targets.join(", ")
                }),
                json!(o["spec"]["minReplicas"].as_i64().unwrap_or(1).to_string()),
                json!(count(&o["spec"]["maxReplicas"]).to_string()),
                json!(count(&o["status"]["currentReplicas"]).to_string()),
                age,
            ]
        }
        "namespaces" => vec![name, json!(text(&o["status"]["phase"])), age],
        "rolebindings" | "clusterrolebindings" => vec![
            name,
            json!(format!(
                "{}/{}",
                text(&o["roleRef"]["kind"]),
                text(&o["roleRef"]["name"])
            )),
            age,
        ],
        "poddisruptionbudgets" => {
            let bound = |field: &str| match &o["spec"][field] {
                Value::Null => json!("N/A"),
                v => json!(v.as_str().map_or_else(|| v.to_string(), str::to_string)),
            };
            vec![
                name,
                bound("minAvailable"),
                bound("maxUnavailable"),
                json!(o["status"]["disruptionsAllowed"].as_i64().unwrap_or(0)),
                age,
            ]
        }
        "configmaps" => {
            let entries = |field: &str| o[field].as_object().map_or(0, |m| m.len());
            vec![name, json!(entries("data") + entries("binaryData")), age]
        }
        "secrets" => vec![
            name,
            json!(o["type"].as_str().unwrap_or("Opaque")),
            json!(o["data"].as_object().map_or(0, |m| m.len())),
            age,
        ],
        "events" => {
            let involved = &o["involvedObject"];
            vec![
                json!(self::age(&o["lastTimestamp"])),
                json!(text(&o["type"])),
                json!(text(&o["reason"])),
                json!(format!(
                    "{}/{}",
                    text(&involved["kind"]).to_lowercase(),
                    text(&involved["name"])
                )),
                json!(text(&o["message"])),
            ]
        }
        "services" => {
            let ports: Vec<String> = o["spec"]["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| match p["nodePort"].as_u64() {
                    Some(node) => format!("{}:{node}/{}", p["port"], text(&p["protocol"])),
                    None => format!("{}/{}", p["port"], text(&p["protocol"])),
                })
                .collect();
            let cluster_ip = match text(&o["spec"]["clusterIP"]) {
                ip if ip.is_empty() => "<none>".to_string(),
                ip => ip,
            };
            vec![
                name,
                json!(text(&o["spec"]["type"])),
                json!(cluster_ip),
                json!(external_ip(o)),
                json!(if ports.is_empty() {
                    "<none>".to_string()
                } else {
                    ports.join(",")
                }),
                age,
                json!(pairs(&o["spec"]["selector"])),
            ]
        }
        "endpointslices" => {
            let ports: Vec<String> = o["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| p["port"].to_string())
                .collect();
            let addresses: Vec<String> = o["endpoints"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|e| e["addresses"].as_array().cloned().unwrap_or_default())
                .filter_map(|a| a.as_str().map(str::to_string))
                .collect();
            let endpoints = match addresses.len() {
                0 => "<unset>".to_string(),
                n if n > 3 => format!("{} + {} more...", addresses[..3].join(","), n - 3),
                _ => addresses.join(","),
            };
            vec![
                name,
                json!(text(&o["addressType"])),
                json!(if ports.is_empty() {
                    "<unset>".to_string()
                } else {
                    ports.join(",")
                }),
                json!(endpoints),
                age,
            ]
        }
        _ => vec![name, age],
    }
}

pub fn render(r: &ResourceType, items: &[Arc<Value>], revision: u64) -> Value {
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            json!({
                "cells": cells(r, o),
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": o["metadata"],
                },
            })
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": revision.to_string()},
        "columnDefinitions": columns(r),
        "rows": rows,
    })
}
