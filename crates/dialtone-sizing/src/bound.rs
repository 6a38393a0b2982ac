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
//!
//! Pods are not divisible, so the program also takes size thresholds: for a CPU (or memory)
//! request `s` that some pods make, the pods requesting at least `s` can only run on nodes
//! with at least `s` of room, and a node with room `R` holds at most `⌊R / s⌋` of them. So
//! `Σ_{room_t ≥ s} room_t · y_t ≥ (their total request)` and `Σ_t ⌊room_t / s⌋ · y_t ≥ (their
//! count)` hold for every placement too. Without them, a cheap node too small for any pod
//! would count as capacity.

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

/// One inequality of the program.
enum Row {
    /// Resource `r` of the pods confined to what `Placement` allows.
    Resource(Placement, usize),
    /// Resource `r` of the pods requesting at least the threshold of it.
    Large(f64, usize),
    /// How many pods request at least the threshold of resource `r`.
    Count(f64, usize),
}

impl Row {
    /// What one pod of `requests` and `placement` contributes to the row's demand.
    fn pod(&self, requests: &Resources, placement: &Placement) -> f64 {
        match self {
            Row::Resource(p, r) if narrower(placement, p) => resource(requests, *r),
            Row::Large(s, r) if resource(requests, *r) >= *s => resource(requests, *r),
            Row::Count(s, r) if resource(requests, *r) >= *s => 1.0,
            _ => 0.0,
        }
    }

    /// What a node contributes to the row, given its room and whether its arch and zone are
    /// allowed by the row's placement.
    fn node(&self, room: &Resources, allowed: impl Fn(&Placement) -> bool) -> f64 {
        match self {
            Row::Resource(p, r) if allowed(p) => resource(room, *r),
            Row::Large(s, r) if resource(room, *r) >= *s => resource(room, *r),
            Row::Count(s, r) => (resource(room, *r) / s).floor(),
            _ => 0.0,
        }
    }
}

/// New nodes by type, and by zone when rows name zones.
type Column<'a> = (usize, Option<&'a str>);

struct Program<'a> {
    rows: Vec<Row>,
    demand: Vec<f64>,
    columns: Vec<Column<'a>>,
    matrix: Vec<Vec<f64>>,
}

/// The covering program for `groups` (group index, count) on new nodes of `types`, less
/// the room of `existing` nodes.
fn program<'a>(
    snapshot: &'a Snapshot,
    groups: &[(usize, u32)],
    types: &[usize],
    use_existing: bool,
) -> Program<'a> {
    let pending = &snapshot.pending;
    let mut placements: Vec<Placement> = vec![Placement::default()];
    for &(g, _) in groups {
        if !placements.contains(&pending[g].placement) {
            placements.push(pending[g].placement.clone());
        }
    }
    let zoned = placements.iter().any(|p| p.zone.is_some());
    let mut rows: Vec<Row> = placements
        .iter()
        .flat_map(|p| (0..3).map(move |r| Row::Resource(p.clone(), r)))
        .collect();
    for (threshold, r) in thresholds(snapshot, groups) {
        rows.push(Row::Large(threshold, r));
        rows.push(Row::Count(threshold, r));
    }
    let mut columns: Vec<Column> = Vec::new();
    for &t in types {
        if zoned {
            columns.extend(
                snapshot.types[t]
                    .zones
                    .iter()
                    .map(|z| (t, Some(z.as_str()))),
            );
        } else {
            columns.push((t, None));
        }
    }
    let demand: Vec<f64> = rows
        .iter()
        .map(|row| {
            let wanted: f64 = groups
                .iter()
                .map(|&(g, count)| {
                    row.pod(&pending[g].requests, &pending[g].placement) * count as f64
                })
                .sum();
            let free: f64 = if use_existing {
                snapshot
                    .existing
                    .iter()
                    .map(|n| row.node(&n.free, |p| p.allows(n.arch, &n.zone)))
                    .sum()
            } else {
                0.0
            };
            (wanted - free).max(0.0)
        })
        .collect();
    let matrix = columns
        .iter()
        .map(|&(t, zone)| {
            let node_type = &snapshot.types[t];
            rows.iter()
                .map(|row| {
                    row.node(&node_type.room, |p| match zone {
                        Some(z) => p.allows(node_type.arch, z),
                        None => node_type.zones.iter().any(|z| p.allows(node_type.arch, z)),
                    })
                })
                .collect()
        })
        .collect();
    Program {
        rows,
        demand,
        columns,
        matrix,
    }
}

impl Program<'_> {
    fn solve(&self, snapshot: &Snapshot) -> Outcome {
        let costs: Vec<f64> = self
            .columns
            .iter()
            .map(|&(t, _)| snapshot.types[t].usd_per_hour)
            .collect();
        lp::minimize(&costs, &self.matrix, &self.demand)
    }
}

/// The bound, in dollars per hour.
pub fn lower_bound(snapshot: &Snapshot) -> f64 {
    let holdable: Vec<(usize, u32)> = (0..snapshot.pending.len())
        .filter(|&g| {
            let group = &snapshot.pending[g];
            group.count > 0
                && snapshot.types.iter().any(|t| {
                    group.requests.fits_in(&t.room)
                        && t.zones.iter().any(|z| group.placement.allows(t.arch, z))
                })
        })
        .map(|g| (g, snapshot.pending[g].count))
        .collect();
    let types: Vec<usize> = (0..snapshot.types.len()).collect();
    match program(snapshot, &holdable, &types, true).solve(snapshot) {
        Outcome::Optimal { value, .. } => value.max(0.0),
        // Cannot happen for holdable pods; a bound of zero is still a bound.
        Outcome::Infeasible => 0.0,
    }
}

/// At most this many thresholds per resource keep the program small; any subset of them
/// gives a valid bound.
const THRESHOLDS_PER_RESOURCE: usize = 12;

/// The CPU and memory requests the pods make, spread over their range: (threshold, resource).
fn thresholds(snapshot: &Snapshot, groups: &[(usize, u32)]) -> Vec<(f64, usize)> {
    let mut chosen = Vec::new();
    for r in 0..2 {
        let mut sizes: Vec<f64> = groups
            .iter()
            .map(|&(g, _)| resource(&snapshot.pending[g].requests, r))
            .filter(|&s| s > 0.0)
            .collect();
        sizes.sort_by(f64::total_cmp);
        sizes.dedup();
        let step = sizes.len().div_ceil(THRESHOLDS_PER_RESOURCE).max(1);
        chosen.extend(sizes.iter().rev().step_by(step).map(|&s| (s, r)));
    }
    chosen
}

/// What one pod of each group is worth at the optimum of the class's own program over the
/// `candidates` types (its dual prices applied to the pod's rows): the price at which new
/// nodes can supply it. Groups outside the class are worth nothing.
pub fn pod_values(snapshot: &Snapshot, class: &Class, candidates: &[usize]) -> Vec<f64> {
    let program = program(snapshot, &class.groups, candidates, false);
    let Outcome::Optimal { duals, .. } = program.solve(snapshot) else {
        return vec![0.0; snapshot.pending.len()];
    };
    let mut values = vec![0.0; snapshot.pending.len()];
    for &(g, _) in &class.groups {
        let group = &snapshot.pending[g];
        values[g] = program
            .rows
            .iter()
            .zip(&duals)
            .map(|(row, dual)| dual * row.pod(&group.requests, &group.placement))
            .sum();
    }
    values
}
