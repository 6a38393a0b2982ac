//! What a burstable instance sustains. A burstable vCPU (`t2`, `t3`, `t3a`, `t4g`) runs at
//! full speed only while it has CPU credits; it earns them at its baseline, so over hours it
//! sustains only that share of each vCPU (or, in unlimited mode, pays for every surplus
//! credit). The shares are AWS's published baselines per vCPU ("Key concepts for burstable
//! performance instances", the table of baseline utilization per vCPU).

use crate::InstanceType;

/// The baseline of a burstable size, as a share of each vCPU; `None` for a size the table
/// does not know.
fn baseline(family: &str, size: &str) -> Option<f64> {
    let percent = match (family, size) {
        (_, "nano") => 5.0,
        (_, "micro") => 10.0,
        (_, "small" | "medium") => 20.0,
        (_, "large") => 30.0,
        ("t2", "xlarge") => 22.5,
        ("t2", "2xlarge") => 16.875,
        ("t3" | "t3a" | "t4g", "xlarge" | "2xlarge") => 40.0,
        _ => return None,
    };
    Some(percent / 100.0)
}

impl InstanceType {
    /// The share of each vCPU the type sustains: 1 for every type that is not burstable,
    /// its published baseline for one that is (20 % for a burstable size the table lacks,
    /// the lowest baseline of the sizes that have two or more vCPUs).
    pub fn sustained_cpu_share(&self) -> f64 {
        if !self.burstable {
            return 1.0;
        }
        let size = self.name.split_once('.').map_or("", |(_, size)| size);
        baseline(&self.family, size).unwrap_or(0.2)
    }

    /// What pods may request of a node of this type for hours on end: its allocatable
    /// (millicores, MiB, pods), with a burstable type's vCPUs at their baseline unless
    /// `burst` (the system reserve runs on the same credits).
    pub fn sustained_allocatable(&self, burst: bool) -> (u64, u64, u32) {
        let (millicores, memory_mib, pods) = self.allocatable();
        if burst || !self.burstable {
            return (millicores, memory_mib, pods);
        }
        let sustained = (self.vcpus as f64 * 1000.0 * self.sustained_cpu_share()) as u64;
        (
            sustained.saturating_sub(crate::reserve::reserved_millicores(self.vcpus)),
            memory_mib,
            pods,
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::InstanceCatalog;

    #[test]
    fn every_burstable_type_of_the_catalogue_has_its_published_baseline() {
        let catalog = InstanceCatalog::builtin();
        let share = |name: &str| catalog.get(name).expect(name).sustained_cpu_share();
        assert_eq!(share("t3.nano"), 0.05);
        assert_eq!(share("t4g.medium"), 0.2);
        assert_eq!(share("t3a.large"), 0.3);
        assert_eq!(share("t4g.2xlarge"), 0.4);
        assert_eq!(share("t2.xlarge"), 0.225);
        assert_eq!(share("m7i.large"), 1.0);
        // A t4g.medium sustains 400m of its 2 vCPUs; the system's 70m come out of them.
        let medium = catalog.get("t4g.medium").expect("t4g.medium");
        assert_eq!(medium.sustained_allocatable(false).0, 330);
        assert_eq!(medium.sustained_allocatable(true), medium.allocatable());
        for t in catalog.iter().filter(|t| t.burstable) {
            let size = t.name.split_once('.').expect("a size").1;
            assert!(
                super::baseline(&t.family, size).is_some(),
                "{} has no baseline",
                t.name
            );
        }
    }
}
