//! How Dialtone reaches the Kubernetes API of clusters on AWS: at its load balancer's DNS
//! name, trusting the CA Dialtone made for the cluster, as `dialtone:control-plane` in
//! `system:masters` with a client certificate that CA signs. Nothing is read back from a
//! node. The load balancers are found by their tags in every region the provider has
//! worked in, again every [`REFRESH`]; a client certificate is issued once per cluster and
//! process, and again a month before it expires.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dialtone_cloud::tags::{TAG_CLUSTER, TAG_PART};
use dialtone_cloud::{Filter, Provider, ResourceKind, ResourceState};
use dialtone_kube::{CONTROL_PLANE_USER, ClusterAccess, Connection, Credential, Endpoint};
use jiff::{SignedDuration, Timestamp};

use crate::AwsProvider;

/// How often load balancers are looked for.
pub const REFRESH: Duration = Duration::from_secs(10);
/// The longest wait between lookups while AWS refuses them.
const REFRESH_CAP: Duration = Duration::from_secs(300);
/// How old a connection's client certificate may get: a month short of its year.
const REISSUE_AFTER: SignedDuration = SignedDuration::from_hours(335 * 24);

struct Known {
    connection: Connection,
    issued: Timestamp,
}

/// [`ClusterAccess`] for clusters on AWS.
pub struct AwsClusterAccess {
    provider: Arc<AwsProvider>,
    known: Mutex<HashMap<String, Known>>,
}

impl AwsClusterAccess {
    pub fn new(provider: Arc<AwsProvider>) -> Arc<Self> {
        Arc::new(AwsClusterAccess {
            provider,
            known: Mutex::default(),
        })
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<String, Known>> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Looks for every cluster's API load balancer once; how many answer.
    pub async fn refresh(&self) -> Result<usize, String> {
        let filter = Filter::tagged(TAG_PART, "api").kind(ResourceKind::LoadBalancer);
        let mut seen = HashMap::new();
        for region in self.provider.regions_in_use() {
            let balancers = self
                .provider
                .describe(&region, &filter)
                .await
                .map_err(|e| format!("{region}: {e}"))?;
            for lb in balancers {
                let Some(uid) = lb.tags.get(TAG_CLUSTER) else {
                    continue;
                };
                if lb.state == ResourceState::Available && !lb.address.is_empty() {
                    seen.insert(uid.clone(), lb.address);
                }
            }
        }
        let now = Timestamp::now();
        let reissue_before = now.checked_sub(REISSUE_AFTER).unwrap_or(now);
        let mut fresh = HashMap::new();
        for (uid, address) in seen {
            let kept = self.known().remove(&uid).filter(|k| {
                k.connection.endpoint.tls_server_name == address && k.issued > reissue_before
            });
            let known = match kept {
                Some(known) => known,
                None => match self.connect(&uid, &address) {
                    Ok(Some(connection)) => Known {
                        connection,
                        issued: now,
                    },
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::warn!(cluster = uid, error = %e, "cannot reach the cluster's API");
                        continue;
                    }
                },
            };
            fresh.insert(uid, known);
        }
        let count = fresh.len();
        *self.known() = fresh;
        Ok(count)
    }

    /// A connection to the cluster `uid` behind `address`, if Dialtone holds its CA.
    fn connect(&self, uid: &str, address: &str) -> Result<Option<Connection>, String> {
        let Some(secrets) = self.provider.secrets().load(uid)? else {
            return Ok(None);
        };
        let (cert_pem, key_pem) = secrets
            .ca
            .client_certificate(CONTROL_PLANE_USER, &["system:masters"])?;
        Ok(Some(Connection {
            endpoint: Endpoint {
                server: format!("https://{address}:6443"),
                tls_server_name: address.to_string(),
                ca_pem: secrets.ca.cert_pem.clone(),
            },
            credential: Credential::ClientCertificate { cert_pem, key_pem },
        }))
    }

    /// Refreshes every [`REFRESH`], backing off while AWS refuses; never ends.
    pub async fn refresh_loop(self: Arc<Self>) {
        let mut wait = REFRESH;
        loop {
            match self.refresh().await {
                Ok(_) => wait = REFRESH,
                Err(e) => {
                    wait = (wait * 2).min(REFRESH_CAP);
                    tracing::warn!(error = %e, retry_in = ?wait, "cannot look for clusters' API load balancers");
                }
            }
            tokio::time::sleep(wait).await;
        }
    }
}

impl ClusterAccess for AwsClusterAccess {
    fn connection(&self, cluster_uid: &str) -> Option<Connection> {
        self.known()
            .get(cluster_uid)
            .map(|known| known.connection.clone())
    }
}
