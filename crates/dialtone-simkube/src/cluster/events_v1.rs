//! `events.k8s.io/v1`: the same events as core/v1, stored once in their core form and read
//! or written in either, as upstream serves the two versions. A request for the new form is
//! answered as the core request it is (its body and field selector renamed), then its answer
//! renamed back, watch events one by one.

use super::*;

impl ClusterApi {
    /// The core request an `events.k8s.io/v1` request is: its verb (a patch applies to the
    /// new form, and patched, it is an update of the old), what it names, its query with the
    /// field selector renamed, and its body in the core form.
    pub(super) fn events_v1_request(
        &self,
        verb: &'static str,
        info: &RequestInfo,
        query: &Query,
        headers: &HeaderMap,
        body: Bytes,
    ) -> KubeResult<(&'static str, RequestInfo, Query, Bytes)> {
        let core = RequestInfo {
            resource: resources::by_plural("events"),
            namespace: info.namespace.clone(),
            name: info.name.clone(),
            subresource: info.subresource.clone(),
        };
        let mut query = query.clone();
        query.field_selector = query.field_selector.renamed(crate::events::core_field);
        let (verb, body) = match verb {
            "create" | "update" => {
                let object = parse_body(&body)?;
                check_kind(info.resource, &object)?;
                // Checked as the new form, stored as the old.
                let (object, _) = decode_request(info.resource, &object, query.field_validation)?;
                required(info.resource, &object)?;
                (verb, to_body(&crate::events::to_core(&object)))
            }
            "patch" => {
                let current = crate::events::to_events_v1(&*self.current(&core)?);
                let mut target = current.clone();
                let patch = parse_body(&body)?;
                let media = headers
                    .get(axum::http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string();
                match media.as_str() {
                    "application/merge-patch+json" => crate::patch::json_merge(&mut target, &patch),
                    "application/strategic-merge-patch+json" => {
                        crate::patch::strategic_merge(&mut target, &patch).map_err(unappliable)?
                    }
                    "application/json-patch+json" => {
                        crate::patch::json_patch(&mut target, &patch).map_err(unappliable)?
                    }
                    other => return Err(KubeError::unsupported_media_type(other)),
                }
                let (target, _) = decode_request(info.resource, &target, query.field_validation)?;
                let mut core_target = crate::events::to_core(&target);
                if core_target["metadata"]["resourceVersion"].is_null() {
                    core_target["metadata"]["resourceVersion"] =
                        current["metadata"]["resourceVersion"].clone();
                }
                ("update", to_body(&core_target))
            }
            _ => (verb, body),
        };
        Ok((verb, core, query, body))
    }
}

/// The answer to a core request in the new form: events renamed, watch events one by one
/// (one per chunk, each a line of JSON); tables and statuses as they are.
pub(super) async fn events_v1_response(
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
                    event["object"] = present(&event["object"]);
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
        Body::from(to_body(&present(&value))),
    ))
}

/// What upstream requires of an event written in the new form, all reported at once.
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
    Err(KubeError::invalid(r.group, r.kind, name, causes))
}

fn to_body(value: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}

fn unappliable(e: String) -> KubeError {
    KubeError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Invalid",
        format!("the patch does not apply: {e}"),
    )
}

/// An answer in the new form: an event, or a list of them; a Status as it is.
fn present(value: &Value) -> Value {
    match value["kind"].as_str() {
        Some("Event") => crate::events::to_events_v1(value),
        Some("EventList") => {
            let mut list = value.clone();
            list["apiVersion"] = json!("events.k8s.io/v1");
            if let Some(items) = list["items"].as_array_mut() {
                for item in items {
                    *item = crate::events::to_events_v1(item);
                }
            }
            list
        }
        _ => value.clone(),
    }
}
