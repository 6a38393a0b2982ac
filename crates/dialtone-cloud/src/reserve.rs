//! What a Kubernetes node keeps for its system, so that pods get the rest (its allocatable):
//! CPU by GKE's table, memory by EKS's formula. The sim's nodes report it and right-sizing
//! packs pods into what is left, from this one definition.

use crate::InstanceType;

/// CPU kept for the system (GKE's table): 6 % of the first core, 1 % of the second,
/// 0.5 % of the third and fourth, 0.25 % of every core above four.
pub fn reserved_millicores(vcpus: u32) -> u64 {
    let mut reserved = 0.0;
    for core in 1..=vcpus {
        reserved += match core {
            1 => 60.0,
            2 => 10.0,
            3 | 4 => 5.0,
            _ => 2.5,
        };
    }
    reserved as u64
}

/// Memory kept for the system (EKS's formula): 255 MiB plus 11 MiB per pod the node can
/// run, plus the 100 MiB hard eviction threshold.
pub fn reserved_memory_mib(max_pods: u32) -> u64 {
    255 + 11 * max_pods as u64 + 100
}

/// What pods may request on a node of this type: millicores, MiB and pods.
pub fn allocatable(vcpus: u32, memory_mib: u64, max_pods: u32) -> (u64, u64, u32) {
    (
        (vcpus as u64 * 1000).saturating_sub(reserved_millicores(vcpus)),
        memory_mib.saturating_sub(reserved_memory_mib(max_pods)),
        max_pods,
    )
}

impl InstanceType {
    /// What pods may request on a node of this type: millicores, MiB and pods.
    pub fn allocatable(&self) -> (u64, u64, u32) {
        allocatable(self.vcpus, self.memory_mib, self.max_pods)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_reserve_follows_the_documented_tables() {
        assert_eq!(reserved_millicores(1), 60);
        assert_eq!(reserved_millicores(2), 70);
        assert_eq!(reserved_millicores(4), 80);
        assert_eq!(reserved_millicores(8), 90);
        assert_eq!(reserved_memory_mib(29), 255 + 319 + 100);
        assert_eq!(allocatable(2, 4096, 17), (1930, 4096 - 542, 17));
    }
}
