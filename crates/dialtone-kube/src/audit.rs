//! The cluster's audit log as Dialtone checks it: the policy in `kube-system/audit-policy`
//! put back when it no longer is the plan's, and a probe that the API server writes what
//! the policy says: a request with an `Audit-ID` of Dialtone's, looked for in the log the
//! API server serves at `/logs/`.

pub use dialtone_kubeapi::audit::{LOG_PATH, POLICY_CONFIGMAP, POLICY_KEY, Policy};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};

use crate::KubeError;

/// How much of the log's end the probe reads: far more than is written between its
/// request and its read.
const TAIL_BYTES: u64 = 1024 * 1024;

/// What the cluster's audit policy was when it was put back.
#[derive(Debug, PartialEq)]
pub enum Drifted {
    /// The ConfigMap was gone.
    Removed,
    /// It held a policy that does not parse.
    Unreadable(String),
    /// It held another policy, described.
    Changed(String),
}

impl std::fmt::Display for Drifted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Drifted::Removed => f.write_str("was removed"),
            Drifted::Unreadable(e) => write!(f, "did not parse ({e})"),
            Drifted::Changed(rules) => write!(f, "was `{rules}`"),
        }
    }
}

/// Puts the plan's audit policy back in the cluster when it was changed or removed there;
/// what it was, when it was put back.
pub async fn restore_policy(
    client: &kube::Client,
    planned: &Policy,
) -> Result<Option<Drifted>, KubeError> {
    let (namespace, name) = POLICY_CONFIGMAP;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let data = [(POLICY_KEY.to_string(), planned.to_yaml())].into();
    let Some(mut current) = api.get_opt(name).await? else {
        let mut config_map = ConfigMap {
            data: Some(data),
            ..Default::default()
        };
        config_map.metadata.name = Some(name.to_string());
        config_map.metadata.labels = Some(
            [(
                crate::MANAGED_BY.0.to_string(),
                crate::MANAGED_BY.1.to_string(),
            )]
            .into(),
        );
        api.create(&PostParams::default(), &config_map).await?;
        return Ok(Some(Drifted::Removed));
    };
    let text = current
        .data
        .as_ref()
        .and_then(|d| d.get(POLICY_KEY))
        .map_or("", String::as_str);
    let drifted = match Policy::parse(text) {
        Ok(policy)
            if policy.rules == planned.rules && policy.omit_stages == planned.omit_stages =>
        {
            return Ok(None);
        }
        Ok(policy) => Drifted::Changed(policy.describe()),
        Err(e) => Drifted::Unreadable(e),
    };
    current.data = Some(data);
    // Replaced at the version read: a change made meanwhile is seen next time.
    api.replace(name, &PostParams::default(), &current).await?;
    Ok(Some(drifted))
}

/// Whether the API server writes its audit log.
#[derive(Clone, Debug, PartialEq)]
pub enum AuditProbe {
    /// The probe's request is in the log.
    Recorded,
    /// It is not: why that falls short.
    NotRecorded(String),
}

/// Reads the policy's ConfigMap with an `Audit-ID` of its own, which every policy Dialtone
/// plans logs, then looks for that id at the end of the log.
pub async fn probe(client: &kube::Client) -> Result<AuditProbe, KubeError> {
    let audit_id = format!("dialtone-audit-probe-{}", uuid::Uuid::new_v4());
    let (namespace, name) = POLICY_CONFIGMAP;
    let request = http::Request::get(format!("/api/v1/namespaces/{namespace}/configmaps/{name}"))
        .header("Audit-ID", &audit_id)
        .body(Vec::new())
        .map_err(|e| KubeError::Config(e.to_string()))?;
    // Found or not, the request is logged.
    client.send(request.map(Into::into)).await?;
    let tail = http::Request::get(LOG_PATH)
        .header(http::header::RANGE, format!("bytes=-{TAIL_BYTES}"))
        .body(Vec::new())
        .map_err(|e| KubeError::Config(e.to_string()))?;
    let log = match client.request_text(tail).await {
        Ok(log) => log,
        Err(kube::Error::Api(e)) if e.code == 404 => {
            return Ok(AuditProbe::NotRecorded(format!(
                "the API server serves no audit log at {LOG_PATH}"
            )));
        }
        Err(e) => return Err(e.into()),
    };
    if log.contains(&format!("\"auditID\":\"{audit_id}\"")) {
        Ok(AuditProbe::Recorded)
    } else {
        Ok(AuditProbe::NotRecorded(format!(
            "the API server did not write request {audit_id} (a read of {namespace}/{name}, which the plan's audit policy logs) to its audit log"
        )))
    }
}
