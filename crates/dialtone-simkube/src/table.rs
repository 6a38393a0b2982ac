//! Server-side printing: the `meta.k8s.io/v1` Table that `kubectl get` asks for, with the
//! columns upstream prints for each kind.

use std::sync::Arc;

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::resources::ResourceType;

/// Upstream's short age: `42s`, `5m`, `3h`, `2d`.
pub fn age(created: &Value) -> String {
    let Some(created) = created.as_str().and_then(|t| t.parse::<Timestamp>().ok()) else {
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
    match r.plural {
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
        _ => vec![column("Name", "string", 0), column("Age", "string", 0)],
    }
}

fn cells(r: &ResourceType, o: &Value) -> Vec<Value> {
    let name = json!(text(&o["metadata"]["name"]));
    let age = json!(age(&o["metadata"]["creationTimestamp"]));
    match r.plural {
        "pods" => {
            let containers = o["spec"]["containers"].as_array().map_or(0, Vec::len);
            let ready = o["status"]["containerStatuses"]
                .as_array()
                .map_or(0, |s| s.iter().filter(|c| c["ready"] == true).count());
            let status = match o["metadata"]["deletionTimestamp"].is_null() {
                false => "Terminating".to_string(),
                true => text(&o["status"]["phase"]),
            };
            vec![
                name,
                json!(format!("{ready}/{containers}")),
                json!(status),
                json!("0"),
                age,
                json!(o["status"]["podIP"].as_str().unwrap_or("<none>")),
                json!(o["spec"]["nodeName"].as_str().unwrap_or("<none>")),
            ]
        }
        "nodes" => {
            let ready = o["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["type"] == "Ready")
                .map(|c| c["status"] == "True")
                .unwrap_or(false);
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
