//! TLS on every endpoint: a CA and a server certificate generated into the data directory on
//! first start (or files given by the operator), and the accept loop that serves the router
//! over rustls with HTTP/1.1 and HTTP/2.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use time::{Duration, OffsetDateTime};
use tokio::net::TcpListener;

// kubeadm's lifetimes: the CA ten years, the serving certificate one.
use dialtone_kube::pki::{CA_LIFETIME, LEAF_LIFETIME as SERVER_LIFETIME, valid_for, write_private};

/// Where the server's certificate, its key and the CA that signed it live.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub ca_cert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A server certificate this close to expiry is issued again at start.
pub const RENEW_BEFORE: Duration = Duration::days(30);

fn ca_params() -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "Dialtone CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params)
}

/// When the first certificate in a PEM file expires.
pub fn not_after(pem_file: &Path) -> anyhow::Result<OffsetDateTime> {
    let der = CertificateDer::pem_file_iter(pem_file)
        .with_context(|| format!("cannot read {}", pem_file.display()))?
        .next()
        .with_context(|| format!("{} holds no certificate", pem_file.display()))??;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| anyhow::anyhow!("{}: {e}", pem_file.display()))?;
    Ok(cert.validity().not_after.to_datetime())
}

/// The CA and server certificate in `dir`, generated on first use, valid for loopback and
/// for `extra_names` (DNS names or IP addresses). A server certificate within
/// [`RENEW_BEFORE`] of expiry is issued again by the same CA, so clients keep trusting it.
pub fn ensure_certificates(dir: &Path, extra_names: &[String]) -> anyhow::Result<TlsFiles> {
    let files = TlsFiles {
        ca_cert: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server-key.pem"),
    };
    let ca_key_path = dir.join("ca-key.pem");
    let have_ca = files.ca_cert.exists() && ca_key_path.exists();
    if have_ca
        && files.cert.exists()
        && files.key.exists()
        && not_after(&files.cert)? > OffsetDateTime::now_utc() + RENEW_BEFORE
    {
        return Ok(files);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let ca = certificate_authority(&files.ca_cert, &ca_key_path)?;
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    names.extend(extra_names.iter().cloned());
    let mut server_params = CertificateParams::new(names)?;
    server_params
        .distinguished_name
        .push(DnType::CommonName, "dialtone server");
    issue(&ca, server_params, &files.cert, &files.key)?;
    Ok(files)
}

/// The CA whose certificate and key are at `cert` and `key`, made there if either is
/// missing.
fn certificate_authority(cert: &Path, key: &Path) -> anyhow::Result<Issuer<'static, KeyPair>> {
    let ca_key = if cert.exists() && key.exists() {
        KeyPair::from_pem(&std::fs::read_to_string(key)?)?
    } else {
        let mut params = ca_params()?;
        valid_for(&mut params, CA_LIFETIME);
        let ca_key = KeyPair::generate()?;
        write_private(key, &ca_key.serialize_pem())?;
        std::fs::write(cert, params.self_signed(&ca_key)?.pem())?;
        ca_key
    };
    // An issuer is its name, key usages and key: the same parameters sign as the CA did.
    Ok(Issuer::new(ca_params()?, ca_key))
}

/// Signs `params` with `ca` for a leaf's lifetime and writes the certificate to `cert` and
/// a new key to `key` (readable by its owner only).
fn issue(
    ca: &Issuer<'static, KeyPair>,
    mut params: CertificateParams,
    cert: &Path,
    key: &Path,
) -> anyhow::Result<()> {
    valid_for(&mut params, SERVER_LIFETIME);
    let leaf_key = KeyPair::generate()?;
    std::fs::write(cert, params.signed_by(&leaf_key, ca)?.pem())?;
    write_private(key, &leaf_key.serialize_pem())?;
    Ok(())
}

/// A region CA in `dir` (`region-ca.pem`, made on first use) and, for each of `regions`, a
/// certificate named after it (`{region}.pem`, `{region}-key.pem`) that serves its region
/// listener and is its client certificate towards its peers, valid for loopback and
/// `names`. Returns the files written.
pub fn region_certificates(
    dir: &Path,
    regions: &[String],
    names: &[String],
) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let ca_cert = dir.join("region-ca.pem");
    let ca = certificate_authority(&ca_cert, &dir.join("region-ca-key.pem"))?;
    let mut written = vec![ca_cert];
    for region in regions {
        let mut all = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        all.extend(names.iter().cloned());
        let mut params = CertificateParams::new(all)?;
        params.distinguished_name.push(DnType::CommonName, region);
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let (cert_path, key_path) = (
            dir.join(format!("{region}.pem")),
            dir.join(format!("{region}-key.pem")),
        );
        issue(&ca, params, &cert_path, &key_path)?;
        written.extend([cert_path, key_path]);
    }
    Ok(written)
}

/// The server's certificate, swapped in place when it is renewed, so that a server that
/// runs for longer than a certificate lasts keeps serving a valid one.
#[derive(Debug)]
pub struct ServingCertificate {
    files: TlsFiles,
    current: std::sync::RwLock<Arc<CertifiedKey>>,
}

impl ServingCertificate {
    pub fn load(files: &TlsFiles) -> anyhow::Result<Arc<Self>> {
        Ok(Arc::new(ServingCertificate {
            files: files.clone(),
            current: std::sync::RwLock::new(certified_key(files)?),
        }))
    }

    /// Reads the files again and serves what they hold from the next handshake on.
    pub fn reload(&self) -> anyhow::Result<()> {
        let key = certified_key(&self.files)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = key;
        Ok(())
    }

    fn serving(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl rustls::server::ResolvesServerCert for ServingCertificate {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.serving())
    }
}

/// A region's certificate is its client certificate towards its peers too.
impl rustls::client::ResolvesClientCert for ServingCertificate {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.serving())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn certified_key(files: &TlsFiles) -> anyhow::Result<Arc<CertifiedKey>> {
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .with_context(|| format!("cannot read {}", files.cert.display()))?
        .collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("cannot read {}", files.key.display()))?;
    let key = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| anyhow::anyhow!("{}: {e}", files.key.display()))?;
    let certified = CertifiedKey::new(certs, key);
    certified.keys_match().map_err(|e| {
        anyhow::anyhow!(
            "{} and {} do not go together: {e}",
            files.cert.display(),
            files.key.display()
        )
    })?;
    Ok(Arc::new(certified))
}

pub fn server_config(certificate: Arc<ServingCertificate>) -> rustls::ServerConfig {
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_cert_resolver(certificate);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config
}

/// How often the serving certificate is looked at again.
pub const RENEWAL_CHECK: std::time::Duration = std::time::Duration::from_secs(12 * 3600);

/// A supervised task: twice a day, issues the server certificate again when it is within
/// [`RENEW_BEFORE`] of expiry (when the server generated it, `generated_in`), and serves
/// whatever the files hold then (an operator's files may have been rotated on disk).
pub async fn keep_renewed(
    certificate: Arc<ServingCertificate>,
    generated_in: Option<(PathBuf, Vec<String>)>,
) {
    loop {
        tokio::time::sleep(RENEWAL_CHECK).await;
        if let Some((dir, names)) = &generated_in
            && let Err(e) = ensure_certificates(dir, names)
        {
            tracing::warn!(error = %e, "cannot renew the server certificate");
        }
        if let Err(e) = certificate.reload() {
            tracing::warn!(error = %e, "cannot reload the server certificate");
        }
    }
}

/// Serves `router` over TLS on `listener` until the process ends.
pub async fn serve(listener: TcpListener, config: rustls::ServerConfig, router: Router) {
    serve_with(listener, config, router, |_, router| router).await
}

/// Serves like [`serve`], with `per_connection` making each connection's router from what
/// the handshake told (the region listener names the peer from its certificate).
pub async fn serve_with(
    listener: TcpListener,
    config: rustls::ServerConfig,
    router: Router,
    per_connection: fn(&rustls::ServerConnection, Router) -> Router,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    loop {
        let (tcp, peer): (_, SocketAddr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, say: wait for some to close.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move {
            let limit = dialtone_https::SLOW_CLIENT_LIMIT;
            let tls = match tokio::time::timeout(limit, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake too slow");
                    return;
                }
            };
            let router = per_connection(tls.get_ref().1, router);
            let service = hyper_util::service::TowerToHyperService::new(router);
            if let Err(e) = dialtone_https::http_server()
                .serve_connection(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_near_expiry_is_issued_again_by_the_same_ca_and_served() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let files = ensure_certificates(dir.path(), &[]).unwrap();
        let ca = std::fs::read_to_string(&files.ca_cert).unwrap();
        let year = not_after(&files.cert).unwrap();
        assert!(year > OffsetDateTime::now_utc() + Duration::days(360));
        assert!(
            not_after(&files.ca_cert).unwrap() > OffsetDateTime::now_utc() + Duration::days(3600)
        );
        let serving = ServingCertificate::load(&files).unwrap();
        let before = serving.serving().cert[0].clone();
        // A certificate far from expiry stays as it is.
        ensure_certificates(dir.path(), &[]).unwrap();
        serving.reload().unwrap();
        assert_eq!(serving.serving().cert[0], before);

        // One that expires in ten days is issued again, signed by the same CA.
        let ca_key =
            KeyPair::from_pem(&std::fs::read_to_string(dir.path().join("ca-key.pem")).unwrap())
                .unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        valid_for(&mut params, Duration::days(10));
        let key = KeyPair::generate().unwrap();
        let short = params
            .signed_by(&key, &Issuer::new(ca_params().unwrap(), ca_key))
            .unwrap();
        std::fs::write(&files.cert, short.pem()).unwrap();
        write_private(&files.key, &key.serialize_pem()).unwrap();
        ensure_certificates(dir.path(), &[]).unwrap();
        assert!(not_after(&files.cert).unwrap() > OffsetDateTime::now_utc() + Duration::days(360));
        assert_eq!(
            std::fs::read_to_string(&files.ca_cert).unwrap(),
            ca,
            "the same CA"
        );
        serving.reload().unwrap();
        assert_ne!(
            serving.serving().cert[0],
            before,
            "the renewed one is served"
        );
    }
}
