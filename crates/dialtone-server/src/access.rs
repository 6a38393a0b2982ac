//! Access policies at the API: the authorizer every request goes through, each tree node's
//! policy (`GET`/`PUT …/policy`, with an etag), `explain`, `what-if`, and the drift guard
//! clusters call before any change to the RBAC objects Dialtone manages in them.
//!
//! The authorizer reads the access index (`dialtone_controllers::access`), which follows
//! the store; a mutating request answers only once the index reflects it
//! ([`read_your_writes`]), so the next request is judged on what the last one wrote.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::{Path, Query, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use dialtone_controllers::access::{AccessIndex, flatten, grouped, level_of, node_name};
use dialtone_kubeapi::rbac::{Request as KubeRequest, rule_allows};
use dialtone_policy::projection::{changes, project};
use dialtone_policy::{
    Level, Permission, Policies, Role, Subject, TreeResource, TreeVerb, Unbindable,
};
use dialtone_types::connection::CONNECTION;
use dialtone_types::kinds::{GROUP, IDENTITY, KindInfo};
use dialtone_types::policy::{
    AccessPolicy, ClusterRbacChanges, Explanation, GrantingBinding, WhatIf, WhatIfRequest,
};
use dialtone_types::validation::{FieldReason, decode_strict};
use dialtone_types::{ApiError, FieldErrors, Kind, Reason, ResourcePath};
use serde_json::{Value, json};

use crate::App;
use crate::auth::{Authorizer, Decision, Part, Principal, Target, Verb, enforce};
use crate::error::{HttpError, HttpResult};
use crate::resources::{check_query, object_path, to_json};

/// Decides every request by the access policies of the tree. Orgs never see each other;
/// platform admins may do anything.
pub struct PolicyAuthorizer {
    pub index: Arc<AccessIndex>,
}

fn tree_verb(verb: Verb) -> TreeVerb {
    match verb {
        Verb::Create => TreeVerb::Create,
        Verb::Get => TreeVerb::Get,
        Verb::List => TreeVerb::List,
        Verb::Watch => TreeVerb::Watch,
        Verb::Update | Verb::UpdateStatus => TreeVerb::Update,
        Verb::Delete => TreeVerb::Delete,
    }
}

/// The resource objects of `kind` are to the policy engine.
fn resource_of(kind: &'static KindInfo) -> TreeResource {
    match level_of(kind) {
        Some(level) => level.resource(),
        None if std::ptr::eq(kind, &GROUP) => TreeResource::Groups,
        None if std::ptr::eq(kind, &CONNECTION) => TreeResource::Connections,
        None => TreeResource::Identities,
    }
}

/// The tree node whose policy governs an object: the object itself for a tree node, its
/// cluster for a connection, the org for identities and groups.
fn governing_node(path: &ResourcePath) -> String {
    match level_of(path.kind()) {
        Some(_) => node_name(path),
        None if std::ptr::eq(path.kind(), &CONNECTION) => {
            path.parent().map_or_else(String::new, |p| node_name(&p))
        }
        None => path.org_name().to_string(),
    }
}

impl PolicyAuthorizer {
    /// Whether the caller holds `verb` on `resource` at `node`; `None` when the node is not
    /// in the tree.
    fn holds(
        policies: &Policies,
        identity: &str,
        verb: TreeVerb,
        resource: TreeResource,
        node: &str,
    ) -> Option<bool> {
        let id = policies.node(node)?;
        Some(policies.allowed(identity, Permission::new(verb, resource), id))
    }

    fn decide(&self, principal: &Principal, verb: Verb, target: Target<'_>) -> Decision {
        let me = principal.identity.as_str();
        let forbid = |verb: TreeVerb, resource: TreeResource, node: &str| {
            Decision::Forbid(format!(
                "{me} may not {} {} on {node}: no access policy grants it (see `dialtone policy explain`)",
                verb.name(),
                resource.name()
            ))
        };
        let org = match target {
            Target::Object(p) | Target::Part(p, _) | Target::Tenant(p) => p.org_name(),
            Target::Collection {
                parent: Some(p), ..
            } => p.org_name(),
            Target::Collection { parent: None, .. } => {
                // Listing orgs shows each caller its own; creating one is an operator's job.
                return match verb {
                    Verb::List | Verb::Watch => Decision::Allow,
                    _ => Decision::Forbid("only platform admins can create orgs".into()),
                };
            }
            Target::Platform => {
                return Decision::Forbid("only platform admins can do this".into());
            }
        };
        if org != principal.org {
            return Decision::Hide;
        }
        let decided = self.index.read(org, |policies| {
            let holds = |verb, resource, node: &str| {
                Self::holds(policies, me, verb, resource, node).unwrap_or(false)
            };
            // A node the caller may not read is hidden; one it may read but not change is
            // forbidden.
            let judge = |wanted: TreeVerb, resource: TreeResource, node: &str, visible: bool| {
                if holds(wanted, resource, node) {
                    Decision::Allow
                } else if visible {
                    forbid(wanted, resource, node)
                } else {
                    Decision::Hide
                }
            };
            match target {
                Target::Tenant(_) => Decision::Allow,
                Target::Object(path) => {
                    let is_me = std::ptr::eq(path.kind(), &IDENTITY) && path.name() == me;
                    if is_me && verb == Verb::Get {
                        return Decision::Allow;
                    }
                    let (mut node, resource) = (governing_node(path), resource_of(path.kind()));
                    // A node the index does not hold (just removed, or its creation not
                    // yet followed, as a watch event can be) is judged by its parent's
                    // policy.
                    if policies.node(&node).is_none()
                        && let Some(parent) = path.parent()
                    {
                        node = governing_node(&parent);
                    }
                    let visible = holds(TreeVerb::Get, resource, &node);
                    judge(tree_verb(verb), resource, &node, visible)
                }
                Target::Collection {
                    kind,
                    parent: Some(parent),
                } => {
                    let node = governing_node(parent);
                    let resource = resource_of(kind);
                    let visible = holds(TreeVerb::Get, resource_of(parent.kind()), &node)
                        || holds(TreeVerb::List, resource, &node);
                    match verb {
                        // Lists show each item the caller may get.
                        Verb::List | Verb::Watch if visible => Decision::Allow,
                        _ => judge(tree_verb(verb), resource, &node, visible),
                    }
                }
                Target::Part(path, part) => {
                    let node = governing_node(path);
                    let visible = holds(TreeVerb::Get, resource_of(path.kind()), &node);
                    let resource = match part {
                        Part::Policy => TreeResource::Policies,
                        Part::Credentials => TreeResource::Credentials,
                        Part::Audit => TreeResource::Audit,
                        Part::Billing => TreeResource::Billing,
                        // Everyone manages their own tokens: those of the identity it is,
                        // not of any node that happens to share its name.
                        Part::Tokens
                            if std::ptr::eq(path.kind(), &IDENTITY) && path.name() == me =>
                        {
                            return Decision::Allow;
                        }
                        Part::Tokens => TreeResource::Tokens,
                    };
                    judge(tree_verb(verb), resource, &node, visible)
                }
                Target::Collection { parent: None, .. } | Target::Platform => {
                    unreachable!("decided above")
                }
            }
        });
        decided.unwrap_or(Decision::Hide)
    }
}

impl Authorizer for PolicyAuthorizer {
    fn authorize(&self, principal: &Principal, verb: Verb, target: Target<'_>) -> Decision {
        if principal.platform_admin {
            return Decision::Allow;
        }
        self.decide(principal, verb, target)
    }
}

/// Middleware: a mutation answers once the access index reflects the store as it was when
/// the mutation finished, so that its author's next request is authorized against it.
pub async fn read_your_writes(State(app): State<App>, request: Request, next: Next) -> Response {
    let mutates = !matches!(*request.method(), Method::GET | Method::HEAD);
    let response = next.run(request).await;
    if mutates
        && response.status().is_success()
        && let Ok(revision) = app.registry.store().revision().await
        && !app.access.caught_up(revision, Duration::from_secs(5)).await
    {
        tracing::warn!(revision, "the access index is behind the store");
    }
    response
}

/// `GET` and `PUT {node}/policy` for the nodes of kind `K`.
pub fn policy_routes<K: Kind>() -> axum::Router<App> {
    let (_, item) = crate::resources::route_paths(K::INFO);
    axum::Router::new().route(
        &format!("{item}/policy"),
        axum::routing::get(get_policy::<K>).put(set_policy::<K>),
    )
}

async fn get_policy<K: Kind>(
    State(app): State<App>,
    Extension(principal): Extension<Principal>,
    Path(params): Path<Vec<(String, String)>>,
) -> HttpResult<Response> {
    let node = object_path(K::INFO, &params)?;
    enforce(
        app.authorizer
            .authorize(&principal, Verb::Get, Target::Part(&node, Part::Policy)),
        &node,
    )?;
    let (bindings, etag) = app.registry.get_policy(&node).await?;
    Ok(to_json(StatusCode::OK, &AccessPolicy { bindings, etag }))
}

async fn set_policy<K: Kind>(
    State(app): State<App>,
    Extension(principal): Extension<Principal>,
    Path(params): Path<Vec<(String, String)>>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> HttpResult<Response> {
    let node = object_path(K::INFO, &params)?;
    enforce(
        app.authorizer
            .authorize(&principal, Verb::Update, Target::Part(&node, Part::Policy)),
        &node,
    )?;
    let mut policy: AccessPolicy = decode_strict(&body).map_err(ApiError::invalid)?;
    if policy.etag.is_empty()
        && let Some(tag) = headers
            .get(axum::http::header::IF_MATCH)
            .and_then(|v| v.to_str().ok())
    {
        policy.etag = tag.trim_matches('"').to_string();
    }
    let (current, _) = app.registry.get_policy(&node).await?;
    let level = level_of(K::INFO).expect("policies are set on tree nodes");
    check_bindings(&app, &node, level, &policy).await?;
    check_escalation(&app, &principal, &node, &current, &policy)?;
    // A policy replaces the node's whole policy: without the etag it was read at, a change
    // made since would be lost without a word.
    if policy.etag.is_empty() {
        return Err(ApiError::new(
            Reason::PreconditionRequired,
            format!("replacing the policy of {node} needs the etag it was read at, in the body's `etag` or an If-Match header: get it with `dialtone policy get`, change it, and put it back"),
        )
        .into());
    }
    let mut bindings = grouped(&flatten(&policy.bindings).expect("checked"));
    bindings.retain(|b| !b.subjects.is_empty());
    let etag = app
        .registry
        .set_policy(&node, &bindings, &policy.etag)
        .await?;
    Ok(to_json(StatusCode::OK, &AccessPolicy { bindings, etag }))
}

/// Every problem of a proposed policy at once: unknown roles, roles that cannot be bound
/// at the node's level, malformed or unknown subjects.
async fn check_bindings(
    app: &App,
    node: &ResourcePath,
    level: Level,
    policy: &AccessPolicy,
) -> HttpResult<()> {
    let catalogue = dialtone_policy::Catalogue::default();
    let org = ResourcePath::org(node.org_name());
    let mut errors = FieldErrors::default();
    for (i, binding) in policy.bindings.iter().enumerate() {
        if let Err(why) = catalogue.bindable(&binding.role, level) {
            let message = match why {
                Unbindable::Unknown(_) => format!(
                    "{why}; roles: {}",
                    catalogue
                        .roles()
                        .iter()
                        .map(|r| r.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Unbindable::WrongLevel { .. } => why.to_string(),
            };
            errors.push(
                &format!("bindings[{i}].role"),
                FieldReason::FieldValueInvalid,
                message,
            );
        }
        for (j, subject) in binding.subjects.iter().enumerate() {
            let field = format!("bindings[{i}].subjects[{j}]");
            let path = match Subject::parse(subject) {
                Err(message) => {
                    errors.push(&field, FieldReason::FieldValueInvalid, message);
                    continue;
                }
                Ok(Subject::User(name)) => name_in(&org, &IDENTITY, &name),
                Ok(Subject::Group(name)) => name_in(&org, &GROUP, &name),
            };
            let exists = match path {
                Some(path) => app.registry.exists(&path).await?,
                None => false,
            };
            if !exists {
                errors.push(
                    &field,
                    FieldReason::FieldValueInvalid,
                    format!("unknown subject `{subject}`: no such identity or group in the org"),
                );
            }
        }
    }
    errors
        .into_result()
        .map_err(|e| ApiError::invalid(e).into())
}

fn name_in(org: &ResourcePath, kind: &'static KindInfo, name: &str) -> Option<ResourcePath> {
    dialtone_types::validation::is_dns1123_label(name).then(|| org.child(kind, name))
}

/// Nobody grants more than they hold: each binding the policy adds must pass the
/// escalation check for its author on the node (platform admins excepted).
fn check_escalation(
    app: &App,
    principal: &Principal,
    node: &ResourcePath,
    current: &[dialtone_types::policy::PolicyBinding],
    proposed: &AccessPolicy,
) -> HttpResult<()> {
    if principal.platform_admin {
        return Ok(());
    }
    let before: BTreeSet<_> = flatten(current).unwrap_or_default().into_iter().collect();
    let added: BTreeSet<String> = flatten(&proposed.bindings)
        .expect("checked")
        .into_iter()
        .filter(|b| !before.contains(b))
        .map(|b| b.role)
        .collect();
    let name = node_name(node);
    let problems: Vec<String> = app
        .access
        .read(node.org_name(), |policies| {
            let Some(id) = policies.node(&name) else {
                return Vec::new();
            };
            added
                .iter()
                .filter_map(|role| {
                    let role: &Role = policies.catalogue().get(role)?;
                    policies.escalation(&principal.identity, id, role)
                })
                .collect()
        })
        .unwrap_or_default();
    match problems.is_empty() {
        true => Ok(()),
        false => Err(ApiError::new(
            Reason::Forbidden,
            format!("{} on {name}: {}", principal.identity, problems.join("; ")),
        )
        .into()),
    }
}

/// The tree node a policy path (`acme/eng/web/prod-1/payments`) names.
fn node_path(org: &str, node: &str) -> Option<ResourcePath> {
    let path = ResourcePath::tree_node(node).ok()?;
    let mut errors = FieldErrors::default();
    path.validate(&mut errors);
    (path.org_name() == org && errors.is_empty()).then_some(path)
}

fn bad_request(message: impl Into<String>) -> HttpError {
    ApiError::new(Reason::BadRequest, message).into()
}

/// The node of an explain or what-if query, once the caller may read its policy.
fn authorized_node(
    app: &App,
    principal: &Principal,
    org: &str,
    node: &str,
) -> HttpResult<ResourcePath> {
    let missing = format!("node {node}");
    let path = node_path(org, node).ok_or_else(|| ApiError::not_found(&missing))?;
    enforce(
        app.authorizer
            .authorize(principal, Verb::Get, Target::Part(&path, Part::Policy)),
        &missing,
    )?;
    Ok(path)
}

/// `GET /v1/orgs/{org}/explain?identity=alice&verb=get&resource=pods&node=acme/eng/web/prod-1/payments`:
/// whether the identity may do it, and the bindings that grant it. `resource` is one of the
/// tree's (clusters, policies, …) or a Kubernetes resource of a cluster or namespace node.
pub async fn explain(
    State(app): State<App>,
    Extension(principal): Extension<Principal>,
    Path(org): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> HttpResult<Response> {
    check_query(&query, &["identity", "verb", "resource", "node"])?;
    let field = |name: &str| -> HttpResult<&str> {
        query
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| bad_request(format!("explain needs `{name}`")))
    };
    let (identity, verb, resource, node) = (
        query
            .get("identity")
            .map_or(principal.identity.as_str(), String::as_str),
        field("verb")?,
        field("resource")?,
        field("node")?,
    );
    let path = authorized_node(&app, &principal, &org, node)?;
    let name = node_name(&path);
    let explanation = match TreeResource::parse(resource) {
        Some(tree_resource) => {
            let verb = TreeVerb::parse(verb).ok_or_else(|| {
                bad_request(format!(
                    "unknown verb `{verb}` for Dialtone's {resource}; verbs: get, list, watch, create, update, delete"
                ))
            })?;
            app.access.read(&org, |policies| {
                let id = policies.node(&name)?;
                let grants = policies.explain(identity, Permission::new(verb, tree_resource), id);
                Some(explanation(
                    policies,
                    identity,
                    verb.name(),
                    resource,
                    &name,
                    "dialtone",
                    grants
                        .into_iter()
                        .map(|g| (g.node, g.role, g.subject))
                        .collect(),
                ))
            })
        }
        None => {
            let level = level_of(path.kind()).expect("a tree node");
            if level < Level::Cluster {
                return Err(bad_request(format!(
                    "`{resource}` is not one of Dialtone's resources ({}), and Kubernetes resources are explained on a cluster or a namespace, not a {}",
                    TreeResource::ALL
                        .iter()
                        .map(|r| r.name())
                        .collect::<Vec<_>>()
                        .join(", "),
                    level.name()
                )));
            }
            let kind = dialtone_kubeapi::resources::RESOURCES
                .iter()
                .find(|r| r.plural == resource)
                .ok_or_else(|| bad_request(format!("unknown resource `{resource}`")))?;
            let namespace = match level {
                Level::Namespace => path.name().to_string(),
                _ => String::new(),
            };
            let request = KubeRequest::Resource {
                verb: verb.to_string(),
                namespace: namespace.clone(),
                api_group: kind.group.to_string(),
                resource: resource.to_string(),
                subresource: String::new(),
                name: String::new(),
            };
            let upstream = dialtone_kubeapi::defaults::cluster_roles();
            app.access.read(&org, |policies| {
                let id = policies.node(&name)?;
                let granting = policies
                    .grants_on(identity, id)
                    .into_iter()
                    .filter(|(_, role)| {
                        kube_allows(role, &upstream, &request, !namespace.is_empty())
                    })
                    .map(|(g, _)| (g.node, g.role, g.subject))
                    .collect();
                Some(explanation(
                    policies,
                    identity,
                    verb,
                    resource,
                    &name,
                    "kubernetes",
                    granting,
                ))
            })
        }
    };
    let mut explanation = explanation
        .flatten()
        .ok_or_else(|| ApiError::not_found(format!("node {node}")))?;
    // Only what the caller may read: bindings on nodes whose policy it may get, and another
    // identity's groups only if it may get the org's groups.
    let may_read_policy = |node: &str| {
        node_path(&org, node).is_some_and(|path| {
            app.authorizer
                .authorize(&principal, Verb::Get, Target::Part(&path, Part::Policy))
                == Decision::Allow
        })
    };
    explanation.granted_by.retain(|g| may_read_policy(&g.node));
    let groups = ResourcePath::org(&org).child(&GROUP, "any");
    if identity != principal.identity
        && app
            .authorizer
            .authorize(&principal, Verb::Get, Target::Object(&groups))
            != Decision::Allow
    {
        explanation.groups.clear();
    }
    Ok(to_json(StatusCode::OK, &explanation))
}

/// Whether a role's Kubernetes access allows a request; namespace roles never reach
/// beyond namespaces.
fn kube_allows(
    role: &Role,
    upstream: &[k8s_openapi::api::rbac::v1::ClusterRole],
    request: &KubeRequest,
    in_namespace: bool,
) -> bool {
    use dialtone_policy::KubeGrant;
    if role.level == Level::Namespace && !in_namespace {
        return false;
    }
    let rules = match &role.kube {
        KubeGrant::None => return false,
        KubeGrant::Rules(rules) => rules.clone(),
        KubeGrant::Upstream(name) => upstream
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(name))
            .and_then(|r| r.rules.clone())
            .unwrap_or_default(),
    };
    rules.iter().any(|rule| rule_allows(rule, request))
}

fn explanation(
    policies: &Policies,
    identity: &str,
    verb: &str,
    resource: &str,
    node: &str,
    api: &str,
    granted_by: Vec<(String, String, Subject)>,
) -> Explanation {
    Explanation {
        allowed: !granted_by.is_empty(),
        identity: identity.to_string(),
        verb: verb.to_string(),
        resource: resource.to_string(),
        node: node.to_string(),
        api: api.to_string(),
        granted_by: granted_by
            .into_iter()
            .map(|(node, role, subject)| GrantingBinding {
                node,
                role,
                subject: subject.to_string(),
            })
            .collect(),
        groups: policies.groups(identity),
    }
}

/// `POST /v1/orgs/{org}/whatif`: the RBAC objects a proposed policy would add, change and
/// remove in each cluster it reaches. Nothing is applied.
pub async fn what_if(
    State(app): State<App>,
    Extension(principal): Extension<Principal>,
    Path(org): Path<String>,
    body: Bytes,
) -> HttpResult<Response> {
    let request: WhatIfRequest = decode_strict(&body).map_err(ApiError::invalid)?;
    let path = authorized_node(&app, &principal, &org, &request.node)?;
    let level = level_of(path.kind()).expect("a tree node");
    check_bindings(&app, &path, level, &request.policy).await?;
    let proposed = flatten(&request.policy.bindings).expect("checked");
    let name = node_name(&path);
    let previews = app.access.read(&org, |policies| {
        let id = policies.node(&name)?;
        let mut after = policies.clone();
        after.restore_bindings(id, &proposed);
        let clusters = policies.clusters_under(id);
        Some(
            clusters
                .into_iter()
                .filter_map(|cluster| {
                    let todo = changes(&project(policies, cluster), &project(&after, cluster));
                    let preview = ClusterRbacChanges {
                        cluster: policies.path(cluster).to_string(),
                        add: todo.create.iter().map(|d| d.key.to_string()).collect(),
                        change: todo
                            .update
                            .iter()
                            .chain(&todo.replace)
                            .map(|d| d.key.to_string())
                            .collect(),
                        remove: todo.delete.iter().map(|k| k.to_string()).collect(),
                    };
                    (!todo.is_empty()).then_some(preview)
                })
                .collect::<Vec<_>>(),
        )
    });
    let clusters = previews
        .flatten()
        .ok_or_else(|| ApiError::not_found(format!("node {}", request.node)))?;
    Ok(to_json(StatusCode::OK, &WhatIf { clusters }))
}

/// Who may change the RBAC objects Dialtone manages: Dialtone itself, and the upstream
/// controllers that remove a namespace's objects with it.
const RBAC_WRITERS: &[&str] = &[
    dialtone_kube::CONTROL_PLANE_USER,
    "system:kube-controller-manager",
    "system:serviceaccount:kube-system:namespace-controller",
    "system:serviceaccount:kube-system:generic-garbage-collector",
];

/// `POST /v1/admission/rbac-guard`: the drift guard's validating webhook, called by every
/// cluster's API server with an `admission.k8s.io/v1` AdmissionReview. It reveals nothing a
/// caller could not read in the object itself, so it needs no token.
pub async fn rbac_guard(body: Bytes) -> HttpResult<Response> {
    let review: Value = serde_json::from_slice(&body)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| bad_request("not an AdmissionReview: the body must be a JSON object"))?;
    let request = &review["request"];
    let uid = request["uid"]
        .as_str()
        .ok_or_else(|| bad_request("an AdmissionReview needs request.uid"))?;
    let user = request["userInfo"]["username"].as_str().unwrap_or_default();
    let object = if request["object"].is_object() {
        &request["object"]
    } else {
        &request["oldObject"]
    };
    // Dialtone's objects: those labelled as its own, before or after the change, and any
    // name its projection uses, whoever holds it now.
    let managed = |o: &Value| {
        o["metadata"]["labels"][dialtone_kube::MANAGED_BY.0] == dialtone_kube::MANAGED_BY.1
    };
    let name = request["name"].as_str().unwrap_or_default();
    let dialtones = name.starts_with(dialtone_policy::projection::NAME_PREFIX)
        || managed(&request["object"])
        || managed(&request["oldObject"]);
    let allowed = !dialtones || RBAC_WRITERS.contains(&user);
    let annotation = |key: &str| {
        object["metadata"]["annotations"][key]
            .as_str()
            .or_else(|| request["oldObject"]["metadata"]["annotations"][key].as_str())
            .unwrap_or_default()
            .to_string()
    };
    let node = annotation(dialtone_policy::projection::GRANTED_ON);
    let role = annotation(dialtone_policy::projection::ROLE);
    let kind = request["kind"]["kind"].as_str().unwrap_or("object");
    let message = match node.is_empty() {
        false => format!(
            "{kind} {name} is managed by Dialtone: it casts role `{role}` of the access policy on {node} into RBAC. Change that policy instead: `dialtone policy get {node}`"
        ),
        true => format!(
            "{kind} {name} is managed by Dialtone (names starting with `{}` are Dialtone's); change access through Dialtone's access policies instead",
            dialtone_policy::projection::NAME_PREFIX
        ),
    };
    let response = match allowed {
        true => json!({"uid": uid, "allowed": true}),
        false => json!({
            "uid": uid,
            "allowed": false,
            "status": {"code": 403, "reason": "Forbidden", "message": message},
        }),
    };
    Ok(to_json(
        StatusCode::OK,
        &json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}),
    ))
}
