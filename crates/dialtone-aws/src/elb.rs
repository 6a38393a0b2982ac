//! Network load balancers. A cluster's API endpoint: a TCP listener on the API's port,
//! forwarding to a target group in the cluster's VPC that holds the cluster's control-plane
//! instances. An instance joins it when it is launched, or when the group is made after
//! it; EC2 removes a terminated instance from it.
//!
//! A Service's load balancer (tagged with the Service's uid): per port a listener, TCP, or
//! TLS terminated with the certificate it names, forwarding to a target group on the node
//! port that holds the cluster's workers.

use std::collections::HashMap;

use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, Certificate, LoadBalancer, LoadBalancerAttribute,
    LoadBalancerSchemeEnum, LoadBalancerStateEnum, LoadBalancerTypeEnum, ProtocolEnum, Tag,
    TargetDescription, TargetGroup, TargetTypeEnum,
};
use dialtone_cloud::tags::{ROLE_CONTROL_PLANE, TAG_CLUSTER, TAG_ROLE, TAG_SERVICE};
use dialtone_cloud::{
    Change, CloudError, CloudResource, CloudResult, Listener, ResourceKind, ResourceSpec,
    ResourceState, Tags,
};
use jiff::Timestamp;

use crate::Clients;
use crate::errors::cloud_error;

/// The listener's port, which describe would otherwise need one more call per load balancer
/// to learn.
const TAG_PORT: &str = "dialtone.dev/port";
/// Whether cross-zone load balancing was asked for, for the same reason.
const TAG_CROSS_ZONE: &str = "dialtone.dev/cross-zone";
/// The attribute that turns cross-zone load balancing on.
pub const CROSS_ZONE_ATTRIBUTE: &str = "load_balancing.cross_zone.enabled";

/// Elastic Load Balancing reads tags of at most this many load balancers per call.
const TAGS_PER_CALL: usize = 20;

fn elb_tags(tags: &Tags) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// Creates the load balancer, its target group and listener; returns its ARN.
pub(crate) async fn create(
    clients: &Clients,
    name: &str,
    subnet_ids: &[String],
    port: u16,
    public: bool,
    cross_zone: bool,
    tags: &Tags,
) -> CloudResult<String> {
    let mut tags = tags.clone();
    tags.insert(TAG_PORT.into(), port.to_string());
    tags.insert(TAG_CROSS_ZONE.into(), cross_zone.to_string());
    let vpc_id = vpc_of(clients, subnet_ids).await?;
    let arn = create_balancer(clients, name, subnet_ids, public, &tags).await?;
    // A network load balancer sends each zone's traffic to its own zone unless told.
    clients
        .elb
        .modify_load_balancer_attributes()
        .load_balancer_arn(&arn)
        .attributes(
            LoadBalancerAttribute::builder()
                .key(CROSS_ZONE_ATTRIBUTE)
                .value(cross_zone.to_string())
                .build(),
        )
        .send()
        .await
        .map_err(|e| cloud_error(e, name))?;
    let listener = Listener {
        port,
        node_port: port,
        certificate: None,
    };
    let control_plane = control_plane(clients, &tags).await?;
    add_listener(clients, &arn, &vpc_id, &listener, &control_plane, &tags).await?;
    Ok(arn)
}

/// The VPC of the subnets a load balancer is made in.
async fn vpc_of(clients: &Clients, subnet_ids: &[String]) -> CloudResult<String> {
    let subnets = clients
        .ec2
        .describe_subnets()
        .set_subnet_ids(Some(subnet_ids.to_vec()))
        .send()
        .await
        .map_err(|e| cloud_error(e, subnet_ids.first().map_or("", String::as_str)))?;
    Ok(subnets
        .subnets()
        .first()
        .and_then(|s| s.vpc_id())
        .ok_or_else(|| CloudError::Invalid {
            message: "a load balancer needs at least one subnet".into(),
        })?
        .to_string())
}

/// A network load balancer with no listener yet; its ARN.
async fn create_balancer(
    clients: &Clients,
    name: &str,
    subnet_ids: &[String],
    public: bool,
    tags: &Tags,
) -> CloudResult<String> {
    let created = clients
        .elb
        .create_load_balancer()
        .name(name)
        .set_subnets(Some(subnet_ids.to_vec()))
        .scheme(if public {
            LoadBalancerSchemeEnum::InternetFacing
        } else {
            LoadBalancerSchemeEnum::Internal
        })
        .r#type(LoadBalancerTypeEnum::Network)
        .set_tags(Some(elb_tags(tags)))
        .send()
        .await
        .map_err(|e| cloud_error(e, name))?;
    Ok(created
        .load_balancers()
        .first()
        .and_then(|lb| lb.load_balancer_arn())
        .unwrap_or_default()
        .to_string())
}

/// Creates a Service's load balancer with its listeners; returns its ARN.
pub(crate) async fn create_service(
    clients: &Clients,
    name: &str,
    subnet_ids: &[String],
    public: bool,
    listeners: &[Listener],
    targets: &[String],
    tags: &Tags,
) -> CloudResult<String> {
    let vpc_id = vpc_of(clients, subnet_ids).await?;
    let arn = create_balancer(clients, name, subnet_ids, public, tags).await?;
    for listener in listeners {
        add_listener(clients, &arn, &vpc_id, listener, targets, tags).await?;
    }
    Ok(arn)
}

/// The name of the load balancer an ARN names (`…:loadbalancer/net/{name}/{id}`).
fn name_in(arn: &str) -> &str {
    arn.rsplit('/').nth(1).unwrap_or("dialtone")
}

/// A listener and the target group (on `node_port`, of `targets`) it forwards to.
async fn add_listener(
    clients: &Clients,
    arn: &str,
    vpc_id: &str,
    listener: &Listener,
    targets: &[String],
    tags: &Tags,
) -> CloudResult<()> {
    // Names are unique per region and at most 32 characters: the balancer's and the port.
    let group_name = format!("{}-{}", name_in(arn), listener.node_port);
    let group = clients
        .elb
        .create_target_group()
        .name(&group_name)
        .protocol(ProtocolEnum::Tcp)
        .port(i32::from(listener.node_port))
        .vpc_id(vpc_id)
        .target_type(TargetTypeEnum::Instance)
        .set_tags(Some(elb_tags(tags)))
        .send()
        .await
        .map_err(|e| cloud_error(e, &group_name))?;
    let group_arn = group
        .target_groups()
        .first()
        .and_then(|g| g.target_group_arn())
        .unwrap_or_default()
        .to_string();
    register(clients, &group_arn, targets).await?;
    let (protocol, certificates) = match &listener.certificate {
        Some(certificate) => (
            ProtocolEnum::Tls,
            Some(vec![
                Certificate::builder().certificate_arn(certificate).build(),
            ]),
        ),
        None => (ProtocolEnum::Tcp, None),
    };
    let about = listener.certificate.as_deref().unwrap_or(arn);
    clients
        .elb
        .create_listener()
        .load_balancer_arn(arn)
        .protocol(protocol)
        .port(i32::from(listener.port))
        .set_certificates(certificates)
        .default_actions(
            Action::builder()
                .r#type(ActionTypeEnum::Forward)
                .target_group_arn(group_arn)
                .build(),
        )
        .send()
        .await
        .map_err(|e| cloud_error(e, about))?;
    Ok(())
}

/// The listeners of a Service's load balancer: each with its ARN and its target group's.
async fn listeners_of(
    clients: &Clients,
    arn: &str,
) -> CloudResult<Vec<(Listener, String, String)>> {
    let groups = groups_of(clients, arn).await?;
    let node_port: HashMap<&str, u16> = groups
        .iter()
        .filter_map(|g| Some((g.target_group_arn()?, u16::try_from(g.port()?).ok()?)))
        .collect();
    let described = clients
        .elb
        .describe_listeners()
        .load_balancer_arn(arn)
        .send()
        .await
        .map_err(|e| cloud_error(e, arn))?;
    let mut found = Vec::new();
    for listener in described.listeners() {
        let group = listener
            .default_actions()
            .first()
            .and_then(|a| a.target_group_arn())
            .unwrap_or_default();
        found.push((
            Listener {
                port: listener
                    .port()
                    .and_then(|p| u16::try_from(p).ok())
                    .unwrap_or(0),
                node_port: node_port.get(group).copied().unwrap_or(0),
                certificate: listener
                    .certificates()
                    .first()
                    .and_then(|c| c.certificate_arn())
                    .map(String::from),
            },
            listener.listener_arn().unwrap_or_default().to_string(),
            group.to_string(),
        ));
    }
    found.sort();
    Ok(found)
}

/// Changes a Service's load balancer: its listeners or its targets, all of them at once.
pub(crate) async fn modify(clients: &Clients, arn: &str, change: Change) -> CloudResult<()> {
    match change {
        Change::SetTargets(wanted) => {
            let groups = groups_of(clients, arn).await?;
            for group in &groups {
                let Some(group) = group.target_group_arn() else {
                    continue;
                };
                let current = group_targets(clients, group).await?;
                let missing: Vec<String> = wanted
                    .iter()
                    .filter(|t| !current.contains(t))
                    .cloned()
                    .collect();
                register(clients, group, &missing).await?;
                let extra: Vec<TargetDescription> = current
                    .iter()
                    .filter(|t| !wanted.contains(t))
                    .map(|id| TargetDescription::builder().id(id).build())
                    .collect();
                if !extra.is_empty() {
                    clients
                        .elb
                        .deregister_targets()
                        .target_group_arn(group)
                        .set_targets(Some(extra))
                        .send()
                        .await
                        .map_err(|e| cloud_error(e, group))?;
                }
            }
            Ok(())
        }
        Change::SetListeners(wanted) => {
            let current = listeners_of(clients, arn).await?;
            let targets = targets(clients, arn).await?;
            for (listener, listener_arn, group_arn) in &current {
                if wanted.contains(listener) {
                    continue;
                }
                clients
                    .elb
                    .delete_listener()
                    .listener_arn(listener_arn)
                    .send()
                    .await
                    .map_err(|e| cloud_error(e, listener_arn))?;
                clients
                    .elb
                    .delete_target_group()
                    .target_group_arn(group_arn)
                    .send()
                    .await
                    .map_err(|e| cloud_error(e, group_arn))?;
            }
            let described = clients
                .elb
                .describe_load_balancers()
                .load_balancer_arns(arn)
                .send()
                .await
                .map_err(|e| cloud_error(e, arn))?;
            let vpc_id = described
                .load_balancers()
                .first()
                .and_then(|lb| lb.vpc_id())
                .unwrap_or_default()
                .to_string();
            let tags = tags_by_arn(clients, std::iter::once(arn))
                .await?
                .remove(arn)
                .unwrap_or_default();
            for listener in &wanted {
                if current.iter().any(|(l, _, _)| l == listener) {
                    continue;
                }
                add_listener(clients, arn, &vpc_id, listener, &targets, &tags).await?;
            }
            Ok(())
        }
        Change::SetTags(tags) => clients
            .elb
            .add_tags()
            .resource_arns(arn)
            .set_tags(Some(elb_tags(&tags)))
            .send()
            .await
            .map(drop)
            .map_err(|e| cloud_error(e, arn)),
        Change::RemoveTags(keys) => clients
            .elb
            .remove_tags()
            .resource_arns(arn)
            .set_tag_keys(Some(keys))
            .send()
            .await
            .map(drop)
            .map_err(|e| cloud_error(e, arn)),
        other => Err(CloudError::Invalid {
            message: format!("a load balancer cannot take {other:?}"),
        }),
    }
}

/// The target groups a load balancer forwards to.
async fn groups_of(clients: &Clients, arn: &str) -> CloudResult<Vec<TargetGroup>> {
    Ok(clients
        .elb
        .describe_target_groups()
        .load_balancer_arn(arn)
        .send()
        .await
        .map_err(|e| cloud_error(e, arn))?
        .target_groups()
        .to_vec())
}

/// The instances registered with one target group.
async fn group_targets(clients: &Clients, group: &str) -> CloudResult<Vec<String>> {
    let health = clients
        .elb
        .describe_target_health()
        .target_group_arn(group)
        .send()
        .await
        .map_err(|e| cloud_error(e, group))?;
    Ok(health
        .target_health_descriptions()
        .iter()
        .filter_map(|d| d.target()?.id().map(String::from))
        .collect())
}

/// The running or booting control-plane instances of the cluster `tags` name.
async fn control_plane(clients: &Clients, tags: &Tags) -> CloudResult<Vec<String>> {
    let Some(cluster) = tags.get(TAG_CLUSTER) else {
        return Ok(Vec::new());
    };
    let mine = Tags::from([
        (TAG_CLUSTER.to_string(), cluster.clone()),
        (TAG_ROLE.to_string(), ROLE_CONTROL_PLANE.to_string()),
    ]);
    let region = clients
        .ec2
        .config()
        .region()
        .map(|r| r.to_string())
        .unwrap_or_default();
    let instances =
        crate::ec2::describe(&clients.ec2, &region, ResourceKind::Instance, &mine).await?;
    Ok(instances
        .into_iter()
        .filter(|i| matches!(i.state, ResourceState::Pending | ResourceState::Available))
        .map(|i| i.id)
        .collect())
}

async fn register(clients: &Clients, group_arn: &str, instances: &[String]) -> CloudResult<()> {
    if instances.is_empty() {
        return Ok(());
    }
    clients
        .elb
        .register_targets()
        .target_group_arn(group_arn)
        .set_targets(Some(
            instances
                .iter()
                .map(|id| TargetDescription::builder().id(id).build())
                .collect(),
        ))
        .send()
        .await
        .map_err(|e| cloud_error(e, group_arn))?;
    Ok(())
}

/// Adds a control-plane instance just launched to its cluster's API target group, if the
/// group exists yet.
pub(crate) async fn join_api(clients: &Clients, cluster: &str, instance: &str) -> CloudResult<()> {
    for group in target_groups(clients, cluster).await? {
        if let Some(arn) = group.target_group_arn() {
            register(clients, arn, &[instance.to_string()]).await?;
        }
    }
    Ok(())
}

/// The target groups of the cluster's API endpoint (not its Services').
async fn target_groups(clients: &Clients, cluster: &str) -> CloudResult<Vec<TargetGroup>> {
    let mut groups: Vec<TargetGroup> = Vec::new();
    let mut pages = clients.elb.describe_target_groups().into_paginator().send();
    while let Some(page) = pages.next().await {
        groups.extend(
            page.map_err(|e| cloud_error(e, ""))?
                .target_groups()
                .to_vec(),
        );
    }
    let tags = tags_by_arn(clients, groups.iter().filter_map(|g| g.target_group_arn())).await?;
    Ok(groups
        .into_iter()
        .filter(|g| {
            g.target_group_arn()
                .and_then(|arn| tags.get(arn))
                .is_some_and(|t| {
                    t.get(TAG_CLUSTER).map(String::as_str) == Some(cluster)
                        && !t.contains_key(TAG_SERVICE)
                })
        })
        .collect())
}

/// The instances registered with the load balancer's target groups, each once.
pub(crate) async fn targets(clients: &Clients, arn: &str) -> CloudResult<Vec<String>> {
    let groups = groups_of(clients, arn).await?;
    let mut found = Vec::new();
    for group in &groups {
        if let Some(group) = group.target_group_arn() {
            found.extend(group_targets(clients, group).await?);
        }
    }
    found.sort();
    found.dedup();
    Ok(found)
}

/// The load balancers of `kind` (the API's or Services') carrying every tag of `tags`.
pub(crate) async fn describe(
    clients: &Clients,
    region: &str,
    kind: ResourceKind,
    tags: &Tags,
) -> CloudResult<Vec<CloudResource>> {
    let mut balancers: Vec<LoadBalancer> = Vec::new();
    let mut pages = clients
        .elb
        .describe_load_balancers()
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        balancers.extend(
            page.map_err(|e| cloud_error(e, ""))?
                .load_balancers()
                .to_vec(),
        );
    }
    let mut by_arn = tags_by_arn(
        clients,
        balancers.iter().filter_map(|lb| lb.load_balancer_arn()),
    )
    .await?;
    let services = kind == ResourceKind::ServiceLoadBalancer;
    let mut found = Vec::new();
    for lb in &balancers {
        let Some(arn) = lb.load_balancer_arn() else {
            continue;
        };
        let own = by_arn.remove(arn).unwrap_or_default();
        if own.contains_key(TAG_SERVICE) != services
            || !tags.iter().all(|(k, v)| own.get(k) == Some(v))
        {
            continue;
        }
        let mut resource = balancer(region, lb, own);
        if services {
            let ResourceSpec::LoadBalancer {
                subnet_ids, public, ..
            } = resource.spec
            else {
                continue;
            };
            resource.spec = ResourceSpec::ServiceLoadBalancer {
                subnet_ids,
                public,
                listeners: listeners_of(clients, arn)
                    .await?
                    .into_iter()
                    .map(|(listener, _, _)| listener)
                    .collect(),
                targets: targets(clients, arn).await?,
            };
        }
        found.push(resource);
    }
    Ok(found)
}

/// The tags of each of `arns`, read [`TAGS_PER_CALL`] at a time.
async fn tags_by_arn<'a>(
    clients: &Clients,
    arns: impl Iterator<Item = &'a str>,
) -> CloudResult<HashMap<String, Tags>> {
    let arns: Vec<String> = arns.map(String::from).collect();
    let mut by_arn = HashMap::new();
    for chunk in arns.chunks(TAGS_PER_CALL) {
        let described = clients
            .elb
            .describe_tags()
            .set_resource_arns(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| cloud_error(e, ""))?;
        for description in described.tag_descriptions() {
            let Some(arn) = description.resource_arn() else {
                continue;
            };
            let tags: Tags = description
                .tags()
                .iter()
                .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or("").to_string())))
                .collect();
            by_arn.insert(arn.to_string(), tags);
        }
    }
    Ok(by_arn)
}

fn balancer(region: &str, lb: &LoadBalancer, tags: Tags) -> CloudResource {
    let state = match lb.state().and_then(|s| s.code()) {
        Some(LoadBalancerStateEnum::Active) => ResourceState::Available,
        Some(LoadBalancerStateEnum::Provisioning) | None => ResourceState::Pending,
        Some(other) => ResourceState::Impaired {
            reason: lb
                .state()
                .and_then(|s| s.reason())
                .unwrap_or(other.as_str())
                .to_string(),
        },
    };
    CloudResource {
        id: lb.load_balancer_arn().unwrap_or_default().to_string(),
        region: region.to_string(),
        spec: ResourceSpec::LoadBalancer {
            subnet_ids: lb
                .availability_zones()
                .iter()
                .filter_map(|z| z.subnet_id().map(String::from))
                .collect(),
            port: tags
                .get(TAG_PORT)
                .and_then(|p| p.parse().ok())
                .unwrap_or_default(),
            public: lb.scheme() == Some(&LoadBalancerSchemeEnum::InternetFacing),
            cross_zone: tags.get(TAG_CROSS_ZONE).is_some_and(|v| v == "true"),
        },
        tags,
        state,
        address: lb.dns_name().unwrap_or_default().to_string(),
        created_at: lb
            .created_time()
            .and_then(|t| Timestamp::from_second(t.secs()).ok())
            .unwrap_or(Timestamp::UNIX_EPOCH),
        peering: None,
    }
}

/// Deletes the load balancer (its listeners go with it), then its target groups.
pub(crate) async fn delete(clients: &Clients, arn: &str) -> CloudResult<()> {
    let groups = groups_of(clients, arn).await?;
    clients
        .elb
        .delete_load_balancer()
        .load_balancer_arn(arn)
        .send()
        .await
        .map_err(|e| cloud_error(e, arn))?;
    for group in &groups {
        if let Some(group) = group.target_group_arn() {
            clients
                .elb
                .delete_target_group()
                .target_group_arn(group)
                .send()
                .await
                .map_err(|e| cloud_error(e, group))?;
        }
    }
    Ok(())
}
