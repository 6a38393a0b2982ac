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
    pub org: String,
    pub identity: String,
    /// The uids of the org and identity the token was minted for: it authenticates only
    /// while that very identity exists, never one re-created under its name.
    #[serde(default)]
    pub org_uid: String,
    #[serde(default)]
    pub identity_uid: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub created_at: Timestamp,
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
    pub uid: String,
    pub name: String,
    pub deleted_at: Timestamp,
}

/// Asks for a new token.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenRequest {
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
    pub token: String,
    pub info: TokenInfo,
}

/// Who is calling, as the server sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WhoAmI {
    pub org: String,
    pub identity: String,
    pub platform_admin: bool,
}

/// One mutating request, as recorded in the audit log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    pub time: Timestamp,
    /// `identity@org`, or `anonymous` when authentication failed.
    pub actor: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    /// `success` or the failure reason.
    pub outcome: String,
    pub request_id: String,
}
