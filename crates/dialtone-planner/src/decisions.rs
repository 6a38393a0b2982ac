//! The decision table: every choice a cluster type makes, in one place.

use std::fmt;

pub use dialtone_types::ClusterType;

/// A fixed value of a decision.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    /// A count or a size (nodes, GiB, seconds, …).
    Int(i64),
    /// A switch that is on or off.
    Bool(bool),
    /// A named choice (a mode, a level, a CIDR).
    Text(&'static str),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(n) => write!(f, "{n}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Text(t) => f.write_str(t),
        }
    }
}

/// How a decision's value is found for one type.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rule {
    /// Always this value.
    Fixed(Value),
    /// Computed from the request and its context, as described.
    Computed(&'static str),
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Fixed(v) => write!(f, "{v}"),
            Rule::Computed(how) => f.write_str(how),
        }
    }
}

/// One decision of the table.
#[derive(Debug, PartialEq)]
pub struct Decision {
    /// `area.name`, as shown to users and recorded in plans.
    pub key: &'static str,
    /// How a developer cluster decides it.
    pub developer: Rule,
    /// How a production cluster decides it.
    pub production: Rule,
    /// Why, in one line.
    pub reason: &'static str,
}

impl Decision {
    /// How `cluster_type` decides this.
    pub fn rule(&self, cluster_type: ClusterType) -> Rule {
        match cluster_type {
            ClusterType::Developer => self.developer,
            ClusterType::Production => self.production,
        }
    }

    /// The decision named `key` (`area.name`), if the table has it.
    pub fn find(key: &str) -> Option<&'static Decision> {
        DECISIONS.iter().find(|d| d.key == key)
    }
}

use Rule::{Computed, Fixed};
use Value::{Bool, Int, Text};

const fn d(key: &'static str, developer: Rule, production: Rule, reason: &'static str) -> Decision {
    Decision {
        key,
        developer,
        production,
        reason,
    }
}

/// Every decision a cluster type makes.
pub static DECISIONS: &[Decision] = &[
    // Control plane.
    d(
        "controlPlane.nodes",
        Fixed(Int(1)),
        Fixed(Int(3)),
        "Three stacked etcd members keep quorum through the loss of any one node; one is enough to develop against.",
    ),
    d(
        "controlPlane.zones",
        Fixed(Int(1)),
        Fixed(Int(3)),
        "One control-plane node per zone survives a zone outage.",
    ),
    d(
        "controlPlane.etcdTopology",
        Fixed(Text("stacked")),
        Fixed(Text("stacked")),
        "etcd on the control-plane nodes halves the machines to run and repair, as kubeadm does by default.",
    ),
    d(
        "controlPlane.instanceType",
        Computed("t3.medium up to 10 workers, t3.large above"),
        Computed(
            "m7i.large up to 10 workers, m7i.xlarge up to 100, m7i.2xlarge up to 500, m7i.4xlarge above",
        ),
        "The API server and etcd grow with the number of nodes and objects; size by the worker bound, not today's count, so scaling up needs no control-plane resize.",
    ),
    d(
        "controlPlane.rootDiskGiB",
        Fixed(Int(50)),
        Fixed(Int(100)),
        "Room for images, logs and etcd snapshots between rotations.",
    ),
    d(
        "controlPlane.diskType",
        Fixed(Text("gp3")),
        Fixed(Text("gp3")),
        "etcd is fsync-bound: gp3 gives 3,000 IOPS whatever the size.",
    ),
    d(
        "etcd.quotaBackendGiB",
        Fixed(Int(2)),
        Fixed(Int(8)),
        "etcd's recommended ceiling; 2 GiB is its default, 8 GiB its largest recommended.",
    ),
    d(
        "etcd.backupSchedule",
        Fixed(Text("daily at 03:00 UTC")),
        Fixed(Text("hourly")),
        "A production cluster can lose at most an hour of state.",
    ),
    d(
        "etcd.backupRetentionDays",
        Fixed(Int(3)),
        Fixed(Int(30)),
        "A month of history covers late-noticed mistakes in production.",
    ),
    d(
        "etcd.defragSchedule",
        Fixed(Text("weekly")),
        Fixed(Text("daily, one member at a time")),
        "Defragmentation reclaims space; one member at a time keeps quorum.",
    ),
    d(
        "controlPlane.apiServerReplicas",
        Computed("one per control-plane node"),
        Computed("one per control-plane node"),
        "Each control-plane node serves the API behind the load balancer.",
    ),
    // Network.
    d(
        "network.vpc",
        Fixed(Text(
            "shared by the project's developer clusters in the region",
        )),
        Fixed(Text("dedicated")),
        "Sharing saves developer clusters a VPC each; production needs its own to peer with customer VPCs.",
    ),
    d(
        "network.vpcCidr",
        Computed(
            "the project's shared /16 in the region, allocated from the org's address plan on first use",
        ),
        Computed("a /16 from the org's address plan that overlaps no other network of the org"),
        "Non-overlapping networks can be peered and routed to each other.",
    ),
    d(
        "network.subnets",
        Computed("one /20 of the VPC in the cluster's zone"),
        Computed("one /20 of the VPC per zone"),
        "A subnet per zone keeps nodes and load balancers zonal; /20 holds 4,091 addresses.",
    ),
    d(
        "network.podCidr",
        Fixed(Text("100.64.0.0/16")),
        Fixed(Text("100.64.0.0/14")),
        "Pods use an overlay range from the shared address space, which never collides with VPC routes.",
    ),
    d(
        "network.serviceCidr",
        Fixed(Text("172.20.0.0/16")),
        Fixed(Text("172.20.0.0/16")),
        "Service IPs never leave the cluster; a fixed range outside the address plan keeps them apart.",
    ),
    d(
        "network.cni",
        Fixed(Text("cilium")),
        Fixed(Text("cilium")),
        "eBPF networking with network policy and no kube-proxy iptables growth.",
    ),
    d(
        "network.defaultNetworkPolicy",
        Fixed(Text("allow-all")),
        Fixed(Text("deny-ingress-between-namespaces")),
        "Production namespaces are isolated unless a policy opens them.",
    ),
    d(
        "network.apiEndpoint",
        Fixed(Text("public")),
        Fixed(Text("private")),
        "A production API is reachable from the VPC and peered networks only.",
    ),
    d(
        "network.apiAllowedCidrs",
        Fixed(Text("0.0.0.0/0")),
        Computed("the org's address plan"),
        "Only the org's own networks may reach a production API server.",
    ),
    d(
        "network.natGateways",
        Fixed(Int(1)),
        Fixed(Int(3)),
        "One NAT gateway per zone keeps egress up through a zone outage.",
    ),
    d(
        "network.loadBalancer",
        Fixed(Text("single-zone")),
        Fixed(Text("cross-zone")),
        "A cross-zone load balancer keeps the API reachable when a zone fails.",
    ),
    d(
        "network.dnsReplicas",
        Fixed(Int(1)),
        Fixed(Int(3)),
        "One CoreDNS replica per zone.",
    ),
    d(
        "network.maxConnections",
        Fixed(Int(0)),
        Fixed(Int(50)),
        "VPC peering needs a dedicated VPC; AWS allows 50 active peerings per VPC by default.",
    ),
    d(
        "network.ipFamily",
        Fixed(Text("ipv4")),
        Fixed(Text("ipv4")),
        "Every supported region and peer speaks IPv4.",
    ),
    // Workers.
    d(
        "workers.minNodes",
        Computed("the request's, default 1, at least 1"),
        Computed("the request's, default 3, at least 3"),
        "Production keeps a worker in every zone.",
    ),
    d(
        "workers.maxNodes",
        Computed("the request's, default 10, at most 50"),
        Computed("the request's, default 100, at most 1,000"),
        "A bound on cost and on control-plane load.",
    ),
    d(
        "workers.zones",
        Fixed(Int(1)),
        Fixed(Int(3)),
        "Workers follow the control plane's zones.",
    ),
    d(
        "workers.spread",
        Fixed(Text("none")),
        Fixed(Text("at least one per zone")),
        "Zone-spread workloads need a node in every zone.",
    ),
    d(
        "workers.maxPodsPerNode",
        Computed("the instance type's ENI limit, at most 110"),
        Computed("the instance type's ENI limit, at most 110"),
        "The VPC CNI gives each pod a VPC address; 110 is the Kubernetes default ceiling.",
    ),
    d(
        "workers.instanceFamilies",
        Computed(
            "per class and architecture, the family with the best price per unit of performance among current-generation, non-GPU, non-metal ones, burstable included, filtered by the request",
        ),
        Computed(
            "per class and architecture, the family with the best price per unit of performance among current-generation, non-GPU, non-metal, non-burstable ones, filtered by the request",
        ),
        "Newer processors do more per dollar; a cluster keeps its families until its next version upgrade, so nodes move once, with the upgrade. Burstable credits run out under steady production load.",
    ),
    d(
        "workers.initialInstanceType",
        Computed(
            "the cheapest type of the families with at least 2 vCPU and 4 GiB offered in the zones",
        ),
        Computed(
            "the cheapest type of the families with at least 2 vCPU and 8 GiB offered in every zone",
        ),
        "A starting point; right-sizing replaces it with the cheapest mix for the pods.",
    ),
    d(
        "workers.nodeImage",
        Computed("dialtone-node-<kubernetes version>"),
        Computed("dialtone-node-<kubernetes version>"),
        "One image per Kubernetes version, built and tested together.",
    ),
    d(
        "workers.rootDiskGiB",
        Fixed(Int(50)),
        Fixed(Int(100)),
        "Room for container images and logs.",
    ),
    d(
        "workers.diskType",
        Fixed(Text("gp3")),
        Fixed(Text("gp3")),
        "Baseline 3,000 IOPS at the lowest price per GiB.",
    ),
    d(
        "workers.diskEncryption",
        Fixed(Bool(true)),
        Fixed(Bool(true)),
        "Data at rest is encrypted everywhere.",
    ),
    d(
        "workers.capacityType",
        Fixed(Text("on-demand")),
        Fixed(Text("on-demand")),
        "Predictable capacity; spot comes with its own interruption handling.",
    ),
    d(
        "workers.systemReserved",
        Fixed(Text("cpu=100m,memory=512Mi")),
        Fixed(Text("cpu=200m,memory=1Gi")),
        "Keeps kubelet and the runtime alive under pod pressure.",
    ),
    d(
        "workers.evictionHard",
        Fixed(Text("memory.available<200Mi")),
        Fixed(Text("memory.available<500Mi,nodefs.available<10%")),
        "Evict pods before the kernel's OOM killer picks a victim.",
    ),
    // Security.
    d(
        "security.podSecurityLevel",
        Fixed(Text("baseline")),
        Fixed(Text("restricted")),
        "Pod Security Standards: restricted forbids privilege escalation and root.",
    ),
    d(
        "security.secretsEncryption",
        Fixed(Text("aescbc")),
        Fixed(Text("aescbc, key rotated every 90 days")),
        "Secrets are encrypted in etcd; production rotates its key.",
    ),
    d(
        "security.auditLogging",
        Fixed(Text("Metadata")),
        Fixed(Text("RequestResponse for writes, Metadata for reads")),
        "Production keeps who changed what and how.",
    ),
    d(
        "security.auditLogRetentionDays",
        Fixed(Int(7)),
        Fixed(Int(365)),
        "A year of audit history for compliance reviews.",
    ),
    d(
        "security.anonymousAuth",
        Fixed(Bool(false)),
        Fixed(Bool(false)),
        "Every request to the API server is authenticated.",
    ),
    d(
        "security.instanceMetadata",
        Fixed(Text("IMDSv2 required, hop limit 1")),
        Fixed(Text("IMDSv2 required, hop limit 1")),
        "Pods cannot read the node's cloud credentials.",
    ),
    d(
        "security.sshAccess",
        Fixed(Bool(false)),
        Fixed(Bool(false)),
        "Nodes are repaired by replacement, never by hand.",
    ),
    d(
        "security.rbacDriftGuard",
        Fixed(Bool(true)),
        Fixed(Bool(true)),
        "The admission webhook keeps RBAC as the access policies cast it.",
    ),
    d(
        "security.cisBenchmarkLevel",
        Fixed(Int(1)),
        Fixed(Int(2)),
        "CIS Kubernetes Benchmark: level 2 adds defence in depth for production.",
    ),
    d(
        "security.deletionProtection",
        Fixed(Bool(false)),
        Fixed(Bool(true)),
        "A production cluster is deleted only once its protection is turned off.",
    ),
    // Operations.
    d(
        "kubernetes.version",
        Computed("the request's, default the newest supported"),
        Computed("the request's, default the newest supported"),
        "New clusters start on the newest supported minor.",
    ),
    d(
        "upgrade.autoMinor",
        Fixed(Bool(true)),
        Fixed(Bool(false)),
        "Developer clusters follow the newest minor; production upgrades when its owners say so.",
    ),
    d(
        "upgrade.autoPatch",
        Fixed(Bool(true)),
        Fixed(Bool(true)),
        "Patch releases carry security fixes.",
    ),
    d(
        "upgrade.maxSurge",
        Fixed(Int(1)),
        Fixed(Int(3)),
        "Production surges one node per zone, keeping capacity in each.",
    ),
    d(
        "upgrade.maxUnavailable",
        Fixed(Int(0)),
        Fixed(Int(0)),
        "Surge first, so running pods never lose capacity.",
    ),
    d(
        "maintenance.window",
        Fixed(Text("any time")),
        Fixed(Text("Sat 02:00-06:00 UTC")),
        "Disruptive production changes wait for a quiet window.",
    ),
    d(
        "repair.enabled",
        Fixed(Bool(true)),
        Fixed(Bool(true)),
        "Failed nodes are replaced without anyone paging.",
    ),
    d(
        "repair.maxLaunchAttempts",
        Fixed(Int(3)),
        Fixed(Int(5)),
        "After this many failed launches of a node in a row the cluster reports Failed and what to do; retries go on at the longest backoff.",
    ),
    d(
        "repair.unhealthyAfterSeconds",
        Fixed(Int(600)),
        Fixed(Int(300)),
        "How long a node may be NotReady before it is replaced.",
    ),
    d(
        "repair.maxUnhealthyPercent",
        Fixed(Int(50)),
        Fixed(Int(33)),
        "Above this, repair stops: mass failure is an outage to investigate, not nodes to churn.",
    ),
    d(
        "repair.maxParallel",
        Fixed(Int(1)),
        Fixed(Int(3)),
        "Production repairs one node per zone at a time.",
    ),
    d(
        "autoscaling.enabled",
        Fixed(Bool(true)),
        Fixed(Bool(true)),
        "Clusters follow their pods' needs at the lowest cost.",
    ),
    d(
        "autoscaling.scaleDownDelaySeconds",
        Fixed(Int(300)),
        Fixed(Int(600)),
        "Hysteresis: capacity stays through short dips.",
    ),
    d(
        "autoscaling.consolidation",
        Fixed(Bool(true)),
        Fixed(Bool(true)),
        "Underused nodes are replaced by a cheaper fit.",
    ),
    d(
        "monitoring.metricsRetentionDays",
        Fixed(Int(1)),
        Fixed(Int(15)),
        "Two weeks of metrics cover capacity planning and incident review.",
    ),
    d(
        "logging.controlPlaneLogs",
        Fixed(Text("errors")),
        Fixed(Text("all")),
        "Production keeps every control-plane log line for diagnosis.",
    ),
];
