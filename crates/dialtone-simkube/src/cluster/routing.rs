//! Request routing as kube-apiserver does it: discovery documents, resource requests by
//! group, version, namespace, name and subresource, non-resource paths, the verb a request
//! is, its query, and the words of a refusal.

use super::*;

/// What a request path names, as upstream's RequestInfoFactory reads it.
#[derive(Clone)]
pub(super) struct RequestInfo {
    pub(super) resource: Arc<ResourceType>,
    pub(super) namespace: String,
    pub(super) name: String,
    pub(super) subresource: String,
}

pub(super) enum Route {
    NonResource(String),
    Resource(RequestInfo),
}

pub(super) fn version_of(cluster_version: &str) -> Value {
    let minor = cluster_version.split('.').nth(1).unwrap_or("0");
    json!({
        "major": "1", "minor": minor,
        "gitVersion": format!("{}-dialtone", crate::git_version(cluster_version)),
        "gitCommit": "", "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64",
    })
}

/// The resources kubectl's `get all` lists, as upstream's category `all` holds them.
const IN_ALL: &[&str] = &[
    "pods",
    "services",
    "deployments",
    "replicasets",
    "statefulsets",
    "daemonsets",
    "jobs",
    "cronjobs",
    "horizontalpodautoscalers",
];

fn categories(r: &ResourceType) -> Vec<String> {
    match &r.custom {
        Some(custom) => custom.categories.clone(),
        None if IN_ALL.contains(&r.plural.as_ref()) => vec!["all".into()],
        None => Vec::new(),
    }
}

/// What a subresource answers with, and to which verbs.
fn subresource_kind(
    r: &ResourceType,
    sub: &str,
) -> ((&'static str, &'static str, String), Vec<&'static str>) {
    match sub {
        "scale" => (
            ("autoscaling", "v1", "Scale".into()),
            vec!["get", "patch", "update"],
        ),
        "eviction" => (("policy", "v1", "Eviction".into()), vec!["create"]),
        "log" => (("", "v1", "Pod".into()), vec!["get"]),
        "exec" => (("", "v1", "PodExecOptions".into()), vec!["create", "get"]),
        "attach" => (("", "v1", "PodAttachOptions".into()), vec!["create", "get"]),
        _ => (("", "", r.kind.to_string()), vec!["get", "patch", "update"]),
    }
}

pub(super) fn resource_list(served: &Served, group: &str, version: &str) -> Value {
    let mut list = Vec::new();
    for r in served
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        list.push(json!({
            "name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
            "kind": r.kind, "verbs": r.verbs, "shortNames": r.short_names,
            "categories": categories(r),
        }));
        for sub in r.subresources {
            let ((group, version, kind), verbs) = subresource_kind(r, sub);
            let mut entry = json!({
                "name": format!("{}/{sub}", r.plural), "singularName": "",
                "namespaced": r.namespaced, "kind": kind, "verbs": verbs,
            });
            if !version.is_empty() && group != r.group.as_ref() {
                entry["group"] = json!(group);
                entry["version"] = json!(version);
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

/// The media type of aggregated discovery, which kubectl asks for first.
pub(super) const AGGREGATED: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// The media types the client accepts, as its Accept headers list them.
pub(super) fn accepted(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(axum::http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

/// Whether the client accepts aggregated discovery: one of its Accept media types names it.
pub(super) fn wants_aggregated(headers: &HeaderMap) -> bool {
    accepted(headers).any(|media| {
        let params: Vec<&str> = media.split(';').map(str::trim).collect();
        ["g=apidiscovery.k8s.io", "v=v2", "as=APIGroupDiscoveryList"]
            .iter()
            .all(|wanted| params.contains(wanted))
    })
}

/// Aggregated discovery (`apidiscovery.k8s.io/v2`): every group, version and resource in
/// one document, the core group's for `/api`, the others' for `/apis`.
pub(super) fn aggregated(served: &Served, core: bool) -> Value {
    let groups = resources::groups(served.iter().map(|r| &**r));
    let items: Vec<Value> = groups
        .into_iter()
        .filter(|(group, _)| group.is_empty() == core)
        .map(|(group, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|version| {
                    let resources: Vec<Value> = served
                        .iter()
                        .filter(|r| r.group == group && r.version == *version)
                        .map(|r| {
                            let subresources: Vec<Value> = r
                                .subresources
                                .iter()
                                .map(|sub| {
                                    let ((g, v, kind), verbs) = subresource_kind(r, sub);
                                    let (g, v) = if v.is_empty() {
                                        (group, *version)
                                    } else {
                                        (g, v)
                                    };
                                    json!({
                                        "subresource": sub,
                                        "responseKind": {"group": g, "version": v, "kind": kind},
                                        "verbs": verbs,
                                    })
                                })
                                .collect();
                            json!({
                                "resource": r.plural,
                                "responseKind": {"group": group, "version": version, "kind": r.kind},
                                "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                                "singularResource": r.singular,
                                "verbs": r.verbs,
                                "shortNames": r.short_names,
                                "categories": categories(r),
                                "subresources": subresources,
                            })
                        })
                        .collect();
                    json!({"version": version, "resources": resources, "freshness": "Current"})
                })
                .collect();
            json!({"metadata": {"name": group, "creationTimestamp": null}, "versions": versions})
        })
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    })
}

pub(super) fn group_list(served: &Served) -> Value {
    let groups: Vec<Value> = resources::groups(served.iter().map(|r| &**r))
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, versions)| api_group(g, &versions))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// A group's discovery document: every version it serves, the first preferred.
pub(super) fn api_group(group: &str, versions: &[&str]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({
        "kind": "APIGroup", "apiVersion": "v1", "name": group,
        "preferredVersion": versions[0], "versions": versions,
    })
}

pub(super) fn route(path: &str, served: &Served) -> KubeResult<Route> {
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
    let resource = served
        .find(group, version, plural)
        .ok_or_else(KubeError::no_such_path)?;
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

pub(super) fn verb_of(method: &Method, info: &RequestInfo, query: &Query) -> &'static str {
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

#[derive(Clone, Default)]
pub(super) struct Query {
    pub(super) watch: bool,
    pub(super) label_selector: Selector,
    pub(super) field_selector: Selector,
    pub(super) resource_version: Option<u64>,
    pub(super) timeout_seconds: Option<u64>,
    pub(super) dry_run: bool,
    pub(super) field_validation: FieldValidation,
    /// What `pods/log` is asked for.
    pub(super) log: crate::logs::LogOptions,
    /// The `fieldManager` the request names.
    pub(super) field_manager: Option<String>,
    /// Whether an apply takes over the fields other managers hold (`force`).
    pub(super) force: bool,
    /// The manager of a write that names none: its client's name, as upstream takes it
    /// from the user agent (`kubectl/v1.33.1 …` is `kubectl`).
    pub(super) agent: String,
}

impl Query {
    /// Who a write's fields are recorded as set by.
    pub(super) fn manager(&self) -> &str {
        self.field_manager.as_deref().unwrap_or(&self.agent)
    }
}

pub(super) fn parse_query(raw: Option<&str>) -> KubeResult<Query> {
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
            "container" => query.log.container = Some(v.to_string()),
            "tailLines" => {
                query.log.tail_lines = Some(v.parse().map_err(|_| {
                    KubeError::bad_request(format!("tailLines must be a number, not `{v}`"))
                })?)
            }
            "fieldManager" => {
                crate::apply::check_manager(&v).map_err(KubeError::bad_request)?;
                query.field_manager = Some(v.to_string())
            }
            "force" => query.force = v == "true",
            "timestamps" => query.log.timestamps = v == "true",
            "previous" => query.log.previous = v == "true",
            _ => {}
        }
    }
    Ok(query)
}

pub(super) fn forbidden_message(user: &UserInfo, verb: &str, info: &RequestInfo) -> String {
    let resource = if info.subresource.is_empty() {
        info.resource.plural.to_string()
    } else {
        format!("{}/{}", &info.resource.plural, info.subresource)
    };
    let subject = qualified(&info.resource.group, &info.resource.plural);
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

pub(super) fn wants_table(headers: &HeaderMap) -> bool {
    accepted(headers).any(|media| media.contains("as=Table"))
}
