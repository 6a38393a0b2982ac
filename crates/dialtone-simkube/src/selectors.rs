//! Label and field selectors, with the syntax kubectl sends: `a=b`, `a==b`, `a!=b`,
//! `a in (x,y)`, `a notin (x)`, `a`, `!a`; fields support `=`, `==` and `!=` on the few
//! fields upstream indexes.

use serde_json::Value;

#[derive(Clone, Debug, PartialEq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Selector(Vec<Requirement>);

/// Splits on commas outside parentheses.
fn terms(text: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&text[start..]);
    terms
        .into_iter()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect()
}

fn set(values: &str) -> Result<Vec<String>, String> {
    let inner = values
        .trim()
        .strip_prefix('(')
        .and_then(|v| v.strip_suffix(')'))
        .ok_or_else(|| format!("expected a parenthesised set, found `{values}`"))?;
    Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
}

impl Selector {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut requirements = Vec::new();
        for term in terms(text) {
            let requirement = if let Some((key, value)) = term.split_once("!=") {
                Requirement::NotEquals(key.trim().into(), value.trim().into())
            } else if let Some((key, value)) = term.split_once("==") {
                Requirement::Equals(key.trim().into(), value.trim().into())
            } else if let Some((key, value)) = term.split_once('=') {
                Requirement::Equals(key.trim().into(), value.trim().into())
            } else if let Some((key, values)) = term.split_once(" notin ") {
                Requirement::NotIn(key.trim().into(), set(values)?)
            } else if let Some((key, values)) = term.split_once(" in ") {
                Requirement::In(key.trim().into(), set(values)?)
            } else if let Some(key) = term.strip_prefix('!') {
                Requirement::NotExists(key.trim().into())
            } else if term
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
            {
                Requirement::Exists(term.into())
            } else {
                return Err(format!("unable to parse requirement: `{term}`"));
            };
            requirements.push(requirement);
        }
        Ok(Selector(requirements))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `lookup` (a label or field getter) satisfies every requirement.
    pub fn matches(&self, lookup: impl Fn(&str) -> Option<String>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => lookup(k).as_deref() == Some(v),
            Requirement::NotEquals(k, v) => lookup(k).as_deref() != Some(v),
            Requirement::In(k, vs) => lookup(k).is_some_and(|x| vs.contains(&x)),
            Requirement::NotIn(k, vs) => lookup(k).is_none_or(|x| !vs.contains(&x)),
            Requirement::Exists(k) => lookup(k).is_some(),
            Requirement::NotExists(k) => lookup(k).is_none(),
        })
    }

    pub fn matches_labels(&self, object: &Value) -> bool {
        let labels = &object["metadata"]["labels"];
        self.matches(|k| labels.get(k).and_then(Value::as_str).map(str::to_string))
    }

    pub fn matches_fields(&self, object: &Value) -> bool {
        self.matches(|field| {
            if !FIELDS.contains(&field) {
                return None;
            }
            // Upstream's `source` selects an event's reporting component.
            let path = if field == "source" {
                "source.component"
            } else {
                field
            };
            let value = path.split('.').fold(object, |v, part| &v[part]);
            Some(match value {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            })
        })
    }

    /// The selector with its keys renamed by `rename`.
    pub fn renamed(&self, rename: impl Fn(&str) -> String) -> Selector {
        Selector(
            self.0
                .iter()
                .map(|r| match r {
                    Requirement::Equals(k, v) => Requirement::Equals(rename(k), v.clone()),
                    Requirement::NotEquals(k, v) => Requirement::NotEquals(rename(k), v.clone()),
                    Requirement::In(k, vs) => Requirement::In(rename(k), vs.clone()),
                    Requirement::NotIn(k, vs) => Requirement::NotIn(rename(k), vs.clone()),
                    Requirement::Exists(k) => Requirement::Exists(rename(k)),
                    Requirement::NotExists(k) => Requirement::NotExists(rename(k)),
                })
                .collect(),
        )
    }

    /// Fields outside the indexed ones are refused, as upstream does.
    pub fn check_fields(&self) -> Result<(), String> {
        for r in &self.0 {
            let key = match r {
                Requirement::Equals(k, _) | Requirement::NotEquals(k, _) => k,
                _ => return Err("field selectors support only =, == and !=".into()),
            };
            if !FIELDS.contains(&key.as_str()) {
                return Err(format!("field label not supported: {key}"));
            }
        }
        Ok(())
    }
}

/// The fields selectors may name: every object's, pods', and those `kubectl describe` asks
/// of events.
const FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "status.phase",
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "type",
    "source",
    "reportingComponent",
    // The same fields of an event read as `events.k8s.io/v1`.
    "regarding.kind",
    "regarding.namespace",
    "regarding.name",
    "regarding.uid",
    "regarding.apiVersion",
    "regarding.resourceVersion",
    "regarding.fieldPath",
    "reportingController",
];

/// `matchLabels` and `matchExpressions` of a `LabelSelector` object.
pub fn label_selector_matches(selector: &Value, labels: &Value) -> bool {
    let label = |k: &str| labels.get(k).and_then(Value::as_str).map(str::to_string);
    let by_value = selector["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| label(k).as_deref() == v.as_str());
    let by_expression = selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|e| {
            let key = e["key"].as_str().unwrap_or("");
            let values: Vec<String> = e["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            match e["operator"].as_str().unwrap_or("") {
                "In" => label(key).is_some_and(|v| values.contains(&v)),
                "NotIn" => label(key).is_none_or(|v| !values.contains(&v)),
                "Exists" => label(key).is_some(),
                "DoesNotExist" => label(key).is_none(),
                _ => false,
            }
        });
    by_value && by_expression
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_operator_selects_as_upstream() {
        let object = json!({"metadata": {"labels": {"app": "web", "tier": "front"}}});
        for (selector, expected) in [
            ("app=web", true),
            ("app==web,tier=front", true),
            ("app!=web", false),
            ("app in (web, api)", true),
            ("app notin (web)", false),
            ("tier", true),
            ("!tier", false),
            ("missing notin (x)", true),
        ] {
            let parsed = Selector::parse(selector).unwrap();
            assert_eq!(parsed.matches_labels(&object), expected, "{selector}");
        }
    }
}
