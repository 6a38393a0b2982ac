//! The simulated cloud as a provider's caller sees it: idempotent creates, tag filters,
//! quotas that follow resources as they come and go, failure injection, and state that
//! survives a restart.

use dialtone_cloud::{
    CloudError, CreateRequest, DiskType, Filter, InstanceMetadata, Provider, ResourceKind,
    ResourceSpec, ResourceState,
};
use dialtone_sim::{FaultKind, FaultSpec, Quotas, Sim, SimOptions};

const REGION: &str = "us-east-1";

fn fast(dir: &tempfile::TempDir) -> Sim {
    Sim::open(
        &dir.path().join("sim.redb"),
        SimOptions {
            time_scale: 0.0,
            seed: 7,
            ..Default::default()
        },
    )
    .expect("the sim opens")
}

fn request(token: &str, spec: ResourceSpec, owner: &str) -> CreateRequest {
    CreateRequest {
        client_token: token.to_string(),
        spec,
        tags: [("owner".to_string(), owner.to_string())].into(),
        bootstrap: None,
    }
}

fn vpc(cidr: &str) -> ResourceSpec {
    ResourceSpec::Vpc {
        cidr: cidr.parse().unwrap(),
    }
}

/// A VPC, a subnet in us-east-1a and a security group: what an instance needs.
async fn network(sim: &Sim, owner: &str) -> (String, String) {
    let vpc = sim
        .create(
            REGION,
            request(&format!("{owner}/vpc"), vpc("10.1.0.0/16"), owner),
        )
        .await
        .unwrap();
    let subnet = sim
        .create(
            REGION,
            request(
                &format!("{owner}/subnet"),
                ResourceSpec::Subnet {
                    vpc_id: vpc.id.clone(),
                    zone: "us-east-1a".into(),
                    cidr: "10.1.0.0/20".parse().unwrap(),
                },
                owner,
            ),
        )
        .await
        .unwrap();
    let sg = sim
        .create(
            REGION,
            request(
                &format!("{owner}/sg"),
                ResourceSpec::SecurityGroup {
                    vpc_id: vpc.id,
                    ingress: Vec::new(),
                },
                owner,
            ),
        )
        .await
        .unwrap();
    (subnet.id, sg.id)
}

fn instance(instance_type: &str, subnet: &str, sg: &str) -> ResourceSpec {
    ResourceSpec::Instance {
        instance_type: instance_type.into(),
        zone: "us-east-1a".into(),
        subnet_id: subnet.into(),
        security_group_id: sg.into(),
        image: "dialtone-node-1.31".into(),
        root_disk_gib: 50,
        disk_type: DiskType::Gp3,
        disk_encrypted: true,
        metadata: InstanceMetadata {
            tokens_required: true,
            hop_limit: 1,
        },
    }
}

#[tokio::test]
async fn a_client_token_creates_once_and_tags_find_what_they_name() {
    let dir = tempfile::tempdir().unwrap();
    let sim = fast(&dir);
    let (subnet, sg) = network(&sim, "a").await;
    let first = sim
        .create(
            REGION,
            request("a/i-1", instance("m5.large", &subnet, &sg), "a"),
        )
        .await
        .unwrap();
    let again = sim
        .create(
            REGION,
            request("a/i-1", instance("m5.large", &subnet, &sg), "a"),
        )
        .await
        .unwrap();
    assert_eq!(
        first.id, again.id,
        "a retried create returns the same instance"
    );
    network(&sim, "b").await;

    let owned_by_a = sim
        .describe(REGION, &Filter::tagged("owner", "a"))
        .await
        .unwrap();
    assert_eq!(owned_by_a.len(), 4, "vpc, subnet, sg and one instance");
    assert!(owned_by_a.iter().all(|r| r.tags["owner"] == "a"));
    let instances = sim
        .describe(
            REGION,
            &Filter::tagged("owner", "a").kind(dialtone_cloud::ResourceKind::Instance),
        )
        .await
        .unwrap();
    assert_eq!(instances.len(), 1);
    assert_eq!(instances[0].state, ResourceState::Available);
    let nobody = sim
        .describe(REGION, &Filter::tagged("owner", "nobody"))
        .await
        .unwrap();
    assert!(nobody.is_empty());
    let elsewhere = sim
        .describe("eu-west-1", &Filter::tagged("owner", "a"))
        .await
        .unwrap();
    assert!(elsewhere.is_empty(), "a region sees only its own resources");
}

#[tokio::test]
async fn describe_may_lag_a_create_and_a_token_reused_with_other_parameters_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::open(
        &dir.path().join("sim.redb"),
        SimOptions {
            time_scale: 0.0,
            seed: 7,
            describe_lag: std::time::Duration::from_millis(400),
            ..Default::default()
        },
    )
    .unwrap();
    let (subnet, sg) = network(&sim, "a").await;
    // Many creates: with a lag drawn up to 400 ms, some are missed at first, none for good.
    for i in 0..10 {
        let token = format!("a/i-{i}");
        sim.create(
            REGION,
            request(&token, instance("m5.large", &subnet, &sg), "a"),
        )
        .await
        .unwrap();
    }
    let instances = Filter::tagged("owner", "a").kind(dialtone_cloud::ResourceKind::Instance);
    let at_once = sim.describe(REGION, &instances).await.unwrap().len();
    assert!(at_once < 10, "describe lagged none of ten creates");
    tokio::time::sleep(std::time::Duration::from_millis(450)).await;
    assert_eq!(sim.describe(REGION, &instances).await.unwrap().len(), 10);
    // The same token: the same instance; with another type, refused, and nothing made.
    let again = sim
        .create(
            REGION,
            request("a/i-0", instance("m5.large", &subnet, &sg), "a"),
        )
        .await;
    assert!(again.is_ok(), "{again:?}");
    let other = sim
        .create(
            REGION,
            request("a/i-0", instance("m5.xlarge", &subnet, &sg), "a"),
        )
        .await;
    assert!(
        matches!(other, Err(CloudError::IdempotentParameterMismatch { .. })),
        "{other:?}"
    );
    assert_eq!(sim.describe(REGION, &instances).await.unwrap().len(), 10);
}

#[tokio::test]
async fn quotas_count_live_resources_and_free_up_when_they_go() {
    let dir = tempfile::tempdir().unwrap();
    let sim = fast(&dir);
    let (subnet, sg) = network(&sim, "q").await;
    // m5.large has 2 vCPUs: room for two.
    sim.set_quotas(
        REGION,
        Quotas {
            vcpus: 4,
            vpcs: 1,
            load_balancers: 1,
        },
    )
    .await
    .unwrap();
    let one = sim
        .create(
            REGION,
            request("q/1", instance("m5.large", &subnet, &sg), "q"),
        )
        .await
        .unwrap();
    sim.create(
        REGION,
        request("q/2", instance("m5.large", &subnet, &sg), "q"),
    )
    .await
    .unwrap();
    let third = sim
        .create(
            REGION,
            request("q/3", instance("m5.large", &subnet, &sg), "q"),
        )
        .await;
    assert!(
        matches!(third, Err(CloudError::QuotaExceeded { .. })),
        "{third:?}"
    );
    let second_vpc = sim
        .create(REGION, request("q/vpc2", vpc("10.2.0.0/16"), "q"))
        .await;
    assert!(matches!(second_vpc, Err(CloudError::QuotaExceeded { .. })));

    // A dead instance no longer counts, nor does one being deleted.
    sim.kill_instance(&one.id).await.unwrap();
    let three = sim
        .create(
            REGION,
            request("q/3", instance("m5.large", &subnet, &sg), "q"),
        )
        .await
        .unwrap();
    sim.delete(REGION, &three.id).await.unwrap();
    sim.create(
        REGION,
        request("q/4", instance("m5.large", &subnet, &sg), "q"),
    )
    .await
    .unwrap();

    // Usage is rebuilt from the state file after a restart.
    drop(sim);
    let sim = fast(&dir);
    let fifth = sim
        .create(
            REGION,
            request("q/5", instance("m5.large", &subnet, &sg), "q"),
        )
        .await;
    assert!(
        matches!(fifth, Err(CloudError::QuotaExceeded { .. })),
        "{fifth:?}"
    );
}

#[tokio::test]
async fn faults_fire_as_injected() {
    let dir = tempfile::tempdir().unwrap();
    let sim = fast(&dir);
    let (subnet, sg) = network(&sim, "f").await;

    let fault = |kind, count| FaultSpec {
        kind,
        region: Some(REGION.into()),
        zone: None,
        count: Some(count),
        probability: None,
    };
    sim.add_fault(fault(FaultKind::TimeoutAfterSuccess, 1))
        .await
        .unwrap();
    let timed_out = sim
        .create(
            REGION,
            request("f/1", instance("m5.large", &subnet, &sg), "f"),
        )
        .await;
    assert!(
        matches!(timed_out, Err(CloudError::Timeout)),
        "{timed_out:?}"
    );
    let retried = sim
        .create(
            REGION,
            request("f/1", instance("m5.large", &subnet, &sg), "f"),
        )
        .await
        .unwrap();
    let instances = |sim: &Sim| {
        sim.resources()
            .into_iter()
            .filter(|r| r.spec.kind() == dialtone_cloud::ResourceKind::Instance)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        instances(&sim).len(),
        1,
        "the timed-out create took effect once"
    );

    sim.add_fault(fault(FaultKind::Throttling, 1))
        .await
        .unwrap();
    let throttled = sim.describe(REGION, &Filter::default()).await;
    assert!(matches!(throttled, Err(CloudError::Throttled)));
    assert!(sim.describe(REGION, &Filter::default()).await.is_ok());

    sim.add_fault(fault(FaultKind::BootFailure, 1))
        .await
        .unwrap();
    let doomed = sim
        .create(
            REGION,
            request("f/2", instance("m5.large", &subnet, &sg), "f"),
        )
        .await
        .unwrap();
    assert!(matches!(doomed.state, ResourceState::Terminated { .. }));

    sim.add_fault(FaultSpec {
        zone: Some("us-east-1a".into()),
        count: None,
        ..fault(FaultKind::ZoneOutage, 0)
    })
    .await
    .unwrap();
    let refused = sim
        .create(
            REGION,
            request("f/3", instance("m5.large", &subnet, &sg), "f"),
        )
        .await;
    assert!(matches!(
        refused,
        Err(CloudError::InsufficientCapacity { .. })
    ));
    let impaired = sim
        .describe(REGION, &Filter::tagged("owner", "f"))
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.id == retried.id)
        .unwrap();
    assert!(matches!(impaired.state, ResourceState::Impaired { .. }));
    sim.remove_faults(None).await.unwrap();
    let healthy = sim
        .describe(REGION, &Filter::tagged("owner", "f"))
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.id == retried.id)
        .unwrap();
    assert_eq!(healthy.state, ResourceState::Available);
}

#[tokio::test]
async fn a_resource_with_dependents_cannot_be_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let sim = fast(&dir);
    let (subnet, sg) = network(&sim, "d").await;
    let node = sim
        .create(
            REGION,
            request("d/1", instance("m5.large", &subnet, &sg), "d"),
        )
        .await
        .unwrap();
    let refused = sim.delete(REGION, &subnet).await;
    assert!(
        matches!(refused, Err(CloudError::DependencyViolation { .. })),
        "{refused:?}"
    );
    sim.delete(REGION, &node.id).await.unwrap();
    // Fast mode: the instance is gone at once, so its subnet can go too.
    tokio::task::yield_now().await;
    sim.delete(REGION, &subnet).await.unwrap();
    let left = sim
        .describe(REGION, &Filter::tagged("owner", "d"))
        .await
        .unwrap();
    assert_eq!(left.len(), 2, "the vpc and the security group remain");
}

/// Waits until `told` holds `id` at least `times` times; how many it holds.
async fn told_at_least(told: &std::sync::Mutex<Vec<String>>, id: &str, times: usize) -> usize {
    for _ in 0..200 {
        let count = told.lock().unwrap().iter().filter(|t| *t == id).count();
        if count >= times {
            return count;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    told.lock().unwrap().iter().filter(|t| *t == id).count()
}

#[tokio::test]
async fn the_feed_tells_of_each_change_as_it_is_made_and_as_it_comes_with_time() {
    let dir = tempfile::tempdir().unwrap();
    // A VPC is ready 100 ms after its create, and gone 50 ms or so after its delete.
    let sim = std::sync::Arc::new(
        Sim::open(
            &dir.path().join("sim.redb"),
            SimOptions {
                time_scale: 0.05,
                seed: 7,
                ..Default::default()
            },
        )
        .unwrap(),
    );
    let told = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    assert!(sim.subscribe(Box::new({
        let told = told.clone();
        move |change| told.lock().unwrap().push(change.id.clone())
    })));
    let clock = tokio::spawn(sim.clone().run_clock());

    let vpc = sim
        .create(REGION, request("t/vpc", vpc("10.9.0.0/16"), "t"))
        .await
        .unwrap();
    assert_eq!(vpc.state, ResourceState::Pending);
    assert!(
        told_at_least(&told, &vpc.id, 1).await >= 1,
        "told of the create"
    );
    // Told again when it becomes available, by the clock: nobody asked.
    assert!(told_at_least(&told, &vpc.id, 2).await >= 2);
    let described = sim
        .describe(REGION, &Filter::tagged("owner", "t"))
        .await
        .unwrap();
    assert_eq!(described[0].state, ResourceState::Available);

    sim.delete(REGION, &vpc.id).await.unwrap();
    assert!(
        told_at_least(&told, &vpc.id, 3).await >= 3,
        "told of the delete"
    );
    assert!(
        told_at_least(&told, &vpc.id, 4).await >= 4,
        "told when it is gone"
    );
    assert!(
        sim.describe(REGION, &Filter::tagged("owner", "t"))
            .await
            .unwrap()
            .is_empty()
    );

    // A zone outage changes what is in the zone; a kill changes the instance.
    let fast_dir = tempfile::tempdir().unwrap();
    let fast = std::sync::Arc::new(fast(&fast_dir));
    let told = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    fast.subscribe(Box::new({
        let told = told.clone();
        move |change| told.lock().unwrap().push(change.id.clone())
    }));
    let (subnet, sg) = network(&fast, "z").await;
    let node = fast
        .create(
            REGION,
            request("z/i", instance("m5.large", &subnet, &sg), "z"),
        )
        .await
        .unwrap();
    told.lock().unwrap().clear();
    fast.add_fault(FaultSpec {
        kind: FaultKind::ZoneOutage,
        region: Some(REGION.into()),
        zone: Some("us-east-1a".into()),
        count: None,
        probability: None,
    })
    .await
    .unwrap();
    let outage: Vec<String> = std::mem::take(&mut *told.lock().unwrap());
    assert!(
        outage.contains(&subnet) && outage.contains(&node.id),
        "{outage:?}"
    );
    assert!(
        !outage.contains(&sg),
        "a security group is in no zone: {outage:?}"
    );
    fast.remove_faults(None).await.unwrap();
    assert!(
        told.lock().unwrap().contains(&node.id),
        "told when the zone is back"
    );
    told.lock().unwrap().clear();
    fast.kill_instance(&node.id).await.unwrap();
    assert_eq!(*told.lock().unwrap(), vec![node.id.clone()]);
    clock.abort();
}

/// The state a peering is in, as the provider describes it.
async fn peering_state(sim: &Sim, id: &str) -> Option<dialtone_cloud::PeeringState> {
    let all = sim
        .describe(REGION, &Filter::default().kind(ResourceKind::VpcPeering))
        .await
        .unwrap();
    all.into_iter()
        .find(|r| r.id == id)
        .map(|r| r.peering.expect("a peering says where it is").state)
}

#[tokio::test]
async fn a_peering_waits_for_the_customer_and_routes_go_through_it_only_once_it_peers() {
    use dialtone_cloud::{Change, PeeringState, Route};
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::open(
        &dir.path().join("sim.redb"),
        SimOptions {
            time_scale: 0.0,
            peering_expiry: std::time::Duration::from_millis(300),
            ..Default::default()
        },
    )
    .unwrap();
    let ours = sim
        .create(REGION, request("vpc", vpc("10.1.0.0/16"), "c"))
        .await
        .unwrap();
    let table = sim
        .create(
            REGION,
            request(
                "rtb",
                ResourceSpec::RouteTable {
                    vpc_id: ours.id.clone(),
                    subnet_ids: vec![],
                    routes: vec![],
                },
                "c",
            ),
        )
        .await
        .unwrap();
    let customer = sim.create_account().await.unwrap();
    let theirs = sim
        .create_customer_vpc(&customer.id, REGION, "192.168.0.0/16".parse().unwrap())
        .await
        .unwrap();
    assert!(
        sim.describe(REGION, &Filter::default())
            .await
            .unwrap()
            .iter()
            .all(|r| r.id != theirs.id),
        "another account's VPC is not Dialtone's to see"
    );
    let peer = |token: &str, peer_vpc: &str| {
        request(
            token,
            ResourceSpec::VpcPeering {
                vpc_id: ours.id.clone(),
                peer_account: customer.id.clone(),
                peer_vpc_id: peer_vpc.to_string(),
                peer_region: REGION.into(),
            },
            "c",
        )
    };
    let peering = sim.create(REGION, peer("pcx", &theirs.id)).await.unwrap();
    assert_eq!(
        peering_state(&sim, &peering.id).await,
        Some(PeeringState::PendingAcceptance)
    );
    let route = Route {
        destination: "192.168.0.0/16".parse().unwrap(),
        target: peering.id.clone(),
    };
    // The customer sees the request and accepts it.
    let asked = sim.account(&customer.id).unwrap();
    assert_eq!(asked.peerings.len(), 1);
    sim.answer_peering(&customer.id, &peering.id, true)
        .await
        .unwrap();
    assert_eq!(
        peering_state(&sim, &peering.id).await,
        Some(PeeringState::Active)
    );
    assert!(
        sim.answer_peering(&customer.id, &peering.id, false)
            .await
            .is_err(),
        "an answered request is not answered again"
    );
    for _ in 0..2 {
        sim.modify(REGION, &table.id, Change::AddRoute(route.clone()))
            .await
            .unwrap();
    }
    let routes = |resources: Vec<dialtone_cloud::CloudResource>| match &resources[0].spec {
        ResourceSpec::RouteTable { routes, .. } => routes.clone(),
        _ => panic!(),
    };
    let described = sim
        .describe(REGION, &Filter::default().kind(ResourceKind::RouteTable))
        .await
        .unwrap();
    assert_eq!(
        routes(described),
        std::slice::from_ref(&route),
        "added once"
    );
    let local = Route {
        destination: "10.1.4.0/24".parse().unwrap(),
        ..route.clone()
    };
    assert!(matches!(
        sim.modify(REGION, &table.id, Change::AddRoute(local)).await,
        Err(CloudError::Invalid { .. })
    ));
    // A create repeated with the table's token still names the table it changed.
    let again = sim
        .create(
            REGION,
            request(
                "rtb",
                ResourceSpec::RouteTable {
                    vpc_id: ours.id.clone(),
                    subnet_ids: vec![],
                    routes: vec![],
                },
                "c",
            ),
        )
        .await
        .unwrap();
    assert_eq!(again.id, table.id);
    for _ in 0..2 {
        sim.modify(
            REGION,
            &table.id,
            Change::RemoveRoute {
                destination: route.destination,
            },
        )
        .await
        .unwrap();
    }

    // Rejected, expired, failed: each ends the request for good.
    let rejected = sim.create(REGION, peer("pcx-2", &theirs.id)).await.unwrap();
    sim.answer_peering(&customer.id, &rejected.id, false)
        .await
        .unwrap();
    assert_eq!(
        peering_state(&sim, &rejected.id).await,
        Some(PeeringState::Rejected)
    );
    let ignored = sim.create(REGION, peer("pcx-3", &theirs.id)).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(
        peering_state(&sim, &ignored.id).await,
        Some(PeeringState::Expired)
    );
    let nowhere = sim
        .create(REGION, peer("pcx-4", "vpc-00000000000000bad"))
        .await
        .unwrap();
    assert_eq!(
        peering_state(&sim, &nowhere.id).await,
        Some(PeeringState::Failed)
    );
    let overlapping = sim
        .create_customer_vpc(&customer.id, REGION, "10.1.0.0/16".parse().unwrap())
        .await
        .unwrap();
    let clash = sim
        .create(REGION, peer("pcx-5", &overlapping.id))
        .await
        .unwrap();
    assert_eq!(
        peering_state(&sim, &clash.id).await,
        Some(PeeringState::Failed)
    );

    // Deleting the active peering leaves nothing listed.
    sim.delete(REGION, &peering.id).await.unwrap();
    assert_eq!(peering_state(&sim, &peering.id).await, None);
}

#[tokio::test]
async fn instances_lifetimes_run_from_running_to_termination_or_death_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let before = jiff::Timestamp::now();
    let (deleted, killed, running) = {
        let sim = fast(&dir);
        let (subnet, sg) = network(&sim, "a").await;
        let mut ids = Vec::new();
        for name in ["deleted", "killed", "running"] {
            let token = format!("a/{name}");
            let created = sim
                .create(
                    REGION,
                    request(&token, instance("m5.large", &subnet, &sg), "a"),
                )
                .await
                .unwrap();
            ids.push(created.id);
        }
        sim.delete(REGION, &ids[0]).await.unwrap();
        sim.kill_instance(&ids[1]).await.unwrap();
        (ids[0].clone(), ids[1].clone(), ids[2].clone())
    };
    // Reopened: what a restart of the server finds.
    let sim = fast(&dir);
    let lifetimes = sim.lifetimes(REGION, before).await.unwrap();
    let of = |id: &str| lifetimes.iter().find(|l| l.id == id).unwrap().clone();
    for id in [&deleted, &killed, &running] {
        let lifetime = of(id);
        assert_eq!(lifetime.instance_type, "m5.large");
        assert_eq!(lifetime.tags["owner"], "a");
        assert!(lifetime.started_at >= before);
    }
    assert!(of(&deleted).ended_at.is_some_and(|end| end >= before));
    assert!(of(&killed).ended_at.is_some_and(|end| end >= before));
    assert_eq!(of(&running).ended_at, None);
    // Those that ended before the time asked about are left out; the running one is not.
    let later = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(1);
    let ids: Vec<String> = sim
        .lifetimes(REGION, later)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.id)
        .collect();
    assert_eq!(ids, [running]);
    // An instance gone from describe still has its lifetime.
    let described = sim
        .describe(REGION, &Filter::default())
        .await
        .unwrap()
        .into_iter()
        .any(|r| r.id == deleted);
    assert!(!described, "time_scale 0: the deletion has finished");
}
