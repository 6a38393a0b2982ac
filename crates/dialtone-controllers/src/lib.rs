//! The reconcilers that `dialtone server` runs, on one runtime (`runtime`). Each is
//! level-triggered and idempotent: it is woken by store watch events and by a periodic
//! resync, is told nothing about why, and converges one key at a time. Controllers change
//! the world only through the store and the provider trait; they never call the HTTP API.

pub mod access;
pub mod balancers;
pub mod cluster;
mod compactor;
pub mod connection;
mod deletion;
pub mod metering;
pub mod rbac;
pub mod runtime;
mod sizing;

pub use cluster::{Lifecycle, LifecycleOptions, spawn_cluster_controller};
pub use compactor::{run_compactor, run_record_sweeper};
pub use connection::{CONNECTION_FINALIZER, Connections, spawn_connection_controller};
pub use deletion::{reconcile_deletion, spawn_deletion_controller};
pub use rbac::{Projection, spawn_projection_controller};
pub use runtime::{Next, Supervisor, TaskStatus, backoff};
pub use sizing::SizingOptions;
