//! The three patch types kubectl sends: JSON merge patch (RFC 7386), JSON patch (RFC 6902)
//! and strategic merge patch, which `kubectl apply`, `edit`, `set` and `label` use for
//! built-in kinds. A strategic merge merges lists of objects by their merge key (containers by
//! name, a container's ports by containerPort, a Service's by port, …) instead of replacing them, and understands the `$patch`,
//! `$retainKeys`, `$deleteFromPrimitiveList/` and `$setElementOrder/` directives.

use axum::http::StatusCode;
use serde_json::{Map, Value};

use crate::status::{KubeError, KubeResult};

/// The merge key of each list field that upstream types mark `patchStrategy: merge`.
/// `ports` is a container's (by `containerPort`) or a Service's (by `port`): each requires
/// its key, so the items say which they are.
pub(crate) fn merge_key(field: &str, items: &[Value]) -> Option<&'static str> {
    merge_key_of(
        field,
        items.iter().any(|i| i.get("containerPort").is_some()),
    )
}

/// The merge key of the list `field`; `in_container` tells a container's `ports` from a
/// Service's.
pub(crate) fn merge_key_of(field: &str, in_container: bool) -> Option<&'static str> {
    Some(match field {
        "ports" if in_container => "containerPort",
        "ports" => "port",
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims"
        | "webhooks" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "hostAliases" => "ip",
        "topologySpreadConstraints" => "topologyKey",
        "conditions" => "type",
        "ownerReferences" => "uid",
        _ => return None,
    })
}

/// Lists of scalars that merge as sets.
pub(crate) fn merges_as_set(field: &str) -> bool {
    matches!(field, "finalizers")
}

/// Applies `patch` to `target` by its content type, answering as upstream does: 415 for a
/// patch type it does not know, 422 for a patch that does not apply.
pub fn apply(target: &mut Value, content_type: &str, patch: &Value) -> KubeResult<()> {
    let applied = match content_type.split(';').next().unwrap_or("").trim() {
        "application/merge-patch+json" => {
            json_merge(target, patch);
            Ok(())
        }
        "application/strategic-merge-patch+json" => strategic_merge(target, patch),
        "application/json-patch+json" => json_patch(target, patch),
        other => return Err(KubeError::unsupported_media_type(other)),
    };
    applied.map_err(|e| {
        KubeError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!("the patch does not apply: {e}"),
        )
    })
}

pub fn json_merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let target = target.as_object_mut().expect("made an object");
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            json_merge(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), String> {
    let patch: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(|e| format!("invalid JSON patch: {e}"))?;
    json_patch::patch(target, &patch).map_err(|e| e.to_string())
}

/// The value without directives, for inserting where nothing is merged.
fn without_directives(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), without_directives(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_directives).collect()),
        other => other.clone(),
    }
}

pub fn strategic_merge(target: &mut Value, patch: &Value) -> Result<(), String> {
    match (target.as_object_mut(), patch) {
        (Some(target), Value::Object(patch)) => merge_map(target, patch),
        (_, patch) => {
            *target = without_directives(patch);
            Ok(())
        }
    }
}

fn merge_map(target: &mut Map<String, Value>, patch: &Map<String, Value>) -> Result<(), String> {
    match patch.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            *target = match without_directives(&Value::Object(patch.clone())) {
                Value::Object(map) => map,
                _ => unreachable!("an object stays an object"),
            };
            return Ok(());
        }
        Some("merge") | None => {}
        Some(other) => return Err(format!("unknown patch directive `$patch: {other}`")),
    }
    if let Some(retain) = patch.get("$retainKeys") {
        let retain: Vec<&str> = retain
            .as_array()
            .ok_or("`$retainKeys` must be a list")?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        target.retain(|k, _| retain.contains(&k.as_str()));
    }
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            let doomed = value
                .as_array()
                .ok_or("`$deleteFromPrimitiveList` must be a list")?;
            if let Some(Value::Array(items)) = target.get_mut(field) {
                items.retain(|item| !doomed.contains(item));
            }
            continue;
        }
        if key.starts_with('$') {
            continue;
        }
        match value {
            Value::Null => {
                target.remove(key);
            }
            Value::Object(child) => {
                if child.get("$patch").and_then(Value::as_str) == Some("delete") {
                    target.remove(key);
                } else if let Some(Value::Object(existing)) = target.get_mut(key) {
                    merge_map(existing, child)?;
                } else {
                    target.insert(key.clone(), without_directives(value));
                }
            }
            Value::Array(items) => {
                let merged = match (target.get_mut(key), merge_key(key, items)) {
                    (Some(Value::Array(existing)), Some(merge_key))
                        if items.iter().all(Value::is_object) =>
                    {
                        merge_list(existing, items, merge_key)?;
                        true
                    }
                    (Some(Value::Array(existing)), _) if merges_as_set(key) => {
                        for item in items {
                            if !existing.contains(item) {
                                existing.push(item.clone());
                            }
                        }
                        true
                    }
                    _ => false,
                };
                if !merged {
                    target.insert(key.clone(), without_directives(value));
                }
            }
            scalar => {
                target.insert(key.clone(), scalar.clone());
            }
        }
    }
    Ok(())
}

fn merge_list(existing: &mut Vec<Value>, patch: &[Value], key: &str) -> Result<(), String> {
    if patch
        .iter()
        .any(|item| item.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        *existing = patch
            .iter()
            .filter(|item| item.get("$patch").is_none())
            .map(without_directives)
            .collect();
        return Ok(());
    }
    for item in patch {
        let id = item
            .get(key)
            .ok_or_else(|| format!("a list element lacks its merge key `{key}`"))?;
        let position = existing.iter().position(|e| e.get(key) == Some(id));
        match (item.get("$patch").and_then(Value::as_str), position) {
            (Some("delete"), Some(at)) => {
                existing.remove(at);
            }
            (Some("delete"), None) => {}
            (_, Some(at)) => {
                let Value::Object(patch) = item else {
                    unreachable!("checked to be objects")
                };
                if let Value::Object(target) = &mut existing[at] {
                    merge_map(target, patch)?;
                }
            }
            (_, None) => existing.push(without_directives(item)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containers_merge_by_name_and_null_deletes() {
        let mut deployment = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "web", "image": "nginx:1", "env": [{"name": "A", "value": "1"}]},
            {"name": "sidecar", "image": "envoy"},
        ]}}}, "metadata": {"labels": {"a": "1", "b": "2"}}});
        let patch = json!({
            "metadata": {"labels": {"b": null, "c": "3"}},
            "spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
                "containers": [
                    {"name": "web", "image": "nginx:2", "env": [{"name": "B", "value": "2"}]},
                    {"name": "sidecar", "$patch": "delete"},
                ]}}}
        });
        strategic_merge(&mut deployment, &patch).unwrap();
        assert_eq!(
            deployment,
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "web", "image": "nginx:2", "env": [
                    {"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
            ]}}}, "metadata": {"labels": {"a": "1", "c": "3"}}})
        );
    }

    #[test]
    fn a_services_ports_merge_by_port_and_a_containers_by_container_port() {
        let mut service = json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}]}});
        let patch = json!({"spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443}]}});
        strategic_merge(&mut service, &patch).unwrap();
        assert_eq!(
            service["spec"]["ports"],
            json!([{"port": 80, "targetPort": 8080, "name": "http"}, {"port": 443}])
        );
        let mut pod =
            json!({"spec": {"containers": [{"name": "web", "ports": [{"containerPort": 80}]}]}});
        let patch = json!({"spec": {"containers": [{"name": "web", "ports": [{"containerPort": 80, "name": "http"}]}]}});
        strategic_merge(&mut pod, &patch).unwrap();
        assert_eq!(
            pod["spec"]["containers"][0]["ports"],
            json!([{"containerPort": 80, "name": "http"}])
        );
    }

    #[test]
    fn lists_without_a_merge_key_are_replaced() {
        let mut role = json!({"rules": [{"verbs": ["get"]}, {"verbs": ["list"]}]});
        strategic_merge(&mut role, &json!({"rules": [{"verbs": ["watch"]}]})).unwrap();
        assert_eq!(role, json!({"rules": [{"verbs": ["watch"]}]}));
    }

    #[test]
    fn merge_patch_replaces_lists_and_removes_nulls() {
        let mut object = json!({"a": {"b": 1, "c": 2}, "l": [1, 2]});
        json_merge(&mut object, &json!({"a": {"c": null}, "l": [3]}));
        assert_eq!(object, json!({"a": {"b": 1}, "l": [3]}));
    }
}
