//! Admission: a request's body decoded into its kind's type, defaults, validation of names,
//! quantities and kinds, unknown fields by `fieldValidation`, and escalation prevention.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;

impl ClusterApi {
    /// Defaults, validation and the checks that depend on other objects.
    pub(super) fn admit(
        &self,
        user: &UserInfo,
        r: &ResourceType,
        namespace: &str,
        name: &str,
        mut object: Value,
        old: Option<&Value>,
    ) -> KubeResult<Value> {
        let mut causes = Vec::new();
        validate_name(r, name, &mut causes);
        defaults(r, &mut object);
        validate_quantities(&object, &mut causes);
        validate_kind(r, &object, old, &mut causes);
        if r.plural == "services" && causes.is_empty() {
            crate::services::admit(self, &mut object, old, &mut causes);
        }
        if !causes.is_empty() {
            return Err(KubeError::invalid(&r.group, &r.kind, name, causes));
        }
        if r.plural == "pods"
            && old.is_none()
            && let Some(refusal) = self.pod_security_refusal(namespace, &object)
        {
            return Err(KubeError::forbidden(refusal));
        }
        // Defaults must leave a well-formed object; this checks they did.
        decode_request(r, &object, FieldValidation::Ignore)?;
        self.prevent_escalation(user, r, namespace, &object)?;
        Ok(object)
    }

    pub(super) fn prevent_escalation(
        &self,
        user: &UserInfo,
        r: &ResourceType,
        namespace: &str,
        object: &Value,
    ) -> KubeResult<()> {
        let holds = |verb: &str, resource: &str, name: &str| {
            self.authorize(
                user,
                &rbac::Request::Resource {
                    verb: verb.into(),
                    namespace: namespace.into(),
                    api_group: "rbac.authorization.k8s.io".into(),
                    resource: resource.into(),
                    subresource: String::new(),
                    name: name.into(),
                },
            )
            .allowed
        };
        let wanted = match r.plural.as_ref() {
            "roles" | "clusterroles" => {
                if holds(
                    "escalate",
                    &r.plural,
                    object["metadata"]["name"].as_str().unwrap_or(""),
                ) {
                    return Ok(());
                }
                serde_json::from_value(object["rules"].clone()).unwrap_or_default()
            }
            "rolebindings" | "clusterrolebindings" => {
                let role_ref: k8s_openapi::api::rbac::v1::RoleRef =
                    serde_json::from_value(object["roleRef"].clone())
                        .map_err(|e| KubeError::bad_request(e.to_string()))?;
                let role_resource = if role_ref.kind == "ClusterRole" {
                    "clusterroles"
                } else {
                    "roles"
                };
                if holds("bind", role_resource, &role_ref.name) {
                    return Ok(());
                }
                match rbac::role_rules(&self.objects, namespace, &role_ref) {
                    Some(rules) => rules,
                    // Binding a role that does not exist yet grants nothing yet, but
                    // upstream still requires `bind` for it.
                    None => {
                        return Err(KubeError::forbidden(format!(
                            "{} \"{}\" is forbidden: user \"{}\" (groups={:?}) is attempting to grant RBAC permissions not currently held: {} \"{}\" not found",
                            qualified(&r.group, &r.plural),
                            object["metadata"]["name"].as_str().unwrap_or(""),
                            user.name,
                            user.groups,
                            role_ref.kind,
                            role_ref.name
                        )));
                    }
                }
            }
            _ => return Ok(()),
        };
        let owner: Vec<_> = rbac::grants(&self.objects, user, namespace)
            .into_iter()
            .map(|(rule, _)| rule)
            .collect();
        let missing = rbac::uncovered(&owner, &wanted);
        if missing.is_empty() {
            Ok(())
        } else {
            Err(KubeError::forbidden(format!(
                "{} \"{}\" is forbidden: {}",
                qualified(&r.group, &r.plural),
                object["metadata"]["name"].as_str().unwrap_or(""),
                rbac::escalation_message(user, &missing)
            )))
        }
    }
}

pub(super) fn parse_body(body: &[u8]) -> KubeResult<Value> {
    serde_json::from_slice(body).map_err(|e| {
        KubeError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
    })
}

/// An apply configuration: YAML, of which JSON is a part.
pub(super) fn parse_apply_body(body: &[u8]) -> KubeResult<Value> {
    serde_yaml_ng::from_slice(body)
        .map_err(|e| KubeError::bad_request(format!("error decoding YAML: {e}")))
}

/// Decodes a request's object into its kind's type before anything else touches it
/// (`decode`): the typed form, and the warnings for the response.
pub(super) fn decode_request(
    r: &ResourceType,
    object: &Value,
    validation: FieldValidation,
) -> KubeResult<(Value, Vec<String>)> {
    let name = object["metadata"]["name"].as_str().unwrap_or("");
    let typed = match &r.custom {
        Some(custom) => {
            // Its metadata is every object's; the rest is what its schema says.
            crate::decode::typed::<ObjectMeta>(&object["metadata"])
                .map_err(|e| undecodable(&r.kind, &r.version, &r.group, name, e))?;
            crate::custom::decode(custom, object)
                .map_err(|causes| KubeError::invalid(&r.group, &r.kind, name, causes))?
        }
        None => {
            (r.decode)(object).map_err(|e| undecodable(&r.kind, &r.version, &r.group, name, e))?
        }
    };
    unknown_fields(typed, validation)
}

pub(super) fn decode_as<T: serde::de::DeserializeOwned + serde::Serialize>(
    kind: &str,
    version: &str,
    object: &Value,
    validation: FieldValidation,
) -> KubeResult<(Value, Vec<String>)> {
    let name = object["metadata"]["name"].as_str().unwrap_or("");
    let typed =
        crate::decode::typed::<T>(object).map_err(|e| undecodable(kind, version, "", name, e))?;
    unknown_fields(typed, validation)
}

pub(super) fn undecodable(
    kind: &str,
    version: &str,
    group: &str,
    name: &str,
    e: Undecodable,
) -> KubeError {
    match e {
        Undecodable::Missing { field } => {
            KubeError::invalid(group, kind, name, vec![(field, "Required value".into())])
        }
        Undecodable::Invalid { field, message } => {
            let at = if field.is_empty() {
                String::new()
            } else {
                format!("{field}: ")
            };
            KubeError::bad_request(format!(
                "{kind} in version \"{version}\" cannot be handled as a {kind}: {at}{message}"
            ))
        }
    }
}

/// Upstream's answer to unknown fields: refused under `Strict`, a warning under `Warn`.
pub(super) fn unknown_fields(
    typed: Typed,
    validation: FieldValidation,
) -> KubeResult<(Value, Vec<String>)> {
    let named: Vec<String> = typed
        .unknown
        .iter()
        .map(|field| format!("unknown field \"{field}\""))
        .collect();
    match validation {
        FieldValidation::Strict if !named.is_empty() => Err(KubeError::bad_request(format!(
            "strict decoding error: {}",
            named.join(", ")
        ))),
        FieldValidation::Warn => Ok((typed.object, named)),
        _ => Ok((typed.object, Vec::new())),
    }
}

/// `Warning: 299 - "…"` headers, which kubectl prints as `Warning: …`.
pub(super) fn with_warnings(mut response: Response, warnings: &[String]) -> Response {
    for warning in warnings {
        let text = format!("299 - {}", serde_json::Value::String(warning.clone()));
        if let Ok(value) = axum::http::HeaderValue::from_str(&text) {
            response.headers_mut().append("warning", value);
        }
    }
    response
}

pub(super) fn check_kind(r: &ResourceType, object: &Value) -> KubeResult<()> {
    let api_version = object["apiVersion"].as_str().unwrap_or("");
    let kind = object["kind"].as_str().unwrap_or("");
    if (!api_version.is_empty() && api_version != r.api_version())
        || (!kind.is_empty() && kind != r.kind)
    {
        return Err(KubeError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            r.api_version()
        )));
    }
    Ok(())
}

pub(super) fn validate_name(r: &ResourceType, name: &str, causes: &mut Vec<(String, String)>) {
    if name.is_empty() {
        causes.push((
            "metadata.name".into(),
            "Required value: name or generateName is required".into(),
        ));
        return;
    }
    // RBAC objects allow path-segment names (`system:discovery`); the rest are DNS subdomains.
    if r.group == "rbac.authorization.k8s.io" {
        if name.contains('/') || name.contains('%') || name == "." || name == ".." {
            causes.push((
                "metadata.name".into(),
                format!("Invalid value: \"{name}\": may not contain '/' or '%'"),
            ));
        }
        return;
    }
    let label = r.plural == "namespaces";
    let valid = name.len() <= if label { 63 } else { 253 }
        && name.split('.').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
        && !(label && name.contains('.'));
    if !valid {
        let message = if label {
            format!(
                "Invalid value: \"{name}\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
            )
        } else {
            format!(
                "Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
            )
        };
        causes.push(("metadata.name".into(), message));
    }
}

pub(super) fn pod_spec_of(object: &Value) -> Option<(&Value, &'static str)> {
    match object["kind"].as_str()? {
        "Pod" => Some((&object["spec"], "spec")),
        "CronJob" => Some((
            &object["spec"]["jobTemplate"]["spec"]["template"]["spec"],
            "spec.jobTemplate.spec.template.spec",
        )),
        kind if crate::workloads::TEMPLATED_KINDS.contains(&kind) => {
            Some((&object["spec"]["template"]["spec"], "spec.template.spec"))
        }
        _ => None,
    }
}

pub(super) fn validate_quantities(object: &Value, causes: &mut Vec<(String, String)>) {
    let Some((spec, prefix)) = pod_spec_of(object) else {
        return;
    };
    for (i, container) in spec["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        for kind in ["requests", "limits"] {
            for (resource, value) in container["resources"][kind]
                .as_object()
                .into_iter()
                .flatten()
            {
                let text = value
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| value.to_string());
                if quantity::parse(&text).is_none_or(|q| q < 0.0) {
                    causes.push((
                        format!("{prefix}.containers[{i}].resources.{kind}[{resource}]"),
                        format!("Invalid value: \"{text}\": {}", quantity::MALFORMED),
                    ));
                }
            }
        }
    }
}

pub(super) fn defaults(r: &ResourceType, object: &mut Value) {
    match r.plural.as_ref() {
        "namespaces" => {
            let name = object["metadata"]["name"].clone();
            object["metadata"]["labels"]["kubernetes.io/metadata.name"] = name;
            if object["status"]["phase"].is_null() {
                object["status"] = json!({"phase": "Active"});
            }
        }
        "services" => crate::services::defaults(object),
        "pods" if object["status"]["phase"].is_null() => {
            object["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
        }
        "deployments" => fill(
            &mut object["spec"],
            json!({
                "replicas": 1,
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                "revisionHistoryLimit": 10,
                "progressDeadlineSeconds": 600,
            }),
        ),
        "replicasets" => fill(&mut object["spec"], json!({"replicas": 1})),
        "statefulsets" => fill(
            &mut object["spec"],
            json!({
                "replicas": 1,
                "podManagementPolicy": "OrderedReady",
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
                "revisionHistoryLimit": 10,
                "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
            }),
        ),
        "daemonsets" => fill(
            &mut object["spec"],
            json!({
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
                "revisionHistoryLimit": 10,
            }),
        ),
        "jobs" => crate::workloads::jobs::defaults(object),
        "cronjobs" => fill(
            &mut object["spec"],
            json!({
                "concurrencyPolicy": "Allow",
                "suspend": false,
                "successfulJobsHistoryLimit": 3,
                "failedJobsHistoryLimit": 1,
            }),
        ),
        "horizontalpodautoscalers" => {
            fill(&mut object["spec"], json!({"minReplicas": 1}));
            // Upstream's default: 80 % of the pods' CPU requests.
            if object["spec"]["metrics"]
                .as_array()
                .is_none_or(|m| m.is_empty())
            {
                object["spec"]["metrics"] = json!([{"type": "Resource", "resource": {
                    "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80},
                }}]);
            }
        }
        // stringData is write-only: its entries become base64 data, as upstream stores them.
        "secrets" => {
            if let Some(Value::Object(plain)) =
                object.as_object_mut().and_then(|o| o.remove("stringData"))
            {
                for (key, value) in plain {
                    let encoded = base64::engine::general_purpose::STANDARD
                        .encode(value.as_str().unwrap_or(""));
                    object["data"][key] = json!(encoded);
                }
            }
            if object["type"].is_null() {
                object["type"] = json!("Opaque");
            }
        }
        _ => {}
    }
    // `rollingUpdate` is defaulted only for the rolling strategy; upstream refuses it with
    // `Recreate` or `OnDelete`.
    let strategy = match r.plural.as_ref() {
        "deployments" => "strategy",
        _ => "updateStrategy",
    };
    if TEMPLATED_WITH_STRATEGY.contains(&r.plural.as_ref())
        && object["spec"][strategy]["type"] != "RollingUpdate"
        && let Some(s) = object["spec"][strategy].as_object_mut()
    {
        s.remove("rollingUpdate");
    }
}

const TEMPLATED_WITH_STRATEGY: &[&str] = &["deployments", "statefulsets", "daemonsets"];

/// Sets each of `defaults`' fields that `spec` leaves unset, recursively, as upstream's
/// defaulting fills a partly given `strategy`.
fn fill(spec: &mut Value, defaults: Value) {
    let Value::Object(defaults) = defaults else {
        return;
    };
    for (field, default) in defaults {
        if spec[&field].is_null() {
            spec[&field] = default;
        } else if default.is_object() && spec[&field].is_object() {
            fill(&mut spec[&field], default);
        }
    }
}

pub(super) fn validate_kind(
    r: &ResourceType,
    object: &Value,
    old: Option<&Value>,
    causes: &mut Vec<(String, String)>,
) {
    match r.plural.as_ref() {
        crate::custom::DEFINITIONS => crate::custom::validate_definition(object, old, causes),
        "deployments" | "replicasets" | "statefulsets" | "daemonsets" => {
            let spec = &object["spec"];
            // Decoded as Go decodes, an absent selector is an empty one.
            if spec["selector"].as_object().is_none_or(|s| {
                s.values().all(|v| {
                    v.as_object().is_some_and(|m| m.is_empty())
                        || v.as_array().is_some_and(|a| a.is_empty())
                })
            }) {
                causes.push(("spec.selector".into(), "Required value".into()));
            } else if !crate::selectors::label_selector_matches(
                &spec["selector"],
                &spec["template"]["metadata"]["labels"],
            ) {
                causes.push((
                    "spec.template.metadata.labels".into(),
                    format!(
                        "Invalid value: {}: `selector` does not match template `labels`",
                        spec["template"]["metadata"]["labels"]
                    ),
                ));
            }
            if spec["replicas"].as_i64().is_some_and(|n| n < 0) {
                causes.push((
                    "spec.replicas".into(),
                    format!(
                        "Invalid value: {}: must be greater than or equal to 0",
                        spec["replicas"]
                    ),
                ));
            }
            if spec["template"]["spec"]["containers"]
                .as_array()
                .is_none_or(|c| c.is_empty())
            {
                causes.push((
                    "spec.template.spec.containers".into(),
                    "Required value".into(),
                ));
            }
            if let Some(old) = old
                && old["spec"]["selector"] != spec["selector"]
            {
                causes.push((
                    "spec.selector".into(),
                    format!("Invalid value: {}: field is immutable", spec["selector"]),
                ));
            }
        }
        "jobs" => crate::workloads::jobs::validate(&object["spec"], "spec", old, causes),
        "cronjobs" => crate::workloads::cronjobs::validate(&object["spec"], causes),
        "horizontalpodautoscalers" => {
            let spec = &object["spec"];
            let min = spec["minReplicas"].as_i64().unwrap_or(1);
            if min < 1 {
                causes.push((
                    "spec.minReplicas".into(),
                    format!("Invalid value: {min}: must be greater than or equal to 1"),
                ));
            }
            let max = spec["maxReplicas"].as_i64().unwrap_or(0);
            if max < min {
                causes.push((
                    "spec.maxReplicas".into(),
                    format!("Invalid value: {max}: must be greater than or equal to `minReplicas`"),
                ));
            }
        }
        "pods" => {
            if object["spec"]["containers"]
                .as_array()
                .is_none_or(|c| c.is_empty())
            {
                causes.push(("spec.containers".into(), "Required value".into()));
            }
            if let Some(old) = old {
                let node = |o: &Value| o["spec"]["nodeName"].clone();
                if !node(old).is_null() && node(old) != node(object) {
                    causes.push(("spec.nodeName".into(), "Forbidden: pod updates may not change fields other than `spec.containers[*].image`, `spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to existing tolerations), `spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)".into()));
                }
            }
        }
        "rolebindings" | "clusterrolebindings" => {
            if let Some(old) = old
                && old["roleRef"] != object["roleRef"]
            {
                causes.push((
                    "roleRef".into(),
                    format!(
                        "Invalid value: {}: cannot change roleRef",
                        object["roleRef"]
                    ),
                ));
            }
        }
        _ => {}
    }
}
