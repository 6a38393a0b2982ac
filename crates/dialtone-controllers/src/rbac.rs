//! The RBAC projection controller: makes every cluster hold exactly the RBAC objects and
//! namespaces its place in the tree calls for, and the drift guard that keeps them so.
//!
//! Woken by the access index whenever a policy, a group's members, a namespace or a cluster
//! changes (for just the clusters the change reaches), and by a periodic resync of every
//! cluster. A cluster whose API does not answer yet is tried again shortly. Each pass
//! reads what the cluster holds and applies only the difference, so a pass that dies
//! half-way is finished by the next.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use dialtone_kube::access::{
    GuardEndpoint, apply, ensure_guard, managed_rbac, mark_projected, sync_namespaces,
};
use dialtone_kube::{Clients, KubeError};
use dialtone_policy::Level;
use dialtone_policy::projection::{changes, namespace_name, project};
use dialtone_store::registry::{Registry, RegistryError};
use dialtone_types::kinds::CLUSTER;
use dialtone_types::{Cluster, ClusterStatus, ConditionStatus, Object, ResourcePath};

use crate::access::{AccessIndex, DirtyCluster};
use crate::cluster::{record_event, set_condition};

pub struct Projection {
    pub registry: Registry,
    pub index: Arc<AccessIndex>,
    pub clients: Arc<Clients>,
    pub guard: GuardEndpoint,
    pub clock: fn() -> jiff::Timestamp,
}

/// How a pass over one cluster ended.
enum Pass {
    Done,
    /// Try again soon: the API is not up, or a call failed.
    Retry(String),
}

/// The cluster condition that says whether its RBAC matches the access policies.
const CONDITION: &str = "AccessProjected";

/// What a pass tells the cluster's status.
struct Report {
    /// `Ok` once the cluster holds its projected RBAC; the failure otherwise.
    outcome: Result<(), String>,
    /// Objects that held names the projection uses, which it replaced.
    replaced: Vec<String>,
}

impl Projection {
    /// Projects one cluster's policy into it.
    async fn reconcile(&self, (org, cluster): &DirtyCluster) -> Pass {
        let names: Vec<String> = cluster.split('/').map(String::from).collect();
        let Ok(path) = ResourcePath::from_names(&CLUSTER, &names) else {
            return Pass::Done;
        };
        let object: Object<Cluster, ClusterStatus> = match self.registry.get(&path).await {
            Ok(object) => object,
            Err(RegistryError::NotFound(_)) => return Pass::Done,
            Err(e) => return Pass::Retry(e.to_string()),
        };
        if object.metadata.deletion_timestamp.is_some() {
            return Pass::Done;
        }
        let Some(Some((desired, namespaces))) = self.index.read(org, |policies| {
            let id = policies.node(cluster)?;
            let namespaces: BTreeSet<String> = policies
                .subtree(id, Level::Namespace)
                .into_iter()
                .map(|n| namespace_name(policies, n).to_string())
                .collect();
            Some((project(policies, id), namespaces))
        }) else {
            return Pass::Done;
        };
        let client = match self.clients.client(&object.metadata.uid) {
            Ok(client) => client,
            Err(KubeError::NotServing) => return Pass::Retry("not serving yet".into()),
            Err(e) => return Pass::Retry(e.to_string()),
        };
        let mut replaced = Vec::new();
        let applied = async {
            ensure_guard(&client, &self.guard).await?;
            sync_namespaces(&client, &namespaces).await?;
            let current = managed_rbac(&client).await?;
            let todo = changes(&current, &desired);
            if !todo.is_empty() {
                tracing::info!(
                    cluster = %path,
                    create = todo.create.len(),
                    update = todo.update.len() + todo.replace.len(),
                    delete = todo.delete.len(),
                    "projecting access policy"
                );
            }
            replaced = apply(&client, &todo).await?;
            mark_projected(&client).await
        }
        .await;
        let report = Report {
            outcome: applied.as_ref().map(drop).map_err(ToString::to_string),
            replaced: replaced.iter().map(ToString::to_string).collect(),
        };
        if let Err(e) = self.report(&path, report).await {
            tracing::warn!(cluster = %path, error = %e, "cannot report the projection");
        }
        match applied {
            Ok(()) => Pass::Done,
            Err(e) => Pass::Retry(e.to_string()),
        }
    }

    /// Sets the cluster's `AccessProjected` condition, and records an event for each object
    /// the projection replaced; writes nothing when nothing changed.
    async fn report(&self, path: &ResourcePath, report: Report) -> Result<(), RegistryError> {
        let (status, reason, message) = match &report.outcome {
            Ok(()) => (
                ConditionStatus::True,
                "Projected",
                "the cluster's RBAC matches its access policies".to_string(),
            ),
            Err(why) => (
                ConditionStatus::False,
                "ProjectionFailed",
                format!("cannot cast the access policies into the cluster's RBAC, retrying: {why}"),
            ),
        };
        loop {
            let mut object: Object<Cluster, ClusterStatus> = self.registry.get(path).await?;
            let before = object.status.clone();
            let now = (self.clock)();
            set_condition(
                &mut object.status.conditions,
                CONDITION,
                status,
                reason,
                message.clone(),
                now,
            );
            for name in &report.replaced {
                record_event(
                    &mut object.status,
                    now,
                    true,
                    "RbacObjectReplaced",
                    format!(
                        "{name} held a name Dialtone's access projection uses and was not made by Dialtone; it was replaced"
                    ),
                );
            }
            if object.status == before {
                return Ok(());
            }
            match self.registry.update_status(path, object).await {
                Err(RegistryError::Conflict(_)) => continue,
                other => return other.map(drop),
            }
        }
    }
}

/// Runs the projection controller until the process ends.
pub async fn run_projection_controller(projection: Arc<Projection>, resync: Duration) {
    // A cluster is not Ready before its first projection, so a new one is looked at often.
    const RETRY: Duration = Duration::from_millis(500);
    let mut resync_tick = tokio::time::interval(resync);
    let mut retry_tick = tokio::time::interval(RETRY);
    let mut retry: BTreeSet<DirtyCluster> = BTreeSet::new();
    loop {
        let mut todo = tokio::select! {
            _ = projection.index.dirty_changed.notified() => projection.index.take_dirty(),
            _ = resync_tick.tick() => projection.index.clusters(),
            _ = retry_tick.tick() => std::mem::take(&mut retry),
        };
        todo.extend(projection.index.take_dirty());
        let outcomes = futures::future::join_all(todo.into_iter().map(|cluster| {
            let projection = projection.clone();
            async move {
                let pass = projection.reconcile(&cluster).await;
                (cluster, pass)
            }
        }))
        .await;
        for (cluster, pass) in outcomes {
            if let Pass::Retry(why) = pass {
                tracing::debug!(cluster = %cluster.1, %why, "projection will retry");
                retry.insert(cluster);
            }
        }
    }
}
