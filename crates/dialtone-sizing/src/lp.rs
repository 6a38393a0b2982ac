//! A small dense simplex for the lower bound: minimize `c·x` subject to `A x ≥ b`, `x ≥ 0`,
//! with `b ≥ 0`. Two phases (artificial variables first), Bland's rule so it cannot cycle.
//! The bound's programs have a handful of rows and a few thousand columns, which a tableau
//! handles in microseconds.

use std::time::Instant;

const EPS: f64 = 1e-9;

/// What a program's solution is.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// The minimum of `c·x`, and each row's dual price: what one more unit of its demand
    /// would cost at the optimum.
    Optimal {
        /// The minimum.
        value: f64,
        /// The dual price of each row.
        duals: Vec<f64>,
        /// The value of each variable at the optimum.
        x: Vec<f64>,
    },
    /// No `x ≥ 0` covers `b`.
    Infeasible,
    /// The deadline passed before the optimum was found.
    Stopped,
}

/// Minimizes `costs · x` over `x ≥ 0` with `Σ_j columns[j][i] x_j ≥ demand[i]` for every row.
pub fn minimize(costs: &[f64], columns: &[Vec<f64>], demand: &[f64]) -> Outcome {
    minimize_within(costs, columns, demand, &vec![false; demand.len()], None)
}

/// [`minimize`], with the rows `at_most` marks meaning `≤ demand[i]` instead (a limit,
/// such as how many nodes of a kind exist). The dual price of such a row is at most zero:
/// what one more unit of the limit would save. With a `deadline`, the pivots stop when it
/// passes, and the outcome is [`Outcome::Stopped`].
pub fn minimize_within(
    costs: &[f64],
    columns: &[Vec<f64>],
    demand: &[f64],
    at_most: &[bool],
    deadline: Option<Instant>,
) -> Outcome {
    let (m, n) = (demand.len(), costs.len());
    if m == 0 {
        return Outcome::Optimal {
            value: 0.0,
            duals: Vec::new(),
            x: vec![0.0; n],
        };
    }
    // Variables: n structural, m surplus, m artificial; then the right-hand side.
    let width = n + 2 * m + 1;
    let rhs = width - 1;
    let mut tableau = vec![vec![0.0; width]; m];
    for (i, row) in tableau.iter_mut().enumerate() {
        // Rows scaled to a demand of 1 keep CPU, memory and pod counts comparable.
        let scale = if demand[i] > EPS {
            1.0 / demand[i]
        } else {
            1.0
        };
        for (j, column) in columns.iter().enumerate() {
            row[j] = column[i] * scale;
        }
        // A limit's slack starts in the basis (its demand is met at x = 0); a covering
        // row's artificial does, and its surplus counts down.
        if at_most[i] {
            row[n + i] = 1.0;
        } else {
            row[n + i] = -1.0;
            row[n + m + i] = 1.0;
        }
        row[rhs] = demand[i].max(0.0) * scale;
    }
    let mut basis: Vec<usize> = (0..m)
        .map(|i| if at_most[i] { n + i } else { n + m + i })
        .collect();

    // Phase one: drive the artificials out.
    let mut phase_one = vec![0.0; width - 1];
    for cost in &mut phase_one[n + m..] {
        *cost = 1.0;
    }
    if !run(&mut tableau, &mut basis, &phase_one, n + 2 * m, deadline) {
        return Outcome::Stopped;
    }
    let infeasibility: f64 = basis
        .iter()
        .zip(&tableau)
        .filter(|(b, _)| **b >= n + m)
        .map(|(_, row)| row[rhs])
        .sum();
    if infeasibility > 1e-7 {
        return Outcome::Infeasible;
    }
    // Artificials left in the basis sit at zero; swap each for any real variable in its row
    // so that phase two cannot raise them. A row with none is redundant.
    for i in 0..m {
        if basis[i] >= n + m
            && let Some(j) = (0..n + m).find(|&j| tableau[i][j].abs() > EPS)
        {
            pivot(&mut tableau, &mut basis, i, j);
        }
    }
    // Phase two over structural and surplus variables only.
    let mut phase_two = vec![0.0; width - 1];
    phase_two[..n].copy_from_slice(costs);
    for cost in &mut phase_two[n + m..] {
        *cost = f64::INFINITY;
    }
    if !run(&mut tableau, &mut basis, &phase_two, n + m, deadline) {
        return Outcome::Stopped;
    }
    let value = basis
        .iter()
        .zip(&tableau)
        .filter(|(b, _)| **b < n)
        .map(|(b, row)| costs[*b] * row[rhs])
        .sum();
    // The reduced cost of row i's surplus column is the row's dual, in scaled units.
    let cost_of = |j: usize| if j < n { costs[j] } else { 0.0 };
    let duals = (0..m)
        .map(|i| {
            // A surplus column is −eᵢ, a slack +eᵢ.
            let sign = if at_most[i] { 1.0 } else { -1.0 };
            let scaled: f64 = basis
                .iter()
                .zip(&tableau)
                .map(|(b, row)| sign * cost_of(*b) * row[n + i])
                .sum();
            if demand[i] > EPS {
                scaled / demand[i]
            } else {
                scaled
            }
        })
        .collect();
    let mut x = vec![0.0; n];
    for (b, row) in basis.iter().zip(&tableau) {
        if *b < n {
            x[*b] = row[rhs];
        }
    }
    Outcome::Optimal { value, duals, x }
}

/// Pivots until no variable below `entering_limit` has a negative reduced cost, or a cap on
/// pivots is reached (the bound does not rely on convergence: see `bound::certified`).
/// Dantzig's rule (the most negative reduced cost) for speed; after a run of degenerate
/// pivots, Bland's rule (the first), which cannot cycle.
/// Returns false when `deadline` passed first.
fn run(
    tableau: &mut [Vec<f64>],
    basis: &mut [usize],
    costs: &[f64],
    entering_limit: usize,
    deadline: Option<Instant>,
) -> bool {
    let rhs = tableau[0].len() - 1;
    let cost_of = |j: usize| if costs[j].is_finite() { costs[j] } else { 0.0 };
    let mut degenerate_run = 0;
    let mut in_basis = vec![false; tableau[0].len()];
    for &b in basis.iter() {
        in_basis[b] = true;
    }
    for pivots in 0..MAX_PIVOTS {
        if pivots % 32 == 31 && deadline.is_some_and(|d| Instant::now() >= d) {
            return false;
        }
        let bland = degenerate_run > 20;
        // Reduced cost of j: c_j − Σ_i c_B(i) a_ij.
        let mut entering: Option<(usize, f64)> = None;
        for j in (0..entering_limit).filter(|&j| !in_basis[j]) {
            let reduced = cost_of(j)
                - basis
                    .iter()
                    .zip(tableau.iter())
                    .map(|(b, row)| cost_of(*b) * row[j])
                    .sum::<f64>();
            if reduced < -EPS && entering.is_none_or(|(_, best)| reduced < best) {
                entering = Some((j, reduced));
                if bland {
                    break;
                }
            }
        }
        let Some((entering, _)) = entering else {
            return true;
        };
        // Ratio test, ties to the smallest basic index (Bland).
        let mut leaving: Option<(usize, f64)> = None;
        for (i, row) in tableau.iter().enumerate() {
            if row[entering] > EPS {
                let ratio = row[rhs] / row[entering];
                let better = match leaving {
                    None => true,
                    Some((l, best)) => {
                        ratio < best - EPS || (ratio < best + EPS && basis[i] < basis[l])
                    }
                };
                if better {
                    leaving = Some((i, ratio));
                }
            }
        }
        // Unbounded below cannot happen with non-negative costs; stop if it seems to.
        let Some((pivot_row, ratio)) = leaving else {
            return true;
        };
        degenerate_run = if ratio < EPS { degenerate_run + 1 } else { 0 };
        in_basis[basis[pivot_row]] = false;
        in_basis[entering] = true;
        pivot(tableau, basis, pivot_row, entering);
    }
    true
}

/// Enough for the programs here many times over; a cap so that no input can spin forever.
const MAX_PIVOTS: usize = 20_000;

fn pivot(tableau: &mut [Vec<f64>], basis: &mut [usize], pivot_row: usize, entering: usize) {
    let pivot = tableau[pivot_row][entering];
    for value in tableau[pivot_row].iter_mut() {
        *value /= pivot;
    }
    let pivot_values = tableau[pivot_row].clone();
    for (i, row) in tableau.iter_mut().enumerate() {
        if i != pivot_row && row[entering].abs() > EPS {
            let factor = row[entering];
            for (value, p) in row.iter_mut().zip(&pivot_values) {
                *value -= factor * p;
            }
        }
    }
    basis[pivot_row] = entering;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn optimal(outcome: Outcome) -> f64 {
        match outcome {
            Outcome::Optimal { value, .. } => value,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_deadline_that_has_passed_stops_the_pivots() {
        // Enough pivots to reach a check: a covering row per column, none covered by any
        // other.
        let n = 64;
        let columns: Vec<Vec<f64>> = (0..n)
            .map(|j| (0..n).map(|i| f64::from(u8::from(i == j))).collect())
            .collect();
        let (costs, demand) = (vec![1.0; n], vec![1.0; n]);
        let past = Some(Instant::now());
        assert_eq!(
            minimize_within(&costs, &columns, &demand, &vec![false; n], past),
            Outcome::Stopped
        );
        assert_eq!(optimal(minimize(&costs, &columns, &demand)), n as f64);
    }

    #[test]
    fn duals_price_each_row() {
        // One type of size 4 at 3: a unit of demand costs 3/4.
        let Outcome::Optimal { duals, .. } = minimize(&[3.0], &[vec![4.0]], &[10.0]) else {
            panic!()
        };
        assert!((duals[0] - 0.75).abs() < 1e-9, "{duals:?}");
    }

    #[test]
    fn solves_small_covering_programs() {
        // Cover 10 units with items of size 4 at 3 or size 3 at 2: 3 per 4 vs 2 per 3.
        let value = optimal(minimize(&[3.0, 2.0], &[vec![4.0], vec![3.0]], &[10.0]));
        assert!((value - 20.0 / 3.0).abs() < 1e-6, "{value}");
        // Two resources: a CPU-heavy and a memory-heavy type, demand on both.
        let value = optimal(minimize(
            &[1.0, 1.0, 3.0],
            &[vec![4.0, 1.0], vec![1.0, 4.0], vec![4.0, 4.0]],
            &[8.0, 8.0],
        ));
        // x1 = x2 = 1.6 covers both: cost 3.2.
        assert!((value - 3.2).abs() < 1e-6, "{value}");
        assert_eq!(
            minimize(&[1.0], &[vec![0.0, 1.0]], &[1.0, 1.0]),
            Outcome::Infeasible
        );
        assert_eq!(optimal(minimize(&[1.0], &[vec![1.0]], &[0.0])), 0.0);
    }

    #[test]
    fn a_row_no_column_covers_and_nothing_demands_is_redundant() {
        // Its artificial variable stays in the basis after phase one, at zero.
        for (costs, columns) in [
            (vec![1.0], vec![vec![1.0, 0.0]]),
            (vec![1.0, 2.0], vec![vec![1.0, 0.0], vec![2.0, 0.0]]),
        ] {
            let Outcome::Optimal { value, duals, .. } = minimize(&costs, &columns, &[4.0, 0.0])
            else {
                panic!("infeasible")
            };
            assert!((value - 4.0).abs() < 1e-9, "{value}");
            assert!(
                (duals[0] - 1.0).abs() < 1e-9 && duals[1].abs() < 1e-9,
                "{duals:?}"
            );
        }
    }

    /// The optimum by enumerating every vertex: each choice of as many tight rows as
    /// columns in use, solved exactly; `None` when no vertex is feasible.
    fn by_vertices(
        costs: &[f64],
        columns: &[Vec<f64>],
        demand: &[f64],
        at_most: &[bool],
    ) -> Option<f64> {
        let (m, n) = (demand.len(), costs.len());
        let feasible = |x: &[f64]| {
            (0..m).all(|i| {
                let lhs = (0..n).map(|j| columns[j][i] * x[j]).sum::<f64>();
                if at_most[i] {
                    lhs <= demand[i] + 1e-7
                } else {
                    lhs >= demand[i] - 1e-7
                }
            })
        };
        let mut best: Option<f64> = feasible(&vec![0.0; n]).then_some(0.0);
        for used in 1u32..(1 << n) {
            let cols: Vec<usize> = (0..n).filter(|j| used & (1 << j) != 0).collect();
            for tight in 1u32..(1 << m) {
                let rows: Vec<usize> = (0..m).filter(|i| tight & (1 << i) != 0).collect();
                if rows.len() != cols.len() {
                    continue;
                }
                let Some(solution) = solve(
                    &rows
                        .iter()
                        .map(|&i| cols.iter().map(|&j| columns[j][i]).collect())
                        .collect::<Vec<Vec<f64>>>(),
                    &rows.iter().map(|&i| demand[i]).collect::<Vec<f64>>(),
                ) else {
                    continue;
                };
                let mut x = vec![0.0; n];
                for (k, &j) in cols.iter().enumerate() {
                    x[j] = solution[k];
                }
                if x.iter().all(|&v| v >= -1e-9) && feasible(&x) {
                    let cost: f64 = (0..n).map(|j| costs[j] * x[j]).sum();
                    best = Some(best.map_or(cost, |b| b.min(cost)));
                }
            }
        }
        best
    }

    /// Gaussian elimination with partial pivoting; `None` for a singular system.
    fn solve(a: &[Vec<f64>], b: &[f64]) -> Option<Vec<f64>> {
        let k = b.len();
        let mut rows: Vec<Vec<f64>> = (0..k)
            .map(|i| a[i].iter().copied().chain([b[i]]).collect())
            .collect();
        for c in 0..k {
            let p = (c..k).max_by(|&x, &y| rows[x][c].abs().total_cmp(&rows[y][c].abs()))?;
            if rows[p][c].abs() < 1e-9 {
                return None;
            }
            rows.swap(c, p);
            let pivot_row = rows[c].clone();
            for (r, row) in rows.iter_mut().enumerate() {
                if r != c {
                    let f = row[c] / pivot_row[c];
                    for (value, p) in row.iter_mut().zip(&pivot_row) {
                        *value -= f * p;
                    }
                }
            }
        }
        Some((0..k).map(|i| rows[i][k] / rows[i][i]).collect())
    }

    type Program = (Vec<f64>, Vec<Vec<f64>>, Vec<f64>, Vec<bool>);

    /// Small covering programs, with zero coefficients and zero demands common, and a
    /// limit among the rows now and then.
    fn program() -> impl Strategy<Value = Program> {
        (1usize..4, 1usize..5).prop_flat_map(|(m, n)| {
            let entry = prop_oneof![2 => Just(0.0), 3 => (1u8..10).prop_map(f64::from)];
            let demand = prop_oneof![1 => Just(0.0), 3 => (1u8..20).prop_map(f64::from)];
            (
                prop::collection::vec((1u8..10).prop_map(f64::from), n),
                prop::collection::vec(prop::collection::vec(entry, m), n),
                prop::collection::vec(demand, m),
                prop::collection::vec(prop::bool::weighted(0.25), m),
            )
        })
    }

    use proptest::prelude::*;

    proptest! {
        #[test]
        fn the_optimum_and_its_duals_are_right((costs, columns, demand, at_most) in program()) {
            let expected = by_vertices(&costs, &columns, &demand, &at_most);
            match minimize_within(&costs, &columns, &demand, &at_most, None) {
                Outcome::Infeasible => prop_assert_eq!(expected, None),
                Outcome::Stopped => prop_assert!(false, "stopped without a deadline"),
                Outcome::Optimal { value, duals, x } => {
                    let Some(expected) = expected else {
                        return Err(TestCaseError::fail(format!("{value} for an infeasible program")));
                    };
                    prop_assert!((value - expected).abs() < 1e-6, "{} vs {}", value, expected);
                    // The duals prove it: feasible for the dual, and worth the optimum.
                    let worth: f64 = demand.iter().zip(&duals).map(|(b, y)| b * y).sum();
                    prop_assert!((worth - value).abs() < 1e-6, "duals worth {}", worth);
                    // The solution is feasible and worth the optimum too.
                    prop_assert!(x.iter().all(|&v| v >= -1e-9), "{:?}", x);
                    let cost: f64 = x.iter().zip(&costs).map(|(x, c)| x * c).sum();
                    prop_assert!((cost - value).abs() < 1e-6, "solution costs {}", cost);
                    for (i, d) in demand.iter().enumerate() {
                        let covered: f64 = columns.iter().zip(&x).map(|(c, x)| c[i] * x).sum();
                        if at_most[i] {
                            prop_assert!(covered <= d + 1e-6, "row {} at {}", i, covered);
                        } else {
                            prop_assert!(covered >= d - 1e-6, "row {} covered {}", i, covered);
                        }
                    }
                    // A covering row's price is at least zero, a limit's at most.
                    for (y, limit) in duals.iter().zip(&at_most) {
                        prop_assert!(if *limit { *y <= 1e-9 } else { *y >= -1e-9 }, "{:?}", duals);
                    }
                    for (column, cost) in columns.iter().zip(&costs) {
                        let priced: f64 = column.iter().zip(&duals).map(|(a, y)| a * y).sum();
                        prop_assert!(priced <= cost + 1e-6, "{:?}", duals);
                    }
                }
            }
        }
    }
}
