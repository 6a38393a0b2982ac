//! Dialtone's one Kubernetes client. Every call the control plane makes into a cluster goes
//! through a kube-rs [`kube::Client`] built here from a [`Connection`], so that what runs
//! against the sim provider's clusters is exactly the code that runs against a real cloud's:
//! only the [`ClusterAccess`] that hands out connections differs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A connection to one cluster's API (kube-rs's).
pub use kube::Client;
pub mod access;
pub mod audit;
pub mod changes;
pub mod pki;
pub mod quantity;
pub mod services;
pub mod usage;
pub mod workload;

/// The label that marks the objects Dialtone owns inside a cluster.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "dialtone");

/// The user Dialtone's own calls run as inside every cluster, in `system:masters`, as
/// kubeadm's `admin.conf` is.
pub const CONTROL_PLANE_USER: &str = "dialtone:control-plane";

/// Where one cluster's API answers.
#[derive(Clone, Debug, PartialEq)]
pub struct Endpoint {
    /// `https://127.0.0.1:6443`.
    pub server: String,
    /// The name the cluster's certificate carries; clients send it as the TLS server name.
    pub tls_server_name: String,
    pub ca_pem: String,
}

/// How Dialtone proves who it is to a cluster.
#[derive(Clone, PartialEq)]
pub enum Credential {
    /// A client certificate signed by the cluster's CA.
    ClientCertificate { cert_pem: String, key_pem: String },
    /// A bearer token (a cloud's IAM token, for instance).
    BearerToken(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credential::ClientCertificate { .. } => "ClientCertificate(..)",
            Credential::BearerToken(_) => "BearerToken(..)",
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Connection {
    pub endpoint: Endpoint,
    pub credential: Credential,
}

/// Hands out connections to clusters; one implementation per provider.
pub trait ClusterAccess: Send + Sync {
    /// How Dialtone reaches the cluster with this uid; `None` while its API is not up.
    fn connection(&self, cluster_uid: &str) -> Option<Connection>;
}

/// Who holds a token.
pub use dialtone_kubeapi::rbac::UserInfo;

/// Checks the bearer tokens that users present to a cluster: the credentials Dialtone
/// mints (`dialtone cluster credentials`), as a webhook token authenticator would.
#[async_trait::async_trait]
pub trait Authenticator: Send + Sync {
    /// Who holds `token`, if it is valid for the cluster with this uid.
    async fn authenticate(&self, cluster_uid: &str, token: &str) -> Option<UserInfo>;
}

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("the cluster's Kubernetes API is not up yet")]
    NotServing,
    #[error("cannot configure a client for the cluster: {0}")]
    Config(String),
    #[error(transparent)]
    Api(#[from] kube::Error),
}

/// One kube-rs client per cluster, kept while its connection stays the same so that calls
/// reuse their TLS connections.
pub struct Clients {
    access: Arc<dyn ClusterAccess>,
    cache: Mutex<HashMap<String, (Connection, kube::Client)>>,
}

/// Calls that take longer than this fail, so one stuck cluster cannot hold a controller.
const TIMEOUT: Duration = Duration::from_secs(10);

impl Clients {
    pub fn new(access: Arc<dyn ClusterAccess>) -> Self {
        Clients {
            access,
            cache: Mutex::default(),
        }
    }

    /// A client for the cluster with this uid.
    pub fn client(&self, cluster_uid: &str) -> Result<kube::Client, KubeError> {
        let connection = self
            .access
            .connection(cluster_uid)
            .ok_or(KubeError::NotServing)?;
        let mut cache = self.cache.lock().expect("lock");
        if let Some((cached, client)) = cache.get(cluster_uid)
            && *cached == connection
        {
            return Ok(client.clone());
        }
        let client = build(&connection)?;
        cache.insert(cluster_uid.to_string(), (connection, client.clone()));
        Ok(client)
    }

    /// How Dialtone reaches the cluster with this uid, while its API is up.
    pub fn connection(&self, cluster_uid: &str) -> Option<Connection> {
        self.access.connection(cluster_uid)
    }

    /// Forgets the client of a cluster that is gone.
    pub fn forget(&self, cluster_uid: &str) {
        self.cache.lock().expect("lock").remove(cluster_uid);
    }
}

fn base64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// A kube-rs client for `connection`, as a kubeconfig with the same fields would make one,
/// speaking HTTP/2 when the cluster offers it (as kubectl and client-go do): every call and
/// every watch of the cluster then shares one connection, so that a watch of a quiet
/// cluster costs a stream, not a connection of its own.
pub fn build(connection: &Connection) -> Result<kube::Client, KubeError> {
    use kube::client::ConfigExt;
    let invalid = |e: String| KubeError::Config(e);
    let url = connection
        .endpoint
        .server
        .parse()
        .map_err(|e: http::uri::InvalidUri| invalid(e.to_string()))?;
    let mut config = kube::Config::new(url);
    let roots = pem_certificates(&connection.endpoint.ca_pem).map_err(invalid)?;
    config.root_cert = Some(roots);
    match &connection.credential {
        Credential::ClientCertificate { cert_pem, key_pem } => {
            config.auth_info.client_certificate_data = Some(base64(cert_pem));
            config.auth_info.client_key_data = Some(base64(key_pem).into());
        }
        Credential::BearerToken(token) => config.auth_info.token = Some(token.clone().into()),
    }
    let server_name =
        rustls::pki_types::ServerName::try_from(connection.endpoint.tls_server_name.clone())
            .map_err(|e| invalid(format!("the cluster's TLS server name: {e}")))?;
    let tls = config
        .rustls_client_config()
        .map_err(|e| invalid(e.to_string()))?;
    let mut tcp = hyper_util::client::legacy::connect::HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(Some(TIMEOUT));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(server_name))
        .enable_http1()
        .enable_http2()
        .wrap_connector(tcp);
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .timer(hyper_util::rt::TokioTimer::new())
        // A connection that carries watches is pinged while it does, so that a cluster gone
        // quiet for good is told from one with nothing to say.
        .http2_keep_alive_interval(KEEP_ALIVE)
        .http2_keep_alive_timeout(TIMEOUT)
        .build(connector);
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer().map_err(|e| invalid(e.to_string()))?)
        .layer(tower::layer::layer_fn(CallTimeout))
        .service(http);
    Ok(kube::client::ClientBuilder::new(service, config.default_namespace).build())
}

/// How often a connection with open watches is pinged.
const KEEP_ALIVE: Duration = Duration::from_secs(60);

/// Fails a call whose response has not begun within [`TIMEOUT`], so one stuck cluster
/// cannot hold a controller; a watch (`watch=true`) is long by design and ends on the
/// server's side at its `timeoutSeconds`.
#[derive(Clone)]
struct CallTimeout<S>(S);

impl<S, B> tower::Service<http::Request<B>> for CallTimeout<S>
where
    S: tower::Service<http::Request<B>>,
    S::Error: Into<tower::BoxError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = tower::BoxError;
    type Future = futures::future::BoxFuture<'static, Result<S::Response, tower::BoxError>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let watch = request
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
        let call = self.0.call(request);
        Box::pin(async move {
            if watch {
                return call.await.map_err(Into::into);
            }
            match tokio::time::timeout(TIMEOUT, call).await {
                Ok(answered) => answered.map_err(Into::into),
                Err(_) => Err(format!(
                    "the cluster's API did not answer within {} s",
                    TIMEOUT.as_secs()
                )
                .into()),
            }
        })
    }
}

/// The DER certificates of a PEM bundle.
fn pem_certificates(pem: &str) -> Result<Vec<Vec<u8>>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let certificates = CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the cluster CA is not valid PEM: {e}"))?;
    if certificates.is_empty() {
        return Err("the cluster CA holds no certificate".into());
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_bundles_decode_every_certificate() {
        let pem = "-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\n\
                   -----BEGIN CERTIFICATE-----\nAwQF\n-----END CERTIFICATE-----\n";
        assert_eq!(
            pem_certificates(pem).unwrap(),
            vec![vec![0, 1, 2], vec![3, 4, 5]]
        );
        assert!(pem_certificates("no certificate here").is_err());
    }
}
