//! Deletion: every cloud resource of the cluster, instances and endpoint first, then the
//! network unless another cluster of the project still uses it; then the finalizer goes.

use super::*;

impl Lifecycle {
    /// Deletes every cloud resource of the cluster, then lets the object go.
    pub(super) async fn tear_down(
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
        self.sizing_memory.forget(uid);
        self.probes.forget(uid);
        self.unfollow(uid);
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
                status.health = Some(Health::Unknown);
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
        // Instances and load balancers first, then what they stood in.
        let mut left = 0;
        for r in &own {
            if matches!(
                r.spec.kind(),
                ResourceKind::Instance
                    | ResourceKind::LoadBalancer
                    | ResourceKind::ServiceLoadBalancer
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
                format!("waiting for {left} instance(s) and load balancer(s) to go"),
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
