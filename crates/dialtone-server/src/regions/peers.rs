//! The region listener and replication over it: TLS with certificates both ways, the
//! routes only peers reach (a peer's change stream, snapshot and digests), and the puller
//! that applies a peer's changes here.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use dialtone_controllers::backoff::Backoff;
use dialtone_store::replication::{Batch, Replication, Snapshot};
use dialtone_store::{Revision, Store};
use dialtone_types::{ApiError, Reason};
use futures::StreamExt;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};

use super::{FORWARD_TIMEOUT, HEARTBEAT, Peer, Regions};
use crate::error::{HttpResult, with_causes};
use crate::tls::{ServingCertificate, TlsFiles};

/// Retries of a broken stream, from a second up to half a minute.
const RECONNECT: Backoff = Backoff {
    base: Duration::from_secs(1),
    cap: Duration::from_secs(30),
};

/// One line of a change stream.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
enum Line {
    /// Changes of one revision.
    Batch(Batch),
    /// The stream has sent everything owned up to this revision.
    Heartbeat { revision: Revision },
}

/// The common name a certificate names.
fn common_name(der: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    cert.subject()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()
        .map(String::from)
}

/// The region CA's roots.
pub(super) fn roots(files: &TlsFiles) -> anyhow::Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&files.ca_cert)
        .with_context(|| format!("cannot read --region-ca {}", files.ca_cert.display()))?
    {
        roots.add(cert?)?;
    }
    Ok(roots)
}

/// The region listener's TLS: its certificate, and only clients with one from the region CA.
pub fn listener_config(
    files: &TlsFiles,
    certificate: Arc<ServingCertificate>,
) -> anyhow::Result<rustls::ServerConfig> {
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots(files)?))
        .build()
        .context("cannot verify peers with --region-ca")?;
    let mut config = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(certificate);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The region a client certificate names: the peer a request on the region listener is from.
#[derive(Clone, Debug)]
pub struct PeerRegion(pub String);

/// What the region listener knows of a connection: its client's region.
pub fn peer_region(connection: &rustls::ServerConnection) -> Option<PeerRegion> {
    connection
        .peer_certificates()?
        .first()
        .and_then(common_name)
        .map(PeerRegion)
}

/// Pulls `peer`'s changes into this region's store for as long as this server leads:
/// resumes after what the store says was applied, starts from a snapshot when there is
/// nothing to resume or the peer's history no longer reaches that far, and reconnects with
/// backoff when the stream breaks.
pub async fn pull(regions: Arc<Regions>, peer_name: String, store: Arc<dyn Store>) {
    let Some(peer) = regions.peers.get(&peer_name) else {
        return;
    };
    let replication = Replication::new(store, &regions.region);
    let mut failures = 0;
    loop {
        match pull_once(&replication, peer, &peer_name).await {
            Ok(()) => failures = 0,
            Err(e) => {
                failures += 1;
                tracing::info!(peer = %peer_name, error = %e, "replication stream ended; reconnecting");
            }
        }
        tokio::time::sleep(RECONNECT.delay(failures)).await;
    }
}

async fn pull_once(replication: &Replication, peer: &Peer, name: &str) -> anyhow::Result<()> {
    let mut position = match replication.applied(name).await? {
        Some(applied) => applied.revision,
        None => restore(replication, peer, name).await?,
    };
    let mut response = peer
        .http
        .get(format!(
            "{}/v1/replication/changes?from={}",
            peer.url,
            position + 1
        ))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!(with_causes(&e)))?;
    if response.status() == StatusCode::GONE {
        restore(replication, peer, name).await?;
        return Ok(());
    }
    anyhow::ensure!(
        response.status().is_success(),
        "{name} answered {}",
        response.status()
    );
    let mut pending = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            match serde_json::from_slice::<Line>(&line)? {
                Line::Batch(batch) => {
                    replication.apply(name, &batch).await?;
                    position = batch.revision;
                }
                // Everything up to here is applied: worth recording once a heartbeat.
                Line::Heartbeat { revision } => {
                    position = position.max(revision);
                    replication.caught_up(name, position).await?;
                }
            }
        }
    }
    Ok(())
}

/// Replaces what this region holds of `name`'s objects with its snapshot.
async fn restore(replication: &Replication, peer: &Peer, name: &str) -> anyhow::Result<Revision> {
    let snapshot: Snapshot = peer
        .http
        .get(format!("{}/v1/replication/snapshot", peer.url))
        .timeout(FORWARD_TIMEOUT * 4)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!(with_causes(&e)))?
        .error_for_status()?
        .json()
        .await?;
    replication.restore(name, &snapshot).await?;
    tracing::info!(peer = %name, revision = snapshot.revision, keys = snapshot.changes.len(), "replicated a snapshot");
    Ok(snapshot.revision)
}

#[derive(Deserialize)]
struct From {
    from: Revision,
}

/// The routes only peers reach, on the region listener: only for a client whose region
/// certificate names a peer.
pub fn peer_routes<S: Clone + Send + Sync + 'static>(
    store: Arc<dyn Store>,
    regions: Arc<Regions>,
) -> Router<S> {
    let replication = Replication::new(store, &regions.region);
    Router::new()
        .route("/v1/replication/ping", get(|| async { "ok\n" }))
        .route("/v1/replication/changes", get(changes))
        .route("/v1/replication/snapshot", get(snapshot))
        .route("/v1/replication/digests", get(digests))
        .layer(axum::middleware::from_fn_with_state(regions, require_peer))
        .with_state(replication)
}

async fn require_peer(
    State(regions): State<Arc<Regions>>,
    peer: Option<Extension<PeerRegion>>,
    request: Request,
    next: Next,
) -> Response {
    match peer {
        Some(Extension(PeerRegion(name))) if regions.peers.contains_key(&name) => {
            next.run(request).await
        }
        _ => crate::error::HttpError(ApiError::new(
            Reason::Forbidden,
            format!(
                "only peer regions may replicate; this region's peers are {}",
                regions.peers.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        ))
        .into_response(),
    }
}

async fn changes(
    State(replication): State<Replication>,
    Query(From { from }): Query<From>,
) -> HttpResult<Response> {
    let batches = replication.changes(from.max(1)).await?;
    let mut seen = from - 1;
    let mut ticks = tokio::time::interval(HEARTBEAT);
    let lines = async_stream::stream! {
        let mut batches = std::pin::pin!(batches);
        loop {
            let line = tokio::select! {
                batch = batches.next() => match batch {
                    Some(Ok(batch)) => {
                        seen = batch.revision;
                        if batch.changes.is_empty() {
                            continue;
                        }
                        Line::Batch(batch)
                    }
                    Some(Err(e)) => {
                        tracing::info!(error = %e, "a replication stream failed");
                        break;
                    }
                    None => break,
                },
                _ = ticks.tick() => Line::Heartbeat { revision: seen },
            };
            let mut bytes = serde_json::to_vec(&line).expect("serializable");
            bytes.push(b'\n');
            yield Ok::<_, std::convert::Infallible>(bytes);
        }
    };
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response())
}

async fn snapshot(State(replication): State<Replication>) -> HttpResult<Response> {
    Ok(axum::Json(replication.snapshot().await?).into_response())
}

async fn digests(State(replication): State<Replication>) -> HttpResult<Response> {
    Ok(axum::Json(replication.digests().await?).into_response())
}
