//! Server-side apply and managed fields, as upstream's structured-merge-diff keeps them.
//!
//! Every write through the API records who set which fields in `metadata.managedFields`:
//! an `Update` entry for a create, update or patch (the fields it changed, taken from every
//! other manager), an `Apply` entry for an apply patch (exactly the fields its
//! configuration names). An apply merges its configuration into the object (maps by key,
//! lists by their merge keys or as sets, atomic lists whole), removes the fields its
//! manager set last time and no longer names unless another manager holds them, and
//! refuses with 409 to change a field another manager holds to another value, unless
//! forced, which takes the field over.
//!
//! A field is a path of upstream's elements: `f:name` a map key, `k:{"name":"web"}` a list
//! item by its keys, `v:"x"` a set member. `fieldsV1` is the tree of these paths, with `.`
//! marking a list item owned as a whole.

use std::collections::{BTreeMap, BTreeSet};

use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use crate::cluster::now;
use crate::resources::ResourceType;
use crate::status::KubeError;

type Path = Vec<String>;
type FieldSet = BTreeSet<Path>;

/// Metadata fields that name an object or are the server's: never anyone's to manage.
const IDENTITY: &[&str] = &[
    "name",
    "namespace",
    "generateName",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// The content type of an apply patch.
pub const CONTENT_TYPE: &str = "application/apply-patch+yaml";

/// The longest field manager name upstream accepts.
const MANAGER_MAX: usize = 128;

/// Checks a `fieldManager` as upstream does.
pub fn check_manager(manager: &str) -> Result<(), String> {
    if manager.len() > MANAGER_MAX {
        return Err(format!(
            "fieldManager: Too long: may not be more than {MANAGER_MAX} bytes"
        ));
    }
    if manager.chars().any(|c| c.is_control()) {
        return Err(format!(
            "fieldManager: Invalid value: {manager:?}: must be printable"
        ));
    }
    Ok(())
}

/// One entry of `metadata.managedFields`.
#[derive(Clone, Debug, PartialEq)]
struct Entry {
    manager: String,
    /// `Apply` or `Update`.
    operation: String,
    api_version: String,
    time: Value,
    /// `status` for writes through the status subresource; empty for the object.
    subresource: String,
    fields: FieldSet,
}

impl Entry {
    fn is(&self, manager: &str, operation: &str, subresource: &str) -> bool {
        self.manager == manager && self.operation == operation && self.subresource == subresource
    }

    fn to_json(&self) -> Value {
        let mut entry = json!({
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": fields_v1(&self.fields),
        });
        if !self.subresource.is_empty() {
            entry["subresource"] = json!(self.subresource);
        }
        entry
    }
}

fn entries(object: &Value) -> Vec<Entry> {
    object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let mut fields = FieldSet::new();
            read_fields_v1(&e["fieldsV1"], &mut Vec::new(), &mut fields);
            let text = |v: &Value| v.as_str().unwrap_or("").to_string();
            Entry {
                manager: text(&e["manager"]),
                operation: text(&e["operation"]),
                api_version: text(&e["apiVersion"]),
                time: e["time"].clone(),
                subresource: text(&e["subresource"]),
                fields,
            }
        })
        .collect()
}

fn write_entries(object: &mut Value, entries: &[Entry]) {
    let kept: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(Entry::to_json)
        .collect();
    if kept.is_empty() {
        if let Some(metadata) = object["metadata"].as_object_mut() {
            metadata.remove("managedFields");
        }
    } else {
        object["metadata"]["managedFields"] = Value::Array(kept);
    }
}

/// `fieldsV1`: the tree of the paths, `.` marking a node owned that has children.
fn fields_v1(fields: &FieldSet) -> Value {
    let mut root = Value::Object(Map::new());
    for path in fields {
        let mut node = &mut root;
        for element in path {
            node = node
                .as_object_mut()
                .expect("nodes are objects")
                .entry(element.clone())
                .or_insert_with(|| json!({}));
        }
    }
    for path in fields {
        let mut node = &mut root;
        for element in path {
            node = &mut node[element.as_str()];
        }
        if let Some(children) = node.as_object_mut()
            && !children.is_empty()
            && !children.contains_key(".")
        {
            children.insert(".".into(), json!({}));
        }
    }
    root
}

fn read_fields_v1(node: &Value, prefix: &mut Path, out: &mut FieldSet) {
    let Some(children) = node.as_object() else {
        return;
    };
    if children.is_empty() {
        if !prefix.is_empty() {
            out.insert(prefix.clone());
        }
        return;
    }
    for (element, child) in children {
        if element == "." {
            out.insert(prefix.clone());
            continue;
        }
        prefix.push(element.clone());
        read_fields_v1(child, prefix, out);
        prefix.pop();
    }
}

/// How a list merges: by the fields that key its items, as a set, or whole.
enum ListKind {
    Map(Vec<String>),
    Set,
    Atomic,
}

/// What is known of the shape of a value: a custom resource's schema node, or, for a
/// built-in, the merge keys `patch.rs` knows.
#[derive(Clone, Copy)]
enum Shape<'a> {
    Schema(&'a Value),
    BuiltIn,
}

impl<'a> Shape<'a> {
    fn of(r: &'a ResourceType) -> Self {
        match &r.custom {
            Some(custom) => Shape::Schema(&custom.schema),
            None => Shape::BuiltIn,
        }
    }

    fn field(self, name: &str) -> Self {
        match self {
            Shape::Schema(schema) => Shape::Schema(
                schema["properties"]
                    .get(name)
                    .or_else(|| schema.get("additionalProperties"))
                    .unwrap_or(&Value::Null),
            ),
            Shape::BuiltIn => Shape::BuiltIn,
        }
    }

    fn items(self) -> Self {
        match self {
            Shape::Schema(schema) => Shape::Schema(&schema["items"]),
            Shape::BuiltIn => Shape::BuiltIn,
        }
    }

    /// How the list `field` (of this shape) merges.
    fn list(self, field: &str, items: &[Value]) -> ListKind {
        match self {
            Shape::Schema(schema) => match schema["x-kubernetes-list-type"].as_str() {
                Some("map") => ListKind::Map(
                    schema["x-kubernetes-list-map-keys"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|k| k.as_str().map(str::to_string))
                        .collect(),
                ),
                Some("set") => ListKind::Set,
                _ => ListKind::Atomic,
            },
            Shape::BuiltIn => match crate::patch::merge_key(field, items) {
                Some(key) if items.iter().all(Value::is_object) => {
                    ListKind::Map(vec![key.to_string()])
                }
                _ if crate::patch::merges_as_set(field) => ListKind::Set,
                _ => ListKind::Atomic,
            },
        }
    }
}

/// The element naming a list item by its keys.
fn key_element(item: &Value, keys: &[String]) -> String {
    let named: Map<String, Value> = keys
        .iter()
        .map(|k| (k.clone(), item[k.as_str()].clone()))
        .collect();
    format!("k:{}", Value::Object(named))
}

/// The part of an object that fields are managed in: no identity, no apiVersion or kind,
/// and the status only through the status subresource when the resource has one.
fn managed_part(object: &Value, r: &ResourceType, subresource: &str) -> Value {
    let mut part = object.clone();
    let Some(fields) = part.as_object_mut() else {
        return Value::Null;
    };
    fields.remove("apiVersion");
    fields.remove("kind");
    if r.subresources.contains(&"status") {
        if subresource == "status" {
            fields.retain(|k, _| k == "status");
        } else {
            fields.remove("status");
        }
    }
    if let Some(metadata) = fields.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.retain(|k, _| !IDENTITY.contains(&k.as_str()));
        if metadata.is_empty() {
            fields.remove("metadata");
        }
    }
    part
}

fn collect(value: &Value, shape: Shape, prefix: &mut Path, out: &mut FieldSet) {
    let Some(fields) = value.as_object() else {
        return;
    };
    for (name, child) in fields {
        prefix.push(format!("f:{name}"));
        let child_shape = shape.field(name);
        match child {
            Value::Object(inner) if !inner.is_empty() => collect(child, child_shape, prefix, out),
            Value::Array(items) => match child_shape.list(name, items) {
                ListKind::Map(keys) => {
                    for item in items {
                        prefix.push(key_element(item, &keys));
                        out.insert(prefix.clone());
                        collect(item, child_shape.items(), prefix, out);
                        prefix.pop();
                    }
                }
                ListKind::Set => {
                    for item in items {
                        prefix.push(format!("v:{item}"));
                        out.insert(prefix.clone());
                        prefix.pop();
                    }
                }
                ListKind::Atomic => {
                    out.insert(prefix.clone());
                }
            },
            _ => {
                out.insert(prefix.clone());
            }
        }
        prefix.pop();
    }
}

/// The fields `object` sets.
fn fields_of(object: &Value, r: &ResourceType, subresource: &str) -> FieldSet {
    let mut out = FieldSet::new();
    collect(
        &managed_part(object, r, subresource),
        Shape::of(r),
        &mut Vec::new(),
        &mut out,
    );
    out
}

/// The value at `path`, if the object has it.
fn at<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    let Some((first, rest)) = path.split_first() else {
        return Some(value);
    };
    let next = if let Some(name) = first.strip_prefix("f:") {
        value.get(name)?
    } else if let Some(keys) = first.strip_prefix("k:") {
        let keys: Map<String, Value> = serde_json::from_str(keys).ok()?;
        value
            .as_array()?
            .iter()
            .find(|item| keys.iter().all(|(k, v)| &item[k.as_str()] == v))?
    } else if let Some(member) = first.strip_prefix("v:") {
        let member: Value = serde_json::from_str(member).ok()?;
        value.as_array()?.iter().find(|item| **item == member)?
    } else {
        return None;
    };
    at(next, rest)
}

/// Removes what `path` names, if it is there.
fn remove_at(value: &mut Value, path: &[String]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    if let Some(name) = first.strip_prefix("f:") {
        let Some(fields) = value.as_object_mut() else {
            return;
        };
        if rest.is_empty() {
            fields.remove(name);
        } else if let Some(child) = fields.get_mut(name) {
            remove_at(child, rest);
        }
        return;
    }
    let Some(items) = value.as_array_mut() else {
        return;
    };
    let position = if let Some(keys) = first.strip_prefix("k:") {
        let Ok(keys) = serde_json::from_str::<Map<String, Value>>(keys) else {
            return;
        };
        items
            .iter()
            .position(|item| keys.iter().all(|(k, v)| &item[k.as_str()] == v))
    } else if let Some(member) = first.strip_prefix("v:") {
        let Ok(member) = serde_json::from_str::<Value>(member) else {
            return;
        };
        items.iter().position(|item| *item == member)
    } else {
        None
    };
    if let Some(i) = position {
        if rest.is_empty() {
            items.remove(i);
        } else {
            remove_at(&mut items[i], rest);
        }
    }
}

/// Merges an apply configuration into an object.
fn merge(target: &mut Value, config: &Value, shape: Shape) {
    let (Some(target), Some(config)) = (target.as_object_mut(), config.as_object()) else {
        *target = config.clone();
        return;
    };
    for (name, value) in config {
        let child_shape = shape.field(name);
        match (target.get_mut(name), value) {
            (_, Value::Null) => {
                target.remove(name);
            }
            (Some(existing @ Value::Object(_)), Value::Object(_)) => {
                merge(existing, value, child_shape)
            }
            (Some(Value::Array(existing)), Value::Array(items)) => {
                match child_shape.list(name, items) {
                    ListKind::Map(keys) => {
                        for item in items {
                            let matches =
                                |e: &Value| keys.iter().all(|k| e[k.as_str()] == item[k.as_str()]);
                            match existing.iter_mut().find(|e| matches(e)) {
                                Some(found) => merge(found, item, child_shape.items()),
                                None => existing.push(item.clone()),
                            }
                        }
                    }
                    ListKind::Set => {
                        for item in items {
                            if !existing.contains(item) {
                                existing.push(item.clone());
                            }
                        }
                    }
                    ListKind::Atomic => *existing = items.clone(),
                }
            }
            _ => {
                target.insert(name.clone(), value.clone());
            }
        }
    }
}

/// `.spec.template.spec.containers[name="web"].image`: a path as upstream's conflicts name it.
fn display(path: &[String]) -> String {
    let mut text = String::new();
    for element in path {
        if let Some(name) = element.strip_prefix("f:") {
            text.push('.');
            text.push_str(name);
        } else if let Some(keys) = element.strip_prefix("k:") {
            let keys: Map<String, Value> = serde_json::from_str(keys).unwrap_or_default();
            let named: Vec<String> = keys.iter().map(|(k, v)| format!("{k}={v}")).collect();
            text.push_str(&format!("[{}]", named.join(",")));
        } else if let Some(member) = element.strip_prefix("v:") {
            text.push_str(&format!("[={member}]"));
        }
    }
    text
}

/// Applies `config` for `manager` to the object as it is (`None`: not yet created): the
/// object to store, or 409 naming every field another manager holds at another value.
pub fn apply(
    current: Option<&Value>,
    config: &Value,
    r: &ResourceType,
    manager: &str,
    force: bool,
) -> Result<Value, KubeError> {
    let applied = fields_of(config, r, "");
    let empty = json!({});
    let before = current.unwrap_or(&empty);
    let mut entries = entries(before);
    let mut conflicts: BTreeMap<usize, Vec<Path>> = BTreeMap::new();
    for (i, entry) in entries.iter().enumerate() {
        if entry.is(manager, "Apply", "") {
            continue;
        }
        for path in entry.fields.intersection(&applied) {
            if path.last().is_some_and(|e| e.starts_with("k:")) {
                continue;
            }
            if let (Some(held), Some(wanted)) = (at(before, path), at(config, path))
                && held != wanted
            {
                conflicts.entry(i).or_default().push(path.clone());
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflict_error(&entries, &conflicts));
    }
    for (i, paths) in &conflicts {
        for path in paths {
            entries[*i].fields.remove(path);
        }
    }
    let mut object = current.cloned().unwrap_or_else(|| config.clone());
    merge(&mut object, config, Shape::of(r));
    let mine = entries.iter().position(|e| e.is(manager, "Apply", ""));
    let previous = mine.map(|i| entries[i].fields.clone()).unwrap_or_default();
    // What this manager set last time and no longer names goes, unless someone else
    // holds it or something within it. A list item that goes takes its fields with it
    // (once it lost its keys it could not be found).
    let doomed: FieldSet = previous
        .difference(&applied)
        .filter(|path| {
            !entries.iter().any(|e| {
                !e.is(manager, "Apply", "") && e.fields.iter().any(|p| p.starts_with(path))
            })
        })
        .cloned()
        .collect();
    for path in &doomed {
        let within_doomed = (1..path.len()).any(|n| doomed.contains(&path[..n]));
        if !within_doomed {
            remove_at(&mut object, path);
        }
    }
    match mine {
        Some(i) if entries[i].fields == applied => {}
        Some(i) => {
            entries[i].fields = applied;
            entries[i].time = json!(now());
            entries[i].api_version = r.api_version();
        }
        None => entries.push(Entry {
            manager: manager.to_string(),
            operation: "Apply".into(),
            api_version: r.api_version(),
            time: json!(now()),
            subresource: String::new(),
            fields: applied,
        }),
    }
    write_entries(&mut object, &entries);
    Ok(object)
}

fn conflict_error(entries: &[Entry], conflicts: &BTreeMap<usize, Vec<Path>>) -> KubeError {
    let count: usize = conflicts.values().map(Vec::len).sum();
    let mut parts = Vec::new();
    let mut causes = Vec::new();
    for (i, paths) in conflicts {
        let entry = &entries[*i];
        let who = if entry.operation == "Apply" {
            format!("\"{}\"", entry.manager)
        } else {
            format!("\"{}\" using {}", entry.manager, entry.api_version)
        };
        let fields: Vec<String> = paths.iter().map(|p| display(p)).collect();
        parts.push(if fields.len() == 1 {
            format!("conflict with {who}: {}", fields[0])
        } else {
            format!("conflicts with {who}:\n- {}", fields.join("\n- "))
        });
        for field in fields {
            causes.push(json!({
                "reason": "FieldManagerConflict",
                "message": format!("conflict with {who}"),
                "field": field,
            }));
        }
    }
    let plural = if count == 1 { "" } else { "s" };
    let mut error = KubeError::new(
        StatusCode::CONFLICT,
        "Conflict",
        format!(
            "Apply failed with {count} conflict{plural}: {}",
            parts.join("\n")
        ),
    );
    error.details = Some(json!({ "causes": causes }));
    error
}

/// Records a create, update or patch by `manager`: the fields it changed become its own
/// (`Update`) and no one else's. A write that sets `managedFields` itself keeps them as
/// written, as upstream lets a client reset them.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    r: &ResourceType,
    manager: &str,
    subresource: &str,
) {
    let empty = json!({});
    let old = old.unwrap_or(&empty);
    let given = &new["metadata"]["managedFields"];
    if !given.is_null() && *given != old["metadata"]["managedFields"] {
        return;
    }
    let after = fields_of(new, r, subresource);
    let before = fields_of(old, r, subresource);
    let changed: FieldSet = after
        .iter()
        .filter(|p| at(old, p) != at(new, p))
        .cloned()
        .collect();
    let gone: FieldSet = before.difference(&after).cloned().collect();
    let mut entries = entries(old);
    if changed.is_empty() && gone.is_empty() {
        write_entries(new, &entries);
        return;
    }
    for entry in &mut entries {
        entry.fields.retain(|p| !gone.contains(p));
        if !entry.is(manager, "Update", subresource) {
            entry.fields.retain(|p| !changed.contains(p));
        }
    }
    match entries
        .iter_mut()
        .find(|e| e.is(manager, "Update", subresource))
    {
        Some(entry) => {
            entry.fields.extend(changed);
            entry.time = json!(now());
            entry.api_version = r.api_version();
        }
        None => entries.push(Entry {
            manager: manager.to_string(),
            operation: "Update".into(),
            api_version: r.api_version(),
            time: json!(now()),
            subresource: subresource.to_string(),
            fields: changed,
        }),
    }
    write_entries(new, &entries);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::by_plural;

    fn deployment(replicas: u64, image: &str) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {
                "replicas": replicas,
                "template": {"spec": {"containers": [{"name": "web", "image": image}]}},
            },
        })
    }

    #[test]
    fn fields_v1_is_upstream_s_tree_and_reads_back() {
        let r = by_plural("deployments");
        let fields = fields_of(&deployment(2, "nginx"), r, "");
        let tree = fields_v1(&fields);
        assert_eq!(
            tree,
            json!({
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:replicas": {},
                    "f:template": {"f:spec": {"f:containers": {
                        "k:{\"name\":\"web\"}": {".": {}, "f:image": {}, "f:name": {}},
                    }}},
                },
            })
        );
        let mut read = FieldSet::new();
        read_fields_v1(&tree, &mut Vec::new(), &mut read);
        assert_eq!(read, fields);
    }

    #[test]
    fn an_apply_is_idempotent_removes_what_it_no_longer_names_and_conflicts_with_others() {
        let r = by_plural("deployments");
        let first = apply(None, &deployment(2, "nginx"), r, "alice", false).unwrap();
        let again = apply(Some(&first), &deployment(2, "nginx"), r, "alice", false).unwrap();
        assert_eq!(again, first);

        // Bob sets the same replicas: shared, no conflict. Another value conflicts.
        let mut bobs = deployment(2, "nginx");
        bobs["spec"].as_object_mut().unwrap().remove("template");
        bobs["metadata"].as_object_mut().unwrap().remove("labels");
        let shared = apply(Some(&first), &bobs, r, "bob", false).unwrap();
        bobs["spec"]["replicas"] = json!(5);
        let error = apply(Some(&shared), &bobs, r, "bob", false).unwrap_err();
        assert_eq!(error.code, StatusCode::CONFLICT);
        assert_eq!(
            error.message,
            "Apply failed with 1 conflict: conflict with \"alice\": .spec.replicas"
        );
        // Forced, bob takes it over; alice no longer holds it, so her next apply without it
        // leaves bob's value.
        let forced = apply(Some(&shared), &bobs, r, "bob", true).unwrap();
        assert_eq!(forced["spec"]["replicas"], 5);
        let mut alices = deployment(2, "nginx");
        alices["spec"].as_object_mut().unwrap().remove("replicas");
        let after = apply(Some(&forced), &alices, r, "alice", false).unwrap();
        assert_eq!(after["spec"]["replicas"], 5);

        // A label alice drops from her configuration goes.
        alices["metadata"]["labels"] = json!({});
        let unlabeled = apply(Some(&after), &alices, r, "alice", false).unwrap();
        assert!(unlabeled["metadata"]["labels"].get("app").is_none());
    }

    #[test]
    fn an_update_takes_the_fields_it_changes_from_their_managers() {
        let r = by_plural("deployments");
        let applied = apply(None, &deployment(2, "nginx"), r, "alice", false).unwrap();
        let mut scaled = applied.clone();
        scaled["spec"]["replicas"] = json!(4);
        record_update(Some(&applied), &mut scaled, r, "kubectl-scale", "");
        let entries = entries(&scaled);
        assert_eq!(entries.len(), 2);
        let scale = entries
            .iter()
            .find(|e| e.manager == "kubectl-scale")
            .unwrap();
        assert_eq!(
            scale.fields,
            FieldSet::from([vec!["f:spec".to_string(), "f:replicas".to_string()]])
        );
        let alice = entries.iter().find(|e| e.manager == "alice").unwrap();
        assert!(
            !alice
                .fields
                .contains(&vec!["f:spec".to_string(), "f:replicas".to_string()])
        );
        // Alice's next apply of another value conflicts with the update's manager.
        let error = apply(Some(&scaled), &deployment(3, "nginx"), r, "alice", false).unwrap_err();
        assert!(
            error
                .message
                .contains("conflict with \"kubectl-scale\" using apps/v1: .spec.replicas"),
            "{}",
            error.message
        );
    }

    #[test]
    fn a_custom_resource_s_lists_merge_as_its_schema_says() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                "items": {"type": "object", "properties": {"name": {"type": "string"}, "port": {"type": "integer"}}}},
            "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            "args": {"type": "array", "items": {"type": "string"}},
        }}}});
        let mut r = (**by_plural("configmaps")).clone();
        r.custom = Some(std::sync::Arc::new(crate::resources::CustomVersion {
            schema,
            columns: Vec::new(),
            storage_version: "v1".into(),
            scale: None,
            categories: Vec::new(),
        }));
        let config = |ports: Value, tags: Value, args: Value| json!({"metadata": {"name": "w"}, "spec": {"ports": ports, "tags": tags, "args": args}});
        let alice = apply(
            None,
            &config(
                json!([{"name": "a", "port": 1}]),
                json!(["x"]),
                json!(["1", "2"]),
            ),
            &r,
            "alice",
            false,
        )
        .unwrap();
        let both = apply(
            Some(&alice),
            &config(
                json!([{"name": "b", "port": 2}]),
                json!(["y"]),
                json!(["1", "2"]),
            ),
            &r,
            "bob",
            false,
        )
        .unwrap();
        assert_eq!(
            both["spec"]["ports"],
            json!([{"name": "a", "port": 1}, {"name": "b", "port": 2}])
        );
        assert_eq!(both["spec"]["tags"], json!(["x", "y"]));
        // An atomic list is one field: another value for it conflicts.
        let error = apply(
            Some(&both),
            &config(json!([]), json!([]), json!(["3"])),
            &r,
            "bob",
            false,
        )
        .unwrap_err();
        assert!(error.message.contains(".spec.args"), "{}", error.message);
        // Alice drops her port: it goes, bob's stays.
        let mine = apply(
            Some(&both),
            &config(json!([]), json!(["x"]), json!(["1", "2"])),
            &r,
            "alice",
            false,
        )
        .unwrap();
        assert_eq!(mine["spec"]["ports"], json!([{"name": "b", "port": 2}]));
    }
}
