//! Validation that reports every bad field at once, and strict decoding that names every
//! unknown field.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::meta::ObjectMeta;

/// Why a field is bad; machine-readable, in the style of Kubernetes' `CauseType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FieldReason {
    /// A required field is missing or empty.
    FieldValueRequired,
    /// The value is not one the field takes.
    FieldValueInvalid,
    /// The value is longer than the field takes.
    FieldValueTooLong,
    /// The caller may not set the field (a server-managed field, a power it lacks).
    FieldValueForbidden,
    /// No such field.
    FieldValueUnknown,
    /// The field cannot change once set.
    FieldValueImmutable,
}

/// One bad field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// A JSON path such as `metadata.labels.team`.
    pub field: String,
    /// Why, as a machine reads it.
    pub reason: FieldReason,
    /// Why, for people, with what is accepted.
    pub message: String,
}

/// Every problem found in one request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldErrors(pub Vec<FieldError>);

impl FieldErrors {
    /// Adds a problem with `field`.
    pub fn push(&mut self, field: &str, reason: FieldReason, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.to_string(),
            reason,
            message: message.into(),
        });
    }

    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(())` when nothing was found.
    pub fn into_result(self) -> Result<(), FieldErrors> {
        if self.0.is_empty() { Ok(()) } else { Err(self) }
    }
}

impl std::fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect();
        f.write_str(&parts.join("; "))
    }
}

/// The longest name an object may have, as a DNS-1123 label.
pub const MAX_NAME_LEN: usize = 63;

/// A DNS-1123 label: lowercase letters, digits and `-`, starting and ending with a letter or
/// digit, at most 63 characters.
pub fn validate_name(field: &str, name: &str, errors: &mut FieldErrors) {
    if name.is_empty() {
        errors.push(field, FieldReason::FieldValueRequired, "a name is required");
        return;
    }
    if name.len() > MAX_NAME_LEN {
        errors.push(
            field,
            FieldReason::FieldValueTooLong,
            format!(
                "`{}…` is {} characters; at most {MAX_NAME_LEN} are allowed",
                &name[..20.min(name.len())],
                name.len()
            ),
        );
        return;
    }
    if !is_dns1123_label(name) {
        errors.push(
            field,
            FieldReason::FieldValueInvalid,
            format!("`{name}` is not a DNS-1123 label: use lowercase letters, digits and '-', starting and ending with a letter or digit"),
        );
    }
}

/// Whether `s` is a DNS-1123 label (see [`validate_name`]).
pub fn is_dns1123_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_NAME_LEN
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// Free text: bounded length, no control characters but newlines and tabs.
pub fn validate_text(field: &str, text: &str, max_chars: usize, errors: &mut FieldErrors) {
    let count = text.chars().count();
    if count > max_chars {
        errors.push(
            field,
            FieldReason::FieldValueTooLong,
            format!("{count} characters; at most {max_chars} are allowed"),
        );
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        errors.push(
            field,
            FieldReason::FieldValueInvalid,
            "control characters are not allowed",
        );
    }
}

/// A label or annotation key: an optional DNS subdomain prefix and `/`, then a name of at
/// most 63 characters of alphanumerics, `-`, `_` and `.`, starting and ending alphanumeric.
pub fn is_qualified_name(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let name_ok = is_label_value(name) && !name.is_empty();
    let prefix_ok = prefix
        .is_none_or(|p| !p.is_empty() && p.len() <= 253 && p.split('.').all(is_dns1123_label));
    name_ok && prefix_ok
}

/// A label value: empty, or at most 63 characters of alphanumerics, `-`, `_` and `.`,
/// starting and ending alphanumeric.
pub fn is_label_value(value: &str) -> bool {
    let b = value.as_bytes();
    b.is_empty()
        || (b.len() <= 63
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric())
}

fn validate_labels(labels: &BTreeMap<String, String>, errors: &mut FieldErrors) {
    for (key, value) in labels {
        let field = format!("metadata.labels.{key}");
        if !is_qualified_name(key) {
            errors.push(
                &field,
                FieldReason::FieldValueInvalid,
                format!("`{key}` is not a valid label key"),
            );
        }
        if !is_label_value(value) {
            errors.push(&field, FieldReason::FieldValueInvalid, format!("`{value}` is not a valid label value: at most 63 characters of letters, digits, '-', '_' and '.', starting and ending with a letter or digit"));
        }
    }
}

const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;

/// Checks the client-settable parts of metadata.
pub fn validate_meta(meta: &ObjectMeta, errors: &mut FieldErrors) {
    validate_name("metadata.name", &meta.name, errors);
    validate_labels(&meta.labels, errors);
    let mut annotation_bytes = 0;
    for (key, value) in &meta.annotations {
        annotation_bytes += key.len() + value.len();
        if !is_qualified_name(key) {
            errors.push(
                &format!("metadata.annotations.{key}"),
                FieldReason::FieldValueInvalid,
                format!("`{key}` is not a valid annotation key"),
            );
        }
    }
    if annotation_bytes > MAX_ANNOTATIONS_BYTES {
        errors.push(
            "metadata.annotations",
            FieldReason::FieldValueTooLong,
            format!("annotations total {annotation_bytes} bytes; at most {MAX_ANNOTATIONS_BYTES} are allowed"),
        );
    }
    for (i, finalizer) in meta.finalizers.iter().enumerate() {
        if !is_qualified_name(finalizer) {
            errors.push(
                &format!("metadata.finalizers[{i}]"),
                FieldReason::FieldValueInvalid,
                format!("`{finalizer}` is not a valid finalizer name (for example `example.com/cleanup`)"),
            );
        }
    }
}

/// Decodes JSON, rejecting unknown fields and naming every one of them, not just the first.
/// The body, and every value the schema says is an object, must be a JSON object: serde
/// would otherwise read an array as a struct's fields in order.
pub fn decode_strict<T: DeserializeOwned + schemars::JsonSchema + 'static>(
    json: &[u8],
) -> Result<T, FieldErrors> {
    let first = json.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        let mut errors = FieldErrors::default();
        errors.push(
            "body",
            FieldReason::FieldValueInvalid,
            "the body must be a JSON object",
        );
        return Err(errors);
    }
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(json) {
        let schema = schema_of::<T>();
        let mut errors = FieldErrors::default();
        check_shape(&value, &schema, &schema, "", &mut errors);
        errors.into_result()?;
    }
    let mut unknown = Vec::new();
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let decoded: Result<T, _> =
        serde_ignored::deserialize(&mut deserializer, |path| unknown.push(path.to_string()));
    let mut errors = FieldErrors::default();
    match decoded {
        Err(e) => {
            errors.push(
                "body",
                FieldReason::FieldValueInvalid,
                format!("malformed JSON: {e}"),
            );
            Err(errors)
        }
        Ok(value) => {
            if let Err(e) = deserializer.end() {
                errors.push(
                    "body",
                    FieldReason::FieldValueInvalid,
                    format!("malformed JSON: {e}"),
                );
            }
            for field in unknown {
                errors.push(
                    &field,
                    FieldReason::FieldValueUnknown,
                    format!("unknown field `{field}`"),
                );
            }
            errors.into_result().map(|()| value)
        }
    }
}

/// The JSON schema of `T`, generated once per type.
fn schema_of<T: schemars::JsonSchema + 'static>() -> std::sync::Arc<serde_json::Value> {
    use std::any::TypeId;
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    static SCHEMAS: OnceLock<Mutex<HashMap<TypeId, Arc<serde_json::Value>>>> = OnceLock::new();
    let schemas = SCHEMAS.get_or_init(Default::default);
    let mut schemas = schemas.lock().unwrap_or_else(|e| e.into_inner());
    schemas
        .entry(TypeId::of::<T>())
        .or_insert_with(|| Arc::new(schemars::schema_for!(T).to_value()))
        .clone()
}

fn joined(path: &str, field: &str) -> String {
    match path.is_empty() {
        true => field.to_string(),
        false => format!("{path}.{field}"),
    }
}

/// Adds an error for every value below `path` whose JSON type is not the one `schema`
/// wants (an array where an object belongs, above all).
fn check_shape(
    value: &serde_json::Value,
    schema: &serde_json::Value,
    root: &serde_json::Value,
    path: &str,
    errors: &mut FieldErrors,
) {
    use serde_json::Value;
    if let Some(reference) = schema["$ref"].as_str() {
        if let Some(name) = reference.strip_prefix("#/$defs/") {
            check_shape(value, &root["$defs"][name], root, path, errors);
        }
        return;
    }
    for branch in schema["allOf"].as_array().into_iter().flatten() {
        check_shape(value, branch, root, path, errors);
    }
    let alternatives = schema["anyOf"]
        .as_array()
        .or_else(|| schema["oneOf"].as_array());
    if let Some(branches) = alternatives {
        if value.is_null() {
            return;
        }
        let mut first = None;
        for branch in branches.iter().filter(|b| b["type"] != "null") {
            let mut found = FieldErrors::default();
            check_shape(value, branch, root, path, &mut found);
            if found.is_empty() {
                return;
            }
            first.get_or_insert(found);
        }
        if let Some(found) = first {
            errors.0.extend(found.0);
        }
        return;
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let actual = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let fits = types.is_empty()
        || types.contains(&actual)
        || (actual == "integer" && types.contains(&"number"));
    if !fits {
        errors.push(
            if path.is_empty() { "body" } else { path },
            FieldReason::FieldValueInvalid,
            format!("expected {}, not {actual}", types.join(" or ")),
        );
        return;
    }
    match value {
        Value::Array(items) if schema["items"].is_object() => {
            for (i, item) in items.iter().enumerate() {
                let at = format!("{path}[{i}]");
                check_shape(item, &schema["items"], root, &at, errors);
            }
        }
        Value::Object(fields) => {
            for (name, field) in fields {
                let sub = match &schema["properties"][name] {
                    Value::Null => &schema["additionalProperties"],
                    sub => sub,
                };
                if sub.is_object() {
                    check_shape(field, sub, root, &joined(path, name), errors);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Object, Project};

    #[test]
    fn names() {
        for good in ["a", "web", "prod-1", "0abc", &"a".repeat(63)] {
            assert!(is_dns1123_label(good), "{good}");
        }
        for bad in ["", "-a", "a-", "Web", "a_b", "a.b", &"a".repeat(64), "ü"] {
            assert!(!is_dns1123_label(bad), "{bad}");
        }
    }

    #[test]
    fn label_keys_and_values() {
        assert!(is_qualified_name("team"));
        assert!(is_qualified_name("dialtone.dev/tier"));
        assert!(!is_qualified_name("/tier"));
        assert!(!is_qualified_name("Bad Key"));
        assert!(is_label_value(""));
        assert!(is_label_value("v1.2_x"));
        assert!(!is_label_value("-x"));
    }

    #[test]
    fn meta_reports_every_bad_field() {
        let mut meta = ObjectMeta {
            name: "Bad_Name".into(),
            ..Default::default()
        };
        meta.labels.insert("ok".into(), "-bad".into());
        meta.labels.insert("bad key".into(), "ok".into());
        meta.finalizers.push("no spaces allowed".into());
        let mut errors = FieldErrors::default();
        validate_meta(&meta, &mut errors);
        let fields: Vec<_> = errors.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "metadata.name",
                "metadata.labels.bad key",
                "metadata.labels.ok",
                "metadata.finalizers[0]"
            ]
        );
    }

    #[test]
    fn strict_decoding_names_all_unknown_fields() {
        let body = br#"{"metadata":{"name":"web","colour":"red"},"spec":{"size":3},"extra":1}"#;
        let errors = decode_strict::<Object<Project>>(body).unwrap_err();
        let fields: Vec<_> = errors.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["metadata.colour", "spec.size", "extra"]);
        assert!(decode_strict::<Object<Project>>(b"{not json").is_err());
        assert!(
            decode_strict::<Object<Project>>(br#"{"metadata":{"name":"x"}} trailing"#).is_err()
        );
    }
}
