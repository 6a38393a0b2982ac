//! What the benchmark binaries share: a caller of Dialtone's API as the dev server's admin.

use anyhow::{Context, bail};
use dialtone_testkit::DevServer;
use serde_json::Value;

pub struct DialtoneApi {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl DialtoneApi {
    /// The API of `server`, called with its admin token and trusting its CA.
    pub fn admin(server: &DevServer) -> anyhow::Result<Self> {
        let ca = reqwest::Certificate::from_pem(server.ca_pem().as_bytes())?;
        Ok(DialtoneApi {
            http: reqwest::Client::builder().tls_certs_only([ca]).build()?,
            base: server.endpoint(),
            token: server.admin_token(),
        })
    }

    /// The HTTPS client, trusting the server's CA, for calls that carry no token.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The URL of `path` on the server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A text document, such as `/metrics`.
    pub async fn text(&self, path: &str) -> anyhow::Result<String> {
        let response = self
            .http
            .get(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            bail!("{path}: HTTP {status}: {text}");
        }
        Ok(text)
    }

    /// Sends one request; any answer but a success is an error carrying its status.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .request(method, self.url(path))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{path}: HTTP {status}: {value}");
        }
        Ok(value)
    }
}

/// Resident memory of a process, in bytes.
pub fn rss_bytes(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .context("VmRSS in /proc status")?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kib * 1024.0)
}
