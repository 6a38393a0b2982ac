//! The network of every cluster, kept in memory from the cluster informer, so that planning a
//! cluster reads its org's allocations without decoding every cluster of the org: admission
//! stays proportional to the networks, not to the clusters' stored size, and a fleet of
//! thousands plans in constant time per cluster.
//!
//! Allocation is serialised across servers by a guard key per org
//! (`Registry::allocation_guard`): admission reads it, waits until this index reflects its
//! revision, plans, and stores the cluster only if the key has not moved, writing it in the
//! same transaction; a server that lost the race plans again. Within a server, this index's lock keeps its own admissions
//! from racing each other. A cluster recorded by admission before its watch event arrives
//! is kept through a re-list that predates it, so that no admission ever plans against an
//! index missing a stored cluster.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dialtone_controllers::runtime::{Informer, Notice};
use dialtone_store::registry::{RawObject, Registry};
use dialtone_store::{Compare, Revision};
use dialtone_types::ResourcePath;
use dialtone_types::cluster::ClusterPlan;
use ipnet::Ipv4Net;
use tokio::sync::MutexGuard;

/// The network a cluster was planned with.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterNetwork {
    /// The cluster's project, as a path.
    pub parent: String,
    pub region: String,
    pub vpc_cidr: Ipv4Net,
    /// A developer VPC shared by the project's developer clusters in the region.
    pub shared: bool,
}

impl ClusterNetwork {
    fn of(parent: &str, plan: &ClusterPlan) -> Self {
        ClusterNetwork {
            parent: parent.to_string(),
            region: plan.region.clone(),
            vpc_cidr: plan.network.vpc_cidr,
            shared: plan.network.shared_vpc,
        }
    }
}

fn network_of(raw: &RawObject) -> Option<ClusterNetwork> {
    let plan: ClusterPlan = serde_json::from_value(raw.status.get("plan")?.clone()).ok()?;
    Some(ClusterNetwork::of(&raw.metadata.parent, &plan))
}

#[derive(Default)]
struct Networks {
    /// Org name → cluster path → network.
    by_org: HashMap<String, BTreeMap<String, ClusterNetwork>>,
    /// Clusters recorded by admission whose watch event has not arrived, with the
    /// revision they were stored at.
    recorded: HashMap<ResourcePath, Revision>,
}

impl Networks {
    fn insert(&mut self, path: &ResourcePath, network: ClusterNetwork) {
        self.by_org
            .entry(path.org_name().to_string())
            .or_default()
            .insert(path.to_string(), network);
    }

    fn remove(&mut self, path: &ResourcePath) {
        if let Some(clusters) = self.by_org.get_mut(path.org_name()) {
            clusters.remove(&path.to_string());
        }
    }
}

pub struct NetworkIndex {
    networks: Mutex<Networks>,
    allocation: tokio::sync::Mutex<()>,
    clusters: Arc<Informer>,
}

/// How long admission waits for this server's index to reflect another server's allocation.
const CATCH_UP: Duration = Duration::from_secs(5);

/// Why an org's allocations cannot be read now.
#[derive(Debug)]
pub enum GuardError {
    Registry(dialtone_store::registry::RegistryError),
    /// The index has not caught up with the store within [`CATCH_UP`].
    Behind(Revision),
}

impl NetworkIndex {
    /// Builds the index from the cluster informer and follows it.
    pub fn follow(clusters: &Arc<Informer>) -> Arc<Self> {
        let index = Arc::new(NetworkIndex {
            networks: Mutex::default(),
            allocation: tokio::sync::Mutex::new(()),
            clusters: clusters.clone(),
        });
        index.relisted(&clusters.snapshot(), clusters.revision());
        let handler = index.clone();
        clusters.subscribe(move |notice| handler.apply(notice));
        index
    }

    /// Held while a network is chosen and its cluster stored.
    pub async fn allocating(&self) -> MutexGuard<'_, ()> {
        self.allocation.lock().await
    }

    /// The org's allocation guard as it is now, once this index reflects every allocation
    /// it covers: a create guarded by it fails if any server allocated meanwhile.
    pub async fn guard(&self, registry: &Registry, org: &str) -> Result<Compare, GuardError> {
        let guard = registry
            .allocation_guard(org, &dialtone_types::kinds::CLUSTER)
            .await
            .map_err(GuardError::Registry)?;
        // The clusters' guard moves only in the transaction that stores a cluster, so the
        // cluster informer sees that revision.
        if !self.clusters.caught_up(guard.mod_revision, CATCH_UP).await {
            return Err(GuardError::Behind(guard.mod_revision));
        }
        Ok(guard)
    }

    /// The networks of the org's clusters.
    pub fn of_org(&self, org: &str) -> Vec<ClusterNetwork> {
        let networks = self.lock();
        networks
            .by_org
            .get(org)
            .map(|clusters| clusters.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Records a cluster just stored at `revision`, before its watch event arrives.
    pub fn record(&self, path: &ResourcePath, plan: &ClusterPlan, revision: Revision) {
        let parent = path.parent().map(|p| p.to_string()).unwrap_or_default();
        let mut networks = self.lock();
        networks.insert(path, ClusterNetwork::of(&parent, plan));
        networks.recorded.insert(path.clone(), revision);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Networks> {
        self.networks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn relisted(&self, listed: &[(ResourcePath, Arc<RawObject>)], revision: Revision) {
        let mut networks = self.lock();
        let mut fresh = Networks::default();
        for (path, raw) in listed {
            if let Some(network) = network_of(raw) {
                fresh.insert(path, network);
            }
        }
        // What admission stored after the list was read is not in it yet: keep it.
        for (path, stored_at) in std::mem::take(&mut networks.recorded) {
            if stored_at > revision {
                if let Some(network) = networks
                    .by_org
                    .get(path.org_name())
                    .and_then(|clusters| clusters.get(&path.to_string()))
                {
                    fresh.insert(&path, network.clone());
                }
                fresh.recorded.insert(path, stored_at);
            }
        }
        *networks = fresh;
    }

    fn apply(&self, notice: &Notice) {
        match notice {
            Notice::Listed(listed, revision) => self.relisted(listed, *revision),
            Notice::Applied { path, new, .. } => {
                let mut networks = self.lock();
                networks.recorded.remove(*path);
                if let Some(network) = network_of(new) {
                    networks.insert(path, network);
                }
            }
            Notice::Deleted { path, .. } => {
                let mut networks = self.lock();
                networks.recorded.remove(*path);
                networks.remove(path);
            }
        }
    }
}
