//! Reading the Kubernetes protobuf encoding that kubectl's typed clients send (`kubectl create
//! deployment|namespace|role|pdb…`, `kubectl auth can-i`): the `k8s\0` envelope around a
//! `runtime.Unknown`, and the fields of the kinds served here, by their numbers in upstream's
//! `generated.proto`. Answers are always JSON, which those clients also accept.

use serde_json::{Map, Value, json};

#[derive(Clone, Copy)]
enum Field {
    Str,
    Int,
    Bool,
    Msg(&'static [(u32, &'static str, Field)]),
    Strs,
    Msgs(&'static [(u32, &'static str, Field)]),
    StrMap,
    /// `map<string, bytes>`, base64 in JSON.
    BytesMap,
    /// `map<string, Quantity>`.
    QuantityMap,
    IntOrString,
    /// Timestamps and anything else the server sets: skipped.
    Skip,
}
use Field::*;

const LABEL_SELECTOR: &[(u32, &str, Field)] = &[
    (1, "matchLabels", StrMap),
    (
        2,
        "matchExpressions",
        Msgs(&[(1, "key", Str), (2, "operator", Str), (3, "values", Strs)]),
    ),
];
const OBJECT_META: &[(u32, &str, Field)] = &[
    (1, "name", Str),
    (2, "generateName", Str),
    (3, "namespace", Str),
    (6, "resourceVersion", Str),
    (11, "labels", StrMap),
    (12, "annotations", StrMap),
    // `kubectl create job --from=cronjob/…` names the job's owner.
    (
        13,
        "ownerReferences",
        Msgs(&[
            (1, "kind", Str),
            (3, "name", Str),
            (4, "uid", Str),
            (5, "apiVersion", Str),
            (6, "controller", Bool),
            (7, "blockOwnerDeletion", Bool),
        ]),
    ),
    (14, "finalizers", Strs),
];
const CONTAINER: &[(u32, &str, Field)] = &[
    (1, "name", Str),
    (2, "image", Str),
    (3, "command", Strs),
    (4, "args", Strs),
    (5, "workingDir", Str),
    (
        6,
        "ports",
        Msgs(&[
            (1, "name", Str),
            (2, "hostPort", Int),
            (3, "containerPort", Int),
            (4, "protocol", Str),
        ]),
    ),
    (7, "env", Msgs(&[(1, "name", Str), (2, "value", Str)])),
    (
        8,
        "resources",
        Msg(&[(1, "limits", QuantityMap), (2, "requests", QuantityMap)]),
    ),
    (13, "terminationMessagePath", Str),
    (14, "imagePullPolicy", Str),
];
const TOLERATION: &[(u32, &str, Field)] = &[
    (1, "key", Str),
    (2, "operator", Str),
    (3, "value", Str),
    (4, "effect", Str),
    (5, "tolerationSeconds", Int),
];
const POD_SPEC: &[(u32, &str, Field)] = &[
    (2, "containers", Msgs(CONTAINER)),
    (3, "restartPolicy", Str),
    (4, "terminationGracePeriodSeconds", Int),
    (6, "dnsPolicy", Str),
    (7, "nodeSelector", StrMap),
    (8, "serviceAccountName", Str),
    (10, "nodeName", Str),
    (19, "schedulerName", Str),
    (20, "initContainers", Msgs(CONTAINER)),
    (22, "tolerations", Msgs(TOLERATION)),
];
const POD_TEMPLATE: &[(u32, &str, Field)] = &[
    (1, "metadata", Msg(OBJECT_META)),
    (2, "spec", Msg(POD_SPEC)),
];
const DEPLOYMENT: &[(u32, &str, Field)] = &[
    (1, "metadata", Msg(OBJECT_META)),
    (
        2,
        "spec",
        Msg(&[
            (1, "replicas", Int),
            (2, "selector", Msg(LABEL_SELECTOR)),
            (3, "template", Msg(POD_TEMPLATE)),
            (
                4,
                "strategy",
                Msg(&[
                    (1, "type", Str),
                    (
                        2,
                        "rollingUpdate",
                        Msg(&[
                            (1, "maxUnavailable", IntOrString),
                            (2, "maxSurge", IntOrString),
                        ]),
                    ),
                ]),
            ),
            (5, "minReadySeconds", Int),
            (6, "revisionHistoryLimit", Int),
            (7, "paused", Bool),
            (9, "progressDeadlineSeconds", Int),
        ]),
    ),
    (3, "status", Skip),
];
const POD: &[(u32, &str, Field)] = &[
    (1, "metadata", Msg(OBJECT_META)),
    (2, "spec", Msg(POD_SPEC)),
    (3, "status", Skip),
];
const NAMESPACE: &[(u32, &str, Field)] = &[
    (1, "metadata", Msg(OBJECT_META)),
    (2, "spec", Skip),
    (3, "status", Skip),
];
const RESOURCE_ATTRIBUTES: &[(u32, &str, Field)] = &[
    (1, "namespace", Str),
    (2, "verb", Str),
    (3, "group", Str),
    (4, "version", Str),
    (5, "resource", Str),
    (6, "subresource", Str),
    (7, "name", Str),
];
const NON_RESOURCE_ATTRIBUTES: &[(u32, &str, Field)] = &[(1, "path", Str), (2, "verb", Str)];
const SELF_REVIEW: &[(u32, &str, Field)] = &[
    (1, "metadata", Msg(OBJECT_META)),
    (
        2,
        "spec",
        Msg(&[
            (1, "resourceAttributes", Msg(RESOURCE_ATTRIBUTES)),
            (2, "nonResourceAttributes", Msg(NON_RESOURCE_ATTRIBUTES)),
        ]),
    ),
    // The answer, which the server writes.
    (3, "status", Skip),
];
const REVIEW: &[(u32, &str, Field)] = &[
    (1, "metadata", Msg(OBJECT_META)),
    (
        2,
        "spec",
        Msg(&[
            (1, "resourceAttributes", Msg(RESOURCE_ATTRIBUTES)),
            (2, "nonResourceAttributes", Msg(NON_RESOURCE_ATTRIBUTES)),
            (3, "user", Str),
            (4, "groups", Strs),
            (6, "uid", Str),
        ]),
    ),
    (3, "status", Skip),
];
const POLICY_RULE: &[(u32, &str, Field)] = &[
    (1, "verbs", Strs),
    (2, "apiGroups", Strs),
    (3, "resources", Strs),
    (4, "resourceNames", Strs),
    (5, "nonResourceURLs", Strs),
];
const ROLE: &[(u32, &str, Field)] = &[
    (1, "metadata", Msg(OBJECT_META)),
    (2, "rules", Msgs(POLICY_RULE)),
];
const BINDING: &[(u32, &str, Field)] = &[
    (1, "metadata", Msg(OBJECT_META)),
    (
        2,
        "subjects",
        Msgs(&[
            (1, "kind", Str),
            (2, "apiGroup", Str),
            (3, "name", Str),
            (4, "namespace", Str),
        ]),
    ),
    (
        3,
        "roleRef",
        Msg(&[(1, "apiGroup", Str), (2, "kind", Str), (3, "name", Str)]),
    ),
];

const SERVICE_PORT: &[(u32, &str, Field)] = &[
    (1, "name", Str),
    (2, "protocol", Str),
    (3, "port", Int),
    (4, "targetPort", IntOrString),
    (5, "nodePort", Int),
    (6, "appProtocol", Str),
];
const SERVICE: &[(u32, &str, Field)] = &[
    (1, "metadata", Msg(OBJECT_META)),
    (
        2,
        "spec",
        Msg(&[
            (1, "ports", Msgs(SERVICE_PORT)),
            (2, "selector", StrMap),
            (3, "clusterIP", Str),
            (4, "type", Str),
            (5, "externalIPs", Strs),
            (7, "sessionAffinity", Str),
            (10, "externalName", Str),
            (11, "externalTrafficPolicy", Str),
        ]),
    ),
    (3, "status", Skip),
];
const CONFIG_MAP: &[(u32, &str, Field)] = &[
    (1, "metadata", Msg(OBJECT_META)),
    (2, "data", StrMap),
    (3, "binaryData", BytesMap),
    (4, "immutable", Bool),
];
const SECRET: &[(u32, &str, Field)] = &[
    (1, "metadata", Msg(OBJECT_META)),
    (2, "data", BytesMap),
    (3, "type", Str),
    (4, "stringData", StrMap),
    (5, "immutable", Bool),
];
const SERVICE_ACCOUNT: &[(u32, &str, Field)] = &[
    (1, "metadata", Msg(OBJECT_META)),
    (4, "automountServiceAccountToken", Bool),
];

const JOB_SPEC: &[(u32, &str, Field)] = &[
    (1, "parallelism", Int),
    (2, "completions", Int),
    (3, "activeDeadlineSeconds", Int),
    (4, "selector", Msg(LABEL_SELECTOR)),
    (5, "manualSelector", Bool),
    (6, "template", Msg(POD_TEMPLATE)),
    (7, "backoffLimit", Int),
    (8, "ttlSecondsAfterFinished", Int),
    (9, "completionMode", Str),
    (10, "suspend", Bool),
    (14, "podReplacementPolicy", Str),
];
const JOB: &[(u32, &str, Field)] = &[
    (1, "metadata", Msg(OBJECT_META)),
    (2, "spec", Msg(JOB_SPEC)),
    (3, "status", Skip),
];
const CRON_JOB: &[(u32, &str, Field)] = &[
    (1, "metadata", Msg(OBJECT_META)),
    (
        2,
        "spec",
        Msg(&[
            (1, "schedule", Str),
            (2, "startingDeadlineSeconds", Int),
            (3, "concurrencyPolicy", Str),
            (4, "suspend", Bool),
            (
                5,
                "jobTemplate",
                Msg(&[
                    (1, "metadata", Msg(OBJECT_META)),
                    (2, "spec", Msg(JOB_SPEC)),
                ]),
            ),
            (6, "successfulJobsHistoryLimit", Int),
            (7, "failedJobsHistoryLimit", Int),
            (8, "timeZone", Str),
        ]),
    ),
    (3, "status", Skip),
];

const HPA_V1: &[(u32, &str, Field)] = &[
    (1, "metadata", Msg(OBJECT_META)),
    (
        2,
        "spec",
        Msg(&[
            (
                1,
                "scaleTargetRef",
                Msg(&[(1, "kind", Str), (2, "name", Str), (3, "apiVersion", Str)]),
            ),
            (2, "minReplicas", Int),
            (3, "maxReplicas", Int),
            (4, "targetCPUUtilizationPercentage", Int),
        ]),
    ),
    (3, "status", Skip),
];

const POD_DISRUPTION_BUDGET: &[(u32, &str, Field)] = &[
    (1, "metadata", Msg(OBJECT_META)),
    (
        2,
        "spec",
        Msg(&[
            (1, "minAvailable", IntOrString),
            (2, "selector", Msg(LABEL_SELECTOR)),
            (3, "maxUnavailable", IntOrString),
            (4, "unhealthyPodEvictionPolicy", Str),
        ]),
    ),
    (3, "status", Skip),
];

fn schema_of(api_version: &str, kind: &str) -> Option<&'static [(u32, &'static str, Field)]> {
    Some(match kind {
        "HorizontalPodAutoscaler" if api_version == "autoscaling/v1" => HPA_V1,
        "Deployment" => DEPLOYMENT,
        "Pod" => POD,
        "Job" => JOB,
        "CronJob" => CRON_JOB,
        "PodDisruptionBudget" => POD_DISRUPTION_BUDGET,
        "Namespace" => NAMESPACE,
        "ConfigMap" => CONFIG_MAP,
        "Service" => SERVICE,
        "Secret" => SECRET,
        "ServiceAccount" => SERVICE_ACCOUNT,
        "SelfSubjectAccessReview" => SELF_REVIEW,
        "SubjectAccessReview" => REVIEW,
        "Role" | "ClusterRole" => ROLE,
        "RoleBinding" | "ClusterRoleBinding" => BINDING,
        _ => return None,
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.bytes.get(self.at).ok_or("truncated varint")?;
            self.at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint too long".into())
    }

    fn chunk(&mut self) -> Result<&'a [u8], String> {
        let len = self.varint()? as usize;
        let end = self
            .at
            .checked_add(len)
            .filter(|e| *e <= self.bytes.len())
            .ok_or("truncated field")?;
        let chunk = &self.bytes[self.at..end];
        self.at = end;
        Ok(chunk)
    }

    /// Every field as `(number, varint or bytes)`.
    fn fields(mut self) -> Result<Vec<(u32, Wire<'a>)>, String> {
        let mut fields = Vec::new();
        while self.at < self.bytes.len() {
            let tag = self.varint()?;
            let (number, wire) = ((tag >> 3) as u32, tag & 7);
            let value = match wire {
                0 => Wire::Varint(self.varint()?),
                2 => Wire::Bytes(self.chunk()?),
                1 => {
                    self.at += 8;
                    continue;
                }
                5 => {
                    self.at += 4;
                    continue;
                }
                other => return Err(format!("unsupported wire type {other}")),
            };
            fields.push((number, value));
        }
        Ok(fields)
    }
}

enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn text(bytes: &[u8]) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|e| e.to_string())
}

/// Decodes one message; `at` names it in errors (`spec.template.spec.containers[]`).
fn message(bytes: &[u8], schema: &[(u32, &str, Field)], at: &str) -> Result<Value, String> {
    let mut object = Map::new();
    for (number, wire) in (Reader { bytes, at: 0 }).fields()? {
        let Some((_, name, field)) = schema.iter().find(|(n, _, _)| *n == number) else {
            // Go's encoder writes every non-pointer field, set or not: a zero or an empty
            // message says nothing. Anything else would be lost, so it is refused, as
            // strict decoding refuses an unknown JSON field.
            if carries_nothing(&wire) {
                continue;
            }
            return Err(format!(
                "field number {number} of {} is not known to this server's protobuf decoder; send the object as JSON",
                if at.is_empty() { "the object" } else { at }
            ));
        };
        let name = name.to_string();
        match (field, wire) {
            // Go's JSON omits empty strings; its protobuf sends them.
            (Str, Wire::Bytes([])) => {}
            (Str, Wire::Bytes(b)) => {
                object.insert(name, json!(text(b)?));
            }
            (Int, Wire::Varint(v)) => {
                object.insert(name, json!(v as i64));
            }
            (Bool, Wire::Varint(v)) => {
                object.insert(name, json!(v != 0));
            }
            (Msg(inner), Wire::Bytes(b)) => {
                object.insert(name.clone(), message(b, inner, &join(at, &name))?);
            }
            (Strs, Wire::Bytes(b)) => {
                let list = object.entry(name).or_insert_with(|| json!([]));
                list.as_array_mut().expect("a list").push(json!(text(b)?));
            }
            (Msgs(inner), Wire::Bytes(b)) => {
                let item = message(b, inner, &format!("{}[]", join(at, &name)))?;
                let list = object.entry(name).or_insert_with(|| json!([]));
                list.as_array_mut().expect("a list").push(item);
            }
            (StrMap, Wire::Bytes(b)) => {
                let entry = message(b, &[(1, "key", Str), (2, "value", Str)], &join(at, &name))?;
                let map = object.entry(name).or_insert_with(|| json!({}));
                map[entry["key"].as_str().unwrap_or("")] =
                    json!(entry["value"].as_str().unwrap_or(""));
            }
            (BytesMap, Wire::Bytes(b)) => {
                let mut key = String::new();
                let mut value: &[u8] = &[];
                for (number, wire) in (Reader { bytes: b, at: 0 }).fields()? {
                    match (number, wire) {
                        (1, Wire::Bytes(k)) => key = text(k)?,
                        (2, Wire::Bytes(v)) => value = v,
                        _ => {}
                    }
                }
                use base64::Engine;
                let map = object.entry(name).or_insert_with(|| json!({}));
                map[key] = json!(base64::engine::general_purpose::STANDARD.encode(value));
            }
            (QuantityMap, Wire::Bytes(b)) => {
                let entry = message(
                    b,
                    &[(1, "key", Str), (2, "value", Msg(&[(1, "string", Str)]))],
                    &join(at, &name),
                )?;
                let map = object.entry(name).or_insert_with(|| json!({}));
                map[entry["key"].as_str().unwrap_or("")] = entry["value"]["string"].clone();
            }
            (IntOrString, Wire::Bytes(b)) => {
                let v = message(
                    b,
                    &[(1, "type", Int), (2, "intVal", Int), (3, "strVal", Str)],
                    &join(at, &name),
                )?;
                let value = if v["type"] == 1 {
                    v["strVal"].clone()
                } else {
                    v["intVal"].clone()
                };
                object.insert(name, value);
            }
            (Skip, _) => {}
            (_, wire) if carries_nothing(&wire) => {}
            _ => return Err(format!("field {name} has the wrong wire type")),
        }
    }
    Ok(Value::Object(object))
}

fn join(at: &str, name: &str) -> String {
    if at.is_empty() {
        name.to_string()
    } else {
        format!("{at}.{name}")
    }
}

/// A zero, an empty string, or a message of nothing but those: what Go writes for a field
/// left unset.
fn carries_nothing(wire: &Wire) -> bool {
    match wire {
        Wire::Varint(v) => *v == 0,
        Wire::Bytes(bytes) => {
            bytes.is_empty()
                || (Reader { bytes, at: 0 })
                    .fields()
                    .is_ok_and(|fields| fields.iter().all(|(_, w)| carries_nothing(w)))
        }
    }
}

/// The object in a protobuf request body, as JSON.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    let envelope = body
        .strip_prefix(b"k8s\0")
        .ok_or("not a Kubernetes protobuf envelope")?;
    // `runtime.Unknown`: 1 the type, 2 the object's own encoding.
    let (mut type_meta, mut raw) = (Value::Null, &[][..]);
    for (number, wire) in (Reader {
        bytes: envelope,
        at: 0,
    })
    .fields()?
    {
        match (number, wire) {
            (1, Wire::Bytes(b)) => {
                type_meta = message(b, &[(1, "apiVersion", Str), (2, "kind", Str)], "typeMeta")?
            }
            (2, Wire::Bytes(b)) => raw = b,
            _ => {}
        }
    }
    let kind = type_meta["kind"].as_str().unwrap_or("").to_string();
    let schema = schema_of(type_meta["apiVersion"].as_str().unwrap_or(""), &kind)
        .ok_or_else(|| format!("no protobuf decoding for kind `{kind}`; send JSON"))?;
    let mut object = message(raw, schema, "")?;
    object["apiVersion"] = type_meta["apiVersion"].clone();
    object["kind"] = json!(kind);
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_field(number: u32, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![((number << 3) | 2) as u8, bytes.len() as u8];
        out.extend_from_slice(bytes);
        out
    }

    fn varint_field(number: u32, value: u8) -> Vec<u8> {
        vec![(number << 3) as u8, value]
    }

    fn envelope(kind: &str, object: &[u8]) -> Vec<u8> {
        let type_meta = [bytes_field(1, b"apps/v1"), bytes_field(2, kind.as_bytes())].concat();
        let unknown = [bytes_field(1, &type_meta), bytes_field(2, object)].concat();
        [b"k8s\0".to_vec(), unknown].concat()
    }

    #[test]
    fn unset_fields_are_skipped_and_set_unknown_ones_refused() {
        let metadata = bytes_field(1, &bytes_field(1, b"web"));
        // Field 15 of a Deployment is not in the schema: unset (Go writes zeros and empty
        // messages for non-pointer fields) it says nothing; set, it would be lost.
        let unset = [
            metadata.clone(),
            varint_field(15, 0),
            bytes_field(15, &varint_field(1, 0)),
        ]
        .concat();
        let decoded = decode(&envelope("Deployment", &unset)).unwrap();
        assert_eq!(decoded["metadata"]["name"], "web");
        let set = [metadata.clone(), varint_field(15, 7)].concat();
        let error = decode(&envelope("Deployment", &set)).unwrap_err();
        assert!(error.contains("field number 15 of the object"), "{error}");
        let nested = [
            metadata,
            bytes_field(2, &bytes_field(3, &bytes_field(2, &varint_field(14, 1)))),
        ]
        .concat();
        let error = decode(&envelope("Deployment", &nested)).unwrap_err();
        assert!(
            error.contains("field number 14 of spec.template.spec"),
            "{error}"
        );
    }
}
