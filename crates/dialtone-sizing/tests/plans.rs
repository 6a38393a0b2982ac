//! Properties of every plan, Dialtone's and the Karpenter-style baseline's, over random
//! snapshots drawn from the real catalogue: each pod is placed once or reported, fits its
//! node and its node's placement, keeps its per-node rule and off the nodes it avoids,
//! existing nodes are not overfilled, bounds hold, the cost
//! is never below the lower bound, and the same input gives the same plan.

use dialtone_cloud::{Arch, InstanceCatalog};
use dialtone_sizing::patterns::{improve, pattern_bound};
use dialtone_sizing::{
    CostModel, ExistingNode, NewNode, NodeType, PerNode, Placement, Plan, PodGroup, Resources,
    Snapshot, bound, ffd, karpenter, node_types,
};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const ZONES: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];

fn catalogue_types(picks: &[usize]) -> Vec<NodeType> {
    let usable: Vec<_> = InstanceCatalog::builtin()
        .iter()
        .filter(|t| t.current_generation && t.gpus == 0 && !t.bare_metal && t.vcpus <= 64)
        .cloned()
        .collect();
    let chosen = picks.iter().map(|&i| usable[i % usable.len()].clone());
    let zones: Vec<String> = ZONES.iter().map(|z| z.to_string()).collect();
    let model = CostModel {
        daemonsets: Resources {
            millicores: 100,
            memory_mib: 128,
            pods: 2,
        },
        ..CostModel::default()
    };
    let mut types = node_types(chosen, &zones, &model);
    types.sort_by(|a, b| a.name.cmp(&b.name));
    types.dedup_by(|a, b| a.name == b.name);
    types
}

fn placement() -> impl Strategy<Value = Placement> {
    // Zones by bitmask; none and all alike mean any zone.
    (0..6u8, 0..12u8).prop_map(|(a, z)| Placement {
        arch: match a {
            0 => Some(Arch::Arm64),
            1 => Some(Arch::X86_64),
            _ => None,
        },
        zones: if z >= 7 {
            Vec::new()
        } else {
            (0..3)
                .filter(|i| z & (1 << i) != 0)
                .map(|i| ZONES[i].to_string())
                .collect()
        },
    })
}

/// Now and then a per-node rule, of one of two sets (one pod a node, or two); two groups
/// may share one.
fn per_node() -> impl Strategy<Value = Option<PerNode>> {
    (0..6u32).prop_map(|s| {
        (s < 2).then(|| PerNode {
            set: format!("set-{s}"),
            most: s + 1,
        })
    })
}

fn snapshot() -> impl Strategy<Value = Snapshot> {
    let groups = prop::collection::vec(
        (
            (50u64..6_000, 32u64..24_000, 1u32..60),
            placement(),
            per_node(),
            0u8..32,
        ),
        1..7,
    );
    let existing = prop::collection::vec(
        (
            (0u64..4_000, 0u64..8_000, 0u32..20),
            any::<bool>(),
            0usize..3,
            (0u32..3, 0u32..3),
        ),
        0..5,
    );
    (
        prop::collection::vec(any::<usize>(), 5..40),
        groups,
        existing,
        any::<bool>(),
        1usize..400,
    )
        .prop_map(
            |(picks, groups, existing, spread, max_new_nodes)| Snapshot {
                types: catalogue_types(&picks),
                pending: groups
                    .into_iter()
                    .enumerate()
                    .map(
                        |(i, ((millicores, memory_mib, count), placement, per_node, avoids))| {
                            PodGroup {
                                name: format!("g{i}"),
                                requests: Resources {
                                    millicores,
                                    memory_mib,
                                    pods: 1,
                                },
                                placement,
                                count,
                                per_node,
                                // Existing nodes by bitmask.
                                avoids: (0..5)
                                    .filter(|n| avoids & (1 << n) != 0)
                                    .map(|n| format!("n{n}"))
                                    .collect(),
                            }
                        },
                    )
                    .collect(),
                existing: existing
                    .into_iter()
                    .enumerate()
                    .map(
                        |(i, ((millicores, memory_mib, pods), arm, zone, (set0, set1)))| {
                            ExistingNode {
                                name: format!("n{i}"),
                                instance_type: "m7i.large".into(),
                                arch: if arm { Arch::Arm64 } else { Arch::X86_64 },
                                zone: ZONES[zone].to_string(),
                                free: Resources {
                                    millicores,
                                    memory_mib,
                                    pods,
                                },
                                sets: [("set-0", set0), ("set-1", set1)]
                                    .into_iter()
                                    .filter(|(_, k)| *k > 0)
                                    .map(|(s, k)| (s.to_string(), k))
                                    .collect(),
                            }
                        },
                    )
                    .collect(),
                zones: ZONES.iter().map(|z| z.to_string()).collect(),
                spread_zones: spread,
                max_new_nodes,
            },
        )
}

/// Every structural property of a plan; a message per violation.
fn violations(snapshot: &Snapshot, plan: &Plan) -> Vec<String> {
    let mut found = Vec::new();
    let mut placed = vec![0u32; snapshot.pending.len()];
    let mut existing_used = vec![Resources::default(); snapshot.existing.len()];
    for &(g, n, k) in &plan.on_existing {
        placed[g] += k;
        let node = &snapshot.existing[n];
        if !snapshot.pending[g].placement.allows(node.arch, &node.zone) {
            found.push(format!("group {g} on existing {n} breaks its placement"));
        }
        for _ in 0..k {
            existing_used[n] = existing_used[n].add(&snapshot.pending[g].requests);
        }
    }
    for (n, used) in existing_used.iter().enumerate() {
        if !used.fits_in(&snapshot.existing[n].free) {
            found.push(format!("existing node {n} overfilled: {used:?}"));
        }
    }
    // Per-node rules, counted with what each node runs, and nodes a group avoids.
    let over_rules = |node: &str, sets: &BTreeMap<String, u32>, groups: &[usize]| {
        groups
            .iter()
            .filter_map(|&g| {
                let rule = snapshot.pending[g].per_node.as_ref()?;
                let count = sets.get(&rule.set).copied().unwrap_or(0);
                (count > rule.most).then(|| {
                    format!(
                        "{node} runs {count} of {} (at most {})",
                        rule.set, rule.most
                    )
                })
            })
            .collect::<Vec<_>>()
    };
    for (n, node) in snapshot.existing.iter().enumerate() {
        let mut sets = node.sets.clone();
        let mut groups = Vec::new();
        for &(g, m, k) in &plan.on_existing {
            if m == n {
                groups.push(g);
                if let Some(rule) = &snapshot.pending[g].per_node {
                    *sets.entry(rule.set.clone()).or_default() += k;
                }
                if snapshot.pending[g].avoids.contains(&node.name) {
                    found.push(format!("group {g} on {}, which it avoids", node.name));
                }
            }
        }
        found.extend(over_rules(&node.name, &sets, &groups));
    }
    for node in &plan.new_nodes {
        let mut sets = BTreeMap::new();
        for (&g, &k) in &node.pods {
            if let Some(rule) = &snapshot.pending[g].per_node {
                *sets.entry(rule.set.clone()).or_default() += k;
            }
        }
        let groups: Vec<usize> = node.pods.keys().copied().collect();
        found.extend(over_rules(&node.instance_type, &sets, &groups));
    }
    if plan.new_nodes.len() > snapshot.max_new_nodes {
        found.push(format!(
            "{} new nodes > {}",
            plan.new_nodes.len(),
            snapshot.max_new_nodes
        ));
    }
    for node in &plan.new_nodes {
        let Some(t) = snapshot.types.iter().find(|t| t.name == node.instance_type) else {
            found.push(format!("unknown type {}", node.instance_type));
            continue;
        };
        if !t.zones.contains(&node.zone) {
            found.push(format!("{} is not offered in {}", t.name, node.zone));
        }
        if (t.usd_per_hour - node.usd_per_hour).abs() > 1e-12 {
            found.push(format!("{} priced wrong", t.name));
        }
        let mut used = Resources::default();
        for (&g, &k) in &node.pods {
            placed[g] += k;
            if !snapshot.pending[g].placement.allows(t.arch, &node.zone) {
                found.push(format!(
                    "group {g} on a {} in {} breaks its placement",
                    t.name, node.zone
                ));
            }
            for _ in 0..k {
                used = used.add(&snapshot.pending[g].requests);
            }
        }
        if !used.fits_in(&t.room) {
            found.push(format!("{} overfilled: {used:?} > {:?}", t.name, t.room));
        }
    }
    for u in &plan.unplaceable {
        placed[u.group] += u.count;
        if u.reason.is_empty() {
            found.push(format!("group {} unplaced without a reason", u.group));
        }
    }
    for (g, group) in snapshot.pending.iter().enumerate() {
        if placed[g] != group.count {
            found.push(format!(
                "group {g}: {} of {} pods accounted for",
                placed[g], group.count
            ));
        }
    }
    found
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn plans_are_sound_and_never_beat_the_bound(snapshot in snapshot()) {
        let bound = bound::lower_bound(&snapshot);
        for (name, plan) in [
            ("dialtone", dialtone_sizing::plan(&snapshot)),
            ("karpenter", karpenter::plan(&snapshot)),
            ("first-fit decreasing", ffd::plan(&snapshot)),
        ] {
            let problems = violations(&snapshot, &plan);
            prop_assert!(problems.is_empty(), "{name}: {problems:#?}");
            // The bound covers the pods some type can hold; with every such pod placed,
            // no plan costs less.
            let capped = plan.unplaceable.iter().any(|u| u.reason.contains("maxNodes"));
            if !capped && plan.unplaceable.is_empty() {
                prop_assert!(
                    plan.usd_per_hour() >= bound - 1e-6,
                    "{name} costs {} below the bound {bound}", plan.usd_per_hour()
                );
            }
        }
        prop_assert_eq!(dialtone_sizing::plan(&snapshot), dialtone_sizing::plan(&snapshot));
        // Plans improved by the patterns are sound, and never dearer than the plan.
        let ours = dialtone_sizing::plan(&snapshot);
        let (improved, _) = improve(&snapshot, ours.clone(), Instant::now() + Duration::from_secs(10));
        let problems = violations(&snapshot, &improved);
        prop_assert!(problems.is_empty(), "improved: {problems:#?}");
        prop_assert!(improved.usd_per_hour() <= ours.usd_per_hour() + 1e-9);
        // The pattern bound holds too, finished or stopped early, for every plan that
        // places every pod.
        for deadline in [Duration::from_secs(10), Duration::ZERO] {
            let Some(patterns) = pattern_bound(&snapshot, &ours, Instant::now() + deadline) else {
                continue;
            };
            for (name, plan) in [
                ("dialtone", &ours),
                ("improved", &improved),
                ("karpenter", &karpenter::plan(&snapshot)),
            ] {
                if plan.unplaceable.is_empty() {
                    prop_assert!(
                        plan.usd_per_hour() >= patterns.usd_per_hour - 1e-6,
                        "{name} costs {} below the pattern bound {patterns:?}", plan.usd_per_hour()
                    );
                }
            }
        }
    }
}

#[test]
fn a_pod_no_type_can_hold_is_reported_and_the_rest_placed() {
    let types = catalogue_types(&(0..30).collect::<Vec<_>>());
    let snapshot = Snapshot {
        pending: vec![
            PodGroup {
                name: "huge".into(),
                requests: Resources {
                    millicores: 500_000,
                    memory_mib: 1024,
                    pods: 1,
                },
                placement: Placement::default(),
                count: 2,
                per_node: None,
                avoids: Default::default(),
            },
            PodGroup {
                name: "web".into(),
                requests: Resources {
                    millicores: 250,
                    memory_mib: 256,
                    pods: 1,
                },
                placement: Placement::default(),
                count: 10,
                per_node: None,
                avoids: Default::default(),
            },
        ],
        existing: Vec::new(),
        types,
        zones: ZONES.iter().map(|z| z.to_string()).collect(),
        spread_zones: false,
        max_new_nodes: 100,
    };
    let plan = dialtone_sizing::plan(&snapshot);
    assert_eq!(plan.unplaceable.len(), 1);
    assert_eq!(
        (plan.unplaceable[0].group, plan.unplaceable[0].count),
        (0, 2)
    );
    assert!(
        plan.unplaceable[0].reason.contains("500000m CPU"),
        "{}",
        plan.unplaceable[0].reason
    );
    let placed: u32 = plan.new_nodes.iter().flat_map(|n| n.pods.values()).sum();
    assert_eq!(placed, 10);
}

#[test]
fn pods_fill_existing_room_before_any_node_is_added() {
    let snapshot = Snapshot {
        pending: vec![PodGroup {
            name: "web".into(),
            requests: Resources {
                millicores: 500,
                memory_mib: 512,
                pods: 1,
            },
            placement: Placement::default(),
            count: 4,
            per_node: None,
            avoids: Default::default(),
        }],
        existing: vec![
            ExistingNode {
                name: "full".into(),
                instance_type: "m7i.large".into(),
                arch: Arch::X86_64,
                zone: ZONES[0].into(),
                free: Resources {
                    millicores: 100,
                    memory_mib: 4_096,
                    pods: 10,
                },
                sets: Default::default(),
            },
            ExistingNode {
                name: "roomy".into(),
                instance_type: "m7i.large".into(),
                arch: Arch::X86_64,
                zone: ZONES[0].into(),
                free: Resources {
                    millicores: 2_000,
                    memory_mib: 4_096,
                    pods: 10,
                },
                sets: Default::default(),
            },
        ],
        types: catalogue_types(&(0..30).collect::<Vec<_>>()),
        zones: ZONES.iter().map(|z| z.to_string()).collect(),
        spread_zones: false,
        max_new_nodes: 10,
    };
    let plan = dialtone_sizing::plan(&snapshot);
    assert!(plan.new_nodes.is_empty(), "{plan:?}");
    assert_eq!(
        plan.on_existing,
        vec![(0, 1, 4)],
        "nothing on the full node"
    );
    assert_eq!(bound::lower_bound(&snapshot), 0.0);
}

#[test]
fn the_baseline_packs_pods_together_as_karpenter_does() {
    // Ten 500m pods on types of 2,000m: Karpenter opens a node, keeps adding pods while a
    // type can still hold them all, and launches the cheapest such type: three nodes.
    let snapshot = Snapshot {
        pending: vec![PodGroup {
            name: "web".into(),
            requests: Resources {
                millicores: 500,
                memory_mib: 512,
                pods: 1,
            },
            placement: Placement::default(),
            count: 10,
            per_node: None,
            avoids: Default::default(),
        }],
        existing: Vec::new(),
        types: vec![NodeType {
            name: "m.large".into(),
            family: "m".into(),
            arch: Arch::X86_64,
            room: Resources {
                millicores: 2_000,
                memory_mib: 8_192,
                pods: 110,
            },
            usd_per_hour: 0.1,
            zones: vec![ZONES[0].into()],
        }],
        zones: ZONES.iter().map(|z| z.to_string()).collect(),
        spread_zones: false,
        max_new_nodes: 10,
    };
    let plan = karpenter::plan(&snapshot);
    let per_node: Vec<u32> = plan.new_nodes.iter().map(|n| n.pods[&0]).collect();
    assert_eq!(per_node, [4, 4, 2]);
    assert_eq!(plan.summary(), "3 × m.large");
}

#[test]
fn a_summary_counts_new_nodes_by_type() {
    let node = |instance_type: &str| NewNode {
        instance_type: instance_type.into(),
        zone: ZONES[0].into(),
        usd_per_hour: 0.1,
        pods: Default::default(),
    };
    let plan = Plan {
        new_nodes: vec![node("t3.small"), node("m7g.large"), node("t3.small")],
        ..Plan::default()
    };
    assert_eq!(plan.summary(), "1 × m7g.large, 2 × t3.small");
    assert_eq!(Plan::default().summary(), "no new nodes");
}

#[test]
fn resources_add_and_multiply_each_resource() {
    let pod = Resources {
        millicores: 250,
        memory_mib: 512,
        pods: 1,
    };
    let two = Resources {
        millicores: 500,
        memory_mib: 1_024,
        pods: 2,
    };
    assert_eq!(pod.add(&pod), two);
    assert_eq!(pod.times(2), two);
    assert_eq!(two.times_in(&pod.times(7)), 3);
}

/// Every way to choose up to `remaining[g]` pods of each group, with at least one of group
/// `first`.
fn choices(remaining: &[u32], first: usize) -> Vec<Vec<u32>> {
    let mut all = vec![Vec::new()];
    for (g, &most) in remaining.iter().enumerate() {
        let least = u32::from(g == first);
        all = all
            .into_iter()
            .flat_map(|prefix: Vec<u32>| {
                (least..=most).map(move |k| {
                    let mut next = prefix.clone();
                    next.push(k);
                    next
                })
            })
            .collect();
    }
    all
}

/// The cheapest placement of every pending pod on new nodes, by exhaustive search: each
/// node opened holds at least one pod of the first group still waiting (that pod must go
/// somewhere), so every placement is reached.
fn exact_optimum(
    snapshot: &Snapshot,
    remaining: &mut [u32],
    nodes_left: usize,
    known: &mut std::collections::HashMap<(Vec<u32>, usize), f64>,
) -> f64 {
    let Some(first) = remaining.iter().position(|&k| k > 0) else {
        return 0.0;
    };
    if nodes_left == 0 {
        return f64::INFINITY;
    }
    if let Some(&best) = known.get(&(remaining.to_vec(), nodes_left)) {
        return best;
    }
    let mut best = f64::INFINITY;
    for counts in choices(remaining, first) {
        let used = counts
            .iter()
            .enumerate()
            .fold(Resources::default(), |sum, (g, &k)| {
                sum.add(&snapshot.pending[g].requests.times(k))
            });
        // The cheapest type that holds them (zones and architectures play no part here).
        let Some(price) = snapshot
            .types
            .iter()
            .filter(|t| used.fits_in(&t.room))
            .map(|t| t.usd_per_hour)
            .min_by(f64::total_cmp)
        else {
            continue;
        };
        for (g, &k) in counts.iter().enumerate() {
            remaining[g] -= k;
        }
        best = best.min(price + exact_optimum(snapshot, remaining, nodes_left - 1, known));
        for (g, &k) in counts.iter().enumerate() {
            remaining[g] += k;
        }
    }
    known.insert((remaining.to_vec(), nodes_left), best);
    best
}

/// Small instances: two or three shapes of a few pods, three types, one zone, no placement
/// constraints, sometimes a cap on new nodes.
fn small_snapshot() -> impl Strategy<Value = Snapshot> {
    let group = (1u64..8, 1u64..8, 1u32..4);
    let node = (2u64..12, 2u64..12, 1u32..5, 1u32..20);
    (
        prop::collection::vec(group, 1..4),
        prop::collection::vec(node, 1..4),
        1usize..8,
    )
        .prop_map(|(groups, nodes, max_new_nodes)| Snapshot {
            pending: groups
                .into_iter()
                .enumerate()
                .map(|(i, (cpu, memory, count))| PodGroup {
                    name: format!("g{i}"),
                    requests: Resources {
                        millicores: cpu * 250,
                        memory_mib: memory * 256,
                        pods: 1,
                    },
                    placement: Placement::default(),
                    count,
                    per_node: None,
                    avoids: Default::default(),
                })
                .collect(),
            existing: Vec::new(),
            types: nodes
                .into_iter()
                .enumerate()
                .map(|(i, (cpu, memory, pods, cents))| NodeType {
                    name: format!("t{i}"),
                    family: "t".into(),
                    arch: Arch::X86_64,
                    room: Resources {
                        millicores: cpu * 250,
                        memory_mib: memory * 256,
                        pods,
                    },
                    usd_per_hour: cents as f64 / 100.0,
                    zones: vec![ZONES[0].to_string()],
                })
                .collect(),
            zones: vec![ZONES[0].to_string()],
            spread_zones: false,
            max_new_nodes,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Both bounds are below the optimum exhaustive search finds, and Dialtone's plan is
    /// never below it.
    #[test]
    fn the_bounds_are_below_the_exact_optimum(snapshot in small_snapshot()) {
        let mut remaining: Vec<u32> = snapshot.pending.iter().map(|g| g.count).collect();
        let optimum =
            exact_optimum(&snapshot, &mut remaining, snapshot.max_new_nodes, &mut Default::default());
        prop_assume!(optimum.is_finite());
        let resources = bound::lower_bound(&snapshot);
        prop_assert!(resources <= optimum + 1e-9, "resource bound {resources} above {optimum}");
        let (plan, patterns) =
            improve(&snapshot, dialtone_sizing::plan(&snapshot), Instant::now() + Duration::from_secs(5));
        if let Some(patterns) = patterns {
            prop_assert!(
                patterns.usd_per_hour <= optimum + 1e-9,
                "pattern bound {patterns:?} above {optimum}"
            );
        }
        if plan.unplaceable.is_empty() {
            prop_assert!(plan.usd_per_hour() >= optimum - 1e-9);
        }
    }
}
