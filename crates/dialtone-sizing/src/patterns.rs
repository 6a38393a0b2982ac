//! The pattern bound: the linear-programming relaxation of the placement itself, over
//! packing patterns (Gilmore and Gomory's formulation of cutting stock), solved by column
//! generation.
//!
//! A pattern is a node (a new one of a type in a zone, or an existing one) with how many
//! pods of each pending group it takes. Every placement chooses one pattern per node, so
//! the program "cover each group's count with patterns, at most `maxNodes` new nodes, at
//! most the existing nodes there are, at the least cost" is below every placement. It has
//! a column per pattern, far too many to write down, so it starts from the patterns of a
//! plan and adds, round after round, the pattern each node kind's knapsack (the pods' dual
//! prices as values) says is worth more than it costs.
//!
//! The value reported is certified by weak duality from any round's prices, whatever the
//! solver's numerics: with `u` the groups' prices, `w` the price of the cap on new nodes
//! and `K(b)` a proven upper bound on what a pattern of node kind `b` is worth at `u`
//! (the knapsack's maximum when its search finishes, its open branches' bound when not),
//! the prices `(u, K(existing), w)` scaled down by `s = max(1, maxᵦ (K(b) − w) / cost(b))`
//! are feasible for the dual, so `(u·n − Σₑ kₑ K(e) − M w) / s` is below the optimum
//! (Farley's bound when the columns are not yet all found).

use std::collections::BTreeMap;
use std::time::Instant;

use crate::lp::{self, Outcome};
use crate::{NewNode, Plan, Resources, Snapshot};

/// A certified pattern bound and how it was reached.
#[derive(Clone, Debug, PartialEq)]
pub struct PatternBound {
    /// The bound, in dollars per hour.
    pub usd_per_hour: f64,
    /// Whether column generation finished (no pattern improves the program): the bound is
    /// then the program's optimum, up to the knapsacks' searches.
    pub converged: bool,
    /// Rounds of column generation run.
    pub rounds: usize,
    /// Patterns the program held at the end.
    pub patterns: usize,
}

/// A kind of node patterns are made for.
struct Bin {
    /// A new node of this type (index) in this zone, or these existing nodes.
    origin: Origin,
    room: Resources,
    /// `Some(price)` for a new node, `None` for existing ones (already paid for).
    usd_per_hour: Option<f64>,
    /// The groups (local index) the node's architecture and zone allow.
    allowed: Vec<usize>,
    /// Pods of each per-node set the node runs (none on a new node).
    sets: BTreeMap<String, u32>,
}

enum Origin {
    New { type_index: usize, zone: String },
    Existing { nodes: Vec<usize> },
}

impl Bin {
    /// How many nodes of this kind exist (none for new nodes: they are bought).
    fn count(&self) -> usize {
        match &self.origin {
            Origin::New { .. } => 0,
            Origin::Existing { nodes } => nodes.len(),
        }
    }
}

/// What column generation ends with: the bound, and the program's last solution.
struct Generated {
    bound: PatternBound,
    groups: Vec<usize>,
    bins: Vec<Bin>,
    patterns: Vec<(usize, Vec<u32>)>,
    /// How many of each pattern the last program solved used (fractional).
    solution: Vec<f64>,
}

/// The pattern bound for the pods `plan` placed, searching until `deadline`; `None` when
/// the plan left pods pending (the program would bound a placement no plan achieves).
pub fn pattern_bound(snapshot: &Snapshot, plan: &Plan, deadline: Instant) -> Option<PatternBound> {
    generate(snapshot, plan, deadline).map(|g| g.bound)
}

fn generate(snapshot: &Snapshot, plan: &Plan, deadline: Instant) -> Option<Generated> {
    if !plan.unplaceable.is_empty() {
        return None;
    }
    let groups: Vec<usize> = (0..snapshot.pending.len())
        .filter(|&g| snapshot.pending[g].count > 0)
        .collect();
    if groups.is_empty() {
        return Some(Generated {
            bound: PatternBound {
                usd_per_hour: 0.0,
                converged: true,
                rounds: 0,
                patterns: 0,
            },
            groups,
            bins: Vec::new(),
            patterns: Vec::new(),
            solution: Vec::new(),
        });
    }
    let local: BTreeMap<usize, usize> = groups.iter().enumerate().map(|(i, &g)| (g, i)).collect();
    let counts: Vec<f64> = groups
        .iter()
        .map(|&g| snapshot.pending[g].count as f64)
        .collect();
    let allowed = |arch, zone: &str, room: &Resources| -> Vec<usize> {
        groups
            .iter()
            .enumerate()
            .filter(|(_, g)| {
                let group = &snapshot.pending[**g];
                group.placement.allows(arch, zone) && group.requests.fits_in(room)
            })
            .map(|(i, _)| i)
            .collect()
    };

    // Node kinds: new nodes of each undominated type (and any the plan chose) per zone,
    // then existing nodes alike in architecture, zone, room, per-node sets and the groups
    // that avoid them.
    let mut bins: Vec<Bin> = Vec::new();
    let mut new_bin: BTreeMap<(usize, &str), usize> = BTreeMap::new();
    let mut types = crate::undominated(&snapshot.types);
    for node in &plan.new_nodes {
        if let Some(t) = snapshot
            .types
            .iter()
            .position(|t| t.name == node.instance_type)
            && !types.contains(&t)
        {
            types.push(t);
        }
    }
    for &t in &types {
        let node_type = &snapshot.types[t];
        for zone in &node_type.zones {
            new_bin.insert((t, zone.as_str()), bins.len());
            bins.push(Bin {
                origin: Origin::New {
                    type_index: t,
                    zone: zone.clone(),
                },
                room: node_type.room,
                usd_per_hour: Some(node_type.usd_per_hour),
                allowed: allowed(node_type.arch, zone, &node_type.room),
                sets: BTreeMap::new(),
            });
        }
    }
    let mut existing_bin: Vec<usize> = Vec::new();
    type Kind<'a> = (
        crate::Arch,
        &'a str,
        Resources,
        &'a BTreeMap<String, u32>,
        Vec<usize>,
    );
    let mut kinds: BTreeMap<Kind, usize> = BTreeMap::new();
    for (index, node) in snapshot.existing.iter().enumerate() {
        let barred: Vec<usize> = groups
            .iter()
            .enumerate()
            .filter(|(_, g)| snapshot.pending[**g].avoids.contains(&node.name))
            .map(|(i, _)| i)
            .collect();
        let bin = *kinds
            .entry((node.arch, node.zone.as_str(), node.free, &node.sets, barred))
            .or_insert_with_key(|(.., barred)| {
                let mut allowed = allowed(node.arch, &node.zone, &node.free);
                allowed.retain(|i| !barred.contains(i));
                bins.push(Bin {
                    origin: Origin::Existing { nodes: Vec::new() },
                    room: node.free,
                    usd_per_hour: None,
                    allowed,
                    sets: node.sets.clone(),
                });
                bins.len() - 1
            });
        if let Origin::Existing { nodes } = &mut bins[bin].origin {
            nodes.push(index);
        }
        existing_bin.push(bin);
    }

    // The plan's nodes are the first patterns: together they hold every pod.
    let mut patterns: Vec<(usize, Vec<u32>)> = Vec::new();
    for node in &plan.new_nodes {
        let t = snapshot
            .types
            .iter()
            .position(|t| t.name == node.instance_type)?;
        let bin = *new_bin.get(&(t, node.zone.as_str()))?;
        let mut counts = vec![0; groups.len()];
        for (&g, &k) in &node.pods {
            counts[*local.get(&g)?] += k;
        }
        patterns.push((bin, counts));
    }
    let mut on_existing: BTreeMap<usize, Vec<u32>> = BTreeMap::new();
    for &(g, node, k) in &plan.on_existing {
        on_existing
            .entry(node)
            .or_insert_with(|| vec![0; groups.len()])[*local.get(&g)?] += k;
    }
    for (node, counts) in on_existing {
        patterns.push((existing_bin[node], counts));
    }
    patterns.sort();
    patterns.dedup();

    // Rows: a group's count (at least), each existing kind's count (at most), the cap on
    // new nodes (at most), when it can bind.
    let existing_kinds: Vec<usize> = (0..bins.len())
        .filter(|&b| bins[b].usd_per_hour.is_none())
        .collect();
    let pods: f64 = counts.iter().sum();
    let cap = (snapshot.max_new_nodes as f64) < pods;
    let mut demand = counts.clone();
    demand.extend(existing_kinds.iter().map(|&b| bins[b].count() as f64));
    let mut at_most = vec![false; groups.len()];
    at_most.extend(existing_kinds.iter().map(|_| true));
    if cap {
        demand.push(snapshot.max_new_nodes as f64);
        at_most.push(true);
    }
    let column = |(bin, counts): &(usize, Vec<u32>)| -> Vec<f64> {
        let mut column: Vec<f64> = counts.iter().map(|&k| k as f64).collect();
        column.extend(
            existing_kinds
                .iter()
                .map(|&b| f64::from(u8::from(b == *bin))),
        );
        if cap {
            column.push(f64::from(u8::from(bins[*bin].usd_per_hour.is_some())));
        }
        column
    };
    let cost = |bin: usize| bins[bin].usd_per_hour.unwrap_or(0.0);

    let mut best = 0.0f64;
    let mut solution: Vec<f64> = Vec::new();
    let mut rounds = 0;
    let mut converged = false;
    while !converged {
        rounds += 1;
        let costs: Vec<f64> = patterns.iter().map(|(b, _)| cost(*b)).collect();
        let columns: Vec<Vec<f64>> = patterns.iter().map(column).collect();
        // Out of time mid-program, the rounds before stand.
        let Outcome::Optimal { duals, x, .. } =
            lp::minimize_within(&costs, &columns, &demand, &at_most, Some(deadline))
        else {
            break;
        };
        solution = x;
        let prices: Vec<f64> = duals[..groups.len()].iter().map(|u| u.max(0.0)).collect();
        let cap_price = if cap {
            (-duals[duals.len() - 1]).max(0.0)
        } else {
            0.0
        };
        let searching = Instant::now() < deadline;
        let mut improving: Vec<(f64, (usize, Vec<u32>))> = Vec::new();
        let mut worth_of_existing = 0.0;
        let mut scale = 1.0f64;
        let mut settled = true;
        // Node kinds alike in room and allowed pods (a type in each of its zones, say)
        // share one knapsack.
        let mut solved: BTreeMap<(Resources, &[usize]), Found> = BTreeMap::new();
        for (b, bin) in bins.iter().enumerate() {
            let limit = if Instant::now() < deadline {
                NODES_PER_KNAPSACK
            } else {
                0
            };
            let found = solved
                .entry((bin.room, bin.allowed.as_slice()))
                .or_insert_with(|| knapsack(snapshot, &groups, &prices, bin, limit))
                .clone();
            settled &= found.settled();

            match bin.usd_per_hour {
                Some(price) => {
                    let over = found.upper_bound - cap_price;
                    if over > 0.0 {
                        if price <= 0.0 {
                            return None;
                        }
                        scale = scale.max(over / price);
                    }
                    let reduced = price + cap_price - found.value;
                    if reduced < -1e-9 * price.max(1.0) {
                        improving.push((reduced, (b, found.counts)));
                    }
                }
                None => {
                    worth_of_existing += bin.count() as f64 * found.upper_bound;
                    let existing_price = duals[groups.len()
                        + existing_kinds.iter().position(|&e| e == b).expect("a kind")]
                    .min(0.0);
                    if found.value + existing_price > 1e-9 {
                        improving.push((-(found.value + existing_price), (b, found.counts)));
                    }
                }
            }
        }
        let worth: f64 = prices.iter().zip(&counts).map(|(u, n)| u * n).sum();
        // Without the cap's row its price is zero.
        let capped = snapshot.max_new_nodes as f64 * cap_price;
        best = best.max((worth - worth_of_existing - capped) / scale);
        improving.retain(|(_, p)| !patterns.contains(p));
        if improving.is_empty() || !searching {
            converged = improving.is_empty() && settled;
            break;
        }
        improving.sort_by(|a, b| a.0.total_cmp(&b.0));
        patterns.extend(
            improving
                .into_iter()
                .take(COLUMNS_PER_ROUND)
                .map(|(_, p)| p),
        );
    }
    Some(Generated {
        bound: PatternBound {
            usd_per_hour: best.max(0.0),
            converged,
            rounds,
            patterns: patterns.len(),
        },
        groups,
        bins,
        patterns,
        solution,
    })
}

/// `plan`, or a cheaper one built from the patterns column generation finds by `deadline`:
/// each pattern the program uses whole, as many times as it uses it whole, then the pods
/// left placed by [`crate::plan`] (rounding, then repair). Also the pattern bound. A
/// cluster that spreads new nodes over zones keeps `plan`, which spreads them.
pub fn improve(snapshot: &Snapshot, plan: Plan, deadline: Instant) -> (Plan, Option<PatternBound>) {
    let Some(generated) = generate(snapshot, &plan, deadline) else {
        return (plan, None);
    };
    let bound = Some(generated.bound.clone());
    if snapshot.spread_zones {
        return (plan, bound);
    }
    match rounded(snapshot, &generated) {
        Some(better) if better.usd_per_hour() < plan.usd_per_hour() - 1e-9 => (better, bound),
        _ => (plan, bound),
    }
}

/// The program's solution rounded down to whole patterns, and the rest repaired.
fn rounded(snapshot: &Snapshot, generated: &Generated) -> Option<Plan> {
    let mut remaining: Vec<u32> = snapshot.pending.iter().map(|g| g.count).collect();
    let mut residual = snapshot.clone();
    let mut result = Plan::default();
    let mut used_existing = vec![false; snapshot.existing.len()];
    for ((bin, counts), &x) in generated.patterns.iter().zip(&generated.solution) {
        for _ in 0..(x + 1e-9).floor() as usize {
            // Pods the pattern holds and that still wait.
            let mut pods: BTreeMap<usize, u32> = BTreeMap::new();
            for (i, &k) in counts.iter().enumerate() {
                let g = generated.groups[i];
                let k = k.min(remaining[g]);
                if k > 0 {
                    remaining[g] -= k;
                    pods.insert(g, k);
                }
            }
            if pods.is_empty() {
                break;
            }
            match &generated.bins[*bin].origin {
                Origin::New { type_index, zone } => {
                    let node_type = &snapshot.types[*type_index];
                    result.new_nodes.push(NewNode {
                        instance_type: node_type.name.clone(),
                        zone: zone.clone(),
                        usd_per_hour: node_type.usd_per_hour,
                        pods,
                    });
                }
                Origin::Existing { nodes } => {
                    let &node = nodes.iter().find(|&&n| !used_existing[n])?;
                    used_existing[node] = true;
                    for (&g, &k) in &pods {
                        residual.existing[node].take(&snapshot.pending[g], k);
                        result.on_existing.push((g, node, k));
                    }
                }
            }
        }
    }
    if result.new_nodes.len() > snapshot.max_new_nodes {
        return None;
    }
    for (group, &left) in residual.pending.iter_mut().zip(&remaining) {
        group.count = left;
    }
    residual.max_new_nodes = snapshot.max_new_nodes - result.new_nodes.len();
    let repair = crate::plan(&residual);
    if !repair.unplaceable.is_empty() {
        return None;
    }
    result.on_existing.extend(repair.on_existing);
    result.new_nodes.extend(repair.new_nodes);
    // Patterns keep each group's rule alone; groups that share a set may break it together.
    result.keeps_per_node_rules(snapshot).then_some(result)
}

/// Patterns added per round, the most improving first.
const COLUMNS_PER_ROUND: usize = 64;

/// Branches one knapsack explores before it settles for its bound.
const NODES_PER_KNAPSACK: usize = 20_000;

/// The best pattern a knapsack found and a proven bound on the best there is.
#[derive(Clone)]
struct Found {
    counts: Vec<u32>,
    value: f64,
    upper_bound: f64,
}

impl Found {
    /// Whether the search finished: no pattern is worth more than the gap over the best.
    fn settled(&self) -> bool {
        self.upper_bound <= self.value * (1.0 + KNAPSACK_GAP) + 1e-12
    }
}

/// How far a knapsack's best may be below the best there is when it stops: the pattern
/// bound at convergence is within about this much of the program's optimum.
const KNAPSACK_GAP: f64 = 0.002;

/// The relaxations a branch is bounded by: each a weighting of the three resources (CPU,
/// memory, pod slots, each as a share of the node) into one, whose fractional knapsack
/// bounds every pattern (any non-negative combination of a pattern's constraints is one
/// it meets). The single resources, and mixes for pods that fill CPU and memory together.
const SURROGATES: [[f64; 3]; 6] = [
    [1.0, 0.0, 0.0],
    [0.0, 1.0, 0.0],
    [0.0, 0.0, 1.0],
    [0.5, 0.5, 0.0],
    [0.75, 0.25, 0.0],
    [0.25, 0.75, 0.0],
];

/// The pattern of `bin` worth most at `prices`: a bounded knapsack in three dimensions
/// (CPU, memory, pod slots), by depth-first branch and bound, each branch bounded by the
/// least of the surrogate relaxations' fractional knapsacks over what is left. After
/// `limit` branches the search stops; the open branches' bounds stay in `upper_bound`.
fn knapsack(
    snapshot: &Snapshot,
    groups: &[usize],
    prices: &[f64],
    bin: &Bin,
    limit: usize,
) -> Found {
    let capacity = [
        bin.room.millicores as f64,
        bin.room.memory_mib as f64,
        bin.room.pods as f64,
    ];
    // Weights as shares of the node, so that the surrogates weigh resources alike.
    let mut items: Vec<Item> = bin
        .allowed
        .iter()
        .filter(|&&i| prices[i] > 0.0)
        .map(|&i| {
            let requests = &snapshot.pending[groups[i]].requests;
            let share = |want: u64, have: f64| if have > 0.0 { want as f64 / have } else { 0.0 };
            Item {
                local: i,
                value: prices[i],
                weights: [
                    share(requests.millicores, capacity[0]),
                    share(requests.memory_mib, capacity[1]),
                    share(requests.pods as u64, capacity[2]),
                ],
                // Each group alone within its per-node rule: a relaxation where groups
                // share a set, so the bound stays below every plan.
                most: snapshot.pending[groups[i]]
                    .count
                    .min(requests.times_in(&bin.room) as u32)
                    .min(snapshot.pending[groups[i]].admitted_beside(&bin.sets)),
            }
        })
        .filter(|item| item.most > 0)
        .collect();
    // Densest first (value per share of the node), so good patterns come early.
    let density = |item: &Item| item.value / item.weights.iter().fold(1e-12f64, |a, &b| a.max(b));
    items.sort_by(|a, b| density(b).total_cmp(&density(a)));
    // The knapsack's linear relaxation bounds it tightly on a node that holds many pods;
    // its dual's resource prices are the surrogate that bounds branches best, and its
    // solution, rounded down and filled greedily, is the first pattern.
    // Out of time: the fixed surrogates bound it, and a greedy fill is the pattern.
    let (relaxed, mix, fractional) = if limit == 0 {
        (f64::INFINITY, [1.0, 0.0, 0.0], Vec::new())
    } else {
        relaxation(&items)
    };
    let mut mixes: Vec<[f64; 3]> = SURROGATES.to_vec();
    mixes.push(mix);
    let orders = mixes
        .iter()
        .map(|mix| {
            let weight = |item: &Item| (0..3).map(|d| mix[d] * item.weights[d]).sum::<f64>();
            let mut order: Vec<(usize, f64)> = items
                .iter()
                .enumerate()
                .map(|(i, item)| (i, weight(item)))
                .collect();
            // By value per unit of weight, densest first; weightless items first of all.
            let density = |(i, weight): &(usize, f64)| {
                if *weight > 0.0 {
                    items[*i].value / weight
                } else {
                    f64::INFINITY
                }
            };
            order.sort_by(|a, b| density(b).total_cmp(&density(a)));
            order
        })
        .collect();
    let mut search = Search {
        chosen: vec![0; items.len()],
        items,
        mixes,
        orders,
        best: 0.0,
        best_counts: Vec::new(),
        open_bound: 0.0,
        branches: 0,
        limit,
    };
    search.round(&fractional);
    // With no branches to spend, `branch` records the root's bound and returns.
    let upper_bound = if relaxed > search.best * (1.0 + KNAPSACK_GAP) {
        search.branch(0, [1.0, 1.0, 1.0], 0.0);
        search.best.max(search.open_bound).min(relaxed)
    } else {
        relaxed.max(search.best)
    };
    let mut counts = vec![0; prices.len()];
    for (item, &k) in search.items.iter().zip(&search.best_counts) {
        counts[item.local] = k;
    }
    Found {
        counts,
        value: search.best,
        upper_bound,
    }
}

/// The knapsack's linear relaxation, by its dual, a covering program the simplex solves:
/// minimize `μ · 1 + Σᵢ mostᵢ tᵢ` with `μ · wᵢ + tᵢ ≥ valueᵢ`, `μ, t ≥ 0` (each resource's
/// price `μ` times its room, one whole node in shares, plus what each pod is worth beyond
/// its resources). Returns the optimum, the resource prices and each item's fractional
/// count (the rows' dual prices). Certified as the bound is: prices scaled up until they
/// cover every item.
fn relaxation(items: &[Item]) -> (f64, [f64; 3], Vec<f64>) {
    if items.is_empty() {
        return (0.0, [1.0, 0.0, 0.0], Vec::new());
    }
    let n = items.len();
    let mut costs = vec![1.0; 3];
    costs.extend(items.iter().map(|i| i.most as f64));
    let mut columns: Vec<Vec<f64>> = (0..3)
        .map(|d| items.iter().map(|i| i.weights[d]).collect())
        .collect();
    columns.extend((0..n).map(|i| {
        let mut unit = vec![0.0; n];
        unit[i] = 1.0;
        unit
    }));
    let demand: Vec<f64> = items.iter().map(|i| i.value).collect();
    let Outcome::Optimal { x, duals, .. } = lp::minimize(&costs, &columns, &demand) else {
        // Cannot happen: every row has its own column. The fractional knapsack over pod
        // slots alone bounds it as well.
        let total: f64 = items.iter().map(|i| i.value * i.most as f64).sum();
        return (total, [1.0, 0.0, 0.0], vec![0.0; n]);
    };
    let mu = [x[0].max(0.0), x[1].max(0.0), x[2].max(0.0)];
    // Any μ ≥ 0 with t chosen to cover each row is feasible for the dual program, so its
    // cost bounds the knapsack whatever the solver's numerics.
    let value = mu.iter().sum::<f64>()
        + items
            .iter()
            .map(|i| {
                let covered: f64 = (0..3).map(|d| mu[d] * i.weights[d]).sum();
                i.most as f64 * (i.value - covered).max(0.0)
            })
            .sum::<f64>();
    let mix = if mu.iter().sum::<f64>() > 0.0 {
        mu
    } else {
        [1.0, 0.0, 0.0]
    };
    (value, mix, duals)
}

struct Item {
    local: usize,
    value: f64,
    /// What one pod takes of each resource, as a share of the node's room.
    weights: [f64; 3],
    most: u32,
}

impl Item {
    /// How many pods fit in `room` (shares of the node), whatever the count. Shares are
    /// rounded, so a pod that fits exactly is given a hair of slack: a real overflow is a
    /// whole unit of a resource, far above it.
    fn fits(&self, room: [f64; 3]) -> u32 {
        (0..3)
            .map(|d| {
                if self.weights[d] > 0.0 {
                    ((room[d] + 1e-9) / self.weights[d]).floor().max(0.0) as u32
                } else {
                    u32::MAX
                }
            })
            .min()
            .unwrap_or(0)
    }
}

struct Search {
    items: Vec<Item>,
    /// The surrogate relaxations branches are bounded by.
    mixes: Vec<[f64; 3]>,
    /// Per surrogate, the items by value per unit of its weight, densest first, with the
    /// weight.
    orders: Vec<Vec<(usize, f64)>>,
    best: f64,
    best_counts: Vec<u32>,
    chosen: Vec<u32>,
    open_bound: f64,
    branches: usize,
    limit: usize,
}

impl Search {
    /// What the items from `first` on could add to `room` (shares of the node left), at
    /// most: the least of the surrogates' fractional knapsacks.
    fn bound(&self, first: usize, room: [f64; 3]) -> f64 {
        self.mixes
            .iter()
            .zip(&self.orders)
            .map(|(mix, order)| {
                let mut left: f64 = (0..3).map(|d| mix[d] * room[d]).sum();
                let mut worth = 0.0;
                for &(i, weight) in order.iter().filter(|(i, _)| *i >= first) {
                    let item = &self.items[i];
                    let most = item.most as f64;
                    if weight <= 0.0 {
                        worth += item.value * most;
                        continue;
                    }
                    if left <= 0.0 {
                        break;
                    }
                    let k = (left / weight).min(most);
                    worth += item.value * k;
                    left -= weight * k;
                }
                worth
            })
            .fold(f64::INFINITY, f64::min)
    }

    /// The pattern of the fractional counts rounded down, then filled with what still
    /// fits, densest first: the first best.
    fn round(&mut self, fractional: &[f64]) {
        let mut room = [1.0f64; 3];
        let mut value = 0.0;
        for (i, item) in self.items.iter().enumerate() {
            let k = (fractional.get(i).copied().unwrap_or(0.0) + 1e-9)
                .floor()
                .max(0.0) as u32;
            let k = k.min(item.most).min(item.fits(room));
            self.chosen[i] = k;
            for (d, r) in room.iter_mut().enumerate() {
                *r -= item.weights[d] * k as f64;
            }
            value += item.value * k as f64;
        }
        for (i, item) in self.items.iter().enumerate() {
            let k = (item.most - self.chosen[i]).min(item.fits(room));
            self.chosen[i] += k;
            for (d, r) in room.iter_mut().enumerate() {
                *r -= item.weights[d] * k as f64;
            }
            value += item.value * k as f64;
        }
        self.best = value;
        self.best_counts = self.chosen.clone();
        self.chosen.iter_mut().for_each(|k| *k = 0);
    }

    fn branch(&mut self, i: usize, room: [f64; 3], value: f64) {
        if value > self.best {
            self.best = value;
            self.best_counts = self.chosen.clone();
        }
        if i == self.items.len() {
            return;
        }
        let bound = value + self.bound(i, room);
        if bound <= self.best * (1.0 + 1e-9) + 1e-12 {
            return;
        }
        // A branch that could beat the best by at most the gap is left unexplored, its
        // bound kept: proving the last fraction of a percent costs most of the search.
        if bound <= self.best * (1.0 + KNAPSACK_GAP) || self.branches >= self.limit {
            self.open_bound = self.open_bound.max(bound);
            return;
        }
        self.branches += 1;
        let item = &self.items[i];
        let fits = item.fits(room).min(item.most);
        let (weights, worth) = (item.weights, item.value);
        for k in (0..=fits).rev() {
            let left = [
                room[0] - weights[0] * k as f64,
                room[1] - weights[1] * k as f64,
                room[2] - weights[2] * k as f64,
            ];
            self.chosen[i] = k;
            self.branch(i + 1, left, value + worth * k as f64);
        }
        self.chosen[i] = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NodeType, Placement, PodGroup};
    use dialtone_cloud::Arch;
    use std::time::Duration;

    fn snapshot(max_new_nodes: usize) -> Snapshot {
        let node = |name: &str, millicores, memory_mib, usd_per_hour| NodeType {
            name: name.into(),
            family: "m".into(),
            arch: Arch::X86_64,
            room: Resources {
                millicores,
                memory_mib,
                pods: 110,
            },
            usd_per_hour,
            zones: vec!["a".into()],
        };
        let group = |name: &str, millicores, count| PodGroup {
            name: name.into(),
            requests: Resources {
                millicores,
                memory_mib: 100,
                pods: 1,
            },
            placement: Placement::default(),
            count,
            per_node: None,
            avoids: Default::default(),
        };
        Snapshot {
            // Pods of 600m on nodes of 1000m: one per node, whatever the resource sums say.
            pending: vec![group("big", 600, 6), group("small", 300, 2)],
            existing: Vec::new(),
            types: vec![node("one", 1000, 4000, 1.0), node("two", 2000, 8000, 1.9)],
            zones: vec!["a".into()],
            spread_zones: false,
            max_new_nodes,
        }
    }

    #[test]
    fn patterns_see_what_resource_sums_do_not() {
        // A `two` takes three big pods, or two big and the two small ones; a `one` one big
        // pod or the small ones. The best placement is 4.8 (two `two`s and a `one`); the
        // program's optimum is one `two` of each kind and a third of another three-big
        // `two`: 7/3 × 1.9. The resource sums see only 4,200m of CPU.
        let snapshot = snapshot(100);
        let plan = crate::plan(&snapshot);
        let bound = pattern_bound(&snapshot, &plan, Instant::now() + Duration::from_secs(5))
            .expect("every pod placed");
        assert!(bound.converged, "{bound:?}");
        assert!(
            (bound.usd_per_hour - 7.0 / 3.0 * 1.9).abs() < 1e-6,
            "{bound:?}"
        );
        assert!(plan.usd_per_hour() >= 4.8 - 1e-9);
        let covering = crate::bound::lower_bound(&snapshot);
        assert!(covering < bound.usd_per_hour - 0.1, "{covering}");
    }

    #[test]
    fn the_cap_on_new_nodes_is_part_of_the_program() {
        // The six big pods alone, with `one`s at half a dollar: six `one`s (3.0) unless
        // at most two new nodes may come, when two `two`s must take them (3.8).
        let mut snapshot = snapshot(100);
        snapshot.pending.truncate(1);
        snapshot.types[0].usd_per_hour = 0.5;
        let deadline = || Instant::now() + Duration::from_secs(5);
        let free = pattern_bound(&snapshot, &crate::plan(&snapshot), deadline()).expect("placed");
        assert!((free.usd_per_hour - 3.0).abs() < 1e-6, "{free:?}");
        snapshot.max_new_nodes = 2;
        let plan = crate::plan(&snapshot);
        assert!(plan.unplaceable.is_empty(), "{plan:?}");
        let bound = pattern_bound(&snapshot, &plan, deadline()).expect("every pod placed");
        assert!((bound.usd_per_hour - 3.8).abs() < 1e-6, "{bound:?}");
    }

    #[test]
    fn stopped_early_the_bound_is_still_below_the_optimum() {
        let snapshot = snapshot(100);
        let plan = crate::plan(&snapshot);
        let bound = pattern_bound(&snapshot, &plan, Instant::now()).expect("every pod placed");
        assert!(!bound.converged);
        assert!(bound.usd_per_hour <= 7.0 / 3.0 * 1.9 + 1e-9, "{bound:?}");
    }
}
