//! Prices per vCPU-hour and per GiB-hour, in integer micro-dollars, and what a usage costs.
//!
//! The default rate card is derived from the catalogue's on-demand prices: a least-squares
//! fit of `price = a × vCPUs + b × GiB` over every current-generation x86 type of the plain
//! general-purpose, compute and memory families (`m7i`, `c6a`, `r8i`: no local disks or
//! extra network; not burstable, not bare metal, no GPU). Their memory per vCPU differs (4, 2 and 8 GiB), which is what tells `a`
//! from `b`. Floats are used for that fit only; the rates it gives are rounded to whole
//! micro-dollars, and every amount of money after that is an integer.

use dialtone_cloud::{Arch, InstanceCatalog};
use serde::{Deserialize, Serialize};

/// Milli-vCPU-seconds in a vCPU-hour.
const CPU_UNITS_PER_HOUR: i128 = 1000 * 3600;
/// MiB-seconds in a GiB-hour.
const MEMORY_UNITS_PER_HOUR: i128 = 1024 * 3600;

/// What a vCPU-hour and a GiB-hour cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateCard {
    /// Micro-dollars per vCPU-hour.
    pub vcpu_hour_micros: u64,
    /// Micro-dollars per GiB-hour.
    pub gib_hour_micros: u64,
}

impl RateCard {
    /// The default rates: the catalogue's on-demand prices split between vCPUs and memory
    /// (see the module's documentation).
    pub fn derived(catalog: &InstanceCatalog) -> RateCard {
        let (mut xx, mut xy, mut yy, mut xp, mut yp) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for t in catalog.iter().filter(|t| {
            t.current_generation
                && !t.burstable
                && !t.bare_metal
                && t.gpus == 0
                && t.archs.contains(&Arch::X86_64)
                && t.usd_per_hour > 0.0
                && plain_family(&t.family)
        }) {
            let (x, y, p) = (
                f64::from(t.vcpus),
                t.memory_mib as f64 / 1024.0,
                t.usd_per_hour,
            );
            xx += x * x;
            xy += x * y;
            yy += y * y;
            xp += x * p;
            yp += y * p;
        }
        let det = xx * yy - xy * xy;
        let per_vcpu = (xp * yy - yp * xy) / det;
        let per_gib = (yp * xx - xp * xy) / det;
        RateCard {
            vcpu_hour_micros: (per_vcpu * 1e6).round() as u64,
            gib_hour_micros: (per_gib * 1e6).round() as u64,
        }
    }

    /// Why the card cannot price anything, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        if self.vcpu_hour_micros == 0 && self.gib_hour_micros == 0 {
            return Err("a rate card needs a price per vCPU-hour or per GiB-hour".into());
        }
        Ok(())
    }

    /// What `cpu_milli_seconds` of CPU and `memory_mib_seconds` of memory cost, in
    /// micro-dollars, rounded half away from zero; negative for a correction's negative
    /// amounts.
    pub fn cost_micros(&self, cpu_milli_seconds: i64, memory_mib_seconds: i64) -> i64 {
        // Over one denominator, so that the sum is rounded once.
        let numerator = i128::from(cpu_milli_seconds)
            * i128::from(self.vcpu_hour_micros)
            * MEMORY_UNITS_PER_HOUR
            + i128::from(memory_mib_seconds)
                * i128::from(self.gib_hour_micros)
                * CPU_UNITS_PER_HOUR;
        let denominator = CPU_UNITS_PER_HOUR * MEMORY_UNITS_PER_HOUR;
        let half = denominator / 2;
        let rounded = if numerator >= 0 {
            (numerator + half) / denominator
        } else {
            (numerator - half) / denominator
        };
        rounded as i64
    }
}

/// `m7i`, `c6a`, `r8i`, `m5`: the general-purpose, compute and memory families without
/// local disks, extra network or other extras that add to the price.
fn plain_family(family: &str) -> bool {
    let mut chars = family.chars();
    let class = chars.next();
    let rest: String = chars.collect();
    let digits = rest.trim_end_matches(['i', 'a']);
    matches!(class, Some('m' | 'c' | 'r'))
        && !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit())
        && rest.len() - digits.len() <= 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_derived_rates_split_the_catalogues_prices_between_vcpus_and_memory() {
        let card = RateCard::derived(InstanceCatalog::builtin());
        // About $0.038 per vCPU-hour and $0.0038 per GiB-hour.
        assert!(
            (35_000..41_000).contains(&card.vcpu_hour_micros),
            "{card:?}"
        );
        assert!((3_000..4_500).contains(&card.gib_hour_micros), "{card:?}");
        // And they price an m7i.large (2 vCPUs, 8 GiB) within 10 % of its on-demand price.
        let hour = card.cost_micros(2 * 1000 * 3600, 8 * 1024 * 3600);
        let price = InstanceCatalog::builtin()
            .get("m7i.large")
            .unwrap()
            .usd_per_hour
            * 1e6;
        assert!(
            (hour as f64 - price).abs() / price < 0.10,
            "{hour} vs {price}"
        );
    }

    #[test]
    fn costs_are_exact_integers_rounded_half_away_from_zero() {
        let card = RateCard {
            vcpu_hour_micros: 36_000,
            gib_hour_micros: 3_600,
        };
        // One vCPU for an hour; one GiB for an hour; one vCPU-second is 10 micro-dollars.
        assert_eq!(card.cost_micros(3_600_000, 0), 36_000);
        assert_eq!(card.cost_micros(0, 1024 * 3600), 3_600);
        assert_eq!(card.cost_micros(1000, 0), 10);
        // Half a micro-dollar rounds away from zero, both ways.
        assert_eq!(card.cost_micros(50, 0), 1);
        assert_eq!(card.cost_micros(-50, 0), -1);
        assert_eq!(card.cost_micros(49, 0), 0);
        assert!(
            RateCard {
                vcpu_hour_micros: 0,
                gib_hour_micros: 0
            }
            .check()
            .is_err()
        );
    }
}
