//! The audit log: every mutating request, who made it, when, and how it ended, recorded in
//! the store under the org it touched (or, when the caller may not see that org, or it is
//! gone, the caller's own, so that the log never reveals another tenant). Records are filed
//! by the org's uid: a deleted org's stay with it, for platform admins only
//! (`/v1/retiredorgs`), and an org re-created under its name starts with an empty log.

use std::collections::HashMap;

use axum::Extension;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use dialtone_store::records::PendingAudit;
use dialtone_types::auth::AuditRecord;
use dialtone_types::{ApiError, List, ListMeta, Reason, ResourcePath};

use crate::App;
use crate::auth::{Decision, Part, Principal, Target, Verb, enforce_platform};
use crate::error::HttpResult;
use crate::resources::{
    authorized_part, check_query, object_path, parse_limit, to_json, whole_list,
};

/// Whether a request with this method writes (and so is audited, and made in its home region).
pub(crate) fn is_mutating(method: &Method) -> bool {
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

/// Middleware, after authentication: records every mutating request. A create or an
/// update writes its record in the same transaction as its change (`PendingAudit`); any
/// other request, or one that failed, is recorded once it has an answer.
pub async fn record_mutations(State(app): State<App>, request: Request, next: Next) -> Response {
    if !is_mutating(request.method()) {
        return next.run(request).await;
    }
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    let principal = request.extensions().get::<Principal>().cloned();
    let request_id = uuid::Uuid::new_v4().simple().to_string();
    let Some(principal) = principal else {
        return with_request_id(next.run(request).await, &request_id);
    };
    let record = |status: StatusCode| AuditRecord {
        time: (app.clock)(),
        actor: principal.actor(),
        method: method.clone(),
        path: path.clone(),
        status: status.as_u16(),
        outcome: outcome(status),
        request_id: request_id.clone(),
    };
    // A deletion's org may be gone once it is answered: its record is filed then.
    let org_uid = match *request.method() {
        Method::DELETE => None,
        _ => Some(audit_org(&app, &principal, &path).await),
    };
    let pending = org_uid
        .clone()
        .map(|org_uid| PendingAudit::new(org_uid, record(StatusCode::OK)));
    let response = match &pending {
        Some(pending) => pending.clone().scope(next.run(request)).await,
        None => next.run(request).await,
    };
    let response = with_request_id(response, &request_id);
    if pending
        .as_ref()
        .and_then(|p| p.written())
        .is_some_and(|status| status == response.status().as_u16())
    {
        return response;
    }
    let org_uid = match org_uid {
        Some(org_uid) => org_uid,
        None => audit_org(&app, &principal, &path).await,
    };
    if let Err(e) = app
        .registry
        .append_audit(&org_uid, &record(response.status()))
        .await
    {
        tracing::error!(org = %org_uid, error = %e, "cannot record an audit entry");
    }
    response
}

fn with_request_id(mut response: Response, request_id: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// The uid of the org a request's record is filed under: the org its path names, when the
/// caller may see it and it exists, else the caller's own, so that the log never reveals
/// another tenant.
async fn audit_org(app: &App, principal: &Principal, path: &str) -> String {
    let target_org = path
        .strip_prefix("/v1/orgs/")
        .and_then(|rest| rest.split('/').next())
        .filter(|org| !org.is_empty())
        .map(ResourcePath::org)
        .filter(|org| {
            app.authorizer
                .authorize(principal, Verb::Get, Target::Tenant(org))
                == Decision::Allow
        });
    let target_uid = match &target_org {
        Some(org) => app.registry.org_uid(org.org_name()).await.ok().flatten(),
        None => None,
    };
    target_uid.unwrap_or_else(|| principal.org_uid.clone())
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
    let org_uid = app
        .registry
        .org_uid(org.org_name())
        .await?
        .ok_or_else(|| ApiError::not_found(&org))?;
    audit_page(&app, &principal, &org_uid, &query).await
}

/// One page of the audit log of the org with uid `org_uid`.
async fn audit_page(
    app: &App,
    principal: &Principal,
    org_uid: &str,
    query: &HashMap<String, String>,
) -> HttpResult<Response> {
    let list = format!("audit of {org_uid}");
    let resume = app
        .continue_tokens
        .open_query(principal, &list, query.get("continue"))?;
    let page = app
        .registry
        .list_audit(org_uid, parse_limit(query)?, resume.as_ref())
        .await?;
    Ok(to_json(
        StatusCode::OK,
        &List::new(
            "AuditRecord",
            ListMeta {
                resource_version: page.revision.to_string(),
                continue_token: app
                    .continue_tokens
                    .seal_next(principal, &list, page.next.as_ref()),
            },
            page.items,
        ),
    ))
}

/// `GET /v1/retiredorgs`: the deleted orgs whose records are kept (platform admins only).
pub async fn list_retired_orgs(
    State(app): State<App>,
    Extension(principal): Extension<Principal>,
) -> HttpResult<Response> {
    enforce_platform(&app, &principal, Verb::List, "")?;
    let orgs = app.registry.retired_orgs().await?;
    whole_list(&app, "RetiredOrg", orgs).await
}

/// The deleted org with uid `uid`, once the caller is a platform admin.
async fn retired_org(app: &App, principal: &Principal, uid: &str) -> HttpResult<()> {
    enforce_platform(app, principal, Verb::Get, "")?;
    let known = app.registry.retired_orgs().await?;
    match known.iter().any(|org| org.uid == uid) {
        true => Ok(()),
        false => Err(ApiError::not_found(format!("retired org {uid}")).into()),
    }
}

/// `GET /v1/retiredorgs/{uid}/audit`
pub async fn list_retired_audit(
    State(app): State<App>,
    Extension(principal): Extension<Principal>,
    Path(uid): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> HttpResult<Response> {
    check_query(&query, &["limit", "continue"])?;
    retired_org(&app, &principal, &uid).await?;
    audit_page(&app, &principal, &uid, &query).await
}

/// `GET /v1/retiredorgs/{uid}/tokens`: the tokens the org held, none of which
/// authenticates any more.
pub async fn list_retired_tokens(
    State(app): State<App>,
    Extension(principal): Extension<Principal>,
    Path(uid): Path<String>,
) -> HttpResult<Response> {
    retired_org(&app, &principal, &uid).await?;
    let tokens = app.registry.retired_tokens(&uid).await?;
    whole_list(&app, "Token", tokens).await
}
