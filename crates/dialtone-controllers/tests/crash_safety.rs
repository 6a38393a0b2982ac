//! The lifecycle controller crashes at random points of create and delete, over many seeds,
//! while the cloud times out after calls that succeeded and throttles; after recovery, exactly
//! the planned resources exist: no duplicate, no leak. A failure prints its seed; replay one
//! with `DIALTONE_CRASH_SEED=<seed> cargo test -p dialtone-controllers --test crash_safety`.
//!
//! Two sims, so that each protection against duplicates is needed by one: EC2's (describe
//! lags a create, tokens make creates idempotent), where a lookup can miss and the token
//! must hold; and one that ignores tokens but describes at once, where the lookup must.
//! And the `aws` provider on a moto server, whose `RunInstances` ignores client tokens as
//! the second sim does and whose describe is at once: there, as on that sim, the
//! controller's lookup by tags before each create keeps a repeated launch from a second
//! instance (the provider's own lookup by client-token tag is a second line: with it
//! removed, these seeds still pass). moto injects no faults; the crashes are all there is.
//!
//! The connection controller gets the same treatment: a connection is created, accepted by
//! the customer and deleted while it crashes, and no peering, route or rule may be left.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use dialtone_aws::{AccessKeys, AwsOptions, AwsProvider, MachineImages, TAG_CLIENT_TOKEN};
use dialtone_cloud::{
    Change, CloudError, CloudResource, CloudResult, CreateRequest, Filter, InstanceCatalog,
    PeeringState, Provider, Region, ResourceKind, ResourceSpec, ResourceState,
};
use dialtone_controllers::cluster::{TAG_CLUSTER, TAG_NETWORK, network_key};
use dialtone_controllers::runtime::Reconciler;
use dialtone_controllers::{CONNECTION_FINALIZER, Connections, Lifecycle, LifecycleOptions, Next};
use dialtone_planner::{AddressPlan, ClusterRequest, PlanContext, plan};
use dialtone_sim::{FaultKind, FaultSpec, Sim, SimOptions};
use dialtone_store::registry::Registry;
use dialtone_store::{
    EmbeddedStore, KeyRange, RangeResult, Revision, Store, StoreError, Txn, TxnOutcome, WatchStream,
};
use dialtone_testkit::MotoServer;
use dialtone_types::cluster::ClusterStatus;
use dialtone_types::connection::CONNECTION;
use dialtone_types::kinds::CLUSTER;
use dialtone_types::{
    Cluster, ClusterType, ConditionStatus, Connection, ConnectionStatus, Object, ResourcePath,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Counts the controller's side effects (cloud calls and store writes) and, at the chosen
/// one, "crashes": that call fails (before or after taking effect) and so does everything
/// after it, until the next life.
#[derive(Default)]
struct Crash {
    effects: AtomicUsize,
    at: AtomicUsize,
    after_success: AtomicBool,
    crashed: AtomicBool,
}

impl Crash {
    fn arm(&self, at: usize, after_success: bool) {
        self.effects.store(0, Ordering::SeqCst);
        self.at.store(at, Ordering::SeqCst);
        self.after_success.store(after_success, Ordering::SeqCst);
        self.crashed.store(false, Ordering::SeqCst);
    }

    fn disarm(&self) {
        self.arm(usize::MAX, false);
    }

    /// Whether this effect runs, and whether the process dies with it.
    fn step(&self) -> (bool, bool) {
        if self.crashed.load(Ordering::SeqCst) {
            return (false, true);
        }
        let n = self.effects.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.at.load(Ordering::SeqCst) {
            self.crashed.store(true, Ordering::SeqCst);
            return (self.after_success.load(Ordering::SeqCst), true);
        }
        (true, false)
    }
}

fn died() -> CloudError {
    CloudError::Unavailable {
        message: "the controller died".into(),
    }
}

struct CrashingCloud {
    inner: Arc<dyn Provider>,
    crash: Arc<Crash>,
}

#[async_trait::async_trait]
impl Provider for CrashingCloud {
    fn name(&self) -> &'static str {
        "crashing-sim"
    }
    fn regions(&self) -> &'static [Region] {
        self.inner.regions()
    }
    fn catalog(&self) -> &InstanceCatalog {
        self.inner.catalog()
    }
    async fn create(&self, region: &str, request: CreateRequest) -> CloudResult<CloudResource> {
        let (run, dies) = self.crash.step();
        let result = if run {
            self.inner.create(region, request).await
        } else {
            Err(died())
        };
        if dies { Err(died()) } else { result }
    }
    async fn describe(&self, region: &str, filter: &Filter) -> CloudResult<Vec<CloudResource>> {
        if self.crash.crashed.load(Ordering::SeqCst) {
            return Err(died());
        }
        self.inner.describe(region, filter).await
    }
    async fn delete(&self, region: &str, id: &str) -> CloudResult<()> {
        let (run, dies) = self.crash.step();
        let result = if run {
            self.inner.delete(region, id).await
        } else {
            Err(died())
        };
        if dies { Err(died()) } else { result }
    }
    fn consistency_window(&self) -> std::time::Duration {
        self.inner.consistency_window()
    }
    async fn modify(&self, region: &str, id: &str, change: Change) -> CloudResult<()> {
        let (run, dies) = self.crash.step();
        let result = if run {
            self.inner.modify(region, id, change).await
        } else {
            Err(died())
        };
        if dies { Err(died()) } else { result }
    }
}

struct CrashingStore {
    inner: EmbeddedStore,
    crash: Arc<Crash>,
}

#[async_trait::async_trait]
impl Store for CrashingStore {
    fn backend(&self) -> &'static str {
        "crashing"
    }
    async fn range(
        &self,
        range: &KeyRange,
        at: Option<Revision>,
        limit: usize,
    ) -> dialtone_store::Result<RangeResult> {
        self.inner.range(range, at, limit).await
    }
    async fn txn(&self, txn: Txn) -> dialtone_store::Result<TxnOutcome> {
        let (run, dies) = self.crash.step();
        let result = if run {
            self.inner.txn(txn).await
        } else {
            Err(StoreError::Unavailable("the controller died".into()))
        };
        if dies {
            Err(StoreError::Unavailable("the controller died".into()))
        } else {
            result
        }
    }
    async fn watch(&self, range: KeyRange, from: Revision) -> dialtone_store::Result<WatchStream> {
        self.inner.watch(range, from).await
    }
    async fn compact(&self, revision: Revision) -> dialtone_store::Result<()> {
        self.inner.compact(revision).await
    }
}

/// The cloud under a run, as the test itself reads it.
enum Under {
    Sim(Arc<Sim>),
    Aws {
        provider: Arc<AwsProvider>,
        config: Box<aws_config::SdkConfig>,
        _moto: MotoServer,
    },
}

/// The regions the runs' clusters live in.
const REGIONS: [&str; 2] = ["us-east-1", "us-west-2"];

impl Under {
    /// Every resource Dialtone made, deleted ones included.
    async fn resources(&self) -> Vec<CloudResource> {
        match self {
            Under::Sim(sim) => sim.resources(),
            Under::Aws { provider, .. } => {
                let mut all = Vec::new();
                for region in REGIONS {
                    let found = provider.describe(region, &Filter::default()).await.unwrap();
                    all.extend(
                        found
                            .into_iter()
                            .filter(|r| r.tags.contains_key(TAG_CLIENT_TOKEN)),
                    );
                }
                all
            }
        }
    }

    /// The instance dies on its own, as a failed host.
    async fn kill(&self, instance: &CloudResource) -> Result<(), String> {
        match self {
            Under::Sim(sim) => sim
                .kill_instance(&instance.id)
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            Under::Aws { config, .. } => {
                let ec2 = aws_sdk_ec2::Client::from_conf(
                    aws_sdk_ec2::config::Builder::from(config.as_ref())
                        .region(aws_sdk_ec2::config::Region::new(instance.region.clone()))
                        .build(),
                );
                ec2.terminate_instances()
                    .instance_ids(&instance.id)
                    .send()
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
        }
    }
}

struct World {
    _dir: tempfile::TempDir,
    registry: Registry,
    cloud: Under,
    crash: Arc<Crash>,
    /// The most passes a life makes when no crash ends it: a pass on moto takes
    /// milliseconds where one on the sim takes microseconds.
    passes_per_life: usize,
    lifecycle: Lifecycle,
    clusters: Vec<ResourcePath>,
}

/// How the sim under a run behaves, or the aws provider on moto.
#[derive(Clone, Copy)]
enum Cloud {
    Sim {
        /// Describe may miss a resource this long after its create.
        describe_lag_ms: u64,
        /// Creates are idempotent by client token (EC2), or not (moto).
        honour_client_tokens: bool,
    },
    AwsOnMoto,
}

/// EC2: eventually consistent describe, idempotent creates. A re-launch after a crash is
/// kept from duplicating an instance by reusing the recorded token, since the lookup
/// before it can miss the instance.
const EC2: Cloud = Cloud::Sim {
    describe_lag_ms: 100,
    honour_client_tokens: true,
};

/// A cloud that ignores client tokens but describes at once: the lookup before a launch
/// alone keeps it from duplicating an instance.
const TOKENLESS: Cloud = Cloud::Sim {
    describe_lag_ms: 0,
    honour_client_tokens: false,
};

async fn world(seed: u64, cloud: Cloud) -> World {
    let dir = tempfile::tempdir().unwrap();
    let crash = Arc::new(Crash::default());
    crash.disarm();
    let store = CrashingStore {
        inner: EmbeddedStore::open(&dir.path().join("store.redb")).unwrap(),
        crash: crash.clone(),
    };
    let registry = Registry::new(Arc::new(store), "local", jiff::Timestamp::now);
    let under = match cloud {
        Cloud::Sim {
            describe_lag_ms,
            honour_client_tokens,
        } => {
            let sim = Arc::new(
                Sim::open(
                    &dir.path().join("sim.redb"),
                    SimOptions {
                        time_scale: 0.0,
                        seed,
                        describe_lag: std::time::Duration::from_millis(describe_lag_ms),
                        honour_client_tokens,
                        ..SimOptions::default()
                    },
                )
                .unwrap(),
            );
            let faults = [
                (FaultKind::TimeoutAfterSuccess, 0.25),
                (FaultKind::Throttling, 0.05),
                (FaultKind::BootFailure, 0.1),
            ];
            for (kind, probability) in faults {
                sim.add_fault(FaultSpec {
                    kind,
                    region: None,
                    zone: None,
                    count: None,
                    probability: Some(probability),
                })
                .await
                .unwrap();
            }
            Under::Sim(sim)
        }
        Cloud::AwsOnMoto => {
            let moto = MotoServer::start().unwrap();
            let keys = AccessKeys {
                id: "testing".into(),
                secret: "testing".into(),
            };
            let provider = AwsProvider::new(AwsOptions {
                endpoint_url: Some(moto.endpoint().to_string()),
                // moto does not check an image's architecture.
                images: MachineImages {
                    amd64: "ami-12c6146b".into(),
                    arm64: Some("ami-12c6146b".into()),
                },
                access_keys: Some(keys.clone()),
                secrets_dir: dir.path().join("secrets"),
                token_webhook: None,
            })
            .await;
            Under::Aws {
                provider: Arc::new(provider),
                config: Box::new(
                    dialtone_aws::sdk_config(Some(moto.endpoint()), Some(&keys)).await,
                ),
                _moto: moto,
            }
        }
    };
    let cloud = CrashingCloud {
        inner: match &under {
            Under::Sim(sim) => sim.clone(),
            Under::Aws { provider, .. } => provider.clone(),
        },
        crash: crash.clone(),
    };
    let lifecycle = Lifecycle::new(
        registry.clone(),
        Arc::new(cloud),
        LifecycleOptions::for_time_scale(0.0),
        jiff::Timestamp::now,
    );
    let project = common::acme_project(&registry).await;
    // Two developer clusters sharing a network, and a production cluster.
    let mut address_plan = AddressPlan::default_pool();
    let mut shared = None;
    let mut clusters = Vec::new();
    for (name, cluster_type, region) in [
        ("dev-a", ClusterType::Developer, "us-east-1"),
        ("dev-b", ClusterType::Developer, "us-east-1"),
        ("prod", ClusterType::Production, "us-west-2"),
    ] {
        let request = ClusterRequest {
            name: name.into(),
            cluster_type,
            region: region.into(),
            kubernetes_version: None,
            min_nodes: None,
            max_nodes: None,
            allowed_families: vec![],
            excluded_families: vec![],
            architectures: vec![],
            allow_burstable: false,
            release_channel: None,
            maintenance_window: None,
        };
        let context = PlanContext {
            catalog: InstanceCatalog::builtin(),
            address_plan: &address_plan,
            existing_vpc: if cluster_type == ClusterType::Developer {
                shared
            } else {
                None
            },
            kept_families: None,
        };
        let planned = plan(&request, &context).unwrap();
        if cluster_type == ClusterType::Developer {
            shared = Some(planned.network.vpc_cidr);
        }
        address_plan.allocated.push(planned.network.vpc_cidr);
        let mut object = Object::new(
            name,
            Cluster {
                cluster_type: cluster_type.to_string(),
                region: region.into(),
                kubernetes_version: planned.kubernetes_version.clone(),
                ..Default::default()
            },
        );
        object.status = ClusterStatus {
            observed_generation: 1,
            plan: Some(planned),
            ..Default::default()
        };
        registry.create(Some(&project), object).await.unwrap();
        clusters.push(project.child(&CLUSTER, name));
    }
    World {
        _dir: dir,
        passes_per_life: match under {
            Under::Sim(_) => 200,
            Under::Aws { .. } => 12,
        },
        registry,
        cloud: under,
        crash,
        lifecycle,
        clusters,
    }
}

impl World {
    /// Passes over every cluster until a crash or `passes` are done.
    async fn live(&self, passes: usize) -> Vec<Next> {
        let mut last = vec![Next::After(Default::default()); self.clusters.len()];
        for _ in 0..passes {
            for (i, path) in self.clusters.iter().enumerate() {
                if let Ok(next) = self.lifecycle.reconcile(path).await {
                    last[i] = next;
                }
                if self.crash.crashed.load(Ordering::SeqCst) {
                    return last;
                }
            }
        }
        last
    }

    /// Several lives, each ended by a crash at a random effect, then one without.
    async fn survive(&self, rng: &mut StdRng, lives: usize) {
        for _ in 0..lives {
            self.crash
                .arm(rng.random_range(1..30), rng.random_bool(0.5));
            self.live(self.passes_per_life).await;
        }
        self.crash.disarm();
    }

    async fn converge(&self) -> Result<(), String> {
        for _ in 0..300 {
            let mut settled = true;
            for path in &self.clusters {
                match self.registry.get::<Cluster>(path).await {
                    Ok(cluster) if cluster.status.phase == Some(dialtone_types::Phase::Ready) => {}
                    Err(_) => {}
                    Ok(_) => settled = false,
                }
            }
            if settled {
                return Ok(());
            }
            self.live(1).await;
        }
        let mut unsettled = Vec::new();
        for path in &self.clusters {
            if let Ok(cluster) = self.registry.get::<Cluster>(path).await
                && cluster.status.phase != Some(dialtone_types::Phase::Ready)
            {
                let ready = dialtone_types::ClusterCondition::Ready.as_str();
                let why = cluster.status.conditions.iter().find(|c| c.type_ == ready);
                unsettled.push(format!(
                    "{path}: {:?} {}",
                    cluster.status.phase,
                    why.map_or(String::new(), |c| format!("{}: {}", c.reason, c.message))
                ));
            }
        }
        Err(format!(
            "the clusters did not settle in 300 passes: {}",
            unsettled.join("; ")
        ))
    }
}

fn count_by<'a>(
    resources: impl Iterator<Item = &'a CloudResource>,
    key: impl Fn(&CloudResource) -> String,
) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for r in resources {
        *counts.entry(key(r)).or_default() += 1;
    }
    counts
}

/// Exactly the planned resources exist: per cluster one instance per slot, one endpoint,
/// one security group; per network one VPC, and a subnet and route table per zone in use.
async fn exactly_planned(world: &World) -> Result<(), String> {
    let live: Vec<CloudResource> = world
        .cloud
        .resources()
        .await
        .into_iter()
        .filter(|r| {
            !matches!(
                r.state,
                ResourceState::Deleting | ResourceState::Terminated { .. }
            )
        })
        .collect();
    let mut expected_total = 0;
    let mut networks = BTreeMap::new();
    for path in &world.clusters {
        let cluster: Object<Cluster, ClusterStatus> =
            world.registry.get(path).await.map_err(|e| e.to_string())?;
        let plan = cluster.status.plan.clone().unwrap();
        let uid = &cluster.metadata.uid;
        let own: Vec<&CloudResource> = live
            .iter()
            .filter(|r| r.tags.get(TAG_CLUSTER) == Some(uid))
            .collect();
        let slots = plan.control_plane.nodes.len() + plan.workers.min_nodes as usize;
        let by_part = count_by(own.iter().copied(), |r| {
            format!("{:?}/{}", r.spec.kind(), r.tags["dialtone.dev/part"])
        });
        if let Some((part, n)) = by_part.iter().find(|(_, n)| **n != 1) {
            return Err(format!("{path}: {n} resources for {part}: {by_part:?}"));
        }
        let instances = own
            .iter()
            .filter(|r| r.spec.kind() == ResourceKind::Instance)
            .count();
        if instances != slots || own.len() != slots + 2 {
            return Err(format!(
                "{path}: {instances} instances for {slots} slots, {} resources in all: {by_part:?}",
                own.len()
            ));
        }
        expected_total += own.len();
        let zones = networks
            .entry(network_key(path, uid, &plan))
            .or_insert_with(std::collections::BTreeSet::new);
        zones.extend(plan.network.subnets.iter().map(|s| s.zone.clone()));
    }
    for (network, zones) in &networks {
        let parts: Vec<&CloudResource> = live
            .iter()
            .filter(|r| r.tags.get(TAG_NETWORK) == Some(network))
            .collect();
        let by_part = count_by(parts.iter().copied(), |r| {
            r.tags["dialtone.dev/part"].clone()
        });
        let expected = 1 + 2 * zones.len();
        if parts.len() != expected || by_part.values().any(|n| *n != 1) {
            return Err(format!(
                "network {network}: {} resources, expected {expected}: {by_part:?}",
                parts.len()
            ));
        }
        expected_total += expected;
    }
    if live.len() != expected_total {
        return Err(format!(
            "{} resources exist, {expected_total} planned: strays {:?}",
            live.len(),
            live.iter()
                .filter(|r| !r.tags.contains_key(TAG_CLUSTER) && !r.tags.contains_key(TAG_NETWORK))
                .map(|r| &r.id)
                .collect::<Vec<_>>()
        ));
    }
    Ok(())
}

async fn run_seed(seed: u64, cloud: Cloud) -> Result<(), String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let world = world(seed, cloud).await;
    // Create, dying again and again on the way.
    world.survive(&mut rng, 6).await;
    world.converge().await?;
    exactly_planned(&world)
        .await
        .map_err(|e| format!("after create: {e}"))?;

    // An instance dies; the repair crashes too.
    let victim = world
        .cloud
        .resources()
        .await
        .into_iter()
        .find(|r| r.spec.kind() == ResourceKind::Instance && r.state == ResourceState::Available)
        .ok_or("no running instance")?;
    world.cloud.kill(&victim).await?;
    world.survive(&mut rng, 3).await;
    world.converge().await?;
    exactly_planned(&world)
        .await
        .map_err(|e| format!("after repair: {e}"))?;

    // Delete everything, dying on the way.
    for path in &world.clusters {
        world
            .registry
            .delete(path, false)
            .await
            .map_err(|e| e.to_string())?;
    }
    world.survive(&mut rng, 6).await;
    for _ in 0..300 {
        world.live(1).await;
        let mut left = 0;
        for path in &world.clusters {
            left += world
                .registry
                .exists(path)
                .await
                .map_err(|e| e.to_string())? as usize;
        }
        if left == 0 {
            break;
        }
    }
    for path in &world.clusters {
        if world
            .registry
            .exists(path)
            .await
            .map_err(|e| e.to_string())?
        {
            return Err(format!("{path} was never deleted"));
        }
    }
    let leaked: Vec<String> = world
        .cloud
        .resources()
        .await
        .into_iter()
        .filter(|r| r.state != ResourceState::Deleting)
        .map(|r| format!("{} {}", r.spec.kind(), r.id))
        .collect();
    if !leaked.is_empty() {
        return Err(format!("leaked after delete: {leaked:?}"));
    }
    Ok(())
}

async fn run_seeds(cloud: Cloud, count: u64) {
    run_seeds_of(run_seed, cloud, count).await;
}

async fn run_connection_seeds(cloud: Cloud, count: u64) {
    run_seeds_of(run_connection_seed, cloud, count).await;
}

/// `run` over `count` seeds, or the one `DIALTONE_CRASH_SEED` names; fails naming the
/// seeds that failed.
async fn run_seeds_of<Run, Ran>(run: Run, cloud: Cloud, count: u64)
where
    Run: Fn(u64, Cloud) -> Ran,
    Ran: std::future::Future<Output = Result<(), String>>,
{
    let seeds: Vec<u64> = match std::env::var("DIALTONE_CRASH_SEED") {
        Ok(seed) => vec![seed.parse().expect("DIALTONE_CRASH_SEED is a number")],
        Err(_) => (0..count).collect(),
    };
    let mut failures = Vec::new();
    for seed in seeds {
        if let Err(e) = run(seed, cloud).await {
            eprintln!("seed {seed} FAILED: {e}");
            failures.push(seed);
        }
    }
    assert!(
        failures.is_empty(),
        "failing seeds {failures:?}; replay one with DIALTONE_CRASH_SEED=<seed>"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_anywhere_leave_exactly_the_planned_resources() {
    run_seeds(EC2, 40).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_leave_exactly_the_planned_resources_on_a_cloud_that_ignores_tokens() {
    run_seeds(TOKENLESS, 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_leave_exactly_the_planned_resources_on_aws() {
    run_seeds(Cloud::AwsOnMoto, 3).await;
}

/// The customer's side of a peering, for the connection seeds.
struct Customer {
    account: String,
    vpc: String,
}

/// The account that owns the customer's VPC on moto.
const MOTO_CUSTOMER: &str = "111122223333";

/// The range of the customer's VPC.
const PEER_CIDR: &str = "192.168.0.0/16";

impl Under {
    fn customer_ec2(config: &aws_config::SdkConfig, region: &str) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::from_conf(
            aws_sdk_ec2::config::Builder::from(config)
                .region(aws_sdk_ec2::config::Region::new(region.to_string()))
                .build(),
        )
    }

    async fn customer(&self, region: &str) -> Customer {
        match self {
            Under::Sim(sim) => {
                let account = sim.create_account().await.unwrap().id;
                let vpc = sim
                    .create_customer_vpc(&account, region, PEER_CIDR.parse().unwrap())
                    .await
                    .unwrap()
                    .id;
                Customer { account, vpc }
            }
            Under::Aws { config, .. } => {
                let vpc = Self::customer_ec2(config, region)
                    .create_vpc()
                    .cidr_block(PEER_CIDR)
                    .customize()
                    .mutate_request(|r| {
                        r.headers_mut().insert("x-moto-account-id", MOTO_CUSTOMER);
                    })
                    .send()
                    .await
                    .unwrap();
                Customer {
                    account: MOTO_CUSTOMER.into(),
                    vpc: vpc.vpc().unwrap().vpc_id().unwrap().into(),
                }
            }
        }
    }

    /// The customer accepts every request pending its answer.
    async fn accept_pending(&self, customer: &Customer, region: &str) {
        let pending: Vec<String> = self
            .resources()
            .await
            .into_iter()
            .filter(|r| {
                r.peering
                    .as_ref()
                    .is_some_and(|p| p.state == PeeringState::PendingAcceptance)
            })
            .map(|r| r.id)
            .collect();
        for id in pending {
            match self {
                Under::Sim(sim) => {
                    sim.answer_peering(&customer.account, &id, true)
                        .await
                        .unwrap();
                }
                Under::Aws { config, .. } => {
                    Self::customer_ec2(config, region)
                        .accept_vpc_peering_connection()
                        .vpc_peering_connection_id(&id)
                        .customize()
                        .mutate_request(|r| {
                            r.headers_mut().insert("x-moto-account-id", MOTO_CUSTOMER);
                        })
                        .send()
                        .await
                        .unwrap();
                }
            }
        }
    }
}

/// What the cloud holds for the connection: its peerings still in force, the routes to
/// the peer, and the node rules from the peer.
async fn peered(world: &World) -> (Vec<String>, Vec<String>, Vec<String>) {
    let peer: ipnet::Ipv4Net = PEER_CIDR.parse().unwrap();
    let mut peerings = Vec::new();
    let mut routes = Vec::new();
    let mut rules = Vec::new();
    for r in world.cloud.resources().await {
        match &r.spec {
            ResourceSpec::VpcPeering { .. }
                if r.peering.as_ref().is_some_and(|p| !p.state.is_final())
                    && r.state != ResourceState::Deleting =>
            {
                peerings.push(r.id.clone())
            }
            ResourceSpec::RouteTable { routes: table, .. } => routes.extend(
                table
                    .iter()
                    .map(|route| format!("{} {} {}", r.id, route.destination, route.target)),
            ),
            ResourceSpec::SecurityGroup { ingress, .. } => rules.extend(
                ingress
                    .iter()
                    .filter(|rule| peer.contains(&rule.source))
                    .map(|rule| format!("{} {:?}", r.id, rule)),
            ),
            _ => {}
        }
    }
    (peerings, routes, rules)
}

/// A connection is created, accepted and deleted while its controller dies at random
/// points and the cloud times out after changes that took effect: one peering, one route
/// per route table and one rule while it is active; nothing once it is gone.
async fn run_connection_seed(seed: u64, cloud: Cloud) -> Result<(), String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let world = world(seed, cloud).await;
    world.converge().await?;
    let prod = world.clusters[2].clone();
    let region = "us-west-2";
    let customer = world.cloud.customer(region).await;
    let mut object = Object::new(
        "db",
        Connection {
            peer_account: customer.account.clone(),
            peer_vpc: customer.vpc.clone(),
            peer_region: region.into(),
            peer_cidrs: vec![PEER_CIDR.into()],
            allow_ports: vec![30080],
            allow_all: false,
        },
    );
    object
        .metadata
        .finalizers
        .push(CONNECTION_FINALIZER.to_string());
    world
        .registry
        .create(Some(&prod), object)
        .await
        .map_err(|e| e.to_string())?;
    let path = prod.child(&CONNECTION, "db");
    let connections = Connections {
        registry: world.registry.clone(),
        provider: Arc::new(CrashingCloud {
            inner: match &world.cloud {
                Under::Sim(sim) => sim.clone(),
                Under::Aws { provider, .. } => provider.clone(),
            },
            crash: world.crash.clone(),
        }),
        clock: jiff::Timestamp::now,
        poll: std::time::Duration::ZERO,
    };
    let live = |passes: usize| {
        let (connections, path, crash) = (&connections, &path, &world.crash);
        async move {
            for _ in 0..passes {
                let _ = Reconciler::reconcile(connections, path).await;
                if crash.crashed.load(Ordering::SeqCst) {
                    return;
                }
            }
        }
    };
    // Requested and accepted, dying on the way.
    for life in 0..6 {
        world
            .crash
            .arm(rng.random_range(1..12), rng.random_bool(0.5));
        live(world.passes_per_life / 10).await;
        if life >= 2 {
            world.cloud.accept_pending(&customer, region).await;
        }
    }
    world.crash.disarm();
    let settle = std::time::Instant::now();
    while settle.elapsed() < std::time::Duration::from_secs(30) {
        // The customer accepts whatever it is asked, whenever it is asked: a request the
        // last crash kept from being made is made now.
        world.cloud.accept_pending(&customer, region).await;
        live(1).await;
        let connection: Object<Connection, ConnectionStatus> =
            world.registry.get(&path).await.map_err(|e| e.to_string())?;
        let ready = connection
            .status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == ConditionStatus::True);
        if ready {
            break;
        }
    }
    let (peerings, routes, rules) = peered(&world).await;
    let tables = world
        .cloud
        .resources()
        .await
        .iter()
        .filter(|r| {
            r.spec.kind() == ResourceKind::RouteTable
                && r.tags.get(TAG_NETWORK).is_some_and(|n| !n.contains('@'))
        })
        .count();
    if peerings.len() != 1 || routes.len() != tables || rules.len() != 1 {
        return Err(format!(
            "active: {} peering(s) {peerings:?}, {} route(s) for {tables} tables {routes:?}, rules {rules:?}",
            peerings.len(),
            routes.len()
        ));
    }

    // Deleted, dying on the way.
    world
        .registry
        .delete(&path, false)
        .await
        .map_err(|e| e.to_string())?;
    for _ in 0..4 {
        world
            .crash
            .arm(rng.random_range(1..12), rng.random_bool(0.5));
        live(world.passes_per_life / 10).await;
    }
    world.crash.disarm();
    let settle = std::time::Instant::now();
    while settle.elapsed() < std::time::Duration::from_secs(30) {
        if !world
            .registry
            .exists(&path)
            .await
            .map_err(|e| e.to_string())?
        {
            break;
        }
        live(1).await;
    }
    if world
        .registry
        .exists(&path)
        .await
        .map_err(|e| e.to_string())?
    {
        return Err("the connection was never deleted".into());
    }
    let left = peered(&world).await;
    if left != (vec![], vec![], vec![]) {
        return Err(format!("left after delete: {left:?}"));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_survive_crashes_without_a_leaked_peering_route_or_rule() {
    run_connection_seeds(EC2, 20).await;
    run_connection_seeds(TOKENLESS, 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_survive_crashes_on_aws() {
    run_connection_seeds(Cloud::AwsOnMoto, 2).await;
}
