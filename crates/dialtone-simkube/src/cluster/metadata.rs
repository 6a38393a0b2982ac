//! Object metadata the server owns: names generated from a prefix, uids, creation times,
//! and the scale subresource's view of a deployment.

use super::*;

pub fn key(resource: impl Into<resources::Name>, namespace: &str, name: &str) -> ObjectKey {
    ObjectKey {
        resource: resource.into(),
        namespace: namespace.to_string(),
        name: name.to_string(),
    }
}

pub fn now() -> String {
    Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or(Timestamp::now())
        .to_string()
}

/// A time field's value (`2026-12-06T10:15:00Z`), if it is one.
pub fn timestamp(value: &Value) -> Option<Timestamp> {
    value.as_str()?.parse().ok()
}

/// Five characters as upstream's generated names end with.
pub fn random_suffix() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// The server-set metadata of a new object.
pub fn stamp_new(mut object: Value, r: &ResourceType, namespace: &str) -> Value {
    object["apiVersion"] = json!(r.stored_api_version());
    object["kind"] = json!(&r.kind);
    let metadata = &mut object["metadata"];
    metadata["uid"] = json!(uuid::Uuid::new_v4().to_string());
    metadata["creationTimestamp"] = json!(now());
    if !namespace.is_empty() {
        metadata["namespace"] = json!(namespace);
    }
    if r.has_generation() {
        metadata["generation"] = json!(1);
    }
    if let Some(m) = metadata.as_object_mut() {
        m.remove("resourceVersion");
    }
    object
}

/// The autoscaling/v1 Scale of a deployment, replica set or stateful set.
/// Where a resource keeps what its `scale` subresource shows: a built-in's spec and
/// status replicas and selector, a custom resource's paths from its definition.
fn scale_paths(r: &ResourceType) -> (String, String, Option<String>) {
    match r.custom.as_ref().and_then(|c| c.scale.as_ref()) {
        Some(paths) => (
            pointer(&paths.spec_replicas),
            pointer(&paths.status_replicas),
            paths.label_selector.as_deref().map(pointer),
        ),
        None => ("/spec/replicas".into(), "/status/replicas".into(), None),
    }
}

/// `.spec.replicas` as a JSON pointer.
fn pointer(path: &str) -> String {
    path.replace('.', "/")
}

/// The `Scale` view of an object.
pub fn scale_of(object: &Value, r: &ResourceType) -> Value {
    let (spec_replicas, status_replicas, selector_path) = scale_paths(r);
    let selector = match selector_path {
        Some(path) => object.pointer(&path).cloned().unwrap_or(json!("")),
        None => json!(
            object["spec"]["selector"]["matchLabels"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default()
        ),
    };
    let metadata = &object["metadata"];
    json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": metadata["name"], "namespace": metadata["namespace"], "uid": metadata["uid"],
            "resourceVersion": metadata["resourceVersion"], "creationTimestamp": metadata["creationTimestamp"],
        },
        "spec": {"replicas": object.pointer(&spec_replicas).cloned().unwrap_or(json!(0))},
        "status": {
            "replicas": object.pointer(&status_replicas).and_then(Value::as_i64).unwrap_or(0),
            "selector": selector,
        },
    })
}

/// Sets the replicas an object's `scale` subresource writes.
pub fn set_scale(object: &mut Value, r: &ResourceType, replicas: Value) {
    let (spec_replicas, _, _) = scale_paths(r);
    let mut node = object;
    for part in spec_replicas.trim_start_matches('/').split('/') {
        if !node.is_object() {
            *node = json!({});
        }
        node = &mut node[part];
    }
    *node = replicas;
}
