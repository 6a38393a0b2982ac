//! The OpenAPI v3 documents `kubectl` reads: the root index of group versions, and per group
//! version the patch operation of each kind (with the `fieldValidation` parameter, which
//! tells kubectl that the server validates fields itself) and `components.schemas`, the
//! upstream schemas of its kinds and everything they refer to, as `k8s-openapi` carries
//! them, each kind's marked with its `x-kubernetes-group-version-kind`. `kubectl explain`
//! reads them, and `kubectl apply` computes its strategic merge patches from them: so the
//! lists this server merges by key (`patch.rs`) are marked with their merge key, and client
//! and server agree on every list. The documents never change while the binary runs, so
//! each is built once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use crate::custom::Served;
use crate::resources::{RESOURCES, ResourceType};

/// `api/v1` or `apis/{group}/{version}`: how the index names a group version.
fn group_version_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `GET /openapi/v3`, built-ins and custom resources alike.
pub fn root(server_version: &str, served: &Served) -> Value {
    let mut paths = serde_json::Map::new();
    for r in served.iter().filter(|r| !r.is_review() && !r.is_metrics()) {
        let path = group_version_path(&r.group, &r.version);
        // The hash lets clients cache a document until the server's version changes, or,
        // for a custom resource, its schema.
        let schema = r.custom.as_ref().map(|c| c.schema.to_string());
        let hash = hash(&format!("{server_version} {path} {schema:?}"));
        let url = format!("/openapi/v3/{path}?hash={hash}");
        paths.insert(path, json!({ "serverRelativeURL": url }));
    }
    json!({ "paths": paths })
}

fn hash(text: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(text);
    digest[..16].iter().map(|b| format!("{b:02X}")).collect()
}

/// The documents built so far, by (group, version).
type Documents = HashMap<(String, String), Arc<Value>>;

/// `GET /openapi/v3/api/v1` and `/openapi/v3/apis/{group}/{version}`, built once.
pub fn group_version(group: &str, version: &str) -> Option<Arc<Value>> {
    static DOCUMENTS: OnceLock<Mutex<Documents>> = OnceLock::new();
    let documents = DOCUMENTS.get_or_init(Mutex::default);
    let wanted = (group.to_string(), version.to_string());
    if let Some(document) = documents.lock().expect("lock").get(&wanted) {
        return Some(document.clone());
    }
    let document = Arc::new(build(group, version)?);
    documents
        .lock()
        .expect("lock")
        .insert(wanted, document.clone());
    Some(document)
}

fn build(group: &str, version: &str) -> Option<Value> {
    let kinds: Vec<&ResourceType> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version && !r.is_review() && !r.is_metrics())
        .map(|r| &**r)
        .collect();
    if kinds.is_empty() {
        return None;
    }
    let schemas = schemas(group, version, &kinds);
    let operations = kinds.into_iter().map(|r| {
        let prefix = format!("/{}", group_version_path(&r.group, &r.version));
        let path = if r.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", &r.plural)
        } else {
            format!("{prefix}/{}/{{name}}", &r.plural)
        };
        (path, patch_operation(&r.group, &r.version, &r.kind))
    });
    let mut document = document(version, operations);
    document["components"] = json!({ "schemas": schemas });
    Some(document)
}

/// The schemas of `kinds` and of everything they refer to, by upstream's names
/// (`io.k8s.api.apps.v1.Deployment`).
fn schemas(group: &str, version: &str, kinds: &[&ResourceType]) -> Map<String, Value> {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let named: Vec<(String, &ResourceType)> = kinds
        .iter()
        .filter_map(|r| {
            let reference = (r.schema)(&mut generator);
            let name = reference.get("$ref")?.as_str()?.rsplit('/').next()?;
            Some((name.to_string(), *r))
        })
        .collect();
    let mut schemas = generator.take_definitions(true);
    for (name, r) in named {
        if let Some(schema) = schemas.get_mut(&name) {
            schema["x-kubernetes-group-version-kind"] =
                json!([{ "group": group, "version": version, "kind": r.kind }]);
        }
    }
    for (name, schema) in schemas.iter_mut() {
        mark_merge_keys(name, schema);
    }
    schemas
}

/// Marks the list properties of `schema` that this server merges by key.
fn mark_merge_keys(name: &str, schema: &mut Value) {
    let container = name.ends_with(".Container") || name.ends_with(".EphemeralContainer");
    let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
        return;
    };
    for (field, property) in properties.iter_mut() {
        if property.get("type").and_then(Value::as_str) != Some("array") {
            continue;
        }
        if let Some(key) = crate::patch::merge_key_of(field, container) {
            property["x-kubernetes-patch-strategy"] = json!("merge");
            property["x-kubernetes-patch-merge-key"] = json!(key);
        } else if crate::patch::merges_as_set(field) {
            property["x-kubernetes-patch-strategy"] = json!("merge");
        }
    }
}

fn document(version: &str, patches: impl IntoIterator<Item = (String, Value)>) -> Value {
    let paths: serde_json::Map<String, Value> = patches
        .into_iter()
        .map(|(path, patch)| (path, json!({ "patch": patch })))
        .collect();
    json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": version },
        "paths": paths,
    })
}

pub(crate) fn patch_operation(group: &str, version: &str, kind: &str) -> Value {
    let query = |name: &str| json!({ "name": name, "in": "query", "schema": { "type": "string" } });
    json!({
        "operationId": format!("patch{kind}"),
        "x-kubernetes-action": "patch",
        "x-kubernetes-group-version-kind": { "group": group, "version": version, "kind": kind },
        "parameters": [query("dryRun"), query("fieldManager"), query("fieldValidation")],
        "responses": { "200": { "description": "OK" } },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_group_version_is_indexed_and_documents_its_kinds() {
        let index = root("1.33", &Served::default());
        for (path, entry) in index["paths"].as_object().unwrap() {
            let url = entry["serverRelativeURL"].as_str().unwrap();
            assert!(
                url.starts_with(&format!("/openapi/v3/{path}?hash=")),
                "{url}"
            );
            let parts: Vec<&str> = path.split('/').collect();
            let (group, version) = match parts.as_slice() {
                ["api", version] => ("", *version),
                ["apis", group, version] => (*group, *version),
                _ => panic!("{path}"),
            };
            let document = group_version(group, version).unwrap();
            for r in RESOURCES.iter().filter(|r| {
                r.group == group && r.version == version && !r.is_review() && !r.is_metrics()
            }) {
                let documented = document["paths"].as_object().unwrap().values().any(|p| {
                    p["patch"]["x-kubernetes-group-version-kind"]["kind"] == r.kind.as_ref()
                });
                assert!(documented, "{} is not in {path}", &r.kind);
            }
        }
        assert!(index["paths"].get("apis/apps/v1").is_some());
        assert!(group_version("example.com", "v1").is_none());
    }

    #[test]
    fn schemas_are_upstream_s_with_their_kinds_and_merge_keys() {
        let apps = group_version("apps", "v1").unwrap();
        let schemas = &apps["components"]["schemas"];
        let deployment = &schemas["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            deployment["x-kubernetes-group-version-kind"],
            json!([{"group": "apps", "version": "v1", "kind": "Deployment"}])
        );
        let replicas = &schemas["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["replicas"];
        assert_eq!(replicas["type"], "integer");
        assert!(
            replicas["description"]
                .as_str()
                .unwrap()
                .contains("Number of desired pods")
        );
        // Every reference resolves within the document.
        let text = apps.to_string();
        for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = reference.split('"').next().unwrap();
            assert!(
                schemas.get(name).is_some(),
                "{name} is referred to, not defined"
            );
        }
        let containers = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        let ports = &schemas["io.k8s.api.core.v1.Container"]["properties"]["ports"];
        assert_eq!(ports["x-kubernetes-patch-merge-key"], "containerPort");
        let core = group_version("", "v1").unwrap();
        let service_ports =
            &core["components"]["schemas"]["io.k8s.api.core.v1.ServiceSpec"]["properties"]["ports"];
        assert_eq!(service_ports["x-kubernetes-patch-merge-key"], "port");
    }
}
