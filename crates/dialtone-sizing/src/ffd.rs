//! A textbook baseline: first-fit decreasing onto one instance type per placement class,
//! the type with the lowest price per unit of the class's dominant resource.
//!
//! For each placement class (pods alike in arch and zone), the dominant resource is the one
//! its pods ask most of relative to what an average node of the allowed types offers (CPU,
//! memory or pod slots). The class's type is the one that holds its largest pod at the
//! lowest price per unit of that resource. Pods, largest first (by their dominant share),
//! go to existing nodes first, then to the first node opened for the class that has room,
//! and open a node of the class's type when none does; a pod too big for that type opens
//! the cheapest type that holds it. No node takes more pods of a set than its per-node rule
//! allows.

use std::collections::BTreeMap;

use crate::{ExistingNode, NewNode, Placement, Plan, Resources, Snapshot, Unplaceable};

fn resource(r: &Resources, d: usize) -> f64 {
    match d {
        0 => r.millicores as f64,
        1 => r.memory_mib as f64,
        _ => r.pods as f64,
    }
}

struct Opened {
    type_index: usize,
    zone: String,
    free: Resources,
    pods: BTreeMap<usize, u32>,
    /// Pods of each per-node set.
    sets: BTreeMap<String, u32>,
}

/// Reports the pods of group `g` still waiting as unplaceable, for `reason`.
fn give_up(plan: &mut Plan, remaining: &mut [u32], g: usize, reason: &str) {
    plan.unplaceable.push(Unplaceable {
        group: g,
        count: remaining[g],
        reason: reason.into(),
    });
    remaining[g] = 0;
}

/// The first-fit-decreasing plan of `snapshot`.
pub fn plan(snapshot: &Snapshot) -> Plan {
    let groups = &snapshot.pending;
    let mut plan = Plan::default();
    let mut remaining: Vec<u32> = groups.iter().map(|g| g.count).collect();
    let mut classes: Vec<&Placement> = groups.iter().map(|g| &g.placement).collect();
    classes.sort();
    classes.dedup();

    let mut room: Vec<ExistingNode> = snapshot.existing.clone();
    let mut opened: Vec<Opened> = Vec::new();
    for placement in classes {
        let allowed: Vec<usize> = (0..snapshot.types.len())
            .filter(|&t| {
                let node_type = &snapshot.types[t];
                node_type
                    .zones
                    .iter()
                    .any(|z| placement.allows(node_type.arch, z))
            })
            .collect();
        let members: Vec<usize> = (0..groups.len())
            .filter(|&g| groups[g].placement == *placement && remaining[g] > 0)
            .collect();
        if members.is_empty() {
            continue;
        }
        // The dominant resource: demand over an average allowed node's room.
        let average = |d: usize| {
            allowed
                .iter()
                .map(|&t| resource(&snapshot.types[t].room, d))
                .sum::<f64>()
                / allowed.len().max(1) as f64
        };
        let share = |r: &Resources, d: usize| resource(r, d) / average(d).max(1.0);
        let dominant = (0..3)
            .max_by(|&a, &b| {
                let demand = |d| {
                    members
                        .iter()
                        .map(|&g| share(&groups[g].requests, d) * groups[g].count as f64)
                        .sum::<f64>()
                };
                demand(a).total_cmp(&demand(b))
            })
            .unwrap_or(0);
        let largest =
            members
                .iter()
                .map(|&g| groups[g].requests)
                .fold(Resources::default(), |most, r| Resources {
                    millicores: most.millicores.max(r.millicores),
                    memory_mib: most.memory_mib.max(r.memory_mib),
                    pods: most.pods.max(r.pods),
                });
        let per_unit = |t: usize| {
            let node_type = &snapshot.types[t];
            node_type.usd_per_hour / resource(&node_type.room, dominant).max(1e-9)
        };
        let class_type = allowed
            .iter()
            .copied()
            .filter(|&t| largest.fits_in(&snapshot.types[t].room))
            .min_by(|&a, &b| per_unit(a).total_cmp(&per_unit(b)));
        let mut order = members.clone();
        order.sort_by(|&a, &b| {
            let size = |g: usize| {
                (0..3)
                    .map(|d| share(&groups[g].requests, d))
                    .fold(0.0, f64::max)
            };
            size(b).total_cmp(&size(a)).then(a.cmp(&b))
        });
        let first_opened = opened.len();
        for g in order {
            let requests = groups[g].requests;
            for (n, node) in room.iter_mut().enumerate() {
                let k = remaining[g].min(node.admits(&groups[g]));
                if k > 0 {
                    node.take(&groups[g], k);
                    remaining[g] -= k;
                    plan.on_existing.push((g, n, k));
                }
            }
            for node in opened[first_opened..].iter_mut() {
                let k = (remaining[g] as u64).min(requests.times_in(&node.free)) as u32;
                let k = k.min(groups[g].admitted_beside(&node.sets));
                if k > 0 {
                    node.free = node.free.saturating_sub(&requests.times(k));
                    *node.pods.entry(g).or_default() += k;
                    groups[g].join(&mut node.sets, k);
                    remaining[g] -= k;
                }
            }
            while remaining[g] > 0 {
                if opened.len() >= snapshot.max_new_nodes {
                    give_up(
                        &mut plan,
                        &mut remaining,
                        g,
                        "the cluster's maxNodes is reached",
                    );
                    break;
                }
                let fits = |t: usize| requests.fits_in(&snapshot.types[t].room);
                let Some(t) = class_type.filter(|&t| fits(t)).or_else(|| {
                    allowed
                        .iter()
                        .copied()
                        .filter(|&t| fits(t))
                        .min_by(|&a, &b| {
                            snapshot.types[a]
                                .usd_per_hour
                                .total_cmp(&snapshot.types[b].usd_per_hour)
                        })
                }) else {
                    give_up(&mut plan, &mut remaining, g, "no instance type can hold it");
                    break;
                };
                let node_type = &snapshot.types[t];
                let zone = node_type
                    .zones
                    .iter()
                    .find(|z| placement.allows(node_type.arch, z))
                    .cloned()
                    .unwrap_or_default();
                let k = (remaining[g] as u64).min(requests.times_in(&node_type.room)) as u32;
                let k = k.min(groups[g].admitted_beside(&BTreeMap::new()));
                if k == 0 {
                    give_up(
                        &mut plan,
                        &mut remaining,
                        g,
                        "its per-node rule allows no pod",
                    );
                    break;
                }
                remaining[g] -= k;
                let mut sets = BTreeMap::new();
                groups[g].join(&mut sets, k);
                opened.push(Opened {
                    type_index: t,
                    zone,
                    free: node_type.room.saturating_sub(&requests.times(k)),
                    pods: BTreeMap::from([(g, k)]),
                    sets,
                });
            }
        }
    }
    plan.new_nodes = opened
        .into_iter()
        .map(|node| {
            let node_type = &snapshot.types[node.type_index];
            NewNode {
                instance_type: node_type.name.clone(),
                zone: node.zone,
                usd_per_hour: node_type.usd_per_hour,
                pods: node.pods,
            }
        })
        .collect();
    plan
}
