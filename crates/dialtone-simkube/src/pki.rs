//! Each sim cluster's own PKI, as kubeadm lays it out: a CA generated with the cluster and
//! kept on its control plane's disk (here the cluster's directory), and a serving
//! certificate for the cluster's API endpoint signed by it, issued afresh each time the
//! server hosts the cluster.

use std::path::Path;
use std::sync::Arc;

use dialtone_kube::pki::{Authority, LEAF_LIFETIME, valid_for};
use rcgen::{CertificateParams, DnType, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub struct ClusterPki {
    pub ca_pem: String,
    ca: Authority,
    endpoint_name: String,
}

impl ClusterPki {
    /// The cluster's CA from `dir`, made on first use; its endpoint is `endpoint_name`.
    pub fn load_or_create(dir: &Path, endpoint_name: &str) -> Result<Self, String> {
        let ca = Authority::load_or_create(dir, "ca", "kubernetes")?;
        Ok(ClusterPki {
            ca_pem: ca.cert_pem.clone(),
            ca,
            endpoint_name: endpoint_name.to_string(),
        })
    }

    /// A client certificate for `user` in `groups`, signed by the cluster's CA.
    pub fn client_certificate(
        &self,
        user: &str,
        groups: &[&str],
    ) -> Result<(String, String), String> {
        self.ca.client_certificate(user, groups)
    }

    /// TLS for the cluster's API: a fresh serving certificate for its endpoint; client
    /// certificates signed by the cluster's CA are checked, and clients without one may
    /// still present a bearer token.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, String> {
        let issuer = self.ca.issuer()?;
        let mut params = CertificateParams::new(vec![
            self.endpoint_name.clone(),
            "kubernetes".into(),
            "kubernetes.default.svc".into(),
            "localhost".into(),
            "127.0.0.1".into(),
        ])
        .map_err(|e| e.to_string())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        valid_for(&mut params, LEAF_LIFETIME);
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let cert = params.signed_by(&key, &issuer).map_err(|e| e.to_string())?;
        let chain = vec![CertificateDer::from(cert.der().to_vec())];
        let key = PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes())
            .map_err(|e| e.to_string())?;
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots
                .add(ca.map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        }
        let clients = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
            .allow_unauthenticated()
            .build()
            .map_err(|e| e.to_string())?;
        let mut config = rustls::ServerConfig::builder()
            .with_client_cert_verifier(clients)
            .with_single_cert(chain, key)
            .map_err(|e| e.to_string())?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        // A cluster has a few clients, not rustls's default of 256 sessions to resume; a
        // fleet of clusters on one server pays for each one's cache.
        config.session_storage = rustls::server::ServerSessionMemoryCache::new(SESSIONS_KEPT);
        Ok(config)
    }
}

/// The TLS sessions each cluster keeps for clients to resume.
const SESSIONS_KEPT: usize = 32;

/// The user a verified client certificate names: CN is the user, each O a group.
pub fn certificate_user(der: &[u8]) -> Option<crate::UserInfo> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    let mut groups: Vec<String> = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    groups.push("system:authenticated".into());
    Some(crate::UserInfo { name, groups })
}
