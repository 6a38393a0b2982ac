//! The instance catalogue.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use serde::Serialize;

/// The embedded EC2 catalogue of us-east-1 (see `data/README.md` for its sources).
const EC2_US_EAST_1: &str = include_str!("../data/ec2-us-east-1.csv");

pub use dialtone_types::cluster::Arch;

/// One instance type as the catalogue knows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InstanceType {
    pub name: String,
    pub family: String,
    pub current_generation: bool,
    pub archs: Vec<Arch>,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub gpus: u32,
    /// Pods one node of this type can hold under the VPC CNI.
    pub max_pods: u32,
    pub burstable: bool,
    pub bare_metal: bool,
    /// On-demand price in us-east-1.
    pub usd_per_hour: f64,
    /// Zone suffixes that offer the type (`a`, `b`, …), the same letters in every region.
    pub zone_suffixes: Vec<char>,
}

impl InstanceType {
    /// The family's processor (see [`crate::performance`]).
    pub fn processor(&self) -> crate::Processor {
        crate::Processor::of_family(&self.family)
    }

    /// Whether the type carries an accelerator: GPUs, or a family built around one that the
    /// catalogue does not count as GPUs (Inferentia, Trainium, Gaudi, video transcoders,
    /// FPGAs: `inf`, `trn`, `dl`, `vt`, `f`, and the GPU families `g`, `gr`, `p`).
    pub fn accelerated(&self) -> bool {
        const ACCELERATED: &[&str] = &["inf", "trn", "dl", "vt", "f", "g", "gr", "p"];
        let class: String = self
            .family
            .chars()
            .take_while(char::is_ascii_lowercase)
            .collect();
        self.gpus > 0 || ACCELERATED.contains(&class.as_str())
    }

    /// Dollars per hour per unit of performance: per vCPU, scaled by how fast the family's
    /// vCPU is.
    pub fn usd_per_performance(&self) -> f64 {
        self.usd_per_hour / (self.vcpus.max(1) as f64 * self.processor().performance())
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("catalogue line {line}: {reason}")]
pub struct CatalogError {
    pub line: usize,
    pub reason: String,
}

/// Instance types by name.
#[derive(Debug, Default)]
pub struct InstanceCatalog {
    types: BTreeMap<String, InstanceType>,
}

fn parse_bool(value: &str, line: usize, column: &str) -> Result<bool, CatalogError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(CatalogError {
            line,
            reason: format!("{column} must be true or false, not `{other}`"),
        }),
    }
}

fn parse_number<T: std::str::FromStr>(
    value: &str,
    line: usize,
    column: &str,
) -> Result<T, CatalogError> {
    value.parse().map_err(|_| CatalogError {
        line,
        reason: format!("{column} `{value}` is not a number"),
    })
}

impl InstanceCatalog {
    /// The built-in catalogue, parsed once.
    pub fn builtin() -> &'static InstanceCatalog {
        static CATALOG: OnceLock<InstanceCatalog> = OnceLock::new();
        CATALOG.get_or_init(|| {
            InstanceCatalog::parse(EC2_US_EAST_1).expect("the embedded catalogue is valid")
        })
    }

    /// Parses the CSV format of `data/ec2-us-east-1.csv`.
    pub fn parse(csv: &str) -> Result<Self, CatalogError> {
        let mut lines = csv.lines().enumerate();
        let header = lines.next().map(|(_, h)| h).unwrap_or_default();
        const HEADER: &str = "instance_type,family,current_generation,arch,vcpus,memory_mib,gpus,max_pods_enis,burstable,bare_metal,on_demand_usd_per_hour,zones";
        if header.trim() != HEADER {
            return Err(CatalogError {
                line: 1,
                reason: format!("expected the header `{HEADER}`"),
            });
        }
        let mut types = BTreeMap::new();
        for (index, row) in lines {
            let line = index + 1;
            if row.trim().is_empty() {
                continue;
            }
            let f: Vec<&str> = row.split(',').collect();
            if f.len() != 12 {
                return Err(CatalogError {
                    line,
                    reason: format!("expected 12 columns, found {}", f.len()),
                });
            }
            // Some older types also list `i386`; no Kubernetes node runs it, so it is dropped.
            let archs = f[3]
                .split('|')
                .filter(|a| *a != "i386")
                .map(|a| match a {
                    "x86_64" => Ok(Arch::X86_64),
                    "arm64" => Ok(Arch::Arm64),
                    other => Err(CatalogError {
                        line,
                        reason: format!("unknown arch `{other}`"),
                    }),
                })
                .collect::<Result<Vec<_>, _>>()?;
            let zone_suffixes = f[11].split('|').filter_map(|z| z.chars().last()).collect();
            let instance = InstanceType {
                name: f[0].to_string(),
                family: f[1].to_string(),
                current_generation: parse_bool(f[2], line, "current_generation")?,
                archs,
                vcpus: parse_number(f[4], line, "vcpus")?,
                memory_mib: parse_number(f[5], line, "memory_mib")?,
                gpus: parse_number(f[6], line, "gpus")?,
                max_pods: parse_number(f[7], line, "max_pods_enis")?,
                burstable: parse_bool(f[8], line, "burstable")?,
                bare_metal: parse_bool(f[9], line, "bare_metal")?,
                usd_per_hour: parse_number(f[10], line, "on_demand_usd_per_hour")?,
                zone_suffixes,
            };
            types.insert(instance.name.clone(), instance);
        }
        Ok(InstanceCatalog { types })
    }

    /// The types a cloud says it offers, each in the zones (by suffix) that both this
    /// catalogue and the cloud give it; the others are left out.
    pub fn offered(&self, offered: &BTreeMap<String, BTreeSet<char>>) -> InstanceCatalog {
        let types = self
            .types
            .values()
            .filter_map(|t| {
                let zones = offered.get(&t.name)?;
                let zone_suffixes: Vec<char> = t
                    .zone_suffixes
                    .iter()
                    .copied()
                    .filter(|z| zones.contains(z))
                    .collect();
                (!zone_suffixes.is_empty()).then(|| {
                    (
                        t.name.clone(),
                        InstanceType {
                            zone_suffixes,
                            ..t.clone()
                        },
                    )
                })
            })
            .collect();
        InstanceCatalog { types }
    }

    pub fn get(&self, name: &str) -> Option<&InstanceType> {
        self.types.get(name)
    }

    pub fn len(&self) -> usize {
        self.types.len()
    }

    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &InstanceType> {
        self.types.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_catalogue_restricted_to_what_a_cloud_offers_keeps_only_zones_both_give() {
        let catalog = InstanceCatalog::builtin();
        let m5 = catalog.get("m5.large").unwrap();
        assert!(m5.zone_suffixes.contains(&'a') && m5.zone_suffixes.contains(&'b'));
        let offered = BTreeMap::from([
            ("m5.large".to_string(), BTreeSet::from(['a', 'z'])),
            ("no.such".to_string(), BTreeSet::from(['a'])),
            ("c5.large".to_string(), BTreeSet::from(['z'])),
        ]);
        let restricted = catalog.offered(&offered);
        assert_eq!(
            restricted.len(),
            1,
            "only m5.large is offered in a zone both know"
        );
        let m5 = restricted.get("m5.large").unwrap();
        assert_eq!(m5.zone_suffixes, vec!['a']);
        assert_eq!(
            m5.usd_per_hour,
            catalog.get("m5.large").unwrap().usd_per_hour
        );
    }

    #[test]
    fn the_builtin_catalogue_is_the_real_one() {
        let catalog = InstanceCatalog::builtin();
        assert_eq!(catalog.len(), 1236);
        let m7i = catalog.get("m7i.large").unwrap();
        assert_eq!((m7i.vcpus, m7i.memory_mib, m7i.max_pods), (2, 8192, 29));
        assert!(m7i.current_generation && !m7i.burstable);
        assert!((m7i.usd_per_hour - 0.1008).abs() < 1e-9);
        assert_eq!(m7i.zone_suffixes, ['a', 'b', 'c', 'd', 'f']);
        assert_eq!(catalog.get("a1.large").unwrap().archs, [Arch::Arm64]);
    }

    #[test]
    fn malformed_catalogues_name_the_line() {
        assert_eq!(InstanceCatalog::parse("nope").unwrap_err().line, 1);
        let header = EC2_US_EAST_1.lines().next().unwrap();
        let bad = format!(
            "{header}\nm7i.large,m7i,maybe,x86_64,2,8192,0,29,false,false,0.1,us-east-1a\n"
        );
        let error = InstanceCatalog::parse(&bad).unwrap_err();
        assert_eq!(error.line, 2);
        assert!(error.reason.contains("current_generation"));
    }
}
