//! What Dialtone knows of the clouds under its clusters: the instance catalogue (the real EC2
//! catalogue, shipped in `data/`) with each family's performance per vCPU, the regions with their zones, and [`Provider`], the trait
//! every cloud implements (`dialtone-sim` is the built-in one). No IO here beyond parsing the
//! embedded file.

pub mod bootstrap;
mod burstable;
mod catalog;
pub mod performance;
pub mod provider;
mod regions;
pub mod reserve;
pub mod volumes;

pub use bootstrap::{
    AuditPolicy, BootstrapRole, EvictionThresholds, NodeBootstrap, PodSecurityLevel, Reserved,
    SecretsEncryption,
};
pub use catalog::{Arch, CatalogError, InstanceCatalog, InstanceType};
pub use performance::Processor;
pub use provider::{
    Change, ChangeHandler, CloudError, CloudResource, CloudResult, CreateRequest, DiskType, Filter,
    IngressRule, InstanceLifetime, InstanceMetadata, LIFETIME_RETENTION_DAYS, Listener,
    PeeringState, PeeringStatus, Protocol, Provider, ResourceChange, ResourceKind, ResourceSpec,
    ResourceState, Route, Tags, node_image, node_image_version, tags,
};
pub use regions::{REGIONS, Region};
