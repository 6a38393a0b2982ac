//! The baseline: Karpenter's provisioning, re-implemented as its scheduler behaves
//! (`pkg/controllers/provisioning/scheduling`):
//!
//! 1. Pods are sorted by CPU request, then memory request, both descending.
//! 2. Each pod goes to the first node that can take it: existing nodes first, then the
//!    in-flight nodes this pass has opened, in the order they were opened.
//! 3. An in-flight node keeps every instance type that could still hold all of its pods
//!    (and their arch and zone requirements); a pod joins it only if at least one such type
//!    remains, and the set narrows to those types.
//! 4. A pod that fits nowhere (or whose anti-affinity or spread keeps it off every node)
//!    opens a new in-flight node with every allowed type that can hold it.
//! 5. At launch each in-flight node becomes the cheapest type left in its set (EC2 Fleet's
//!    lowest-price allocation over the offered types).
//!
//! Daemonset overhead and the system reserve are already out of every type's room, as
//! Karpenter subtracts them. Karpenter has no cluster-wide zone spread of its own; nodes
//! land in the first zone their type offers unless a pod names one.

use std::collections::BTreeMap;

use crate::{ExistingNode, NewNode, Plan, Resources, Snapshot, Unplaceable};

struct InFlight {
    used: Resources,
    /// The zones every pod on it allows (none: any).
    zones: Vec<String>,
    arch: Option<dialtone_cloud::Arch>,
    /// Indices of the types that can still hold every pod on the node.
    types: Vec<usize>,
    /// The largest room among `types`, per resource: a quick "cannot fit" test.
    most: Resources,
    pods: BTreeMap<usize, u32>,
    /// Pods of each per-node set.
    sets: BTreeMap<String, u32>,
}

fn most_room(snapshot: &Snapshot, types: &[usize]) -> Resources {
    types.iter().fold(Resources::default(), |most, &t| {
        let room = &snapshot.types[t].room;
        Resources {
            millicores: most.millicores.max(room.millicores),
            memory_mib: most.memory_mib.max(room.memory_mib),
            pods: most.pods.max(room.pods),
        }
    })
}

const NO_ROOM: &str = "no instance type or node can hold it";
const CAPPED: &str = "the cluster's maxNodes is reached";

/// `snapshot` as a NodePool with the requirements Karpenter's documentation recommends
/// would see it: instance categories `c`, `m` and `r`, generation above 2
/// (`karpenter.k8s.aws/instance-category`, `…/instance-generation`). Architectures are
/// the pods' own requirements, as in every plan here.
pub fn recommended_node_pool(snapshot: &Snapshot) -> Snapshot {
    let allowed = |family: &str| {
        let category: String = family
            .chars()
            .take_while(char::is_ascii_lowercase)
            .collect();
        let generation: u32 = family[category.len()..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap_or(0);
        ["c", "m", "r"].contains(&category.as_str()) && generation > 2
    };
    Snapshot {
        types: snapshot
            .types
            .iter()
            .filter(|t| allowed(&t.family))
            .cloned()
            .collect(),
        ..snapshot.clone()
    }
}

/// Karpenter's provisioning of `snapshot`, the benchmark's baseline.
pub fn plan(snapshot: &Snapshot) -> Plan {
    let groups = &snapshot.pending;
    let mut order: Vec<usize> = (0..groups.len()).collect();
    order.sort_by_key(|&g| {
        let r = &groups[g].requests;
        std::cmp::Reverse((r.millicores, r.memory_mib))
    });
    let mut plan = Plan::default();
    let mut room: Vec<ExistingNode> = snapshot.existing.clone();
    let mut flights: Vec<InFlight> = Vec::new();
    let mut on_existing: BTreeMap<(usize, usize), u32> = BTreeMap::new();
    let mut unplaceable: BTreeMap<(usize, &str), u32> = BTreeMap::new();
    for &g in &order {
        let group = &groups[g];
        let pod = group.requests;
        let placement = &group.placement;
        'pods: for _ in 0..group.count {
            for (n, node) in room.iter_mut().enumerate() {
                if node.admits(group) > 0 {
                    node.take(group, 1);
                    *on_existing.entry((g, n)).or_default() += 1;
                    continue 'pods;
                }
            }
            for flight in flights.iter_mut() {
                let used = flight.used.add(&pod);
                if !used.fits_in(&flight.most)
                    || group.admitted_beside(&flight.sets) == 0
                    || placement
                        .arch
                        .is_some_and(|a| flight.arch.is_some_and(|b| a != b))
                {
                    continue;
                }
                let zones = match (flight.zones.is_empty(), placement.zones.is_empty()) {
                    (true, _) => placement.zones.clone(),
                    (false, true) => flight.zones.clone(),
                    (false, false) => {
                        let both: Vec<String> = flight
                            .zones
                            .iter()
                            .filter(|z| placement.zones.contains(z))
                            .cloned()
                            .collect();
                        if both.is_empty() {
                            continue;
                        }
                        both
                    }
                };
                let narrowed: Vec<usize> = flight
                    .types
                    .iter()
                    .copied()
                    .filter(|&t| {
                        let node_type = &snapshot.types[t];
                        used.fits_in(&node_type.room)
                            && placement.arch.is_none_or(|a| a == node_type.arch)
                            && (zones.is_empty()
                                || zones.iter().any(|z| node_type.zones.contains(z)))
                    })
                    .collect();
                if narrowed.is_empty() {
                    continue;
                }
                flight.used = used;
                flight.zones = zones;
                flight.arch = flight.arch.or(placement.arch);
                flight.most = most_room(snapshot, &narrowed);
                flight.types = narrowed;
                *flight.pods.entry(g).or_default() += 1;
                group.join(&mut flight.sets, 1);
                continue 'pods;
            }
            if flights.len() >= snapshot.max_new_nodes {
                *unplaceable.entry((g, CAPPED)).or_default() += 1;
                continue;
            }
            let types: Vec<usize> = (0..snapshot.types.len())
                .filter(|&t| {
                    let node_type = &snapshot.types[t];
                    pod.fits_in(&node_type.room)
                        && node_type
                            .zones
                            .iter()
                            .any(|z| placement.allows(node_type.arch, z))
                })
                .collect();
            if types.is_empty() {
                *unplaceable.entry((g, NO_ROOM)).or_default() += 1;
                continue;
            }
            flights.push(InFlight {
                used: pod,
                zones: placement.zones.clone(),
                arch: placement.arch,
                most: most_room(snapshot, &types),
                types,
                pods: BTreeMap::from([(g, 1)]),
                sets: {
                    let mut sets = BTreeMap::new();
                    group.join(&mut sets, 1);
                    sets
                },
            });
        }
    }
    plan.on_existing = on_existing
        .into_iter()
        .map(|((g, n), k)| (g, n, k))
        .collect();
    plan.unplaceable = unplaceable
        .into_iter()
        .map(|((group, reason), count)| Unplaceable {
            group,
            count,
            reason: reason.into(),
        })
        .collect();
    plan.new_nodes = flights
        .into_iter()
        .map(|flight| {
            let t = flight
                .types
                .iter()
                .copied()
                .min_by(|&a, &b| {
                    snapshot.types[a]
                        .usd_per_hour
                        .total_cmp(&snapshot.types[b].usd_per_hour)
                })
                .expect("an in-flight node keeps at least one type");
            let node_type = &snapshot.types[t];
            let zone = node_type
                .zones
                .iter()
                .filter(|z| flight.zones.is_empty() || flight.zones.contains(z))
                .min()
                .cloned()
                .unwrap_or_default();
            NewNode {
                instance_type: node_type.name.clone(),
                zone,
                usd_per_hour: node_type.usd_per_hour,
                pods: flight.pods,
            }
        })
        .collect();
    plan
}
