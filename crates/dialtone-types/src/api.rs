//! The one error shape of the API, after Kubernetes' `Status`: machine-readable `reason` and
//! `code`, a message for people, and the causes (one per bad field).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::validation::{FieldError, FieldErrors};

/// Machine-readable reason for a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Reason {
    /// The request is not one the API can read (not JSON, an unknown parameter).
    BadRequest,
    /// A field's value is refused; the causes name each.
    Invalid,
    /// No valid credential came with the request.
    Unauthorized,
    /// The caller may not do this.
    Forbidden,
    /// No such object, or one the caller may not see.
    NotFound,
    /// The path does not take this method.
    MethodNotAllowed,
    /// An object of that name exists.
    AlreadyExists,
    /// The object changed since the version the write names.
    Conflict,
    /// The watch or list resumes from a version that is no longer kept: list again.
    Gone,
    /// A write that must name the version it replaces did not.
    PreconditionRequired,
    /// The body is larger than the API takes.
    RequestEntityTooLarge,
    /// The body is not of a content type the API takes.
    UnsupportedMediaType,
    /// The server failed; the request may be retried.
    InternalError,
    /// The server cannot answer now (its store is unreachable, it is starting); retry later.
    ServiceUnavailable,
}

impl Reason {
    /// The reason an HTTP status code stands for, for errors that carry no body of ours.
    pub fn from_http_code(code: u16) -> Reason {
        match code {
            400 => Reason::BadRequest,
            401 => Reason::Unauthorized,
            403 => Reason::Forbidden,
            404 => Reason::NotFound,
            405 => Reason::MethodNotAllowed,
            409 => Reason::Conflict,
            410 => Reason::Gone,
            428 => Reason::PreconditionRequired,
            413 => Reason::RequestEntityTooLarge,
            415 => Reason::UnsupportedMediaType,
            422 => Reason::Invalid,
            503 => Reason::ServiceUnavailable,
            _ => Reason::InternalError,
        }
    }

    /// The HTTP status code the reason is answered with.
    pub fn http_code(self) -> u16 {
        match self {
            Reason::BadRequest => 400,
            Reason::Unauthorized => 401,
            Reason::Forbidden => 403,
            Reason::NotFound => 404,
            Reason::MethodNotAllowed => 405,
            Reason::AlreadyExists | Reason::Conflict => 409,
            Reason::Gone => 410,
            Reason::PreconditionRequired => 428,
            Reason::RequestEntityTooLarge => 413,
            Reason::UnsupportedMediaType => 415,
            Reason::Invalid => 422,
            Reason::InternalError => 500,
            Reason::ServiceUnavailable => 503,
        }
    }
}

/// What is wrong with one field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StatusCause {
    /// The field's path, `spec.region`.
    pub field: String,
    /// Why, as a machine reads it (`FieldValueInvalid`, `FieldValueRequired`, …).
    pub reason: String,
    /// Why, for people, with the values accepted.
    pub message: String,
}

/// The causes of a failure.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StatusDetails {
    /// One per bad field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<StatusCause>,
}

/// The body of every error response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// Always `v1`.
    pub api_version: String,
    /// Always `Status`.
    pub kind: String,
    /// Always `Failure`.
    pub status: String,
    /// Why, as a machine reads it.
    pub reason: Reason,
    /// The HTTP status code.
    pub code: u16,
    /// Why, for people.
    pub message: String,
    /// The fields at fault, if any.
    #[serde(default)]
    pub details: StatusDetails,
}

/// An error as the API reports it. Built by the server, decoded by the client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// Why, as a machine reads it.
    pub reason: Reason,
    /// Why, for people.
    pub message: String,
    /// The fields at fault.
    pub causes: Vec<StatusCause>,
}

impl ApiError {
    /// An error with no field causes.
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        ApiError {
            reason,
            message: message.into(),
            causes: Vec::new(),
        }
    }

    /// `{what} not found`.
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(Reason::NotFound, format!("{what} not found"))
    }

    /// 422 naming every bad field; 400 when the body as a whole is not JSON of the
    /// right shape, as for resources.
    pub fn invalid(errors: FieldErrors) -> Self {
        if let [only] = errors.0.as_slice()
            && only.field == "body"
        {
            return Self::new(Reason::BadRequest, only.message.clone());
        }
        let causes = errors
            .0
            .iter()
            .map(
                |FieldError {
                     field,
                     reason,
                     message,
                 }| StatusCause {
                    field: field.clone(),
                    reason: format!("{reason:?}"),
                    message: message.clone(),
                },
            )
            .collect();
        ApiError {
            reason: Reason::Invalid,
            message: format!("invalid request: {errors}"),
            causes,
        }
    }

    /// The HTTP status code it is answered with.
    pub fn code(&self) -> u16 {
        self.reason.http_code()
    }

    /// The body the API answers it with.
    pub fn to_status(&self) -> Status {
        Status {
            api_version: "v1".into(),
            kind: "Status".into(),
            status: "Failure".into(),
            reason: self.reason,
            code: self.code(),
            message: self.message.clone(),
            details: StatusDetails {
                causes: self.causes.clone(),
            },
        }
    }

    /// The error an answer's body stands for.
    pub fn from_status(status: Status) -> Self {
        ApiError {
            reason: status.reason,
            message: status.message,
            causes: status.details.causes,
        }
    }
}
