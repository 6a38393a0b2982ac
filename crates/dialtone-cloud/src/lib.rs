//! What Dialtone knows of the clouds under its clusters: the instance catalogue (the real EC2
//! catalogue, shipped in `data/`) and the regions with their zones. Pure data and lookups:
//! no IO beyond parsing the embedded file, no async. The provider trait and its `sim` and
//! `aws` implementations build on this crate.

mod catalog;
mod regions;

pub use catalog::{Arch, CatalogError, InstanceCatalog, InstanceType};
pub use regions::{REGIONS, Region};
