//! API shapes of authentication and the audit log.

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An API token as listed: everything but the secret, which is shown once, at creation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenInfo {
    /// Public; the part of the token before the secret.
    pub id: String,
    /// The org it belongs to, by name.
    pub org: String,
    /// The identity it authenticates as, by name.
    pub identity: String,
    /// The uids of the org and identity the token was minted for: it authenticates only
    /// while that very identity exists, never one re-created under its name.
    #[serde(default)]
    pub org_uid: String,
    /// See `org_uid`.
    #[serde(default)]
    pub identity_uid: String,
    /// What it is for, as its creator said.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// When it was minted.
    pub created_at: Timestamp,
    /// When it stops authenticating.
    pub expires_at: Timestamp,
    /// For a cluster credential, the cluster it opens (its path); such a token is refused
    /// by Dialtone's own API.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster: String,
    /// The uid of that cluster, which the cluster checks.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster_uid: String,
}

/// A deleted org whose audit log and tokens are kept, for platform admins only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetiredOrg {
    /// The org's uid, which its records are filed by.
    pub uid: String,
    /// The name it had.
    pub name: String,
    /// When it was deleted; its records are kept 90 days from then.
    pub deleted_at: Timestamp,
}

/// Asks for a new token.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenRequest {
    /// What it is for, shown in listings.
    #[serde(default)]
    pub description: String,
    /// Lifetime in seconds; default 90 days, at most 400 days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
}

/// A newly created token; `token` is the only time the secret is shown.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewToken {
    /// The secret: `dt_{id}_{secret}`. Only its hash is stored.
    pub token: String,
    /// What listings show of it.
    pub info: TokenInfo,
}

/// Who is calling, as the server sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WhoAmI {
    /// The caller's org.
    pub org: String,
    /// The caller's identity.
    pub identity: String,
    /// Whether the caller administers the whole platform.
    pub platform_admin: bool,
}

/// One mutating request, as recorded in the audit log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// When the request was answered.
    pub time: Timestamp,
    /// `identity@org`, or `anonymous` when authentication failed.
    pub actor: String,
    /// The HTTP method.
    pub method: String,
    /// The request's path.
    pub path: String,
    /// The HTTP status code answered.
    pub status: u16,
    /// `success` or the failure reason.
    pub outcome: String,
    /// The id the response's `X-Request-Id` header carried.
    pub request_id: String,
}
