//! The decision table: every choice a cluster type makes, in one place. A row's value is a
//! typed field of [`ClusterSettings`], the settings every plan carries; the table adds why,
//! and whether anything built or checked follows from it (enforced) or it is only
//! recorded and shown for now (advisory).

use std::fmt;

use dialtone_types::ClusterSettings;
pub use dialtone_types::ClusterType;
use dialtone_types::settings::{SizeStep, VpcTenancy};

/// How a decision's value is found, as users read it.
#[derive(Clone, Copy)]
pub enum How {
    /// The type's setting.
    Fixed(fn(&ClusterSettings) -> String),
    /// Computed for each cluster from the request and its context, with the type's
    /// parameters; this says how.
    Computed(fn(&ClusterSettings) -> String),
}

/// Whether a decision changes what gets built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enforcement {
    /// Something built or checked follows from it; this names what.
    Enforced(&'static str),
    /// Recorded in every plan and shown, but nothing reads it yet.
    Advisory,
}

/// A decision's value for one type: fixed, or how it is computed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Always this value.
    Fixed(String),
    /// Computed for each cluster, as described.
    Computed(String),
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Fixed(text) | Rule::Computed(text) => f.write_str(text),
        }
    }
}

/// One decision of the table.
pub struct Decision {
    /// `area.name`, as shown to users and recorded in plans; in camelCase, the path of its
    /// field in [`ClusterSettings`].
    pub key: &'static str,
    /// Its value, read from a type's settings.
    pub how: How,
    /// What follows from it.
    pub enforcement: Enforcement,
    /// Why, in one line.
    pub reason: &'static str,
}

impl Decision {
    /// How `cluster_type` decides this, with its built-in settings.
    pub fn rule(&self, cluster_type: ClusterType) -> Rule {
        self.rule_in(&ClusterSettings::of(cluster_type))
    }

    /// How a type with `settings` decides this.
    pub fn rule_in(&self, settings: &ClusterSettings) -> Rule {
        match self.how {
            How::Fixed(value) => Rule::Fixed(value(settings)),
            How::Computed(how) => Rule::Computed(how(settings)),
        }
    }

    /// Whether something built or checked follows from it.
    pub fn is_enforced(&self) -> bool {
        matches!(self.enforcement, Enforcement::Enforced(_))
    }

    /// The decision named `key` (`area.name`), if the table has it.
    pub fn find(key: &str) -> Option<&'static Decision> {
        DECISIONS.iter().find(|d| d.key == key)
    }
}

use Enforcement::{Advisory, Enforced};
use How::{Computed, Fixed};

const fn row(
    key: &'static str,
    how: How,
    enforcement: Enforcement,
    reason: &'static str,
) -> Decision {
    Decision {
        key,
        how,
        enforcement,
        reason,
    }
}

/// The control plane's sizes by worker bound, as the table says them.
fn ladder_text(steps: &[SizeStep]) -> String {
    let mut parts = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        parts.push(match (i, step.up_to_workers) {
            (0, Some(most)) => format!("{} up to {most} workers", step.instance_type),
            (_, Some(most)) => format!("{} up to {most}", step.instance_type),
            (_, None) => format!("{} above", step.instance_type),
        });
    }
    let last = parts.pop().unwrap_or_default();
    match parts.is_empty() {
        true => last,
        false => format!("{}, {last}", parts.join(", ")),
    }
}

/// 1000 as 1,000.
fn thousands(n: u32) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Every decision a cluster type makes.
pub static DECISIONS: &[Decision] = &[
    // Control plane.
    row(
        "controlPlane.nodes",
        Fixed(|s| s.control_plane.nodes.to_string()),
        Enforced("the control-plane instances launched"),
        "Three stacked etcd members keep quorum through the loss of any one node; one is enough to develop against.",
    ),
    row(
        "controlPlane.zones",
        Fixed(|s| s.control_plane.zones.to_string()),
        Enforced("the zones the control-plane instances are spread over"),
        "One control-plane node per zone survives a zone outage.",
    ),
    row(
        "controlPlane.etcdTopology",
        Fixed(|s| s.control_plane.etcd_topology.to_string()),
        Advisory,
        "etcd on the control-plane nodes halves the machines to run and repair, as kubeadm does by default.",
    ),
    row(
        "controlPlane.instanceType",
        Computed(|s| ladder_text(&s.control_plane.instance_type)),
        Enforced("the control-plane instances' type"),
        "The API server and etcd grow with the number of nodes and objects; size by the worker bound, not today's count, so scaling up needs no control-plane resize.",
    ),
    row(
        "controlPlane.rootDiskGiB",
        Fixed(|s| s.control_plane.root_disk_gib.to_string()),
        Enforced("the control-plane instances' root volume size"),
        "Room for images, logs and etcd snapshots between rotations.",
    ),
    row(
        "controlPlane.diskType",
        Fixed(|s| s.control_plane.disk_type.to_string()),
        Enforced("the control-plane instances' root volume type"),
        "etcd is fsync-bound: gp3 gives 3,000 IOPS whatever the size.",
    ),
    row(
        "etcd.quotaBackendGiB",
        Fixed(|s| s.etcd.quota_backend_gib.to_string()),
        Enforced("etcd's --quota-backend-bytes on every control-plane node"),
        "etcd's recommended ceiling; 2 GiB is its default, 8 GiB its largest recommended.",
    ),
    row(
        "etcd.backupSchedule",
        Fixed(|s| s.etcd.backup_schedule.clone()),
        Advisory,
        "A production cluster can lose at most an hour of state.",
    ),
    row(
        "etcd.backupRetentionDays",
        Fixed(|s| s.etcd.backup_retention_days.to_string()),
        Advisory,
        "A month of history covers late-noticed mistakes in production.",
    ),
    row(
        "etcd.defragSchedule",
        Fixed(|s| s.etcd.defrag_schedule.clone()),
        Advisory,
        "Defragmentation reclaims space; one member at a time keeps quorum.",
    ),
    row(
        "controlPlane.apiServerReplicas",
        Computed(|_| "one per control-plane node".into()),
        Enforced("an API server on each control-plane instance, behind the load balancer"),
        "Each control-plane node serves the API behind the load balancer.",
    ),
    // Network.
    row(
        "network.vpc",
        Fixed(|s| s.network.vpc.to_string()),
        Enforced("a VPC of the cluster's own, or the project's shared one"),
        "Sharing saves developer clusters a VPC each; production needs its own to peer with customer VPCs.",
    ),
    row(
        "network.vpcCidr",
        Computed(|s| {
            match s.network.vpc {
            VpcTenancy::Shared => "the project's shared /16 in the region, allocated from the org's address plan on first use".into(),
            VpcTenancy::Dedicated => "a /16 from the org's address plan that overlaps no other network of the org".into(),
        }
        }),
        Enforced("the VPC's range"),
        "Non-overlapping networks can be peered and routed to each other.",
    ),
    row(
        "network.subnets",
        Computed(|s| match s.workers.zones {
            1 => "one /20 of the VPC in the cluster's zone".into(),
            _ => "one /20 of the VPC per zone".into(),
        }),
        Enforced("the subnets created, one per zone"),
        "A subnet per zone keeps nodes and load balancers zonal; /20 holds 4,091 addresses.",
    ),
    row(
        "network.podCidr",
        Fixed(|s| s.network.pod_cidr.to_string()),
        Enforced("the pod network's range on every node"),
        "Pods use an overlay range from the shared address space, which never collides with VPC routes.",
    ),
    row(
        "network.serviceCidr",
        Fixed(|s| s.network.service_cidr.to_string()),
        Enforced("the API servers' Service range"),
        "Service IPs never leave the cluster; a fixed range outside the address plan keeps them apart.",
    ),
    row(
        "network.cni",
        Fixed(|s| s.network.cni.to_string()),
        Advisory,
        "eBPF networking with network policy and no kube-proxy iptables growth.",
    ),
    row(
        "network.defaultNetworkPolicy",
        Fixed(|s| s.network.default_network_policy.to_string()),
        Advisory,
        "Production namespaces are isolated unless a policy opens them.",
    ),
    row(
        "network.apiEndpoint",
        Fixed(|s| s.network.api_endpoint.to_string()),
        Enforced("an internet-facing or an internal load balancer for the API"),
        "A production API is reachable from the VPC and peered networks only.",
    ),
    row(
        "network.apiAllowedCidrs",
        Computed(|_| "the org's address plan".into()),
        Enforced("the sources the API's security group lets in"),
        "Only the org's own networks may reach a production API server.",
    ),
    row(
        "network.natGateways",
        Fixed(|s| s.network.nat_gateways.to_string()),
        Advisory,
        "One NAT gateway per zone keeps egress up through a zone outage.",
    ),
    row(
        "network.loadBalancer",
        Fixed(|s| s.network.load_balancer.to_string()),
        Enforced("cross-zone load balancing on the API's load balancer"),
        "A cross-zone load balancer keeps the API reachable when a zone fails.",
    ),
    row(
        "network.dnsReplicas",
        Fixed(|s| s.network.dns_replicas.to_string()),
        Advisory,
        "One CoreDNS replica per zone.",
    ),
    row(
        "network.maxConnections",
        Fixed(|s| s.network.max_connections.to_string()),
        Enforced("the connections (VPC peerings) admission lets the cluster have"),
        "VPC peering needs a dedicated VPC; AWS allows 50 active peerings per VPC by default.",
    ),
    row(
        "network.ipFamily",
        Fixed(|s| s.network.ip_family.to_string()),
        Advisory,
        "Every supported region and peer speaks IPv4.",
    ),
    // Workers.
    row(
        "workers.minNodes",
        Computed(|s| {
            format!(
                "the request's, default {}, at least {}",
                s.workers.min_nodes.default, s.workers.min_nodes.limit
            )
        }),
        Enforced("the fewest workers kept, and the requests refused"),
        "Production keeps a worker in every zone.",
    ),
    row(
        "workers.maxNodes",
        Computed(|s| {
            format!(
                "the request's, default {}, at most {}",
                s.workers.max_nodes.default,
                thousands(s.workers.max_nodes.limit)
            )
        }),
        Enforced("the most workers right-sizing adds, and the requests refused"),
        "A bound on cost and on control-plane load.",
    ),
    row(
        "workers.zones",
        Fixed(|s| s.workers.zones.to_string()),
        Enforced("the zones workers are launched in"),
        "Workers follow the control plane's zones.",
    ),
    row(
        "workers.spread",
        Fixed(|s| s.workers.spread.to_string()),
        Advisory,
        "Zone-spread workloads need a node in every zone.",
    ),
    row(
        "workers.maxPodsPerNode",
        Computed(|s| {
            format!(
                "the instance type's ENI limit, at most {}",
                s.workers.max_pods_per_node
            )
        }),
        Enforced("the kubelet's maxPods on every worker"),
        "The VPC CNI gives each pod a VPC address; 110 is the Kubernetes default ceiling.",
    ),
    row(
        "workers.instanceFamilies",
        Computed(|s| {
            format!(
                "per class and architecture, the family with the best price per unit of performance among current-generation, non-GPU, non-metal{}, filtered by the request",
                if s.workers.instance_families.burstable {
                    " ones, burstable included"
                } else {
                    ", non-burstable ones"
                }
            )
        }),
        Enforced("the instance types right-sizing may launch"),
        "Newer processors do more per dollar; a cluster keeps its families until its next version upgrade, so nodes move once, with the upgrade. Burstable credits run out under steady production load.",
    ),
    row(
        "workers.initialInstanceType",
        Computed(|s| {
            format!(
                "the cheapest type of the families with at least {} vCPU and {} GiB offered in {}",
                s.workers.initial_instance_type.min_vcpus,
                s.workers.initial_instance_type.min_memory_gib,
                if s.workers.zones == 1 {
                    "the zones"
                } else {
                    "every zone"
                }
            )
        }),
        Enforced("the first workers' instance type"),
        "A starting point; right-sizing replaces it with the cheapest mix for the pods.",
    ),
    row(
        "workers.nodeImage",
        Computed(|_| "dialtone-node-<kubernetes version>".into()),
        Enforced("the machine image every instance boots"),
        "One image per Kubernetes version, built and tested together.",
    ),
    row(
        "workers.rootDiskGiB",
        Fixed(|s| s.workers.root_disk_gib.to_string()),
        Enforced("the workers' root volume size"),
        "Room for container images and logs.",
    ),
    row(
        "workers.diskType",
        Fixed(|s| s.workers.disk_type.to_string()),
        Enforced("the workers' root volume type"),
        "Baseline 3,000 IOPS at the lowest price per GiB.",
    ),
    row(
        "workers.diskEncryption",
        Fixed(|s| s.workers.disk_encryption.to_string()),
        Enforced("encryption of every instance's root volume"),
        "Data at rest is encrypted everywhere.",
    ),
    row(
        "workers.capacityType",
        Fixed(|s| s.workers.capacity_type.to_string()),
        Advisory,
        "Predictable capacity; spot comes with its own interruption handling.",
    ),
    row(
        "workers.systemReserved",
        Fixed(|s| s.workers.system_reserved.to_string()),
        Enforced("the kubelet's systemReserved on every node"),
        "Keeps kubelet and the runtime alive under pod pressure.",
    ),
    row(
        "workers.evictionHard",
        Fixed(|s| s.workers.eviction_hard.to_string()),
        Enforced("the kubelet's evictionHard on every node"),
        "Evict pods before the kernel's OOM killer picks a victim.",
    ),
    // Security.
    row(
        "security.podSecurityLevel",
        Fixed(|s| s.security.pod_security_level.to_string()),
        Enforced("the API server's PodSecurity admission defaults"),
        "Pod Security Standards: restricted forbids privilege escalation and root.",
    ),
    row(
        "security.secretsEncryption",
        Fixed(|s| s.security.secrets_encryption.to_string()),
        Enforced("the API server's encryption provider for Secrets"),
        "Secrets are encrypted in etcd with a key of the cluster's.",
    ),
    row(
        "security.secretsKeyRotationDays",
        Fixed(|s| {
            s.security
                .secrets_key_rotation_days
                .map_or("never".into(), |days| days.to_string())
        }),
        Advisory,
        "A key that is rotated limits what one leaked key exposes.",
    ),
    row(
        "security.auditLogging",
        Fixed(|s| s.security.audit_logging.to_string()),
        Enforced("the API server's audit policy"),
        "Production keeps who changed what and how.",
    ),
    row(
        "security.auditLogRetentionDays",
        Fixed(|s| s.security.audit_log_retention_days.to_string()),
        Enforced("the API server's --audit-log-maxage"),
        "A year of audit history for compliance reviews.",
    ),
    row(
        "security.anonymousAuth",
        Fixed(|s| s.security.anonymous_auth.to_string()),
        Enforced("the API server's anonymous authentication"),
        "Every request to the API server is authenticated.",
    ),
    row(
        "security.instanceMetadata",
        Fixed(|s| s.security.instance_metadata.to_string()),
        Enforced("every instance's metadata options"),
        "Pods cannot read the node's cloud credentials.",
    ),
    row(
        "security.sshAccess",
        Fixed(|s| s.security.ssh_access.to_string()),
        Enforced("whether the nodes' security group opens port 22 to the VPC"),
        "Nodes are repaired by replacement, never by hand.",
    ),
    row(
        "security.rbacDriftGuard",
        Fixed(|s| s.security.rbac_drift_guard.to_string()),
        Advisory,
        "The admission webhook keeps RBAC as the access policies cast it.",
    ),
    row(
        "security.cisBenchmarkLevel",
        Fixed(|s| s.security.cis_benchmark_level.to_string()),
        Advisory,
        "CIS Kubernetes Benchmark: level 2 adds defence in depth for production.",
    ),
    row(
        "security.deletionProtection",
        Fixed(|s| s.security.deletion_protection.to_string()),
        Enforced("whether the API refuses to delete the cluster"),
        "A production cluster is deleted only once its protection is turned off.",
    ),
    // Operations.
    row(
        "kubernetes.version",
        Computed(|_| "the request's, default the newest its channel offers".into()),
        Enforced("the minor every instance installs, at the patch its channel offers"),
        "New clusters start on the newest minor their channel offers.",
    ),
    row(
        "upgrade.channel",
        Fixed(|s| s.upgrade.channel.to_string()),
        Enforced("how soon new releases reach the cluster (docs/versions.md)"),
        "Developers see releases a week after upstream; production waits until others have run them for two weeks (patches) or three months (minors).",
    ),
    row(
        "upgrade.autoMinor",
        Fixed(|s| s.upgrade.auto_minor.to_string()),
        Enforced("whether the cluster moves to the next minor its channel offers, in its window"),
        "Developer clusters follow the newest minor; production upgrades when its owners say so, or at the end of support.",
    ),
    row(
        "upgrade.autoPatch",
        Fixed(|s| s.upgrade.auto_patch.to_string()),
        Enforced("whether the cluster moves to its channel's newest patch, in its window"),
        "Patch releases carry security fixes.",
    ),
    row(
        "upgrade.maxSurge",
        Fixed(|s| s.upgrade.max_surge.to_string()),
        Advisory,
        "Production surges one node per zone, keeping capacity in each.",
    ),
    row(
        "upgrade.maxUnavailable",
        Fixed(|s| s.upgrade.max_unavailable.to_string()),
        Advisory,
        "Surge first, so running pods never lose capacity.",
    ),
    row(
        "maintenance.window",
        Fixed(|s| s.maintenance.window.to_string()),
        Enforced("when automatic upgrades may replace nodes"),
        "Disruptive production changes wait for a quiet window.",
    ),
    row(
        "repair.enabled",
        Fixed(|s| s.repair.enabled.to_string()),
        Enforced("whether broken nodes are replaced"),
        "Failed nodes are replaced without anyone paging.",
    ),
    row(
        "repair.maxLaunchAttempts",
        Fixed(|s| s.repair.max_launch_attempts.to_string()),
        Enforced("the failed launches after which the cluster reports Failed"),
        "After this many failed launches of a node in a row the cluster reports Failed and what to do; retries go on at the longest backoff.",
    ),
    row(
        "repair.unhealthyAfterSeconds",
        Fixed(|s| s.repair.unhealthy_after_seconds.to_string()),
        Enforced("how long a node may be NotReady or unreachable before it is replaced"),
        "How long a node may be NotReady or unreachable before it is replaced; a node that breaks again within an hour of its repair waits twice as long.",
    ),
    row(
        "repair.maxUnhealthyPercent",
        Fixed(|s| s.repair.max_unhealthy_percent.to_string()),
        Enforced("the share of broken workers above which worker repairs stop"),
        "Above this, repair stops: mass failure is an outage to investigate, not nodes to churn.",
    ),
    row(
        "repair.maxParallel",
        Fixed(|s| s.repair.max_parallel.to_string()),
        Enforced("how many worker repairs run at once"),
        "Production repairs up to three workers at once; control-plane nodes go one at a time whatever it says, to keep etcd's quorum.",
    ),
    row(
        "autoscaling.enabled",
        Fixed(|s| s.autoscaling.enabled.to_string()),
        Enforced("whether right-sizing adds and removes workers"),
        "Clusters follow their pods' needs at the lowest cost.",
    ),
    row(
        "autoscaling.scaleDownDelaySeconds",
        Fixed(|s| s.autoscaling.scale_down_delay_seconds.to_string()),
        Enforced("how long a new worker is kept before consolidation may remove it"),
        "Hysteresis: capacity stays through short dips.",
    ),
    row(
        "autoscaling.consolidation",
        Fixed(|s| s.autoscaling.consolidation.to_string()),
        Enforced("whether right-sizing removes and replaces underused workers"),
        "Underused nodes are replaced by a cheaper fit.",
    ),
    row(
        "monitoring.metricsRetentionDays",
        Fixed(|s| s.monitoring.metrics_retention_days.to_string()),
        Advisory,
        "Two weeks of metrics cover capacity planning and incident review.",
    ),
    row(
        "logging.controlPlaneLogs",
        Fixed(|s| s.logging.control_plane_logs.to_string()),
        Advisory,
        "Production keeps every control-plane log line for diagnosis.",
    ),
];
