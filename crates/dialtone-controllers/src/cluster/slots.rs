//! The node slots a plan asks for, and what the cloud's instances say about them.

use super::*;

/// One node slot of the plan.
#[derive(Clone, Debug)]
pub(super) struct Slot {
    pub(super) name: String,
    pub(super) role: NodeRole,
    pub(super) zone: String,
    pub(super) instance_type: String,
    pub(super) attempt: u32,
    pub(super) launch_backoff: Option<LaunchBackoff>,
    /// Whether its instance ran (an earlier pass saw it running, or broken): one that is
    /// gone now died, rather than failed to launch.
    pub(super) ran: bool,
    pub(super) unhealthy: Option<Unhealthy>,
    pub(super) last_repair: Option<LastRepair>,
}

impl Slot {
    /// A slot as the cluster's status last recorded it.
    fn from_status(node: &ClusterNode) -> Slot {
        Slot {
            name: node.name.clone(),
            role: node.role,
            zone: node.zone.clone(),
            instance_type: node.instance_type.clone(),
            attempt: node.attempt,
            launch_backoff: node.launch_backoff.clone(),
            // A node seen broken ran: one that never did failed to launch.
            ran: node.state == NodeState::Running || node.unhealthy.is_some(),
            unhealthy: node.unhealthy.clone(),
            last_repair: node.last_repair.clone(),
        }
    }

    /// A slot no instance has filled yet.
    fn new(name: String, role: NodeRole, node: &dialtone_types::cluster::NodeSlot) -> Slot {
        Slot {
            name,
            role,
            zone: node.zone.clone(),
            instance_type: node.instance_type.clone(),
            attempt: 0,
            launch_backoff: None,
            ran: false,
            unhealthy: None,
            last_repair: None,
        }
    }
}

pub(super) fn part_of(resource: &CloudResource) -> &str {
    resource.tags.get(TAG_PART).map_or("", String::as_str)
}

pub(super) fn attempt_of(resource: &CloudResource) -> u32 {
    resource
        .tags
        .get(TAG_ATTEMPT)
        .and_then(|a| a.parse().ok())
        .unwrap_or(0)
}

pub(super) fn is_going(resource: &CloudResource) -> bool {
    matches!(
        resource.state,
        ResourceState::Deleting | ResourceState::Terminated { .. }
    )
}

/// Whether every control-plane slot runs exactly one healthy instance of its current
/// attempt: no replacement is under way.
pub(super) fn control_plane_settled(own: &[CloudResource], slots: &[Slot]) -> bool {
    slots
        .iter()
        .filter(|s| s.role == NodeRole::ControlPlane)
        .all(|slot| {
            let mut instances = own.iter().filter(|r| {
                r.spec.kind() == ResourceKind::Instance && part_of(r) == slot.name && !is_going(r)
            });
            instances.next().is_some_and(|r| {
                attempt_of(r) == slot.attempt && r.state == ResourceState::Available
            }) && instances.next().is_none()
        })
}

/// The name of the control-plane slot `index`: `cp-0` is the one that starts the cluster.
pub(super) fn control_plane_slot(index: usize) -> String {
    format!("cp-{index}")
}

pub(super) fn subnet_part(zone: &str) -> String {
    format!("subnet-{zone}")
}

/// The node slots a plan asks for, carrying over each slot's attempt and launch backoff
/// from the cluster's nodes.
pub(super) fn desired_slots(plan: &ClusterPlan, status: &ClusterStatus) -> Vec<Slot> {
    let previous = &status.nodes;
    let sizing = status.sizing.as_ref();
    let next_worker = sizing.map_or(0, |s| s.next_worker);
    // Workers right-sizing decided to remove stay until drained, and their replacements
    // surge past maxNodes meanwhile, as a surge upgrade does; cutting the replacement
    // instead would leave the cluster to top up with the type it just moved away from.
    let leaving: Vec<&str> = sizing
        .into_iter()
        .flat_map(|s| &s.decisions)
        .flat_map(|d| &d.removed)
        .map(String::as_str)
        .collect();
    let before = |name: &str| previous.iter().find(|n| n.name == name);
    let mut slots: Vec<Slot> = plan
        .control_plane
        .nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let name = control_plane_slot(i);
            match before(&name) {
                // The plan decides where it runs and on what; the status, how it fares.
                Some(was) => Slot {
                    zone: node.zone.clone(),
                    instance_type: node.instance_type.clone(),
                    ..Slot::from_status(was)
                },
                None => Slot::new(name, NodeRole::ControlPlane, node),
            }
        })
        .collect();
    // Workers are what right-sizing last chose (the plan's initial ones at first), topped
    // up to minNodes and cut to maxNodes.
    let mut workers: Vec<Slot> = if previous.is_empty() {
        plan.workers
            .initial
            .iter()
            .enumerate()
            .map(|(i, node)| Slot::new(format!("worker-{i}"), NodeRole::Worker, node))
            .collect()
    } else {
        previous
            .iter()
            .filter(|n| n.role == NodeRole::Worker)
            .map(Slot::from_status)
            .collect()
    };
    let default_type = plan
        .workers
        .initial
        .first()
        .map(|s| s.instance_type.clone())
        .unwrap_or_else(|| plan.workers.initial_instance_type.clone());
    let default_type = &default_type;
    let mut next = workers
        .iter()
        .filter_map(|w| worker_index(&w.name))
        .max()
        .map_or(0, |i| i + 1)
        .max(next_worker);
    while workers.len() < plan.workers.min_nodes as usize {
        let zone = plan.workers.zones[workers.len() % plan.workers.zones.len()].clone();
        let node = dialtone_types::cluster::NodeSlot {
            zone,
            instance_type: default_type.clone(),
        };
        workers.push(Slot::new(format!("worker-{next}"), NodeRole::Worker, &node));
        next += 1;
    }
    let mut staying = 0;
    workers.retain(|w| {
        if leaving.contains(&w.name.as_str()) {
            return true;
        }
        staying += 1;
        staying <= plan.workers.max_nodes as usize
    });
    slots.extend(workers);
    slots
}

/// Moves the slot to its next attempt, with the backoff its launches are under and, for a
/// repair, the repair.
pub(super) fn bump_attempt(
    status: &mut ClusterStatus,
    slot: &Slot,
    launch_backoff: Option<LaunchBackoff>,
    repair: Option<LastRepair>,
) {
    let index = match status.nodes.iter().position(|n| n.name == slot.name) {
        Some(index) => index,
        None => {
            status.nodes.push(ClusterNode {
                name: slot.name.clone(),
                role: slot.role,
                zone: slot.zone.clone(),
                instance_type: slot.instance_type.clone(),
                instance_id: String::new(),
                state: NodeState::Absent,
                attempt: slot.attempt,
                kubernetes_version: String::new(),
                launch_backoff: None,
                unhealthy: None,
                last_repair: slot.last_repair.clone(),
            });
            status.nodes.len() - 1
        }
    };
    let node = &mut status.nodes[index];
    node.attempt = slot.attempt + 1;
    node.launch_backoff = launch_backoff;
    if repair.is_some() {
        node.last_repair = repair;
        node.unhealthy = None;
    }
}
