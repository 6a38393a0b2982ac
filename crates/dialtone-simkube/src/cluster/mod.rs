//! One sim cluster's API server: request routing as kube-apiserver does it (discovery,
//! resource requests by group, version, namespace, name and subresource, non-resource
//! paths), authorization by RBAC with impersonation, admission (defaults, validation,
//! escalation prevention, validating webhooks) and the verbs kubectl uses.
//!
//! This file holds the server and its request path (authenticate, impersonate, authorize,
//! dispatch); `routing.rs` what a request names, `admission.rs` what a body must be,
//! `verbs.rs` what each verb does, `metadata.rs` the metadata the server owns.

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

use crate::audit::AuditLog;
use crate::custom::Served;
use crate::decode::{FieldValidation, Typed, Undecodable};
use crate::rbac::{self, Decision, RbacIndex, RbacSource, UserInfo};
use crate::resources::{self, RESOURCES, ResourceType};
use crate::selectors::Selector;
use crate::status::{KubeError, KubeResult, json_response, qualified};
use crate::store::{Change, EventType, ObjectKey, Objects, StoreError};
use crate::{quantity, table, webhooks};

mod admission;
mod conversion;
mod metadata;
mod routing;
mod verbs;

use admission::*;
pub use metadata::{key, now, random_suffix, scale_of, set_scale, stamp_new, timestamp};
use routing::*;

/// The group upstream's API server lets do anything before RBAC is asked
/// (`user.SystemPrivilegedGroup`): kubeadm's `admin.conf`, and Dialtone's control plane.
const PRIVILEGED_GROUP: &str = "system:masters";

/// What serving a request learned of it, for its audit event: the verb and what it is
/// for, when it named a resource, who it acted as, and its body.
#[derive(Default)]
struct Noted {
    request: Option<(&'static str, RequestInfo)>,
    impersonated: Option<UserInfo>,
    /// The body as JSON, a protobuf one decoded.
    body: Option<Bytes>,
}

pub struct ClusterApi {
    pub uid: String,
    /// `1.34`: the oldest control-plane node's, as upstream's skew policy would have it.
    version: std::sync::RwLock<String>,
    pub objects: Objects,
    /// Wakes the cluster's controllers (scheduler, deployments, nodes).
    pub wake: Notify,
    /// The RBAC index and the count of RBAC changes it was built at.
    rbac: std::sync::RwLock<Option<(u64, Arc<RbacIndex>)>>,
    /// What the cluster's CustomResourceDefinitions serve and the count of their changes it
    /// was read at.
    served: std::sync::RwLock<Option<(u64, Arc<Served>)>>,
    /// The ranges the control plane was booted with; `None` until a control-plane node's
    /// user data has been read.
    network: std::sync::RwLock<Option<ClusterNetwork>>,
    /// The Pod Security level namespaces without a label of their own enforce, as the
    /// control plane was booted with it; privileged (no check) until it is known.
    pod_security: std::sync::RwLock<Option<dialtone_cloud::PodSecurityLevel>>,
    /// The audit log, once the control plane's user data has said its policy.
    audit: std::sync::RwLock<Option<Arc<AuditLog>>>,
    /// Held while a Service's addresses are chosen and stored, so that two Services never
    /// get the same cluster IP or node port.
    pub(crate) allocating: tokio::sync::Mutex<()>,
}

/// The ranges a cluster's addresses come from, as its control plane was booted with them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClusterNetwork {
    /// Services' cluster IPs.
    pub service_cidr: ipnet::Ipv4Net,
    /// Pods' addresses.
    pub pod_cidr: ipnet::Ipv4Net,
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

impl ClusterApi {
    pub fn version(&self) -> String {
        self.version.read().expect("lock").clone()
    }

    /// The ranges the control plane was booted with, once known.
    pub fn network(&self) -> Option<ClusterNetwork> {
        *self.network.read().expect("lock")
    }

    /// Takes the control plane's default Pod Security level, as its API server reads it at
    /// boot.
    pub fn set_pod_security(&self, level: dialtone_cloud::PodSecurityLevel) {
        *self.pod_security.write().expect("lock") = Some(level);
    }

    /// Starts the audit log, as the API server does at boot, and uploads its policy to
    /// the cluster unless the cluster holds one already.
    pub fn set_audit(&self, log: AuditLog) {
        let (namespace, name) = dialtone_kubeapi::audit::POLICY_CONFIGMAP;
        let config_map = json!({
            "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "dialtone"}},
            "data": {dialtone_kubeapi::audit::POLICY_KEY: log.boot_policy().to_yaml()},
        });
        let r = resources::by_plural("configmaps");
        let stamped = stamp_new(config_map, r, namespace);
        // Already there: the cluster's copy is the one in force.
        let _ = self
            .objects
            .create(key(r.stored_name(), namespace, name), stamped);
        *self.audit.write().expect("lock") = Some(Arc::new(log));
    }

    fn audit_log(&self) -> Option<Arc<AuditLog>> {
        self.audit.read().expect("lock").clone()
    }

    /// Why Pod Security Admission refuses to create `pod` in `namespace`, if it does.
    pub(crate) fn pod_security_refusal(&self, namespace: &str, pod: &Value) -> Option<String> {
        let default = (*self.pod_security.read().expect("lock"))
            .unwrap_or(dialtone_cloud::PodSecurityLevel::Privileged);
        let labels = self
            .objects
            .get(&metadata::key("namespaces", "", namespace))
            .map(|ns| ns["metadata"]["labels"].clone())
            .unwrap_or_default();
        let level = crate::pod_security::level_of(namespace, &labels, default)?;
        crate::pod_security::refusal(level, pod)
    }

    /// Takes the control plane's ranges, as its API server reads them at boot.
    pub fn set_network(&self, network: ClusterNetwork) {
        let mut current = self.network.write().expect("lock");
        if *current != Some(network) {
            *current = Some(network);
        }
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
        // Custom objects are kept as `plural.group`, which no built-in's name has.
        let (objects, restored) = Objects::restore(journal, stored, |name| {
            RESOURCES
                .iter()
                .find(|r| r.plural == name)
                .map(|r| r.plural.clone())
                .or_else(|| name.contains('.').then(|| name.to_string().into()))
        })?;
        if restored {
            return Ok(ClusterApi {
                uid: uid.to_string(),
                version: std::sync::RwLock::new(version.to_string()),
                objects,
                wake: Notify::new(),
                rbac: Default::default(),
                served: Default::default(),
                network: Default::default(),
                pod_security: Default::default(),
                audit: Default::default(),
                allocating: Default::default(),
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
            served: Default::default(),
            network: Default::default(),
            pod_security: Default::default(),
            audit: Default::default(),
            allocating: Default::default(),
        };
        for (resource, object) in crate::defaults::objects() {
            let r = resources::by_plural(resource);
            let name = object["metadata"]["name"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let stamped = stamp_new(object, r, "");
            let _ = cluster
                .objects
                .create(key(r.stored_name(), "", &name), stamped);
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

    /// The resources the cluster serves, read again after its definitions change.
    pub fn served(&self) -> Arc<Served> {
        let changes = self.objects.definition_changes();
        if let Some((read_at, served)) = &*self.served.read().unwrap_or_else(|e| e.into_inner())
            && *read_at == changes
        {
            return served.clone();
        }
        let served = Arc::new(Served::read(
            &self.objects.list(crate::custom::DEFINITIONS, None).0,
        ));
        *self.served.write().unwrap_or_else(|e| e.into_inner()) = Some((changes, served.clone()));
        served
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

    /// Serves one request from an authenticated user, and logs it as the audit policy says.
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
        let received = Timestamp::now();
        // Upstream takes the client's Audit-ID, so that a client can find its request.
        let audit_id = headers
            .get("audit-id")
            .and_then(|v| v.to_str().ok())
            .filter(|id| !id.is_empty() && id.len() <= 128)
            .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_string);
        let audit = self.audit_log();
        let logged = audit.as_ref().map(|_| user.clone());
        let mut noted = Noted::default();
        let served = self
            .serve(
                user,
                method.clone(),
                path,
                raw_query,
                headers,
                body,
                webhook_client,
                &mut noted,
            )
            .await;
        let mut response = served.unwrap_or_else(axum::response::IntoResponse::into_response);
        if let Ok(value) = axum::http::HeaderValue::from_str(&audit_id) {
            response.headers_mut().insert("audit-id", value);
        }
        let (Some(audit), Some(user)) = (audit, logged) else {
            return response;
        };
        let method_verb = method.as_str().to_lowercase();
        let (verb, target, api_version) = match &noted.request {
            Some((verb, info)) => (
                *verb,
                dialtone_kubeapi::audit::Target::Resource {
                    group: &info.resource.group,
                    resource: &info.resource.plural,
                    subresource: &info.subresource,
                    namespace: &info.namespace,
                    name: &info.name,
                },
                info.resource.api_version(),
            ),
            None => (
                method_verb.as_str(),
                dialtone_kubeapi::audit::Target::NonResource { path },
                String::new(),
            ),
        };
        let request_uri = match raw_query.filter(|q| !q.is_empty()) {
            Some(query) => format!("{path}?{query}"),
            None => path.to_string(),
        };
        let seen = crate::audit::Seen {
            audit_id: &audit_id,
            user: &user,
            impersonated: noted.impersonated.as_ref(),
            verb,
            target,
            api_version: &api_version,
            request_uri: &request_uri,
            user_agent: headers
                .get(axum::http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or(""),
            received,
        };
        let body = noted.body.unwrap_or_default();
        audit.record(&self.objects, seen, &body, response).await
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
        noted: &mut Noted,
    ) -> KubeResult<Response> {
        let user = self.impersonate(user, headers)?;
        if headers.contains_key("impersonate-user") {
            noted.impersonated = Some(user.clone());
        }
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
        noted.body = Some(body.clone());
        let mut query = parse_query(raw_query)?;
        query.agent = headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .and_then(|agent| agent.split('/').next())
            .filter(|name| !name.is_empty())
            .unwrap_or("unknown")
            .to_string();
        let served = self.served();
        let info = match route(path, &served)? {
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
                return self.non_resource(&path, &served, headers);
            }
            Route::Resource(info) => info,
        };
        let verb = verb_of(&method, &info, &query);
        noted.request = Some((verb, info.clone()));
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
        } else if info.subresource == "log" {
            verb == "get"
        } else if matches!(info.subresource.as_str(), "exec" | "attach") {
            matches!(verb, "create" | "get")
        } else {
            matches!(verb, "get" | "update" | "patch")
        };
        if !allowed_verb {
            return Err(KubeError::method_not_allowed(
                "the server does not allow this method on the requested resource",
            ));
        }
        let table = wants_table(headers);
        let conversion = conversion::of(&info.resource);
        let (verb, info, query, body) = match conversion {
            Some(conversion) => {
                self.converted_request(conversion, verb, &info, &query, headers, body)?
            }
            None => (verb, info, query, body),
        };
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
        let answer = match (answer, conversion) {
            (Ok(answer), Some(conversion)) => {
                conversion::converted_response(conversion, verb, table, answer).await
            }
            (answer, _) => answer,
        };
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
            "get" if info.subresource == "log" => {
                let text = crate::logs::log(&*self.current(info)?, &query.log)?;
                Ok(Response::builder()
                    .status(StatusCode::OK)
                    .header("content-type", "text/plain")
                    .body(Body::from(text))
                    .expect("a valid response"))
            }
            "get" | "create" if matches!(info.subresource.as_str(), "exec" | "attach") => {
                Err(crate::logs::exec(&*self.current(info)?))
            }
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
                self.create(
                    user,
                    info,
                    object,
                    Some(query.manager()),
                    query,
                    webhook_client,
                )
                .await
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
                if content_type.starts_with(crate::apply::CONTENT_TYPE) {
                    let config = parse_apply_body(&body)?;
                    return self.apply(user, info, config, query, webhook_client).await;
                }
                if query.force {
                    return Err(KubeError::invalid(
                        &info.resource.group,
                        &info.resource.kind,
                        &info.name,
                        vec![(
                            "force".into(),
                            "Forbidden: may not be specified for non-apply patch".into(),
                        )],
                    ));
                }
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

    fn non_resource(
        &self,
        path: &str,
        served: &Served,
        headers: &HeaderMap,
    ) -> KubeResult<Response> {
        let trimmed = path.trim_end_matches('/');
        if trimmed == "/openapi/v2" {
            let document = crate::openapi_v2::document(served);
            let protobuf =
                accepted(headers).any(|media| media.contains(crate::openapi_v2::PROTOBUF));
            if !protobuf {
                return Ok(json_response(StatusCode::OK, &document));
            }
            return Ok(Response::builder()
                .status(StatusCode::OK)
                .header("content-type", crate::openapi_v2::PROTOBUF_ANSWER)
                .body(Body::from(crate::openapi_v2::protobuf(&document)))
                .expect("a valid response"));
        }
        if matches!(trimmed, "/api" | "/apis") && wants_aggregated(headers) {
            let body = aggregated(served, trimmed == "/api");
            let mut response = json_response(StatusCode::OK, &body);
            response.headers_mut().insert(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static(AGGREGATED),
            );
            return Ok(response);
        }
        if trimmed == dialtone_kubeapi::audit::LOG_PATH
            && let Some(log) = self.audit_log()
        {
            return log.serve(headers);
        }
        let body = match path.trim_end_matches('/') {
            "/version" => version_of(&self.version()),
            "/api" => json!({
                "kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
            }),
            "/api/v1" => resource_list(served, "", "v1"),
            "/apis" => group_list(served),
            "/openapi/v3" => crate::openapi::root(&self.version(), served),
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
                        if served
                            .iter()
                            .any(|r| r.group == *group && r.version == *version) =>
                    {
                        resource_list(served, group, version)
                    }
                    ["openapi", "v3", "api", version] => crate::openapi::group_version("", version)
                        .map(|d| (*d).clone())
                        .ok_or_else(KubeError::no_such_path)?,
                    ["openapi", "v3", "apis", group, version] => {
                        crate::openapi::group_version(group, version)
                            .map(|d| (*d).clone())
                            .or_else(|| {
                                let kinds: Vec<_> = served
                                    .custom()
                                    .iter()
                                    .filter(|r| r.group == *group && r.version == *version)
                                    .collect();
                                crate::custom::openapi_document(&kinds)
                            })
                            .ok_or_else(KubeError::no_such_path)?
                    }
                    ["apis", group] => {
                        let versions = resources::groups(served.iter().map(|r| &**r))
                            .into_iter()
                            .find(|(g, _)| g == group && !g.is_empty())
                            .map(|(_, versions)| versions)
                            .ok_or_else(KubeError::no_such_path)?;
                        api_group(group, &versions)
                    }
                    _ => return Err(KubeError::no_such_path()),
                }
            }
        };
        Ok(json_response(StatusCode::OK, &body))
    }
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
