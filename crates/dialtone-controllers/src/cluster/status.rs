//! The status step: conditions, phase and events from what the cloud holds and what the
//! pass ran into.

use dialtone_types::settings::EndpointAccess;

use super::repair::{self, Limits};
use super::*;

/// What a pass saw, for the status.
pub(super) struct Observed<'a> {
    pub(super) plan: &'a ClusterPlan,
    pub(super) slots: &'a [Slot],
    /// The cluster's cloud resources.
    pub(super) resources: &'a [CloudResource],
    /// Its nodes, as its API lists them; empty when the pass did not ask.
    pub(super) nodes: &'a [NodeView],
    /// What the pass stopped at, if anything.
    pub(super) blocked: Option<&'a Blocked>,
    /// What the cluster last answered about its security; `None` before its API answers.
    pub(super) probed: Option<&'a super::probes::Probed>,
}

impl Lifecycle {
    /// Fills nodes, counts, endpoint, conditions, phase and events from what the cloud
    /// holds, and says when to look again.
    pub(super) fn observe(
        &self,
        status: &mut ClusterStatus,
        observed: Observed<'_>,
        max_launch_attempts: u32,
        now: Timestamp,
    ) -> Next {
        let Observed {
            plan,
            slots,
            resources,
            nodes,
            blocked,
            probed,
        } = observed;
        status.nodes = slots
            .iter()
            .map(|slot| {
                let instance = repair::current(resources, slot);
                let running = instance.is_some_and(|i| i.state == ResourceState::Available);
                let unhealthy = repair::unhealthy(slot, instance, nodes, now);
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
                    unhealthy,
                    last_repair: slot.last_repair.clone(),
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
        let provisioned_before = provisioned(status);
        let (reason, message, warning) = match blocked {
            Some(Blocked::Waiting(wait, message)) => (wait.as_str(), message.clone(), false),
            Some(Blocked::Cloud(e)) => (
                e.reason(),
                e.to_string(),
                !matches!(e, CloudError::Throttled | CloudError::Timeout),
            ),
            None => ("", String::new(), false),
        };
        self.evaluate_nodes(
            status,
            &Limits::new(plan, slots, resources, self.options.sizing.second, now),
            resources,
            nodes,
            blocked,
            now,
        );
        self.evaluate_security(status, plan, resources, probed, now);
        let broken = broken_nodes(status);
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
            let (degraded_reason, degraded_message) = match (broken.is_empty(), reason) {
                (false, _) => (
                    "NodesUnhealthy",
                    format!("{}; {nodes_summary}", broken.join("; ")),
                ),
                (true, "") => ("NodesNotRunning", nodes_summary.clone()),
                (true, reason) => (reason, format!("{message}; {nodes_summary}")),
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
        status.health = Some(health(status));
        match blocked {
            None if everything => Next::After(self.options.health_check),
            Some(Blocked::Waiting(Wait::ReplacingNode, _)) => Next::After(Duration::ZERO),
            _ => Next::After(self.options.poll),
        }
    }
}

impl Lifecycle {
    /// Sets the conditions that evaluate the cluster's nodes and API against its plan:
    /// `APIServerAvailable`, `ControlPlaneHealthy`, `EveryNodeReady` and
    /// `RemediationAllowed`.
    fn evaluate_nodes(
        &self,
        status: &mut ClusterStatus,
        limits: &Limits<'_>,
        resources: &[CloudResource],
        nodes: &[NodeView],
        blocked: Option<&Blocked>,
        now: Timestamp,
    ) {
        use ConditionStatus::{False, True};
        if self.kube.is_some() {
            match blocked {
                Some(Blocked::Waiting(Wait::WaitingForApi, message)) => set_condition(
                    &mut status.conditions,
                    ClusterCondition::ApiServerAvailable,
                    False,
                    "APIUnreachable",
                    message.clone(),
                    now,
                ),
                // The API answered this pass; when the pass did not ask, nothing changes.
                _ if !nodes.is_empty() => set_condition(
                    &mut status.conditions,
                    ClusterCondition::ApiServerAvailable,
                    True,
                    "APIAnswers",
                    format!("the Kubernetes API at {} answers", status.endpoint),
                    now,
                ),
                _ => {}
            }
        }
        // A control-plane member is a slot whose instance runs healthy, or, while it is
        // replaced, whose earlier instance still does.
        let members: Vec<&ClusterNode> = status
            .nodes
            .iter()
            .filter(|n| n.role == NodeRole::ControlPlane)
            .collect();
        let surging = |name: &str| {
            resources.iter().any(|r| {
                r.spec.kind() == ResourceKind::Instance
                    && part_of(r) == name
                    && r.state == ResourceState::Available
            })
        };
        let healthy = members
            .iter()
            .filter(|n| {
                (n.state == NodeState::Running && n.unhealthy.is_none())
                    || (n.state != NodeState::Running && surging(&n.name))
            })
            .count();
        let quorum = repair::quorum(members.len());
        let (cp_status, cp_reason, cp_message) = if healthy == members.len() {
            (
                True,
                "AllMembersHealthy",
                format!(
                    "{healthy} of {} control-plane nodes (etcd members) are healthy",
                    members.len()
                ),
            )
        } else if healthy >= quorum {
            (
                False,
                "MemberUnhealthy",
                format!(
                    "{healthy} of {} control-plane nodes are healthy; etcd keeps its quorum of {quorum}",
                    members.len()
                ),
            )
        } else {
            (
                False,
                "QuorumLost",
                format!(
                    "{healthy} of {} control-plane nodes are healthy, short of etcd's quorum of {quorum}: the API cannot accept writes",
                    members.len()
                ),
            )
        };
        set_condition(
            &mut status.conditions,
            ClusterCondition::ControlPlaneHealthy,
            cp_status,
            cp_reason,
            cp_message,
            now,
        );
        let broken = broken_nodes(status);
        let starting: Vec<&str> = status
            .nodes
            .iter()
            .filter(|n| n.unhealthy.is_none() && n.state != NodeState::Running)
            .map(|n| n.name.as_str())
            .collect();
        let (status_, reason, message) = if !broken.is_empty() {
            (False, "NodesUnhealthy", broken.join("; "))
        } else if !starting.is_empty() {
            (
                False,
                "NodesStarting",
                format!("not running yet: {}", starting.join(", ")),
            )
        } else {
            (
                True,
                "AllNodesReady",
                format!("all {} nodes run and are Ready", status.nodes.len()),
            )
        };
        set_condition(
            &mut status.conditions,
            ClusterCondition::EveryNodeReady,
            status_,
            reason,
            message,
            now,
        );
        let (status_, reason, message) = match limits.short_circuit() {
            _ if !limits.plan_repairs() => (
                False,
                "RepairDisabled",
                "repair is off for this cluster's type".to_string(),
            ),
            Some(why) => (False, "TooManyUnhealthy", why),
            None => (
                True,
                "RepairsAllowed",
                "broken nodes are replaced within the type's repair limits".to_string(),
            ),
        };
        set_condition(
            &mut status.conditions,
            ClusterCondition::RemediationAllowed,
            status_,
            reason,
            message,
            now,
        );
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

impl Lifecycle {
    /// Sets `SecurityCompliant` from what the cloud reports (every instance's root disk
    /// encryption and metadata options, and the API load balancer's exposure, against the
    /// plan's security decisions) and from what the cluster answers (the certificate its API
    /// serves, and whether it enforces the plan's Pod Security level).
    fn evaluate_security(
        &self,
        status: &mut ClusterStatus,
        plan: &ClusterPlan,
        resources: &[CloudResource],
        probed: Option<&super::probes::Probed>,
        now: Timestamp,
    ) {
        let settings = &plan.settings;
        let mut differences = Vec::new();
        for resource in resources.iter().filter(|r| !is_going(r)) {
            match &resource.spec {
                ResourceSpec::Instance {
                    disk_encrypted,
                    metadata,
                    ..
                } => {
                    let name = format!("{} ({})", part_of(resource), resource.id);
                    if *disk_encrypted != settings.workers.disk_encryption {
                        differences.push(format!(
                            "{name}: root disk {}encrypted, planned {}encrypted",
                            if *disk_encrypted { "" } else { "not " },
                            if settings.workers.disk_encryption {
                                ""
                            } else {
                                "not "
                            }
                        ));
                    }
                    if *metadata != settings.security.instance_metadata {
                        differences.push(format!(
                            "{name}: metadata service {metadata}, planned {}",
                            settings.security.instance_metadata
                        ));
                    }
                }
                ResourceSpec::LoadBalancer { public, .. } if part_of(resource) == "api" => {
                    let planned = settings.network.api_endpoint == EndpointAccess::Public;
                    if *public != planned {
                        let word = |public: bool| if public { "public" } else { "private" };
                        differences.push(format!(
                            "the API endpoint {} is {}, planned {}",
                            resource.id,
                            word(*public),
                            word(planned)
                        ));
                    }
                }
                _ => {}
            }
        }
        let cluster_findings = probed.map_or_else(Vec::new, |p| p.findings(now));
        let (state, reason, message) = if !differences.is_empty() {
            differences.extend(cluster_findings);
            (
                ConditionStatus::False,
                "SettingsDiffer",
                format!(
                    "{}; a node keeps what it was launched with until it is replaced (by an upgrade or a repair)",
                    differences.join("; ")
                ),
            )
        } else if !cluster_findings.is_empty() {
            (
                ConditionStatus::False,
                "ClusterNotCompliant",
                cluster_findings.join("; "),
            )
        } else {
            (
                ConditionStatus::True,
                "AsPlanned",
                format!(
                    "every instance's root disk {}, metadata service {}; API endpoint {}{}{}",
                    if settings.workers.disk_encryption {
                        "encrypted"
                    } else {
                        "unencrypted as planned"
                    },
                    settings.security.instance_metadata,
                    settings.network.api_endpoint,
                    match probed.map(|p| &p.certificate) {
                        Some(Ok(validity)) =>
                            format!(", serving a certificate valid until {}", validity.not_after),
                        _ => String::new(),
                    },
                    match probed.map(|p| &p.pod_security) {
                        Some(Ok(dialtone_kube::access::PodSecurityProbe::Enforced)) => format!(
                            "; Pod Security `{}` enforced (a privileged pod is refused)",
                            settings.security.pod_security_level
                        ),
                        _ => String::new(),
                    }
                ),
            )
        };
        set_condition(
            &mut status.conditions,
            ClusterCondition::SecurityCompliant,
            state,
            reason,
            message,
            now,
        );
    }
}

/// Each broken node: what is wrong and since when.
fn broken_nodes(status: &ClusterStatus) -> Vec<String> {
    status
        .nodes
        .iter()
        .filter_map(|n| {
            let trouble = n.unhealthy.as_ref()?;
            Some(format!(
                "{} ({}) since {}",
                n.name,
                trouble.reason,
                trouble.since.strftime("%H:%M:%S")
            ))
        })
        .collect()
}

/// The cluster's evaluation conditions in one word.
fn health(status: &ClusterStatus) -> Health {
    let is = |type_, value| condition(status, type_).is_some_and(|c| c.status == value);
    use ConditionStatus::{False, True};
    if !provisioned(status) {
        return Health::Unknown;
    }
    let quorum_lost = condition(status, ClusterCondition::ControlPlaneHealthy)
        .is_some_and(|c| c.status == False && c.reason == "QuorumLost");
    if is(ClusterCondition::Ready, False)
        || is(ClusterCondition::ApiServerAvailable, False)
        || quorum_lost
    {
        return Health::Unhealthy;
    }
    let warnings = [
        ClusterCondition::SecurityCompliant,
        ClusterCondition::ControlPlaneHealthy,
        ClusterCondition::EveryNodeReady,
        ClusterCondition::RemediationAllowed,
        ClusterCondition::AccessProjected,
        ClusterCondition::VersionSupported,
    ];
    if is(ClusterCondition::Degraded, True) || warnings.iter().any(|&c| is(c, False)) {
        Health::Warning
    } else {
        Health::Healthy
    }
}

/// Whether every planned resource has existed once.
pub(super) fn provisioned(status: &ClusterStatus) -> bool {
    condition(status, ClusterCondition::Provisioning)
        .is_some_and(|c| c.status == ConditionStatus::False)
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
    ClusterEvent::record(
        &mut status.events,
        EVENTS_KEPT,
        now,
        warning,
        reason,
        message,
    )
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
