//! Small instances solved by hand. A bound that is valid but loose, or a plan that is sound
//! but costly, passes every property test of the plans; here each rule of the bound's
//! program (resources, placements, size thresholds, pods no type holds) is checked by the
//! exact value it must give, and the plan by the optimum it must find.

use dialtone_cloud::Arch;
use dialtone_sizing::{NodeType, Placement, PodGroup, Resources, Snapshot, bound, undominated};

/// A type with ample memory and pod slots unless the instance says otherwise.
fn node_type(
    name: &str,
    arch: Arch,
    millicores: u64,
    usd_per_hour: f64,
    zones: &[&str],
) -> NodeType {
    NodeType {
        name: name.into(),
        family: name.split('.').next().unwrap_or(name).into(),
        arch,
        room: Resources {
            millicores,
            memory_mib: 1 << 20,
            pods: 110,
        },
        usd_per_hour,
        zones: zones.iter().map(|z| z.to_string()).collect(),
    }
}

fn pods(millicores: u64, count: u32, placement: Placement) -> PodGroup {
    PodGroup {
        name: format!("{millicores}m"),
        requests: Resources {
            millicores,
            memory_mib: 64,
            pods: 1,
        },
        placement,
        count,
        per_node: None,
        avoids: Default::default(),
    }
}

fn snapshot(types: Vec<NodeType>, pending: Vec<PodGroup>) -> Snapshot {
    Snapshot {
        pending,
        existing: Vec::new(),
        types,
        zones: vec!["a".into(), "b".into()],
        spread_zones: false,
        max_new_nodes: 100,
    }
}

fn assert_bound(snapshot: &Snapshot, expected: f64) {
    let bound = bound::lower_bound(snapshot);
    assert!(
        (bound - expected).abs() < 1e-6,
        "bound {bound}, expected {expected}"
    );
}

/// The plan places every pod at the optimum's cost.
fn assert_plan_costs(snapshot: &Snapshot, optimum: f64) {
    let plan = dialtone_sizing::plan(snapshot);
    assert!(plan.unplaceable.is_empty(), "{plan:?}");
    let placed: u32 = plan.new_nodes.iter().flat_map(|n| n.pods.values()).sum();
    let holdable: u32 = snapshot.pending.iter().map(|g| g.count).sum();
    assert_eq!(placed, holdable, "{plan:?}");
    assert!(
        (plan.usd_per_hour() - optimum).abs() < 1e-9,
        "{} costs {}, the optimum {optimum}",
        plan.summary(),
        plan.usd_per_hour()
    );
}

const ANYWHERE: Placement = Placement {
    arch: None,
    zones: Vec::new(),
};

#[test]
fn pods_confined_to_an_arch_pay_for_that_arch() {
    // Arm nodes cost twice as much as x86 ones. The arm-only pods need one arm node ($2),
    // whose room left over holds nothing else; the other pods fill one x86 node ($1).
    let types = vec![
        node_type("arm.large", Arch::Arm64, 2_000, 2.0, &["a"]),
        node_type("x86.large", Arch::X86_64, 2_000, 1.0, &["a"]),
    ];
    let arm_only = Placement {
        arch: Some(Arch::Arm64),
        zones: Vec::new(),
    };
    let snapshot = snapshot(
        types,
        vec![pods(1_000, 2, arm_only), pods(1_000, 2, ANYWHERE)],
    );
    assert_bound(&snapshot, 3.0);
    assert_plan_costs(&snapshot, 3.0);
}

#[test]
fn pods_confined_to_a_zone_pay_for_that_zone() {
    let types = vec![
        node_type("m.in-a", Arch::X86_64, 2_000, 2.0, &["a"]),
        node_type("m.in-b", Arch::X86_64, 2_000, 1.0, &["b"]),
    ];
    let zone_a = Placement {
        arch: None,
        zones: vec!["a".into()],
    };
    let snapshot = snapshot(
        types,
        vec![pods(1_000, 2, zone_a), pods(1_000, 2, ANYWHERE)],
    );
    assert_bound(&snapshot, 3.0);
    assert_plan_costs(&snapshot, 3.0);
}

#[test]
fn memory_is_a_resource_of_its_own() {
    // Ten pods of 8 GiB and 100m: memory, not CPU, takes five 16 GiB nodes.
    let mut small = node_type("r.large", Arch::X86_64, 2_000, 1.0, &["a"]);
    small.room.memory_mib = 16_384;
    let mut group = pods(100, 10, ANYWHERE);
    group.requests.memory_mib = 8_192;
    let snapshot = snapshot(vec![small], vec![group]);
    assert_bound(&snapshot, 5.0);
    assert_plan_costs(&snapshot, 5.0);
}

#[test]
fn a_pod_can_only_use_a_node_big_enough_for_it() {
    // A 3,900m and a 1,100m pod: the 1,000m type is the cheapest per millicore but holds
    // neither, so their 5,000m must come from the 4,000m type: 1.25 of it. (The integer
    // optimum is two big nodes; the bound is the relaxation's.)
    let types = vec![
        node_type("m.small", Arch::X86_64, 1_000, 0.1, &["a"]),
        node_type("m.big", Arch::X86_64, 4_000, 1.0, &["a"]),
    ];
    let snapshot = snapshot(
        types,
        vec![pods(3_900, 1, ANYWHERE), pods(1_100, 1, ANYWHERE)],
    );
    assert_bound(&snapshot, 1.25);
    assert_plan_costs(&snapshot, 2.0);
}

#[test]
fn small_pods_do_not_count_against_the_room_only_big_nodes_have() {
    // Two 3,000m pods fill one big node ($1); eight 500m pods fill four small ones ($0.4).
    // Counting the small pods as needing big nodes would give more than that optimum.
    let types = vec![
        node_type("m.small", Arch::X86_64, 1_000, 0.1, &["a"]),
        node_type("m.big", Arch::X86_64, 6_000, 1.0, &["a"]),
    ];
    let snapshot = snapshot(
        types,
        vec![pods(3_000, 2, ANYWHERE), pods(500, 8, ANYWHERE)],
    );
    assert_bound(&snapshot, 1.4);
    assert_plan_costs(&snapshot, 1.4);
}

#[test]
fn pods_no_type_holds_are_left_out_of_the_bound() {
    // The 8,000m pods fit no type; the bound is the 4 × 1,000m pods' alone. Pods that fit
    // only a type of another arch than theirs count as unholdable too.
    let types = vec![
        node_type("m.large", Arch::X86_64, 2_000, 1.0, &["a"]),
        node_type("g.xlarge", Arch::Arm64, 8_000, 1.0, &["a"]),
    ];
    let x86 = Placement {
        arch: Some(Arch::X86_64),
        zones: Vec::new(),
    };
    let snapshot = snapshot(
        types,
        vec![pods(8_000, 3, x86.clone()), pods(1_000, 4, x86)],
    );
    assert_bound(&snapshot, 2.0);
}

#[test]
fn few_nodes_to_spare_buy_bigger_ones() {
    // Ten 1,000m pods: ten small nodes ($1) are cheapest, but with one node to add, the
    // big one ($1.5) holds them all.
    let types = vec![
        node_type("m.small", Arch::X86_64, 1_000, 0.1, &["a"]),
        node_type("m.big", Arch::X86_64, 10_000, 1.5, &["a"]),
    ];
    let mut snapshot = snapshot(types, vec![pods(1_000, 10, ANYWHERE)]);
    assert_plan_costs(&snapshot, 1.0);
    snapshot.max_new_nodes = 1;
    assert_plan_costs(&snapshot, 1.5);
}

#[test]
fn a_node_is_shrunk_to_the_cheapest_type_that_holds_its_pods() {
    // Per pod the big type is cheapest, but three pods leave it mostly empty: the node
    // becomes the 4,000m type.
    let types = vec![
        node_type("m.medium", Arch::X86_64, 4_000, 0.5, &["a"]),
        node_type("m.big", Arch::X86_64, 16_000, 1.6, &["a"]),
    ];
    let snapshot = snapshot(types, vec![pods(1_000, 3, ANYWHERE)]);
    assert_plan_costs(&snapshot, 0.5);
}

#[test]
fn pod_values_add_up_to_the_bound() {
    // With no existing nodes, what each pod is worth at the optimum, summed over the pods,
    // is the optimum itself (complementary slackness).
    let types = vec![
        node_type("m.small", Arch::X86_64, 1_000, 0.1, &["a"]),
        node_type("m.big", Arch::X86_64, 6_000, 1.0, &["a"]),
    ];
    let snapshot = snapshot(
        types,
        vec![pods(3_000, 2, ANYWHERE), pods(500, 8, ANYWHERE)],
    );
    let groups = [(0, 2), (1, 8)];
    let values = bound::pod_values(&snapshot, &groups, &[0, 1]);
    let total: f64 = groups.iter().map(|&(g, n)| values[g] * n as f64).sum();
    assert!((total - 1.4).abs() < 1e-6, "{values:?}");
}

#[test]
fn only_types_some_other_type_beats_are_dropped() {
    let types = vec![
        node_type("a", Arch::Arm64, 2_000, 1.0, &["a", "b"]),
        // The same as `a`: the first of two equals stays.
        node_type("a-again", Arch::Arm64, 2_000, 1.0, &["a", "b"]),
        // Less room at the same price.
        node_type("smaller", Arch::Arm64, 1_000, 1.0, &["a", "b"]),
        // Less room, but another arch.
        node_type("x86", Arch::X86_64, 1_000, 1.0, &["a"]),
        // More room at a higher price.
        node_type("bigger", Arch::Arm64, 4_000, 2.0, &["a"]),
        // Cheaper, in fewer zones: neither it nor `a` beats the other.
        node_type("cheaper", Arch::Arm64, 2_000, 0.9, &["a"]),
        // Less room at a higher price, in no zone `a` lacks.
        node_type("worse", Arch::Arm64, 1_500, 1.5, &["b"]),
    ];
    assert_eq!(undominated(&types), vec![0, 3, 4, 5]);
}
