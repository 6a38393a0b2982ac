//! One sim cluster's API server: request routing as kube-apiserver does it (discovery,
//! resource requests by group, version, namespace, name and subresource, non-resource
//! paths), authorization by RBAC with impersonation, admission (defaults, validation,
//! escalation prevention, validating webhooks) and the verbs kubectl uses.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use base64::Engine;
use bytes::Bytes;
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::policy::v1::Eviction;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::decode::{FieldValidation, Typed, Undecodable};
use crate::rbac::{self, Decision, RbacIndex, RbacSource, UserInfo};
use crate::resources::{self, RESOURCES, ResourceType};
use crate::selectors::Selector;
use crate::status::{KubeError, KubeResult, json_response, qualified};
use crate::store::{Change, EventType, ObjectKey, Objects, StoreError};
use crate::{quantity, table, webhooks};

/// The group upstream's API server lets do anything before RBAC is asked
/// (`user.SystemPrivilegedGroup`): kubeadm's `admin.conf`, and Dialtone's control plane.
const PRIVILEGED_GROUP: &str = "system:masters";

pub struct ClusterApi {
    pub uid: String,
    /// `1.34`: the oldest control-plane node's, as upstream's skew policy would have it.
    version: std::sync::RwLock<String>,
    pub objects: Objects,
    /// Wakes the cluster's controllers (scheduler, deployments, nodes).
    pub wake: Notify,
    /// The RBAC index and the count of RBAC changes it was built at.
    rbac: std::sync::RwLock<Option<(u64, Arc<RbacIndex>)>>,
}

impl RbacSource for Objects {
    fn cluster_role_bindings(&self) -> Vec<ClusterRoleBinding> {
        decode_all(self.list("clusterrolebindings", None).0)
    }
    fn role_bindings(&self, namespace: &str) -> Vec<RoleBinding> {
        decode_all(self.list("rolebindings", Some(namespace)).0)
    }
    fn all_role_bindings(&self) -> Vec<RoleBinding> {
        decode_all(self.list("rolebindings", None).0)
    }
    fn cluster_role(&self, name: &str) -> Option<ClusterRole> {
        self.get(&key("clusterroles", "", name))
            .and_then(|v| serde_json::from_value((*v).clone()).ok())
    }
    fn role(&self, namespace: &str, name: &str) -> Option<Role> {
        self.get(&key("roles", namespace, name))
            .and_then(|v| serde_json::from_value((*v).clone()).ok())
    }
}

fn decode_all<T: serde::de::DeserializeOwned>(items: Vec<Arc<Value>>) -> Vec<T> {
    items
        .into_iter()
        .filter_map(|v| serde_json::from_value((*v).clone()).ok())
        .collect()
}

pub fn key(resource: &'static str, namespace: &str, name: &str) -> ObjectKey {
    ObjectKey {
        resource,
        namespace: namespace.to_string(),
        name: name.to_string(),
    }
}

/// What a request path names, as upstream's RequestInfoFactory reads it.
struct RequestInfo {
    resource: &'static ResourceType,
    namespace: String,
    name: String,
    subresource: String,
}

enum Route {
    NonResource(String),
    Resource(RequestInfo),
}

fn version_of(cluster_version: &str) -> Value {
    let minor = cluster_version.split('.').nth(1).unwrap_or("0");
    json!({
        "major": "1", "minor": minor,
        "gitVersion": format!("v{cluster_version}.0-dialtone"),
        "gitCommit": "", "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64",
    })
}

fn resource_list(group: &str, version: &str) -> Value {
    let mut list = Vec::new();
    for r in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        list.push(json!({
            "name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
            "kind": r.kind, "verbs": r.verbs, "shortNames": r.short_names,
        }));
        for sub in r.subresources {
            let (kind, verbs) = match *sub {
                "scale" => ("Scale", vec!["get", "patch", "update"]),
                "eviction" => ("Eviction", vec!["create"]),
                _ => (r.kind, vec!["get", "patch", "update"]),
            };
            let mut entry = json!({
                "name": format!("{}/{sub}", r.plural), "singularName": "",
                "namespaced": r.namespaced, "kind": kind, "verbs": verbs,
            });
            if *sub == "scale" {
                entry["group"] = json!("autoscaling");
                entry["version"] = json!("v1");
            }
            if *sub == "eviction" {
                entry["group"] = json!("policy");
                entry["version"] = json!("v1");
            }
            list.push(entry);
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": list})
}

fn group_list() -> Value {
    let groups: Vec<Value> = resources::groups()
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, v)| {
            let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
            json!({"name": g, "versions": [gv.clone()], "preferredVersion": gv})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn route(path: &str) -> KubeResult<Route> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api", "v1", rest @ ..] if !rest.is_empty() => ("", "v1", rest),
        ["apis", group, version, rest @ ..] if !rest.is_empty() => (*group, *version, rest),
        _ => return Ok(Route::NonResource(path.to_string())),
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, tail @ ..]
            if !tail.is_empty() && !matches!(tail, ["status" | "finalize"]) =>
        {
            (ns.to_string(), tail)
        }
        _ => (String::new(), rest),
    };
    let (plural, name, subresource) = match rest {
        [plural] => (*plural, "", ""),
        [plural, name] => (*plural, *name, ""),
        [plural, name, sub] => (*plural, *name, *sub),
        _ => return Err(KubeError::not_found(group, path, "")),
    };
    let resource = resources::find(group, version, plural).ok_or_else(KubeError::no_such_path)?;
    if !subresource.is_empty() && !resource.subresources.contains(&subresource) {
        return Err(KubeError::no_such_path());
    }
    // Namespaced objects are named within a namespace; only their lists span all of them.
    let misplaced = if resource.namespaced {
        namespace.is_empty() && !name.is_empty()
    } else {
        !namespace.is_empty()
    };
    if misplaced {
        return Err(KubeError::no_such_path());
    }
    Ok(Route::Resource(RequestInfo {
        resource,
        namespace,
        name: name.to_string(),
        subresource: subresource.to_string(),
    }))
}

fn verb_of(method: &Method, info: &RequestInfo, query: &Query) -> &'static str {
    match (method.as_str(), info.name.is_empty()) {
        ("GET" | "HEAD", true) if query.watch => "watch",
        ("GET" | "HEAD", true) => "list",
        ("GET" | "HEAD", false) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "deletecollection",
        ("DELETE", false) => "delete",
        _ => "unknown",
    }
}

#[derive(Default)]
struct Query {
    watch: bool,
    label_selector: Selector,
    field_selector: Selector,
    resource_version: Option<u64>,
    timeout_seconds: Option<u64>,
    dry_run: bool,
    field_validation: FieldValidation,
}

fn parse_query(raw: Option<&str>) -> KubeResult<Query> {
    let mut query = Query::default();
    for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "watch" => query.watch = v == "true" || v == "1",
            "labelSelector" => {
                query.label_selector = Selector::parse(&v).map_err(KubeError::bad_request)?
            }
            "fieldSelector" => {
                let selector = Selector::parse(&v).map_err(KubeError::bad_request)?;
                selector.check_fields().map_err(KubeError::bad_request)?;
                query.field_selector = selector;
            }
            "resourceVersion" if !v.is_empty() => {
                query.resource_version = Some(v.parse().map_err(|_| {
                    KubeError::bad_request(format!("invalid resource version: {v}"))
                })?)
            }
            "timeoutSeconds" => query.timeout_seconds = v.parse().ok(),
            "dryRun" => query.dry_run = v == "All",
            "fieldValidation" => {
                query.field_validation =
                    FieldValidation::parse(&v).map_err(KubeError::bad_request)?
            }
            _ => {}
        }
    }
    Ok(query)
}

fn forbidden_message(user: &UserInfo, verb: &str, info: &RequestInfo) -> String {
    let resource = if info.subresource.is_empty() {
        info.resource.plural.to_string()
    } else {
        format!("{}/{}", info.resource.plural, info.subresource)
    };
    let subject = qualified(info.resource.group, info.resource.plural);
    let named = if info.name.is_empty() {
        subject
    } else {
        format!("{subject} \"{}\"", info.name)
    };
    let scope = if info.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace \"{}\"", info.namespace)
    };
    format!(
        "{named} is forbidden: User \"{}\" cannot {verb} resource \"{resource}\" in API group \"{}\" {scope}",
        user.name, info.resource.group
    )
}

fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get_all(axum::http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("as=Table"))
}

pub fn now() -> String {
    Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or(Timestamp::now())
        .to_string()
}

impl ClusterApi {
    pub fn version(&self) -> String {
        self.version.read().expect("lock").clone()
    }

    /// Follows the control plane through an upgrade.
    pub fn set_version(&self, version: &str) {
        let mut current = self.version.write().expect("lock");
        if *current != version {
            *current = version.to_string();
        }
    }

    /// A new cluster's API, holding what a new cluster holds, in memory only.
    pub fn new(uid: &str, version: &str) -> Self {
        Self::seeded(uid, version, Objects::default())
    }

    /// The cluster's API with its objects kept in `journal`: those it holds (`stored`),
    /// or, for a cluster it holds nothing of, what a new cluster holds.
    pub fn open(
        uid: &str,
        version: &str,
        journal: Arc<dyn crate::store::Journal>,
        stored: Vec<(String, Vec<u8>)>,
    ) -> Result<Self, String> {
        let (objects, restored) = Objects::restore(journal, stored, |plural| {
            RESOURCES
                .iter()
                .find(|r| r.plural == plural)
                .map(|r| r.plural)
        })?;
        if restored {
            return Ok(ClusterApi {
                uid: uid.to_string(),
                version: std::sync::RwLock::new(version.to_string()),
                objects,
                wake: Notify::new(),
                rbac: Default::default(),
            });
        }
        Ok(Self::seeded(uid, version, objects))
    }

    fn seeded(uid: &str, version: &str, objects: Objects) -> Self {
        let cluster = ClusterApi {
            uid: uid.to_string(),
            version: std::sync::RwLock::new(version.to_string()),
            objects,
            wake: Notify::new(),
            rbac: Default::default(),
        };
        for (resource, object) in crate::defaults::objects() {
            let r = resources::by_plural(resource);
            let name = object["metadata"]["name"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let stamped = stamp_new(object, r, "");
            let _ = cluster.objects.create(key(r.plural, "", &name), stamped);
        }
        cluster
    }

    /// As upstream's authorizer chain: `system:masters` may do anything, whatever the
    /// cluster's RBAC says; everyone else is decided by RBAC.
    pub fn authorize(&self, user: &UserInfo, request: &rbac::Request) -> Decision {
        if user.groups.iter().any(|g| g == PRIVILEGED_GROUP) {
            return Decision {
                allowed: true,
                reason: String::new(),
            };
        }
        self.rbac_index().authorize(user, request)
    }

    /// The index of the cluster's roles and bindings, rebuilt after they change.
    fn rbac_index(&self) -> Arc<RbacIndex> {
        let changes = self.objects.rbac_changes();
        if let Some((built_at, index)) = &*self.rbac.read().unwrap_or_else(|e| e.into_inner())
            && *built_at == changes
        {
            return index.clone();
        }
        // Built from objects read after the count: at worst newer than it says, and then
        // rebuilt once more.
        let index = Arc::new(RbacIndex::build(&self.objects));
        *self.rbac.write().unwrap_or_else(|e| e.into_inner()) = Some((changes, index.clone()));
        index
    }

    /// Serves one request from an authenticated user.
    #[allow(clippy::too_many_arguments)]
    pub async fn handle(
        self: &Arc<Self>,
        user: UserInfo,
        method: Method,
        path: &str,
        raw_query: Option<&str>,
        headers: &HeaderMap,
        body: Bytes,
        webhook_client: &webhooks::Caller,
    ) -> Response {
        match self
            .serve(user, method, path, raw_query, headers, body, webhook_client)
            .await
        {
            Ok(response) => response,
            Err(e) => axum::response::IntoResponse::into_response(e),
        }
    }

    fn impersonate(&self, user: UserInfo, headers: &HeaderMap) -> KubeResult<UserInfo> {
        let Some(target) = headers
            .get("impersonate-user")
            .and_then(|v| v.to_str().ok())
        else {
            return Ok(user);
        };
        let groups: Vec<String> = headers
            .get_all("impersonate-group")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect();
        let check = |resource: &str, name: &str| {
            let request = rbac::Request::Resource {
                verb: "impersonate".into(),
                namespace: String::new(),
                api_group: String::new(),
                resource: resource.into(),
                subresource: String::new(),
                name: name.into(),
            };
            if self.authorize(&user, &request).allowed {
                Ok(())
            } else {
                Err(KubeError::forbidden(format!(
                    "{resource} \"{name}\" is forbidden: User \"{}\" cannot impersonate resource \"{resource}\" in API group \"\" at the cluster scope",
                    user.name
                )))
            }
        };
        check("users", target)?;
        for group in &groups {
            check("groups", group)?;
        }
        let mut groups = groups;
        if !groups.iter().any(|g| g == "system:authenticated") {
            groups.push("system:authenticated".into());
        }
        Ok(UserInfo {
            name: target.to_string(),
            groups,
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn serve(
        self: &Arc<Self>,
        user: UserInfo,
        method: Method,
        path: &str,
        raw_query: Option<&str>,
        headers: &HeaderMap,
        body: Bytes,
        webhook_client: &webhooks::Caller,
    ) -> KubeResult<Response> {
        let user = self.impersonate(user, headers)?;
        let protobuf = headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("application/vnd.kubernetes.protobuf"));
        let body = if protobuf {
            let object = crate::proto::decode(&body).map_err(|e| {
                KubeError::bad_request(format!("the protobuf body does not decode: {e}"))
            })?;
            Bytes::from(serde_json::to_vec(&object).unwrap_or_default())
        } else {
            body
        };
        let query = parse_query(raw_query)?;
        let info = match route(path)? {
            Route::NonResource(path) => {
                let request = rbac::Request::NonResource {
                    verb: method.as_str().to_lowercase(),
                    path: path.clone(),
                };
                if !self.authorize(&user, &request).allowed {
                    return Err(KubeError::forbidden(format!(
                        "forbidden: User \"{}\" cannot {} path \"{path}\"",
                        user.name,
                        method.as_str().to_lowercase()
                    )));
                }
                return self.non_resource(&path);
            }
            Route::Resource(info) => info,
        };
        let verb = verb_of(&method, &info, &query);
        let request = rbac::Request::Resource {
            verb: verb.to_string(),
            namespace: info.namespace.clone(),
            api_group: info.resource.group.to_string(),
            resource: info.resource.plural.to_string(),
            subresource: info.subresource.clone(),
            name: info.name.clone(),
        };
        if !self.authorize(&user, &request).allowed {
            return Err(KubeError::forbidden(forbidden_message(&user, verb, &info)));
        }
        let allowed_verb = if info.subresource.is_empty() {
            info.resource.verbs.contains(&verb)
        } else if info.subresource == "eviction" {
            verb == "create"
        } else {
            matches!(verb, "get" | "update" | "patch")
        };
        if !allowed_verb {
            return Err(KubeError::method_not_allowed(
                "the server does not allow this method on the requested resource",
            ));
        }
        let table = wants_table(headers);
        let answer = self
            .answer(
                verb,
                &user,
                &info,
                &query,
                headers,
                body,
                table,
                webhook_client,
            )
            .await;
        if !matches!(verb, "get" | "list" | "watch") {
            // Answered only once what it changed is durable.
            self.objects
                .synced()
                .await
                .map_err(|e| KubeError::internal(format!("cannot store the change: {e}")))?;
        }
        answer
    }

    #[allow(clippy::too_many_arguments)]
    async fn answer(
        self: &Arc<Self>,
        verb: &str,
        user: &UserInfo,
        info: &RequestInfo,
        query: &Query,
        headers: &HeaderMap,
        body: Bytes,
        table: bool,
        webhook_client: &webhooks::Caller,
    ) -> KubeResult<Response> {
        match verb {
            "get" => self.get(info, table),
            "list" => self.list(info, query, table),
            "watch" => self.watch(info, query, table),
            "create" if info.subresource == "eviction" => {
                let (eviction, _) = decode_as::<Eviction>(
                    "Eviction",
                    "v1",
                    &parse_body(&body)?,
                    query.field_validation,
                )?;
                let status =
                    crate::disruption::evict(self, &info.namespace, &info.name, &eviction)?;
                self.wake.notify_one();
                Ok(json_response(StatusCode::CREATED, &status))
            }
            "create" => {
                let object = parse_body(&body)?;
                self.create(user, info, object, query, webhook_client).await
            }
            "update" => {
                let object = parse_body(&body)?;
                self.update(user, info, object, query, webhook_client).await
            }
            "patch" => {
                let content_type = headers
                    .get(axum::http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let patch = parse_body(&body)?;
                self.patch(user, info, content_type, patch, query, webhook_client)
                    .await
            }
            "delete" => self.delete(user, info, query, webhook_client).await,
            "deletecollection" => {
                self.delete_collection(user, info, query, webhook_client)
                    .await
            }
            _ => Err(KubeError::method_not_allowed("unsupported method")),
        }
    }

    fn non_resource(&self, path: &str) -> KubeResult<Response> {
        let body = match path.trim_end_matches('/') {
            "/version" => version_of(&self.version()),
            "/api" => json!({
                "kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
            }),
            "/api/v1" => resource_list("", "v1"),
            "/apis" => group_list(),
            "/openapi/v3" => crate::openapi::root(&self.version()),
            "/healthz" | "/livez" | "/readyz" => {
                return Ok(Response::builder()
                    .status(StatusCode::OK)
                    .header("content-type", "text/plain")
                    .body(Body::from("ok"))
                    .expect("a valid response"));
            }
            other => {
                let parts: Vec<&str> = other.trim_matches('/').split('/').collect();
                match parts.as_slice() {
                    ["apis", group, version]
                        if RESOURCES
                            .iter()
                            .any(|r| r.group == *group && r.version == *version) =>
                    {
                        resource_list(group, version)
                    }
                    ["openapi", "v3", "api", version] => crate::openapi::group_version("", version)
                        .ok_or_else(KubeError::no_such_path)?,
                    ["openapi", "v3", "apis", group, version] => {
                        crate::openapi::group_version(group, version)
                            .ok_or_else(KubeError::no_such_path)?
                    }
                    ["apis", group] if RESOURCES.iter().any(|r| r.group == *group) => {
                        let r = RESOURCES.iter().find(|r| r.group == *group).expect("found");
                        let gv = json!({"groupVersion": format!("{group}/{}", r.version), "version": r.version});
                        json!({"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": [gv.clone()], "preferredVersion": gv})
                    }
                    _ => return Err(KubeError::no_such_path()),
                }
            }
        };
        Ok(json_response(StatusCode::OK, &body))
    }

    fn current(&self, info: &RequestInfo) -> KubeResult<Arc<Value>> {
        self.objects
            .get(&key(info.resource.plural, &info.namespace, &info.name))
            .ok_or_else(|| {
                KubeError::not_found(info.resource.group, info.resource.plural, &info.name)
            })
    }

    fn get(&self, info: &RequestInfo, as_table: bool) -> KubeResult<Response> {
        let object = self.current(info)?;
        if info.subresource == "scale" {
            return Ok(json_response(StatusCode::OK, &scale_of(&object)));
        }
        let body = if as_table {
            table::render(
                info.resource,
                std::slice::from_ref(&object),
                self.objects.revision(),
            )
        } else {
            (*object).clone()
        };
        Ok(json_response(StatusCode::OK, &body))
    }

    fn selected(&self, info: &RequestInfo, query: &Query) -> (Vec<Arc<Value>>, u64) {
        let namespace = (!info.namespace.is_empty()).then_some(info.namespace.as_str());
        let (items, revision) = self.objects.list(info.resource.plural, namespace);
        let items = items
            .into_iter()
            .filter(|o| {
                query.label_selector.matches_labels(o) && query.field_selector.matches_fields(o)
            })
            .collect();
        (items, revision)
    }

    fn list(&self, info: &RequestInfo, query: &Query, as_table: bool) -> KubeResult<Response> {
        let (items, revision) = self.selected(info, query);
        let body = if as_table {
            table::render(info.resource, &items, revision)
        } else {
            json!({
                "kind": format!("{}List", info.resource.kind),
                "apiVersion": info.resource.api_version(),
                "metadata": {"resourceVersion": revision.to_string()},
                "items": items.iter().map(|o| (**o).clone()).collect::<Vec<_>>(),
            })
        };
        Ok(json_response(StatusCode::OK, &body))
    }

    fn watch(
        self: &Arc<Self>,
        info: &RequestInfo,
        query: &Query,
        as_table: bool,
    ) -> KubeResult<Response> {
        let resource = info.resource;
        let namespace = info.namespace.clone();
        let (initial, backlog, receiver) = match query.resource_version {
            None | Some(0) => {
                let (items, revision) = self.selected(info, query);
                let (backlog, receiver) = self
                    .objects
                    .watch(revision)
                    .map_err(|_| KubeError::expired("too old resource version"))?;
                (items, backlog, receiver)
            }
            Some(after) => {
                let (backlog, receiver) = self.objects.watch(after).map_err(|_| {
                    KubeError::expired(format!("too old resource version: {after}"))
                })?;
                (Vec::new(), backlog, receiver)
            }
        };
        let labels = query.label_selector.clone();
        let fields = query.field_selector.clone();
        let name = info.name.clone();
        let relevant = move |change: &Change| {
            change.key.resource == resource.plural
                && (namespace.is_empty() || change.key.namespace == namespace)
                && (name.is_empty() || change.key.name == name)
                && labels.matches_labels(&change.object)
                && fields.matches_fields(&change.object)
        };
        let encode = move |kind: EventType, object: &Value| {
            let object = if as_table {
                table::render(resource, &[Arc::new(object.clone())], 0)
            } else {
                object.clone()
            };
            let mut line = serde_json::to_vec(&json!({"type": kind.name(), "object": object}))
                .unwrap_or_default();
            line.push(b'\n');
            Ok::<Bytes, std::convert::Infallible>(Bytes::from(line))
        };
        let first: Vec<_> = initial
            .iter()
            .map(|o| encode(EventType::Added, o))
            .chain(
                backlog
                    .iter()
                    .filter(|c| relevant(c))
                    .map(|c| encode(c.kind, &c.object)),
            )
            .collect();
        let last_sent = backlog.last().map_or(0, |c| c.revision);
        let live =
            tokio_stream::wrappers::BroadcastStream::new(receiver).filter_map(move |change| {
                let out = match change {
                    Ok(change) if change.revision > last_sent && relevant(&change) => {
                        Some(encode(change.kind, &change.object))
                    }
                    _ => None,
                };
                async move { out }
            });
        let timeout = std::time::Duration::from_secs(query.timeout_seconds.unwrap_or(1800));
        let stream = futures::stream::iter(first)
            .chain(live)
            .take_until(tokio::time::sleep(timeout));
        Ok(Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .header("transfer-encoding", "chunked")
            .body(Body::from_stream(stream))
            .expect("a valid response"))
    }

    async fn create(
        self: &Arc<Self>,
        user: &UserInfo,
        info: &RequestInfo,
        object: Value,
        query: &Query,
        webhook_client: &webhooks::Caller,
    ) -> KubeResult<Response> {
        let r = info.resource;
        check_kind(r, &object)?;
        let (mut object, warnings) = decode_request(r, &object, query.field_validation)?;
        if r.is_review() {
            let review = self.review(user, r, object)?;
            return Ok(json_response(StatusCode::CREATED, &review));
        }
        if !info.namespace.is_empty() {
            match object["metadata"]["namespace"].as_str() {
                Some(ns) if !ns.is_empty() && ns != info.namespace => {
                    return Err(KubeError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => object["metadata"]["namespace"] = json!(info.namespace),
            }
            if self
                .objects
                .get(&key("namespaces", "", &info.namespace))
                .is_none()
            {
                return Err(KubeError::not_found("", "namespaces", &info.namespace));
            }
        }
        if object["metadata"]["name"].as_str().unwrap_or("").is_empty()
            && let Some(prefix) = object["metadata"]["generateName"].as_str()
        {
            object["metadata"]["name"] = json!(format!("{prefix}{}", random_suffix()));
        }
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let object = stamp_new(object, r, &info.namespace);
        let object = self.admit(user, r, &info.namespace, &name, object, None)?;
        webhooks::validate(
            webhook_client,
            &self.objects,
            user,
            r,
            "CREATE",
            &object,
            None,
        )
        .await?;
        if query.dry_run {
            return Ok(with_warnings(
                json_response(StatusCode::CREATED, &object),
                &warnings,
            ));
        }
        let created = self
            .objects
            .create(key(r.plural, &info.namespace, &name), object)
            .map_err(|_| KubeError::already_exists(r.group, r.plural, &name))?;
        self.wake.notify_one();
        Ok(with_warnings(
            json_response(StatusCode::CREATED, &created),
            &warnings,
        ))
    }

    /// Defaults, validation and the checks that depend on other objects.
    fn admit(
        &self,
        user: &UserInfo,
        r: &ResourceType,
        namespace: &str,
        name: &str,
        mut object: Value,
        old: Option<&Value>,
    ) -> KubeResult<Value> {
        let mut causes = Vec::new();
        validate_name(r, name, &mut causes);
        defaults(r, &mut object);
        validate_quantities(&object, &mut causes);
        validate_kind(r, &object, old, &mut causes);
        if !causes.is_empty() {
            return Err(KubeError::invalid(r.group, r.kind, name, causes));
        }
        // Defaults must leave a well-formed object; this checks they did.
        decode_request(r, &object, FieldValidation::Ignore)?;
        self.prevent_escalation(user, r, namespace, &object)?;
        Ok(object)
    }

    fn prevent_escalation(
        &self,
        user: &UserInfo,
        r: &ResourceType,
        namespace: &str,
        object: &Value,
    ) -> KubeResult<()> {
        let holds = |verb: &str, resource: &str, name: &str| {
            self.authorize(
                user,
                &rbac::Request::Resource {
                    verb: verb.into(),
                    namespace: namespace.into(),
                    api_group: "rbac.authorization.k8s.io".into(),
                    resource: resource.into(),
                    subresource: String::new(),
                    name: name.into(),
                },
            )
            .allowed
        };
        let wanted = match r.plural {
            "roles" | "clusterroles" => {
                if holds(
                    "escalate",
                    r.plural,
                    object["metadata"]["name"].as_str().unwrap_or(""),
                ) {
                    return Ok(());
                }
                serde_json::from_value(object["rules"].clone()).unwrap_or_default()
            }
            "rolebindings" | "clusterrolebindings" => {
                let role_ref: k8s_openapi::api::rbac::v1::RoleRef =
                    serde_json::from_value(object["roleRef"].clone())
                        .map_err(|e| KubeError::bad_request(e.to_string()))?;
                let role_resource = if role_ref.kind == "ClusterRole" {
                    "clusterroles"
                } else {
                    "roles"
                };
                if holds("bind", role_resource, &role_ref.name) {
                    return Ok(());
                }
                match rbac::role_rules(&self.objects, namespace, &role_ref) {
                    Some(rules) => rules,
                    // Binding a role that does not exist yet grants nothing yet, but
                    // upstream still requires `bind` for it.
                    None => {
                        return Err(KubeError::forbidden(format!(
                            "{} \"{}\" is forbidden: user \"{}\" (groups={:?}) is attempting to grant RBAC permissions not currently held: {} \"{}\" not found",
                            qualified(r.group, r.plural),
                            object["metadata"]["name"].as_str().unwrap_or(""),
                            user.name,
                            user.groups,
                            role_ref.kind,
                            role_ref.name
                        )));
                    }
                }
            }
            _ => return Ok(()),
        };
        let owner: Vec<_> = rbac::grants(&self.objects, user, namespace)
            .into_iter()
            .map(|(rule, _)| rule)
            .collect();
        let missing = rbac::uncovered(&owner, &wanted);
        if missing.is_empty() {
            Ok(())
        } else {
            Err(KubeError::forbidden(format!(
                "{} \"{}\" is forbidden: {}",
                qualified(r.group, r.plural),
                object["metadata"]["name"].as_str().unwrap_or(""),
                rbac::escalation_message(user, &missing)
            )))
        }
    }

    async fn update(
        self: &Arc<Self>,
        user: &UserInfo,
        info: &RequestInfo,
        object: Value,
        query: &Query,
        webhook_client: &webhooks::Caller,
    ) -> KubeResult<Response> {
        let current = self.current(info)?;
        if info.subresource == "scale" {
            let (object, _) = decode_as::<Scale>("Scale", "v1", &object, query.field_validation)?;
            let replicas = object["spec"]["replicas"].clone();
            let mut next = (*current).clone();
            next["spec"]["replicas"] = replicas;
            if let Some(rv) = object["metadata"]["resourceVersion"].as_str() {
                next["metadata"]["resourceVersion"] = json!(rv);
            }
            let stored = self
                .store_update(user, info, next, &current, query, webhook_client)
                .await?;
            return Ok(json_response(StatusCode::OK, &scale_of(&stored)));
        }
        check_kind(info.resource, &object)?;
        let (object, warnings) = decode_request(info.resource, &object, query.field_validation)?;
        let name = object["metadata"]["name"].as_str().unwrap_or("");
        if name != info.name {
            return Err(KubeError::bad_request(format!(
                "the name of the object ({name}) does not match the name on the URL ({})",
                info.name
            )));
        }
        let next = if info.subresource == "status" {
            let mut next = (*current).clone();
            next["status"] = object["status"].clone();
            if let Some(rv) = object["metadata"]["resourceVersion"].as_str() {
                next["metadata"]["resourceVersion"] = json!(rv);
            }
            next
        } else {
            let mut next = object;
            if info.resource.subresources.contains(&"status") {
                next["status"] = current["status"].clone();
            }
            next
        };
        let stored = self
            .store_update(user, info, next, &current, query, webhook_client)
            .await?;
        Ok(with_warnings(
            json_response(StatusCode::OK, &stored),
            &warnings,
        ))
    }

    async fn store_update(
        self: &Arc<Self>,
        user: &UserInfo,
        info: &RequestInfo,
        mut next: Value,
        current: &Value,
        query: &Query,
        webhook_client: &webhooks::Caller,
    ) -> KubeResult<Arc<Value>> {
        let r = info.resource;
        // What the server owns stays the server's.
        for field in ["uid", "creationTimestamp", "generation"] {
            match current["metadata"].get(field) {
                Some(value) => next["metadata"][field] = value.clone(),
                None => {
                    next["metadata"].as_object_mut().map(|m| m.remove(field));
                }
            }
        }
        next["metadata"]["namespace"] = current["metadata"]["namespace"].clone();
        if next["metadata"]["namespace"].is_null() {
            next["metadata"]
                .as_object_mut()
                .map(|m| m.remove("namespace"));
        }
        if next["metadata"]["resourceVersion"].is_null() {
            next["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
        }
        next["apiVersion"] = json!(r.api_version());
        next["kind"] = json!(r.kind);
        if r.plural == "deployments" && next["spec"] != current["spec"] {
            let generation = current["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
            next["metadata"]["generation"] = json!(generation);
        }
        let next = self.admit(user, r, &info.namespace, &info.name, next, Some(current))?;
        webhooks::validate(
            webhook_client,
            &self.objects,
            user,
            r,
            "UPDATE",
            &next,
            Some(current),
        )
        .await?;
        if query.dry_run {
            return Ok(Arc::new(next));
        }
        let stored = self
            .objects
            .update(&key(r.plural, &info.namespace, &info.name), next)
            .map_err(|e| match e {
                StoreError::NotFound => KubeError::not_found(r.group, r.plural, &info.name),
                _ => KubeError::conflict(r.group, r.plural, &info.name),
            })?;
        self.wake.notify_one();
        Ok(stored)
    }

    async fn patch(
        self: &Arc<Self>,
        user: &UserInfo,
        info: &RequestInfo,
        content_type: &str,
        patch: Value,
        query: &Query,
        webhook_client: &webhooks::Caller,
    ) -> KubeResult<Response> {
        let current = self.current(info)?;
        let mut target = if info.subresource == "scale" {
            scale_of(&current)
        } else {
            (*current).clone()
        };
        let media = content_type.split(';').next().unwrap_or("").trim();
        let applied = match media {
            "application/merge-patch+json" => {
                crate::patch::json_merge(&mut target, &patch);
                Ok(())
            }
            "application/strategic-merge-patch+json" => {
                crate::patch::strategic_merge(&mut target, &patch)
            }
            "application/json-patch+json" => crate::patch::json_patch(&mut target, &patch),
            other => return Err(KubeError::unsupported_media_type(other)),
        };
        applied.map_err(|e| {
            KubeError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                format!("the patch does not apply: {e}"),
            )
        })?;
        if info.subresource == "scale" {
            return self.update(user, info, target, query, webhook_client).await;
        }
        // The patched object is decoded as a body would be: a patch can change its shape.
        let (mut target, warnings) =
            decode_request(info.resource, &target, query.field_validation)?;
        if info.subresource == "status" {
            let mut next = (*current).clone();
            next["status"] = target["status"].clone();
            target = next;
        } else if info.resource.subresources.contains(&"status") {
            target["status"] = current["status"].clone();
        }
        let stored = self
            .store_update(user, info, target, &current, query, webhook_client)
            .await?;
        Ok(with_warnings(
            json_response(StatusCode::OK, &stored),
            &warnings,
        ))
    }

    async fn delete(
        self: &Arc<Self>,
        user: &UserInfo,
        info: &RequestInfo,
        query: &Query,
        webhook_client: &webhooks::Caller,
    ) -> KubeResult<Response> {
        let r = info.resource;
        let current = self.current(info)?;
        webhooks::validate(
            webhook_client,
            &self.objects,
            user,
            r,
            "DELETE",
            &current,
            Some(&current),
        )
        .await?;
        if query.dry_run {
            return Ok(json_response(StatusCode::OK, &current));
        }
        let deleted = self
            .objects
            .delete(&key(r.plural, &info.namespace, &info.name))
            .map_err(|_| KubeError::not_found(r.group, r.plural, &info.name))?;
        if r.plural == "namespaces" {
            // Everything in the namespace goes with it.
            for other in RESOURCES.iter().filter(|r| r.namespaced) {
                for object in self.objects.list(other.plural, Some(&info.name)).0 {
                    let name = object["metadata"]["name"].as_str().unwrap_or("");
                    let _ = self.objects.delete(&key(other.plural, &info.name, name));
                }
            }
        }
        self.wake.notify_one();
        Ok(json_response(StatusCode::OK, &deleted))
    }

    async fn delete_collection(
        self: &Arc<Self>,
        user: &UserInfo,
        info: &RequestInfo,
        query: &Query,
        webhook_client: &webhooks::Caller,
    ) -> KubeResult<Response> {
        let r = info.resource;
        let (items, revision) = self.selected(info, query);
        for object in &items {
            webhooks::validate(
                webhook_client,
                &self.objects,
                user,
                r,
                "DELETE",
                object,
                Some(object),
            )
            .await?;
        }
        if !query.dry_run {
            for object in &items {
                let ns = object["metadata"]["namespace"].as_str().unwrap_or("");
                let name = object["metadata"]["name"].as_str().unwrap_or("");
                let _ = self.objects.delete(&key(r.plural, ns, name));
            }
        }
        self.wake.notify_one();
        Ok(json_response(
            StatusCode::OK,
            &json!({
                "kind": format!("{}List", r.kind), "apiVersion": r.api_version(),
                "metadata": {"resourceVersion": revision.to_string()},
                "items": items.iter().map(|o| (**o).clone()).collect::<Vec<_>>(),
            }),
        ))
    }

    /// Answers a SelfSubjectAccessReview or SubjectAccessReview.
    fn review(&self, caller: &UserInfo, r: &ResourceType, mut review: Value) -> KubeResult<Value> {
        let spec = &review["spec"];
        let subject = if r.kind == "SelfSubjectAccessReview" {
            caller.clone()
        } else {
            UserInfo {
                name: spec["user"].as_str().unwrap_or("").to_string(),
                groups: spec["groups"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|g| g.as_str().map(str::to_string))
                    .collect(),
            }
        };
        let text = |v: &Value| v.as_str().unwrap_or("").to_string();
        let request = if let Some(attrs) = spec.get("resourceAttributes").filter(|a| a.is_object())
        {
            rbac::Request::Resource {
                verb: text(&attrs["verb"]),
                namespace: text(&attrs["namespace"]),
                api_group: text(&attrs["group"]),
                resource: text(&attrs["resource"]),
                subresource: text(&attrs["subresource"]),
                name: text(&attrs["name"]),
            }
        } else if let Some(attrs) = spec.get("nonResourceAttributes").filter(|a| a.is_object()) {
            rbac::Request::NonResource {
                verb: text(&attrs["verb"]),
                path: text(&attrs["path"]),
            }
        } else {
            return Err(KubeError::invalid(
                r.group,
                r.kind,
                "",
                vec![(
                    "spec.resourceAttributes".into(),
                    "Required value: exactly one of nonResourceAttributes or resourceAttributes must be specified".into(),
                )],
            ));
        };
        let decision = self.authorize(&subject, &request);
        review["status"] = json!({"allowed": decision.allowed, "reason": decision.reason});
        review["metadata"]["creationTimestamp"] = Value::Null;
        Ok(review)
    }
}

fn parse_body(body: &[u8]) -> KubeResult<Value> {
    serde_json::from_slice(body).map_err(|e| {
        KubeError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
    })
}

/// Decodes a request's object into its kind's type before anything else touches it
/// (`decode`): the typed form, and the warnings for the response.
fn decode_request(
    r: &ResourceType,
    object: &Value,
    validation: FieldValidation,
) -> KubeResult<(Value, Vec<String>)> {
    let name = object["metadata"]["name"].as_str().unwrap_or("");
    let typed = (r.decode)(object).map_err(|e| undecodable(r.kind, r.version, r.group, name, e))?;
    unknown_fields(typed, validation)
}

fn decode_as<T: serde::de::DeserializeOwned + serde::Serialize>(
    kind: &str,
    version: &str,
    object: &Value,
    validation: FieldValidation,
) -> KubeResult<(Value, Vec<String>)> {
    let name = object["metadata"]["name"].as_str().unwrap_or("");
    let typed =
        crate::decode::typed::<T>(object).map_err(|e| undecodable(kind, version, "", name, e))?;
    unknown_fields(typed, validation)
}

fn undecodable(kind: &str, version: &str, group: &str, name: &str, e: Undecodable) -> KubeError {
    match e {
        Undecodable::Missing { field } => {
            KubeError::invalid(group, kind, name, vec![(field, "Required value".into())])
        }
        Undecodable::Invalid { field, message } => {
            let at = if field.is_empty() {
                String::new()
            } else {
                format!("{field}: ")
            };
            KubeError::bad_request(format!(
                "{kind} in version \"{version}\" cannot be handled as a {kind}: {at}{message}"
            ))
        }
    }
}

/// Upstream's answer to unknown fields: refused under `Strict`, a warning under `Warn`.
fn unknown_fields(typed: Typed, validation: FieldValidation) -> KubeResult<(Value, Vec<String>)> {
    let named: Vec<String> = typed
        .unknown
        .iter()
        .map(|field| format!("unknown field \"{field}\""))
        .collect();
    match validation {
        FieldValidation::Strict if !named.is_empty() => Err(KubeError::bad_request(format!(
            "strict decoding error: {}",
            named.join(", ")
        ))),
        FieldValidation::Warn => Ok((typed.object, named)),
        _ => Ok((typed.object, Vec::new())),
    }
}

/// `Warning: 299 - "…"` headers, which kubectl prints as `Warning: …`.
fn with_warnings(mut response: Response, warnings: &[String]) -> Response {
    for warning in warnings {
        let text = format!("299 - {}", serde_json::Value::String(warning.clone()));
        if let Ok(value) = axum::http::HeaderValue::from_str(&text) {
            response.headers_mut().append("warning", value);
        }
    }
    response
}

fn check_kind(r: &ResourceType, object: &Value) -> KubeResult<()> {
    let api_version = object["apiVersion"].as_str().unwrap_or("");
    let kind = object["kind"].as_str().unwrap_or("");
    if (!api_version.is_empty() && api_version != r.api_version())
        || (!kind.is_empty() && kind != r.kind)
    {
        return Err(KubeError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            r.api_version()
        )));
    }
    Ok(())
}

/// Five characters as upstream's generated names end with.
pub fn random_suffix() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// The server-set metadata of a new object.
pub fn stamp_new(mut object: Value, r: &ResourceType, namespace: &str) -> Value {
    object["apiVersion"] = json!(r.api_version());
    object["kind"] = json!(r.kind);
    let metadata = &mut object["metadata"];
    metadata["uid"] = json!(uuid::Uuid::new_v4().to_string());
    metadata["creationTimestamp"] = json!(now());
    if !namespace.is_empty() {
        metadata["namespace"] = json!(namespace);
    }
    if r.plural == "deployments" {
        metadata["generation"] = json!(1);
    }
    if let Some(m) = metadata.as_object_mut() {
        m.remove("resourceVersion");
    }
    object
}

fn validate_name(r: &ResourceType, name: &str, causes: &mut Vec<(String, String)>) {
    if name.is_empty() {
        causes.push((
            "metadata.name".into(),
            "Required value: name or generateName is required".into(),
        ));
        return;
    }
    // RBAC objects allow path-segment names (`system:discovery`); the rest are DNS subdomains.
    if r.group == "rbac.authorization.k8s.io" {
        if name.contains('/') || name.contains('%') || name == "." || name == ".." {
            causes.push((
                "metadata.name".into(),
                format!("Invalid value: \"{name}\": may not contain '/' or '%'"),
            ));
        }
        return;
    }
    let label = r.plural == "namespaces";
    let valid = name.len() <= if label { 63 } else { 253 }
        && name.split('.').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
        && !(label && name.contains('.'));
    if !valid {
        let message = if label {
            format!(
                "Invalid value: \"{name}\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
            )
        } else {
            format!(
                "Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
            )
        };
        causes.push(("metadata.name".into(), message));
    }
}

fn pod_spec_of(object: &Value) -> Option<(&Value, &'static str)> {
    match object["kind"].as_str() {
        Some("Pod") => Some((&object["spec"], "spec")),
        Some("Deployment") => Some((&object["spec"]["template"]["spec"], "spec.template.spec")),
        _ => None,
    }
}

fn validate_quantities(object: &Value, causes: &mut Vec<(String, String)>) {
    let Some((spec, prefix)) = pod_spec_of(object) else {
        return;
    };
    for (i, container) in spec["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        for kind in ["requests", "limits"] {
            for (resource, value) in container["resources"][kind]
                .as_object()
                .into_iter()
                .flatten()
            {
                let text = value
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| value.to_string());
                if quantity::parse(&text).is_none_or(|q| q < 0.0) {
                    causes.push((
                        format!("{prefix}.containers[{i}].resources.{kind}[{resource}]"),
                        format!("Invalid value: \"{text}\": {}", quantity::MALFORMED),
                    ));
                }
            }
        }
    }
}

fn defaults(r: &ResourceType, object: &mut Value) {
    match r.plural {
        "namespaces" => {
            let name = object["metadata"]["name"].clone();
            object["metadata"]["labels"]["kubernetes.io/metadata.name"] = name;
            if object["status"]["phase"].is_null() {
                object["status"] = json!({"phase": "Active"});
            }
        }
        "pods" if object["status"]["phase"].is_null() => {
            object["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
        }
        "deployments" => {
            let spec = &mut object["spec"];
            if spec["replicas"].is_null() {
                spec["replicas"] = json!(1);
            }
            if spec["strategy"].is_null() {
                spec["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}});
            }
            if spec["revisionHistoryLimit"].is_null() {
                spec["revisionHistoryLimit"] = json!(10);
            }
            if spec["progressDeadlineSeconds"].is_null() {
                spec["progressDeadlineSeconds"] = json!(600);
            }
        }
        // stringData is write-only: its entries become base64 data, as upstream stores them.
        "secrets" => {
            if let Some(Value::Object(plain)) =
                object.as_object_mut().and_then(|o| o.remove("stringData"))
            {
                for (key, value) in plain {
                    let encoded = base64::engine::general_purpose::STANDARD
                        .encode(value.as_str().unwrap_or(""));
                    object["data"][key] = json!(encoded);
                }
            }
            if object["type"].is_null() {
                object["type"] = json!("Opaque");
            }
        }
        _ => {}
    }
}

fn validate_kind(
    r: &ResourceType,
    object: &Value,
    old: Option<&Value>,
    causes: &mut Vec<(String, String)>,
) {
    match r.plural {
        "deployments" => {
            let spec = &object["spec"];
            // Decoded as Go decodes, an absent selector is an empty one.
            if spec["selector"].as_object().is_none_or(|s| {
                s.values().all(|v| {
                    v.as_object().is_some_and(|m| m.is_empty())
                        || v.as_array().is_some_and(|a| a.is_empty())
                })
            }) {
                causes.push(("spec.selector".into(), "Required value".into()));
            } else if !crate::selectors::label_selector_matches(
                &spec["selector"],
                &spec["template"]["metadata"]["labels"],
            ) {
                causes.push((
                    "spec.template.metadata.labels".into(),
                    format!(
                        "Invalid value: {}: `selector` does not match template `labels`",
                        spec["template"]["metadata"]["labels"]
                    ),
                ));
            }
            if spec["replicas"].as_i64().is_some_and(|n| n < 0) {
                causes.push((
                    "spec.replicas".into(),
                    format!(
                        "Invalid value: {}: must be greater than or equal to 0",
                        spec["replicas"]
                    ),
                ));
            }
            if spec["template"]["spec"]["containers"]
                .as_array()
                .is_none_or(|c| c.is_empty())
            {
                causes.push((
                    "spec.template.spec.containers".into(),
                    "Required value".into(),
                ));
            }
            if let Some(old) = old
                && old["spec"]["selector"] != spec["selector"]
            {
                causes.push((
                    "spec.selector".into(),
                    format!("Invalid value: {}: field is immutable", spec["selector"]),
                ));
            }
        }
        "pods" => {
            if object["spec"]["containers"]
                .as_array()
                .is_none_or(|c| c.is_empty())
            {
                causes.push(("spec.containers".into(), "Required value".into()));
            }
            if let Some(old) = old {
                let node = |o: &Value| o["spec"]["nodeName"].clone();
                if !node(old).is_null() && node(old) != node(object) {
                    causes.push(("spec.nodeName".into(), "Forbidden: pod updates may not change fields other than `spec.containers[*].image`, `spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to existing tolerations), `spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)".into()));
                }
            }
        }
        "rolebindings" | "clusterrolebindings" => {
            if let Some(old) = old
                && old["roleRef"] != object["roleRef"]
            {
                causes.push((
                    "roleRef".into(),
                    format!(
                        "Invalid value: {}: cannot change roleRef",
                        object["roleRef"]
                    ),
                ));
            }
        }
        _ => {}
    }
}

/// The autoscaling/v1 Scale of a deployment.
pub fn scale_of(deployment: &Value) -> Value {
    let selector = deployment["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let metadata = &deployment["metadata"];
    json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": metadata["name"], "namespace": metadata["namespace"], "uid": metadata["uid"],
            "resourceVersion": metadata["resourceVersion"], "creationTimestamp": metadata["creationTimestamp"],
        },
        "spec": {"replicas": deployment["spec"]["replicas"]},
        "status": {"replicas": deployment["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delete_namespaces() -> rbac::Request {
        rbac::Request::Resource {
            verb: "delete".into(),
            namespace: String::new(),
            api_group: String::new(),
            resource: "namespaces".into(),
            subresource: String::new(),
            name: "kube-system".into(),
        }
    }

    #[test]
    fn system_masters_may_do_anything_even_without_a_binding_and_others_follow_rbac() {
        let cluster = ClusterApi::new("c", "1.34");
        let admin = UserInfo {
            name: "admin".into(),
            groups: vec![PRIVILEGED_GROUP.into()],
        };
        let alice = UserInfo {
            name: "alice".into(),
            groups: vec!["system:authenticated".into()],
        };
        assert!(cluster.authorize(&admin, &delete_namespaces()).allowed);
        assert!(!cluster.authorize(&alice, &delete_namespaces()).allowed);
        // Even with the bootstrap binding gone, as upstream's privileged-group authorizer.
        cluster
            .objects
            .delete(&key("clusterrolebindings", "", "cluster-admin"))
            .unwrap();
        assert!(cluster.authorize(&admin, &delete_namespaces()).allowed);
        // A binding made later counts at once: the index follows RBAC changes.
        let binding: Value = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "alice-admin"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"kind": "User", "name": "alice"}],
        });
        cluster
            .objects
            .create(key("clusterrolebindings", "", "alice-admin"), binding)
            .unwrap();
        let decision = cluster.authorize(&alice, &delete_namespaces());
        assert!(decision.allowed);
        assert!(
            decision.reason.contains("alice-admin"),
            "{}",
            decision.reason
        );
    }
}
