//! The regions clusters can run in, and their zones.

use serde::Serialize;

/// A region and what a plan needs to know of it.
#[derive(Debug, PartialEq, Serialize)]
pub struct Region {
    pub name: &'static str,
    /// Zone suffixes: zone `a` of `us-east-1` is `us-east-1a`.
    pub zone_suffixes: &'static [char],
    /// Prices here are the us-east-1 catalogue's times this factor (published on-demand
    /// prices of us-west-2 match us-east-1's; eu-west-1's are about 8 % higher).
    pub price_factor: f64,
}

impl Region {
    pub fn zones(&self) -> Vec<String> {
        self.zone_suffixes
            .iter()
            .map(|s| format!("{}{s}", self.name))
            .collect()
    }

    pub fn find(name: &str) -> Option<&'static Region> {
        REGIONS.iter().find(|r| r.name == name)
    }

    pub fn names() -> Vec<&'static str> {
        REGIONS.iter().map(|r| r.name).collect()
    }
}

/// The regions of the built-in `sim` cloud, modelled on AWS's.
pub static REGIONS: &[Region] = &[
    Region {
        name: "us-east-1",
        zone_suffixes: &['a', 'b', 'c', 'd', 'e', 'f'],
        price_factor: 1.0,
    },
    Region {
        name: "us-west-2",
        zone_suffixes: &['a', 'b', 'c', 'd'],
        price_factor: 1.0,
    },
    Region {
        name: "eu-west-1",
        zone_suffixes: &['a', 'b', 'c'],
        price_factor: 1.08,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_region_can_host_a_production_cluster() {
        for region in REGIONS {
            assert!(
                region.zones().len() >= 3,
                "{} needs three zones",
                region.name
            );
        }
        assert_eq!(
            Region::find("eu-west-1").unwrap().zones(),
            ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
        );
        assert!(Region::find("mars-1").is_none());
    }
}
