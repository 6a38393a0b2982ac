//! Each enforced row of the decision table, changed, changes what gets built: a production
//! cluster is planned with the row's setting (or, for a computed row, its input) changed,
//! the lifecycle controller builds it on the sim, and what the provider holds (its resources
//! as `describe` reports them, and the bootstrap each instance was launched with) differs
//! from the cluster built with the type's own settings, and shows the new value. A row
//! that only changes what users read fails here. `TESTED_ELSEWHERE` names the enforced
//! rows that act elsewhere than on the provider. Last, the lifecycle's wake by the cloud's
//! event feed, which the health check's interval no longer bounds.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dialtone_cloud::tags::{ROLE_CONTROL_PLANE, ROLE_WORKER, TAG_PART, TAG_ROLE};
use dialtone_cloud::{
    CloudResource, CloudResult, CreateRequest, Filter, InstanceCatalog, NodeBootstrap, Protocol,
    Provider, Region, ResourceKind, ResourceSpec, SecretsEncryption, Tags,
};
use dialtone_controllers::cluster::{TAG_CLUSTER, TAG_NETWORK, network_key};
use dialtone_controllers::{Lifecycle, LifecycleOptions, Next};
use dialtone_kube::{Authenticator, UserInfo};
use dialtone_planner::{
    AddressPlan, ClusterPlan, ClusterRequest, ClusterSettings, DECISIONS, Decision, PlanContext,
    plan_with_settings,
};
use dialtone_sim::{FaultKind, FaultSpec, Sim, SimOptions};
use dialtone_simkube::SimKube;
use dialtone_simkube::egress::Egress;
use dialtone_store::EmbeddedStore;
use dialtone_store::registry::Registry;
use dialtone_types::cluster::ClusterStatus;
use dialtone_types::kinds::CLUSTER;
use dialtone_types::settings::{
    AuditPolicy, DiskType, EndpointAccess, LoadBalancerScope, PodSecurityLevel, VpcTenancy,
};
use dialtone_types::{Cluster, ClusterType, Object, Phase, ResourcePath};

/// The sim, with every launch's bootstrap kept by instance id, and the tags of every
/// launch (describe shows only the instances that are left).
struct Recording {
    sim: Arc<Sim>,
    bootstraps: Mutex<BTreeMap<String, NodeBootstrap>>,
    launches: Mutex<Vec<Tags>>,
}

#[async_trait::async_trait]
impl Provider for Recording {
    fn name(&self) -> &'static str {
        "recording-sim"
    }
    fn regions(&self) -> &'static [Region] {
        self.sim.regions()
    }
    fn catalog(&self) -> &InstanceCatalog {
        self.sim.catalog()
    }
    async fn create(&self, region: &str, request: CreateRequest) -> CloudResult<CloudResource> {
        let bootstrap = request.bootstrap.clone();
        if request.spec.kind() == ResourceKind::Instance {
            self.launches.lock().unwrap().push(request.tags.clone());
        }
        let created = self.sim.create(region, request).await?;
        if let Some(bootstrap) = bootstrap {
            self.bootstraps
                .lock()
                .unwrap()
                .insert(created.id.clone(), bootstrap);
        }
        Ok(created)
    }
    async fn describe(&self, region: &str, filter: &Filter) -> CloudResult<Vec<CloudResource>> {
        self.sim.describe(region, filter).await
    }
    async fn delete(&self, region: &str, id: &str) -> CloudResult<()> {
        self.sim.delete(region, id).await
    }
    async fn modify(
        &self,
        region: &str,
        id: &str,
        change: dialtone_cloud::Change,
    ) -> CloudResult<()> {
        self.sim.modify(region, id, change).await
    }
    fn consistency_window(&self) -> std::time::Duration {
        self.sim.consistency_window()
    }
    fn subscribe(&self, handler: dialtone_cloud::ChangeHandler) -> bool {
        self.sim.subscribe(handler)
    }
}

/// What a plan is made from: the type's settings, the request and the org's address plan.
struct Inputs {
    settings: ClusterSettings,
    request: ClusterRequest,
    address_pool: &'static str,
}

/// What the provider holds of one cluster once it is Ready.
struct Built {
    /// Its own resources and its network's.
    resources: Vec<CloudResource>,
    /// The bootstrap of each of its instances.
    bootstraps: Vec<(String, NodeBootstrap)>,
}

impl Built {
    fn instances(&self, role: &str) -> Vec<&CloudResource> {
        self.resources
            .iter()
            .filter(|r| r.spec.kind() == ResourceKind::Instance)
            .filter(|r| r.tags.get(TAG_ROLE).map(String::as_str) == Some(role))
            .collect()
    }

    fn control_plane(&self) -> Vec<&CloudResource> {
        self.instances(ROLE_CONTROL_PLANE)
    }

    fn workers(&self) -> Vec<&CloudResource> {
        self.instances(ROLE_WORKER)
    }

    /// A field of the first instance of `role`'s spec.
    fn instance(&self, role: &str) -> InstanceView {
        match &self.instances(role)[0].spec {
            ResourceSpec::Instance {
                instance_type,
                image,
                root_disk_gib,
                disk_type,
                disk_encrypted,
                metadata,
                ..
            } => InstanceView {
                instance_type: instance_type.clone(),
                image: image.clone(),
                root_disk_gib: *root_disk_gib,
                disk_type: *disk_type,
                disk_encrypted: *disk_encrypted,
                metadata: metadata.to_string(),
            },
            other => panic!("not an instance: {other:?}"),
        }
    }

    fn zones(instances: &[&CloudResource]) -> String {
        let zones: BTreeSet<String> = instances
            .iter()
            .filter_map(|r| match &r.spec {
                ResourceSpec::Instance { zone, .. } => Some(zone.clone()),
                _ => None,
            })
            .collect();
        format!("{zones:?}")
    }

    fn one(&self, kind: ResourceKind) -> &CloudResource {
        self.resources
            .iter()
            .find(|r| r.spec.kind() == kind)
            .unwrap_or_else(|| panic!("no {kind:?}"))
    }

    fn count(&self, kind: ResourceKind) -> usize {
        self.resources
            .iter()
            .filter(|r| r.spec.kind() == kind)
            .count()
    }

    fn load_balancer(&self) -> (bool, bool) {
        match &self.one(ResourceKind::LoadBalancer).spec {
            ResourceSpec::LoadBalancer {
                public, cross_zone, ..
            } => (*public, *cross_zone),
            _ => unreachable!(),
        }
    }

    /// The security group's rules to `port`, by source: each cluster's own VPC range
    /// differs, so a case looks only at the port its row opens.
    fn ingress_to(&self, port: u16) -> String {
        match &self.one(ResourceKind::SecurityGroup).spec {
            ResourceSpec::SecurityGroup { ingress, .. } => {
                let sources: BTreeSet<String> = ingress
                    .iter()
                    .filter(|r| r.protocol == Protocol::Tcp && r.port == port)
                    .map(|r| r.source.to_string())
                    .collect();
                format!("tcp/{port} from {sources:?}")
            }
            _ => unreachable!(),
        }
    }

    /// The bootstrap of the first instance of `role`.
    fn bootstrap(&self, role: &str) -> &NodeBootstrap {
        let id = &self.instances(role)[0].id;
        &self
            .bootstraps
            .iter()
            .find(|(i, _)| i == id)
            .unwrap_or_else(|| panic!("{id} was launched without a bootstrap"))
            .1
    }
}

#[derive(Debug)]
#[allow(dead_code)] // Read through Debug, in the assertions' messages.
struct InstanceView {
    instance_type: String,
    image: String,
    root_disk_gib: u32,
    disk_type: DiskType,
    disk_encrypted: bool,
    metadata: String,
}

struct World {
    _dir: tempfile::TempDir,
    registry: Registry,
    cloud: Arc<Recording>,
    lifecycle: Lifecycle,
    project: ResourcePath,
    clusters: usize,
    kube: Option<Arc<dialtone_kube::Clients>>,
}

const REGION: &str = "us-east-1";

/// The controller reaches clusters with a client certificate; no token is ever valid.
struct NoTokens;

#[async_trait::async_trait]
impl Authenticator for NoTokens {
    async fn authenticate(&self, _cluster_uid: &str, _token: &str) -> Option<UserInfo> {
        None
    }
}

async fn world() -> World {
    world_with(LifecycleOptions::for_time_scale(0.0), false).await
}

/// A world whose controller waits as `options` say and, with `kube`, reaches each
/// cluster's Kubernetes API (the sim's), as right-sizing needs.
async fn world_with(options: LifecycleOptions, kube: bool) -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("store.redb")).unwrap();
    let registry = Registry::new(Arc::new(store), "local", jiff::Timestamp::now);
    let sim = Sim::open(
        &dir.path().join("sim.redb"),
        SimOptions {
            time_scale: 0.0,
            ..SimOptions::default()
        },
    )
    .unwrap();
    let cloud = Arc::new(Recording {
        sim: Arc::new(sim),
        bootstraps: Mutex::default(),
        launches: Mutex::default(),
    });
    let mut lifecycle = Lifecycle::new(
        registry.clone(),
        cloud.clone(),
        options,
        jiff::Timestamp::now,
    );
    let mut kube_clients = None;
    if kube {
        let listener = Arc::new(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
        let apis = SimKube::new(
            cloud.sim.clone(),
            dir.path().join("clusters"),
            &listener,
            Arc::new(NoTokens),
            Egress::default(),
        )
        .unwrap();
        tokio::spawn(apis.clone().accept_loop(listener));
        tokio::spawn(apis.clone().sync_loop());
        let clients = Arc::new(dialtone_kube::Clients::new(apis));
        kube_clients = Some(clients.clone());
        lifecycle = lifecycle.with_kube(clients);
    }
    let project = common::acme_project(&registry).await;
    World {
        _dir: dir,
        registry,
        cloud,
        lifecycle,
        project,
        clusters: 0,
        kube: kube_clients,
    }
}

impl World {
    /// Plans a production cluster from `change`d inputs and stores it, planned; its path,
    /// uid and plan.
    async fn plan(&mut self, change: fn(&mut Inputs)) -> (ResourcePath, String, ClusterPlan) {
        self.clusters += 1;
        let name = format!("c{}", self.clusters);
        let mut inputs = Inputs {
            settings: ClusterSettings::of(ClusterType::Production),
            request: ClusterRequest {
                name: name.clone(),
                cluster_type: ClusterType::Production,
                region: REGION.into(),
                kubernetes_version: None,
                min_nodes: None,
                max_nodes: None,
                allowed_families: vec![],
                excluded_families: vec![],
                architectures: vec![],
                allow_burstable: false,
                release_channel: None,
                maintenance_window: None,
            },
            address_pool: "10.0.0.0/8",
        };
        change(&mut inputs);
        // Each cluster gets its own range: the n-th /16 of the pool.
        let mut address_plan = AddressPlan {
            pool: inputs.address_pool.parse().unwrap(),
            allocated: Vec::new(),
            start: Default::default(),
        };
        address_plan.allocated = address_plan
            .pool
            .subnets(16)
            .unwrap()
            .take(self.clusters)
            .collect();
        let context = PlanContext {
            catalog: InstanceCatalog::builtin(),
            address_plan: &address_plan,
            existing_vpc: None,
            kept_families: None,
        };
        let plan = plan_with_settings(&inputs.request, inputs.settings, &context)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut object = Object::new(
            &name,
            Cluster {
                cluster_type: "production".into(),
                region: REGION.into(),
                kubernetes_version: plan.kubernetes_version.clone(),
                ..Default::default()
            },
        );
        object.status = ClusterStatus {
            observed_generation: 1,
            plan: Some(plan.clone()),
            ..Default::default()
        };
        let created = self
            .registry
            .create(Some(&self.project), object)
            .await
            .unwrap();
        (
            self.project.child(&CLUSTER, &name),
            created.metadata.uid,
            plan,
        )
    }

    /// Passes over the cluster at `path`, as far apart as the controller asks, until it is
    /// in `phase` (or a few seconds have passed).
    async fn drive(&self, path: &ResourcePath, phase: Phase) {
        for _ in 0..400 {
            let next = self.lifecycle.reconcile(path).await.unwrap();
            let cluster = self.registry.get::<Cluster>(path).await.unwrap();
            if cluster.status.phase == Some(phase) {
                return;
            }
            if let Next::After(wait) = next {
                tokio::time::sleep(wait.min(Duration::from_millis(20))).await;
            }
        }
    }

    /// Passes over the cluster at `path` for `span`, as often as the controller asks.
    async fn drive_for(&self, path: &ResourcePath, span: Duration) {
        let until = std::time::Instant::now() + span;
        while std::time::Instant::now() < until {
            let next = self.lifecycle.reconcile(path).await.unwrap();
            if let Next::After(wait) = next {
                tokio::time::sleep(wait.clamp(Duration::from_millis(5), Duration::from_millis(50)))
                    .await;
            }
        }
    }

    /// Builds the cluster at `path` until Ready, playing the access projection's part (it
    /// marks the cluster's RBAC cast once its API answers); a client of its API.
    async fn ready_for_users(&self, path: &ResourcePath, uid: &str) -> kube::Client {
        let clients = self.kube.as_ref().expect("a world with cluster APIs");
        for _ in 0..400 {
            self.lifecycle.reconcile(path).await.unwrap();
            if let Ok(client) = clients.client(uid) {
                let _ = dialtone_kube::access::mark_projected(&client).await;
            }
            let cluster = self.registry.get::<Cluster>(path).await.unwrap();
            if cluster.status.phase == Some(Phase::Ready) {
                return clients.client(uid).unwrap();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{path} is not Ready");
    }

    /// Plans a production cluster from `change`d inputs, has the controller build it on
    /// the sim until Ready, and reads back what the provider holds.
    async fn build(&mut self, change: fn(&mut Inputs)) -> Built {
        let (path, uid, plan) = self.plan(change).await;
        let name = path.name().to_string();
        self.drive(&path, Phase::Ready).await;
        let cluster = self.registry.get::<Cluster>(&path).await.unwrap();
        assert_eq!(
            cluster.status.phase,
            Some(Phase::Ready),
            "{name} is built: {:?}",
            cluster.status.conditions
        );
        let mut resources = Vec::new();
        for (tag, value) in [
            (TAG_CLUSTER, uid.clone()),
            (TAG_NETWORK, network_key(&path, &uid, &plan)),
        ] {
            let filter = Filter {
                kind: None,
                tags: [(tag.to_string(), value)].into(),
            };
            resources.extend(self.cloud.describe(REGION, &filter).await.unwrap());
        }
        let bootstraps = self.cloud.bootstraps.lock().unwrap();
        let bootstraps = resources
            .iter()
            .filter_map(|r| Some((r.id.clone(), bootstraps.get(&r.id)?.clone())))
            .collect();
        Built {
            resources,
            bootstraps,
        }
    }
}

type Change = fn(&mut Inputs);
type Observe = fn(&Built) -> String;

/// Each enforced row the controller builds from: how to change it, and what to look at.
fn cases() -> Vec<(&'static str, Change, Observe)> {
    vec![
        (
            "controlPlane.nodes",
            |i| i.settings.control_plane.nodes = 5,
            |b| b.control_plane().len().to_string(),
        ),
        (
            "controlPlane.apiServerReplicas",
            |i| i.settings.control_plane.nodes = 5,
            |b| {
                let api_servers = b
                    .control_plane()
                    .iter()
                    .filter(|r| b.bootstraps.iter().any(|(id, _)| *id == r.id))
                    .count();
                api_servers.to_string()
            },
        ),
        (
            "controlPlane.zones",
            |i| {
                i.settings.control_plane.zones = 2;
                i.settings.workers.zones = 2;
            },
            |b| Built::zones(&b.control_plane()),
        ),
        (
            "controlPlane.instanceType",
            |i| i.settings.control_plane.instance_type[1].instance_type = "m7i.8xlarge".into(),
            |b| b.instance(ROLE_CONTROL_PLANE).instance_type,
        ),
        (
            "controlPlane.rootDiskGiB",
            |i| i.settings.control_plane.root_disk_gib = 64,
            |b| b.instance(ROLE_CONTROL_PLANE).root_disk_gib.to_string(),
        ),
        (
            "controlPlane.diskType",
            |i| i.settings.control_plane.disk_type = DiskType::Io2,
            |b| b.instance(ROLE_CONTROL_PLANE).disk_type.to_string(),
        ),
        (
            "etcd.quotaBackendGiB",
            |i| i.settings.etcd.quota_backend_gib = 4,
            |b| {
                b.bootstrap(ROLE_CONTROL_PLANE)
                    .etcd_quota_backend_gib
                    .to_string()
            },
        ),
        (
            "network.vpc",
            |i| i.settings.network.vpc = VpcTenancy::Shared,
            |b| {
                b.one(ResourceKind::Vpc).tags[TAG_NETWORK]
                    .contains('@')
                    .to_string()
            },
        ),
        (
            "network.vpcCidr",
            |i| i.address_pool = "172.16.0.0/12",
            // Each cluster has its own /16; the pool shows in the first octet.
            |b| match &b.one(ResourceKind::Vpc).spec {
                ResourceSpec::Vpc { cidr } => format!("{}.x.x.x", cidr.addr().octets()[0]),
                _ => unreachable!(),
            },
        ),
        (
            "network.subnets",
            |i| {
                i.settings.control_plane.zones = 2;
                i.settings.workers.zones = 2;
            },
            |b| b.count(ResourceKind::Subnet).to_string(),
        ),
        (
            "network.podCidr",
            |i| i.settings.network.pod_cidr = "100.96.0.0/12".parse().unwrap(),
            |b| b.bootstrap(ROLE_WORKER).pod_cidr.to_string(),
        ),
        (
            "network.serviceCidr",
            |i| i.settings.network.service_cidr = "172.24.0.0/16".parse().unwrap(),
            |b| b.bootstrap(ROLE_CONTROL_PLANE).service_cidr.to_string(),
        ),
        (
            "network.apiEndpoint",
            |i| i.settings.network.api_endpoint = EndpointAccess::Public,
            |b| format!("public: {}", b.load_balancer().0),
        ),
        (
            "network.apiAllowedCidrs",
            |i| i.address_pool = "172.16.0.0/12",
            |b| b.ingress_to(6443),
        ),
        (
            "network.loadBalancer",
            |i| i.settings.network.load_balancer = LoadBalancerScope::SingleZone,
            |b| format!("cross-zone: {}", b.load_balancer().1),
        ),
        (
            "workers.minNodes",
            |i| i.settings.workers.min_nodes.default = 4,
            |b| b.workers().len().to_string(),
        ),
        (
            // The bound sizes the control plane, so that growing needs no resize.
            "workers.maxNodes",
            |i| i.settings.workers.max_nodes.default = 400,
            |b| b.instance(ROLE_CONTROL_PLANE).instance_type,
        ),
        (
            "workers.zones",
            |i| i.settings.workers.zones = 1,
            |b| Built::zones(&b.workers()),
        ),
        (
            "workers.maxPodsPerNode",
            |i| i.settings.workers.max_pods_per_node = 20,
            |b| b.bootstrap(ROLE_WORKER).max_pods_per_node.to_string(),
        ),
        (
            "workers.instanceFamilies",
            |i| {
                i.settings.workers.instance_families.burstable = true;
                i.settings.workers.initial_instance_type.min_memory_gib = 4;
            },
            |b| b.instance(ROLE_WORKER).instance_type,
        ),
        (
            "workers.initialInstanceType",
            |i| i.settings.workers.initial_instance_type.min_memory_gib = 32,
            |b| b.instance(ROLE_WORKER).instance_type,
        ),
        (
            "workers.nodeImage",
            |i| i.request.kubernetes_version = Some("1.33".into()),
            |b| b.instance(ROLE_WORKER).image,
        ),
        (
            "kubernetes.version",
            |i| i.request.kubernetes_version = Some("1.33".into()),
            |b| b.bootstrap(ROLE_CONTROL_PLANE).kubernetes_version.clone(),
        ),
        (
            "workers.rootDiskGiB",
            |i| i.settings.workers.root_disk_gib = 200,
            |b| b.instance(ROLE_WORKER).root_disk_gib.to_string(),
        ),
        (
            "workers.diskType",
            |i| i.settings.workers.disk_type = DiskType::Gp2,
            |b| b.instance(ROLE_WORKER).disk_type.to_string(),
        ),
        (
            "workers.diskEncryption",
            |i| i.settings.workers.disk_encryption = false,
            |b| b.instance(ROLE_WORKER).disk_encrypted.to_string(),
        ),
        (
            "workers.systemReserved",
            |i| i.settings.workers.system_reserved.memory_mib = 2048,
            |b| b.bootstrap(ROLE_WORKER).system_reserved.to_string(),
        ),
        (
            "workers.evictionHard",
            |i| i.settings.workers.eviction_hard.nodefs_available_percent = None,
            |b| b.bootstrap(ROLE_WORKER).eviction_hard.to_string(),
        ),
        (
            "security.podSecurityLevel",
            |i| i.settings.security.pod_security_level = PodSecurityLevel::Baseline,
            |b| b.bootstrap(ROLE_CONTROL_PLANE).pod_security.to_string(),
        ),
        (
            "security.secretsEncryption",
            |i| i.settings.security.secrets_encryption = SecretsEncryption::None,
            |b| {
                b.bootstrap(ROLE_CONTROL_PLANE)
                    .secrets_encryption
                    .to_string()
            },
        ),
        (
            "security.auditLogging",
            |i| i.settings.security.audit_logging = AuditPolicy::Metadata,
            |b| b.bootstrap(ROLE_CONTROL_PLANE).audit.to_string(),
        ),
        (
            "security.auditLogRetentionDays",
            |i| i.settings.security.audit_log_retention_days = 90,
            |b| {
                b.bootstrap(ROLE_CONTROL_PLANE)
                    .audit_log_retention_days
                    .to_string()
            },
        ),
        (
            "security.anonymousAuth",
            |i| i.settings.security.anonymous_auth = true,
            |b| b.bootstrap(ROLE_CONTROL_PLANE).anonymous_auth.to_string(),
        ),
        (
            "security.instanceMetadata",
            |i| i.settings.security.instance_metadata.hop_limit = 2,
            |b| b.instance(ROLE_WORKER).metadata,
        ),
        (
            "security.sshAccess",
            |i| i.settings.security.ssh_access = true,
            |b| b.ingress_to(22),
        ),
    ]
}

/// The enforced rows without a case in `cases()`: `repair.maxLaunchAttempts` and the
/// `autoscaling` rows, which act on a cluster's Kubernetes API, have their own tests below;
/// so has `repair.enabled`; the other `repair` rows act on broken nodes, which the binary's
/// `compliance` tests break with the sim's failure injection;
/// the server checks `security.deletionProtection` (the `clusters` tests of the binary
/// refuse a production cluster's delete and allow a developer one's) and
/// `network.maxConnections` (the `scenarios` tests refuse a developer cluster's connection
/// and a production cluster's 51st); the `upgrade` rows and `maintenance.window` act over
/// days of a version catalogue, which the binary's `compliance` tests rewrite (a patch in
/// the window and not before it, a developer cluster following the next minor, an
/// unsupported minor moved despite an exclusion).
const TESTED_ELSEWHERE: &[&str] = &[
    "upgrade.channel",
    "upgrade.autoMinor",
    "upgrade.autoPatch",
    "maintenance.window",
    "repair.maxLaunchAttempts",
    "repair.enabled",
    "repair.unhealthyAfterSeconds",
    "repair.maxUnhealthyPercent",
    "repair.maxParallel",
    "autoscaling.enabled",
    "autoscaling.scaleDownDelaySeconds",
    "autoscaling.consolidation",
    "security.deletionProtection",
    "network.maxConnections",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_enforced_row_changes_what_gets_built() {
    let cases = cases();
    let covered: BTreeSet<&str> = cases
        .iter()
        .map(|(key, ..)| *key)
        .chain(TESTED_ELSEWHERE.iter().copied())
        .collect();
    let enforced: BTreeSet<&str> = DECISIONS
        .iter()
        .filter(|d| d.is_enforced())
        .map(|d| d.key)
        .collect();
    assert_eq!(
        enforced.difference(&covered).collect::<Vec<_>>(),
        Vec::<&&str>::new(),
        "every enforced row has a case"
    );
    for key in &covered {
        assert!(
            Decision::find(key).is_some_and(Decision::is_enforced),
            "{key} is an enforced row"
        );
    }

    let mut world = world().await;
    let base = world.build(|_| {}).await;
    for (key, change, observe) in cases {
        let changed = world.build(change).await;
        let (before, after) = (observe(&base), observe(&changed));
        assert_ne!(
            before, after,
            "{key}: changing the row changes what is built"
        );
        eprintln!("{key}: {before} → {after}");
    }
}

/// `repair.maxLaunchAttempts`: where every launch fails, a cluster reports Failed after
/// that many launches of a node, not before. (Its nodes launch side by side, so which one
/// gets there first is the cloud's timing: the node the cluster names is counted.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_launch_attempts_is_how_many_launches_fail_before_the_cluster_does() {
    let mut world = world().await;
    world
        .cloud
        .sim
        .add_fault(FaultSpec {
            kind: FaultKind::BootFailure,
            region: None,
            zone: None,
            count: None,
            probability: Some(1.0),
        })
        .await
        .unwrap();
    let mut launches = Vec::new();
    for attempts in [2, 4] {
        let (path, uid, _) = world
            .plan(match attempts {
                2 => |i: &mut Inputs| i.settings.repair.max_launch_attempts = 2,
                _ => |i: &mut Inputs| i.settings.repair.max_launch_attempts = 4,
            })
            .await;
        world.drive(&path, Phase::Failed).await;
        let cluster = world.registry.get::<Cluster>(&path).await.unwrap();
        assert_eq!(cluster.status.phase, Some(Phase::Failed), "{path}");
        let exhausted = cluster
            .status
            .nodes
            .iter()
            .find(|n| {
                n.launch_backoff
                    .as_ref()
                    .is_some_and(|b| b.failures >= attempts)
            })
            .map(|n| n.name.clone())
            .expect("a node failed that many times");
        let launched = world
            .cloud
            .launches
            .lock()
            .unwrap()
            .iter()
            .filter(|tags| tags.get(TAG_CLUSTER) == Some(&uid))
            .filter(|tags| tags.get(TAG_PART) == Some(&exhausted))
            .count();
        launches.push((attempts, launched));
    }
    assert_eq!(
        launches,
        [(2, 2), (4, 4)],
        "(maxLaunchAttempts, launches of the node that failed)"
    );
}

/// Twelve pods of a whole vCPU, more than three two-vCPU workers hold, in `default`.
async fn burst(client: kube::Client) -> kube::Api<k8s_openapi::api::apps::v1::Deployment> {
    use k8s_openapi::api::apps::v1::Deployment;
    let deployments: kube::Api<Deployment> = kube::Api::namespaced(client, "default");
    let web: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 12,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                // Hardened as the restricted Pod Security level, production's, asks.
                "spec": {
                    "securityContext": {
                        "runAsNonRoot": true,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [{
                        "name": "web", "image": "nginx",
                        "resources": {"requests": {"cpu": "1", "memory": "1Gi"}},
                        "securityContext": {
                            "allowPrivilegeEscalation": false,
                            "capabilities": {"drop": ["ALL"]},
                        },
                    }],
                },
            },
        },
    }))
    .unwrap();
    deployments
        .create(&kube::api::PostParams::default(), &web)
        .await
        .unwrap();
    deployments
}

/// What right-sizing did over a burst of pods and its end: the actions of its decisions.
async fn right_sizing_actions(world: &mut World, change: fn(&mut Inputs)) -> BTreeSet<String> {
    use kube::api::DeleteParams;

    let (path, uid, _) = world.plan(change).await;
    let client = world.ready_for_users(&path, &uid).await;
    let deployments = burst(client).await;
    world.drive_for(&path, Duration::from_secs(3)).await;
    deployments
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    world.drive_for(&path, Duration::from_secs(3)).await;
    let cluster = world.registry.get::<Cluster>(&path).await.unwrap();
    cluster
        .status
        .sizing
        .iter()
        .flat_map(|sizing| &sizing.decisions)
        .map(|d| d.action.clone())
        .collect()
}

/// The `autoscaling` rows: with the type's settings a burst of pods adds workers and its
/// end removes them once they are older than `scaleDownDelaySeconds`; with autoscaling
/// off nothing is added, with consolidation off or a longer delay nothing is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autoscaling_rows_decide_what_right_sizing_does() {
    let mut options = LifecycleOptions::for_time_scale(0.0);
    // A second of the plan's delays is a millisecond here: production's 600 s are 0.6 s.
    options.sizing.second = Duration::from_millis(1);
    let mut world = world_with(options, true).await;
    let removes =
        |actions: &BTreeSet<String>| actions.contains("Delete") || actions.contains("Replace");

    let base = right_sizing_actions(&mut world, |_| {}).await;
    assert!(base.contains("ScaleUp") && removes(&base), "{base:?}");

    let off = right_sizing_actions(&mut world, |i| i.settings.autoscaling.enabled = false).await;
    assert!(
        !off.contains("ScaleUp") && !removes(&off),
        "autoscaling.enabled: {off:?}"
    );

    let kept =
        right_sizing_actions(&mut world, |i| i.settings.autoscaling.consolidation = false).await;
    assert!(
        kept.contains("ScaleUp") && !removes(&kept),
        "autoscaling.consolidation: {kept:?}"
    );

    let delayed = right_sizing_actions(&mut world, |i| {
        i.settings.autoscaling.scale_down_delay_seconds = 60_000
    })
    .await;
    assert!(
        delayed.contains("ScaleUp") && !removes(&delayed),
        "autoscaling.scaleDownDelaySeconds: {delayed:?}"
    );
}

/// The cloud's event feed wakes the lifecycle: with health checks and resyncs an hour
/// apart, an instance that dies is replaced within seconds, because the sim says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_instance_is_replaced_when_the_cloud_says_so_not_at_the_next_health_check() {
    use dialtone_controllers::runtime::Informer;
    use dialtone_controllers::{Supervisor, spawn_cluster_controller};

    let hour = Duration::from_secs(3600);
    let mut options = LifecycleOptions::for_time_scale(0.0);
    options.health_check = hour;
    let mut world = world_with(options, false).await;
    let (path, uid, _) = world.plan(|_| {}).await;
    world.drive(&path, Phase::Ready).await;
    let World {
        _dir,
        registry,
        cloud,
        lifecycle,
        ..
    } = world;
    let supervisor = Supervisor::with_injected_panics(Vec::new());
    let clusters = Informer::load(&registry, &CLUSTER).await.unwrap();
    spawn_cluster_controller(&supervisor, &clusters, Arc::new(lifecycle), 2, hour);
    supervisor.spawn("cluster-informer", move |run| clusters.clone().follow(run));
    let workers = || async {
        let mine = Filter::tagged(TAG_CLUSTER, &uid);
        let all = cloud.sim.describe(REGION, &mine).await.unwrap();
        all.into_iter()
            .filter(|r| r.tags.get(TAG_ROLE).map(String::as_str) == Some(ROLE_WORKER))
            .filter(|r| r.state == dialtone_cloud::ResourceState::Available)
            .map(|r| r.id)
            .collect::<BTreeSet<String>>()
    };
    // The controller's first pass finds the cluster as planned, and waits an hour.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = workers().await;
    let dead = before.first().unwrap().clone();
    cloud.sim.kill_instance(&dead).await.unwrap();
    let mut after = BTreeSet::new();
    for _ in 0..100 {
        after = workers().await;
        if after.len() == before.len() && !after.contains(&dead) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!after.contains(&dead), "{dead} is still counted: {after:?}");
    assert_eq!(
        after.len(),
        before.len(),
        "a replacement runs within 5 s: {before:?} → {after:?}"
    );
    let cluster = registry.get::<Cluster>(&path).await.unwrap();
    assert_eq!(cluster.status.phase, Some(Phase::Ready));
}

/// A settled cluster's watches wake the lifecycle: with health checks and resyncs an hour
/// apart, a burst of pods on a Ready cluster gets workers added within seconds, and one
/// stream of the cluster's one connection carries each watch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_waiting_for_a_node_wake_right_sizing_not_the_next_resync() {
    use dialtone_controllers::runtime::Informer;
    use dialtone_controllers::{Supervisor, spawn_cluster_controller};
    use dialtone_types::cluster::NodeRole;

    let hour = Duration::from_secs(3600);
    let mut options = LifecycleOptions::for_time_scale(0.0);
    options.health_check = hour;
    options.resync = hour;
    let mut world = world_with(options, true).await;
    let (path, uid, _) = world.plan(|_| {}).await;
    let client = world.ready_for_users(&path, &uid).await;
    let endpoint = world
        .kube
        .as_ref()
        .unwrap()
        .connection(&uid)
        .unwrap()
        .endpoint;
    let World {
        _dir,
        registry,
        lifecycle,
        ..
    } = world;
    let lifecycle = Arc::new(lifecycle);
    let supervisor = Supervisor::with_injected_panics(Vec::new());
    let clusters = Informer::load(&registry, &CLUSTER).await.unwrap();
    spawn_cluster_controller(&supervisor, &clusters, lifecycle.clone(), 2, hour);
    supervisor.spawn("cluster-informer", move |run| clusters.clone().follow(run));
    // The controller's first pass finds the cluster settled, follows its changes, and
    // would otherwise wait an hour.
    for _ in 0..100 {
        if lifecycle.followed() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(lifecycle.followed(), 1, "the settled cluster is followed");
    let workers = || async {
        let cluster = registry.get::<Cluster>(&path).await.unwrap();
        let slots = cluster.status.nodes.iter();
        slots.filter(|n| n.role == NodeRole::Worker).count()
    };
    let before = workers().await;
    burst(client).await;
    let mut after = before;
    for _ in 0..100 {
        after = workers().await;
        if after > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        after > before,
        "workers added within 5 s: {before} → {after}"
    );
    // The lifecycle's calls and its three watches share one connection, and this test's
    // client has another.
    let port = endpoint.server.rsplit(':').next().unwrap();
    let port = format!("{:04X}", port.parse::<u16>().unwrap());
    let connected = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|table| {
            let lines: Vec<String> = table.lines().skip(1).map(str::to_string).collect();
            lines
        })
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // The client's end: the remote address is the listener's, established (01).
            fields
                .get(2)
                .is_some_and(|remote| remote.ends_with(&format!(":{port}")))
                && fields.get(3) == Some(&"01")
        })
        .count();
    assert!(
        connected <= 2,
        "{connected} connections to the cluster's API"
    );
}

/// `SecurityCompliant` holds what the cloud reports of each instance and the endpoint to
/// the plan's security decisions: once the plan asks for more than the running nodes were
/// launched with, the condition names each node and what differs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_compliance_names_the_nodes_that_differ_from_the_plan() {
    use dialtone_types::{ClusterCondition, ConditionStatus};
    let mut world = world().await;
    let (path, _, _) = world.plan(|_| {}).await;
    world.drive(&path, Phase::Ready).await;
    let compliance = |cluster: &Object<Cluster, ClusterStatus>| {
        let condition = cluster
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == ClusterCondition::SecurityCompliant.as_str())
            .expect("evaluated")
            .clone();
        (condition.status, condition.message)
    };
    let ready: Object<Cluster, ClusterStatus> = world.registry.get(&path).await.unwrap();
    assert_eq!(
        compliance(&ready).0,
        ConditionStatus::True,
        "{:?}",
        compliance(&ready)
    );

    // The plan now asks for a metadata service one hop further than the nodes have.
    let mut changed = ready.clone();
    let plan = changed.status.plan.as_mut().unwrap();
    plan.settings.security.instance_metadata.hop_limit = 2;
    world.registry.update_status(&path, changed).await.unwrap();
    world.lifecycle.reconcile(&path).await.unwrap();
    let evaluated: Object<Cluster, ClusterStatus> = world.registry.get(&path).await.unwrap();
    let (status, message) = compliance(&evaluated);
    assert_eq!(status, ConditionStatus::False, "{message}");
    let nodes = evaluated.status.nodes.len();
    assert_eq!(
        message
            .matches("hop limit 1, planned IMDSv2 required, hop limit 2")
            .count(),
        nodes,
        "every node is named: {message}"
    );
}

/// `repair.enabled`: off, a worker whose instance died stays dead, and the cluster says
/// repairs are off; on (every type's default), the binary's `compliance` tests and the test
/// above see it replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_repair_off_a_dead_worker_stays_dead_and_the_cluster_says_why() {
    use dialtone_types::cluster::NodeRole;
    use dialtone_types::{ClusterCondition, ConditionStatus, NodeState};
    let mut world = world().await;
    let (path, _, _) = world
        .plan(|i: &mut Inputs| i.settings.repair.enabled = false)
        .await;
    world.drive(&path, Phase::Ready).await;
    let ready: Object<Cluster, ClusterStatus> = world.registry.get(&path).await.unwrap();
    let worker = ready
        .status
        .nodes
        .iter()
        .find(|n| n.role == NodeRole::Worker)
        .unwrap()
        .clone();
    world
        .cloud
        .sim
        .kill_instance(&worker.instance_id)
        .await
        .unwrap();
    world.drive_for(&path, Duration::from_millis(500)).await;
    let after: Object<Cluster, ClusterStatus> = world.registry.get(&path).await.unwrap();
    let slot = after
        .status
        .nodes
        .iter()
        .find(|n| n.name == worker.name)
        .unwrap();
    assert_eq!(
        (slot.attempt, slot.state, slot.instance_id.as_str()),
        (
            worker.attempt,
            NodeState::Terminated,
            worker.instance_id.as_str()
        ),
        "not replaced"
    );
    assert!(
        after.status.repairs.is_empty(),
        "{:?}",
        after.status.repairs
    );
    let remediation = after
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == ClusterCondition::RemediationAllowed.as_str())
        .unwrap();
    assert_eq!(
        (remediation.status, remediation.reason.as_str()),
        (ConditionStatus::False, "RepairDisabled")
    );
}
