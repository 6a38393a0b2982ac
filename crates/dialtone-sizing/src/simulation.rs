//! A cluster in miniature, for property tests and the replay benchmark: nodes holding pods,
//! placed as the scheduler places them, grown by [`crate::plan`] and shrunk by
//! [`crate::consolidate::consolidate`], the way the controller applies them to a real
//! cluster (new nodes first, then the disrupted nodes' pods move).

use crate::consolidate::{
    Cluster, PROPOSED_PER_DISRUPTION, PodOrders, Policy, RunningNode, RunningPod, Unneeded,
    consolidate, groups_of,
};
use crate::{NodeType, PerNode, Plan, Resources, Snapshot};

/// What one step of the controller did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Step {
    /// Nodes launched.
    pub launched: usize,
    /// Nodes removed.
    pub removed: usize,
    /// Pods left pending.
    pub unplaceable: u32,
    /// Pods evicted from the nodes removed.
    pub evicted: usize,
}

impl Step {
    /// Nodes launched and removed: what the step disrupted.
    pub fn actions(&self) -> usize {
        self.launched + self.removed
    }
}

/// The cluster: its nodes and pending pods, and the settings its controller runs with.
#[derive(Clone, Debug)]
pub struct SimCluster {
    /// The workers and the pods they run.
    pub nodes: Vec<RunningNode>,
    /// When each node was launched, in steps.
    pub launched_at: Vec<u64>,
    /// Pods waiting for room.
    pub pending: Vec<RunningPod>,
    /// The types nodes may be of.
    pub types: Vec<NodeType>,
    /// The cluster's zones.
    pub zones: Vec<String>,
    /// Whether new nodes are spread over the zones.
    pub spread_zones: bool,
    /// Consolidation leaves at least this many nodes.
    pub min_nodes: usize,
    /// The most nodes that may run at once.
    pub max_nodes: usize,
    /// How many nodes one step may disrupt.
    pub budget: usize,
    /// The share of a node's price a replacement must save.
    pub min_saving: f64,
    /// Steps a node must have run before consolidation may touch it, and, under a policy
    /// that waits, stay unneeded before it goes.
    pub stabilization: u64,
    /// How new nodes are chosen: [`crate::plan`], or a baseline.
    pub planner: fn(&Snapshot) -> Plan,
    /// What consolidation's moves must be worth.
    pub policy: Policy,
    /// In which orders moved pods must fit.
    pub orders: PodOrders,
    /// The current step.
    pub now: u64,
    next_name: usize,
    unneeded: Unneeded,
}

impl SimCluster {
    /// An empty cluster that may grow to `max_nodes` of `types`, with the controller's
    /// defaults: one disruption per step, replacements that save 10 %.
    pub fn new(types: Vec<NodeType>, zones: Vec<String>, max_nodes: usize) -> Self {
        SimCluster {
            nodes: Vec::new(),
            launched_at: Vec::new(),
            pending: Vec::new(),
            types,
            zones,
            spread_zones: false,
            min_nodes: 0,
            max_nodes,
            budget: 1,
            min_saving: 0.1,
            stabilization: 0,
            planner: crate::plan,
            policy: Policy::Balanced,
            orders: PodOrders::Either,
            now: 0,
            next_name: 0,
            unneeded: Unneeded::default(),
        }
    }

    /// What its nodes cost.
    pub fn usd_per_hour(&self) -> f64 {
        self.nodes.iter().fold(0.0, |sum, n| sum + n.usd_per_hour)
    }

    /// How many pods run.
    pub fn running_pods(&self) -> usize {
        self.nodes.iter().map(|n| n.pods.len()).sum()
    }

    fn free(&self, i: usize) -> Resources {
        let n = &self.nodes[i];
        let used = n
            .pods
            .iter()
            .fold(Resources::default(), |s, p| s.add(&p.requests));
        n.room.saturating_sub(&used)
    }

    /// Places pending pods, oldest first, each on the least allocated node that holds it
    /// within its per-node rule.
    pub fn schedule(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        for pod in pending {
            let best = (0..self.nodes.len())
                .filter(|&i| !self.nodes[i].draining)
                .filter(|&i| {
                    let n = &self.nodes[i];
                    let alike = |rule: &PerNode| {
                        n.pods
                            .iter()
                            .filter(|p| p.per_node.as_ref() == Some(rule))
                            .count()
                    };
                    pod.requests.fits_in(&self.free(i))
                        && pod.placement.allows(n.arch, &n.zone)
                        && pod
                            .per_node
                            .as_ref()
                            .is_none_or(|r| alike(r) < r.most as usize)
                        && !pod.avoids.contains(&n.name)
                })
                .min_by(|&a, &b| {
                    self.nodes[a]
                        .utilization()
                        .total_cmp(&self.nodes[b].utilization())
                        .then(a.cmp(&b))
                });
            match best {
                Some(i) => self.nodes[i].pods.push(pod),
                None => self.pending.push(pod),
            }
        }
    }

    /// Adds pods of one shape; they wait for the scheduler.
    pub fn add_pods(&mut self, pod: &RunningPod, count: usize) {
        self.pending.extend(std::iter::repeat_n(pod.clone(), count));
    }

    /// Removes `count` pods of this shape, pending ones first, then the newest placed.
    pub fn remove_pods(&mut self, pod: &RunningPod, mut count: usize) {
        while count > 0 {
            if let Some(i) = self.pending.iter().rposition(|p| p == pod) {
                self.pending.remove(i);
            } else if let Some((n, i)) = self
                .nodes
                .iter()
                .enumerate()
                .rev()
                .find_map(|(n, node)| node.pods.iter().rposition(|p| p == pod).map(|i| (n, i)))
            {
                self.nodes[n].pods.remove(i);
            } else {
                return;
            }
            count -= 1;
        }
    }

    fn launch(&mut self, instance_type: &str, zone: &str) {
        let t = self
            .types
            .iter()
            .find(|t| t.name == instance_type)
            .expect("a planned type");
        self.nodes.push(RunningNode {
            name: format!("node-{}", self.next_name),
            instance_type: t.name.clone(),
            arch: t.arch,
            zone: zone.to_string(),
            usd_per_hour: t.usd_per_hour,
            room: t.room,
            pods: Vec::new(),
            keep: None,
            draining: false,
            outdated: false,
        });
        self.launched_at.push(self.now);
        self.next_name += 1;
    }

    /// The scale-up decision for the pending pods.
    pub fn scale_up_plan(&self) -> (Snapshot, Plan) {
        let snapshot = Snapshot {
            pending: groups_of(&self.pending),
            existing: (0..self.nodes.len())
                .filter(|&i| !self.nodes[i].draining)
                .map(|i| self.nodes[i].as_room())
                .collect(),
            types: self.types.clone(),
            zones: self.zones.clone(),
            spread_zones: self.spread_zones,
            max_new_nodes: self.max_nodes.saturating_sub(self.nodes.len()),
        };
        let plan = (self.planner)(&snapshot);
        (snapshot, plan)
    }

    /// One controller step: schedule, add nodes for what stays pending, or else
    /// consolidate; then let the scheduler place what moved.
    pub fn step(&mut self) -> Step {
        self.now += 1;
        self.schedule();
        let mut step = Step::default();
        if !self.pending.is_empty() {
            let (_, plan) = self.scale_up_plan();
            for node in &plan.new_nodes {
                self.launch(&node.instance_type, &node.zone);
            }
            step.launched = plan.new_nodes.len();
            step.unplaceable = plan.unplaceable.iter().map(|u| u.count).sum();
            self.schedule();
            return step;
        }
        for (i, node) in self.nodes.iter_mut().enumerate() {
            node.keep = (self.now - self.launched_at[i] < self.stabilization)
                .then(|| "launched within the stabilization window".to_string());
        }
        // A policy that waits weighs every move each step, and takes those that waited.
        let waits = self.policy.waits();
        let proposed = consolidate(&Cluster {
            nodes: &self.nodes,
            types: &self.types,
            zones: &self.zones,
            spread_zones: self.spread_zones,
            min_nodes: self.min_nodes,
            max_nodes: self.max_nodes,
            budget: if waits {
                self.budget * PROPOSED_PER_DISRUPTION
            } else {
                self.budget
            },
            min_saving: self.min_saving,
            policy: self.policy,
            orders: self.orders,
        });
        let patience = if waits { self.stabilization } else { 0 };
        let actions = self
            .unneeded
            .ripe(proposed, &self.nodes, self.now, patience, self.budget);
        for action in &actions {
            for node in action.new_nodes() {
                self.launch(&node.instance_type, &node.zone);
            }
            step.launched += action.new_nodes().len();
            for node in self
                .nodes
                .iter_mut()
                .filter(|n| action.nodes().contains(&n.name.as_str()))
            {
                node.draining = true;
            }
        }
        // Drain: the disrupted nodes' pods go back to the scheduler, then the nodes go.
        for i in (0..self.nodes.len()).rev() {
            if self.nodes[i].draining {
                let node = self.nodes.remove(i);
                self.launched_at.remove(i);
                step.evicted += node.pods.len();
                self.pending.extend(node.pods);
                step.removed += 1;
            }
        }
        self.schedule();
        step
    }
}
