//! Connections: a production cluster's VPC peered with a customer's VPC. The controller asks
//! for the peering, follows it through the customer's answer, and once it is active routes
//! the peer's ranges through it from every route table of the cluster's VPC and lets them
//! into the nodes' security group as the connection asks. On delete it takes routes and
//! rules away, then the peering.
//!
//! Crash-safe as cluster creation is: the peering is found again by the connection's uid in
//! its tags (and made with a token derived from it), routes by their target, and rules by
//! their source (a peer range overlaps no other range of the cluster, so a rule from inside
//! it is this connection's). The peering also carries the cluster's tag, so a cluster torn
//! down takes its peerings with it.

use std::sync::Arc;
use std::time::Duration;

use dialtone_cloud::tags::{TAG_CLUSTER, TAG_CONNECTION, TAG_NETWORK, TAG_OWNER, TAG_PART};
use dialtone_cloud::{
    Change, CloudError, CloudResource, CreateRequest, Filter, IngressRule, PeeringState, Provider,
    ResourceKind, ResourceSpec, ResourceState, Route, Tags,
};
use dialtone_store::registry::{Registry, RegistryError};
use dialtone_types::cluster::{ClusterEvent, ClusterPlan};
use dialtone_types::connection::CONNECTION;
use dialtone_types::kinds::CLUSTER;
use dialtone_types::{
    Cluster, ClusterStatus, Condition, ConditionStatus, Connection, ConnectionStatus, Object,
    ResourcePath,
};
use ipnet::Ipv4Net;
use jiff::Timestamp;

use crate::cluster::network_key;
use crate::runtime::controller::Controller;
use crate::runtime::{Informer, Next, Reconciler, Supervisor, triggers};

/// Held by every connection until its routes, rules and peering are gone.
pub const CONNECTION_FINALIZER: &str = "dialtone.dev/peering";

/// The security group of a cluster's nodes, by its part tag.
const NODE_SECURITY_GROUP: &str = "sg";

/// The conditions a connection reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionCondition {
    /// The customer accepted the peering and the cloud made it active.
    Accepted,
    /// Routes to the peer and the rules the connection asks for are in place.
    Routed,
    /// Traffic can flow, as far as the cluster's side goes.
    Ready,
}

impl ConnectionCondition {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionCondition::Accepted => "Accepted",
            ConnectionCondition::Routed => "Routed",
            ConnectionCondition::Ready => "Ready",
        }
    }
}

/// Why a pass stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error(transparent)]
    Store(#[from] RegistryError),
    #[error("{0}")]
    Cloud(#[from] CloudError),
}

/// The connection controller's reconciler.
pub struct Connections {
    pub registry: Registry,
    pub provider: Arc<dyn Provider>,
    pub clock: fn() -> Timestamp,
    /// How soon a connection waiting on the customer or the cloud is looked at again, when
    /// the cloud's feed does not wake it first.
    pub poll: Duration,
}

/// A connection's cluster, as far as a connection needs it.
struct Site<'a> {
    uid: &'a str,
    plan: &'a ClusterPlan,
    network: String,
}

fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: ConnectionCondition,
    status: ConditionStatus,
    reason: &str,
    message: String,
    now: Timestamp,
) {
    Condition::set(conditions, type_.as_str(), status, reason, message, now);
}

/// Events kept in a connection's status.
const EVENTS_KEPT: usize = 10;

/// The routes through `peering_id` in `tables`, as `rtb-… → range`.
fn routes_through(tables: &[&CloudResource], peering_id: &str) -> Vec<String> {
    tables
        .iter()
        .flat_map(|table| match &table.spec {
            ResourceSpec::RouteTable { routes, .. } => routes
                .iter()
                .filter(|r| r.target == peering_id)
                .map(|r| format!("{} → {}", table.id, r.destination))
                .collect(),
            _ => Vec::new(),
        })
        .collect()
}

/// The ingress rules the spec asks for, one set per peer range.
fn wanted_rules(spec: &Connection) -> Vec<IngressRule> {
    spec.peer_networks()
        .into_iter()
        .flat_map(|source| {
            if spec.allow_all {
                vec![IngressRule::all(source)]
            } else {
                spec.allow_ports
                    .iter()
                    .map(|&port| IngressRule::tcp(port, source))
                    .collect()
            }
        })
        .collect()
}

/// What a peering does not do, for the connection's status.
fn limits(spec: &Connection, region: &str) -> Vec<String> {
    let mtu = if spec.peer_region == region {
        "MTU: up to 9001 bytes across a peering within a region"
    } else {
        "MTU: 1500 bytes across a peering between regions; larger packets are dropped"
    };
    vec![
        mtu.to_string(),
        "No transitive routing: the cluster reaches the peer VPC's own addresses, not networks \
         beyond it (its VPN, Direct Connect, internet or NAT gateways, other peerings)"
            .to_string(),
        format!(
            "DNS: the peer's private names resolve to private addresses only with DNS resolution \
             across the peering enabled on both sides{}",
            if spec.peer_region == region {
                ""
            } else {
                " (between regions, only for names of instances in the peered VPCs)"
            }
        ),
    ]
}

impl Connections {
    async fn reconcile(&self, path: &ResourcePath) -> Result<Next, ConnectionError> {
        let connection: Object<Connection, ConnectionStatus> = match self.registry.get(path).await {
            Ok(c) => c,
            Err(RegistryError::NotFound(_)) => return Ok(Next::Done),
            Err(e) => return Err(e.into()),
        };
        if !self.registry.homed_here(&connection.metadata) {
            return Ok(Next::Done);
        }
        let Some(cluster_path) = path.parent() else {
            return Ok(Next::Done);
        };
        let cluster: Option<Object<Cluster, ClusterStatus>> =
            match self.registry.get(&cluster_path).await {
                Ok(c) => Some(c),
                Err(RegistryError::NotFound(_)) => None,
                Err(e) => return Err(e.into()),
            };
        let site = cluster.as_ref().and_then(|c| {
            let plan = c.status.plan.as_ref()?;
            Some(Site {
                uid: &c.metadata.uid,
                plan,
                network: network_key(&cluster_path, &c.metadata.uid, plan),
            })
        });
        if connection.metadata.deletion_timestamp.is_some() {
            return self.tear_down(path, connection, site.as_ref()).await;
        }
        let Some(site) = site else {
            // Its cluster is being planned, or gone (and the connection with it).
            return Ok(Next::After(self.poll));
        };
        let mut connection = connection;
        let mut status = connection.status.clone();
        status.observed_generation = connection.metadata.generation;
        let outcome = self
            .converge(path, &mut connection, &site, &mut status)
            .await;
        let next = match &outcome {
            Ok(next) => Ok(*next),
            Err(e) => {
                let now = (self.clock)();
                let (reason, message) = match e {
                    ConnectionError::Cloud(e) => (e.reason(), e.to_string()),
                    ConnectionError::Store(e) => ("StoreUnavailable", e.to_string()),
                };
                set_condition(
                    &mut status.conditions,
                    ConnectionCondition::Ready,
                    ConditionStatus::False,
                    reason,
                    format!("{message}; retrying with backoff"),
                    now,
                );
                Err(())
            }
        };
        if status != connection.status {
            let mut updated = connection.clone();
            updated.status = status;
            self.registry.update_status(path, updated).await?;
        }
        match next {
            Ok(next) => Ok(next),
            Err(()) => outcome,
        }
    }

    /// One pass toward what the connection asks for; the status says where it stands.
    async fn converge(
        &self,
        path: &ResourcePath,
        connection: &mut Object<Connection, ConnectionStatus>,
        site: &Site<'_>,
        status: &mut ConnectionStatus,
    ) -> Result<Next, ConnectionError> {
        let now = (self.clock)();
        let spec = &connection.spec.clone();
        let region = site.plan.region.as_str();
        let vpc_cidr = site.plan.network.vpc_cidr;
        status.cluster_cidrs = vec![vpc_cidr.to_string()];
        status.limits = limits(spec, region);
        let network = self
            .provider
            .describe(region, &Filter::tagged(TAG_NETWORK, &site.network))
            .await?;
        let Some(vpc) = network
            .iter()
            .find(|r| r.spec.kind() == ResourceKind::Vpc && r.state == ResourceState::Available)
        else {
            set_condition(
                &mut status.conditions,
                ConnectionCondition::Ready,
                ConditionStatus::False,
                "WaitingForNetwork",
                "the cluster's VPC is still being made; the peering is requested once it exists"
                    .into(),
                now,
            );
            return Ok(Next::After(self.poll));
        };
        let peering = match self.peering(region, &connection.metadata.uid).await? {
            Some(found) => found,
            // The request made last may not be listed yet: wait rather than ask twice.
            None if self.may_be_unlisted(status, now) => {
                set_condition(
                    &mut status.conditions,
                    ConnectionCondition::Ready,
                    ConditionStatus::False,
                    "WaitingForCloud",
                    "the peering asked for is not listed by the cloud yet".into(),
                    now,
                );
                return Ok(Next::After(self.poll.min(Duration::from_secs(1))));
            }
            // It was made and is gone: deleted outside Dialtone. Asking again would send the
            // customer a request nobody made; the user decides.
            None if !status.peering_id.is_empty() => {
                status.state = Some(PeeringState::Deleted);
                status.expires_at = None;
                status.routes.clear();
                let message = format!(
                    "{} was deleted outside Dialtone (by the peer account?); delete this connection, and create it again to ask again",
                    status.peering_id
                );
                for condition in [ConnectionCondition::Accepted, ConnectionCondition::Ready] {
                    set_condition(
                        &mut status.conditions,
                        condition,
                        ConditionStatus::False,
                        "PeeringDeleted",
                        message.clone(),
                        now,
                    );
                }
                let tables: Vec<&CloudResource> = network
                    .iter()
                    .filter(|r| r.spec.kind() == ResourceKind::RouteTable)
                    .collect();
                let gone = status.peering_id.clone();
                self.converge_routes(region, &tables, &gone, spec, false)
                    .await?;
                self.converge_rules(region, site.uid, spec, false).await?;
                return Ok(Next::Done);
            }
            None => {
                // Recorded first, so that a request whose answer is lost is waited for.
                status.requested_at = Some(now);
                let mut ahead = connection.clone();
                ahead.status = status.clone();
                *connection = self.registry.update_status(path, ahead).await?;
                let tags = Tags::from([
                    (TAG_CLUSTER.to_string(), site.uid.to_string()),
                    (TAG_CONNECTION.to_string(), connection.metadata.uid.clone()),
                    (TAG_OWNER.to_string(), path.to_string()),
                    (TAG_PART.to_string(), format!("connection-{}", path.name())),
                ]);
                let request = CreateRequest {
                    client_token: format!("{}/peering", connection.metadata.uid),
                    spec: ResourceSpec::VpcPeering {
                        vpc_id: vpc.id.clone(),
                        peer_account: spec.peer_account.clone(),
                        peer_vpc_id: spec.peer_vpc.clone(),
                        peer_region: spec.peer_region.clone(),
                    },
                    tags,
                    bootstrap: None,
                };
                self.provider.create(region, request).await?
            }
        };
        let progress = peering
            .peering
            .clone()
            .unwrap_or(dialtone_cloud::PeeringStatus {
                state: PeeringState::InitiatingRequest,
                message: String::new(),
                peer_cidr: None,
                expires_at: None,
            });
        status.peering_id = peering.id.clone();
        status.state = Some(progress.state);
        status.state_message = progress.message.clone();
        status.expires_at = progress.expires_at;
        let active = progress.state == PeeringState::Active;
        let tables: Vec<&CloudResource> = network
            .iter()
            .filter(|r| r.spec.kind() == ResourceKind::RouteTable)
            .collect();
        let before = routes_through(&tables, &peering.id);
        let routes = self
            .converge_routes(region, &tables, &peering.id, spec, active)
            .await?;
        self.converge_rules(region, site.uid, spec, active).await?;
        // A route that was in place and had to be added again was taken away outside
        // Dialtone.
        let lost: Vec<&String> = routes
            .iter()
            .filter(|r| status.routes.contains(r) && !before.contains(*r))
            .collect();
        if !lost.is_empty() {
            let message = format!(
                "route(s) {} were removed outside Dialtone; added back",
                lost.iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            ClusterEvent::record(
                &mut status.events,
                EVENTS_KEPT,
                now,
                true,
                "DriftRestored",
                message,
            );
        }
        status.routes = routes;
        let (accepted, reason, message, next) = match progress.state {
            PeeringState::InitiatingRequest => (
                ConditionStatus::Unknown,
                "Requesting",
                "the cloud is looking up the peer VPC".to_string(),
                Next::After(self.poll),
            ),
            PeeringState::PendingAcceptance => (
                ConditionStatus::False,
                "PendingAcceptance",
                format!(
                    "waiting for account {} to accept {}{}",
                    spec.peer_account,
                    peering.id,
                    progress
                        .expires_at
                        .map(|at| format!(" before {at}"))
                        .unwrap_or_default()
                ),
                Next::After(self.poll),
            ),
            PeeringState::Provisioning => (
                ConditionStatus::Unknown,
                "Provisioning",
                "accepted; the cloud is making the peering active".to_string(),
                Next::After(self.poll),
            ),
            PeeringState::Active => (
                ConditionStatus::True,
                "Active",
                format!("{} is active", peering.id),
                Next::After(self.poll * 20),
            ),
            PeeringState::Rejected => (
                ConditionStatus::False,
                "Rejected",
                format!(
                    "account {} rejected {}; delete this connection, and create it again to ask again",
                    spec.peer_account, peering.id
                ),
                Next::Done,
            ),
            PeeringState::Expired => (
                ConditionStatus::False,
                "Expired",
                format!(
                    "account {} did not accept {} in time; delete this connection, and create it again to ask again",
                    spec.peer_account, peering.id
                ),
                Next::Done,
            ),
            PeeringState::Failed => (
                ConditionStatus::False,
                "Failed",
                format!(
                    "the cloud could not make {}: {}; check the peer account, VPC and region, then delete this connection and create it again",
                    peering.id, progress.message
                ),
                Next::Done,
            ),
            PeeringState::Deleting | PeeringState::Deleted => (
                ConditionStatus::False,
                "PeeringDeleted",
                format!(
                    "{} was deleted outside Dialtone (by the peer account?); delete this connection, and create it again to ask again",
                    peering.id
                ),
                Next::Done,
            ),
        };
        set_condition(
            &mut status.conditions,
            ConnectionCondition::Accepted,
            accepted,
            reason,
            message.clone(),
            now,
        );
        let routed = if active {
            (
                ConditionStatus::True,
                "RoutesInPlace",
                format!(
                    "{} route(s) to the peer in the cluster's VPC; the nodes' security group lets in {}",
                    status.routes.len(),
                    describe_rules(spec)
                ),
            )
        } else {
            (
                ConditionStatus::False,
                "WaitingForPeering",
                "routes are added once the peering is active".to_string(),
            )
        };
        set_condition(
            &mut status.conditions,
            ConnectionCondition::Routed,
            routed.0,
            routed.1,
            routed.2,
            now,
        );
        let (ready, ready_reason, ready_message) = if active {
            (
                ConditionStatus::True,
                "Active",
                format!(
                    "pods reach {} through {}",
                    spec.peer_cidrs.join(", "),
                    peering.id
                ),
            )
        } else {
            (ConditionStatus::False, reason, message)
        };
        set_condition(
            &mut status.conditions,
            ConnectionCondition::Ready,
            ready,
            ready_reason,
            ready_message,
            now,
        );
        status.next_steps = self.next_steps(spec, &peering.id, progress.state, vpc_cidr);
        Ok(next)
    }

    /// Whether a peering asked for may exist but not be listed yet.
    fn may_be_unlisted(&self, status: &ConnectionStatus, now: Timestamp) -> bool {
        let window = jiff::SignedDuration::try_from(self.provider.consistency_window())
            .unwrap_or(jiff::SignedDuration::MAX);
        status
            .requested_at
            .is_some_and(|at| now < at.checked_add(window).unwrap_or(Timestamp::MAX))
    }

    /// The connection's peering, found by its uid; an ended one only if no other is left.
    async fn peering(
        &self,
        region: &str,
        connection_uid: &str,
    ) -> Result<Option<CloudResource>, CloudError> {
        let mut found = self
            .provider
            .describe(
                region,
                &Filter::tagged(TAG_CONNECTION, connection_uid).kind(ResourceKind::VpcPeering),
            )
            .await?;
        found.sort_by_key(|p| p.peering.as_ref().is_some_and(|s| s.state.is_final()));
        Ok(found.into_iter().next())
    }

    /// Routes to every peer range through the peering from every table of the VPC while
    /// it is active, and none otherwise; the routes in place, as `rtb-… → range`.
    async fn converge_routes(
        &self,
        region: &str,
        tables: &[&CloudResource],
        peering_id: &str,
        spec: &Connection,
        active: bool,
    ) -> Result<Vec<String>, CloudError> {
        let wanted: Vec<Ipv4Net> = match active {
            true => spec.peer_networks(),
            false => Vec::new(),
        };
        let mut in_place = Vec::new();
        for table in tables {
            let ResourceSpec::RouteTable { routes, .. } = &table.spec else {
                continue;
            };
            for route in routes.iter().filter(|r| r.target == peering_id) {
                if !wanted.contains(&route.destination) {
                    let change = Change::RemoveRoute {
                        destination: route.destination,
                    };
                    self.provider.modify(region, &table.id, change).await?;
                }
            }
            for &destination in &wanted {
                let route = Route {
                    destination,
                    target: peering_id.to_string(),
                };
                if !routes.contains(&route) {
                    let change = Change::AddRoute(route);
                    self.provider.modify(region, &table.id, change).await?;
                }
                in_place.push(format!("{} → {destination}", table.id));
            }
        }
        Ok(in_place)
    }

    /// The nodes' security group lets the peer's ranges in as the spec asks while the
    /// peering is active, and not at all otherwise.
    async fn converge_rules(
        &self,
        region: &str,
        cluster_uid: &str,
        spec: &Connection,
        active: bool,
    ) -> Result<(), CloudError> {
        let groups = self
            .provider
            .describe(
                region,
                &Filter::tagged(TAG_CLUSTER, cluster_uid).kind(ResourceKind::SecurityGroup),
            )
            .await?;
        let Some(group) = groups
            .iter()
            .find(|g| g.tags.get(TAG_PART).map(String::as_str) == Some(NODE_SECURITY_GROUP))
        else {
            return Ok(());
        };
        let ResourceSpec::SecurityGroup { ingress, .. } = &group.spec else {
            return Ok(());
        };
        let wanted = match active {
            true => wanted_rules(spec),
            false => Vec::new(),
        };
        let peer = spec.peer_networks();
        let ours = |rule: &IngressRule| peer.iter().any(|p| p.contains(&rule.source));
        for rule in ingress.iter().filter(|r| ours(r) && !wanted.contains(r)) {
            let change = Change::RevokeIngress(rule.clone());
            self.provider.modify(region, &group.id, change).await?;
        }
        for rule in wanted.iter().filter(|r| !ingress.contains(r)) {
            let change = Change::AllowIngress(rule.clone());
            self.provider.modify(region, &group.id, change).await?;
        }
        Ok(())
    }

    /// What the customer does next on their side, with the exact commands.
    fn next_steps(
        &self,
        spec: &Connection,
        peering_id: &str,
        state: PeeringState,
        cluster_cidr: Ipv4Net,
    ) -> Vec<String> {
        let sim = self.provider.name() != "aws";
        let region = &spec.peer_region;
        match state {
            PeeringState::PendingAcceptance if sim => vec![format!(
                "Accept the request from account {}: dialtone sim peering accept {peering_id} --account {}",
                spec.peer_account, spec.peer_account
            )],
            PeeringState::PendingAcceptance => vec![format!(
                "Accept the request from account {}: aws ec2 accept-vpc-peering-connection --vpc-peering-connection-id {peering_id} --region {region}",
                spec.peer_account
            )],
            PeeringState::Active => {
                let mut steps = Vec::new();
                if sim {
                    steps.push(
                        "None on the sim: its customers' VPCs route back as soon as the peering is active. On AWS:"
                            .to_string(),
                    );
                }
                steps.push(format!(
                    "In each route table of {} that should reach the cluster: aws ec2 create-route --route-table-id <table> --destination-cidr-block {cluster_cidr} --vpc-peering-connection-id {peering_id} --region {region}",
                    spec.peer_vpc
                ));
                steps.push(format!(
                    "Let the cluster in to your services' security groups: aws ec2 authorize-security-group-ingress --group-id <group> --protocol tcp --port <port> --cidr {cluster_cidr} --region {region}"
                ));
                steps
            }
            _ => Vec::new(),
        }
    }

    /// Routes and rules away, then the peering; then the connection may go.
    async fn tear_down(
        &self,
        path: &ResourcePath,
        connection: Object<Connection, ConnectionStatus>,
        site: Option<&Site<'_>>,
    ) -> Result<Next, ConnectionError> {
        if !connection
            .metadata
            .finalizers
            .iter()
            .any(|f| f == CONNECTION_FINALIZER)
        {
            return Ok(Next::Done);
        }
        // Without a plan the cluster never had a network: nothing was made.
        if let Some(site) = site {
            let now = (self.clock)();
            let region = site.plan.region.as_str();
            let spec = &connection.spec;
            let listed = self.peering(region, &connection.metadata.uid).await?;
            // One made but not listed yet is known by the id its status recorded.
            let recorded = &connection.status.peering_id;
            let id = listed
                .as_ref()
                .map(|p| p.id.clone())
                .or_else(|| (!recorded.is_empty()).then(|| recorded.clone()));
            match id {
                None if self.may_be_unlisted(&connection.status, now) => {
                    return Ok(Next::After(self.poll.min(Duration::from_secs(1))));
                }
                // Rules are found by their source, so none outlives a lost peering.
                None => self.converge_rules(region, site.uid, spec, false).await?,
                Some(id) => {
                    let tables = self
                        .provider
                        .describe(
                            region,
                            &Filter::tagged(TAG_NETWORK, &site.network)
                                .kind(ResourceKind::RouteTable),
                        )
                        .await?;
                    let tables: Vec<&CloudResource> = tables.iter().collect();
                    self.converge_routes(region, &tables, &id, spec, false)
                        .await?;
                    self.converge_rules(region, site.uid, spec, false).await?;
                    let ended =
                        |p: &CloudResource| p.peering.as_ref().is_some_and(|s| s.state.is_final());
                    if !listed.as_ref().is_some_and(ended) {
                        if listed
                            .as_ref()
                            .is_none_or(|p| p.state != ResourceState::Deleting)
                        {
                            match self.provider.delete(region, &id).await {
                                Ok(()) | Err(CloudError::NotFound { .. }) => {}
                                Err(e) => return Err(e.into()),
                            }
                        }
                        // Gone once the cloud no longer lists it as in force.
                        let still = self.peering(region, &connection.metadata.uid).await?;
                        if still.is_some_and(|p| !ended(&p)) {
                            return Ok(Next::After(self.poll));
                        }
                    }
                }
            }
        }
        let mut done = connection;
        done.metadata
            .finalizers
            .retain(|f| f != CONNECTION_FINALIZER);
        self.registry.update(path, done).await?;
        Ok(Next::Done)
    }
}

fn describe_rules(spec: &Connection) -> String {
    let ranges = spec.peer_cidrs.join(", ");
    match (spec.allow_all, spec.allow_ports.as_slice()) {
        (true, _) => format!("all traffic from {ranges}"),
        (false, []) => format!("nothing new from {ranges} (replies only)"),
        (false, ports) => format!(
            "TCP {} from {ranges}",
            ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

impl Reconciler for Connections {
    type Key = ResourcePath;
    type Error = ConnectionError;

    async fn reconcile(&self, path: &ResourcePath) -> Result<Next, ConnectionError> {
        Connections::reconcile(self, path).await
    }
}

/// Runs the connection controller under `supervisor`: woken by every change of a
/// connection but its status, by the cloud's feed about its peering, by the waits each pass
/// asks for, and by a resync of every connection each `resync`.
pub fn spawn_connection_controller(
    supervisor: &Arc<Supervisor>,
    connections: &Arc<Informer>,
    reconciler: Arc<Connections>,
    resync: Duration,
) {
    let provider = reconciler.provider.clone();
    let controller = Controller::new(
        reconciler,
        4,
        supervisor.controllers().controller("connections"),
    );
    let queue = controller.queue().clone();
    for path in connections.paths() {
        queue.add(path);
    }
    triggers::on_cloud_changes(&*provider, queue.clone(), &CONNECTION);
    // A route taken from the cluster's route tables is put back at once.
    triggers::on_cloud_changes_under(&*provider, queue.clone(), connections.clone(), &CLUSTER);
    triggers::on_spec_changes(connections, queue);
    supervisor.spawn_leading("connections", {
        let controller = controller.clone();
        move |_| controller.clone().run()
    });
    let connections = connections.clone();
    supervisor.spawn_leading("connections-resync", move |_| {
        let connections = connections.clone();
        controller
            .clone()
            .resync(resync, move || std::future::ready(connections.paths()))
    });
}
