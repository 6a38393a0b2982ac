//! The Kubernetes API as upstream defines it, in one place for every part of Dialtone that
//! must agree with it: sim clusters serve and authorize with it, and `policy explain` decides
//! Kubernetes access with the same rules, so an explanation cannot differ from what a
//! cluster does.
//!
//! - [`resources`]: every resource sim clusters serve, with its group, version, scope and
//!   verbs, decoded into `k8s-openapi`'s types as upstream decodes ([`decode`]).
//! - [`rbac`]: rule matching, the authorizer and its index by subject.
//! - [`audit`]: audit policies and which level a request is logged at.
//! - [`defaults`]: the bootstrap policy every cluster holds (cluster-admin, admin, edit,
//!   view, discovery).
//!
//! Pure: no IO, no async.

#![warn(missing_docs)]

pub mod audit;
pub mod decode;
pub mod defaults;
pub mod rbac;
pub mod resources;
