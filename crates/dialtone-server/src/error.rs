//! The edge where every error becomes an HTTP status and a JSON `Status` body.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dialtone_store::StoreError;
use dialtone_store::registry::RegistryError;
use dialtone_types::{ApiError, Reason};

/// An [`ApiError`] that axum can return.
#[derive(Debug)]
pub struct HttpError(pub ApiError);

pub type HttpResult<T> = Result<T, HttpError>;

impl From<ApiError> for HttpError {
    fn from(e: ApiError) -> Self {
        HttpError(e)
    }
}

impl From<RegistryError> for HttpError {
    fn from(e: RegistryError) -> Self {
        HttpError(match e {
            RegistryError::NotFound(what) => ApiError::not_found(what),
            RegistryError::AlreadyExists(what) => {
                ApiError::new(Reason::AlreadyExists, format!("{what} already exists"))
            }
            RegistryError::Conflict(message) => ApiError::new(Reason::Conflict, message),
            RegistryError::GuardMoved(what) => ApiError::new(
                Reason::Conflict,
                format!("{what} changed while this request was decided; retry"),
            ),
            RegistryError::Invalid(errors) => ApiError::invalid(errors),
            RegistryError::Gone(message) => ApiError::new(Reason::Gone, message),
            RegistryError::BadRequest(message) => ApiError::new(Reason::BadRequest, message),
            RegistryError::Store(e) => return e.into(),
        })
    }
}

impl From<StoreError> for HttpError {
    fn from(e: StoreError) -> Self {
        HttpError(match e {
            StoreError::Compacted { .. } => ApiError::new(
                Reason::Gone,
                "that resourceVersion is too old and has been compacted; list again to get a current one",
            ),
            StoreError::FutureRevision { .. } => ApiError::new(
                Reason::BadRequest,
                "that resourceVersion is newer than the store",
            ),
            StoreError::Unavailable(m) => {
                tracing::warn!(error = %m, "store unavailable");
                ApiError::new(
                    Reason::ServiceUnavailable,
                    "the store is unavailable; retry shortly",
                )
            }
            // The API's own writes hold no lease; these reach it only from a controller's
            // write made on its behalf, which the leader then makes again.
            StoreError::LeaseNotFound(_) | StoreError::NotLeader(_) => ApiError::new(
                Reason::ServiceUnavailable,
                "this server's leadership ended; retry shortly",
            ),
            StoreError::Internal(m) => {
                tracing::error!(error = %m, "store failure");
                ApiError::new(Reason::InternalError, "internal error; see the server log")
            }
        })
    }
}

pub fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self.0.to_status()).expect("a Status always serializes");
        json_response(status, body)
    }
}

/// Rewrites errors that axum produced itself (unknown method, body too large, …) as JSON
/// `Status` bodies, so that every error a client sees has the same shape.
pub async fn normalize_errors(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let reason = Reason::from_http_code(status.as_u16());
    let message = match reason {
        Reason::RequestEntityTooLarge => "the request body is over the 1 MiB limit".to_string(),
        Reason::MethodNotAllowed => "that method is not allowed on this path".to_string(),
        Reason::NotFound => "no such path".to_string(),
        _ => status.canonical_reason().unwrap_or("error").to_string(),
    };
    HttpError(ApiError::new(reason, message)).into_response()
}

/// An error and what caused it, as reqwest's own message leaves the cause out (a refused
/// connection, a certificate not trusted).
pub fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(e) = cause {
        text.push_str(&format!(": {e}"));
        cause = e.source();
    }
    text
}
