//! The Smart Cluster lifecycle: network → API endpoint → control plane → workers → Ready,
//! worker-bound changes, repair of dead instances, and deletion through a finalizer until
//! nothing of the cluster is left in the cloud.
//!
//! Level-triggered and crash-safe: every pass reads the cluster from the store and the
//! cloud's resources by their tags, and makes one toward the other. Every create carries an
//! idempotency token derived from the cluster's uid and the resource's part (and, for an
//! instance, the slot's attempt), so a pass that dies after a create succeeded finds, on the
//! next pass, the resource it made instead of making another. The controller keeps no state
//! of its own beyond caches: the clusters' Kubernetes clients.
//!
//! Once the cloud holds everything, the pass talks to the cluster itself through
//! [`dialtone_kube`]: the cluster is Ready only when its API answers and every running
//! instance has registered as a Ready node. Access inside the cluster is the RBAC
//! projection controller's (`rbac`).

use std::sync::Arc;
use std::time::Duration;

use dialtone_cloud::{
    CloudError, CloudResource, CreateRequest, Filter, IngressRule, Provider, ResourceKind,
    ResourceSpec, ResourceState, Tags,
};
use dialtone_planner::{AddressPlan, ClusterRequest, PlanContext, plan};
use dialtone_store::registry::{ListOptions, Registry, RegistryError, from_raw};
use dialtone_types::cluster::{
    ClusterEvent, ClusterNode, ClusterPlan, ClusterStatus, LaunchBackoff, NodeCount, NodeRole,
    parse_address_pool,
};
use dialtone_types::kinds::{CLUSTER, PROJECT};
use dialtone_types::{
    Cluster, ClusterCondition, ClusterType, Condition, ConditionStatus, NodeState, Object, Org,
    Phase, ResourcePath,
};
use jiff::Timestamp;

use crate::runtime::backoff::Backoff;
use crate::runtime::controller::Controller;
use crate::runtime::{Informer, Next, Notice, Reconciler, Supervisor};
use crate::sizing::{self, SizingOptions, worker_index};

/// Holds a cluster until its cloud resources are gone.
pub const CLUSTER_FINALIZER: &str = "dialtone.dev/cloud-resources";
pub use dialtone_cloud::tags::{TAG_ATTEMPT, TAG_CLUSTER, TAG_NETWORK, TAG_OWNER, TAG_PART};

const KUBERNETES_API_PORT: u16 = 6443;
const KUBELET_PORT: u16 = 10250;
const EVENTS_KEPT: usize = 30;
/// The reason a node that keeps failing to launch gives, on the event and on `Ready`.
const LAUNCH_FAILED: &str = "LaunchFailed";

/// What the controller waits for between passes.
#[derive(Clone, Debug)]
pub struct LifecycleOptions {
    /// While something is being created or deleted.
    pub poll: Duration,
    /// How often a settled cluster is checked against the cloud, to repair what broke.
    pub health_check: Duration,
    pub sizing: SizingOptions,
    /// Between launches of a node that keeps failing, and between passes that the cloud
    /// or the cluster's API refuses.
    pub retry: Backoff,
}

impl LifecycleOptions {
    /// Waits that suit a cloud whose latencies are `time_scale` times a real one's.
    pub fn for_time_scale(time_scale: f64) -> Self {
        let scaled =
            |ms: f64, floor: u64| Duration::from_millis(((ms * time_scale) as u64).max(floor));
        LifecycleOptions {
            poll: scaled(2_000.0, 20),
            health_check: scaled(10_000.0, 1_000),
            // A real cloud's launch failures are retried from 10 s up to 5 min apart.
            retry: Backoff {
                base: scaled(10_000.0, 50),
                cap: scaled(300_000.0, 1_000),
            },
            sizing: SizingOptions {
                // Karpenter's consolidateAfter is commonly set to minutes; five keeps a
                // node that just came up for a burst from going at once.
                stabilization: scaled(300_000.0, 0),
                // Karpenter's default disruption budget.
                budget_percent: 10,
                min_saving: 0.1,
            },
        }
    }
}

/// The lifecycle controller's logic, one cluster at a time.
pub struct Lifecycle {
    registry: Registry,
    provider: Arc<dyn Provider>,
    options: LifecycleOptions,
    clock: fn() -> Timestamp,
    /// Dialtone's clients into clusters; without them the lifecycle stops at the cloud.
    kube: Option<Arc<dialtone_kube::Clients>>,
    /// Passes in a row that the cloud or the cluster's API refused, by cluster: the next
    /// pass backs off by them. A cluster's count goes with it.
    refused: std::sync::Mutex<std::collections::HashMap<ResourcePath, u32>>,
}

/// What a pass waits for, when it stops short of the plan; each is the reason on the
/// conditions it sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wait {
    CreatingNetwork,
    CreatingEndpoint,
    LaunchingNodes,
    WaitingForNodes,
    WaitingForApi,
    WaitingForAccess,
    WaitingForCloud,
    WaitingForStore,
    Upgrading,
    ReplacingNode,
    BackingOff,
    TerminatingInstances,
    DeletingNetwork,
}

impl Wait {
    /// The wire name.
    fn as_str(self) -> &'static str {
        match self {
            Wait::CreatingNetwork => "CreatingNetwork",
            Wait::CreatingEndpoint => "CreatingEndpoint",
            Wait::LaunchingNodes => "LaunchingNodes",
            Wait::WaitingForNodes => "WaitingForNodes",
            Wait::WaitingForApi => "WaitingForAPI",
            Wait::WaitingForAccess => "WaitingForAccess",
            Wait::WaitingForCloud => "WaitingForCloud",
            Wait::WaitingForStore => "WaitingForStore",
            Wait::Upgrading => "Upgrading",
            Wait::ReplacingNode => "ReplacingNode",
            Wait::BackingOff => "BackingOff",
            Wait::TerminatingInstances => "TerminatingInstances",
            Wait::DeletingNetwork => "DeletingNetwork",
        }
    }
}

/// Why a pass stopped before the cluster was in its planned state.
#[derive(Debug)]
enum Blocked {
    /// Waiting for the cloud or the cluster: why, and a message for the conditions.
    Waiting(Wait, String),
    Cloud(CloudError),
}

impl From<CloudError> for Blocked {
    fn from(e: CloudError) -> Self {
        Blocked::Cloud(e)
    }
}

type Pass<T = ()> = Result<T, Blocked>;

/// One node slot of the plan.
#[derive(Clone, Debug)]
struct Slot {
    name: String,
    role: NodeRole,
    zone: String,
    instance_type: String,
    attempt: u32,
    launch_backoff: Option<LaunchBackoff>,
}

fn part_of(resource: &CloudResource) -> &str {
    resource.tags.get(TAG_PART).map_or("", String::as_str)
}

fn attempt_of(resource: &CloudResource) -> u32 {
    resource
        .tags
        .get(TAG_ATTEMPT)
        .and_then(|a| a.parse().ok())
        .unwrap_or(0)
}

fn is_going(resource: &CloudResource) -> bool {
    matches!(
        resource.state,
        ResourceState::Deleting | ResourceState::Terminated { .. }
    )
}

/// Whether every control-plane slot runs exactly one healthy instance of its current
/// attempt: no replacement is under way.
fn control_plane_settled(own: &[CloudResource], slots: &[Slot]) -> bool {
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

fn subnet_part(zone: &str) -> String {
    format!("subnet-{zone}")
}

/// The network a cluster lives in: its own, or its project's shared one in the region.
pub fn network_key(path: &ResourcePath, uid: &str, plan: &ClusterPlan) -> String {
    if plan.network.shared_vpc {
        let project = path.parent().map(|p| p.to_string()).unwrap_or_default();
        format!("{project}@{}", plan.region)
    } else {
        uid.to_string()
    }
}

/// The node slots a plan asks for, carrying over each slot's attempt and launch backoff
/// from `previous`.
fn desired_slots(plan: &ClusterPlan, previous: &[ClusterNode], next_worker: u32) -> Vec<Slot> {
    let before = |name: &str| previous.iter().find(|n| n.name == name);
    let mut slots: Vec<Slot> = plan
        .control_plane
        .nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let name = format!("cp-{i}");
            let was = before(&name);
            Slot {
                attempt: was.map_or(0, |n| n.attempt),
                launch_backoff: was.and_then(|n| n.launch_backoff.clone()),
                name,
                role: NodeRole::ControlPlane,
                zone: node.zone.clone(),
                instance_type: node.instance_type.clone(),
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
            .map(|(i, node)| Slot {
                name: format!("worker-{i}"),
                role: NodeRole::Worker,
                zone: node.zone.clone(),
                instance_type: node.instance_type.clone(),
                attempt: 0,
                launch_backoff: None,
            })
            .collect()
    } else {
        previous
            .iter()
            .filter(|n| n.role == NodeRole::Worker)
            .map(|n| Slot {
                name: n.name.clone(),
                role: NodeRole::Worker,
                zone: n.zone.clone(),
                instance_type: n.instance_type.clone(),
                attempt: n.attempt,
                launch_backoff: n.launch_backoff.clone(),
            })
            .collect()
    };
    let default_type = plan
        .workers
        .initial
        .first()
        .map(|s| s.instance_type.clone())
        .unwrap_or_else(|| {
            plan.value("workers.initialInstanceType")
                .unwrap_or("")
                .to_string()
        });
    let mut next = workers
        .iter()
        .filter_map(|w| worker_index(&w.name))
        .max()
        .map_or(0, |i| i + 1)
        .max(next_worker);
    while workers.len() < plan.workers.min_nodes as usize {
        let zone = plan.workers.zones[workers.len() % plan.workers.zones.len()].clone();
        workers.push(Slot {
            name: format!("worker-{next}"),
            role: NodeRole::Worker,
            zone,
            instance_type: default_type.clone(),
            attempt: 0,
            launch_backoff: None,
        });
        next += 1;
    }
    workers.truncate(plan.workers.max_nodes as usize);
    slots.extend(workers);
    slots
}

fn next_worker(status: &ClusterStatus) -> u32 {
    status.sizing.as_ref().map_or(0, |s| s.next_worker)
}

pub(crate) fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: ClusterCondition,
    status: ConditionStatus,
    reason: &str,
    message: String,
    now: Timestamp,
) {
    let type_ = type_.as_str();
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = now;
            }
            c.status = status;
            c.reason = reason.to_string();
            c.message = message;
        }
        None => conditions.push(Condition {
            type_: type_.to_string(),
            status,
            reason: reason.to_string(),
            message,
            last_transition_time: now,
        }),
    }
}

fn condition(status: &ClusterStatus, type_: ClusterCondition) -> Option<&Condition> {
    status.conditions.iter().find(|c| c.type_ == type_.as_str())
}

/// What a node slot's instance is doing, from the cloud's word for it.
fn node_state(state: &ResourceState) -> NodeState {
    match state {
        ResourceState::Pending => NodeState::Pending,
        ResourceState::Available => NodeState::Running,
        ResourceState::Impaired { .. } => NodeState::Impaired,
        ResourceState::Deleting => NodeState::Deleting,
        ResourceState::Terminated { .. } => NodeState::Terminated,
    }
}

pub(crate) fn record_event(
    status: &mut ClusterStatus,
    now: Timestamp,
    warning: bool,
    reason: &str,
    message: String,
) {
    if status
        .events
        .last()
        .is_some_and(|e| e.reason == reason && e.message == message)
    {
        return;
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
}

impl Lifecycle {
    pub fn new(
        registry: Registry,
        provider: Arc<dyn Provider>,
        options: LifecycleOptions,
        clock: fn() -> Timestamp,
    ) -> Self {
        Lifecycle {
            registry,
            provider,
            options,
            clock,
            kube: None,
            refused: Default::default(),
        }
    }

    /// Checks and bootstraps clusters through their Kubernetes API as well.
    pub fn with_kube(mut self, clients: Arc<dialtone_kube::Clients>) -> Self {
        self.kube = Some(clients);
        self
    }

    /// Asks the cluster's API whether every running instance is a Ready node.
    async fn check_api(&self, uid: &str, resources: &[CloudResource]) -> Pass {
        let Some(clients) = &self.kube else {
            return Ok(());
        };
        let waiting = |reason, message: String| Err(Blocked::Waiting(reason, message));
        let client = match clients.client(uid) {
            Ok(client) => client,
            Err(e) => return waiting(Wait::WaitingForApi, e.to_string()),
        };
        let health = match dialtone_kube::node_health(&client).await {
            Ok(health) => health,
            Err(e) => {
                return waiting(
                    Wait::WaitingForApi,
                    format!("the Kubernetes API does not answer: {e}"),
                );
            }
        };
        let running = resources
            .iter()
            .filter(|r| {
                r.spec.kind() == ResourceKind::Instance && r.state == ResourceState::Available
            })
            .count();
        if health.ready < running {
            return waiting(
                Wait::WaitingForNodes,
                format!(
                    "{} of {running} running instances are Ready nodes",
                    health.ready
                ),
            );
        }
        // Ready means ready for its users: their access is in the cluster's RBAC.
        match dialtone_kube::access::projected(&client).await {
            Ok(true) => Ok(()),
            Ok(false) => waiting(
                Wait::WaitingForAccess,
                "the access policies are not cast into the cluster's RBAC yet".into(),
            ),
            Err(e) => waiting(
                Wait::WaitingForApi,
                format!("the Kubernetes API does not answer: {e}"),
            ),
        }
    }

    /// Right-sizes a settled cluster through its API; whether work is under way.
    async fn right_size(
        &self,
        uid: &str,
        plan: &ClusterPlan,
        status: &mut ClusterStatus,
        now: Timestamp,
    ) -> bool {
        let Some(clients) = &self.kube else {
            return false;
        };
        let client = match clients.client(uid) {
            Ok(client) => client,
            Err(_) => return false,
        };
        let catalog = self.provider.catalog();
        match sizing::pass(&client, plan, catalog, &self.options.sizing, status, now).await {
            Ok(busy) => busy,
            Err(e) => {
                tracing::debug!(cluster = uid, error = %e, "right-sizing stopped");
                true
            }
        }
    }

    /// Moves the cluster at `path` one pass toward its plan (or, being deleted, toward
    /// nothing) and records what it saw in its status.
    pub async fn reconcile(&self, path: &ResourcePath) -> Result<Next, RegistryError> {
        let mut cluster: Object<Cluster, ClusterStatus> = match self.registry.get(path).await {
            Ok(c) => c,
            Err(RegistryError::NotFound(_)) => {
                self.back_off(path, false, Next::Done);
                return Ok(Next::Done);
            }
            Err(e) => return Err(e),
        };
        if cluster.metadata.deletion_timestamp.is_some() {
            return self.tear_down(path, cluster).await;
        }
        if !cluster
            .metadata
            .finalizers
            .iter()
            .any(|f| f == CLUSTER_FINALIZER)
        {
            cluster
                .metadata
                .finalizers
                .push(CLUSTER_FINALIZER.to_string());
            match self.registry.update(path, cluster).await? {
                Some(updated) => cluster = updated,
                None => return Ok(Next::Done),
            }
        }
        let now = (self.clock)();
        let mut status = cluster.status.clone();
        let plan = match &status.plan {
            Some(plan) if status.observed_generation == cluster.metadata.generation => plan.clone(),
            _ => match self.replan(path, &cluster).await? {
                Ok(plan) => plan,
                Err(message) => {
                    set_condition(
                        &mut status.conditions,
                        ClusterCondition::Ready,
                        ConditionStatus::False,
                        "InvalidSpec",
                        message.clone(),
                        now,
                    );
                    record_event(&mut status, now, true, "InvalidSpec", message);
                    status.observed_generation = cluster.metadata.generation;
                    self.write_status(path, &cluster, status).await?;
                    return Ok(Next::Done);
                }
            },
        };
        if status.plan.as_ref() != Some(&plan) {
            record_event(
                &mut status,
                now,
                false,
                "Planned",
                format!(
                    "{} cluster in {}: {} control-plane node(s), {}–{} workers, network {}",
                    plan.cluster_type,
                    plan.region,
                    plan.control_plane.nodes.len(),
                    plan.workers.min_nodes,
                    plan.workers.max_nodes,
                    plan.network.vpc_cidr
                ),
            );
        }
        if status.observed_generation != cluster.metadata.generation {
            // A changed spec is a new try: nodes whose launches kept failing go at once.
            for node in &mut status.nodes {
                node.launch_backoff = None;
            }
        }
        status.plan = Some(plan.clone());
        status.observed_generation = cluster.metadata.generation;

        let network = network_key(path, &cluster.metadata.uid, &plan);
        let blocked = self
            .provision(path, &cluster.metadata.uid, &network, &plan, &mut status)
            .await
            .err();
        let observed = self
            .provider
            .describe(
                &plan.region,
                &Filter::tagged(TAG_CLUSTER, &cluster.metadata.uid),
            )
            .await;
        let mut refused = true;
        let next = match observed {
            Ok(resources) => {
                let blocked = match blocked {
                    None => self
                        .check_api(&cluster.metadata.uid, &resources)
                        .await
                        .err(),
                    blocked => blocked,
                };
                refused = matches!(
                    blocked,
                    Some(Blocked::Cloud(_) | Blocked::Waiting(Wait::WaitingForApi, _))
                );
                let slots = desired_slots(&plan, &status.nodes, next_worker(&status));
                let max_launch_attempts = plan
                    .value("repair.maxLaunchAttempts")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(3);
                let next = self.observe(
                    &mut status,
                    &slots,
                    &resources,
                    blocked.as_ref(),
                    max_launch_attempts,
                    now,
                );
                let settled = blocked.is_none() && next == Next::After(self.options.health_check);
                let sizing = if settled {
                    self.right_size(&cluster.metadata.uid, &plan, &mut status, now)
                        .await
                } else {
                    false
                };
                sizing::account(&mut status, self.provider.catalog());
                if sizing {
                    Next::After(self.options.poll)
                } else {
                    next
                }
            }
            // The cloud did not answer; report what the pass ran into and try again soon.
            Err(e) => {
                if let Some(Blocked::Cloud(first)) = &blocked {
                    tracing::debug!(cluster = %path, error = %first, "provisioning blocked");
                }
                tracing::debug!(cluster = %path, error = %e, "cannot observe the cluster");
                Next::After(self.options.poll)
            }
        };
        self.write_status(path, &cluster, status).await?;
        Ok(self.back_off(path, refused, next))
    }

    /// Stretches the wait after passes that the cloud or the cluster's API refused, more
    /// with each one in a row, so that a throttled cloud or a dead endpoint is not hammered.
    fn back_off(&self, path: &ResourcePath, refused: bool, next: Next) -> Next {
        let mut counts = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        if !refused {
            counts.remove(path);
            return next;
        }
        let count = counts.entry(path.clone()).or_default();
        *count += 1;
        let delay = self.options.retry.delay(*count);
        match next {
            Next::After(wait) => Next::After(wait.max(delay)),
            Next::Done => Next::Done,
        }
    }

    async fn write_status(
        &self,
        path: &ResourcePath,
        cluster: &Object<Cluster, ClusterStatus>,
        status: ClusterStatus,
    ) -> Result<(), RegistryError> {
        if status == cluster.status {
            return Ok(());
        }
        let mut updated = cluster.clone();
        updated.status = status;
        self.registry.update_status(path, updated).await.map(|_| ())
    }

    /// Plans the cluster again after its spec changed, keeping its network.
    async fn replan(
        &self,
        path: &ResourcePath,
        cluster: &Object<Cluster, ClusterStatus>,
    ) -> Result<Result<ClusterPlan, String>, RegistryError> {
        let spec = &cluster.spec;
        let cluster_type = match ClusterType::parse(&spec.cluster_type) {
            Ok(t) => t,
            Err(message) => return Ok(Err(message)),
        };
        let org: Object<Org> = self
            .registry
            .get(&ResourcePath::org(path.org_name()))
            .await?;
        let pool = match parse_address_pool(org.spec.address_plan()) {
            Ok(pool) => pool,
            Err(message) => return Ok(Err(message)),
        };
        let Some(existing_vpc) = cluster.status.plan.as_ref().map(|p| p.network.vpc_cidr) else {
            return Ok(Err(
                "the cluster has no network allocated; delete and create it again".to_string(),
            ));
        };
        let request = ClusterRequest::from_spec(&cluster.metadata.name, cluster_type, spec);
        let context = PlanContext {
            catalog: self.provider.catalog(),
            address_plan: &AddressPlan {
                pool,
                allocated: Vec::new(),
            },
            existing_vpc: Some(existing_vpc),
            kept_families: dialtone_planner::kept_families(
                cluster.status.plan.as_ref(),
                &spec.kubernetes_version,
            ),
        };
        Ok(plan(&request, &context).map_err(|e| e.to_string()))
    }

    /// Finds the resource for `part` among `existing`, or creates it.
    async fn ensure(
        &self,
        region: &str,
        existing: &[CloudResource],
        part: &str,
        token: String,
        spec: ResourceSpec,
        tags: Tags,
    ) -> Pass<CloudResource> {
        if let Some(found) = existing.iter().find(|r| part_of(r) == part) {
            if found.state == ResourceState::Deleting {
                return Err(Blocked::Waiting(
                    Wait::WaitingForCloud,
                    format!("{} {} is still being deleted", found.spec.kind(), found.id),
                ));
            }
            return Ok(found.clone());
        }
        let request = CreateRequest {
            client_token: token,
            spec,
            tags,
        };
        Ok(self.provider.create(region, request).await?)
    }

    async fn provision(
        &self,
        path: &ResourcePath,
        uid: &str,
        network: &str,
        plan: &ClusterPlan,
        status: &mut ClusterStatus,
    ) -> Pass {
        let region = plan.region.as_str();
        let network_owner = if plan.network.shared_vpc {
            network.to_string()
        } else {
            path.to_string()
        };
        let network_tags = Tags::from([
            (TAG_NETWORK.to_string(), network.to_string()),
            (TAG_OWNER.to_string(), network_owner),
        ]);
        let tagged = |base: &Tags, part: &str| {
            let mut tags = base.clone();
            tags.insert(TAG_PART.to_string(), part.to_string());
            tags
        };

        // The network: VPC, a subnet and a route table per zone.
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

        // The cluster's own parts: its security group, API endpoint and nodes.
        let cluster_tags = Tags::from([
            (TAG_CLUSTER.to_string(), uid.to_string()),
            (TAG_OWNER.to_string(), path.to_string()),
        ]);
        let own = self
            .provider
            .describe(region, &Filter::tagged(TAG_CLUSTER, uid))
            .await?;
        let api_sources = plan
            .value("network.apiAllowedCidrs")
            .and_then(|c| c.parse().ok())
            .unwrap_or(plan.network.vpc_cidr);
        let sg = self
            .ensure(
                region,
                &own,
                "sg",
                format!("{uid}/sg"),
                ResourceSpec::SecurityGroup {
                    vpc_id: vpc.id.clone(),
                    ingress: vec![
                        IngressRule {
                            port: KUBERNETES_API_PORT,
                            source: api_sources,
                        },
                        IngressRule {
                            port: KUBELET_PORT,
                            source: plan.network.vpc_cidr,
                        },
                    ],
                },
                tagged(&cluster_tags, "sg"),
            )
            .await?;
        let lb = self
            .ensure(
                region,
                &own,
                "api",
                format!("{uid}/api"),
                ResourceSpec::LoadBalancer {
                    subnet_ids: subnet_ids.iter().map(|(_, s)| s.id.clone()).collect(),
                    port: KUBERNETES_API_PORT,
                    public: plan.value("network.apiEndpoint") == Some("public"),
                },
                tagged(&cluster_tags, "api"),
            )
            .await?;

        let slots = desired_slots(plan, &status.nodes, next_worker(status));
        let image = plan.value("workers.nodeImage").unwrap_or("dialtone-node");
        let mut waiting: Option<(Wait, String)> = None;
        for slot in &slots {
            let instances: Vec<&CloudResource> = own
                .iter()
                .filter(|r| r.spec.kind() == ResourceKind::Instance && part_of(r) == slot.name)
                .collect();
            let current = instances.iter().find(|r| attempt_of(r) == slot.attempt);
            let replacement_up = current.is_some_and(|c| c.state == ResourceState::Available);
            // Instances of earlier attempts are replaced ones: terminate what is left of them,
            // except a healthy one whose replacement is not up yet (an upgrade surges).
            for old in instances.iter().filter(|r| attempt_of(r) < slot.attempt) {
                let surging = old.state == ResourceState::Available && !replacement_up;
                if surging {
                    waiting = Some((
                        Wait::Upgrading,
                        format!(
                            "{} ({}) waits for its replacement to boot",
                            slot.name, old.id
                        ),
                    ));
                } else if old.state != ResourceState::Deleting {
                    self.delete(region, &old.id).await?;
                }
            }
            if let Some(instance) = current
                && slot.role == NodeRole::ControlPlane
                && instance.state == ResourceState::Available
                && instance.spec.node_version() != Some(plan.kubernetes_version.as_str())
                && waiting.is_none()
                && control_plane_settled(&own, &slots)
            {
                // One control-plane node at a time, so that the others keep quorum.
                record_event(
                    status,
                    (self.clock)(),
                    false,
                    "Upgrading",
                    format!(
                        "replacing {} ({}) with a Kubernetes {} node",
                        slot.name, instance.id, plan.kubernetes_version
                    ),
                );
                bump_attempt(status, slot, None);
                return Err(Blocked::Waiting(
                    Wait::Upgrading,
                    format!("upgrading {}", slot.name),
                ));
            }
            match current {
                Some(instance) if is_going(instance) => {
                    // Record the next attempt before launching it, so that a crash between
                    // the two can neither launch it twice nor reuse the dead one's token.
                    let reason = match &instance.state {
                        ResourceState::Terminated { reason } => reason.clone(),
                        _ => "it is being deleted".to_string(),
                    };
                    let now = (self.clock)();
                    // The last pass saw this attempt running, or it never came up: a node
                    // that died is replaced at once, a launch that failed backs off.
                    let ran = status
                        .nodes
                        .iter()
                        .any(|n| n.name == slot.name && n.state == NodeState::Running);
                    let backoff = if ran {
                        record_event(
                            status,
                            now,
                            true,
                            "ReplacingNode",
                            format!(
                                "{} ({}) is gone: {reason}; launching a replacement",
                                slot.name, instance.id
                            ),
                        );
                        None
                    } else {
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
                        Some(LaunchBackoff {
                            failures,
                            last_error: reason,
                            retry_after: now.checked_add(delay).unwrap_or(now),
                        })
                    };
                    bump_attempt(status, slot, backoff);
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
                    .is_some_and(|b| b.retry_after > (self.clock)()) =>
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
                    let mut tags = tagged(&cluster_tags, &slot.name);
                    tags.insert(TAG_ATTEMPT.to_string(), slot.attempt.to_string());
                    let request = CreateRequest {
                        client_token: format!("{uid}/{}/{}", slot.name, slot.attempt),
                        spec: ResourceSpec::Instance {
                            instance_type: slot.instance_type.clone(),
                            zone: slot.zone.clone(),
                            subnet_id: subnet,
                            security_group_id: sg.id.clone(),
                            image: image.to_string(),
                            root_disk_gib: match slot.role {
                                NodeRole::ControlPlane => plan.control_plane.root_disk_gib,
                                NodeRole::Worker => plan
                                    .value("workers.rootDiskGiB")
                                    .and_then(|v| v.parse().ok())
                                    .unwrap_or(100),
                            },
                        },
                        tags,
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

    /// Deletes a resource; one already gone is fine.
    async fn delete(&self, region: &str, id: &str) -> Pass {
        match self.provider.delete(region, id).await {
            Ok(()) | Err(CloudError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Fills nodes, counts, endpoint, conditions, phase and events from what the cloud
    /// holds, and says when to look again.
    fn observe(
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

    /// Deletes every cloud resource of the cluster, then lets the object go.
    async fn tear_down(
        &self,
        path: &ResourcePath,
        cluster: Object<Cluster, ClusterStatus>,
    ) -> Result<Next, RegistryError> {
        if !cluster
            .metadata
            .finalizers
            .iter()
            .any(|f| f == CLUSTER_FINALIZER)
        {
            return Ok(Next::Done);
        }
        let uid = &cluster.metadata.uid;
        if let Some(clients) = &self.kube {
            clients.forget(uid);
        }
        let now = (self.clock)();
        let mut status = cluster.status.clone();
        let outcome = match &status.plan {
            Some(plan) => self.remove_resources(path, &cluster, plan).await,
            None => Ok(()),
        };
        match outcome {
            Ok(()) => {
                let mut done = cluster;
                done.metadata.finalizers.retain(|f| f != CLUSTER_FINALIZER);
                self.registry.update(path, done).await?;
                Ok(Next::Done)
            }
            Err(blocked) => {
                let (reason, message) = match blocked {
                    Blocked::Waiting(wait, message) => (wait.as_str(), message),
                    Blocked::Cloud(e) => (e.reason(), e.to_string()),
                };
                if status.phase != Some(Phase::Deleting) {
                    record_event(
                        &mut status,
                        now,
                        false,
                        "Deleting",
                        "deleting every cloud resource of the cluster".into(),
                    );
                }
                status.phase = Some(Phase::Deleting);
                set_condition(
                    &mut status.conditions,
                    ClusterCondition::Deleting,
                    ConditionStatus::True,
                    reason,
                    message,
                    now,
                );
                set_condition(
                    &mut status.conditions,
                    ClusterCondition::Ready,
                    ConditionStatus::False,
                    "Deleting",
                    "the cluster is being deleted".into(),
                    now,
                );
                self.write_status(path, &cluster, status).await?;
                Ok(Next::After(self.options.poll))
            }
        }
    }

    async fn remove_resources(
        &self,
        path: &ResourcePath,
        cluster: &Object<Cluster, ClusterStatus>,
        plan: &ClusterPlan,
    ) -> Pass {
        let region = plan.region.as_str();
        let uid = &cluster.metadata.uid;
        let own = self
            .provider
            .describe(region, &Filter::tagged(TAG_CLUSTER, uid))
            .await?;
        // Instances and the endpoint first, then what they stood in.
        let mut left = 0;
        for r in &own {
            if matches!(
                r.spec.kind(),
                ResourceKind::Instance | ResourceKind::LoadBalancer
            ) {
                left += 1;
                if r.state != ResourceState::Deleting {
                    self.delete(region, &r.id).await?;
                }
            }
        }
        if left > 0 {
            return Err(Blocked::Waiting(
                Wait::TerminatingInstances,
                format!("waiting for {left} instance(s) and the API endpoint to go"),
            ));
        }
        for r in own.iter().filter(|r| r.state != ResourceState::Deleting) {
            self.delete(region, &r.id).await?;
        }
        let network = network_key(path, uid, plan);
        if plan.network.shared_vpc && self.network_still_used(path, uid, plan).await? {
            return Ok(());
        }
        let net = self
            .provider
            .describe(region, &Filter::tagged(TAG_NETWORK, &network))
            .await?;
        // Route tables, then subnets, then the VPC: each waits for what depends on it.
        for kind in [
            ResourceKind::RouteTable,
            ResourceKind::Subnet,
            ResourceKind::Vpc,
        ] {
            let of_kind: Vec<&CloudResource> =
                net.iter().filter(|r| r.spec.kind() == kind).collect();
            for r in &of_kind {
                if r.state != ResourceState::Deleting {
                    self.delete(region, &r.id).await?;
                }
            }
            if !of_kind.is_empty() {
                return Err(Blocked::Waiting(
                    Wait::DeletingNetwork,
                    format!("deleting the network's {kind}s"),
                ));
            }
        }
        Ok(())
    }

    /// Whether another live cluster of the project uses the shared network.
    async fn network_still_used(
        &self,
        path: &ResourcePath,
        uid: &str,
        plan: &ClusterPlan,
    ) -> Pass<bool> {
        let project = path.parent().filter(|p| std::ptr::eq(p.kind(), &PROJECT));
        let listed = self
            .registry
            .list_raw(&CLUSTER, project.as_ref(), &ListOptions::default(), &|_| {
                true
            })
            .await;
        let page = listed.map_err(|e| {
            Blocked::Waiting(
                Wait::WaitingForStore,
                format!("cannot list the project's clusters: {e}"),
            )
        })?;
        Ok(page.items.into_iter().any(|raw| {
            from_raw::<Cluster>(raw).is_ok_and(|other| {
                // A sibling being deleted does not hold the network: if it did, two siblings
                // deleted together would each wait for the other and leak it.
                other.metadata.uid != uid
                    && other.metadata.deletion_timestamp.is_none()
                    && other
                        .status
                        .plan
                        .as_ref()
                        .is_some_and(|p| p.network.shared_vpc && p.region == plan.region)
            })
        }))
    }
}

/// Moves the slot to its next attempt, with the backoff its launches are under.
fn bump_attempt(status: &mut ClusterStatus, slot: &Slot, launch_backoff: Option<LaunchBackoff>) {
    match status.nodes.iter_mut().find(|n| n.name == slot.name) {
        Some(node) => {
            node.attempt = slot.attempt + 1;
            node.launch_backoff = launch_backoff;
        }
        None => status.nodes.push(ClusterNode {
            name: slot.name.clone(),
            role: slot.role,
            zone: slot.zone.clone(),
            instance_type: slot.instance_type.clone(),
            instance_id: String::new(),
            state: NodeState::Absent,
            attempt: slot.attempt + 1,
            kubernetes_version: String::new(),
            launch_backoff,
        }),
    }
}

/// `12s`, `1.5s`: a wait as the events print it.
fn seconds(delay: Duration) -> String {
    let secs = delay.as_secs_f64();
    if secs >= 10.0 {
        format!("{secs:.0}s")
    } else {
        format!("{secs:.1}s")
    }
}

impl Reconciler for Lifecycle {
    type Key = ResourcePath;
    type Error = RegistryError;

    async fn reconcile(&self, path: &ResourcePath) -> Result<Next, RegistryError> {
        Lifecycle::reconcile(self, path).await
    }

    /// The store refused (a conflict with another writer, a store member gone): back off
    /// from the poll interval.
    fn error_policy(
        &self,
        _path: &ResourcePath,
        _error: &RegistryError,
        failures: u32,
    ) -> Duration {
        Backoff {
            base: self.options.poll.max(Duration::from_millis(200)),
            cap: self.options.retry.cap,
        }
        .delay(failures)
    }
}

/// Runs the lifecycle controller under `supervisor`: `workers` clusters at a time, woken by
/// every change of a cluster but its status, by the waits each pass asks for, and by a
/// resync of every cluster spread over each `resync`. A status write (the controller's own,
/// every pass) wakes nothing, so the waits a pass asks for, backoffs included, are the
/// waits it gets.
pub fn spawn_cluster_controller(
    supervisor: &Arc<Supervisor>,
    clusters: &Arc<Informer>,
    lifecycle: Arc<Lifecycle>,
    workers: usize,
    resync: Duration,
) {
    let controller = Controller::new(
        lifecycle,
        workers,
        supervisor.controllers().controller("cluster-lifecycle"),
    );
    let queue = controller.queue().clone();
    for path in clusters.paths() {
        queue.add(path);
    }
    clusters.subscribe(move |notice| match notice {
        Notice::Listed(all, _) => {
            for (path, _) in all.iter() {
                queue.add(path.clone());
            }
        }
        Notice::Applied { path, old, new } => {
            if old.is_none_or(|old| wakes(&old.metadata) != wakes(&new.metadata)) {
                queue.add((*path).clone());
            }
        }
        Notice::Deleted { path, .. } => queue.add((*path).clone()),
    });
    supervisor.spawn("cluster-lifecycle", {
        let controller = controller.clone();
        move |_| controller.clone().run()
    });
    let clusters = clusters.clone();
    supervisor.spawn("cluster-lifecycle-resync", move |_| {
        let clusters = clusters.clone();
        controller
            .clone()
            .resync(resync, move || std::future::ready(clusters.paths()))
    });
}

/// What of a cluster's metadata wakes the controller when it changes: its spec (by
/// generation), a delete, its finalizers.
fn wakes(meta: &dialtone_types::ObjectMeta) -> (i64, bool, Vec<String>) {
    (
        meta.generation,
        meta.deletion_timestamp.is_some(),
        meta.finalizers.clone(),
    )
}
