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
use dialtone_types::{
    Cluster, ClusterCondition, ClusterStatus, ConditionStatus, Object, ResourcePath,
};

use crate::access::{AccessIndex, DirtyCluster};
use crate::cluster::{record_event, set_condition};
use crate::runtime::backoff::Backoff;
use crate::runtime::controller::Controller;
use crate::runtime::{Next, Reconciler, Supervisor};

pub struct Projection {
    pub registry: Registry,
    pub index: Arc<AccessIndex>,
    pub clients: Arc<Clients>,
    pub guard: GuardEndpoint,
    pub clock: fn() -> jiff::Timestamp,
}

/// While a cluster's API does not serve yet, it is looked at this often: a cluster is not
/// Ready before its first projection.
const NOT_SERVING_YET: Duration = Duration::from_millis(500);

/// A failed projection is retried from 500 ms up to 30 s apart.
const RETRY: Backoff = Backoff {
    base: Duration::from_millis(500),
    cap: Duration::from_secs(30),
};

/// What a pass tells the cluster's status.
struct Report {
    /// `Ok` once the cluster holds its projected RBAC; the failure otherwise.
    outcome: Result<(), String>,
    /// Objects that held names the projection uses, which it replaced.
    replaced: Vec<String>,
}

impl Projection {
    /// Projects one cluster's policy into it.
    async fn project(&self, DirtyCluster { org, cluster }: &DirtyCluster) -> Result<Next, String> {
        let names: Vec<String> = cluster.split('/').map(String::from).collect();
        let Ok(path) = ResourcePath::from_names(&CLUSTER, &names) else {
            return Ok(Next::Done);
        };
        let object: Object<Cluster, ClusterStatus> = match self.registry.get(&path).await {
            Ok(object) => object,
            Err(RegistryError::NotFound(_)) => return Ok(Next::Done),
            Err(e) => return Err(e.to_string()),
        };
        if object.metadata.deletion_timestamp.is_some()
            || !self.registry.homed_here(&object.metadata)
        {
            return Ok(Next::Done);
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
            return Ok(Next::Done);
        };
        let client = match self.clients.client(&object.metadata.uid) {
            Ok(client) => client,
            Err(KubeError::NotServing) => return Ok(Next::After(NOT_SERVING_YET)),
            Err(e) => return Err(e.to_string()),
        };
        // New namespaces start at the plan's level; the lifecycle keeps them there.
        let pod_security = object.status.plan.as_ref().map_or("baseline", |p| {
            p.settings.security.pod_security_level.as_str()
        });
        let mut replaced = Vec::new();
        let applied = async {
            ensure_guard(&client, &self.guard).await?;
            sync_namespaces(&client, &namespaces, pod_security).await?;
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
        applied.map(|()| Next::Done).map_err(|e| e.to_string())
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
                ClusterCondition::AccessProjected,
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

impl Reconciler for Projection {
    type Key = DirtyCluster;
    type Error = String;

    async fn reconcile(&self, cluster: &DirtyCluster) -> Result<Next, String> {
        self.project(cluster).await
    }

    fn error_policy(&self, _cluster: &DirtyCluster, _error: &String, failures: u32) -> Duration {
        RETRY.delay(failures)
    }
}

/// Runs the projection controller under `supervisor`: for the clusters each change of the
/// access index reaches, and for every cluster, spread over each `resync`.
pub fn spawn_projection_controller(
    supervisor: &Arc<Supervisor>,
    projection: Arc<Projection>,
    resync: Duration,
) {
    let index = projection.index.clone();
    // A pass mostly waits for the cluster's API, so several run at once.
    let controller = Controller::new(
        projection,
        16,
        supervisor.controllers().controller("rbac-projection"),
    );
    supervisor.spawn_leading("rbac-projection", {
        let controller = controller.clone();
        move |_| controller.clone().run()
    });
    supervisor.spawn("rbac-projection-triggers", {
        let (controller, index) = (controller.clone(), index.clone());
        move |_| {
            let (controller, index) = (controller.clone(), index.clone());
            async move {
                loop {
                    // Registered before taking, so that a change made in between wakes us.
                    let changed = index.dirty_changed.notified();
                    for cluster in index.take_dirty() {
                        controller.queue().add(cluster);
                    }
                    changed.await;
                }
            }
        }
    });
    supervisor.spawn_leading("rbac-projection-resync", move |_| {
        let index = index.clone();
        controller.clone().resync(resync, move || {
            std::future::ready(index.clusters().into_iter().collect())
        })
    });
}
