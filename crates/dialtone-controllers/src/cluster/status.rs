//! The status step: conditions, phase and events from what the cloud holds and what the
//! pass ran into.

use super::*;

impl Lifecycle {
    /// Fills nodes, counts, endpoint, conditions, phase and events from what the cloud
    /// holds, and says when to look again.
    pub(super) fn observe(
        &self,
        status: &mut ClusterStatus,
        slots: &[Slot],
        resources: &[CloudResource],
        blocked: Option<&Blocked>,
        max_launch_attempts: u32,
        now: Timestamp,
    ) -> Next {
        let instance_of = |slot: &Slot| {
            resources.iter().find(|r| {
                r.spec.kind() == ResourceKind::Instance
                    && part_of(r) == slot.name
                    && attempt_of(r) == slot.attempt
            })
        };
        status.nodes = slots
            .iter()
            .map(|slot| {
                let instance = instance_of(slot);
                let running = instance.is_some_and(|i| i.state == ResourceState::Available);
                ClusterNode {
                    name: slot.name.clone(),
                    role: slot.role,
                    zone: slot.zone.clone(),
                    instance_type: slot.instance_type.clone(),
                    instance_id: instance.map(|i| i.id.clone()).unwrap_or_default(),
                    state: instance.map_or(NodeState::Absent, |i| node_state(&i.state)),
                    attempt: slot.attempt,
                    kubernetes_version: instance
                        .and_then(|i| i.spec.node_version())
                        .unwrap_or_default()
                        .to_string(),
                    // A node that came up ends its launches' backoff.
                    launch_backoff: if running {
                        None
                    } else {
                        slot.launch_backoff.clone()
                    },
                }
            })
            .collect();
        let mut counts: Vec<NodeCount> = Vec::new();
        for node in &status.nodes {
            let ready = (node.state == NodeState::Running) as u32;
            match counts
                .iter_mut()
                .find(|c| c.role == node.role && c.zone == node.zone)
            {
                Some(c) => {
                    c.total += 1;
                    c.ready += ready;
                }
                None => counts.push(NodeCount {
                    role: node.role,
                    zone: node.zone.clone(),
                    ready,
                    total: 1,
                }),
            }
        }
        counts.sort_by(|a, b| (a.role, &a.zone).cmp(&(b.role, &b.zone)));
        status.node_counts = counts;
        let lb = resources
            .iter()
            .find(|r| r.spec.kind() == ResourceKind::LoadBalancer);
        status.endpoint = lb
            .filter(|lb| lb.state == ResourceState::Available)
            .map(|lb| format!("https://{}:{KUBERNETES_API_PORT}", lb.address))
            .unwrap_or_default();

        let ready_of = |role: NodeRole| {
            status
                .nodes
                .iter()
                .filter(|n| n.role == role)
                .fold((0, 0), |(ready, total), n| {
                    (ready + (n.state == NodeState::Running) as usize, total + 1)
                })
        };
        let (cp_ready, cp_total) = ready_of(NodeRole::ControlPlane);
        let (workers_ready, workers_total) = ready_of(NodeRole::Worker);
        let endpoint_up = !status.endpoint.is_empty();
        let everything = blocked.is_none()
            && endpoint_up
            && cp_ready == cp_total
            && workers_ready == workers_total;
        let serving =
            endpoint_up && cp_ready * 2 > cp_total && (workers_ready > 0 || workers_total == 0);
        let provisioned_before = condition(status, ClusterCondition::Provisioning)
            .is_some_and(|c| c.status == ConditionStatus::False);
        let (reason, message, warning) = match blocked {
            Some(Blocked::Waiting(wait, message)) => (wait.as_str(), message.clone(), false),
            Some(Blocked::Cloud(e)) => (
                e.reason(),
                e.to_string(),
                !matches!(e, CloudError::Throttled | CloudError::Timeout),
            ),
            None => ("", String::new(), false),
        };
        let impaired = status
            .nodes
            .iter()
            .find(|n| n.state == NodeState::Impaired)
            .map(|n| n.zone.clone());
        let scaling = matches!(
            blocked,
            Some(Blocked::Waiting(
                Wait::LaunchingNodes | Wait::WaitingForNodes,
                _
            ))
        ) && cp_ready == cp_total
            && status
                .nodes
                .iter()
                .filter(|n| n.state != NodeState::Running)
                .all(|n| {
                    n.role == NodeRole::Worker && n.attempt == 0 && n.state != NodeState::Impaired
                });
        let upgrading = matches!(blocked, Some(Blocked::Waiting(Wait::Upgrading, _)));
        let nodes_summary = format!(
            "{cp_ready}/{cp_total} control-plane and {workers_ready}/{workers_total} worker nodes running"
        );
        let was_ready = condition(status, ClusterCondition::Ready)
            .is_some_and(|c| c.status == ConditionStatus::True);
        let was_degraded = condition(status, ClusterCondition::Degraded)
            .is_some_and(|c| c.status == ConditionStatus::True);
        // A node whose launches failed the type's number of times in a row, on a cluster
        // that cannot serve without it, has failed: say so, and what to do.
        let exhausted = status.nodes.iter().find_map(|n| {
            n.launch_backoff
                .as_ref()
                .filter(|b| b.failures >= max_launch_attempts)
                .map(|b| (n.name.clone(), b.clone()))
        });
        use ConditionStatus::{False, True};
        if let Some((node, backoff)) = exhausted.filter(|_| !provisioned_before || !serving) {
            let message = format!(
                "{node} failed to launch {} times in a row (last: {}). Dialtone keeps retrying, every {} at most; if the cloud is out of capacity or failing there, wait, or change the cluster (for example `dialtone cluster update … --exclude-family`). `dialtone cluster describe` lists the attempts.",
                backoff.failures,
                backoff.last_error,
                seconds(self.options.retry.cap)
            );
            if condition(status, ClusterCondition::Ready).is_none_or(|c| c.reason != LAUNCH_FAILED)
            {
                record_event(status, now, true, "Failed", message.clone());
            }
            if !provisioned_before {
                set_condition(
                    &mut status.conditions,
                    ClusterCondition::Provisioning,
                    True,
                    LAUNCH_FAILED,
                    message.clone(),
                    now,
                );
            }
            set_condition(
                &mut status.conditions,
                ClusterCondition::Ready,
                False,
                LAUNCH_FAILED,
                message,
                now,
            );
            status.phase = Some(Phase::Failed);
        } else if everything {
            set_condition(
                &mut status.conditions,
                ClusterCondition::Provisioning,
                False,
                "Provisioned",
                "every planned resource exists".into(),
                now,
            );
            set_condition(
                &mut status.conditions,
                ClusterCondition::Ready,
                True,
                "ClusterReady",
                format!("{nodes_summary}; API at {}", status.endpoint),
                now,
            );
            set_condition(
                &mut status.conditions,
                ClusterCondition::Degraded,
                False,
                "AllNodesRunning",
                nodes_summary.clone(),
                now,
            );
            status.phase = Some(Phase::Ready);
        } else if provisioned_before && (scaling || upgrading) {
            // New workers right-sizing asked for, or a control-plane node replaced by one of
            // the new version, are on their way: nothing is broken.
            set_condition(
                &mut status.conditions,
                ClusterCondition::Ready,
                True,
                "ClusterReady",
                format!("serving with {nodes_summary}; {message}"),
                now,
            );
            set_condition(
                &mut status.conditions,
                ClusterCondition::Degraded,
                False,
                if upgrading { "Upgrading" } else { "Scaling" },
                message.clone(),
                now,
            );
            status.phase = Some(Phase::Ready);
        } else if !provisioned_before {
            let (reason, message) = if reason.is_empty() {
                ("Provisioning", nodes_summary.clone())
            } else {
                (reason, message.clone())
            };
            let step_changed = condition(status, ClusterCondition::Provisioning)
                .is_none_or(|c| c.reason != reason);
            if step_changed && !warning {
                record_event(status, now, false, reason, message.clone());
            }
            set_condition(
                &mut status.conditions,
                ClusterCondition::Provisioning,
                True,
                reason,
                message.clone(),
                now,
            );
            set_condition(
                &mut status.conditions,
                ClusterCondition::Ready,
                False,
                reason,
                message,
                now,
            );
            status.phase = Some(Phase::Provisioning);
        } else {
            let (degraded_reason, degraded_message) = match (&impaired, reason) {
                (Some(zone), _) => (
                    "ZoneOutage",
                    format!("zone {zone} is down; {nodes_summary}"),
                ),
                (None, "") => ("NodesNotRunning", nodes_summary.clone()),
                (None, reason) => (reason, format!("{message}; {nodes_summary}")),
            };
            set_condition(
                &mut status.conditions,
                ClusterCondition::Degraded,
                True,
                degraded_reason,
                degraded_message.clone(),
                now,
            );
            if serving {
                set_condition(
                    &mut status.conditions,
                    ClusterCondition::Ready,
                    True,
                    "ClusterReady",
                    format!("serving with {nodes_summary}"),
                    now,
                );
                status.phase = Some(Phase::Degraded);
            } else {
                set_condition(
                    &mut status.conditions,
                    ClusterCondition::Ready,
                    False,
                    "ControlPlaneUnavailable",
                    degraded_message,
                    now,
                );
                status.phase = Some(Phase::Unavailable);
            }
        }
        let is_ready = condition(status, ClusterCondition::Ready)
            .is_some_and(|c| c.status == ConditionStatus::True);
        let is_degraded = condition(status, ClusterCondition::Degraded)
            .is_some_and(|c| c.status == ConditionStatus::True);
        if is_ready && !was_ready {
            record_event(
                status,
                now,
                false,
                "Ready",
                format!(
                    "the cluster is ready: {nodes_summary}; API at {}",
                    status.endpoint
                ),
            );
        }
        if is_degraded && !was_degraded {
            let message = condition(status, ClusterCondition::Degraded)
                .map(|c| c.message.clone())
                .unwrap_or_default();
            record_event(status, now, true, "Degraded", message);
        }
        if !is_degraded && was_degraded {
            record_event(status, now, false, "Recovered", nodes_summary.clone());
        }
        if !reason.is_empty() && warning {
            record_event(status, now, true, reason, message);
        }
        match blocked {
            None if everything => Next::After(self.options.health_check),
            Some(Blocked::Waiting(Wait::ReplacingNode, _)) => Next::After(Duration::ZERO),
            _ => Next::After(self.options.poll),
        }
    }
}

pub(crate) fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: ClusterCondition,
    status: ConditionStatus,
    reason: &str,
    message: String,
    now: Timestamp,
) {
    Condition::set(conditions, type_.as_str(), status, reason, message, now);
}

pub(super) fn condition(status: &ClusterStatus, type_: ClusterCondition) -> Option<&Condition> {
    status.conditions.iter().find(|c| c.type_ == type_.as_str())
}

/// What a node slot's instance is doing, from the cloud's word for it.
pub(super) fn node_state(state: &ResourceState) -> NodeState {
    match state {
        ResourceState::Pending => NodeState::Pending,
        ResourceState::Available => NodeState::Running,
        ResourceState::Impaired { .. } => NodeState::Impaired,
        ResourceState::Deleting => NodeState::Deleting,
        ResourceState::Terminated { .. } => NodeState::Terminated,
    }
}

/// Records an event unless it repeats the last one; whether it did.
pub(crate) fn record_event(
    status: &mut ClusterStatus,
    now: Timestamp,
    warning: bool,
    reason: &str,
    message: String,
) -> bool {
    if status
        .events
        .last()
        .is_some_and(|e| e.reason == reason && e.message == message)
    {
        return false;
    }
    status.events.push(ClusterEvent {
        time: now,
        type_: if warning { "Warning" } else { "Normal" }.to_string(),
        reason: reason.to_string(),
        message,
    });
    if status.events.len() > EVENTS_KEPT {
        status.events.remove(0);
    }
    true
}

/// `12s`, `1.5s`: a wait as the events print it.
pub(super) fn seconds(delay: Duration) -> String {
    let secs = delay.as_secs_f64();
    if secs >= 10.0 {
        format!("{secs:.0}s")
    } else {
        format!("{secs:.1}s")
    }
}
