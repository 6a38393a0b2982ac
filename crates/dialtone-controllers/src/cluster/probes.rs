//! What only the running cluster can say about its security, asked at most once an hour
//! (of the plan's seconds) and remembered in between: the certificate its API serves (a
//! TLS handshake against the cluster's CA), and whether its API server enforces the plan's
//! Pod Security level (a server-side dry run of a pod that level forbids), and whether it
//! writes its audit log (a request of Dialtone's looked for in it).

use std::collections::HashMap;
use std::sync::Mutex;

use dialtone_kube::access::PodSecurityProbe;
use dialtone_kube::audit::AuditProbe;
use dialtone_kube::pki::{Validity, certificate_findings};

use super::*;

/// How long before its serving certificate expires a cluster is told.
const CERTIFICATE_WARN_DAYS: i64 = 30;

/// What a cluster answered when last asked.
#[derive(Clone, Debug)]
pub(super) struct Probed {
    at: Timestamp,
    /// The API's serving certificate, or why it could not be read.
    pub(super) certificate: Result<Validity, String>,
    /// What the API server did with a pod the plan's Pod Security level forbids; `Err`
    /// when it could not be asked.
    pub(super) pod_security: Result<PodSecurityProbe, String>,
    /// Whether the API server logged a request of Dialtone's; `Err` when it could not be
    /// asked.
    pub(super) audit: Result<AuditProbe, String>,
}

impl Probed {
    /// What falls short of the plan: the certificate's lifetime or nearness to expiry, and
    /// Pod Security not enforced, an audit log not written. What could not be asked says
    /// nothing.
    pub(super) fn findings(&self, now: Timestamp) -> Vec<String> {
        let mut found = match &self.certificate {
            Ok(validity) => certificate_findings(validity, now, CERTIFICATE_WARN_DAYS),
            Err(_) => Vec::new(),
        };
        if let Ok(PodSecurityProbe::NotEnforced(finding)) = &self.pod_security {
            found.push(finding.clone());
        }
        if let Ok(AuditProbe::NotRecorded(finding)) = &self.audit {
            found.push(finding.clone());
        }
        found
    }
}

/// Each cluster's latest answers, by cluster uid.
#[derive(Default)]
pub(super) struct Probes(Mutex<HashMap<String, Probed>>);

impl Probes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Probed>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets a cluster that is gone.
    pub(super) fn forget(&self, uid: &str) {
        self.lock().remove(uid);
    }
}

impl Lifecycle {
    /// The cluster's answers, asked again when the last are an hour old; `None` when
    /// Dialtone has no way into the cluster.
    pub(super) async fn probe(
        &self,
        uid: &str,
        plan: &ClusterPlan,
        now: Timestamp,
    ) -> Option<Probed> {
        let every = self.options.sizing.second * 3600;
        if let Some(probed) = self.probes.lock().get(uid)
            && now.duration_since(probed.at).unsigned_abs() < every
        {
            return Some(probed.clone());
        }
        let clients = self.kube.as_ref()?;
        let connection = clients.connection(uid)?;
        let certificate = dialtone_kube::pki::serving_certificate(&connection.endpoint).await;
        let level = plan.settings.security.pod_security_level.as_str();
        let (pod_security, audit) = match clients.client(uid) {
            Ok(client) => (
                dialtone_kube::access::probe_pod_security(&client, level)
                    .await
                    .map_err(|e| e.to_string()),
                dialtone_kube::audit::probe(&client)
                    .await
                    .map_err(|e| e.to_string()),
            ),
            Err(e) => (Err(e.to_string()), Err(e.to_string())),
        };
        let probed = Probed {
            at: now,
            certificate,
            pod_security,
            audit,
        };
        self.probes.lock().insert(uid.to_string(), probed.clone());
        Some(probed)
    }
}
