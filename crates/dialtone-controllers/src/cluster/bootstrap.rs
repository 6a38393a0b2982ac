//! What each instance is told at boot, from the cluster's plan.

use dialtone_cloud::{AuditPolicy, BootstrapRole, NodeBootstrap, PodSecurityLevel};

use super::*;

/// The plan's decision `key`, or an error naming it: a plan without it cannot be built.
fn decision<'p>(plan: &'p ClusterPlan, key: &str) -> Result<&'p str, CloudError> {
    plan.value(key).ok_or_else(|| CloudError::Invalid {
        message: format!("the plan has no {key}; plan the cluster again"),
    })
}

fn unknown(key: &str, value: &str, valid: &str) -> CloudError {
    CloudError::Invalid {
        message: format!("the plan's {key} is {value:?}, not one of {valid}"),
    }
}

/// The bootstrap of an instance of `role` in the cluster `uid`, whose API is at `endpoint`.
pub(super) fn node_bootstrap(
    uid: &str,
    plan: &ClusterPlan,
    role: BootstrapRole,
    endpoint: &str,
) -> Result<NodeBootstrap, CloudError> {
    let key = "security.podSecurityLevel";
    let pod_security = match decision(plan, key)? {
        "privileged" => PodSecurityLevel::Privileged,
        "baseline" => PodSecurityLevel::Baseline,
        "restricted" => PodSecurityLevel::Restricted,
        other => return Err(unknown(key, other, "privileged, baseline, restricted")),
    };
    let key = "security.auditLogging";
    let audit = match decision(plan, key)? {
        "Metadata" => AuditPolicy::Metadata,
        "RequestResponse for writes, Metadata for reads" => AuditPolicy::RequestResponseForWrites,
        other => {
            return Err(unknown(
                key,
                other,
                "Metadata, RequestResponse for writes, Metadata for reads",
            ));
        }
    };
    let key = "security.secretsEncryption";
    let secrets_encryption = match decision(plan, key)? {
        "none" => false,
        aescbc if aescbc.starts_with("aescbc") => true,
        other => return Err(unknown(key, other, "aescbc…, none")),
    };
    let number = |key: &str| -> Result<u32, CloudError> {
        let value = decision(plan, key)?;
        value.parse().map_err(|_| unknown(key, value, "a number"))
    };
    let etcd_quota_backend_gib = number("etcd.quotaBackendGiB")?;
    let audit_log_retention_days = number("security.auditLogRetentionDays")?;
    Ok(NodeBootstrap {
        cluster_uid: uid.to_string(),
        role,
        kubernetes_version: plan.kubernetes_version.clone(),
        api_endpoint: endpoint.to_string(),
        pod_cidr: plan.network.pod_cidr,
        service_cidr: plan.network.service_cidr,
        max_pods_per_node: plan.workers.max_pods_per_node,
        pod_security,
        audit,
        audit_log_retention_days,
        secrets_encryption,
        etcd_quota_backend_gib,
    })
}

/// What a slot's new instance does at boot: the first control-plane node starts the
/// cluster while no other control-plane node runs; every other one joins.
pub(super) fn role_of(slot: &Slot, own: &[CloudResource]) -> BootstrapRole {
    match slot.role {
        NodeRole::Worker => BootstrapRole::Worker,
        NodeRole::ControlPlane => {
            let others_run = own.iter().any(|r| {
                r.spec.kind() == ResourceKind::Instance
                    && r.tags.get(TAG_ROLE).map(String::as_str) == Some(ROLE_CONTROL_PLANE)
                    && part_of(r) != slot.name
                    && r.state == ResourceState::Available
            });
            if slot.name == control_plane_slot(0) && !others_run {
                BootstrapRole::InitControlPlane
            } else {
                BootstrapRole::JoinControlPlane
            }
        }
    }
}
