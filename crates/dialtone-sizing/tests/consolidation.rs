//! Consolidation over the real catalogue: a big node with little on it is replaced by
//! cheaper ones, an idle node is removed, protected nodes, the budget and minNodes are
//! respected; and, over random workloads that grow and then shrink, the cluster converges
//! with every pod running, each consolidation step lowers the cost, and a steady workload
//! causes no action at all.

use dialtone_cloud::{Arch, InstanceCatalog};
use dialtone_sizing::consolidate::{
    Action, Cluster, PodOrders, Policy, RunningNode, RunningPod, Unneeded, consolidate, groups_of,
};
use dialtone_sizing::simulation::SimCluster;
use dialtone_sizing::{CostModel, NodeType, Placement, Resources, node_types};
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
    let model = CostModel {
        allow_burstable: true,
        ..CostModel::default()
    };
    node_types(catalogue, &zones(), &model)
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
        per_node: None,
        avoids: Default::default(),
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
        policy: Policy::Balanced,
        orders: PodOrders::Either,
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
                zones: vec![z.to_string()],
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
    let touched: Vec<&str> = actions.iter().flat_map(Action::nodes).collect();
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
                    zones: Vec::new(),
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
        // Settled: quiet for longer than a new node takes to become a candidate and, under
        // the balanced policy, to stay unneeded for as long again.
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
                if quiet > sim.stabilization * 2 && sim.now > sim.stabilization * 3 {
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
            policy: Policy::Balanced,
            orders: PodOrders::Either,
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

/// A node of no catalogue type: the room and price a test needs.
fn made_up(name: &str, room: Resources, usd_per_hour: f64, pods: Vec<RunningPod>) -> RunningNode {
    RunningNode {
        name: name.into(),
        instance_type: "made-up".into(),
        arch: Arch::X86_64,
        zone: ZONES[0].into(),
        usd_per_hour,
        room,
        pods,
        keep: None,
        draining: false,
        outdated: false,
    }
}

fn kept(mut node: RunningNode) -> RunningNode {
    node.keep = Some("a disruption budget allows no eviction".into());
    node
}

fn room(millicores: u64, memory_mib: u64, pods: u32) -> Resources {
    Resources {
        millicores,
        memory_mib,
        pods,
    }
}

fn deleted(actions: &[Action]) -> Vec<&str> {
    actions
        .iter()
        .filter(|a| matches!(a, Action::Delete { .. }))
        .flat_map(Action::nodes)
        .collect()
}

#[test]
fn utilization_is_the_larger_share_in_use() {
    let mut node = made_up("n", room(2_000, 4_000, 20), 1.0, vec![]);
    assert_eq!(node.utilization(), 0.0);
    node.pods = vec![pod(500, 2_000)];
    assert_eq!(node.utilization(), 0.5);
    node.pods = vec![pod(1_500, 1_000)];
    assert_eq!(node.utilization(), 0.75);
    // A node with no CPU to offer is full, whatever runs on it.
    node.room.millicores = 0;
    assert_eq!(node.utilization(), 1.0);
}

#[test]
fn pods_of_one_shape_and_placement_form_one_group() {
    let arm = RunningPod {
        placement: Placement {
            arch: Some(Arch::Arm64),
            zones: Vec::new(),
        },
        ..pod(100, 128)
    };
    let pods = [pod(100, 128), pod(200, 128), pod(100, 128), arm];
    let groups = groups_of(&pods);
    let shapes: Vec<(u64, bool, u32)> = groups
        .iter()
        .map(|g| (g.requests.millicores, g.placement.arch.is_some(), g.count))
        .collect();
    assert_eq!(shapes, [(100, false, 2), (200, false, 1), (100, true, 1)]);
}

#[test]
fn the_node_that_wastes_the_most_goes_first() {
    let types = general_purpose();
    let zones = zones();
    let nodes = vec![
        node_of(&types, "m7g.xlarge", "busier", vec![pod(2_000, 2_048)]),
        node_of(&types, "m7g.xlarge", "idler", vec![pod(200, 256)]),
        kept(made_up("keeper", room(8_000, 16_384, 50), 1.0, vec![])),
    ];
    let one = Cluster {
        budget: 1,
        ..cluster(&nodes, &types, &zones)
    };
    assert_eq!(deleted(&consolidate(&one)), ["idler"]);

    // Waste is dollars of unused room: a dear node half used wastes more than a cheap one
    // almost idle.
    let nodes = vec![
        made_up("dear", room(4_000, 8_192, 50), 1.0, vec![pod(2_000, 256)]),
        made_up("cheap", room(4_000, 8_192, 50), 0.4, vec![pod(400, 256)]),
        kept(made_up("keeper", room(8_000, 16_384, 50), 1.0, vec![])),
    ];
    let one = Cluster {
        budget: 1,
        ..cluster(&nodes, &types, &zones)
    };
    assert_eq!(deleted(&consolidate(&one)), ["dear"]);
}

#[test]
fn draining_and_outdated_nodes_are_no_room_up_to_date_ones_are() {
    let types = general_purpose();
    let zones = zones();
    let idle = node_of(&types, "m7g.large", "idle", vec![pod(200, 256)]);
    let mut draining = made_up("draining", room(8_000, 16_384, 50), 1.0, vec![]);
    draining.draining = true;
    let mut outdated = kept(made_up("outdated", room(8_000, 16_384, 50), 1.0, vec![]));
    outdated.outdated = true;
    for elsewhere in [draining, outdated] {
        let nodes = vec![idle.clone(), elsewhere];
        let actions = consolidate(&cluster(&nodes, &types, &zones));
        assert!(!deleted(&actions).contains(&"idle"), "{actions:?}");
    }
    let nodes = vec![
        idle.clone(),
        kept(made_up("roomy", room(8_000, 16_384, 50), 1.0, vec![])),
    ];
    assert_eq!(
        deleted(&consolidate(&cluster(&nodes, &types, &zones))),
        ["idle"]
    );
}

#[test]
fn min_nodes_counts_the_nodes_each_earlier_action_leaves() {
    let types = general_purpose();
    let zones = zones();
    // Two idle nodes whose pods fit on a third: at minNodes 2, only one may go.
    let nodes = vec![
        node_of(&types, "m7g.large", "idle-1", vec![pod(200, 256)]),
        node_of(&types, "m7g.large", "idle-2", vec![pod(200, 256)]),
        kept(made_up("keeper", room(8_000, 16_384, 50), 1.0, vec![])),
    ];
    let floor = Cluster {
        min_nodes: 2,
        ..cluster(&nodes, &types, &zones)
    };
    assert_eq!(deleted(&consolidate(&floor)), ["idle-1"]);

    // A replacement leaves as many nodes as there were: after it, an idle node may still
    // go at minNodes 2, not at 3.
    let x86 = Placement {
        arch: Some(Arch::X86_64),
        zones: Vec::new(),
    };
    let big_pods = vec![
        RunningPod {
            placement: x86,
            ..pod(4_000, 1_024)
        };
        3
    ];
    let nodes = vec![
        node_of(&types, "m7i.16xlarge", "big", big_pods),
        node_of(&types, "m7g.xlarge", "idle", vec![pod(200, 256)]),
        kept(made_up("keeper", room(3_000, 8_192, 20), 1.0, vec![])),
    ];
    for (min_nodes, idle_goes) in [(2, true), (3, false)] {
        let actions = consolidate(&Cluster {
            min_nodes,
            ..cluster(&nodes, &types, &zones)
        });
        assert!(
            matches!(&actions[0], Action::Replace { node, with, .. } if node == "big" && with.len() == 1),
            "{actions:?}"
        );
        assert_eq!(
            deleted(&actions).contains(&"idle"),
            idle_goes,
            "{actions:?}"
        );
    }
}

#[test]
fn room_a_replacement_fills_on_other_nodes_is_no_longer_room() {
    // The big node's x86 pods go two to the keeper and one to a new node; the arm node's
    // pod then fits on the keeper only if the keeper's room is counted right: CPU, memory
    // and pod slots in turn are what the keeper runs short of.
    let types = general_purpose();
    let zones = zones();
    let x86 = |millicores, memory_mib| RunningPod {
        placement: Placement {
            arch: Some(Arch::X86_64),
            zones: Vec::new(),
        },
        ..pod(millicores, memory_mib)
    };
    for (keeper_room, big_pod, small_pod, small_goes) in [
        (
            room(4_500, 1 << 20, 100),
            x86(2_000, 1_024),
            pod(1_000, 512),
            false,
        ),
        (
            room(100_000, 18_432, 100),
            x86(100, 8_192),
            pod(100, 4_096),
            false,
        ),
        (room(1_100, 1 << 20, 3), x86(500, 512), pod(50, 64), true),
    ] {
        let nodes = vec![
            node_of(&types, "m7i.16xlarge", "big", vec![big_pod; 3]),
            node_of(&types, "m7g.large", "small", vec![small_pod]),
            kept(made_up("keeper", keeper_room, 1.0, vec![])),
        ];
        let actions = consolidate(&cluster(&nodes, &types, &zones));
        assert!(
            matches!(&actions[0], Action::Replace { node, .. } if node == "big"),
            "{actions:?}"
        );
        assert_eq!(
            deleted(&actions).contains(&"small"),
            small_goes,
            "{actions:?}"
        );
    }
}

#[test]
fn moved_pods_go_where_the_scheduler_would_put_them() {
    // The scheduler puts a pod on the node that is least allocated afterwards: the first
    // node's 1,500m pod goes to the small keeper (80 % allocated after) rather than the
    // big one (91 %), which leaves the big keeper room for the second node's 2,500m pod.
    let nodes = vec![
        made_up(
            "first",
            room(16_000, 65_536, 110),
            1.0,
            vec![pod(1_500, 64)],
        ),
        made_up(
            "second",
            room(3_000, 65_536, 110),
            0.5,
            vec![pod(2_500, 64)],
        ),
        kept(made_up(
            "big-keeper",
            room(16_000, 65_536, 110),
            1.0,
            vec![pod(13_000, 64)],
        )),
        kept(made_up(
            "small-keeper",
            room(2_000, 65_536, 110),
            1.0,
            vec![pod(100, 64)],
        )),
    ];
    let types = general_purpose();
    let zones = zones();
    assert_eq!(
        deleted(&consolidate(&cluster(&nodes, &types, &zones))),
        ["first", "second"]
    );
}

#[test]
fn a_one_node_cluster_at_its_maximum_can_still_replace_its_node() {
    let types = general_purpose();
    let zones = zones();
    let nodes = vec![node_of(
        &types,
        "m7i.16xlarge",
        "big",
        vec![pod(1_000, 2_048); 3],
    )];
    let at_max = Cluster {
        max_nodes: 1,
        min_nodes: 1,
        ..cluster(&nodes, &types, &zones)
    };
    let actions = consolidate(&at_max);
    assert!(
        matches!(actions.as_slice(), [Action::Replace { with, .. }] if with.len() == 1),
        "{actions:?}"
    );
}

#[test]
fn an_outdated_node_with_nothing_to_move_is_still_upgraded_at_min_nodes() {
    // Its slot must be filled to keep minNodes: a stand-in of the cheapest type replaces it.
    let types = general_purpose();
    let zones = zones();
    let mut old = node_of(&types, "t3.medium", "old", vec![]);
    old.outdated = true;
    let nodes = vec![old, node_of(&types, "m7g.large", "current", vec![])];
    let floor = Cluster {
        min_nodes: 2,
        ..cluster(&nodes, &types, &zones)
    };
    let actions = consolidate(&floor);
    assert!(
        matches!(actions.as_slice(), [Action::Upgrade { node, with, .. }] if node == "old" && with.len() == 1),
        "{actions:?}"
    );
}

/// A type of no catalogue: the room and price a test needs, in every zone.
fn made_up_type(name: &str, room: Resources, usd_per_hour: f64) -> NodeType {
    NodeType {
        name: name.into(),
        family: name.into(),
        arch: Arch::X86_64,
        room,
        usd_per_hour,
        zones: zones(),
    }
}

#[test]
fn each_policy_asks_its_own_saving_for_a_disruption() {
    let small = room(2_000, 8_192, 30);
    let types = vec![made_up_type("small", small, 0.1)];
    let zones = zones();
    // Ten pods on a node whose price is less than $0.005 an hour per pod; an empty node.
    let many = (0..10).map(|_| pod(100, 128)).collect();
    let nodes = vec![
        made_up("crowded", small, 0.04, many),
        made_up("empty", small, 0.1, vec![]),
        kept(made_up("keeper", room(8_000, 32_768, 50), 1.0, vec![])),
    ];
    let under = |policy| {
        let mut removed: Vec<&str> = consolidate(&Cluster {
            policy,
            ..cluster(&nodes, &types, &zones)
        })
        .iter()
        .flat_map(|a| a.nodes())
        .map(|n| if n == "crowded" { "crowded" } else { "empty" })
        .collect();
        removed.sort();
        removed
    };
    assert_eq!(under(Policy::WhenEmpty), ["empty"]);
    // Balanced: ten evictions to save $0.04 an hour are not worth it.
    assert_eq!(under(Policy::Balanced), ["empty"]);
    assert_eq!(under(Policy::Aggressive), ["crowded", "empty"]);

    // A replacement saving 5 %: only the aggressive policy takes it.
    let types = vec![
        made_up_type("small", small, 0.095),
        made_up_type("large", room(8_000, 32_768, 110), 0.4),
    ];
    let nodes = vec![made_up(
        "node",
        room(4_000, 16_384, 50),
        0.1,
        vec![pod(1_500, 1_024)],
    )];
    let replaced = |policy| {
        consolidate(&Cluster {
            policy,
            ..cluster(&nodes, &types, &zones)
        })
        .len()
    };
    assert_eq!(replaced(Policy::Balanced), 0);
    assert_eq!(replaced(Policy::WhenEmpty), 0);
    assert_eq!(replaced(Policy::Aggressive), 1);
}

#[test]
fn nodes_no_one_of_which_can_go_are_merged_into_a_cheaper_one() {
    let small = room(2_000, 8_192, 30);
    let types = vec![
        made_up_type("small", small, 0.1),
        made_up_type("large", room(8_000, 32_768, 110), 0.2),
    ];
    let zones = zones();
    // Three smalls 60 % used: none fits on the others, and no small is cheaper than a small;
    // one large holds all three for $0.2 where they cost $0.3.
    let nodes: Vec<RunningNode> = (0..3)
        .map(|i| made_up(&format!("s{i}"), small, 0.1, vec![pod(1_200, 1_024)]))
        .collect();
    let actions = consolidate(&cluster(&nodes, &types, &zones));
    let [
        Action::Merge {
            nodes: merged,
            with,
            saves_usd_per_hour,
        },
    ] = actions.as_slice()
    else {
        panic!("one merge: {actions:?}");
    };
    assert_eq!(merged, &["s0", "s1", "s2"]);
    assert_eq!(with.len(), 1);
    assert_eq!(with[0].instance_type, "large");
    assert!((saves_usd_per_hour - 0.1).abs() < 1e-9);
    // A merge disrupts every node it removes: with room for two disruptions, two would
    // merge, but two smalls cost what a large does.
    let two = Cluster {
        budget: 2,
        ..cluster(&nodes, &types, &zones)
    };
    assert_eq!(consolidate(&two), []);
}

#[test]
fn a_balanced_move_waits_until_its_nodes_stay_unneeded_unless_it_evicts_nothing() {
    let small = room(2_000, 8_192, 30);
    let nodes = vec![
        made_up("busy", small, 0.1, vec![pod(100, 128)]),
        made_up("idle", small, 0.1, vec![]),
    ];
    let delete = |node: &str| Action::Delete {
        node: node.into(),
        saves_usd_per_hour: 0.1,
    };
    let mut unneeded = Unneeded::default();
    // The empty node goes at once; the busy one waits five minutes of decisions.
    let ripe = unneeded.ripe(vec![delete("busy"), delete("idle")], &nodes, 0, 5, 10);
    assert_eq!(ripe, [delete("idle")]);
    assert_eq!(unneeded.ripe(vec![delete("busy")], &nodes, 4, 5, 10), []);
    assert_eq!(
        unneeded.ripe(vec![delete("busy")], &nodes, 5, 5, 10),
        [delete("busy")]
    );
    // A decision that no longer wants it gone starts the wait again.
    let mut unneeded = Unneeded::default();
    unneeded.ripe(vec![delete("busy")], &nodes, 0, 5, 10);
    unneeded.ripe(Vec::new(), &nodes, 3, 5, 10);
    assert_eq!(unneeded.ripe(vec![delete("busy")], &nodes, 6, 5, 10), []);
    assert_eq!(
        unneeded.ripe(vec![delete("busy")], &nodes, 11, 5, 10),
        [delete("busy")]
    );
    // No more than the budget at once.
    assert_eq!(
        Unneeded::default().ripe(vec![delete("idle"), delete("idle")], &nodes, 0, 5, 1),
        [delete("idle")]
    );
}
