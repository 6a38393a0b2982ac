//! The `aws` provider: a Smart Cluster's cloud resources on Amazon EC2, through the AWS SDK
//! for Rust, behind the same [`Provider`] trait as the sim.
//!
//! - Credentials come from the SDK's standard chain (environment, profile, SSO, web
//!   identity, instance metadata); `--aws-endpoint-url` points every call elsewhere (a moto
//!   server in the tests).
//! - **Idempotency.** Every resource carries its create call's client token as a tag, and a
//!   create first looks for a resource with that tag: EC2's own `ClientToken` exists only on
//!   some calls (it is also passed to `RunInstances`), and moto ignores it.
//! - **What EC2 cannot say back** about a resource (an instance's node image and root disk
//!   as the plan named them, when a VPC was made) is kept in tags too, so that a describe
//!   gives back the spec the resource was created with.
//! - **A VPC comes with its internet gateway**, and a route table with its default route
//!   through it: the gateway is part of the VPC here, made and removed with it.
//! - **Deleted instances are not listed.** EC2 lists a terminated instance for about an
//!   hour; one Dialtone terminated is tagged first and left out of describes, while one
//!   that died on its own stays listed, `Terminated` with EC2's reason, until its owner
//!   deletes it, as the trait asks.
//! - **Instances boot upstream Kubernetes**: each launch's `NodeBootstrap` becomes
//!   cloud-config running kubeadm (`userdata.rs`), with the cluster's CAs and tokens that
//!   Dialtone makes and keeps (`secrets.rs`); `access.rs` reaches the clusters with them.
//! - Throttling and server errors are retried by the SDK (standard mode, backing off, up to
//!   [`MAX_ATTEMPTS`]); what is left is mapped to [`CloudError`] in `errors.rs`.

pub mod access;
mod ec2;
mod elb;
mod errors;
pub mod secrets;
pub mod userdata;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use base64::Engine;

use dialtone_cloud::tags::{ROLE_CONTROL_PLANE, TAG_CLUSTER, TAG_ROLE};
use dialtone_cloud::{
    Arch, Change, CloudError, CloudResource, CloudResult, CreateRequest, Filter, InstanceCatalog,
    InstanceLifetime, NodeBootstrap, Provider, REGIONS, Region, ResourceKind, ResourceSpec,
};
use jiff::Timestamp;
use secrets::SecretStore;

/// Calls the SDK makes before giving up on a throttled or failing request.
pub const MAX_ATTEMPTS: u32 = 5;

/// The tag holding a resource's client token.
pub const TAG_CLIENT_TOKEN: &str = "dialtone.dev/client-token";
/// When Dialtone created the resource (RFC 3339), for resources EC2 keeps no time of.
pub const TAG_CREATED_AT: &str = "dialtone.dev/created-at";
/// An instance's node image as the plan named it (`dialtone-node-1.34`).
pub const TAG_IMAGE: &str = "dialtone.dev/image";
/// An instance's root disk size in GiB, as the plan asked.
pub const TAG_ROOT_DISK: &str = "dialtone.dev/root-disk-gib";
/// An instance's root volume type, as the plan asked.
pub const TAG_DISK_TYPE: &str = "dialtone.dev/disk-type";
/// Whether an instance's root volume is encrypted, as the plan asked.
pub const TAG_DISK_ENCRYPTED: &str = "dialtone.dev/disk-encrypted";
/// Set on an instance just before Dialtone terminates it.
pub const TAG_DELETED: &str = "dialtone.dev/deleted";

/// How `dialtone server --provider aws` reaches AWS.
#[derive(Clone, Debug, Default)]
pub struct AwsOptions {
    /// Every call goes here instead of AWS's endpoints (a moto server, a proxy).
    pub endpoint_url: Option<String>,
    /// The machine images instances boot, one per architecture: the node image the plan
    /// names is recorded in a tag. Upstream Kubernetes is installed on them by cloud-init.
    pub images: MachineImages,
    /// Keys to use instead of the standard chain (the tests' keys for moto).
    pub access_keys: Option<AccessKeys>,
    /// Where each cluster's certificate authorities and tokens are kept.
    pub secrets_dir: PathBuf,
    /// The Dialtone server clusters' API servers ask about users' tokens, if any.
    pub token_webhook: Option<userdata::TokenWebhook>,
}

/// The machine images (`ami-…`) instances boot, by the architecture of their type.
#[derive(Clone, Debug, Default)]
pub struct MachineImages {
    pub amd64: String,
    /// Without one, an arm64 instance type cannot be launched.
    pub arm64: Option<String>,
}

impl MachineImages {
    /// The image for `instance_type`, or why there is none.
    fn for_type(&self, instance_type: &str) -> CloudResult<&str> {
        let arm64 = InstanceCatalog::builtin()
            .get(instance_type)
            .is_some_and(|t| t.archs.first() == Some(&Arch::Arm64));
        match (arm64, &self.arm64) {
            (false, _) => Ok(&self.amd64),
            (true, Some(image)) => Ok(image),
            (true, None) => Err(CloudError::Invalid {
                message: format!(
                    "{instance_type} is an arm64 type and no arm64 image is configured: start the server with --aws-arm64-image-id, or exclude arm64 families from the cluster"
                ),
            }),
        }
    }
}

/// An access key id and its secret.
#[derive(Clone, Debug)]
pub struct AccessKeys {
    pub id: String,
    pub secret: String,
}

/// The SDK's settings as the provider uses them: TLS by rustls over ring, standard retries,
/// credentials from the standard chain unless `access_keys` are given, and every call sent to
/// `endpoint_url` if one is.
pub async fn sdk_config(
    endpoint_url: Option<&str>,
    access_keys: Option<&AccessKeys>,
) -> aws_config::SdkConfig {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http)
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
        // Some region is needed to load; each call names its own.
        .region(aws_config::Region::new("us-east-1"));
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
    }
    if let Some(keys) = access_keys {
        loader = loader.credentials_provider(aws_sdk_ec2::config::Credentials::new(
            &keys.id,
            &keys.secret,
            None,
            None,
            "dialtone",
        ));
    }
    loader.load().await
}

/// The SDK's clients for one region.
#[derive(Clone)]
struct Clients {
    ec2: aws_sdk_ec2::Client,
    elb: aws_sdk_elasticloadbalancingv2::Client,
}

/// A turn to create, by region and client token.
type Creating = HashMap<(String, String), Arc<tokio::sync::Mutex<()>>>;

/// Amazon EC2 as a [`Provider`].
pub struct AwsProvider {
    config: aws_config::SdkConfig,
    images: MachineImages,
    token_webhook: Option<userdata::TokenWebhook>,
    regions: Mutex<HashMap<String, Clients>>,
    secrets: SecretStore,
    /// The shipped catalogue restricted to what the account offers, once read.
    offered: std::sync::OnceLock<InstanceCatalog>,
    /// Creates under way, by region and client token: a second create with a token waits
    /// for the first, then finds what it made. EC2's `CreateVpc` and most other creates
    /// take no token, so two passes sharing a network would otherwise both make it.
    creating: Mutex<Creating>,
    /// Held while a cluster's secrets may be made, so that they are made once.
    making_secrets: tokio::sync::Mutex<()>,
}

impl AwsProvider {
    /// Loads credentials and settings by the SDK's standard chain.
    pub async fn new(options: AwsOptions) -> Self {
        AwsProvider {
            config: sdk_config(
                options.endpoint_url.as_deref(),
                options.access_keys.as_ref(),
            )
            .await,
            images: options.images,
            token_webhook: options.token_webhook,
            regions: Mutex::new(HashMap::new()),
            secrets: SecretStore::new(options.secrets_dir),
            offered: std::sync::OnceLock::new(),
            creating: Mutex::default(),
            making_secrets: tokio::sync::Mutex::new(()),
        }
    }

    fn clients(&self, region: &str) -> Clients {
        let mut regions = self.regions.lock().unwrap_or_else(|e| e.into_inner());
        regions
            .entry(region.to_string())
            .or_insert_with(|| {
                let region = aws_config::Region::new(region.to_string());
                Clients {
                    ec2: aws_sdk_ec2::Client::from_conf(
                        aws_sdk_ec2::config::Builder::from(&self.config)
                            .region(region.clone())
                            .build(),
                    ),
                    elb: aws_sdk_elasticloadbalancingv2::Client::from_conf(
                        aws_sdk_elasticloadbalancingv2::config::Builder::from(&self.config)
                            .region(region)
                            .build(),
                    ),
                }
            })
            .clone()
    }

    /// The regions this provider has made calls in since it started.
    pub fn regions_in_use(&self) -> Vec<String> {
        let regions = self.regions.lock().unwrap_or_else(|e| e.into_inner());
        regions.keys().cloned().collect()
    }

    /// Where each cluster's secrets are kept.
    pub fn secrets(&self) -> &SecretStore {
        &self.secrets
    }

    /// An instance's user data, base64 as EC2 takes it: what `bootstrap` says, with its
    /// cluster's secrets (made with its first instance).
    async fn user_data(&self, bootstrap: &NodeBootstrap) -> CloudResult<String> {
        let secrets = {
            let _making = self.making_secrets.lock().await;
            self.secrets.load_or_create(&bootstrap.cluster_uid)
        }
        .map_err(|message| CloudError::Unavailable {
            message: format!("cannot keep the cluster's secrets: {message}"),
        })?;
        let text = userdata::render(bootstrap, &secrets, self.token_webhook.as_ref())
            .map_err(|message| CloudError::Invalid { message })?;
        Ok(base64::engine::general_purpose::STANDARD.encode(text))
    }

    /// The instances a load balancer forwards to: its cluster's control plane.
    pub async fn api_targets(&self, region: &str, load_balancer: &str) -> CloudResult<Vec<String>> {
        elb::targets(&self.clients(region), load_balancer).await
    }

    /// Reads which instance types `region`'s zones offer: from then on the catalogue holds
    /// only those, in the zones that offer them (by zone letter, as the shipped catalogue
    /// gives zones for every region). Prices stay the catalogue's. How many types are left.
    pub async fn read_offerings(&self, region: &str) -> CloudResult<usize> {
        let offered = ec2::offerings(&self.clients(region).ec2).await?;
        let catalog = InstanceCatalog::builtin().offered(&offered);
        let count = catalog.len();
        let _ = self.offered.set(catalog);
        Ok(count)
    }

    /// Checks that the credentials work and the region answers: a clear error at startup,
    /// not on the first cluster.
    pub async fn check(&self, region: &str) -> Result<Vec<String>, CloudError> {
        ec2::zones(&self.clients(region).ec2).await
    }
}

/// Every kind, in the order a describe of all of them reads them.
const KINDS: [ResourceKind; 8] = [
    ResourceKind::Vpc,
    ResourceKind::Subnet,
    ResourceKind::RouteTable,
    ResourceKind::SecurityGroup,
    ResourceKind::LoadBalancer,
    ResourceKind::ServiceLoadBalancer,
    ResourceKind::Instance,
    ResourceKind::VpcPeering,
];

#[async_trait::async_trait]
impl Provider for AwsProvider {
    fn name(&self) -> &'static str {
        "aws"
    }

    fn regions(&self) -> &'static [Region] {
        REGIONS
    }

    fn catalog(&self) -> &InstanceCatalog {
        match self.offered.get() {
            Some(offered) => offered,
            None => InstanceCatalog::builtin(),
        }
    }

    async fn create(&self, region: &str, request: CreateRequest) -> CloudResult<CloudResource> {
        let key = (region.to_string(), request.client_token.clone());
        let slot = self.creating().entry(key.clone()).or_default().clone();
        let result = {
            let _turn = slot.lock().await;
            self.create_once(region, request).await
        };
        let mut creating = self.creating();
        // The map's and this call's: no other call waits on the token.
        if Arc::strong_count(&slot) <= 2 {
            creating.remove(&key);
        }
        result
    }

    async fn describe(&self, region: &str, filter: &Filter) -> CloudResult<Vec<CloudResource>> {
        let clients = self.clients(region);
        let kinds = match filter.kind {
            Some(kind) => vec![kind],
            None => KINDS.to_vec(),
        };
        let mut all = Vec::new();
        for kind in kinds {
            all.extend(self.describe_kind(&clients, region, kind, filter).await?);
        }
        Ok(all)
    }

    async fn lifetimes(
        &self,
        region: &str,
        ended_since: Timestamp,
    ) -> CloudResult<Vec<InstanceLifetime>> {
        ec2::lifetimes(
            &self.clients(region).ec2,
            region,
            ended_since,
            Timestamp::now(),
        )
        .await
    }

    /// EC2 documents its describes as eventually consistent, usually for seconds.
    fn consistency_window(&self) -> std::time::Duration {
        std::time::Duration::from_secs(15)
    }

    async fn modify(&self, region: &str, id: &str, change: Change) -> CloudResult<()> {
        let clients = self.clients(region);
        if id.starts_with("arn:") {
            elb::modify(&clients, id, change).await
        } else {
            ec2::modify(&clients.ec2, id, change).await
        }
    }

    async fn delete(&self, region: &str, id: &str) -> CloudResult<()> {
        let clients = self.clients(region);
        if id.starts_with("arn:") {
            elb::delete(&clients, id).await
        } else {
            ec2::delete(&clients.ec2, id).await
        }
    }
}

impl AwsProvider {
    /// One create: found by its token's tag, or made.
    async fn create_once(
        &self,
        region: &str,
        request: CreateRequest,
    ) -> CloudResult<CloudResource> {
        let clients = self.clients(region);
        let kind = request.spec.kind();
        let mine = Filter {
            kind: Some(kind),
            tags: [(TAG_CLIENT_TOKEN.to_string(), request.client_token.clone())].into(),
        };
        if let Some(existing) = self
            .describe_kind(&clients, region, kind, &mine)
            .await?
            .pop()
        {
            return Ok(existing);
        }
        let mut tags = request.tags.clone();
        tags.insert(TAG_CLIENT_TOKEN.into(), request.client_token.clone());
        tags.insert(TAG_CREATED_AT.into(), Timestamp::now().to_string());
        let id = match &request.spec {
            ResourceSpec::LoadBalancer {
                subnet_ids,
                port,
                public,
                cross_zone,
            } => {
                let name = unique_name("dialtone", &request.client_token);
                elb::create(
                    &clients,
                    &name,
                    subnet_ids,
                    *port,
                    *public,
                    *cross_zone,
                    &tags,
                )
                .await?
            }
            ResourceSpec::ServiceLoadBalancer {
                subnet_ids,
                public,
                listeners,
                targets,
            } => {
                let name = unique_name("dialtone", &request.client_token);
                elb::create_service(
                    &clients, &name, subnet_ids, *public, listeners, targets, &tags,
                )
                .await?
            }
            spec => {
                let user_data = match &request.bootstrap {
                    Some(bootstrap) => Some(self.user_data(bootstrap).await?),
                    None => None,
                };
                let image_id = match spec {
                    ResourceSpec::Instance { instance_type, .. } => {
                        self.images.for_type(instance_type)?
                    }
                    _ => "",
                };
                ec2::create(
                    &clients.ec2,
                    spec,
                    &tags,
                    &request.client_token,
                    image_id,
                    user_data,
                )
                .await?
            }
        };
        if let (ResourceKind::Instance, Some(ROLE_CONTROL_PLANE), Some(cluster)) = (
            kind,
            tags.get(TAG_ROLE).map(String::as_str),
            tags.get(TAG_CLUSTER),
        ) {
            elb::join_api(&clients, cluster, &id).await?;
        }
        // Read back as describe gives it; EC2 may not list it yet (eventual consistency).
        let created = self
            .describe_kind(&clients, region, kind, &mine)
            .await?
            .pop();
        Ok(created.unwrap_or_else(|| CloudResource {
            id,
            region: region.to_string(),
            spec: request.spec,
            tags,
            state: dialtone_cloud::ResourceState::Pending,
            address: String::new(),
            created_at: jiff::Timestamp::now(),
            peering: None,
        }))
    }

    fn creating(&self) -> std::sync::MutexGuard<'_, Creating> {
        self.creating.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn describe_kind(
        &self,
        clients: &Clients,
        region: &str,
        kind: ResourceKind,
        filter: &Filter,
    ) -> CloudResult<Vec<CloudResource>> {
        let found = match kind {
            ResourceKind::LoadBalancer | ResourceKind::ServiceLoadBalancer => {
                elb::describe(clients, region, kind, &filter.tags).await?
            }
            kind => ec2::describe(&clients.ec2, region, kind, &filter.tags).await?,
        };
        Ok(found.into_iter().filter(|r| filter.matches(r)).collect())
    }
}

/// A name AWS requires to be unique (a security group's in its VPC, a load balancer's in its
/// region), derived from the client token so that a retried create picks the same one.
fn unique_name(prefix: &str, client_token: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(client_token.as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("{prefix}-{hex}")
}
