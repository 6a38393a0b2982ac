//! `GET /openapi/v2`: the whole API in one Swagger 2.0 document, as older clients read it
//! (client-go's `OpenAPISchema`, `kubectl explain --output plaintext-openapiv2`). It is
//! made from the OpenAPI v3 documents (`openapi.rs`, `custom.rs`): the same schemas under
//! `definitions`, the same patch operations. Clients ask for it as protobuf, gnostic's
//! `openapi.v2.Document`, encoded here field by field; JSON to those who ask for JSON.

use std::sync::{Arc, OnceLock};

use serde_json::{Map, Value, json};

use crate::custom::Served;
use crate::resources::RESOURCES;

/// The protobuf media type client-go asks for.
pub const PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
/// The same as upstream's answer names it (an `@` is no media type's character).
pub const PROTOBUF_ANSWER: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// The document of the built-in kinds, made once.
fn built_in() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut versions: Vec<(String, String)> = RESOURCES
            .iter()
            .filter(|r| !r.is_review() && !r.is_metrics())
            .map(|r| (r.group.to_string(), r.version.to_string()))
            .collect();
        versions.sort();
        versions.dedup();
        let documents: Vec<Arc<Value>> = versions
            .iter()
            .filter_map(|(g, v)| crate::openapi::group_version(g, v))
            .collect();
        swagger(documents.iter().map(|d| &**d))
    })
}

/// The document of everything the cluster serves.
pub fn document(served: &Served) -> Value {
    if served.custom().is_empty() {
        return built_in().clone();
    }
    let mut groups: Vec<(&str, &str)> = served
        .custom()
        .iter()
        .map(|r| (r.group.as_ref(), r.version.as_ref()))
        .collect();
    groups.sort();
    groups.dedup();
    let custom: Vec<Value> = groups
        .into_iter()
        .filter_map(|(g, v)| {
            let kinds: Vec<_> = served
                .custom()
                .iter()
                .filter(|r| r.group == g && r.version == v)
                .collect();
            crate::custom::openapi_document(&kinds)
        })
        .collect();
    let mut document = built_in().clone();
    let more = swagger(custom.iter());
    for section in ["paths", "definitions"] {
        if let (Some(into), Some(from)) =
            (document[section].as_object_mut(), more[section].as_object())
        {
            into.extend(from.clone());
        }
    }
    document
}

/// Swagger 2.0 from OpenAPI v3 documents: schemas as definitions, references and
/// parameters in v2's form.
fn swagger<'a>(documents: impl Iterator<Item = &'a Value>) -> Value {
    let mut paths = Map::new();
    let mut definitions = Map::new();
    for document in documents {
        for (name, schema) in document["components"]["schemas"]
            .as_object()
            .into_iter()
            .flatten()
        {
            definitions.insert(name.clone(), v2_refs(schema));
        }
        for (path, item) in document["paths"].as_object().into_iter().flatten() {
            let mut operation = item["patch"].clone();
            if let Some(parameters) = operation["parameters"].as_array_mut() {
                for parameter in parameters {
                    if let Some(p) = parameter.as_object_mut()
                        && let Some(schema) = p.remove("schema")
                    {
                        p.insert("type".into(), schema["type"].clone());
                    }
                }
            }
            paths.insert(path.clone(), json!({ "patch": operation }));
        }
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": "v2"},
        "paths": paths,
        "definitions": definitions,
    })
}

/// A schema with its references into `#/definitions/`, each as a `$ref` beside its
/// description (v3's `allOf` of one reference is how a description sits beside one there;
/// Kubernetes' v2 readers follow only `$ref`).
fn v2_refs(value: &Value) -> Value {
    match value {
        Value::Object(fields) => {
            let mut fields = fields.clone();
            if let Some(Value::Array(parts)) = fields.get("allOf")
                && let [only] = parts.as_slice()
                && only.as_object().is_some_and(|o| o.len() == 1)
                && let Some(reference) = only.get("$ref").cloned()
            {
                fields.remove("allOf");
                fields.insert("$ref".into(), reference);
            }
            Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| match (k.as_str(), v) {
                        ("$ref", Value::String(r)) => (
                            k.clone(),
                            json!(r.replace("#/components/schemas/", "#/definitions/")),
                        ),
                        _ => (k.clone(), v2_refs(v)),
                    })
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(v2_refs).collect()),
        other => other.clone(),
    }
}

/// A protobuf message being written: fields in order, each tagged with its number.
#[derive(Default)]
struct Message(Vec<u8>);

impl Message {
    fn varint(&mut self, mut n: u64) {
        while n >= 0x80 {
            self.0.push((n as u8) | 0x80);
            n >>= 7;
        }
        self.0.push(n as u8);
    }

    fn tag(&mut self, field: u32, wire: u8) {
        self.varint((u64::from(field) << 3) | u64::from(wire));
    }

    fn bytes(&mut self, field: u32, bytes: &[u8]) {
        self.tag(field, 2);
        self.varint(bytes.len() as u64);
        self.0.extend_from_slice(bytes);
    }

    fn string(&mut self, field: u32, text: &str) {
        if !text.is_empty() {
            self.bytes(field, text.as_bytes());
        }
    }

    fn message(&mut self, field: u32, message: Message) {
        self.bytes(field, &message.0);
    }

    fn boolean(&mut self, field: u32, value: bool) {
        if value {
            self.tag(field, 0);
            self.varint(1);
        }
    }

    fn double(&mut self, field: u32, value: f64) {
        self.tag(field, 1);
        self.0.extend_from_slice(&value.to_le_bytes());
    }

    fn int64(&mut self, field: u32, value: i64) {
        self.tag(field, 0);
        self.varint(value as u64);
    }
}

/// gnostic's `Any`: the value as YAML (JSON is YAML).
fn any(value: &Value) -> Message {
    let mut m = Message::default();
    m.string(2, &value.to_string());
    m
}

/// `NamedAny` for each vendor extension (`x-…`) of an object.
fn extensions(m: &mut Message, field: u32, object: &Value) {
    for (name, value) in object.as_object().into_iter().flatten() {
        if name.starts_with("x-") {
            let mut named = Message::default();
            named.string(1, name);
            named.message(2, any(value));
            m.message(field, named);
        }
    }
}

/// `openapi.v2.Schema`.
fn schema(s: &Value) -> Message {
    let mut m = Message::default();
    let text = |m: &mut Message, field: u32, key: &str| {
        if let Some(v) = s[key].as_str() {
            m.string(field, v);
        }
    };
    text(&mut m, 1, "$ref");
    text(&mut m, 2, "format");
    text(&mut m, 3, "title");
    text(&mut m, 4, "description");
    if let Some(default) = s.get("default") {
        m.message(5, any(default));
    }
    for (field, key) in [(6, "multipleOf"), (7, "maximum"), (9, "minimum")] {
        if let Some(n) = s[key].as_f64() {
            m.double(field, n);
        }
    }
    m.boolean(8, s["exclusiveMaximum"] == true);
    m.boolean(10, s["exclusiveMinimum"] == true);
    for (field, key) in [
        (11, "maxLength"),
        (12, "minLength"),
        (14, "maxItems"),
        (15, "minItems"),
        (17, "maxProperties"),
        (18, "minProperties"),
    ] {
        if let Some(n) = s[key].as_i64() {
            m.int64(field, n);
        }
    }
    text(&mut m, 13, "pattern");
    m.boolean(16, s["uniqueItems"] == true);
    for required in s["required"].as_array().into_iter().flatten() {
        if let Some(name) = required.as_str() {
            m.bytes(19, name.as_bytes());
        }
    }
    for value in s["enum"].as_array().into_iter().flatten() {
        m.message(20, any(value));
    }
    match &s["additionalProperties"] {
        Value::Object(_) => {
            let mut item = Message::default();
            item.message(1, schema(&s["additionalProperties"]));
            m.message(21, item);
        }
        Value::Bool(b) => {
            let mut item = Message::default();
            item.tag(2, 0);
            item.varint(u64::from(*b));
            m.message(21, item);
        }
        _ => {}
    }
    let types: Vec<&str> = match &s["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !types.is_empty() {
        let mut item = Message::default();
        for t in types {
            item.bytes(1, t.as_bytes());
        }
        m.message(22, item);
    }
    let items: Vec<&Value> = match &s["items"] {
        Value::Object(_) => vec![&s["items"]],
        Value::Array(all) => all.iter().collect(),
        _ => Vec::new(),
    };
    if !items.is_empty() {
        let mut item = Message::default();
        for i in items {
            item.message(1, schema(i));
        }
        m.message(23, item);
    }
    for part in s["allOf"].as_array().into_iter().flatten() {
        m.message(24, schema(part));
    }
    if let Some(properties) = s["properties"].as_object() {
        let mut all = Message::default();
        for (name, property) in properties {
            all.message(1, named_schema(name, property));
        }
        m.message(25, all);
    }
    m.boolean(27, s["readOnly"] == true);
    extensions(&mut m, 31, s);
    m
}

fn named_schema(name: &str, value: &Value) -> Message {
    let mut m = Message::default();
    m.string(1, name);
    m.message(2, schema(value));
    m
}

/// `openapi.v2.Operation`: the patch operation of a kind.
fn operation(o: &Value) -> Message {
    let mut m = Message::default();
    if let Some(id) = o["operationId"].as_str() {
        m.string(5, id);
    }
    for parameter in o["parameters"].as_array().into_iter().flatten() {
        let mut query = Message::default();
        query.string(2, parameter["in"].as_str().unwrap_or("query"));
        query.string(4, parameter["name"].as_str().unwrap_or(""));
        query.string(6, parameter["type"].as_str().unwrap_or("string"));
        let mut non_body = Message::default();
        non_body.message(3, query);
        let mut parameter = Message::default();
        parameter.message(2, non_body);
        let mut item = Message::default();
        item.message(1, parameter);
        m.message(8, item);
    }
    let mut responses = Message::default();
    for (code, response) in o["responses"].as_object().into_iter().flatten() {
        let mut body = Message::default();
        body.string(1, response["description"].as_str().unwrap_or(""));
        let mut value = Message::default();
        value.message(1, body);
        let mut named = Message::default();
        named.string(1, code);
        named.message(2, value);
        responses.message(1, named);
    }
    m.message(9, responses);
    extensions(&mut m, 13, o);
    m
}

/// The document as gnostic's `openapi.v2.Document`.
pub fn protobuf(document: &Value) -> Vec<u8> {
    let mut m = Message::default();
    m.string(1, document["swagger"].as_str().unwrap_or("2.0"));
    let mut info = Message::default();
    info.string(1, document["info"]["title"].as_str().unwrap_or(""));
    info.string(2, document["info"]["version"].as_str().unwrap_or(""));
    m.message(2, info);
    let mut paths = Message::default();
    for (path, item) in document["paths"].as_object().into_iter().flatten() {
        let mut path_item = Message::default();
        if item["patch"].is_object() {
            path_item.message(8, operation(&item["patch"]));
        }
        let mut named = Message::default();
        named.string(1, path);
        named.message(2, path_item);
        paths.message(2, named);
    }
    m.message(8, paths);
    let mut definitions = Message::default();
    for (name, value) in document["definitions"].as_object().into_iter().flatten() {
        definitions.message(1, named_schema(name, value));
    }
    m.message(9, definitions);
    m.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_kind_is_defined_with_v2_references() {
        let document = built_in();
        let deployment = &document["definitions"]["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            deployment["x-kubernetes-group-version-kind"],
            json!([{"group": "apps", "version": "v1", "kind": "Deployment"}])
        );
        let text = document.to_string();
        assert!(!text.contains("#/components/schemas/"));
        for reference in text.split("\"$ref\":\"#/definitions/").skip(1) {
            let name = reference.split('"').next().unwrap();
            assert!(document["definitions"].get(name).is_some(), "{name}");
        }
        let patch =
            &document["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(patch["parameters"][2]["type"], "string");
    }

    #[test]
    fn protobuf_fields_are_tagged_as_gnostic_numbers_them() {
        let bytes = protobuf(&json!({
            "swagger": "2.0", "info": {"title": "T", "version": "v"},
            "paths": {}, "definitions": {"A": {"type": "integer", "description": "d"}},
        }));
        // swagger = 1 (string "2.0"), then info = 2.
        assert_eq!(&bytes[..5], &[0x0a, 3, b'2', b'.', b'0']);
        assert_eq!(bytes[5], 0x12);
        // definitions = 9 holds NamedSchema { name = 1 "A", value = 2 Schema { description
        // = 4 "d", type = 22 TypeItem { value = 1 "integer" } } }.
        let schema = [
            0x22, 1, b'd', 0xb2, 0x01, 9, 0x0a, 7, b'i', b'n', b't', b'e', b'g', b'e', b'r',
        ];
        let tail = bytes.len() - schema.len();
        assert_eq!(&bytes[tail..], &schema);
    }
}
