//! Bad bodies, on every route that takes one: arbitrary JSON values and byte strings sent to
//! Dialtone's API and to a sim cluster's Kubernetes API, on the real binary. Each answers
//! with an error `Status` (a 4xx for anything that is not an object), never a 5xx, never a
//! dropped connection, and the server logs no panic.

mod common;

use std::net::SocketAddr;

use common::{Api, start_with};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value, json};

/// Any JSON value, nested a few levels, with the field names the API's types use, so that
/// bodies reach past the first level of decoding.
fn any_json() -> impl Strategy<Value = Value> {
    let names = prop_oneof![
        Just("metadata".to_string()),
        Just("spec".to_string()),
        Just("status".to_string()),
        Just("name".to_string()),
        Just("labels".to_string()),
        Just("bindings".to_string()),
        Just("kind".to_string()),
        Just("apiVersion".to_string()),
        Just("data".to_string()),
        Just("rules".to_string()),
        Just("subjects".to_string()),
        Just("roleRef".to_string()),
        Just("containers".to_string()),
        "[a-zA-Z]{1,8}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|n| json!(n)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(names.clone(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[derive(Clone, Debug)]
enum Body {
    Json(Value),
    Bytes(Vec<u8>),
}

impl Body {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Body::Json(v) => serde_json::to_vec(v).unwrap(),
            Body::Bytes(b) => b.clone(),
        }
    }

    /// Whether every route must refuse it: not JSON of the shape the route takes (an
    /// object, or for a JSON patch an array). An empty body is no body, which a route with
    /// only optional fields may take.
    fn never_valid(&self, takes_array: bool) -> bool {
        let wrong = |v: &Value| {
            if takes_array {
                !v.is_array()
            } else {
                !v.is_object()
            }
        };
        match self {
            Body::Json(v) => wrong(v),
            Body::Bytes(b) => {
                !b.is_empty() && serde_json::from_slice::<Value>(b).map_or(true, |v| wrong(&v))
            }
        }
    }
}

fn any_body() -> impl Strategy<Value = Body> {
    prop_oneof![
        3 => any_json().prop_map(Body::Json),
        1 => prop::collection::vec(any::<u8>(), 0..64).prop_map(Body::Bytes),
    ]
}

/// Runs `cases` bodies through `send`, which answers a status and the answer's body.
fn throw_bodies(
    runtime: &tokio::runtime::Runtime,
    cases: u32,
    route: &str,
    send: impl Fn(Vec<u8>) -> (u16, Value),
) {
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let _enter = runtime.enter();
    let result = runner.run(&any_body(), |body| {
        let (status, answer) = send(body.bytes());
        if std::env::var("BODIES_DEBUG").is_ok() {
            eprintln!(
                "{route}: {status} {}",
                answer.to_string().chars().take(150).collect::<String>()
            );
        }
        prop_assert!(status < 500, "{route} {body:?}: {status} {answer}");
        if status >= 400 {
            prop_assert!(
                answer["kind"] == "Status" && answer["message"].is_string(),
                "{route} {body:?}: {status} is not a Status: {answer}"
            );
        }
        if body.never_valid(route.contains("json-patch")) && !(400..500).contains(&status) {
            return Err(TestCaseError::fail(format!(
                "{route} accepted {body:?}: {status} {answer}"
            )));
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn every_route_that_takes_a_body_refuses_bad_ones_with_a_4xx_status() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = start_with(&["--sim-time-scale", "0"]);
    let api = Api::admin(&server);
    let org = "/v1/orgs/demo";
    let folder = format!("{org}/folders/eng");
    let project = format!("{folder}/projects/web");
    let cluster = format!("{project}/clusters/dev-1");
    let credentials = runtime.block_on(async {
        api.create(&format!("{org}/folders"), "eng", json!({})).await;
        api.create(&format!("{folder}/projects"), "web", json!({}))
            .await;
        api.create(&format!("{org}/identities"), "alice", json!({}))
            .await;
        let (status, body) = api
            .post(
                &format!("{project}/clusters"),
                json!({"metadata": {"name": "dev-1"}, "spec": {"type": "developer", "region": "us-east-1"}}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let (_, c) = api.get(&cluster).await;
            if c["status"]["phase"] == "Ready" {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{c}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let (status, credentials) = api
            .post(&format!("{cluster}/credentials"), json!({}))
            .await;
        assert_eq!(status, 201, "{credentials}");
        credentials
    });

    let dialtone_routes: Vec<(&str, String)> = vec![
        ("POST", "/v1/orgs".into()),
        ("PUT", org.into()),
        ("POST", format!("{org}/folders")),
        ("PUT", folder.clone()),
        ("PUT", format!("{folder}/status")),
        ("POST", format!("{folder}/projects")),
        ("PUT", project.clone()),
        ("POST", format!("{project}/clusters")),
        ("PUT", cluster.clone()),
        ("POST", format!("{cluster}/namespaces")),
        ("POST", format!("{cluster}/credentials")),
        ("POST", format!("{org}/identities")),
        ("PUT", format!("{org}/identities/alice")),
        ("POST", format!("{org}/identities/alice/tokens")),
        ("POST", format!("{org}/groups")),
        ("PUT", format!("{org}/policy")),
        ("PUT", format!("{folder}/policy")),
        ("POST", format!("{org}/whatif")),
        ("POST", "/v1/sim/faults".into()),
        ("PUT", "/v1/sim/regions/us-east-1/quotas".into()),
        ("POST", "/v1/admission/rbac-guard".into()),
    ];
    // A sim cluster's API, reached by its server name as kubectl reaches it.
    let name = credentials["tlsServerName"].as_str().unwrap().to_string();
    let server_url = credentials["server"].as_str().unwrap();
    let addr: SocketAddr = server_url.trim_start_matches("https://").parse().unwrap();
    let ca = reqwest::Certificate::from_pem(
        credentials["certificateAuthority"]
            .as_str()
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    let kube = reqwest::Client::builder()
        .tls_certs_only([ca])
        .resolve(&name, addr)
        .build()
        .unwrap();
    let token = credentials["token"].as_str().unwrap().to_string();
    // The credential's holder is the cluster's admin through the org's policy.
    let base = format!("https://{name}:{}", addr.port());
    let kube_routes: Vec<(&str, &str, &str)> = vec![
        ("POST", "/api/v1/namespaces", "application/json"),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps",
            "application/json",
        ),
        (
            "POST",
            "/api/v1/namespaces/default/pods",
            "application/json",
        ),
        (
            "POST",
            "/apis/apps/v1/namespaces/default/deployments",
            "application/json",
        ),
        (
            "POST",
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            "application/json",
        ),
        (
            "POST",
            "/apis/policy/v1/namespaces/default/poddisruptionbudgets",
            "application/json",
        ),
        (
            "POST",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            "application/json",
        ),
        ("PUT", "/api/v1/namespaces/default", "application/json"),
        (
            "PATCH",
            "/api/v1/namespaces/default",
            "application/merge-patch+json",
        ),
        (
            "PATCH",
            "/api/v1/namespaces/default",
            "application/strategic-merge-patch+json",
        ),
        (
            "PATCH",
            "/api/v1/namespaces/default",
            "application/json-patch+json",
        ),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps",
            "application/vnd.kubernetes.protobuf",
        ),
    ];
    for (method, path, content_type) in &kube_routes {
        throw_bodies(
            &runtime,
            64,
            &format!("{method} {path} ({content_type})"),
            |body| {
                runtime.block_on(async {
                    let response = kube
                        .request(
                            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                            format!("{base}{path}"),
                        )
                        .bearer_auth(&token)
                        .header("content-type", *content_type)
                        .body(body)
                        .send()
                        .await
                        .expect("the cluster's API answers");
                    common::answer(response).await
                })
            },
        );
    }

    // Dialtone's own routes last: a body that happens to be valid (an empty policy, say)
    // may change what the cluster's routes above would have needed.
    for (method, path) in &dialtone_routes {
        throw_bodies(&runtime, 64, &format!("{method} {path}"), |body| {
            runtime.block_on(api.send(
                method,
                path,
                Some(body),
                Some(format!("Bearer {}", api.token)),
            ))
        });
    }

    let log = server.log();
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");
}
