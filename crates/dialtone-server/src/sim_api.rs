//! The `sim` cloud's own API, for operators and tests: what it holds, failure injection and
//! quotas. It acts on the whole simulated cloud, so it takes a platform admin.

use std::collections::HashMap;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use dialtone_cloud::CloudError;
use dialtone_sim::{FaultSpec, Quotas, Sim};
use dialtone_types::{ApiError, Reason};
use serde::de::DeserializeOwned;

use crate::App;
use crate::auth::{Principal, Target, Verb, enforce};
use crate::error::HttpResult;
use crate::resources::{check_query, success, to_json};

fn sim<'a>(app: &'a App, principal: &Principal, verb: Verb) -> HttpResult<&'a Sim> {
    enforce(
        app.authorizer.authorize(principal, verb, Target::Platform),
        "sim",
    )?;
    app.sim.as_deref().ok_or_else(|| {
        ApiError::new(
            Reason::NotFound,
            "this control plane's provider is not `sim`",
        )
        .into()
    })
}

fn decode<T: DeserializeOwned + schemars::JsonSchema + 'static>(body: &[u8]) -> HttpResult<T> {
    dialtone_types::validation::decode_strict(body).map_err(|e| ApiError::invalid(e).into())
}

fn cloud_error(e: CloudError) -> ApiError {
    match e {
        CloudError::NotFound { id } => ApiError::not_found(id),
        CloudError::Invalid { message } => ApiError::new(Reason::BadRequest, message),
        other => ApiError::new(Reason::ServiceUnavailable, other.to_string()),
    }
}

/// `GET /v1/sim/resources?region=&tag=key=value`: every resource, or those matching.
pub async fn list_resources(
    State(app): State<App>,
    Extension(principal): Extension<Principal>,
    Query(query): Query<HashMap<String, String>>,
) -> HttpResult<Response> {
    let sim = sim(&app, &principal, Verb::List)?;
    check_query(&query, &["region", "tag"])?;
    let tag = match query.get("tag") {
        None => None,
        Some(tag) => Some(tag.split_once('=').ok_or_else(|| {
            ApiError::new(
                Reason::BadRequest,
                format!("tag must be key=value, not `{tag}`"),
            )
        })?),
    };
    let items: Vec<_> = sim
        .resources()
        .into_iter()
        .filter(|r| query.get("region").is_none_or(|region| &r.region == region))
        .filter(|r| tag.is_none_or(|(k, v)| r.tags.get(k).is_some_and(|t| t == v)))
        .collect();
    Ok(to_json(
        StatusCode::OK,
        &serde_json::json!({ "items": items }),
    ))
}

pub async fn list_faults(
    State(app): State<App>,
    Extension(principal): Extension<Principal>,
) -> HttpResult<Response> {
    let sim = sim(&app, &principal, Verb::List)?;
    Ok(to_json(
        StatusCode::OK,
        &serde_json::json!({ "items": sim.faults() }),
    ))
}

pub async fn add_fault(
    State(app): State<App>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> HttpResult<Response> {
    let sim = sim(&app, &principal, Verb::Create)?;
    let spec: FaultSpec = decode(&body)?;
    let fault = sim
        .add_fault(spec)
        .await
        .map_err(|message| ApiError::new(Reason::BadRequest, message))?;
    Ok(to_json(StatusCode::CREATED, &fault))
}

pub async fn remove_fault(
    State(app): State<App>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> HttpResult<Response> {
    let sim = sim(&app, &principal, Verb::Delete)?;
    let removed = sim
        .remove_faults(Some(&id))
        .await
        .map_err(|message| ApiError::new(Reason::ServiceUnavailable, message))?;
    if removed == 0 {
        return Err(ApiError::not_found(format!("fault {id}")).into());
    }
    Ok(success(format!("fault {id} removed")))
}

pub async fn clear_faults(
    State(app): State<App>,
    Extension(principal): Extension<Principal>,
) -> HttpResult<Response> {
    let sim = sim(&app, &principal, Verb::Delete)?;
    let removed = sim
        .remove_faults(None)
        .await
        .map_err(|message| ApiError::new(Reason::ServiceUnavailable, message))?;
    Ok(success(format!("{removed} fault(s) removed")))
}

/// `POST /v1/sim/instances/{id}/kill`: the instance dies, as if its host failed.
pub async fn kill_instance(
    State(app): State<App>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> HttpResult<Response> {
    let sim = sim(&app, &principal, Verb::Update)?;
    let killed = sim.kill_instance(&id).await.map_err(cloud_error)?;
    Ok(to_json(StatusCode::OK, &killed))
}

pub async fn get_quotas(
    State(app): State<App>,
    Extension(principal): Extension<Principal>,
    Path(region): Path<String>,
) -> HttpResult<Response> {
    let sim = sim(&app, &principal, Verb::Get)?;
    let quotas = sim.quotas(&region).map_err(cloud_error)?;
    Ok(to_json(StatusCode::OK, &quotas))
}

pub async fn set_quotas(
    State(app): State<App>,
    Extension(principal): Extension<Principal>,
    Path(region): Path<String>,
    body: Bytes,
) -> HttpResult<Response> {
    let sim = sim(&app, &principal, Verb::Update)?;
    let quotas: Quotas = decode(&body)?;
    sim.set_quotas(&region, quotas.clone())
        .await
        .map_err(cloud_error)?;
    Ok(to_json(StatusCode::OK, &quotas))
}
