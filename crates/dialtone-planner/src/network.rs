//! Address allocation from an org's address plan.

use ipnet::Ipv4Net;

/// The address space an org hands out to its VPCs, and what is already taken (its clusters'
/// VPCs and the customer networks it connects to).
#[derive(Clone, Debug, PartialEq)]
pub struct AddressPlan {
    /// The range every VPC of the org is carved from.
    pub pool: Ipv4Net,
    /// The ranges already in use, which a new VPC must not overlap.
    pub allocated: Vec<Ipv4Net>,
    /// Where in the pool the search for a free range starts.
    pub start: PoolShare,
}

/// A region's share of an org's pool: with several regions, each starts its search for a
/// free range at its own fraction of the pool (region `index` of `regions`, in name order)
/// and wraps around, so that two regions allocating at once, each before it has seen the
/// other's cluster, do not pick the same range until one has used up its share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolShare {
    /// This region's position.
    pub index: usize,
    /// How many regions share the pool.
    pub regions: usize,
}

impl Default for PoolShare {
    /// A region alone: from the start of the pool.
    fn default() -> Self {
        PoolShare {
            index: 0,
            regions: 1,
        }
    }
}

pub(crate) fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

impl AddressPlan {
    /// The default plan: all of 10.0.0.0/8, nothing taken.
    pub fn default_pool() -> Self {
        AddressPlan {
            pool: "10.0.0.0/8".parse().expect("a valid network"),
            allocated: Vec::new(),
            start: PoolShare::default(),
        }
    }

    /// The first `/prefix` of the pool, from this region's share on, that overlaps nothing
    /// taken.
    pub fn next_free(&self, prefix: u8) -> Option<Ipv4Net> {
        let count = 1usize
            .checked_shl(u32::from(prefix.checked_sub(self.pool.prefix_len())?))
            .unwrap_or(usize::MAX);
        let regions = self.start.regions.max(1);
        let skip = (count / regions).saturating_mul(self.start.index.min(regions - 1));
        let subnets = self.pool.subnets(prefix).ok()?;
        subnets
            .skip(skip)
            .chain(subnets.take(skip))
            .find(|candidate| {
                !self
                    .allocated
                    .iter()
                    .any(|taken| overlaps(candidate, taken))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocation_skips_anything_overlapping() {
        let mut plan = AddressPlan::default_pool();
        assert_eq!(plan.next_free(16).unwrap().to_string(), "10.0.0.0/16");
        plan.allocated.push("10.0.0.0/16".parse().unwrap());
        plan.allocated.push("10.1.128.0/20".parse().unwrap());
        assert_eq!(
            plan.next_free(16).unwrap().to_string(),
            "10.2.0.0/16",
            "a partial overlap takes the whole /16"
        );
        plan.allocated.push("10.0.0.0/8".parse().unwrap());
        assert_eq!(plan.next_free(16), None);
    }

    #[test]
    fn each_region_starts_at_its_share_of_the_pool_and_wraps() {
        let mut plan = AddressPlan::default_pool();
        plan.start = PoolShare {
            index: 2,
            regions: 3,
        };
        assert_eq!(plan.next_free(16).unwrap().to_string(), "10.170.0.0/16");
        plan.allocated.push("10.170.0.0/16".parse().unwrap());
        assert_eq!(plan.next_free(16).unwrap().to_string(), "10.171.0.0/16");
        // Its share and everything after it taken: it wraps to the start.
        plan.allocated.push("10.170.0.0/15".parse().unwrap());
        plan.allocated.push("10.172.0.0/14".parse().unwrap());
        plan.allocated.push("10.176.0.0/12".parse().unwrap());
        plan.allocated.push("10.192.0.0/10".parse().unwrap());
        assert_eq!(plan.next_free(16).unwrap().to_string(), "10.0.0.0/16");
    }
}
