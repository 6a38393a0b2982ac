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

/// When a certificate a cluster presents is valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    pub not_before: jiff::Timestamp,
    pub not_after: jiff::Timestamp,
}

/// Whether a cluster's serving certificate is as certificates must be: no longer-lived
/// than [`LEAF_LIFETIME`] (a day's slack for clocks), and not within `warn_days` of
/// expiring at `now`. What is wrong, if anything.
pub fn certificate_findings(
    validity: &Validity,
    now: jiff::Timestamp,
    warn_days: i64,
) -> Vec<String> {
    let day = jiff::SignedDuration::from_hours(24);
    let lifetime = validity.not_after.duration_since(validity.not_before);
    let mut found = Vec::new();
    let longest = day * (LEAF_LIFETIME.whole_days() as i32 + 1);
    if lifetime > longest {
        found.push(format!(
            "the API's serving certificate is valid for {} days, longer than the {} a certificate may live",
            lifetime.as_secs() / 86_400,
            LEAF_LIFETIME.whole_days()
        ));
    }
    if validity.not_after <= now {
        found.push(format!(
            "the API's serving certificate expired at {}",
            validity.not_after
        ));
    } else if validity.not_after.duration_since(now) < day * warn_days as i32 {
        found.push(format!(
            "the API's serving certificate expires at {}; replacing the control plane's nodes (an upgrade) renews it",
            validity.not_after
        ));
    }
    found
}

/// The validity of the certificate the cluster at `endpoint` serves, read from a TLS
/// handshake checked against the cluster's CA.
pub async fn serving_certificate(endpoint: &crate::Endpoint) -> Result<Validity, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};

    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(endpoint.ca_pem.as_bytes()) {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let address = endpoint
        .server
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_string();
    let name = ServerName::try_from(endpoint.tls_server_name.clone()).map_err(|e| e.to_string())?;
    let handshake = async {
        let tcp = tokio::net::TcpStream::connect(&address)
            .await
            .map_err(|e| format!("cannot reach {address}: {e}"))?;
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {address}: {e}"))
    };
    let stream = tokio::time::timeout(std::time::Duration::from_secs(10), handshake)
        .await
        .map_err(|_| format!("no TLS answer from {address} within 10 s"))??;
    let leaf = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .ok_or("the API presented no certificate")?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).map_err(|e| e.to_string())?;
    let at = |t: x509_parser::time::ASN1Time| {
        jiff::Timestamp::from_second(t.timestamp()).map_err(|e| e.to_string())
    };
    Ok(Validity {
        not_before: at(cert.validity().not_before)?,
        not_after: at(cert.validity().not_after)?,
    })
}

#[cfg(test)]
mod certificate_tests {
    use super::*;

    fn validity(from: &str, days: i64) -> Validity {
        let not_before: jiff::Timestamp = from.parse().unwrap();
        Validity {
            not_before,
            not_after: not_before + jiff::SignedDuration::from_hours(24 * days),
        }
    }

    #[test]
    fn long_lived_expiring_and_expired_certificates_are_found() {
        let now: jiff::Timestamp = "2026-12-07T00:00:00Z".parse().unwrap();
        assert!(certificate_findings(&validity("2026-12-01T00:00:00Z", 365), now, 30).is_empty());
        let long = certificate_findings(&validity("2026-12-01T00:00:00Z", 3650), now, 30);
        assert!(
            long[0].contains("valid for 3650 days, longer than the 365"),
            "{long:?}"
        );
        let soon = certificate_findings(&validity("2026-01-01T00:00:00Z", 350), now, 30);
        assert!(soon[0].contains("expires at 2026-12-17"), "{soon:?}");
        let gone = certificate_findings(&validity("2025-12-01T00:00:00Z", 365), now, 30);
        assert!(gone[0].contains("expired at 2026-12-01"), "{gone:?}");
    }
}
