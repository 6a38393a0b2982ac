//! The audit log: every mutating request, who made it, when, and how it ended, recorded in
//! the store under the org it touched (or, when the caller may not see that org, the
//! caller's own, so that the log never reveals another tenant).

use std::collections::HashMap;

use axum::Extension;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use dialtone_types::auth::AuditRecord;
use dialtone_types::{List, ListMeta, Reason, ResourcePath};

use crate::App;
use crate::auth::{Decision, Part, Principal, Target, Verb};
use crate::error::HttpResult;
use crate::resources::{authorized_part, check_query, object_path, parse_limit, to_json};

fn is_mutating(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

fn outcome(status: StatusCode) -> String {
    if status.is_success() {
        return "success".into();
    }
    format!("{:?}", Reason::from_http_code(status.as_u16()))
}

/// Middleware, after authentication: records every mutating request once it has an answer.
pub async fn record_mutations(State(app): State<App>, request: Request, next: Next) -> Response {
    if !is_mutating(request.method()) {
        return next.run(request).await;
    }
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    let principal = request.extensions().get::<Principal>().cloned();
    let request_id = uuid::Uuid::new_v4().simple().to_string();
    let mut response = next.run(request).await;
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    let Some(principal) = principal else {
        return response;
    };
    let target_org = path
        .strip_prefix("/v1/orgs/")
        .and_then(|rest| rest.split('/').next())
        .filter(|org| !org.is_empty())
        .map(ResourcePath::org)
        .filter(|org| {
            app.authorizer
                .authorize(&principal, Verb::Get, Target::Tenant(org))
                == Decision::Allow
        })
        .map_or_else(|| principal.org.clone(), |org| org.org_name().to_string());
    let record = AuditRecord {
        time: (app.clock)(),
        actor: principal.actor(),
        method,
        path,
        status: response.status().as_u16(),
        outcome: outcome(response.status()),
        request_id,
    };
    if let Err(e) = app.registry.append_audit(&target_org, &record).await {
        tracing::error!(org = %target_org, error = %e, "cannot record an audit entry");
    }
    response
}

/// `GET /v1/orgs/{org}/audit`: the org's audit records, oldest first.
pub async fn list_audit(
    State(app): State<App>,
    Extension(principal): Extension<Principal>,
    Path(params): Path<Vec<(String, String)>>,
    Query(query): Query<HashMap<String, String>>,
) -> HttpResult<Response> {
    check_query(&query, &["limit", "continue"])?;
    let org = object_path(&dialtone_types::kinds::ORG, &params)?;
    authorized_part(&app, &principal, &org, Verb::List, Part::Audit).await?;
    let page = app
        .registry
        .list_audit(
            org.org_name(),
            parse_limit(&query)?,
            query.get("continue").map(String::as_str),
        )
        .await?;
    Ok(to_json(
        StatusCode::OK,
        &List::new(
            "AuditRecord",
            ListMeta {
                resource_version: page.revision.to_string(),
                continue_token: page.continue_token,
            },
            page.items,
        ),
    ))
}
