//! The decisions of a Smart Cluster type, typed: every row of the decision table is a field
//! here (`controlPlane.rootDiskGiB` is `control_plane.root_disk_gib`), and a plan carries
//! its type's settings, so that the controllers and providers read a typed field, never a
//! row by name. A row computed for each cluster (the control plane's instance type, say)
//! keeps here only the parameters its computation takes from the type. The values of the
//! two built-in types are [`ClusterSettings::of`]; the reasons and which rows are enforced
//! are the planner's table.

use std::fmt;

use ipnet::Ipv4Net;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::cluster::ClusterType;
use crate::maintenance::{MaintenanceWindow, ReleaseChannel, WindowDay};

/// An enum of named choices: its wire names (camelCase) and the words users read.
macro_rules! choice {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
        #[serde(rename_all = "camelCase")]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every choice, in the order of the table.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The choice as users read it in the decision table.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

choice!(
    /// Where etcd runs.
    EtcdTopology {
        /// On the control-plane nodes, as kubeadm runs it by default.
        Stacked => "stacked",
    }
);

choice!(
    /// An EBS volume type.
    DiskType {
        /// 3,000 IOPS whatever the size.
        Gp3 => "gp3",
        /// IOPS that grow with the size.
        Gp2 => "gp2",
        /// Provisioned IOPS.
        Io2 => "io2",
    }
);

choice!(
    /// Whose VPC a cluster runs in.
    VpcTenancy {
        /// The project's developer clusters in the region share one.
        Shared => "shared by the project's developer clusters in the region",
        /// The cluster's own.
        Dedicated => "dedicated",
    }
);

choice!(
    /// The pod network.
    Cni {
        /// Cilium, eBPF networking with network policy.
        Cilium => "cilium",
    }
);

choice!(
    /// What the pod network allows between namespaces until a policy says otherwise.
    DefaultNetworkPolicy {
        /// Everything.
        AllowAll => "allow-all",
        /// Nothing from other namespaces.
        DenyIngressBetweenNamespaces => "deny-ingress-between-namespaces",
    }
);

choice!(
    /// Who can reach the cluster's API.
    EndpointAccess {
        /// The internet (within the allowed ranges).
        Public => "public",
        /// The VPC and the networks peered with it.
        Private => "private",
    }
);

choice!(
    /// Which zones the API's load balancer sends each zone's traffic to.
    LoadBalancerScope {
        /// Its own zone only.
        SingleZone => "single-zone",
        /// Every zone's nodes.
        CrossZone => "cross-zone",
    }
);

choice!(
    /// The addresses nodes, pods and Services get.
    IpFamily {
        /// IPv4 only.
        Ipv4 => "ipv4",
    }
);

choice!(
    /// How workers are spread over the cluster's zones.
    WorkerSpread {
        /// Wherever capacity is cheapest.
        None => "none",
        /// At least one worker in each zone.
        OnePerZone => "at least one per zone",
    }
);

choice!(
    /// How workers' instances are bought.
    CapacityType {
        /// On demand.
        OnDemand => "on-demand",
        /// Spot, interruptible.
        Spot => "spot",
    }
);

choice!(
    /// The Pod Security Standard every namespace is held to unless it says otherwise.
    PodSecurityLevel {
        /// Unrestricted.
        Privileged => "privileged",
        /// Prevents known privilege escalations.
        Baseline => "baseline",
        /// Hardened: no root, no privilege escalation.
        Restricted => "restricted",
    }
);

choice!(
    /// How Secrets are stored in etcd.
    SecretsEncryption {
        /// In the clear.
        None => "none",
        /// AES-CBC with a key of the cluster's.
        Aescbc => "aescbc",
    }
);

choice!(
    /// What the API server's audit log keeps.
    AuditPolicy {
        /// Who did what to which object, for every request.
        Metadata => "Metadata",
        /// The bodies of every write as well, and metadata of reads.
        RequestResponseForWrites => "RequestResponse for writes, Metadata for reads",
    }
);

choice!(
    /// Which control-plane log lines are kept.
    ControlPlaneLogs {
        /// Errors only.
        Errors => "errors",
        /// Every line.
        All => "all",
    }
);

/// A bound on the workers: the default when the request gives none, and the limit a
/// request may not pass (the fewest for `minNodes`, the most for `maxNodes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeBound {
    /// When the request says nothing.
    pub default: u32,
    /// What no request may pass.
    pub limit: u32,
}

/// Which instance families right-sizing may use, beyond the request's own filters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FamilyRule {
    /// Whether burstable families (`t3`, `t4g`, …) are among them.
    pub burstable: bool,
}

/// The smallest a cluster's first workers are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InitialTypeRule {
    /// vCPUs at least.
    pub min_vcpus: u32,
    /// Memory at least.
    #[serde(rename = "minMemoryGiB")]
    pub min_memory_gib: u32,
}

/// What a node holds back from pods for the kubelet and the runtime (`systemReserved`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Reserved {
    /// CPU in millicores.
    pub cpu_millis: u32,
    /// Memory in MiB.
    #[serde(rename = "memoryMiB")]
    pub memory_mib: u32,
}

impl fmt::Display for Reserved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cpu={}m,memory={}",
            self.cpu_millis,
            mebibytes(self.memory_mib)
        )
    }
}

/// The kubelet's hard eviction thresholds (`evictionHard`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EvictionThresholds {
    /// Evict when less memory than this is available.
    #[serde(rename = "memoryAvailableMiB")]
    pub memory_available_mib: u32,
    /// Evict when less of the node's filesystem than this share is free, if set.
    pub nodefs_available_percent: Option<u32>,
}

impl fmt::Display for EvictionThresholds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "memory.available<{}",
            mebibytes(self.memory_available_mib)
        )?;
        if let Some(percent) = self.nodefs_available_percent {
            write!(f, ",nodefs.available<{percent}%")?;
        }
        Ok(())
    }
}

/// A quantity in Kubernetes' notation: whole GiB as `Gi`, the rest as `Mi`.
fn mebibytes(mib: u32) -> String {
    if mib.is_multiple_of(1024) {
        format!("{}Gi", mib / 1024)
    } else {
        format!("{mib}Mi")
    }
}

/// The instance metadata service as instances see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceMetadata {
    /// IMDSv2: every read needs a session token.
    pub tokens_required: bool,
    /// How many network hops a response travels: 1 keeps it from pods behind a bridge.
    pub hop_limit: u8,
}

impl fmt::Display for InstanceMetadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let version = if self.tokens_required {
            "IMDSv2 required"
        } else {
            "IMDSv1 allowed"
        };
        write!(f, "{version}, hop limit {}", self.hop_limit)
    }
}

/// One step of the control plane's size: its instance type while the workers' bound is at
/// most `up_to_workers` (the last step has none).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SizeStep {
    /// The largest worker bound this step serves; `None`: any.
    pub up_to_workers: Option<u32>,
    /// The control plane's instance type.
    pub instance_type: String,
}

fn ladder(steps: &[(Option<u32>, &str)]) -> Vec<SizeStep> {
    steps
        .iter()
        .map(|(up_to_workers, instance_type)| SizeStep {
            up_to_workers: *up_to_workers,
            instance_type: instance_type.to_string(),
        })
        .collect()
}

/// The control plane's decisions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct ControlPlaneSettings {
    pub nodes: u32,
    /// By the workers' bound, smallest first.
    pub instance_type: Vec<SizeStep>,
    pub zones: u32,
    pub etcd_topology: EtcdTopology,
    #[serde(rename = "rootDiskGiB")]
    pub root_disk_gib: u32,
    pub disk_type: DiskType,
}

impl ControlPlaneSettings {
    /// The control plane's instance type for a cluster of at most `max_workers` workers.
    pub fn instance_type_for(&self, max_workers: u32) -> Option<&str> {
        self.instance_type
            .iter()
            .find(|step| step.up_to_workers.is_none_or(|most| max_workers <= most))
            .map(|step| step.instance_type.as_str())
    }
}

/// etcd's decisions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct EtcdSettings {
    #[serde(rename = "quotaBackendGiB")]
    pub quota_backend_gib: u32,
    pub backup_schedule: String,
    pub backup_retention_days: u32,
    pub defrag_schedule: String,
}

/// The network's decisions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct NetworkSettings {
    pub vpc: VpcTenancy,
    #[schemars(with = "String")]
    pub pod_cidr: Ipv4Net,
    #[schemars(with = "String")]
    pub service_cidr: Ipv4Net,
    pub cni: Cni,
    pub default_network_policy: DefaultNetworkPolicy,
    pub api_endpoint: EndpointAccess,
    pub nat_gateways: u32,
    pub load_balancer: LoadBalancerScope,
    pub dns_replicas: u32,
    pub max_connections: u32,
    pub ip_family: IpFamily,
}

/// The workers' decisions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct WorkerSettings {
    pub min_nodes: NodeBound,
    pub max_nodes: NodeBound,
    pub zones: u32,
    pub spread: WorkerSpread,
    /// The most pods a worker takes, whatever its type allows.
    pub max_pods_per_node: u32,
    pub instance_families: FamilyRule,
    pub initial_instance_type: InitialTypeRule,
    #[serde(rename = "rootDiskGiB")]
    pub root_disk_gib: u32,
    pub disk_type: DiskType,
    pub disk_encryption: bool,
    pub capacity_type: CapacityType,
    pub system_reserved: Reserved,
    pub eviction_hard: EvictionThresholds,
}

/// The security decisions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct SecuritySettings {
    pub pod_security_level: PodSecurityLevel,
    pub secrets_encryption: SecretsEncryption,
    /// Days between rotations of the encryption key; `None`: never.
    pub secrets_key_rotation_days: Option<u32>,
    pub audit_logging: AuditPolicy,
    pub audit_log_retention_days: u32,
    pub anonymous_auth: bool,
    pub instance_metadata: InstanceMetadata,
    pub ssh_access: bool,
    pub rbac_drift_guard: bool,
    pub cis_benchmark_level: u8,
    pub deletion_protection: bool,
}

/// The upgrade decisions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct UpgradeSettings {
    /// Stored plans from before channels follow the regular channel.
    #[serde(default)]
    pub channel: ReleaseChannel,
    pub auto_minor: bool,
    pub auto_patch: bool,
    pub max_surge: u32,
    pub max_unavailable: u32,
}

/// When disruptive changes may happen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct MaintenanceSettings {
    pub window: MaintenanceWindow,
}

/// How broken nodes are repaired.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct RepairSettings {
    pub enabled: bool,
    pub max_launch_attempts: u32,
    pub unhealthy_after_seconds: u32,
    pub max_unhealthy_percent: u32,
    pub max_parallel: u32,
}

/// How workers follow their pods.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct AutoscalingSettings {
    pub enabled: bool,
    pub scale_down_delay_seconds: u32,
    pub consolidation: bool,
}

/// What is kept of the cluster's metrics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct MonitoringSettings {
    pub metrics_retention_days: u32,
}

/// What is kept of the control plane's logs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct LoggingSettings {
    pub control_plane_logs: ControlPlaneLogs,
}

/// Every decision a Smart Cluster type makes, typed, by area as the table's keys name them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct ClusterSettings {
    pub control_plane: ControlPlaneSettings,
    pub etcd: EtcdSettings,
    pub network: NetworkSettings,
    pub workers: WorkerSettings,
    pub security: SecuritySettings,
    pub upgrade: UpgradeSettings,
    pub maintenance: MaintenanceSettings,
    pub repair: RepairSettings,
    pub autoscaling: AutoscalingSettings,
    pub monitoring: MonitoringSettings,
    pub logging: LoggingSettings,
}

impl ClusterSettings {
    /// The built-in settings of `cluster_type`: the values of the decision table.
    pub fn of(cluster_type: ClusterType) -> ClusterSettings {
        match cluster_type {
            ClusterType::Developer => ClusterSettings::developer(),
            ClusterType::Production => ClusterSettings::production(),
        }
    }

    fn developer() -> ClusterSettings {
        ClusterSettings {
            control_plane: ControlPlaneSettings {
                nodes: 1,
                instance_type: ladder(&[(Some(10), "t3.medium"), (None, "t3.large")]),
                zones: 1,
                etcd_topology: EtcdTopology::Stacked,
                root_disk_gib: 50,
                disk_type: DiskType::Gp3,
            },
            etcd: EtcdSettings {
                quota_backend_gib: 2,
                backup_schedule: "daily at 03:00 UTC".into(),
                backup_retention_days: 3,
                defrag_schedule: "weekly".into(),
            },
            network: NetworkSettings {
                vpc: VpcTenancy::Shared,
                pod_cidr: "100.64.0.0/16".parse().expect("a CIDR"),
                service_cidr: "172.20.0.0/16".parse().expect("a CIDR"),
                cni: Cni::Cilium,
                default_network_policy: DefaultNetworkPolicy::AllowAll,
                api_endpoint: EndpointAccess::Public,
                nat_gateways: 1,
                load_balancer: LoadBalancerScope::SingleZone,
                dns_replicas: 1,
                max_connections: 0,
                ip_family: IpFamily::Ipv4,
            },
            workers: WorkerSettings {
                min_nodes: NodeBound {
                    default: 1,
                    limit: 1,
                },
                max_nodes: NodeBound {
                    default: 10,
                    limit: 50,
                },
                zones: 1,
                spread: WorkerSpread::None,
                max_pods_per_node: 110,
                instance_families: FamilyRule { burstable: true },
                initial_instance_type: InitialTypeRule {
                    min_vcpus: 2,
                    min_memory_gib: 4,
                },
                root_disk_gib: 50,
                disk_type: DiskType::Gp3,
                disk_encryption: true,
                capacity_type: CapacityType::OnDemand,
                system_reserved: Reserved {
                    cpu_millis: 100,
                    memory_mib: 512,
                },
                eviction_hard: EvictionThresholds {
                    memory_available_mib: 200,
                    nodefs_available_percent: None,
                },
            },
            security: SecuritySettings {
                pod_security_level: PodSecurityLevel::Baseline,
                secrets_encryption: SecretsEncryption::Aescbc,
                secrets_key_rotation_days: None,
                audit_logging: AuditPolicy::Metadata,
                audit_log_retention_days: 7,
                anonymous_auth: false,
                instance_metadata: InstanceMetadata {
                    tokens_required: true,
                    hop_limit: 1,
                },
                ssh_access: false,
                rbac_drift_guard: true,
                cis_benchmark_level: 1,
                deletion_protection: false,
            },
            upgrade: UpgradeSettings {
                channel: ReleaseChannel::Regular,
                auto_minor: true,
                auto_patch: true,
                max_surge: 1,
                max_unavailable: 0,
            },
            maintenance: MaintenanceSettings {
                window: MaintenanceWindow::any_time(),
            },
            repair: RepairSettings {
                enabled: true,
                max_launch_attempts: 3,
                unhealthy_after_seconds: 600,
                max_unhealthy_percent: 40,
                max_parallel: 1,
            },
            autoscaling: AutoscalingSettings {
                enabled: true,
                scale_down_delay_seconds: 300,
                consolidation: true,
            },
            monitoring: MonitoringSettings {
                metrics_retention_days: 1,
            },
            logging: LoggingSettings {
                control_plane_logs: ControlPlaneLogs::Errors,
            },
        }
    }

    fn production() -> ClusterSettings {
        let developer = ClusterSettings::developer();
        ClusterSettings {
            control_plane: ControlPlaneSettings {
                nodes: 3,
                instance_type: ladder(&[
                    (Some(10), "m7i.large"),
                    (Some(100), "m7i.xlarge"),
                    (Some(500), "m7i.2xlarge"),
                    (None, "m7i.4xlarge"),
                ]),
                zones: 3,
                root_disk_gib: 100,
                ..developer.control_plane
            },
            etcd: EtcdSettings {
                quota_backend_gib: 8,
                backup_schedule: "hourly".into(),
                backup_retention_days: 30,
                defrag_schedule: "daily, one member at a time".into(),
            },
            network: NetworkSettings {
                vpc: VpcTenancy::Dedicated,
                pod_cidr: "100.64.0.0/14".parse().expect("a CIDR"),
                default_network_policy: DefaultNetworkPolicy::DenyIngressBetweenNamespaces,
                api_endpoint: EndpointAccess::Private,
                nat_gateways: 3,
                load_balancer: LoadBalancerScope::CrossZone,
                dns_replicas: 3,
                max_connections: 50,
                ..developer.network
            },
            workers: WorkerSettings {
                min_nodes: NodeBound {
                    default: 3,
                    limit: 3,
                },
                max_nodes: NodeBound {
                    default: 100,
                    limit: 1000,
                },
                zones: 3,
                spread: WorkerSpread::OnePerZone,
                instance_families: FamilyRule { burstable: false },
                initial_instance_type: InitialTypeRule {
                    min_vcpus: 2,
                    min_memory_gib: 8,
                },
                root_disk_gib: 100,
                system_reserved: Reserved {
                    cpu_millis: 200,
                    memory_mib: 1024,
                },
                eviction_hard: EvictionThresholds {
                    memory_available_mib: 500,
                    nodefs_available_percent: Some(10),
                },
                ..developer.workers
            },
            security: SecuritySettings {
                pod_security_level: PodSecurityLevel::Restricted,
                secrets_key_rotation_days: Some(90),
                audit_logging: AuditPolicy::RequestResponseForWrites,
                audit_log_retention_days: 365,
                cis_benchmark_level: 2,
                deletion_protection: true,
                ..developer.security
            },
            upgrade: UpgradeSettings {
                channel: ReleaseChannel::Stable,
                auto_minor: false,
                max_surge: 3,
                ..developer.upgrade
            },
            maintenance: MaintenanceSettings {
                window: MaintenanceWindow {
                    day: WindowDay::Saturday,
                    start: "02:00".into(),
                    hours: 4,
                },
            },
            repair: RepairSettings {
                max_launch_attempts: 5,
                unhealthy_after_seconds: 300,
                max_unhealthy_percent: 33,
                max_parallel: 3,
                ..developer.repair
            },
            autoscaling: AutoscalingSettings {
                scale_down_delay_seconds: 600,
                ..developer.autoscaling
            },
            monitoring: MonitoringSettings {
                metrics_retention_days: 15,
            },
            logging: LoggingSettings {
                control_plane_logs: ControlPlaneLogs::All,
            },
        }
    }
}
