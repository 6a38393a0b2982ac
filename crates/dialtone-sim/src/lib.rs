//! `sim`, the built-in cloud. It has the regions us-east-1, us-west-2 and eu-west-1 with
//! their zones, the real EC2 instance catalogue, latencies that look like a cloud's (or none,
//! in fast mode), quotas, and failure injection: boot failures, instance deaths, zone
//! outages, throttling and timeouts after a call succeeded. Its state is a redb file, so it
//! outlives restarts exactly as a cloud outlives its clients.
//!
//! Readiness is a function of time: a resource records when it becomes available, and every
//! call observes the state at that moment. Its event feed (`Provider::subscribe`) tells of
//! each change as a call makes it; those that come with time are told by [`Sim::run_clock`],
//! the one task that runs in the background, when they are due.

mod customers;
mod faults;
mod persist;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use dialtone_cloud::{
    Change, ChangeHandler, CloudError, CloudResource, CloudResult, CreateRequest, Filter,
    InstanceCatalog, InstanceLifetime, LIFETIME_RETENTION_DAYS, Provider, REGIONS, Region,
    ResourceChange, ResourceKind, ResourceSpec, ResourceState,
};
use jiff::{SignedDuration, Timestamp};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use customers::peering_state;
pub use customers::{Account, OWN_ACCOUNT};
pub use faults::{Fault, FaultKind, FaultSpec, InstanceFault};
use persist::{Persister, Table, Write};

/// How the sim behaves in time.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Multiplies every latency: 1 looks like a real cloud, 0 is fast mode (everything is
    /// ready at once), 0.1 is ten times faster than a cloud.
    pub time_scale: f64,
    /// Seeds the draws of probabilistic faults, for replayable runs.
    pub seed: u64,
    /// How long, at most, describe may miss a resource after its create succeeded: each
    /// resource draws its lag (seeded) up to this, as EC2's eventual consistency lets
    /// DescribeInstances miss an instance RunInstances just returned. Real time, whatever
    /// the time scale.
    pub describe_lag: std::time::Duration,
    /// Whether a create's client token makes it idempotent, as in EC2; off, every create
    /// makes a new resource, as moto's does.
    pub honour_client_tokens: bool,
    /// How long a peering request waits for its accepter before it expires (AWS: 7 days).
    /// Real time, whatever the time scale.
    pub peering_expiry: std::time::Duration,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            time_scale: 1.0,
            seed: 0,
            describe_lag: std::time::Duration::ZERO,
            honour_client_tokens: true,
            peering_expiry: std::time::Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// How long things take in a real cloud, before [`SimOptions::time_scale`]: roughly what
/// EC2 and ELB take in us-east-1.
mod latency {
    pub const CALL_MS: u64 = 60;
    /// How long a peering request is `initiating-request`, and an accepted one
    /// `provisioning`.
    pub const PEERING_STEP_MS: u64 = 2_000;
    pub fn ready_ms(kind: super::ResourceKind) -> u64 {
        use super::ResourceKind::*;
        match kind {
            Vpc => 2_000,
            Subnet | RouteTable | SecurityGroup => 1_000,
            VpcPeering => PEERING_STEP_MS,
            Instance => 30_000,
            LoadBalancer | ServiceLoadBalancer => 45_000,
        }
    }
    pub fn delete_ms(kind: super::ResourceKind) -> u64 {
        use super::ResourceKind::*;
        match kind {
            Instance => 20_000,
            LoadBalancer | ServiceLoadBalancer => 15_000,
            _ => 0,
        }
    }
}

/// Per-region limits, like a cloud account's service quotas.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Quotas {
    /// vCPUs of running and pending instances.
    pub vcpus: u64,
    pub vpcs: u64,
    pub load_balancers: u64,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            vcpus: 100_000,
            vpcs: 1_000,
            load_balancers: 5_000,
        }
    }
}

/// A resource and what decides its state over time.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    resource: CloudResource,
    client_token: String,
    ready_at: Timestamp,
    /// Set when it was asked to go; it is gone at this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gone_at: Option<Timestamp>,
    /// Why an instance will fail to boot, decided at launch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    boot_failure: Option<String>,
    /// Why an instance died after it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    died: Option<String>,
    /// Why a running instance stopped answering (its status checks fail, its kubelet
    /// posts nothing), until it recovers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hung: Option<String>,
    /// Until when describe does not show it yet (eventual consistency).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    listed_from: Option<Timestamp>,
    /// The account that owns it, when it is not the provider's own: a customer's VPC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    account: Option<String>,
    /// The spec it was created with, once a change has made it differ, so that a create
    /// repeated with the same token still names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    requested: Option<ResourceSpec>,
    /// The tags it was created with, once a change has made them differ, for the same
    /// reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    requested_tags: Option<dialtone_cloud::Tags>,
    /// A peering's answer and deadlines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    peering: Option<Peering>,
    /// An instance's bootstrap, kept as EC2 keeps user data: not described, but readable by
    /// what runs on the instance (`Sim::user_data`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_data: Option<dialtone_cloud::NodeBootstrap>,
}

/// What decides a peering's state besides its record's times.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Peering {
    /// When it expires unless accepted.
    expires_at: Timestamp,
    /// Why the cloud could not make it: no such peer VPC, overlapping ranges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    failure: Option<String>,
    /// The accepter VPC's range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    peer_cidr: Option<ipnet::Ipv4Net>,
    /// Whether the accepter accepted, and when the answer takes effect: at once for a
    /// rejection, once provisioned for an acceptance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    answer: Option<(Timestamp, bool)>,
}

#[derive(Default, Serialize, Deserialize)]
struct Counters {
    next_resource: u64,
    next_fault: u64,
}

/// The live resources of a region that quotas limit.
#[derive(Default)]
struct Usage {
    vpcs: u64,
    load_balancers: u64,
    /// Instance type → live instances of it.
    instances: HashMap<String, u64>,
}

impl Record {
    /// Whether it still counts against quotas: not deleted, not dead, not failed to boot.
    fn is_live(&self) -> bool {
        self.gone_at.is_none() && self.died.is_none() && self.boot_failure.is_none()
    }

    /// The account that owns it.
    fn owner(&self) -> &str {
        self.account.as_deref().unwrap_or(OWN_ACCOUNT)
    }
}

struct State {
    records: BTreeMap<String, Record>,
    /// `(region, client token)` → resource id.
    tokens: HashMap<(String, String), String>,
    /// `(tag key, tag value)` → ids: describing a cluster's resources reads only them, not
    /// the whole fleet's.
    tagged: HashMap<(String, String), BTreeSet<String>>,
    /// What counts against each region's quotas, kept as records come and go so that a
    /// create does not recount the fleet.
    usage: HashMap<String, Usage>,
    faults: Vec<Fault>,
    quotas: BTreeMap<String, Quotas>,
    counters: Counters,
    /// Customers' accounts, which own VPCs to peer with and answer peering requests.
    accounts: BTreeSet<String>,
    rng: StdRng,
    /// When a resource changes by itself (becomes available or listed, finishes going):
    /// `(at, id)`, so that the feed tells of it then.
    timeline: BTreeSet<(Timestamp, String)>,
    /// When deleted resources are gone: `(gone_at, id)`, so that forgetting them reads
    /// only those due.
    going: BTreeSet<(Timestamp, String)>,
    /// Instances' lifetimes by id: every instance's that runs or will, and ended ones
    /// until they are [`LIFETIME_RETENTION_DAYS`] old.
    lifetimes: BTreeMap<String, InstanceLifetime>,
    /// When kept lifetimes ended: `(ended_at, id)`, so that dropping old ones reads only
    /// those due.
    ended: BTreeSet<(Timestamp, String)>,
    feed: Arc<Feed>,
}

/// Those told of every change to a resource (`Provider::subscribe`).
#[derive(Default)]
struct Feed {
    handlers: RwLock<Vec<ChangeHandler>>,
    /// Woken when the timeline gains an earlier entry than the clock sleeps until.
    timeline_changed: tokio::sync::Notify,
}

impl Feed {
    fn tell(&self, resource: &CloudResource) {
        let handlers = self.handlers.read().unwrap_or_else(|e| e.into_inner());
        if handlers.is_empty() {
            return;
        }
        let change = ResourceChange {
            region: resource.region.clone(),
            id: resource.id.clone(),
            tags: resource.tags.clone(),
        };
        for handler in handlers.iter() {
            handler(&change);
        }
    }
}

/// The simulated cloud. Cheap to share behind an `Arc`.
pub struct Sim {
    state: Mutex<State>,
    persister: Persister,
    options: SimOptions,
    /// The clusters that have stored objects, so that finding a gone one costs no scan.
    object_clusters: Mutex<std::collections::BTreeSet<String>>,
    /// The state's feed, reached without the state's lock.
    feed: Arc<Feed>,
}

type Durable = tokio::sync::oneshot::Receiver<Result<(), String>>;

#[derive(Debug, thiserror::Error)]
#[error("the sim's state file: {0}")]
pub struct SimError(String);

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("sim state always serializes")
}

fn id_prefix(kind: ResourceKind) -> &'static str {
    match kind {
        ResourceKind::Vpc => "vpc",
        ResourceKind::Subnet => "subnet",
        ResourceKind::RouteTable => "rtb",
        ResourceKind::SecurityGroup => "sg",
        ResourceKind::LoadBalancer | ResourceKind::ServiceLoadBalancer => "lb",
        ResourceKind::Instance => "i",
        ResourceKind::VpcPeering => "pcx",
    }
}

fn after(now: Timestamp, ms: u64, scale: f64) -> Timestamp {
    let scaled = (ms as f64 * scale).round() as i64;
    now.checked_add(SignedDuration::from_millis(scaled))
        .unwrap_or(now)
}

impl State {
    /// Keeps quota usage true as a record comes, changes or goes. A customer's resources
    /// count against the customer's account, which has no quotas here.
    fn account(&mut self, record_id: &str, live_before: bool) {
        let record = &self.records[record_id];
        if record.account.is_some() {
            return;
        }
        let delta: i64 = match (live_before, record.is_live()) {
            (false, true) => 1,
            (true, false) => -1,
            _ => return,
        };
        let usage = self
            .usage
            .entry(record.resource.region.clone())
            .or_default();
        let counter = match &record.resource.spec {
            ResourceSpec::Vpc { .. } => &mut usage.vpcs,
            ResourceSpec::LoadBalancer { .. } | ResourceSpec::ServiceLoadBalancer { .. } => {
                &mut usage.load_balancers
            }
            ResourceSpec::Instance { instance_type, .. } => {
                usage.instances.entry(instance_type.clone()).or_default()
            }
            _ => return,
        };
        *counter = counter.saturating_add_signed(delta);
    }

    /// Changes a record, keeping quota usage true.
    fn modify(&mut self, id: &str, change: impl FnOnce(&mut Record)) -> Option<&Record> {
        let record = self.records.get_mut(id)?;
        let live_before = record.is_live();
        change(record);
        self.account(id, live_before);
        let record = &self.records[id];
        if let Some(gone_at) = record.gone_at {
            self.going.insert((gone_at, id.to_string()));
            self.schedule(gone_at, id);
        }
        let record = &self.records[id];
        self.feed.tell(&record.resource);
        Some(record)
    }

    /// Tells the feed of `id` again at `at`.
    fn schedule(&mut self, at: Timestamp, id: &str) {
        let earliest = self.timeline.first().is_none_or(|(first, _)| at < *first);
        self.timeline.insert((at, id.to_string()));
        if earliest {
            self.feed.timeline_changed.notify_one();
        }
    }

    /// Tells the feed of every change due by `now`; when the next one is due.
    fn tell_due(&mut self, now: Timestamp) -> Option<Timestamp> {
        while let Some((at, id)) = self.timeline.first().cloned() {
            if at > now {
                return Some(at);
            }
            self.timeline.pop_first();
            if let Some(record) = self.records.get(&id) {
                self.feed.tell(&record.resource);
            }
        }
        None
    }

    fn insert(&mut self, record: Record) {
        let id = record.resource.id.clone();
        self.tokens.insert(
            (record.resource.region.clone(), record.client_token.clone()),
            id.clone(),
        );
        for (key, value) in &record.resource.tags {
            self.tagged
                .entry((key.clone(), value.clone()))
                .or_default()
                .insert(id.clone());
        }
        let (ready_at, listed_from, gone_at) =
            (record.ready_at, record.listed_from, record.gone_at);
        self.feed.tell(&record.resource);
        self.records.insert(id.clone(), record);
        self.account(&id, false);
        self.schedule(ready_at, &id);
        if let Some(listed_from) = listed_from {
            self.schedule(listed_from, &id);
        }
        if let Some(expires_at) = self.records[&id].peering.as_ref().map(|p| p.expires_at) {
            self.schedule(expires_at, &id);
        }
        if let Some(gone_at) = gone_at {
            self.going.insert((gone_at, id.clone()));
            self.schedule(gone_at, &id);
        }
    }

    fn forget(&mut self, id: &str) -> Option<Record> {
        self.modify(id, |record| {
            record.gone_at.get_or_insert(Timestamp::UNIX_EPOCH);
        });
        let record = self.records.remove(id)?;
        self.tokens
            .remove(&(record.resource.region.clone(), record.client_token.clone()));
        for tag in &record.resource.tags {
            let key = (tag.0.clone(), tag.1.clone());
            if let Some(ids) = self.tagged.get_mut(&key) {
                ids.remove(id);
                if ids.is_empty() {
                    self.tagged.remove(&key);
                }
            }
        }
        Some(record)
    }

    /// The records that may match `filter`: those carrying its rarest tag, or all.
    fn candidates<'a>(&'a self, filter: &Filter) -> Box<dyn Iterator<Item = &'a Record> + 'a> {
        let narrowest = filter
            .tags
            .iter()
            .map(|(k, v)| self.tagged.get(&(k.clone(), v.clone())))
            .min_by_key(|ids| ids.map_or(0, |ids| ids.len()));
        match narrowest {
            None => Box::new(self.records.values()),
            Some(None) => Box::new(std::iter::empty()),
            Some(Some(ids)) => Box::new(ids.iter().filter_map(|id| self.records.get(id))),
        }
    }

    fn down_zones(&self, region: &str) -> Vec<&str> {
        self.faults
            .iter()
            .filter(|f| {
                f.spec.kind == FaultKind::ZoneOutage
                    && f.spec.region.as_deref().is_none_or(|r| r == region)
            })
            .filter_map(|f| f.spec.zone.as_deref())
            .collect()
    }

    /// The resource as a caller sees it now; `None` once it is gone.
    fn observe(&self, record: &Record, now: Timestamp) -> Option<CloudResource> {
        let mut resource = record.resource.clone();
        if let Some(peering) = &record.peering {
            if record.gone_at.is_some_and(|gone_at| gone_at <= now) {
                return None;
            }
            let (state, status) = peering_state(record, peering, now);
            resource.state = state;
            resource.peering = Some(status);
            return Some(resource);
        }
        resource.state = match (&record.gone_at, &record.died) {
            (Some(gone_at), _) if *gone_at <= now => return None,
            (Some(_), _) => ResourceState::Deleting,
            (None, Some(reason)) => ResourceState::Terminated {
                reason: reason.clone(),
            },
            (None, None) if now < record.ready_at => ResourceState::Pending,
            (None, None) => match (&record.boot_failure, zone_of(&resource.spec)) {
                (Some(reason), _) => ResourceState::Terminated {
                    reason: reason.clone(),
                },
                (None, Some(zone)) if self.down_zones(&resource.region).contains(&zone) => {
                    ResourceState::Impaired {
                        reason: format!("zone {zone} is down"),
                    }
                }
                _ => match &record.hung {
                    Some(reason) => ResourceState::Impaired {
                        reason: reason.clone(),
                    },
                    None => ResourceState::Available,
                },
            },
        };
        Some(resource)
    }

    /// Records that the instance `id` stopped running at `at`, if it had not already.
    fn end_lifetime(&mut self, id: &str, at: Timestamp, writes: &mut Vec<Write>) {
        let Some(lifetime) = self.lifetimes.get_mut(id) else {
            return;
        };
        if lifetime.ended_at.is_some() {
            return;
        }
        lifetime.ended_at = Some(at);
        self.ended.insert((at, id.to_string()));
        writes.push(Write {
            table: Table::Lifetimes,
            key: id.to_string(),
            value: Some(json(&*lifetime)),
        });
    }

    /// Forgets resources whose deletion has finished, and lifetimes past their retention.
    fn purge(&mut self, now: Timestamp, writes: &mut Vec<Write>) {
        let kept_from = now - jiff::SignedDuration::from_hours(LIFETIME_RETENTION_DAYS * 24);
        while let Some((at, id)) = self.ended.first().cloned() {
            if at >= kept_from {
                break;
            }
            self.ended.pop_first();
            self.lifetimes.remove(&id);
            writes.push(Write {
                table: Table::Lifetimes,
                key: id,
                value: None,
            });
        }
        while let Some((at, id)) = self.going.first().cloned() {
            if at > now {
                break;
            }
            self.going.pop_first();
            if self.forget(&id).is_none() {
                continue;
            }
            writes.push(Write {
                table: Table::Resources,
                key: id,
                value: None,
            });
        }
    }

    fn check_quota(
        &self,
        region: &str,
        spec: &ResourceSpec,
        catalog: &InstanceCatalog,
    ) -> CloudResult<()> {
        let quotas = self.quotas.get(region).cloned().unwrap_or_default();
        let empty = Usage::default();
        let usage = self.usage.get(region).unwrap_or(&empty);
        let exceeded = |what: &str, limit: u64| {
            Err(CloudError::QuotaExceeded {
                message: format!("{region} allows {limit} {what}; raise the quota or free some"),
            })
        };
        match spec {
            ResourceSpec::Vpc { .. } if usage.vpcs >= quotas.vpcs => exceeded("VPCs", quotas.vpcs),
            ResourceSpec::LoadBalancer { .. } | ResourceSpec::ServiceLoadBalancer { .. }
                if usage.load_balancers >= quotas.load_balancers =>
            {
                exceeded("load balancers", quotas.load_balancers)
            }
            ResourceSpec::Instance { instance_type, .. } => {
                let vcpus_of = |name: &str| catalog.get(name).map_or(0, |t| t.vcpus as u64);
                let used: u64 = usage
                    .instances
                    .iter()
                    .map(|(name, count)| vcpus_of(name) * count)
                    .sum();
                if used + vcpus_of(instance_type) > quotas.vcpus {
                    exceeded("vCPUs", quotas.vcpus)
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }
}

fn zone_of(spec: &ResourceSpec) -> Option<&str> {
    match spec {
        ResourceSpec::Instance { zone, .. } | ResourceSpec::Subnet { zone, .. } => Some(zone),
        _ => None,
    }
}

fn invalid(message: String) -> CloudError {
    CloudError::Invalid { message }
}

/// A load balancer listens on each port once, as ELB requires (`DuplicateListener`).
fn check_listeners(listeners: &[dialtone_cloud::Listener]) -> CloudResult<()> {
    let mut ports = BTreeSet::new();
    for listener in listeners {
        if listener.port == 0 || listener.node_port == 0 {
            return Err(invalid(format!(
                "ValidationError: a listener needs a port and a node port, not {listener:?}"
            )));
        }
        if !ports.insert(listener.port) {
            return Err(invalid(format!(
                "DuplicateListener: port {} is listened on twice",
                listener.port
            )));
        }
    }
    Ok(())
}

/// Checks a create request against the region and the catalogue.
fn check_spec(region: &Region, spec: &ResourceSpec, catalog: &InstanceCatalog) -> CloudResult<()> {
    let zones = region.zones();
    if let Some(zone) = zone_of(spec)
        && !zones.iter().any(|z| z == zone)
    {
        return Err(invalid(format!(
            "zone `{zone}` is not in {}; its zones: {}",
            region.name,
            zones.join(", ")
        )));
    }
    if let ResourceSpec::ServiceLoadBalancer { listeners, .. } = spec {
        check_listeners(listeners)?;
    }
    if let ResourceSpec::Instance {
        instance_type,
        zone,
        ..
    } = spec
    {
        let Some(offered) = catalog.get(instance_type) else {
            return Err(invalid(format!("unknown instance type `{instance_type}`")));
        };
        let suffix = zone.chars().last().unwrap_or(' ');
        if !offered.zone_suffixes.contains(&suffix) {
            return Err(CloudError::InsufficientCapacity {
                zone: zone.clone(),
                instance_type: instance_type.clone(),
            });
        }
    }
    Ok(())
}

impl Sim {
    /// Opens (or creates) the sim whose state is the file `path`.
    pub fn open(path: &Path, options: SimOptions) -> Result<Sim, SimError> {
        let (persister, loaded) = Persister::open(path).map_err(SimError)?;
        let feed = Arc::<Feed>::default();
        let mut state = State {
            records: BTreeMap::new(),
            tokens: HashMap::new(),
            tagged: HashMap::new(),
            usage: HashMap::new(),
            faults: Vec::new(),
            quotas: BTreeMap::new(),
            counters: Counters::default(),
            accounts: BTreeSet::new(),
            rng: StdRng::seed_from_u64(options.seed),
            timeline: BTreeSet::new(),
            going: BTreeSet::new(),
            lifetimes: BTreeMap::new(),
            ended: BTreeSet::new(),
            feed: feed.clone(),
        };
        for bytes in loaded.lifetimes {
            let lifetime: InstanceLifetime = serde_json::from_slice(&bytes)
                .map_err(|e| SimError(format!("a corrupt lifetime: {e}")))?;
            if let Some(ended_at) = lifetime.ended_at {
                state.ended.insert((ended_at, lifetime.id.clone()));
            }
            state.lifetimes.insert(lifetime.id.clone(), lifetime);
        }
        for bytes in loaded.resources {
            let record: Record = serde_json::from_slice(&bytes)
                .map_err(|e| SimError(format!("a corrupt resource record: {e}")))?;
            state.insert(record);
        }
        for (key, bytes) in loaded.meta {
            let corrupt = |e: serde_json::Error| SimError(format!("corrupt `{key}`: {e}"));
            match key.as_str() {
                "faults" => state.faults = serde_json::from_slice(&bytes).map_err(corrupt)?,
                "quotas" => state.quotas = serde_json::from_slice(&bytes).map_err(corrupt)?,
                "counters" => state.counters = serde_json::from_slice(&bytes).map_err(corrupt)?,
                "accounts" => state.accounts = serde_json::from_slice(&bytes).map_err(corrupt)?,
                _ => {}
            }
        }
        let object_clusters = persister
            .cluster_object_keys("")
            .map_err(SimError)?
            .into_iter()
            .filter_map(|key| key.split_once('/').map(|(uid, _)| uid.to_string()))
            .collect();
        Ok(Sim {
            state: Mutex::new(state),
            persister,
            options,
            object_clusters: Mutex::new(object_clusters),
            feed,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters more than stopping would; keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The stored Kubernetes objects of the cluster with this uid: each with its key under
    /// the cluster (`{resource}/{namespace}/{name}`, or a key of the cluster's own).
    pub fn cluster_objects(&self, cluster_uid: &str) -> Result<Vec<(String, Vec<u8>)>, SimError> {
        let prefix = format!("{cluster_uid}/");
        Ok(self
            .persister
            .cluster_objects(&prefix)
            .map_err(SimError)?
            .into_iter()
            .map(|(key, value)| (key[prefix.len()..].to_string(), value))
            .collect())
    }

    /// Queues changes to a cluster's stored objects (`None` deletes), in the order given;
    /// the receiver answers once they, and everything queued before, are durable.
    pub fn record_cluster_objects(
        &self,
        cluster_uid: &str,
        changes: Vec<(String, Option<Vec<u8>>)>,
    ) -> Durable {
        if changes.iter().any(|(_, value)| value.is_some()) {
            self.object_clusters
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(cluster_uid.to_string());
        }
        self.persister.queue(
            changes
                .into_iter()
                .map(|(key, value)| Write {
                    table: Table::ClusterObjects,
                    key: format!("{cluster_uid}/{key}"),
                    value,
                })
                .collect(),
        )
    }

    /// Forgets every stored object of a cluster that is gone.
    pub fn forget_cluster_objects(&self, cluster_uid: &str) -> Result<(), SimError> {
        let prefix = format!("{cluster_uid}/");
        let keys = self
            .persister
            .cluster_object_keys(&prefix)
            .map_err(SimError)?;
        self.object_clusters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(cluster_uid);
        // Durable with the next write; nothing waits on a forgotten cluster.
        drop(
            self.record_cluster_objects(
                cluster_uid,
                keys.into_iter()
                    .map(|key| (key[prefix.len()..].to_string(), None))
                    .collect(),
            ),
        );
        Ok(())
    }

    /// The uids of the clusters that have stored objects.
    pub fn clusters_with_objects(&self) -> std::collections::BTreeSet<String> {
        self.object_clusters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Queues `writes` (call it under the state lock, so the file sees changes in order).
    fn queue(&self, writes: Vec<Write>) -> Option<Durable> {
        (!writes.is_empty()).then(|| self.persister.queue(writes))
    }

    /// Waits until queued writes are durable.
    async fn persist(&self, queued: Option<Durable>) -> CloudResult<()> {
        let Some(receiver) = queued else {
            return Ok(());
        };
        match receiver.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(CloudError::Unavailable { message }),
            Err(_) => Err(CloudError::Unavailable {
                message: "the sim's persister stopped".to_string(),
            }),
        }
    }

    async fn call_latency(&self) {
        if self.options.time_scale > 0.0 {
            let ms = (latency::CALL_MS as f64 * self.options.time_scale) as u64;
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }

    fn region(&self, name: &str) -> CloudResult<&'static Region> {
        Region::find(name).ok_or_else(|| {
            invalid(format!(
                "unknown region `{name}`; valid regions: {}",
                Region::names().join(", ")
            ))
        })
    }

    fn meta_write(key: &str, bytes: Vec<u8>) -> Write {
        Write {
            table: Table::Meta,
            key: key.to_string(),
            value: Some(bytes),
        }
    }

    /// Whether a fault of `kind` hits this call; persists the fault list when one fires.
    fn fault_fires(
        state: &mut State,
        kind: FaultKind,
        region: &str,
        zone: Option<&str>,
        writes: &mut Vec<Write>,
    ) -> bool {
        let State { faults, rng, .. } = state;
        let fired = faults::fire(faults, rng, kind, region, zone);
        if fired {
            writes.push(Self::meta_write("faults", json(&state.faults)));
        }
        fired
    }

    /// A call that took effect, whose answer a timeout fault may still lose, as a cloud's
    /// can be lost on the way back.
    fn answer_lost<T>(
        state: &mut State,
        region: &str,
        writes: &mut Vec<Write>,
        done: T,
    ) -> CloudResult<T> {
        match Self::fault_fires(state, FaultKind::TimeoutAfterSuccess, region, None, writes) {
            true => Err(CloudError::Timeout),
            false => Ok(done),
        }
    }

    /// The bootstrap an instance was launched with, as the instance itself reads its user
    /// data: what a sim cluster's API server and kubelets are configured from.
    pub fn user_data(&self, instance_id: &str) -> Option<dialtone_cloud::NodeBootstrap> {
        self.lock()
            .records
            .get(instance_id)
            .and_then(|r| r.user_data.clone())
    }

    /// Every resource of the provider's own account in every region, as it is now
    /// (customers' are their accounts', [`Sim::account`]).
    pub fn resources(&self) -> Vec<CloudResource> {
        let now = Timestamp::now();
        let state = self.lock();
        state
            .records
            .values()
            .filter(|r| r.account.is_none())
            .filter_map(|r| state.observe(r, now))
            .collect()
    }

    /// One resource of the provider's own account, as it is now.
    pub fn resource(&self, id: &str) -> Option<CloudResource> {
        let state = self.lock();
        let record = state.records.get(id).filter(|r| r.account.is_none())?;
        state.observe(record, Timestamp::now())
    }

    /// The resources tagged `key=value` in every region, as they are now: what the sim's
    /// own clusters are built from.
    pub fn tagged(&self, key: &str, value: &str) -> Vec<CloudResource> {
        let now = Timestamp::now();
        let state = self.lock();
        let filter = Filter::tagged(key, value);
        state
            .candidates(&filter)
            .filter_map(|r| state.observe(r, now))
            .collect()
    }

    /// Tells the feed of each resource's changes that come with time (it becomes
    /// available, or listed, or finishes going) when they are due, forever.
    pub async fn run_clock(self: Arc<Self>) {
        // Woken early when something is due sooner; at most a second between looks.
        const LONGEST: Duration = Duration::from_secs(1);
        loop {
            let changed = self.feed.timeline_changed.notified();
            let now = Timestamp::now();
            let next = self.lock().tell_due(now);
            let wait = next
                .and_then(|at| now.duration_until(at).try_into().ok())
                .map_or(LONGEST, |wait: Duration| wait.min(LONGEST));
            tokio::select! {
                () = changed => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Tells the feed of every resource of `region` in `zone` (all its zones for `None`),
    /// whose state a zone outage changes.
    fn tell_zone(state: &State, region: Option<&str>, zone: Option<&str>) {
        for record in state.records.values() {
            let resource = &record.resource;
            if region.is_none_or(|r| r == resource.region)
                && zone_of(&resource.spec).is_some_and(|z| zone.is_none_or(|zone| zone == z))
            {
                state.feed.tell(resource);
            }
        }
    }

    pub fn faults(&self) -> Vec<Fault> {
        self.lock().faults.clone()
    }

    /// Adds a fault; the error says everything wrong with the spec.
    pub async fn add_fault(&self, spec: FaultSpec) -> Result<Fault, String> {
        spec.check(REGIONS)?;
        let (fault, receiver) = {
            let mut state = self.lock();
            state.counters.next_fault += 1;
            let fault = Fault {
                id: format!("fault-{}", state.counters.next_fault),
                spec,
                fired: 0,
            };
            state.faults.push(fault.clone());
            if fault.spec.kind == FaultKind::ZoneOutage {
                Self::tell_zone(
                    &state,
                    fault.spec.region.as_deref(),
                    fault.spec.zone.as_deref(),
                );
            }
            let writes = vec![
                Self::meta_write("faults", json(&state.faults)),
                Self::meta_write("counters", json(&state.counters)),
            ];
            (fault, self.queue(writes))
        };
        self.persist(receiver).await.map_err(|e| e.to_string())?;
        Ok(fault)
    }

    /// Removes one fault (`Some(id)`) or all; returns how many were removed.
    pub async fn remove_faults(&self, id: Option<&str>) -> Result<usize, String> {
        let (removed, receiver) = {
            let mut state = self.lock();
            let before = state.faults.len();
            let outages: Vec<FaultSpec> = state
                .faults
                .iter()
                .filter(|f| f.spec.kind == FaultKind::ZoneOutage && id.is_none_or(|id| f.id == id))
                .map(|f| f.spec.clone())
                .collect();
            state.faults.retain(|f| id.is_some_and(|id| f.id != id));
            for outage in outages {
                Self::tell_zone(&state, outage.region.as_deref(), outage.zone.as_deref());
            }
            let removed = before - state.faults.len();
            let writes = vec![Self::meta_write("faults", json(&state.faults))];
            (removed, self.queue(writes))
        };
        self.persist(receiver).await.map_err(|e| e.to_string())?;
        Ok(removed)
    }

    /// Kills a running instance, as a hardware failure would. `NotFound` for anything else.
    pub async fn kill_instance(&self, id: &str) -> CloudResult<CloudResource> {
        self.break_instance(id, InstanceFault::Kill).await
    }

    /// Does to a running instance what `fault` says. `NotFound` for anything but a live
    /// instance.
    pub async fn break_instance(
        &self,
        id: &str,
        fault: InstanceFault,
    ) -> CloudResult<CloudResource> {
        let now = Timestamp::now();
        let (changed, receiver) = {
            let mut state = self.lock();
            let observed = state.records.get(id).and_then(|r| state.observe(r, now));
            match observed {
                Some(resource)
                    if resource.spec.kind() == ResourceKind::Instance
                        && matches!(
                            resource.state,
                            ResourceState::Available
                                | ResourceState::Pending
                                | ResourceState::Impaired { .. }
                        ) => {}
                _ => return Err(CloudError::NotFound { id: id.to_string() }),
            }
            let record =
                state
                    .modify(id, |record| match fault {
                        InstanceFault::Kill => {
                            record.died = Some("the instance's host failed (simulated)".to_string())
                        }
                        InstanceFault::Hang => record.hung = Some(
                            "the instance stopped answering: its status checks fail (simulated)"
                                .to_string(),
                        ),
                        InstanceFault::Recover => record.hung = None,
                    })
                    .expect("observed above");
            let bytes = json(record);
            let changed = state
                .observe(&state.records[id], now)
                .expect("still listed");
            let mut writes = vec![Write {
                table: Table::Resources,
                key: id.to_string(),
                value: Some(bytes),
            }];
            if fault == InstanceFault::Kill {
                state.end_lifetime(id, now, &mut writes);
            }
            (changed, self.queue(writes))
        };
        self.persist(receiver).await?;
        Ok(changed)
    }

    pub fn quotas(&self, region: &str) -> CloudResult<Quotas> {
        self.region(region)?;
        Ok(self.lock().quotas.get(region).cloned().unwrap_or_default())
    }

    pub async fn set_quotas(&self, region: &str, quotas: Quotas) -> CloudResult<()> {
        self.region(region)?;
        let receiver = {
            let mut state = self.lock();
            state.quotas.insert(region.to_string(), quotas);
            let writes = vec![Self::meta_write("quotas", json(&state.quotas))];
            self.queue(writes)
        };
        self.persist(receiver).await
    }
}

#[async_trait::async_trait]
impl Provider for Sim {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn regions(&self) -> &'static [Region] {
        REGIONS
    }

    fn catalog(&self) -> &InstanceCatalog {
        InstanceCatalog::builtin()
    }

    async fn create(&self, region: &str, request: CreateRequest) -> CloudResult<CloudResource> {
        let region_info = self.region(region)?;
        let catalog = self.catalog();
        self.call(region, Purge::First, |state, now, writes| {
            let token_key = (region.to_string(), request.client_token.clone());
            let earlier = match self.options.honour_client_tokens {
                true => state.tokens.get(&token_key).cloned(),
                false => None,
            };
            match earlier {
                // The same token with the same parameters names the same resource; with
                // others it is refused, as EC2 does. Only a new creation can time out after
                // it succeeded.
                Some(id) => {
                    let record = &state.records[&id];
                    let requested = record.requested.as_ref().unwrap_or(&record.resource.spec);
                    let tags = record
                        .requested_tags
                        .as_ref()
                        .unwrap_or(&record.resource.tags);
                    if *requested != request.spec || *tags != request.tags {
                        Err(CloudError::IdempotentParameterMismatch {
                            token: request.client_token.clone(),
                        })
                    } else {
                        state
                            .observe(record, now)
                            .ok_or(CloudError::NotFound { id })
                    }
                }
                None => self
                    .launch(state, region_info, request, now, catalog, writes)
                    .and_then(|done| Self::answer_lost(state, region, writes, done)),
            }
        })
        .await
    }

    async fn describe(&self, region: &str, filter: &Filter) -> CloudResult<Vec<CloudResource>> {
        self.call(region, Purge::No, |state, now, _| {
            // Tags and kind are fixed at creation, so they filter before observing.
            Ok(state
                .candidates(filter)
                .filter(|r| {
                    r.resource.region == region
                        && r.account.is_none()
                        && filter.matches(&r.resource)
                })
                .filter(|r| r.listed_from.is_none_or(|from| from <= now))
                .filter_map(|r| state.observe(r, now))
                .collect())
        })
        .await
    }

    async fn modify(&self, region: &str, id: &str, change: Change) -> CloudResult<()> {
        self.call(region, Purge::No, |state, _, writes| {
            Self::change(state, region, id, change, writes)
                .and_then(|done| Self::answer_lost(state, region, writes, done))
        })
        .await
    }

    fn consistency_window(&self) -> Duration {
        self.options.describe_lag
    }

    fn subscribe(&self, handler: ChangeHandler) -> bool {
        self.feed
            .handlers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(handler);
        true
    }

    async fn lifetimes(
        &self,
        region: &str,
        ended_since: Timestamp,
    ) -> CloudResult<Vec<InstanceLifetime>> {
        let state = self.lock();
        Ok(state
            .lifetimes
            .values()
            .filter(|l| l.region == region && l.ended_at.is_none_or(|end| end >= ended_since))
            .cloned()
            .collect())
    }

    async fn delete(&self, region: &str, id: &str) -> CloudResult<()> {
        self.call(region, Purge::First, |state, now, writes| {
            self.remove(state, region, id, now, writes)
                .and_then(|done| Self::answer_lost(state, region, writes, done))
        })
        .await
    }
}

/// Whether a call first forgets the resources that are gone.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Purge {
    First,
    No,
}

impl Sim {
    /// One call into the cloud as EC2 answers it: the region checked, the call's latency,
    /// then under the state's lock throttling or `op`, and what it wrote made durable
    /// before the answer.
    async fn call<T>(
        &self,
        region: &str,
        purge: Purge,
        op: impl FnOnce(&mut State, Timestamp, &mut Vec<Write>) -> CloudResult<T>,
    ) -> CloudResult<T> {
        self.region(region)?;
        self.call_latency().await;
        let now = Timestamp::now();
        let (outcome, queued) = {
            let mut state = self.lock();
            let mut writes = Vec::new();
            if purge == Purge::First {
                state.purge(now, &mut writes);
            }
            let outcome = if Self::fault_fires(
                &mut state,
                FaultKind::Throttling,
                region,
                None,
                &mut writes,
            ) {
                Err(CloudError::Throttled)
            } else {
                op(&mut state, now, &mut writes)
            };
            (outcome, self.queue(writes))
        };
        self.persist(queued).await?;
        outcome
    }
}

impl Sim {
    /// A change to a resource of the provider's own account, as EC2 makes it.
    fn change(
        state: &mut State,
        region: &str,
        id: &str,
        change: Change,
        writes: &mut Vec<Write>,
    ) -> CloudResult<()> {
        let not_found = |id: &str| CloudError::NotFound { id: id.to_string() };
        let record = state
            .records
            .get(id)
            .filter(|r| r.resource.region == region && r.account.is_none() && r.gone_at.is_none())
            .ok_or_else(|| not_found(id))?;
        let mut spec = record.resource.spec.clone();
        let mut tags = record.resource.tags.clone();
        match (&mut spec, change) {
            (_, Change::SetTags(set)) => {
                if set.iter().all(|(k, v)| tags.get(k) == Some(v)) {
                    return Ok(());
                }
                tags.extend(set);
            }
            (_, Change::RemoveTags(keys)) => {
                if !keys.iter().any(|k| tags.contains_key(k)) {
                    return Ok(());
                }
                tags.retain(|k, _| !keys.contains(k));
            }
            (ResourceSpec::RouteTable { vpc_id, routes, .. }, Change::AddRoute(route)) => {
                let target = state
                    .records
                    .get(&route.target)
                    .filter(|r| r.gone_at.is_none() && r.account.is_none());
                match target.map(|t| &t.resource.spec) {
                    Some(ResourceSpec::VpcPeering { vpc_id: from, .. }) if from == vpc_id => {}
                    Some(ResourceSpec::VpcPeering { .. }) => {
                        return Err(invalid(format!(
                            "{} does not peer {vpc_id}, the VPC of {id}",
                            route.target
                        )));
                    }
                    _ => return Err(not_found(&route.target)),
                }
                if let Some(ResourceSpec::Vpc { cidr }) =
                    state.records.get(vpc_id.as_str()).map(|r| &r.resource.spec)
                    && (cidr.contains(&route.destination) || route.destination.contains(cidr))
                {
                    return Err(invalid(format!(
                        "{} overlaps {cidr}, the VPC's own range (its local route)",
                        route.destination
                    )));
                }
                match routes.iter().find(|r| r.destination == route.destination) {
                    Some(existing) if *existing == route => return Ok(()),
                    Some(existing) => {
                        return Err(invalid(format!(
                            "RouteAlreadyExists: {id} already routes {} through {}",
                            existing.destination, existing.target
                        )));
                    }
                    None => routes.push(route),
                }
            }
            (ResourceSpec::RouteTable { routes, .. }, Change::RemoveRoute { destination }) => {
                if !routes.iter().any(|r| r.destination == destination) {
                    return Ok(());
                }
                routes.retain(|r| r.destination != destination);
            }
            (ResourceSpec::SecurityGroup { ingress, .. }, Change::AllowIngress(rule)) => {
                if ingress.contains(&rule) {
                    return Ok(());
                }
                ingress.push(rule);
            }
            (ResourceSpec::SecurityGroup { ingress, .. }, Change::RevokeIngress(rule)) => {
                if !ingress.contains(&rule) {
                    return Ok(());
                }
                ingress.retain(|r| *r != rule);
            }
            (ResourceSpec::ServiceLoadBalancer { listeners, .. }, Change::SetListeners(wanted)) => {
                check_listeners(&wanted)?;
                if *listeners == wanted {
                    return Ok(());
                }
                *listeners = wanted;
            }
            (ResourceSpec::ServiceLoadBalancer { targets, .. }, Change::SetTargets(wanted)) => {
                for target in &wanted {
                    let instance = state
                        .records
                        .get(target.as_str())
                        .filter(|r| r.gone_at.is_none() && r.resource.region == region);
                    if !matches!(
                        instance.map(|r| &r.resource.spec),
                        Some(ResourceSpec::Instance { .. })
                    ) {
                        return Err(invalid(format!(
                            "InvalidTarget: {target} is not an instance in {region}"
                        )));
                    }
                }
                if *targets == wanted {
                    return Ok(());
                }
                *targets = wanted;
            }
            (spec, change) => {
                return Err(invalid(format!("a {} cannot take {change:?}", spec.kind())));
            }
        }
        let record = state
            .modify(id, |record| {
                record
                    .requested
                    .get_or_insert_with(|| record.resource.spec.clone());
                record
                    .requested_tags
                    .get_or_insert_with(|| record.resource.tags.clone());
                record.resource.spec = spec;
                record.resource.tags = tags;
            })
            .expect("found above");
        writes.push(Write {
            table: Table::Resources,
            key: id.to_string(),
            value: Some(json(record)),
        });
        Ok(())
    }

    fn launch(
        &self,
        state: &mut State,
        region: &Region,
        request: CreateRequest,
        now: Timestamp,
        catalog: &InstanceCatalog,
        writes: &mut Vec<Write>,
    ) -> CloudResult<CloudResource> {
        check_spec(region, &request.spec, catalog)?;
        for dependency in request.spec.dependencies() {
            let usable = state
                .records
                .get(dependency)
                .and_then(|r| state.observe(r, now))
                .is_some_and(|r| {
                    r.region == region.name
                        && !matches!(
                            r.state,
                            ResourceState::Deleting | ResourceState::Terminated { .. }
                        )
                });
            if !usable {
                return Err(invalid(format!(
                    "{dependency} does not exist in {}",
                    region.name
                )));
            }
        }
        let zone = zone_of(&request.spec).map(str::to_string);
        if let (ResourceSpec::Instance { instance_type, .. }, Some(zone)) = (&request.spec, &zone)
            && state.down_zones(region.name).contains(&zone.as_str())
        {
            return Err(CloudError::InsufficientCapacity {
                zone: zone.clone(),
                instance_type: instance_type.clone(),
            });
        }
        state.check_quota(region.name, &request.spec, catalog)?;
        let peering = match &request.spec {
            ResourceSpec::VpcPeering { .. } => {
                Some(self.request_peering(state, &request.spec, now)?)
            }
            ResourceSpec::RouteTable { routes, .. } if !routes.is_empty() => {
                return Err(invalid(
                    "a route table is created without routes; add them with a change".into(),
                ));
            }
            _ => None,
        };
        let boot_failure = (request.spec.kind() == ResourceKind::Instance
            && Self::fault_fires(
                state,
                FaultKind::BootFailure,
                region.name,
                zone.as_deref(),
                writes,
            ))
        .then(|| "Server.InternalError: the instance failed to boot (simulated)".to_string());
        let lag_ms = self.options.describe_lag.as_millis() as u64;
        let listed_from = (lag_ms > 0).then(|| {
            let drawn = rand::Rng::random_range(&mut state.rng, 0..=lag_ms);
            now.checked_add(jiff::SignedDuration::from_millis(drawn as i64))
                .unwrap_or(now)
        });
        state.counters.next_resource += 1;
        let serial = state.counters.next_resource;
        let kind = request.spec.kind();
        let id = format!("{}-{serial:017x}", id_prefix(kind));
        let address = match &request.spec {
            ResourceSpec::Instance { subnet_id, .. } => state
                .records
                .get(subnet_id)
                .and_then(|s| match &s.resource.spec {
                    ResourceSpec::Subnet { cidr, .. } => {
                        let hosts = cidr.hosts().count().max(6) as u64 - 5;
                        cidr.hosts().nth(4 + (serial % hosts) as usize)
                    }
                    _ => None,
                })
                .map(|ip| ip.to_string())
                .unwrap_or_default(),
            // Random, as a cloud's load balancer names are: a counter shared by every
            // tenant would let anyone enumerate everyone's endpoints.
            ResourceSpec::LoadBalancer { .. } | ResourceSpec::ServiceLoadBalancer { .. } => {
                format!(
                    "lb-{:016x}.elb.{}.sim.dialtone.dev",
                    rand::random::<u64>(),
                    region.name
                )
            }
            _ => String::new(),
        };
        let record = Record {
            resource: CloudResource {
                id: id.clone(),
                region: region.name.to_string(),
                spec: request.spec,
                tags: request.tags,
                state: ResourceState::Pending,
                address,
                created_at: now,
                peering: None,
            },
            client_token: request.client_token.clone(),
            ready_at: after(now, latency::ready_ms(kind), self.options.time_scale),
            gone_at: None,
            boot_failure,
            died: None,
            hung: None,
            listed_from,
            account: None,
            requested: None,
            requested_tags: None,
            peering,
            user_data: request.bootstrap,
        };
        writes.push(Write {
            table: Table::Resources,
            key: id.clone(),
            value: Some(json(&record)),
        });
        writes.push(Self::meta_write("counters", json(&state.counters)));
        if let ResourceSpec::Instance { instance_type, .. } = &record.resource.spec
            && record.boot_failure.is_none()
        {
            let lifetime = InstanceLifetime {
                id: id.clone(),
                region: record.resource.region.clone(),
                instance_type: instance_type.clone(),
                tags: record.resource.tags.clone(),
                started_at: record.ready_at,
                ended_at: None,
            };
            writes.push(Write {
                table: Table::Lifetimes,
                key: id.clone(),
                value: Some(json(&lifetime)),
            });
            state.lifetimes.insert(id.clone(), lifetime);
        }
        state.insert(record);
        Ok(state
            .observe(&state.records[&id], now)
            .expect("just created"))
    }

    fn remove(
        &self,
        state: &mut State,
        region: &str,
        id: &str,
        now: Timestamp,
        writes: &mut Vec<Write>,
    ) -> CloudResult<()> {
        let not_found = || CloudError::NotFound { id: id.to_string() };
        let record = state.records.get(id).ok_or_else(not_found)?;
        if record.resource.region != region || record.account.is_some() {
            return Err(not_found());
        }
        if record.gone_at.is_some() {
            return Ok(());
        }
        let dependents: Vec<&str> = state
            .records
            .values()
            .filter(|r| r.gone_at.is_none() && r.resource.spec.dependencies().contains(&id))
            .map(|r| r.resource.id.as_str())
            .collect();
        if !dependents.is_empty() {
            return Err(CloudError::DependencyViolation {
                message: format!("{id} has dependent resources: {}", dependents.join(", ")),
            });
        }
        let kind = record.resource.spec.kind();
        let gone_at = after(now, latency::delete_ms(kind), self.options.time_scale);
        let record = state
            .modify(id, |record| record.gone_at = Some(gone_at))
            .expect("found above");
        writes.push(Write {
            table: Table::Resources,
            key: id.to_string(),
            value: Some(json(record)),
        });
        // Billing stops when termination starts, as EC2's does.
        state.end_lifetime(id, now, writes);
        Ok(())
    }
}
