//! The OpenAPI v3 documents `kubectl` reads before it writes: the root index of group
//! versions, and per group version the patch operation of each kind with its
//! `x-kubernetes-group-version-kind` and the `fieldValidation` parameter, which tells
//! kubectl that the server validates fields itself (so kubectl sends `fieldValidation` and
//! needs no client-side schema). Object schemas are not served: kubectl then computes
//! strategic merge patches from its compiled-in types, as it does for any built-in kind.

use serde_json::{Value, json};

use crate::resources::{RESOURCES, ResourceType};

/// `api/v1` or `apis/{group}/{version}`: how the index names a group version.
fn group_version_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `GET /openapi/v3`.
pub fn root(server_version: &str) -> Value {
    let mut paths = serde_json::Map::new();
    for r in RESOURCES
        .iter()
        .filter(|r| !r.is_review() && !r.is_metrics())
    {
        let path = group_version_path(r.group, r.version);
        // The hash lets clients cache a document until the server's version changes.
        let url = format!("/openapi/v3/{path}?hash={}", hash(server_version, &path));
        paths.insert(path, json!({ "serverRelativeURL": url }));
    }
    json!({ "paths": paths })
}

fn hash(server_version: &str, path: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{server_version} {path}"));
    digest[..16].iter().map(|b| format!("{b:02X}")).collect()
}

/// `GET /openapi/v3/api/v1` and `/openapi/v3/apis/{group}/{version}`.
pub fn group_version(group: &str, version: &str) -> Option<Value> {
    let kinds: Vec<&ResourceType> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version && !r.is_review() && !r.is_metrics())
        .collect();
    if kinds.is_empty() {
        return None;
    }
    let operations = kinds.into_iter().map(|r| {
        let prefix = format!("/{}", group_version_path(r.group, r.version));
        let path = if r.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", r.plural)
        } else {
            format!("{prefix}/{}/{{name}}", r.plural)
        };
        (path, patch_operation(r.group, r.version, r.kind))
    });
    Some(document(version, operations))
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

fn patch_operation(group: &str, version: &str, kind: &str) -> Value {
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
        let index = root("1.33");
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
                let documented = document["paths"]
                    .as_object()
                    .unwrap()
                    .values()
                    .any(|p| p["patch"]["x-kubernetes-group-version-kind"]["kind"] == r.kind);
                assert!(documented, "{} is not in {path}", r.kind);
            }
        }
        assert!(index["paths"].get("apis/apps/v1").is_some());
        assert!(group_version("example.com", "v1").is_none());
    }
}
