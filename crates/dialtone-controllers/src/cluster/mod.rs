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
use dialtone_kube::workload::NodeView;
use dialtone_planner::versions::Versions;
use dialtone_planner::{AddressPlan, ClusterRequest, PlanContext, plan};
use dialtone_store::registry::{ListOptions, Registry, RegistryError, from_raw};
use dialtone_types::cluster::{
    ClusterEvent, ClusterNode, ClusterPlan, ClusterStatus, LastRepair, LaunchBackoff, NodeCount,
    NodeRepair, NodeRole, Unhealthy, parse_address_pool,
};
use dialtone_types::kinds::{CLUSTER, PROJECT};
use dialtone_types::{
    Cluster, ClusterCondition, ClusterType, Condition, ConditionStatus, Health, NodeState, Object,
    Org, Phase, ResourcePath,
};
use jiff::Timestamp;

use crate::balancers::{Balancers, NODE_PORTS};
use crate::runtime::backoff::Backoff;
use crate::runtime::controller::Controller;
use crate::runtime::{Informer, Next, Reconciler, Supervisor, triggers};
use crate::sizing::{self, SizingOptions, worker_index};

mod bootstrap;
/// Holds a cluster until its cloud resources are gone.
mod probes;
mod provision;
mod repair;
mod slots;
mod status;
mod teardown;
mod versions;

use slots::{
    Slot, attempt_of, bump_attempt, control_plane_settled, control_plane_slot, desired_slots,
    is_going, part_of, subnet_part,
};
use status::seconds;
pub(crate) use status::{record_event, set_condition};

pub const CLUSTER_FINALIZER: &str = "dialtone.dev/cloud-resources";
pub use dialtone_cloud::tags::{
    ROLE_CONTROL_PLANE, ROLE_WORKER, TAG_ATTEMPT, TAG_CLUSTER, TAG_NETWORK, TAG_OWNER, TAG_PART,
    TAG_ROLE,
};

const KUBERNETES_API_PORT: u16 = 6443;
/// Opened to the VPC only when the plan's `security.sshAccess` says so.
const SSH_PORT: u16 = 22;
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
    /// How often a settled cluster is looked at anyway when the cloud's event feed and
    /// watches inside the cluster tell of its changes (each wait jittered by a tenth, so
    /// that a fleet made together is not looked at together).
    pub resync: Duration,
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
            resync: scaled(600_000.0, 5_000),
            // A real cloud's launch failures are retried from 10 s up to 5 min apart.
            retry: Backoff {
                base: scaled(10_000.0, 50),
                cap: scaled(300_000.0, 1_000),
            },
            sizing: SizingOptions {
                second: scaled(1_000.0, 0),
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
    /// What right-sizing last found nothing to consolidate in, by cluster uid.
    sizing_memory: sizing::SizingMemory,
    /// The Kubernetes releases clusters run, by channel.
    versions: Arc<Versions>,
    /// What each cluster last answered about its security.
    probes: probes::Probes,
    /// Wakes the controller for a cluster; set when the lifecycle runs under one, which
    /// then follows each settled cluster's changes inside.
    wake: std::sync::OnceLock<Wake>,
    /// Whether the provider tells of every change of a resource (`Provider::subscribe`).
    cloud_feed: std::sync::atomic::AtomicBool,
    /// The task following each settled cluster's changes, by uid.
    following: std::sync::Mutex<std::collections::HashMap<String, tokio::task::JoinHandle<()>>>,
}

type Wake = Arc<dyn Fn(ResourcePath) + Send + Sync>;

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
    /// A broken node waits for its repair, or its replacement is on its way.
    Repairing,
    /// A broken node's repair is held back by the repair limits.
    RepairHeld,
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
            Wait::Repairing => "RepairingNode",
            Wait::RepairHeld => "RepairHeld",
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

/// A client of the cluster's API and its nodes as the API lists them; why not, when it
/// does not answer.
async fn list_nodes(
    clients: &dialtone_kube::Clients,
    uid: &str,
) -> Result<(dialtone_kube::Client, Vec<NodeView>), String> {
    let client = clients.client(uid).map_err(|e| e.to_string())?;
    match dialtone_kube::workload::nodes(&client).await {
        Ok(nodes) => Ok((client, nodes)),
        Err(e) => Err(format!("the Kubernetes API does not answer: {e}")),
    }
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
            sizing_memory: Default::default(),
            versions: Default::default(),
            probes: Default::default(),
            wake: Default::default(),
            cloud_feed: Default::default(),
            following: Default::default(),
        }
    }

    /// Reads Kubernetes releases from `versions` (the built-in catalogue otherwise).
    pub fn with_versions(mut self, versions: Arc<Versions>) -> Self {
        self.versions = versions;
        self
    }

    /// Checks and bootstraps clusters through their Kubernetes API as well.
    pub fn with_kube(mut self, clients: Arc<dialtone_kube::Clients>) -> Self {
        self.kube = Some(clients);
        self
    }

    /// Asks the cluster's API whether every running instance is a Ready node: what it
    /// waits for, if anything, and the nodes it read. A cluster not yet Ready is also
    /// asked whether its access is projected (after that, the projection controller keeps
    /// the `AccessProjected` condition).
    async fn check_api(
        &self,
        uid: &str,
        resources: &[CloudResource],
        status: &ClusterStatus,
    ) -> (Option<Blocked>, Vec<NodeView>) {
        let Some(clients) = &self.kube else {
            return (None, Vec::new());
        };
        let waiting = |reason, message: String| Some(Blocked::Waiting(reason, message));
        let (client, nodes) = match list_nodes(clients, uid).await {
            Ok(listed) => listed,
            Err(message) => return (waiting(Wait::WaitingForApi, message), Vec::new()),
        };
        let running = resources
            .iter()
            .filter(|r| {
                r.spec.kind() == ResourceKind::Instance && r.state == ResourceState::Available
            })
            .count();
        let ready = nodes.iter().filter(|n| n.ready).count();
        if ready < running {
            let message = format!("{ready} of {running} running instances are Ready nodes");
            return (waiting(Wait::WaitingForNodes, message), nodes);
        }
        let holds = |type_| {
            status::condition(status, type_).is_some_and(|c| c.status == ConditionStatus::True)
        };
        if holds(ClusterCondition::Ready) && holds(ClusterCondition::AccessProjected) {
            return (None, nodes);
        }
        // Ready means ready for its users: their access is in the cluster's RBAC.
        let blocked = match dialtone_kube::access::projected(&client).await {
            Ok(true) => None,
            Ok(false) => waiting(
                Wait::WaitingForAccess,
                "the access policies are not cast into the cluster's RBAC yet".into(),
            ),
            Err(e) => waiting(
                Wait::WaitingForApi,
                format!("the Kubernetes API does not answer: {e}"),
            ),
        };
        (blocked, nodes)
    }

    /// Puts back what the plan owns inside the cluster when it was changed there: the Pod
    /// Security level of the namespaces Dialtone manages, and the audit policy. An API that
    /// does not answer is the health check's to report, and a policy that cannot be put back
    /// shows in the audit probe's finding; this tries again next pass.
    async fn restore_in_cluster(
        &self,
        uid: &str,
        plan: &ClusterPlan,
        status: &mut ClusterStatus,
        now: Timestamp,
    ) {
        let Some(client) = self.kube.as_ref().and_then(|k| k.client(uid).ok()) else {
            return;
        };
        let level = plan.settings.security.pod_security_level.as_str();
        match dialtone_kube::access::restore_pod_security(&client, level).await {
            Ok(restored) => {
                for (namespace, had) in restored {
                    let was = match had {
                        Some(had) => format!("was `{had}`"),
                        None => "was removed".to_string(),
                    };
                    record_event(
                        status,
                        now,
                        true,
                        "DriftRestored",
                        format!(
                            "namespace {namespace}: {} {was}; set to `{level}` again (security.podSecurityLevel)",
                            dialtone_kube::access::POD_SECURITY_ENFORCE
                        ),
                    );
                }
            }
            Err(e) => tracing::debug!(cluster = uid, error = %e, "cannot check namespaces"),
        }
        let audit = plan.settings.security.audit_logging;
        let planned = dialtone_cloud::bootstrap::audit_policy(audit);
        match dialtone_kube::audit::restore_policy(&client, &planned).await {
            Ok(Some(drifted)) => {
                let (namespace, name) = dialtone_kube::audit::POLICY_CONFIGMAP;
                record_event(
                    status,
                    now,
                    true,
                    "DriftRestored",
                    format!(
                        "audit policy {namespace}/{name} {drifted}; set to the plan's again (security.auditLogging: {audit})"
                    ),
                );
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(cluster = uid, error = %e, "cannot put the audit policy back")
            }
        }
    }

    /// Follows the settled cluster's changes inside (`dialtone_kube::changes`), waking the
    /// controller for it on each; whether they are followed (under a controller, with
    /// clients into clusters).
    fn follow(&self, path: &ResourcePath, uid: &str) -> bool {
        let (Some(wake), Some(clients)) = (self.wake.get(), &self.kube) else {
            return false;
        };
        let mut following = self.following.lock().unwrap_or_else(|e| e.into_inner());
        if following.get(uid).is_some_and(|f| !f.is_finished()) {
            return true;
        }
        let (wake, path) = (wake.clone(), path.clone());
        let follow = dialtone_kube::changes::follow(clients.clone(), uid.to_string(), move || {
            wake(path.clone())
        });
        following.insert(uid.to_string(), tokio::spawn(follow));
        true
    }

    /// Stops following a cluster that is going.
    pub(super) fn unfollow(&self, uid: &str) {
        let mut following = self.following.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(follow) = following.remove(uid) {
            follow.abort();
        }
    }

    /// How many clusters' changes are followed.
    pub fn followed(&self) -> usize {
        let following = self.following.lock().unwrap_or_else(|e| e.into_inner());
        following.values().filter(|f| !f.is_finished()).count()
    }

    /// When a settled cluster is looked at next: at its health check, unless the cloud's
    /// feed and its followed changes tell of what changed; then at the resync, or when its
    /// youngest worker leaves right-sizing's stabilization window, whichever comes first,
    /// since consolidation may then remove it.
    fn settled_next(
        &self,
        path: &ResourcePath,
        uid: &str,
        plan: &ClusterPlan,
        status: &ClusterStatus,
        nodes: &[NodeView],
        now: Timestamp,
    ) -> Next {
        let told =
            self.cloud_feed.load(std::sync::atomic::Ordering::Relaxed) && self.follow(path, uid);
        if !told {
            return Next::After(self.options.health_check);
        }
        let autoscaling = &plan.settings.autoscaling;
        let window = self.options.sizing.second * autoscaling.scale_down_delay_seconds;
        let consolidating = autoscaling.enabled && autoscaling.consolidation;
        let settles = status
            .nodes
            .iter()
            .filter(|slot| consolidating && slot.role == NodeRole::Worker)
            .filter_map(|slot| nodes.iter().find(|n| n.instance_id == slot.instance_id))
            .filter_map(|node| node.created)
            .filter_map(|created| {
                let age = Duration::try_from(now.duration_since(created)).unwrap_or_default();
                window.checked_sub(age)
            })
            .min();
        use rand::Rng;
        let resync = self
            .options
            .resync
            .mul_f64(0.9 + 0.2 * rand::rng().random::<f64>());
        Next::After(settles.map_or(resync, |s| s.min(resync)))
    }

    /// The cluster's nodes as its API lists them; none when it does not answer.
    async fn read_nodes(&self, uid: &str) -> Vec<NodeView> {
        match &self.kube {
            Some(clients) => list_nodes(clients, uid)
                .await
                .map(|(_, nodes)| nodes)
                .unwrap_or_default(),
            None => Vec::new(),
        }
    }

    /// Right-sizes a settled cluster through its API; whether work is under way.
    async fn right_size(
        &self,
        cluster: &Object<Cluster, ClusterStatus>,
        nodes: Vec<NodeView>,
        plan: &ClusterPlan,
        status: &mut ClusterStatus,
        now: Timestamp,
    ) -> bool {
        let Some(clients) = &self.kube else {
            return false;
        };
        let uid = cluster.metadata.uid.as_str();
        let client = match clients.client(uid) {
            Ok(client) => client,
            Err(_) => return false,
        };
        let catalog = self.provider.catalog();
        let sizer = sizing::Sizer {
            catalog,
            options: &self.options.sizing,
            memory: &self.sizing_memory,
            cluster: uid,
            policy: cluster.spec.consolidation.unwrap_or_default(),
        };
        match sizing::pass(&client, sizer, nodes, plan, status, now).await {
            Ok(busy) => busy,
            Err(e) => {
                tracing::debug!(cluster = uid, error = %e, "right-sizing stopped");
                true
            }
        }
    }

    /// Serves the settled cluster's load-balanced Services; whether a load balancer is
    /// still on its way.
    async fn balance(
        &self,
        path: &ResourcePath,
        uid: &str,
        plan: &ClusterPlan,
        resources: &[CloudResource],
        status: &mut ClusterStatus,
        now: Timestamp,
    ) -> bool {
        let Some(client) = self.kube.as_ref().and_then(|c| c.client(uid).ok()) else {
            return false;
        };
        let balancers = Balancers {
            provider: &*self.provider,
            client: &client,
            plan,
            cluster_uid: uid,
            owner: &path.to_string(),
            resources,
            now,
        };
        match balancers.pass(status).await {
            Ok(busy) => busy,
            Err(e) => {
                tracing::debug!(cluster = uid, error = %e, "load balancing stopped");
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
        if !self.registry.homed_here(&cluster.metadata) {
            return Ok(Next::Done);
        }
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

        let release = match self
            .keep_current(path, &cluster, &plan, &mut status, now)
            .await?
        {
            versions::Decided::Release(release) => release,
            versions::Decided::MovedMinor(moved) => {
                // The spec changed under this pass: the next one plans the new minor.
                let Some(moved) = moved else {
                    return Ok(Next::Done);
                };
                self.write_status(path, &moved, status).await?;
                return Ok(Next::After(self.options.poll));
            }
        };
        let network = network_key(path, &cluster.metadata.uid, &plan);
        let blocked = self
            .provision(
                path,
                &cluster.metadata.uid,
                &network,
                &plan,
                &release,
                &mut status,
            )
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
                let (blocked, nodes) = match blocked {
                    None => {
                        self.check_api(&cluster.metadata.uid, &resources, &status)
                            .await
                    }
                    // A provisioned cluster's nodes still tell which are broken.
                    blocked if status::provisioned(&status) => {
                        (blocked, self.read_nodes(&cluster.metadata.uid).await)
                    }
                    blocked => (blocked, Vec::new()),
                };
                refused = matches!(
                    blocked,
                    Some(Blocked::Cloud(_) | Blocked::Waiting(Wait::WaitingForApi, _))
                );
                let slots = desired_slots(&plan, &status);
                let max_launch_attempts = plan.settings.repair.max_launch_attempts;
                // Its nodes listed, the API answers: it can be asked about its security.
                let probed = match nodes.is_empty() {
                    true => None,
                    false => self.probe(&cluster.metadata.uid, &plan, now).await,
                };
                let observed = status::Observed {
                    plan: &plan,
                    slots: &slots,
                    resources: &resources,
                    nodes: &nodes,
                    blocked: blocked.as_ref(),
                    probed: probed.as_ref(),
                };
                let next = self.observe(&mut status, observed, max_launch_attempts, now);
                let settled = blocked.is_none() && next == Next::After(self.options.health_check);
                let followed = match settled {
                    true => {
                        let uid = &cluster.metadata.uid;
                        Some(self.settled_next(path, uid, &plan, &status, &nodes, now))
                    }
                    false => None,
                };
                if settled {
                    self.restore_in_cluster(&cluster.metadata.uid, &plan, &mut status, now)
                        .await;
                }
                let sizing = if settled {
                    self.right_size(&cluster, nodes, &plan, &mut status, now)
                        .await
                } else {
                    false
                };
                let balancing = settled
                    && self
                        .balance(
                            path,
                            &cluster.metadata.uid,
                            &plan,
                            &resources,
                            &mut status,
                            now,
                        )
                        .await;
                sizing::account(&mut status, self.provider.catalog());
                // Right-sizing that waits (pods without a node, moves waiting out the
                // stabilization window) looks again at the health check, not the resync.
                let sizing_waits = status::condition(&status, ClusterCondition::SizeEfficient)
                    .is_some_and(|c| c.status == ConditionStatus::False);
                match followed {
                    _ if sizing || balancing => Next::After(self.options.poll),
                    Some(_) if sizing_waits => Next::After(self.options.health_check),
                    Some(followed) => followed,
                    None => next,
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
                start: Default::default(),
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
            bootstrap: None,
        };
        Ok(self.provider.create(region, request).await?)
    }

    /// Deletes a resource; one already gone is fine.
    async fn delete(&self, region: &str, id: &str) -> Pass {
        match self.provider.delete(region, id).await {
            Ok(()) | Err(CloudError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
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
    let provider = lifecycle.provider.clone();
    let follows = lifecycle.clone();
    let controller = Controller::new(
        lifecycle,
        workers,
        supervisor.controllers().controller("cluster-lifecycle"),
    );
    let queue = controller.queue().clone();
    for path in clusters.paths() {
        queue.add(path);
    }
    // A cloud with an event feed wakes the cluster a resource belongs to as it changes
    // (an instance dies, a zone goes down), so a repair need not wait for a health check.
    let told = triggers::on_cloud_changes(&*provider, queue.clone(), &CLUSTER);
    follows
        .cloud_feed
        .store(told, std::sync::atomic::Ordering::Relaxed);
    let _ = follows.wake.set(Arc::new({
        let queue = queue.clone();
        move |path| queue.add(path)
    }));
    triggers::on_spec_changes(clusters, queue);
    supervisor.spawn_leading("cluster-lifecycle", {
        let controller = controller.clone();
        move |_| controller.clone().run()
    });
    let clusters = clusters.clone();
    supervisor.spawn_leading("cluster-lifecycle-resync", move |_| {
        let clusters = clusters.clone();
        controller
            .clone()
            .resync(resync, move || std::future::ready(clusters.paths()))
    });
}
