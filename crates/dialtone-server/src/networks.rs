//! The network of every cluster, kept in memory from a list and a watch of clusters (an
//! informer), so that planning a cluster reads its org's allocations without decoding every
//! cluster of the org: admission stays proportional to the networks, not to the clusters'
//! stored size, and a fleet of thousands plans in constant time per cluster.
//!
//! Allocation is serialised by this index's lock: admission holds it from reading the
//! allocations until the new cluster is stored and recorded, and a re-list holds it while it
//! replaces the index, so that no admission ever plans against an index missing a stored
//! cluster.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use dialtone_controllers::backoff;
use dialtone_store::Revision;
use dialtone_store::registry::{Change, ChangeKind, ListOptions, RawObject, Registry, Result};
use dialtone_types::ResourcePath;
use dialtone_types::cluster::ClusterPlan;
use dialtone_types::kinds::CLUSTER;
use futures::StreamExt;
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

/// Org name → cluster path → network.
type Networks = HashMap<String, BTreeMap<String, ClusterNetwork>>;

pub struct NetworkIndex {
    networks: Mutex<Networks>,
    allocation: tokio::sync::Mutex<()>,
}

fn network_of(raw: &RawObject) -> Option<(String, String, ClusterNetwork)> {
    let plan: ClusterPlan = serde_json::from_value(raw.status.get("plan")?.clone()).ok()?;
    let parent = ResourcePath::parse(&raw.metadata.parent).ok()?;
    let path = parent.child(&CLUSTER, &raw.metadata.name);
    Some((
        parent.org_name().to_string(),
        path.to_string(),
        ClusterNetwork::of(&raw.metadata.parent, &plan),
    ))
}

impl NetworkIndex {
    /// Lists every cluster; [`NetworkIndex::follow`] keeps the index current. The
    /// revision listed is where following starts.
    pub async fn load(registry: &Registry) -> Result<(Arc<Self>, Revision)> {
        let index = Arc::new(NetworkIndex {
            networks: Mutex::default(),
            allocation: tokio::sync::Mutex::new(()),
        });
        let revision = index.relist(registry).await?;
        Ok((index, revision))
    }

    /// Held while a network is chosen and its cluster stored.
    pub async fn allocating(&self) -> MutexGuard<'_, ()> {
        self.allocation.lock().await
    }

    /// The networks of the org's clusters.
    pub fn of_org(&self, org: &str) -> Vec<ClusterNetwork> {
        let networks = self.networks.lock().expect("index lock");
        networks
            .get(org)
            .map(|clusters| clusters.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Records a cluster just stored, before its watch event arrives.
    pub fn record(&self, path: &ResourcePath, plan: &ClusterPlan) {
        let parent = path.parent().map(|p| p.to_string()).unwrap_or_default();
        self.networks
            .lock()
            .expect("index lock")
            .entry(path.org_name().to_string())
            .or_default()
            .insert(path.to_string(), ClusterNetwork::of(&parent, plan));
    }

    async fn relist(&self, registry: &Registry) -> Result<Revision> {
        let _allocating = self.allocating().await;
        let page = registry
            .list_raw(&CLUSTER, None, &ListOptions::default(), &|_| true)
            .await?;
        let mut networks = Networks::new();
        for (org, path, network) in page.items.iter().filter_map(network_of) {
            networks.entry(org).or_default().insert(path, network);
        }
        *self.networks.lock().expect("index lock") = networks;
        Ok(page.revision)
    }

    /// Follows the clusters' changes for as long as it runs: a supervised task. Run 0
    /// starts at `listed`; a restarted run lists again first.
    pub async fn follow(self: Arc<Self>, registry: Registry, listed: Revision, run: u32) {
        let mut revision = if run == 0 {
            listed
        } else {
            self.relist_until_listed(&registry).await
        };
        loop {
            match registry.watch(&CLUSTER, None, revision).await {
                Ok(mut changes) => {
                    while let Some(change) = changes.next().await {
                        let Ok(change) = change else { break };
                        self.apply(&change);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "network index cannot watch clusters"),
            }
            // The watch ended (compaction, store restart): start again from a fresh list.
            revision = self.relist_until_listed(&registry).await;
        }
    }

    async fn relist_until_listed(&self, registry: &Registry) -> Revision {
        backoff::until_ok("listing clusters' networks", backoff::RELOAD, || {
            self.relist(registry)
        })
        .await
    }

    fn apply(&self, change: &Change) {
        let mut networks = self.networks.lock().expect("index lock");
        let org = change.path.org_name().to_string();
        let key = change.path.to_string();
        match (change.kind, network_of(&change.object)) {
            (ChangeKind::Deleted, _) => {
                if let Some(clusters) = networks.get_mut(&org) {
                    clusters.remove(&key);
                }
            }
            (_, Some((_, _, network))) => {
                networks.entry(org).or_default().insert(key, network);
            }
            (_, None) => {}
        }
    }
}
