//! What each instance is told at boot, from the cluster's plan.

use dialtone_cloud::{BootstrapRole, NodeBootstrap};

use super::*;

/// The bootstrap of an instance of `role` and Kubernetes `release` in the cluster `uid`,
/// whose API is at `endpoint`: the plan's typed settings, as the instance's kubeadm and
/// kubelet need them.
pub(super) fn node_bootstrap(
    uid: &str,
    (plan, release): (&ClusterPlan, &str),
    role: BootstrapRole,
    endpoint: &str,
) -> NodeBootstrap {
    let settings = &plan.settings;
    NodeBootstrap {
        cluster_uid: uid.to_string(),
        role,
        kubernetes_version: release.to_string(),
        api_endpoint: endpoint.to_string(),
        pod_cidr: plan.network.pod_cidr,
        service_cidr: plan.network.service_cidr,
        max_pods_per_node: plan.workers.max_pods_per_node,
        pod_security: settings.security.pod_security_level,
        audit: settings.security.audit_logging,
        audit_log_retention_days: settings.security.audit_log_retention_days,
        secrets_encryption: settings.security.secrets_encryption,
        etcd_quota_backend_gib: settings.etcd.quota_backend_gib,
        anonymous_auth: settings.security.anonymous_auth,
        system_reserved: settings.workers.system_reserved,
        eviction_hard: settings.workers.eviction_hard,
    }
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
