//! The decision table and the plans made from it.

use std::collections::BTreeSet;

use dialtone_cloud::{Arch, InstanceCatalog};
use dialtone_planner::{
    AddressPlan, ClusterPlan, ClusterRequest, ClusterSettings, ClusterType, DECISIONS, Decision,
    Enforcement, How, PlanContext, PlanError, Rule, plan, plan_with_settings,
};
use dialtone_types::settings::VpcTenancy;
use ipnet::Ipv4Net;
use proptest::prelude::*;

fn request(cluster_type: ClusterType) -> ClusterRequest {
    ClusterRequest {
        name: "web".into(),
        cluster_type,
        region: "us-east-1".into(),
        kubernetes_version: None,
        min_nodes: None,
        max_nodes: None,
        allowed_families: vec![],
        excluded_families: vec![],
        architectures: vec![],
        allow_burstable: false,
        release_channel: None,
        maintenance_window: None,
    }
}

fn plan_with(
    request: &ClusterRequest,
    address_plan: &AddressPlan,
    shared: Option<Ipv4Net>,
) -> Result<ClusterPlan, PlanError> {
    let context = PlanContext {
        catalog: InstanceCatalog::builtin(),
        address_plan,
        existing_vpc: shared,
        kept_families: None,
    };
    plan(request, &context)
}

fn plan_of(request: &ClusterRequest) -> ClusterPlan {
    plan_with(request, &AddressPlan::default_pool(), None).expect("a valid request plans")
}

fn fields(error: PlanError) -> Vec<&'static str> {
    error.0.iter().map(|p| p.field).collect()
}

#[test]
fn the_table_has_over_fifty_decisions_each_with_a_reason() {
    assert!(DECISIONS.len() > 50, "{} decisions", DECISIONS.len());
    let keys: BTreeSet<_> = DECISIONS.iter().map(|d| d.key).collect();
    assert_eq!(keys.len(), DECISIONS.len(), "keys are unique");
    for d in DECISIONS {
        assert!(
            d.reason.len() > 20 && d.reason.ends_with('.'),
            "{}: a one-line reason",
            d.key
        );
        assert!(d.key.contains('.'), "{}: area.name", d.key);
    }
}

/// Every decision is recorded in each plan, a fixed one with its type's setting.
#[test]
fn every_fixed_decision_is_applied() {
    for cluster_type in ClusterType::ALL {
        let planned = plan_of(&request(cluster_type));
        assert_eq!(planned.settings, ClusterSettings::of(cluster_type));
        assert_eq!(
            planned.decisions.len(),
            DECISIONS.len(),
            "a plan records every decision"
        );
        for d in DECISIONS {
            if let Rule::Fixed(value) = d.rule(cluster_type) {
                assert_eq!(
                    planned.decisions.get(d.key),
                    Some(&value),
                    "{cluster_type} {}",
                    d.key
                );
            }
        }
    }
}

/// The table and the typed settings are one: every field of the settings is a row, named
/// by its path, and every fixed row is a field. A setting added without a row, or a row
/// whose value lives nowhere typed, fails here.
#[test]
fn every_setting_is_a_row_and_every_fixed_row_a_setting() {
    let settings = serde_json::to_value(ClusterSettings::of(ClusterType::Production)).unwrap();
    let mut fields = BTreeSet::new();
    for (area, values) in settings.as_object().unwrap() {
        for name in values.as_object().unwrap().keys() {
            fields.insert(format!("{area}.{name}"));
        }
    }
    let keys: BTreeSet<String> = DECISIONS.iter().map(|d| d.key.to_string()).collect();
    let without_row: Vec<_> = fields.difference(&keys).collect();
    assert!(
        without_row.is_empty(),
        "settings without a row: {without_row:?}"
    );
    for d in DECISIONS {
        if matches!(d.how, How::Fixed(_)) {
            assert!(
                fields.contains(d.key),
                "{}: a fixed row is a setting",
                d.key
            );
        }
    }
}

/// Both counts are what `cluster-types describe` prints; every enforced row says what
/// follows from it.
#[test]
fn rows_are_enforced_or_advisory() {
    let enforced: Vec<_> = DECISIONS.iter().filter(|d| d.is_enforced()).collect();
    assert!(enforced.len() >= 35, "{} enforced", enforced.len());
    for d in enforced {
        let Enforcement::Enforced(what) = d.enforcement else {
            unreachable!()
        };
        assert!(what.len() > 10, "{}: says what is built", d.key);
    }
}

/// Each setting the plan itself builds from, changed, changes the plan: a plan that
/// ignored its row would fail here. (What the controller and providers build from the
/// rest is `dialtone-controllers`' `decisions` test.)
#[test]
fn each_enforced_decision_is_what_gets_planned() {
    let base_request = request(ClusterType::Production);
    let planned = |change: fn(&mut ClusterSettings)| {
        let mut settings = ClusterSettings::of(ClusterType::Production);
        change(&mut settings);
        let context = PlanContext {
            catalog: InstanceCatalog::builtin(),
            address_plan: &AddressPlan::default_pool(),
            existing_vpc: None,
            kept_families: None,
        };
        plan_with_settings(&base_request, settings, &context).expect("plans")
    };
    let base = planned(|_| {});
    type Change = fn(&mut ClusterSettings);
    type Check = fn(&ClusterPlan) -> String;
    let cases: &[(&str, Change, Check)] = &[
        (
            "controlPlane.nodes",
            |s| s.control_plane.nodes = 5,
            |p| p.control_plane.nodes.len().to_string(),
        ),
        (
            "controlPlane.zones",
            |s| s.control_plane.zones = 2,
            |p| {
                format!(
                    "{:?}",
                    p.control_plane
                        .nodes
                        .iter()
                        .map(|n| &n.zone)
                        .collect::<BTreeSet<_>>()
                )
            },
        ),
        (
            "controlPlane.instanceType",
            |s| s.control_plane.instance_type[1].instance_type = "m7i.8xlarge".into(),
            |p| p.control_plane.nodes[0].instance_type.clone(),
        ),
        (
            "controlPlane.rootDiskGiB",
            |s| s.control_plane.root_disk_gib = 64,
            |p| p.control_plane.root_disk_gib.to_string(),
        ),
        (
            "network.vpc",
            |s| s.network.vpc = VpcTenancy::Shared,
            |p| p.network.shared_vpc.to_string(),
        ),
        (
            "network.podCidr",
            |s| s.network.pod_cidr = "100.96.0.0/12".parse().unwrap(),
            |p| p.network.pod_cidr.to_string(),
        ),
        (
            "network.serviceCidr",
            |s| s.network.service_cidr = "172.24.0.0/16".parse().unwrap(),
            |p| p.network.service_cidr.to_string(),
        ),
        (
            "network.subnets",
            |s| {
                s.control_plane.zones = 2;
                s.workers.zones = 2
            },
            |p| p.network.subnets.len().to_string(),
        ),
        (
            "workers.minNodes",
            |s| s.workers.min_nodes.default = 4,
            |p| p.workers.initial.len().to_string(),
        ),
        (
            "workers.maxNodes",
            |s| s.workers.max_nodes.default = 40,
            |p| p.workers.max_nodes.to_string(),
        ),
        (
            "workers.zones",
            |s| s.workers.zones = 1,
            |p| format!("{:?}", p.workers.zones),
        ),
        (
            "workers.maxPodsPerNode",
            |s| s.workers.max_pods_per_node = 20,
            |p| p.workers.max_pods_per_node.to_string(),
        ),
        (
            "workers.instanceFamilies",
            |s| s.workers.instance_families.burstable = true,
            |p| p.workers.families.join(","),
        ),
        (
            "workers.initialInstanceType",
            |s| s.workers.initial_instance_type.min_memory_gib = 32,
            |p| p.workers.initial_instance_type.clone(),
        ),
    ];
    for (key, change, check) in cases {
        assert!(
            Decision::find(key).is_some_and(Decision::is_enforced),
            "{key} is an enforced row"
        );
        let changed = planned(*change);
        assert_ne!(
            check(&base),
            check(&changed),
            "{key}: changing it changes the plan"
        );
        assert_eq!(
            changed.decisions.get(*key) == base.decisions.get(*key),
            check(&base) == check(&changed),
            "{key}: the record follows what is planned"
        );
    }
}

/// What each type's control plane is, as users are promised it.
#[test]
fn control_plane_disks() {
    let disk = |t| plan_of(&request(t)).control_plane.root_disk_gib;
    assert_eq!(
        (disk(ClusterType::Developer), disk(ClusterType::Production)),
        (50, 100)
    );
}

#[test]
fn control_plane_nodes_and_zones() {
    let dev = plan_of(&request(ClusterType::Developer));
    assert_eq!(dev.control_plane.nodes.len(), 1);
    let prod = plan_of(&request(ClusterType::Production));
    let zones: BTreeSet<_> = prod
        .control_plane
        .nodes
        .iter()
        .map(|n| n.zone.as_str())
        .collect();
    assert_eq!(
        (prod.control_plane.nodes.len(), zones.len()),
        (3, 3),
        "three nodes in three distinct zones"
    );
    assert_eq!(prod.decisions["controlPlane.apiServerReplicas"], "3");
}

#[test]
fn control_plane_instance_type_follows_the_worker_bound() {
    let sized = |cluster_type, max| {
        let mut r = request(cluster_type);
        r.max_nodes = Some(max);
        plan_of(&r).control_plane.nodes[0].instance_type.clone()
    };
    assert_eq!(sized(ClusterType::Developer, 10), "t3.medium");
    assert_eq!(sized(ClusterType::Developer, 11), "t3.large");
    assert_eq!(sized(ClusterType::Production, 10), "m7i.large");
    assert_eq!(sized(ClusterType::Production, 100), "m7i.xlarge");
    assert_eq!(sized(ClusterType::Production, 500), "m7i.2xlarge");
    assert_eq!(sized(ClusterType::Production, 1000), "m7i.4xlarge");
    for name in [
        "t3.medium",
        "t3.large",
        "m7i.large",
        "m7i.xlarge",
        "m7i.2xlarge",
        "m7i.4xlarge",
    ] {
        assert!(
            InstanceCatalog::builtin().get(name).is_some(),
            "{name} is in the catalogue"
        );
    }
}

#[test]
fn production_vpcs_come_from_the_address_plan_without_overlap() {
    let mut address_plan = AddressPlan {
        pool: "10.0.0.0/8".parse().unwrap(),
        allocated: vec![
            "10.0.0.0/16".parse().unwrap(),
            "10.1.4.0/24".parse().unwrap(),
        ],
        start: Default::default(),
    };
    let first = plan_with(&request(ClusterType::Production), &address_plan, None).unwrap();
    assert_eq!(first.network.vpc_cidr.to_string(), "10.2.0.0/16");
    assert!(!first.network.shared_vpc);
    address_plan.allocated.push(first.network.vpc_cidr);
    let second = plan_with(&request(ClusterType::Production), &address_plan, None).unwrap();
    assert_eq!(second.network.vpc_cidr.to_string(), "10.3.0.0/16");
    assert_eq!(second.decisions["network.apiAllowedCidrs"], "10.0.0.0/8");
    assert_eq!(
        second.network.api_allowed_cidrs,
        ["10.0.0.0/8".parse().unwrap()]
    );
    let full = AddressPlan {
        pool: "10.0.0.0/16".parse().unwrap(),
        allocated: vec!["10.0.0.0/16".parse().unwrap()],
        start: Default::default(),
    };
    assert_eq!(
        fields(plan_with(&request(ClusterType::Production), &full, None).unwrap_err()),
        ["org.addressPlan"]
    );
}

#[test]
fn developer_clusters_share_the_project_vpc() {
    let shared: Ipv4Net = "10.9.0.0/16".parse().unwrap();
    let dev = plan_with(
        &request(ClusterType::Developer),
        &AddressPlan::default_pool(),
        Some(shared),
    )
    .unwrap();
    assert_eq!(dev.network.vpc_cidr, shared);
    assert!(dev.network.shared_vpc);
    let first_in_project = plan_of(&request(ClusterType::Developer));
    assert_eq!(
        first_in_project.network.vpc_cidr.to_string(),
        "10.0.0.0/16",
        "the first allocates it"
    );
    let prod = plan_of(&request(ClusterType::Production));
    assert!(!prod.network.shared_vpc, "production never shares");
    let mut grown = request(ClusterType::Production);
    grown.max_nodes = Some(400);
    let replanned = plan_with(
        &grown,
        &AddressPlan::default_pool(),
        Some(prod.network.vpc_cidr),
    )
    .unwrap();
    assert_eq!(
        replanned.network.vpc_cidr, prod.network.vpc_cidr,
        "planning again keeps the VPC"
    );
    assert_ne!(
        replanned.control_plane.nodes[0].instance_type, prod.control_plane.nodes[0].instance_type,
        "and resizes the control plane"
    );
}

#[test]
fn subnets_one_per_zone_inside_the_vpc() {
    for cluster_type in ClusterType::ALL {
        let p = plan_of(&request(cluster_type));
        let zones: Vec<_> = p.network.subnets.iter().map(|s| s.zone.clone()).collect();
        assert_eq!(zones, p.workers.zones);
        for (i, a) in p.network.subnets.iter().enumerate() {
            assert!(p.network.vpc_cidr.contains(&a.cidr) && a.cidr.prefix_len() == 20);
            for b in &p.network.subnets[i + 1..] {
                assert!(
                    !a.cidr.contains(&b.cidr.network()) && !b.cidr.contains(&a.cidr.network()),
                    "disjoint"
                );
            }
        }
        assert!(!p.network.vpc_cidr.contains(&p.network.pod_cidr.network()));
        assert!(
            !p.network
                .vpc_cidr
                .contains(&p.network.service_cidr.network())
        );
    }
}

#[test]
fn worker_bounds_defaults_floors_and_ceilings() {
    let dev = plan_of(&request(ClusterType::Developer));
    assert_eq!(
        (
            dev.workers.min_nodes,
            dev.workers.max_nodes,
            dev.workers.initial.len()
        ),
        (1, 10, 1)
    );
    let prod = plan_of(&request(ClusterType::Production));
    assert_eq!((prod.workers.min_nodes, prod.workers.max_nodes), (3, 100));
    let per_zone: BTreeSet<_> = prod
        .workers
        .initial
        .iter()
        .map(|n| n.zone.as_str())
        .collect();
    assert_eq!(per_zone.len(), 3, "a worker in every zone");
    let mut r = request(ClusterType::Production);
    r.min_nodes = Some(2);
    r.max_nodes = Some(2000);
    assert_eq!(
        fields(plan_with(&r, &AddressPlan::default_pool(), None).unwrap_err()),
        ["spec.minNodes", "spec.maxNodes"]
    );
    let mut r = request(ClusterType::Developer);
    r.min_nodes = Some(5);
    r.max_nodes = Some(4);
    let error = plan_with(&r, &AddressPlan::default_pool(), None).unwrap_err();
    assert!(error.to_string().contains("below minNodes"), "{error}");
    let mut r = request(ClusterType::Developer);
    r.min_nodes = Some(20);
    assert_eq!(
        plan_of(&r).workers.max_nodes,
        20,
        "the default bound rises to the minimum"
    );
}

#[test]
fn instance_families_and_the_initial_worker_type() {
    let catalog = InstanceCatalog::builtin();
    let prod = plan_of(&request(ClusterType::Production));
    assert!(
        prod.workers
            .families
            .iter()
            .all(|f| !catalog.iter().any(|t| &t.family == f && t.burstable)),
        "no burstable family in production"
    );
    let dev = plan_of(&request(ClusterType::Developer));
    assert!(dev.workers.families.contains(&"t3".to_string()));
    // The initial type is the cheapest eligible one of the cluster's architectures:
    // amd64 unless the spec says otherwise.
    let chosen = catalog.get(&prod.workers.initial[0].instance_type).unwrap();
    assert_eq!(prod.workers.architectures, [Arch::X86_64]);
    assert_eq!(chosen.archs[0], Arch::X86_64, "{}", chosen.name);
    let cheaper = catalog
        .iter()
        .filter(|t| {
            prod.workers.families.contains(&t.family)
                && t.archs[0] == Arch::X86_64
                && t.vcpus >= 2
                && t.memory_mib >= 8192
                && t.usd_per_hour < chosen.usd_per_hour
        })
        .count();
    assert_eq!(cheaper, 0, "{} is the cheapest fit", chosen.name);
    assert_eq!(prod.workers.max_pods_per_node, chosen.max_pods.min(110));
    // Allowing arm64 lets the cheaper Graviton types in.
    let mut r = request(ClusterType::Production);
    r.architectures = Arch::ALL.to_vec();
    let either = plan_of(&r);
    let either_type = catalog.get(&either.workers.initial_instance_type).unwrap();
    assert_eq!(either_type.archs[0], Arch::Arm64, "{}", either_type.name);
    assert!(either_type.usd_per_hour < chosen.usd_per_hour);
    // A developer cluster's first worker sustains its 2 vCPUs: no burstable type does at
    // its baseline, unless the cluster allows bursting.
    let initial = |allow_burstable| {
        let mut r = request(ClusterType::Developer);
        r.allow_burstable = allow_burstable;
        let planned = plan_of(&r);
        catalog
            .get(&planned.workers.initial_instance_type)
            .unwrap()
            .clone()
    };
    assert!(!initial(false).burstable, "{}", initial(false).name);
    assert!(initial(true).burstable, "{}", initial(true).name);
    assert!(initial(true).usd_per_hour < initial(false).usd_per_hour);
    let mut r = request(ClusterType::Production);
    r.allowed_families = vec!["m7i".into(), "c7i".into()];
    r.excluded_families = vec!["c7i".into()];
    assert_eq!(plan_of(&r).workers.families, ["m7i"]);
    r.allowed_families = vec!["nosuch".into()];
    assert_eq!(
        fields(plan_with(&r, &AddressPlan::default_pool(), None).unwrap_err()),
        ["spec.allowedFamilies", "spec.allowedFamilies"]
    );
    r.allowed_families = vec!["t3".into()];
    let error = plan_with(&r, &AddressPlan::default_pool(), None).unwrap_err();
    assert!(
        error.to_string().contains("no instance type"),
        "burstable only: {error}"
    );
}

#[test]
fn versions_images_and_every_problem_at_once() {
    let p = plan_of(&request(ClusterType::Developer));
    let newest = dialtone_planner::versions::Catalogue::built_in()
        .minors
        .last()
        .unwrap()
        .minor
        .clone();
    assert_eq!(p.kubernetes_version, newest);
    assert_eq!(
        p.workers.node_image,
        format!("dialtone-node-{}", p.kubernetes_version)
    );
    assert_eq!(p.decisions["workers.nodeImage"], p.workers.node_image);
    let mut r = request(ClusterType::Production);
    r.region = "mars-1".into();
    r.kubernetes_version = Some("latest".into());
    r.min_nodes = Some(9);
    r.max_nodes = Some(4);
    let error = plan_with(&r, &AddressPlan::default_pool(), None).unwrap_err();
    assert_eq!(
        fields(error.clone()),
        ["spec.region", "spec.kubernetesVersion", "spec.maxNodes"]
    );
    let text = error.to_string();
    assert!(
        text.contains("us-east-1, us-west-2, eu-west-1") && text.contains("such as 1.35"),
        "the valid values are listed: {text}"
    );
}

#[test]
fn plans_are_deterministic_and_spread_developer_clusters() {
    assert_eq!(
        plan_of(&request(ClusterType::Production)),
        plan_of(&request(ClusterType::Production))
    );
    let zones: BTreeSet<String> = (0..40)
        .map(|i| {
            let mut r = request(ClusterType::Developer);
            r.name = format!("dev-{i}");
            plan_of(&r).workers.zones[0].clone()
        })
        .collect();
    assert!(
        zones.len() >= 4,
        "developer clusters spread over the region's zones: {zones:?}"
    );
}

fn any_request() -> impl Strategy<Value = (ClusterRequest, Vec<u8>)> {
    (
        prop::sample::select(vec![ClusterType::Developer, ClusterType::Production]),
        prop::sample::select(vec!["us-east-1", "us-west-2", "eu-west-1"]),
        prop::sample::select(vec!["1.33", "1.34", "1.35"]),
        "[a-z][a-z0-9-]{0,20}",
        0u32..40,
        0u32..200,
        prop::collection::vec(0u8..255, 0..20),
    )
        .prop_map(
            |(cluster_type, region, version, name, extra_min, extra_max, taken)| {
                let floor = if cluster_type == ClusterType::Production {
                    3
                } else {
                    1
                };
                let ceiling = if cluster_type == ClusterType::Production {
                    1000
                } else {
                    50
                };
                let min = (floor + extra_min).min(ceiling);
                let max = (min + extra_max).min(ceiling);
                let request = ClusterRequest {
                    name,
                    cluster_type,
                    region: region.into(),
                    kubernetes_version: Some(version.into()),
                    min_nodes: Some(min),
                    max_nodes: Some(max),
                    allowed_families: vec![],
                    excluded_families: vec![],
                    architectures: vec![],
                    allow_burstable: false,
                    release_channel: None,
                    maintenance_window: None,
                };
                (request, taken)
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Every plan of a valid request keeps its type's promises.
    #[test]
    fn every_plan_satisfies_its_type(input in any_request()) {
        let (request, taken) = input;
        let allocated: Vec<Ipv4Net> = taken.iter().map(|b| format!("10.{b}.0.0/16").parse().unwrap()).collect();
        let address_plan = AddressPlan { pool: "10.0.0.0/8".parse().unwrap(), allocated: allocated.clone(), start: Default::default() };
        let p = plan_with(&request, &address_plan, None).unwrap();
        let cp_zones: BTreeSet<_> = p.control_plane.nodes.iter().map(|n| n.zone.clone()).collect();
        let worker_zones: BTreeSet<_> = p.workers.initial.iter().map(|n| n.zone.clone()).collect();
        match request.cluster_type {
            ClusterType::Production => {
                prop_assert_eq!(p.control_plane.nodes.len(), 3);
                prop_assert_eq!(cp_zones.len(), 3);
                prop_assert_eq!(&worker_zones, &cp_zones);
                prop_assert!(p.workers.min_nodes >= 3);
            }
            ClusterType::Developer => {
                prop_assert_eq!(p.control_plane.nodes.len(), 1);
                prop_assert_eq!(worker_zones.len(), 1);
            }
        }
        prop_assert!(p.workers.min_nodes <= p.workers.max_nodes);
        prop_assert_eq!(p.workers.initial.len() as u32, p.workers.min_nodes);
        prop_assert!(address_plan.pool.contains(&p.network.vpc_cidr));
        for taken in &allocated {
            prop_assert!(!taken.contains(&p.network.vpc_cidr.network()) && !p.network.vpc_cidr.contains(&taken.network()));
        }
        for subnet in &p.network.subnets {
            prop_assert!(p.network.vpc_cidr.contains(&subnet.cidr));
        }
        prop_assert!(p.workers.max_pods_per_node <= 110);
        // Every node's instance type is offered in its zone, so it can launch.
        for node in p.control_plane.nodes.iter().chain(&p.workers.initial) {
            let offered = &InstanceCatalog::builtin().get(&node.instance_type).unwrap().zone_suffixes;
            prop_assert!(offered.contains(&node.zone.chars().last().unwrap()), "{} in {}", node.instance_type, node.zone);
        }
        prop_assert_eq!(&plan_with(&request, &address_plan, None).unwrap(), &p, "deterministic");
    }
}

#[test]
fn node_pools_use_the_family_with_the_best_price_per_performance() {
    let catalog = InstanceCatalog::builtin();
    let prod = plan_of(&request(ClusterType::Production));
    let families = &prod.workers.families;
    // One family per class and architecture, none beaten by another of its pool.
    for family in families {
        let types: Vec<_> = catalog.iter().filter(|t| &t.family == family).collect();
        let pool = |t: &&dialtone_cloud::InstanceType| {
            (
                dialtone_cloud::performance::class_of(&t.family).to_string(),
                t.archs[0],
            )
        };
        let (class, arch) = pool(&types[0]);
        let rivals = families.iter().filter(|f| f != &family).filter(|f| {
            catalog
                .iter()
                .any(|t| &&t.family == f && pool(&t) == (class.clone(), arch))
        });
        assert_eq!(rivals.count(), 0, "{family} shares its pool");
        let best = |f: &str| {
            catalog
                .iter()
                .filter(|t| t.family == f && t.current_generation && !t.bare_metal)
                .map(|t| t.usd_per_performance())
                .fold(f64::INFINITY, f64::min)
        };
        for other in ["m6i", "m7i", "c6g", "c7g", "r6a", "r7a"] {
            if (
                dialtone_cloud::performance::class_of(other),
                catalog.iter().find(|t| t.family == other).unwrap().archs[0],
            ) == (class.as_str(), arch)
            {
                assert!(
                    best(family) <= best(other),
                    "{family} is no worse than {other}"
                );
            }
        }
    }
    // The newest processors win their pools.
    for family in ["m8g", "c8g", "r8g"] {
        assert!(families.contains(&family.to_string()), "{families:?}");
    }
}

#[test]
fn a_cluster_keeps_its_families_until_it_is_upgraded() {
    let pool = AddressPlan::default_pool();
    let mut r = request(ClusterType::Production);
    r.architectures = Arch::ALL.to_vec();
    let kept = vec!["m7g".to_string(), "c7i".to_string(), "nosuch".to_string()];
    let replan = |r: &ClusterRequest, kept: Option<&[String]>| {
        plan(
            r,
            &PlanContext {
                catalog: InstanceCatalog::builtin(),
                address_plan: &pool,
                existing_vpc: None,
                kept_families: kept,
            },
        )
        .unwrap()
    };
    // Kept families stay, less those no longer allowed or offered.
    assert_eq!(replan(&r, Some(&kept)).workers.families, ["m7g", "c7i"]);
    r.excluded_families = vec!["c7i".into()];
    assert_eq!(replan(&r, Some(&kept)).workers.families, ["m7g"]);
    // At an upgrade (nothing kept) the pools move to the best families.
    let upgraded = replan(&r, None).workers.families;
    assert!(upgraded.contains(&"m8g".to_string()) && !upgraded.contains(&"m7g".to_string()));
}

/// The first workers can run a real workload: at least 2 vCPUs and 4 GiB on a developer
/// cluster, 8 GiB on a production one.
#[test]
fn the_initial_worker_fits_its_type() {
    for (cluster_type, memory_mib) in [
        (ClusterType::Developer, 4096),
        (ClusterType::Production, 8192),
    ] {
        let planned = plan_of(&request(cluster_type));
        let name = &planned.workers.initial[0].instance_type;
        let t = InstanceCatalog::builtin().get(name).unwrap();
        assert!(
            t.vcpus >= 2 && t.memory_mib >= memory_mib,
            "{cluster_type}: {name} has {} vCPUs and {} MiB",
            t.vcpus,
            t.memory_mib
        );
    }
}

/// A cluster keeps its families when planned again at its version, and moves at an upgrade.
#[test]
fn families_are_kept_until_an_upgrade() {
    let planned = plan_of(&request(ClusterType::Developer));
    let version = planned.kubernetes_version.clone();
    assert_eq!(
        dialtone_planner::kept_families(Some(&planned), &version),
        Some(planned.workers.families.as_slice())
    );
    assert_eq!(dialtone_planner::kept_families(Some(&planned), "0.0"), None);
    assert_eq!(dialtone_planner::kept_families(None, &version), None);
}

/// An empty version in a spec means the default, not a version named "".
#[test]
fn an_empty_version_in_a_spec_is_none() {
    let spec = dialtone_types::Cluster {
        region: "us-east-1".into(),
        ..Default::default()
    };
    let request = ClusterRequest::from_spec("web", ClusterType::Developer, &spec);
    assert_eq!(request.kubernetes_version, None);
}

/// The table reads as users see it: a fixed value, or how it is computed.
#[test]
fn rules_display_their_value_or_their_computation() {
    assert_eq!(Rule::Fixed("3".into()).to_string(), "3");
    assert_eq!(
        Rule::Computed("by the bound".into()).to_string(),
        "by the bound"
    );
    let production = |key: &str| Decision::find(key).unwrap().rule(ClusterType::Production);
    assert_eq!(
        production("controlPlane.instanceType").to_string(),
        "m7i.large up to 10 workers, m7i.xlarge up to 100, m7i.2xlarge up to 500, m7i.4xlarge above"
    );
    assert_eq!(
        production("workers.evictionHard").to_string(),
        "memory.available<500Mi,nodefs.available<10%"
    );
    assert_eq!(
        production("workers.systemReserved").to_string(),
        "cpu=200m,memory=1Gi"
    );
    assert_eq!(
        production("workers.maxNodes").to_string(),
        "the request's, default 100, at most 1,000"
    );
}

/// `docs/decisions.md` is the table as it is: each row's values, whether it is enforced
/// and what it builds, and why. `DIALTONE_BLESS=1` rewrites it.
#[test]
fn the_decision_table_in_the_docs_is_the_table() {
    let escape = |text: &str| text.replace('|', "\\|");
    let enforced = DECISIONS.iter().filter(|d| d.is_enforced()).count();
    let mut doc = format!(
        "# The decision table\n\n\
         Every decision a Smart Cluster type makes, as `dialtone cluster-types describe` shows it. \
         A row's value is a typed field of `ClusterSettings` (`crates/dialtone-types/src/settings.rs`) \
         that every plan carries; the table itself is `DECISIONS` in \
         `crates/dialtone-planner/src/decisions.rs`, which this page is generated from (a test \
         fails when it is stale; `DIALTONE_BLESS=1 cargo test -p dialtone-planner` rewrites it).\n\n\
         **{enforced} enforced**: something built or checked follows from each, named below, and \
         a test changes each one and shows what gets built change \
         (`crates/dialtone-controllers/tests/decisions.rs`). **{} advisory**: recorded in every \
         plan and shown, but nothing is built from them yet.\n\n\
         | Decision | Developer | Production | Enforced | Why |\n|---|---|---|---|---|\n",
        DECISIONS.len() - enforced
    );
    for d in DECISIONS {
        let enforcement = match d.enforcement {
            Enforcement::Enforced(what) => format!("yes: {what}"),
            Enforcement::Advisory => "advisory".to_string(),
        };
        doc.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            d.key,
            escape(&d.rule(ClusterType::Developer).to_string()),
            escape(&d.rule(ClusterType::Production).to_string()),
            escape(&enforcement),
            escape(d.reason),
        ));
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/decisions.md");
    if std::env::var_os("DIALTONE_BLESS").is_some() {
        std::fs::write(&path, &doc).unwrap();
    }
    let written = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        written == doc,
        "docs/decisions.md is stale: rewrite it with `DIALTONE_BLESS=1 cargo test -p dialtone-planner`"
    );
}
