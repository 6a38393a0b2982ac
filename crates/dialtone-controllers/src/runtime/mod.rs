//! The one controller runtime: every loop that follows the store or reconciles keys runs on
//! it. [`reflector::reflect`] is the list–watch–relist loop; an [`informer::Informer`]
//! keeps one kind in memory over it and tells handlers what changed; a
//! [`controller::Controller`] runs a [`controller::Reconciler`] over a [`queue::WorkQueue`]
//! with per-key backoff; the [`supervisor::Supervisor`] owns every background task,
//! restarts it, and holds the controllers' [`metrics`].

pub mod backoff;
pub mod controller;
pub mod informer;
pub mod metrics;
pub mod queue;
pub mod reflector;
pub mod supervisor;
pub mod triggers;

pub use controller::{Controller, Next, Reconciler};
pub use informer::{Informer, Notice};
pub use supervisor::{Supervisor, TaskStatus};
