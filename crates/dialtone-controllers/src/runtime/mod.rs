//! The one controller runtime: every loop that follows the store or reconciles keys runs on
//! it. [`reflector::reflect`] is the list–watch–relist loop; an [`informer::Informer`]
//! keeps one kind in memory over it and tells handlers what changed; a
//! [`controller::Controller`] runs a [`controller::Reconciler`] over a [`queue::WorkQueue`]
//! with per-key backoff; the [`supervisor::Supervisor`] owns every background task,
//! restarts it, and holds the controllers' [`metrics`]. Controllers and the other tasks that
//! act for the whole region run only on the [`leader`], whose writes are fenced by its term.

pub mod backoff;
pub mod controller;
pub mod informer;
pub mod leader;
pub mod metrics;
pub mod queue;
pub mod reflector;
pub mod supervisor;
pub mod triggers;

pub use controller::{Controller, Next, Reconciler};
pub use informer::{Informer, Notice};
pub use leader::{Election, FencedStore, Leadership, Role};
pub use supervisor::{Supervisor, TaskStatus};
