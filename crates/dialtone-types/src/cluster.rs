//! The Smart Cluster: what a user asks for (`Cluster`), what the control plane reports
//! (`ClusterStatus`), and the plan the planner makes for it (`ClusterPlan`).

use std::collections::BTreeMap;
use std::fmt;

use ipnet::Ipv4Net;
use jiff::Timestamp;

pub use crate::maintenance::{
    Maintenance, MaintenanceExclusion, MaintenanceWindow, ReleaseChannel, WindowDay,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::kinds::{CLUSTER, Kind, KindInfo};
use crate::meta::Condition;
use crate::settings::ClusterSettings;
use crate::validation::{FieldErrors, FieldReason};

/// The kinds of Smart Cluster.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ClusterType {
    /// One control-plane node, a shared VPC: for development and tests.
    Developer,
    /// Three control-plane nodes in three zones, its own VPC: for what users depend on.
    Production,
}

impl ClusterType {
    /// Every type.
    pub const ALL: [ClusterType; 2] = [ClusterType::Developer, ClusterType::Production];

    /// The type as specs spell it: `developer` or `production`.
    pub fn name(self) -> &'static str {
        match self {
            ClusterType::Developer => "developer",
            ClusterType::Production => "production",
        }
    }

    /// What the type is for, in a sentence, as `cluster types` shows it.
    pub fn description(self) -> &'static str {
        match self {
            ClusterType::Developer => {
                "One control-plane node in one zone, a VPC shared with the project's other developer clusters in the region; cheap and quick for development and tests."
            }
            ClusterType::Production => {
                "Three control-plane nodes in three zones, workers in every zone, its own VPC from the org's address plan, private API, strict security and a maintenance window."
            }
        }
    }

    /// Parses a type name; the error lists the valid ones.
    pub fn parse(name: &str) -> Result<Self, String> {
        ClusterType::ALL
            .into_iter()
            .find(|t| t.name() == name)
            .ok_or_else(|| {
                format!("unknown cluster type `{name}`; valid types: developer, production")
            })
    }
}

impl fmt::Display for ClusterType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A CPU architecture, named as the `kubernetes.io/arch` label names it.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum Arch {
    /// x86-64.
    #[serde(rename = "amd64")]
    X86_64,
    /// 64-bit Arm (Graviton).
    #[serde(rename = "arm64")]
    Arm64,
}

impl Arch {
    /// Every architecture, as errors list them.
    pub const ALL: [Arch; 2] = [Arch::X86_64, Arch::Arm64];

    /// The `kubernetes.io/arch` value.
    pub fn label(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }
}

/// How much disruption right-sizing's consolidation accepts for a saving.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ConsolidationPolicy {
    /// Only workers that run no pods (daemon sets aside) are removed.
    WhenEmpty,
    /// A move saves at least a tenth of what it removes and $0.005 an hour for each pod it
    /// evicts.
    #[default]
    Balanced,
    /// Any move that lowers the cost.
    Aggressive,
}

impl ConsolidationPolicy {
    /// Every policy, as errors list them.
    pub const ALL: [ConsolidationPolicy; 3] = [
        ConsolidationPolicy::WhenEmpty,
        ConsolidationPolicy::Balanced,
        ConsolidationPolicy::Aggressive,
    ];

    /// Whether a worker must stay unneeded for the stabilization window before it goes.
    pub fn waits(self) -> bool {
        self == ConsolidationPolicy::Balanced
    }

    /// Its name in the spec.
    pub fn name(self) -> &'static str {
        match self {
            ConsolidationPolicy::WhenEmpty => "whenEmpty",
            ConsolidationPolicy::Balanced => "balanced",
            ConsolidationPolicy::Aggressive => "aggressive",
        }
    }
}

/// A Kubernetes cluster of a type, in a region, that the control plane provisions and keeps
/// in the state its plan says.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "ClusterSpec")]
pub struct Cluster {
    /// `developer` or `production`. Cannot change.
    #[serde(rename = "type")]
    pub cluster_type: String,
    /// Where the cluster runs, for example `us-east-1`. Cannot change.
    pub region: String,
    /// A supported Kubernetes minor such as `1.34`; the newest when omitted.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kubernetes_version: String,
    /// The fewest workers; the type's default when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_nodes: Option<u32>,
    /// The most workers; the type's default when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_nodes: Option<u32>,
    /// Instance families workers may use; any eligible family when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_families: Vec<String>,
    /// Instance families workers must not use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_families: Vec<String>,
    /// The architectures of the nodes that run pods whose nodeSelector names none;
    /// `[amd64]` when omitted, since an image built only for amd64 fails on arm64. A pod
    /// that selects `kubernetes.io/arch` gets a node of that architecture either way.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub architectures: Vec<Arch>,
    /// Whether burstable types (`t3`, `t4g`, …) count at their full vCPUs, spending CPU
    /// credits under sustained load; when off (the default) they count at their baseline.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_burstable: bool,
    /// What a consolidation move must save for the pods it evicts; `balanced` when
    /// omitted (docs/sizing.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consolidation: Option<ConsolidationPolicy>,
    /// Whether a delete is refused until this is turned off; the type's default when
    /// omitted (`security.deletionProtection`: on for production).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_protection: Option<bool>,
    /// `rapid`, `regular` or `stable`: how soon new Kubernetes releases reach the cluster;
    /// the type's (`upgrade.channel`) when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_channel: Option<ReleaseChannel>,
    /// When automatic upgrades may replace its nodes: a window and exclusions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<Maintenance>,
}

impl Cluster {
    /// Every change from `self` to `new` that cannot be applied to a running cluster. The
    /// Kubernetes version moves up one minor at a time (as upstream's skew policy allows),
    /// never down.
    pub fn immutable_changes(&self, new: &Cluster, errors: &mut FieldErrors) {
        for (field, old_value, new_value) in [
            ("spec.type", &self.cluster_type, &new.cluster_type),
            ("spec.region", &self.region, &new.region),
        ] {
            if old_value != new_value {
                errors.push(
                    field,
                    FieldReason::FieldValueImmutable,
                    format!(
                        "is `{old_value}` and cannot change in place; create a new cluster instead"
                    ),
                );
            }
        }
        let (old, new) = (&self.kubernetes_version, &new.kubernetes_version);
        // A version that is no minor (`1.35.2`) is the version catalogue's to refuse.
        let minor = |v: &str| {
            (v.split('.').count() == 2)
                .then(|| v.split('.').nth(1)?.parse::<u32>().ok())
                .flatten()
        };
        if old != new
            && let (Some(from), Some(to)) = (minor(old), minor(new))
            && to != from + 1
        {
            let reason = if to < from {
                "downgrades are not supported"
            } else {
                "upgrade one minor version at a time"
            };
            errors.push(
                "spec.kubernetesVersion",
                FieldReason::FieldValueInvalid,
                format!("cannot move from `{old}` to `{new}`: {reason}"),
            );
        }
    }
}

impl Kind for Cluster {
    const INFO: &'static KindInfo = &CLUSTER;
    type Status = ClusterStatus;

    fn validate(&self, errors: &mut FieldErrors) {
        if self.cluster_type.is_empty() {
            errors.push(
                "spec.type",
                FieldReason::FieldValueRequired,
                "required; valid types: developer, production",
            );
        } else if let Err(message) = ClusterType::parse(&self.cluster_type) {
            errors.push("spec.type", FieldReason::FieldValueInvalid, message);
        }
        if self.region.is_empty() {
            errors.push("spec.region", FieldReason::FieldValueRequired, "required");
        }
        for (i, arch) in self.architectures.iter().enumerate() {
            if self.architectures[..i].contains(arch) {
                errors.push(
                    &format!("spec.architectures[{i}]"),
                    FieldReason::FieldValueInvalid,
                    format!("{} is listed twice", arch.label()),
                );
            }
        }
        if let Some(maintenance) = &self.maintenance {
            maintenance.validate(self.channel(), errors);
        }
    }
}

impl Cluster {
    /// The release channel it follows: its own, or its type's.
    pub fn channel(&self) -> ReleaseChannel {
        self.release_channel.unwrap_or_else(|| {
            ClusterType::parse(&self.cluster_type)
                .map(|t| ClusterSettings::of(t).upgrade.channel)
                .unwrap_or_default()
        })
    }
}

/// Parses an org's address plan: an IPv4 network of at most /16.
pub fn parse_address_pool(text: &str) -> Result<Ipv4Net, String> {
    let net: Ipv4Net = text
        .parse()
        .map_err(|_| format!("`{text}` is not an IPv4 CIDR such as 10.0.0.0/8"))?;
    if net.prefix_len() > 16 {
        return Err(format!(
            "`{text}` is smaller than a /16, the size of one cluster network"
        ));
    }
    if net.trunc() != net {
        return Err(format!(
            "`{text}` has host bits set; did you mean {}?",
            net.trunc()
        ));
    }
    Ok(net)
}

/// Where a cluster is in its life, in one word for lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Phase {
    /// Its resources are being created; it has not been Ready yet.
    Provisioning,
    /// Serving, with every planned node running (or being added or upgraded).
    Ready,
    /// Serving, with nodes missing or broken.
    Degraded,
    /// Was Ready, and no longer serves: too few control-plane nodes, or no endpoint.
    Unavailable,
    /// A node failed to launch the type's number of times in a row; it needs a person.
    Failed,
    /// Being deleted: its cloud resources go, then the object.
    Deleting,
}

impl Phase {
    /// Every phase.
    pub const ALL: [Phase; 6] = [
        Phase::Provisioning,
        Phase::Ready,
        Phase::Degraded,
        Phase::Unavailable,
        Phase::Failed,
        Phase::Deleting,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Provisioning => "Provisioning",
            Phase::Ready => "Ready",
            Phase::Degraded => "Degraded",
            Phase::Unavailable => "Unavailable",
            Phase::Failed => "Failed",
            Phase::Deleting => "Deleting",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a cluster fares against its type, in one word for lists: its evaluation
/// conditions summed up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Health {
    /// Every evaluation holds.
    Healthy,
    /// It serves, and something is off: a node broken, a repair held, access not projected.
    Warning,
    /// It does not serve: its API does not answer, or etcd lost its quorum.
    Unhealthy,
    /// Not evaluated yet: it is being provisioned or deleted.
    Unknown,
}

impl Health {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "Healthy",
            Health::Warning => "Warning",
            Health::Unhealthy => "Unhealthy",
            Health::Unknown => "Unknown",
        }
    }
}

/// A cluster's condition types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClusterCondition {
    /// Whether the cluster serves its users.
    Ready,
    /// True until every planned resource has existed once.
    Provisioning,
    /// Whether it serves with something missing or broken.
    Degraded,
    /// Set while its cloud resources are deleted.
    Deleting,
    /// Whether its RBAC matches its access policies.
    AccessProjected,
    /// Whether its Kubernetes API answers.
    ApiServerAvailable,
    /// Whether its control-plane nodes run and keep etcd's quorum.
    ControlPlaneHealthy,
    /// Whether every node of the plan runs and is Ready.
    EveryNodeReady,
    /// Whether what the cloud reports of its instances and endpoint keeps the plan's
    /// security decisions: encrypted root disks, the metadata service's options, the API
    /// endpoint's exposure.
    SecurityCompliant,
    /// Whether right-sizing has nothing left to do: no pod waits, no cheaper set of workers
    /// holds the pods under the cluster's consolidation policy, no move is under way.
    SizeEfficient,
    /// Whether its network in the cloud is as planned (its security group's rules; drift
    /// is put back, and the condition says what was).
    NetworkCompliant,
    /// Whether broken nodes are being repaired: False while too many workers are unhealthy
    /// at once (the type's `repair.maxUnhealthyPercent`) or repair is off.
    RemediationAllowed,
    /// Whether its minor is supported and not about to stop being so; the message says
    /// whether a newer patch of its channel waits for the maintenance window.
    VersionSupported,
}

impl ClusterCondition {
    /// The wire name, the condition's `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterCondition::Ready => "Ready",
            ClusterCondition::Provisioning => "Provisioning",
            ClusterCondition::Degraded => "Degraded",
            ClusterCondition::Deleting => "Deleting",
            ClusterCondition::AccessProjected => "AccessProjected",
            ClusterCondition::ApiServerAvailable => "APIServerAvailable",
            ClusterCondition::ControlPlaneHealthy => "ControlPlaneHealthy",
            ClusterCondition::EveryNodeReady => "EveryNodeReady",
            ClusterCondition::NetworkCompliant => "NetworkCompliant",
            ClusterCondition::SecurityCompliant => "SecurityCompliant",
            ClusterCondition::SizeEfficient => "SizeEfficient",
            ClusterCondition::RemediationAllowed => "RemediationAllowed",
            ClusterCondition::VersionSupported => "VersionSupported",
        }
    }
}

/// The state of the instance that fills a node slot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum NodeState {
    /// No instance yet (or it is gone and not yet replaced).
    #[default]
    Absent,
    /// Launched, not yet running.
    Pending,
    /// Running and reachable.
    Running,
    /// Running but not answering: its zone is down or its status checks fail.
    Impaired,
    /// Being terminated.
    Deleting,
    /// Terminated; its slot gets a new instance unless the cluster is being deleted.
    Terminated,
}

impl NodeState {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Absent => "absent",
            NodeState::Pending => "pending",
            NodeState::Running => "running",
            NodeState::Impaired => "impaired",
            NodeState::Deleting => "deleting",
            NodeState::Terminated => "terminated",
        }
    }
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the control plane reports about a cluster.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// The generation of the spec that this status describes.
    #[serde(default)]
    pub observed_generation: i64,
    /// `Ready`, `Provisioning`, `Degraded` and `Deleting`, with reasons to act on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// One word for lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Its evaluation conditions in one word.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    /// The Kubernetes API endpoint, once its load balancer exists.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub endpoint: String,
    /// The plan in effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<ClusterPlan>,
    /// Every node slot of the plan and the instance that fills it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<ClusterNode>,
    /// Nodes by role and zone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_counts: Vec<NodeCount>,
    /// The latest events, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<ClusterEvent>,
    /// Right-sizing: its latest decisions, each explained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sizing: Option<SizingStatus>,
    /// The latest repairs of broken nodes, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repairs: Vec<NodeRepair>,
    /// The Kubernetes release its nodes run or move to, and what its channel offers next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<VersionStatus>,
}

/// Where a cluster stands among Kubernetes releases.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionStatus {
    /// The patch release its nodes run, or move to while an upgrade is under way, such as
    /// `1.35.2`.
    pub release: String,
    /// The channel it follows.
    pub channel: ReleaseChannel,
    /// The day its minor stops being supported; it is upgraded in the first maintenance
    /// window from then on, exclusions notwithstanding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_of_support: Option<jiff::civil::Date>,
    /// A newer release its channel offers, waiting for the maintenance window.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub available: String,
    /// When the window next opens, while a release waits for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_window: Option<Timestamp>,
}

/// A node replaced because it broke.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeRepair {
    /// When the replacement was decided.
    pub time: Timestamp,
    /// The node slot, for example `worker-2`.
    pub node: String,
    /// Control plane or worker.
    pub role: NodeRole,
    /// The instance replaced.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub instance_id: String,
    /// What was wrong with it.
    pub reason: String,
    /// How many times in a row this node was replaced because its previous replacement
    /// broke soon after; each waits twice as long as the one before.
    pub in_a_row: u32,
}

/// What right-sizing has decided for a cluster.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SizingStatus {
    /// The number the next new worker gets, so that no worker's name (and with it its
    /// instance's idempotency token) is ever reused.
    #[serde(default)]
    pub next_worker: u32,
    /// What the workers cost per hour now.
    #[serde(default)]
    pub usd_per_hour: f64,
    /// The latest decisions, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decisions: Vec<SizingDecision>,
}

/// One right-sizing decision and its explanation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SizingDecision {
    /// When it was decided.
    pub time: Timestamp,
    /// `ScaleUp`, `Delete`, `Replace` or `Upgrade`.
    pub action: String,
    /// The pods the decision is for.
    pub pods: u32,
    /// Workers added, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub added: Vec<ClusterNode>,
    /// Workers to drain and remove, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
    /// For a scale-up, what the added nodes cost per hour; for a disruption, what the
    /// nodes that replace the removed ones cost.
    pub usd_per_hour: f64,
    /// A proven lower bound on the cost per hour of any nodes that hold the same pods
    /// (scale-up only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lower_bound_usd_per_hour: Option<f64>,
    /// For a disruption, what it saves per hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saves_usd_per_hour: Option<f64>,
    /// How long deciding took.
    pub millis: f64,
    /// Why, for people: what was chosen and what it costs against the bound.
    pub message: String,
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
/// What a node does in its cluster.
#[serde(rename_all = "camelCase")]
pub enum NodeRole {
    /// Runs the API server and etcd.
    ControlPlane,
    /// Runs the users' pods.
    Worker,
}

impl fmt::Display for NodeRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NodeRole::ControlPlane => "control-plane",
            NodeRole::Worker => "worker",
        })
    }
}

/// A node slot of the plan and the instance filling it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNode {
    /// The slot, for example `cp-0` or `worker-2`; the node's name in the cluster.
    pub name: String,
    /// Control plane or worker.
    pub role: NodeRole,
    /// The zone it runs in.
    pub zone: String,
    /// Its instance type.
    pub instance_type: String,
    /// The provider's instance id, once launched.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub instance_id: String,
    /// The instance's state.
    #[serde(default)]
    pub state: NodeState,
    /// How many instances this slot has had; a replacement gets the next number, so that
    /// its idempotency token differs from the one it replaces.
    #[serde(default)]
    pub attempt: u32,
    /// The Kubernetes version of the instance's image, once launched.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kubernetes_version: String,
    /// Launches of this node that failed in a row, while they keep failing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_backoff: Option<LaunchBackoff>,
    /// What is wrong with its instance or node, and since when, while it lasts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy: Option<Unhealthy>,
    /// Its latest repair: a failure within an hour of it makes the next repair wait longer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_repair: Option<LastRepair>,
}

/// A node that does not work: why, and since when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Unhealthy {
    /// When it was first seen broken.
    pub since: Timestamp,
    /// What is wrong, as the cloud or the node says.
    pub reason: String,
}

/// When a node slot was last repaired, and how many repairs in a row that was.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastRepair {
    /// When its replacement was launched.
    pub time: Timestamp,
    /// Repairs in a row, each of a replacement that broke soon after the one before.
    pub in_a_row: u32,
}

/// A node whose launches keep failing: how often, why the last one did, and when the next
/// may start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LaunchBackoff {
    /// Launches that failed in a row.
    pub failures: u32,
    /// Why the last one failed, as the provider said.
    pub last_error: String,
    /// When the next launch may start.
    pub retry_after: Timestamp,
}

/// How many nodes of one role in one zone are ready.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeCount {
    /// Control plane or worker.
    pub role: NodeRole,
    /// The zone.
    pub zone: String,
    /// Nodes running and ready.
    pub ready: u32,
    /// Nodes planned.
    pub total: u32,
}

/// Something that happened to a cluster, as in Kubernetes' events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterEvent {
    /// When it happened.
    pub time: Timestamp,
    /// `Normal` or `Warning`.
    #[serde(rename = "type")]
    pub type_: String,
    /// What happened, in one word (`Planned`, `ReplacingNode`, `NodeRemoved`, …).
    pub reason: String,
    /// What happened, for people.
    pub message: String,
}

impl ClusterEvent {
    /// Adds an event to `events` unless it repeats the last one, keeping the latest `kept`;
    /// whether it did.
    pub fn record(
        events: &mut Vec<ClusterEvent>,
        kept: usize,
        time: Timestamp,
        warning: bool,
        reason: &str,
        message: String,
    ) -> bool {
        if events
            .last()
            .is_some_and(|e| e.reason == reason && e.message == message)
        {
            return false;
        }
        events.push(ClusterEvent {
            time,
            type_: if warning { "Warning" } else { "Normal" }.to_string(),
            reason: reason.to_string(),
            message,
        });
        if events.len() > kept {
            events.remove(0);
        }
        true
    }
}

/// One node of a plan: where it runs and on what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeSlot {
    /// The zone.
    pub zone: String,
    /// The instance type.
    pub instance_type: String,
}

/// The control plane's nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ControlPlanePlan {
    /// One per control-plane node, each in its own zone for production.
    pub nodes: Vec<NodeSlot>,
    /// Each node's root volume.
    pub root_disk_gib: u32,
}

/// One subnet of the cluster's VPC.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Subnet {
    /// The zone it is in.
    pub zone: String,
    /// Its addresses.
    #[schemars(with = "String")]
    pub cidr: Ipv4Net,
}

/// The cluster's addresses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPlan {
    /// The VPC's range, unique in the org for production clusters.
    #[schemars(with = "String")]
    pub vpc_cidr: Ipv4Net,
    /// Whether the VPC is shared with the project's other developer clusters in the region.
    pub shared_vpc: bool,
    /// One subnet per zone the cluster uses.
    pub subnets: Vec<Subnet>,
    /// The range pods' addresses come from.
    #[schemars(with = "String")]
    pub pod_cidr: Ipv4Net,
    /// The range Services' cluster IPs come from.
    #[schemars(with = "String")]
    pub service_cidr: Ipv4Net,
    /// The only sources the API's load balancer lets in.
    #[schemars(with = "Vec<String>")]
    pub api_allowed_cidrs: Vec<Ipv4Net>,
}

/// The workers' bounds and where they run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkerPlan {
    /// The fewest workers the cluster keeps.
    pub min_nodes: u32,
    /// The most workers the cluster may grow to.
    pub max_nodes: u32,
    /// The zones workers run in.
    pub zones: Vec<String>,
    /// Instance families right-sizing may choose from.
    pub families: Vec<String>,
    /// The workers to start with.
    pub initial: Vec<NodeSlot>,
    /// Pods a worker takes at most.
    pub max_pods_per_node: u32,
    /// The type of workers added before right-sizing has chosen one.
    pub initial_instance_type: String,
    /// The machine image workers and control-plane nodes boot.
    pub node_image: String,
    /// The architectures of the nodes for pods that name none.
    pub architectures: Vec<Arch>,
    /// Whether burstable types count at their full vCPUs rather than their baseline.
    pub allow_burstable: bool,
}

/// Everything decided for one cluster.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterPlan {
    /// Developer or production.
    #[serde(rename = "type")]
    pub cluster_type: ClusterType,
    /// The region.
    pub region: String,
    /// The Kubernetes minor it runs.
    pub kubernetes_version: String,
    /// The control-plane nodes.
    pub control_plane: ControlPlanePlan,
    /// The addresses.
    pub network: NetworkPlan,
    /// The workers.
    pub workers: WorkerPlan,
    /// Its type's decisions, typed: what controllers and providers read.
    pub settings: ClusterSettings,
    /// Every decision of the type's table with its concrete value for this cluster, as
    /// users read it.
    pub decisions: BTreeMap<String, String>,
}

/// A plan as stored, which may predate its typed settings and the typed fields of
/// computed decisions: those are then its type's built-in settings and the values its
/// record of decisions holds.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredPlan {
    #[serde(rename = "type")]
    cluster_type: ClusterType,
    region: String,
    kubernetes_version: String,
    control_plane: ControlPlanePlan,
    network: StoredNetworkPlan,
    workers: StoredWorkerPlan,
    settings: Option<ClusterSettings>,
    decisions: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredNetworkPlan {
    vpc_cidr: Ipv4Net,
    shared_vpc: bool,
    subnets: Vec<Subnet>,
    pod_cidr: Ipv4Net,
    service_cidr: Ipv4Net,
    api_allowed_cidrs: Option<Vec<Ipv4Net>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredWorkerPlan {
    min_nodes: u32,
    max_nodes: u32,
    zones: Vec<String>,
    families: Vec<String>,
    initial: Vec<NodeSlot>,
    max_pods_per_node: u32,
    initial_instance_type: Option<String>,
    node_image: Option<String>,
    architectures: Option<Vec<Arch>>,
    allow_burstable: Option<bool>,
}

impl<'de> Deserialize<'de> for ClusterPlan {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        StoredPlan::deserialize(deserializer).map(ClusterPlan::from)
    }
}

impl From<StoredPlan> for ClusterPlan {
    fn from(stored: StoredPlan) -> Self {
        let recorded = |key: &str| stored.decisions.get(key).cloned().unwrap_or_default();
        let (network, workers) = (stored.network, stored.workers);
        ClusterPlan {
            cluster_type: stored.cluster_type,
            region: stored.region,
            kubernetes_version: stored.kubernetes_version,
            control_plane: stored.control_plane,
            network: NetworkPlan {
                api_allowed_cidrs: network.api_allowed_cidrs.unwrap_or_else(|| {
                    recorded("network.apiAllowedCidrs")
                        .split(',')
                        .filter_map(|cidr| cidr.trim().parse().ok())
                        .collect()
                }),
                vpc_cidr: network.vpc_cidr,
                shared_vpc: network.shared_vpc,
                subnets: network.subnets,
                pod_cidr: network.pod_cidr,
                service_cidr: network.service_cidr,
            },
            workers: WorkerPlan {
                initial_instance_type: workers
                    .initial_instance_type
                    .unwrap_or_else(|| recorded("workers.initialInstanceType")),
                node_image: workers
                    .node_image
                    .unwrap_or_else(|| recorded("workers.nodeImage")),
                min_nodes: workers.min_nodes,
                max_nodes: workers.max_nodes,
                zones: workers.zones,
                families: workers.families,
                initial: workers.initial,
                max_pods_per_node: workers.max_pods_per_node,
                // Plans from before the honest cost model keep what they did: pods of
                // any architecture anywhere, burstable types at their full vCPUs.
                architectures: workers.architectures.unwrap_or_else(|| Arch::ALL.to_vec()),
                allow_burstable: workers.allow_burstable.unwrap_or(true),
            },
            settings: stored
                .settings
                .unwrap_or_else(|| ClusterSettings::of(stored.cluster_type)),
            decisions: stored.decisions,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_pools_must_hold_a_cluster_network() {
        assert!(parse_address_pool("10.0.0.0/8").is_ok());
        assert!(parse_address_pool("172.16.0.0/12").is_ok());
        assert!(
            parse_address_pool("10.0.0.0/20")
                .unwrap_err()
                .contains("/16")
        );
        assert!(
            parse_address_pool("10.1.0.0/8")
                .unwrap_err()
                .contains("10.0.0.0/8")
        );
        assert!(parse_address_pool("ten").is_err());
    }

    #[test]
    fn type_region_and_version_cannot_change() {
        let old = Cluster {
            cluster_type: "developer".into(),
            region: "us-east-1".into(),
            kubernetes_version: "1.34".into(),
            ..Default::default()
        };
        let mut errors = FieldErrors::default();
        old.immutable_changes(
            &Cluster {
                max_nodes: Some(5),
                ..old.clone()
            },
            &mut errors,
        );
        assert!(errors.is_empty(), "worker bounds can change");
        old.immutable_changes(
            &Cluster {
                cluster_type: "production".into(),
                region: "eu-west-1".into(),
                ..old.clone()
            },
            &mut errors,
        );
        let fields: Vec<_> = errors.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["spec.type", "spec.region"]);
        let at = |version: &str| Cluster {
            kubernetes_version: version.into(),
            ..old.clone()
        };
        let mut errors = FieldErrors::default();
        old.immutable_changes(&at("1.35"), &mut errors);
        assert!(errors.is_empty(), "the next minor is an upgrade");
        old.immutable_changes(&at("1.36"), &mut errors);
        old.immutable_changes(&at("1.33"), &mut errors);
        let messages: Vec<_> = errors.0.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "cannot move from `1.34` to `1.36`: upgrade one minor version at a time",
                "cannot move from `1.34` to `1.33`: downgrades are not supported"
            ]
        );
    }
}
