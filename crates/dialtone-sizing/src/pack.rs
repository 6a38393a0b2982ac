//! Dialtone's scale-up (see the crate's documentation for the method).

use std::collections::BTreeMap;

use crate::bound;
use crate::{ExistingNode, NewNode, NodeType, Placement, Plan, Resources, Snapshot, Unplaceable};

/// Pods one node takes: (group, count).
type Pattern = Vec<(usize, u32)>;

/// A node opened by this plan, while it is being filled.
struct Opened {
    type_index: usize,
    zone: String,
    used: Resources,
    pods: BTreeMap<usize, u32>,
    /// Pods of each per-node set.
    sets: BTreeMap<String, u32>,
}

/// Big pods first: packing them early leaves the small ones to fill the gaps. One vCPU is
/// weighed like 4 GiB, the catalogue's most common ratio.
fn size_key(requests: &Resources) -> u64 {
    requests.millicores * 4 + requests.memory_mib
}

/// Dialtone's scale-up for `snapshot`: the cheapest nodes it finds that hold every pending
/// pod (see the crate documentation for how).
pub fn plan(snapshot: &Snapshot) -> Plan {
    let groups = &snapshot.pending;
    let mut remaining: Vec<u32> = groups.iter().map(|g| g.count).collect();
    let mut plan = Plan::default();
    let mut by_size: Vec<usize> = (0..groups.len()).collect();
    by_size.sort_by_key(|&g| std::cmp::Reverse(size_key(&groups[g].requests)));

    // Existing room is already paid for.
    let mut room: Vec<ExistingNode> = snapshot.existing.clone();
    for (node_index, node) in room.iter_mut().enumerate() {
        for &g in &by_size {
            let group = &groups[g];
            let k = remaining[g].min(node.admits(group));
            if k > 0 {
                node.take(group, k);
                remaining[g] -= k;
                plan.on_existing.push((g, node_index, k));
            }
        }
    }

    // Pods no allowed type can hold are reported, and the rest still placed.
    for (g, group) in groups.iter().enumerate() {
        if remaining[g] > 0
            && !snapshot
                .types
                .iter()
                .any(|t| holds(t, &group.placement, &group.requests))
        {
            plan.unplaceable.push(Unplaceable {
                group: g,
                count: remaining[g],
                reason: unplaceable_reason(snapshot, &group.placement, &group.requests),
            });
            remaining[g] = 0;
        }
    }

    // The most constrained pods first; later classes first fill the room left in nodes
    // opened for earlier ones.
    let mut classes: Vec<Placement> = groups
        .iter()
        .enumerate()
        .filter(|(g, _)| remaining[*g] > 0)
        .map(|(_, g)| g.placement.clone())
        .collect();
    classes.sort_by_key(|p| {
        (
            std::cmp::Reverse(p.arch.is_some() as u8 + !p.zones.is_empty() as u8),
            p.clone(),
        )
    });
    classes.dedup();

    let usable = crate::undominated(&snapshot.types);
    let mut opened: Vec<Opened> = Vec::new();
    let mut zone_load: BTreeMap<String, usize> =
        snapshot.zones.iter().map(|z| (z.clone(), 0)).collect();
    for node in &snapshot.existing {
        *zone_load.entry(node.zone.clone()).or_default() += 1;
    }
    for placement in &classes {
        let members: Vec<usize> = by_size
            .iter()
            .copied()
            .filter(|&g| remaining[g] > 0 && groups[g].placement == *placement)
            .collect();
        for node in opened.iter_mut() {
            let t = &snapshot.types[node.type_index];
            if !placement.allows(t.arch, &node.zone) {
                continue;
            }
            for &g in &members {
                let room = t.room.saturating_sub(&node.used);
                let k = (remaining[g] as u64).min(groups[g].requests.times_in(&room)) as u32;
                let k = k.min(groups[g].admitted_beside(&node.sets));
                if k > 0 {
                    node.used = node.used.add(&groups[g].requests.times(k));
                    *node.pods.entry(g).or_default() += k;
                    groups[g].join(&mut node.sets, k);
                    remaining[g] -= k;
                }
            }
        }
        let budget = snapshot.max_new_nodes.saturating_sub(opened.len());
        let packed = pack_class(
            snapshot,
            placement,
            &members,
            &remaining,
            budget,
            &usable,
            &mut zone_load,
        );
        for node in &packed {
            for (&g, &k) in &node.pods {
                remaining[g] -= k;
            }
        }
        opened.extend(packed);
    }
    for (g, &left) in remaining.iter().enumerate() {
        if left > 0 {
            let rule = groups[g].per_node.as_ref().map_or(String::new(), |rule| {
                format!(
                    " (its anti-affinity or spread lets a node run {} of its pods)",
                    rule.most
                )
            });
            plan.unplaceable.push(Unplaceable {
                group: g,
                count: left,
                reason: format!(
                    "the cluster's maxNodes leaves room for {} more node(s), all planned{rule}",
                    snapshot.max_new_nodes
                ),
            });
        }
    }
    plan.new_nodes = opened
        .into_iter()
        .map(|node| shrink(snapshot, node))
        .collect();
    plan
}

fn holds(t: &NodeType, placement: &Placement, requests: &Resources) -> bool {
    requests.fits_in(&t.room) && t.zones.iter().any(|z| placement.allows(t.arch, z))
}

fn unplaceable_reason(snapshot: &Snapshot, placement: &Placement, requests: &Resources) -> String {
    let allowed: Vec<&NodeType> = snapshot
        .types
        .iter()
        .filter(|t| t.zones.iter().any(|z| placement.allows(t.arch, z)))
        .collect();
    let wanted = format!(
        "{}m CPU and {} MiB",
        requests.millicores, requests.memory_mib
    );
    match allowed
        .iter()
        .max_by_key(|t| (t.room.millicores, t.room.memory_mib))
    {
        None => format!(
            "no allowed instance type matches its nodeSelector ({}{})",
            placement
                .arch
                .map_or(String::new(), |a| format!("arch {} ", a.label())),
            if placement.zones.is_empty() {
                String::new()
            } else {
                format!("zone {}", placement.zones.join(" or "))
            }
        ),
        Some(largest) => format!(
            "requests {wanted}; no allowed instance type has that much room after the system reserve and daemonsets (largest: {} with {}m CPU and {} MiB)",
            largest.name, largest.room.millicores, largest.room.memory_mib
        ),
    }
}

/// Opens nodes for the pods of one placement class, within `budget` nodes.
fn pack_class(
    snapshot: &Snapshot,
    placement: &Placement,
    members: &[usize],
    remaining: &[u32],
    budget: usize,
    usable: &[usize],
    zone_load: &mut BTreeMap<String, usize>,
) -> Vec<Opened> {
    let candidates: Vec<usize> = usable
        .iter()
        .copied()
        .filter(|&t| {
            let t = &snapshot.types[t];
            t.zones.iter().any(|z| placement.allows(t.arch, z))
        })
        .collect();
    if candidates.is_empty() || members.iter().all(|&g| remaining[g] == 0) {
        return Vec::new();
    }
    // A pod's value: its price in the class's own bound, plus a sliver of its size so that
    // pods the optimum does not price still count.
    let class: Vec<(usize, u32)> = members.iter().map(|&g| (g, remaining[g])).collect();
    let duals = bound::pod_values(snapshot, &class, &candidates);
    let value: Vec<f64> = snapshot
        .pending
        .iter()
        .zip(&duals)
        .map(|(g, dual)| dual + 1e-9 * size_key(&g.requests) as f64)
        .collect();
    // With few nodes to spare, a node's own cost weighs more, which favours larger types.
    let median_price = {
        let mut prices: Vec<f64> = candidates
            .iter()
            .map(|&t| snapshot.types[t].usd_per_hour)
            .collect();
        prices.sort_by(f64::total_cmp);
        prices[prices.len() / 2]
    };
    let mut best = Vec::new();
    for penalty in [0.0, 1.0, 4.0, 16.0, 64.0, 256.0] {
        let mut load = zone_load.clone();
        let nodes = greedy(
            snapshot,
            placement,
            members,
            remaining,
            &candidates,
            &value,
            penalty * median_price,
            budget,
            &mut load,
        );
        let placed: u32 = nodes.iter().flat_map(|n| n.pods.values()).sum();
        let wanted: u32 = members.iter().map(|&g| remaining[g]).sum();
        let done = placed == wanted;
        if done || best.is_empty() {
            *zone_load = load;
            best = nodes;
        }
        if done {
            break;
        }
    }
    best
}

#[allow(clippy::too_many_arguments)]
fn greedy(
    snapshot: &Snapshot,
    placement: &Placement,
    members: &[usize],
    remaining: &[u32],
    candidates: &[usize],
    value: &[f64],
    node_penalty: f64,
    budget: usize,
    zone_load: &mut BTreeMap<String, usize>,
) -> Vec<Opened> {
    let groups = &snapshot.pending;
    let mut left: Vec<u32> = remaining.to_vec();
    let mut nodes = Vec::new();
    while nodes.len() < budget && members.iter().any(|&g| left[g] > 0) {
        // The type whose greedy fill buys the most value per dollar: (efficiency, type,
        // pods by group).
        let mut choice: Option<(f64, usize, Pattern)> = None;
        for &t in candidates {
            let node_type = &snapshot.types[t];
            let mut room = node_type.room;
            let mut sets = BTreeMap::new();
            let mut pattern = Vec::new();
            let mut worth = 0.0;
            for &g in members {
                let k = (left[g] as u64).min(groups[g].requests.times_in(&room)) as u32;
                let k = k.min(groups[g].admitted_beside(&sets));
                if k > 0 {
                    room = room.saturating_sub(&groups[g].requests.times(k));
                    groups[g].join(&mut sets, k);
                    pattern.push((g, k));
                    worth += value[g] * k as f64;
                }
            }
            if pattern.is_empty() {
                continue;
            }
            let efficiency = worth / (node_type.usd_per_hour + node_penalty);
            if choice
                .as_ref()
                .is_none_or(|(best, _, _)| efficiency > *best)
            {
                choice = Some((efficiency, t, pattern));
            }
        }
        let Some((_, t, pattern)) = choice else { break };
        let repeats = pattern
            .iter()
            .map(|&(g, k)| left[g] / k)
            .min()
            .unwrap_or(1)
            .max(1) as usize;
        for _ in 0..repeats.min(budget - nodes.len()) {
            let zone = pick_zone(snapshot, &snapshot.types[t], placement, zone_load);
            *zone_load.entry(zone.clone()).or_default() += 1;
            let mut node = Opened {
                type_index: t,
                zone,
                used: Resources::default(),
                pods: BTreeMap::new(),
                sets: BTreeMap::new(),
            };
            for &(g, k) in &pattern {
                let k = k.min(left[g]);
                if k > 0 {
                    left[g] -= k;
                    node.used = node.used.add(&groups[g].requests.times(k));
                    node.pods.insert(g, k);
                    groups[g].join(&mut node.sets, k);
                }
            }
            nodes.push(node);
        }
    }
    nodes
}

/// The zone for a new node: the pods' own, or, spreading, the least loaded that offers the
/// type; otherwise the first of the cluster's zones that offers it.
fn pick_zone(
    snapshot: &Snapshot,
    t: &NodeType,
    placement: &Placement,
    zone_load: &BTreeMap<String, usize>,
) -> String {
    let offered = t.zones.iter().filter(|z| placement.allows(t.arch, z));
    let zone = if snapshot.spread_zones {
        offered.min_by_key(|z| (zone_load.get(*z).copied().unwrap_or(0), (*z).clone()))
    } else {
        offered.min()
    };
    zone.cloned().unwrap_or_default()
}

/// The node as the cheapest type in its zone that holds its pods and suits their placements.
fn shrink(snapshot: &Snapshot, node: Opened) -> NewNode {
    let placements: Vec<&Placement> = node
        .pods
        .keys()
        .map(|&g| &snapshot.pending[g].placement)
        .collect();
    let cheapest = snapshot
        .types
        .iter()
        .filter(|t| {
            node.used.fits_in(&t.room)
                && t.zones.contains(&node.zone)
                && placements.iter().all(|p| p.allows(t.arch, &node.zone))
        })
        .min_by(|a, b| a.usd_per_hour.total_cmp(&b.usd_per_hour))
        .unwrap_or(&snapshot.types[node.type_index]);
    NewNode {
        instance_type: cheapest.name.clone(),
        zone: node.zone,
        usd_per_hour: cheapest.usd_per_hour,
        pods: node.pods,
    }
}
