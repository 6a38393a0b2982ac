//! Access to the Kubernetes API of clusters: credentials per identity (`POST
//! …/clusters/{cluster}/credentials`, like `gcloud container clusters get-credentials`) and
//! the authenticator that sim clusters ask about the tokens they are shown.
//!
//! A credential is a Dialtone token scoped to one cluster: stored as a hash, expiring, listed
//! and revoked with the org's other tokens, and refused by Dialtone's own API. Inside the
//! cluster its holder is the user named after the identity, and may do what the access
//! policies cast into the cluster's RBAC let it.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use dialtone_kube::{Authenticator, UserInfo};
use dialtone_store::registry::Registry;
use dialtone_types::kinds::CLUSTER;
use dialtone_types::{ApiError, Cluster, ClusterStatus, Object, Phase, Reason};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::App;
use crate::auth::{Part, Principal, Target, Verb, enforce, mint_token};
use crate::error::HttpResult;
use crate::resources::{object_path, to_json};
use crate::token_cache::VerifiedTokens;

pub struct TokenAuthenticator {
    pub registry: Registry,
    pub tokens: Arc<VerifiedTokens>,
    pub clock: fn() -> Timestamp,
}

#[async_trait::async_trait]
impl Authenticator for TokenAuthenticator {
    async fn authenticate(&self, cluster_uid: &str, token: &str) -> Option<UserInfo> {
        // A deleted identity's credentials die with it (`verify_token` checks its uid).
        let live = self
            .tokens
            .verify(&self.registry, token, (self.clock)())
            .await
            .ok()??;
        let stored = &live.token;
        if stored.info.cluster_uid != cluster_uid {
            return None;
        }
        Some(UserInfo {
            name: stored.info.identity.clone(),
            // What the holder may do is in the RBAC the access policies are cast into,
            // which names identities: groups are expanded there.
            groups: vec![
                format!("dialtone:org:{}", stored.info.org),
                "system:authenticated".to_string(),
            ],
        })
    }
}

/// `POST /v1/authentication/clusters/{uid}/tokenreviews`: the webhook token authenticator
/// the API servers of clusters on a real cloud call (`--authentication-token-webhook-config-file`)
/// with an `authentication.k8s.io/v1` TokenReview, as sim clusters call the authenticator
/// in process. It tells a caller only who holds a token the caller already has, so it needs
/// no token of its own; a token minted for another cluster is not authenticated.
pub async fn token_review(
    State(app): State<App>,
    Path(cluster_uid): Path<String>,
    body: bytes::Bytes,
) -> HttpResult<Response> {
    let review: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let token = review["spec"]["token"].as_str().ok_or_else(|| {
        ApiError::new(
            Reason::BadRequest,
            "not a TokenReview: the body must be a JSON object with spec.token",
        )
    })?;
    let authenticator = TokenAuthenticator {
        registry: app.registry.clone(),
        tokens: app.tokens.clone(),
        clock: app.clock,
    };
    let status = match authenticator.authenticate(&cluster_uid, token).await {
        Some(user) => serde_json::json!({
            "authenticated": true,
            "user": {"username": user.name, "groups": user.groups},
        }),
        None => serde_json::json!({"authenticated": false}),
    };
    Ok(to_json(
        StatusCode::OK,
        &serde_json::json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "status": status,
        }),
    ))
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CredentialsRequest {
    /// How long the credential lasts; 12 hours if not given.
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
}

/// Everything a kubeconfig needs.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterCredentials {
    pub cluster: String,
    pub server: String,
    pub tls_server_name: String,
    pub certificate_authority: String,
    pub user: String,
    pub token: String,
    pub token_id: String,
    pub expires_at: Timestamp,
}

/// `POST /v1/orgs/{org}/folders/{folder}/projects/{project}/clusters/{cluster}/credentials`
pub async fn create_credentials(
    State(app): State<App>,
    Extension(principal): Extension<Principal>,
    Path(params): Path<Vec<(String, String)>>,
    body: bytes::Bytes,
) -> HttpResult<Response> {
    let path = object_path(&CLUSTER, &params)?;
    enforce(
        app.authorizer.authorize(
            &principal,
            Verb::Create,
            Target::Part(&path, Part::Credentials),
        ),
        &path,
    )?;
    let request: CredentialsRequest = if body.is_empty() {
        CredentialsRequest::default()
    } else {
        dialtone_types::validation::decode_strict(&body).map_err(ApiError::invalid)?
    };
    let cluster: Object<Cluster, ClusterStatus> = app.registry.get(&path).await?;
    let endpoint = app
        .clusters_access
        .connection(&cluster.metadata.uid)
        .map(|connection| connection.endpoint)
        .ok_or_else(|| {
            ApiError::new(
                Reason::Conflict,
                format!(
                    "{path} does not serve its Kubernetes API yet (phase {}); try again when it is Ready",
                    cluster.status.phase.unwrap_or(Phase::Provisioning)
                ),
            )
        })?;
    let token = mint_token(
        &app.registry,
        &principal.identity_path(),
        &format!("kubeconfig for {path}"),
        // Kubeconfig credentials are short-lived by default, like a cloud's.
        Some(request.ttl_seconds.unwrap_or(12 * 3600)),
        Some((&path.to_string(), &cluster.metadata.uid)),
        (app.clock)(),
    )
    .await?;
    Ok(to_json(
        StatusCode::CREATED,
        &ClusterCredentials {
            cluster: path.to_string(),
            server: endpoint.server,
            tls_server_name: endpoint.tls_server_name,
            certificate_authority: endpoint.ca_pem,
            user: principal.identity.clone(),
            token: token.token,
            token_id: token.info.id,
            expires_at: token.info.expires_at,
        },
    ))
}
