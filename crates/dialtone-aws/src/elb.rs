//! A cluster's API endpoint: a network load balancer with a TCP listener on the API's port,
//! forwarding to a target group in the cluster's VPC that holds the cluster's control-plane
//! instances. An instance joins it when it is launched, or when the group is made after
//! it; EC2 removes a terminated instance from it.

use std::collections::HashMap;

use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, LoadBalancer, LoadBalancerAttribute, LoadBalancerSchemeEnum,
    LoadBalancerStateEnum, LoadBalancerTypeEnum, ProtocolEnum, Tag, TargetDescription, TargetGroup,
    TargetTypeEnum,
};
use dialtone_cloud::tags::{ROLE_CONTROL_PLANE, TAG_CLUSTER, TAG_ROLE};
use dialtone_cloud::{
    CloudError, CloudResource, CloudResult, ResourceKind, ResourceSpec, ResourceState, Tags,
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
    let subnets = clients
        .ec2
        .describe_subnets()
        .set_subnet_ids(Some(subnet_ids.to_vec()))
        .send()
        .await
        .map_err(|e| cloud_error(e, subnet_ids.first().map_or("", String::as_str)))?;
    let vpc_id = subnets
        .subnets()
        .first()
        .and_then(|s| s.vpc_id())
        .ok_or_else(|| CloudError::Invalid {
            message: "a load balancer needs at least one subnet".into(),
        })?
        .to_string();
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
        .set_tags(Some(elb_tags(&tags)))
        .send()
        .await
        .map_err(|e| cloud_error(e, name))?;
    let arn = created
        .load_balancers()
        .first()
        .and_then(|lb| lb.load_balancer_arn())
        .unwrap_or_default()
        .to_string();
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
    let group = clients
        .elb
        .create_target_group()
        .name(name)
        .protocol(ProtocolEnum::Tcp)
        .port(i32::from(port))
        .vpc_id(&vpc_id)
        .target_type(TargetTypeEnum::Instance)
        .set_tags(Some(elb_tags(&tags)))
        .send()
        .await
        .map_err(|e| cloud_error(e, name))?;
    let group_arn = group
        .target_groups()
        .first()
        .and_then(|g| g.target_group_arn())
        .unwrap_or_default()
        .to_string();
    register(clients, &group_arn, &control_plane(clients, &tags).await?).await?;
    clients
        .elb
        .create_listener()
        .load_balancer_arn(&arn)
        .protocol(ProtocolEnum::Tcp)
        .port(i32::from(port))
        .default_actions(
            Action::builder()
                .r#type(ActionTypeEnum::Forward)
                .target_group_arn(group_arn)
                .build(),
        )
        .send()
        .await
        .map_err(|e| cloud_error(e, &arn))?;
    Ok(arn)
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

/// The target groups tagged as the cluster's.
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
                .is_some_and(|t| t.get(TAG_CLUSTER).map(String::as_str) == Some(cluster))
        })
        .collect())
}

/// The instances registered with the load balancer's target groups.
pub(crate) async fn targets(clients: &Clients, arn: &str) -> CloudResult<Vec<String>> {
    let groups = clients
        .elb
        .describe_target_groups()
        .load_balancer_arn(arn)
        .send()
        .await
        .map_err(|e| cloud_error(e, arn))?;
    let mut found = Vec::new();
    for group in groups.target_groups() {
        let health = clients
            .elb
            .describe_target_health()
            .set_target_group_arn(group.target_group_arn().map(String::from))
            .send()
            .await
            .map_err(|e| cloud_error(e, arn))?;
        found.extend(
            health
                .target_health_descriptions()
                .iter()
                .filter_map(|d| d.target()?.id().map(String::from)),
        );
    }
    Ok(found)
}

/// The load balancers carrying every tag of `tags`.
pub(crate) async fn describe(
    clients: &Clients,
    region: &str,
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
    Ok(balancers
        .iter()
        .filter_map(|lb| {
            let own = by_arn.remove(lb.load_balancer_arn()?).unwrap_or_default();
            tags.iter()
                .all(|(k, v)| own.get(k) == Some(v))
                .then(|| balancer(region, lb, own))
        })
        .collect())
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
    let groups = clients
        .elb
        .describe_target_groups()
        .load_balancer_arn(arn)
        .send()
        .await
        .map_err(|e| cloud_error(e, arn))?;
    clients
        .elb
        .delete_load_balancer()
        .load_balancer_arn(arn)
        .send()
        .await
        .map_err(|e| cloud_error(e, arn))?;
    for group in groups.target_groups() {
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
