//! The aws provider against moto's EC2 and Elastic Load Balancing: a cluster's resources are
//! made, found again by their tags with the spec they were made with, made once whatever
//! the retries, and removed leaving nothing. Where moto differs from EC2 the test says so.

use dialtone_aws::{AccessKeys, AwsOptions, AwsProvider, MachineImages};
use dialtone_cloud::{
    Change, CloudError, CloudResource, CreateRequest, DiskType, Filter, IngressRule,
    InstanceMetadata, Listener, Provider, ResourceKind, ResourceSpec, ResourceState, Tags,
};
use dialtone_testkit::MotoServer;

const REGION: &str = "us-east-1";
const CLUSTER: &str = "dialtone.dev/cluster";
const PART: &str = "dialtone.dev/part";

async fn provider(moto: &MotoServer, secrets: &tempfile::TempDir) -> AwsProvider {
    AwsProvider::new(AwsOptions {
        endpoint_url: Some(moto.endpoint().to_string()),
        // moto launches any image id; this one is among those it lists.
        // moto does not check an image's architecture against the instance type's.
        images: MachineImages {
            amd64: "ami-12c6146b".into(),
            arm64: Some("ami-12c6146b".into()),
        },
        access_keys: Some(AccessKeys {
            id: "testing".into(),
            secret: "testing".into(),
        }),
        secrets_dir: secrets.path().to_path_buf(),
        token_webhook: None,
    })
    .await
}

/// The tags the lifecycle puts on a cluster's resources; instances also say their role.
fn tags(uid: &str, part: &str) -> Tags {
    let mut tags = Tags::from([
        (CLUSTER.to_string(), uid.to_string()),
        ("dialtone.dev/part".to_string(), part.to_string()),
    ]);
    if part.starts_with("cp-") {
        tags.insert("dialtone.dev/role".into(), "control-plane".into());
    } else if part.starts_with("worker-") {
        tags.insert("dialtone.dev/role".into(), "worker".into());
    }
    tags
}

async fn create(
    provider: &AwsProvider,
    uid: &str,
    part: &str,
    spec: ResourceSpec,
) -> CloudResource {
    provider
        .create(
            REGION,
            CreateRequest {
                client_token: format!("{uid}/{part}"),
                spec,
                tags: tags(uid, part),
                bootstrap: None,
            },
        )
        .await
        .unwrap_or_else(|e| panic!("creating {part}: {e}"))
}

/// The `dialtone.dev/part` tag of the cluster's resource `id`, as describe reports it.
async fn part_tag(aws: &AwsProvider, uid: &str, id: &str) -> Option<String> {
    let found = aws
        .describe(REGION, &Filter::tagged(CLUSTER, uid))
        .await
        .unwrap();
    let resource = found.into_iter().find(|r| r.id == id)?;
    resource.tags.get(PART).cloned()
}

async fn of_cluster(provider: &AwsProvider, uid: &str) -> Vec<CloudResource> {
    provider
        .describe(REGION, &Filter::tagged(CLUSTER, uid))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_clusters_resources_are_made_found_by_tags_and_removed() {
    let moto = MotoServer::start().unwrap();
    let secrets = tempfile::tempdir().unwrap();
    let aws = provider(&moto, &secrets).await;
    assert_eq!(
        aws.check(REGION).await.unwrap().len(),
        6,
        "us-east-1's zones, as moto lists them"
    );
    // The catalogue becomes what the region offers: moto's copy of EC2's offerings.
    let shipped = aws.catalog().len();
    let offered = aws.read_offerings(REGION).await.unwrap();
    assert_eq!(aws.catalog().len(), offered);
    assert!(
        offered > shipped / 2 && offered <= shipped,
        "{offered} of the catalogue's {shipped} types offered"
    );
    assert!(aws.catalog().get("m5.large").is_some());
    let uid = "3f1c";
    let vpc = create(
        &aws,
        uid,
        "vpc",
        ResourceSpec::Vpc {
            cidr: "10.1.0.0/16".parse().unwrap(),
        },
    )
    .await;
    let mut subnets = Vec::new();
    for (i, zone) in ["us-east-1a", "us-east-1b", "us-east-1c"]
        .iter()
        .enumerate()
    {
        let spec = ResourceSpec::Subnet {
            vpc_id: vpc.id.clone(),
            zone: zone.to_string(),
            cidr: format!("10.1.{}.0/20", i * 16).parse().unwrap(),
        };
        subnets.push(create(&aws, uid, &format!("subnet-{zone}"), spec).await);
    }
    let subnet_ids: Vec<String> = subnets.iter().map(|s| s.id.clone()).collect();
    // A tag removed at the console, and put back, as drift is.
    aws.modify(
        REGION,
        &subnet_ids[0],
        Change::RemoveTags(vec![PART.into()]),
    )
    .await
    .unwrap();
    assert_eq!(part_tag(&aws, uid, &subnet_ids[0]).await, None);
    let tag = Tags::from([(PART.to_string(), "subnet-us-east-1a".to_string())]);
    aws.modify(REGION, &subnet_ids[0], Change::SetTags(tag))
        .await
        .unwrap();
    assert_eq!(
        part_tag(&aws, uid, &subnet_ids[0]).await.as_deref(),
        Some("subnet-us-east-1a")
    );
    let table = create(
        &aws,
        uid,
        "routes",
        ResourceSpec::RouteTable {
            vpc_id: vpc.id.clone(),
            subnet_ids: subnet_ids.clone(),
            routes: Vec::new(),
        },
    )
    .await;
    let ingress = vec![
        IngressRule::tcp(6443, "0.0.0.0/0".parse().unwrap()),
        IngressRule::all("10.1.0.0/16".parse().unwrap()),
    ];
    let group = create(
        &aws,
        uid,
        "nodes",
        ResourceSpec::SecurityGroup {
            vpc_id: vpc.id.clone(),
            ingress: ingress.clone(),
        },
    )
    .await;
    let api = create(
        &aws,
        uid,
        "api",
        ResourceSpec::LoadBalancer {
            subnet_ids: subnet_ids.clone(),
            port: 6443,
            public: true,
            cross_zone: true,
        },
    )
    .await;
    let node = ResourceSpec::Instance {
        instance_type: "m7g.large".into(),
        zone: "us-east-1b".into(),
        subnet_id: subnet_ids[1].clone(),
        security_group_id: group.id.clone(),
        image: "dialtone-node-1.34".into(),
        root_disk_gib: 50,
        disk_type: DiskType::Gp3,
        disk_encrypted: true,
        metadata: InstanceMetadata {
            tokens_required: true,
            hop_limit: 1,
        },
    };
    let instance = create(&aws, uid, "cp-0", node.clone()).await;
    let worker = create(&aws, uid, "worker-0", node.clone()).await;
    // The API forwards to the control plane, not to workers.
    let targets = aws.api_targets(REGION, &api.id).await.unwrap();
    assert_eq!(targets, [instance.id.as_str()]);

    // Found again by their tags, with the specs they were made with.
    let found = of_cluster(&aws, uid).await;
    let kinds: Vec<ResourceKind> = found.iter().map(|r| r.spec.kind()).collect();
    assert_eq!(
        kinds,
        [
            ResourceKind::Vpc,
            ResourceKind::Subnet,
            ResourceKind::Subnet,
            ResourceKind::Subnet,
            ResourceKind::RouteTable,
            ResourceKind::SecurityGroup,
            ResourceKind::LoadBalancer,
            ResourceKind::Instance,
            ResourceKind::Instance,
        ]
    );
    let by_id = |id: &str| found.iter().find(|r| r.id == id).unwrap().clone();
    assert_eq!(by_id(&vpc.id).spec, vpc.spec);
    for subnet in &subnets {
        assert_eq!(by_id(&subnet.id).spec, subnet.spec);
    }
    let ResourceSpec::RouteTable {
        subnet_ids: associated,
        ..
    } = by_id(&table.id).spec
    else {
        panic!()
    };
    assert_eq!(associated.len(), 3, "every subnet is associated");
    let ResourceSpec::SecurityGroup { ingress: rules, .. } = by_id(&group.id).spec else {
        panic!()
    };
    assert_eq!(rules, ingress);
    let ResourceSpec::LoadBalancer { port, public, .. } = by_id(&api.id).spec else {
        panic!()
    };
    assert_eq!((port, public), (6443, true));
    assert!(
        by_id(&api.id).address.contains("elb"),
        "{}",
        by_id(&api.id).address
    );
    let described = by_id(&instance.id);
    assert_eq!(
        described.spec, node,
        "the image and root disk come back from tags"
    );
    assert!(!described.address.is_empty(), "a private address");
    assert!(matches!(
        described.state,
        ResourceState::Available | ResourceState::Pending
    ));
    assert_eq!(described.tags["dialtone.dev/part"], "cp-0");

    // A repeated create (its answer lost, say) makes nothing new. moto's RunInstances
    // ignores ClientToken; the lookup by the token's tag alone prevents the duplicate.
    let again = create(&aws, uid, "cp-0", node.clone()).await;
    assert_eq!(again.id, instance.id);
    let again = create(&aws, uid, "vpc", vpc.spec.clone()).await;
    assert_eq!(again.id, vpc.id);
    assert_eq!(of_cluster(&aws, uid).await.len(), found.len());

    // Only its own: another cluster's resources are not listed.
    create(
        &aws,
        "other",
        "vpc",
        ResourceSpec::Vpc {
            cidr: "10.2.0.0/16".parse().unwrap(),
        },
    )
    .await;
    assert_eq!(of_cluster(&aws, uid).await.len(), found.len());

    // Removed in the controller's order; a terminated instance is gone for describe, though
    // EC2 (and moto) keep listing it.
    aws.delete(REGION, &instance.id).await.unwrap();
    aws.delete(REGION, &worker.id).await.unwrap();
    aws.delete(REGION, &api.id).await.unwrap();
    for r in [&group, &table] {
        aws.delete(REGION, &r.id).await.unwrap();
    }
    for subnet in &subnets {
        aws.delete(REGION, &subnet.id).await.unwrap();
    }
    aws.delete(REGION, &vpc.id).await.unwrap();
    assert_eq!(of_cluster(&aws, uid).await, Vec::new());
    for id in [&instance.id, &vpc.id, &api.id, &subnets[0].id] {
        assert!(
            matches!(
                aws.delete(REGION, id).await,
                Err(CloudError::NotFound { .. })
            ),
            "{id} is gone"
        );
    }
}

/// A VPC `10.{octet}.0.0/16` with one subnet in us-east-1a and a security group; the
/// subnet, and an instance spec for it.
async fn one_zone(aws: &AwsProvider, uid: &str, octet: u8) -> (CloudResource, ResourceSpec) {
    let vpc = create(
        aws,
        uid,
        "vpc",
        ResourceSpec::Vpc {
            cidr: format!("10.{octet}.0.0/16").parse().unwrap(),
        },
    )
    .await;
    let subnet = create(
        aws,
        uid,
        "subnet-us-east-1a",
        ResourceSpec::Subnet {
            vpc_id: vpc.id.clone(),
            zone: "us-east-1a".into(),
            cidr: format!("10.{octet}.0.0/20").parse().unwrap(),
        },
    )
    .await;
    let group = create(
        aws,
        uid,
        "sg",
        ResourceSpec::SecurityGroup {
            vpc_id: vpc.id.clone(),
            ingress: Vec::new(),
        },
    )
    .await;
    let node = ResourceSpec::Instance {
        instance_type: "t3.medium".into(),
        zone: "us-east-1a".into(),
        subnet_id: subnet.id.clone(),
        security_group_id: group.id.clone(),
        image: "dialtone-node-1.34".into(),
        root_disk_gib: 50,
        disk_type: DiskType::Gp3,
        disk_encrypted: true,
        metadata: InstanceMetadata {
            tokens_required: true,
            hop_limit: 1,
        },
    };
    (subnet, node)
}

#[tokio::test]
async fn a_control_plane_launched_before_its_endpoint_joins_it() {
    let moto = MotoServer::start().unwrap();
    let secrets = tempfile::tempdir().unwrap();
    let aws = provider(&moto, &secrets).await;
    let uid = "late";
    let (subnet, node) = one_zone(&aws, uid, 4).await;
    let cp = create(&aws, uid, "cp-0", node.clone()).await;
    create(&aws, uid, "worker-0", node).await;
    let api = create(
        &aws,
        uid,
        "api",
        ResourceSpec::LoadBalancer {
            subnet_ids: vec![subnet.id.clone()],
            port: 6443,
            public: false,
            cross_zone: false,
        },
    )
    .await;
    assert_eq!(aws.api_targets(REGION, &api.id).await.unwrap(), [cp.id]);
}

#[tokio::test]
async fn bad_requests_get_the_errors_the_controller_reports() {
    let moto = MotoServer::start().unwrap();
    let secrets = tempfile::tempdir().unwrap();
    let aws = provider(&moto, &secrets).await;
    let vpc = create(
        &aws,
        "bad",
        "vpc",
        ResourceSpec::Vpc {
            cidr: "10.3.0.0/16".parse().unwrap(),
        },
    )
    .await;
    // A subnet outside its VPC's range.
    let outside = aws
        .create(
            REGION,
            CreateRequest {
                client_token: "bad/subnet".into(),
                spec: ResourceSpec::Subnet {
                    vpc_id: vpc.id.clone(),
                    zone: "us-east-1a".into(),
                    cidr: "10.9.0.0/20".parse().unwrap(),
                },
                tags: tags("bad", "subnet"),
                bootstrap: None,
            },
        )
        .await;
    assert!(
        matches!(outside, Err(CloudError::Invalid { .. })),
        "{outside:?}"
    );
    // A VPC that does not exist.
    let missing = aws.delete(REGION, "vpc-0123456789abcdef0").await;
    assert!(
        matches!(missing, Err(CloudError::NotFound { .. })),
        "{missing:?}"
    );
    // An endpoint that does not answer: unavailable, after the SDK's retries.
    drop(moto);
    let down = aws.describe(REGION, &Filter::tagged(CLUSTER, "bad")).await;
    assert!(
        matches!(down, Err(CloudError::Unavailable { .. })),
        "{down:?}"
    );
}

/// Two passes that share a network create its VPC at the same moment: EC2's `CreateVpc`
/// takes no client token (and moto ignores tokens anyway), so the provider lets one create
/// per token run at a time, and the second finds the first's VPC.
#[tokio::test]
async fn concurrent_creates_with_one_token_make_one_resource() {
    let moto = MotoServer::start().unwrap();
    let secrets = tempfile::tempdir().unwrap();
    let aws = provider(&moto, &secrets).await;
    let spec = ResourceSpec::Vpc {
        cidr: "10.7.0.0/16".parse().unwrap(),
    };
    let (first, second) = tokio::join!(
        create(&aws, "shared", "vpc", spec.clone()),
        create(&aws, "shared", "vpc", spec)
    );
    assert_eq!(first.id, second.id);
    let vpcs: Vec<CloudResource> = of_cluster(&aws, "shared")
        .await
        .into_iter()
        .filter(|r| r.spec.kind() == ResourceKind::Vpc)
        .collect();
    assert_eq!(vpcs.len(), 1, "{vpcs:#?}");
}

/// A certificate in moto's ACM, as a user would have imported or requested one. (The SDK
/// crates here do not include ACM; moto answers its JSON protocol without signatures.)
async fn certificate(moto: &MotoServer, domain: &str) -> String {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let answer: serde_json::Value = reqwest::Client::new()
        .post(moto.endpoint())
        .header("X-Amz-Target", "CertificateManager.RequestCertificate")
        .header("Content-Type", "application/x-amz-json-1.1")
        .header(
            "Authorization",
            format!("AWS4-HMAC-SHA256 Credential=testing/20260101/{REGION}/acm/aws4_request, SignedHeaders=host, Signature=0"),
        )
        .body(serde_json::json!({"DomainName": domain}).to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["CertificateArn"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_service_load_balancer_terminates_tls_follows_its_workers_and_goes() {
    let moto = MotoServer::start().unwrap();
    let secrets = tempfile::tempdir().unwrap();
    let aws = provider(&moto, &secrets).await;
    let uid = "svc";
    let (subnet, node) = one_zone(&aws, uid, 5).await;
    let first = create(&aws, uid, "worker-0", node.clone()).await;
    let second = create(&aws, uid, "worker-1", node).await;
    let tls = certificate(&moto, "web.example.com").await;
    let mut listeners = vec![
        Listener {
            port: 80,
            node_port: 30080,
            certificate: None,
        },
        Listener {
            port: 443,
            node_port: 30443,
            certificate: Some(tls.clone()),
        },
    ];
    let mut service_tags = tags(uid, "service/default/web");
    service_tags.insert("dialtone.dev/service".into(), "uid-of-web".into());
    let balancer = aws
        .create(
            REGION,
            CreateRequest {
                client_token: format!("{uid}/service/uid-of-web"),
                spec: ResourceSpec::ServiceLoadBalancer {
                    subnet_ids: vec![subnet.id.clone()],
                    public: true,
                    listeners: listeners.clone(),
                    targets: vec![first.id.clone()],
                },
                tags: service_tags,
                bootstrap: None,
            },
        )
        .await
        .unwrap();
    let described = |kind| {
        let aws = &aws;
        async move {
            aws.describe(REGION, &Filter::tagged(CLUSTER, uid).kind(kind))
                .await
                .unwrap()
        }
    };
    // Found again as a Service's load balancer with what it was made with; not as an API
    // endpoint.
    assert!(described(ResourceKind::LoadBalancer).await.is_empty());
    let found = described(ResourceKind::ServiceLoadBalancer).await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, balancer.id);
    assert!(!found[0].address.is_empty());
    let ResourceSpec::ServiceLoadBalancer {
        listeners: found_listeners,
        targets,
        public,
        ..
    } = &found[0].spec
    else {
        panic!("{:?}", found[0].spec);
    };
    assert!(public);
    assert_eq!(*found_listeners, listeners);
    assert_eq!(*targets, std::slice::from_ref(&first.id));

    // Its targets follow the workers; its listeners the Service's ports.
    let mut both = vec![first.id.clone(), second.id.clone()];
    both.sort();
    aws.modify(REGION, &balancer.id, Change::SetTargets(both.clone()))
        .await
        .unwrap();
    listeners[0].node_port = 30081;
    aws.modify(
        REGION,
        &balancer.id,
        Change::SetListeners(listeners.clone()),
    )
    .await
    .unwrap();
    let found = described(ResourceKind::ServiceLoadBalancer).await;
    let ResourceSpec::ServiceLoadBalancer {
        listeners: found_listeners,
        targets,
        ..
    } = &found[0].spec
    else {
        panic!("{:?}", found[0].spec);
    };
    assert_eq!(*found_listeners, listeners);
    assert_eq!(*targets, both);

    // A certificate ACM does not hold is refused, and the listeners stay as they were.
    let mut missing = listeners.clone();
    missing[1].certificate =
        Some("arn:aws:acm:us-east-1:123456789012:certificate/not-there".into());
    let error = aws
        .modify(REGION, &balancer.id, Change::SetListeners(missing))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            CloudError::NotFound { .. } | CloudError::Invalid { .. }
        ),
        "{error:?}"
    );

    aws.delete(REGION, &balancer.id).await.unwrap();
    assert!(
        described(ResourceKind::ServiceLoadBalancer)
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn instances_lifetimes_run_from_launch_to_the_termination_ec2_records() {
    let moto = MotoServer::start().unwrap();
    let secrets = tempfile::tempdir().unwrap();
    let aws = provider(&moto, &secrets).await;
    let uid = "metered";
    let (_, node) = one_zone(&aws, uid, 5).await;
    let before = jiff::Timestamp::now();
    let kept = create(&aws, uid, "worker-0", node.clone()).await;
    let ended = create(&aws, uid, "worker-1", node).await;
    aws.delete(REGION, &ended.id).await.unwrap();
    let after = jiff::Timestamp::now();
    let lifetimes = aws
        .lifetimes(REGION, before - jiff::SignedDuration::from_hours(1))
        .await
        .unwrap();
    let of = |id: &str| {
        lifetimes
            .iter()
            .find(|l| l.id == id)
            .unwrap_or_else(|| panic!("no lifetime of {id}: {lifetimes:?}"))
    };
    // Launch and termination times, to EC2's second.
    let within =
        |t: jiff::Timestamp| (before.as_second()..=after.as_second()).contains(&t.as_second());
    let running = of(&kept.id);
    assert!(within(running.started_at), "{running:?}");
    assert_eq!(running.ended_at, None);
    assert_eq!(running.instance_type, "t3.medium");
    assert_eq!(running.tags.get(CLUSTER).map(String::as_str), Some(uid));
    let gone = of(&ended.id);
    assert!(within(gone.started_at), "{gone:?}");
    let end = gone.ended_at.expect("a terminated instance's end");
    assert!(within(end) && end >= gone.started_at, "{gone:?}");
    // What ended before the meter's horizon is not reported again.
    let later = aws
        .lifetimes(REGION, after + jiff::SignedDuration::from_secs(2))
        .await
        .unwrap();
    assert!(later.iter().all(|l| l.id != ended.id), "{later:?}");
    assert!(later.iter().any(|l| l.id == kept.id));
}
