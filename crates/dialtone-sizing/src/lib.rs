//! Right-sizing: which nodes a cluster should add so that every pending pod runs, at the least
//! cost per hour. Pure functions over a [`Snapshot`] (pending pods, the nodes that exist, the
//! instance types allowed); no IO.
//!
//! - [`plan`] is Dialtone's scale-up: pods first fill the free room of existing nodes; the
//!   rest are packed, per placement constraint, by repeatedly opening the instance type whose
//!   greedy fill buys the most pod value per dollar, where a pod's value comes from the dual
//!   prices of the lower bound's linear program; each node is then shrunk to the cheapest
//!   type that still holds its pods.
//! - [`karpenter::plan`] is a faithful re-implementation of Karpenter's provisioning, the
//!   baseline the benchmark compares against, on every allowed type or on the types of
//!   Karpenter's recommended NodePool ([`karpenter::recommended_node_pool`]); [`ffd::plan`]
//!   is a textbook first-fit-decreasing baseline.
//! - [`consolidate::consolidate`] removes nodes whose pods fit elsewhere, replaces nodes
//!   by cheaper ones (one by several, if several cost less) and merges several into fewer,
//!   as the cluster's consolidation [`consolidate::Policy`] says a move must save.
//! - Pods carry their scheduling rules: a [`Placement`] (architecture, zones), a
//!   [`PerNode`] limit, the existing nodes they avoid; [`zones::share`] splits pods that
//!   spread over zones.
//! - [`bound::lower_bound`] is a proven lower bound on the cost of any placement of the same
//!   pods: the linear-programming relaxation of the packing by resources (CPU, memory, pod
//!   slots), per placement constraint; [`patterns::pattern_bound`] a tighter one, the
//!   relaxation over packing patterns by column generation.

#![warn(missing_docs)]

pub mod bound;
pub mod consolidate;
pub mod decision;
pub mod ffd;
pub mod karpenter;
pub mod lp;
mod pack;
pub mod patterns;
pub mod simulation;
pub mod zones;

use std::collections::{BTreeMap, BTreeSet};

use dialtone_cloud::{Arch, InstanceType};
use serde::{Deserialize, Serialize};

pub use pack::plan;

/// CPU in millicores, memory in MiB, and pod slots.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    /// CPU, in thousandths of a vCPU.
    pub millicores: u64,
    /// Memory, in MiB.
    pub memory_mib: u64,
    /// Pod slots (a node's max pods).
    pub pods: u32,
}

impl Resources {
    /// Whether every resource of `self` is within `room`.
    pub fn fits_in(&self, room: &Resources) -> bool {
        self.millicores <= room.millicores
            && self.memory_mib <= room.memory_mib
            && self.pods <= room.pods
    }

    /// `self` less `other`, each resource at least zero.
    pub fn saturating_sub(&self, other: &Resources) -> Resources {
        Resources {
            millicores: self.millicores.saturating_sub(other.millicores),
            memory_mib: self.memory_mib.saturating_sub(other.memory_mib),
            pods: self.pods.saturating_sub(other.pods),
        }
    }

    /// The sum of `self` and `other`, resource by resource.
    pub fn add(&self, other: &Resources) -> Resources {
        Resources {
            millicores: self.millicores + other.millicores,
            memory_mib: self.memory_mib + other.memory_mib,
            pods: self.pods + other.pods,
        }
    }

    /// `k` of `self`.
    pub fn times(&self, k: u32) -> Resources {
        Resources {
            millicores: self.millicores * k as u64,
            memory_mib: self.memory_mib * k as u64,
            pods: self.pods * k,
        }
    }

    /// How many of `self` fit in `room`.
    pub fn times_in(&self, room: &Resources) -> u64 {
        let ratio = |want: u64, have: u64| have.checked_div(want).unwrap_or(u64::MAX);
        ratio(self.millicores, room.millicores)
            .min(ratio(self.memory_mib, room.memory_mib))
            .min(ratio(self.pods as u64, room.pods as u64))
    }
}

/// Where a pod may run, from its nodeSelector and required node affinity: an architecture
/// and a set of zones, each optional.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Placement {
    /// Only nodes of this architecture (`kubernetes.io/arch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<Arch>,
    /// Only nodes in these zones (`topology.kubernetes.io/zone`), sorted; none: any zone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<String>,
}

impl Placement {
    /// Whether a node of `arch` in `zone` may run the pod.
    pub fn allows(&self, arch: Arch, zone: &str) -> bool {
        self.arch.is_none_or(|a| a == arch)
            && (self.zones.is_empty() || self.zones.iter().any(|z| z == zone))
    }
}

/// At most `most` pods of one set on any node: what a required anti-affinity by hostname
/// among pods that repel each other (1) or a topology spread by hostname (`maxSkew`) asks.
/// Groups that share a set share its limit, and give it alike.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PerNode {
    /// Which pods count together: the rule's namespace and label selector.
    pub set: String,
    /// How many of them one node may run.
    pub most: u32,
}

/// Pods of one shape: what each requests, where they may run, and how many there are.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodGroup {
    /// What the pods are (their owner's name), for explanations.
    pub name: String,
    /// Per pod; `pods` is always 1.
    pub requests: Resources,
    /// Where they may run.
    #[serde(default)]
    pub placement: Placement,
    /// How many pods of this shape there are.
    pub count: u32,
    /// How many of the set it belongs to one node may run, if a rule limits it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_node: Option<PerNode>,
    /// Existing nodes, by name, its pods may not run on: a taint they do not tolerate, a
    /// label their node affinity rules out, a pod their anti-affinity repels.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub avoids: BTreeSet<String>,
}

impl PodGroup {
    /// How many more of its pods a node may run by its per-node rule, given how many pods
    /// of each set the node runs.
    pub fn admitted_beside(&self, sets: &BTreeMap<String, u32>) -> u32 {
        self.per_node.as_ref().map_or(u32::MAX, |rule| {
            rule.most
                .saturating_sub(sets.get(&rule.set).copied().unwrap_or(0))
        })
    }

    /// Counts `k` of its pods into a node's `sets`.
    pub fn join(&self, sets: &mut BTreeMap<String, u32>, k: u32) {
        if let Some(rule) = &self.per_node {
            *sets.entry(rule.set.clone()).or_default() += k;
        }
    }
}

/// An instance type as a node of this cluster would offer it: allocatable after the system
/// reserve and the daemonsets every node runs.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeType {
    /// The instance type, `m7g.large`.
    pub name: String,
    /// Its family, `m7g`.
    pub family: String,
    /// Its processor's architecture.
    pub arch: Arch,
    /// What a node of it offers pods.
    pub room: Resources,
    /// Its on-demand price.
    pub usd_per_hour: f64,
    /// The cluster's zones that offer it.
    pub zones: Vec<String>,
}

/// A node that exists, with the room its pods leave.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExistingNode {
    /// The node's name.
    pub name: String,
    /// Its instance type.
    pub instance_type: String,
    /// Its architecture.
    pub arch: Arch,
    /// Its zone.
    pub zone: String,
    /// Allocatable less what its pods request.
    pub free: Resources,
    /// How many pods of each per-node set ([`PerNode::set`]) it runs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sets: BTreeMap<String, u32>,
}

impl ExistingNode {
    /// How many of the group's pods the node may still take, by resources, placement and
    /// per-node rule.
    pub fn admits(&self, group: &PodGroup) -> u32 {
        if !group.placement.allows(self.arch, &self.zone) || group.avoids.contains(&self.name) {
            return 0;
        }
        (group.requests.times_in(&self.free).min(u32::MAX as u64) as u32)
            .min(group.admitted_beside(&self.sets))
    }

    /// Takes `k` of the group's pods: their requests out of its room, their set counted.
    pub fn take(&mut self, group: &PodGroup, k: u32) {
        self.free = self.free.saturating_sub(&group.requests.times(k));
        group.join(&mut self.sets, k);
    }
}

/// Everything a scale-up decision reads.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// The pods that wait for room, grouped by shape.
    pub pending: Vec<PodGroup>,
    /// The nodes that run, with their free room.
    pub existing: Vec<ExistingNode>,
    /// The types new nodes may be of.
    pub types: Vec<NodeType>,
    /// The cluster's zones; production clusters spread new nodes over them.
    pub zones: Vec<String>,
    /// Whether new nodes are spread over the zones, as production clusters' are.
    pub spread_zones: bool,
    /// How many nodes may be added (the cluster's maxNodes less its nodes).
    pub max_new_nodes: usize,
}

/// How a cluster counts what a node offers pods and what it costs (docs/sizing.md).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CostModel {
    /// Whether burstable types count at their full vCPUs; otherwise at their baseline.
    pub allow_burstable: bool,
    /// What every node runs before any pod: the cluster's daemon sets' requests.
    pub daemonsets: Resources,
    /// What every node costs beside its instance (its root volume), per hour.
    pub per_node_usd_per_hour: f64,
}

impl CostModel {
    /// What a node of `instance_type` costs per hour: its instance and the per-node cost.
    pub fn node_price(&self, instance_type: &InstanceType) -> f64 {
        instance_type.usd_per_hour + self.per_node_usd_per_hour
    }
}

/// Node types for a cluster: the catalogue's allowed types in the cluster's zones, offering
/// their sustained allocatable less the daemon sets, at their price plus the per-node
/// cost; types with no room left are dropped.
pub fn node_types(
    catalog: impl IntoIterator<Item = InstanceType>,
    region_zones: &[String],
    model: &CostModel,
) -> Vec<NodeType> {
    catalog
        .into_iter()
        .filter_map(|t| {
            let (millicores, memory_mib, pods) = t.sustained_allocatable(model.allow_burstable);
            let allocatable = Resources {
                millicores,
                memory_mib,
                pods,
            };
            if !model.daemonsets.fits_in(&allocatable) {
                return None;
            }
            let zones: Vec<String> = region_zones
                .iter()
                .filter(|z| {
                    z.chars()
                        .last()
                        .is_some_and(|s| t.zone_suffixes.contains(&s))
                })
                .cloned()
                .collect();
            if zones.is_empty() {
                return None;
            }
            Some(NodeType {
                room: allocatable.saturating_sub(&model.daemonsets),
                arch: *t.archs.first()?,
                usd_per_hour: model.node_price(&t),
                name: t.name,
                family: t.family,
                zones,
            })
        })
        .collect()
}

/// The types no other type beats: one with the same arch, at least the room in every
/// resource, every zone, and no higher price makes a type useless to any packing and to
/// the bound (of two equal types, the first stays). Indices into `types`.
pub fn undominated(types: &[NodeType]) -> Vec<usize> {
    let beats = |a: &NodeType, b: &NodeType| {
        a.arch == b.arch
            && b.room.fits_in(&a.room)
            && a.usd_per_hour <= b.usd_per_hour
            && b.zones.iter().all(|z| a.zones.contains(z))
    };
    (0..types.len())
        .filter(|&i| {
            !(0..types.len()).any(|j| {
                j != i && beats(&types[j], &types[i]) && (j < i || !beats(&types[i], &types[j]))
            })
        })
        .collect()
}

/// A node to add and the pods it is for (group index → count).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewNode {
    /// Its instance type.
    pub instance_type: String,
    /// The zone to launch it in.
    pub zone: String,
    /// What it costs.
    pub usd_per_hour: f64,
    /// How many pods of each pending group (by index) it is for.
    pub pods: BTreeMap<usize, u32>,
}

/// Pods that no allowed type can hold, with the reason.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Unplaceable {
    /// The pending group, by index.
    pub group: usize,
    /// How many of its pods stay pending.
    pub count: u32,
    /// Why, as the cluster's events say it.
    pub reason: String,
}

/// A scale-up decision.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// The nodes to launch.
    pub new_nodes: Vec<NewNode>,
    /// Pods placed on existing nodes: (group index, node index, count).
    pub on_existing: Vec<(usize, usize, u32)>,
    /// Pods no node can hold.
    pub unplaceable: Vec<Unplaceable>,
}

impl Plan {
    /// Whether no node, new or existing, runs more pods of a set than its per-node rule
    /// allows.
    pub fn keeps_per_node_rules(&self, snapshot: &Snapshot) -> bool {
        let breaks = |sets: &BTreeMap<String, u32>, g: usize| {
            snapshot.pending[g]
                .per_node
                .as_ref()
                .is_some_and(|rule| sets[&rule.set] > rule.most)
        };
        let mut on_existing: Vec<BTreeMap<String, u32>> =
            snapshot.existing.iter().map(|n| n.sets.clone()).collect();
        for &(g, n, k) in &self.on_existing {
            snapshot.pending[g].join(&mut on_existing[n], k);
        }
        self.on_existing
            .iter()
            .all(|&(g, n, _)| !breaks(&on_existing[n], g))
            && self.new_nodes.iter().all(|node| {
                let mut sets = BTreeMap::new();
                for (&g, &k) in &node.pods {
                    snapshot.pending[g].join(&mut sets, k);
                }
                node.pods.keys().all(|&g| !breaks(&sets, g))
            })
    }

    /// What the added nodes cost per hour.
    pub fn usd_per_hour(&self) -> f64 {
        // A fold from +0.0: an empty f64 sum is -0.0.
        self.new_nodes
            .iter()
            .fold(0.0, |sum, n| sum + n.usd_per_hour)
    }

    /// Counts of new nodes by type, for explanations: `3 × m7g.large`.
    pub fn summary(&self) -> String {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for node in &self.new_nodes {
            *counts.entry(&node.instance_type).or_default() += 1;
        }
        if counts.is_empty() {
            return "no new nodes".into();
        }
        counts
            .iter()
            .map(|(t, n)| format!("{n} × {t}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
