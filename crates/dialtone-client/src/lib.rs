//! The client side of the Dialtone API: [`config::CliConfig`], the file that holds named
//! contexts (endpoint, CA, token, default org/folder/project), and [`Client`], which speaks
//! HTTPS to the server, decodes its `Status` errors and reads its watch streams.
//!
//! Depends only on the types crate; knows nothing of the store or the server's insides.

pub mod config;

use std::pin::Pin;

use dialtone_types::{ApiError, Reason, Status};
use futures::{Stream, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use config::{CliConfig, Context};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error.
    #[error("{0}")]
    Api(ApiError),
    #[error("cannot reach {endpoint}: {source}")]
    Transport {
        endpoint: String,
        source: reqwest::Error,
    },
    #[error("unexpected response from the server: {0}")]
    Protocol(String),
    #[error("{0}")]
    Config(String),
}

impl ClientError {
    pub fn reason(&self) -> Option<Reason> {
        match self {
            ClientError::Api(e) => Some(e.reason),
            _ => None,
        }
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// An authenticated connection to one Dialtone server.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    endpoint: String,
    token: String,
}

/// A stream of watch events as JSON values.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<serde_json::Value>> + Send>>;

impl Client {
    /// A client for `endpoint` (`https://host:port`) that trusts only `ca_pem`.
    pub fn new(endpoint: &str, ca_pem: &str, token: &str) -> Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).map_err(|e| {
            ClientError::Config(format!("the CA certificate is not valid PEM: {e}"))
        })?;
        let http = reqwest::Client::builder()
            .tls_certs_only([ca])
            .build()
            .map_err(|e| ClientError::Config(format!("cannot build the HTTPS client: {e}")))?;
        Ok(Client {
            http,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token: token.to_string(),
        })
    }

    pub fn from_context(context: &Context) -> Result<Self> {
        Client::new(
            &context.server,
            &context.certificate_authority_data,
            &context.token,
        )
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.endpoint, path)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|source| ClientError::Transport {
                endpoint: self.endpoint.clone(),
                source,
            })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let code = response.status().as_u16();
        let body = response.bytes().await.unwrap_or_default();
        Err(ClientError::Api(
            match serde_json::from_slice::<Status>(&body) {
                Ok(status) => ApiError::from_status(status),
                Err(_) => ApiError::new(
                    Reason::from_http_code(code),
                    format!("HTTP {code}: {}", String::from_utf8_lossy(&body)),
                ),
            },
        ))
    }

    async fn decode<T: DeserializeOwned>(response: reqwest::Response) -> Result<T> {
        let body = response
            .bytes()
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        serde_json::from_slice(&body)
            .map_err(|e| ClientError::Protocol(format!("{e}: {}", String::from_utf8_lossy(&body))))
    }

    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T> {
        Self::decode(
            self.send(self.http.get(self.url(path)).query(query))
                .await?,
        )
        .await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        Self::decode(self.send(self.http.post(self.url(path)).json(body)).await?).await
    }

    pub async fn put<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        Self::decode(self.send(self.http.put(self.url(path)).json(body)).await?).await
    }

    /// Changes the fields `patch` names (a JSON merge patch; `null` removes a field),
    /// leaving whatever else changed meanwhile as it is.
    pub async fn merge_patch<T: DeserializeOwned>(
        &self,
        path: &str,
        patch: &serde_json::Value,
    ) -> Result<T> {
        let request = self
            .http
            .patch(self.url(path))
            .header("content-type", "application/merge-patch+json")
            .body(patch.to_string());
        Self::decode(self.send(request).await?).await
    }

    /// Returns the HTTP status (200 deleted, 202 pending) and the body.
    pub async fn delete(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<(u16, serde_json::Value)> {
        let response = self
            .send(self.http.delete(self.url(path)).query(query))
            .await?;
        let code = response.status().as_u16();
        Ok((code, Self::decode(response).await?))
    }

    /// Every page of a list, following `continue`.
    pub async fn list_all(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Vec<serde_json::Value>> {
        let mut items = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut q: Vec<(&str, String)> = query.to_vec();
            q.push(("limit", "500".into()));
            if let Some(t) = &token {
                q.push(("continue", t.clone()));
            }
            let mut page: serde_json::Value = self.get(path, &q).await?;
            if let Some(list) = page["items"].as_array_mut() {
                items.append(list);
            }
            match page["metadata"]["continue"].as_str() {
                Some(t) => token = Some(t.to_string()),
                None => return Ok(items),
            }
        }
    }

    /// Opens a watch on a collection; each item is one event.
    pub async fn watch(&self, path: &str, query: &[(&str, String)]) -> Result<EventStream> {
        let mut q: Vec<(&str, String)> = query.to_vec();
        q.push(("watch", "true".into()));
        let response = self.send(self.http.get(self.url(path)).query(&q)).await?;
        let bytes = Box::pin(response.bytes_stream());
        // One event per line; a line may span chunks and a chunk may hold many lines.
        let events = futures::stream::unfold(
            (bytes, Vec::<u8>::new()),
            |(mut bytes, mut buffer)| async move {
                loop {
                    if let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = buffer.drain(..=end).collect();
                        let event = serde_json::from_slice(&line)
                            .map_err(|e| ClientError::Protocol(e.to_string()));
                        return Some((event, (bytes, buffer)));
                    }
                    match bytes.next().await {
                        Some(Ok(chunk)) => buffer.extend_from_slice(&chunk),
                        Some(Err(e)) => {
                            return Some((
                                Err(ClientError::Protocol(e.to_string())),
                                (bytes, buffer),
                            ));
                        }
                        None => return None,
                    }
                }
            },
        );
        Ok(Box::pin(events))
    }
}
