//! Access policies on the tree (org → folder → project → cluster → namespace).
//!
//! A policy is a list of role bindings on a node; a node's effective policy is the union of
//! its own and its ancestors'. Roles come from a catalogue (`roles`): each carries Dialtone
//! permissions (verbs on the tree's resources) and, for cluster and namespace access, the
//! Kubernetes role it is cast into. `Policies` indexes everything for the one authorization
//! check every API request goes through, and explains its answers; `projection` turns a
//! cluster's effective policy into the RBAC objects its Kubernetes API needs.
//!
//! Everything here is pure: the server loads the tree, bindings and group memberships from
//! the store, and the projection controller applies what `projection` computes.

#![warn(missing_docs)]

pub mod projection;
pub mod roles;
pub mod tree;

pub use roles::{
    Catalogue, KubeGrant, Level, Permission, Permissions, Role, TreeResource, TreeVerb, Unbindable,
};
pub use tree::{Binding, Caller, Grant, NodeId, Policies, Subject};
