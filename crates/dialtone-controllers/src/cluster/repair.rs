//! Repair of broken nodes, within the limits Cluster API's MachineHealthCheck and its
//! control-plane remediation keep:
//!
//! - a node is broken when its instance died after it ran, or when it stopped answering:
//!   the cloud's status checks fail, or the node is NotReady in the cluster's API;
//! - a dead instance is replaced at once, an unanswering one once it has been broken for
//!   the type's `repair.unhealthyAfterSeconds`; a node that breaks again within an hour of
//!   its repair waits twice as long as the time before, so a node that keeps failing is
//!   not churned;
//! - worker repairs stop while more than `repair.maxUnhealthyPercent` of the workers are
//!   broken at once (a failure that wide is an outage to investigate, not nodes to
//!   replace; one broken worker never is), and at most `repair.maxParallel` run at a time;
//! - a control-plane node is replaced only while every other one is healthy and they keep
//!   etcd's quorum without it: one at a time;
//! - a replacement boots before the node it replaces goes; a worker's old node is then
//!   drained through `pods/eviction`, within its pods' disruption budgets, and terminated.

use std::time::Duration;

use dialtone_kube::workload;

use super::*;

/// How long a repair is remembered: a node that breaks again within it waits longer.
const REPAIR_MEMORY_SECONDS: u32 = 3600;
/// The most times a repeated repair's wait doubles.
const MAX_DOUBLINGS: u32 = 5;
/// Repairs kept in the status.
const REPAIRS_KEPT: usize = 20;

/// What is wrong with a slot's node.
pub(super) struct Broken {
    pub(super) reason: String,
    pub(super) since: Timestamp,
    /// Its instance is gone, rather than not answering.
    pub(super) died: bool,
}

/// The instance that fills the slot now (its current attempt).
pub(super) fn current<'a>(own: &'a [CloudResource], slot: &Slot) -> Option<&'a CloudResource> {
    own.iter().find(|r| {
        r.spec.kind() == ResourceKind::Instance
            && part_of(r) == slot.name
            && attempt_of(r) == slot.attempt
    })
}

/// How many of `members` etcd needs healthy to keep its quorum: a majority.
pub(super) fn quorum(members: usize) -> usize {
    members / 2 + 1
}

/// Why the slot's instance counts as dead: it is gone, or going, after it ran. One gone
/// without having run failed to launch: that is not a repair.
fn died(slot: &Slot, instance: &CloudResource) -> Option<String> {
    match &instance.state {
        ResourceState::Terminated { reason } if slot.ran => {
            Some(format!("its instance {} is gone: {reason}", instance.id))
        }
        ResourceState::Deleting if slot.ran => {
            Some(format!("its instance {} is being deleted", instance.id))
        }
        _ => None,
    }
}

/// Whether the slot's node is broken, from its instance now and what earlier passes saw.
pub(super) fn broken(
    slot: &Slot,
    instance: Option<&CloudResource>,
    now: Timestamp,
) -> Option<Broken> {
    let instance = instance?;
    if let Some(reason) = died(slot, instance) {
        return Some(Broken {
            reason,
            since: slot.unhealthy.as_ref().map_or(now, |u| u.since),
            died: true,
        });
    }
    match &instance.state {
        ResourceState::Available | ResourceState::Impaired { .. } => {
            slot.unhealthy.as_ref().map(|u| Broken {
                reason: u.reason.clone(),
                since: u.since,
                died: false,
            })
        }
        _ => None,
    }
}

/// What is wrong with a slot's instance or node now, for its status: the cloud's word for
/// an impaired or dead instance, the API's for a NotReady node. `nodes` empty means the
/// pass did not hear from the API: a running instance's node keeps what the last pass saw.
pub(super) fn unhealthy(
    slot: &Slot,
    instance: Option<&CloudResource>,
    nodes: &[NodeView],
    now: Timestamp,
) -> Option<Unhealthy> {
    let instance = instance?;
    let reason = match &instance.state {
        ResourceState::Impaired { reason } => reason.clone(),
        ResourceState::Available if nodes.is_empty() => return slot.unhealthy.clone(),
        ResourceState::Available => {
            let node = nodes.iter().find(|n| n.instance_id == instance.id)?;
            if node.ready {
                return None;
            }
            format!("node {} is NotReady", node.name)
        }
        _ => died(slot, instance)?,
    };
    Some(Unhealthy {
        since: slot.unhealthy.as_ref().map_or(now, |u| u.since),
        reason,
    })
}

/// What a pass does about a broken node.
pub(super) enum Verdict {
    /// Replace it now; the repair to record.
    Now(LastRepair),
    /// Not broken long enough yet.
    Later,
    /// Broken long enough, and held back: why.
    Held(String),
}

/// The limits on repairs in one pass, from every slot's health.
pub(super) struct Limits<'a> {
    plan: &'a ClusterPlan,
    slots: &'a [Slot],
    own: &'a [CloudResource],
    /// One second of the plan's delays.
    second: Duration,
    now: Timestamp,
}

impl<'a> Limits<'a> {
    pub(super) fn new(
        plan: &'a ClusterPlan,
        slots: &'a [Slot],
        own: &'a [CloudResource],
        second: Duration,
        now: Timestamp,
    ) -> Self {
        Limits {
            plan,
            slots,
            own,
            second,
            now,
        }
    }

    /// Whether the cluster's type repairs nodes at all.
    pub(super) fn plan_repairs(&self) -> bool {
        self.plan.settings.repair.enabled
    }

    fn broken_workers(&self) -> (usize, usize) {
        let workers = self.slots.iter().filter(|s| s.role == NodeRole::Worker);
        let broken = workers
            .clone()
            .filter(|s| broken(s, current(self.own, s), self.now).is_some())
            .count();
        (broken, workers.count())
    }

    /// Why worker repairs stop, while more of the workers are broken than the type
    /// repairs. One broken worker is never an outage, however few workers there are.
    pub(super) fn short_circuit(&self) -> Option<String> {
        let (broken, total) = self.broken_workers();
        let most = self.plan.settings.repair.max_unhealthy_percent as usize;
        (broken > 1 && broken * 100 > most * total).then(|| {
            format!(
                "{broken} of {total} workers are broken at once, more than the {most}% this cluster repairs (repair.maxUnhealthyPercent): a failure this wide is an outage to investigate, so repairs wait until at most {most}% are broken"
            )
        })
    }

    /// Whether a replacement of the slot's node is still on its way: it has not come up,
    /// or the node it replaces is still there.
    fn repairing(&self, slot: &Slot) -> bool {
        let old_alive = self.own.iter().any(|r| {
            r.spec.kind() == ResourceKind::Instance
                && part_of(r) == slot.name
                && attempt_of(r) < slot.attempt
                && !is_going(r)
        });
        let replacement_down = slot.last_repair.is_some()
            && current(self.own, slot).is_none_or(|r| r.state == ResourceState::Pending);
        old_alive || replacement_down
    }

    fn healthy(&self, slot: &Slot) -> bool {
        slot.unhealthy.is_none()
            && !self.repairing(slot)
            && current(self.own, slot).is_some_and(|r| r.state == ResourceState::Available)
    }

    /// Whether the slot's broken node is replaced now.
    pub(super) fn verdict(&self, slot: &Slot, broken: &Broken) -> Verdict {
        let repair = &self.plan.settings.repair;
        let recent = slot.last_repair.as_ref().filter(|last| {
            broken.since.duration_since(last.time)
                < jiff::SignedDuration::try_from(self.second * REPAIR_MEMORY_SECONDS)
                    .unwrap_or(jiff::SignedDuration::MAX)
        });
        let in_a_row = recent.map_or(1, |last| last.in_a_row + 1);
        // A dead instance is replaced at once the first time; anything else waits the
        // threshold, doubled for each repair in a row before it.
        let doublings = (in_a_row - 1).min(MAX_DOUBLINGS);
        let patience = match (broken.died, doublings) {
            (true, 0) => Duration::ZERO,
            (true, n) => self.second * repair.unhealthy_after_seconds * (1 << (n - 1)),
            (false, n) => self.second * repair.unhealthy_after_seconds * (1 << n),
        };
        let due = broken.since.checked_add(patience).unwrap_or(broken.since);
        if due > self.now {
            return Verdict::Later;
        }
        if !repair.enabled {
            return Verdict::Held(format!(
                "{} is broken ({}), and repair is off for {} clusters",
                slot.name, broken.reason, self.plan.cluster_type
            ));
        }
        match slot.role {
            NodeRole::Worker => {
                if let Some(why) = self.short_circuit() {
                    return Verdict::Held(why);
                }
                let under_way = self
                    .slots
                    .iter()
                    .filter(|s| s.role == NodeRole::Worker && self.repairing(s))
                    .count();
                if under_way >= repair.max_parallel as usize {
                    return Verdict::Held(format!(
                        "{} waits: {under_way} worker repair(s) are under way, the most at once (repair.maxParallel)",
                        slot.name
                    ));
                }
            }
            NodeRole::ControlPlane => {
                let members: Vec<&Slot> = self
                    .slots
                    .iter()
                    .filter(|s| s.role == NodeRole::ControlPlane)
                    .collect();
                let healthy_others = members
                    .iter()
                    .filter(|s| s.name != slot.name && self.healthy(s))
                    .count();
                let quorum = quorum(members.len());
                if members.len() > 1 && healthy_others < quorum {
                    return Verdict::Held(format!(
                        "{} waits: without it {healthy_others} of {} control-plane nodes are healthy, short of etcd's quorum of {quorum}; it is replaced once the others are",
                        slot.name,
                        members.len()
                    ));
                }
            }
        }
        Verdict::Now(LastRepair {
            time: self.now,
            in_a_row,
        })
    }
}

/// Records a repair in the cluster's history and as an event.
pub(super) fn record(
    status: &mut ClusterStatus,
    slot: &Slot,
    instance_id: &str,
    broken: &Broken,
    repair: &LastRepair,
) {
    let in_a_row = match repair.in_a_row {
        1 => String::new(),
        n => format!(" (repair {n} in a row: it broke again soon after the last)"),
    };
    record_event(
        status,
        repair.time,
        true,
        "ReplacingNode",
        format!(
            "{} ({instance_id}) {}; launching a replacement{in_a_row}",
            slot.name, broken.reason
        ),
    );
    status.repairs.push(NodeRepair {
        time: repair.time,
        node: slot.name.clone(),
        role: slot.role,
        instance_id: instance_id.to_string(),
        reason: broken.reason.clone(),
        in_a_row: repair.in_a_row,
    });
    if status.repairs.len() > REPAIRS_KEPT {
        status.repairs.remove(0);
    }
}

impl Lifecycle {
    /// Drains the node of a replaced worker's old instance: taints it so that nothing new
    /// lands there, then evicts its pods within their budgets. Whether it is drained (no
    /// node, or nothing left on it but daemon pods).
    pub(super) async fn drained(
        &self,
        uid: &str,
        slot: &Slot,
        old: &CloudResource,
        status: &mut ClusterStatus,
    ) -> Pass<bool> {
        let Some(clients) = &self.kube else {
            return Ok(true);
        };
        let unanswered = |e: &dyn std::fmt::Display| {
            Blocked::Waiting(
                Wait::WaitingForApi,
                format!("the Kubernetes API does not answer: {e}"),
            )
        };
        let client = clients.client(uid).map_err(|e| unanswered(&e))?;
        let nodes = workload::nodes(&client).await.map_err(|e| unanswered(&e))?;
        let Some(node) = nodes.into_iter().find(|n| n.instance_id == old.id) else {
            return Ok(true);
        };
        if !node.disrupted {
            workload::mark_disrupted(&client, &node.name)
                .await
                .map_err(|e| unanswered(&e))?;
        }
        let name = node.name.clone();
        let observed = workload::observe(&client, vec![node])
            .await
            .map_err(|e| unanswered(&e))?;
        let pods: Vec<_> = observed
            .pods
            .iter()
            .filter(|p| p.node.as_deref() == Some(&name) && !p.finished && !sizing::is_daemon(p))
            .collect();
        let doing = format!("draining {}'s old node {name}", slot.name);
        sizing::evict(&client, &pods, status, (self.clock)(), &doing)
            .await
            .map_err(|e| unanswered(&e))?;
        Ok(pods.is_empty())
    }
}
