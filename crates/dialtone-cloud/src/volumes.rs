//! What a node's root volume costs: EBS storage prices per GiB-month in us-east-1, from
//! AWS's EBS pricing page (gp3 $0.08, gp2 $0.10, io2 $0.125; io2's provisioned IOPS are
//! billed apart and not counted here). AWS bills a month as 730 hours.

use dialtone_types::settings::DiskType;

/// Dollars per GiB-month of `disk`.
pub fn usd_per_gib_month(disk: DiskType) -> f64 {
    match disk {
        DiskType::Gp3 => 0.08,
        DiskType::Gp2 => 0.10,
        DiskType::Io2 => 0.125,
    }
}

/// Dollars per hour of a volume of `gib` GiB of `disk`.
pub fn usd_per_hour(disk: DiskType, gib: u32) -> f64 {
    usd_per_gib_month(disk) * gib as f64 / 730.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_developer_worker_s_root_volume_costs_about_half_a_cent_an_hour() {
        // 50 GiB of gp3: $4 a month.
        assert!((usd_per_hour(DiskType::Gp3, 50) * 730.0 - 4.0).abs() < 1e-9);
    }
}
