//! VPCs (with their internet gateway), subnets, route tables, security groups, instances and
//! peerings, through the EC2 API.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, Filter as Ec2Filter, HttpTokensState, Instance,
    InstanceMetadataEndpointState, InstanceMetadataOptionsRequest, InstanceStateName, InstanceType,
    IpPermission, IpRange, LocationType, ResourceType, SubnetState, Tag, TagSpecification,
    VolumeType, VpcPeeringConnectionStateReasonCode, VpcState,
};
use dialtone_cloud::{
    Change, CloudError, CloudResource, CloudResult, DiskType, IngressRule, InstanceLifetime,
    InstanceMetadata, PeeringState, PeeringStatus, Protocol, ResourceKind, ResourceSpec,
    ResourceState, Route, Tags,
};
use ipnet::Ipv4Net;
use jiff::Timestamp;

use crate::errors::cloud_error;
use crate::{
    TAG_CREATED_AT, TAG_DELETED, TAG_DISK_ENCRYPTED, TAG_DISK_TYPE, TAG_IMAGE, TAG_ROOT_DISK,
    unique_name,
};

fn tag_specification(resource: ResourceType, tags: &Tags) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(resource)
        .set_tags(Some(
            tags.iter()
                .map(|(k, v)| Tag::builder().key(k).value(v).build())
                .collect(),
        ))
        .build()
}

fn tags_of(tags: &[Tag]) -> Tags {
    tags.iter()
        .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or("").to_string())))
        .collect()
}

/// EC2 filters for `tags`: every one must match.
fn tag_filters(tags: &Tags) -> Vec<Ec2Filter> {
    tags.iter()
        .map(|(k, v)| {
            Ec2Filter::builder()
                .name(format!("tag:{k}"))
                .values(v)
                .build()
        })
        .collect()
}

fn cidr(text: Option<&str>) -> Ipv4Net {
    text.and_then(|c| c.parse().ok()).unwrap_or_default()
}

/// When Dialtone made it, from its tag; the epoch for a resource without one.
fn created_at(tags: &Tags) -> Timestamp {
    tags.get(TAG_CREATED_AT)
        .and_then(|t| t.parse().ok())
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

fn resource(
    region: &str,
    id: &str,
    spec: ResourceSpec,
    tags: Tags,
    state: ResourceState,
) -> CloudResource {
    CloudResource {
        id: id.to_string(),
        region: region.to_string(),
        spec,
        created_at: created_at(&tags),
        tags,
        state,
        address: String::new(),
        peering: None,
    }
}

/// The zones of the region that are available to the account.
pub(crate) async fn zones(ec2: &Client) -> CloudResult<Vec<String>> {
    let out = ec2
        .describe_availability_zones()
        .send()
        .await
        .map_err(|e| cloud_error(e, ""))?;
    Ok(out
        .availability_zones()
        .iter()
        .filter_map(|z| z.zone_name().map(String::from))
        .collect())
}

/// The instance types the region offers, each with the suffixes of the zones that offer it
/// (`DescribeInstanceTypeOfferings` by availability zone, every page).
pub(crate) async fn offerings(ec2: &Client) -> CloudResult<BTreeMap<String, BTreeSet<char>>> {
    let mut offered: BTreeMap<String, BTreeSet<char>> = BTreeMap::new();
    let mut next = None;
    loop {
        let out = ec2
            .describe_instance_type_offerings()
            .location_type(LocationType::AvailabilityZone)
            .set_next_token(next)
            .send()
            .await
            .map_err(|e| cloud_error(e, ""))?;
        for offering in out.instance_type_offerings() {
            let (Some(instance_type), Some(zone)) = (
                offering.instance_type(),
                offering.location().and_then(|z| z.chars().last()),
            ) else {
                continue;
            };
            offered
                .entry(instance_type.as_str().to_string())
                .or_default()
                .insert(zone);
        }
        next = out.next_token().map(String::from);
        if next.is_none() {
            return Ok(offered);
        }
    }
}

/// Creates `spec` (any kind but a load balancer); returns its id.
pub(crate) async fn create(
    ec2: &Client,
    spec: &ResourceSpec,
    tags: &Tags,
    client_token: &str,
    image_id: &str,
    user_data: Option<String>,
) -> CloudResult<String> {
    match spec {
        ResourceSpec::Vpc { cidr } => {
            let vpc = ec2
                .create_vpc()
                .cidr_block(cidr.to_string())
                .tag_specifications(tag_specification(ResourceType::Vpc, tags))
                .send()
                .await
                .map_err(|e| cloud_error(e, client_token))?;
            let vpc_id = vpc
                .vpc()
                .and_then(|v| v.vpc_id())
                .unwrap_or_default()
                .to_string();
            let gateway = ec2
                .create_internet_gateway()
                .tag_specifications(tag_specification(ResourceType::InternetGateway, tags))
                .send()
                .await
                .map_err(|e| cloud_error(e, client_token))?;
            let gateway_id = gateway
                .internet_gateway()
                .and_then(|g| g.internet_gateway_id())
                .unwrap_or_default();
            ec2.attach_internet_gateway()
                .internet_gateway_id(gateway_id)
                .vpc_id(&vpc_id)
                .send()
                .await
                .map_err(|e| cloud_error(e, &vpc_id))?;
            Ok(vpc_id)
        }
        ResourceSpec::Subnet { vpc_id, zone, cidr } => {
            let out = ec2
                .create_subnet()
                .vpc_id(vpc_id)
                .availability_zone(zone)
                .cidr_block(cidr.to_string())
                .tag_specifications(tag_specification(ResourceType::Subnet, tags))
                .send()
                .await
                .map_err(|e| cloud_error(e, vpc_id))?;
            Ok(out
                .subnet()
                .and_then(|s| s.subnet_id())
                .unwrap_or_default()
                .to_string())
        }
        ResourceSpec::RouteTable { routes, .. } if !routes.is_empty() => Err(CloudError::Invalid {
            message: "a route table is created without routes; add them with a change".into(),
        }),
        ResourceSpec::RouteTable {
            vpc_id, subnet_ids, ..
        } => {
            let out = ec2
                .create_route_table()
                .vpc_id(vpc_id)
                .tag_specifications(tag_specification(ResourceType::RouteTable, tags))
                .send()
                .await
                .map_err(|e| cloud_error(e, vpc_id))?;
            let table = out
                .route_table()
                .and_then(|t| t.route_table_id())
                .unwrap_or_default()
                .to_string();
            for subnet in subnet_ids {
                ec2.associate_route_table()
                    .route_table_id(&table)
                    .subnet_id(subnet)
                    .send()
                    .await
                    .map_err(|e| cloud_error(e, subnet))?;
            }
            if let Some(gateway) = gateway_of(ec2, vpc_id).await? {
                ec2.create_route()
                    .route_table_id(&table)
                    .destination_cidr_block("0.0.0.0/0")
                    .gateway_id(gateway)
                    .send()
                    .await
                    .map_err(|e| cloud_error(e, &table))?;
            }
            Ok(table)
        }
        ResourceSpec::SecurityGroup { vpc_id, ingress } => {
            let out = ec2
                .create_security_group()
                .group_name(unique_name("dialtone", client_token))
                .description("Dialtone: a Smart Cluster's nodes")
                .vpc_id(vpc_id)
                .tag_specifications(tag_specification(ResourceType::SecurityGroup, tags))
                .send()
                .await
                .map_err(|e| cloud_error(e, vpc_id))?;
            let group = out.group_id().unwrap_or_default().to_string();
            if !ingress.is_empty() {
                ec2.authorize_security_group_ingress()
                    .group_id(&group)
                    .set_ip_permissions(Some(ingress.iter().map(permission).collect()))
                    .send()
                    .await
                    .map_err(|e| cloud_error(e, &group))?;
            }
            Ok(group)
        }
        ResourceSpec::Instance {
            instance_type,
            zone,
            subnet_id,
            security_group_id,
            image,
            root_disk_gib,
            disk_type,
            disk_encrypted,
            metadata,
        } => {
            let mut tags = tags.clone();
            tags.insert(TAG_IMAGE.into(), image.clone());
            tags.insert(TAG_ROOT_DISK.into(), root_disk_gib.to_string());
            tags.insert(TAG_DISK_TYPE.into(), disk_type.as_str().into());
            tags.insert(TAG_DISK_ENCRYPTED.into(), disk_encrypted.to_string());
            let out = ec2
                .run_instances()
                .image_id(image_id)
                .instance_type(InstanceType::from(instance_type.as_str()))
                .subnet_id(subnet_id)
                .security_group_ids(security_group_id)
                .min_count(1)
                .max_count(1)
                .client_token(client_token)
                .set_user_data(user_data)
                // IMDSv2 with one hop keeps pods from the node's credentials.
                .metadata_options(
                    InstanceMetadataOptionsRequest::builder()
                        .http_endpoint(InstanceMetadataEndpointState::Enabled)
                        .http_tokens(match metadata.tokens_required {
                            true => HttpTokensState::Required,
                            false => HttpTokensState::Optional,
                        })
                        .http_put_response_hop_limit(i32::from(metadata.hop_limit))
                        .build(),
                )
                .block_device_mappings(
                    BlockDeviceMapping::builder()
                        .device_name("/dev/xvda")
                        .ebs(
                            EbsBlockDevice::builder()
                                .volume_size(*root_disk_gib as i32)
                                .volume_type(match disk_type {
                                    DiskType::Gp3 => VolumeType::Gp3,
                                    DiskType::Gp2 => VolumeType::Gp2,
                                    DiskType::Io2 => VolumeType::Io2,
                                })
                                .encrypted(*disk_encrypted)
                                .delete_on_termination(true)
                                .build(),
                        )
                        .build(),
                )
                .tag_specifications(tag_specification(ResourceType::Instance, &tags))
                .tag_specifications(tag_specification(ResourceType::Volume, &tags))
                .send()
                .await
                .map_err(|e| match cloud_error(e, client_token) {
                    CloudError::InsufficientCapacity { .. } => CloudError::InsufficientCapacity {
                        zone: zone.clone(),
                        instance_type: instance_type.clone(),
                    },
                    other => other,
                })?;
            Ok(out
                .instances()
                .first()
                .and_then(|i| i.instance_id())
                .unwrap_or_default()
                .to_string())
        }
        ResourceSpec::VpcPeering {
            vpc_id,
            peer_account,
            peer_vpc_id,
            peer_region,
        } => {
            let out = ec2
                .create_vpc_peering_connection()
                .vpc_id(vpc_id)
                .peer_owner_id(peer_account)
                .peer_vpc_id(peer_vpc_id)
                .peer_region(peer_region)
                .tag_specifications(tag_specification(ResourceType::VpcPeeringConnection, tags))
                .send()
                .await
                .map_err(|e| cloud_error(e, vpc_id))?;
            Ok(out
                .vpc_peering_connection()
                .and_then(|p| p.vpc_peering_connection_id())
                .unwrap_or_default()
                .to_string())
        }
        ResourceSpec::LoadBalancer { .. } | ResourceSpec::ServiceLoadBalancer { .. } => {
            Err(CloudError::Invalid {
                message: "load balancers are Elastic Load Balancing's".into(),
            })
        }
    }
}

fn permission(rule: &IngressRule) -> IpPermission {
    let range = IpRange::builder().cidr_ip(rule.source.to_string()).build();
    match rule.protocol {
        Protocol::Tcp => IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(i32::from(rule.port))
            .to_port(i32::from(rule.port)),
        // EC2's "-1": every protocol, every port.
        Protocol::All => IpPermission::builder().ip_protocol("-1"),
    }
    .ip_ranges(range)
    .build()
}

/// The internet gateway attached to `vpc_id`, if any.
async fn gateway_of(ec2: &Client, vpc_id: &str) -> CloudResult<Option<String>> {
    let out = ec2
        .describe_internet_gateways()
        .filters(
            Ec2Filter::builder()
                .name("attachment.vpc-id")
                .values(vpc_id)
                .build(),
        )
        .send()
        .await
        .map_err(|e| cloud_error(e, vpc_id))?;
    Ok(out
        .internet_gateways()
        .first()
        .and_then(|g| g.internet_gateway_id())
        .map(String::from))
}

/// The resources of `kind` (not load balancers) carrying every tag of `tags`.
pub(crate) async fn describe(
    ec2: &Client,
    region: &str,
    kind: ResourceKind,
    tags: &Tags,
) -> CloudResult<Vec<CloudResource>> {
    let filters = Some(tag_filters(tags));
    Ok(match kind {
        ResourceKind::Vpc => ec2
            .describe_vpcs()
            .set_filters(filters)
            .send()
            .await
            .map_err(|e| cloud_error(e, ""))?
            .vpcs()
            .iter()
            .map(|v| {
                let state = match v.state() {
                    Some(VpcState::Available) => ResourceState::Available,
                    _ => ResourceState::Pending,
                };
                let spec = ResourceSpec::Vpc {
                    cidr: cidr(v.cidr_block()),
                };
                resource(
                    region,
                    v.vpc_id().unwrap_or_default(),
                    spec,
                    tags_of(v.tags()),
                    state,
                )
            })
            .collect(),
        ResourceKind::Subnet => ec2
            .describe_subnets()
            .set_filters(filters)
            .send()
            .await
            .map_err(|e| cloud_error(e, ""))?
            .subnets()
            .iter()
            .map(|s| {
                let state = match s.state() {
                    Some(SubnetState::Available) => ResourceState::Available,
                    _ => ResourceState::Pending,
                };
                let spec = ResourceSpec::Subnet {
                    vpc_id: s.vpc_id().unwrap_or_default().to_string(),
                    zone: s.availability_zone().unwrap_or_default().to_string(),
                    cidr: cidr(s.cidr_block()),
                };
                let id = s.subnet_id().unwrap_or_default();
                resource(region, id, spec, tags_of(s.tags()), state)
            })
            .collect(),
        ResourceKind::RouteTable => ec2
            .describe_route_tables()
            .set_filters(filters)
            .send()
            .await
            .map_err(|e| cloud_error(e, ""))?
            .route_tables()
            .iter()
            .map(|t| {
                let spec = ResourceSpec::RouteTable {
                    vpc_id: t.vpc_id().unwrap_or_default().to_string(),
                    subnet_ids: t
                        .associations()
                        .iter()
                        .filter_map(|a| a.subnet_id().map(String::from))
                        .collect(),
                    routes: t
                        .routes()
                        .iter()
                        .filter_map(|r| {
                            Some(Route {
                                destination: r.destination_cidr_block()?.parse().ok()?,
                                target: r.vpc_peering_connection_id()?.to_string(),
                            })
                        })
                        .collect(),
                };
                let id = t.route_table_id().unwrap_or_default();
                resource(
                    region,
                    id,
                    spec,
                    tags_of(t.tags()),
                    ResourceState::Available,
                )
            })
            .collect(),
        ResourceKind::SecurityGroup => ec2
            .describe_security_groups()
            .set_filters(filters)
            .send()
            .await
            .map_err(|e| cloud_error(e, ""))?
            .security_groups()
            .iter()
            .map(|g| {
                let ingress = g
                    .ip_permissions()
                    .iter()
                    .flat_map(|p| {
                        let all = p.ip_protocol() == Some("-1");
                        let port = p.from_port().unwrap_or(0) as u16;
                        p.ip_ranges().iter().map(move |r| {
                            let source = cidr(r.cidr_ip());
                            if all {
                                IngressRule::all(source)
                            } else {
                                IngressRule::tcp(port, source)
                            }
                        })
                    })
                    .collect();
                let spec = ResourceSpec::SecurityGroup {
                    vpc_id: g.vpc_id().unwrap_or_default().to_string(),
                    ingress,
                };
                let id = g.group_id().unwrap_or_default();
                resource(
                    region,
                    id,
                    spec,
                    tags_of(g.tags()),
                    ResourceState::Available,
                )
            })
            .collect(),
        ResourceKind::Instance => {
            let mut found = Vec::new();
            let mut pages = ec2
                .describe_instances()
                .set_filters(filters)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                for reservation in page.map_err(|e| cloud_error(e, ""))?.reservations() {
                    found.extend(
                        reservation
                            .instances()
                            .iter()
                            .filter_map(|i| instance(region, i)),
                    );
                }
            }
            found
        }
        ResourceKind::VpcPeering => ec2
            .describe_vpc_peering_connections()
            .set_filters(filters)
            .send()
            .await
            .map_err(|e| cloud_error(e, ""))?
            .vpc_peering_connections()
            .iter()
            .filter_map(|p| {
                use VpcPeeringConnectionStateReasonCode as Code;
                let status = p.status();
                let code = status.and_then(|s| s.code());
                let message = status.and_then(|s| s.message()).unwrap_or_default();
                let peering_state = code.and_then(|c| PeeringState::parse(c.as_str()))?;
                let state = match code {
                    Some(Code::Active) => ResourceState::Available,
                    Some(Code::Deleted) => return None,
                    Some(Code::Deleting) => ResourceState::Deleting,
                    Some(code @ (Code::Rejected | Code::Expired | Code::Failed)) => {
                        ResourceState::Terminated {
                            reason: match message {
                                "" => code.as_str().to_string(),
                                message => message.to_string(),
                            },
                        }
                    }
                    _ => ResourceState::Pending,
                };
                let requester = p.requester_vpc_info();
                let accepter = p.accepter_vpc_info();
                let spec = ResourceSpec::VpcPeering {
                    vpc_id: requester
                        .and_then(|v| v.vpc_id())
                        .unwrap_or_default()
                        .into(),
                    peer_account: accepter
                        .and_then(|v| v.owner_id())
                        .unwrap_or_default()
                        .into(),
                    peer_vpc_id: accepter.and_then(|v| v.vpc_id()).unwrap_or_default().into(),
                    peer_region: accepter.and_then(|v| v.region()).unwrap_or(region).into(),
                };
                let id = p.vpc_peering_connection_id().unwrap_or_default();
                let mut found = resource(region, id, spec, tags_of(p.tags()), state);
                found.peering = Some(PeeringStatus {
                    state: peering_state,
                    message: message.to_string(),
                    peer_cidr: accepter
                        .and_then(|v| v.cidr_block())
                        .and_then(|c| c.parse().ok()),
                    expires_at: p
                        .expiration_time()
                        .filter(|_| peering_state == PeeringState::PendingAcceptance)
                        .and_then(|t| Timestamp::from_second(t.secs()).ok()),
                });
                Some(found)
            })
            .collect(),
        ResourceKind::LoadBalancer | ResourceKind::ServiceLoadBalancer => Vec::new(),
    })
}

/// An instance as the trait reports it; `None` for one Dialtone terminated.
fn instance(region: &str, i: &Instance) -> Option<CloudResource> {
    let tags = tags_of(i.tags());
    let reason = || {
        i.state_reason()
            .and_then(|r| r.message())
            .unwrap_or("the instance stopped")
            .to_string()
    };
    let state = match i.state().and_then(|s| s.name()) {
        Some(InstanceStateName::Running) => ResourceState::Available,
        Some(InstanceStateName::Pending) => ResourceState::Pending,
        Some(InstanceStateName::ShuttingDown) => ResourceState::Deleting,
        Some(InstanceStateName::Terminated) if tags.contains_key(TAG_DELETED) => return None,
        Some(InstanceStateName::Terminated) => ResourceState::Terminated { reason: reason() },
        _ => ResourceState::Impaired { reason: reason() },
    };
    let spec = ResourceSpec::Instance {
        instance_type: i
            .instance_type()
            .map(|t| t.as_str().to_string())
            .unwrap_or_default(),
        zone: i
            .placement()
            .and_then(|p| p.availability_zone())
            .unwrap_or_default()
            .to_string(),
        subnet_id: i.subnet_id().unwrap_or_default().to_string(),
        security_group_id: i
            .security_groups()
            .first()
            .and_then(|g| g.group_id())
            .unwrap_or_default()
            .to_string(),
        image: tags.get(TAG_IMAGE).cloned().unwrap_or_default(),
        root_disk_gib: tags
            .get(TAG_ROOT_DISK)
            .and_then(|d| d.parse().ok())
            .unwrap_or_default(),
        disk_type: tags
            .get(TAG_DISK_TYPE)
            .and_then(|t| DiskType::ALL.iter().copied().find(|d| d.as_str() == t))
            .unwrap_or(DiskType::Gp3),
        disk_encrypted: tags.get(TAG_DISK_ENCRYPTED).is_some_and(|e| e == "true"),
        metadata: InstanceMetadata {
            tokens_required: i
                .metadata_options()
                .and_then(|m| m.http_tokens())
                .is_none_or(|t| *t == HttpTokensState::Required),
            hop_limit: i
                .metadata_options()
                .and_then(|m| m.http_put_response_hop_limit())
                .and_then(|hops| u8::try_from(hops).ok())
                .unwrap_or(1),
        },
    };
    Some(CloudResource {
        id: i.instance_id().unwrap_or_default().to_string(),
        region: region.to_string(),
        spec,
        state,
        address: i.private_ip_address().unwrap_or_default().to_string(),
        created_at: i
            .launch_time()
            .and_then(|t| Timestamp::from_second(t.secs()).ok())
            .unwrap_or_else(|| created_at(&tags)),
        tags,
        peering: None,
    })
}

/// When EC2 says an instance changed state: the time in its `StateTransitionReason`
/// ("User initiated (2026-12-07 10:00:00 GMT)"; moto writes UTC), to the second.
fn transition_time(reason: &str) -> Option<Timestamp> {
    let inside = reason.split_once('(')?.1.split_once(')')?.0;
    let civil = inside
        .trim_end_matches(" GMT")
        .trim_end_matches(" UTC")
        .replace(' ', "T");
    civil
        .parse::<jiff::civil::DateTime>()
        .ok()?
        .to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

/// The lifetimes of the instances Dialtone launched (those with a cluster tag) that are
/// running or ended at or after `ended_since`: from `LaunchTime` to the time of the
/// transition that stopped or terminated it, or, when EC2 gives none, `now`, the first
/// moment it is known to have ended. EC2 lists a terminated instance for about an hour,
/// so the meter, reading every minute, sees each end.
pub(crate) async fn lifetimes(
    ec2: &Client,
    region: &str,
    ended_since: Timestamp,
    now: Timestamp,
) -> CloudResult<Vec<InstanceLifetime>> {
    let dialtones = Ec2Filter::builder()
        .name("tag-key")
        .values(dialtone_cloud::tags::TAG_CLUSTER)
        .build();
    let mut found = Vec::new();
    let mut pages = ec2
        .describe_instances()
        .filters(dialtones)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for i in page
            .map_err(|e| cloud_error(e, ""))?
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
        {
            let Some(started_at) = i
                .launch_time()
                .and_then(|t| Timestamp::from_second(t.secs()).ok())
            else {
                continue;
            };
            let ended_at = match i.state().and_then(|s| s.name()) {
                Some(InstanceStateName::Pending | InstanceStateName::Running) => None,
                _ => Some(
                    i.state_transition_reason()
                        .and_then(transition_time)
                        .unwrap_or(now),
                ),
            };
            if ended_at.is_some_and(|end| end < ended_since) {
                continue;
            }
            found.push(InstanceLifetime {
                id: i.instance_id().unwrap_or_default().to_string(),
                region: region.to_string(),
                instance_type: i
                    .instance_type()
                    .map(|t| t.as_str().to_string())
                    .unwrap_or_default(),
                tags: tags_of(i.tags()),
                started_at,
                ended_at,
            });
        }
    }
    Ok(found)
}

/// Deletes the resource `id` names by its prefix; `NotFound` once it is gone.
pub(crate) async fn delete(ec2: &Client, id: &str) -> CloudResult<()> {
    let prefix = id.split('-').next().unwrap_or("");
    match prefix {
        "i" => {
            let out = ec2
                .describe_instances()
                .instance_ids(id)
                .send()
                .await
                .map_err(|e| cloud_error(e, id))?;
            let gone = out
                .reservations()
                .iter()
                .flat_map(|r| r.instances())
                .all(|i| {
                    i.tags().iter().any(|t| t.key() == Some(TAG_DELETED))
                        && i.state().and_then(|s| s.name()) == Some(&InstanceStateName::Terminated)
                });
            if gone {
                return Err(CloudError::NotFound { id: id.to_string() });
            }
            // Tagged first: a terminated instance with the tag is gone for describe.
            ec2.create_tags()
                .resources(id)
                .tags(Tag::builder().key(TAG_DELETED).value("true").build())
                .send()
                .await
                .map_err(|e| cloud_error(e, id))?;
            ec2.terminate_instances()
                .instance_ids(id)
                .send()
                .await
                .map_err(|e| cloud_error(e, id))?;
        }
        "vpc" => {
            if let Some(gateway) = gateway_of(ec2, id).await? {
                ec2.detach_internet_gateway()
                    .internet_gateway_id(&gateway)
                    .vpc_id(id)
                    .send()
                    .await
                    .map_err(|e| cloud_error(e, id))?;
                ec2.delete_internet_gateway()
                    .internet_gateway_id(&gateway)
                    .send()
                    .await
                    .map_err(|e| cloud_error(e, id))?;
            }
            ec2.delete_vpc()
                .vpc_id(id)
                .send()
                .await
                .map_err(|e| cloud_error(e, id))?;
        }
        "subnet" => {
            ec2.delete_subnet()
                .subnet_id(id)
                .send()
                .await
                .map_err(|e| cloud_error(e, id))?;
        }
        "rtb" => {
            let out = ec2
                .describe_route_tables()
                .route_table_ids(id)
                .send()
                .await
                .map_err(|e| cloud_error(e, id))?;
            for table in out.route_tables() {
                for association in table.associations() {
                    if let Some(association) = association.route_table_association_id() {
                        ec2.disassociate_route_table()
                            .association_id(association)
                            .send()
                            .await
                            .map_err(|e| cloud_error(e, id))?;
                    }
                }
            }
            ec2.delete_route_table()
                .route_table_id(id)
                .send()
                .await
                .map_err(|e| cloud_error(e, id))?;
        }
        "sg" => {
            ec2.delete_security_group()
                .group_id(id)
                .send()
                .await
                .map_err(|e| cloud_error(e, id))?;
        }
        "pcx" => {
            let out = ec2
                .describe_vpc_peering_connections()
                .vpc_peering_connection_ids(id)
                .send()
                .await
                .map_err(|e| cloud_error(e, id))?;
            // One that ended by itself (rejected, expired, failed) cannot be deleted; AWS
            // forgets it in time, and to its owner it is gone already.
            let ended = out.vpc_peering_connections().iter().all(|p| {
                p.status()
                    .and_then(|s| s.code())
                    .and_then(|c| PeeringState::parse(c.as_str()))
                    .is_none_or(PeeringState::is_final)
            });
            if ended {
                return Err(CloudError::NotFound { id: id.to_string() });
            }
            ec2.delete_vpc_peering_connection()
                .vpc_peering_connection_id(id)
                .send()
                .await
                .map_err(|e| cloud_error(e, id))?;
        }
        _ => {
            return Err(CloudError::Invalid {
                message: format!("{id} is not an id the aws provider made"),
            });
        }
    }
    Ok(())
}

/// Changes a route table's routes or a security group's rules, idempotently: EC2's answer
/// that a rule or route is already there (or already gone) is success.
pub(crate) async fn modify(ec2: &Client, id: &str, change: Change) -> CloudResult<()> {
    let outcome = match &change {
        Change::SetListeners(_) | Change::SetTargets(_) => {
            return Err(CloudError::Invalid {
                message: format!("{id} is not a load balancer"),
            });
        }
        Change::AddRoute(route) => ec2
            .create_route()
            .route_table_id(id)
            .destination_cidr_block(route.destination.to_string())
            .vpc_peering_connection_id(&route.target)
            .send()
            .await
            .map(drop)
            .map_err(|e| (code_of(&e), cloud_error(e, id))),
        Change::RemoveRoute { destination } => ec2
            .delete_route()
            .route_table_id(id)
            .destination_cidr_block(destination.to_string())
            .send()
            .await
            .map(drop)
            .map_err(|e| (code_of(&e), cloud_error(e, id))),
        Change::AllowIngress(rule) => ec2
            .authorize_security_group_ingress()
            .group_id(id)
            .ip_permissions(permission(rule))
            .send()
            .await
            .map(drop)
            .map_err(|e| (code_of(&e), cloud_error(e, id))),
        Change::RevokeIngress(rule) => ec2
            .revoke_security_group_ingress()
            .group_id(id)
            .ip_permissions(permission(rule))
            .send()
            .await
            .map(drop)
            .map_err(|e| (code_of(&e), cloud_error(e, id))),
        Change::SetTags(tags) => ec2
            .create_tags()
            .resources(id)
            .set_tags(Some(
                tags.iter()
                    .map(|(k, v)| Tag::builder().key(k).value(v).build())
                    .collect(),
            ))
            .send()
            .await
            .map(drop)
            .map_err(|e| (code_of(&e), cloud_error(e, id))),
        Change::RemoveTags(keys) => ec2
            .delete_tags()
            .resources(id)
            .set_tags(Some(
                keys.iter().map(|k| Tag::builder().key(k).build()).collect(),
            ))
            .send()
            .await
            .map(drop)
            .map_err(|e| (code_of(&e), cloud_error(e, id))),
    };
    match (outcome, &change) {
        (Ok(()), _) => Ok(()),
        (Err((code, _)), Change::AllowIngress(_)) if code == "InvalidPermission.Duplicate" => {
            Ok(())
        }
        (Err((code, _)), Change::RevokeIngress(_)) if code == "InvalidPermission.NotFound" => {
            Ok(())
        }
        (Err((code, _)), Change::RemoveRoute { .. }) if code == "InvalidRoute.NotFound" => Ok(()),
        (Err((code, error)), Change::AddRoute(route)) if code == "RouteAlreadyExists" => {
            // The same route again is success; another target's is the caller's mistake.
            let out = ec2
                .describe_route_tables()
                .route_table_ids(id)
                .send()
                .await
                .map_err(|e| cloud_error(e, id))?;
            let destination = route.destination.to_string();
            let same = out.route_tables().iter().flat_map(|t| t.routes()).any(|r| {
                r.destination_cidr_block() == Some(destination.as_str())
                    && r.vpc_peering_connection_id() == Some(route.target.as_str())
            });
            if same { Ok(()) } else { Err(error) }
        }
        (Err((_, error)), _) => Err(error),
    }
}

/// The AWS error code of a failed call, if the service answered one.
fn code_of<E, R>(error: &aws_sdk_ec2::error::SdkError<E, R>) -> String
where
    E: aws_sdk_ec2::error::ProvideErrorMetadata,
{
    error
        .as_service_error()
        .and_then(|e| e.code())
        .unwrap_or_default()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_transition_says_when_in_ec2s_words_and_motos() {
        let at: Timestamp = "2026-12-07T10:00:05Z".parse().unwrap();
        for reason in [
            "User initiated (2026-12-07 10:00:05 GMT)",
            "User initiated (2026-12-07 10:00:05 UTC)",
        ] {
            assert_eq!(transition_time(reason), Some(at), "{reason}");
        }
        for reason in ["", "Server.InternalError", "User initiated (soon)"] {
            assert_eq!(transition_time(reason), None, "{reason}");
        }
    }
}
