//! Every org's access policies in memory: the tree, identities, group memberships and
//! bindings, loaded from the store and kept current by one watch (an informer). The API's
//! authorizer reads it on every request; the RBAC projection controller is told which
//! clusters each change touches.
//!
//! Writes reach the index through the watch, not through the handler that made them, so
//! that several servers on one store agree. A handler that must read its own write waits
//! for the index to reach the write's revision ([`AccessIndex::caught_up`]).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use dialtone_policy::{Binding, Catalogue, Level, NodeId, Policies, Subject};
use dialtone_store::Revision;
use dialtone_store::registry::{AccessChange, AccessRecord, Registry};
use dialtone_types::kinds::{CLUSTER, FOLDER, IDENTITY, NAMESPACE, ORG, PROJECT};
use dialtone_types::policy::PolicyBinding;
use dialtone_types::{KindInfo, ResourcePath};
use futures::StreamExt;
use tokio::sync::{Notify, watch};

use crate::runtime::reflector::{Changes, Event, ListWatch, list_until_listed, reflect};

/// The level of the tree a kind's nodes sit at; `None` for kinds that are not tree nodes.
pub fn level_of(kind: &'static KindInfo) -> Option<Level> {
    [
        (&ORG, Level::Org),
        (&FOLDER, Level::Folder),
        (&PROJECT, Level::Project),
        (&CLUSTER, Level::Cluster),
        (&NAMESPACE, Level::Namespace),
    ]
    .into_iter()
    .find(|(k, _)| std::ptr::eq(*k, kind))
    .map(|(_, level)| level)
}

/// A tree node's path as policies name it: its names from the org down, `acme/eng/web`.
pub fn node_name(path: &ResourcePath) -> String {
    path.names().collect::<Vec<_>>().join("/")
}

/// The API's bindings as the policy engine's, one per subject; subjects must parse.
pub fn flatten(bindings: &[PolicyBinding]) -> Result<Vec<Binding>, String> {
    let mut flat = Vec::new();
    for binding in bindings {
        for subject in &binding.subjects {
            flat.push(Binding {
                role: binding.role.clone(),
                subject: Subject::parse(subject)?,
            });
        }
    }
    Ok(flat)
}

/// The policy engine's bindings as the API shows them: one entry per role, subjects sorted.
pub fn grouped(bindings: &[Binding]) -> Vec<PolicyBinding> {
    let mut by_role: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for binding in bindings {
        by_role
            .entry(&binding.role)
            .or_default()
            .push(binding.subject.to_string());
    }
    by_role
        .into_iter()
        .map(|(role, mut subjects)| {
            subjects.sort();
            subjects.dedup();
            PolicyBinding {
                role: role.to_string(),
                subjects,
            }
        })
        .collect()
}

/// A cluster whose RBAC may need to change.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DirtyCluster {
    pub org: String,
    /// The cluster's path as policies name it: `acme/eng/web/dev`.
    pub cluster: String,
}

impl std::fmt::Display for DirtyCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.cluster)
    }
}

#[derive(Default)]
struct State {
    orgs: HashMap<String, Policies>,
    /// Clusters to project again, drained by the projection controller.
    dirty: BTreeSet<DirtyCluster>,
}

pub struct AccessIndex {
    state: RwLock<State>,
    applied: watch::Sender<Revision>,
    /// Woken when clusters become dirty.
    pub dirty_changed: Notify,
}

impl AccessIndex {
    /// Loads everything; [`AccessIndex::follow`] keeps it current.
    pub async fn load(registry: &Registry) -> dialtone_store::registry::Result<Arc<Self>> {
        let index = Arc::new(AccessIndex {
            state: RwLock::default(),
            applied: watch::channel(0).0,
            dirty_changed: Notify::new(),
        });
        index.reload(registry).await?;
        Ok(index)
    }

    /// Reads one org's policies; `None` for an org the index does not hold.
    pub fn read<T>(&self, org: &str, f: impl FnOnce(&Policies) -> T) -> Option<T> {
        let state = self.state.read().expect("access index lock");
        state.orgs.get(org).map(f)
    }

    /// The revision the index reflects.
    pub fn revision(&self) -> Revision {
        *self.applied.borrow()
    }

    /// Waits until the index reflects `revision` or `timeout` passes; says which.
    pub async fn caught_up(&self, revision: Revision, timeout: Duration) -> bool {
        let mut applied = self.applied.subscribe();
        tokio::time::timeout(timeout, applied.wait_for(|&r| r >= revision))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Takes the clusters to project again.
    pub fn take_dirty(&self) -> BTreeSet<DirtyCluster> {
        std::mem::take(&mut self.state.write().expect("access index lock").dirty)
    }

    /// Every cluster the index holds, to resync.
    pub fn clusters(&self) -> BTreeSet<DirtyCluster> {
        all_clusters(&self.state.read().expect("access index lock").orgs)
    }

    async fn reload(&self, registry: &Registry) -> dialtone_store::registry::Result<Revision> {
        let (records, revision) = AccessSource(registry.clone()).list().await?;
        self.replace(records, revision);
        Ok(revision)
    }

    fn replace(&self, records: Vec<AccessRecord>, revision: Revision) {
        let mut state = State::default();
        for record in records {
            apply(&mut state, AccessChange::Put(record));
        }
        // Everything may have changed while the index was not looking.
        state.dirty = all_clusters(&state.orgs);
        *self.state.write().expect("access index lock") = state;
        self.applied.send_replace(revision);
        self.dirty_changed.notify_one();
    }

    fn change(&self, change: Option<AccessChange>, revision: Revision) {
        if let Some(change) = change {
            let dirty = {
                let mut state = self.state.write().expect("access index lock");
                apply(&mut state, change);
                !state.dirty.is_empty()
            };
            if dirty {
                self.dirty_changed.notify_one();
            }
        }
        self.applied.send_replace(revision);
    }

    /// Follows the store's changes for as long as it runs: a supervised task. Run 0 goes
    /// on from the load; a restarted run loads everything again first, since the run
    /// before it may have died halfway through a change.
    pub async fn follow(self: Arc<Self>, registry: Registry, run: u32) {
        let source = AccessSource(registry);
        let resume = if run == 0 {
            self.revision()
        } else {
            let (records, revision) = list_until_listed(&source).await;
            self.replace(records, revision);
            revision
        };
        reflect(&source, Some(resume), |event| match event {
            Event::Listed(records, revision) => self.replace(records, revision),
            Event::Changed(change, revision) => self.change(change, revision),
        })
        .await
    }
}

/// What access control reads of the store, listed then watched.
struct AccessSource(Registry);

impl ListWatch for AccessSource {
    type Item = AccessRecord;
    /// `None` for a change access control does not care about (its revision still counts).
    type Change = Option<AccessChange>;

    fn describe(&self) -> &'static str {
        "access index"
    }

    async fn list(&self) -> dialtone_store::registry::Result<(Vec<AccessRecord>, Revision)> {
        self.0.access_records().await
    }

    async fn watch(
        &self,
        after: Revision,
    ) -> dialtone_store::registry::Result<Changes<Option<AccessChange>>> {
        Ok(self.0.watch_access(after).await?.boxed())
    }
}

fn all_clusters(orgs: &HashMap<String, Policies>) -> BTreeSet<DirtyCluster> {
    orgs.iter()
        .flat_map(|(org, policies)| {
            policies
                .nodes()
                .filter(|&n| policies.level(n) == Level::Cluster)
                .map(move |n| DirtyCluster {
                    org: org.clone(),
                    cluster: policies.path(n).to_string(),
                })
        })
        .collect()
}

fn mark(state: &mut State, org: &str, clusters: Vec<NodeId>) {
    let Some(policies) = state.orgs.get(org) else {
        return;
    };
    for cluster in clusters {
        state.dirty.insert(DirtyCluster {
            org: org.to_string(),
            cluster: policies.path(cluster).to_string(),
        });
    }
}

fn apply(state: &mut State, change: AccessChange) {
    let (put, record) = match change {
        AccessChange::Put(record) => (true, record),
        AccessChange::Removed(record) => (false, record),
    };
    match record {
        AccessRecord::Object(path) => {
            let org = path.org_name().to_string();
            if std::ptr::eq(path.kind(), &IDENTITY) {
                // Identities are kept by name once known (bindings name them).
                if put && let Some(policies) = state.orgs.get_mut(&org) {
                    policies.add_user(path.name());
                }
                return;
            }
            let Some(level) = level_of(path.kind()) else {
                return;
            };
            if level == Level::Org {
                if put {
                    let mut policies = Policies::new(Catalogue::default());
                    policies
                        .add_node(None, &org, Level::Org)
                        .expect("an org is a root");
                    state.orgs.entry(org).or_insert(policies);
                } else {
                    state.orgs.remove(&org);
                }
                return;
            }
            let Some(policies) = state.orgs.get_mut(&org) else {
                return;
            };
            let name = node_name(&path);
            if put {
                let parent = path.parent().and_then(|p| policies.node(&node_name(&p)));
                match parent.map(|p| policies.add_node(Some(p), path.name(), level)) {
                    Some(Ok(id)) => {
                        let touched = policies.clusters_under(id);
                        mark(state, &org, touched);
                    }
                    Some(Err(_)) => {} // already known
                    None => tracing::warn!(node = %path, "access index: a node without its parent"),
                }
            } else if let Some(id) = policies.node(&name) {
                // A namespace going changes its cluster; a cluster going needs nothing.
                let touched = match level {
                    Level::Namespace => policies.clusters_under(id),
                    _ => Vec::new(),
                };
                policies.remove_node(id);
                mark(state, &org, touched);
            }
        }
        AccessRecord::Group { path, members } => {
            let org = path.org_name().to_string();
            let Some(policies) = state.orgs.get_mut(&org) else {
                return;
            };
            let members = if put { members } else { Vec::new() };
            policies.restore_members(path.name(), &members);
            let touched = policies.clusters_reached_by(path.name());
            mark(state, &org, touched);
        }
        AccessRecord::Policy { node, bindings } => {
            let org = node.org_name().to_string();
            let Some(policies) = state.orgs.get_mut(&org) else {
                return;
            };
            let Some(id) = policies.node(&node_name(&node)) else {
                return;
            };
            let bindings = if put {
                flatten(&bindings).unwrap_or_default()
            } else {
                Vec::new()
            };
            policies.restore_bindings(id, &bindings);
            let touched = policies.clusters_under(id);
            mark(state, &org, touched);
        }
    }
}
