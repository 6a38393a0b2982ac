//! Consolidation over the real catalogue: a big node with little on it is replaced by
//! cheaper ones, an idle node is removed, protected nodes, the budget and minNodes are
//! respected; and, over random workloads that grow and then shrink, the cluster converges
//! with every pod running, each consolidation step lowers the cost, and a steady workload
//! causes no action at all.

use dialtone_cloud::{Arch, InstanceCatalog};
use dialtone_sizing::consolidate::{Action, Cluster, RunningNode, RunningPod, consolidate};
use dialtone_sizing::simulation::SimCluster;
use dialtone_sizing::{NodeType, Placement, Resources, node_types};
use proptest::prelude::*;

const ZONES: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];

fn zones() -> Vec<String> {
    ZONES.iter().map(|z| z.to_string()).collect()
}

/// The general-purpose types of current families, as a cluster would be allowed.
fn general_purpose() -> Vec<NodeType> {
    let catalogue = InstanceCatalog::builtin()
        .iter()
        .filter(|t| {
            ["m7i", "m7g", "c7g", "r7g", "t3"].contains(&t.family.as_str()) && t.vcpus <= 64
        })
        .cloned()
        .collect::<Vec<_>>();
    node_types(catalogue, &zones(), Resources::default())
}

fn node_of(types: &[NodeType], type_name: &str, name: &str, pods: Vec<RunningPod>) -> RunningNode {
    let t = types.iter().find(|t| t.name == type_name).expect("a type");
    RunningNode {
        name: name.into(),
        instance_type: t.name.clone(),
        arch: t.arch,
        zone: ZONES[0].into(),
        usd_per_hour: t.usd_per_hour,
        room: t.room,
        pods,
        keep: None,
        draining: false,
        outdated: false,
    }
}

fn pod(millicores: u64, memory_mib: u64) -> RunningPod {
    RunningPod {
        requests: Resources {
            millicores,
            memory_mib,
            pods: 1,
        },
        placement: Placement::default(),
    }
}

fn cluster<'a>(
    nodes: &'a [RunningNode],
    types: &'a [NodeType],
    zones: &'a [String],
) -> Cluster<'a> {
    Cluster {
        nodes,
        types,
        zones,
        spread_zones: false,
        min_nodes: 0,
        max_nodes: 100,
        budget: 10,
        min_saving: 0.1,
    }
}

#[test]
fn a_big_node_running_little_is_replaced_by_cheaper_ones() {
    let types = general_purpose();
    let zones = zones();
    let nodes = vec![node_of(
        &types,
        "m7i.16xlarge",
        "big",
        vec![pod(1_000, 2_048); 3],
    )];
    let actions = consolidate(&cluster(&nodes, &types, &zones));
    let [
        Action::Replace {
            node,
            with,
            saves_usd_per_hour,
        },
    ] = actions.as_slice()
    else {
        panic!("one replacement, not {actions:?}");
    };
    assert_eq!(node, "big");
    let cost: f64 = with.iter().map(|n| n.usd_per_hour).sum();
    assert!(cost <= nodes[0].usd_per_hour * 0.9, "{with:?}");
    assert!((saves_usd_per_hour - (nodes[0].usd_per_hour - cost)).abs() < 1e-9);
    let placed: u32 = with.iter().flat_map(|n| n.pods.values()).sum();
    assert_eq!(placed, 3, "every pod of the node has a place: {with:?}");
}

#[test]
fn one_node_is_replaced_by_several_when_several_cost_less() {
    // Pods that must each sit in a different zone cannot share one node: three small
    // nodes, one per zone, replace the big one.
    let types = general_purpose();
    let zones = zones();
    let pods = ZONES
        .iter()
        .map(|z| RunningPod {
            placement: Placement {
                zone: Some(z.to_string()),
                arch: None,
            },
            ..pod(500, 1_024)
        })
        .collect();
    let mut big = node_of(&types, "m7i.16xlarge", "big", pods);
    // A node that holds pods of three zones is a fiction of the test: the zone of the node
    // does not matter to consolidation's arithmetic, only to the new nodes.
    big.zone = ZONES[0].into();
    let actions = consolidate(&cluster(std::slice::from_ref(&big), &types, &zones));
    let [Action::Replace { with, .. }] = actions.as_slice() else {
        panic!("one replacement, not {actions:?}");
    };
    let mut new_zones: Vec<&str> = with.iter().map(|n| n.zone.as_str()).collect();
    new_zones.sort();
    assert_eq!(new_zones, ZONES, "{with:?}");
}

#[test]
fn an_idle_node_goes_and_protected_ones_stay() {
    let types = general_purpose();
    let zones = zones();
    let mut nodes = vec![
        node_of(&types, "m7g.xlarge", "busy", vec![pod(1_000, 2_048)]),
        node_of(&types, "m7g.xlarge", "idle", vec![pod(200, 256)]),
        node_of(&types, "m7g.xlarge", "protected", vec![pod(100, 128)]),
    ];
    nodes[2].keep = Some("a disruption budget allows no eviction".into());
    let actions = consolidate(&cluster(&nodes, &types, &zones));
    let touched: Vec<&str> = actions.iter().map(Action::node).collect();
    assert!(!touched.contains(&"protected"), "{actions:?}");
    assert!(
        touched.contains(&"idle") || touched.contains(&"busy"),
        "{actions:?}"
    );

    // minNodes holds, and the budget caps the disruptions of one decision.
    let floor = Cluster {
        min_nodes: 3,
        ..cluster(&nodes, &types, &zones)
    };
    assert!(
        consolidate(&floor)
            .iter()
            .all(|a| matches!(a, Action::Replace { .. })),
        "no node may simply go at minNodes"
    );
    nodes[2].keep = None;
    let one = Cluster {
        budget: 1,
        ..cluster(&nodes, &types, &zones)
    };
    assert_eq!(consolidate(&one).len(), 1);
}

#[test]
fn a_full_cheap_cluster_is_left_alone() {
    let types = general_purpose();
    let zones = zones();
    // Two m7g.large nodes filled to the brim: nothing cheaper holds their pods.
    let full = |name: &str| {
        let t = types.iter().find(|t| t.name == "m7g.large").unwrap();
        node_of(
            &types,
            "m7g.large",
            name,
            vec![pod(t.room.millicores / 2, t.room.memory_mib / 2); 2],
        )
    };
    let nodes = vec![full("a"), full("b")];
    assert!(consolidate(&cluster(&nodes, &types, &zones)).is_empty());
}

fn workload() -> impl Strategy<Value = Vec<(RunningPod, usize, usize)>> {
    prop::collection::vec(
        (
            100u64..4_000,
            128u64..16_000,
            1usize..40,
            0usize..40,
            0u8..4,
        ),
        1..6,
    )
    .prop_map(|shapes| {
        shapes
            .into_iter()
            .map(|(millicores, memory_mib, peak, low, arch)| {
                let placement = Placement {
                    arch: match arch {
                        0 => Some(Arch::Arm64),
                        1 => Some(Arch::X86_64),
                        _ => None,
                    },
                    zone: None,
                };
                (
                    RunningPod {
                        placement,
                        ..pod(millicores, memory_mib)
                    },
                    peak,
                    low.min(peak),
                )
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn clusters_shrink_with_every_pod_running_and_then_stay_put(
        shapes in workload(),
        budget in 1usize..4,
    ) {
        let mut sim = SimCluster::new(general_purpose(), zones(), 1_000);
        sim.budget = budget;
        sim.stabilization = 2;
        for (pod, peak, _) in &shapes {
            sim.add_pods(pod, *peak);
        }
        // Settled: quiet for longer than a new node takes to become a candidate.
        let settle = |sim: &mut SimCluster| {
            let mut quiet = 0;
            for _ in 0..200 {
                let before = sim.usd_per_hour();
                let step = sim.step();
                if step.launched == 0 && step.removed > 0 {
                    prop_assert!(sim.usd_per_hour() < before, "removing nodes lowers the cost");
                }
                if step.removed > 0 && step.launched > 0 && sim.pending.is_empty() {
                    prop_assert!(sim.usd_per_hour() < before, "a replacement lowers the cost");
                }
                quiet = if step.actions() == 0 { quiet + 1 } else { 0 };
                if quiet > sim.stabilization && sim.now > sim.stabilization * 2 {
                    break;
                }
            }
            Ok(())
        };
        settle(&mut sim)?;
        let expected: usize = shapes.iter().map(|(_, peak, _)| peak).sum();
        prop_assert!(sim.pending.is_empty(), "every pod runs at the peak");
        prop_assert_eq!(sim.running_pods(), expected);
        let peak_cost = sim.usd_per_hour();

        for (pod, peak, low) in &shapes {
            sim.remove_pods(pod, peak - low);
        }
        settle(&mut sim)?;
        let expected: usize = shapes.iter().map(|(_, _, low)| low).sum();
        prop_assert!(sim.pending.is_empty(), "every pod runs after the scale-down");
        prop_assert_eq!(sim.running_pods(), expected);
        prop_assert!(sim.usd_per_hour() <= peak_cost + 1e-9);
        if expected == 0 {
            prop_assert!(sim.nodes.is_empty(), "no pods, no nodes");
        }

        // A steady hour, a step a minute: nothing moves.
        for _ in 0..60 {
            prop_assert_eq!(sim.step().actions(), 0);
        }

        // Deterministic: the same decisions from the same cluster.
        let nodes = sim.nodes.clone();
        let decide = || consolidate(&Cluster {
            nodes: &nodes,
            types: &sim.types,
            zones: &sim.zones,
            spread_zones: false,
            min_nodes: 0,
            max_nodes: 1_000,
            budget,
            min_saving: 0.1,
        });
        prop_assert_eq!(decide(), decide());
    }
}

#[test]
fn an_upgrade_replaces_every_outdated_node_even_at_a_higher_cost() {
    // Two old-version nodes, both cheap and well used: only the upgrade moves them, one per
    // decision within a budget of one, onto new nodes (never onto the other old node).
    let types = general_purpose();
    let zones = zones();
    let mut nodes = vec![
        node_of(&types, "t3.medium", "old-1", vec![pod(1_500, 2_500)]),
        node_of(&types, "t3.medium", "old-2", vec![pod(1_500, 2_500)]),
    ];
    for node in &mut nodes {
        node.outdated = true;
    }
    let mut one_at_a_time = cluster(&nodes, &types, &zones);
    one_at_a_time.budget = 1;
    one_at_a_time.min_nodes = 2;
    let actions = consolidate(&one_at_a_time);
    let [Action::Upgrade { node, with, .. }] = actions.as_slice() else {
        panic!("one upgrade, not {actions:?}");
    };
    assert_eq!(node, "old-1");
    assert_eq!(with.len(), 1, "one new node holds the pod: {with:?}");
    assert!(
        with.iter().all(|n| n.pods.values().sum::<u32>() == 1),
        "the pod goes to the new node, not to old-2"
    );
    // Without any consolidation for a saving, up-to-date nodes would have been left alone.
    for node in &mut nodes {
        node.outdated = false;
    }
    assert!(consolidate(&cluster(&nodes, &types, &zones)).is_empty());
    // A node a budget protects waits, outdated or not.
    nodes[0].outdated = true;
    nodes[0].keep = Some("budget".into());
    assert!(consolidate(&cluster(&nodes, &types, &zones)).is_empty());
}
