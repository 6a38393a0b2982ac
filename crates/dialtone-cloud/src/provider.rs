//! The seam between Dialtone and a cloud. Every cloud resource a cluster needs — networks,
//! subnets, route tables, security groups, the API load balancer, instances, VPC peerings —
//! is created with an idempotency token and tags naming its owner, found again by those tags,
//! and deleted by id. The lifecycle controller needs nothing else, which is what makes it
//! safe to crash anywhere: whatever it did before, it can find.

use std::collections::BTreeMap;

pub use dialtone_types::connection::PeeringState;
pub use dialtone_types::settings::{DiskType, InstanceMetadata};
use ipnet::Ipv4Net;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::{InstanceCatalog, Region};

/// Tags on a cloud resource: how Dialtone finds what it owns.
pub type Tags = BTreeMap<String, String>;

/// The tags Dialtone puts on everything it creates, by which it, and the sim's clusters,
/// find a cluster's resources again.
pub mod tags {
    /// The uid of the cluster that owns a resource.
    pub const TAG_CLUSTER: &str = "dialtone.dev/cluster";
    /// The network a resource belongs to: a production cluster's uid, or a project and region
    /// for the network its developer clusters share.
    pub const TAG_NETWORK: &str = "dialtone.dev/network";
    /// Which part of its owner a resource is: `vpc`, `subnet-us-east-1a`, `api`, `cp-0`, …
    pub const TAG_PART: &str = "dialtone.dev/part";
    /// The instance's attempt for its slot.
    pub const TAG_ATTEMPT: &str = "dialtone.dev/attempt";
    /// The uid of the connection a peering is for.
    pub const TAG_CONNECTION: &str = "dialtone.dev/connection";
    /// The owner's path, for people reading the cloud console.
    pub const TAG_OWNER: &str = "dialtone.dev/owner";
    /// What an instance is to its cluster: [`ROLE_CONTROL_PLANE`] or [`ROLE_WORKER`].
    pub const TAG_ROLE: &str = "dialtone.dev/role";
    /// The uid of the Kubernetes Service a load balancer serves.
    pub const TAG_SERVICE: &str = "dialtone.dev/service";
    /// An instance that runs the API server and etcd.
    pub const ROLE_CONTROL_PLANE: &str = "control-plane";
    /// An instance that runs users' pods.
    pub const ROLE_WORKER: &str = "worker";
}

/// What to create. Ids of other resources are the provider's ids.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum ResourceSpec {
    Vpc {
        cidr: Ipv4Net,
    },
    Subnet {
        vpc_id: String,
        zone: String,
        cidr: Ipv4Net,
    },
    RouteTable {
        vpc_id: String,
        subnet_ids: Vec<String>,
        /// Routes through peerings, added with [`Change::AddRoute`]; a table is created
        /// with none (its VPC's local route is implied).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        routes: Vec<Route>,
    },
    SecurityGroup {
        vpc_id: String,
        /// Ports open to these sources; everything else is closed.
        ingress: Vec<IngressRule>,
    },
    /// The cluster's Kubernetes API endpoint.
    LoadBalancer {
        subnet_ids: Vec<String>,
        port: u16,
        /// Reachable from the internet, or only from inside the VPC and its peers.
        public: bool,
        /// Whether each zone's node sends traffic to targets in every zone.
        #[serde(default)]
        cross_zone: bool,
    },
    /// A Service's load balancer (what a cloud-controller-manager makes for a Service of
    /// `type: LoadBalancer`): each listener forwards a port to a node port on the targets.
    ServiceLoadBalancer {
        subnet_ids: Vec<String>,
        /// Reachable from the internet, or only from inside the VPC and its peers.
        public: bool,
        listeners: Vec<Listener>,
        /// The instances traffic goes to: the cluster's workers.
        targets: Vec<String>,
    },
    Instance {
        instance_type: String,
        zone: String,
        subnet_id: String,
        security_group_id: String,
        image: String,
        root_disk_gib: u32,
        #[serde(default = "default_disk_type")]
        disk_type: DiskType,
        /// Whether the root volume is encrypted at rest.
        #[serde(default)]
        disk_encrypted: bool,
        /// How the instance metadata service answers.
        #[serde(default = "default_metadata")]
        metadata: InstanceMetadata,
    },
    /// A request to peer `vpc_id` (the requester, in Dialtone's account) with a VPC of
    /// another account, which that account's owner accepts or rejects.
    VpcPeering {
        vpc_id: String,
        /// The accepter's 12-digit account id.
        peer_account: String,
        peer_vpc_id: String,
        peer_region: String,
    },
}

/// A port a Service's load balancer listens on, and the node port it forwards to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Listener {
    pub port: u16,
    pub node_port: u16,
    /// TLS is terminated at the load balancer with this certificate (an ACM certificate's
    /// ARN on AWS); plain TCP without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
}

/// A route of a route table: traffic to `destination` goes through the peering `target`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    pub destination: Ipv4Net,
    /// A peering's id (`pcx-…`).
    pub target: String,
}

/// A change to a resource that exists. Each is idempotent: adding what is there, or
/// removing what is not, succeeds and changes nothing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "change",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Change {
    /// To a route table. A route to the same destination through another target is refused.
    AddRoute(Route),
    RemoveRoute {
        destination: Ipv4Net,
    },
    /// To a security group.
    AllowIngress(IngressRule),
    RevokeIngress(IngressRule),
    /// To a Service's load balancer: the ports it listens on, all of them.
    SetListeners(Vec<Listener>),
    /// To a Service's load balancer: the instances it forwards to, all of them.
    SetTargets(Vec<String>),
    /// To any resource: these tags, added or overwritten (EC2's CreateTags).
    SetTags(Tags),
    /// To any resource: these tags removed (EC2's DeleteTags).
    RemoveTags(Vec<String>),
}

/// A peering as the cloud reports it, beyond its [`ResourceState`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeeringStatus {
    pub state: PeeringState,
    /// The cloud's words: `Pending Acceptance by 111122223333`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The accepter VPC's CIDR, once the cloud has looked it up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_cidr: Option<Ipv4Net>,
    /// When a request not yet answered expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
}

/// What a resource recorded before volume types were asked for was launched with.
fn default_disk_type() -> DiskType {
    DiskType::Gp3
}

/// What an instance recorded before metadata options were asked for was launched with.
fn default_metadata() -> InstanceMetadata {
    InstanceMetadata {
        tokens_required: true,
        hop_limit: 1,
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngressRule {
    /// A TCP port; ignored for [`Protocol::All`].
    pub port: u16,
    pub source: Ipv4Net,
    #[serde(default)]
    pub protocol: Protocol,
}

impl IngressRule {
    /// TCP to `port` from `source`.
    pub fn tcp(port: u16, source: Ipv4Net) -> Self {
        IngressRule {
            port,
            source,
            protocol: Protocol::Tcp,
        }
    }

    /// Every protocol and port from `source`: what nodes of one network need between
    /// them (etcd's peers, the pod network's overlay, kubelets).
    pub fn all(source: Ipv4Net) -> Self {
        IngressRule {
            port: 0,
            source,
            protocol: Protocol::All,
        }
    }
}

/// Which traffic an ingress rule lets in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Protocol {
    #[default]
    Tcp,
    All,
}

/// The kinds of resource, for filters and messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ResourceKind {
    Vpc,
    Subnet,
    RouteTable,
    SecurityGroup,
    LoadBalancer,
    ServiceLoadBalancer,
    Instance,
    VpcPeering,
}

/// Dialtone's node image for a Kubernetes release: one image per release,
/// `dialtone-node-1.35.2`.
pub fn node_image(kubernetes_version: &str) -> String {
    format!("dialtone-node-{kubernetes_version}")
}

/// The Kubernetes version a node image of [`node_image`] carries.
pub fn node_image_version(image: &str) -> Option<&str> {
    image
        .strip_prefix("dialtone-node-")
        .filter(|v| v.contains('.'))
}

impl ResourceSpec {
    /// The Kubernetes version of an instance's node image; `None` for other resources.
    pub fn node_version(&self) -> Option<&str> {
        match self {
            ResourceSpec::Instance { image, .. } => node_image_version(image),
            _ => None,
        }
    }

    pub fn kind(&self) -> ResourceKind {
        match self {
            ResourceSpec::Vpc { .. } => ResourceKind::Vpc,
            ResourceSpec::Subnet { .. } => ResourceKind::Subnet,
            ResourceSpec::RouteTable { .. } => ResourceKind::RouteTable,
            ResourceSpec::SecurityGroup { .. } => ResourceKind::SecurityGroup,
            ResourceSpec::LoadBalancer { .. } => ResourceKind::LoadBalancer,
            ResourceSpec::ServiceLoadBalancer { .. } => ResourceKind::ServiceLoadBalancer,
            ResourceSpec::Instance { .. } => ResourceKind::Instance,
            ResourceSpec::VpcPeering { .. } => ResourceKind::VpcPeering,
        }
    }

    /// The resources this one lives in: it cannot be created without them, and they cannot
    /// be deleted while it exists.
    pub fn dependencies(&self) -> Vec<&str> {
        match self {
            ResourceSpec::Vpc { .. } => vec![],
            ResourceSpec::Subnet { vpc_id, .. }
            | ResourceSpec::SecurityGroup { vpc_id, .. }
            | ResourceSpec::VpcPeering { vpc_id, .. } => vec![vpc_id],
            ResourceSpec::RouteTable {
                vpc_id, subnet_ids, ..
            } => std::iter::once(vpc_id.as_str())
                .chain(subnet_ids.iter().map(String::as_str))
                .collect(),
            ResourceSpec::LoadBalancer { subnet_ids, .. }
            | ResourceSpec::ServiceLoadBalancer { subnet_ids, .. } => {
                subnet_ids.iter().map(String::as_str).collect()
            }
            ResourceSpec::Instance {
                subnet_id,
                security_group_id,
                ..
            } => vec![subnet_id, security_group_id],
        }
    }
}

impl std::fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ResourceKind::Vpc => "vpc",
            ResourceKind::Subnet => "subnet",
            ResourceKind::RouteTable => "route table",
            ResourceKind::SecurityGroup => "security group",
            ResourceKind::LoadBalancer => "load balancer",
            ResourceKind::ServiceLoadBalancer => "service load balancer",
            ResourceKind::Instance => "instance",
            ResourceKind::VpcPeering => "vpc peering",
        })
    }
}

/// Where a resource is in its life.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum ResourceState {
    /// Being created: an instance booting, a load balancer provisioning.
    Pending,
    /// Ready for use: an instance running, a load balancer active.
    Available,
    /// Exists but does not work, for example an instance in a zone that is down.
    Impaired { reason: String },
    /// Being deleted.
    Deleting,
    /// Gone on its own (an instance that failed to boot or died); still listed so that its
    /// owner learns why, until the owner deletes it.
    Terminated { reason: String },
}

impl ResourceState {
    pub fn name(&self) -> &'static str {
        match self {
            ResourceState::Pending => "pending",
            ResourceState::Available => "available",
            ResourceState::Impaired { .. } => "impaired",
            ResourceState::Deleting => "deleting",
            ResourceState::Terminated { .. } => "terminated",
        }
    }
}

/// A resource as the cloud reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloudResource {
    pub id: String,
    pub region: String,
    pub spec: ResourceSpec,
    pub tags: Tags,
    #[serde(flatten)]
    pub state: ResourceState,
    /// An instance's private address, a load balancer's DNS name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub address: String,
    pub created_at: Timestamp,
    /// A peering's progress; `None` for every other resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peering: Option<PeeringStatus>,
}

/// An instance's billable life, as a cloud's usage report gives it: from when it started
/// running to when it was terminated or died. Kept after the instance is gone (the sim keeps
/// ended ones [`LIFETIME_RETENTION_DAYS`] days), so that usage is metered to the second
/// whenever it is read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceLifetime {
    pub id: String,
    pub region: String,
    pub instance_type: String,
    pub tags: Tags,
    /// When it started running: billing starts there.
    pub started_at: Timestamp,
    /// When it was asked to terminate, or died; `None` while it runs. At or before
    /// `started_at` for an instance that never ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Timestamp>,
}

/// How long the sim reports an ended instance's lifetime.
pub const LIFETIME_RETENTION_DAYS: i64 = 7;

/// A create call. The same `client_token` always names the same resource: repeating a
/// call whose answer was lost creates nothing new.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateRequest {
    pub client_token: String,
    pub spec: ResourceSpec,
    pub tags: Tags,
    /// For an instance: how it joins its cluster at boot. Like EC2's user data, it is part
    /// of the launch and not described back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<crate::NodeBootstrap>,
}

/// Which resources to describe: all of `tags` must match, and the kind if given.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ResourceKind>,
    #[serde(default)]
    pub tags: Tags,
}

impl Filter {
    pub fn tagged(key: &str, value: &str) -> Self {
        Filter {
            kind: None,
            tags: Tags::from([(key.to_string(), value.to_string())]),
        }
    }

    pub fn kind(mut self, kind: ResourceKind) -> Self {
        self.kind = Some(kind);
        self
    }

    pub fn matches(&self, resource: &CloudResource) -> bool {
        self.kind.is_none_or(|k| k == resource.spec.kind())
            && self
                .tags
                .iter()
                .all(|(k, v)| resource.tags.get(k) == Some(v))
    }
}

/// Why a cloud call failed. Every variant but `Invalid` and `DependencyViolation` may go
/// away on its own; the controller retries them with backoff.
#[derive(Clone, Debug, PartialEq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "error", rename_all = "camelCase")]
pub enum CloudError {
    #[error("the cloud throttled the request; retry later")]
    Throttled,
    /// The call may or may not have taken effect.
    #[error("the request timed out; it may have been applied")]
    Timeout,
    #[error("quota exceeded: {message}")]
    QuotaExceeded { message: String },
    #[error("no capacity for {instance_type} in {zone}")]
    InsufficientCapacity { zone: String, instance_type: String },
    #[error("{id} does not exist")]
    NotFound { id: String },
    #[error("{message}")]
    DependencyViolation { message: String },
    #[error("{message}")]
    Invalid { message: String },
    #[error("the cloud is unavailable: {message}")]
    Unavailable { message: String },
    /// A create repeated a client token with other parameters (EC2's
    /// `IdempotentParameterMismatch`): a bug of the caller, never retried as is.
    #[error("client token {token} was used before with other parameters")]
    IdempotentParameterMismatch { token: String },
}

impl CloudError {
    /// A short CamelCase word for conditions and events.
    pub fn reason(&self) -> &'static str {
        match self {
            CloudError::Throttled => "CloudThrottled",
            CloudError::Timeout => "CloudTimeout",
            CloudError::QuotaExceeded { .. } => "QuotaExceeded",
            CloudError::InsufficientCapacity { .. } => "InsufficientCapacity",
            CloudError::NotFound { .. } => "NotFound",
            CloudError::DependencyViolation { .. } => "DependencyViolation",
            CloudError::Invalid { .. } => "InvalidRequest",
            CloudError::Unavailable { .. } => "CloudUnavailable",
            CloudError::IdempotentParameterMismatch { .. } => "IdempotentParameterMismatch",
        }
    }
}

pub type CloudResult<T> = Result<T, CloudError>;

/// A resource that a provider's event feed reports changed: made, changed state, going or
/// gone. Those told describe again for what it is now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResourceChange {
    pub region: String,
    pub id: String,
    pub tags: Tags,
}

/// Told of each change. It runs on the provider's own path, so it only queues work.
pub type ChangeHandler = Box<dyn Fn(&ResourceChange) + Send + Sync>;

/// A cloud that can host Smart Clusters.
#[async_trait::async_trait]
pub trait Provider: Send + Sync {
    /// `sim` or `aws`.
    fn name(&self) -> &'static str;

    /// The regions, with their zones and price factors.
    fn regions(&self) -> &'static [Region];

    /// The instance types (prices for us-east-1; see [`Region::price_factor`]).
    fn catalog(&self) -> &InstanceCatalog;

    /// Creates a resource, or returns the one an earlier call with the same token created.
    async fn create(&self, region: &str, request: CreateRequest) -> CloudResult<CloudResource>;

    /// The resources matching `filter`, including ones being deleted or terminated.
    async fn describe(&self, region: &str, filter: &Filter) -> CloudResult<Vec<CloudResource>>;

    /// Deletes a resource (for an instance: terminates it). `NotFound` once it is gone.
    async fn delete(&self, region: &str, id: &str) -> CloudResult<()>;

    /// Changes a resource in place: a route table's routes, a security group's rules.
    async fn modify(&self, region: &str, id: &str, change: Change) -> CloudResult<()>;

    /// The lifetimes of the region's instances: every one that runs or has not started,
    /// and those that ended at or after `ended_since`.
    async fn lifetimes(
        &self,
        _region: &str,
        _ended_since: Timestamp,
    ) -> CloudResult<Vec<InstanceLifetime>> {
        Err(CloudError::Unavailable {
            message: format!("the {} provider reports no instance lifetimes", self.name()),
        })
    }

    /// How long, at most, describe may miss a resource after its create returned (EC2's
    /// eventual consistency): a caller that finds nothing it may have made waits this long
    /// before it concludes nothing was made.
    fn consistency_window(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }

    /// Tells `handler` of every change to a resource from now on, as a cloud's event feed
    /// does (EC2's state-change notifications); `false` when this provider has no feed, so
    /// that changes are found only by describing.
    fn subscribe(&self, _handler: ChangeHandler) -> bool {
        false
    }
}
