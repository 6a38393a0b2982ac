//! How an instance becomes a node of its cluster when it boots. The lifecycle controller
//! says it once, from the cluster's plan, for every instance it launches; a provider whose
//! instances boot a real operating system renders it into their user data (the `aws`
//! provider: cloud-init running kubeadm), and the sim, whose nodes are simulated, needs only
//! the version its image names.

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

pub use dialtone_types::settings::{
    AuditPolicy, EvictionThresholds, PodSecurityLevel, Reserved, SecretsEncryption,
};

/// What an instance does at boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum BootstrapRole {
    /// Starts the cluster: the first control-plane node, while no other runs (`kubeadm init`).
    InitControlPlane,
    /// Joins a running control plane as another API server and etcd member.
    JoinControlPlane,
    /// Joins as a worker.
    Worker,
}

/// Everything an instance needs to become a node of its cluster, but its secrets: the
/// provider holds the cluster's certificate authorities and tokens itself, so that they
/// never travel through the controller or the store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeBootstrap {
    /// The cluster's uid: the provider's secrets for it are found by it.
    pub cluster_uid: String,
    pub role: BootstrapRole,
    /// The Kubernetes patch release the node installs (`1.35.2`), from the version
    /// catalogue.
    pub kubernetes_version: String,
    /// Where the cluster's API answers: its load balancer's DNS name.
    pub api_endpoint: String,
    pub pod_cidr: Ipv4Net,
    pub service_cidr: Ipv4Net,
    pub max_pods_per_node: u32,
    pub pod_security: PodSecurityLevel,
    pub audit: AuditPolicy,
    /// How long the API server keeps its audit log.
    pub audit_log_retention_days: u32,
    /// How Secrets are stored in etcd: with a key of the cluster's, or in the clear.
    pub secrets_encryption: SecretsEncryption,
    pub etcd_quota_backend_gib: u32,
    /// Whether the API server answers requests without credentials beyond its health checks.
    pub anonymous_auth: bool,
    /// What the kubelet holds back from pods.
    pub system_reserved: Reserved,
    /// When the kubelet evicts pods.
    pub eviction_hard: EvictionThresholds,
}

/// The API server's audit policy for `audit`: health checks and kube-proxy's watches not
/// logged, Secrets' and ConfigMaps' bodies never, and with `RequestResponseForWrites` the
/// bodies of every other write. Every provider's control plane boots with it, and Dialtone
/// puts it back when it drifts inside the cluster.
pub fn audit_policy(audit: AuditPolicy) -> dialtone_kubeapi::audit::Policy {
    use dialtone_kubeapi::audit::{GroupResources, Level, Policy, Rule};

    let strings = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut rules = vec![
        Rule {
            users: strings(&["system:kube-proxy"]),
            verbs: strings(&["watch"]),
            ..Rule::at(Level::None)
        },
        Rule {
            non_resource_urls: strings(&["/healthz*", "/livez*", "/readyz*", "/version"]),
            ..Rule::at(Level::None)
        },
        Rule {
            resources: vec![GroupResources {
                group: String::new(),
                resources: strings(&["secrets", "configmaps"]),
                resource_names: Vec::new(),
            }],
            ..Rule::at(Level::Metadata)
        },
    ];
    if audit == AuditPolicy::RequestResponseForWrites {
        rules.push(Rule {
            verbs: strings(&["create", "update", "patch", "delete", "deletecollection"]),
            ..Rule::at(Level::RequestResponse)
        });
    }
    rules.push(Rule::at(Level::Metadata));
    Policy::new(strings(&["RequestReceived"]), rules)
}
