//! Smart Cluster planning. A cluster *type* (developer or production) is a named bundle of
//! decisions; [`DECISIONS`] is the one table of them, each with its value per type and a
//! one-line reason. [`plan`] turns a request and the facts around it (the region, the
//! catalogue, the org's address plan) into a concrete [`ClusterPlan`].
//!
//! Pure and deterministic: the same inputs always give the same plan. No IO, no clock, no
//! randomness; the controllers that apply plans live elsewhere.

#![warn(missing_docs)]

mod decisions;
mod network;
mod plan;
pub mod versions;

pub use decisions::{ClusterType, DECISIONS, Decision, Enforcement, How, Rule};
pub use dialtone_types::ClusterSettings;
pub use dialtone_types::cluster::{
    ClusterPlan, ControlPlanePlan, NetworkPlan, NodeSlot, Subnet, WorkerPlan,
};
pub use network::{AddressPlan, PoolShare};
pub use plan::{
    ClusterRequest, PlanContext, PlanError, Problem, kept_families, plan, plan_with_settings,
};
