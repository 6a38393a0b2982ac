//! A cluster's certificate authorities, as kubeadm lays them out: made once with the
//! cluster, kept on disk with the key readable by the server alone, and used to sign the
//! client certificates Dialtone calls the cluster with. Lifetimes are kubeadm's: a CA ten
//! years, what it signs one year.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

/// How long a cluster's CA is valid, as kubeadm's.
pub const CA_LIFETIME: Duration = Duration::days(3650);
/// How long serving and client certificates are valid, as kubeadm's.
pub const LEAF_LIFETIME: Duration = Duration::days(365);

/// Valid from a few minutes ago (for clocks a little behind) for `lifetime`.
pub fn valid_for(params: &mut CertificateParams, lifetime: Duration) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + lifetime;
}

/// A certificate authority: its certificate and key, PEM.
pub struct Authority {
    pub cert_pem: String,
    pub key_pem: String,
    common_name: String,
}

fn ca_params(common_name: &str) -> Result<CertificateParams, String> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

/// Writes `contents` to `path` readable by its owner alone.
pub fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    std::io::Write::write_all(&mut file, contents.as_bytes())
}

impl Authority {
    /// The CA named `common_name` kept as `{name}.pem` and `{name}-key.pem` in `dir`, made on
    /// first use.
    pub fn load_or_create(dir: &Path, name: &str, common_name: &str) -> Result<Self, String> {
        let cert_path = dir.join(format!("{name}.pem"));
        let key_path = dir.join(format!("{name}-key.pem"));
        let io = |e: std::io::Error| format!("{}: {e}", dir.display());
        if !(cert_path.exists() && key_path.exists()) {
            std::fs::create_dir_all(dir).map_err(io)?;
            let key = KeyPair::generate().map_err(|e| e.to_string())?;
            let mut params = ca_params(common_name)?;
            valid_for(&mut params, CA_LIFETIME);
            let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
            write_private(&key_path, &key.serialize_pem()).map_err(io)?;
            std::fs::write(&cert_path, cert.pem()).map_err(io)?;
        }
        Ok(Authority {
            cert_pem: std::fs::read_to_string(&cert_path).map_err(io)?,
            key_pem: std::fs::read_to_string(&key_path).map_err(io)?,
            common_name: common_name.to_string(),
        })
    }

    /// What signs certificates in this CA's name.
    pub fn issuer(&self) -> Result<Issuer<'static, KeyPair>, String> {
        let key = KeyPair::from_pem(&self.key_pem).map_err(|e| e.to_string())?;
        Ok(Issuer::new(ca_params(&self.common_name)?, key))
    }

    /// A client certificate for `user` in `groups` (subject CN and O, as the API server reads
    /// them), signed by this CA: (certificate PEM, key PEM).
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
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        valid_for(&mut params, LEAF_LIFETIME);
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let cert = params
            .signed_by(&key, &self.issuer()?)
            .map_err(|e| e.to_string())?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// The SHA-256 of the CA's public key, as kubeadm pins a CA it discovers
    /// (`sha256:<hex>`, for `caCertHashes`).
    pub fn public_key_pin(&self) -> Result<String, String> {
        use rcgen::PublicKeyData;
        use sha2::Digest;
        let key = KeyPair::from_pem(&self.key_pem).map_err(|e| e.to_string())?;
        let digest = sha2::Sha256::digest(key.subject_public_key_info());
        Ok(format!(
            "sha256:{}",
            digest
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        ))
    }
}
