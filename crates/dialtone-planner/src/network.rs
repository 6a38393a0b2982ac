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
        }
    }

    /// The first `/prefix` of the pool that overlaps nothing taken.
    pub fn next_free(&self, prefix: u8) -> Option<Ipv4Net> {
        self.pool.subnets(prefix).ok()?.find(|candidate| {
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
}
