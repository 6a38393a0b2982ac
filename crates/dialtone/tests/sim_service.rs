//! `dialtone sim serve`'s own API, as the servers that share it use it: only its token opens
//! it, bad input is refused with a `CloudError` that names the problem and changes nothing,
//! and its feed tells of each change.

use std::time::Duration;

use dialtone_testkit::SimService;
use futures::StreamExt;
use serde_json::{Value, json};

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    async fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let mut request = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.expect("the service answers");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

fn vpc(token: &str) -> String {
    json!({"clientToken": token, "spec": {"kind": "vpc", "cidr": "10.9.0.0/16"}, "tags": {"t": "1"}})
        .to_string()
}

#[tokio::test]
async fn only_the_token_opens_it_bad_input_changes_nothing_and_the_feed_tells_of_changes() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = SimService::start(
        env!("CARGO_BIN_EXE_dialtone").as_ref(),
        &["--sim-time-scale", "0"],
    )
    .expect("the sim service starts");
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(sim.ca_pem().as_bytes()).unwrap()])
        .build()
        .unwrap();
    let client = Client {
        http,
        base: sim.url(),
        token: sim.token(),
    };
    let stranger = Client {
        http: client.http.clone(),
        base: client.base.clone(),
        token: "not-the-token".into(),
    };

    // Without its token, nothing: not even whether a path exists.
    for path in ["/v1/cloud", "/v1/sim/resources", "/v1/cloud/nowhere"] {
        let (status, _) = stranger.call("GET", path, None).await;
        assert_eq!(status, 401, "{path} without the token");
    }
    let (status, body) = stranger
        .call(
            "POST",
            "/v1/cloud/regions/us-east-1/resources",
            Some(&vpc("a")),
        )
        .await;
    assert_eq!(status, 401, "{body}");

    // Bad input: a CloudError naming the problem.
    let refusals = [
        ("POST", "/v1/cloud/regions/us-east-1/resources", "not json"),
        (
            "POST",
            "/v1/cloud/regions/us-east-1/resources",
            r#"{"clientToken": "b", "spec": {"kind": "spaceship"}, "tags": {}}"#,
        ),
        (
            "POST",
            "/v1/cloud/regions/us-east-1/describe",
            r#"{"kind": 7}"#,
        ),
        (
            "POST",
            "/v1/cloud/regions/us-east-1/resources/vpc-1/modify",
            "[]",
        ),
        (
            "PUT",
            "/v1/cloud/servers",
            r#"{"url": "https://x", "caPem": "no", "guardUrl": "https://x/g"}"#,
        ),
        (
            "PUT",
            "/v1/cloud/servers",
            r#"{"url": "https://x", "caPem": "", "guardUrl": "", "extra": 1}"#,
        ),
    ];
    for (method, path, body) in refusals {
        let (status, error) = client.call(method, path, Some(body)).await;
        assert_eq!(status, 400, "{method} {path} {body}: {error}");
        assert_eq!(error["error"], "invalid", "{error}");
        assert!(
            !error["message"].as_str().unwrap_or_default().is_empty(),
            "{error}"
        );
    }
    let (status, error) = client
        .call("GET", "/v1/cloud/regions/us-east-1/lifetimes", None)
        .await;
    assert_eq!(
        (status, error["message"].as_str()),
        (400, Some("endedSince is required"))
    );
    let since = jiff::Timestamp::now();
    let path = format!("/v1/cloud/regions/us-east-1/lifetimes?endedSince={since}");
    let (status, lifetimes) = client.call("GET", &path, None).await;
    assert_eq!(
        (status, lifetimes.as_array().map(Vec::len)),
        (200, Some(0)),
        "{lifetimes}"
    );
    let (status, error) = client
        .call("GET", "/v1/cloud/clusters/no-such-uid/connection", None)
        .await;
    assert_eq!(
        (status, error["error"].as_str()),
        (404, Some("notFound")),
        "{error}"
    );
    let (status, error) = client
        .call(
            "DELETE",
            "/v1/cloud/regions/us-east-1/resources/vpc-404",
            None,
        )
        .await;
    assert_eq!(
        (status, error["error"].as_str()),
        (404, Some("notFound")),
        "{error}"
    );
    let (status, all) = client
        .call("POST", "/v1/cloud/regions/us-east-1/describe", Some("{}"))
        .await;
    assert_eq!(
        (status, all.as_array().map(Vec::len)),
        (200, Some(0)),
        "refused calls made {all}"
    );

    // The feed tells of a change made after it was opened.
    let feed = client
        .http
        .get(format!("{}/v1/cloud/changes", client.base))
        .bearer_auth(&client.token)
        .send()
        .await
        .unwrap();
    assert_eq!(feed.status(), 200);
    let (status, made) = client
        .call(
            "POST",
            "/v1/cloud/regions/us-east-1/resources",
            Some(&vpc("c")),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    let id = made["id"].as_str().unwrap().to_string();
    // The same client token names the same resource.
    let (_, again) = client
        .call(
            "POST",
            "/v1/cloud/regions/us-east-1/resources",
            Some(&vpc("c")),
        )
        .await;
    assert_eq!(again["id"], made["id"]);
    let mut lines = feed.bytes_stream();
    let mut seen = String::new();
    while !seen.contains(&id) {
        let chunk = tokio::time::timeout(Duration::from_secs(15), lines.next())
            .await
            .expect("the feed told nothing")
            .expect("the feed ended")
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    let change: Value =
        serde_json::from_str(seen.lines().find(|l| l.contains(&id)).unwrap()).unwrap();
    assert_eq!(
        (change["region"].as_str(), change["tags"]["t"].as_str()),
        (Some("us-east-1"), Some("1"))
    );
}
