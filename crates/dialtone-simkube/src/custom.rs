//! Custom resources, as kube-apiserver's apiextensions server serves them. A
//! CustomResourceDefinition is checked as upstream checks it (its name, group, scope, one
//! storage version, and a structural schema for every version), established by a
//! controller pass, and from then on its kind is served beside the built-ins: discovery,
//! OpenAPI, tables with its printer columns, and objects decoded against its schema
//! (types, formats of numbers and strings, enums, bounds, required fields, defaults, and
//! unknown fields pruned or refused as `fieldValidation` says). Versions convert as
//! upstream's `None` strategy does: only `apiVersion` changes. Deleting a definition
//! deletes its objects.

use std::borrow::Cow;
use std::sync::Arc;

use jsonpath_rust::JsonPath;
use serde_json::{Map, Value, json};

use crate::cluster::{ClusterApi, now};
use crate::decode::{Typed, Undecodable};
use crate::resources::{CRUD, CustomVersion, PrinterColumn, RESOURCES, ResourceType, ScalePaths};

/// The collection definitions are kept in.
pub const DEFINITIONS: &str = "customresourcedefinitions";

/// The annotation a definition in a Kubernetes group needs (upstream's API review).
const APPROVED: &str = "api-approved.kubernetes.io";

/// The resources one cluster serves: the built-ins, then those its established
/// definitions add.
#[derive(Default)]
pub struct Served {
    custom: Vec<Arc<ResourceType>>,
}

impl Served {
    /// Reads the established definitions among `definitions`.
    pub fn read(definitions: &[Arc<Value>]) -> Self {
        let custom = definitions
            .iter()
            .filter(|d| established(d))
            .flat_map(|d| resource_types(d))
            .map(Arc::new)
            .collect();
        Served { custom }
    }

    /// Every resource served, built-ins first.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<ResourceType>> {
        RESOURCES.iter().chain(self.custom.iter())
    }

    /// The resource `plural` of `group/version`, if served.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
            .cloned()
    }

    /// Only the custom resources.
    pub fn custom(&self) -> &[Arc<ResourceType>] {
        &self.custom
    }
}

fn established(definition: &Value) -> bool {
    crate::workloads::condition_holds(definition, "Established")
}

/// The resources a definition serves, one per served version.
fn resource_types(definition: &Value) -> Vec<ResourceType> {
    let spec = &definition["spec"];
    let names = &spec["names"];
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    let kind = text(&names["kind"]);
    let singular = match names["singular"].as_str() {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => kind.to_lowercase(),
    };
    let short_names: Vec<_> = names["shortNames"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n.as_str().map(|n| Cow::Owned(n.to_string())))
        .collect();
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    let storage_version = versions
        .iter()
        .find(|v| v["storage"] == true)
        .map(|v| text(&v["name"]))
        .unwrap_or_default();
    versions
        .iter()
        .filter(|v| v["served"] == true)
        .map(|v| {
            let subresources = &v["subresources"];
            let status = subresources["status"].is_object();
            let scale = &subresources["scale"];
            let scale = scale.is_object().then(|| ScalePaths {
                spec_replicas: text(&scale["specReplicasPath"]),
                status_replicas: text(&scale["statusReplicasPath"]),
                label_selector: scale["labelSelectorPath"].as_str().map(str::to_string),
            });
            ResourceType {
                group: Cow::Owned(text(&spec["group"])),
                version: Cow::Owned(text(&v["name"])),
                kind: Cow::Owned(kind.clone()),
                plural: Cow::Owned(text(&names["plural"])),
                singular: Cow::Owned(singular.clone()),
                namespaced: spec["scope"] == "Namespaced",
                verbs: CRUD,
                short_names: short_names.clone(),
                subresources: match (status, scale.is_some()) {
                    (true, true) => &["status", "scale"],
                    (true, false) => &["status"],
                    (false, true) => &["scale"],
                    (false, false) => &[],
                },
                decode: undecodable_without_schema,
                schema: crate::resources::no_schema,
                custom: Some(Arc::new(CustomVersion {
                    schema: v["schema"]["openAPIV3Schema"].clone(),
                    columns: columns(&v["additionalPrinterColumns"]),
                    storage_version: storage_version.clone(),
                    scale,
                    categories: names["categories"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|c| c.as_str().map(str::to_string))
                        .collect(),
                })),
            }
        })
        .collect()
}

/// Custom objects are decoded against their schema ([`decode`]), never by a type.
fn undecodable_without_schema(_: &Value) -> Result<Typed, Undecodable> {
    Err(Undecodable::Invalid {
        field: String::new(),
        message: "a custom resource is decoded by its schema".into(),
    })
}

/// The printer columns a version declares; without any, upstream shows the age.
fn columns(declared: &Value) -> Vec<PrinterColumn> {
    let declared: Vec<PrinterColumn> = declared
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| PrinterColumn {
            name: c["name"].as_str().unwrap_or("").to_string(),
            kind: c["type"].as_str().unwrap_or("string").to_string(),
            description: c["description"].as_str().unwrap_or("").to_string(),
            json_path: c["jsonPath"].as_str().unwrap_or("").to_string(),
            priority: c["priority"].as_i64().unwrap_or(0),
        })
        .collect();
    if declared.is_empty() {
        return vec![PrinterColumn {
            name: "Age".into(),
            kind: "date".into(),
            description: String::new(),
            json_path: ".metadata.creationTimestamp".into(),
            priority: 0,
        }];
    }
    declared
}

/// The value a printer column shows for `object`: the first its path selects.
pub fn column_value(object: &Value, column: &PrinterColumn) -> Value {
    let path = format!("${}", column.json_path);
    object
        .query(&path)
        .ok()
        .and_then(|found| found.first().map(|v| (*v).clone()))
        .unwrap_or(Value::Null)
}

/// The controller pass that establishes new definitions, as upstream's naming and
/// establishing controllers do: names accepted, `Established`, and the storage version
/// recorded among `storedVersions`.
pub fn establish(cluster: &ClusterApi) {
    for definition in cluster.objects.list(DEFINITIONS, None).0 {
        let spec = &definition["spec"];
        let storage = spec["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["storage"] == true)
            .and_then(|v| v["name"].as_str())
            .unwrap_or("");
        let mut stored: Vec<Value> = definition["status"]["storedVersions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !stored.iter().any(|v| v == storage) {
            stored.push(json!(storage));
        }
        let mut names = spec["names"].clone();
        if names["singular"].as_str().unwrap_or("").is_empty() {
            names["singular"] = json!(names["kind"].as_str().unwrap_or("").to_lowercase());
        }
        if names["listKind"].as_str().unwrap_or("").is_empty() {
            names["listKind"] = json!(format!("{}List", names["kind"].as_str().unwrap_or("")));
        }
        let status = &definition["status"];
        if established(&definition)
            && status["acceptedNames"] == names
            && status["storedVersions"] == json!(stored)
        {
            continue;
        }
        let condition = |kind: &str, reason: &str, message: &str| {
            json!({
                "type": kind, "status": "True", "reason": reason, "message": message,
                "lastTransitionTime": now(),
            })
        };
        let mut next = (*definition).clone();
        next["status"] = json!({
            "acceptedNames": names,
            "conditions": [
                condition("NamesAccepted", "NoConflicts", "no conflicts found"),
                condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
            ],
            "storedVersions": stored,
        });
        let name = definition["metadata"]["name"].as_str().unwrap_or("");
        let _ = cluster
            .objects
            .update(&crate::cluster::key(DEFINITIONS, "", name), next);
    }
}

/// What upstream checks of a definition beyond its type: its name, group, scope, versions
/// and that every version's schema is structural.
pub fn validate_definition(
    definition: &Value,
    old: Option<&Value>,
    causes: &mut Vec<(String, String)>,
) {
    let spec = &definition["spec"];
    let group = spec["group"].as_str().unwrap_or("");
    let plural = spec["names"]["plural"].as_str().unwrap_or("");
    let name = definition["metadata"]["name"].as_str().unwrap_or("");
    if name != format!("{plural}.{group}") {
        causes.push((
            "metadata.name".into(),
            format!("Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    if !group.contains('.') {
        causes.push((
            "spec.group".into(),
            format!("Invalid value: \"{group}\": should be a domain with at least one dot"),
        ));
    }
    // Kubernetes' own groups take definitions it approved, and none takes a built-in's name.
    let protected = group == "k8s.io"
        || group.ends_with(".k8s.io")
        || group == "kubernetes.io"
        || group.ends_with(".kubernetes.io");
    if protected && definition["metadata"]["annotations"][APPROVED].is_null() {
        causes.push((
            format!("metadata.annotations[{APPROVED}]"),
            format!(
                "Required value: protected groups must have approval annotation \"{APPROVED}\""
            ),
        ));
    }
    if RESOURCES
        .iter()
        .any(|r| r.group == group && r.plural == plural)
    {
        causes.push((
            "spec.names.plural".into(),
            format!("Invalid value: \"{plural}\": {group} already serves {plural}"),
        ));
    }
    for (field, value) in [
        ("plural", plural),
        ("singular", spec["names"]["singular"].as_str().unwrap_or("")),
    ] {
        if !value.is_empty() && !is_dns_label(value) {
            causes.push((
                format!("spec.names.{field}"),
                format!("Invalid value: \"{value}\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"),
            ));
        }
    }
    let kind = spec["names"]["kind"].as_str().unwrap_or("");
    if kind.is_empty() {
        causes.push(("spec.names.kind".into(), "Required value".into()));
    }
    let scope = spec["scope"].as_str().unwrap_or("");
    if !matches!(scope, "Cluster" | "Namespaced") {
        causes.push((
            "spec.scope".into(),
            format!(
                "Unsupported value: \"{scope}\": supported values: \"Cluster\", \"Namespaced\""
            ),
        ));
    }
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    if versions.is_empty() {
        causes.push((
            "spec.versions".into(),
            "Invalid value: null: must have exactly one version marked as storage version".into(),
        ));
    } else if versions.iter().filter(|v| v["storage"] == true).count() != 1 {
        causes.push((
            "spec.versions".into(),
            "Invalid value: must have exactly one version marked as storage version".into(),
        ));
    }
    if !versions.is_empty() && !versions.iter().any(|v| v["served"] == true) {
        causes.push((
            "spec.versions".into(),
            "Invalid value: must have at least one version served".into(),
        ));
    }
    for (i, version) in versions.iter().enumerate() {
        let at = format!("spec.versions[{i}].schema.openAPIV3Schema");
        match version["schema"].get("openAPIV3Schema") {
            Some(schema) if schema.is_object() => {
                if schema["type"] != "object" {
                    causes.push((
                        format!("{at}.type"),
                        format!(
                            "Invalid value: {}: must be object at the root",
                            schema["type"]
                        ),
                    ));
                }
                structural(schema, &at, causes);
            }
            _ => causes.push((
                format!("spec.versions[{i}].schema.openAPIV3Schema"),
                "Required value: schemas are required".into(),
            )),
        }
    }
    if let Some(old) = old {
        for (field, now, before) in [
            ("spec.group", &spec["group"], &old["spec"]["group"]),
            (
                "spec.names.plural",
                &spec["names"]["plural"],
                &old["spec"]["names"]["plural"],
            ),
            ("spec.scope", &spec["scope"], &old["spec"]["scope"]),
        ] {
            if now != before {
                causes.push((field.into(), "Invalid value: field is immutable".into()));
            }
        }
    }
}

fn is_dns_label(value: &str) -> bool {
    value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !value.starts_with('-')
        && !value.ends_with('-')
}

/// A schema is structural when every node says its type, except where it keeps unknown
/// fields or is an int-or-string.
fn structural(schema: &Value, at: &str, causes: &mut Vec<(String, String)>) {
    let open = schema["x-kubernetes-preserve-unknown-fields"] == true
        || schema["x-kubernetes-int-or-string"] == true;
    if !open && schema["type"].as_str().unwrap_or("").is_empty() {
        causes.push((
            format!("{at}.type"),
            "Required value: must not be empty for specified object fields".into(),
        ));
    }
    for forbidden in [
        "$ref",
        "additionalItems",
        "patternProperties",
        "dependencies",
    ] {
        if schema.get(forbidden).is_some() {
            causes.push((
                format!("{at}.{forbidden}"),
                "Forbidden: must not be specified in a structural schema".into(),
            ));
        }
    }
    if let Some(properties) = schema["properties"].as_object() {
        if schema["additionalProperties"].is_object() {
            causes.push((
                format!("{at}.additionalProperties"),
                "Forbidden: additionalProperties and properties are mutual exclusive".into(),
            ));
        }
        for (name, property) in properties {
            structural(property, &format!("{at}.properties[{name}]"), causes);
        }
    }
    if schema["items"].is_object() {
        structural(&schema["items"], &format!("{at}.items"), causes);
    } else if schema["type"] == "array" {
        causes.push((
            format!("{at}.items"),
            "Required value: must be specified".into(),
        ));
    }
    if schema["additionalProperties"].is_object() {
        structural(
            &schema["additionalProperties"],
            &format!("{at}.additionalProperties"),
            causes,
        );
    }
}

/// A custom object decoded against its version's schema: defaults applied, unknown fields
/// pruned (and named), or the fields that fail the schema, worded as upstream words them.
pub fn decode(custom: &CustomVersion, object: &Value) -> Result<Typed, Vec<(String, String)>> {
    let mut object = object.clone();
    let Some(fields) = object.as_object_mut() else {
        return Err(vec![(
            String::new(),
            "Invalid value: must be an object".into(),
        )]);
    };
    let mut check = Check::default();
    let properties = custom.schema["properties"].as_object();
    let keeps_unknown = custom.schema["x-kubernetes-preserve-unknown-fields"] == true;
    let names: Vec<String> = fields.keys().cloned().collect();
    for name in names {
        if matches!(name.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        match properties.and_then(|p| p.get(&name)) {
            Some(schema) => {
                let value = fields.get_mut(&name).expect("listed");
                check.value(schema, value, &name);
            }
            None if keeps_unknown => {}
            None => {
                fields.remove(&name);
                check.unknown.push(name);
            }
        }
    }
    check.defaults_and_required(&custom.schema, fields, "");
    if check.causes.is_empty() {
        Ok(Typed {
            object,
            unknown: check.unknown,
        })
    } else {
        Err(check.causes)
    }
}

#[derive(Default)]
struct Check {
    unknown: Vec<String>,
    causes: Vec<(String, String)>,
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

impl Check {
    fn invalid(&mut self, path: &str, value: &Value, message: String) {
        self.causes.push((
            path.to_string(),
            format!("Invalid value: {value}: {message}"),
        ));
    }

    fn value(&mut self, schema: &Value, value: &mut Value, path: &str) {
        let actual = json_type(value);
        if value.is_null() && schema["nullable"] == true {
            return;
        }
        if schema["x-kubernetes-int-or-string"] == true {
            if !matches!(actual, "integer" | "string") {
                self.invalid(
                    path,
                    &json!(actual),
                    format!("{path} in body must be of type integer,string: \"{actual}\""),
                );
            }
            return;
        }
        let wanted = schema["type"].as_str().unwrap_or("");
        let fits = match wanted {
            "" => true,
            "number" => value.is_number(),
            other => other == actual,
        };
        if !fits {
            self.invalid(
                path,
                &json!(actual),
                format!("{path} in body must be of type {wanted}: \"{actual}\""),
            );
            return;
        }
        if let Some(allowed) = schema["enum"].as_array()
            && !allowed.contains(value)
        {
            let listed: Vec<String> = allowed.iter().map(Value::to_string).collect();
            self.causes.push((
                path.to_string(),
                format!(
                    "Unsupported value: {value}: supported values: {}",
                    listed.join(", ")
                ),
            ));
        }
        match value {
            Value::Object(fields) => self.object(schema, fields, path),
            Value::Array(items) => {
                let count = items.len() as u64;
                if let Some(min) = schema["minItems"].as_u64()
                    && count < min
                {
                    self.causes.push((
                        path.to_string(),
                        format!("Invalid value: {count}: {path} in body should have at least {min} items"),
                    ));
                }
                if let Some(max) = schema["maxItems"].as_u64()
                    && count > max
                {
                    self.causes.push((
                        path.to_string(),
                        format!("Too many: {count}: must have at most {max} items"),
                    ));
                }
                if schema["items"].is_object() {
                    for (i, item) in items.iter_mut().enumerate() {
                        self.value(&schema["items"], item, &format!("{path}[{i}]"));
                    }
                }
            }
            Value::String(text) => {
                let length = text.chars().count() as u64;
                if let Some(min) = schema["minLength"].as_u64()
                    && length < min
                {
                    let value = value.clone();
                    self.invalid(
                        path,
                        &value,
                        format!("{path} in body should be at least {min} chars long"),
                    );
                } else if let Some(max) = schema["maxLength"].as_u64()
                    && length > max
                {
                    self.causes.push((
                        path.to_string(),
                        format!("Too long: may not be more than {max} bytes"),
                    ));
                } else if let Some(pattern) = schema["pattern"].as_str()
                    && regex::Regex::new(pattern).is_ok_and(|p| !p.is_match(text))
                {
                    let value = value.clone();
                    self.invalid(
                        path,
                        &value,
                        format!("{path} in body should match '{pattern}'"),
                    );
                }
            }
            Value::Number(n) => {
                let n = n.as_f64().unwrap_or(0.0);
                // Each bound: its keyword, the keyword that makes it exclusive, upstream's
                // words for what `n` should be, and whether it is the lower one.
                let bounds = [
                    ("minimum", "exclusiveMinimum", "greater than", true),
                    ("maximum", "exclusiveMaximum", "less than", false),
                ];
                for (bound, exclusive, relation, lower) in bounds {
                    let Some(limit) = schema[bound].as_f64() else {
                        continue;
                    };
                    let exclusive = schema[exclusive] == true;
                    let beyond = if lower { n < limit } else { n > limit };
                    let out = beyond || (exclusive && n == limit);
                    if out {
                        let relation = if exclusive {
                            relation.to_string()
                        } else {
                            format!("{relation} or equal to")
                        };
                        let value = value.clone();
                        self.invalid(
                            path,
                            &value,
                            format!("{path} in body should be {relation} {}", schema[bound]),
                        );
                    }
                }
            }
            _ => {}
        }
    }

    fn object(&mut self, schema: &Value, fields: &mut Map<String, Value>, path: &str) {
        let properties = schema["properties"].as_object();
        let additional = &schema["additionalProperties"];
        let keeps_unknown =
            schema["x-kubernetes-preserve-unknown-fields"] == true || additional == &json!(true);
        let names: Vec<String> = fields.keys().cloned().collect();
        for name in names {
            let at = format!("{path}.{name}");
            let field_schema = properties
                .and_then(|p| p.get(&name))
                .or(additional.is_object().then_some(additional));
            match field_schema {
                Some(field_schema) => {
                    let value = fields.get_mut(&name).expect("listed");
                    self.value(field_schema, value, &at);
                }
                None if keeps_unknown => {}
                None => {
                    fields.remove(&name);
                    self.unknown.push(at);
                }
            }
        }
        self.defaults_and_required(schema, fields, path);
    }

    fn defaults_and_required(
        &mut self,
        schema: &Value,
        fields: &mut Map<String, Value>,
        path: &str,
    ) {
        let prefix = if path.is_empty() {
            String::new()
        } else {
            format!("{path}.")
        };
        if let Some(properties) = schema["properties"].as_object() {
            for (name, property) in properties {
                if let Some(default) = property.get("default")
                    && !fields.contains_key(name)
                {
                    let mut value = default.clone();
                    self.value(property, &mut value, &format!("{prefix}{name}"));
                    fields.insert(name.clone(), value);
                }
            }
        }
        for required in schema["required"].as_array().into_iter().flatten() {
            let Some(name) = required.as_str() else {
                continue;
            };
            if !fields.contains_key(name) {
                self.causes
                    .push((format!("{prefix}{name}"), "Required value".into()));
            }
        }
    }
}

/// The OpenAPI v3 document of a custom group version: each kind's schema with the
/// metadata every object has, named as upstream names it (`com.example.v1.Widget`).
pub fn openapi_document(kinds: &[&Arc<ResourceType>]) -> Option<Value> {
    let first = kinds.first()?;
    let reversed: Vec<&str> = first.group.rsplit('.').collect();
    let mut schemas = Map::new();
    let mut paths = Map::new();
    for r in kinds {
        let custom = r.custom.as_ref()?;
        let name = format!("{}.{}.{}", reversed.join("."), r.version, r.kind);
        let mut schema = custom.schema.clone();
        schema["properties"]["apiVersion"] = json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."});
        schema["properties"]["kind"] = json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."});
        schema["properties"]["metadata"] =
            json!({"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"});
        schema["x-kubernetes-group-version-kind"] =
            json!([{"group": r.group, "version": r.version, "kind": r.kind}]);
        schemas.insert(name, schema);
        let prefix = format!("/apis/{}/{}", r.group, r.version);
        let path = if r.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", r.plural)
        } else {
            format!("{prefix}/{}/{{name}}", r.plural)
        };
        paths.insert(
            path,
            json!({"patch": crate::openapi::patch_operation(&r.group, &r.version, &r.kind)}),
        );
    }
    let meta = crate::openapi::group_version("", "v1")?;
    for (name, schema) in meta["components"]["schemas"].as_object()? {
        if name.starts_with("io.k8s.apimachinery.pkg.apis.meta.v1.") {
            schemas.insert(name.clone(), schema.clone());
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes CRD Swagger", "version": "v0.1.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn widget_schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["size"],
                    "properties": {
                        "size": {"type": "integer", "minimum": 1, "maximum": 10},
                        "color": {"type": "string", "enum": ["red", "blue"], "default": "red"},
                        "port": {"x-kubernetes-int-or-string": true},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    },
                },
                "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
            },
        })
    }

    fn version() -> CustomVersion {
        CustomVersion {
            schema: widget_schema(),
            columns: Vec::new(),
            storage_version: "v1".into(),
            scale: None,
            categories: Vec::new(),
        }
    }

    #[test]
    fn a_custom_object_is_defaulted_pruned_and_checked_against_its_schema() {
        let typed = decode(
            &version(),
            &json!({
                "apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
                "spec": {"size": 3, "port": "http", "labels": {"a": "b"}, "free": {"x": {"y": 1}}, "extra": 1},
                "other": true,
            }),
        )
        .unwrap();
        assert_eq!(typed.object["spec"]["color"], "red");
        assert!(typed.object["spec"].get("extra").is_none());
        assert!(typed.object.get("other").is_none());
        assert_eq!(typed.object["spec"]["free"]["x"]["y"], 1);
        assert_eq!(typed.unknown, ["other", "spec.extra"]);

        let causes = decode(
            &version(),
            &json!({"spec": {"size": "big", "color": "green", "labels": {"a": 1}}}),
        )
        .unwrap_err();
        let fields: Vec<&str> = causes.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["spec.color", "spec.labels.a", "spec.size"]);
        assert!(
            causes[2].1.contains("must be of type integer"),
            "{causes:?}"
        );
        assert!(
            causes[0].1.starts_with("Unsupported value: \"green\""),
            "{causes:?}"
        );

        let causes = decode(&version(), &json!({"spec": {"size": 11}})).unwrap_err();
        assert_eq!(
            causes,
            [(
                "spec.size".to_string(),
                "Invalid value: 11: spec.size in body should be less than or equal to 10"
                    .to_string()
            )]
        );
        let causes = decode(&version(), &json!({"spec": {}})).unwrap_err();
        assert_eq!(
            causes,
            [("spec.size".to_string(), "Required value".to_string())]
        );
    }

    fn definition(schema: Value) -> Value {
        json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com", "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget"},
                "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": schema}}],
            },
        })
    }

    #[test]
    fn a_definition_needs_its_name_a_storage_version_and_a_structural_schema() {
        let mut causes = Vec::new();
        validate_definition(&definition(widget_schema()), None, &mut causes);
        assert!(causes.is_empty(), "{causes:?}");

        let mut causes = Vec::new();
        let unstructured = json!({"type": "object", "properties": {"spec": {"properties": {}}}});
        validate_definition(&definition(unstructured), None, &mut causes);
        assert_eq!(
            causes,
            [(
                "spec.versions[0].schema.openAPIV3Schema.properties[spec].type".to_string(),
                "Required value: must not be empty for specified object fields".to_string()
            )]
        );

        let mut wrong = definition(widget_schema());
        wrong["metadata"]["name"] = json!("gadgets.example.com");
        wrong["spec"]["versions"][0]["storage"] = json!(false);
        let mut causes = Vec::new();
        validate_definition(&wrong, None, &mut causes);
        let fields: Vec<&str> = causes.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["metadata.name", "spec.versions"]);

        // A built-in's name, in a group Kubernetes keeps for itself.
        let mut roles = definition(widget_schema());
        roles["metadata"]["name"] = json!("roles.rbac.authorization.k8s.io");
        roles["spec"]["group"] = json!("rbac.authorization.k8s.io");
        roles["spec"]["names"]["plural"] = json!("roles");
        let mut causes = Vec::new();
        validate_definition(&roles, None, &mut causes);
        let fields: Vec<&str> = causes.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "metadata.annotations[api-approved.kubernetes.io]",
                "spec.names.plural"
            ]
        );
    }

    #[test]
    fn an_established_definition_serves_each_served_version_with_its_columns() {
        let mut d = definition(widget_schema());
        d["spec"]["versions"][0]["additionalPrinterColumns"] =
            json!([{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}]);
        d["spec"]["versions"][0]["subresources"] = json!({"status": {}});
        assert!(Served::read(&[Arc::new(d.clone())]).custom().is_empty());
        d["status"]["conditions"] = json!([{"type": "Established", "status": "True"}]);
        let served = Served::read(&[Arc::new(d)]);
        let widgets = served.find("example.com", "v1", "widgets").unwrap();
        assert_eq!(widgets.stored_name(), "widgets.example.com");
        assert_eq!(widgets.subresources, ["status"]);
        let custom = widgets.custom.as_ref().unwrap();
        let size = column_value(&json!({"spec": {"size": 4}}), &custom.columns[0]);
        assert_eq!(size, 4);
        let ready = PrinterColumn {
            json_path: ".status.conditions[?(@.type==\"Ready\")].status".into(),
            ..custom.columns[0].clone()
        };
        let object = json!({"status": {"conditions": [{"type": "Synced", "status": "False"}, {"type": "Ready", "status": "True"}]}});
        assert_eq!(column_value(&object, &ready), "True");
    }
}
