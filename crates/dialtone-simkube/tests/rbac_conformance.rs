//! RBAC conformance: a table of requests and the answers upstream Kubernetes gives, over one
//! fixture of roles and bindings written through the cluster's API. Each row names the rule
//! it checks.

use std::sync::Arc;

use bytes::Bytes;
use dialtone_simkube::rbac::Request;
use dialtone_simkube::webhooks::Caller;
use dialtone_simkube::{ClusterApi, UserInfo};
use http::{HeaderMap, Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};

const RBAC: &str = "/apis/rbac.authorization.k8s.io/v1";

fn user(name: &str, groups: &[&str]) -> UserInfo {
    let mut groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
    groups.push("system:authenticated".into());
    UserInfo {
        name: name.into(),
        groups,
    }
}

fn admin() -> UserInfo {
    user("admin", &["system:masters"])
}

async fn send(
    api: &Arc<ClusterApi>,
    who: UserInfo,
    method: Method,
    path: &str,
    body: &Value,
) -> (StatusCode, Value) {
    let response = api
        .handle(
            who,
            method,
            path,
            None,
            &HeaderMap::new(),
            Bytes::from(body.to_string()),
            &Caller::default(),
        )
        .await;
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn create(
    api: &Arc<ClusterApi>,
    who: UserInfo,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    send(api, who, Method::POST, path, &body).await
}

fn rule(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> Value {
    let mut rule = json!({"verbs": verbs, "apiGroups": groups, "resources": resources});
    if !names.is_empty() {
        rule["resourceNames"] = json!(names);
    }
    rule
}

fn cluster_role(name: &str, rules: Value) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
           "metadata": {"name": name}, "rules": rules})
}

fn role(namespace: &str, name: &str, rules: Value) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
           "metadata": {"name": name, "namespace": namespace}, "rules": rules})
}

fn subject(kind: &str, name: &str) -> Value {
    match kind {
        "ServiceAccount" => {
            let (namespace, name) = name.split_once('/').unwrap();
            json!({"kind": kind, "name": name, "namespace": namespace})
        }
        _ => json!({"kind": kind, "name": name, "apiGroup": "rbac.authorization.k8s.io"}),
    }
}

fn binding(
    namespace: Option<&str>,
    name: &str,
    role_kind: &str,
    role: &str,
    subjects: Value,
) -> Value {
    let mut metadata = json!({"name": name});
    if let Some(ns) = namespace {
        metadata["namespace"] = json!(ns);
    }
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": if namespace.is_some() { "RoleBinding" } else { "ClusterRoleBinding" },
        "metadata": metadata,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
        "subjects": subjects,
    })
}

/// The fixture every row reads, written by a cluster admin.
async fn fixture() -> Arc<ClusterApi> {
    let api = Arc::new(ClusterApi::new("conformance", "1.33"));
    for ns in ["team-a", "team-b"] {
        let (status, body) = create(
            &api,
            admin(),
            "/api/v1/namespaces",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let cluster_roles = [
        cluster_role(
            "pod-reader",
            json!([rule(&["get", "list", "watch"], &[""], &["pods"], &[])]),
        ),
        cluster_role(
            "url-reader",
            json!([{"verbs": ["get"], "nonResourceURLs": ["/debug/flags", "/logs/*"]}]),
        ),
        cluster_role("get-anything", json!([rule(&["get"], &["*"], &["*"], &[])])),
        cluster_role(
            "scaler",
            json!([rule(&["update"], &["apps"], &["*/scale"], &[])]),
        ),
        cluster_role(
            "bind-cluster-admin",
            json!([
                rule(
                    &["bind"],
                    &["rbac.authorization.k8s.io"],
                    &["clusterroles"],
                    &["cluster-admin"]
                ),
                rule(
                    &["create"],
                    &["rbac.authorization.k8s.io"],
                    &["rolebindings"],
                    &[]
                ),
            ]),
        ),
        cluster_role(
            "role-escalator",
            json!([rule(
                &["escalate", "create"],
                &["rbac.authorization.k8s.io"],
                &["roles"],
                &[]
            ),]),
        ),
    ];
    for object in cluster_roles {
        let (status, body) = create(&api, admin(), &format!("{RBAC}/clusterroles"), object).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let roles = [
        role(
            "team-a",
            "secret-db",
            json!([rule(&["get"], &[""], &["secrets"], &["db"])]),
        ),
        role(
            "team-a",
            "configmap-editor",
            json!([rule(&["create", "update"], &[""], &["configmaps"], &[])]),
        ),
    ];
    for object in roles {
        let (status, body) = create(
            &api,
            admin(),
            &format!("{RBAC}/namespaces/team-a/roles"),
            object,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let bindings = [
        binding(
            Some("team-a"),
            "alice-pods",
            "ClusterRole",
            "pod-reader",
            json!([subject("User", "alice")]),
        ),
        binding(
            None,
            "bob-pods",
            "ClusterRole",
            "pod-reader",
            json!([subject("User", "bob")]),
        ),
        binding(
            Some("team-a"),
            "carol-db",
            "Role",
            "secret-db",
            json!([subject("User", "carol")]),
        ),
        binding(
            Some("team-a"),
            "devs-configmaps",
            "Role",
            "configmap-editor",
            json!([subject("Group", "devs")]),
        ),
        binding(
            None,
            "dave-urls",
            "ClusterRole",
            "url-reader",
            json!([subject("User", "dave")]),
        ),
        binding(
            None,
            "erin-anything",
            "ClusterRole",
            "get-anything",
            json!([subject("User", "erin")]),
        ),
        binding(
            None,
            "frank-scale",
            "ClusterRole",
            "scaler",
            json!([subject("User", "frank")]),
        ),
        binding(
            Some("team-a"),
            "builder-pods",
            "ClusterRole",
            "pod-reader",
            json!([subject("ServiceAccount", "team-a/builder")]),
        ),
        binding(
            Some("team-b"),
            "ghost",
            "Role",
            "no-such-role",
            json!([subject("User", "gina")]),
        ),
        binding(
            Some("team-a"),
            "hank-admin",
            "ClusterRole",
            "admin",
            json!([subject("User", "hank")]),
        ),
        binding(
            Some("team-a"),
            "ivy-bind",
            "ClusterRole",
            "bind-cluster-admin",
            json!([subject("User", "ivy")]),
        ),
        binding(
            Some("team-a"),
            "jack-escalate",
            "ClusterRole",
            "role-escalator",
            json!([subject("User", "jack")]),
        ),
    ];
    for object in bindings {
        let path = match object["metadata"]["namespace"].as_str() {
            Some(ns) => format!("{RBAC}/namespaces/{ns}/rolebindings"),
            None => format!("{RBAC}/clusterrolebindings"),
        };
        let (status, body) = create(&api, admin(), &path, object).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    api
}

fn resource(verb: &str, namespace: &str, group: &str, resource: &str, name: &str) -> Request {
    let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
    Request::Resource {
        verb: verb.into(),
        namespace: namespace.into(),
        api_group: group.into(),
        resource: resource.into(),
        subresource: subresource.into(),
        name: name.into(),
    }
}

fn url(verb: &str, path: &str) -> Request {
    Request::NonResource {
        verb: verb.into(),
        path: path.into(),
    }
}

#[tokio::test]
async fn authorization_follows_upstream_rbac() {
    let api = fixture().await;
    let alice = user("alice", &[]);
    let builder = user(
        "system:serviceaccount:team-a:builder",
        &["system:serviceaccounts", "system:serviceaccounts:team-a"],
    );
    let rows: Vec<(&str, UserInfo, Request, bool)> = vec![
        (
            "RoleBinding to a ClusterRole grants in its namespace",
            alice.clone(),
            resource("get", "team-a", "", "pods", "web"),
            true,
        ),
        (
            "… and only there",
            alice.clone(),
            resource("get", "team-b", "", "pods", "web"),
            false,
        ),
        (
            "… not across namespaces",
            alice.clone(),
            resource("list", "", "", "pods", ""),
            false,
        ),
        (
            "verbs not in the rule are denied",
            alice.clone(),
            resource("delete", "team-a", "", "pods", "web"),
            false,
        ),
        (
            "ClusterRoleBinding grants in every namespace",
            user("bob", &[]),
            resource("get", "team-b", "", "pods", "web"),
            true,
        ),
        (
            "… and across them",
            user("bob", &[]),
            resource("list", "", "", "pods", ""),
            true,
        ),
        (
            "a resource does not cover its subresources",
            user("bob", &[]),
            resource("get", "team-a", "", "pods/log", "web"),
            false,
        ),
        (
            "rules are additive: the group's rules",
            user("alice", &["devs"]),
            resource("create", "team-a", "", "configmaps", ""),
            true,
        ),
        (
            "… add to the user's own",
            user("alice", &["devs"]),
            resource("get", "team-a", "", "pods", "web"),
            true,
        ),
        (
            "resourceNames allow the named object",
            user("carol", &[]),
            resource("get", "team-a", "", "secrets", "db"),
            true,
        ),
        (
            "… and no other",
            user("carol", &[]),
            resource("get", "team-a", "", "secrets", "tls"),
            false,
        ),
        (
            "… and never an unnamed request",
            user("carol", &[]),
            resource("get", "team-a", "", "secrets", ""),
            false,
        ),
        (
            "nonResourceURLs match exactly",
            user("dave", &[]),
            url("get", "/debug/flags"),
            true,
        ),
        (
            "… so a longer path is not covered",
            user("dave", &[]),
            url("get", "/debug/flags/v"),
            false,
        ),
        (
            "… and a trailing * is a prefix",
            user("dave", &[]),
            url("get", "/logs/kube-apiserver.log"),
            true,
        ),
        (
            "… for the verbs given only",
            user("dave", &[]),
            url("post", "/logs/x"),
            false,
        ),
        (
            "nonResourceURL rules grant no resources",
            user("dave", &[]),
            resource("get", "team-a", "", "pods", ""),
            false,
        ),
        (
            "* matches any group and resource",
            user("erin", &[]),
            resource("get", "team-b", "apps", "deployments", "web"),
            true,
        ),
        (
            "… including subresources",
            user("erin", &[]),
            resource("get", "team-b", "", "pods/log", "web"),
            true,
        ),
        (
            "… but not URLs",
            user("erin", &[]),
            url("get", "/metrics"),
            false,
        ),
        (
            "… nor other verbs",
            user("erin", &[]),
            resource("delete", "team-b", "", "pods", "web"),
            false,
        ),
        (
            "*/scale matches every scale subresource",
            user("frank", &[]),
            resource("update", "team-a", "apps", "deployments/scale", "web"),
            true,
        ),
        (
            "… of any resource in the group",
            user("frank", &[]),
            resource("update", "team-a", "apps", "statefulsets/scale", "db"),
            true,
        ),
        (
            "… but not the resource itself",
            user("frank", &[]),
            resource("update", "team-a", "apps", "deployments", "web"),
            false,
        ),
        (
            "… nor another group",
            user("frank", &[]),
            resource(
                "update",
                "team-a",
                "",
                "replicationcontrollers/scale",
                "web",
            ),
            false,
        ),
        (
            "ServiceAccount subjects match their user name",
            builder.clone(),
            resource("list", "team-a", "", "pods", ""),
            true,
        ),
        (
            "… in their binding's namespace only",
            builder,
            resource("list", "team-b", "", "pods", ""),
            false,
        ),
        (
            "a user named like a service account is not one",
            user("builder", &[]),
            resource("list", "team-a", "", "pods", ""),
            false,
        ),
        (
            "a binding to a missing role grants nothing",
            user("gina", &[]),
            resource("get", "team-b", "", "pods", ""),
            false,
        ),
        (
            "system:masters may do anything",
            admin(),
            resource("delete", "", "", "nodes", "n1"),
            true,
        ),
        ("… including URLs", admin(), url("get", "/metrics"), true),
        (
            "an unbound user has nothing",
            user("mallory", &[]),
            resource("get", "team-a", "", "pods", ""),
            false,
        ),
        (
            "authenticated users may discover",
            user("mallory", &[]),
            url("get", "/apis"),
            true,
        ),
        (
            "admin in a namespace writes there",
            user("hank", &[]),
            resource("delete", "team-a", "apps", "deployments", "web"),
            true,
        ),
        (
            "… but not in another",
            user("hank", &[]),
            resource("delete", "team-b", "apps", "deployments", "web"),
            false,
        ),
    ];
    let mut failures = Vec::new();
    for (rule, who, request, expected) in rows {
        let decision = api.authorize(&who, &request);
        if decision.allowed != expected {
            failures.push(format!(
                "{rule}: {} {request:?} → {} ({})",
                who.name, decision.allowed, decision.reason
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn roles_and_bindings_cannot_escalate() {
    let api = fixture().await;
    let team_a_roles = format!("{RBAC}/namespaces/team-a/roles");
    let team_a_bindings = format!("{RBAC}/namespaces/team-a/rolebindings");
    let hank = || user("hank", &[]);
    let rows: Vec<(&str, UserInfo, &str, Value, StatusCode)> = vec![
        (
            "a role within what one holds may be created",
            hank(),
            &team_a_roles,
            role(
                "team-a",
                "pod-viewer",
                json!([rule(&["get", "list"], &[""], &["pods"], &[])]),
            ),
            StatusCode::CREATED,
        ),
        (
            "a role beyond what one holds may not",
            hank(),
            &team_a_roles,
            role(
                "team-a",
                "node-viewer",
                json!([rule(&["get"], &[""], &["nodes"], &[])]),
            ),
            StatusCode::FORBIDDEN,
        ),
        (
            "a wildcard role is beyond a namespace admin",
            hank(),
            &team_a_roles,
            role(
                "team-a",
                "everything",
                json!([rule(&["*"], &["*"], &["*"], &[])]),
            ),
            StatusCode::FORBIDDEN,
        ),
        (
            "binding a role one holds is allowed",
            hank(),
            &team_a_bindings,
            binding(
                Some("team-a"),
                "view-for-zoe",
                "ClusterRole",
                "view",
                json!([subject("User", "zoe")]),
            ),
            StatusCode::CREATED,
        ),
        (
            "binding a role one does not hold is escalation",
            hank(),
            &team_a_bindings,
            binding(
                Some("team-a"),
                "root-for-zoe",
                "ClusterRole",
                "cluster-admin",
                json!([subject("User", "zoe")]),
            ),
            StatusCode::FORBIDDEN,
        ),
        (
            "binding a role that does not exist needs bind",
            hank(),
            &team_a_bindings,
            binding(
                Some("team-a"),
                "ghost-for-zoe",
                "Role",
                "no-such-role",
                json!([subject("User", "zoe")]),
            ),
            StatusCode::FORBIDDEN,
        ),
        (
            "bind on the named role allows binding it",
            user("ivy", &[]),
            &team_a_bindings,
            binding(
                Some("team-a"),
                "root-by-ivy",
                "ClusterRole",
                "cluster-admin",
                json!([subject("User", "zoe")]),
            ),
            StatusCode::CREATED,
        ),
        (
            "bind on one role does not allow another",
            user("ivy", &[]),
            &team_a_bindings,
            binding(
                Some("team-a"),
                "edit-by-ivy",
                "ClusterRole",
                "edit",
                json!([subject("User", "zoe")]),
            ),
            StatusCode::FORBIDDEN,
        ),
        (
            "escalate allows a role beyond what one holds",
            user("jack", &[]),
            &team_a_roles,
            role(
                "team-a",
                "node-viewer",
                json!([rule(&["get"], &[""], &["nodes"], &[])]),
            ),
            StatusCode::CREATED,
        ),
    ];
    let mut failures = Vec::new();
    for (rule, who, path, object, expected) in rows {
        let name = object["metadata"]["name"].clone();
        let (status, body) = create(&api, who.clone(), path, object).await;
        if status != expected {
            failures.push(format!(
                "{rule}: {} creating {name} → {status}: {}",
                who.name, body["message"]
            ));
        }
        if status == StatusCode::FORBIDDEN {
            let message = body["message"].as_str().unwrap_or("");
            assert!(message.contains("forbidden"), "{rule}: {message}");
            // Nothing was written.
            let (status, _) = send(
                &api,
                admin(),
                Method::GET,
                &format!("{path}/{}", name.as_str().unwrap()),
                &Value::Null,
            )
            .await;
            assert_eq!(
                status,
                StatusCode::NOT_FOUND,
                "{rule}: a denied object was stored"
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Updating a role one may write cannot add what one does not hold either.
    let path = format!("{team_a_roles}/pod-viewer");
    let (_, mut current) = send(&api, admin(), Method::GET, &path, &Value::Null).await;
    current["rules"] = json!([rule(&["get"], &[""], &["pods", "nodes"], &[])]);
    let (status, body) = send(&api, hank(), Method::PUT, &path, &current).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (_, unchanged) = send(&api, admin(), Method::GET, &path, &Value::Null).await;
    assert_eq!(unchanged["rules"][0]["resources"], json!(["pods"]));
    // Adding a subject to a binding of a role one holds is no escalation.
    let path = format!("{team_a_bindings}/view-for-zoe");
    let (_, mut current) = send(&api, admin(), Method::GET, &path, &Value::Null).await;
    current["subjects"] = json!([subject("User", "zoe"), subject("User", "yuri")]);
    let (status, body) = send(&api, hank(), Method::PUT, &path, &current).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "adding a subject to a role one holds: {body}"
    );
}
