//! Kinds served in more than one version and stored in one, as upstream converts them:
//! `events.k8s.io/v1` events are core/v1 events renamed field by field, and
//! `autoscaling/v1` autoscalers are `autoscaling/v2` ones with only a CPU target. A request
//! in another version is answered as the request for the stored version it is (its body
//! and field selector converted), then its answer converted back, watch events one by one.

use super::*;

/// One version served by conversion from the stored one.
pub(super) struct Conversion {
    group: &'static str,
    version: &'static str,
    /// The stored version's plural (the same collection).
    stored: &'static str,
    /// The object in the stored version; `current` is the stored object an update replaces,
    /// whose fields this version cannot express are kept.
    to_stored: fn(&Value, Option<&Value>) -> Value,
    /// The stored object in this version.
    to_served: fn(&Value) -> Value,
    /// A field selector's field, as the stored version names it.
    stored_field: fn(&str) -> String,
    /// What this version requires of a write beyond its type.
    check: fn(&ResourceType, &Value) -> KubeResult<()>,
}

static CONVERSIONS: &[Conversion] = &[
    Conversion {
        group: "events.k8s.io",
        version: "v1",
        stored: "events",
        to_stored: |event, _| crate::events::to_core(event),
        to_served: crate::events::to_events_v1,
        stored_field: crate::events::core_field,
        check: required,
    },
    Conversion {
        group: "autoscaling",
        version: "v1",
        stored: "horizontalpodautoscalers",
        to_stored: crate::workloads::autoscalers::to_v2,
        to_served: crate::workloads::autoscalers::to_v1,
        stored_field: str::to_string,
        check: |_, _| Ok(()),
    },
];

/// How `r` is served, if by conversion.
pub(super) fn of(r: &ResourceType) -> Option<&'static Conversion> {
    CONVERSIONS
        .iter()
        .find(|c| c.group == r.group && c.version == r.version && c.stored == r.plural)
}

impl ClusterApi {
    /// The request for the stored version that a request in a converted one is: its verb (a
    /// patch applies to the served form, and patched, it is an update of the stored one),
    /// what it names, its query with the field selector converted, and its body.
    pub(super) fn converted_request(
        &self,
        conversion: &Conversion,
        verb: &'static str,
        info: &RequestInfo,
        query: &Query,
        headers: &HeaderMap,
        body: Bytes,
    ) -> KubeResult<(&'static str, RequestInfo, Query, Bytes)> {
        let stored = RequestInfo {
            resource: resources::by_plural(conversion.stored).clone(),
            namespace: info.namespace.clone(),
            name: info.name.clone(),
            subresource: info.subresource.clone(),
        };
        let mut query = query.clone();
        query.field_selector = query.field_selector.renamed(conversion.stored_field);
        let (verb, body) = match verb {
            "create" | "update" => {
                let object = parse_body(&body)?;
                check_kind(&info.resource, &object)?;
                // Checked as the served version, stored as the stored one.
                let (object, _) = decode_request(&info.resource, &object, query.field_validation)?;
                (conversion.check)(&info.resource, &object)?;
                let current = (verb == "update")
                    .then(|| self.current(&stored).ok())
                    .flatten();
                (
                    verb,
                    to_body(&(conversion.to_stored)(&object, current.as_deref())),
                )
            }
            "patch" => {
                let stored_now = self.current(&stored)?;
                let current = (conversion.to_served)(&stored_now);
                let mut target = current.clone();
                let content_type = headers
                    .get(axum::http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                crate::patch::apply(&mut target, content_type, &parse_body(&body)?)?;
                let (target, _) = decode_request(&info.resource, &target, query.field_validation)?;
                let mut stored_target = (conversion.to_stored)(&target, Some(&stored_now));
                if stored_target["metadata"]["resourceVersion"].is_null() {
                    stored_target["metadata"]["resourceVersion"] =
                        current["metadata"]["resourceVersion"].clone();
                }
                ("update", to_body(&stored_target))
            }
            _ => (verb, body),
        };
        Ok((verb, stored, query, body))
    }
}

/// The answer to the stored version's request in the served one: objects converted, watch
/// events one by one (one per chunk, each a line of JSON); tables and statuses as they are.
pub(super) async fn converted_response(
    conversion: &'static Conversion,
    verb: &str,
    table: bool,
    answer: Response,
) -> KubeResult<Response> {
    if table {
        return Ok(answer);
    }
    let (parts, body) = answer.into_parts();
    if verb == "watch" {
        let events = body.into_data_stream().map(|chunk| {
            chunk.map(|line| match serde_json::from_slice::<Value>(&line) {
                Ok(mut event) => {
                    event["object"] = present(conversion, &event["object"]);
                    let mut line = serde_json::to_vec(&event).unwrap_or_default();
                    line.push(b'\n');
                    Bytes::from(line)
                }
                Err(_) => line,
            })
        });
        return Ok(Response::from_parts(parts, Body::from_stream(events)));
    }
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|e| KubeError::internal(e.to_string()))?;
    let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok(Response::from_parts(
        parts,
        Body::from(to_body(&present(conversion, &value))),
    ))
}

/// What upstream requires of an event written as `events.k8s.io/v1`, all reported at once.
fn required(r: &ResourceType, event: &Value) -> KubeResult<()> {
    let causes: Vec<(String, String)> = [
        "eventTime",
        "reportingController",
        "reportingInstance",
        "action",
        "reason",
    ]
    .iter()
    .filter(|field| event[**field].as_str().is_none_or(str::is_empty))
    .map(|field| (field.to_string(), "Required value".to_string()))
    .collect();
    if causes.is_empty() {
        return Ok(());
    }
    let name = event["metadata"]["name"].as_str().unwrap_or("");
    Err(KubeError::invalid(&r.group, &r.kind, name, causes))
}

fn to_body(value: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}

/// An answer in the served version: an object or a list of them; a Status as it is.
fn present(conversion: &Conversion, value: &Value) -> Value {
    let api_version = format!("{}/{}", conversion.group, conversion.version);
    match value["kind"].as_str() {
        Some(kind) if kind.ends_with("List") => {
            let mut list = value.clone();
            list["apiVersion"] = json!(api_version);
            if let Some(items) = list["items"].as_array_mut() {
                for item in items {
                    *item = (conversion.to_served)(item);
                }
            }
            list
        }
        Some("Status") | Some("Table") | None => value.clone(),
        Some(_) => (conversion.to_served)(value),
    }
}
