//! The resource model of Dialtone: objects shaped after the Kubernetes API conventions
//! (`apiVersion`, `kind`, `metadata`, `spec`, `status`), the resource tree
//! (org → folder → project → cluster → namespace), access policies, paths into that tree, validation that reports every bad field
//! at once, label selectors, and the machine-readable error returned by the API.
//!
//! This crate is pure: no IO, no async, no clock. Everything that reads the time or the
//! store takes what it needs as an argument. Every other crate depends on it; it depends on
//! none of them.

#![warn(missing_docs)]

pub mod api;
pub mod auth;
pub mod cluster;
pub mod cluster_types;
pub mod connection;
pub mod kinds;
pub mod maintenance;
pub mod meta;
pub mod path;
pub mod policy;
pub mod selector;
pub mod settings;
pub mod usage;
pub mod validation;

pub use api::{ApiError, Reason, Status, StatusCause};
pub use cluster::{
    Cluster, ClusterCondition, ClusterStatus, ClusterType, Health, NodeState, Phase,
};
pub use connection::{Connection, ConnectionStatus, PeeringState};
pub use kinds::{Folder, Group, Identity, KINDS, Kind, KindInfo, Namespace, Org, Project};
pub use meta::{
    API_VERSION, Condition, ConditionStatus, List, ListMeta, Object, ObjectMeta, ObjectStatus,
    WatchEvent, WatchEventType,
};
pub use path::ResourcePath;
pub use selector::LabelSelector;
pub use settings::ClusterSettings;
pub use validation::{FieldError, FieldErrors};
