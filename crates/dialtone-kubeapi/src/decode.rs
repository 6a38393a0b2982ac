//! A request's object decoded as upstream's API server decodes it: into the kind's typed form
//! first, before anything defaults or reads it, so that a body of the wrong shape is a 400 and
//! never reaches code that expects an object. A missing required field is a 422 `Required
//! value`; an unknown field is refused, reported or dropped as the request's
//! `fieldValidation` says. What is stored is the typed form written back, so unknown fields
//! never persist.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// How the server treats fields the kind does not have (the `fieldValidation` parameter).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FieldValidation {
    /// Refuse the request, naming every unknown field.
    Strict,
    /// Drop them and say so in a `Warning` header (upstream's default).
    #[default]
    Warn,
    /// Drop them silently.
    Ignore,
}

impl FieldValidation {
    /// The `fieldValidation` parameter's value: `Strict`, `Warn` or `Ignore`.
    pub fn parse(value: &str) -> Result<Self, String> {
        match value {
            "Strict" => Ok(FieldValidation::Strict),
            "Warn" => Ok(FieldValidation::Warn),
            "Ignore" => Ok(FieldValidation::Ignore),
            other => Err(format!(
                "fieldValidation parameter unsupported: \"{other}\"; valid values are Ignore, Warn and Strict"
            )),
        }
    }
}

/// An object in its typed form, with the paths of the fields the type does not have.
#[derive(Debug)]
pub struct Typed {
    /// The object as its type writes it back: unknown fields gone.
    pub object: Value,
    /// The paths of the fields the type does not have, as upstream names them.
    pub unknown: Vec<String>,
}

/// Why an object does not decode.
#[derive(Debug, PartialEq, Eq)]
pub enum Undecodable {
    /// A required field is absent: upstream's `Required value` (422).
    Missing {
        /// The field's path.
        field: String,
    },
    /// A field has the wrong type or shape (400), or the body is not an object at all.
    Invalid {
        /// The field's path; empty for the body as a whole.
        field: String,
        /// What is wrong, as upstream's decoder says it.
        message: String,
    },
}

/// Decodes `value` into `T` and writes it back, naming what did not fit.
pub fn typed<T: DeserializeOwned + Serialize>(value: &Value) -> Result<Typed, Undecodable> {
    if !value.is_object() {
        return Err(Undecodable::Invalid {
            field: String::new(),
            message: format!("expected an object, got {}", json_type(value)),
        });
    }
    let mut unknown = Vec::new();
    let mut track = serde_path_to_error::Track::new();
    let decoded = T::deserialize(serde_ignored::Deserializer::new(
        serde_path_to_error::Deserializer::new(value.clone(), &mut track),
        &mut |path: serde_ignored::Path| unknown.push(upstream_path(&path)),
    ));
    match decoded {
        Ok(decoded) => Ok(Typed {
            object: serde_json::to_value(decoded).map_err(|e| Undecodable::Invalid {
                field: String::new(),
                message: e.to_string(),
            })?,
            unknown,
        }),
        Err(e) => {
            let at = track.path().to_string();
            let at = if at == "." { String::new() } else { at };
            let message = e.to_string();
            match message
                .strip_prefix("missing field `")
                .and_then(|m| m.strip_suffix('`'))
            {
                Some(name) => Err(Undecodable::Missing {
                    field: join(&at, name),
                }),
                None => Err(Undecodable::Invalid { field: at, message }),
            }
        }
    }
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}.{name}")
    }
}

/// `spec.template.spec.containers[0].imagePullPolicyy`, as upstream names fields.
fn upstream_path(path: &serde_ignored::Path) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", upstream_path(parent)),
        Path::Map { parent, key } => join(&upstream_path(parent), key),
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => upstream_path(parent),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::Deployment;
    use serde_json::json;

    fn deployment(spec: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": spec})
    }

    #[test]
    fn unknown_fields_are_named_as_upstream_names_them_and_dropped() {
        let typed = typed::<Deployment>(&deployment(json!({
            "replicaz": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"spec": {"containers": [{"name": "web", "imagee": "nginx"}]}},
        })))
        .unwrap();
        assert_eq!(
            typed.unknown,
            ["spec.replicaz", "spec.template.spec.containers[0].imagee"]
        );
        assert!(typed.object["spec"].get("replicaz").is_none());
        assert_eq!(
            typed.object["spec"]["selector"]["matchLabels"]["app"],
            "web"
        );
    }

    #[test]
    fn wrong_shapes_are_invalid_at_their_field() {
        assert_eq!(
            typed::<Deployment>(&json!([])).err(),
            Some(Undecodable::Invalid {
                field: String::new(),
                message: "expected an object, got an array".into()
            })
        );
        let Err(Undecodable::Invalid { field, .. }) =
            typed::<Deployment>(&json!({"metadata": "x"}))
        else {
            panic!("a string metadata decodes")
        };
        assert_eq!(field, "metadata");
        let Err(Undecodable::Invalid { field, .. }) = typed::<Deployment>(&deployment(
            json!({"selector": {}, "template": {}, "replicas": "two"}),
        )) else {
            panic!("a string replicas decodes")
        };
        assert_eq!(field, "spec.replicas");
    }

    #[test]
    fn a_missing_required_field_is_zero_as_in_go_or_named_where_upstream_types_insist() {
        // Like Go's decoder, k8s-openapi's makes most absent required fields zero values;
        // validation then reports them (a Deployment's empty selector is `Required value`).
        let decoded = typed::<Deployment>(&deployment(json!({"template": {}}))).unwrap();
        assert_eq!(decoded.object["spec"]["selector"], json!({}));
        let budget = json!({"status": {"conditions": [{"type": "Ok", "status": "True", "reason": "R", "message": "m"}]}});
        assert_eq!(
            typed::<k8s_openapi::api::policy::v1::PodDisruptionBudget>(&budget).err(),
            Some(Undecodable::Missing {
                field: "status.conditions[0].lastTransitionTime".into()
            })
        );
    }

    #[test]
    fn field_validation_values() {
        assert_eq!(
            FieldValidation::parse("Strict"),
            Ok(FieldValidation::Strict)
        );
        assert!(
            FieldValidation::parse("strict")
                .unwrap_err()
                .contains("Ignore, Warn and Strict")
        );
    }
}
