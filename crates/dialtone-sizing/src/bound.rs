//! A lower bound on the hourly cost of the nodes any placement of the pending pods must add.
//!
//! Proof sketch. Take any placement and let `y_t,z` count the new nodes of type `t` in zone
//! `z`. For every placement constraint `P` that appears among the pods (and for no constraint
//! at all), the pods that may only run on nodes allowed by `P` must fit, resource by
//! resource (CPU, memory, pod slots), into the room of the existing nodes allowed by `P`
//! plus the room of the new ones: `Σ room_t,r · y_t,z ≥ demand_P,r − free_P,r` over the
//! `(t, z)` that `P` allows. Every placement satisfies these inequalities with integer
//! `y ≥ 0`, so the minimum of `Σ price_t · y_t,z` over real `y ≥ 0` (a linear program) is
//! at most the cost of every placement. Pods no type can hold are left out, which only
//! lowers the bound.

use crate::lp::{self, Outcome};
use crate::{Placement, Resources, Snapshot};

/// Pods of one placement: (group index, count).
pub struct Class {
    pub placement: Placement,
    pub groups: Vec<(usize, u32)>,
}

fn resource(r: &Resources, i: usize) -> f64 {
    match i {
        0 => r.millicores as f64,
        1 => r.memory_mib as f64,
        _ => r.pods as f64,
    }
}

/// Whether every node `inner` allows is allowed by `outer`.
fn narrower(inner: &Placement, outer: &Placement) -> bool {
    (outer.arch.is_none() || inner.arch == outer.arch)
        && (outer.zone.is_none() || inner.zone == outer.zone)
}

/// The bound, in dollars per hour.
pub fn lower_bound(snapshot: &Snapshot) -> f64 {
    let holdable: Vec<usize> = (0..snapshot.pending.len())
        .filter(|&g| {
            let group = &snapshot.pending[g];
            group.count > 0
                && snapshot.types.iter().any(|t| {
                    group.requests.fits_in(&t.room)
                        && t.zones.iter().any(|z| group.placement.allows(t.arch, z))
                })
        })
        .collect();
    let mut constraints: Vec<Placement> = vec![Placement::default()];
    for &g in &holdable {
        let p = &snapshot.pending[g].placement;
        if !constraints.contains(p) {
            constraints.push(p.clone());
        }
    }
    let zoned = constraints.iter().any(|p| p.zone.is_some());
    // Columns: one per type, or per type and zone when some pods name a zone.
    let mut columns: Vec<(usize, Option<&str>)> = Vec::new();
    for (t, node_type) in snapshot.types.iter().enumerate() {
        if zoned {
            columns.extend(node_type.zones.iter().map(|z| (t, Some(z.as_str()))));
        } else {
            columns.push((t, None));
        }
    }
    let allows = |p: &Placement, t: usize, zone: Option<&str>| {
        let node_type = &snapshot.types[t];
        match zone {
            Some(z) => p.allows(node_type.arch, z),
            None => node_type.zones.iter().any(|z| p.allows(node_type.arch, z)),
        }
    };
    let mut demand = Vec::new();
    let mut rows: Vec<(usize, usize)> = Vec::new();
    for (c, p) in constraints.iter().enumerate() {
        for r in 0..3 {
            let wanted: f64 = holdable
                .iter()
                .filter(|&&g| narrower(&snapshot.pending[g].placement, p))
                .map(|&g| {
                    resource(&snapshot.pending[g].requests, r) * snapshot.pending[g].count as f64
                })
                .sum();
            let free: f64 = snapshot
                .existing
                .iter()
                .filter(|n| p.allows(n.arch, &n.zone))
                .map(|n| resource(&n.free, r))
                .sum();
            if wanted - free > 0.0 {
                demand.push(wanted - free);
                rows.push((c, r));
            }
        }
    }
    let matrix: Vec<Vec<f64>> = columns
        .iter()
        .map(|&(t, zone)| {
            rows.iter()
                .map(|&(c, r)| {
                    if allows(&constraints[c], t, zone) {
                        resource(&snapshot.types[t].room, r)
                    } else {
                        0.0
                    }
                })
                .collect()
        })
        .collect();
    let costs: Vec<f64> = columns
        .iter()
        .map(|&(t, _)| snapshot.types[t].usd_per_hour)
        .collect();
    match lp::minimize(&costs, &matrix, &demand) {
        Outcome::Optimal { value, .. } => value,
        // Cannot happen for holdable pods; a bound of zero is still a bound.
        Outcome::Infeasible => 0.0,
    }
}

/// Dollars per millicore, per MiB and per pod slot at the optimum of the class's own bound,
/// over the `candidates` types: what packing the class's pods is worth, resource by resource.
pub fn dual_prices(snapshot: &Snapshot, class: &Class, candidates: &[usize]) -> [f64; 3] {
    let demand: Vec<f64> = (0..3)
        .map(|r| {
            class
                .groups
                .iter()
                .map(|&(g, count)| resource(&snapshot.pending[g].requests, r) * count as f64)
                .sum::<f64>()
        })
        .collect();
    let columns: Vec<Vec<f64>> = candidates
        .iter()
        .map(|&t| {
            (0..3)
                .map(|r| resource(&snapshot.types[t].room, r))
                .collect()
        })
        .collect();
    let costs: Vec<f64> = candidates
        .iter()
        .map(|&t| snapshot.types[t].usd_per_hour)
        .collect();
    match lp::minimize(&costs, &columns, &demand) {
        Outcome::Optimal { duals, .. } => [duals[0], duals[1], duals[2]],
        Outcome::Infeasible => [0.0; 3],
    }
}
