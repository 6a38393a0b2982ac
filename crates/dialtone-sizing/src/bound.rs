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
//!
//! The value reported is certified by weak duality from the solver's dual prices (see
//! `Program::certified`), so floating-point trouble in the simplex can only weaken the
//! bound, never make it wrong.

use crate::lp::{self, Outcome};
use crate::{Placement, Resources, Snapshot};

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
        && (outer.zones.is_empty()
            || (!inner.zones.is_empty() && inner.zones.iter().all(|z| outer.zones.contains(z))))
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
    let zoned = placements.iter().any(|p| !p.zones.is_empty());
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
    fn costs(&self, snapshot: &Snapshot) -> Vec<f64> {
        self.columns
            .iter()
            .map(|&(t, _)| snapshot.types[t].usd_per_hour)
            .collect()
    }

    fn solve(&self, snapshot: &Snapshot) -> Outcome {
        lp::minimize(&self.costs(snapshot), &self.matrix, &self.demand)
    }

    /// A bound certified by weak duality, whatever the solver's numerics: any dual prices
    /// `u ≥ 0`, scaled down until no column's rows are worth more than its cost, bound the
    /// optimum from below by `demand · u`.
    fn certified(&self, costs: &[f64], duals: &[f64]) -> f64 {
        let u: Vec<f64> = duals.iter().map(|d| d.max(0.0)).collect();
        let mut scale: f64 = 1.0;
        for (column, &cost) in self.matrix.iter().zip(costs) {
            let worth: f64 = column.iter().zip(&u).map(|(a, u)| a * u).sum();
            if worth > 0.0 {
                if cost <= 0.0 {
                    return 0.0;
                }
                scale = scale.max(worth / cost);
            }
        }
        let value: f64 = self.demand.iter().zip(&u).map(|(d, u)| d * u).sum();
        value / scale
    }

    /// The Lagrangian bound for at most `max_nodes` new nodes at the price `lambda` per
    /// node: for any `λ ≥ 0`, the program with every node costing `λ` more, less `λ` times
    /// the nodes allowed, is below the optimum with the cap (a placement within the cap
    /// pays at most `λ · max_nodes` extra). Also the fractional nodes the program uses.
    fn capped(&self, costs: &[f64], max_nodes: f64, lambda: f64) -> Option<(f64, f64)> {
        let shifted: Vec<f64> = costs.iter().map(|c| c + lambda).collect();
        match lp::minimize(&shifted, &self.matrix, &self.demand) {
            Outcome::Optimal { duals, x, .. } => Some((
                self.certified(&shifted, &duals) - lambda * max_nodes,
                x.iter().sum(),
            )),
            Outcome::Infeasible | Outcome::Stopped => None,
        }
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
    // A dominated type never lowers the optimum: its dominator covers every row as well.
    let types = crate::undominated(&snapshot.types);
    let program = program(snapshot, &holdable, &types, true);
    let costs = program.costs(snapshot);
    let max_nodes = snapshot.max_new_nodes as f64;
    // Cannot be infeasible for holdable pods; a bound of zero is still a bound.
    let Some((uncapped, nodes)) = program.capped(&costs, max_nodes, 0.0) else {
        return 0.0;
    };
    if nodes <= max_nodes + 1e-9 {
        return uncapped.max(0.0);
    }
    // The cap binds. The Lagrangian is concave in λ with slope (nodes used − cap): double λ
    // until the program keeps within the cap, then bisect on the slope's sign. Every λ
    // tried gives a valid bound; the best is kept.
    let mut best = uncapped;
    let price = costs.iter().copied().fold(0.0, f64::max).max(1e-6);
    let (mut low, mut high) = (0.0, price);
    let mut within = false;
    for _ in 0..LAMBDA_DOUBLINGS {
        let Some((bound, nodes)) = program.capped(&costs, max_nodes, high) else {
            break;
        };
        best = best.max(bound);
        if nodes <= max_nodes + 1e-9 {
            within = true;
            break;
        }
        (low, high) = (high, high * 2.0);
    }
    // Even fractionally the pods need more nodes than the cap allows: maxNodes leaves some
    // pending whatever the plan, and the bound stays the one for placing them all.
    if !within {
        return uncapped.max(0.0);
    }
    for _ in 0..LAMBDA_BISECTIONS {
        let middle = (low + high) / 2.0;
        let Some((bound, nodes)) = program.capped(&costs, max_nodes, middle) else {
            break;
        };
        best = best.max(bound);
        if nodes > max_nodes + 1e-9 {
            low = middle;
        } else {
            high = middle;
        }
    }
    best.max(0.0)
}

/// How far the search for the price of a node under a binding maxNodes goes: λ up to
/// 2²⁰ times the dearest type, then 24 halvings of the interval found.
const LAMBDA_DOUBLINGS: usize = 20;
const LAMBDA_BISECTIONS: usize = 24;

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

/// What one pod of each of `groups` (group index, count) is worth at the optimum of their
/// own program over the `candidates` types (its dual prices applied to the pod's rows): the
/// price at which new nodes can supply it. Other groups are worth nothing.
pub fn pod_values(snapshot: &Snapshot, groups: &[(usize, u32)], candidates: &[usize]) -> Vec<f64> {
    let program = program(snapshot, groups, candidates, false);
    let Outcome::Optimal { duals, .. } = program.solve(snapshot) else {
        return vec![0.0; snapshot.pending.len()];
    };
    let mut values = vec![0.0; snapshot.pending.len()];
    for &(g, _) in groups {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NodeType, PodGroup};
    use dialtone_cloud::Arch;

    fn snapshot() -> Snapshot {
        let node = |name: &str, millicores, memory_mib, pods, usd_per_hour| NodeType {
            name: name.into(),
            family: "m".into(),
            arch: Arch::X86_64,
            room: Resources {
                millicores,
                memory_mib,
                pods,
            },
            usd_per_hour,
            zones: vec!["a".into()],
        };
        Snapshot {
            pending: vec![PodGroup {
                name: "web".into(),
                requests: Resources {
                    millicores: 1500,
                    memory_mib: 1024,
                    pods: 1,
                },
                placement: Placement::default(),
                count: 10,
                per_node: None,
                avoids: Default::default(),
            }],
            existing: Vec::new(),
            // The small type is the cheapest per millicore but holds one pod at most.
            types: vec![
                node("small", 1900, 8000, 20, 0.05),
                node("large", 7800, 30000, 50, 0.4),
            ],
            zones: vec!["a".into()],
            spread_zones: false,
            max_new_nodes: 100,
        }
    }

    #[test]
    fn the_bound_is_certified_by_any_dual_prices() {
        let snapshot = snapshot();
        let groups = [(0, 10)];
        let types = [0, 1];
        let program = program(&snapshot, &groups, &types, false);
        let Outcome::Optimal { value, duals, .. } = program.solve(&snapshot) else {
            panic!("infeasible")
        };
        let costs = program.costs(&snapshot);
        assert!((program.certified(&costs, &duals) - value).abs() < 1e-9);
        // Prices that are wrong, too high or negative, still give a valid bound.
        let wrong: Vec<f64> = duals
            .iter()
            .enumerate()
            .map(|(i, d)| d * 3.0 - i as f64)
            .collect();
        assert!(program.certified(&costs, &wrong) <= value + 1e-9);
        // Prices twice too high are scaled back to the optimum exactly.
        let doubled: Vec<f64> = duals.iter().map(|d| d * 2.0).collect();
        assert!((program.certified(&costs, &doubled) - value).abs() < 1e-9);
        // Ten pods of 1.5 CPU: one per small node (10 × 0.05) beats five per large node.
        assert!(
            (lower_bound(&snapshot) - 0.5).abs() < 1e-9,
            "{}",
            lower_bound(&snapshot)
        );
    }

    #[test]
    fn max_nodes_raises_the_bound_to_what_fewer_larger_nodes_cost() {
        // Ten small nodes at $0.05 are cheapest; with at most two new nodes, only two large
        // ones ($0.80) hold the ten pods, and the program with the cap says as much.
        let mut snapshot = snapshot();
        snapshot.max_new_nodes = 2;
        let bound = lower_bound(&snapshot);
        assert!((bound - 0.8).abs() < 1e-4, "{bound}");
        // A cap that does not bind changes nothing; one that no placement meets leaves the
        // bound for placing every pod.
        snapshot.max_new_nodes = 10;
        assert!((lower_bound(&snapshot) - 0.5).abs() < 1e-9);
        snapshot.max_new_nodes = 1;
        assert!((lower_bound(&snapshot) - 0.5).abs() < 1e-9);
    }

    #[test]
    fn a_free_type_that_covers_nothing_priced_does_not_void_the_bound() {
        // A type that costs nothing would make every price it covers worthless; one that
        // covers no priced row leaves the bound alone.
        let mut snapshot = snapshot();
        snapshot.types[1].usd_per_hour = 0.0;
        let program = Program {
            rows: vec![Row::Resource(Placement::default(), 0)],
            demand: vec![10.0],
            columns: vec![(0, None), (1, None)],
            matrix: vec![vec![2.0], vec![0.0]],
        };
        // Two units per $0.05: a unit is worth $0.025, ten are worth $0.25.
        let costs = program.costs(&snapshot);
        assert!((program.certified(&costs, &[0.025]) - 0.25).abs() < 1e-12);
    }
}
