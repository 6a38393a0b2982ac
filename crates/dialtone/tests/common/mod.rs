//! Raw HTTPS access to a dev server started from the real binary.
#![allow(dead_code)]

use dialtone_testkit::DevServer;
use futures::StreamExt;
use serde_json::{Value, json};

pub fn start() -> DevServer {
    start_with(&[])
}

pub fn start_with(args: &[&str]) -> DevServer {
    DevServer::start(env!("CARGO_BIN_EXE_dialtone").as_ref(), args).expect("dev server starts")
}

/// A cluster's node slots of `role` (`controlPlane` or `worker`), from its status.
pub fn slots<'a>(cluster: &'a Value, role: &str) -> Vec<&'a Value> {
    cluster["status"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["role"] == role)
        .collect()
}

/// Runs the CLI against the dev server, expecting success; its standard output.
pub fn cli_ok(server: &DevServer, args: &[&str]) -> String {
    let out = server.cli(args);
    assert!(
        out.status.success(),
        "dialtone {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Writes a kubeconfig for the cluster `name` of project demo/eng/web to `kubeconfig`, as
/// `dialtone cluster credentials` does.
pub fn credentials(server: &DevServer, name: &str, kubeconfig: &std::path::Path) {
    cli_ok(
        server,
        &[
            "cluster",
            "credentials",
            name,
            "--folder",
            "eng",
            "--project",
            "web",
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
        ],
    );
}

/// Runs `/usr/bin/kubectl` against the cluster of `kubeconfig`: what it printed, once it
/// succeeded.
pub fn kubectl_ok(kubeconfig: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("/usr/bin/kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// A response's status and its body: JSON, or else the text as a JSON string.
pub async fn answer(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, value)
}

/// One caller of the API.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    pub token: String,
}

impl Api {
    pub fn new(server: &DevServer, token: &str) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca = reqwest::Certificate::from_pem(server.ca_pem().as_bytes()).unwrap();
        let http = reqwest::Client::builder()
            .tls_certs_only([ca])
            .build()
            .unwrap();
        Api {
            http,
            base: server.endpoint(),
            token: token.to_string(),
        }
    }

    pub fn admin(server: &DevServer) -> Self {
        Api::new(server, &server.admin_token())
    }

    pub fn with_token(&self, token: &str) -> Self {
        Api {
            token: token.to_string(),
            ..self.clone()
        }
    }

    /// Sends a request with any body and any Authorization header (None: no header).
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        auth: Option<String>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        answer(request.send().await.expect("the server answers")).await
    }

    /// A PUT whose precondition is in an `If-Match` header.
    pub async fn put_if_match(&self, path: &str, body: Value, etag: &str) -> (u16, Value) {
        let response = self
            .http
            .put(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("if-match", format!("\"{etag}\""))
            .json(&body)
            .send()
            .await
            .expect("the server answers");
        answer(response).await
    }

    /// Sends `body` with a content type of the caller's choosing.
    pub async fn send_as(
        &self,
        method: &str,
        path: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("the server answers");
        answer(response).await
    }

    /// A GET with this caller's token, its answer not yet read.
    async fn get_response(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("the server answers")
    }

    /// A GET whose answer is read as text, with its content type.
    pub async fn get_text(&self, path: &str) -> (u16, String, String) {
        let response = self.get_response(path).await;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        (status, content_type, response.text().await.unwrap())
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let body = body.map(|b| serde_json::to_vec(&b).unwrap());
        self.send(method, path, body, Some(format!("Bearer {}", self.token)))
            .await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("PUT", path, Some(body)).await
    }

    /// Replaces the policy at `path` (ending `/policy`) with `bindings`, with the etag it
    /// has now, as a client that read it first does.
    pub async fn put_policy(&self, path: &str, bindings: Value) -> (u16, Value) {
        let (_, current) = self.get(path).await;
        let etag = current["etag"].as_str().unwrap_or_default().to_string();
        self.put(
            path,
            serde_json::json!({"etag": etag, "bindings": bindings}),
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.call("DELETE", path, None).await
    }

    /// Creates `name` in the collection at `path`, expecting success.
    pub async fn create(&self, path: &str, name: &str, labels: Value) -> Value {
        let (status, body) = self
            .post(path, json!({"metadata": {"name": name, "labels": labels}}))
            .await;
        assert_eq!(status, 201, "create {path}/{name}: {body}");
        body
    }

    /// Names of the items of a list.
    pub async fn names(&self, path: &str) -> Vec<String> {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "list {path}: {body}");
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    }

    /// As the platform admin: an org with an identity `owner`, and an Api acting as it.
    pub async fn tenant(&self, org: &str) -> Api {
        self.create("/v1/orgs", org, json!({})).await;
        self.create(&format!("/v1/orgs/{org}/identities"), "owner", json!({}))
            .await;
        let (status, token) = self
            .post(
                &format!("/v1/orgs/{org}/identities/owner/tokens"),
                json!({}),
            )
            .await;
        assert_eq!(status, 201, "{token}");
        let (status, policy) = self
            .put_policy(
                &format!("/v1/orgs/{org}/policy"),
                json!([{"role": "org.admin", "subjects": ["user:owner"]}]),
            )
            .await;
        assert_eq!(status, 200, "{policy}");
        self.with_token(token["token"].as_str().unwrap())
    }

    /// Opens a watch and returns a receiver of its events.
    pub async fn watch(&self, path: &str) -> (u16, tokio::sync::mpsc::UnboundedReceiver<Value>) {
        let response = self.get_response(path).await;
        let status = response.status().as_u16();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut stream = response.bytes_stream();
            let mut buffer = Vec::new();
            while let Some(Ok(chunk)) = stream.next().await {
                buffer.extend_from_slice(&chunk);
                while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buffer.drain(..=end).collect();
                    if tx.send(serde_json::from_slice(&line).unwrap()).is_err() {
                        return;
                    }
                }
            }
            // An error answer is one JSON body without a newline.
            if let Ok(last) = serde_json::from_slice(&buffer) {
                let _ = tx.send(last);
            }
        });
        (status, rx)
    }
}

/// The fields a 422's causes name, in order.
pub fn error_fields(error: &Value) -> Vec<&str> {
    error["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect()
}

/// The next watch event, failing the test after five seconds.
pub async fn next_event(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Value>) -> Value {
    tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
        .await
        .expect("a watch event in time")
        .expect("the watch is open")
}

/// (type, name) of an event.
pub fn event(e: &Value) -> (String, String) {
    (
        e["type"].as_str().unwrap().to_string(),
        e["object"]["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

/// One minor of a test catalogue: its name, days since its release, days to its end of
/// support (negative: past), and its patches with the days since each was released.
pub type TestMinor<'a> = (&'a str, i64, i64, &'a [(&'a str, i64)]);

/// The day `offset` days from today, in UTC as the server counts days.
pub fn day(offset: i64) -> jiff::civil::Date {
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    today.checked_add(jiff::Span::new().days(offset)).unwrap()
}

/// Writes a version catalogue of `minors` to `path`, dated relative to today so that
/// tests do not age as real releases reach their end of support.
pub fn write_catalogue(path: &std::path::Path, minors: &[TestMinor]) {
    let day = |offset: i64| day(offset).to_string();
    let minors: Vec<Value> = minors
        .iter()
        .map(|(minor, released, end, patches)| {
            json!({
                "minor": minor,
                "released": day(-released),
                "endOfSupport": day(*end),
                "patches": patches
                    .iter()
                    .map(|(version, released)| json!({"version": version, "released": day(-released)}))
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    // Written whole, then moved into place, so that a server reading it never sees half.
    let partial = path.with_extension("partial");
    std::fs::write(&partial, json!({"minors": minors}).to_string()).unwrap();
    std::fs::rename(partial, path).unwrap();
}

/// 1.33, 1.34 and 1.35, each offered by every channel and supported for a year more.
pub const THREE_MINORS: &[TestMinor] = &[
    ("1.33", 500, 365, &[("1.33.0", 500), ("1.33.1", 400)]),
    ("1.34", 400, 400, &[("1.34.0", 400), ("1.34.1", 300)]),
    ("1.35", 300, 450, &[("1.35.0", 300)]),
];

/// A dev server with `args`, reading a catalogue of `minors` written in `dir`; the test
/// may rewrite the file, whose path is returned.
pub fn start_with_versions(
    dir: &std::path::Path,
    minors: &[TestMinor],
    args: &[&str],
) -> (DevServer, std::path::PathBuf) {
    let path = dir.join("versions.json");
    write_catalogue(&path, minors);
    let mut all = vec!["--kubernetes-versions", path.to_str().unwrap()];
    all.extend_from_slice(args);
    (start_with(&all), path)
}

/// `--maintenance-exclusion` for an exclusion `name` from yesterday to ten days on:
/// automatic upgrades hold (a developer cluster on an older minor stays on it).
pub fn exclusion(name: &str) -> String {
    format!("{name},{},{}", day(-1), day(10))
}
