//! Events, as a cluster's scheduler and controllers record them (core/v1): why a pod is
//! Pending, where it was scheduled, how a deployment scaled. A repeat of the same event on
//! the same object counts up instead of adding another, and events older than an hour go,
//! as upstream's `--event-ttl` default has it.

use jiff::Timestamp;
use serde_json::{Value, json};
use sha2::Digest;

use crate::cluster::{ClusterApi, key, now, stamp_new};
use crate::resources::by_plural;

/// How long an event is kept after it was last seen.
const TTL_SECONDS: i64 = 3600;
/// How often expired events are looked for.
pub const EXPIRY_PERIOD: std::time::Duration = std::time::Duration::from_secs(60);

/// `Normal` or `Warning`, as upstream's two event types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// Records that `component` saw `reason` happen to `object`: a new event, or one more of
/// the same (same object, reason and message).
pub fn record(
    cluster: &ClusterApi,
    object: &Value,
    event_type: EventType,
    reason: &str,
    message: &str,
    component: &str,
) {
    let meta = &object["metadata"];
    let name = meta["name"].as_str().unwrap_or("");
    let uid = meta["uid"].as_str().unwrap_or("");
    // Cluster-scoped objects' events live in `default`, as upstream's do.
    let namespace = meta["namespace"]
        .as_str()
        .filter(|ns| !ns.is_empty())
        .unwrap_or("default");
    let digest = sha2::Sha256::digest(format!("{uid}\0{reason}\0{message}"));
    let suffix: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let event_name = format!("{name}.{suffix}");
    let k = key("events", namespace, &event_name);
    let seen = now();
    if let Some(existing) = cluster.objects.get(&k) {
        let mut next = (*existing).clone();
        next["count"] = json!(existing["count"].as_u64().unwrap_or(1) + 1);
        next["lastTimestamp"] = json!(seen);
        let _ = cluster.objects.update(&k, next);
        return;
    }
    let mut involved = json!({
        "kind": object["kind"], "name": name, "uid": uid,
        "apiVersion": object["apiVersion"], "resourceVersion": meta["resourceVersion"],
    });
    if let Some(ns) = meta["namespace"].as_str() {
        involved["namespace"] = json!(ns);
    }
    let event = json!({
        "metadata": {"name": event_name, "namespace": namespace},
        "involvedObject": involved,
        "reason": reason,
        "message": message,
        "type": event_type.as_str(),
        "source": {"component": component},
        "reportingComponent": component,
        "reportingInstance": "",
        "firstTimestamp": seen,
        "lastTimestamp": seen,
        "count": 1,
    });
    let _ = cluster
        .objects
        .create(k, stamp_new(event, by_plural("events"), namespace));
}

/// Forgets the events not seen for an hour.
pub fn expire(cluster: &ClusterApi) {
    let cutoff = Timestamp::now().as_second() - TTL_SECONDS;
    for event in cluster.objects.list("events", None).0 {
        let last =
            crate::cluster::timestamp(&event["lastTimestamp"]).map_or(i64::MIN, |t| t.as_second());
        if last < cutoff {
            let ns = event["metadata"]["namespace"].as_str().unwrap_or("");
            let name = event["metadata"]["name"].as_str().unwrap_or("");
            let _ = cluster.objects.delete(&key("events", ns, name));
        }
    }
}

/// The fields of a core/v1 event and of its `events.k8s.io/v1` form that hold the same
/// value, as upstream converts between them: one object, stored once, read in either.
const RENAMED: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("reportingComponent", "reportingController"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

fn renamed(
    object: &Value,
    api_version: &str,
    from: impl Fn(&str) -> Option<&'static str>,
) -> Value {
    let mut out = serde_json::Map::new();
    for (field, value) in object.as_object().into_iter().flatten() {
        let field = from(field).map_or(field.clone(), str::to_string);
        out.insert(field, value.clone());
    }
    out.insert("apiVersion".into(), json!(api_version));
    out.insert("kind".into(), json!("Event"));
    Value::Object(out)
}

/// A stored (core/v1) event in its `events.k8s.io/v1` form.
pub fn to_events_v1(core: &Value) -> Value {
    renamed(core, "events.k8s.io/v1", |f| {
        RENAMED.iter().find(|(c, _)| *c == f).map(|(_, v1)| *v1)
    })
}

/// An `events.k8s.io/v1` event in the core/v1 form it is stored in.
pub fn to_core(v1: &Value) -> Value {
    renamed(v1, "v1", |f| {
        RENAMED.iter().find(|(_, v)| *v == f).map(|(core, _)| *core)
    })
}

/// A field selector's field of an `events.k8s.io/v1` event, as its core/v1 form names it
/// (`regarding.name` is `involvedObject.name`).
pub fn core_field(field: &str) -> String {
    RENAMED
        .iter()
        .find_map(|(core, v1)| {
            (field == *v1).then(|| core.to_string()).or_else(|| {
                field
                    .strip_prefix(&format!("{v1}."))
                    .map(|rest| format!("{core}.{rest}"))
            })
        })
        .unwrap_or_else(|| field.to_string())
}
