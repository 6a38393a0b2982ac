//! The reconcilers that `dialtone server` runs. Each is level-triggered and idempotent: it is
//! woken by store watch events and by a periodic resync, is told nothing about why, and
//! converges one key at a time. Controllers change the world only through the store (and,
//! from the Smart Cluster issue on, the provider trait); they never call the HTTP API.

mod compactor;
mod deletion;

pub use compactor::run_compactor;
pub use deletion::{reconcile_deletion, run_deletion_controller};
