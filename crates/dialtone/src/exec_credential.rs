//! The kubeconfig's exec credential plugin, as `gke-gcloud-auth-plugin` is GKE's:
//! `dialtone cluster token CLUSTER` prints a client-go `ExecCredential` holding a
//! short-lived cluster credential minted with the CLI's own sign-in, and kubectl runs it
//! again once that expires. Credentials are cached (one file per sign-in and cluster,
//! readable by its owner alone) while a quarter of their lifetime remains, so that every
//! kubectl command does not mint a token; revoking the CLI's token stops new ones.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use dialtone_client::{Client, Context};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Each credential the plugin mints lasts this long unless asked otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);

/// What the cache keeps of a minted credential.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Cached {
    token: String,
    issued_at: Timestamp,
    expires_at: Timestamp,
}

impl Cached {
    /// Good to hand out while a quarter of its lifetime is still ahead of it.
    fn fresh(&self, now: Timestamp) -> bool {
        let lifetime = self.expires_at.duration_since(self.issued_at);
        let left = self.expires_at.duration_since(now);
        left > lifetime / 4
    }

    fn exec_credential(&self) -> Value {
        json!({
            "apiVersion": "client.authentication.k8s.io/v1",
            "kind": "ExecCredential",
            "status": {"token": self.token, "expirationTimestamp": self.expires_at},
        })
    }
}

/// `$XDG_CACHE_HOME/dialtone/credentials/<sign-in>/<cluster path>.json`, where the
/// sign-in is a digest of the context's server and token: another server, or another
/// sign-in to the same one, never reads this one's credentials.
fn cache_file(context: &Context, cluster: &str) -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
        });
    let sign_in = Sha256::digest(format!("{}\n{}", context.server, context.token));
    let sign_in: String = sign_in[..12].iter().map(|b| format!("{b:02x}")).collect();
    base.join("dialtone")
        .join("credentials")
        .join(sign_in)
        .join(format!("{}.json", cluster.replace(['/', '\\'], "_")))
}

/// Mints a cluster credential of `ttl` for the caller: the API's answer (endpoint, CA,
/// token, expiry).
pub async fn mint(client: &Client, cluster_api_path: &str, ttl: Duration) -> anyhow::Result<Value> {
    Ok(client
        .post(
            &format!("{cluster_api_path}/credentials"),
            &json!({"ttlSeconds": ttl.as_secs()}),
        )
        .await?)
}

/// Keeps a credential just minted, for the plugin to hand out.
pub fn remember(context: &Context, cluster: &str, credentials: &Value) -> anyhow::Result<()> {
    keep(context, cluster, credentials).map(drop)
}

fn keep(context: &Context, cluster: &str, credentials: &Value) -> anyhow::Result<Cached> {
    let cached = Cached {
        token: credentials["token"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        issued_at: Timestamp::now(),
        expires_at: credentials["expiresAt"]
            .as_str()
            .unwrap_or_default()
            .parse()
            .context("the credential has no expiry")?,
    };
    let file = cache_file(context, cluster);
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    dialtone_client::config::write_private(&file, &serde_json::to_string(&cached)?)
        .with_context(|| format!("cannot write {}", file.display()))?;
    Ok(cached)
}

/// The `ExecCredential` kubectl asked for: the cached one while fresh, else a new one.
pub async fn exec_credential(
    client: &Client,
    context: &Context,
    cluster: &str,
    cluster_api_path: &str,
    ttl: Duration,
) -> anyhow::Result<Value> {
    let file = cache_file(context, cluster);
    let cached = std::fs::read_to_string(&file)
        .ok()
        .and_then(|text| serde_json::from_str::<Cached>(&text).ok())
        .filter(|c| c.fresh(Timestamp::now()));
    if let Some(cached) = cached {
        return Ok(cached.exec_credential());
    }
    let credentials = mint(client, cluster_api_path, ttl).await?;
    Ok(keep(context, cluster, &credentials)?.exec_credential())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_is_reused_while_a_quarter_of_its_life_is_left() {
        let issued: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let cached = Cached {
            token: "t".into(),
            issued_at: issued,
            expires_at: "2026-01-01T01:00:00Z".parse().unwrap(),
        };
        let at = |minutes: i64| issued + jiff::SignedDuration::from_mins(minutes);
        assert!(cached.fresh(at(0)));
        assert!(cached.fresh(at(44)));
        assert!(!cached.fresh(at(46)));
        assert!(!cached.fresh(at(61)));
        let credential = cached.exec_credential();
        assert_eq!(credential["kind"], "ExecCredential");
        assert_eq!(
            credential["status"]["expirationTimestamp"],
            "2026-01-01T01:00:00Z"
        );
    }
}
