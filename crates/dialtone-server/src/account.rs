//! Tokens and `whoami`: what an identity needs to manage its own access.

use std::collections::HashMap;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use dialtone_types::auth::{TokenRequest, WhoAmI};
use dialtone_types::kinds::{IDENTITY, ORG};
use dialtone_types::validation::{decode_strict, validate_text};
use dialtone_types::{ApiError, FieldErrors};

use crate::App;
use crate::auth::{Decision, Part, Principal, Target, Verb, enforce, mint_token};
use crate::error::HttpResult;
use crate::resources::{authorized_part, check_query, object_path, success, to_json, whole_list};

/// `POST /v1/orgs/{org}/identities/{identity}/tokens`
pub async fn create_token(
    State(app): State<App>,
    Extension(principal): Extension<Principal>,
    Path(params): Path<Vec<(String, String)>>,
    body: Bytes,
) -> HttpResult<Response> {
    let identity = object_path(&IDENTITY, &params)?;
    enforce(
        app.authorizer.authorize(
            &principal,
            Verb::Create,
            Target::Part(&identity, Part::Tokens),
        ),
        &identity,
    )?;
    let request: TokenRequest = if body.is_empty() {
        TokenRequest::default()
    } else {
        decode_strict(&body).map_err(ApiError::invalid)?
    };
    let mut errors = FieldErrors::default();
    validate_text("description", &request.description, 256, &mut errors);
    errors.into_result().map_err(ApiError::invalid)?;
    let token = mint_token(
        &app.registry,
        &identity,
        &request.description,
        request.ttl_seconds,
        None,
        (app.clock)(),
    )
    .await?;
    Ok(to_json(StatusCode::CREATED, &token))
}

/// `GET /v1/orgs/{org}/tokens`
pub async fn list_tokens(
    State(app): State<App>,
    Extension(principal): Extension<Principal>,
    Path(params): Path<Vec<(String, String)>>,
    Query(query): Query<HashMap<String, String>>,
) -> HttpResult<Response> {
    check_query(&query, &[])?;
    let org = object_path(&ORG, &params)?;
    authorized_part(&app, &principal, &org, Verb::List, Part::Tokens).await?;
    let org_uid = app
        .registry
        .org_uid(org.org_name())
        .await?
        .ok_or_else(|| ApiError::not_found(&org))?;
    let items = app.registry.list_tokens(&org, &org_uid).await?;
    whole_list(&app, "Token", items).await
}

/// `DELETE /v1/orgs/{org}/tokens/{id}`: revokes a token at once.
pub async fn revoke_token(
    State(app): State<App>,
    Extension(principal): Extension<Principal>,
    Path((org, id)): Path<(String, String)>,
) -> HttpResult<Response> {
    let org_path = object_path(&ORG, &[("org".into(), org)])?;
    let missing = format!("token {id}");
    let org_uid = app.registry.org_uid(org_path.org_name()).await?;
    // A token is its owner's to revoke (the identity, by uid, that holds it), or the org's
    // token administrators'.
    let token = app
        .registry
        .get_token(&id)
        .await?
        .filter(|token| Some(&token.info.org_uid) == org_uid.as_ref());
    let own = token
        .as_ref()
        .is_some_and(|token| token.info.identity_uid == principal.identity_uid);
    // Others' tokens answer as missing ones do, so that ids cannot be probed.
    if !own
        && app.authorizer.authorize(
            &principal,
            Verb::Delete,
            Target::Part(&org_path, Part::Tokens),
        ) != Decision::Allow
    {
        return Err(ApiError::not_found(missing).into());
    }
    let (Some(org_uid), Some(_)) = (org_uid, token) else {
        return Err(ApiError::not_found(missing).into());
    };
    let deleted = app.registry.delete_token(&org_uid, &id).await?;
    // At once on this server; other servers forget it when they see the delete.
    app.tokens.forget(&id);
    if !deleted {
        return Err(ApiError::not_found(missing).into());
    }
    Ok(success(format!("token {id} revoked")))
}

/// `GET /v1/whoami`
pub async fn whoami(Extension(principal): Extension<Principal>) -> Response {
    to_json(
        StatusCode::OK,
        &WhoAmI {
            org: principal.org,
            identity: principal.identity,
            platform_admin: principal.platform_admin,
        },
    )
}
