//! Each sim cluster's own PKI, as kubeadm lays it out: a CA generated with the cluster and
//! kept on its control plane's disk (here the cluster's directory, key readable by the
//! server alone), and a serving certificate for the cluster's API endpoint signed by it.

use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

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
            let cert = ca_params()?.self_signed(&key).map_err(|e| e.to_string())?;
            write_private(&key_path, &key.serialize_pem()).map_err(io)?;
            std::fs::write(&cert_path, cert.pem()).map_err(io)?;
        }
        Ok(ClusterPki {
            ca_pem: std::fs::read_to_string(&cert_path).map_err(io)?,
            ca_key_pem: std::fs::read_to_string(&key_path).map_err(io)?,
            endpoint_name: endpoint_name.to_string(),
        })
    }

    /// TLS for the cluster's API: a fresh serving certificate for its endpoint.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, String> {
        let ca_key = KeyPair::from_pem(&self.ca_key_pem).map_err(|e| e.to_string())?;
        let issuer = Issuer::new(ca_params()?, ca_key);
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
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let cert = params.signed_by(&key, &issuer).map_err(|e| e.to_string())?;
        let chain = vec![CertificateDer::from(cert.der().to_vec())];
        let key = PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes())
            .map_err(|e| e.to_string())?;
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| e.to_string())?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}
