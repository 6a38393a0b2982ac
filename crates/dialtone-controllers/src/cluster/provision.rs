//! The steps that make the cloud hold what the plan asks for: network, endpoint, nodes.

use dialtone_types::settings::{EndpointAccess, LoadBalancerScope};

use dialtone_cloud::{Change, Protocol};
use dialtone_types::Connection;

use super::repair::{self, Verdict};

use super::*;

/// The rules of the cluster's security group that its plan asks for.
fn planned_ingress(plan: &ClusterPlan) -> Vec<IngressRule> {
    let mut ingress: Vec<IngressRule> = plan
        .network
        .api_allowed_cidrs
        .iter()
        .map(|&source| IngressRule::tcp(KUBERNETES_API_PORT, source))
        .collect();
    // Nodes talk to each other freely: etcd's peers, kubelets, the pod network's overlay.
    ingress.push(IngressRule::all(plan.network.vpc_cidr));
    if plan.settings.security.ssh_access {
        ingress.push(IngressRule::tcp(SSH_PORT, plan.network.vpc_cidr));
    }
    ingress
}

/// `port/protocol from source`, as events name a rule.
fn rule_text(rule: &IngressRule) -> String {
    match rule.protocol {
        Protocol::All => format!("all traffic from {}", rule.source),
        Protocol::Tcp => format!("tcp/{} from {}", rule.port, rule.source),
    }
}

/// `base` with the resource's part added.
fn tagged(base: &Tags, part: &str) -> Tags {
    let mut tags = base.clone();
    tags.insert(TAG_PART.to_string(), part.to_string());
    tags
}

/// The tags of the cluster's network resources: which network, and who owns it (the
/// project's developer clusters share one in a region).
fn network_tags(path: &ResourcePath, network: &str, plan: &ClusterPlan) -> Tags {
    let owner = if plan.network.shared_vpc {
        network.to_string()
    } else {
        path.to_string()
    };
    Tags::from([
        (TAG_NETWORK.to_string(), network.to_string()),
        (TAG_OWNER.to_string(), owner),
    ])
}

impl Lifecycle {
    /// Puts back the tags Dialtone gave the VPC and the subnets that were removed or
    /// changed (what reads them, such as the triggers that wake a cluster at a change of
    /// its resources, would miss them); says what it put back.
    async fn restore_network_tags(
        &self,
        path: &ResourcePath,
        network: &str,
        plan: &ClusterPlan,
        (vpc, subnets): &(CloudResource, Vec<(String, CloudResource)>),
    ) -> Pass<Vec<String>> {
        let base = network_tags(path, network, plan);
        let resources = std::iter::once((vpc, tagged(&base, "vpc"))).chain(
            subnets
                .iter()
                .map(|(zone, subnet)| (subnet, tagged(&base, &subnet_part(zone)))),
        );
        let mut restored = Vec::new();
        for (resource, planned) in resources {
            let drifted: Tags = planned
                .into_iter()
                .filter(|(k, v)| resource.tags.get(k) != Some(v))
                .collect();
            if drifted.is_empty() {
                continue;
            }
            self.provider
                .modify(&plan.region, &resource.id, Change::SetTags(drifted.clone()))
                .await?;
            let what: Vec<String> = drifted
                .iter()
                .map(|(k, v)| match resource.tags.get(k) {
                    Some(was) => format!("{k} was `{was}`; set to `{v}` again"),
                    None => format!("{k} was removed; set to `{v}` again"),
                })
                .collect();
            restored.push(format!(
                "{} {}: tag {}",
                resource.spec.kind(),
                resource.id,
                what.join(", tag ")
            ));
        }
        Ok(restored)
    }

    /// Puts the security group's rules back as planned when they drifted: a planned rule
    /// removed is allowed again, a rule nobody asked for is revoked. The rules of the
    /// cluster's Services' load balancers (node ports) and of its connections (from their
    /// peers' ranges) are their controllers', and left to them. What was put back, with
    /// what the pass `restored` of the network before, is an event and `NetworkCompliant`.
    async fn restore_security_group(
        &self,
        path: &ResourcePath,
        plan: &ClusterPlan,
        sg: &CloudResource,
        mut restored: Vec<String>,
        status: &mut ClusterStatus,
    ) -> Pass {
        let ResourceSpec::SecurityGroup { ingress, .. } = &sg.spec else {
            return Ok(());
        };
        if sg.state != ResourceState::Available {
            return Ok(());
        }
        let planned = planned_ingress(plan);
        let missing: Vec<&IngressRule> = planned.iter().filter(|r| !ingress.contains(r)).collect();
        let mut foreign: Vec<&IngressRule> = ingress
            .iter()
            .filter(|r| !planned.contains(r))
            .filter(|r| !(r.protocol == Protocol::Tcp && NODE_PORTS.contains(&r.port)))
            .collect();
        if !foreign.is_empty() {
            let connections = self
                .registry
                .list_under::<Connection>(path)
                .await
                .map_err(|e| Blocked::Waiting(Wait::WaitingForStore, e.to_string()))?;
            let peers: Vec<ipnet::Ipv4Net> = connections
                .iter()
                .flat_map(|c| c.spec.peer_networks())
                .collect();
            foreign.retain(|r| !peers.iter().any(|peer| peer.contains(&r.source)));
        }
        let now = (self.clock)();
        for rule in missing {
            self.provider
                .modify(&plan.region, &sg.id, Change::AllowIngress(rule.clone()))
                .await?;
            restored.push(format!(
                "security group {}: {} was removed; allowed again",
                sg.id,
                rule_text(rule)
            ));
        }
        for rule in foreign {
            self.provider
                .modify(&plan.region, &sg.id, Change::RevokeIngress(rule.clone()))
                .await?;
            restored.push(format!(
                "security group {}: {} was added outside Dialtone; revoked",
                sg.id,
                rule_text(rule)
            ));
        }
        let (reason, message) = if restored.is_empty() {
            (
                "AsPlanned",
                format!(
                    "the network's tags are as planned, and security group {} holds the planned rules",
                    sg.id
                ),
            )
        } else {
            let message = restored.join("; ");
            record_event(status, now, true, "DriftRestored", message.clone());
            ("DriftRestored", message)
        };
        set_condition(
            &mut status.conditions,
            ClusterCondition::NetworkCompliant,
            ConditionStatus::True,
            reason,
            message,
            now,
        );
        Ok(())
    }

    /// Makes the cloud hold what the plan asks for, one step after another: network,
    /// endpoint, nodes. Stops at the first step that must wait.
    pub(super) async fn provision(
        &self,
        path: &ResourcePath,
        uid: &str,
        network: &str,
        plan: &ClusterPlan,
        release: &str,
        status: &mut ClusterStatus,
    ) -> Pass {
        let net = self.ensure_network(path, network, plan).await?;
        let restored = self.restore_network_tags(path, network, plan, &net).await?;
        let tags = Tags::from([
            (TAG_CLUSTER.to_string(), uid.to_string()),
            (TAG_OWNER.to_string(), path.to_string()),
        ]);
        let own = self
            .provider
            .describe(&plan.region, &Filter::tagged(TAG_CLUSTER, uid))
            .await?;
        let (sg, lb) = self.ensure_endpoint(&own, &tags, uid, plan, &net).await?;
        self.restore_security_group(path, plan, &sg, restored, status)
            .await?;
        let waiting = self
            .ensure_nodes(
                &own,
                &tags,
                uid,
                (plan, release),
                status,
                &net.1,
                (&sg, &lb),
            )
            .await?;
        if lb.state == ResourceState::Pending {
            return Err(Blocked::Waiting(
                Wait::CreatingEndpoint,
                format!("provisioning the API load balancer {}", lb.id),
            ));
        }
        match waiting {
            Some((reason, message)) => Err(Blocked::Waiting(reason, message)),
            None => Ok(()),
        }
    }

    /// The network step: the VPC, and a subnet and a route table per zone; the subnets by
    /// zone once all are available.
    async fn ensure_network(
        &self,
        path: &ResourcePath,
        network: &str,
        plan: &ClusterPlan,
    ) -> Pass<(CloudResource, Vec<(String, CloudResource)>)> {
        let region = plan.region.as_str();
        let network_tags = network_tags(path, network, plan);
        let net = self
            .provider
            .describe(region, &Filter::tagged(TAG_NETWORK, network))
            .await?;
        let vpc = self
            .ensure(
                region,
                &net,
                "vpc",
                format!("{network}/vpc"),
                ResourceSpec::Vpc {
                    cidr: plan.network.vpc_cidr,
                },
                tagged(&network_tags, "vpc"),
            )
            .await?;
        if vpc.state != ResourceState::Available {
            return Err(Blocked::Waiting(
                Wait::CreatingNetwork,
                format!("creating VPC {} ({})", vpc.id, plan.network.vpc_cidr),
            ));
        }
        let mut subnet_ids = Vec::new();
        for subnet in &plan.network.subnets {
            let part = subnet_part(&subnet.zone);
            let created = self
                .ensure(
                    region,
                    &net,
                    &part,
                    format!("{network}/{part}"),
                    ResourceSpec::Subnet {
                        vpc_id: vpc.id.clone(),
                        zone: subnet.zone.clone(),
                        cidr: subnet.cidr,
                    },
                    tagged(&network_tags, &part),
                )
                .await?;
            let rtb = format!("rtb-{}", subnet.zone);
            self.ensure(
                region,
                &net,
                &rtb,
                format!("{network}/{rtb}"),
                ResourceSpec::RouteTable {
                    vpc_id: vpc.id.clone(),
                    subnet_ids: vec![created.id.clone()],
                    routes: Vec::new(),
                },
                tagged(&network_tags, &rtb),
            )
            .await?;
            subnet_ids.push((subnet.zone.clone(), created));
        }
        if let Some((_, pending)) = subnet_ids
            .iter()
            .find(|(_, s)| s.state != ResourceState::Available)
        {
            return Err(Blocked::Waiting(
                Wait::CreatingNetwork,
                format!("creating subnet {}", pending.id),
            ));
        }
        Ok((vpc, subnet_ids))
    }

    /// The endpoint step: the cluster's security group and its API's load balancer.
    async fn ensure_endpoint(
        &self,
        own: &[CloudResource],
        tags: &Tags,
        uid: &str,
        plan: &ClusterPlan,
        (vpc, subnet_ids): &(CloudResource, Vec<(String, CloudResource)>),
    ) -> Pass<(CloudResource, CloudResource)> {
        let region = plan.region.as_str();
        let ingress = planned_ingress(plan);
        let sg = self
            .ensure(
                region,
                own,
                "sg",
                format!("{uid}/sg"),
                ResourceSpec::SecurityGroup {
                    vpc_id: vpc.id.clone(),
                    ingress,
                },
                tagged(tags, "sg"),
            )
            .await?;
        let lb = self
            .ensure(
                region,
                own,
                "api",
                format!("{uid}/api"),
                ResourceSpec::LoadBalancer {
                    subnet_ids: subnet_ids.iter().map(|(_, s)| s.id.clone()).collect(),
                    port: KUBERNETES_API_PORT,
                    public: plan.settings.network.api_endpoint == EndpointAccess::Public,
                    cross_zone: plan.settings.network.load_balancer == LoadBalancerScope::CrossZone,
                },
                tagged(tags, "api"),
            )
            .await?;
        Ok((sg, lb))
    }

    /// The control-plane and worker steps: an instance of `release` for each slot of the
    /// plan (one control-plane node replaced at a time in an upgrade), failed launches
    /// backed off, instances no slot wants terminated. What the nodes still wait for, if
    /// anything.
    #[allow(clippy::too_many_arguments)]
    async fn ensure_nodes(
        &self,
        own: &[CloudResource],
        tags: &Tags,
        uid: &str,
        (plan, release): (&ClusterPlan, &str),
        status: &mut ClusterStatus,
        subnet_ids: &[(String, CloudResource)],
        (sg, lb): (&CloudResource, &CloudResource),
    ) -> Pass<Option<(Wait, String)>> {
        let region = plan.region.as_str();
        let slots = desired_slots(plan, status);
        let image = dialtone_cloud::node_image(release);
        let mut waiting: Option<(Wait, String)> = None;
        let now = (self.clock)();
        let limits = repair::Limits::new(plan, &slots, own, self.options.sizing.second, now);
        for slot in &slots {
            let instances: Vec<&CloudResource> = own
                .iter()
                .filter(|r| r.spec.kind() == ResourceKind::Instance && part_of(r) == slot.name)
                .collect();
            let current = instances.iter().find(|r| attempt_of(r) == slot.attempt);
            let replacement_up = current.is_some_and(|c| c.state == ResourceState::Available);
            // Instances of earlier attempts are replaced ones. One still running stays
            // until its replacement is up (an upgrade or a repair surges); a worker's is
            // then drained; then it goes.
            for old in instances.iter().filter(|r| attempt_of(r) < slot.attempt) {
                let alive = matches!(
                    old.state,
                    ResourceState::Available | ResourceState::Impaired { .. }
                );
                let upgrade = old.spec.node_version() != Some(release);
                let why = if upgrade {
                    Wait::Upgrading
                } else {
                    Wait::Repairing
                };
                if alive && !replacement_up {
                    waiting.get_or_insert((
                        why,
                        format!(
                            "{} ({}) waits for its replacement to boot",
                            slot.name, old.id
                        ),
                    ));
                    continue;
                }
                if old.state == ResourceState::Deleting {
                    continue;
                }
                if alive
                    && slot.role == NodeRole::Worker
                    && !self.drained(uid, slot, old, status).await?
                {
                    waiting.get_or_insert((
                        why,
                        format!("draining {}'s replaced node ({})", slot.name, old.id),
                    ));
                    continue;
                }
                self.delete(region, &old.id).await?;
            }
            if let Some(instance) = current
                && slot.role == NodeRole::ControlPlane
                && instance.state == ResourceState::Available
                && instance.spec.node_version() != Some(release)
                && waiting.is_none()
                && control_plane_settled(own, &slots)
                && !slots
                    .iter()
                    .any(|s| s.role == NodeRole::ControlPlane && s.unhealthy.is_some())
            {
                // One control-plane node at a time, so that the others keep quorum.
                record_event(
                    status,
                    now,
                    false,
                    "Upgrading",
                    format!(
                        "replacing {} ({}) with a Kubernetes {release} node",
                        slot.name, instance.id
                    ),
                );
                bump_attempt(status, slot, None, None);
                return Err(Blocked::Waiting(
                    Wait::Upgrading,
                    format!("upgrading {}", slot.name),
                ));
            }
            if let Some(broken) = repair::broken(slot, current.copied(), now) {
                match limits.verdict(slot, &broken) {
                    Verdict::Now(repair) => {
                        let id = current.map_or("", |c| c.id.as_str());
                        repair::record(status, slot, id, &broken, &repair);
                        // Record the next attempt before launching it, so that a crash
                        // between the two can neither launch it twice nor reuse the
                        // token of the instance it replaces.
                        bump_attempt(status, slot, None, Some(repair));
                        return Err(Blocked::Waiting(
                            Wait::ReplacingNode,
                            format!("replacing {}", slot.name),
                        ));
                    }
                    Verdict::Later => {
                        waiting.get_or_insert((
                            Wait::Repairing,
                            format!(
                                "{} is broken ({}); it is replaced if it stays so",
                                slot.name, broken.reason
                            ),
                        ));
                    }
                    Verdict::Held(why) => {
                        // Said once, not at every pass while it holds.
                        if !status
                            .events
                            .iter()
                            .any(|e| e.reason == Wait::RepairHeld.as_str() && e.message == why)
                        {
                            record_event(status, now, true, Wait::RepairHeld.as_str(), why.clone());
                        }
                        waiting.get_or_insert((Wait::RepairHeld, why));
                    }
                }
                continue;
            }
            match current {
                Some(instance) if is_going(instance) => {
                    // It never came up (one that ran is a repair, above): back off.
                    let reason = match &instance.state {
                        ResourceState::Terminated { reason } => reason.clone(),
                        _ => "it is being deleted".to_string(),
                    };
                    let failures = slot.launch_backoff.as_ref().map_or(0, |b| b.failures) + 1;
                    let delay = self.options.retry.delay(failures);
                    record_event(
                        status,
                        now,
                        true,
                        LAUNCH_FAILED,
                        format!(
                            "{} ({}) failed to launch: {reason}; {failures} failed in a row, next launch in {}",
                            slot.name,
                            instance.id,
                            seconds(delay)
                        ),
                    );
                    let backoff = LaunchBackoff {
                        failures,
                        last_error: reason,
                        retry_after: now.checked_add(delay).unwrap_or(now),
                    };
                    // Recorded before the launch, as a repair's is.
                    bump_attempt(status, slot, Some(backoff), None);
                    return Err(Blocked::Waiting(
                        Wait::ReplacingNode,
                        format!("replacing {}", slot.name),
                    ));
                }
                Some(instance) => {
                    if instance.state == ResourceState::Pending && waiting.is_none() {
                        waiting = Some((
                            Wait::LaunchingNodes,
                            format!("waiting for {} ({}) to boot", slot.name, instance.id),
                        ));
                    }
                }
                None if slot
                    .launch_backoff
                    .as_ref()
                    .is_some_and(|b| b.retry_after > now) =>
                {
                    let backoff = slot.launch_backoff.as_ref().expect("checked");
                    if waiting.is_none() {
                        waiting = Some((
                            Wait::BackingOff,
                            format!(
                                "{} failed to launch {} times in a row ({}); next launch at {}",
                                slot.name,
                                backoff.failures,
                                backoff.last_error,
                                backoff.retry_after.strftime("%H:%M:%S")
                            ),
                        ));
                    }
                }
                None => {
                    let subnet = subnet_ids
                        .iter()
                        .find(|(zone, _)| *zone == slot.zone)
                        .map(|(_, s)| s.id.clone())
                        .unwrap_or_default();
                    let mut tags = tagged(tags, &slot.name);
                    tags.insert(TAG_ATTEMPT.to_string(), slot.attempt.to_string());
                    let role = match slot.role {
                        NodeRole::ControlPlane => ROLE_CONTROL_PLANE,
                        NodeRole::Worker => ROLE_WORKER,
                    };
                    tags.insert(TAG_ROLE.to_string(), role.to_string());
                    let request = CreateRequest {
                        client_token: format!("{uid}/{}/{}", slot.name, slot.attempt),
                        spec: ResourceSpec::Instance {
                            instance_type: slot.instance_type.clone(),
                            zone: slot.zone.clone(),
                            subnet_id: subnet,
                            security_group_id: sg.id.clone(),
                            image: image.clone(),
                            root_disk_gib: match slot.role {
                                NodeRole::ControlPlane => plan.control_plane.root_disk_gib,
                                NodeRole::Worker => plan.settings.workers.root_disk_gib,
                            },
                            disk_type: match slot.role {
                                NodeRole::ControlPlane => plan.settings.control_plane.disk_type,
                                NodeRole::Worker => plan.settings.workers.disk_type,
                            },
                            disk_encrypted: plan.settings.workers.disk_encryption,
                            metadata: plan.settings.security.instance_metadata,
                        },
                        tags,
                        bootstrap: Some(bootstrap::node_bootstrap(
                            uid,
                            (plan, release),
                            bootstrap::role_of(slot, own),
                            &lb.address,
                        )),
                    };
                    self.provider.create(region, request).await?;
                    if waiting.is_none() {
                        waiting = Some((
                            Wait::LaunchingNodes,
                            format!("launched {} in {}", slot.name, slot.zone),
                        ));
                    }
                }
            }
        }
        // Instances no slot wants any more (fewer workers, a smaller plan).
        for surplus in own.iter().filter(|r| {
            r.spec.kind() == ResourceKind::Instance
                && r.state != ResourceState::Deleting
                && !slots.iter().any(|s| s.name == part_of(r))
        }) {
            self.delete(region, &surplus.id).await?;
        }
        Ok(waiting)
    }
}
