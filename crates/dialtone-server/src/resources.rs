//! The REST handlers of every kind of the tree, written once and instantiated per kind:
//! create, get, list (label selectors, pagination), watch, update, status, delete.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Extension;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use dialtone_store::registry::{Deletion, ListOptions, Registry, RegistryError};
use dialtone_store::{KeyRange, StoreError};
use dialtone_types::kinds::{IDENTITY, ORG};
use dialtone_types::validation::is_dns1123_label;
use dialtone_types::{
    ApiError, Kind, KindInfo, LabelSelector, List, ListMeta, Object, Reason, ResourcePath,
    WatchEventType,
};
use futures::StreamExt;
use serde::Serialize;

use crate::App;
use crate::admission::Admission;
use crate::auth::{Principal, Target, Verb, enforce, enforce_platform};
use crate::error::{HttpError, HttpResult, json_response};
use crate::watch_cache::{CachedChange, watch_line};

/// `/v1/orgs/{org}/folders` and `/v1/orgs/{org}/folders/{folder}` for folders.
pub fn route_paths(kind: &'static KindInfo) -> (String, String) {
    let mut chain = vec![kind];
    while let Some(parent) = chain.last().and_then(|k| k.parent) {
        chain.push(parent);
    }
    chain.reverse();
    let mut collection = String::from("/v1");
    for (i, k) in chain.iter().enumerate() {
        collection.push('/');
        collection.push_str(k.plural);
        if i + 1 < chain.len() {
            collection.push_str(&format!("/{{{}}}", k.singular));
        }
    }
    let item = format!("{collection}/{{{}}}", kind.singular);
    (collection, item)
}

pub fn routes<K: Admission>() -> Router<App> {
    let (collection, item) = route_paths(K::INFO);
    Router::new()
        .route(&collection, get(list::<K>).post(create::<K>))
        .route(
            &item,
            get(get_one::<K>)
                .put(update::<K>)
                .patch(patch::<K>)
                .delete(delete::<K>),
        )
        .route(
            &format!("{item}/status"),
            get(get_one::<K>).put(update_status::<K>),
        )
}

pub fn to_json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    json_response(
        status,
        serde_json::to_vec(value).expect("API types always serialize"),
    )
}

/// 200 with every item of a list that is not paged, at the store's current revision.
pub(crate) async fn whole_list<T: Serialize>(
    app: &App,
    item_kind: &str,
    items: Vec<T>,
) -> HttpResult<Response> {
    let revision = app.registry.store().revision().await?;
    let meta = ListMeta {
        resource_version: revision.to_string(),
        continue_token: None,
    };
    Ok(to_json(StatusCode::OK, &List::new(item_kind, meta, items)))
}

fn names(params: &[(String, String)]) -> Vec<String> {
    params.iter().map(|(_, v)| v.clone()).collect()
}

/// The path of an object named in the URL. A name that is not a DNS-1123 label cannot
/// exist, so it is reported as not found before anything is looked up.
pub fn object_path(
    kind: &'static KindInfo,
    params: &[(String, String)],
) -> HttpResult<ResourcePath> {
    let names = names(params);
    let path = ResourcePath::from_names(kind, &names)
        .map_err(|e| ApiError::new(Reason::NotFound, e.to_string()))?;
    if let Some(bad) = names.iter().find(|n| !is_dns1123_label(n)) {
        return Err(ApiError::not_found(format!("`{bad}`")).into());
    }
    Ok(path)
}

/// The parent of a collection named in the URL; `None` for orgs.
fn parent_path(
    kind: &'static KindInfo,
    params: &[(String, String)],
) -> HttpResult<Option<ResourcePath>> {
    match kind.parent {
        None => Ok(None),
        Some(parent_kind) => object_path(parent_kind, params).map(Some),
    }
}

/// The path of the object named in the URL, once the caller may `verb` it.
pub(crate) fn authorized_path(
    app: &App,
    principal: &Principal,
    kind: &'static KindInfo,
    params: &[(String, String)],
    verb: Verb,
) -> HttpResult<ResourcePath> {
    let path = object_path(kind, params)?;
    enforce(
        app.authorizer
            .authorize(principal, verb, Target::Object(&path)),
        &path,
    )?;
    Ok(path)
}

/// Checks the caller may `verb` a part of the object at `path` (its policy, tokens, audit
/// log …), and that the object exists: a missing one gets the same 404 as a hidden one.
pub(crate) async fn authorized_part(
    app: &App,
    principal: &Principal,
    path: &ResourcePath,
    verb: Verb,
    part: crate::auth::Part,
) -> HttpResult<()> {
    enforce(
        app.authorizer
            .authorize(principal, verb, Target::Part(path, part)),
        path,
    )?;
    if !app.registry.exists(path).await? {
        return Err(ApiError::not_found(path).into());
    }
    Ok(())
}

/// Decodes a body of kind `K`, and checks the caller may grant what the spec asks for.
fn authorized_body<K: Kind>(
    app: &App,
    principal: &Principal,
    body: &[u8],
    verb: Verb,
) -> HttpResult<Object<K, K::Status>> {
    let object = Registry::decode_body::<K>(body)?;
    if object.spec.requires_platform_admin() {
        enforce_platform(app, principal, verb, "")?;
    }
    Ok(object)
}

fn missing_parent(parent: &Option<ResourcePath>) -> String {
    parent
        .as_ref()
        .map_or_else(|| "parent".to_string(), |p| format!("parent {p}"))
}

async fn create<K: Admission>(
    State(app): State<App>,
    Extension(principal): Extension<Principal>,
    Path(params): Path<Vec<(String, String)>>,
    body: Bytes,
) -> HttpResult<Response> {
    let parent = parent_path(K::INFO, &params)?;
    let decision = app.authorizer.authorize(
        &principal,
        Verb::Create,
        Target::Collection {
            kind: K::INFO,
            parent: parent.as_ref(),
        },
    );
    enforce(decision, missing_parent(&parent))?;
    let mut object = authorized_body::<K>(&app, &principal, &body, Verb::Create)?;
    // The status is the server's to say.
    object.status = Default::default();
    let _allocating = match K::ALLOCATES {
        true => Some(app.networks.allocating().await),
        false => None,
    };
    // Another server may allocate from the same org meanwhile: then plan again.
    let mut attempts = 0;
    let created = loop {
        let guard = match (K::ALLOCATES, &parent) {
            (true, Some(parent)) => Some(K::allocation_guard(&app, parent.org_name()).await?),
            _ => None,
        };
        let mut admitted = object.clone();
        let anew = K::admit_create_allocating(&app, parent.as_ref(), &mut admitted).await?;
        let guard = guard.filter(|_| anew);
        match app
            .registry
            .create_guarded(parent.as_ref(), admitted, guard)
            .await
        {
            Err(RegistryError::GuardMoved(_)) if attempts < ALLOCATION_ATTEMPTS => {
                attempts += 1;
                // Servers that lost together should not all try again at once.
                let jitter = rand::random_range(0..10 * u64::from(attempts));
                tokio::time::sleep(std::time::Duration::from_millis(jitter)).await;
            }
            created => break created?,
        }
    };
    K::stored(&app, &created);
    Ok(to_json(StatusCode::CREATED, &created))
}

/// How many times a create plans again after other servers allocated from its org first.
const ALLOCATION_ATTEMPTS: u32 = 8;

async fn get_one<K: Kind>(
    State(app): State<App>,
    Extension(principal): Extension<Principal>,
    Path(params): Path<Vec<(String, String)>>,
) -> HttpResult<Response> {
    let path = authorized_path(&app, &principal, K::INFO, &params, Verb::Get)?;
    let object: Object<K, K::Status> = app.registry.get(&path).await?;
    Ok(to_json(StatusCode::OK, &object))
}

async fn update<K: Admission>(
    State(app): State<App>,
    Extension(principal): Extension<Principal>,
    Path(params): Path<Vec<(String, String)>>,
    body: Bytes,
) -> HttpResult<Response> {
    let path = authorized_path(&app, &principal, K::INFO, &params, Verb::Update)?;
    replace::<K>(&app, &principal, &path, &body).await
}

/// An update with the object in `body`, whether a client sent it whole or a patch made it.
async fn replace<K: Admission>(
    app: &App,
    principal: &Principal,
    path: &ResourcePath,
    body: &[u8],
) -> HttpResult<Response> {
    let mut object = authorized_body::<K>(app, principal, body, Verb::Update)?;
    K::admit_update(app, path, &mut object).await?;
    let updated = app.registry.update(path, object).await;
    forget_tokens_held_by(app, K::INFO);
    match updated? {
        Some(updated) => Ok(to_json(StatusCode::OK, &updated)),
        None => Ok(success(format!(
            "{path} deleted: its last finalizer was removed"
        ))),
    }
}

/// `PATCH` with a JSON merge patch (RFC 7386), as `kubectl patch --type=merge` sends:
/// applied to the object as it is, then checked and stored as an update would be. A patch
/// that names `metadata.resourceVersion` applies only to that version (409 otherwise).
async fn patch<K: Admission>(
    State(app): State<App>,
    Extension(principal): Extension<Principal>,
    Path(params): Path<Vec<(String, String)>>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> HttpResult<Response> {
    let path = authorized_path(&app, &principal, K::INFO, &params, Verb::Update)?;
    let media = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or("")
        .trim();
    if media != MERGE_PATCH {
        return Err(ApiError::new(
            Reason::UnsupportedMediaType,
            format!("PATCH takes a JSON merge patch ({MERGE_PATCH}), not `{media}`"),
        )
        .into());
    }
    let patch: serde_json::Value = serde_json::from_slice(&body)
        .ok()
        .filter(serde_json::Value::is_object)
        .ok_or_else(|| {
            ApiError::new(
                Reason::BadRequest,
                "a merge patch is a JSON object of the fields to change (null removes one)",
            )
        })?;
    let pinned = !patch["metadata"]["resourceVersion"].is_null();
    let mut tries = 0;
    loop {
        // Merged into the object as read, and stored only if it is still as read: a
        // concurrent change (the controllers write statuses) means merging again.
        let current: Object<K, K::Status> = app.registry.get(&path).await?;
        let mut patched = serde_json::to_value(&current).expect("API types always serialize");
        json_patch::merge(&mut patched, &patch);
        let body = serde_json::to_vec(&patched).expect("JSON always serializes");
        match replace::<K>(&app, &principal, &path, &body).await {
            Err(HttpError(e)) if e.reason == Reason::Conflict && !pinned && tries < 5 => {
                tries += 1;
            }
            done => return done,
        }
    }
}

/// The one patch format the API takes.
pub const MERGE_PATCH: &str = "application/merge-patch+json";

async fn update_status<K: Admission>(
    State(app): State<App>,
    Extension(principal): Extension<Principal>,
    Path(params): Path<Vec<(String, String)>>,
    body: Bytes,
) -> HttpResult<Response> {
    let path = authorized_path(&app, &principal, K::INFO, &params, Verb::UpdateStatus)?;
    if !K::CLIENT_STATUS {
        return Err(ApiError::new(
            Reason::MethodNotAllowed,
            format!(
                "the status of a {} is written by the control plane only",
                K::INFO.singular
            ),
        )
        .into());
    }
    let object = Registry::decode_body::<K>(&body)?;
    let updated = app.registry.update_status(&path, object).await?;
    Ok(to_json(StatusCode::OK, &updated))
}

/// A Kubernetes-style `Status` of success.
pub fn success(message: String) -> Response {
    to_json(
        StatusCode::OK,
        &serde_json::json!({"apiVersion": "v1", "kind": "Status", "status": "Success", "code": 200, "message": message}),
    )
}

async fn delete<K: Kind>(
    State(app): State<App>,
    Extension(principal): Extension<Principal>,
    Path(params): Path<Vec<(String, String)>>,
    Query(query): Query<HashMap<String, String>>,
) -> HttpResult<Response> {
    let path = authorized_path(&app, &principal, K::INFO, &params, Verb::Delete)?;
    check_query(&query, &["cascade"])?;
    let cascade = parse_bool(&query, "cascade")?;
    crate::regions::check_cascade(&app, &path)?;
    crate::admission::check_deletion_protection(&app, &path, cascade).await?;
    let deletion = app.registry.delete(&path, cascade).await;
    forget_tokens_held_by(&app, K::INFO);
    match deletion? {
        Deletion::Deleted => Ok(success(format!("{path} deleted"))),
        Deletion::Pending(object) => Ok(to_json(StatusCode::ACCEPTED, &object)),
    }
}

/// After a write to an identity or an org (deleting it, or making it a platform admin or
/// not), this server's verified tokens are forgotten at once, rather than when the watch
/// brings the change.
fn forget_tokens_held_by(app: &App, kind: &'static KindInfo) {
    if std::ptr::eq(kind, &IDENTITY) || std::ptr::eq(kind, &ORG) {
        app.tokens.forget_all();
    }
}

/// Rejects query parameters the endpoint does not know, naming them.
pub fn check_query(query: &HashMap<String, String>, known: &[&str]) -> HttpResult<()> {
    let mut unknown: Vec<&str> = query
        .keys()
        .map(String::as_str)
        .filter(|k| !known.contains(k))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    unknown.sort();
    Err(ApiError::new(
        Reason::BadRequest,
        format!(
            "unknown query parameter(s): {}; known: {}",
            unknown.join(", "),
            known.join(", ")
        ),
    )
    .into())
}

fn parse_bool(query: &HashMap<String, String>, name: &str) -> HttpResult<bool> {
    match query.get(name).map(String::as_str) {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") | Some("") => Ok(true),
        Some(other) => Err(ApiError::new(
            Reason::BadRequest,
            format!("{name} must be true or false, not `{other}`"),
        )
        .into()),
    }
}

pub fn parse_limit(query: &HashMap<String, String>) -> HttpResult<usize> {
    match query.get("limit") {
        None => Ok(0),
        Some(v) => v.parse::<usize>().map_err(|_| {
            ApiError::new(
                Reason::BadRequest,
                format!("limit must be a whole number, not `{v}`"),
            )
            .into()
        }),
    }
}

async fn list<K: Kind>(
    State(app): State<App>,
    Extension(principal): Extension<Principal>,
    Path(params): Path<Vec<(String, String)>>,
    Query(query): Query<HashMap<String, String>>,
) -> HttpResult<Response> {
    check_query(
        &query,
        &[
            "labelSelector",
            "limit",
            "continue",
            "watch",
            "resourceVersion",
        ],
    )?;
    let parent = parent_path(K::INFO, &params)?;
    let watch = parse_bool(&query, "watch")?;
    let verb = if watch { Verb::Watch } else { Verb::List };
    let target = Target::Collection {
        kind: K::INFO,
        parent: parent.as_ref(),
    };
    enforce(
        app.authorizer.authorize(&principal, verb, target),
        missing_parent(&parent),
    )?;
    if let Some(parent) = &parent
        && !app.registry.exists(parent).await?
    {
        return Err(ApiError::not_found(format!("parent {parent}")).into());
    }
    let selector = LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str))
        .map_err(|e| ApiError::new(Reason::BadRequest, e.to_string()))?;
    let visible = visibility(&app, &principal);
    if watch {
        let from = match query.get("resourceVersion").map(String::as_str) {
            None | Some("") | Some("0") => None,
            Some(rv) => Some(rv.parse::<i64>().map_err(|_| {
                ApiError::new(
                    Reason::BadRequest,
                    format!("resourceVersion `{rv}` is not a number"),
                )
            })?),
        };
        return watch_response(app, K::INFO, parent, from, selector, visible).await;
    }
    let list_name = match &parent {
        Some(parent) => format!("{} in {parent}", K::INFO.plural),
        None => K::INFO.plural.to_string(),
    };
    let options = ListOptions {
        selector,
        limit: parse_limit(&query)?,
        resume: app
            .continue_tokens
            .open_query(&principal, &list_name, query.get("continue"))?,
    };
    let page = app
        .registry
        .list_raw(K::INFO, parent.as_ref(), &options, &*visible)
        .await?;
    let list = List::new(
        K::INFO.kind,
        ListMeta {
            resource_version: page.revision.to_string(),
            continue_token: app.continue_tokens.seal_next(
                &principal,
                &list_name,
                page.next.as_ref(),
            ),
        },
        page.items,
    );
    Ok(to_json(StatusCode::OK, &list))
}

type Visibility = std::sync::Arc<dyn Fn(&ResourcePath) -> bool + Send + Sync>;

/// Which objects the caller may see, as the authorizer decides.
fn visibility(app: &App, principal: &Principal) -> Visibility {
    let authorizer = app.authorizer.clone();
    let principal = principal.clone();
    std::sync::Arc::new(move |path: &ResourcePath| {
        authorizer.authorize(&principal, Verb::Get, Target::Object(path))
            == crate::auth::Decision::Allow
    })
}

/// A newline-delimited JSON stream of watch events: the current objects as `ADDED` first
/// when no resourceVersion is given, then every change after it.
async fn watch_response(
    app: App,
    kind: &'static KindInfo,
    parent: Option<ResourcePath>,
    from: Option<i64>,
    selector: LabelSelector,
    visible: Visibility,
) -> HttpResult<Response> {
    let (initial, after) = match from {
        Some(rv) => {
            // Reading at the revision fails exactly when it was compacted or is in the future.
            app.registry
                .store()
                .range(&KeyRange::key("/"), Some(rv), 1)
                .await?;
            (Vec::new(), rv)
        }
        None => {
            let options = ListOptions {
                selector: selector.clone(),
                ..Default::default()
            };
            let page = app
                .registry
                .list_raw(kind, parent.as_ref(), &options, &*visible)
                .await?;
            (page.items, page.revision)
        }
    };
    // Served from the watch cache when it reaches back to `after`; from the store otherwise.
    let changes = match app.watches.watch(kind, after) {
        Some(cached) => cached.boxed(),
        None => app
            .registry
            .watch(kind, parent.as_ref(), after)
            .await?
            .map(|change| change.map(|change| Arc::new(CachedChange::from(change))))
            .boxed(),
    };
    let guard = app.metrics.watch_started();
    let keep = move |change: &CachedChange| {
        parent
            .as_ref()
            .is_none_or(|parent| change.path.names().zip(parent.names()).all(|(a, b)| a == b))
            && selector.matches(&change.object.metadata.labels)
            && visible(&change.path)
    };
    let initial = futures::stream::iter(
        initial
            .into_iter()
            .map(|o| Ok(watch_line(WatchEventType::Added, &o))),
    );
    let live = changes
        .filter_map(move |change| {
            let out = match change {
                Ok(change) => keep(&change).then(|| change.line()),
                Err(e) => Some(error_line(e)),
            };
            futures::future::ready(out.map(Ok::<_, std::convert::Infallible>))
        })
        .scan(false, |ended, line: Result<Bytes, _>| {
            // Stop right after an ERROR line.
            if *ended {
                return futures::future::ready(None);
            }
            *ended = line
                .as_ref()
                .is_ok_and(|l| l.starts_with(b"{\"type\":\"ERROR\""));
            futures::future::ready(Some(line))
        });
    // The stream owns the guard, so the open-watch gauge drops when the client goes away.
    let body = initial.chain(live).map(move |line| {
        let _ = &guard;
        line
    });
    let mut response = Response::new(Body::from_stream(body));
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(response)
}

fn error_line(error: dialtone_store::registry::RegistryError) -> Bytes {
    let api = match error {
        dialtone_store::registry::RegistryError::Store(StoreError::Compacted { .. }) => {
            ApiError::new(
                Reason::Gone,
                "the watch fell behind (the changes it needs are compacted, or more than the server keeps for a watcher); list again and watch from the new resourceVersion",
            )
        }
        other => HttpError::from(other).0,
    };
    watch_line(WatchEventType::Error, &api.to_status())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dialtone_types::kinds::{ORG, PROJECT};

    #[test]
    fn paths_follow_the_tree() {
        assert_eq!(
            route_paths(&ORG),
            ("/v1/orgs".into(), "/v1/orgs/{org}".into())
        );
        assert_eq!(
            route_paths(&PROJECT),
            (
                "/v1/orgs/{org}/folders/{folder}/projects".into(),
                "/v1/orgs/{org}/folders/{folder}/projects/{project}".into()
            )
        );
    }
}
