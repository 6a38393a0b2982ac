//! What the sim service and the Dialtone servers that use it say to each other, besides the
//! `Provider` types themselves (which are their own wire format).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `GET /v1/cloud`: what a server needs to know of the cloud before it uses it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloudInfo {
    /// How long describe may miss a resource just created.
    pub describe_lag_ms: u64,
    /// The cloud's latencies relative to a real cloud's, for the lifecycle's waits.
    pub time_scale: f64,
}

impl CloudInfo {
    pub fn describe_lag(&self) -> Duration {
        Duration::from_millis(self.describe_lag_ms)
    }
}

/// `GET /v1/cloud/clusters/{uid}/connection`: how Dialtone reaches a hosted cluster.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterConnection {
    pub server: String,
    pub tls_server_name: String,
    pub ca_pem: String,
    /// Dialtone's client certificate for the cluster (`dialtone:control-plane`).
    pub client_cert_pem: String,
    pub client_key_pem: String,
}

impl From<ClusterConnection> for dialtone_kube::Connection {
    fn from(wire: ClusterConnection) -> Self {
        dialtone_kube::Connection {
            endpoint: dialtone_kube::Endpoint {
                server: wire.server,
                tls_server_name: wire.tls_server_name,
                ca_pem: wire.ca_pem,
            },
            credential: dialtone_kube::Credential::ClientCertificate {
                cert_pem: wire.client_cert_pem,
                key_pem: wire.client_key_pem,
            },
        }
    }
}

/// `PUT /v1/cloud/servers`: a Dialtone server the service's clusters may ask who holds a
/// token (its TokenReview webhook).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerRegistration {
    /// `https://host:port`.
    pub url: String,
    /// The CA that signed its certificate.
    pub ca_pem: String,
    /// Its drift guard's webhook, which the service's clusters may then call wherever
    /// it is (a loopback or private address).
    pub guard_url: String,
}
