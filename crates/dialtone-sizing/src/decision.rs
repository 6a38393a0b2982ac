//! A scale-up decision as the controller makes it and the benchmark measures it: Dialtone's
//! plan, improved by packing patterns within a time budget, with the best lower bound on
//! its cost and which bound that is.

use std::fmt;
use std::time::{Duration, Instant};

use crate::{Plan, Snapshot, bound, patterns};

/// Which lower bound a decision's ratio is measured against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BoundKind {
    /// The covering program by resource and size threshold ([`bound::lower_bound`]).
    Resources,
    /// The relaxation over packing patterns, converged ([`patterns::pattern_bound`]).
    Patterns,
    /// The pattern relaxation stopped by its budget: Farley's bound.
    PatternsStoppedEarly,
}

impl fmt::Display for BoundKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BoundKind::Resources => "resources",
            BoundKind::Patterns => "patterns",
            BoundKind::PatternsStoppedEarly => "patterns, stopped early",
        })
    }
}

/// A plan and what is proven about its cost.
#[derive(Clone, Debug)]
pub struct Decision {
    /// The nodes to add.
    pub plan: Plan,
    /// A proven lower bound on the cost of any plan for the same pods, per hour.
    pub bound: f64,
    /// Which bound `bound` is.
    pub bound_kind: BoundKind,
}

/// Plans `snapshot`: [`crate::plan`], then [`patterns::improve`] until `budget` has passed
/// since the start; the bound is the better of the two.
pub fn decide(snapshot: &Snapshot, budget: Duration) -> Decision {
    let deadline = Instant::now() + budget;
    let greedy = crate::plan(snapshot);
    let resources = bound::lower_bound(snapshot);
    let (plan, patterns) = patterns::improve(snapshot, greedy, deadline);
    let (bound, bound_kind) = match patterns {
        Some(p) if p.usd_per_hour > resources => (
            p.usd_per_hour,
            if p.converged {
                BoundKind::Patterns
            } else {
                BoundKind::PatternsStoppedEarly
            },
        ),
        _ => (resources, BoundKind::Resources),
    };
    Decision {
        plan,
        bound,
        bound_kind,
    }
}
