//! Each cluster's secrets, made by Dialtone when its first instance launches and kept in the
//! server's data directory, readable by the server alone: the three certificate
//! authorities and the service-account key kubeadm expects on every control-plane node,
//! the bootstrap token workers join with, and the key Secrets are encrypted with in etcd.
//! Holding them is what lets Dialtone mint credentials for a cluster without reading
//! anything back from its nodes, and replace any control-plane node without the others.

use std::path::{Path, PathBuf};

use base64::Engine;
use dialtone_kube::pki::{Authority, write_private};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// The secrets of one cluster.
pub struct ClusterSecrets {
    /// Signs the API server's certificate, kubelets' and users' client certificates.
    pub ca: Authority,
    /// Signs the API server's certificate for calling extension API servers.
    pub front_proxy_ca: Authority,
    /// Signs etcd's serving and peer certificates.
    pub etcd_ca: Authority,
    /// Signs service-account tokens (PKCS #8 PEM) …
    pub service_account_key_pem: String,
    /// … and checks them (public key PEM).
    pub service_account_public_pem: String,
    pub tokens: Tokens,
}

/// The cluster's secrets that are not keys of a certificate authority.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tokens {
    /// `[a-z0-9]{6}.[a-z0-9]{16}`: what workers show the API server to join.
    pub bootstrap_token: String,
    /// 32 random bytes, base64: the `aescbc` key of Secrets in etcd.
    pub encryption_key: String,
}

fn random_chars(n: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..n)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

impl Tokens {
    fn generate() -> Self {
        let key: [u8; 32] = rand::rng().random();
        Tokens {
            bootstrap_token: format!("{}.{}", random_chars(6), random_chars(16)),
            encryption_key: base64::engine::general_purpose::STANDARD.encode(key),
        }
    }
}

/// Where each cluster's secrets are kept: a directory per cluster uid.
#[derive(Clone, Debug)]
pub struct SecretStore {
    dir: PathBuf,
}

/// A cluster uid as Dialtone makes them: never a path of its own.
fn valid_uid(uid: &str) -> bool {
    !uid.is_empty() && uid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

impl SecretStore {
    pub fn new(dir: PathBuf) -> Self {
        SecretStore { dir }
    }

    fn cluster_dir(&self, uid: &str) -> Result<PathBuf, String> {
        if !valid_uid(uid) {
            return Err(format!("{uid:?} is not a cluster uid"));
        }
        Ok(self.dir.join(uid))
    }

    /// The secrets of the cluster `uid`, if it has any yet.
    pub fn load(&self, uid: &str) -> Result<Option<ClusterSecrets>, String> {
        let dir = self.cluster_dir(uid)?;
        if !dir.join("tokens.json").exists() {
            return Ok(None);
        }
        read(&dir).map(Some)
    }

    /// The secrets of the cluster `uid`, made on first use. Not safe against a second
    /// process making them at the same time; the provider calls it under a lock.
    pub fn load_or_create(&self, uid: &str) -> Result<ClusterSecrets, String> {
        let dir = self.cluster_dir(uid)?;
        let tokens = dir.join("tokens.json");
        if !tokens.exists() {
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            restrict(&dir)?;
            // The tokens file is written last, by rename: its presence says all is there.
            Authority::load_or_create(&dir, "ca", "kubernetes")?;
            Authority::load_or_create(&dir, "front-proxy-ca", "front-proxy-ca")?;
            Authority::load_or_create(&dir, "etcd-ca", "etcd-ca")?;
            let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
            write_private(&dir.join("sa-key.pem"), &key.serialize_pem())
                .map_err(|e| e.to_string())?;
            std::fs::write(dir.join("sa.pem"), key.public_key_pem()).map_err(|e| e.to_string())?;
            let json = serde_json::to_string(&Tokens::generate()).map_err(|e| e.to_string())?;
            let partial = dir.join("tokens.json.partial");
            write_private(&partial, &json).map_err(|e| e.to_string())?;
            std::fs::rename(&partial, &tokens).map_err(|e| e.to_string())?;
        }
        read(&dir)
    }
}

fn restrict(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("{}: {e}", dir.display()))
}

fn read(dir: &Path) -> Result<ClusterSecrets, String> {
    let text = |name: &str| {
        std::fs::read_to_string(dir.join(name)).map_err(|e| format!("{}: {e}", dir.display()))
    };
    Ok(ClusterSecrets {
        ca: Authority::load_or_create(dir, "ca", "kubernetes")?,
        front_proxy_ca: Authority::load_or_create(dir, "front-proxy-ca", "front-proxy-ca")?,
        etcd_ca: Authority::load_or_create(dir, "etcd-ca", "etcd-ca")?,
        service_account_key_pem: text("sa-key.pem")?,
        service_account_public_pem: text("sa.pem")?,
        tokens: serde_json::from_str(&text("tokens.json")?).map_err(|e| e.to_string())?,
    })
}
