//! Each sim cluster's own PKI, as kubeadm lays it out: a CA generated with the cluster and
//! kept on its control plane's disk (here the cluster's directory, key readable by the
//! server alone), and a serving certificate for the cluster's API endpoint signed by it.
//! Lifetimes are kubeadm's: the CA ten years, the serving and control-plane client
//! certificates one year, issued afresh each time the server hosts the cluster.

use std::path::Path;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use time::{Duration, OffsetDateTime};

/// How long a cluster's CA is valid, as kubeadm's.
pub const CA_LIFETIME: Duration = Duration::days(3650);
/// How long serving and control-plane client certificates are valid, as kubeadm's.
pub const LEAF_LIFETIME: Duration = Duration::days(365);

/// Valid from a few minutes ago (for clocks a little behind) for `lifetime`.
fn valid_for(params: &mut CertificateParams, lifetime: Duration) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + lifetime;
}

pub struct ClusterPki {
    pub ca_pem: String,
    ca_key_pem: String,
    endpoint_name: String,
}

fn ca_params() -> Result<CertificateParams, String> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "kubernetes");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    std::io::Write::write_all(&mut file, contents.as_bytes())
}

impl ClusterPki {
    /// The cluster's CA from `dir`, made on first use; its endpoint is `endpoint_name`.
    pub fn load_or_create(dir: &Path, endpoint_name: &str) -> Result<Self, String> {
        let (cert_path, key_path) = (dir.join("ca.pem"), dir.join("ca-key.pem"));
        let io = |e: std::io::Error| format!("{}: {e}", dir.display());
        if !(cert_path.exists() && key_path.exists()) {
            std::fs::create_dir_all(dir).map_err(io)?;
            let key = KeyPair::generate().map_err(|e| e.to_string())?;
            let mut params = ca_params()?;
            valid_for(&mut params, CA_LIFETIME);
            let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
            write_private(&key_path, &key.serialize_pem()).map_err(io)?;
            std::fs::write(&cert_path, cert.pem()).map_err(io)?;
        }
        Ok(ClusterPki {
            ca_pem: std::fs::read_to_string(&cert_path).map_err(io)?,
            ca_key_pem: std::fs::read_to_string(&key_path).map_err(io)?,
            endpoint_name: endpoint_name.to_string(),
        })
    }

    fn issuer(&self) -> Result<Issuer<'static, KeyPair>, String> {
        let ca_key = KeyPair::from_pem(&self.ca_key_pem).map_err(|e| e.to_string())?;
        Ok(Issuer::new(ca_params()?, ca_key))
    }

    /// A client certificate for `user` in `groups` (subject CN and O, as the API server reads
    /// them), signed by the cluster's CA: (certificate PEM, key PEM).
    pub fn client_certificate(
        &self,
        user: &str,
        groups: &[&str],
    ) -> Result<(String, String), String> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
        params.distinguished_name.push(DnType::CommonName, user);
        for group in groups {
            params
                .distinguished_name
                .push(DnType::OrganizationName, *group);
        }
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        valid_for(&mut params, LEAF_LIFETIME);
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let cert = params
            .signed_by(&key, &self.issuer()?)
            .map_err(|e| e.to_string())?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// TLS for the cluster's API: a fresh serving certificate for its endpoint; client
    /// certificates signed by the cluster's CA are checked, and clients without one may
    /// still present a bearer token.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, String> {
        let issuer = self.issuer()?;
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
        Ok(config)
    }
}

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
