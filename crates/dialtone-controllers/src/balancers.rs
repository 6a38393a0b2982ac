//! Services of `type: LoadBalancer`, served by the cloud's load balancers as a
//! cloud-controller-manager's service controller serves them, through the `Provider` trait
//! so that the sim and `aws` share this code. Each pass over a settled cluster:
//!
//! - a Service that wants a load balancer is held by upstream's cleanup finalizer, gets a
//!   load balancer in the subnets of the cluster's API endpoint whose listeners forward
//!   each port to its node port on every worker, and, once the load balancer is up, its
//!   address in `status.loadBalancer.ingress`;
//! - ports named by the TLS annotation (`service.beta.kubernetes.io/aws-load-balancer-ssl-cert`
//!   and `…-ssl-ports`, the names charts already use for AWS) terminate TLS at the load
//!   balancer with the certificate it references;
//! - listeners and targets follow the Service's ports and the cluster's workers, and the
//!   nodes' security group lets the node ports in from `loadBalancerSourceRanges` (the
//!   internet, or the VPC for an internal one);
//! - a Service deleted, or no longer of `type: LoadBalancer`, loses its load balancer, then
//!   its finalizer and its address.

use std::collections::{BTreeMap, BTreeSet};

use dialtone_cloud::tags::{ROLE_WORKER, TAG_CLUSTER, TAG_OWNER, TAG_PART, TAG_ROLE, TAG_SERVICE};
use dialtone_cloud::{
    Change, CloudResource, CreateRequest, IngressRule, Listener, Protocol, Provider, ResourceKind,
    ResourceSpec, ResourceState, Tags,
};
use dialtone_kube::services::{self, BalancedService};
use dialtone_types::cluster::{ClusterPlan, ClusterStatus};
use ipnet::Ipv4Net;
use jiff::Timestamp;

use crate::cluster::record_event;

/// The certificate TLS is terminated with (an ACM certificate's ARN on AWS).
pub const TLS_CERTIFICATE: &str = "service.beta.kubernetes.io/aws-load-balancer-ssl-cert";
/// The ports (numbers or names, comma-separated, `*` for all) that terminate TLS; all of
/// them when absent.
pub const TLS_PORTS: &str = "service.beta.kubernetes.io/aws-load-balancer-ssl-ports";
/// `"true"`: reachable only from inside the VPC and its peers.
pub const INTERNAL: &str = "service.beta.kubernetes.io/aws-load-balancer-internal";

/// The node ports Services get; rules for them on the nodes' security group are this
/// controller's, and no other rule of the plan uses them.
pub(crate) const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;

/// The listeners a Service asks for; an error names what is wrong with its annotations.
/// Ports still without a node port are left out until the cluster allocates one.
pub fn listeners(service: &BalancedService) -> Result<Vec<Listener>, String> {
    let certificate = service.annotations.get(TLS_CERTIFICATE);
    let tls_ports: Option<Vec<&str>> = service
        .annotations
        .get(TLS_PORTS)
        .map(|ports| ports.split(',').map(str::trim).collect());
    if let Some(named) = &tls_ports {
        for wanted in named {
            let known = *wanted == "*"
                || service
                    .ports
                    .iter()
                    .any(|p| p.name == *wanted || p.port.to_string() == *wanted);
            if !known {
                return Err(format!(
                    "{TLS_PORTS} names `{wanted}`, which is not a port of the Service; its ports: {}",
                    service
                        .ports
                        .iter()
                        .map(|p| format!("{} ({})", p.port, p.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
    }
    let terminates = |port: &services::ServicePort| match &tls_ports {
        None => true,
        Some(named) => named
            .iter()
            .any(|n| *n == "*" || *n == port.name || *n == port.port.to_string()),
    };
    let mut listeners: Vec<Listener> = service
        .ports
        .iter()
        .filter(|p| p.node_port != 0)
        .map(|p| Listener {
            port: p.port,
            node_port: p.node_port,
            certificate: certificate.filter(|_| terminates(p)).cloned(),
        })
        .collect();
    listeners.sort();
    Ok(listeners)
}

/// Who the node ports of a Service's load balancer are open to.
fn sources(service: &BalancedService, public: bool, vpc: Ipv4Net) -> Vec<Ipv4Net> {
    let ranges: Vec<Ipv4Net> = service
        .source_ranges
        .iter()
        .filter_map(|r| r.parse().ok())
        .collect();
    match (ranges.is_empty(), public) {
        (false, _) => ranges,
        (true, true) => vec![Ipv4Net::default()],
        (true, false) => vec![vpc],
    }
}

/// One pass over a settled cluster's load-balanced Services.
pub struct Balancers<'a> {
    pub provider: &'a dyn Provider,
    pub client: &'a kube::Client,
    pub plan: &'a ClusterPlan,
    pub cluster_uid: &'a str,
    /// The cluster's path, for the owner tag.
    pub owner: &'a str,
    /// The cluster's resources, as the lifecycle just described them.
    pub resources: &'a [CloudResource],
    pub now: Timestamp,
}

impl Balancers<'_> {
    /// Brings the load balancers in line with the Services; whether one is still on its
    /// way (the next pass should come soon).
    pub async fn pass(&self, status: &mut ClusterStatus) -> Result<bool, String> {
        let services = services::balanced(self.client)
            .await
            .map_err(|e| e.to_string())?;
        let balancers: Vec<&CloudResource> = self
            .resources
            .iter()
            .filter(|r| r.spec.kind() == ResourceKind::ServiceLoadBalancer)
            .collect();
        let Some(subnet_ids) = self.resources.iter().find_map(|r| match &r.spec {
            ResourceSpec::LoadBalancer { subnet_ids, .. } => Some(subnet_ids.clone()),
            _ => None,
        }) else {
            return Ok(false);
        };
        let mut workers: Vec<String> = self
            .resources
            .iter()
            .filter(|r| {
                r.spec.kind() == ResourceKind::Instance
                    && r.state == ResourceState::Available
                    && r.tags.get(TAG_ROLE).map(String::as_str) == Some(ROLE_WORKER)
            })
            .map(|r| r.id.clone())
            .collect();
        workers.sort();
        let region = self.plan.region.as_str();
        let mut busy = false;
        let mut open: BTreeSet<IngressRule> = BTreeSet::new();
        for service in &services {
            let found = balancers
                .iter()
                .find(|b| b.tags.get(TAG_SERVICE) == Some(&service.uid));
            if !service.wanted {
                busy |= self.retire(service, found.copied(), status).await?;
                continue;
            }
            if !service.held {
                services::hold(self.client, service)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            let listeners = match listeners(service) {
                Ok(listeners) => listeners,
                Err(message) => {
                    self.event(status, true, "LoadBalancerInvalid", service, message)
                        .await;
                    continue;
                }
            };
            if listeners.is_empty() {
                busy = true;
                continue;
            }
            let public = service.annotations.get(INTERNAL).map(String::as_str) != Some("true");
            for listener in &listeners {
                for source in sources(service, public, self.plan.network.vpc_cidr) {
                    open.insert(IngressRule::tcp(listener.node_port, source));
                }
            }
            let Some(balancer) = found else {
                let request = CreateRequest {
                    client_token: format!("{}/service/{}", self.cluster_uid, service.uid),
                    spec: ResourceSpec::ServiceLoadBalancer {
                        subnet_ids: subnet_ids.clone(),
                        public,
                        listeners,
                        targets: workers.clone(),
                    },
                    tags: self.tags(service),
                    bootstrap: None,
                };
                match self.provider.create(region, request).await {
                    Ok(created) => {
                        self.event(
                            status,
                            false,
                            "EnsuringLoadBalancer",
                            service,
                            format!("creating load balancer {}", created.id),
                        )
                        .await
                    }
                    Err(e) => self.failed(status, service, e.to_string()).await,
                }
                busy = true;
                continue;
            };
            if let ResourceSpec::ServiceLoadBalancer {
                listeners: current,
                targets,
                ..
            } = &balancer.spec
            {
                let mut changes = Vec::new();
                if *current != listeners {
                    changes.push(Change::SetListeners(listeners));
                }
                if *targets != workers {
                    changes.push(Change::SetTargets(workers.clone()));
                }
                for change in changes {
                    if let Err(message) = self.modify(&balancer.id, change).await {
                        self.failed(status, service, message).await;
                        busy = true;
                    }
                }
            }
            if balancer.state != ResourceState::Available {
                busy = true;
                continue;
            }
            if service.ingress != [balancer.address.clone()] {
                services::set_ingress(self.client, service, Some(&balancer.address))
                    .await
                    .map_err(|e| e.to_string())?;
                self.event(
                    status,
                    false,
                    "EnsuredLoadBalancer",
                    service,
                    format!("load balancer {} at {}", balancer.id, balancer.address),
                )
                .await;
            }
        }
        // A load balancer whose Service is gone without its finalizer goes too.
        for balancer in &balancers {
            let served = services
                .iter()
                .any(|s| balancer.tags.get(TAG_SERVICE) == Some(&s.uid));
            if !served && balancer.state != ResourceState::Deleting {
                self.delete(&balancer.id).await?;
            }
        }
        self.open_node_ports(&open).await?;
        Ok(busy)
    }

    /// A Service that no longer wants its load balancer: the load balancer goes, then
    /// the Service's address and finalizer. Whether it is still going.
    async fn retire(
        &self,
        service: &BalancedService,
        balancer: Option<&CloudResource>,
        status: &mut ClusterStatus,
    ) -> Result<bool, String> {
        if let Some(balancer) = balancer {
            if balancer.state != ResourceState::Deleting {
                self.delete(&balancer.id).await?;
                self.event(
                    status,
                    false,
                    "DeletingLoadBalancer",
                    service,
                    format!("deleting load balancer {}", balancer.id),
                )
                .await;
            }
            return Ok(true);
        }
        if !service.ingress.is_empty() {
            // A deleted Service keeps its status; one whose type changed loses the address.
            let _ = services::set_ingress(self.client, service, None).await;
        }
        if service.held {
            services::release(self.client, service)
                .await
                .map_err(|e| e.to_string())?;
            self.event(
                status,
                false,
                "DeletedLoadBalancer",
                service,
                "load balancer deleted".into(),
            )
            .await;
        }
        Ok(false)
    }

    /// The nodes' security group lets in exactly the node ports of the load balancers.
    async fn open_node_ports(&self, wanted: &BTreeSet<IngressRule>) -> Result<(), String> {
        let Some((group, ingress)) = self.resources.iter().find_map(|r| match &r.spec {
            ResourceSpec::SecurityGroup { ingress, .. }
                if r.tags.get(TAG_PART).map(String::as_str) == Some("sg") =>
            {
                Some((r.id.as_str(), ingress))
            }
            _ => None,
        }) else {
            return Ok(());
        };
        let current: BTreeSet<IngressRule> = ingress
            .iter()
            .filter(|r| r.protocol == Protocol::Tcp && NODE_PORTS.contains(&r.port))
            .cloned()
            .collect();
        for rule in wanted.difference(&current) {
            self.modify(group, Change::AllowIngress(rule.clone()))
                .await?;
        }
        for rule in current.difference(wanted) {
            self.modify(group, Change::RevokeIngress(rule.clone()))
                .await?;
        }
        Ok(())
    }

    fn tags(&self, service: &BalancedService) -> Tags {
        BTreeMap::from([
            (TAG_CLUSTER.to_string(), self.cluster_uid.to_string()),
            (TAG_OWNER.to_string(), self.owner.to_string()),
            (
                TAG_PART.to_string(),
                format!("service/{}/{}", service.namespace, service.name),
            ),
            (TAG_SERVICE.to_string(), service.uid.clone()),
        ])
    }

    async fn modify(&self, id: &str, change: Change) -> Result<(), String> {
        self.provider
            .modify(&self.plan.region, id, change)
            .await
            .map_err(|e| e.to_string())
    }

    async fn delete(&self, id: &str) -> Result<(), String> {
        match self.provider.delete(&self.plan.region, id).await {
            Ok(()) | Err(dialtone_cloud::CloudError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The cloud refused what the Service asks for (a certificate it does not hold, a
    /// quota): said on the cluster, tried again next pass.
    async fn failed(&self, status: &mut ClusterStatus, service: &BalancedService, message: String) {
        self.event(status, true, "SyncLoadBalancerFailed", service, message)
            .await;
    }

    /// Says what happened on the cluster's events and, as upstream's service controller
    /// does, on the Service's, where `kubectl describe service` shows it; once, not again
    /// on every pass that finds the same.
    async fn event(
        &self,
        status: &mut ClusterStatus,
        warning: bool,
        reason: &str,
        service: &BalancedService,
        message: String,
    ) {
        let recorded = record_event(
            status,
            self.now,
            warning,
            reason,
            format!("Service {}/{}: {message}", service.namespace, service.name),
        );
        if recorded {
            let kind = if warning { "Warning" } else { "Normal" };
            if let Err(e) = services::event(self.client, service, kind, reason, &message).await {
                tracing::debug!(cluster = self.cluster_uid, error = %e, "cannot record a Service event");
            }
        }
    }
}
