//! The reconcilers that `dialtone server` runs. Each is level-triggered and idempotent: it is
//! woken by store watch events and by a periodic resync, is told nothing about why, and
//! converges one key at a time. Controllers change the world only through the store and the
//! provider trait; they never call the HTTP API.

pub mod access;
pub mod backoff;
pub mod cluster;
mod compactor;
mod deletion;
mod queue;
pub mod rbac;
mod sizing;
pub mod supervisor;

pub use cluster::{Lifecycle, LifecycleOptions, Next, run_cluster_controller};
pub use compactor::{run_compactor, run_record_sweeper};
pub use deletion::{reconcile_deletion, run_deletion_controller};
pub use rbac::{Projection, run_projection_controller};
pub use sizing::SizingOptions;
pub use supervisor::{Supervisor, TaskStatus};
