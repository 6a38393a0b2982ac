//! Consolidation: which running nodes to remove, or replace by cheaper ones, when their pods
//! fit more cheaply elsewhere.
//!
//! Each candidate node (most wasted dollars first) is tried two ways: **delete**, when its
//! pods fit in the room the other nodes leave, placed as the scheduler places them (on the
//! least allocated node that holds each pod, whether the biggest or the smallest pods come
//! back first), so that what the plan promises the scheduler can keep; and **replace**, when Dialtone's scale-up packs its pods
//! into the other nodes' room plus new nodes costing less than it (several small nodes may
//! replace one big one). Then the least used candidates left are tried together: **merge**
//! several into fewer new nodes. A node being disrupted is no longer room for the next
//! candidate, so the actions of one decision never count on each other.
//!
//! The cluster's [`Policy`] says what a move must save: `WhenEmpty` removes only nodes
//! that run no pods; `Balanced` asks a replacement or merge to save `min_saving` of the
//! price it removes, and every move to save [`MIN_SAVING_PER_POD`] for each pod it evicts;
//! `Aggressive` takes any saving. Hysteresis comes from these rules, not from timers alone:
//! every action strictly lowers the cost per hour, so a steady workload converges and then
//! causes no action at all; nodes younger than the stabilization window and nodes whose
//! pods a budget protects are not candidates.

use std::collections::{BTreeMap, BTreeSet};

use crate::{ExistingNode, NewNode, NodeType, PerNode, Placement, PodGroup, Resources, Snapshot};
use dialtone_cloud::Arch;
/// How much disruption consolidation accepts for a saving: the cluster's
/// `spec.consolidation` (docs/sizing.md).
pub use dialtone_types::cluster::ConsolidationPolicy as Policy;
use serde::Serialize;

/// A pod that runs on a node and would move if the node went.
#[derive(Clone, Debug, PartialEq)]
pub struct RunningPod {
    /// What it requests.
    pub requests: Resources,
    /// Where it may run.
    pub placement: Placement,
    /// How many pods of its set one node may run, if a rule limits it.
    pub per_node: Option<PerNode>,
    /// Nodes, by name, it may not move to ([`PodGroup::avoids`]).
    pub avoids: BTreeSet<String>,
}

impl RunningPod {
    /// The pod as a group of one.
    fn alone(&self) -> PodGroup {
        PodGroup {
            name: String::new(),
            requests: self.requests,
            placement: self.placement.clone(),
            count: 1,
            per_node: self.per_node.clone(),
            avoids: self.avoids.clone(),
        }
    }
}

/// A worker as consolidation sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct RunningNode {
    /// The node's name.
    pub name: String,
    /// Its instance type.
    pub instance_type: String,
    /// Its architecture.
    pub arch: Arch,
    /// Its zone.
    pub zone: String,
    /// What it costs.
    pub usd_per_hour: f64,
    /// Allocatable less the daemonsets.
    pub room: Resources,
    /// The pods it runs (daemonsets aside).
    pub pods: Vec<RunningPod>,
    /// Why the node may not be disrupted now, if it may not (too young, a pod a budget
    /// protects, a pod no controller would recreate).
    pub keep: Option<String>,
    /// Being drained by an earlier decision: neither room nor candidate.
    pub draining: bool,
    /// Runs an older Kubernetes version than the cluster's: it must go, whatever it costs,
    /// and is no room for pods that move.
    pub outdated: bool,
}

impl RunningNode {
    fn used(&self) -> Resources {
        self.pods
            .iter()
            .fold(Resources::default(), |sum, p| sum.add(&p.requests))
    }

    /// The node as room for pods that move: what its pods leave, and their sets.
    pub(crate) fn as_room(&self) -> ExistingNode {
        let mut sets = BTreeMap::new();
        for pod in &self.pods {
            pod.alone().join(&mut sets, 1);
        }
        ExistingNode {
            name: self.name.clone(),
            instance_type: self.instance_type.clone(),
            arch: self.arch,
            zone: self.zone.clone(),
            free: self.room.saturating_sub(&self.used()),
            sets,
        }
    }

    /// The larger of its CPU and memory shares in use.
    pub fn utilization(&self) -> f64 {
        let used = self.used();
        let share = |u: u64, r: u64| if r == 0 { 1.0 } else { u as f64 / r as f64 };
        share(used.millicores, self.room.millicores)
            .max(share(used.memory_mib, self.room.memory_mib))
    }
}

/// Everything a consolidation decision reads.
#[derive(Clone, Debug)]
pub struct Cluster<'a> {
    /// The workers.
    pub nodes: &'a [RunningNode],
    /// The types replacements may be of.
    pub types: &'a [NodeType],
    /// The cluster's zones.
    pub zones: &'a [String],
    /// Whether replacements are spread over the zones.
    pub spread_zones: bool,
    /// Fewer workers than this are never left.
    pub min_nodes: usize,
    /// More workers than this never run at once, replacements included.
    pub max_nodes: usize,
    /// How many nodes may be disrupted by this decision.
    pub budget: usize,
    /// The share of a node's price a replacement must save, for example 0.1 (balanced).
    pub min_saving: f64,
    /// How much disruption a saving must be worth.
    pub policy: Policy,
    /// In which orders moved pods must fit.
    pub orders: PodOrders,
}

/// In which orders the pods a move evicts are checked to fit, placed as the scheduler
/// places them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PodOrders {
    /// Biggest first and smallest first: the scheduler takes evicted pods in the order
    /// their controllers recreate them, which no plan knows. Dialtone's.
    #[default]
    Either,
    /// Biggest first only, as Karpenter's scheduling simulation sorts them (the replay's
    /// baseline).
    BiggestFirst,
}

/// How many moves a policy that waits weighs for each it may take at once: the nodes that
/// may go next wait alongside those that go now, and a large cluster's pass stays short.
pub const PROPOSED_PER_DISRUPTION: usize = 4;

/// Since when each node has been wanted gone, for a policy that waits for a node to stay
/// unneeded ([`Policy::waits`]), as the Cluster Autoscaler waits ten minutes: a passing dip
/// in load then moves no pods, and a lasting one still frees the node.
#[derive(Clone, Debug, Default)]
pub struct Unneeded(BTreeMap<String, u64>);

impl Unneeded {
    /// Of `proposed` (every action worth taking now on `nodes`, in order), the first
    /// `budget` whose every node each decision for `patience` (in the caller's unit of
    /// time, `now` in the same) has wanted gone; upgrades, and removals that evict no pod,
    /// do not wait. Nodes no action wants are forgotten.
    pub fn ripe(
        &mut self,
        proposed: Vec<Action>,
        nodes: &[RunningNode],
        now: u64,
        patience: u64,
        budget: usize,
    ) -> Vec<Action> {
        let wanted: BTreeSet<&str> = proposed.iter().flat_map(Action::nodes).collect();
        self.0.retain(|node, _| wanted.contains(node.as_str()));
        for node in wanted {
            self.0.entry(node.to_string()).or_insert(now);
        }
        let evicts_none = |action: &Action| {
            nodes
                .iter()
                .filter(|n| action.nodes().contains(&n.name.as_str()))
                .all(|n| n.pods.is_empty())
        };
        let mut disrupted = 0;
        proposed
            .into_iter()
            .filter(|action| {
                matches!(action, Action::Upgrade { .. })
                    || evicts_none(action)
                    || action
                        .nodes()
                        .iter()
                        .all(|node| now >= self.0[*node].saturating_add(patience))
            })
            .take_while(|action| {
                disrupted += action.nodes().len();
                disrupted <= budget
            })
            .collect()
    }
}

/// What a balanced move must save per hour for each pod it evicts: $0.005, $3.65 a month,
/// about what a pod of a tenth of a vCPU costs to run.
pub const MIN_SAVING_PER_POD: f64 = 0.005;

/// The most nodes one merge removes.
const MOST_MERGED: usize = 8;

/// Whether removing nodes that cost `price` and run `pods` pods, for new nodes costing
/// `cost`, is worth it under `policy`: balanced, a replacement or merge saves `min_saving`
/// of what it removes, and every move [`MIN_SAVING_PER_POD`] for each pod it evicts.
fn worth(policy: Policy, price: f64, cost: f64, pods: usize, min_saving: f64) -> bool {
    let saving = price - cost;
    match policy {
        Policy::WhenEmpty => pods == 0 && saving > 0.0,
        Policy::Aggressive => saving > 1e-9,
        Policy::Balanced => {
            saving > 1e-9
                && saving >= price * min_saving
                && saving >= MIN_SAVING_PER_POD * pods as f64
        }
    }
}

/// One disruption.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase", tag = "action")]
pub enum Action {
    /// The node's pods fit on the other nodes.
    Delete {
        /// The node removed.
        node: String,
        /// Its price.
        saves_usd_per_hour: f64,
    },
    /// The node's pods fit on the other nodes plus these new, cheaper ones.
    Replace {
        /// The node removed.
        node: String,
        /// The nodes launched first.
        with: Vec<NewNode>,
        /// Its price less theirs.
        saves_usd_per_hour: f64,
    },
    /// Several nodes' pods fit on the other nodes plus fewer new ones, costing less.
    Merge {
        /// The nodes removed.
        nodes: Vec<String>,
        /// The nodes launched first.
        with: Vec<NewNode>,
        /// Their prices less the new nodes'.
        saves_usd_per_hour: f64,
    },
    /// The node runs an older version: its pods go to the other up-to-date nodes plus these
    /// new ones (of the families the upgrade chose), cheaper or not.
    Upgrade {
        /// The outdated node removed.
        node: String,
        /// The nodes launched first.
        with: Vec<NewNode>,
        /// Its price less theirs, negative when the upgrade costs more.
        saves_usd_per_hour: f64,
    },
}

impl Action {
    /// The nodes the action removes.
    pub fn nodes(&self) -> Vec<&str> {
        match self {
            Action::Delete { node, .. }
            | Action::Replace { node, .. }
            | Action::Upgrade { node, .. } => vec![node],
            Action::Merge { nodes, .. } => nodes.iter().map(String::as_str).collect(),
        }
    }

    /// The new nodes the action launches.
    pub fn new_nodes(&self) -> &[NewNode] {
        match self {
            Action::Delete { .. } => &[],
            Action::Replace { with, .. }
            | Action::Merge { with, .. }
            | Action::Upgrade { with, .. } => with,
        }
    }

    /// What the cluster costs less per hour once the action is done.
    pub fn saves_usd_per_hour(&self) -> f64 {
        match self {
            Action::Delete {
                saves_usd_per_hour, ..
            }
            | Action::Replace {
                saves_usd_per_hour, ..
            }
            | Action::Merge {
                saves_usd_per_hour, ..
            }
            | Action::Upgrade {
                saves_usd_per_hour, ..
            } => *saves_usd_per_hour,
        }
    }
}

/// The scheduler's placement of `pods` on `free` (by node, `None` for nodes that are not
/// room; `rooms` are the nodes' whole room): each pod on the least allocated node that
/// holds it, within every per-node rule. The scheduler takes pods in the order they come
/// back, which no plan knows, so under [`PodOrders::Either`] they must fit both biggest first
/// and smallest first (the order in which small pods spread over the emptiest nodes and
/// leave big ones no room). Commits the biggest-first placement to `free` only if every
/// pod fits.
fn fits_elsewhere<'a>(
    pods: impl IntoIterator<Item = &'a RunningPod>,
    rooms: &[Resources],
    free: &mut [Option<ExistingNode>],
    orders: PodOrders,
) -> bool {
    let mut order: Vec<&RunningPod> = pods.into_iter().collect();
    order.sort_by_key(|p| std::cmp::Reverse(p.requests.millicores * 4 + p.requests.memory_mib));
    let Some(placed) = placed_in_order(order.iter().copied(), rooms, free) else {
        return false;
    };
    if orders == PodOrders::Either
        && placed_in_order(order.iter().rev().copied(), rooms, free).is_none()
    {
        return false;
    }
    free.clone_from_slice(&placed);
    true
}

/// Where the scheduler puts `pods`, taken in this order, or `None` if one finds no room.
fn placed_in_order<'a>(
    pods: impl IntoIterator<Item = &'a RunningPod>,
    rooms: &[Resources],
    free: &[Option<ExistingNode>],
) -> Option<Vec<Option<ExistingNode>>> {
    let mut trial = free.to_vec();
    for pod in pods {
        let alone = pod.alone();
        let share = |room: &ExistingNode, whole: &Resources| {
            let left = room.free.saturating_sub(&pod.requests);
            let used = |l: u64, r: u64| 1.0 - l as f64 / r.max(1) as f64;
            used(left.millicores, whole.millicores).max(used(left.memory_mib, whole.memory_mib))
        };
        let best = (0..rooms.len())
            .filter(|&i| {
                trial[i]
                    .as_ref()
                    .is_some_and(|room| room.admits(&alone) > 0)
            })
            .min_by(|&a, &b| {
                let (ra, rb) = (trial[a].as_ref(), trial[b].as_ref());
                share(ra.expect("room"), &rooms[a])
                    .total_cmp(&share(rb.expect("room"), &rooms[b]))
                    .then(a.cmp(&b))
            })?;
        trial[best].as_mut()?.take(&alone, 1);
    }
    Some(trial)
}

/// Pods grouped by shape, as scale-up takes them.
pub fn groups_of<'a>(pods: impl IntoIterator<Item = &'a RunningPod>) -> Vec<PodGroup> {
    let mut groups: Vec<PodGroup> = Vec::new();
    for pod in pods {
        match groups.iter_mut().find(|g| {
            g.requests == pod.requests
                && g.placement == pod.placement
                && g.per_node == pod.per_node
                && g.avoids == pod.avoids
        }) {
            Some(g) => g.count += 1,
            None => groups.push(PodGroup {
                name: format!("group-{}", groups.len()),
                ..pod.alone()
            }),
        }
    }
    groups
}

/// The disruptions worth making now, at most `budget` of them: outdated nodes first (an
/// upgrade), then the biggest saving first.
pub fn consolidate(cluster: &Cluster) -> Vec<Action> {
    let nodes = cluster.nodes;
    // Outdated nodes are no room: a pod moved onto one would only move again.
    let mut free: Vec<Option<ExistingNode>> = nodes
        .iter()
        .map(|n| (!n.draining && !n.outdated).then(|| n.as_room()))
        .collect();
    let mut candidates: Vec<usize> = (0..nodes.len())
        .filter(|&i| nodes[i].keep.is_none() && !nodes[i].draining)
        .collect();
    // Most wasted dollars first; balanced, per pod a move would evict.
    let wasted = |n: &RunningNode| {
        let waste = n.usd_per_hour * (1.0 - n.utilization().min(1.0));
        match cluster.policy {
            Policy::Balanced => waste / (n.pods.len() + 1) as f64,
            _ => waste,
        }
    };
    candidates.sort_by(|&a, &b| {
        nodes[b]
            .outdated
            .cmp(&nodes[a].outdated)
            .then_with(|| wasted(&nodes[b]).total_cmp(&wasted(&nodes[a])))
            .then_with(|| nodes[a].name.cmp(&nodes[b].name))
    });
    let rooms: Vec<Resources> = nodes.iter().map(|n| n.room).collect();
    // The nodes the cluster will have once the actions so far are done.
    let mut count = nodes.iter().filter(|n| !n.draining).count();
    let mut actions = Vec::new();
    for &c in &candidates {
        if actions.len() >= cluster.budget {
            break;
        }
        let node = &nodes[c];
        let own = free[c].take();
        let deletable = node.outdated
            || worth(
                cluster.policy,
                node.usd_per_hour,
                0.0,
                node.pods.len(),
                cluster.min_saving,
            );
        if count > cluster.min_nodes
            && deletable
            && fits_elsewhere(&node.pods, &rooms, &mut free, cluster.orders)
        {
            count -= 1;
            actions.push(Action::Delete {
                node: node.name.clone(),
                saves_usd_per_hour: node.usd_per_hour,
            });
            continue;
        }
        if let Some(action) = replacement(cluster, &[c], &mut free, count) {
            count = count - 1 + action.new_nodes().len();
            actions.push(action);
            continue;
        }
        free[c] = own;
    }
    // Several of the least used candidates left, merged into fewer nodes: the most that
    // save enough, as Karpenter's multi-node consolidation searches.
    let taken: BTreeSet<&str> = actions.iter().flat_map(Action::nodes).collect();
    let mut left: Vec<usize> = candidates
        .into_iter()
        .filter(|&i| !nodes[i].outdated && !taken.contains(nodes[i].name.as_str()))
        .collect();
    left.sort_by(|&a, &b| {
        nodes[a]
            .utilization()
            .total_cmp(&nodes[b].utilization())
            .then_with(|| nodes[a].name.cmp(&nodes[b].name))
    });
    // A merge disrupts every node it removes.
    let most = left
        .len()
        .min(MOST_MERGED)
        .min(cluster.budget.saturating_sub(taken.len()));
    for k in (2..=most).rev() {
        let chosen = &left[..k];
        let own: Vec<Option<ExistingNode>> = chosen.iter().map(|&i| free[i].take()).collect();
        if let Some(action) = replacement(cluster, chosen, &mut free, count) {
            actions.push(action);
            break;
        }
        for (&i, room) in chosen.iter().zip(own) {
            free[i] = room;
        }
    }
    actions
}

/// The nodes `removed` (one, or several to merge) replaced by new ones and the others'
/// room, if that is worth it; commits the room it takes to `free`.
fn replacement(
    cluster: &Cluster,
    removed: &[usize],
    free: &mut [Option<ExistingNode>],
    nodes_now: usize,
) -> Option<Action> {
    let nodes = cluster.nodes;
    let node = &nodes[removed[0]];
    if cluster.policy == Policy::WhenEmpty && !node.outdated {
        return None;
    }
    let pods: Vec<&RunningPod> = removed.iter().flat_map(|&i| &nodes[i].pods).collect();
    let price: f64 = removed.iter().map(|&i| nodes[i].usd_per_hour).sum();
    let room: Vec<usize> = (0..nodes.len()).filter(|&i| free[i].is_some()).collect();
    let snapshot = Snapshot {
        pending: groups_of(pods.iter().copied()),
        existing: room
            .iter()
            .map(|&i| free[i].clone().expect("room"))
            .collect(),
        types: cluster.types.to_vec(),
        zones: cluster.zones.to_vec(),
        spread_zones: cluster.spread_zones,
        // The nodes themselves go, so their slots are free.
        max_new_nodes: (cluster.max_nodes + removed.len()).saturating_sub(nodes_now),
    };
    let mut plan = crate::plan(&snapshot);
    let cost = plan.usd_per_hour();
    let floor = cluster.min_nodes.saturating_sub(nodes_now - removed.len());
    if node.outdated && plan.unplaceable.is_empty() && plan.new_nodes.len() < floor {
        // Its pods fit on the others, but the cluster must keep minNodes.
        plan.new_nodes.extend(cheapest_stand_in(cluster, node));
    }
    // A replacement launches at least one node for the one it removes, so it never takes
    // the cluster below minNodes; a merge launches fewer than it removes, and keeps
    // minNodes.
    let fewer = if removed.len() == 1 {
        !plan.new_nodes.is_empty()
    } else {
        plan.new_nodes.len() < removed.len()
            && nodes_now - removed.len() + plan.new_nodes.len() >= cluster.min_nodes
    };
    let worth_it = plan.unplaceable.is_empty()
        && fewer
        && (node.outdated || worth(cluster.policy, price, cost, pods.len(), cluster.min_saving));
    if !worth_it {
        return None;
    }
    // What a saving promises, the scheduler must keep: the pods, placed as the scheduler
    // places them on the other nodes' room and the new nodes, all fit. (An upgrade goes
    // ahead regardless: pods left waiting get nodes from the next scale-up.)
    let mut rooms: Vec<Resources> = nodes.iter().map(|n| n.room).collect();
    let mut trial = free.to_vec();
    for new in &plan.new_nodes {
        let node_type = cluster.types.iter().find(|t| t.name == new.instance_type)?;
        rooms.push(node_type.room);
        trial.push(Some(ExistingNode {
            name: String::new(),
            instance_type: new.instance_type.clone(),
            arch: node_type.arch,
            zone: new.zone.clone(),
            free: node_type.room,
            sets: BTreeMap::new(),
        }));
    }
    if fits_elsewhere(pods.iter().copied(), &rooms, &mut trial, cluster.orders) {
        free.clone_from_slice(&trial[..free.len()]);
    } else if node.outdated {
        for &(g, existing, k) in &plan.on_existing {
            if let Some(room) = free[room[existing]].as_mut() {
                room.take(&snapshot.pending[g], k);
            }
        }
    } else {
        return None;
    }
    // The plan's cost again: a stand-in may have joined it since `cost`.
    let saves_usd_per_hour = price - plan.usd_per_hour();
    let (name, with) = (node.name.clone(), plan.new_nodes);
    Some(if removed.len() > 1 {
        Action::Merge {
            nodes: removed.iter().map(|&i| nodes[i].name.clone()).collect(),
            with,
            saves_usd_per_hour,
        }
    } else if node.outdated {
        Action::Upgrade {
            node: name,
            saves_usd_per_hour,
            with,
        }
    } else {
        Action::Replace {
            node: name,
            saves_usd_per_hour,
            with,
        }
    })
}

/// The cheapest type in the node's zone: a stand-in that keeps minNodes.
fn cheapest_stand_in(cluster: &Cluster, node: &RunningNode) -> Option<NewNode> {
    cluster
        .types
        .iter()
        .filter(|t| t.zones.contains(&node.zone))
        .min_by(|a, b| {
            a.usd_per_hour
                .total_cmp(&b.usd_per_hour)
                .then(a.name.cmp(&b.name))
        })
        .map(|t| NewNode {
            instance_type: t.name.clone(),
            zone: node.zone.clone(),
            usd_per_hour: t.usd_per_hour,
            pods: Default::default(),
        })
}
